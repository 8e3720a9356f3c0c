//! Test support shared by the crates' integration tests: [`TestServer`], the API server
//! on a backend of the test's choice, kubeconfigs for it, [`Process`] for programs a test
//! launches, and per-test PostgreSQL databases.
//!
//! Backend tests use the real servers of the machine (PostgreSQL on 127.0.0.1:5432 with
//! trust auth). Outside CI an unreachable server skips the test with a `SKIPPED:` line;
//! under `CI=true` it fails the test instead, and `.ci/run` also rejects any `SKIPPED:`
//! line, so backend coverage cannot silently disappear.

mod process;
mod server;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

pub use process::{Process, logged_protocols};
pub use server::{Backend, Builder, TestServer, kubeconfig};

/// The admin URL of the test PostgreSQL server (`SYNCSETS_TEST_POSTGRES` overrides it).
pub fn postgres_admin_url() -> String {
    std::env::var("SYNCSETS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The URL of the test RabbitMQ broker (`SYNCSETS_TEST_AMQP` overrides it), or `None`
/// (after [`unavailable`]) when it does not answer.
pub fn rabbitmq_url() -> Option<String> {
    let url = std::env::var("SYNCSETS_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let addr = url
        .split_once('@')
        .map_or(url.as_str(), |(_, rest)| rest)
        .trim_start_matches("amqp://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    let reachable = addr
        .parse()
        .map_err(|e| format!("{addr}: {e}"))
        .and_then(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2))
                .map_err(|e| e.to_string())
        });
    match reachable {
        Ok(_) => Some(url),
        Err(e) => {
            unavailable("RabbitMQ", &e);
            None
        }
    }
}

/// Whether the suite runs under CI, where backend tests may not skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a backend that is not available: a skip outside CI, a failure under CI.
pub fn unavailable(what: &str, why: &str) {
    if under_ci() {
        panic!("{what} is required under CI but unavailable: {why}");
    }
    // Written to the process's stderr itself, past libtest's capture (which hides what a
    // passing test prints), so that a skip shows in `cargo test`'s output.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what} unavailable ({why})");
}

/// Asserts that `promtool check metrics` (Debian's prometheus package) accepts a
/// Prometheus text exposition ([`unavailable`] without promtool).
pub fn promtool_accepts(exposition: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        unavailable("promtool", "Debian's prometheus package is not installed");
        return;
    };
    promtool
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())
        .expect("writing to promtool");
    let checked = promtool.wait_with_output().expect("running promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A database created for one test and dropped by [`TestDb::drop_db`].
pub struct TestDb {
    /// Its connection URL.
    pub url: String,
    name: String,
    admin: String,
}

impl TestDb {
    /// Creates a fresh database, or `None` (after [`unavailable`]) when PostgreSQL is down.
    pub async fn create() -> Option<Self> {
        match Self::create_on(&postgres_admin_url()).await {
            Ok(db) => Some(db),
            Err(e) => {
                unavailable("PostgreSQL", &e.to_string());
                None
            }
        }
    }

    /// Creates a fresh database on the server of `admin` (a URL of a database there that
    /// may create databases), first dropping those that tests left behind over an hour ago.
    pub async fn create_on(admin: &str) -> Result<Self, sqlx::Error> {
        let mut conn = PgConnection::connect(admin).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        sweep(&mut conn, now).await;
        let name = format!("syncsets_test_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin.split('?').next().unwrap_or(admin);
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_string(),
        })
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Drops test databases left behind by tests that panicked more than an hour ago.
async fn sweep(conn: &mut PgConnection, now: u64) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'syncsets\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for name in names {
        let created: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// A RabbitMQ virtual host of one test's own (its exchanges and queues are nobody else's),
/// deleted when dropped.
pub struct RabbitVhost {
    /// The broker URL with this virtual host.
    pub url: String,
    name: String,
}

impl RabbitVhost {
    /// Creates one with `rabbitmqctl`, or `None` (after [`unavailable`]) when RabbitMQ is
    /// down.
    pub fn create() -> Option<Self> {
        let base = rabbitmq_url()?;
        let name = format!("syncsets-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
        Some(Self {
            url: format!("{server}/{name}"),
            name,
        })
    }
}

impl Drop for RabbitVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// Runs `rabbitmqctl` with `args` and returns what it printed; panics unless it succeeds.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The virtual host an AMQP URL names (`%2f`, or nothing, is `/`).
pub fn amqp_vhost(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.split_once('/') {
        Some((_, v)) if !v.is_empty() => v
            .split('?')
            .next()
            .unwrap_or_default()
            .replace("%2f", "/")
            .replace("%2F", "/"),
        _ => "/".to_string(),
    }
}

/// How many consumers each queue of `vhost` has, by queue name.
pub fn rabbitmq_consumers(vhost: &str) -> std::collections::BTreeMap<String, u64> {
    let out = rabbitmqctl(&[
        "list_queues",
        "-p",
        vhost,
        "--quiet",
        "--no-table-headers",
        "name",
        "consumers",
    ]);
    out.lines()
        .filter_map(|l| {
            let (name, n) = l.trim().rsplit_once(char::is_whitespace)?;
            Some((name.trim().to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Runs kubectl with a kubeconfig, which must succeed; returns its output.
pub fn kubectl_at(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
