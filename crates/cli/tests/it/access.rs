//! `agent login` and `agent registry ...` against our registry with access control on:
//! signing in each way a profile can, checking who you are, managing users, tokens,
//! permissions and visibility, and reading the access log.

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, noise, push_image_as};

const ADMIN_PASSWORD: &str = "admin-password";

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = ADMIN_PASSWORD.into();
    })
    .await
}

/// Runs `agent ARGS --registry HOST`, with `stdin` if given.
async fn at(agent: &Agent, host: &str, args: &[&str], stdin: Option<&str>) -> crate::support::Run {
    let mut all = args.to_vec();
    all.extend(["--registry", host]);
    match stdin {
        Some(input) => agent.run_with_stdin(&all, input).await,
        None => agent.run(&all).await,
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_manage_access_from_the_cli() {
    let server = server().await;
    let host = server.host().to_owned();
    let admin = Agent::new();

    let anon = at(&admin, &host, &["registry", "auth", "test"], None)
        .await
        .ok();
    assert!(anon.stdout.contains("anonymous"), "{}", anon.stdout);
    admin
        .run_with_stdin(
            &["login", &host, "-u", "admin", "--password-stdin"],
            "wrong-password\n",
        )
        .await
        .failed(3, "agent: authentication failed");
    let login = admin
        .run_with_stdin(
            &["login", &host, "-u", "admin", "--password-stdin"],
            &format!("{ADMIN_PASSWORD}\n"),
        )
        .await
        .ok();
    assert!(
        login.stdout.contains("Login Succeeded as admin"),
        "{}",
        login.stdout
    );
    let me = at(&admin, &host, &["registry", "auth", "test"], None)
        .await
        .ok();
    assert!(
        me.stdout.contains("as admin (user, administrator)"),
        "{}",
        me.stdout
    );

    at(
        &admin,
        &host,
        &[
            "registry",
            "user",
            "add",
            "alice",
            "--group",
            "team",
            "--password-stdin",
        ],
        Some("alice-password\n"),
    )
    .await
    .ok();
    at(
        &admin,
        &host,
        &["registry", "user", "add", "ci", "--robot"],
        None,
    )
    .await
    .ok();
    at(&admin, &host, &["registry", "user", "add", "bob"], None)
        .await
        .failed(1, "agent: a user needs a password");
    at(
        &admin,
        &host,
        &[
            "registry",
            "permission",
            "add",
            "team/*",
            "--user",
            "alice",
            "--permission",
            "write",
        ],
        None,
    )
    .await
    .ok();
    // The registry may also come with the repository.
    admin
        .run(&[
            "registry",
            "permission",
            "add",
            &format!("{host}/team/agent"),
            "--subject",
            "ci",
            "--permission",
            "read",
        ])
        .await
        .ok();
    at(
        &admin,
        &host,
        &[
            "registry",
            "permission",
            "add",
            "team/*",
            "--user",
            "alice",
            "--permission",
            "owner",
        ],
        None,
    )
    .await
    .failed(2, "error: invalid value 'owner'");
    let grants = at(
        &admin,
        &host,
        &["registry", "permission", "list", "-o", "json"],
        None,
    )
    .await
    .ok()
    .json();
    let grants = grants.as_array().expect("list").clone();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants.iter().any(|g| g["subject"] == "alice"
        && g["repository"] == "team/*"
        && g["permission"] == "write"));

    let made = at(
        &admin,
        &host,
        &[
            "registry",
            "token",
            "create",
            "deploy",
            "--owner",
            "ci",
            "--scope",
            "team/*:read",
            "--expires-in-days",
            "30",
        ],
        None,
    )
    .await
    .ok();
    let token = made.stdout.trim().to_owned();
    assert!(token.starts_with("art_"), "{}", made.stdout);
    assert!(made.stderr.contains("not shown again"));
    let listed = at(
        &admin,
        &host,
        &["registry", "token", "list", "--owner", "ci"],
        None,
    )
    .await
    .ok();
    assert!(
        listed.stdout.contains("deploy") && !listed.stdout.contains(&token),
        "{}",
        listed.stdout
    );

    // The robot signs in three ways: the token in the environment, a token profile, and an
    // OAuth2 client credentials profile.
    let mut robot = Agent::new();
    robot.env("AGENT_REGISTRY_TOKEN", &token);
    let me = at(&robot, &host, &["registry", "auth", "test"], None)
        .await
        .ok();
    assert!(me.stdout.contains("as ci (robot)"), "{}", me.stdout);
    let profiles = Agent::new();
    std::fs::create_dir_all(profiles.aac_home()).expect("mkdir");
    std::fs::write(
        profiles.aac_home().join("config.yaml"),
        format!(
            "registries:\n  tok:\n    url: {url}\n    auth: {{type: token, token: '{token}'}}\n  robot:\n    url: {url}\n    auth: {{type: oauth2, client_id: ci, client_secret: '{token}'}}\n  alice:\n    url: {url}\n    auth: {{type: username, username: alice, password: alice-password}}\n  wrong:\n    url: {url}\n    auth: {{type: username, username: alice, password: nope-nope}}\n",
            url = server.url
        ),
    )
    .expect("config");
    for profile in ["tok", "robot"] {
        let out = profiles.run(&["login", "--profile", profile]).await.ok();
        assert!(
            out.stdout.contains("Login Succeeded as ci"),
            "{profile}: {}",
            out.stdout
        );
    }
    let out = profiles.run(&["login", "--profile", "alice"]).await.ok();
    assert!(
        out.stdout.contains("Login Succeeded as alice"),
        "{}",
        out.stdout
    );
    profiles
        .run(&["login", "--profile", "wrong"])
        .await
        .failed(3, "agent: authentication failed");

    // Push with --visibility; anonymous callers then see the repository.
    push_image_as(
        &server.url,
        Some(&basic("admin", ADMIN_PASSWORD)),
        "team/agent",
        "1",
        &[noise(1000, 7)],
    )
    .await;
    let image = format!("{host}/team/agent:1");
    admin.run(&["pull", &image]).await.ok();
    let pushed = admin
        .run(&["push", &image, "--visibility", "public"])
        .await
        .ok();
    assert!(
        pushed.stdout.contains("Visibility") && pushed.stdout.contains("public"),
        "{}",
        pushed.stdout
    );
    let anon = Agent::new();
    let shown = anon
        .run(&["registry", "visibility", &format!("{host}/team/agent")])
        .await
        .ok();
    assert_eq!(shown.stdout.trim(), "team/agent is public");
    anon.run(&[
        "registry",
        "visibility",
        &format!("{host}/team/agent"),
        "private",
    ])
    .await
    .failed(3, "agent: authentication failed");

    // The access log, for administrators only.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let log = at(
        &admin,
        &host,
        &["registry", "access-logs", "--action", "push", "-o", "json"],
        None,
    )
    .await
    .ok()
    .json();
    assert!(
        log.as_array()
            .expect("lines")
            .iter()
            .any(|l| l["repository"] == "team/agent" && l["user"] == "admin"),
        "{log}"
    );
    let table = at(
        &admin,
        &host,
        &["registry", "access-logs", "--since", "1h"],
        None,
    )
    .await
    .ok();
    assert!(table.stdout.starts_with("TIME"), "{}", table.stdout);
    at(
        &admin,
        &host,
        &["registry", "access-logs", "--since", "yesterday"],
        None,
    )
    .await
    .failed(1, "agent: registry");
    let alice = Agent::new();
    alice
        .run_with_stdin(
            &["login", &host, "-u", "alice", "--password-stdin"],
            "alice-password\n",
        )
        .await
        .ok();
    at(&alice, &host, &["registry", "access-logs"], None)
        .await
        .failed(3, "agent: authentication failed");

    at(
        &admin,
        &host,
        &[
            "registry",
            "permission",
            "remove",
            "team/*",
            "--user",
            "alice",
        ],
        None,
    )
    .await
    .ok();
    at(
        &admin,
        &host,
        &[
            "registry",
            "permission",
            "remove",
            "team/*",
            "--user",
            "alice",
        ],
        None,
    )
    .await
    .failed(1, "agent: registry");
    at(&admin, &host, &["registry", "user", "remove", "ci"], None)
        .await
        .ok();
    at(&robot, &host, &["registry", "auth", "test"], None)
        .await
        .failed(3, "agent: authentication failed");
}
