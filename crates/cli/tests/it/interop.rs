//! `agent` with other tools: the reference docker-registry behind htpasswd Basic auth, and
//! images moving between `agent`, docker and skopeo. Ignored by default: they need the
//! packages scripts/test installs (docker-registry, apache2-utils, docker.io, skopeo) and
//! a running dockerd.

use std::process::Stdio;
use std::time::Duration;

use agent_registry_server::testing::TestServer;

use std::sync::atomic::Ordering;

use crate::support::{Agent, noise, push_image, rootfs_tar, run_ok, unique};
use crate::token::{REFRESH_TOKEN, TokenService};

/// docker-registry on a free port with the given `auth:` section.
struct ReferenceRegistry {
    host: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// docker-registry requiring `user`/`secret` by htpasswd (Basic).
async fn reference_registry_with_htpasswd() -> ReferenceRegistry {
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "user", "secret"])
        .output()
        .expect("htpasswd is installed (apache2-utils; scripts/test installs it)");
    std::fs::write(&htpasswd, out.stdout).expect("write htpasswd");
    let auth = format!(
        "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
        htpasswd.display()
    );
    reference_registry(dir, &auth).await
}

async fn reference_registry(dir: tempfile::TempDir, auth: &str) -> ReferenceRegistry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp: {{addr: {host}}}\n{auth}",
            dir.path().join("data").display(),
        ),
    )
    .expect("write config");
    let child = tokio::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker-registry is installed (scripts/test installs it)");
    for _ in 0..100 {
        if reqwest::get(format!("http://{host}/v2/")).await.is_ok() {
            return ReferenceRegistry {
                host,
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not start on {host}");
}

/// An agent holding `{ours}/src:1` locally, tagged as `target` too.
async fn agent_with_image(ours: &TestServer, target: &str) -> Agent {
    push_image(&ours.url, "src", "1", &[noise(100_000, 12)]).await;
    let agent = Agent::new();
    agent
        .run(&["pull", "-q", &format!("{}/src:1", ours.host())])
        .await
        .ok();
    agent
        .run(&["tag", &format!("{}/src:1", ours.host()), target])
        .await
        .ok();
    agent
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker-registry and htpasswd: run scripts/test"]
async fn basic_auth_against_the_reference_registry() {
    let reference = reference_registry_with_htpasswd().await;
    let ours = TestServer::start().await;
    let target = format!("{}/auth/agent:1", reference.host);
    let mut agent = agent_with_image(&ours, &target).await;

    let anonymous = agent.run(&["push", &target]).await;
    let anonymous = anonymous.failed(
        3,
        &format!("agent: authentication failed for {}", reference.host),
    );
    assert!(
        anonymous.stderr.contains("agent login"),
        "says what to do: {}",
        anonymous.stderr
    );

    let wrong = agent
        .run_with_stdin(
            &["login", &reference.host, "-u", "user", "--password-stdin"],
            "nope\n",
        )
        .await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);

    agent
        .run_with_stdin(
            &["login", &reference.host, "-u", "user", "--password-stdin"],
            "secret\n",
        )
        .await
        .ok();
    let saved = std::fs::read_to_string(agent.home.path().join("docker/config.json"))
        .expect("credentials saved where docker keeps them");
    assert!(saved.contains(&reference.host), "{saved}");

    agent.run(&["push", "-q", &target]).await.ok();
    agent.run(&["rmi", &target]).await.ok();
    agent.run(&["pull", "-q", &target]).await.ok();

    agent.run(&["logout", &reference.host]).await.ok();
    let after = agent.run(&["pull", &target]).await;
    assert_eq!(after.code, 3, "{}", after.stderr);

    // With `credsStore` set, login and lookups go through the docker-credential helper.
    let bin = agent.home.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-agenttest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nstore=\"$(dirname \"$0\")/stored.json\"\ncase \"$1\" in\n  store) cat > \"$store\" ;;\n  get) read server; if [ -f \"$store\" ] && grep -q \"\\\"$server\\\"\" \"$store\"; then cat \"$store\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) rm -f \"$store\" ;;\nesac\n",
    )
    .expect("helper");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::write(
        agent.home.path().join("docker/config.json"),
        r#"{"credsStore":"agenttest"}"#,
    )
    .expect("docker config");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    agent.env("PATH", &path);
    agent
        .run_with_stdin(
            &["login", &reference.host, "-u", "user", "--password-stdin"],
            "secret\n",
        )
        .await
        .ok();
    let stored = std::fs::read_to_string(bin.join("stored.json")).expect("the helper stored it");
    assert!(stored.contains("\"Username\":\"user\""), "{stored}");
    agent.run(&["pull", "-q", &target]).await.ok();
    agent.run(&["logout", &reference.host]).await.ok();
    assert!(
        !bin.join("stored.json").exists(),
        "logout erased it through the helper"
    );
    std::fs::write(agent.home.path().join("docker/config.json"), "{}").expect("reset");

    // The environment's credentials work without a login.
    agent
        .env("DOCKER_USERNAME", "user")
        .env("DOCKER_PASSWORD", "secret");
    agent.run(&["pull", "-q", &target]).await.ok();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker-registry and htpasswd: run scripts/test"]
async fn a_pull_secret_file_supplies_node_credentials() {
    let reference = reference_registry_with_htpasswd().await;
    let ours = TestServer::start().await;
    let target = format!("{}/secret/agent:1", reference.host);
    let mut pusher = agent_with_image(&ours, &target).await;
    pusher
        .env("DOCKER_USERNAME", "user")
        .env("DOCKER_PASSWORD", "secret");
    pusher.run(&["push", "-q", &target]).await.ok();

    let node = Agent::new();
    let denied = node.run(&["image", "ensure", &target]).await;
    assert_eq!(denied.code, 3, "{}", denied.stderr);
    assert!(denied.stderr.contains("hint:"), "{}", denied.stderr);
    let secret = node.home.path().join("pull-secret.json");
    std::fs::write(
        &secret,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dXNlcjpzZWNyZXQ="}}}}}}"#,
            reference.host
        ),
    )
    .expect("secret");
    let ok = node
        .run(&[
            "image",
            "ensure",
            &target,
            "--pull-secret",
            secret.to_str().expect("utf-8"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(ok["source"], "Downloaded");
    let log =
        std::fs::read_to_string(node.home.path().join("docker/config.json")).unwrap_or_default();
    assert!(
        !log.contains("dXNlcjpzZWNyZXQ="),
        "the secret is not copied into saved credentials"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker-registry and openssl: run scripts/test"]
async fn bearer_tokens_and_oauth2_against_the_reference_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = TokenService::start(dir.path()).await;
    let reference = reference_registry(dir, &tokens.registry_auth_yaml()).await;
    let ours = TestServer::start().await;
    let target = format!("{}/bearer/agent:1", reference.host);
    let agent = agent_with_image(&ours, &target).await;

    let anonymous = agent.run(&["push", &target]).await;
    anonymous.failed(
        3,
        &format!("agent: authentication failed for {}", reference.host),
    );

    // Basic credentials are exchanged for a token (GET), once per scope, not per request.
    agent
        .run_with_stdin(
            &["login", &reference.host, "-u", "user", "--password-stdin"],
            "secret\n",
        )
        .await
        .ok();
    let before = tokens.gets.load(Ordering::SeqCst);
    let pushed = agent
        .run(&["push", &target, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pushed["uploaded"], 2, "{pushed}");
    let exchanges = tokens.gets.load(Ordering::SeqCst) - before;
    assert!(
        (1..=2).contains(&exchanges),
        "{exchanges} token requests for a push of 2 blobs and a manifest"
    );
    agent.run(&["rmi", &target]).await.ok();
    agent.run(&["pull", "-q", &target]).await.ok();
    agent.run(&["logout", &reference.host]).await.ok();

    // OAuth2 profiles: a password grant, then a refresh token, both by POST.
    std::fs::write(
        agent.aac_home().join("config.yaml"),
        format!(
            "registries:\n  password:\n    url: http://{h}\n    auth: {{type: oauth2, username: user, password: secret}}\n  refresh:\n    url: http://{h}\n    auth: {{type: oauth2, refresh_token: {REFRESH_TOKEN}}}\n  stale:\n    url: http://{h}\n    auth: {{type: oauth2, refresh_token: expired}}\n",
            h = reference.host
        ),
    )
    .expect("config");
    for profile in ["password", "refresh"] {
        let posts = tokens.posts.load(Ordering::SeqCst);
        agent
            .run(&["pull", "-q", "bearer/agent:1", "--profile", profile])
            .await
            .ok();
        assert!(
            tokens.posts.load(Ordering::SeqCst) > posts,
            "{profile} used the OAuth2 POST"
        );
    }
    let stale = agent
        .run(&["pull", "bearer/agent:1", "--profile", "stale"])
        .await;
    assert_eq!(stale.code, 3, "{}", stale.stderr);
    assert!(
        stale.stderr.contains("bad grant"),
        "carries the token service's words: {}",
        stale.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running and skopeo: run scripts/test"]
async fn images_move_between_agent_docker_and_skopeo() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path(), "from-docker").await;
    let by_docker = format!("{host}/interop/by-docker:{}", unique());
    run_ok("docker", &["import", &tar.to_string_lossy(), &by_docker]).await;
    run_ok("docker", &["push", "-q", &by_docker]).await;
    run_ok("docker", &["rmi", &by_docker]).await;

    // docker -> agent: agent pulls what docker pushed, and pushes it back under a new name.
    let agent = Agent::new();
    agent.run(&["pull", "-q", &by_docker]).await.ok();
    let by_agent = format!("{host}/interop/by-agent:1");
    agent.run(&["tag", &by_docker, &by_agent]).await.ok();
    agent.run(&["push", "-q", &by_agent]).await.ok();

    // agent -> docker: the image runs.
    run_ok("docker", &["pull", "-q", &by_agent]).await;
    let out = run_ok(
        "docker",
        &[
            "run",
            "--rm",
            &by_agent,
            "/bin/busybox",
            "cat",
            "/marker.txt",
        ],
    )
    .await;
    assert_eq!(out, "from-docker");
    run_ok("docker", &["rmi", &by_agent]).await;

    // agent -> skopeo, and the local store is an OCI layout skopeo reads.
    let copied = dir.path().join("copied");
    run_ok(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{by_agent}"),
            &format!("oci:{}:x", copied.display()),
        ],
    )
    .await;
    // The local store is an OCI layout that skopeo reads (for OCI manifests: skopeo's `oci:`
    // transport skips descriptors with Docker media types, which we keep as pulled).
    push_image(&server.url, "interop/oci", "v7", &[noise(1000, 13)]).await;
    agent
        .run(&["pull", "-q", &format!("{host}/interop/oci:v7")])
        .await
        .ok();
    let inspect = run_ok(
        "skopeo",
        &["inspect", &format!("oci:{}:v7", agent.store().display())],
    )
    .await;
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");

    // `agent save` writes an OCI archive skopeo reads.
    let archive = dir.path().join("saved.tar");
    agent
        .run(&[
            "save",
            &format!("{host}/interop/oci:v7"),
            "-O",
            archive.to_str().expect("utf-8"),
        ])
        .await
        .ok();
    let inspect = run_ok(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:v7", archive.display())],
    )
    .await;
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");
}
