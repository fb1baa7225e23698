//! A PostgreSQL database of a test's own (feature `testsuite`): created empty on the server
//! `$AGENT_REGISTRY_TEST_POSTGRES` names (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! the machine's trust-auth server) and dropped, with any open connections, when dropped.

use std::str::FromStr;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDatabase {
    /// Connects to the new database.
    pub url: String,
    config: tokio_postgres::Config,
    name: String,
    admin: String,
}

fn admin_url() -> String {
    std::env::var("AGENT_REGISTRY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL at {url} ({e}): start it, or point \
                 AGENT_REGISTRY_TEST_POSTGRES at one where this user may create databases"
            )
        });
    tokio::spawn(connection);
    client
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let name = format!("{PREFIX}{}", uuid_like());
        let admin = admin(&admin_url).await;
        drop_orphans(&admin).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let mut config = tokio_postgres::Config::from_str(&admin_url).expect("a valid admin URL");
        config.dbname(&name);
        TestDatabase {
            url: url_of(&config),
            config,
            name,
            admin: admin_url,
        }
    }

    /// The server's `host:port`.
    pub fn address(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// This database's URL without host or port (for a test to name its own).
    pub fn url_via_host(&self) -> String {
        let mut bare = tokio_postgres::Config::new();
        if let Some(user) = self.config.get_user() {
            bare.user(user);
        }
        if let Some(password) = self.config.get_password() {
            bare.password(password);
        }
        bare.dbname(&self.name);
        url_of(&bare)
    }

    /// The URL of this database reached through `via` (a proxy on a loopback port).
    pub fn url_via(&self, via: std::net::SocketAddr) -> String {
        let mut through = tokio_postgres::Config::new();
        through.host(via.ip().to_string()).port(via.port());
        if let Some(user) = self.config.get_user() {
            through.user(user);
        }
        if let Some(password) = self.config.get_password() {
            through.password(password);
        }
        through.dbname(&self.name);
        url_of(&through)
    }
}

/// Every test database's name starts so, then the creating process's id.
const PREFIX: &str = "agent_registry_test_";

/// Drops the test databases of processes that are gone (a test that never dropped its
/// database, or a killed run), so they do not pile up on the server.
async fn drop_orphans(admin: &tokio_postgres::Client) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A fresh lower-case name part (database names fold to lower case).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}_{nanos:x}", std::process::id())
}

/// `config` as a key-value connection string.
fn url_of(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        if let tokio_postgres::config::Host::Tcp(h) = host {
            parts.push(format!("host={h}"));
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime's reach; a thread of its own does the async work.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                admin(&admin_url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
