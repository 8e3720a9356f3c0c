//! A hub (API server + controllers) and a member server hosting simulated clusters, in
//! this process on ports 0, with kubectl for both sides. The hub runs on SQLite with the
//! in-process bus, or on PostgreSQL with RabbitMQ.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncsets_controller::{Controller, journal};
use syncsets_testkit::{Backend, RabbitVhost, TestServer};

/// A kubeconfig pointing at `server`.
pub fn kubeconfig(server: &str) -> String {
    syncsets_testkit::kubeconfig(server, None)
}

/// Hub, controllers and a member server.
pub struct Fleet {
    /// The hub.
    pub hub: TestServer,
    /// The member server: one logical cluster per simulated cluster.
    pub member: TestServer,
    /// The controllers.
    pub controller: Option<Controller>,
    /// Temporary files (kubeconfigs, the hub's SQLite file).
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    _vhost: Option<RabbitVhost>,
}

/// What the hub runs on.
#[derive(Clone, Copy, Debug)]
pub enum Hub {
    /// The embedded default: SQLite and the in-process bus.
    Sqlite,
    /// The scaled-out form: PostgreSQL and RabbitMQ (a virtual host of the test's own).
    PostgresRabbitmq,
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Controller settings for tests: quick summaries and retries.
pub fn test_config() -> syncsets_controller::Config {
    let mut config = syncsets_controller::Config {
        summary_interval: Duration::from_millis(100),
        workers: 16,
        ..Default::default()
    };
    config.health.backoff_base = Duration::from_millis(100);
    config.health.backoff_max = Duration::from_secs(2);
    config.health.breaker_base = Duration::from_secs(1);
    config.health.breaker_max = Duration::from_secs(4);
    config.clients.connect_timeout = Duration::from_secs(2);
    config.clients.request_timeout = Duration::from_secs(5);
    config
}

impl Fleet {
    /// A hub on `hub`'s backends with controllers configured by `config` (`None`: those
    /// backends are unavailable, outside CI only).
    pub async fn start(hub: Hub, config: syncsets_controller::Config) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (hub, vhost) = match hub {
            Hub::Sqlite => (TestServer::sqlite().await, None),
            Hub::PostgresRabbitmq => {
                let vhost = RabbitVhost::create()?;
                let bus = syncsets_bus::AmqpBus::new(&vhost.url, 4);
                let server = TestServer::builder()
                    .backend(Backend::Postgres)
                    .bus(bus)
                    .start()
                    .await?;
                (server, Some(vhost))
            }
        };
        let member = TestServer::builder()
            .backend(Backend::Memory)
            .start()
            .await
            .expect("the memory store");
        let mut config = config;
        config
            .journal
            .get_or_insert_with(|| dir.path().join("journal"));
        let controller = Controller::start(hub.state.store.clone(), hub.state.bus.clone(), config)
            .await
            .unwrap();
        std::fs::write(dir.path().join("hub.kubeconfig"), kubeconfig(&hub.base)).unwrap();
        Some(Self {
            hub,
            member,
            controller: Some(controller),
            dir,
            http: reqwest::Client::new(),
            _vhost: vhost,
        })
    }

    /// The hub's kubeconfig file.
    pub fn hub_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("hub.kubeconfig")
    }

    /// The URL of a simulated cluster.
    pub fn cluster_url(&self, name: &str) -> String {
        format!("{}/clusters/{name}", self.member.base)
    }

    /// A kubeconfig file for a simulated cluster.
    pub fn member_kubeconfig(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        if !path.exists() {
            std::fs::write(&path, kubeconfig(&self.cluster_url(name))).unwrap();
        }
        path
    }

    /// Registers a simulated cluster with the hub (namespace `fleet`).
    pub async fn register(&self, name: &str, labels: Value) {
        self.register_at(name, &self.cluster_url(name), labels)
            .await;
    }

    /// Registers a cluster whose API is at `server`.
    pub async fn register_at(&self, name: &str, server: &str, labels: Value) {
        let body = json!({"name": name, "namespace": "fleet", "kubeconfig": kubeconfig(server), "labels": labels});
        let res = self
            .http
            .post(format!("{}/v1/clusters", self.hub.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    /// Runs kubectl with a kubeconfig; returns (success, stdout, stderr).
    pub async fn kubectl(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let cache = self.dir.path().join("kubectl-cache");
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().expect("kubectl runs");
            let mut pipe = child.stdin.take().unwrap();
            if let Some(input) = input {
                pipe.write_all(input.as_bytes()).unwrap();
            }
            drop(pipe);
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    /// `kubectl apply -f -` on the hub; panics on failure.
    pub async fn hub_apply(&self, yaml: &str) {
        let (ok, out, err) = self
            .kubectl(&self.hub_kubeconfig(), &["apply", "-f", "-"], Some(yaml))
            .await;
        assert!(ok, "kubectl apply on the hub failed: {out}{err}");
    }

    /// kubectl on the hub.
    pub async fn hub_kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.kubectl(&self.hub_kubeconfig(), args, None).await
    }

    /// kubectl on a simulated cluster.
    pub async fn member_kubectl(&self, cluster: &str, args: &[&str]) -> (bool, String, String) {
        self.kubectl(&self.member_kubeconfig(cluster), args, None)
            .await
    }

    /// An object on a simulated cluster, read with kubectl (`None`: not found).
    pub async fn member_get(&self, cluster: &str, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let (ok, out, err) = self.member_kubectl(cluster, &all).await;
        if !ok {
            assert!(
                err.contains("NotFound") || err.contains("not found"),
                "kubectl get {args:?}: {err}"
            );
            return None;
        }
        Some(serde_json::from_str(&out).unwrap())
    }

    /// A hub object over HTTP (`None`: 404).
    pub async fn hub_get(&self, path: &str) -> Option<Value> {
        let res = self
            .http
            .get(format!("{}{path}", self.hub.base))
            .send()
            .await
            .unwrap();
        if res.status() == 404 {
            return None;
        }
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        Some(res.json().await.unwrap())
    }

    /// A cluster's ClusterSync.
    pub async fn cluster_sync(&self, name: &str) -> Option<Value> {
        self.hub_get(&format!(
            "/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncs/{name}"
        ))
        .await
    }

    /// Waits until `check` returns `Some` (polling every 100 ms, at most 30 s).
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the controllers have reconciled `cluster` from start to end with
    /// everything written before this call in view: the positive signal after which what
    /// did not happen to the cluster will not happen. The cluster is nudged (a label no
    /// selector reads) so that a reconcile starts after this call; the journal (every
    /// reconcile's start and end) shows when one that started later has ended.
    pub async fn until_reconciled(&self, cluster: &str) {
        let since = now_nanos();
        let nudge = format!("syncsets.test/nudge={since}");
        let (ok, _, err) = self
            .hub_kubectl(&["-n", "fleet", "label", "cd", cluster, &nudge, "--overwrite"])
            .await;
        assert!(ok, "nudging {cluster}: {err}");
        let key = format!("fleet/{cluster}");
        let journal = self.dir.path().join("journal");
        self.until(&format!("a reconcile of {cluster}"), || async {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            let mut started = false;
            for e in journal::parse(&text).unwrap() {
                match e.event {
                    _ if e.cluster != key => {}
                    journal::Event::Start if e.at >= since => started = true,
                    journal::Event::End if started => return Some(()),
                    _ => {}
                }
            }
            None
        })
        .await;
    }

    /// Waits until a cluster's ClusterSync reports `name` (a set) with `result` at
    /// `generation` or later; returns that set's status.
    pub async fn until_set(&self, cluster: &str, field: &str, name: &str, result: &str) -> Value {
        self.until(&format!("{cluster}: {name} {result}"), || async {
            let cs = self.cluster_sync(cluster).await?;
            cs["status"][field]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name && s["result"] == result)
                .cloned()
        })
        .await
    }

    /// Waits until a ClusterMap-like object exists on a member (kubectl get).
    pub async fn until_on_member(&self, cluster: &str, args: &[&str]) -> Value {
        self.until(&format!("{args:?} on {cluster}"), || {
            self.member_get(cluster, args)
        })
        .await
    }

    /// Waits until an object is gone from a member.
    pub async fn until_gone_from_member(&self, cluster: &str, args: &[&str]) {
        self.until(&format!("{args:?} gone from {cluster}"), || async {
            self.member_get(cluster, args).await.is_none().then_some(())
        })
        .await;
    }
}
