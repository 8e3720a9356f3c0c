//! One storage test suite, run against every backend: SQLite (a temporary file),
//! PostgreSQL (a fresh database on the local server) and memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use syncsets_store::{
    EventType, FieldMatch, Keyring, ListQuery, MetaField, ObjectKey, Retention, Store, StoreError,
};
use syncsets_testkit::TestDb;
use syncsets_types::Selector;

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(vec![("k1".into(), vec![42; 32])]).unwrap())
}

fn cm(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "data": {"k": "v"}})
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new("", "configmaps", ns, name)
}

fn query(ns: Option<&str>) -> ListQuery {
    ListQuery {
        cluster: String::new(),
        resource: "configmaps".into(),
        namespace: ns.map(String::from),
        ..Default::default()
    }
}

fn names(page: &syncsets_store::ListPage) -> Vec<String> {
    page.items.iter().map(|s| s.name.clone()).collect()
}

async fn crud_and_resource_versions(store: Arc<dyn Store>) {
    let a = store
        .create(&key("ns", "a"), &cm("ns", "a", json!({})), false)
        .await
        .unwrap();
    assert_eq!(a.object["metadata"]["resourceVersion"], a.rv.to_string());
    assert!(matches!(
        store
            .create(&key("ns", "a"), &cm("ns", "a", json!({})), false)
            .await,
        Err(StoreError::AlreadyExists)
    ));
    let got = store.get(&key("ns", "a")).await.unwrap().unwrap();
    assert_eq!(got, a);
    assert!(store.get(&key("ns", "nope")).await.unwrap().is_none());

    let mut changed = a.object.clone();
    changed["data"]["k"] = json!("v2");
    let b = store.update(&key("ns", "a"), &changed, a.rv).await.unwrap();
    assert!(b.rv > a.rv, "resourceVersion increases");
    assert_eq!(b.object["data"]["k"], "v2");
    assert!(matches!(
        store.update(&key("ns", "a"), &changed, a.rv).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.update(&key("ns", "zz"), &changed, 1).await,
        Err(StoreError::NotFound)
    ));

    assert!(matches!(
        store.delete(&key("ns", "a"), Some(a.rv)).await,
        Err(StoreError::Conflict)
    ));
    let gone = store.delete(&key("ns", "a"), Some(b.rv)).await.unwrap();
    assert!(gone.rv > b.rv, "deletion has its own resourceVersion");
    assert_eq!(gone.object["data"]["k"], "v2");
    assert!(store.get(&key("ns", "a")).await.unwrap().is_none());
    assert!(matches!(
        store.delete(&key("ns", "a"), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.watermark().await.unwrap() >= gone.rv);
}

async fn logical_clusters_are_isolated(store: Arc<dyn Store>) {
    let hub = ObjectKey::new("", "configmaps", "ns", "x");
    let member = ObjectKey::new("member-1", "configmaps", "ns", "x");
    store
        .create(&hub, &cm("ns", "x", json!({"where": "hub"})), false)
        .await
        .unwrap();
    store
        .create(&member, &cm("ns", "x", json!({"where": "member"})), false)
        .await
        .unwrap();
    let mut q = query(Some("ns"));
    q.cluster = "member-1".into();
    let page = store.list(&q).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].parse().unwrap().object["metadata"]["labels"]["where"],
        "member"
    );
    assert_eq!(
        store.get(&hub).await.unwrap().unwrap().object["metadata"]["labels"]["where"],
        "hub"
    );
}

async fn lists_page_and_filter(store: Arc<dyn Store>) {
    for ns in ["a", "b"] {
        for i in 0..5 {
            let name = format!("cm-{i}");
            store
                .create(&key(ns, &name), &cm(ns, &name, json!({})), false)
                .await
                .unwrap();
        }
    }
    let all = store.list(&query(None)).await.unwrap();
    assert_eq!(all.items.len(), 10);
    assert!(!all.more);
    assert_eq!(
        all.items[0].parse().unwrap().object["metadata"]["namespace"],
        "a"
    );
    assert_eq!(
        all.items[9].parse().unwrap().object["metadata"]["namespace"],
        "b"
    );
    assert_eq!(store.list(&query(Some("b"))).await.unwrap().items.len(), 5);

    // Pages of 3 walk everything once, in order.
    let mut seen = Vec::new();
    let mut q = query(None);
    q.limit = Some(3);
    loop {
        let page = store.list(&q).await.unwrap();
        for s in &page.items {
            let m = &s.parse().unwrap().object["metadata"];
            assert_eq!(
                (
                    m["namespace"].as_str().unwrap(),
                    m["name"].as_str().unwrap()
                ),
                (s.namespace.as_str(), s.name.as_str())
            );
            seen.push(format!("{}/{}", s.namespace, s.name));
        }
        if !page.more {
            break;
        }
        let last = page.items.last().unwrap();
        q.after = Some((last.namespace.clone(), last.name.clone()));
    }
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let mut q = query(None);
    q.fields = vec![
        FieldMatch {
            field: MetaField::Name,
            negated: false,
            value: "cm-2".into(),
        },
        FieldMatch {
            field: MetaField::Namespace,
            negated: true,
            value: "a".into(),
        },
    ];
    let page = store.list(&q).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].parse().unwrap().object["metadata"]["namespace"],
        "b"
    );
}

/// A list read in pages comes from one snapshot: what changes after its first page is not
/// in its later ones.
async fn lists_in_pages_from_one_snapshot(store: Arc<dyn Store>) {
    for i in 0..10 {
        let name = format!("cm-{i}");
        store
            .create(&key("ns", &name), &cm("ns", &name, json!({})), false)
            .await
            .unwrap();
    }
    // Room for one page: the store waits with the next while the test changes things.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { store.list_pages(&query(Some("ns")), 2, &tx).await })
    };
    let first = rx.recv().await.unwrap().unwrap();
    assert_eq!(names(&first), ["cm-0", "cm-1"]);
    assert!(first.more);
    // Wait until the next pages are read (the third held back by the full channel).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = store.get(&key("ns", "cm-9")).await.unwrap().unwrap();
    store
        .delete(&key("ns", "cm-9"), Some(last.rv))
        .await
        .unwrap();
    store
        .create(&key("ns", "cm-85"), &cm("ns", "cm-85", json!({})), false)
        .await
        .unwrap();
    let mut rest = Vec::new();
    while let Some(page) = rx.recv().await {
        let page = page.unwrap();
        assert_eq!(
            page.rv, first.rv,
            "every page with the first's resourceVersion"
        );
        rest.extend(names(&page));
    }
    reader.await.unwrap();
    assert_eq!(
        rest,
        [
            "cm-2", "cm-3", "cm-4", "cm-5", "cm-6", "cm-7", "cm-8", "cm-9"
        ]
    );
    // Pages of another size, of a selection: the same objects as one list.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    store.list_pages(&query(None), 4, &tx).await;
    drop(tx);
    let mut all = Vec::new();
    while let Some(page) = rx.recv().await {
        all.extend(names(&page.unwrap()));
    }
    assert_eq!(all, names(&store.list(&query(None)).await.unwrap()));
}

async fn label_selectors_match_kubernetes(store: Arc<dyn Store>) {
    let fixtures: Vec<(&str, Value)> = vec![
        ("none", json!({})),
        ("prod-web", json!({"env": "prod", "tier": "web", "n": "5"})),
        ("prod-db", json!({"env": "prod", "tier": "db", "n": "12"})),
        ("dev-web", json!({"env": "dev", "tier": "web", "n": "-3"})),
        ("stage", json!({"env": "stage", "legacy": "", "n": "x1"})),
        (
            "managed",
            json!({"hive.openshift.io/managed": "true", "env": "prod"}),
        ),
    ];
    for (name, labels) in &fixtures {
        store
            .create(&key("sel", name), &cm("sel", name, labels.clone()), false)
            .await
            .unwrap();
    }
    for sel in [
        "env=prod",
        "env==prod,tier=web",
        "env!=prod",
        "env in (prod, dev)",
        "env notin (prod,dev)",
        "tier",
        "!tier",
        "legacy",
        "legacy=",
        "n>4",
        "n<0",
        "hive.openshift.io/managed=true",
        "env=prod,!tier",
        "env in (prod),tier notin (db)",
        "",
        "env=nope",
    ] {
        let selector = Selector::parse(sel).unwrap();
        let mut q = query(Some("sel"));
        q.labels = selector.clone();
        let got = names(&store.list(&q).await.unwrap());
        let mut want: Vec<String> = fixtures
            .iter()
            .filter(|(_, l)| {
                let labels: BTreeMap<String, String> = serde_json::from_value(l.clone()).unwrap();
                selector.matches(&labels)
            })
            .map(|(n, _)| n.to_string())
            .collect();
        want.sort();
        assert_eq!(got, want, "selector {sel:?}");
    }
    // A nil structured selector matches nothing.
    let mut q = query(Some("sel"));
    q.labels = Selector::nothing();
    assert!(store.list(&q).await.unwrap().items.is_empty());
}

async fn outbox_records_every_change(store: Arc<dyn Store>) {
    let start = store.watermark().await.unwrap();
    let a = store
        .create(&key("ev", "a"), &cm("ev", "a", json!({"v": "1"})), false)
        .await
        .unwrap();
    let mut next = a.object.clone();
    next["metadata"]["labels"] = json!({"v": "2"});
    let b = store.update(&key("ev", "a"), &next, a.rv).await.unwrap();
    let c = store.delete(&key("ev", "a"), None).await.unwrap();
    let events = store.events_after(start, 100).await.unwrap();
    let kinds: Vec<(EventType, u64)> = events.iter().map(|e| (e.kind, e.rv)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventType::Added, a.rv),
            (EventType::Modified, b.rv),
            (EventType::Deleted, c.rv)
        ]
    );
    assert_eq!(events[1].prev_labels.as_ref().unwrap()["v"], "1");
    assert_eq!(events[1].object["metadata"]["labels"]["v"], "2");
    assert_eq!(
        events[2].object["metadata"]["resourceVersion"],
        c.rv.to_string()
    );
    assert_eq!(store.events_after(b.rv, 100).await.unwrap().len(), 1);
    assert_eq!(store.events_after(start, 1).await.unwrap().len(), 1);
}

/// What the outbox relay relies on: a reader that follows the outbox while writers run
/// concurrently sees every committed change, none skipped, in order.
async fn a_follower_of_the_outbox_misses_nothing(store: Arc<dyn Store>) {
    const WRITERS: usize = 2;
    const PER_WRITER: usize = 500;
    let start = store.watermark().await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut rvs = Vec::new();
                for i in 0..PER_WRITER {
                    let name = format!("f{w}-{i}");
                    let c = store
                        .create(
                            &key("follow", &name),
                            &cm("follow", &name, json!({})),
                            false,
                        )
                        .await
                        .unwrap();
                    rvs.push(c.rv);
                }
                rvs
            })
        })
        .collect();
    let follower = tokio::spawn({
        let store = store.clone();
        async move {
            let (mut position, mut seen) = (start, Vec::new());
            while seen.len() < WRITERS * PER_WRITER {
                let batch = store.outbox_after(position, 64).await.unwrap();
                if let Some(last) = batch.last() {
                    position = last.rv;
                }
                seen.extend(batch.iter().map(|e| e.rv));
                tokio::task::yield_now().await;
            }
            seen
        }
    });
    let mut written: Vec<u64> = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    written.sort_unstable();
    let seen = tokio::time::timeout(Duration::from_secs(30), follower)
        .await
        .expect("the follower saw every change")
        .unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert_eq!(seen, written);
}

async fn compaction_keeps_unpublished_events(store: Arc<dyn Store>) {
    let start = store.watermark().await.unwrap();
    let mut rvs = Vec::new();
    for i in 0..5 {
        let name = format!("c{i}");
        let c = store
            .create(
                &key("compact", &name),
                &cm("compact", &name, json!({})),
                false,
            )
            .await
            .unwrap();
        rvs.push(c.rv);
    }
    let keep_none = Retention {
        window: Duration::ZERO,
        max_events: 0,
    };
    // Nothing published yet beyond `start`: compaction may not touch these events.
    store.mark_published(start).await.unwrap();
    store.compact(keep_none).await.unwrap();
    assert_eq!(store.events_after(start, 100).await.unwrap().len(), 5);
    // Published up to the third: those three go, the rest stay.
    store.mark_published(rvs[2]).await.unwrap();
    store.mark_published(rvs[0]).await.unwrap(); // never moves back
    let state = store.compact(keep_none).await.unwrap();
    assert_eq!(state.published, rvs[2]);
    assert_eq!(state.compacted, rvs[2]);
    let left: Vec<u64> = store
        .events_after(start, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.rv)
        .collect();
    assert_eq!(left, rvs[3..].to_vec());
    // A generous retention keeps everything that is left.
    store.mark_published(rvs[4]).await.unwrap();
    let state = store.compact(Retention::default()).await.unwrap();
    assert_eq!(state.compacted, rvs[2]);
    assert_eq!(store.outbox_state().await.unwrap(), state);
}

async fn secrets_round_trip(store: Arc<dyn Store>) {
    let k = ObjectKey::new("", "secrets", "ns", "s");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "s", "namespace": "ns", "labels": {"app": "x"},
                     "annotations": {"note": "c3VwZXJzZWNyZXQ="}},
        "data": {"kubeconfig": "c3VwZXJzZWNyZXQ="}});
    let created = store.create(&k, &secret, false).await.unwrap();
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(got.object["data"]["kubeconfig"], "c3VwZXJzZWNyZXQ=");
    assert_eq!(
        got.object["metadata"]["annotations"]["note"],
        "c3VwZXJzZWNyZXQ="
    );
    let mut q = query(Some("ns"));
    q.resource = "secrets".into();
    q.labels = Selector::parse("app=x").unwrap();
    let page = store.list(&q).await.unwrap();
    assert_eq!(
        page.items[0].parse().unwrap().object["data"]["kubeconfig"],
        "c3VwZXJzZWNyZXQ="
    );
    let events = store.events_after(created.rv - 1, 10).await.unwrap();
    assert_eq!(events[0].object["data"]["kubeconfig"], "c3VwZXJzZWNyZXQ=");
}

async fn several_objects_are_read_at_once(store: Arc<dyn Store>) {
    let a = store
        .create(&key("ns", "a"), &cm("ns", "a", json!({})), false)
        .await
        .unwrap();
    let b = store
        .create(&key("ns", "b"), &cm("ns", "b", json!({})), false)
        .await
        .unwrap();
    let s = ObjectKey::new("", "secrets", "ns", "s");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "ns"}, "data": {"k": "c2VjcmV0"}});
    let sealed = store.create(&s, &secret, false).await.unwrap();
    // Another logical cluster's object of the same name is not this one.
    let elsewhere = ObjectKey::new("other", "configmaps", "ns", "c");
    store
        .create(&elsewhere, &cm("ns", "c", json!({})), false)
        .await
        .unwrap();
    let got = store
        .get_many(&[
            key("ns", "b"),
            key("ns", "missing"),
            s.clone(),
            key("ns", "a"),
            key("ns", "c"),
            key("ns", "b"),
        ])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some(b.clone()), None, Some(sealed), Some(a), None, Some(b)]
    );
    assert_eq!(got[2].as_ref().unwrap().object["data"]["k"], "c2VjcmV0");
    assert!(store.get_many(&[]).await.unwrap().is_empty());
    let too_many = vec![key("ns", "a"); syncsets_store::GET_MANY_MAX + 1];
    assert!(store.get_many(&too_many).await.is_err());
}

async fn concurrent_updates_have_one_winner(store: Arc<dyn Store>) {
    let a = store
        .create(&key("race", "a"), &cm("race", "a", json!({})), false)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut obj = a.object.clone();
        obj["data"]["k"] = json!(format!("writer-{i}"));
        tasks.push(tokio::spawn(async move {
            store.update(&key("race", "a"), &obj, a.rv).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn many_concurrent_writers(store: Arc<dyn Store>) {
    let start = store.watermark().await.unwrap();
    let mut tasks = Vec::new();
    // 100 distinct creates, each raced by a duplicate: exactly one of each pair wins.
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("w{}", i % 100);
            store
                .create(&key("many", &name), &cm("many", &name, json!({})), false)
                .await
        }));
    }
    let mut rvs = Vec::new();
    let mut duplicates = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => rvs.push(s.rv),
            Err(StoreError::AlreadyExists) => duplicates += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((rvs.len(), duplicates), (100, 100));
    rvs.sort_unstable();
    rvs.dedup();
    assert_eq!(rvs.len(), 100, "every write has its own resourceVersion");
    let events = store.events_after(start, 1000).await.unwrap();
    assert_eq!(events.len(), 100);
    assert!(events.windows(2).all(|w| w[0].rv < w[1].rv));
    assert_eq!(
        store.list(&query(Some("many"))).await.unwrap().items.len(),
        100
    );
}

async fn creation_needs_an_active_namespace(store: Arc<dyn Store>) {
    let ns_key = ObjectKey::new("", "namespaces", "", "team");
    let obj = cm("team", "x", json!({}));
    assert!(matches!(
        store.create(&key("team", "x"), &obj, true).await,
        Err(StoreError::NamespaceNotFound)
    ));
    let ns = store
        .create(
            &ns_key,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
            false,
        )
        .await
        .unwrap();
    store.create(&key("team", "x"), &obj, true).await.unwrap();
    assert!(matches!(
        store.create(&key("team", "x"), &obj, true).await,
        Err(StoreError::AlreadyExists)
    ));
    let mut terminating = ns.object.clone();
    terminating["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    store.update(&ns_key, &terminating, ns.rv).await.unwrap();
    assert!(matches!(
        store.create(&key("team", "y"), &obj, true).await,
        Err(StoreError::NamespaceTerminating)
    ));
    // Without the precondition the store does not care (cluster-scoped objects, internal writes).
    store
        .create(
            &key("elsewhere", "z"),
            &cm("elsewhere", "z", json!({})),
            false,
        )
        .await
        .unwrap();
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
                    let store = syncsets_store::open(&url, Some(super::keyring())).await.unwrap();
                    super::$test(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = super::TestDb::create().await else { return };
                    let store = syncsets_store::open(&db.url, Some(super::keyring())).await.unwrap();
                    super::$test(store).await;
                    db.drop_db().await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let store = syncsets_store::open("memory://", None).await.unwrap();
                    super::$test(store).await;
                }
            )*
        }
    };
}

suite!(
    crud_and_resource_versions,
    logical_clusters_are_isolated,
    lists_page_and_filter,
    lists_in_pages_from_one_snapshot,
    label_selectors_match_kubernetes,
    outbox_records_every_change,
    compaction_keeps_unpublished_events,
    a_follower_of_the_outbox_misses_nothing,
    secrets_round_trip,
    several_objects_are_read_at_once,
    concurrent_updates_have_one_winner,
    many_concurrent_writers,
    creation_needs_an_active_namespace,
);
