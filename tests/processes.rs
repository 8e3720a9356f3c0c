//! The `syncsets` binary as separate processes: two API servers sharing PostgreSQL and
//! RabbitMQ, and servers killed with SIGKILL under write load.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncsets_controller::journal;
use syncsets_testkit::{Process, kubectl_at};

/// The `syncsets` binary.
const BIN: &str = env!("CARGO_BIN_EXE_syncsets");

/// A server process.
struct Server {
    process: Process,
    base: String,
}

impl Server {
    /// Starts `syncsets serve` on a free port, plain HTTP (these tests are about other
    /// things; tests/security.rs covers TLS), and waits until it serves.
    fn start(data: &std::path::Path, extra: &[&str]) -> Self {
        let mut args: Vec<&std::ffi::OsStr> = [
            "serve",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
        args.push(data.as_os_str());
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let process = Process::start(BIN, args);
        let base = process.url();
        Self { process, base }
    }

    fn kill(self) {
        self.process.kill(); // SIGKILL
    }
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
}

/// Objects seen ADDED: name → resourceVersion.
type Seen = Arc<Mutex<BTreeMap<String, String>>>;

/// Follows a watch, recording every object it adds, until the stream ends.
async fn follow(url: String, seen: Seen) {
    let mut res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let e: Value = serde_json::from_slice(&line).unwrap();
            if e["type"] == "ADDED" {
                let m = &e["object"]["metadata"];
                seen.lock().unwrap().insert(
                    m["name"].as_str().unwrap().to_string(),
                    m["resourceVersion"].as_str().unwrap().to_string(),
                );
            }
        }
    }
}

/// Follows a watch until `want` objects were added or the deadline passes.
async fn watch_names(url: String, want: usize, deadline: Duration) -> BTreeMap<String, String> {
    let seen = Seen::default();
    let watch = tokio::spawn(follow(url, seen.clone()));
    let end = Instant::now() + deadline;
    while seen.lock().unwrap().len() < want && Instant::now() < end && !watch.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
    seen.lock().unwrap().clone()
}

/// Two servers sharing PostgreSQL and RabbitMQ, and (as they must) the Secret key; the
/// first leads the outbox relay. Their data directories come along.
fn two_servers(db: &str, amqp: &str) -> (Server, Server, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let args = ["--store", db, "--bus", amqp];
    let first = Server::start(dirs[0].path(), &args);
    std::fs::copy(
        dirs[0].path().join("encryption.keys"),
        dirs[1].path().join("encryption.keys"),
    )
    .unwrap();
    let second = Server::start(dirs[1].path(), &args);
    (first, second, dirs)
}

/// The resourceVersion of a list of the default namespace's ConfigMaps.
async fn list_rv(base: &str) -> String {
    stored_configmaps(base).await.1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_server_reaches_a_watcher_on_another() {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    let (a, b, _dirs) = two_servers(&db.url, &amqp);
    let client = reqwest::Client::new();
    let rv = list_rv(&b.base).await;
    let watcher = tokio::spawn(watch_names(
        format!("{}{CM}?watch=true&resourceVersion={rv}", b.base),
        20,
        Duration::from_secs(20),
    ));
    let mut written = BTreeMap::new();
    for i in 0..20 {
        // Alternate servers: whichever relays, everything reaches the watcher on b.
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let name = format!("x{i}");
        let r = client
            .post(format!("{base}{CM}"))
            .json(&cm(&name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        written.insert(
            name,
            body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(watcher.await.unwrap(), written);
    drop((a, b));
    db.drop_db().await;
}

/// A CustomResourceDefinition written through one replica is served by the others at once:
/// its creation, an update (a second version, a short name), and its deletion, which takes
/// its objects with it (they do not come back with the CRD) and leaves no replica storing
/// objects of a gone kind — the deletion made while RabbitMQ is down, and reaching the
/// other replica when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_written_through_one_server_is_served_by_the_other() {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    let (a, b, _dirs) = two_servers(&db.url, &amqp);
    let client = reqwest::Client::new();
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let version = |name: &str| {
        json!({"name": name, "served": true, "storage": name == "v1",
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    };
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [version("v1")]}});
    let create_crd = || async {
        let r = client
            .post(format!("{}{crds}", a.base))
            .json(&crd)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    };
    // What B answers for `path`, until it is `want` (within 10 s, else the test fails).
    let until = |path: &'static str, want: u16| {
        let (client, url) = (client.clone(), format!("{}{path}", b.base));
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = client.get(&url).send().await.unwrap().status().as_u16();
                if got == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the other server answers {got} for {url}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";
    create_crd().await;
    until(WIDGETS, 200).await;
    let widgets = format!("{}{WIDGETS}", b.base);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w1"}, "spec": {"size": 1}});
    let r = client
        .post(widgets.as_str())
        .json(&widget)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // An update: a second version and a short name, served by B.
    let mut updated: Value = client
        .get(format!("{}{crds}/widgets.example.com", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    updated["spec"]["versions"] = json!([version("v1"), version("v2")]);
    updated["spec"]["names"]["shortNames"] = json!(["wd"]);
    let r = client
        .put(format!("{}{crds}/widgets.example.com", a.base))
        .json(&updated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until("/apis/example.com/v2/namespaces/default/widgets", 200).await;
    let discovery: Value = client
        .get(format!("{}/apis/example.com/v1", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["resources"][0]["shortNames"],
        json!(["wd"]),
        "{discovery}"
    );

    // Deleted through A while the bus is down: B learns of it when the bus is back.
    syncsets_testkit::rabbitmqctl(&["stop_app"]);
    let r = client
        .delete(format!("{}{crds}/widgets.example.com", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    syncsets_testkit::rabbitmqctl(&["start_app"]);
    until(WIDGETS, 404).await;
    let r = client
        .post(widgets.as_str())
        .json(&widget)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a gone kind is stored nowhere");

    // Created again: its old objects went with the CRD.
    create_crd().await;
    until(WIDGETS, 200).await;
    let list: Value = client
        .get(widgets.as_str())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "{list}");
    drop((a, b));
    db.drop_db().await;
}

/// Acknowledged writes: (name, resourceVersion).
type Acked = Vec<(String, String)>;

/// Concurrent writers, each stopping at its first failure or when told to.
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<(Acked, Option<String>)>>,
}

impl Load {
    /// Stops the writers; returns every write acknowledged to them.
    async fn finish(self) -> Acked {
        self.finish_all().await.0
    }

    /// Stops the writers; returns every write acknowledged to them, and every failed one
    /// (name: why).
    async fn finish_all(self) -> (Acked, Vec<String>) {
        let _ = self.stop.send(true);
        let (mut acked, mut failed) = (Vec::new(), Vec::new());
        for t in self.tasks {
            let (a, f) = t.await.unwrap();
            acked.extend(a);
            failed.extend(f);
        }
        (acked, failed)
    }
}

/// Starts four writers creating ConfigMaps named after the round.
fn write_load(base: &str, round: usize) -> Load {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let tasks = (0..4)
        .map(|w| {
            let (client, base, stopped) = (client.clone(), base.to_string(), stopped.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let name = format!("r{round}-w{w}-{i}");
                    let why = match client
                        .post(format!("{base}{CM}"))
                        .json(&cm(&name))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            match body["metadata"]["resourceVersion"].as_str() {
                                Some(rv) => {
                                    acked.push((name, rv.to_string()));
                                    continue;
                                }
                                None => "201 without a resourceVersion".to_string(),
                            }
                        }
                        Ok(r) => format!("{}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    // The server died mid-request, say: not acknowledged, so no promise;
                    // this writer stops, and says why.
                    return (acked, Some(format!("{name}: {why}")));
                }
                (acked, None)
            })
        })
        .collect();
    Load { stop, tasks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_write_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Acked = Vec::new();
    for round in 0..3 {
        let server = Server::start(dir.path(), &[]);
        let load = write_load(&server.base, round);
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill();
        acked.extend(load.finish().await);
    }
    assert!(
        acked.len() > 100,
        "the load wrote something: {}",
        acked.len()
    );
    let server = Server::start(dir.path(), &[]);
    // Every acknowledged write is readable, at the version acknowledged.
    let (stored, _) = stored_configmaps(&server.base).await;
    for (name, rv) in &acked {
        assert_eq!(stored.get(name), Some(rv), "acknowledged {name} at {rv}");
    }
    // Every committed change reaches a consumer that resumes from the beginning: the
    // outbox survived every kill, in order.
    let started = Instant::now();
    let seen = watch_names(
        format!("{}{CM}?watch=true&resourceVersion=1", server.base),
        stored.len(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(seen, stored, "after {:?}", started.elapsed());
}

/// Tests that use the broker take turns: one of them stops it.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The broker's turn, a fresh PostgreSQL database and RabbitMQ's URL (`None`: skipped,
/// outside CI only).
async fn backends() -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    syncsets_testkit::TestDb,
    String,
)> {
    let turn = BROKER.lock().await;
    let db = syncsets_testkit::TestDb::create().await?;
    let amqp = syncsets_testkit::rabbitmq_url()?;
    Some((turn, db, amqp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_never_fails_a_write() {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    let (a, b, _dirs) = two_servers(&db.url, &amqp);
    let rv = list_rv(&b.base).await;
    let load = write_load(&a.base, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    syncsets_testkit::rabbitmqctl(&["stop_app"]);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    syncsets_testkit::rabbitmqctl(&["start_app"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (acked, failed) = load.finish_all().await;
    // No write failed: every writer ran until told to stop, through the outage.
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "writes failed while the broker was down"
    );
    let written = acked.len();
    assert!(
        written > 50,
        "writes went on while the broker was down: {written}"
    );
    // The watcher on the other server sees every write, the outage's included.
    let want: BTreeMap<String, String> = acked.into_iter().collect();
    let seen = watch_names(
        format!("{}{CM}?watch=true&resourceVersion={rv}", b.base),
        want.len(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        seen.len(),
        want.len(),
        "{:?} after the outage began",
        down.elapsed()
    );
    assert_eq!(seen, want);
    // Both servers' connections were lost and opened again, and say so (a server whose
    // watchers and writes were elsewhere reconnects on its own time: its consumers retry).
    for server in [&a, &b] {
        let started = Instant::now();
        loop {
            let metrics = reqwest::get(format!("{}/metrics", server.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let reconnects = metrics.lines().find_map(|l| {
                l.strip_prefix(r#"syncsets_bus_reconnects_total{bus="rabbitmq"} "#)?
                    .parse::<f64>()
                    .ok()
            });
            if reconnects.is_some_and(|n| n >= 1.0) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{}: reconnects: {reconnects:?}",
                server.base
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_cross_the_bus_sealed() {
    use base64::Engine as _;
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};

    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--store", &db.url, "--bus", &amqp]);
    // A raw listener on the events exchange: what anyone with access to the broker sees.
    let conn = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        "syncsets.events".into(),
        "#".into(),
        QueueBindOptions::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    const MARKER: &str = "bus-plaintext-marker-91c2";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kc"},
        "stringData": {"kubeconfig": MARKER}});
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/default/secrets", server.base))
        .json(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let b64 = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .expect("the Secret's event reaches the bus")
            .unwrap()
            .unwrap();
        for needle in [MARKER.as_bytes(), b64.as_bytes()] {
            assert!(
                !delivery.data.windows(needle.len()).any(|w| w == needle),
                "a bus message holds a Secret's plaintext"
            );
        }
        let event: Value = serde_json::from_slice(&delivery.data).unwrap();
        if event["key"]["resource"] == "secrets" {
            assert!(event["sealed"].is_string(), "the Secret travels sealed");
            break;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    drop(server);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_relaying_server_loses_nothing_on_the_bus() {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    // The first server to start leads the relay: the one that will be killed.
    let (first, survivor, dirs) = two_servers(&db.url, &amqp);
    let args = ["--store", db.url.as_str(), "--bus", amqp.as_str()];
    let rv = list_rv(&survivor.base).await;
    // A consumer on the surviving server, fed through RabbitMQ, for the whole test.
    let seen = Seen::default();
    let consumer = tokio::spawn(follow(
        format!("{}{CM}?watch=true&resourceVersion={rv}", survivor.base),
        seen.clone(),
    ));
    let mut acked: Acked = Vec::new();
    let mut server = Some(first);
    for round in 0..3 {
        let s = server
            .take()
            .unwrap_or_else(|| Server::start(dirs[0].path(), &args));
        let load = write_load(&s.base, round);
        tokio::time::sleep(Duration::from_millis(800)).await;
        s.kill();
        acked.extend(load.finish().await);
    }
    assert!(
        acked.len() > 50,
        "the load wrote something: {}",
        acked.len()
    );
    // The survivor takes over the relay and everything acknowledged reaches the consumer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<(String, String, Option<String>)> = acked
            .iter()
            .filter(|(n, rv)| seen.lock().unwrap().get(n) != Some(rv))
            .map(|(n, rv)| (n.clone(), rv.clone(), seen.lock().unwrap().get(n).cloned()))
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "{} acknowledged writes never reached the consumer: {missing:?}",
                missing.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    drop(survivor);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_sim_registers_clusters_that_kubectl_can_use() {
    use base64::Engine as _;
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &[]);
    let sim = Process::start(
        BIN,
        [
            "fleet-sim",
            "--clusters",
            "5",
            "--listen",
            "127.0.0.1:0",
            "--labels",
            "env=prod",
            "--hub",
            &hub.base,
        ],
    );
    let line = &sim.first_line;
    assert!(line.contains("5 registered"), "{line}");
    let cds: Value = reqwest::get(format!(
        "{}/apis/hive.openshift.io/v1/namespaces/fleet/clusterdeployments?labelSelector=env%3Dprod,fleet.syncsets.io%2Fgroup%3D3",
        hub.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let items = cds["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{cds}");
    assert_eq!(items[0]["metadata"]["name"], "sim-00003");
    assert_eq!(items[0]["spec"]["installed"], true);
    // The kubeconfig in the hub's Secret reaches the simulated cluster, for kubectl too.
    let secret_name = items[0]["spec"]["clusterMetadata"]["adminKubeconfigSecretRef"]["name"]
        .as_str()
        .unwrap();
    let secret: Value = reqwest::get(format!(
        "{}/api/v1/namespaces/fleet/secrets/{secret_name}",
        hub.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let kubeconfig = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["kubeconfig"].as_str().unwrap())
        .unwrap();
    let path = hub_dir.path().join("member-kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    let kubectl = |args: &[&str]| kubectl_at(&path, args);
    assert!(kubectl(&["get", "ns"]).contains("default"));
    kubectl(&["create", "configmap", "only-here", "--from-literal=a=1"]);
    assert!(kubectl(&["get", "cm"]).contains("only-here"));
    // Workloads become ready as on a cluster (KWOK's way, nothing runs), but one annotated
    // never-ready, which shows as a stuck rollout.
    let workloads = hub_dir.path().join("workloads.yaml");
    std::fs::write(&workloads, WORKLOADS).unwrap();
    kubectl(&["apply", "-f", workloads.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/agent",
        "--timeout=60s",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/once",
        "--timeout=60s",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Progressing=False",
        "deployment/stuck",
        "--timeout=60s",
    ]);
    assert!(
        kubectl(&["get", "deployment", "agent"]).contains("2/2"),
        "{}",
        kubectl(&["get", "deployment"])
    );
    assert_eq!(
        kubectl(&[
            "get",
            "deployment",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Available')].status} {.status.readyReplicas}"
        ])
        .trim(),
        "False"
    );
    // Another simulated cluster is a separate API.
    let other = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sim-00003", "sim-00004");
    std::fs::write(&path, other).unwrap();
    assert!(!kubectl(&["get", "cm"]).contains("only-here"));
    sim.kill();
}

/// A Deployment of two replicas, one that never becomes ready, and a Job.
const WORKLOADS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: agent, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  namespace: default
  annotations: {fleet.syncsets.io/never-ready: \"true\"}
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: agent, image: agent:1}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: busybox}]
";

/// `syncsets fleet-sim` with `clusters` simulated clusters registered with the hub at
/// `base`, and its first line of output.
fn fleet_sim(base: &str, clusters: usize) -> (Process, String) {
    fleet_sim_with(base, clusters, &[])
}

/// [`fleet_sim`] with more arguments.
fn fleet_sim_with(base: &str, clusters: usize, more: &[&str]) -> (Process, String) {
    let clusters = clusters.to_string();
    let mut args = vec![
        "fleet-sim",
        "--hub",
        base,
        "--clusters",
        &clusters,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(more);
    start_proc(&args)
}

/// `syncsets fleet-sim` with `clusters` simulated clusters labelled `env=prod`, registered
/// with the hub at `base`, and the URL of its member server.
fn prod_fleet(base: &str, clusters: usize) -> (Process, String) {
    prod_fleet_with(base, clusters, &[])
}

/// [`prod_fleet`] with more arguments of `fleet-sim`.
fn prod_fleet_with(base: &str, clusters: usize, more: &[&str]) -> (Process, String) {
    let mut args = vec!["--labels", "env=prod"];
    args.extend_from_slice(more);
    let (process, line) = fleet_sim_with(base, clusters, &args);
    assert!(line.contains(&format!("{clusters} registered")), "{line}");
    (process, member_url(&line))
}

/// The URL of the member server `fleet-sim` names in its first line.
fn member_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches(':')
        .to_string()
}

/// Starts `syncsets <args>` and returns it with its first line of output.
fn start_proc(args: &[&str]) -> (Process, String) {
    let process = Process::start(BIN, args);
    let line = process.first_line.clone();
    (process, line)
}

/// One reconcile as the journal recorded it: which process, when (ns since the epoch).
#[derive(Debug)]
struct Span {
    pid: u32,
    replica: i64,
    start: u128,
    end: u128,
}

/// The journal's reconciles by cluster; one whose process was killed ends at `killed`.
fn journal_spans(text: &str, killed: (u32, u128)) -> BTreeMap<String, Vec<Span>> {
    let mut open: BTreeMap<(u32, String), (i64, u128)> = BTreeMap::new();
    let mut spans: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for e in journal::parse(text).unwrap() {
        let (pid, cluster, at) = (e.pid, e.cluster, e.at);
        match e.event {
            journal::Event::Start => {
                let previous = open.insert((pid, cluster.clone()), (e.replica, at));
                assert!(
                    previous.is_none(),
                    "process {pid} started {cluster} twice at once"
                );
            }
            journal::Event::End => {
                let (replica, start) = open
                    .remove(&(pid, cluster.clone()))
                    .expect("an end follows a start");
                spans.entry(cluster).or_default().push(Span {
                    pid,
                    replica,
                    start,
                    end: at,
                });
            }
        }
    }
    for ((pid, cluster), (replica, start)) in open {
        assert_eq!(
            pid, killed.0,
            "only the killed replica leaves reconciles unfinished"
        );
        spans.entry(cluster).or_default().push(Span {
            pid,
            replica,
            start,
            end: killed.1,
        });
    }
    spans
}

/// Whether another process has started a cluster that process `pid` started and has not
/// ended.
fn taken_over(text: &str, pid: u32) -> bool {
    let mut open = std::collections::BTreeSet::new();
    for e in journal::parse(text).unwrap() {
        match e.event {
            journal::Event::Start if e.pid == pid => {
                open.insert(e.cluster);
            }
            journal::Event::End if e.pid == pid => {
                open.remove(&e.cluster);
            }
            journal::Event::Start if open.contains(&e.cluster) => return true,
            _ => {}
        }
    }
    false
}

/// What happens to the controller replicas mid-rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disruption {
    /// Replica 1 is SIGKILLed.
    Kill,
    /// A third replica joins: shards move to it from the two running.
    Join,
    /// Replica 1 is SIGSTOPped past `--replica-ttl` (the others count it gone) and past its
    /// broker heartbeat (RabbitMQ closes its connection and hands its unfinished work to the
    /// others), then SIGCONTed: its reconciles in flight must not go on.
    Stall,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_controller_replica_mid_rollout_completes_it_and_no_cluster_is_reconciled_twice_at_once()
 {
    rollout_through(Disruption::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_joining_mid_rollout_takes_shards_and_no_cluster_is_reconciled_twice_at_once() {
    rollout_through(Disruption::Join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_resuming_mid_rollout_never_reconciles_a_cluster_another_has() {
    rollout_through(Disruption::Stall).await;
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A rollout over 40 simulated clusters by controller replicas, disrupted once it is under
/// way; it completes, and the replicas' journals show no cluster reconciled by two of them
/// at once.
async fn rollout_through(disruption: Disruption) {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    const CLUSTERS: usize = 40;
    let hub_dir = tempfile::tempdir().unwrap();
    let data = hub_dir.path().to_str().unwrap();
    // A stalled replica's broker connection is closed after a two-second heartbeat.
    let replica_bus = match disruption {
        Disruption::Stall => format!("{amqp}?heartbeat=2"),
        _ => amqp.clone(),
    };
    let store_args = [
        "--store",
        db.url.as_str(),
        "--bus",
        replica_bus.as_str(),
        "--data-dir",
        data,
    ];
    let hub = Server::start(
        hub_dir.path(),
        &["--store", &db.url, "--bus", &amqp, "--controllers", "false"],
    );
    let (_member, line) = fleet_sim(&hub.base, CLUSTERS);
    assert!(line.contains(&format!("{CLUSTERS} registered")), "{line}");
    let journal = hub_dir.path().join("journal");
    let journal_arg = journal.to_str().unwrap();
    let start_replica = |replica: usize| {
        let mut args = vec!["controller", "--replica"];
        let ordinal = replica.to_string();
        args.push(&ordinal);
        args.extend_from_slice(&store_args);
        // Slow applies (each cluster takes about two seconds, five for a stall), so the
        // rollout is under way when a replica dies; a dead replica's share moves after
        // three seconds.
        args.extend_from_slice(&[
            "--workers",
            "4",
            "--cluster-qps",
            if disruption == Disruption::Stall {
                "2"
            } else {
                "5"
            },
            "--cluster-burst",
            "1",
            "--replica-ttl",
            "3s",
            "--reconcile-journal",
            journal_arg,
            "--metrics-bind-address",
            "127.0.0.1:0",
        ]);
        let (proc, line) = start_proc(&args);
        assert!(
            line.contains(&format!("replica {replica} running")),
            "{line}"
        );
        proc
    };
    let initial = if disruption == Disruption::Join { 2 } else { 3 };
    let mut replicas: Vec<Option<Process>> = (0..initial).map(|r| Some(start_replica(r))).collect();
    // Let the replicas settle their shares, then start the rollout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resources: Vec<Value> = (0..10)
        .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("rollout-{i}"), "namespace": "default"}, "data": {"i": i.to_string()}}))
        .collect();
    let set = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
        "metadata": {"name": "rollout"},
        "spec": {"clusterDeploymentSelector": {"matchLabels": {"fleet.syncsets.io/simulated": "true"}},
                 "resources": resources}});
    let client = reqwest::Client::new();
    create_selector_sync_set(&hub.base, &set).await;
    let in_sync = || async {
        let s: Value = client
            .get(format!(
                "{}/apis/hive.openshift.io/v1/selectorsyncsets/rollout",
                hub.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["status"]["inSync"].as_u64().unwrap_or(0) as usize
    };
    let started = Instant::now();
    while in_sync().await < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rollout did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The replica disrupted (for a join, the one that joins) and, if killed, when.
    let (pid, killed_at) = match disruption {
        Disruption::Kill => {
            let victim = replicas[1].take().unwrap();
            let pid = victim.pid();
            let killed_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            drop(victim); // SIGKILL
            (pid, killed_at)
        }
        Disruption::Join => {
            let joined = start_replica(2);
            let pid = joined.pid();
            replicas.push(Some(joined));
            (pid, 0)
        }
        Disruption::Stall => {
            let pid = replicas[1].as_ref().unwrap().pid();
            signal(pid, "STOP");
            // Past --replica-ttl and the broker heartbeat: the others count it gone, take
            // its shards and get its unfinished work; it resumes once one of them has
            // started a cluster it was reconciling.
            let stopped = Instant::now();
            while !taken_over(&std::fs::read_to_string(&journal).unwrap(), pid) {
                assert!(
                    stopped.elapsed() < Duration::from_secs(30),
                    "the others never took over the stalled replica's work"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            signal(pid, "CONT");
            (pid, 0)
        }
    };
    let progress = in_sync().await;
    assert!(
        progress < CLUSTERS,
        "{disruption:?} mid-rollout ({progress} of {CLUSTERS} done)"
    );
    while in_sync().await < CLUSTERS {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the rollout did not complete: {} of {CLUSTERS}",
            in_sync().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every cluster has the ten objects.
    let syncs: Value = client
        .get(format!(
            "{}/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncs",
            hub.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owners: std::collections::BTreeSet<i64> = syncs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cs| cs["status"]["controlledByReplica"].as_i64().unwrap())
        .collect();
    assert!(
        owners.len() >= 2,
        "the work was spread over replicas: {owners:?}"
    );
    // No cluster was ever reconciled by two replicas at once.
    let spans = journal_spans(
        &std::fs::read_to_string(&journal).unwrap(),
        (pid, killed_at),
    );
    assert!(spans.len() >= CLUSTERS, "every cluster was reconciled");
    assert!(
        spans.values().flatten().any(|s| s.pid == pid),
        "the {disruption:?} replica had been working"
    );
    for (cluster, list) in &spans {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let overlap = a.pid != b.pid && a.start < b.end && b.start < a.end;
                assert!(
                    !overlap,
                    "{cluster} reconciled at once by replicas {} and {}: {a:?} {b:?}",
                    a.replica, b.replica
                );
            }
        }
    }
    drop(replicas);
    db.drop_db().await;
}

/// The platform sets of `tests/fixtures/platform` (a monitoring agent: namespace,
/// ServiceAccount, RBAC, DaemonSet, Service; a tenant's guardrails: NetworkPolicy,
/// ResourceQuota, LimitRange, PriorityClass, CronJob), applied to the hub with kubectl as
/// Hive YAML. They converge on a simulated fleet; on a member each object is as the set
/// has it (`kubectl diff` shows nothing) and the DaemonSet rolls out; deleting the sets
/// (Sync mode) deletes everything they applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_sets_converge_on_a_simulated_fleet_and_leave_cleanly() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &[]);
    let (_member, member) = prod_fleet(&hub.base, 3);
    let hub_kubeconfig = hub_dir.path().join("kubeconfig");
    // What each cluster's installer made: a router the patch set pins the image of.
    let members: Vec<std::path::PathBuf> = (0..3)
        .map(|i| member_kubeconfig(hub_dir.path(), &member, &format!("sim-{i:05}")))
        .collect();
    let router = hub_dir.path().join("router.yaml");
    std::fs::write(&router, ROUTER).unwrap();
    for m in &members {
        kubectl_at(m, &["apply", "-f", router.to_str().unwrap()]);
    }
    let fixtures = [
        "monitoring-agent.yaml",
        "tenant-guardrails.yaml",
        "backup-operator.yaml",
        "router-image-patch.yaml",
    ]
    .map(|f| format!("{}/tests/fixtures/platform/{f}", env!("CARGO_MANIFEST_DIR")));
    for f in &fixtures {
        kubectl_at(&hub_kubeconfig, &["apply", "-f", f]);
    }
    wait_in_sync(&hub_kubeconfig, "90s");
    let kubectl = |args: &[&str]| kubectl_at(&members[1], args);
    // The DaemonSet rolls out (first: its status does not change after).
    kubectl(&[
        "-n",
        "monitoring",
        "rollout",
        "status",
        "daemonset/node-exporter",
        "--timeout=60s",
    ]);
    // The operator runs, and its custom resource is served, defaulted as its CRD says.
    kubectl(&[
        "-n",
        "backup-system",
        "rollout",
        "status",
        "deployment/backup-operator",
        "--timeout=60s",
    ]);
    assert_eq!(
        kubectl(&[
            "-n",
            "backup-system",
            "get",
            "bks",
            "nightly",
            "-o",
            "jsonpath={.spec.schedule} {.spec.retentionDays}",
        ]),
        "0 2 * * * 7"
    );
    // The router's image is pinned; the rest of it is as the installer made it.
    assert_eq!(
        kubectl(&[
            "-n",
            "openshift-ingress",
            "get",
            "deploy",
            "router-default",
            "-o",
            "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {end}{.spec.template.spec.containers[0].env[0].value}",
        ]),
        "router=quay.io/openshift/origin-haproxy-router:4.16.3 logs=registry.example.com/logs:2 1936"
    );
    // Every object as the set has it.
    for f in &fixtures {
        let set: Value = serde_norway::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let Some(resources) = set["spec"]["resources"].as_array() else {
            continue; // patches only
        };
        let list = hub_dir.path().join("applied.json");
        std::fs::write(
            &list,
            json!({"apiVersion": "v1", "kind": "List", "items": resources}).to_string(),
        )
        .unwrap();
        let diff = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&members[1])
            .args(["diff", "-f"])
            .arg(&list)
            .output()
            .unwrap();
        assert!(
            diff.status.success() && diff.stdout.is_empty(),
            "{f}: kubectl diff:\n{}{}",
            String::from_utf8_lossy(&diff.stdout),
            String::from_utf8_lossy(&diff.stderr)
        );
    }
    // Gone with the sets; what they did not create stays.
    for f in &fixtures {
        kubectl_at(&hub_kubeconfig, &["delete", "-f", f]);
    }
    let started = Instant::now();
    loop {
        let left = kubectl(&[
            "get",
            "namespaces,clusterroles,clusterrolebindings,priorityclasses,crds",
            "-o",
            "name",
        ]);
        assert!(left.contains("namespace/openshift-ingress"), "{left}");
        let left: Vec<&str> = left
            .lines()
            .filter(|l| {
                [
                    "monitoring",
                    "team-a",
                    "node-exporter",
                    "platform-critical",
                    "backup-system",
                    "backup-operator",
                    "backupschedules.backup.platform.example.com",
                ]
                .iter()
                .any(|n| l.ends_with(&format!("/{n}")))
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still on the cluster after the sets were deleted: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The router an installer made (patched by `router-image-patch.yaml`).
const ROUTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: openshift-ingress
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: router-default
  namespace: openshift-ingress
spec:
  replicas: 2
  selector:
    matchLabels: {app: router}
  template:
    metadata:
      labels: {app: router}
    spec:
      containers:
      - name: router
        image: quay.io/openshift/origin-haproxy-router:4.15.0
        env:
        - name: ROUTER_SERVICE_HTTP_PORT
          value: "1936"
        ports:
        - containerPort: 80
      - name: logs
        image: registry.example.com/logs:2
"#;

/// The rollout of a SelectorSyncSet as its summary has it: (clusters in sync, failing
/// clusters by name).
async fn rollout_of(base: &str, set: &str) -> (u64, Vec<String>) {
    let set: Value = reqwest::get(format!(
        "{base}/apis/hive.openshift.io/v1/selectorsyncsets/{set}"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let status = &set["status"];
    let mut failing: Vec<String> = status["failingClusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    failing.sort();
    (status["inSync"].as_u64().unwrap_or(0), failing)
}

/// Waits until a set's rollout is `(in_sync, failing)`.
async fn wait_rollout(base: &str, set: &str, in_sync: u64, failing: &[&str]) {
    let started = Instant::now();
    loop {
        let now = rollout_of(base, set).await;
        if now.0 == in_sync && now.1 == failing {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{set}: {now:?}, not {in_sync} in sync and {failing:?} failing"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// With a tenth of the fleet down, the rest converges and the down clusters say why; a
/// cluster that is slow, slower to discover, answers some requests 500 and half of them
/// 429 converges too (a set is applied whole, or retried whole, as in Hive; a throttled
/// request is sent again after the wait the cluster asks for, as client-go does). Faults
/// change while the simulator runs, and bad ones change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_faulty_clusters_converges_where_it_can_and_says_why_elsewhere() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &[]);
    let (_member, member) = prod_fleet_with(
        &hub.base,
        20,
        &[
            "--fault",
            "10%:unreachable",
            "--fault",
            "sim-00003:latency=100ms,discovery-latency=1s,errors=3%,throttle=50%",
        ],
    );
    let fixture = format!(
        "{}/tests/fixtures/platform/tenant-guardrails.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let hub_kubeconfig = hub_dir.path().join("kubeconfig");
    kubectl_at(&hub_kubeconfig, &["apply", "-f", &fixture]);
    let set = "tenant-guardrails";
    wait_rollout(&hub.base, set, 18, &["fleet/sim-00009", "fleet/sim-00019"]).await;
    // A down cluster says why, in its ClusterSync as Hive has it.
    let sync = kubectl_at(
        &hub_kubeconfig,
        &[
            "-n",
            "fleet",
            "get",
            "clustersync",
            "sim-00009",
            "-o",
            "json",
        ],
    );
    let sync: Value = serde_json::from_str(&sync).unwrap();
    let failed = sync["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(failed["status"], "True", "{failed}");
    assert_eq!(failed["reason"], "Unreachable", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("the cluster is unreachable"),
        "{failed}"
    );

    // The simulator's fault controls.
    let http = reqwest::Client::new();
    let faults = format!("{member}/fleet-sim/faults");
    let all: Value = http
        .get(&faults)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all,
        json!({
            "sim-00003": {"latency": "100ms", "discoveryLatency": "1s", "errorRate": 0.03, "throttleRate": 0.5},
            "sim-00009": {"unreachable": true},
            "sim-00019": {"unreachable": true},
        })
    );
    for (cluster, body, code, says) in [
        (
            "sim-00003",
            r#"{"errorRate": 2}"#,
            422,
            "errorRate: must be between 0 and 1",
        ),
        (
            "sim-00003",
            r#"{"errorRate": 0.6, "throttleRate": 0.6}"#,
            422,
            "must be at most 1",
        ),
        (
            "sim-00003",
            r#"{"latency": "soon"}"#,
            400,
            "invalid duration \"soon\"",
        ),
        (
            "sim-00003",
            r#"{"down": true}"#,
            400,
            "unknown field `down`",
        ),
        ("sim-00003", "unreachable", 400, "a fault is {"),
        (
            "sim-00020",
            r#"{"unreachable": true}"#,
            404,
            "sim-00000 to sim-00019",
        ),
    ] {
        let res = http
            .put(format!("{faults}/{cluster}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), code, "{body}");
        let status: Value = res.json().await.unwrap();
        assert_eq!(status["kind"], "Status", "{status}");
        assert!(
            status["message"].as_str().unwrap().contains(says),
            "{body}: {status}"
        );
    }
    let unchanged: Value = http
        .get(&faults)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged, all, "a refused fault changed the faults");

    // sim-00009 comes back, sim-00005 goes down: the next change of the set shows both.
    let res = http
        .delete(format!("{faults}/sim-00009"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http
        .put(format!("{faults}/sim-00005"))
        .body(r#"{"unreachable": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    kubectl_at(
        &hub_kubeconfig,
        &[
            "patch",
            "selectorsyncset",
            set,
            "--type=json",
            "-p",
            r#"[{"op": "add", "path": "/spec/resources/0/metadata/labels", "value": {"tier": "gold"}}]"#,
        ],
    );
    wait_rollout(&hub.base, set, 18, &["fleet/sim-00005", "fleet/sim-00019"]).await;
    let member_kubeconfig = member_kubeconfig(hub_dir.path(), &member, "sim-00009");
    let labels = kubectl_at(
        &member_kubeconfig,
        &[
            "get",
            "namespace",
            "team-a",
            "-o",
            "jsonpath={.metadata.labels.tier}",
        ],
    );
    assert_eq!(labels, "gold");
}

/// Creates a SelectorSyncSet through the hub at `base`.
async fn create_selector_sync_set(base: &str, set: &Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/apis/hive.openshift.io/v1/selectorsyncsets"))
        .json(set)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

/// Runs `syncsets status --watch` against the hub of `kubeconfig` until every targeted
/// cluster is in sync (failing after `timeout`); returns its output.
fn wait_in_sync(kubeconfig: &std::path::Path, timeout: &str) -> String {
    let (ok, out) = run_syncsets(&[
        "status",
        "--watch",
        "--timeout",
        timeout,
        "--interval",
        "200ms",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert!(
        ok && out.ends_with("All targeted clusters are in sync.\n"),
        "{out}"
    );
    out
}

/// A kubeconfig (in `dir`) of simulated cluster `cluster` of the member server at `member`.
fn member_kubeconfig(dir: &std::path::Path, member: &str, cluster: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{cluster}.kubeconfig"));
    std::fs::write(
        &path,
        syncsets_testkit::kubeconfig(&format!("{member}/clusters/{cluster}"), None),
    )
    .unwrap();
    path
}

/// Runs `syncsets <args>` to completion: (success, stdout).
fn run_syncsets(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .args(args)
        .env("SYNCSETS_LOG", "warn")
        .output()
        .expect("syncsets runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_syncs_a_simulated_fleet_and_reports_it() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &[]);
    let (_member, member) = prod_fleet(&hub.base, 5);
    let set = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": "prod-baseline"},
        "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "prod"}},
                 "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "fleet-settings", "namespace": "default"}, "data": {"mode": "safe"}}]}});
    create_selector_sync_set(&hub.base, &set).await;
    let hub_kubeconfig = hub_dir.path().join("kubeconfig");
    let kubeconfig = hub_kubeconfig.to_str().unwrap();
    let out = wait_in_sync(&hub_kubeconfig, "60s");
    let last_table: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("SelectorSyncSet/prod-baseline"))
        .collect();
    let columns: Vec<&str> = last_table.last().unwrap().split_whitespace().collect();
    assert_eq!(
        &columns[..5],
        ["SelectorSyncSet/prod-baseline", "5", "5", "0", "0"],
        "{out}"
    );

    // Drift on one cluster, corrected on request.
    let member_kubeconfig = member_kubeconfig(hub_dir.path(), &member, "sim-00002");
    let kubectl = |args: &[&str]| kubectl_at(&member_kubeconfig, args);
    kubectl(&[
        "-n",
        "default",
        "patch",
        "cm",
        "fleet-settings",
        "-p",
        r#"{"data":{"mode":"unsafe"}}"#,
    ]);
    let (ok, out) = run_syncsets(&["resync", "--kubeconfig", kubeconfig, "fleet/sim-00002"]);
    assert!(
        ok && out.contains("fleet/sim-00002: full reapply requested"),
        "{out}"
    );
    // A cluster that does not exist is an error, not a pending reapply.
    let (ok, out) = run_syncsets(&["resync", "--kubeconfig", kubeconfig, "fleet/no-such"]);
    assert!(
        !ok && out.contains(r#"clusterdeployments.hive.openshift.io "no-such" not found"#),
        "{out}"
    );
    let started = Instant::now();
    while kubectl(&[
        "-n",
        "default",
        "get",
        "cm",
        "fleet-settings",
        "-o",
        "jsonpath={.data.mode}",
    ]) != "safe"
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the resync did not restore the object"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_converges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data_arg = data.to_str().unwrap();
    let mut demo = Process::start(
        BIN,
        [
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--clusters",
            "5",
            "--data-dir",
            data_arg,
            "--dashboard",
            "127.0.0.1:0",
        ],
    );
    let first = demo.first_line.clone();
    let lines = demo.lines();
    // Read to the end (the demo goes on printing), telling when it has converged.
    let (converged_tx, converged) = tokio::sync::oneshot::channel();
    let reader = tokio::task::spawn_blocking(move || {
        let mut seen = first;
        let mut converged_tx = Some(converged_tx);
        for line in lines {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("Converged.")
                && let Some(tx) = converged_tx.take()
            {
                let _ = tx.send(());
            }
        }
        seen
    });
    let result = tokio::time::timeout(Duration::from_secs(60), converged).await;
    demo.kill();
    let seen = reader.await.unwrap();
    assert!(
        matches!(result, Ok(Ok(()))),
        "the demo converges within a minute: {seen}"
    );
    assert!(
        seen.contains("SelectorSyncSet/demo-baseline         5        5        0        0"),
        "{seen}"
    );
    assert!(data.join("kubeconfig").exists() && data.join("sim-00000.kubeconfig").exists());
    // The dashboard's address, to watch the rollout in a browser.
    let dashboard = seen
        .lines()
        .find_map(|l| l.strip_prefix("dashboard on "))
        .unwrap_or_else(|| panic!("the demo prints the dashboard's address: {seen}"));
    assert!(
        dashboard.starts_with("http://127.0.0.1:") && dashboard.contains("/#token="),
        "{dashboard}"
    );
}

/// The ConfigMaps of `default` (name → resourceVersion) and the list's resourceVersion.
async fn stored_configmaps(base: &str) -> (BTreeMap<String, String>, u64) {
    let list: Value = reqwest::get(format!("{base}{CM}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            (
                m["name"].as_str().unwrap().to_string(),
                m["resourceVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let at = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (versions, at)
}

/// What a restored hub must show: every acknowledged write in `kept` at its version, and
/// nothing else of the load; a watch from `seen` (a version the old hub gave out, after
/// the snapshot) gets 410 Gone; a new write comes after `seen`; a sealed Secret reads back.
async fn restored_hub_never_goes_backwards(base: &str, kept: &Acked, seen: u64) {
    let client = reqwest::Client::new();
    let (mut restored, listed) = stored_configmaps(base).await;
    restored.retain(|name, _| name.starts_with('r'));
    let want: BTreeMap<String, String> = kept.iter().cloned().collect();
    assert_eq!(
        restored, want,
        "the restored hub holds exactly the snapshot's writes"
    );
    assert!(
        listed > seen,
        "a list after the restore is at {listed}, not past {seen}"
    );
    let watch = client
        .get(format!("{base}{CM}?watch=true&resourceVersion={seen}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        watch.status(),
        410,
        "a watch from before the restore relists"
    );
    let created: Value = client
        .post(format!("{base}{CM}"))
        .json(&cm("after-restore"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > seen,
        "a write after the restore is at {rv}, not past {seen}"
    );
    let secret: Value = client
        .get(format!("{base}/api/v1/namespaces/default/secrets/creds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secret["data"]["token"], "czNjcjN0", "{secret}");
}

async fn create_secret(base: &str) {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"token": "czNjcjN0"}});
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/namespaces/default/secrets"))
        .json(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// `syncsets backup` while four writers go on, then `syncsets restore` into a new data
/// directory: the snapshot holds every write acknowledged up to its resourceVersion (so
/// every write acknowledged before it began) and nothing after; resourceVersions never go
/// backwards for clients of the restored hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_and_restore_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("source"), dir.path().join("target"));
    let server = Server::start(&source, &[]);
    create_secret(&server.base).await;
    let load = write_load(&server.base, 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let file = dir.path().join("snapshot.db");
    let (ok, out) = run_syncsets(&[
        "backup",
        file.to_str().unwrap(),
        "--data-dir",
        source.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let acked = load.finish().await;
    let snapshot: u64 = out
        .split("at resourceVersion ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let seen: u64 = list_rv(&server.base).await.parse().unwrap();
    drop(server);
    let (kept, after): (Acked, Acked) = acked
        .into_iter()
        .partition(|(_, rv)| rv.parse::<u64>().unwrap() <= snapshot);
    assert!(
        !kept.is_empty() && !after.is_empty(),
        "writes went on before and during the backup: {} then {}",
        kept.len(),
        after.len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the snapshot is its owner's only");
    }
    // A data directory with a database is not overwritten.
    let (ok, out) = run_syncsets(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        source.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("exists"), "{out}");
    // A restore that fails leaves no database behind: the next one can go ahead.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, "not a database").unwrap();
    let (ok, out) = run_syncsets(&[
        "restore",
        garbage.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(!target.join("syncsets.db").exists(), "{out}");
    let (ok, out) = run_syncsets(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("encryption.keys is missing"), "{out}");
    std::fs::copy(
        source.join("encryption.keys"),
        target.join("encryption.keys"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o700);
        assert_eq!(mode(&target.join("syncsets.db")), 0o600);
    }
    let restored = Server::start(&target, &[]);
    restored_hub_never_goes_backwards(&restored.base, &kept, seen).await;
}

/// PostgreSQL: pg_dump, pg_restore into a new database, `syncsets restore --store URL`:
/// every acknowledged write is back, and resourceVersions never go backwards for clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_never_goes_backwards() {
    let Some(db) = syncsets_testkit::TestDb::create().await else {
        return;
    };
    let Some(copy) = syncsets_testkit::TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--store", &db.url]);
    create_secret(&server.base).await;
    let load = write_load(&server.base, 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let acked = load.finish().await;
    let dump = dir.path().join("dump");
    let pg = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pg(
        "pg_dump",
        &["--format=custom", "--file", dump.to_str().unwrap(), &db.url],
    );
    // Writes after the dump: the restored hub is behind them.
    let later = write_load(&server.base, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!later.finish().await.is_empty());
    let seen: u64 = list_rv(&server.base).await.parse().unwrap();
    drop(server);
    pg(
        "pg_restore",
        &["--no-owner", "--dbname", &copy.url, dump.to_str().unwrap()],
    );
    let (ok, out) = run_syncsets(&[
        "restore",
        "--store",
        &copy.url,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let restored = Server::start(dir.path(), &["--store", &copy.url]);
    restored_hub_never_goes_backwards(&restored.base, &acked, seen).await;
    drop(restored);
    db.drop_db().await;
    copy.drop_db().await;
}

/// A real Prometheus (Debian's package) scrapes a hub during a small rollout: the API's
/// request rate is above zero, and the set's clusters in sync reach the fleet's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_rollout() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        syncsets_testkit::unavailable("prometheus", "Debian's prometheus package is not installed");
        return;
    }
    const CLUSTERS: usize = 5;
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &[]);
    let (_member, line) = fleet_sim(&hub.base, CLUSTERS);
    assert!(line.contains("registered"), "{line}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = hub_dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             - job_name: syncsets\n  static_configs: [{{targets: ['{}']}}]\n",
            hub.base.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            hub_dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let set = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": "scraped"},
        "spec": {"clusterDeploymentSelector": {"matchLabels": {"fleet.syncsets.io/simulated": "true"}},
                 "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "scraped", "namespace": "default"}}]}});
    let client = reqwest::Client::new();
    create_selector_sync_set(&hub.base, &set).await;
    // Prometheus' answer to a query: the first sample's value, if there is one.
    let query = |q: &'static str| {
        let client = client.clone();
        async move {
            let answer: Value = client
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            answer["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
        }
    };
    let started = Instant::now();
    let (mut rate, mut in_sync, mut healthy) = (None, None, None);
    while started.elapsed() < Duration::from_secs(60) {
        rate = query("sum(rate(apiserver_request_total[10s]))").await;
        in_sync = query(r#"syncsets_set_clusters{name="scraped",state="in_sync"}"#).await;
        healthy = query(r#"syncsets_set_clusters_health{name="scraped",health="healthy"}"#).await;
        if rate.is_some_and(|r| r > 0.0)
            && in_sync == Some(CLUSTERS as f64)
            && healthy == Some(CLUSTERS as f64)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    prometheus.kill().unwrap();
    prometheus.wait().unwrap();
    assert!(rate.is_some_and(|r| r > 0.0), "request rate {rate:?}");
    assert_eq!(in_sync, Some(CLUSTERS as f64), "clusters in sync");
    assert_eq!(healthy, Some(CLUSTERS as f64), "clusters healthy");
}

/// SIGTERM under load: `/readyz` fails first while requests are still served (the shutdown
/// delay), then new connections are refused; requests in flight complete (none is cut
/// mid-response: a write whose answer did not arrive whole was not made — it was refused
/// before the server took it), an open watch ends cleanly (its response completes, as at
/// a timeout), the process exits 0, and every acknowledged write is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_and_watches_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "--shutdown-delay-duration",
            "3s",
            "--shutdown-grace-period",
            "10s",
        ],
    );
    let base = server.base.clone();
    // A watch, read to its end: how it ended, and how many events it carried.
    let watch = tokio::spawn({
        let url = format!("{base}{CM}?watch=true");
        async move {
            let mut res = reqwest::get(url).await.unwrap();
            let mut events = 0;
            loop {
                match res.chunk().await {
                    Ok(Some(chunk)) => events += chunk.iter().filter(|b| **b == b'\n').count(),
                    Ok(None) => return Ok(events),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        }
    });
    // Writers on fresh connections: after the listener closes, a write cannot connect.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, stopped) = (client.clone(), base.clone(), stopped.clone());
            tokio::spawn(async move {
                let (mut acked, mut unanswered) = (Vec::new(), Vec::new());
                for i in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let sent = client
                        .post(format!("{base}{CM}"))
                        .json(&cm(&name))
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(r) => {
                            let status = r.status();
                            r.json::<Value>().await.map(|body| (status, body))
                        }
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok((status, body)) => {
                            assert_eq!(status, 201, "{name}: {body}");
                            let rv = body["metadata"]["resourceVersion"].as_str().unwrap();
                            acked.push((name, rv.to_string(), Instant::now()));
                        }
                        Err(e) => {
                            unanswered.push((name, e.is_connect()));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (acked, unanswered)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.process.terminate();
    let signalled = Instant::now();
    // Within the shutdown delay: not ready, still serving.
    loop {
        let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
        if readyz.status() == 503 {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/readyz still answers {}",
            readyz.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let livez = client.get(format!("{base}/livez")).send().await.unwrap();
    assert_eq!(livez.status(), 200, "still serving during the delay");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.process.wait_for_exit(Duration::from_secs(15));
        (status, server)
    });
    let (status, server) = status.await.unwrap();
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "exit status");
    let watched = watch.await.unwrap();
    assert!(
        watched.as_ref().is_ok_and(|n| *n > 10),
        "the watch ended cleanly after carrying the writes: {watched:?}"
    );
    let _ = stop.send(true);
    let (mut acked, mut unanswered) = (Vec::new(), Vec::new());
    for w in writers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unanswered.extend(u);
    }
    assert!(acked.len() > 20, "writes were served: {}", acked.len());
    let during_delay = acked.iter().filter(|(_, _, at)| *at > signalled).count();
    assert!(
        during_delay > 0,
        "writes were served during the shutdown delay"
    );
    drop(server);
    let server = Server::start(dir.path(), &[]);
    let (stored, _) = stored_configmaps(&server.base).await;
    for (name, rv, _) in &acked {
        assert_eq!(stored.get(name), Some(rv), "acknowledged {name} at {rv}");
    }
    for (name, _) in &unanswered {
        assert!(
            !stored.contains_key(name),
            "{name} was written but its answer was cut"
        );
    }
}

/// `syncsets controller` serves its own metrics (and probes) on its metrics address, and
/// the hub's /metrics has the store's, the relay's and the bus's, during a rollout on
/// PostgreSQL and RabbitMQ; promtool accepts both; SIGTERM stops the controller with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_process_serves_metrics_and_stops_on_sigterm() {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    const CLUSTERS: usize = 3;
    let hub_dir = tempfile::tempdir().unwrap();
    let data = hub_dir.path().to_str().unwrap();
    let hub = Server::start(
        hub_dir.path(),
        &["--store", &db.url, "--bus", &amqp, "--controllers", "false"],
    );
    let (_member, line) = fleet_sim(&hub.base, CLUSTERS);
    assert!(line.contains(&format!("{CLUSTERS} registered")), "{line}");
    let (mut controller, line) = start_proc(&[
        "controller",
        "--store",
        &db.url,
        "--bus",
        &amqp,
        "--data-dir",
        data,
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--shutdown-grace-period",
        "10s",
    ]);
    let metrics_url = controller.url();
    assert!(metrics_url.ends_with("/metrics"), "{line}");
    let probes = metrics_url.trim_end_matches("/metrics").to_string();
    let set = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": "measured"},
        "spec": {"clusterDeploymentSelector": {"matchLabels": {"fleet.syncsets.io/simulated": "true"}},
                 "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "measured", "namespace": "default"}}]}});
    create_selector_sync_set(&hub.base, &set).await;
    let text = |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let started = Instant::now();
    let mut scraped = String::new();
    // A series' value in an exposition.
    let value = |text: &str, series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
    };
    let applied = r#"syncsets_applies_total{kind="ConfigMap",type="apply",result="success"}"#;
    while started.elapsed() < Duration::from_secs(60) {
        scraped = text(metrics_url.clone()).await;
        if value(&scraped, applied).is_some_and(|n| n >= CLUSTERS as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hive = r#"hive_syncsetinstance_resources_applied_total{type="apply",result="success"}"#;
    let first = r#"hive_selectorsyncset_apply_duration_seconds_count{name="measured"}"#;
    let all_first = "hive_clustersync_first_success_duration_seconds_count";
    for series in [applied, hive, first, all_first] {
        let n = value(&scraped, series);
        assert!(n.is_some_and(|n| n >= CLUSTERS as f64), "{series}: {n:?}");
    }
    for series in [
        r#"hive_syncsetinstance_apply_duration_seconds_bucket{type="apply",result="success",le="0.5"}"#,
        r#"syncsets_reconciles_total{result="done"}"#,
        r#"workqueue_depth{name="clustersync"}"#,
        r#"workqueue_adds_total{name="clustersync"}"#,
        r#"syncsets_bus_confirms_total{bus="rabbitmq",result="ack"}"#,
        r#"syncsets_store_operation_duration_seconds_bucket{backend="postgres",operation="get_many","#,
    ] {
        assert!(
            scraped.contains(series),
            "controller: no {series} in\n{scraped}"
        );
    }
    let hub_metrics = text(format!("{}/metrics", hub.base)).await;
    for series in [
        r#"syncsets_store_operation_duration_seconds_bucket{backend="postgres",operation="create","#,
        "syncsets_outbox_backlog ",
        "syncsets_relay_lag_seconds ",
        r#"syncsets_bus_published_total{bus="rabbitmq"}"#,
        r#"apiserver_request_total{"#,
    ] {
        assert!(
            hub_metrics.contains(series),
            "hub: no {series} in\n{hub_metrics}"
        );
    }
    for exposition in [&scraped, &hub_metrics] {
        syncsets_testkit::promtool_accepts(exposition);
    }
    for probe in ["livez", "readyz"] {
        let status = reqwest::get(format!("{probes}/{probe}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "/{probe}");
    }
    controller.terminate();
    let status = controller.wait_for_exit(Duration::from_secs(15));
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "exit status");
    drop(hub);
    db.drop_db().await;
}

/// A set failing on clusters is explained by `kubectl describe`: a Warning Event on each
/// ClusterDeployment and one on the set, counted once per cluster; a Normal one when it
/// recovers; Events expire after `--event-ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_says_why_a_cluster_fails() {
    const CLUSTERS: usize = 2;
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &["--event-ttl", "15s"]);
    let kubeconfig = hub_dir.path().join("kubeconfig");
    let (_member, line) = fleet_sim(&hub.base, CLUSTERS);
    assert!(line.contains(&format!("{CLUSTERS} registered")), "{line}");
    let set = |namespace: &str| {
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": "explained"},
            "spec": {"clusterDeploymentSelector": {"matchLabels": {"fleet.syncsets.io/simulated": "true"}},
                     "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "explained", "namespace": namespace}}]}})
    };
    create_selector_sync_set(&hub.base, &set("missing")).await;
    let describe = |args: &[&str]| kubectl_at(&kubeconfig, &[&["describe"], args].concat());
    let until = |args: &'static [&'static str], want: &'static str| {
        let started = Instant::now();
        loop {
            let out = describe(args);
            if out.contains(want) {
                return out;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {want:?} in kubectl describe {args:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let cd = until(&["cd", "-n", "fleet", "sim-00000"], "SyncFailed");
    assert!(
        cd.contains("SelectorSyncSet explained: ")
            && cd.contains("namespaces \"missing\" not found"),
        "{cd}"
    );
    // One Event on the set, seen on both clusters.
    let sss = until(&["sss", "explained"], "(x2 over");
    assert!(sss.contains("SyncFailed"), "{sss}");
    // Fixed: the clusters recover, once each.
    let res = reqwest::Client::new()
        .patch(format!(
            "{}/apis/hive.openshift.io/v1/selectorsyncsets/explained",
            hub.base
        ))
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"spec": set("default")["spec"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    until(&["cd", "-n", "fleet", "sim-00001"], "SyncRecovered");
    // Nothing new happens: every Event expires.
    let started = Instant::now();
    loop {
        let events = kubectl_at(&kubeconfig, &["get", "events", "-A", "-o", "name"]);
        if events.trim().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "Events left after their TTL: {events}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A data directory and a PostgreSQL database written by the previous release (the
/// fixtures of tests/fixtures/upgrade, made by its make.sh) keep working: the new binary
/// migrates them forward, serves every object as it was — the sealed Secret opened with
/// the directory's key, the custom resource of a stored CRD — and takes new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_made_by_the_previous_release_keeps_working() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade");
    // SQLite: a copy of the data directory.
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(fixture.join("sqlite")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let server = Server::start(dir.path(), &["--controllers", "false"]);
    upgraded_hub_serves_the_fixture(&server.base).await;
    drop(server);
    // PostgreSQL: the dump restored into a fresh database, with the same key.
    let Some(db) = syncsets_testkit::TestDb::create().await else {
        return;
    };
    let Ok(out) = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(fixture.join("postgres.sql"))
        .output()
    else {
        syncsets_testkit::unavailable("psql", "PostgreSQL's client is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture.join("sqlite/encryption.keys"),
        dir.path().join("encryption.keys"),
    )
    .unwrap();
    let server = Server::start(dir.path(), &["--controllers", "false", "--store", &db.url]);
    upgraded_hub_serves_the_fixture(&server.base).await;
    drop(server);
    db.drop_db().await;
}

/// What a hub started on the upgrade fixture must serve, and that it takes writes.
async fn upgraded_hub_serves_the_fixture(base: &str) {
    use base64::Engine as _;
    let get = |path: String| async move {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json::<Value>().await.unwrap()
    };
    let cm = get("/api/v1/namespaces/upgrade/configmaps/settings".into()).await;
    assert_eq!(cm["data"]["mode"], "strict");
    assert_eq!(cm["metadata"]["labels"]["tier"], "gold");
    let secret = get("/api/v1/namespaces/upgrade/secrets/credentials".into()).await;
    let password = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(password, b"s3cret-made-before-the-upgrade");
    let sss = get("/apis/hive.openshift.io/v1/selectorsyncsets/baseline".into()).await;
    assert_eq!(
        sss["spec"]["clusterDeploymentSelector"]["matchLabels"]["env"],
        "prod"
    );
    let widget = get("/apis/example.com/v1/namespaces/upgrade/widgets/w1".into()).await;
    assert_eq!(widget["spec"]["size"], 3);
    // Labels are still indexed: a selector finds the ConfigMap.
    let selected = get("/api/v1/configmaps?labelSelector=tier%3Dgold".into()).await;
    assert_eq!(
        selected["items"].as_array().map(Vec::len),
        Some(1),
        "{selected}"
    );
    // And it takes writes.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/namespaces/upgrade/configmaps"))
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// What a set applied is doing on each cluster, by kstatus rules: a Deployment that rolls
/// out is `Progressing`, then `Healthy` (looked at again until it is); one that never
/// becomes available is `Degraded`, its ClusterSync naming it and why; the sets' summaries
/// count healthy, progressing and degraded clusters. A set of ConfigMaps is healthy once
/// applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustersyncs_and_sets_say_whether_what_was_applied_is_healthy() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &["--health-recheck-interval", "300ms"]);
    let (_member, _) = prod_fleet_with(&hub.base, 2, &["--ready-after", "2s"]);
    let deployment = |name: &str, annotations: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": "default", "annotations": annotations},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "c", "image": "registry.example.com/app:1"}]}}}})
    };
    let set = |name: &str, resources: Vec<Value>| {
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": name},
               "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "prod"}}, "resources": resources}})
    };
    create_selector_sync_set(&hub.base, &set("web", vec![deployment("web", json!({}))])).await;
    create_selector_sync_set(
        &hub.base,
        &set(
            "stuck",
            vec![deployment(
                "stuck",
                json!({"fleet.syncsets.io/never-ready": "true"}),
            )],
        ),
    )
    .await;
    create_selector_sync_set(&hub.base, &set("settings", vec![cm("settings")])).await;
    let sync_of = |cluster: &str| {
        let url = format!(
            "{}/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncs/{cluster}",
            hub.base
        );
        async move {
            let cs: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            cs
        }
    };
    let health = |cs: &Value, set: &str| -> Option<Value> {
        cs["status"]["selectorSyncSets"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == set)
            .cloned()
    };
    // The web Deployment is seen rolling out, then rolled out.
    let started = Instant::now();
    let mut seen_progressing = false;
    loop {
        let cs = sync_of("sim-00000").await;
        let web = health(&cs, "web").unwrap_or_default();
        seen_progressing |= web["health"] == "Progressing";
        if web["health"] == "Healthy" {
            assert!(web["unhealthyResources"].is_null(), "{web}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "web is not healthy: {cs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_progressing, "the rollout was never seen progressing");
    // The stuck one fails, and its ClusterSync says which object and why.
    let started = Instant::now();
    let stuck = loop {
        let cs = sync_of("sim-00001").await;
        let stuck = health(&cs, "stuck").unwrap_or_default();
        if stuck["health"] == "Degraded" {
            break stuck;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stuck is not degraded: {cs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        stuck["result"], "Success",
        "applied, just not healthy: {stuck}"
    );
    let unhealthy = &stuck["unhealthyResources"][0];
    assert_eq!(
        (&unhealthy["kind"], &unhealthy["name"], &unhealthy["health"]),
        (&json!("Deployment"), &json!("stuck"), &json!("Degraded")),
        "{stuck}"
    );
    assert!(
        unhealthy["message"]
            .as_str()
            .unwrap()
            .contains("has timed out progressing"),
        "{stuck}"
    );
    // kubectl describe says so: a Warning Event on the cluster.
    let started = Instant::now();
    loop {
        let events: Value = reqwest::get(format!(
            "{}/api/v1/namespaces/fleet/events?fieldSelector=involvedObject.name%3Dsim-00001,reason%3DDegraded",
            hub.base
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if let Some(e) = events["items"].as_array().and_then(|i| i.first()) {
            assert_eq!(e["type"], "Warning", "{e}");
            let message = e["message"].as_str().unwrap();
            assert!(
                message.starts_with("SelectorSyncSet stuck: Deployment default/stuck: ")
                    && message.contains("has timed out progressing"),
                "{message}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{events}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The summaries count them.
    let started = Instant::now();
    loop {
        let sets: Value = reqwest::get(format!(
            "{}/apis/hive.openshift.io/v1/selectorsyncsets",
            hub.base
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let counts: BTreeMap<String, (Value, Value, Value)> = sets["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let st = &s["status"];
                (
                    s["metadata"]["name"].as_str().unwrap().to_string(),
                    (
                        st["healthy"].clone(),
                        st["progressing"].clone(),
                        st["degraded"].clone(),
                    ),
                )
            })
            .collect();
        let want: BTreeMap<String, (Value, Value, Value)> = [
            ("settings", (json!(2), json!(0), json!(0))),
            ("stuck", (json!(0), json!(0), json!(2))),
            ("web", (json!(2), json!(0), json!(0))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if counts == want {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The JSON a GET of `url` answers, if it answers.
async fn get_json(url: String) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// A RolloutPolicy's rollout of `set` as its status says, if any.
async fn rollout_state(base: &str, policy: &str, set: &str) -> Option<Value> {
    let p = get_json(format!(
        "{base}/apis/syncsets.io/v1alpha1/rolloutpolicies/{policy}"
    ))
    .await?;
    p["status"]["rollouts"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == set)
        .cloned()
}

/// The string `field` of each item of a JSON list.
fn each(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|item| item[field].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The image of Deployment `default/web` on a simulated cluster (`None`: not there).
async fn web_image(member: &str, cluster: &str) -> Option<String> {
    let d = get_json(format!(
        "{member}/clusters/{cluster}/apis/apps/v1/namespaces/default/deployments/web"
    ))
    .await?;
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .map(str::to_string)
}

async fn merge_patch(url: String, body: Value) {
    let res = reqwest::Client::new()
        .patch(url)
        .header("content-type", "application/merge-patch+json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "{}",
        res.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progressive_rollout_goes_wave_by_wave_halts_a_bad_change_at_the_canaries_and_undo_restores_them()
 {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Server::start(hub_dir.path(), &["--health-recheck-interval", "300ms"]);
    let (_member, member) = prod_fleet_with(&hub.base, 6, &["--ready-after", "1s"]);
    let clusters: Vec<String> = (0..6).map(|i| format!("sim-{i:05}")).collect();
    let (canaries, others) = clusters.split_at(2);
    for c in canaries {
        merge_patch(
            format!(
                "{}/apis/hive.openshift.io/v1/namespaces/fleet/clusterdeployments/{c}",
                hub.base
            ),
            json!({"metadata": {"labels": {"ring": "canary"}}}),
        )
        .await;
    }
    let policies = format!("{}/apis/syncsets.io/v1alpha1/rolloutpolicies", hub.base);
    let policy = |name: &str, progressive: Value| {
        json!({"apiVersion": "syncsets.io/v1alpha1", "kind": "RolloutPolicy", "metadata": {"name": name},
               "spec": {"selector": {"matchLabels": {"rollout": "careful"}},
                        "strategy": {"type": "Progressive", "progressive": progressive}}})
    };
    let post = |url: String, body: Value| async move {
        let res = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap())
    };
    // Bad input: 422 with a cause per field, nothing stored.
    let (status, body) = post(
        policies.clone(),
        policy(
            "bad",
            json!({"maxConcurrency": "150%", "progressDeadline": "ten minutes",
                   "clusterGroups": [{"name": "a", "selector": {}}, {"name": "a", "selector": {}}]}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields = each(&body["details"]["causes"], "field");
    for field in [
        "spec.strategy.progressive.maxConcurrency",
        "spec.strategy.progressive.progressDeadline",
        "spec.strategy.progressive.clusterGroups[1].name",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} missing: {body}");
    }
    let careful = policy(
        "careful",
        json!({"clusterGroups": [{"name": "canary", "selector": {"matchLabels": {"ring": "canary"}}}],
               "maxConcurrency": "50%", "minSuccessTime": "2s", "progressDeadline": "15s",
               "maxFailures": 0}),
    );
    let (status, body) = post(policies.clone(), careful).await;
    assert_eq!(status, 201, "{body}");

    // A new set under the policy: the canaries first, the others wave by wave.
    let web = |image: &str, annotations: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    };
    create_selector_sync_set(
        &hub.base,
        &json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
                "metadata": {"name": "app", "labels": {"rollout": "careful"}},
                "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "prod"}},
                         "resources": [web("registry.example.com/app:1", json!({}))]}}),
    )
    .await;
    // A second policy selecting the same set is refused.
    let (status, body) = post(policies.clone(), policy("also", json!({}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("RolloutPolicy careful governs"),
        "{body}"
    );

    let started = Instant::now();
    let mut waves_seen = Vec::new();
    loop {
        let r = rollout_state(&hub.base, "careful", "app")
            .await
            .unwrap_or_default();
        if let Some(wave) = r["wave"].as_i64()
            && r["revision"] == 1
            && waves_seen.last() != Some(&wave)
        {
            waves_seen.push(wave);
        }
        if r["revision"] == 1 && r["wave"] == 1 && r["phase"] == "Progressing" {
            // Nobody outside the canaries has it yet (unless the next wave began meanwhile).
            for c in others {
                if web_image(&member, c).await.is_some() {
                    let now = rollout_state(&hub.base, "careful", "app").await.unwrap();
                    assert!(
                        now["wave"].as_i64() > Some(1),
                        "{c} got wave 2's set in wave 1: {now}"
                    );
                }
            }
        }
        if r["revision"] == 1 && r["phase"] == "Complete" {
            assert_eq!(r["waves"].as_array().unwrap().len(), 3, "{r}");
            assert_eq!(r["waves"][0]["name"], "canary", "{r}");
            assert_eq!((&r["healthy"], &r["failed"]), (&json!(6), &json!(0)), "{r}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(waves_seen, [1, 2, 3], "every wave in turn");
    for c in &clusters {
        assert_eq!(
            web_image(&member, c).await.as_deref(),
            Some("registry.example.com/app:1")
        );
    }

    // A bad change: a Deployment that never becomes available. It halts at the canaries.
    merge_patch(
        format!(
            "{}/apis/hive.openshift.io/v1/selectorsyncsets/app",
            hub.base
        ),
        json!({"spec": {"resources": [web("registry.example.com/app:2",
            json!({"fleet.syncsets.io/never-ready": "true"}))]}}),
    )
    .await;
    let started = Instant::now();
    let halted = loop {
        let r = rollout_state(&hub.base, "careful", "app")
            .await
            .unwrap_or_default();
        if r["revision"] == 2 && r["phase"] == "Halted" {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(halted["wave"], 1, "{halted}");
    assert_eq!(
        each(&halted["failedClusters"], "cluster"),
        ["fleet/sim-00000", "fleet/sim-00001"],
        "{halted}"
    );
    assert!(
        halted["failedClusters"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Deployment default/web"),
        "{halted}"
    );
    // The set says so too (`kubectl get sss -o wide`: Rollout, Wave).
    let started = Instant::now();
    loop {
        let set = get_json(format!(
            "{}/apis/hive.openshift.io/v1/selectorsyncsets/app",
            hub.base
        ))
        .await
        .unwrap_or_default();
        let status = &set["status"];
        if status["rolloutPhase"] == "Halted" {
            assert_eq!(
                (&status["rolloutPolicy"], &status["rolloutWave"]),
                (&json!("careful"), &json!("1/3")),
                "{status}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing further rolls out while halted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = rollout_state(&hub.base, "careful", "app").await.unwrap();
    assert_eq!(
        (&still["phase"], &still["wave"]),
        (&json!("Halted"), &json!(1))
    );
    for c in others {
        assert_eq!(
            web_image(&member, c).await.as_deref(),
            Some("registry.example.com/app:1"),
            "{c} changed while the rollout was halted"
        );
    }
    for c in canaries {
        assert_eq!(
            web_image(&member, c).await.as_deref(),
            Some("registry.example.com/app:2")
        );
    }
    let kubeconfig = hub_dir.path().join("hub.kubeconfig");
    std::fs::write(&kubeconfig, syncsets_testkit::kubeconfig(&hub.base, None)).unwrap();
    let kc = kubeconfig.to_str().unwrap();
    let (ok, out) = run_syncsets(&["rollout", "status", "sss/app", "--kubeconfig", kc]);
    assert!(
        !ok && out.contains("Halted") && out.contains("failed fleet/sim-00000"),
        "{out}"
    );

    // Undo: revision 1's spec as revision 3, rolled out under the same policy.
    let (ok, out) = run_syncsets(&["rollout", "undo", "sss/app", "--kubeconfig", kc]);
    assert!(ok, "{out}");
    let (ok, out) = run_syncsets(&[
        "rollout",
        "status",
        "sss/app",
        "--kubeconfig",
        kc,
        "--timeout",
        "90",
    ]);
    assert!(ok && out.contains("revision 3 (from 1)"), "{out}");
    for c in &clusters {
        assert_eq!(
            web_image(&member, c).await.as_deref(),
            Some("registry.example.com/app:1"),
            "{c} not restored"
        );
    }
    let events = get_json(format!(
        "{}/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dapp",
        hub.base
    ))
    .await
    .unwrap();
    let reasons = each(&events["items"], "reason");
    for reason in [
        "RolloutStarted",
        "WaveStarted",
        "RolloutHalted",
        "RolloutUndone",
        "RolloutComplete",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event: {reasons:?}"
        );
    }
}

/// The value `v` of ConfigMap `default/settings` on a simulated cluster (`None`: not there
/// or not answering).
async fn settings_value(member: &str, cluster: &str) -> Option<String> {
    let cm = get_json(format!(
        "{member}/clusters/{cluster}/api/v1/namespaces/default/configmaps/settings"
    ))
    .await?;
    cm["data"]["v"].as_str().map(str::to_string)
}

/// On PostgreSQL and RabbitMQ with two controller replicas: a progressive rollout counts a
/// tenth of the fleet unreachable against its budget and completes; `plan` says which
/// clusters a change will change and the rollout then changes exactly those; a pause holds
/// the wave; a cluster joining a wave already reached gets the new revision; a replica
/// SIGKILLed mid-rollout does not send it back a wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progressive_rollout_on_postgres_follows_its_plan_pauses_takes_a_joiner_and_survives_a_sigkill()
 {
    let Some((_turn, db, amqp)) = backends().await else {
        return;
    };
    let hub_dir = tempfile::tempdir().unwrap();
    let data = hub_dir.path().to_str().unwrap();
    let hub = Server::start(
        hub_dir.path(),
        &["--store", &db.url, "--bus", &amqp, "--controllers", "false"],
    );
    let (_fleet, member) = prod_fleet_with(
        &hub.base,
        10,
        &["--ready-after", "1s", "--fault", "sim-00009:unreachable"],
    );
    let start_replica = |replica: usize| {
        let ordinal = replica.to_string();
        let (proc, line) = start_proc(&[
            "controller",
            "--replica",
            &ordinal,
            "--store",
            &db.url,
            "--bus",
            &amqp,
            "--data-dir",
            data,
            "--replica-ttl",
            "3s",
            "--health-recheck-interval",
            "300ms",
            "--metrics-bind-address",
            "127.0.0.1:0",
        ]);
        assert!(
            line.contains(&format!("replica {replica} running")),
            "{line}"
        );
        Some(proc)
    };
    let mut replicas = [start_replica(0), start_replica(1)];
    let kubeconfig = hub_dir.path().join("hub.kubeconfig");
    std::fs::write(&kubeconfig, syncsets_testkit::kubeconfig(&hub.base, None)).unwrap();
    let kc = kubeconfig.to_str().unwrap();

    let res = reqwest::Client::new()
        .post(format!("{}/apis/syncsets.io/v1alpha1/rolloutpolicies", hub.base))
        .json(&json!({"apiVersion": "syncsets.io/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "careful"},
            "spec": {"selector": {"matchLabels": {"rollout": "careful"}},
                     "strategy": {"type": "Progressive", "progressive": {
                         "clusterGroups": [{"name": "canary", "selector": {"matchLabels": {"fleet.syncsets.io/group": "0"}}}],
                         "maxConcurrency": 3, "minSuccessTime": "1s", "progressDeadline": "6s",
                         "maxFailures": "10%"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let set = |v: &str| {
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
               "metadata": {"name": "settings", "labels": {"rollout": "careful"}},
               "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "prod"}},
                        "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "settings", "namespace": "default"}, "data": {"v": v}}]}})
    };
    create_selector_sync_set(&hub.base, &set("1")).await;
    // The unreachable tenth fails at its deadline, within the budget: the rollout completes.
    let (first, waves) = wait_complete(&hub.base, 1, Vec::new()).await;
    assert_eq!(waves, [1, 2, 3, 4], "{first}");
    assert_eq!(
        (&first["failed"], &first["healthy"]),
        (&json!(1), &json!(9)),
        "{first}"
    );
    assert_eq!(
        first["failedClusters"][0]["cluster"], "fleet/sim-00009",
        "{first}"
    );

    // The plan of the change: every reachable cluster changes the ConfigMap's data.
    let file = hub_dir.path().join("settings.yaml");
    std::fs::write(&file, set("2").to_string()).unwrap();
    let (ok, out) = run_syncsets(&[
        "plan",
        "-f",
        file.to_str().unwrap(),
        "-o",
        "json",
        "--kubeconfig",
        kc,
    ]);
    assert!(ok, "{out}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let mut to_change = Vec::new();
    for c in plan["clusters"].as_array().unwrap() {
        let cluster = c["cluster"].as_str().unwrap();
        match c["outcome"].as_str().unwrap() {
            "Change" => {
                assert_eq!(each(&c["changes"], "action"), ["change"], "{c}");
                to_change.push(cluster.trim_start_matches("fleet/").to_string());
            }
            "NotAsked" => assert_eq!(cluster, "fleet/sim-00009", "{c}"),
            other => panic!("{cluster}: {other}: {c}"),
        }
    }
    assert_eq!(to_change.len(), 9, "{plan}");

    merge_patch(
        format!(
            "{}/apis/hive.openshift.io/v1/selectorsyncsets/settings",
            hub.base
        ),
        json!({"spec": {"resources": set("2")["spec"]["resources"]}}),
    )
    .await;
    // Paused once under way, it stays at its wave.
    let started = Instant::now();
    while rollout_state(&hub.base, "careful", "settings")
        .await
        .unwrap_or_default()["revision"]
        != 2
    {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = run_syncsets(&["rollout", "pause", "sss/settings", "--kubeconfig", kc]);
    assert!(ok, "{out}");
    let paused = loop {
        let r = rollout_state(&hub.base, "careful", "settings")
            .await
            .unwrap();
        if r["phase"] == "Paused" {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A cluster joins meanwhile, in the canary group (its number is 0), which the rollout
    // has reached: it gets revision 2 at once.
    let (_late, late_line) = fleet_sim_with(
        &hub.base,
        1,
        &[
            "--labels",
            "env=prod",
            "--prefix",
            "late",
            "--ready-after",
            "1s",
        ],
    );
    let late_member = member_url(&late_line);
    let started = Instant::now();
    while settings_value(&late_member, "late-00000").await.as_deref() != Some("2") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the joining cluster did not get revision 2: {:?}",
            settings_value(&late_member, "late-00000").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = rollout_state(&hub.base, "careful", "settings")
        .await
        .unwrap();
    assert_eq!(
        (&still["phase"], &still["wave"]),
        (&json!("Paused"), &paused["wave"]),
        "{still}"
    );
    let on_v2 = |clusters: Vec<String>| {
        let member = member.clone();
        async move {
            let mut n = 0;
            for c in clusters {
                n += usize::from(settings_value(&member, &c).await.as_deref() == Some("2"));
            }
            n
        }
    };
    let reached: i64 = paused["waves"].as_array().unwrap()
        [..paused["wave"].as_i64().unwrap() as usize]
        .iter()
        .map(|w| w["clusters"].as_i64().unwrap())
        .sum();
    assert!(
        on_v2(to_change.clone()).await as i64 <= reached,
        "clusters beyond the paused wave changed: {paused}"
    );

    // Resumed, and a replica killed: the other carries on from the same wave.
    let (ok, out) = run_syncsets(&["rollout", "resume", "sss/settings", "--kubeconfig", kc]);
    assert!(ok, "{out}");
    drop(replicas[0].take()); // SIGKILL
    let seen = vec![paused["wave"].as_i64().unwrap()];
    let (done, _) = wait_complete(&hub.base, 2, seen).await;
    assert_eq!(
        (&done["failed"], &done["clusters"]),
        (&json!(1), &json!(11)),
        "{done}"
    );
    // What the plan said is what happened.
    assert_eq!(on_v2(to_change.clone()).await, to_change.len(), "{done}");
    drop(replicas);
    db.drop_db().await;
}

/// Waits until the rollout of `revision` of set `settings` under policy `careful`
/// completes, never halting nor going back a wave; returns it and the waves seen (after
/// those in `seen`).
async fn wait_complete(base: &str, revision: i64, mut seen: Vec<i64>) -> (Value, Vec<i64>) {
    let started = Instant::now();
    loop {
        let r = rollout_state(base, "careful", "settings")
            .await
            .unwrap_or_default();
        if r["revision"] == revision {
            let wave = r["wave"].as_i64().unwrap();
            assert!(
                seen.last().is_none_or(|w| *w <= wave),
                "the rollout went back a wave: {seen:?} then {r}"
            );
            if seen.last() != Some(&wave) {
                seen.push(wave);
            }
            if r["phase"] == "Complete" {
                return (r, seen);
            }
            assert_ne!(r["phase"], "Halted", "{r}");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
