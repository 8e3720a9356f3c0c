//! Storage faults against the real binary: a full disk (a small tmpfs of the test's own,
//! filled and freed) is answered 507 while reads go on, `/readyz` says so, and writes work
//! again once space is freed — without a restart, and with nothing acknowledged lost.
//! Mounting needs root (CAP_SYS_ADMIN); where it is impossible the test skips, except
//! under CI.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncsets_testkit::Process;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(dir.to_path_buf())),
            Ok(o) => {
                syncsets_testkit::unavailable(
                    "a tmpfs mount",
                    String::from_utf8_lossy(&o.stderr).trim(),
                );
                None
            }
            Err(e) => {
                syncsets_testkit::unavailable("a tmpfs mount", &e.to_string());
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn cm(name: &str, size: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"blob": "x".repeat(size)}})
}

/// Fills the file system holding `path` until it has no space left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_freed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(dir.path(), "16m") else {
        return;
    };
    let hub = Process::serve_plain(
        env!("CARGO_BIN_EXE_syncsets"),
        &dir.path().join("data"),
        &[],
    );
    let base = hub.url();
    let http = reqwest::Client::new();
    let cms = format!("{base}/api/v1/namespaces/default/configmaps");
    let post = |name: String, size: usize| {
        let (http, cms) = (http.clone(), cms.clone());
        async move {
            let res = http.post(&cms).json(&cm(&name, size)).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ready = || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move { http.get(&url).send().await.unwrap().status().as_u16() }
    };
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let (status, body) = post(format!("before-{i}"), 1024).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(format!("before-{i}"));
    }

    // No space left: writes are refused as such, and /readyz says so.
    let filler = dir.path().join("filler");
    fill(&filler);
    let mut refused = None;
    for i in 0..200 {
        let (status, body) = post(format!("during-{i}"), 64 * 1024).await;
        match status {
            201 => acknowledged.push(format!("during-{i}")),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a write was refused on a full disk");
    assert_eq!(status, 507, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    // Reads go on.
    let read = http.get(format!("{cms}/before-0")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let listed: Value = http.get(&cms).send().await.unwrap().json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().len() >= 20);
    let started = Instant::now();
    while ready().await == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz still says ok on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Space freed: ready again, and writes work without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    while ready().await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz did not recover once space was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..10 {
        let (status, body) = post(format!("after-{i}"), 1024).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(format!("after-{i}"));
    }
    // Nothing acknowledged was lost.
    for name in &acknowledged {
        let got = http.get(format!("{cms}/{name}")).send().await.unwrap();
        assert_eq!(got.status(), 200, "{name} was acknowledged but is gone");
    }
}

/// The machine's PostgreSQL cluster (`pg_ctlcluster VERSION main …`), started again when
/// dropped so that a failing test leaves it up.
struct PostgresCluster(String);

impl PostgresCluster {
    fn find() -> Option<Self> {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .min()?;
        Some(Self(version))
    }

    fn ctl(&self, action: &str) {
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.args(["--skip-systemctl-redirect", &self.0, "main", action]);
        // `stop` is pg_ctlcluster's default fast mode: clients (the server's pool) are
        // disconnected, not waited for.
        let out = cmd.output().expect("pg_ctlcluster runs");
        assert!(
            out.status.success() || action == "start",
            "pg_ctlcluster {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        self.ctl("start");
    }
}

/// PostgreSQL stopped under write load: requests are answered 503 with Retry-After in
/// seconds (not queued for the request deadline), `/readyz` turns and returns, and every
/// acknowledged write is there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_is_answered_503_and_loses_nothing() {
    let Some(db) = syncsets_testkit::TestDb::create().await else {
        return;
    };
    let Some(cluster) = PostgresCluster::find() else {
        syncsets_testkit::unavailable("pg_ctlcluster", "no cluster under /etc/postgresql");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = Process::serve_plain(
        env!("CARGO_BIN_EXE_syncsets"),
        dir.path(),
        &["--store", &db.url],
    );
    let base = hub.url();
    let http = reqwest::Client::new();
    let cms = format!("{base}/api/v1/namespaces/default/configmaps");
    let ready = |http: reqwest::Client| {
        let url = format!("{base}/readyz");
        async move {
            http.get(&url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    // Writes one after another until told to stop: (name, status, latency, Retry-After).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (http, cms, stop) = (http.clone(), cms.clone(), stop.clone());
        async move {
            let mut log = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let name = format!("w-{i}");
                i += 1;
                let started = Instant::now();
                let res = http.post(&cms).json(&cm(&name, 100)).send().await.unwrap();
                let retry = res.headers().contains_key("retry-after");
                log.push((name, res.status().as_u16(), started.elapsed(), retry));
                if res.status() != 201 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            log
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.ctl("stop");
    let stopped = Instant::now();
    while ready(http.clone()).await == 200 {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "/readyz still ok with PostgreSQL down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.ctl("start");
    let started = Instant::now();
    while ready(http.clone()).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz did not recover with PostgreSQL back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let log = load.await.unwrap();

    let failed: Vec<_> = log.iter().filter(|(_, s, _, _)| *s != 201).collect();
    assert!(
        !failed.is_empty(),
        "no write failed while PostgreSQL was down"
    );
    for (name, status, took, retry) in &failed {
        assert_eq!(*status, 503, "{name}");
        assert!(*retry, "{name}: 503 without Retry-After");
        assert!(
            *took < Duration::from_secs(10),
            "{name} waited {took:?} for its 503"
        );
    }
    assert_eq!(log.last().unwrap().1, 201, "writes work again");
    for (name, _, _, _) in log.iter().filter(|(_, s, _, _)| *s == 201) {
        let got = http.get(format!("{cms}/{name}")).send().await.unwrap();
        assert_eq!(got.status(), 200, "{name} was acknowledged but is gone");
    }
    drop(cluster);
    db.drop_db().await;
}

/// Whether the server has closed `stream` (end of file or reset) within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // a response; keep reading until the server closes
        }
    }
}

/// Silent clients, slow (slowloris) clients and idle kept-alive connections are closed
/// after the header timeout; connections beyond the per-address bound are closed on
/// arrival; and the server answers everyone else meanwhile, under 1,000 such connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_excess_connections_are_closed_and_others_served() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let hub = Process::serve_plain(
        env!("CARGO_BIN_EXE_syncsets"),
        dir.path(),
        &[
            "--header-timeout",
            "3s",
            "--max-connections-per-address",
            "200",
        ],
    );
    let base = hub.url();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();

    // 1,000 silent connections from another loopback address (127.0.0.2).
    let mut silent = Vec::new();
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    // A slowloris client: headers begun, never finished.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One byte and nothing more: protocol detection (HTTP/1.1 or the HTTP/2 preface)
    // waits for the rest.
    let mut one_byte = tokio::net::TcpStream::connect(addr).await.unwrap();
    one_byte.write_all(b"P").await.unwrap();
    // A kept-alive connection, idle after one request.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // Everyone else is served meanwhile.
    let started = Instant::now();
    let version = reqwest::get(format!("{base}/version")).await.unwrap();
    assert_eq!(version.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a request waited {:?} behind the silent connections",
        started.elapsed()
    );

    // Beyond 200 from 127.0.0.2: closed on arrival (all looked at together, well inside
    // the header timeout).
    let closed = futures::future::join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_millis(300))),
    )
    .await;
    let open_after_arrival = closed.iter().filter(|c| !**c).count();
    assert_eq!(open_after_arrival, 200, "connections held from one address");

    // After the header timeout, the silent, the slow and the idle are all closed.
    for (what, s) in [
        ("slowloris", &mut slow),
        ("one-byte", &mut one_byte),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(6)).await,
            "{what} connection still open"
        );
    }
    let closed = futures::future::join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(2))),
    )
    .await;
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(still_open, 0, "silent connections still open");
    // And the address may connect again.
    let mut again = tokio::net::TcpSocket::new_v4().unwrap();
    again = {
        again.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        again
    };
    let mut again = again.connect(addr).await.unwrap();
    again
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut again, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
