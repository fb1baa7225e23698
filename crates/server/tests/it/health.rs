//! Probes, the effective configuration, and the free-space floor: `/healthz`, `/readyz` and `/api/v1/health` answer without
//! credentials and report each check; readiness fails while storage cannot be written or free
//! space is under the floor; a push that would cross the floor is refused before a byte is written.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestRegistry, TinyFs, assert_error, sha256, spawn_binary};

fn check<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {health}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_anyone_and_report_each_check() {
    let reg = TestRegistry::start_with(|c| c.auth.enabled = true).await;
    let live = reg
        .http
        .get(format!("{}/healthz", reg.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), StatusCode::OK);

    let ready = reg
        .http
        .get(format!("{}/readyz", reg.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "no credentials needed");
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["status"], "ok", "{ready}");
    for name in ["storage", "database", "free_space"] {
        let c = check(&ready, name);
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["latency_ms"].as_f64().is_some(), "{c}");
    }
    assert_eq!(check(&ready, "storage")["message"], "writable");

    let plain = reg.get_json_at("/api/v1/health").await;
    assert_eq!(plain["status"], "ok");
    assert_eq!(plain["version"], env!("CARGO_PKG_VERSION"));
    assert!(plain["uptime_secs"].as_u64().is_some(), "{plain}");
    assert!(plain.get("checks").is_none(), "checks only when detailed");
    let detailed = reg.get_json_at("/api/v1/health?detailed=true").await;
    assert_eq!(detailed["checks"].as_array().map(Vec::len), Some(3));

    let r = reg
        .http
        .get(format!("{}/api/v1/health?detailed=maybe", reg.url))
        .send()
        .await
        .expect("health");
    let message = assert_error(r, StatusCode::BAD_REQUEST, "PARAMETER_INVALID").await;
    assert!(message.contains("detailed"), "{message}");
}

async fn ready(http: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("readyz");
    (r.status(), r.json().await.expect("json"))
}

/// Sets or clears the immutable attribute of `dir`: not even root may then add files to it.
async fn immutable(dir: &std::path::Path, on: bool) {
    let status = tokio::process::Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(dir)
        .status()
        .await
        .expect("run chattr");
    assert!(status.success(), "chattr on {}", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root to mount a small tmpfs: run scripts/test"]
async fn readiness_fails_while_storage_cannot_be_written_and_pulls_go_on() {
    let fs = TinyFs::mount(16 << 20).await;
    let (_child, url) = spawn_binary(fs.path(), &[], std::process::Stdio::inherit()).await;
    let http = reqwest::Client::new();
    let blob = b"pulled while storage cannot be written";
    let digest = sha256(blob);
    let r = http
        .post(format!("{url}/v2/ro/app/blobs/uploads/?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(ready(&http, &url).await.0, StatusCode::OK);

    let uploads = fs.path().join("uploads");
    immutable(&uploads, true).await;
    let (status, health) = ready(&http, &url).await;
    let r = http
        .get(format!("{url}/v2/ro/app/blobs/{digest}"))
        .send()
        .await
        .expect("pull");
    let pulled = r.bytes().await.expect("body");
    immutable(&uploads, false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "failing");
    let storage = check(&health, "storage");
    assert_eq!(storage["ok"], false, "{storage}");
    assert!(
        storage["message"]
            .as_str()
            .is_some_and(|m| m.contains("probe") && m.contains("not permitted")),
        "{storage}"
    );
    assert_eq!(check(&health, "database")["ok"], true, "{health}");
    assert_eq!(pulled, &blob[..], "pulls still work");
    assert_eq!(ready(&http, &url).await.0, StatusCode::OK);
}

/// Opens an upload session in `repo`; returns its location.
async fn start_upload(http: &reqwest::Client, url: &str, repo: &str) -> String {
    let r = http
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// PATCHes `chunk` at offset `start` of the upload at `location`.
async fn patch(
    http: &reqwest::Client,
    url: &str,
    location: &str,
    start: usize,
    chunk: &[u8],
) -> reqwest::Response {
    http.patch(format!("{url}{location}"))
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .expect("patch")
}

/// Sum of the sizes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                bytes_under(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root to mount a small tmpfs: run scripts/test"]
async fn pushes_that_would_cross_the_free_space_floor_are_refused_before_writing() {
    let fs = TinyFs::mount(32 << 20).await;
    let floor = (16 << 20).to_string();
    let (_child, url) = spawn_binary(
        fs.path(),
        &[("AGENT_REGISTRY_MIN_FREE_BYTES", &floor)],
        std::process::Stdio::inherit(),
    )
    .await;
    let http = reqwest::Client::new();
    let kept = vec![1u8; 4 << 20];
    let kept_digest = sha256(&kept);
    let r = http
        .post(format!(
            "{url}/v2/floor/app/blobs/uploads/?digest={kept_digest}"
        ))
        .body(kept.clone())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED, "room above the floor");
    let blobs_before = bytes_under(&fs.path().join("blobs"));

    // 14 MiB more would leave about 14 MiB free, under the 16 MiB floor: in one request, and
    // as a chunk of an upload session.
    let big = vec![2u8; 14 << 20];
    let big_digest = sha256(&big);
    let r = http
        .post(format!(
            "{url}/v2/floor/app/blobs/uploads/?digest={big_digest}"
        ))
        .body(big.clone())
        .send()
        .await
        .expect("push");
    let message = assert_error(r, StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN").await;
    assert!(
        message.starts_with("insufficient storage space") && message.contains("floor"),
        "{message}"
    );
    let location = start_upload(&http, &url, "floor/app").await;
    let r = patch(&http, &url, &location, 0, &big).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(
        bytes_under(&fs.path().join("uploads")),
        0,
        "nothing written"
    );
    assert_eq!(bytes_under(&fs.path().join("blobs")), blobs_before);
    let r = http
        .get(format!("{url}/v2/floor/app/blobs/{kept_digest}"))
        .send()
        .await
        .expect("pull");
    assert_eq!(r.bytes().await.expect("body"), &kept[..], "pulls go on");
    assert_eq!(ready(&http, &url).await.0, StatusCode::OK);

    // Something else fills the disk under the floor: readiness fails, and even a small push is
    // refused, until the space comes back.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 13 << 20]).expect("fill");
    let (status, health) = ready(&http, &url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    let free = check(&health, "free_space");
    assert!(
        free["message"]
            .as_str()
            .is_some_and(|m| m.contains("below the floor")),
        "{free}"
    );
    let small = b"small";
    let push_small = || {
        http.post(format!(
            "{url}/v2/floor/app/blobs/uploads/?digest={}",
            sha256(small)
        ))
        .body(small.to_vec())
        .send()
    };
    assert_eq!(
        push_small().await.expect("push").status(),
        StatusCode::INSUFFICIENT_STORAGE
    );
    std::fs::remove_file(&filler).expect("unfill");
    assert_eq!(ready(&http, &url).await.0, StatusCode::OK);
    assert_eq!(
        push_small().await.expect("push").status(),
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_see_the_effective_configuration_without_secrets() {
    let reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
        c.storage.min_free_bytes = 12345;
    })
    .await;
    let r = reg
        .http
        .get(format!("{}/api/v1/config", reg.url))
        .send()
        .await
        .expect("anonymous");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let admin =
        crate::support::client_with(Some(&crate::support::basic("admin", "admin-password")));
    let r = admin
        .get(format!("{}/api/v1/config", reg.url))
        .send()
        .await
        .expect("config");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("body");
    assert!(!text.contains("admin-password"), "{text}");
    let config: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(config["storage"]["min_free_bytes"], 12345);
    assert_eq!(config["auth"]["enabled"], true);
    assert_eq!(config["auth"]["admin"]["name"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_over_a_namespace_quota_are_refused_and_the_rest_go_on() {
    let reg = TestRegistry::start_with(|c| {
        c.limits.quotas = vec![agent_registry_server::config::QuotaConfig {
            repository: "team/*".into(),
            max_bytes: 10_000,
        }];
    })
    .await;
    let first = vec![1u8; 6000];
    let first_digest = reg.push_blob("team/a", &first).await;

    // A second 6,000 bytes anywhere under team/ would hold 12,000: refused, in one request...
    let second = vec![2u8; 6000];
    let r = reg
        .http
        .post(reg.v2(&format!("team/b/blobs/uploads/?digest={}", sha256(&second))))
        .body(second.clone())
        .send()
        .await
        .expect("push");
    let message = assert_error(r, StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN").await;
    assert!(
        message.starts_with(
            "insufficient storage space: the quota of team/* is 10kB, 6kB of it is used"
        ),
        "{message}"
    );
    // ...and chunk by chunk: 3,000 fits, 3,000 more does not.
    let location = start_upload(&reg.http, &reg.url, "team/b").await;
    let r = patch(&reg.http, &reg.url, &location, 0, &second[..3000]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let r = patch(&reg.http, &reg.url, &location, 3000, &second[3000..]).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);

    // Mounting a blob the namespace already holds costs nothing; other namespaces are free.
    let r = reg
        .http
        .post(reg.v2(&format!(
            "team/c/blobs/uploads/?mount={first_digest}&from=team/a"
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
    reg.push_blob("other/x", &second).await;
    let r = reg
        .http
        .post(reg.v2(&format!(
            "team/d/blobs/uploads/?mount={}&from=other/x",
            sha256(&second)
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(
        r.status(),
        StatusCode::INSUFFICIENT_STORAGE,
        "a mount brings its bytes under the quota"
    );
    let r = reg
        .http
        .get(reg.v2(&format!("team/a/blobs/{first_digest}")))
        .send()
        .await
        .expect("pull");
    assert_eq!(r.bytes().await.expect("body"), &first[..], "pulls go on");
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_read_recent_log_lines_by_level_and_time() {
    // Creating the first administrator logs an info line naming it.
    let reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.name = "log-probe".into();
        c.auth.admin.password = "admin-password".into();
    })
    .await;
    let r = reg
        .http
        .get(format!("{}/api/v1/logs", reg.url))
        .send()
        .await
        .expect("anonymous");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let admin =
        crate::support::client_with(Some(&crate::support::basic("log-probe", "admin-password")));
    let read = |query: &'static str| {
        let (admin, url) = (admin.clone(), reg.url.clone());
        async move {
            let r = admin
                .get(format!("{url}/api/v1/logs?{query}"))
                .send()
                .await
                .expect("logs");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, lines) = read("level=info&since=1h&limit=10000").await;
    assert_eq!(status, StatusCode::OK);
    let lines = lines.as_array().expect("array").clone();
    let probe = lines
        .iter()
        .find(|l| l.to_string().contains("log-probe"))
        .unwrap_or_else(|| panic!("no line about the new administrator in {lines:?}"));
    assert_eq!(probe["level"], "INFO", "{probe}");
    assert_eq!(probe["fields"]["user"], "log-probe", "{probe}");
    assert_eq!(probe["message"], "created the first administrator");
    let seq = probe["seq"].as_u64().expect("seq");
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "oldest first"
    );
    let (_, warnings) = read("level=warn&limit=10000").await;
    assert!(
        !warnings.to_string().contains("log-probe"),
        "an info line is not a warning"
    );
    let (_, after) = read("level=info&limit=10000&after=999999999").await;
    assert_eq!(after, Value::Array(Vec::new()));
    let (_, from) = read("limit=1").await;
    assert!(
        from[0]["seq"].as_u64() >= Some(seq),
        "the newest line comes last"
    );
    for bad in ["level=loud", "since=yesterday", "limit=0"] {
        let (status, body) = read(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["errors"][0]["code"], "PARAMETER_INVALID");
    }
}
