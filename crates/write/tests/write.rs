//! The one write path against a real (in-memory) store.

use std::sync::Mutex;

use serde_json::{Value, json};
use syncsets_machinery::meta::{FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::{KindInfo, Registry};
use syncsets_store::{MemoryStore, ObjectKey, Store, StoreError};
use syncsets_write::{Change, Effects, Plain, Proposal, Write, WriteError};

fn kind(registry: &Registry, group: &str, version: &str, plural: &str) -> std::sync::Arc<KindInfo> {
    registry
        .kinds("")
        .get(group, version, plural)
        .cloned()
        .expect("a built-in kind")
}

fn context<'a>(
    registry: &'a Registry,
    kind: &'a KindInfo,
    now: &'a str,
    status: bool,
) -> WriteContext<'a> {
    WriteContext {
        kind,
        meta_schema: registry.meta_schema(),
        namespace: Some("ns"),
        now,
        field_validation: FieldValidation::Strict,
        ownership: Ownership::Update("test".into()),
        status,
    }
}

async fn with_namespace() -> MemoryStore {
    let store = MemoryStore::new();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
    store
        .create(&ObjectKey::new("", "namespaces", "", "ns"), &ns, false)
        .await
        .expect("namespace");
    store
}

fn config_map(data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns"}, "data": {"k": data}})
}

fn cm_key() -> ObjectKey {
    ObjectKey::new("", "configmaps", "ns", "cm")
}

#[tokio::test]
async fn creates_then_replaces_then_keeps_what_is_the_same() {
    let registry = Registry::new();
    let cm = kind(&registry, "", "v1", "configmaps");
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let write = || Write::new(&store, cm_key(), context(&registry, &cm, now, false));

    let created = write()
        .run(&Plain, |_| Ok(Proposal::Write(config_map("a"))))
        .await
        .expect("created");
    assert_eq!(created.change, Change::Created);
    assert!(
        created.object["metadata"]["uid"].is_string(),
        "admitted: {}",
        created.object
    );

    let updated = write()
        .run(&Plain, |_| Ok(Proposal::Write(config_map("b"))))
        .await
        .expect("updated");
    assert_eq!(updated.change, Change::Updated);
    assert_eq!(updated.object["data"]["k"], "b");
    assert_eq!(
        updated.object["metadata"]["uid"],
        created.object["metadata"]["uid"]
    );

    let same = write()
        .run(&Plain, |_| Ok(Proposal::Write(config_map("b"))))
        .await
        .expect("unchanged");
    assert_eq!(same.change, Change::Unchanged);
    assert_eq!(
        same.object["metadata"]["resourceVersion"],
        updated.object["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn a_lost_race_reads_again_and_proposes_again() {
    let registry = Registry::new();
    let cm = kind(&registry, "", "v1", "configmaps");
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let write = || Write::new(&store, cm_key(), context(&registry, &cm, now, false));
    write()
        .run(&Plain, |_| Ok(Proposal::Write(config_map("a"))))
        .await
        .expect("created");
    let stale = store.get(&cm_key()).await.expect("read").expect("exists");
    // Another writer gets in after `stale` was read.
    write()
        .run(&Plain, |_| Ok(Proposal::Write(config_map("other"))))
        .await
        .expect("the other writer");

    let mut seen = Vec::new();
    let written = write()
        .run_from(Some(Some(stale)), &Plain, |current| {
            let current = current.expect("exists");
            seen.push(
                current.object["data"]["k"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let k = current.object["data"]["k"].as_str().unwrap_or_default();
            Ok(Proposal::Write(config_map(&format!("{k}+1"))))
        })
        .await
        .expect("written after a retry");
    assert_eq!(
        seen,
        ["a", "other"],
        "the proposal saw the stale object, then the fresh one"
    );
    assert_eq!(written.object["data"]["k"], "other+1");
}

#[tokio::test]
async fn a_status_write_that_finds_nothing_creates_the_object_with_its_status() {
    let registry = Registry::new();
    let sync = kind(
        &registry,
        "hiveinternal.openshift.io",
        "v1alpha1",
        "clustersyncs",
    );
    assert!(sync.status_subresource);
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let key = ObjectKey::new("", &sync.group_resource(), "ns", "c1");
    let object = json!({"apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync",
        "metadata": {"name": "c1", "namespace": "ns"}, "spec": {},
        "status": {"syncSets": [], "selectorSyncSets": []}});
    let written = Write::new(&store, key.clone(), context(&registry, &sync, now, true))
        .run(&Plain, |_| Ok(Proposal::Write(object.clone())))
        .await
        .expect("created");
    assert_eq!(written.change, Change::Created);
    let stored = store.get(&key).await.expect("read").expect("stored");
    assert_eq!(stored.object["status"], object["status"]);
    assert!(stored.object["metadata"]["uid"].is_string());
}

#[tokio::test]
async fn a_dry_run_stores_nothing_and_still_needs_the_namespace() {
    let registry = Registry::new();
    let cm = kind(&registry, "", "v1", "configmaps");
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let written = Write::new(&store, cm_key(), context(&registry, &cm, now, false))
        .dry_run(true)
        .run(&Plain, |_| Ok(Proposal::Write(config_map("a"))))
        .await
        .expect("admitted");
    assert_eq!(written.change, Change::Created);
    assert!(store.get(&cm_key()).await.expect("read").is_none());

    let elsewhere = ObjectKey::new("", "configmaps", "missing", "cm");
    let mut ctx = context(&registry, &cm, now, false);
    ctx.namespace = Some("missing");
    let mut object = config_map("a");
    object["metadata"]["namespace"] = json!("missing");
    let refused = Write::new(&store, elsewhere, ctx)
        .dry_run(true)
        .run(&Plain, |_| Ok(Proposal::Write(object.clone())))
        .await;
    assert!(
        matches!(
            refused,
            Err(WriteError::Store(StoreError::NamespaceNotFound))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn removing_the_last_finalizer_of_a_deleted_object_deletes_it() {
    let registry = Registry::new();
    let cm = kind(&registry, "", "v1", "configmaps");
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let mut object = config_map("a");
    object["metadata"]["finalizers"] = json!(["example.com/keep"]);
    Write::new(&store, cm_key(), context(&registry, &cm, now, false))
        .run(&Plain, |_| Ok(Proposal::Write(object.clone())))
        .await
        .expect("created");
    let marked = Write::removal(&store, cm_key())
        .run(&Plain, |current| {
            let mut obj = current.expect("exists").object.clone();
            obj["metadata"]["deletionTimestamp"] = json!(now);
            Ok(Proposal::Mark(obj))
        })
        .await
        .expect("marked");
    assert_eq!(marked.change, Change::Marked);
    let gone = Write::new(&store, cm_key(), context(&registry, &cm, now, false))
        .run(&Plain, |current| {
            let mut obj = current.expect("exists").object.clone();
            obj["metadata"]["finalizers"] = json!([]);
            Ok(Proposal::Write(obj))
        })
        .await
        .expect("finalized");
    assert_eq!(gone.change, Change::Deleted);
    assert!(store.get(&cm_key()).await.expect("read").is_none());
}

/// Effects that refuse one value and record what happened.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Effects for Recorder {
    type Error = String;

    async fn check(&self, _old: Option<&Value>, new: &mut Value) -> Result<(), String> {
        if new["data"]["k"] == "forbidden" {
            return Err("refused by policy".into());
        }
        new["metadata"]["labels"] = json!({"checked": "yes"});
        Ok(())
    }

    async fn written(&self, object: &Value) {
        self.events
            .lock()
            .unwrap()
            .push(format!("written {}", object["data"]["k"]));
    }

    async fn deleted(&self, object: &Value) {
        self.events
            .lock()
            .unwrap()
            .push(format!("deleted {}", object["data"]["k"]));
    }
}

#[tokio::test]
async fn the_writer_policy_runs_after_admission_and_its_effects_after_the_write() {
    let registry = Registry::new();
    let cm = kind(&registry, "", "v1", "configmaps");
    let store = with_namespace().await;
    let now = "2026-12-02T00:00:00Z";
    let recorder = Recorder::default();
    let write = || Write::new(&store, cm_key(), context(&registry, &cm, now, false));

    let refused = write()
        .run(&recorder, |_| Ok(Proposal::Write(config_map("forbidden"))))
        .await;
    assert!(
        matches!(&refused, Err(WriteError::Refused(m)) if m == "refused by policy"),
        "{refused:?}"
    );
    assert!(store.get(&cm_key()).await.expect("read").is_none());

    let written = write()
        .run(&recorder, |_| Ok(Proposal::Write(config_map("a"))))
        .await
        .expect("written");
    assert_eq!(written.object["metadata"]["labels"]["checked"], "yes");
    Write::removal(&store, cm_key())
        .run(&recorder, |_| Ok(Proposal::Delete))
        .await
        .expect("deleted");
    assert_eq!(
        *recorder.events.lock().unwrap(),
        ["written \"a\"", "deleted \"a\""]
    );
}
