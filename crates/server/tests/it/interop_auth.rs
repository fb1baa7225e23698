//! Interop with access control on: docker, podman and skopeo log in and push and pull
//! through Docker's token flow (a 401 challenge, then `/token` with Basic credentials), and
//! are refused what their user was not granted. Needs the tools `scripts/test` installs.

use std::process::Output;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::interop::{rootfs_tar, run, unique};
use crate::support::{TestRegistry, basic, client_with};

/// Runs `program args` with `envs` and `stdin`, returning its output whatever the status.
async fn run_with(program: &str, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} could not start ({e}); scripts/test installs it"));
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("stdin");
    drop(input);
    child.wait_with_output().await.expect("finishes")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A registry with access control on: alice may write `team/*`, bob may only read it.
async fn registry() -> TestRegistry {
    let reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
    })
    .await;
    let admin = client_with(Some(&basic("admin", "admin-password")));
    for (user, permission) in [("alice", "write"), ("bob", "read")] {
        let r = admin
            .post(format!("{}/api/v1/users", reg.url))
            .json(&json!({"name": user, "password": format!("{user}-password")}))
            .send()
            .await
            .expect("add user");
        assert!(r.status().is_success());
        let r = admin
            .post(format!("{}/api/v1/permissions", reg.url))
            .json(&json!({"subject": user, "repository": "team/*", "permission": permission}))
            .send()
            .await
            .expect("grant");
        assert!(r.status().is_success());
    }
    reg
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running: run scripts/test"]
async fn docker_logs_in_and_pushes_through_the_token_flow() {
    let reg = registry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("docker-config");
    let env = [("DOCKER_CONFIG", config.to_str().expect("utf-8 path"))];
    let tar = rootfs_tar(dir.path(), "docker-auth").await;
    let image = format!("{}/team/docker:{}", reg.host(), unique("t"));
    run("docker", &["import", &tar.to_string_lossy(), &image]).await;

    let out = run_with("docker", &["push", &image], &env, "").await;
    assert!(!out.status.success(), "an anonymous push is refused");
    assert!(
        text(&out).contains("unauthorized") || text(&out).contains("authentication required"),
        "{}",
        text(&out)
    );

    let out = run_with(
        "docker",
        &["login", reg.host(), "-u", "alice", "--password-stdin"],
        &env,
        "wrong-password\n",
    )
    .await;
    assert!(
        !out.status.success(),
        "a wrong password does not log in: {}",
        text(&out)
    );
    let out = run_with(
        "docker",
        &["login", reg.host(), "-u", "alice", "--password-stdin"],
        &env,
        "alice-password\n",
    )
    .await;
    assert!(
        out.status.success() && text(&out).contains("Login Succeeded"),
        "{}",
        text(&out)
    );
    let out = run_with("docker", &["push", &image], &env, "").await;
    assert!(out.status.success(), "{}", text(&out));
    run("docker", &["rmi", &image]).await;
    let out = run_with("docker", &["pull", &image], &env, "").await;
    assert!(out.status.success(), "{}", text(&out));

    // Bob may pull but not push.
    run_with("docker", &["logout", reg.host()], &env, "").await;
    let out = run_with(
        "docker",
        &["login", reg.host(), "-u", "bob", "--password-stdin"],
        &env,
        "bob-password\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let other = format!("{}/team/docker:{}", reg.host(), unique("bob"));
    run("docker", &["tag", &image, &other]).await;
    let out = run_with("docker", &["push", &other], &env, "").await;
    assert!(!out.status.success(), "bob may not push");
    assert!(text(&out).contains("denied"), "{}", text(&out));
    run("docker", &["rmi", &image, &other]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs podman and skopeo: run scripts/test"]
async fn podman_and_skopeo_log_in_and_copy_through_the_token_flow() {
    let reg = registry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path(), "podman-auth").await;
    let authfile = dir.path().join("auth.json");
    let (root, runroot) = (dir.path().join("storage"), dir.path().join("run"));
    let podman = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = [
            "--root",
            root.to_str().unwrap_or_default(),
            "--runroot",
            runroot.to_str().unwrap_or_default(),
            "--storage-driver",
            "vfs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        all
    };
    let authfile_arg = format!("--authfile={}", authfile.display());
    let image = format!("{}/team/podman:v1", reg.host());
    let args = podman(&["import", &tar.to_string_lossy(), &image]);
    run(
        "podman",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let args = podman(&[
        "login",
        "--tls-verify=false",
        &authfile_arg,
        "-u",
        "alice",
        "--password-stdin",
        reg.host(),
    ]);
    let out = run_with(
        "podman",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        "alice-password\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let args = podman(&["push", "--tls-verify=false", &authfile_arg, &image]);
    let out = run_with(
        "podman",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        "",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));

    // skopeo reads with bob's credentials and may copy within what alice may write.
    let src = format!("docker://{image}");
    let out = run_with(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "bob:bob-password",
            &src,
        ],
        &[],
        "",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run_with("skopeo", &["inspect", "--tls-verify=false", &src], &[], "").await;
    assert!(
        !out.status.success(),
        "anonymous reads of a private repository are refused"
    );
    // Made public, it is readable by anyone, through an anonymous registry token.
    let r = client_with(Some(&basic("admin", "admin-password")))
        .put(format!("{}/api/v1/repositories/team/podman", reg.url))
        .json(&json!({"visibility": "public"}))
        .send()
        .await
        .expect("visibility");
    assert!(r.status().is_success());
    let out = run_with("skopeo", &["inspect", "--tls-verify=false", &src], &[], "").await;
    assert!(
        out.status.success(),
        "anonymous read of a public repository: {}",
        text(&out)
    );
    let copy = |creds: &'static str, dest: &str| {
        let dest = format!("docker://{}/{dest}", reg.host());
        let src = src.clone();
        async move {
            run_with(
                "skopeo",
                &[
                    "copy",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    "--src-creds",
                    creds,
                    "--dest-creds",
                    creds,
                    &src,
                    &dest,
                ],
                &[],
                "",
            )
            .await
        }
    };
    let out = copy("alice:alice-password", "team/skopeo:v1").await;
    assert!(out.status.success(), "{}", text(&out));
    let out = copy("bob:bob-password", "team/skopeo:v2").await;
    assert!(!out.status.success(), "bob may not push");
    let out = copy("alice:alice-password", "elsewhere/skopeo:v1").await;
    assert!(
        !out.status.success(),
        "alice may not push outside team/*: {}",
        text(&out)
    );
}
