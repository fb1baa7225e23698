//! The everyday commands against our registry: pull, images, tag, push, rmi, prune, inspect,
//! profiles.

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, noise, push_image};

#[tokio::test(flavor = "multi_thread")]
async fn pull_list_tag_push_remove_and_prune_round_trip() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let digest = push_image(
        &server.url,
        "team/base",
        "1",
        &[noise(300_000, 1), noise(10, 2)],
    )
    .await;
    let agent = Agent::new();

    let pulled = agent
        .run(&["pull", &format!("{host}/team/base:1"), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pulled["name"], format!("{host}/team/base:1"));
    assert_eq!(pulled["digest"], digest.to_string());
    assert_eq!(pulled["registry_url"], server.url);
    assert_eq!(pulled["source"], "Downloaded");
    let again = agent
        .run(&["pull", &format!("{host}/team/base:1"), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(again["source"], "Cached", "a second pull moves no bytes");

    let table = agent.run(&["images"]).await.ok().stdout;
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(table.contains(&format!("{host}/team/base")), "{table}");

    let tagged = agent
        .run(&[
            "tag",
            "--semver",
            "v2.1.0",
            "--sha",
            "abc1234",
            &format!("{host}/team/base:1"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(tagged["tags"].as_array().map(Vec::len), Some(4), "{tagged}");

    // All local tags of the repository go up; blobs the registry has are not sent again.
    let pushed = agent
        .run(&[
            "push",
            &format!("{host}/team/base:1"),
            "--all-tags",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let reports = pushed.as_array().expect("one report per tag");
    assert_eq!(reports.len(), 5);
    for r in reports {
        assert_eq!(r["digest"], digest.to_string(), "{r}");
        assert_eq!(r["uploaded"], 0, "{r}");
    }
    let tags: serde_json::Value = reqwest::get(format!("{}/v2/team/base/tags/list", server.url))
        .await
        .expect("tags")
        .json()
        .await
        .expect("json");
    assert_eq!(
        tags["tags"],
        serde_json::json!(["1", "2", "2.1", "2.1.0", "sha-abc1234"])
    );

    // A push to another repository of the same registry mounts instead of uploading.
    agent
        .run(&[
            "tag",
            &format!("{host}/team/base:1"),
            &format!("{host}/team/copy:1"),
        ])
        .await
        .ok();
    let copy = agent
        .run(&["push", &format!("{host}/team/copy:1"), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(copy["uploaded"], 0, "{copy}");

    let rmi = agent
        .run(&["rmi", &format!("{host}/team/base:2")])
        .await
        .ok();
    assert!(rmi.stdout.contains("Untagged:"), "{}", rmi.stdout);
    let prune = agent
        .run(&["image", "prune", "-a", "-o", "json"])
        .await
        .ok()
        .json();
    assert!(
        prune["reclaimed"].as_u64().unwrap_or(0) >= 300_000,
        "{prune}"
    );
    let left = agent.run(&["images", "-a", "-o", "json"]).await.ok().json();
    assert_eq!(left, serde_json::json!([]));
    let blobs = crate::support::files_under(&agent.store().join("blobs"));
    assert!(blobs.is_empty(), "prune -a leaves no blobs: {blobs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pushing_a_local_image_to_another_registry_keeps_its_path() {
    let source = TestServer::start().await;
    let dest = TestServer::start().await;
    push_image(&source.url, "agents/summarizer", "1.0", &[noise(1000, 3)]).await;
    let agent = Agent::new();
    let name = format!("{}/agents/summarizer:1.0", source.host());
    agent.run(&["pull", "-q", &name]).await.ok();
    let r = agent
        .run(&["push", &name, "--registry", &dest.url])
        .await
        .ok();
    for field in ["Repository:", "Tag:", "Digest:", "Size:", "Registry URL:"] {
        assert!(r.stdout.contains(field), "{field} in\n{}", r.stdout);
    }
    assert!(
        r.stdout
            .contains(&format!("{}/agents/summarizer", dest.host())),
        "{}",
        r.stdout
    );
    let status = reqwest::get(format!("{}/v2/agents/summarizer/manifests/1.0", dest.url))
        .await
        .expect("get")
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_filters_by_name_label_and_dangling() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    push_image(&server.url, "a", "1", &[noise(10, 4)]).await;
    push_image(&server.url, "b", "2", &[noise(10, 5)]).await;
    let agent = Agent::new();
    agent
        .run(&["pull", "-q", &format!("{host}/a:1")])
        .await
        .ok();
    agent
        .run(&["pull", "-q", &format!("{host}/b:2")])
        .await
        .ok();
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|i| {
                format!(
                    "{}:{}",
                    i["repository"].as_str().unwrap_or(""),
                    i["tag"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let by_name = agent
        .run(&["images", &format!("{host}/a"), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(names(by_name), [format!("{host}/a:1")]);
    let by_label = agent
        .run(&[
            "images",
            "--filter",
            "label=org.opencontainers.image.version=2",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(names(by_label), [format!("{host}/b:2")]);
    let glob = agent
        .run(&[
            "images",
            "--filter",
            &format!("reference={host}/*"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(names(glob).len(), 2);

    // Retagging b:2 onto a's image leaves b's old image dangling.
    agent
        .run(&["tag", &format!("{host}/a:1"), &format!("{host}/b:2")])
        .await
        .ok();
    let dangling = agent
        .run(&["images", "--filter", "dangling=true", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(names(dangling), ["<none>:<none>"]);
    assert_eq!(
        names(agent.run(&["images", "-o", "json"]).await.ok().json()).len(),
        2
    );
    assert_eq!(
        names(agent.run(&["images", "-a", "-o", "json"]).await.ok().json()).len(),
        3
    );

    let bad = agent.run(&["images", "--filter", "colour=red"]).await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("unknown filter \"colour\""),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_shows_manifest_config_and_names() {
    let server = TestServer::start().await;
    let digest = push_image(&server.url, "x", "1", &[noise(10, 6)]).await;
    let agent = Agent::new();
    let name = format!("{}/x:1", server.host());
    agent.run(&["pull", "-q", &name]).await.ok();
    let out = agent.run(&["inspect", &name]).await.ok().json();
    assert_eq!(out[0]["Digest"], digest.to_string());
    assert_eq!(out[0]["Names"], serde_json::json!([name]));
    assert_eq!(out[0]["Config"]["os"], "linux");
    assert_eq!(out[0]["Manifest"]["schemaVersion"], 2);
    let missing = agent.run(&["inspect", "nope:1"]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("no such image in the local store: nope:1"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_choose_the_registry_and_unset_variables_are_named() {
    let server = TestServer::start().await;
    push_image(&server.url, "p", "1", &[noise(10, 7)]).await;
    let mut agent = Agent::new();
    std::fs::create_dir_all(agent.aac_home()).expect("mkdir");
    std::fs::write(
        agent.aac_home().join("config.yaml"),
        "registries:\n  default:\n    url: ${REG_URL}\n  other:\n    url: http://127.0.0.1:1\n",
    )
    .expect("config");
    let unset = agent.run(&["images"]).await;
    assert_eq!(unset.code, 1);
    assert!(
        unset
            .stderr
            .contains("registries.default.url uses ${REG_URL}, which is not set"),
        "{}",
        unset.stderr
    );
    agent.env("REG_URL", &server.url);
    // The default profile's registry serves images that name none.
    let r = agent.run(&["pull", "p:1", "-o", "json"]).await.ok().json();
    assert_eq!(r["name"], format!("{}/p:1", server.host()));
    // --profile wins over it.
    let other = agent.run(&["pull", "p:1", "--profile", "other"]).await;
    assert_eq!(other.code, 5, "{}", other.stderr);
    let missing = agent.run(&["pull", "p:1", "--profile", "nope"]).await;
    assert!(
        missing.stderr.contains("defined: default, other"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_with_help() {
    let agent = Agent::new();
    let r = agent.run(&["push"]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Usage"), "{}", r.stderr);
    let help = agent.run(&["push", "--help"]).await.ok();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    let bad = agent.run(&["pull", "UPPER:1"]).await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("image reference \"UPPER:1\" is invalid"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_pulling_into_one_store_at_once_all_succeed() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let shared = noise(2 << 20, 20);
    push_image(&server.url, "c", "1", &[shared.clone(), noise(1 << 20, 21)]).await;
    push_image(&server.url, "c", "2", &[shared, noise(1 << 20, 22)]).await;
    let agent = Agent::new();
    let one = format!("{host}/c:1");
    let two = format!("{host}/c:2");
    let runs = [
        agent.command(&["pull", "-q", &one]).output(),
        agent.command(&["pull", "-q", &one]).output(),
        agent.command(&["pull", "-q", &two]).output(),
    ];
    for out in futures_util::future::join_all(runs).await {
        let out = out.expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = agent.run(&["images", "-o", "json"]).await.ok().json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    // 2 configs, 1 shared layer, 2 own layers, 2 manifests; no partial downloads left.
    let blobs = crate::support::files_under(&agent.store().join("blobs"));
    assert_eq!(blobs.len(), 7, "{blobs:?}");
    let partials: Vec<_> = crate::support::files_under(&agent.store().join("ingest"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_ensure_resolves_a_runtime_and_follows_the_pull_policy() {
    let server = TestServer::start().await;
    push_image(&server.url, "base/python", "3.12", &[noise(1000, 30)]).await;
    let agent = Agent::new();
    let table = agent.home.path().join("runtimes.yaml");
    std::fs::write(
        &table,
        format!(
            "apiVersion: aegis.ai/v1\nkind: RuntimeRegistry\nspec:\n  registry_url: {}\n  runtimes:\n    python:\n      \"3.11\": {{image: \"base/python:3.11\", deprecated: true}}\n      \"3.12\": {{image: \"base/python:3.12\"}}\n",
            server.host()
        ),
    )
    .expect("table");
    let table = table.to_string_lossy().into_owned();
    let events = agent.home.path().join("events.jsonl");
    let events_arg = events.to_string_lossy().into_owned();
    let ensure = |policy: &str| -> Vec<String> {
        [
            "image",
            "ensure",
            "--runtime",
            "python:3.12",
            "--runtime-registry",
            &table,
            "--pull",
            policy,
            "--events",
            &events_arg,
            "--execution-id",
            "run-1",
            "-o",
            "json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |policy: &str| {
        let args = ensure(policy);
        let agent = &agent;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            agent.run(&args).await
        }
    };

    let never = run("never").await;
    assert_eq!(never.code, 4, "{}", never.stderr);
    assert!(
        never.stderr.contains("pull policy is Never"),
        "{}",
        never.stderr
    );

    let first = run("missing").await.ok().json();
    assert_eq!(first["source"], "Downloaded");
    assert_eq!(
        first["image"],
        format!("{}/base/python:3.12", server.host())
    );
    let again = run("never").await.ok().json();
    assert_eq!(again["source"], "Cached");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "ImagePullStarted",
            "ImagePullFailed",
            "ImagePullStarted",
            "ImagePullCompleted",
            "ImageCached",
            "ImagePullStarted",
            "ImagePullCompleted"
        ]
    );
    assert!(lines.iter().all(|e| e["execution_id"] == "run-1"));

    let deprecated = agent
        .run(&[
            "image",
            "ensure",
            "--runtime",
            "python:3.11",
            "--runtime-registry",
            &table,
            "--pull",
            "never",
        ])
        .await;
    assert!(
        deprecated
            .stderr
            .contains("warning: python 3.11 is deprecated; supported versions: 3.12"),
        "{}",
        deprecated.stderr
    );
    let unknown = agent
        .run(&["image", "ensure", "--runtime", "cobol:1"])
        .await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("available: go, java, javascript, nodejs, python, rust, typescript"),
        "{}",
        unknown.stderr
    );
    let listed = agent
        .run(&["image", "runtimes", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(14));
}
