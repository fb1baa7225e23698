//! `agent init`: a working project for each runtime: `agent.yaml`, a minimal agent that serves
//! `/health` on port 8080, and an `.agentignore`.

use std::path::{Path, PathBuf};

/// Runtimes `agent init` has templates for.
pub const RUNTIMES: &[&str] = &["python", "nodejs", "go", "rust", "java"];

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; agent init does not overwrite files (choose another directory)")]
    Exists(PathBuf),
    #[error("unknown runtime {0:?}; choose one of: python, nodejs, go, rust, java")]
    Runtime(String),
    #[error(
        "{0:?} is not a valid agent name: use lower-case letters, digits and single . _ - between them"
    )]
    Name(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes a new project for agent `name` into `dir`; returns the files written.
pub fn init(dir: &Path, name: &str, runtime: &str) -> Result<Vec<PathBuf>, InitError> {
    if name.parse::<agent_registry_oci::RepoName>().is_err() {
        return Err(InitError::Name(name.to_owned()));
    }
    let (main_file, main, extra) = match runtime {
        "python" => ("main.py", PYTHON, Some(("requirements.txt", ""))),
        "nodejs" => (
            "index.js",
            NODE,
            Some(("package.json", "{\"name\": \"agent\", \"private\": true}\n")),
        ),
        "go" => ("main.go", GO, Some(("go.mod", "module agent\n\ngo 1.21\n"))),
        "rust" => (
            "src/main.rs",
            RUST,
            Some((
                "Cargo.toml",
                "[package]\nname = \"agent\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            )),
        ),
        "java" => ("Agent.java", JAVA, None),
        other => return Err(InitError::Runtime(other.to_owned())),
    };
    let short = name.rsplit('/').next().unwrap_or(name);
    let yaml = AGENT_YAML
        .replace("{name}", short)
        .replace("{runtime}", runtime);
    let mut files: Vec<(&str, String)> = vec![
        ("agent.yaml", yaml),
        (main_file, main.to_owned()),
        (".agentignore", IGNORE.to_owned()),
    ];
    if let Some((f, body)) = extra {
        files.push((f, body.to_owned()));
    }
    for (f, _) in &files {
        if dir.join(f).exists() {
            return Err(InitError::Exists(dir.join(f)));
        }
    }
    let mut written = Vec::new();
    for (f, body) in files {
        let path = dir.join(f);
        let io = |source| InitError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, body).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

const AGENT_YAML: &str = r#"apiVersion: agent.dev/v1
kind: Agent
metadata:
  name: {name}
  version: 0.1.0
  description: "A new agent"
  author: ""
  tags: []
spec:
  runtime: {runtime}
  model:
    provider: openai
    name: gpt-4o-mini
  capabilities:
    - chat
  environment:
    - name: LOG_LEVEL
      value: info
    - name: OPENAI_API_KEY
      from: secret
  ports:
    - container: 8080
  healthCheck:
    type: http
    path: /health
    port: 8080
    interval: 30s
    timeout: 5s
    retries: 3
"#;

const IGNORE: &str = "# Files agent build leaves out of the image (gitignore syntax).\n.git/\n*.env\n__pycache__/\nnode_modules/\ntarget/\n";

const PYTHON: &str = r#"from http.server import BaseHTTPRequestHandler, HTTPServer


class Agent(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path == "/health" else b"hello from the agent\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", 8080), Agent).serve_forever()
"#;

const NODE: &str = r#"const http = require("http");
http
  .createServer((req, res) => res.end(req.url === "/health" ? "ok\n" : "hello from the agent\n"))
  .listen(8080);
"#;

const GO: &str = r#"package main

import (
	"fmt"
	"net/http"
)

func main() {
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from the agent") })
	http.ListenAndServe(":8080", nil)
}
"#;

const RUST: &str = r#"use std::io::{Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    for stream in TcpListener::bind("0.0.0.0:8080")?.incoming() {
        let mut stream = stream?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf)?;
        let body = if buf[..n].starts_with(b"GET /health") { "ok\n" } else { "hello from the agent\n" };
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    }
    Ok(())
}
"#;

const JAVA: &str = r#"import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;

public class Agent {
    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(8080), 0);
        server.createContext("/", exchange -> {
            byte[] body = (exchange.getRequestURI().getPath().equals("/health") ? "ok\n" : "hello from the agent\n").getBytes();
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::AgentFile;

    #[test]
    fn every_template_is_a_valid_agent_file() {
        for runtime in RUNTIMES {
            let dir = tempfile::tempdir().expect("tempdir");
            let files = init(dir.path(), "team/demo", runtime).expect("init");
            assert!(files.len() >= 3);
            let text = std::fs::read_to_string(dir.path().join("agent.yaml")).expect("read");
            let agent = AgentFile::parse("agent.yaml", &text, &BTreeMap::new()).expect(runtime);
            assert_eq!(agent.metadata.name, "demo");
        }
    }

    #[test]
    fn init_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), "demo", "python").expect("first");
        assert!(matches!(
            init(dir.path(), "demo", "python"),
            Err(InitError::Exists(_))
        ));
        assert!(matches!(
            init(dir.path(), "demo", "cobol"),
            Err(InitError::Runtime(_))
        ));
    }
}
