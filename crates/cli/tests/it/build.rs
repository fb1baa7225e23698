//! Agents as content, end to end: `agent init`, `agent build` on a base image from the
//! runtime table (served by our registry, since no public one is reachable here), push with
//! the agent.yaml artifact, then search, versions, ratings and pull; and in the ignored test,
//! docker and skopeo pulling what `agent build` made and docker running it.

use std::path::Path;

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, push_image, rootfs_tar, run_ok, unique};

/// A runtime table whose python 3.11 is `base/python:3.11` on `host`.
fn runtime_table(dir: &Path, host: &str) -> String {
    let path = dir.join("runtime-registry.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: aegis.ai/v1\nkind: RuntimeRegistry\nspec:\n  registry_url: {host}\n  runtimes:\n    python:\n      \"3.11\": {{image: \"base/python:3.11\"}}\n"
        ),
    )
    .expect("write table");
    path.to_string_lossy().into_owned()
}

/// A server holding `base/python:3.11` (one layer, `base_layer`), a temp dir, and a runtime
/// table in it whose python 3.11 is that image.
async fn base_python(base_layer: Vec<u8>) -> (TestServer, tempfile::TempDir, String) {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    push_image(&server.url, "base/python", "3.11", &[base_layer]).await;
    let table = runtime_table(dir.path(), server.host());
    (server, dir, table)
}

/// `agent init`, then an agent.yaml with searchable metadata and a command busybox can run.
async fn project(agent: &Agent, dir: &Path, name: &str) -> String {
    let project = dir.join("project");
    agent
        .run(&["init", name, "--dir", &project.to_string_lossy()])
        .await
        .ok();
    std::fs::write(project.join("message.txt"), "hello from a built agent\n").expect("write");
    std::fs::write(project.join("notes.env"), "SECRET=1\n").expect("write");
    std::fs::write(
        project.join("agent.yaml"),
        format!(
            r#"apiVersion: agent.dev/v1
kind: Agent
metadata:
  name: {name}
  version: 1.0.0
  description: Summarizes quarterly reports into bullet points
  author: Ann Lee
  tags: [finance, reports]
spec:
  runtime: python:3.11
  model: {{provider: openai, name: gpt-4o}}
  capabilities: [summarization, chat]
  environment: [{{name: GREETING, value: "${{GREETING}}"}}, {{name: API_KEY, from: secret}}]
  ports: [{{container: 8080}}]
  healthCheck: {{type: command, command: ["/bin/busybox", "true"], interval: 10s}}
  entrypoint: ["/bin/busybox", "cat", "/app/message.txt"]
"#
        ),
    )
    .expect("write agent.yaml");
    project.to_string_lossy().into_owned()
}

/// `agent build --push` of `project` as `image`, on the runtime `table`.
async fn build_and_push(agent: &Agent, image: &str, table: &str, project: &str) {
    agent
        .run(&[
            "build",
            "-t",
            image,
            "--runtime-registry",
            table,
            "--build-arg",
            "GREETING=hi",
            "--push",
            project,
        ])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn build_push_search_versions_rate_and_pull() {
    let (server, dir, table) = base_python(b"base layer".to_vec()).await;
    let host = server.host().to_owned();
    let agent = Agent::new();
    let project = project(&agent, dir.path(), "team/summarizer").await;
    let image = format!("{host}/team/summarizer:1.0.0");
    let build_args = [
        "build",
        "-t",
        &image,
        "--runtime-registry",
        &table,
        "--build-arg",
        "GREETING=hi",
        "-o",
        "json",
        &project,
    ];
    let first = agent.run(&build_args).await.ok().json();
    let second = agent.run(&build_args).await.ok().json();
    assert_eq!(
        first["digest"], second["digest"],
        "the same inputs build the same image"
    );
    assert_eq!(
        first["files"], 5,
        "{first}: .agentignore keeps notes.env out"
    );

    let inspect = agent.run(&["inspect", &image]).await.ok().json();
    let config = &inspect[0]["Config"]["config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/busybox", "cat", "/app/message.txt"])
    );
    assert_eq!(config["WorkingDir"], "/app");
    assert!(
        config["Env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e == "GREETING=hi"),
        "{config}"
    );
    assert!(
        !config["Env"].to_string().contains("API_KEY"),
        "secrets are not baked in"
    );
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/bin/busybox", "true"])
    );
    assert_eq!(
        inspect[0]["Agent"]["description"],
        "Summarizes quarterly reports into bullet points"
    );
    assert_eq!(
        inspect[0]["Agent"]["capabilities"],
        serde_json::json!(["summarization", "chat"])
    );
    assert_eq!(
        inspect[0]["Manifest"]["annotations"]["org.opencontainers.image.base.name"],
        format!("{host}/base/python:3.11")
    );

    let pushed = agent.run(&["push", &image, "-o", "json"]).await.ok().json();
    assert_eq!(pushed["digest"], first["digest"]);
    let agent_yaml = pushed["agent_yaml"]
        .as_str()
        .expect("agent.yaml artifact pushed")
        .to_owned();
    let referrers: serde_json::Value = reqwest::get(format!(
        "{}/v2/team/summarizer/referrers/{}",
        server.url,
        first["digest"].as_str().unwrap_or("")
    ))
    .await
    .expect("referrers")
    .json()
    .await
    .expect("json");
    assert_eq!(referrers["manifests"][0]["digest"], agent_yaml.as_str());
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/vnd.agent-registry.agent.v1+yaml"
    );

    // One call names the registry; the rest find it in AGENT_REGISTRY_URL.
    let found = agent
        .run(&["search", "quarterly", "--registry", &host, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["images"][0]["name"], "team/summarizer");
    assert_eq!(found["images"][0]["author"], "Ann Lee");
    let mut agent = agent;
    agent.env("AGENT_REGISTRY_URL", &host);
    let by_tag = agent
        .run(&[
            "search",
            "summarizer:1.0.0",
            "--capability",
            "chat",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(by_tag["images"][0]["tag"], "1.0.0");
    let none = agent
        .run(&["search", "quarterly", "--size", ">1GB", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(none["total"], 0);
    let table = agent.run(&["search", "summ"]).await.ok().stdout;
    assert!(
        table.starts_with("NAME") && table.contains("team/summarizer"),
        "{table}"
    );

    let versions = agent
        .run(&["versions", "team/summarizer", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(versions["latest_release"], "1.0.0");
    let rated = agent
        .run(&["rate", "team/summarizer", "4", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(rated["rating"], 4.0);
    agent
        .run(&["rate", "team/summarizer", "9"])
        .await
        .failed(1, "agent: STARS is 1 to 5");
    agent
        .run(&["versions", "team/nothing"])
        .await
        .failed(4, "agent: image not found in registry");

    let elsewhere = Agent::new();
    let pulled = elsewhere
        .run(&["pull", &image, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pulled["digest"], first["digest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_source_date_makes_builds_reproducible_across_edits_of_mtime() {
    let (_server, dir, table) = base_python(b"base layer".to_vec()).await;
    let mut agent = Agent::new();
    agent.env("SOURCE_DATE_EPOCH", "1700000000");
    let project = project(&agent, dir.path(), "repro").await;
    let args = [
        "build",
        "-t",
        "repro:1",
        "--runtime-registry",
        &table,
        "--build-arg",
        "GREETING=x",
        "-q",
        &project,
    ];
    let one = agent.run(&args).await.ok().stdout;
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(Path::new(&project).join("message.txt"))
        .expect("open")
        .set_modified(later)
        .expect("touch");
    let two = agent.run(&args).await.ok().stdout;
    assert_eq!(one, two);
    let inspect = agent.run(&["inspect", "repro:1"]).await.ok().json();
    assert_eq!(inspect[0]["Config"]["created"], "2023-11-14T22:13:20Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_agent_file_lists_every_problem_and_builds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("agent.yaml"),
        "apiVersion: agent.dev/v1\nkind: Agent\nmetadata: {name: Bad Name}\nspec:\n  runtime: python\n  ports: [{container: 0}]\n  healtcheck: {}\n",
    )
    .expect("write");
    let agent = Agent::new();
    let run = agent
        .run(&["build", &dir.path().to_string_lossy()])
        .await
        .failed(1, "agent: ");
    for needle in [
        "(3 problems)",
        "metadata.name",
        "spec.ports[0].container",
        "spec.healtcheck: unknown field",
    ] {
        assert!(run.stderr.contains(needle), "{needle} in {}", run.stderr);
    }
    let images = agent.run(&["images", "-q"]).await.ok().stdout;
    assert!(images.is_empty());
    let unknown = agent
        .run(&[
            "build",
            "-t",
            "x:1",
            "--runtime-registry",
            "/nonexistent.yaml",
            &dir.path().to_string_lossy(),
        ])
        .await;
    assert_ne!(unknown.code, 0);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running, skopeo and busybox-static: run scripts/test"]
async fn docker_and_skopeo_pull_what_agent_build_made_and_docker_runs_it() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let rootfs = std::fs::read(rootfs_tar(scratch.path(), "base").await).expect("rootfs");
    let (server, dir, table) = base_python(rootfs).await;
    let host = server.host().to_owned();
    let agent = Agent::new();
    let project = project(&agent, dir.path(), "team/runner").await;
    let image = format!("{host}/team/runner:{}", unique());
    build_and_push(&agent, &image, &table, &project).await;

    let out = run_ok("docker", &["run", "--rm", "--pull", "always", &image]).await;
    assert_eq!(out, "hello from a built agent\n");
    let health = run_ok(
        "docker",
        &[
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            &image,
        ],
    )
    .await;
    assert_eq!(health.trim(), r#"["CMD","/bin/busybox","true"]"#);
    run_ok("docker", &["rmi", &image]).await;

    let oci = dir.path().join("oci");
    run_ok(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:x", oci.display()),
        ],
    )
    .await;
    let inspected = run_ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ],
    )
    .await;
    assert!(
        inspected.contains("Summarizes quarterly reports"),
        "{inspected}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_ensure_takes_the_runtime_and_pull_policy_of_an_agent_file() {
    let (server, dir, table) = base_python(b"base layer".to_vec()).await;
    let agent = Agent::new();
    let project = project(&agent, dir.path(), "node/agent").await;
    let file = format!("{project}/agent.yaml");
    let never = std::fs::read_to_string(&file)
        .expect("read")
        .replace("spec:\n", "spec:\n  image_pull_policy: Never\n");
    std::fs::write(&file, never).expect("write");

    let refused = agent
        .run(&[
            "image",
            "ensure",
            "--agent",
            &file,
            "--runtime-registry",
            &table,
        ])
        .await
        .failed(4, "agent: image not found");
    assert!(
        refused.stderr.contains("base/python:3.11"),
        "{}",
        refused.stderr
    );
    let pulled = agent
        .run(&[
            "image",
            "ensure",
            "--agent",
            &file,
            "--runtime-registry",
            &table,
            "--pull",
            "always",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        pulled["image"],
        format!("{}/base/python:3.11", server.host())
    );
    assert_eq!(pulled["policy"], "Always");
}

/// `agent run agent.yaml`: the image `agent build` named from the file, pulled into docker
/// from the registry, run with the file's port published on its host port and its
/// `from: secret` variable taken from the environment; refused when that variable is unset.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running and busybox-static: run scripts/test"]
async fn agent_run_of_an_agent_file_runs_its_image_with_its_ports_and_secrets() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let rootfs = std::fs::read(rootfs_tar(scratch.path(), "base").await).expect("rootfs");
    let (server, dir, table) = base_python(rootfs).await;
    let host = server.host().to_owned();
    let mut agent = Agent::new();
    let project = project(&agent, dir.path(), "team/served").await;
    let version = format!("1.0.{}", unique() % 1_000_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let file = format!("{project}/agent.yaml");
    let text = std::fs::read_to_string(&file)
        .expect("read")
        .replace("version: 1.0.0", &format!("version: {version}"))
        .replace("ports: [{container: 8080}]", &format!("ports: [{{container: 8080, host: {port}}}]"))
        .replace(
            r#"entrypoint: ["/bin/busybox", "cat", "/app/message.txt"]"#,
            r#"entrypoint: ["/bin/busybox", "sh", "-c", "echo $GREETING $API_KEY; /bin/busybox httpd -p 8080 -h /app; /bin/busybox sleep 5"]"#,
        );
    std::fs::write(&file, text).expect("write");
    let image = format!("{host}/team/served:{version}");
    build_and_push(&agent, &image, &table, &project).await;

    let refused = agent
        .run(&["run", &file, "--registry", &host])
        .await
        .failed(1, "agent: ");
    assert!(
        refused
            .stderr
            .contains("API_KEY comes from secret: set it in this environment"),
        "{}",
        refused.stderr
    );
    agent.env("API_KEY", "s3cret");
    let running = agent
        .command(&["run", &file, "--registry", &host, "--pull", "always"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent run");
    let url = format!("http://127.0.0.1:{port}/message.txt");
    let mut served = None;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            served = r.text().await.ok();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some("hello from a built agent\n"));
    let out = running.wait_with_output().await.expect("agent run output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hi s3cret\n");
    run_ok("docker", &["rmi", &image]).await;
}
