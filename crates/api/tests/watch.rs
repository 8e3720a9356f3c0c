//! Watches over HTTP, with Kubernetes semantics, on every backend.

mod common;

use std::time::Duration;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use syncsets_store::Retention;

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}, "data": {"a": "1"}})
}

fn summary(e: &Value) -> (String, String) {
    (
        e["type"].as_str().unwrap().to_string(),
        e["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

fn pair(t: &str, n: &str) -> (String, String) {
    (t.to_string(), n.to_string())
}

async fn list_rv(app: &TestApp, path: &str) -> String {
    app.get(path).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn selectors_turn_label_changes_into_added_and_deleted(app: &TestApp) {
    let rv = list_rv(app, CM).await;
    let mut w = app
        .watch(&format!(
            "{CM}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb"
        ))
        .await;
    let mut all = app
        .watch(&format!(
            "/api/v1/configmaps?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Da"
        ))
        .await;
    assert_eq!(
        app.post(CM, &cm("a", "web")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post(CM, &cm("b", "other")).await.status,
        StatusCode::CREATED
    );
    let merge = "application/merge-patch+json";
    app.patch(
        &format!("{CM}/a"),
        merge,
        r#"{"metadata":{"labels":{"app":"other"}}}"#,
    )
    .await;
    app.patch(
        &format!("{CM}/b"),
        merge,
        r#"{"metadata":{"labels":{"app":"web"}}}"#,
    )
    .await;
    app.patch(&format!("{CM}/b"), merge, r#"{"data":{"a":"2"}}"#)
        .await;
    app.delete(&format!("{CM}/b")).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(summary(&w.next_change().await.expect("an event")));
    }
    assert_eq!(
        got,
        vec![
            pair("ADDED", "a"),
            pair("DELETED", "a"),
            pair("ADDED", "b"),
            pair("MODIFIED", "b"),
            pair("DELETED", "b")
        ]
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(summary(&all.next_change().await.expect("an event")));
    }
    assert_eq!(got, vec![pair("ADDED", "a"), pair("MODIFIED", "a")]);
    assert!(
        all.next_within(Duration::from_millis(400))
            .await
            .is_none_or(|e| e["type"] == "BOOKMARK")
    );
}

async fn resuming_from_a_version_replays_exactly_what_followed(app: &TestApp) {
    let a = app.post(CM, &cm("r1", "x")).await.body;
    app.post(CM, &cm("r2", "x")).await;
    app.post(CM, &cm("r3", "x")).await;
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap();
    let mut w = app
        .watch(&format!("{CM}?watch=true&resourceVersion={rv}"))
        .await;
    // Then changes made after the watch began; a last create closes the sequence, so
    // anything extra, repeated or out of order shows in it.
    app.patch(
        &format!("{CM}/r1"),
        "application/merge-patch+json",
        r#"{"data":{"a":"2"}}"#,
    )
    .await;
    app.delete(&format!("{CM}/r2")).await;
    app.post(CM, &cm("r4", "x")).await;
    let (mut seen, mut versions) = (Vec::new(), vec![rv.parse::<u64>().unwrap()]);
    while seen.last() != Some(&pair("ADDED", "r4")) && seen.len() < 10 {
        let event = w.next_change().await.unwrap();
        seen.push(summary(&event));
        versions.push(
            event["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    assert_eq!(
        seen,
        vec![
            pair("ADDED", "r2"),
            pair("ADDED", "r3"),
            pair("MODIFIED", "r1"),
            pair("DELETED", "r2"),
            pair("ADDED", "r4"),
        ]
    );
    assert!(
        versions.windows(2).all(|v| v[0] < v[1]),
        "in commit order, after the version resumed from: {versions:?}"
    );
}

async fn initial_state_bookmarks_and_timeouts(app: &TestApp) {
    app.post(CM, &cm("i1", "x")).await;
    app.post(CM, &cm("i2", "x")).await;
    // No resourceVersion: the current state as ADDED, then changes.
    let mut w = app.watch(&format!("{CM}?watch=true")).await;
    let mut names: Vec<String> = Vec::new();
    for _ in 0..2 {
        let (t, n) = summary(&w.next_change().await.unwrap());
        assert_eq!(t, "ADDED");
        names.push(n);
    }
    names.sort();
    assert_eq!(names, ["i1", "i2"]);
    app.post(CM, &cm("i3", "x")).await;
    assert_eq!(
        summary(&w.next_change().await.unwrap()),
        pair("ADDED", "i3")
    );

    // The streaming-list protocol: initial events, then a bookmark that says they ended.
    let mut w = app
        .watch(&format!("{CM}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=1"))
        .await;
    // (Read two objects at a time: the state spans pages, each object sent once, in order.)
    let mut initial = Vec::new();
    for _ in 0..3 {
        initial.push(summary(&w.next().await.unwrap()));
    }
    assert_eq!(
        initial,
        [
            pair("ADDED", "i1"),
            pair("ADDED", "i2"),
            pair("ADDED", "i3")
        ]
    );
    let end = w.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["object"]["kind"], "ConfigMap");
    // Periodic bookmarks carry a resourceVersion to resume from.
    let bm = w.next().await.unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert!(
        bm["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    // Changes follow the initial state; what it already holds is not replayed.
    app.post(CM, &cm("i4", "x")).await;
    assert_eq!(
        summary(&w.next_change().await.unwrap()),
        pair("ADDED", "i4")
    );

    let bad = app
        .get(&format!(
            "{CM}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["reason"], "Invalid");

    // The server ends the watch after timeoutSeconds (the deadline only keeps a server
    // that never does from hanging the test).
    let mut w = app
        .watch(&format!(
            "{CM}?watch=true&resourceVersion=0&timeoutSeconds=1"
        ))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while w.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end on its timeout");
}

async fn compacted_versions_are_gone(app: &TestApp) {
    let first = app.post(CM, &cm("g1", "x")).await.body;
    app.post(CM, &cm("g2", "x")).await;
    let store = &app.state.store;
    let now = store.watermark().await.unwrap();
    // Wait until the relay has published everything, then compact it all.
    for _ in 0..200 {
        if store.outbox_state().await.unwrap().published >= now {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
        .compact(Retention {
            window: Duration::ZERO,
            max_events: 0,
        })
        .await
        .unwrap();
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap();
    let gone = app
        .get(&format!("{CM}?watch=true&resourceVersion={rv}"))
        .await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(gone.body["reason"], "Expired");
    assert_eq!(gone.body["kind"], "Status");
    // A fresh list gives a version to watch from.
    let rv = list_rv(app, CM).await;
    let mut w = app
        .watch(&format!("{CM}?watch=true&resourceVersion={rv}"))
        .await;
    app.post(CM, &cm("g3", "x")).await;
    assert_eq!(
        summary(&w.next_change().await.unwrap()),
        pair("ADDED", "g3")
    );
}

async fn secrets_tables_and_logical_clusters(app: &TestApp) {
    let rv = list_rv(app, "/api/v1/namespaces/default/secrets").await;
    let mut w = app
        .watch(&format!(
            "/api/v1/namespaces/default/secrets?watch=true&resourceVersion={rv}"
        ))
        .await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "hello"}});
    assert_eq!(
        app.post("/api/v1/namespaces/default/secrets", &secret)
            .await
            .status,
        StatusCode::CREATED
    );
    let e = w.next_change().await.unwrap();
    assert_eq!(e["object"]["data"]["token"], "aGVsbG8=");

    // kubectl get -w asks for tables: one row per event, columns in the first.
    let res = reqwest::Client::new()
        .get(format!(
            "{}{CM}?watch=true&resourceVersion={}",
            app.base,
            list_rv(app, CM).await
        ))
        .header("Accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .send()
        .await
        .unwrap();
    app.post(CM, &cm("t1", "x")).await;
    app.post(CM, &cm("t2", "x")).await;
    let mut tw = common::WatchStream::from_response(res);
    let first = tw.next_change().await.unwrap();
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["rows"][0]["cells"][0], "t1");
    assert!(
        !first["object"]["columnDefinitions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let second = tw.next_change().await.unwrap();
    assert_eq!(second["object"]["rows"][0]["cells"][0], "t2");

    // A logical cluster's events stay in it.
    let path = "/clusters/member-1/api/v1/namespaces/default/configmaps";
    let rv = list_rv(app, path).await;
    let mut member = app
        .watch(&format!("{path}?watch=true&resourceVersion={rv}"))
        .await;
    app.post(CM, &cm("hub-only", "x")).await;
    app.post(path, &cm("member-only", "x")).await;
    assert_eq!(
        summary(&member.next_change().await.unwrap()),
        pair("ADDED", "member-only")
    );
}

/// The legacy watch paths (`/api/v1/watch/…`) are watches: of a collection, or, with a
/// name, of that one object (authorization reads them as `watch` on that name).
async fn legacy_watch_paths_watch(app: &TestApp) {
    let rv = list_rv(app, CM).await;
    let legacy = "/api/v1/watch/namespaces/default/configmaps";
    let mut all = app.watch(&format!("{legacy}?resourceVersion={rv}")).await;
    let mut one = app
        .watch(&format!("{legacy}/wanted?resourceVersion={rv}"))
        .await;
    for name in ["other", "wanted"] {
        assert_eq!(
            app.post(CM, &cm(name, "x")).await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        summary(&all.next_change().await.unwrap()),
        pair("ADDED", "other")
    );
    assert_eq!(
        summary(&all.next_change().await.unwrap()),
        pair("ADDED", "wanted")
    );
    // Only the named object: the first event is its own.
    assert_eq!(
        summary(&one.next_change().await.unwrap()),
        pair("ADDED", "wanted")
    );
}

per_backend!(
    legacy_watch_paths_watch,
    selectors_turn_label_changes_into_added_and_deleted,
    resuming_from_a_version_replays_exactly_what_followed,
    initial_state_bookmarks_and_timeouts,
    compacted_versions_are_gone,
    secrets_tables_and_logical_clusters,
);
