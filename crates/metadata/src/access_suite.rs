//! The behaviour every [`AccessStore`] backend must show, run by each backend's tests.

use agent_registry_oci::{RepoName, RepoPattern};

use crate::access::{
    AccessEvent, AccessLogQuery, AccessStore, GrantRecord, PrincipalKind, PrincipalRecord,
    PullPolicyRecord, Readable, TokenKind, TokenRecord,
};
use crate::{MetadataStore, Search};

fn repo(s: &str) -> RepoName {
    s.parse().expect("valid repo")
}

fn pattern(s: &str) -> RepoPattern {
    s.parse().expect("valid pattern")
}

fn principal(name: &str, kind: PrincipalKind) -> PrincipalRecord {
    PrincipalRecord {
        name: name.into(),
        kind,
        admin: false,
        groups: vec!["a".into(), "b".into()],
        password_hash: Some("$argon2id$x".into()),
        created_at: 1,
    }
}

fn token(id: &str, owner: &str, kind: TokenKind) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        owner: owner.into(),
        kind,
        name: format!("token {id}"),
        secret_hash: vec![1, 2, 3],
        scopes: vec!["team/*:read".into()],
        created_at: 5,
        expires_at: Some(100),
        revoked_at: None,
    }
}

/// Runs every check against `store`, which must be empty and also be the metadata store
/// `meta` (for the visibility filter of search).
pub async fn run_all<S: AccessStore + MetadataStore>(store: &S) {
    principals_and_tokens_round_trip(store).await;
    policy_changes_move_the_version(store).await;
    pull_policies_round_trip_and_move_the_version(store).await;
    access_log_filters_and_prunes(store).await;
    shared_secrets_are_kept_once(store).await;
    search_shows_only_readable_repositories(store).await;
}

async fn principals_and_tokens_round_trip(store: &dyn AccessStore) {
    let alice = principal("alice", PrincipalKind::User);
    store.put_principal(alice.clone()).await.expect("put");
    store
        .put_principal(principal("bot", PrincipalKind::Robot))
        .await
        .expect("put");
    assert_eq!(
        store.principal("alice").await.expect("read"),
        Some(alice.clone())
    );
    assert_eq!(store.principals().await.expect("list").len(), 2);
    let mut admin = alice.clone();
    admin.admin = true;
    store.put_principal(admin).await.expect("update");
    assert!(
        store
            .principal("alice")
            .await
            .expect("read")
            .expect("there")
            .admin
    );

    store
        .put_token(token("t1", "alice", TokenKind::Api))
        .await
        .expect("put");
    store
        .put_token(token("t2", "alice", TokenKind::Refresh))
        .await
        .expect("put");
    store
        .put_token(token("t3", "bot", TokenKind::Api))
        .await
        .expect("put");
    assert_eq!(
        store.token("t1").await.expect("read"),
        Some(token("t1", "alice", TokenKind::Api))
    );
    let ids = |ts: Vec<TokenRecord>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.tokens(Some("alice")).await.expect("list")),
        ["t1"]
    );
    assert_eq!(ids(store.tokens(None).await.expect("list")), ["t1", "t3"]);
    assert!(store.revoke_token("t1", 7).await.expect("revoke"));
    assert!(
        !store.revoke_token("t1", 8).await.expect("again"),
        "already revoked"
    );
    assert_eq!(
        store
            .token("t1")
            .await
            .expect("read")
            .expect("kept")
            .revoked_at,
        Some(7)
    );

    store
        .put_grant(GrantRecord {
            subject: "bot".into(),
            pattern: pattern("x"),
            permission: "read".into(),
        })
        .await
        .expect("grant");
    assert!(store.delete_principal("bot").await.expect("delete"));
    assert!(!store.delete_principal("bot").await.expect("gone"));
    assert_eq!(
        store.token("t3").await.expect("read"),
        None,
        "tokens go with their owner"
    );
    assert!(
        store.policy().await.expect("policy").grants.is_empty(),
        "grants too"
    );
}

async fn policy_changes_move_the_version(store: &dyn AccessStore) {
    let v0 = store.access_version().await.expect("version");
    let grant = GrantRecord {
        subject: "group:ops".into(),
        pattern: pattern("team/*"),
        permission: "write".into(),
    };
    store.put_grant(grant.clone()).await.expect("grant");
    store
        .put_grant(GrantRecord {
            permission: "admin".into(),
            ..grant.clone()
        })
        .await
        .expect("upgrade");
    store
        .set_visibility(&repo("open"), true)
        .await
        .expect("visibility");
    let policy = store.policy().await.expect("policy");
    assert!(policy.version > v0);
    assert_eq!(
        policy.version,
        store.access_version().await.expect("version")
    );
    assert_eq!(
        policy.grants,
        vec![GrantRecord {
            permission: "admin".into(),
            ..grant
        }]
    );
    assert_eq!(policy.visibility, vec![(repo("open"), true)]);
    assert!(
        store
            .delete_grant("group:ops", &pattern("team/*"))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_grant("group:ops", &pattern("team/*"))
            .await
            .expect("gone")
    );
    assert!(store.access_version().await.expect("version") > policy.version);
}

async fn pull_policies_round_trip_and_move_the_version(store: &dyn AccessStore) {
    let v0 = store.access_version().await.expect("version");
    let team = PullPolicyRecord {
        pattern: pattern("team/*"),
        signed_only: true,
        trusted_keys: "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n".into(),
        block_vulnerabilities: None,
        allowed_advisories: Vec::new(),
    };
    let one = PullPolicyRecord {
        pattern: pattern("team/one"),
        signed_only: false,
        trusted_keys: String::new(),
        block_vulnerabilities: Some("high".into()),
        allowed_advisories: vec!["CVE-2023-1".into(), "GHSA-x".into()],
    };
    store.put_pull_policy(team.clone()).await.expect("put");
    store.put_pull_policy(one.clone()).await.expect("put");
    let v1 = store.access_version().await.expect("version");
    assert!(v1 > v0, "a new policy moves the version");
    assert_eq!(
        store.policy().await.expect("policy").pull_policies,
        vec![team.clone(), one.clone()]
    );
    // Setting a pattern again replaces its policy.
    let replaced = PullPolicyRecord {
        trusted_keys: String::new(),
        ..team
    };
    store
        .put_pull_policy(replaced.clone())
        .await
        .expect("replace");
    let policy = store.policy().await.expect("policy");
    assert!(policy.version > v1);
    assert_eq!(policy.pull_policies, vec![replaced, one]);
    assert!(
        store
            .delete_pull_policy(&pattern("team/*"))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_pull_policy(&pattern("team/*"))
            .await
            .expect("gone")
    );
    assert!(
        store
            .delete_pull_policy(&pattern("team/one"))
            .await
            .expect("delete")
    );
    assert!(
        store
            .policy()
            .await
            .expect("policy")
            .pull_policies
            .is_empty()
    );
}

async fn access_log_filters_and_prunes(store: &dyn AccessStore) {
    let event = |at: i64, who: &str, action: &str, allowed: bool| AccessEvent {
        at,
        principal: Some(who.into()),
        action: action.into(),
        repo: Some("team/a".into()),
        target: Some("latest".into()),
        allowed,
        status: if allowed { 200 } else { 403 },
        client: Some("127.0.0.1".into()),
    };
    store
        .record_access(vec![
            event(10, "alice", "pull", true),
            event(20, "bob", "push", false),
            event(30, "alice", "push", true),
        ])
        .await
        .expect("record");
    let query = |q: AccessLogQuery| async move {
        store
            .access_log(&AccessLogQuery { limit: 10, ..q })
            .await
            .expect("query")
            .into_iter()
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        query(AccessLogQuery::default()).await,
        [30, 20, 10],
        "newest first"
    );
    let alice = || AccessLogQuery {
        principal: Some("alice".into()),
        ..AccessLogQuery::default()
    };
    assert_eq!(query(alice()).await, [30, 10]);
    assert_eq!(
        query(AccessLogQuery {
            action: Some("push".into()),
            since: Some(25),
            ..alice()
        })
        .await,
        [30]
    );
    assert_eq!(
        query(AccessLogQuery {
            denied_only: true,
            ..AccessLogQuery::default()
        })
        .await,
        [20]
    );
    assert_eq!(store.prune_access_log(20).await.expect("prune"), 1);
    assert_eq!(query(AccessLogQuery::default()).await, [30, 20]);
}

async fn shared_secrets_are_kept_once(store: &dyn AccessStore) {
    let first = store.shared_secret("k", vec![1]).await.expect("store");
    let second = store.shared_secret("k", vec![2]).await.expect("read");
    assert_eq!((first, second), (vec![1], vec![1]));
}

async fn search_shows_only_readable_repositories<S: AccessStore + MetadataStore>(store: &S) {
    for name in ["vis/open", "vis/closed", "vis/team/a", "vis/team/b"] {
        crate::suite::publish_plain(store, name).await;
    }
    store
        .set_visibility(&repo("vis/open"), true)
        .await
        .expect("visibility");
    let found = |readable: Readable| async move {
        let page = store
            .search(&Search {
                text: Some("vis".into()),
                readable,
                limit: 10,
                ..Search::default()
            })
            .await
            .expect("search");
        let mut names: Vec<String> = page.hits.into_iter().map(|h| h.name).collect();
        names.sort();
        (names, page.total)
    };
    assert_eq!(found(Readable::All).await.1, 4);
    assert_eq!(
        found(Readable::Some {
            public_by_default: false,
            patterns: vec![pattern("vis/team/*"), pattern("vis/closed")],
        })
        .await,
        (
            vec![
                "vis/closed".into(),
                "vis/open".into(),
                "vis/team/a".into(),
                "vis/team/b".into()
            ],
            4
        )
    );
    assert_eq!(
        found(Readable::Some {
            public_by_default: false,
            patterns: vec![pattern("vis/team/a")],
        })
        .await,
        (vec!["vis/open".into(), "vis/team/a".into()], 2)
    );
    store
        .set_visibility(&repo("vis/closed"), false)
        .await
        .expect("visibility");
    assert_eq!(
        found(Readable::Some {
            public_by_default: true,
            patterns: vec![],
        })
        .await,
        (
            vec!["vis/open".into(), "vis/team/a".into(), "vis/team/b".into()],
            3
        ),
        "public by default hides only what was made private"
    );
    // Visibility set before the first push holds once the repository is listed.
    store
        .set_visibility(&repo("vis/early"), true)
        .await
        .expect("visibility");
    crate::suite::publish_plain(store, "vis/early").await;
    assert_eq!(
        found(Readable::Some {
            public_by_default: false,
            patterns: vec![],
        })
        .await,
        (vec!["vis/early".into(), "vis/open".into()], 2)
    );
}
