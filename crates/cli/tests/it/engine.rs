//! `agent run` and `--engine`: images ensured in a real Docker engine (and Podman's API
//! service) from our registry, and containers run there. Ignored by default: they need
//! dockerd running and podman installed (scripts/test sees to both).

use std::process::Stdio;
use std::time::Duration;

use agent_registry_server::testing::TestServer;

use crate::support::{
    Agent, Fault, FaultProxy, Tmpfs, docker_image, noise, push_image, rootfs_tar, run_ok, unique,
};

/// The digest the registry at `host` holds for `repo:tag`, asked as a pull would ask.
async fn stored_digest(host: &str, repo: &str, tag: &str) -> String {
    let stored = reqwest::Client::new()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .expect("head");
    assert_eq!(stored.status(), reqwest::StatusCode::OK, "{repo}:{tag}");
    stored.headers()["docker-content-digest"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running: run scripts/test"]
async fn agent_run_pulls_into_docker_as_the_policy_says_and_runs_the_image() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = docker_image(
        server.host(),
        "engine/busybox",
        dir.path(),
        "hello from the agent",
    )
    .await;
    let agent = Agent::new();
    let events = agent.home.path().join("events.jsonl");
    let events_arg = events.to_string_lossy().into_owned();

    let never = agent
        .run(&[
            "run",
            &image,
            "--pull",
            "never",
            "--",
            "/bin/busybox",
            "true",
        ])
        .await;
    assert_eq!(never.code, 4, "{}", never.stderr);

    let first = agent
        .run(&[
            "run",
            &image,
            "--events",
            &events_arg,
            "--",
            "/bin/busybox",
            "cat",
            "/marker.txt",
        ])
        .await
        .ok();
    assert_eq!(first.stdout, "hello from the agent");
    let second = agent
        .run(&[
            "run",
            &image,
            "--pull",
            "never",
            "-e",
            "GREETING=hi",
            "--events",
            &events_arg,
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "echo $GREETING",
        ])
        .await
        .ok();
    assert_eq!(second.stdout, "hi\n");
    let sources: Vec<String> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["source"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(sources, ["Downloaded", "Cached"]);

    let failing = agent
        .run(&[
            "run",
            &image,
            "--pull",
            "never",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "exit 3",
        ])
        .await;
    assert_eq!(failing.code, 3, "the container's exit status is agent's");

    let missing = agent
        .run(&[
            "image",
            "ensure",
            &format!("{}/engine/none:1", server.host()),
            "--engine",
            "docker",
        ])
        .await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    run_ok("docker", &["rmi", &image]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs podman and docker (to build the image): run scripts/test"]
async fn agent_run_works_on_podmans_api_service() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = docker_image(
        server.host(),
        "engine/busybox",
        dir.path(),
        "hello from podman",
    )
    .await;
    // Podman talks TLS to registries unless told otherwise: mark ours insecure for the service.
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            server.host()
        ),
    )
    .expect("registries.conf");
    // Podman raises its containers' open-file and process limits (to 1048576 files) by
    // default, above what these machines let a process have: give them usual limits instead.
    let containers_conf = dir.path().join("containers.conf");
    std::fs::write(
        &containers_conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n",
    )
    .expect("containers.conf");
    let socket = dir.path().join("podman.sock");
    let _service = tokio::process::Command::new("podman")
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .env("CONTAINERS_REGISTRIES_CONF", &conf)
        .env("CONTAINERS_CONF", &containers_conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("podman is installed");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = Agent::new();
    let socket_arg = socket.to_string_lossy().into_owned();
    let out = agent
        .run(&[
            "run",
            &image,
            "--engine",
            "podman",
            "--engine-socket",
            &socket_arg,
            "--",
            "/bin/busybox",
            "cat",
            "/marker.txt",
        ])
        .await
        .ok();
    assert_eq!(out.stdout, "hello from podman");

    // What podman holds goes back to the registry under a new name with `push --engine`.
    let copy = format!("{}/engine/from-podman:{}", server.host(), unique());
    run_ok("podman", &["tag", &image, &copy]).await;
    let pushed = agent
        .run(&[
            "push",
            "--engine",
            "podman",
            "--engine-socket",
            &socket_arg,
            &copy,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let digest = pushed["digest"].as_str().expect("digest");
    let (_, tag) = copy.rsplit_once(':').expect("tag");
    assert_eq!(
        stored_digest(server.host(), "engine/from-podman", tag).await,
        digest
    );
    let _ = tokio::process::Command::new("podman")
        .args(["rmi", "-f", &image, &copy])
        .output()
        .await;
}

/// `--engine docker` on `images`, `push` and `pull`: an image docker holds goes to our
/// registry as the engine pushes it and comes back the same, and the local store is never
/// used.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running: run scripts/test"]
async fn push_images_and_pull_work_on_the_images_docker_holds() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path(), "pushed by the engine").await;
    let tag = unique().to_string();
    let repository = format!("{}/engine/pushed", server.host());
    let image = format!("{repository}:{tag}");
    run_ok("docker", &["import", &tar.to_string_lossy(), &image]).await;
    let agent = Agent::new();

    let listed = agent
        .run(&["images", "--engine", "docker", &repository, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["tag"], tag.as_str());
    let table = agent
        .run(&["images", "--engine", "docker", &repository])
        .await
        .ok();
    assert!(
        table.stdout.starts_with("REPOSITORY") && table.stdout.contains(&tag),
        "{}",
        table.stdout
    );

    let pushed = agent
        .run(&["push", "--engine", "docker", &image, "-o", "json"])
        .await
        .ok()
        .json();
    let digest = pushed["digest"].as_str().expect("digest").to_owned();
    assert_eq!(
        stored_digest(server.host(), "engine/pushed", &tag).await,
        digest
    );

    run_ok("docker", &["rmi", &image]).await;
    let pulled = agent
        .run(&["pull", "--engine", "docker", &image, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pulled["digest"], digest.as_str(), "{pulled}");
    assert_eq!(pulled["source"], "Downloaded");
    let marker = run_ok(
        "docker",
        &["run", "--rm", &image, "/bin/busybox", "cat", "/marker.txt"],
    )
    .await;
    assert_eq!(marker, "pushed by the engine");
    let local = agent.run(&["images", "-o", "json"]).await.ok().json();
    assert_eq!(local, serde_json::json!([]), "the local store was used");

    let absent = agent
        .run(&[
            "push",
            "--engine",
            "docker",
            &format!("{repository}:absent"),
        ])
        .await;
    assert_eq!(absent.code, 4, "{}", absent.stderr);
    assert!(
        absent.stderr.contains("the engine has no image"),
        "{}",
        absent.stderr
    );
    agent
        .run(&["images", "--engine", "docker", "--filter", "dangling=true"])
        .await
        .failed(1, "agent: --filter works on the local store");
    agent
        .run(&["images", "--engine-socket", "/tmp/none.sock"])
        .await
        .failed(1, "agent: --engine-socket needs --engine");
    run_ok("docker", &["rmi", &image]).await;

    // Importing twice under one name leaves the first image untagged: a prune of the
    // engine removes it and says so in an ImageRemoved event.
    let spare = format!("{repository}:spare");
    let first = run_ok("docker", &["import", &tar.to_string_lossy(), &spare]).await;
    let first = first.trim();
    run_ok("docker", &["import", &tar.to_string_lossy(), &spare]).await;
    let events = agent.home.path().join("prune-events.jsonl");
    let pruned = agent
        .run(&[
            "image",
            "prune",
            "--engine",
            "docker",
            "--events",
            &events.to_string_lossy(),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let deleted: Vec<&str> = pruned["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(deleted.contains(&first), "{pruned}");
    let removed = std::fs::read_to_string(&events).expect("events");
    assert!(
        removed
            .lines()
            .any(|l| l.contains("ImageRemoved") && l.contains(first)),
        "{removed}"
    );
    run_ok("docker", &["rmi", &spare]).await;
}

/// Pulls into docker fail with the class a node operator acts on, for each way a registry
/// fails: down (5), credentials refused (3), rate limited (7), too slow for `--timeout` (5).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running: run scripts/test"]
async fn engine_pull_failures_are_classified_for_each_registry_fault() {
    let agent = Agent::new();
    let ensure = |image: String, extra: &'static [&'static str]| {
        let agent = &agent;
        async move {
            let mut args = vec!["image", "ensure", "--engine", "docker", "--pull", "always"];
            args.extend_from_slice(extra);
            args.push(&image);
            agent.run(&args).await
        }
    };

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let down = ensure(format!("127.0.0.1:{port}/a:1"), &[]).await;
    assert_eq!(down.code, 5, "down: {}", down.stderr);

    let locked = TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
    })
    .await;
    let refused = ensure(format!("{}/private/a:1", locked.host()), &[]).await;
    assert_eq!(refused.code, 3, "401: {}", refused.stderr);

    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = docker_image(server.host(), "engine/busybox", dir.path(), "faults").await;
    let path = image.split_once('/').map_or("", |(_, p)| p).to_owned();
    let limited = FaultProxy::start(&server.url, Fault::AlwaysRateLimit).await;
    let r = ensure(format!("{}/{path}", limited.host()), &[]).await;
    assert_eq!(r.code, 7, "429: {}", r.stderr);

    let slow = FaultProxy::start(&server.url, Fault::Throttle(200)).await;
    let started = std::time::Instant::now();
    let r = ensure(format!("{}/{path}", slow.host()), &["--timeout", "2"]).await;
    assert_eq!(r.code, 5, "slow: {}", r.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout held"
    );

    // The registry itself still serves the image.
    let ok = ensure(image.clone(), &[]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    run_ok("docker", &["rmi", &image]).await;
}

/// A node whose image store is full: the pull into its engine fails as DiskFull (exit 6)
/// with the operator's hint, the ImagePullFailed event says so, and nothing is left behind.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root (a tmpfs) and dockerd: run scripts/test"]
async fn engine_pull_into_a_full_image_store_is_disk_full() {
    let engine = OwnDockerd::start("48m").await;
    let server = TestServer::start().await;
    push_image(&server.url, "engine/big", "1", &[noise(80 << 20, 9)]).await;
    let image = format!("{}/engine/big:1", server.host());
    let agent = Agent::new();
    let events = agent.home.path().join("events.jsonl");
    let socket = engine.socket();
    let full = agent
        .run(&[
            "image",
            "ensure",
            "--engine",
            "docker",
            "--engine-socket",
            &socket,
            "--pull",
            "always",
            "--events",
            &events.to_string_lossy(),
            &image,
        ])
        .await;
    assert_eq!(full.code, 6, "{}", full.stderr);
    assert!(
        full.stderr.contains("no space left on device")
            && full.stderr.contains("agent image prune"),
        "{}",
        full.stderr
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["ImagePullStarted", "ImagePullFailed"], "{lines:?}");
    assert_eq!(lines[1]["reason"], "DiskFull", "{lines:?}");
    let left = engine.docker(&["images", "-q"]).await;
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty());
}

/// A dockerd of the test's own, its data on a tmpfs of `size`, so a test may prune every image
/// or fill its disk without touching what other tests hold in the shared one. It shares the
/// host's network, so it reaches registries on loopback, with a bridge of its own and no
/// iptables rules: with `--bridge=none` dockerd deletes docker0, the shared daemon's bridge.
struct OwnDockerd {
    dir: tempfile::TempDir,
    daemon: std::process::Child,
    _bridge: Bridge,
    _data: Tmpfs,
}

/// A network bridge with an address of its own, removed when dropped. Needs root.
struct Bridge(String);

impl Bridge {
    fn create() -> Bridge {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = (std::process::id() % 200) * 50 + n % 50;
        let name = format!("ar{}", 10_000 + tag);
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip").args(args).status();
            assert!(status.is_ok_and(|s| s.success()), "ip {}", args.join(" "));
        };
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["link", "add", &name, "type", "bridge"]);
        let bridge = Bridge(name);
        let address = format!("10.{}.{}.1/24", 200 + tag / 250, tag % 250);
        ip(&["addr", "add", &address, "dev", &bridge.0]);
        bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

impl OwnDockerd {
    async fn start(size: &str) -> OwnDockerd {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = Tmpfs::mount(&dir.path().join("data"), size);
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log");
        let bridge = Bridge::create();
        let daemon = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg(format!("--bridge={}", bridge.0))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd is installed (scripts/test installs docker.io)");
        let own = OwnDockerd {
            dir,
            daemon,
            _bridge: bridge,
            _data: data,
        };
        for _ in 0..100 {
            if own.docker(&["info"]).await.status.success() {
                return own;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "dockerd did not start:\n{}",
            std::fs::read_to_string(own.dir.path().join("dockerd.log")).unwrap_or_default()
        );
    }

    fn socket(&self) -> String {
        self.dir
            .path()
            .join("docker.sock")
            .to_string_lossy()
            .into_owned()
    }

    async fn docker(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new("docker")
            .args(["-H", &format!("unix://{}", self.socket())])
            .args(args)
            .output()
            .await
            .expect("docker runs")
    }

    /// `docker` on this daemon; fails the test unless it succeeds.
    async fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args).await;
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for OwnDockerd {
    fn drop(&mut self) {
        // A clean stop unmounts its layers, so the tmpfs under them can go too.
        let _ = std::process::Command::new("kill")
            .arg(self.daemon.id().to_string())
            .status();
        let _ = self.daemon.wait();
    }
}

/// `agent image df --engine` counts as `docker system df` does, and `agent image prune -a
/// --engine` removes every image no container uses, with an ImageRemoved event for each.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts a dockerd of its own on a tmpfs: needs root and docker.io; run scripts/test"]
async fn disk_usage_and_prune_all_on_an_engine() {
    let own = OwnDockerd::start("256m").await;
    let socket = own.socket();
    let dir = tempfile::tempdir().expect("tempdir");
    let used_tar = rootfs_tar(&dir.path().join("used"), "used").await;
    let unused_tar = rootfs_tar(&dir.path().join("unused"), "unused").await;
    let used = own
        .docker_ok(&["import", &used_tar.to_string_lossy(), "agents/used:1"])
        .await;
    let unused = own
        .docker_ok(&["import", &unused_tar.to_string_lossy(), "agents/unused:1"])
        .await;
    own.docker_ok(&[
        "create",
        "--network",
        "none",
        "agents/used:1",
        "/bin/busybox",
        "true",
    ])
    .await;
    let agent = Agent::new();
    let on_engine = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--engine", "docker", "--engine-socket", &socket].map(str::to_owned));
        all
    };
    let run = |args: Vec<String>| {
        let agent = &agent;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            agent.run(&args).await.ok()
        }
    };
    let listed = run(on_engine(&["images", "-o", "json"])).await.json();
    let size_of = |id: &str| {
        listed
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["size"].as_u64())
            .unwrap_or_else(|| panic!("{id} is not listed: {listed}"))
    };
    let (used_size, unused_size) = (size_of(&used), size_of(&unused));

    let df = run(on_engine(&["image", "df", "-o", "json"])).await.json();
    assert_eq!(df["images"], 2, "{df}");
    assert_eq!(df["active"], 1, "{df}");
    assert_eq!(df["size"], used_size + unused_size, "{df}");
    assert_eq!(df["reclaimable"], unused_size, "{df}");
    let table = run(on_engine(&["image", "df"])).await;
    assert!(
        table.stdout.starts_with("IMAGES") && table.stdout.contains("RECLAIMABLE"),
        "{}",
        table.stdout
    );

    let events = agent.home.path().join("events.jsonl");
    let events_arg = events.to_string_lossy().into_owned();
    let pruned = run(on_engine(&[
        "image",
        "prune",
        "-a",
        "--events",
        &events_arg,
        "-o",
        "json",
    ]))
    .await
    .json();
    assert_eq!(pruned["deleted"], serde_json::json!([unused]), "{pruned}");
    let removed: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["type"], "ImageRemoved", "{removed:?}");
    assert_eq!(removed[0]["image"], "agents/unused:1", "{removed:?}");
    assert_eq!(removed[0]["digest"], unused.as_str(), "{removed:?}");
    let left = run(on_engine(&["images", "-q"])).await;
    assert_eq!(
        left.stdout.trim(),
        &used.trim_start_matches("sha256:")[..12]
    );
    let df = run(on_engine(&["image", "df", "-o", "json"])).await.json();
    assert_eq!(
        (
            df["images"].as_u64(),
            df["active"].as_u64(),
            df["reclaimable"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{df}"
    );
}
