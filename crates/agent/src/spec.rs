//! The `agent.yaml` model (the agent-as-code schema) and its validation.
//!
//! ```yaml
//! apiVersion: agent.dev/v1
//! kind: Agent
//! metadata: {name: summarizer, version: 1.2.0, description: ..., author: ..., tags: [..], labels: {..}}
//! spec:
//!   runtime: python                      # or python:3.11, {language, version}, or {image}
//!   image_pull_policy: IfNotPresent      # Always | IfNotPresent | Never
//!   model: {provider: openai, name: gpt-4, config: {...}}
//!   capabilities: [summarization]
//!   dependencies: [openai==1.0.0]
//!   environment: [{name: LOG_LEVEL, value: info}, {name: OPENAI_API_KEY, from: secret}]
//!   ports: [{container: 8080, host: 8080, protocol: tcp}]
//!   volumes: [{source: cache, target: /app/cache, type: volume}]
//!   healthCheck: {type: http, path: /health, port: 8080, interval: 30s, timeout: 5s, retries: 3}
//!   resources: {limits: {cpu: "1", memory: 1Gi}, requests: {cpu: 500m, memory: 512Mi}}
//!   config: {...}                        # free-form, passed to the agent
//!   entrypoint: [python, main.py]        # overrides the runtime's default command
//!   user: "1000"
//! ```
//!
//! [`AgentFile::parse`] reads the whole file and reports every problem at once, each with its
//! field path. Fields the agent-as-code schema knows but a build does not use
//! (`dev_dependencies`, `capability_config`, `scaling`) are accepted and kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent_registry_oci::{RepoName, TagVersion};
use serde_yaml_ng::Value;

use crate::check::{Check, Problem, field, join};

pub const API_VERSION: &str = "agent.dev/v1";

/// A whole `agent.yaml` that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("{file} is not a valid agent.yaml ({} problem{}):\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct Invalid {
    pub file: String,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentFile {
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// What `spec.runtime` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// A language, at the table's newest supported version unless one is given.
    Language {
        language: String,
        version: Option<String>,
    },
    /// A fully qualified image.
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub provider: String,
    pub name: String,
}

/// An environment variable: a value baked into the image, or one the platform supplies when
/// the agent runs (`from: secret | configmap | env`), which is not baked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub container: u16,
    pub host: Option<u16>,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: Option<String>,
    pub target: String,
    pub kind: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Command(Vec<String>),
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spec {
    pub runtime: Option<Runtime>,
    pub image_pull_policy: Option<String>,
    pub model: Option<Model>,
    pub capabilities: Vec<String>,
    pub dependencies: Vec<String>,
    pub environment: Vec<EnvVar>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub health_check: Option<HealthCheck>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
}

impl AgentFile {
    /// Parses and validates `text` (read from `file`, which names it in errors). Each
    /// `${NAME}` whose NAME is in `build_args` is replaced first.
    pub fn parse(
        file: &str,
        text: &str,
        build_args: &BTreeMap<String, String>,
    ) -> Result<AgentFile, Invalid> {
        let mut text = text.to_owned();
        for (name, value) in build_args {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        let invalid = |problems| Invalid {
            file: file.to_owned(),
            problems,
        };
        let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
            invalid(vec![Problem {
                path: e
                    .location()
                    .map_or("(document)".into(), |l| format!("line {}", l.line())),
                message: format!("is not YAML: {e}"),
            }])
        })?;
        let mut c = Check::default();
        let agent = read(&mut c, &doc);
        if c.problems.is_empty() {
            Ok(agent)
        } else {
            Err(invalid(c.problems))
        }
    }
}

fn read(c: &mut Check, doc: &Value) -> AgentFile {
    let top = c.mapping(
        doc,
        "(document)",
        &["apiVersion", "kind", "metadata", "spec"],
    );
    match c.text(field(top, "apiVersion"), "apiVersion", true) {
        Some(v) if v != API_VERSION => {
            c.problem("apiVersion", format!("must be {API_VERSION}, not {v:?}"))
        }
        _ => {}
    }
    match c.text(field(top, "kind"), "kind", true) {
        Some(k) if k != "Agent" => c.problem("kind", format!("must be Agent, not {k:?}")),
        _ => {}
    }
    let metadata = match field(top, "metadata") {
        Some(m) => metadata(c, m),
        None => {
            c.problem("metadata", "is required");
            Metadata::default()
        }
    };
    let spec = match field(top, "spec") {
        Some(s) => spec(c, s),
        None => {
            c.problem("spec", "is required (at least spec.runtime)");
            Spec::default()
        }
    };
    AgentFile { metadata, spec }
}

fn metadata(c: &mut Check, value: &Value) -> Metadata {
    let m = c.mapping(
        value,
        "metadata",
        &["name", "version", "description", "author", "tags", "labels"],
    );
    let name = c
        .text(field(m, "name"), "metadata.name", true)
        .unwrap_or_default();
    if !name.is_empty() && name.parse::<RepoName>().is_err() {
        c.problem(
            "metadata.name",
            format!("{name:?} is not a valid image name: use lower-case letters, digits and single . _ - between them (team/name for a namespace)"),
        );
    }
    let version = c.text(field(m, "version"), "metadata.version", false);
    if let Some(v) = &version
        && TagVersion::parse(v).is_none()
    {
        c.problem(
            "metadata.version",
            format!("{v:?} is not a semantic version like 1.2.0"),
        );
    }
    let tags = c.texts(field(m, "tags"), "metadata.tags");
    for (i, t) in tags.iter().enumerate() {
        if t.contains(',') {
            c.problem(format!("metadata.tags[{i}]"), "must not contain a comma");
        }
    }
    let mut labels = BTreeMap::new();
    match field(m, "labels") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(map)) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or_default().to_owned();
                if let Some(v) = c.text(Some(v), &join("metadata.labels", &key), true) {
                    labels.insert(key, v);
                }
            }
        }
        Some(_) => c.problem("metadata.labels", "must be a mapping of label to text"),
    }
    Metadata {
        name,
        version,
        description: c.text(field(m, "description"), "metadata.description", false),
        author: c.text(field(m, "author"), "metadata.author", false),
        tags,
        labels,
    }
}

const SPEC_FIELDS: &[&str] = &[
    "runtime",
    "image_pull_policy",
    "model",
    "capabilities",
    "dependencies",
    "environment",
    "ports",
    "volumes",
    "healthCheck",
    "resources",
    "config",
    "entrypoint",
    "user",
    // Known to agent-as-code; kept in agent.yaml, not used by the build.
    "dev_dependencies",
    "capability_config",
    "scaling",
];

fn spec(c: &mut Check, value: &Value) -> Spec {
    let m = c.mapping(value, "spec", SPEC_FIELDS);
    let runtime = runtime(c, field(m, "runtime"));
    let image_pull_policy = c.choice(
        field(m, "image_pull_policy"),
        "spec.image_pull_policy",
        &["Always", "IfNotPresent", "Never"],
    );
    let model = field(m, "model").and_then(|v| {
        let mm = c.mapping(v, "spec.model", &["provider", "name", "config"]);
        let provider = c.text(field(mm, "provider"), "spec.model.provider", true)?;
        let name = c.text(field(mm, "name"), "spec.model.name", true)?;
        Some(Model { provider, name })
    });
    let capabilities = c.texts(field(m, "capabilities"), "spec.capabilities");
    for (i, cap) in capabilities.iter().enumerate() {
        if cap.contains(',') || cap.trim() != cap {
            c.problem(
                format!("spec.capabilities[{i}]"),
                "must be one word (no commas or spaces around it), like text-generation",
            );
        }
    }
    let dependencies = c.texts(field(m, "dependencies"), "spec.dependencies");
    let environment = environment(c, field(m, "environment"));
    let ports = ports(c, field(m, "ports"));
    let volumes = volumes(c, field(m, "volumes"));
    let health_check = field(m, "healthCheck").and_then(|h| health_check(c, h, &ports));
    if let Some(r) = field(m, "resources") {
        resources(c, r);
    }
    let entrypoint = field(m, "entrypoint").map(|e| {
        let words = c.texts(Some(e), "spec.entrypoint");
        if words.is_empty() {
            c.problem("spec.entrypoint", "must name a program to run");
        }
        words
    });
    Spec {
        runtime,
        image_pull_policy,
        model,
        capabilities,
        dependencies,
        environment,
        ports,
        volumes,
        health_check,
        entrypoint,
        user: c.text(field(m, "user"), "spec.user", false),
    }
}

fn runtime(c: &mut Check, value: Option<&Value>) -> Option<Runtime> {
    const PATH: &str = "spec.runtime";
    match value {
        None | Some(Value::Null) => {
            c.problem(
                PATH,
                "is required: a language (python, python:3.11) or {image: registry/name:tag}",
            );
            None
        }
        Some(Value::String(s)) => {
            let (language, version) = match s.split_once(':') {
                Some((l, v)) => (l, Some(v.to_owned())),
                None => (s.as_str(), None),
            };
            if language.is_empty()
                || !language
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            {
                c.problem(
                    PATH,
                    format!("{s:?} is not a language name like python or nodejs"),
                );
                return None;
            }
            Some(Runtime::Language {
                language: language.to_owned(),
                version,
            })
        }
        Some(v @ Value::Mapping(_)) => {
            let m = c.mapping(v, PATH, &["language", "version", "image"]);
            let language = c.text(field(m, "language"), "spec.runtime.language", false);
            let version = c.text(field(m, "version"), "spec.runtime.version", false);
            let image = c.text(field(m, "image"), "spec.runtime.image", false);
            match (language, version, image) {
                (Some(language), version, None) => Some(Runtime::Language { language, version }),
                (None, None, Some(image)) => Some(Runtime::Image(image)),
                (None, Some(_), None) => {
                    c.problem("spec.runtime.language", "is required with a version");
                    None
                }
                (None, None, None) => {
                    c.problem(PATH, "needs language (and version) or image");
                    None
                }
                _ => {
                    c.problem(PATH, "names both a language and an image; keep one");
                    None
                }
            }
        }
        Some(_) => {
            c.problem(
                PATH,
                "must be a language name or a mapping with language/version or image",
            );
            None
        }
    }
}

fn environment(c: &mut Check, value: Option<&Value>) -> Vec<EnvVar> {
    let mut seen = BTreeSet::new();
    let mut vars = Vec::new();
    for (i, item) in c.list(value, "spec.environment").iter().enumerate() {
        let path = format!("spec.environment[{i}]");
        let m = c.mapping(
            item,
            &path,
            &[
                "name",
                "value",
                "from",
                "secretName",
                "secretKey",
                "configMapName",
                "configMapKey",
                "envKey",
                "defaultValue",
            ],
        );
        let Some(name) = c.text(field(m, "name"), &join(&path, "name"), true) else {
            continue;
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            c.problem(join(&path, "name"), format!("{name:?} is not a variable name (letters, digits, _; not starting with a digit)"));
        }
        if !seen.insert(name.clone()) {
            c.problem(join(&path, "name"), format!("{name} is set twice"));
        }
        let value = c.text(field(m, "value"), &join(&path, "value"), false);
        let from = c.choice(
            field(m, "from"),
            &join(&path, "from"),
            &["secret", "configmap", "env"],
        );
        match (&value, &from) {
            (Some(_), Some(_)) => c.problem(&path, "has both value and from; keep one"),
            (None, None) if field(m, "from").is_none() => {
                c.problem(&path, "needs a value, or from: secret | configmap | env")
            }
            _ => {}
        }
        vars.push(EnvVar { name, value, from });
    }
    vars
}

fn ports(c: &mut Check, value: Option<&Value>) -> Vec<Port> {
    let mut hosts = BTreeSet::new();
    let mut ports = Vec::new();
    for (i, item) in c.list(value, "spec.ports").iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let m = c.mapping(item, &path, &["container", "host", "protocol"]);
        let container = c.number(field(m, "container"), &join(&path, "container"), 1, 65535);
        if field(m, "container").is_none() {
            c.problem(join(&path, "container"), "is required");
        }
        let host = c
            .number(field(m, "host"), &join(&path, "host"), 1, 65535)
            .map(|h| h as u16);
        if let Some(h) = host
            && !hosts.insert(h)
        {
            c.problem(join(&path, "host"), format!("host port {h} is used twice"));
        }
        let protocol = c
            .choice(
                field(m, "protocol"),
                &join(&path, "protocol"),
                &["tcp", "udp"],
            )
            .unwrap_or_else(|| "tcp".into());
        if let Some(container) = container {
            ports.push(Port {
                container: container as u16,
                host,
                protocol,
            });
        }
    }
    ports
}

fn volumes(c: &mut Check, value: Option<&Value>) -> Vec<Volume> {
    let mut volumes = Vec::new();
    for (i, item) in c.list(value, "spec.volumes").iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let m = c.mapping(
            item,
            &path,
            &["source", "target", "type", "readOnly", "size"],
        );
        let kind = c
            .choice(
                field(m, "type"),
                &join(&path, "type"),
                &["bind", "volume", "tmpfs", "configmap"],
            )
            .unwrap_or_else(|| "volume".into());
        let source = c.text(field(m, "source"), &join(&path, "source"), kind != "tmpfs");
        let Some(target) = c.text(field(m, "target"), &join(&path, "target"), true) else {
            continue;
        };
        if !target.starts_with('/') {
            c.problem(
                join(&path, "target"),
                format!("{target:?} must be an absolute path in the container"),
            );
        }
        let read_only = c
            .boolean(field(m, "readOnly"), &join(&path, "readOnly"))
            .unwrap_or(false);
        volumes.push(Volume {
            source,
            target,
            kind,
            read_only,
        });
    }
    volumes
}

fn health_check(c: &mut Check, value: &Value, ports: &[Port]) -> Option<HealthCheck> {
    const PATH: &str = "spec.healthCheck";
    let m = c.mapping(
        value,
        PATH,
        &[
            "type",
            "command",
            "path",
            "port",
            "interval",
            "timeout",
            "retries",
            "startPeriod",
        ],
    );
    let command = match field(m, "command") {
        Some(Value::String(s)) => Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), s.clone()]),
        Some(v) => Some(c.texts(Some(v), "spec.healthCheck.command")),
        None => None,
    };
    let kind = c
        .choice(
            field(m, "type"),
            "spec.healthCheck.type",
            &["http", "command", "tcp"],
        )
        .unwrap_or_else(|| {
            if command.is_some() {
                "command".into()
            } else {
                "http".into()
            }
        });
    let port = c
        .number(field(m, "port"), "spec.healthCheck.port", 1, 65535)
        .map(|p| p as u16)
        .or_else(|| ports.first().map(|p| p.container));
    let duration = |c: &mut Check, key: &str, default: u64| match c.text(
        field(m, key),
        &join(PATH, key),
        false,
    ) {
        None => Some(Duration::from_secs(default)),
        Some(t) => parse_duration(&t).or_else(|| {
            c.problem(
                join(PATH, key),
                format!("{t:?} is not a duration like 30s, 1m or 500ms"),
            );
            None
        }),
    };
    let interval = duration(c, "interval", 30);
    let timeout = duration(c, "timeout", 10);
    let start_period = duration(c, "startPeriod", 0);
    let retries = c
        .number(field(m, "retries"), "spec.healthCheck.retries", 0, 100)
        .unwrap_or(3) as u32;
    let probe = match kind.as_str() {
        "command" => match command {
            Some(cmd) if !cmd.is_empty() => Probe::Command(cmd),
            _ => {
                c.problem(
                    "spec.healthCheck.command",
                    "is required for a command check",
                );
                return None;
            }
        },
        other => {
            let Some(port) = port else {
                c.problem(
                    "spec.healthCheck.port",
                    format!("is required for a {other} check when spec.ports is empty"),
                );
                return None;
            };
            if other == "tcp" {
                Probe::Tcp { port }
            } else {
                let path = c
                    .text(field(m, "path"), "spec.healthCheck.path", false)
                    .unwrap_or_else(|| "/health".into());
                if !path.starts_with('/') {
                    c.problem(
                        "spec.healthCheck.path",
                        format!("{path:?} must start with /"),
                    );
                }
                Probe::Http { port, path }
            }
        }
    };
    Some(HealthCheck {
        probe,
        interval: interval?,
        timeout: timeout?,
        start_period: start_period?,
        retries,
    })
}

fn resources(c: &mut Check, value: &Value) {
    const PATH: &str = "spec.resources";
    let m = c.mapping(value, PATH, &["limits", "requests"]);
    let read = |c: &mut Check, key: &str| -> (Option<f64>, Option<f64>) {
        let Some(v) = field(m, key) else {
            return (None, None);
        };
        let path = join(PATH, key);
        let mm = c.mapping(v, &path, &["cpu", "memory", "ephemeral-storage", "gpu"]);
        let cpu = c
            .text(field(mm, "cpu"), &join(&path, "cpu"), false)
            .and_then(|t| {
                parse_cpu(&t).or_else(|| {
                    c.problem(
                        join(&path, "cpu"),
                        format!("{t:?} is not a CPU amount like 1, 0.5 or 500m"),
                    );
                    None
                })
            });
        let mut memory = None;
        for key in ["memory", "ephemeral-storage"] {
            if let Some(t) = c.text(field(mm, key), &join(&path, key), false) {
                match agent_registry_oci::catalogue::parse_size(&t) {
                    Some(bytes) if key == "memory" => memory = Some(bytes as f64),
                    Some(_) => {}
                    None => c.problem(
                        join(&path, key),
                        format!("{t:?} is not a size like 512Mi or 1Gi"),
                    ),
                }
            }
        }
        (cpu, memory)
    };
    let limits = read(c, "limits");
    let requests = read(c, "requests");
    if let ((Some(limit), _), (Some(request), _)) = (limits, requests)
        && request > limit
    {
        c.problem(
            "spec.resources.requests.cpu",
            "is more than spec.resources.limits.cpu",
        );
    }
    if let ((_, Some(limit)), (_, Some(request))) = (limits, requests)
        && request > limit
    {
        c.problem(
            "spec.resources.requests.memory",
            "is more than spec.resources.limits.memory",
        );
    }
}

/// `30s`, `1m`, `1h`, `7d`, `500ms`, `1m30s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|ch: char| !ch.is_ascii_digit())?;
        let (n, tail) = rest.split_at(digits);
        let n: u64 = n.parse().ok()?;
        let unit_len = tail
            .find(|ch: char| ch.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return None,
        };
        rest = tail;
    }
    Some(total)
}

fn parse_cpu(s: &str) -> Option<f64> {
    let v = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => s.parse::<f64>().ok()?,
    };
    (v > 0.0 && v.is_finite()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
apiVersion: agent.dev/v1
kind: Agent
metadata:
  name: team/summarizer
  version: 1.2.0
  description: Summarizes documents
  author: Ann <ann@example.com>
  tags: [nlp, docs]
  labels: {team: ai, tier: 2}
spec:
  runtime: {language: python, version: "3.11"}
  image_pull_policy: IfNotPresent
  model: {provider: openai, name: gpt-4, config: {temperature: 0.2}}
  capabilities: [summarization, chat]
  dependencies: [openai==1.0.0]
  environment:
    - {name: LOG_LEVEL, value: info}
    - {name: OPENAI_API_KEY, from: secret, secretName: openai}
  ports: [{container: 8080, host: 80}]
  volumes: [{source: cache, target: /app/cache, type: volume}]
  healthCheck: {type: http, path: /health, interval: 1m30s, timeout: 5s, retries: 2}
  resources: {limits: {cpu: "1", memory: 1Gi}, requests: {cpu: 500m, memory: 512Mi}}
  config: {anything: [goes, here]}
  scaling: {replicas: 2}
"#;

    fn parse(text: &str) -> Result<AgentFile, Invalid> {
        AgentFile::parse("agent.yaml", text, &BTreeMap::new())
    }

    #[test]
    fn a_full_agent_file_reads_into_the_model() {
        let a = parse(FULL).expect("valid");
        assert_eq!(a.metadata.name, "team/summarizer");
        assert_eq!(a.metadata.labels.get("tier").map(String::as_str), Some("2"));
        assert_eq!(
            a.spec.runtime,
            Some(Runtime::Language {
                language: "python".into(),
                version: Some("3.11".into())
            })
        );
        assert_eq!(a.spec.environment[1].from.as_deref(), Some("secret"));
        let h = a.spec.health_check.expect("health check");
        assert_eq!(
            h.probe,
            Probe::Http {
                port: 8080,
                path: "/health".into()
            }
        );
        assert_eq!(h.interval, Duration::from_secs(90));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let text = r#"
apiVersion: agent.dev/v2
kind: Agent
metadata: {name: Bad_Name, version: one, colour: red}
spec:
  runtime: {language: python, image: r.example.com/x:1}
  capabilities: ["a,b"]
  environment: [{name: 1X}, {name: A, value: x, from: secret}, {name: A, value: y}]
  ports: [{container: 70000}, {container: 80, host: 8080}, {container: 81, host: 8080, protocol: sctp}]
  volumes: [{source: x, target: relative}]
  healthCheck: {type: command, interval: soon}
  resources: {limits: {cpu: "1"}, requests: {cpu: "2", memory: lots}}
  healthcheck: {}
"#;
        let err = parse(text).expect_err("invalid");
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "apiVersion",
            "metadata.colour",
            "metadata.name",
            "metadata.version",
            "spec.healthcheck",
            "spec.runtime",
            "spec.capabilities[0]",
            "spec.environment[0].name",
            "spec.environment[0]",
            "spec.environment[1]",
            "spec.environment[2].name",
            "spec.ports[0].container",
            "spec.ports[2].host",
            "spec.ports[2].protocol",
            "spec.volumes[0].target",
            "spec.healthCheck.interval",
            "spec.healthCheck.command",
            "spec.resources.requests.memory",
            "spec.resources.requests.cpu",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let text = err.to_string();
        assert!(
            text.starts_with("agent.yaml is not a valid agent.yaml ("),
            "{text}"
        );
        assert!(
            text.contains(
                "spec.ports[0].container: must be a whole number from 1 to 65535, not 70000"
            ),
            "{text}"
        );
    }

    #[test]
    fn missing_sections_and_bad_yaml_are_named() {
        let err = parse("kind: Agent\n").expect_err("invalid");
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["apiVersion", "metadata", "spec"]);
        let err = parse("apiVersion: [\n").expect_err("not yaml");
        assert!(err.problems[0].message.contains("is not YAML"), "{err}");
    }

    #[test]
    fn build_args_fill_placeholders() {
        let text = FULL.replace("version: 1.2.0", "version: ${VERSION}");
        let args = BTreeMap::from([("VERSION".to_owned(), "2.0.0".to_owned())]);
        let a = AgentFile::parse("agent.yaml", &text, &args).expect("valid");
        assert_eq!(a.metadata.version.as_deref(), Some("2.0.0"));
    }

    #[test]
    fn durations_read_like_docker_compose() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
