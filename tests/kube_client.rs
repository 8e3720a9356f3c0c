//! A kube-rs client, watcher and reflector against the server: no errors, no relists.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use syncsets_testkit::TestServer;

async fn server() -> (kube::Client, String, TestServer) {
    let server = TestServer::builder()
        .bookmark_interval(Duration::from_millis(500))
        .start()
        .await
        .expect("SQLite");
    let config = kube::Config::new(server.base.parse().unwrap());
    (
        kube::Client::try_from(config).unwrap(),
        server.base.clone(),
        server,
    )
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "kube"}}, "data": {"v": "0"}
    }))
    .unwrap()
}

/// Runs a watcher with a short server-side timeout, so it re-watches several times, while
/// objects change; returns (initial lists seen, errors seen, the reflector's final names).
async fn watch_through_changes(config: watcher::Config) -> (usize, Vec<String>, Vec<String>) {
    let (client, _url, _dir) = server().await;
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
    let errors = errors.lock().unwrap().clone();
    (
        inits.load(std::sync::atomic::Ordering::SeqCst),
        errors,
        names,
    )
}

const WANT: [&str; 5] = ["c0", "c1", "c2", "c3", "c4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_with_list_then_watch() {
    let (inits, errors, names) = watch_through_changes(watcher::Config::default()).await;
    assert_eq!(names, WANT);
    assert!(errors.is_empty(), "watcher errors: {errors:?}");
    assert_eq!(
        inits, 1,
        "one initial list, no relists across watch timeouts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_with_streaming_lists() {
    let (inits, errors, names) =
        watch_through_changes(watcher::Config::default().streaming_lists()).await;
    assert_eq!(names, WANT);
    assert!(errors.is_empty(), "watcher errors: {errors:?}");
    assert_eq!(
        inits, 1,
        "one initial stream, no relists across watch timeouts"
    );
}

/// A kube-rs client built from a kubeconfig whose server carries a path, as a simulated
/// member cluster's does, reaches that logical cluster and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_a_member_kubeconfig_with_a_path() {
    let (hub, url, _dir) = server().await;
    let on_hub: Api<ConfigMap> = Api::namespaced(hub, "default");
    on_hub
        .create(&PostParams::default(), &cm("on-the-hub"))
        .await
        .unwrap();
    let kubeconfig = syncsets_testkit::kubeconfig(&format!("{url}/clusters/member-7"), None);
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let member = kube::Client::try_from(config).unwrap();
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
    assert_eq!(names, ["on-the-member"]);
}
