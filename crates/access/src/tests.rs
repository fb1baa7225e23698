//! The access service against a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use agent_registry_metadata::SqliteStore;
use agent_registry_metadata::access::PrincipalKind;
use base64::Engine as _;

use super::*;

async fn open(settings: Settings) -> (Access, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("registry.db"), false).expect("opens");
    let access = Access::open(Arc::new(store), settings)
        .await
        .expect("opens");
    (access, dir)
}

fn enabled() -> Settings {
    Settings {
        enabled: true,
        ..Settings::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn repo(s: &str) -> RepoName {
    s.parse().expect("valid")
}

#[tokio::test]
async fn passwords_and_tokens_authenticate_and_wrong_ones_do_not() {
    let (access, _dir) = open(enabled()).await;
    assert!(
        access
            .bootstrap_admin("admin", "admin-password")
            .await
            .expect("ok")
    );
    assert!(
        !access
            .bootstrap_admin("admin2", "admin-password")
            .await
            .expect("ok")
    );
    access
        .add_principal(
            "alice",
            PrincipalKind::User,
            false,
            vec!["team".into()],
            Some("alice-password"),
        )
        .await
        .expect("adds");
    let alice = access
        .authenticate(Some(&basic("alice", "alice-password")), None)
        .await
        .expect("right password");
    assert_eq!(
        (alice.display_name(), &alice.groups[..]),
        ("alice", &["team".to_owned()][..])
    );
    for wrong in [
        basic("alice", "nope-nope"),
        basic("nobody", "alice-password"),
        "Basic !!".into(),
        "Digest x".into(),
    ] {
        let err = access
            .authenticate(Some(&wrong), None)
            .await
            .expect_err("refused");
        assert!(
            err.to_string().starts_with("authentication failed"),
            "{err}"
        );
    }

    let token = access
        .create_token("alice", "ci", vec!["team/*:read".into()], None)
        .await
        .expect("creates");
    let caller = access
        .authenticate(Some(&format!("Bearer {}", token.secret)), None)
        .await
        .expect("token works");
    access
        .grant(
            "alice",
            &"team/*".parse().expect("pattern"),
            Permission::Write,
        )
        .await
        .expect("grants");
    assert!(access.allows(&caller, &repo("team/a"), Action::Pull).await);
    assert!(
        !access.allows(&caller, &repo("team/a"), Action::Push).await,
        "the token is read-only"
    );
    // The same token as a docker login password.
    assert!(
        access
            .authenticate(Some(&basic("alice", &token.secret)), None)
            .await
            .is_ok()
    );

    access
        .revoke_token(&token.record.id, Some("alice"))
        .await
        .expect("revokes");
    assert!(
        access
            .authenticate(Some(&format!("Bearer {}", token.secret)), None)
            .await
            .is_err()
    );
    let expired = access
        .create_token("alice", "old", vec![], Some(Duration::ZERO))
        .await
        .expect("creates");
    assert!(
        access
            .authenticate(Some(&format!("Bearer {}", expired.secret)), None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn failed_logins_are_braked_per_name() {
    let (access, _dir) = open(enabled()).await;
    access
        .add_principal(
            "bob",
            PrincipalKind::User,
            false,
            vec![],
            Some("bob-password"),
        )
        .await
        .expect("adds");
    for _ in 0..5 {
        let e = access
            .login("bob", "wrong-password", None)
            .await
            .expect_err("wrong");
        assert!(matches!(e, AccessError::Unauthenticated(_)), "{e}");
    }
    let e = access
        .login("bob", "bob-password", None)
        .await
        .expect_err("braked");
    assert!(matches!(e, AccessError::Throttled(_)), "{e}");
}

#[tokio::test]
async fn issued_tokens_hold_only_what_the_caller_may_do() {
    let (access, _dir) = open(enabled()).await;
    access
        .add_principal(
            "carol",
            PrincipalKind::User,
            false,
            vec![],
            Some("carol-password"),
        )
        .await
        .expect("adds");
    access
        .grant(
            "carol",
            &"mine".parse().expect("pattern"),
            Permission::Write,
        )
        .await
        .expect("grants");
    access
        .set_visibility(&repo("open"), true)
        .await
        .expect("sets");
    let carol = access
        .login("carol", "carol-password", None)
        .await
        .expect("logs in");
    let asked = ResourceScope::parse_all(
        "repository:mine:pull,push,delete repository:open:pull,push repository:theirs:pull",
    );
    let issued = access.issue(&carol, &asked, true).await.expect("issues");
    assert_eq!(
        issued.access,
        vec![
            (repo("mine"), Permission::Write.actions()),
            (repo("open"), Permission::Read.actions())
        ]
    );
    let bearer = access
        .authenticate(Some(&format!("Bearer {}", issued.token)), None)
        .await
        .expect("verifies");
    assert!(access.allows(&bearer, &repo("mine"), Action::Push).await);
    assert!(!access.allows(&bearer, &repo("theirs"), Action::Pull).await);
    // Revoking the grant takes effect on tokens already issued.
    access
        .revoke_grant("carol", &"mine".parse().expect("pattern"))
        .await
        .expect("revokes");
    assert!(!access.allows(&bearer, &repo("mine"), Action::Push).await);

    let refresh = issued.refresh_token.expect("offline asked for one");
    let again = access.refresh(&refresh).await.expect("refreshes");
    assert_eq!(again.display_name(), "carol");
    assert!(access.refresh("art_0123456789abcdef_nope").await.is_err());

    let anonymous = access
        .issue(&Caller::anonymous(), &asked, true)
        .await
        .expect("issues");
    assert_eq!(
        anonymous.access,
        vec![(repo("open"), Permission::Read.actions())]
    );
    assert!(anonymous.refresh_token.is_none());
}

#[tokio::test]
async fn access_off_allows_everything() {
    let (access, _dir) = open(Settings::default()).await;
    assert!(
        access
            .allows(&Caller::anonymous(), &repo("x"), Action::Delete)
            .await
    );
    assert_eq!(access.readable(&Caller::anonymous()).await, Readable::All);
}

#[test]
fn names_and_subjects_are_checked() {
    assert!(check_name("user name", "ci-bot.2").is_ok());
    for bad in ["", "Alice", "-x", "x-", "a b", &"a".repeat(65)] {
        assert!(check_name("user name", bad).is_err(), "{bad:?}");
    }
    assert!(check_subject("group:ops").is_ok());
    assert!(check_subject("system:serviceaccount:agents:runner").is_ok());
    assert!(check_subject("system:serviceaccount:agents").is_err());
    assert!(check_subject("group:").is_err());
}

#[tokio::test]
async fn repeated_pulls_are_logged_once_and_other_events_every_time() {
    use agent_registry_metadata::access::AccessLogQuery;
    let (access, _dir) = open(enabled()).await;
    let pull = |target: &'static str, status: u16| audit::Pull {
        principal: Some("alice"),
        client: None,
        repo: "team/a",
        target,
        status,
    };
    for _ in 0..3 {
        access.record_pull(pull("v1", 200), 1);
    }
    access.record_pull(pull("v2", 200), 2);
    access.record_pull(pull("v1", 403), 3);
    let _ = access.login("alice", "no-such-user-password", None).await;
    let _ = access.login("alice", "no-such-user-password", None).await;
    let mut lines = Vec::new();
    for _ in 0..40 {
        lines = access
            .store()
            .access_log(&AccessLogQuery {
                limit: 100,
                ..AccessLogQuery::default()
            })
            .await
            .expect("log");
        if lines.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary: Vec<(String, Option<String>, u16)> = lines
        .into_iter()
        .rev()
        .map(|l| (l.action, l.target, l.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("pull".to_owned(), Some("v1".to_owned()), 200),
            ("pull".to_owned(), Some("v2".to_owned()), 200),
            ("pull".to_owned(), Some("v1".to_owned()), 403),
            ("login".to_owned(), None, 401),
            ("login".to_owned(), None, 401),
        ]
    );
}
