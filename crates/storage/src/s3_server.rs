//! A real S3 server for tests (feature `testsuite`): s3s-fs serving a temporary directory on
//! a loopback port, stopped when dropped. The binary is `$S3S_FS` (`scripts/test` builds it),
//! else `s3s-fs` on the `PATH`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::S3Config;

const ACCESS_KEY: &str = "agent-registry-test";
const SECRET_KEY: &str = "agent-registry-test-secret";

pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    /// Starts the server and waits until it accepts connections. Panics, saying how to get
    /// the binary, when it cannot be found.
    pub fn start() -> S3Server {
        let binary = std::env::var("S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        let dir = tempfile::tempdir().expect("tempdir for s3s-fs");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the S3 test server {binary:?} ({e}): run scripts/test, or \
                     `cargo install s3s-fs --features binary` and set S3S_FS"
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            endpoint: format!("http://{addr}"),
            dir,
            child,
        }
    }

    /// Creates a bucket and returns the configuration that reaches it.
    pub fn bucket(&self, name: &str) -> S3Config {
        // s3s-fs keeps each bucket as a directory of its root.
        std::fs::create_dir_all(self.dir.path().join(name)).expect("bucket directory");
        S3Config {
            bucket: name.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: Some(ACCESS_KEY.to_owned()),
            secret_access_key: Some(SECRET_KEY.to_owned()),
            prefix: String::new(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
