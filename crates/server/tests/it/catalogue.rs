//! The agent catalogue over HTTP: what a push indexes (annotations, then config labels, then
//! an index's first image), search parameters and errors, versions, downloads, ratings and
//! immutable release tags.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{OCI_INDEX, OCI_MANIFEST, TestRegistry, assert_error, sha256};

/// Pushes an image whose config carries `labels` and whose manifest carries `annotations`;
/// returns the manifest digest and its content size (config + layer).
async fn push_agent(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    labels: Value,
    annotations: Value,
) -> (String, u64) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-03-01T00:00:00Z",
        "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .expect("json");
    let layer = format!("layer of {repo}:{tag}").into_bytes();
    let config_digest = reg.push_blob(repo, &config).await;
    let layer_digest = reg.push_blob(repo, &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer.len()}],
        "annotations": annotations,
    }))
    .expect("json");
    let r = reg.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    (
        sha256(&manifest).to_string(),
        (config.len() + layer.len()) as u64,
    )
}

async fn api(reg: &TestRegistry, path_and_query: &str) -> reqwest::Response {
    reg.http
        .get(format!("{}/api/v1/{path_and_query}", reg.url))
        .send()
        .await
        .expect("api")
}

async fn search(reg: &TestRegistry, query: &str) -> Value {
    let r = api(reg, &format!("search?{query}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

fn hit_names(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|h| {
            format!(
                "{}:{}",
                h["name"].as_str().unwrap_or(""),
                h["tag"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test]
async fn docker_build_labels_are_indexed_and_annotations_win() {
    let reg = TestRegistry::start().await;
    let (digest, size) = push_agent(
        &reg,
        "team/labelled",
        "latest",
        json!({"org.opencontainers.image.description": "Answers billing questions",
               "org.opencontainers.image.authors": "Billing Team",
               "dev.agent-registry.capabilities": "chat,billing"}),
        json!({"org.opencontainers.image.authors": "Ann"}),
    )
    .await;
    let body = search(&reg, "q=billing").await;
    assert_eq!(body["total"], 1);
    let hit = &body["images"][0];
    assert_eq!(hit["name"], "team/labelled");
    assert_eq!(hit["tag"], "latest");
    assert_eq!(hit["digest"], digest.as_str());
    assert_eq!(hit["description"], "Answers billing questions");
    assert_eq!(
        hit["author"], "Ann",
        "the manifest annotation wins over the label"
    );
    assert_eq!(hit["capabilities"], json!(["chat", "billing"]));
    assert_eq!(hit["size_bytes"], size);
    assert_eq!(hit["size"], format!("{size}B"));
    assert_eq!(
        hit["created"], "2024-03-01T00:00:00Z",
        "from the config when no annotation says"
    );
    assert_eq!(hit["downloads"], 0);
    assert_eq!(hit["rating"], Value::Null);
    assert_eq!(
        (body["page"].clone(), body["per_page"].clone()),
        (json!(1), json!(10))
    );
}

#[tokio::test]
async fn an_index_is_listed_by_its_first_runnable_image() {
    let reg = TestRegistry::start().await;
    let (child, _) = push_agent(
        &reg,
        "team/multi",
        "child",
        json!({"org.opencontainers.image.description": "multi platform helper"}),
        json!({}),
    )
    .await;
    let (attestation, _) = push_agent(&reg, "team/multi", "att", json!({}), json!({})).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": attestation, "size": 1,
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"mediaType": OCI_MANIFEST, "digest": child, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    }))
    .expect("json");
    for tag in ["child", "att"] {
        let r = reg
            .http
            .delete(reg.v2(&format!("team/multi/manifests/{tag}")))
            .send()
            .await
            .expect("untag");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = reg
        .put_manifest("team/multi", "1.0.0", OCI_INDEX, &index)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = search(&reg, "q=platform").await;
    assert_eq!(hit_names(&body), ["team/multi:1.0.0"]);
    assert_eq!(body["images"][0]["description"], "multi platform helper");
}

#[tokio::test]
async fn versions_sort_by_semver_and_name_the_latest_release() {
    let reg = TestRegistry::start().await;
    for tag in ["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "edge"] {
        push_agent(&reg, "team/versioned", tag, json!({}), json!({})).await;
    }
    let r = api(&reg, "agents/team/versioned").await;
    assert_eq!(r.status(), StatusCode::OK);
    let agent: Value = r.json().await.expect("json");
    let tags: Vec<&str> = agent["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["tag"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(tags, ["2.0.0-rc.1", "1.10.0", "1.9.0", "1.0.0", "edge"]);
    assert_eq!(agent["latest_release"], "1.10.0");
    assert_eq!(
        agent["tag"], "1.10.0",
        "search shows the latest release when there is no latest tag"
    );
    assert_eq!(agent["versions"][0]["prerelease"], true);
    assert_eq!(agent["versions"][4]["semver"], false);
    assert_eq!(agent["versions"][1]["pushed_by"], "127.0.0.1");

    let missing = api(&reg, "agents/team/nothing-here").await;
    assert_error(missing, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let bad = api(&reg, "agents/Team/UPPER").await;
    assert_error(bad, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

#[tokio::test]
async fn manifest_gets_count_once_per_client_and_heads_do_not_count() {
    if crate::support::skip_on_several_nodes("the download de-duplication window") {
        return;
    }
    let reg = TestRegistry::start().await;
    push_agent(&reg, "team/pulled", "latest", json!({}), json!({})).await;
    let manifest = reg.v2("team/pulled/manifests/latest");
    for _ in 0..3 {
        reg.http.head(&manifest).send().await.expect("head");
    }
    assert_eq!(downloads(&reg).await, 0, "HEAD polling is not a download");
    for _ in 0..3 {
        let r = reg
            .http
            .get(&manifest)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let mut counted = 0;
    for _ in 0..50 {
        counted = downloads(&reg).await;
        if counted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counted, 1,
        "one client pulling three times in a minute is one download"
    );
}

async fn downloads(reg: &TestRegistry) -> u64 {
    let agent: Value = api(reg, "agents/team/pulled")
        .await
        .json()
        .await
        .expect("json");
    agent["downloads"].as_u64().expect("downloads")
}

#[tokio::test]
async fn ratings_average_per_rater_and_bad_ones_are_refused() {
    let reg = TestRegistry::start().await;
    push_agent(&reg, "team/rated", "latest", json!({}), json!({})).await;
    let rate = |path: &str, body: &str| {
        reg.http
            .post(format!("{}/api/v1/agents/{path}", reg.url))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let r = rate("team/rated/ratings", r#"{"stars": 2}"#)
        .await
        .expect("rate");
    assert_eq!(r.status(), StatusCode::OK);
    let r = rate("team/rated/ratings", r#"{"stars": 5}"#)
        .await
        .expect("rate");
    let summary: Value = r.json().await.expect("json");
    assert_eq!(
        summary,
        json!({"rating": 5.0, "rating_count": 1}),
        "a rater's second rating replaces the first"
    );

    for (body, code) in [
        (r#"{"stars": 9}"#, "PARAMETER_INVALID"),
        (r#"{"stars": "five"}"#, "PARAMETER_INVALID"),
        ("{", "PARAMETER_INVALID"),
    ] {
        let r = rate("team/rated/ratings", body).await.expect("rate");
        assert_error(r, StatusCode::BAD_REQUEST, code).await;
    }
    let r = rate("team/unknown/ratings", r#"{"stars": 3}"#)
        .await
        .expect("rate");
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let r = rate("team/rated", r#"{"stars": 3}"#).await.expect("rate");
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
}

#[tokio::test]
async fn bad_search_parameters_say_what_is_wrong() {
    let reg = TestRegistry::start().await;
    for (query, needle) in [
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=0", "page"),
        ("created_after=yesterday", "created_after"),
        ("size_min=huge", "size_min"),
        ("sort=stars", "sort"),
        ("colour=blue", "colour"),
    ] {
        let r = api(&reg, &format!("search?{query}")).await;
        let message = assert_error(r, StatusCode::BAD_REQUEST, "PARAMETER_INVALID").await;
        assert!(message.contains(needle), "{query}: {message}");
    }
}

#[tokio::test]
async fn immutable_release_tags_refuse_to_move() {
    let reg =
        TestRegistry::start_with(|c| c.catalogue.immutable_releases = vec!["prod/*".into()]).await;
    push_agent(&reg, "prod/agent", "1.0.0", json!({"v": "1"}), json!({})).await;
    let (second, _) = push_agent(
        &reg,
        "prod/agent",
        "1.0.0-rc.1",
        json!({"v": "2"}),
        json!({}),
    )
    .await;
    let body = reg
        .http
        .get(reg.v2(&format!("prod/agent/manifests/{second}")))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let r = reg
        .put_manifest("prod/agent", "1.0.0", OCI_MANIFEST, &body)
        .await;
    let message = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(message.contains("immutable"), "{message}");
    push_agent(
        &reg,
        "prod/agent",
        "1.0.0-rc.1",
        json!({"v": "3"}),
        json!({}),
    )
    .await;
    push_agent(&reg, "dev/agent", "1.0.0", json!({"v": "1"}), json!({})).await;
    push_agent(&reg, "dev/agent", "1.0.0", json!({"v": "2"}), json!({})).await;
}

#[test]
fn the_openapi_file_documents_every_route_and_query_parameter() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML");
    let paths = &doc["paths"];
    for path in [
        "/api/v1/search",
        "/api/v1/agents/{name}",
        "/api/v1/agents/{name}/ratings",
        "/token",
        "/api/v1/auth/whoami",
        "/api/v1/users",
        "/api/v1/users/{name}",
        "/api/v1/users/{name}/password",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/permissions",
        "/api/v1/repositories/{name}",
        "/api/v1/access-logs",
        "/healthz",
        "/readyz",
        "/api/v1/health",
        "/metrics",
        "/api/v1/config",
        "/api/v1/logs",
    ] {
        assert!(paths.get(path).is_some(), "{path} is not documented");
    }
    let log_params: Vec<&str> = paths["/api/v1/access-logs"]["get"]["parameters"]
        .as_sequence()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let filter = serde_json::to_value(agent_registry_oci::access::LogFilter {
        user: Some(String::new()),
        action: Some(String::new()),
        repository: Some(String::new()),
        since: Some(String::new()),
        denied: true,
        limit: Some(1),
    })
    .expect("json");
    for key in filter.as_object().expect("object").keys() {
        assert!(
            log_params.contains(&key.as_str()),
            "access-logs {key} is not documented"
        );
    }
    let documented: Vec<&str> = paths["/api/v1/search"]["get"]["parameters"]
        .as_sequence()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // Every field of the query the server accepts, by its wire name.
    let accepted = serde_json::to_value(agent_registry_oci::catalogue::SearchQuery {
        q: Some(String::new()),
        name: Some(String::new()),
        tag: Some(String::new()),
        capability: Some(String::new()),
        author: Some(String::new()),
        created_after: Some(String::new()),
        created_before: Some(String::new()),
        size_min: Some(String::new()),
        size_max: Some(String::new()),
        sort: Some(agent_registry_oci::catalogue::SortKey::Name),
        page: Some(1),
        per_page: Some(1),
    })
    .expect("json");
    for key in accepted.as_object().expect("object").keys() {
        assert!(
            documented.contains(&key.as_str()),
            "{key} is not documented"
        );
    }
}
