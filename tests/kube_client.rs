//! A kube-rs client, watcher and reflector against the hub (`syncsets serve` over TLS, as
//! users run it), each test over HTTP/1.1 (kube's own client) and over HTTP/2 (kube on a
//! hyper client that speaks only HTTP/2, as a kube user may build one): no errors, no
//! relists, and the hub's request log shows every request came over the protocol asked for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::Version;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::client::ConfigExt as _;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use syncsets_testkit::Process;

const PROTOCOLS: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];

/// A hub with no controllers, logging every request.
struct Hub {
    _process: Process,
    dir: tempfile::TempDir,
}

impl Hub {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = Process::serve_logging_to(
            env!("CARGO_BIN_EXE_syncsets"),
            &dir.path().join("data"),
            &["--log-format", "json"],
            &dir.path().join("hub.log"),
        );
        Self {
            _process: process,
            dir,
        }
    }

    /// Its admin kubeconfig, the server URL given a `path` (a logical cluster's).
    async fn config(&self, path: &str) -> kube::Config {
        let file: PathBuf = self.dir.path().join("data/kubeconfig");
        let mut kubeconfig = kube::config::Kubeconfig::read_from(file).unwrap();
        for cluster in &mut kubeconfig.clusters {
            let c = cluster.cluster.as_mut().unwrap();
            c.server = c.server.as_ref().map(|s| format!("{s}{path}"));
        }
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap()
    }

    /// Asserts every request it logged came over `protocol`.
    #[track_caller]
    fn served_only(&self, protocol: Version) {
        assert_eq!(
            syncsets_testkit::logged_protocols(&self.dir.path().join("hub.log")),
            [format!("{protocol:?}")],
            "every request over {protocol:?}"
        );
    }
}

/// A kube-rs client over `protocol`: kube's own for HTTP/1.1; for HTTP/2 kube's layers
/// (base URI, credentials) over a hyper client that speaks only HTTP/2, ALPN `h2`.
fn client(config: kube::Config, protocol: Version) -> kube::Client {
    if protocol == Version::HTTP_11 {
        return kube::Client::try_from(config).unwrap();
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config().unwrap())
        .https_only()
        .enable_http2()
        .build();
    let transport =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().unwrap())
        .map_err(tower::BoxError::from)
        .service(transport);
    kube::Client::new(service, config.default_namespace)
}

async fn server(protocol: Version) -> (kube::Client, Hub) {
    let hub = Hub::start();
    (client(hub.config("").await, protocol), hub)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "kube"}}, "data": {"v": "0"}
    }))
    .unwrap()
}

/// Runs a watcher with a short server-side timeout, so it re-watches several times, while
/// objects change; returns (initial lists seen, errors seen, the reflector's final names).
async fn watch_through_changes(
    config: watcher::Config,
    protocol: Version,
) -> (usize, Vec<String>, Vec<String>) {
    let (client, hub) = server(protocol).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(api.clone(), config.timeout(1));
    let inits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let (inits, errors) = (inits.clone(), errors.clone());
        async move {
            let mut s = std::pin::pin!(
                stream
                    .map(move |e| {
                        match &e {
                            Ok(Event::Init) => {
                                inits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Err(err) => errors.lock().unwrap().push(err.to_string()),
                            _ => {}
                        }
                        e
                    })
                    .reflect(writer)
                    .default_backoff()
            );
            while s.next().await.is_some() {}
        }
    });
    reader.wait_until_ready().await.unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let patch = serde_json::json!({"data": {"v": "1"}});
    api.patch("c0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    // Long enough for a few more server-side timeouts and re-watches.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut names: Vec<String> = reader
        .state()
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    let c0 = reader
        .state()
        .into_iter()
        .find(|o| o.metadata.name.as_deref() == Some("c0"))
        .unwrap();
    assert_eq!(c0.data.as_ref().unwrap()["v"], "1");
    task.abort();
    hub.served_only(protocol);
    let errors = errors.lock().unwrap().clone();
    (
        inits.load(std::sync::atomic::Ordering::SeqCst),
        errors,
        names,
    )
}

const WANT: [&str; 5] = ["c0", "c1", "c2", "c3", "c4"];

/// The watcher over each protocol: every object seen, no errors, one initial `what` and no
/// relists across watch timeouts.
async fn reflects_without_relists(config: watcher::Config, what: &str) {
    for protocol in PROTOCOLS {
        let (inits, errors, names) = watch_through_changes(config.clone(), protocol).await;
        assert_eq!(names, WANT, "{protocol:?}");
        assert!(
            errors.is_empty(),
            "{protocol:?}: watcher errors: {errors:?}"
        );
        assert_eq!(
            inits, 1,
            "{protocol:?}: one initial {what}, no relists across watch timeouts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_with_list_then_watch() {
    reflects_without_relists(watcher::Config::default(), "list").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_with_streaming_lists() {
    reflects_without_relists(watcher::Config::default().streaming_lists(), "stream").await;
}

/// A kube-rs client built from a kubeconfig whose server carries a path, as a simulated
/// member cluster's does, reaches that logical cluster and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_a_member_kubeconfig_with_a_path() {
    for protocol in PROTOCOLS {
        let (hub_client, hub) = server(protocol).await;
        let on_hub: Api<ConfigMap> = Api::namespaced(hub_client, "default");
        on_hub
            .create(&PostParams::default(), &cm("on-the-hub"))
            .await
            .unwrap();
        let member = client(hub.config("/clusters/member-7").await, protocol);
        let api: Api<ConfigMap> = Api::namespaced(member, "default");
        api.create(&PostParams::default(), &cm("on-the-member"))
            .await
            .unwrap();
        let names: Vec<String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["on-the-member"], "{protocol:?}");
        hub.served_only(protocol);
    }
}
