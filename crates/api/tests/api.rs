//! The Kubernetes REST API, end to end over HTTP, on every backend.

mod common;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "web"}}, "data": {"a": "1"}})
}

/// Everything stored in a namespace's ConfigMaps, to prove rejected requests change nothing.
async fn snapshot(app: &TestApp) -> Value {
    app.get(CM).await.body["items"].clone()
}

async fn discovery_and_version(app: &TestApp) {
    let v = app.get("/version").await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.body["gitVersion"].as_str().unwrap().starts_with("v1."));
    assert_eq!(app.get("/api").await.body["versions"], json!(["v1"]));
    let apis = app.get("/apis").await.body;
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(groups.contains(&"hive.openshift.io") && groups.contains(&"hiveinternal.openshift.io"));
    let core = app.get("/api/v1").await.body;
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "namespaces/status")
    );
    let agg = app
        .send(Method::GET, "/apis", None, "", Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"))
        .await;
    assert_eq!(
        agg.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(agg.body["kind"], "APIGroupDiscoveryList");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(
        app.get("/apis/nope.example.com/v1/things").await.status,
        StatusCode::NOT_FOUND
    );
    let root = app.get("/openapi/v3").await.body;
    let url = root["paths"]["apis/hive.openshift.io/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = app.get(&url).await.body;
    assert!(doc["components"]["schemas"]["io.openshift.hive.v1.SyncSet"].is_object());
    let pb = app
        .send(
            Method::GET,
            "/openapi/v2",
            None,
            "",
            Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        )
        .await;
    assert_eq!(
        pb.headers["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(&pb.bytes[..5], b"\x0a\x032.0", "swagger field first");
    assert_eq!(app.get("/openapi/v2").await.body["swagger"], "2.0");
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&docs.bytes).contains("swagger"));
}

async fn crud_and_status_errors(app: &TestApp) {
    let created = app.post(CM, &cm("a")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(created.body["metadata"]["uid"].is_string());
    assert_eq!(
        created.body["metadata"]["managedFields"][0]["manager"],
        "unknown"
    );

    let dup = app.post(CM, &cm("a")).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body["reason"], "AlreadyExists");
    assert_eq!(dup.body["message"], "configmaps \"a\" already exists");
    assert_eq!(
        dup.body["details"],
        json!({"name": "a", "kind": "configmaps"})
    );

    let missing = app.get(&format!("{CM}/zz")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "configmaps \"zz\" not found", "reason": "NotFound", "details": {"name": "zz", "kind": "configmaps"}, "code": 404})
    );

    // Optimistic concurrency.
    let mut next = created.body.clone();
    next["data"]["a"] = json!("2");
    let ok = app.put(&format!("{CM}/a"), &next).await;
    assert_eq!(ok.status, StatusCode::OK);
    let stale = app.put(&format!("{CM}/a"), &next).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["reason"], "Conflict");
    assert!(
        stale.body["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    // Unconditional update without resourceVersion.
    let mut unconditional = next.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["data"]["a"] = json!("3");
    assert_eq!(
        app.put(&format!("{CM}/a"), &unconditional).await.status,
        StatusCode::OK
    );
    assert_ne!(
        app.get(&format!("{CM}/a")).await.body["metadata"]["resourceVersion"],
        json!(rv)
    );

    let before = snapshot(app).await;
    let invalid = app
        .post(
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.body["reason"], "Invalid");
    assert_eq!(invalid.body["details"]["kind"], "ConfigMap");
    assert_eq!(
        invalid.body["details"]["causes"][0]["field"],
        "metadata.name"
    );
    assert_eq!(
        invalid.body["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );
    assert!(invalid.body["message"].as_str().unwrap().starts_with(
        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
    ));

    let malformed = app
        .send(
            Method::POST,
            CM,
            Some(b"{\"kind\":".to_vec()),
            "application/json",
            None,
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let wrong_type = app
        .send(
            Method::POST,
            CM,
            Some(b"a=b".to_vec()),
            "application/x-www-form-urlencoded",
            None,
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"x": "y".repeat(3 * 1024 * 1024)}});
    let too_large = app.post(CM, &huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.body["reason"], "RequestEntityTooLarge");
    let no_ns = app
        .post("/api/v1/namespaces/nope/configmaps", &cm("x"))
        .await;
    assert_eq!(no_ns.status, StatusCode::NOT_FOUND);
    assert_eq!(no_ns.body["message"], "namespaces \"nope\" not found");
    let wrong_kind = app
        .post(
            CM,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        )
        .await;
    assert_eq!(wrong_kind.status, StatusCode::BAD_REQUEST);
    let method = app
        .send(
            Method::POST,
            &format!("{CM}/a"),
            Some(cm("a").to_string().into_bytes()),
            "application/json",
            None,
        )
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    let mismatch = app.put(&format!("{CM}/a"), &cm("b")).await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        snapshot(app).await,
        before,
        "rejected requests change nothing"
    );

    let deleted = app.delete(&format!("{CM}/a")).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(deleted.body["details"]["kind"], "configmaps");
    assert_eq!(
        app.delete(&format!("{CM}/a")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn lists_select_and_page(app: &TestApp) {
    for i in 0..7 {
        let mut o = cm(&format!("c{i}"));
        o["metadata"]["labels"] =
            json!({"i": i.to_string(), "parity": if i % 2 == 0 { "even" } else { "odd" }});
        assert_eq!(app.post(CM, &o).await.status, StatusCode::CREATED);
    }
    let names = |r: &common::Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&app.get(&format!("{CM}?labelSelector=parity%3Deven")).await),
        vec!["c0", "c2", "c4", "c6"]
    );
    assert_eq!(
        names(
            &app.get(&format!("{CM}?labelSelector=i+in+(1,3),parity!%3Deven"))
                .await
        ),
        vec!["c1", "c3"]
    );
    assert_eq!(
        names(&app.get(&format!("{CM}?labelSelector=i%3E4")).await),
        vec!["c5", "c6"]
    );
    assert_eq!(
        names(
            &app.get(&format!("{CM}?fieldSelector=metadata.name%3Dc3"))
                .await
        ),
        vec!["c3"]
    );
    let bad = app.get(&format!("{CM}?labelSelector=a%20b")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap()
            .starts_with("unable to parse requirement")
    );
    assert_eq!(
        app.get(&format!("{CM}?labelSelector=x%27%3B+drop+table+objects"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(&format!("{CM}?fieldSelector=spec.x%3D1"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(&format!("{CM}?continue=garbage")).await.status,
        StatusCode::BAD_REQUEST
    );

    let mut seen = Vec::new();
    let mut path = format!("{CM}?limit=3");
    let mut first_rv = None;
    loop {
        let page = app.get(&path).await;
        let rv = page.body["metadata"]["resourceVersion"].clone();
        first_rv.get_or_insert(rv.clone());
        assert_eq!(
            Some(&rv),
            first_rv.as_ref(),
            "pages report the first page's resourceVersion"
        );
        seen.extend(names(&page));
        match page.body["metadata"]["continue"].as_str() {
            Some(token) => path = format!("{CM}?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let all = app.get("/api/v1/configmaps").await;
    assert_eq!(all.body["kind"], "ConfigMapList");
    assert!(all.body["items"].as_array().unwrap().len() >= 7);

    let table = app
        .send(
            Method::GET,
            &format!("{CM}?labelSelector=parity%3Dodd"),
            None,
            "",
            Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
        )
        .await;
    assert_eq!(table.body["kind"], "Table");
    let cols: Vec<&str> = table.body["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["Name", "Data", "Age"]);
    assert_eq!(table.body["rows"][0]["cells"][0], "c1");
    assert_eq!(table.body["rows"][0]["cells"][1], 1);
    assert_eq!(
        table.body["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
    let meta = app
        .send(
            Method::GET,
            CM,
            None,
            "",
            Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
        )
        .await;
    assert_eq!(meta.body["kind"], "PartialObjectMetadataList");
    assert!(meta.body["items"][0].get("data").is_none());

    let dc = app
        .send(
            Method::DELETE,
            &format!("{CM}?labelSelector=parity%3Dodd"),
            None,
            "",
            None,
        )
        .await;
    assert_eq!(dc.status, StatusCode::OK);
    assert_eq!(dc.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(names(&app.get(CM).await), vec!["c0", "c2", "c4", "c6"]);
}

async fn patches(app: &TestApp) {
    let mut o = cm("p");
    o["metadata"]["finalizers"] = json!(["example.com/a"]);
    app.post(CM, &o).await;
    let path = format!("{CM}/p");
    let smp = app
        .patch(
            &path,
            "application/strategic-merge-patch+json",
            r#"{"metadata":{"finalizers":["example.com/b"]},"data":{"b":"2"}}"#,
        )
        .await;
    assert_eq!(smp.status, StatusCode::OK, "{:?}", smp.body);
    assert_eq!(
        smp.body["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/b"]),
        "finalizers merge"
    );
    let merge = app
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null},"data":{"a":null}}"#,
        )
        .await;
    assert!(merge.body["metadata"].get("finalizers").is_none());
    assert_eq!(merge.body["data"], json!({"b": "2"}));
    let jp = app
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/data/b","value":"nope"}]"#,
        )
        .await;
    assert_eq!(jp.status, StatusCode::UNPROCESSABLE_ENTITY);
    let jp = app
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
        )
        .await;
    assert_eq!(jp.body["data"]["c"], "3");
    let unknown = app.patch(&path, "application/xml", "<x/>").await;
    assert_eq!(unknown.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let stale = app
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"}}"#,
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::CONFLICT,
        "a resourceVersion in a patch is a precondition"
    );
    assert_eq!(
        app.patch(&format!("{CM}/none"), "application/merge-patch+json", "{}")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Strategic merge on a CRD-style kind merges like a merge patch: lists are replaced.
    let ss_path = "/apis/hive.openshift.io/v1/namespaces/default/syncsets";
    let ss = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SyncSet", "metadata": {"name": "s"},
        "spec": {"clusterDeploymentRefs": [{"name": "a"}, {"name": "b"}]}});
    assert_eq!(app.post(ss_path, &ss).await.status, StatusCode::CREATED);
    let r = app
        .patch(
            &format!("{ss_path}/s"),
            "application/strategic-merge-patch+json",
            r#"{"spec":{"clusterDeploymentRefs":[{"name":"c"}]}}"#,
        )
        .await;
    assert_eq!(
        r.body["spec"]["clusterDeploymentRefs"],
        json!([{"name": "c"}])
    );
    assert_eq!(r.body["metadata"]["generation"], 2);
}

async fn server_side_apply(app: &TestApp) {
    let path = format!("{CM}/ssa");
    let cfg = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"key":"v1","other":"x"}}"#;
    let no_manager = app.patch(&path, "application/apply-patch+yaml", cfg).await;
    assert_eq!(no_manager.status, StatusCode::UNPROCESSABLE_ENTITY);
    let created = app
        .patch(
            &format!("{path}?fieldManager=kubectl"),
            "application/apply-patch+yaml",
            cfg,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        created.body["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    let edited = app
        .patch(
            &format!("{path}?fieldManager=kubectl-edit"),
            "application/merge-patch+json",
            r#"{"data":{"key":"v2"}}"#,
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    let conflict = app
        .patch(
            &format!("{path}?fieldManager=kubectl"),
            "application/apply-patch+yaml",
            cfg,
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(
        conflict.body["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.key"
    );
    assert_eq!(
        conflict.body["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using v1", "field": ".data.key"})
    );
    let forced = app
        .patch(
            &format!("{path}?fieldManager=kubectl&force=true"),
            "application/apply-patch+yaml",
            cfg,
        )
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    assert_eq!(forced.body["data"]["key"], "v1");
    // YAML, and fields the applier stops declaring disappear.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  key: v1\n";
    let pruned = app
        .patch(
            &format!("{path}?fieldManager=kubectl"),
            "application/apply-patch+yaml",
            yaml,
        )
        .await;
    assert_eq!(pruned.body["data"], json!({"key": "v1"}));
    let wrong = app
        .patch(
            &format!("{path}?fieldManager=kubectl"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: ssa}\n",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.body["message"],
        "invalid object type: /v1, Kind=Secret"
    );
    let unknown = app
        .patch(
            &format!("{path}?fieldManager=kubectl"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\nspec: {x: 1}\n",
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body["message"],
        ".spec: field not declared in schema"
    );
    let force_on_merge = app
        .patch(
            &format!("{path}?force=true"),
            "application/merge-patch+json",
            "{}",
        )
        .await;
    assert_eq!(force_on_merge.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn finalizers_and_namespaces(app: &TestApp) {
    assert_eq!(
        app.post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let ns_cm = "/api/v1/namespaces/doomed/configmaps";
    app.post(ns_cm, &cm("plain")).await;
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    app.post(ns_cm, &held).await;
    let ns = app.delete("/api/v1/namespaces/doomed").await;
    assert_eq!(ns.status, StatusCode::OK);
    assert_eq!(ns.body["status"]["phase"], "Terminating");
    assert_eq!(
        app.get(&format!("{ns_cm}/plain")).await.status,
        StatusCode::NOT_FOUND
    );
    let marked = app.get(&format!("{ns_cm}/held")).await;
    assert!(
        marked.body["metadata"]["deletionTimestamp"].is_string(),
        "finalizers hold the object"
    );
    let late = app.post(ns_cm, &cm("late")).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
    assert_eq!(
        late.body["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    // Removing the last finalizer deletes the object, then the namespace goes.
    let released = app
        .patch(
            &format!("{ns_cm}/held"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(released.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("{ns_cm}/held")).await.status,
        StatusCode::NOT_FOUND
    );
    let mut gone = false;
    for _ in 0..50 {
        if app.get("/api/v1/namespaces/doomed").await.status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the namespace is removed once empty");
}

async fn status_subresource_and_dry_run(app: &TestApp) {
    let base = "/apis/hiveinternal.openshift.io/v1alpha1/namespaces/default/clustersyncs";
    let cs = json!({"apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync", "metadata": {"name": "c1"}, "spec": {}, "status": {"controlledByReplica": 9}});
    let created = app.post(base, &cs).await;
    assert!(
        created.body.get("status").is_none(),
        "status is not set on create"
    );
    let mut with_status = created.body.clone();
    with_status["status"] = json!({"controlledByReplica": 1, "conditions": [{"type": "Failed", "status": "False", "reason": "Success", "message": "ok"}]});
    let main = app.put(&format!("{base}/c1"), &with_status).await;
    assert!(
        main.body.get("status").is_none(),
        "the main resource ignores status"
    );
    with_status["metadata"]["resourceVersion"] = main.body["metadata"]["resourceVersion"].clone();
    let status = app.put(&format!("{base}/c1/status"), &with_status).await;
    assert_eq!(status.status, StatusCode::OK, "{:?}", status.body);
    assert_eq!(status.body["status"]["controlledByReplica"], 1);
    let table = app
        .send(
            Method::GET,
            base,
            None,
            "",
            Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        )
        .await;
    assert_eq!(
        table.body["rows"][0]["cells"],
        json!(["c1", "Success", "1", "ok"])
    );

    let before = snapshot(app).await;
    let dry = app.post(&format!("{CM}?dryRun=All"), &cm("dry")).await;
    assert_eq!(dry.status, StatusCode::CREATED);
    assert!(dry.body["metadata"]["uid"].is_string());
    assert_eq!(snapshot(app).await, before, "dry runs persist nothing");
    app.post(CM, &cm("real")).await;
    let snap = snapshot(app).await;
    app.patch(
        &format!("{CM}/real?dryRun=All"),
        "application/merge-patch+json",
        r#"{"data":{"z":"1"}}"#,
    )
    .await;
    app.send(
        Method::DELETE,
        &format!("{CM}/real?dryRun=All"),
        None,
        "",
        None,
    )
    .await;
    // DeleteOptions' own dryRun (where client libraries such as kube-rs put it).
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]});
    for path in [format!("{CM}/real"), CM.to_string()] {
        let dry = app
            .send(
                Method::DELETE,
                &path,
                Some(body.to_string().into_bytes()),
                "application/json",
                None,
            )
            .await;
        assert_eq!(dry.status, StatusCode::OK, "{path}: {:?}", dry.body);
    }
    assert_eq!(snapshot(app).await, snap);
}

async fn field_validation(app: &TestApp) {
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv"}, "extra": 1})
            .to_string();
    let strict = app
        .send(
            Method::POST,
            &format!("{CM}?fieldValidation=Strict"),
            Some(body.clone().into_bytes()),
            "application/json",
            None,
        )
        .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        strict.body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"extra\""
    );
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv"},"data":{"a":"1","a":"2"}}"#;
    let strict_dup = app
        .send(
            Method::POST,
            &format!("{CM}?fieldValidation=Strict"),
            Some(dup.as_bytes().to_vec()),
            "application/json",
            None,
        )
        .await;
    assert!(
        strict_dup.body["message"]
            .as_str()
            .unwrap()
            .ends_with("duplicate field \"data.a\"")
    );
    let warn = app
        .send(
            Method::POST,
            CM,
            Some(body.clone().into_bytes()),
            "application/json",
            None,
        )
        .await;
    assert_eq!(warn.status, StatusCode::CREATED);
    assert_eq!(
        warn.headers["warning"],
        "299 - \"unknown field \\\"extra\\\"\""
    );
    let bad = app
        .send(
            Method::POST,
            &format!("{CM}?fieldValidation=Loose"),
            Some(body.into_bytes()),
            "application/json",
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

async fn custom_resource_definitions(app: &TestApp) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "minimum": 1}, "color": {"type": "string", "default": "red"}}}}}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]}
    });
    let r = app
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"]["conditions"][1]["type"], "Established");
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    let w = app.post(widgets, &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2, "junk": true}})).await;
    assert_eq!(w.status, StatusCode::CREATED, "{:?}", w.body);
    assert_eq!(
        w.body["spec"],
        json!({"size": 2, "color": "red"}),
        "pruned and defaulted"
    );
    let invalid = app.post(widgets, &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "v"}, "spec": {"size": 0}})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        invalid.body["message"],
        "Widget.example.com \"v\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    );
    let res = app.get("/apis/example.com/v1").await;
    assert_eq!(res.body["resources"][0]["shortNames"], json!(["wd"]));
    let bad_crd = app.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget"}, "versions": []}})).await;
    assert_eq!(bad_crd.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(widgets).await.status,
        StatusCode::NOT_FOUND,
        "the kind is no longer served"
    );
    // Re-creating the CRD does not resurrect old objects.
    app.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd,
    )
    .await;
    assert_eq!(app.get(widgets).await.body["items"], json!([]));
}

async fn seed_cluster_registration(app: &TestApp) {
    let r = app.post("/v1/clusters", &json!({"name": "cluster1", "namespace": "foo", "kubeconfig": "apiVersion: v1\nkind: Config\n", "labels": {"env": "prod"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["kind"], "ClusterDeployment");
    assert_eq!(r.body["spec"]["installed"], true);
    for (field, value) in r.body["metadata"].as_object().unwrap() {
        assert!(!value.is_null(), "metadata.{field} is null: {}", r.body);
    }
    assert_eq!(
        r.body["spec"]["clusterMetadata"]["adminKubeconfigSecretRef"]["name"],
        "cluster1-admin-kubeconfig"
    );
    let secret = app
        .get("/api/v1/namespaces/foo/secrets/cluster1-admin-kubeconfig")
        .await;
    assert_eq!(
        secret.body["data"]["kubeconfig"],
        "YXBpVmVyc2lvbjogdjEKa2luZDogQ29uZmlnCg=="
    );
    assert_eq!(
        app.get("/apis/hive.openshift.io/v1/clusterdeployments?labelSelector=env%3Dprod")
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let again = app
        .post(
            "/v1/clusters",
            &json!({"name": "cluster1", "namespace": "foo", "kubeconfig": "x"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        app.post("/v1/clusters", &json!({"name": "c2"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post(
            "/v1/clusters",
            &json!({"name": "Bad!", "namespace": "foo", "kubeconfig": "x"})
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn logical_clusters(app: &TestApp) {
    let ns = app.get("/clusters/member-1/api/v1/namespaces").await;
    let names: Vec<&str> = ns.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let member = "/clusters/member-1/api/v1/namespaces/default/configmaps";
    assert_eq!(
        app.post(member, &cm("only-here")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.get(&format!("{CM}/only-here")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{member}/only-here")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/clusters/member-1/version").await.status,
        StatusCode::OK
    );
    assert!(app.get("/clusters/member-1/apis").await.body["groups"].is_array());
}

async fn secrets(app: &TestApp) {
    let path = "/api/v1/namespaces/default/secrets";
    let s = app.post(path, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "abc"}})).await;
    assert_eq!(s.status, StatusCode::CREATED);
    assert_eq!(s.body["data"]["token"], "YWJj");
    assert_eq!(s.body["type"], "Opaque");
    assert!(s.body.get("stringData").is_none());
    let by_type = app
        .get(&format!("{path}?fieldSelector=type%3DOpaque"))
        .await;
    assert_eq!(by_type.body["items"].as_array().unwrap().len(), 1);
    let tls = app.post(path, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {}})).await;
    assert_eq!(tls.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// What kube-apiserver does that clients can tell (issue: behave like kube-apiserver).
async fn like_kube_apiserver(app: &TestApp) {
    // A body without kind and apiVersion takes them from the URL (the official clients'
    // `create_namespace(V1Namespace(metadata=...))`).
    let ns = app
        .post("/api/v1/namespaces", &json!({"metadata": {"name": "bare"}}))
        .await;
    assert_eq!(ns.status, StatusCode::CREATED, "{}", ns.body);
    assert_eq!(ns.body["kind"], "Namespace");
    assert_eq!(ns.body["apiVersion"], "v1");
    // Every namespace carries its name as a label.
    assert_eq!(
        ns.body["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "bare"
    );
    let path = "/api/v1/namespaces/bare/configmaps";
    let made = app
        .post(
            path,
            &json!({"metadata": {"name": "c"}, "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["kind"], "ConfigMap");
    let mut replaced = made.body.clone();
    replaced.as_object_mut().unwrap().remove("kind");
    replaced["apiVersion"] = json!("");
    replaced["data"]["k"] = json!("w");
    let put = app.put(&format!("{path}/c"), &replaced).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["kind"], "ConfigMap");
    // A kind that is given must still be the URL's.
    let wrong = app
        .post(path, &json!({"kind": "Secret", "metadata": {"name": "d"}}))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);

    // Empty metadata maps are not stored: `{}` and absent read back the same.
    let empty = app
        .post(
            path,
            &json!({"metadata": {"name": "e", "labels": {}, "annotations": {}, "finalizers": []}}),
        )
        .await;
    assert_eq!(empty.status, StatusCode::CREATED);
    for field in ["labels", "annotations", "finalizers"] {
        assert!(
            empty.body["metadata"].get(field).is_none(),
            "{field}: {}",
            empty.body
        );
    }
    let applied = app
        .patch(
            &format!("{path}/e?fieldManager=m"),
            "application/apply-patch+yaml",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"e","annotations":{}}}"#,
        )
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert!(applied.body["metadata"].get("annotations").is_none());

    // The namespaces a cluster lives with cannot be deleted; nor can namespaces be
    // deleted as a collection.
    for name in ["default", "kube-system", "kube-public"] {
        let refused = app.delete(&format!("/api/v1/namespaces/{name}")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(
            refused.body["message"],
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
        );
        assert_eq!(
            app.get(&format!("/api/v1/namespaces/{name}")).await.status,
            StatusCode::OK
        );
    }
    let all = app.delete("/api/v1/namespaces").await;
    assert_eq!(all.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(all.body["reason"], "MethodNotAllowed");
    assert_eq!(all.headers["allow"], "GET, POST");
    assert_eq!(
        app.get("/api/v1/namespaces/bare").await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    let discovery = app.get("/api/v1").await.body;
    let namespaces = discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "namespaces")
        .unwrap();
    assert!(
        !namespaces["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("deletecollection"))
    );
    // A namespaced kind across namespaces is only read; a 405 says what is allowed.
    let across = app.delete("/api/v1/configmaps").await;
    assert_eq!(across.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(across.headers["allow"], "GET");
    assert_eq!(
        app.get(&format!("{path}/c")).await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    let put_list = app.put(path, &json!({})).await;
    assert_eq!(put_list.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put_list.headers["allow"], "DELETE, GET, POST");
    let post_one = app.post(&format!("{path}/c"), &json!({})).await;
    assert_eq!(post_one.headers["allow"], "DELETE, GET, PATCH, PUT");
    let status_delete = app.delete("/api/v1/namespaces/bare/status").await;
    assert_eq!(status_delete.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status_delete.headers["allow"], "GET, PATCH, PUT");
}

/// The managedFields entry of `manager` (with `subresource`), if any.
fn entry<'a>(obj: &'a Value, manager: &str, subresource: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["subresource"].as_str().unwrap_or("") == subresource)
}

/// Whether an entry owns the field at `path` (`f:` keys).
fn owns(entry: Option<&Value>, path: &[&str]) -> bool {
    let mut at = match entry {
        Some(e) => &e["fieldsV1"],
        None => return false,
    };
    for p in path {
        at = &at[*p];
    }
    at.is_object()
}

/// Each manager keeps its fields whoever writes next (kube-apiserver's field managers:
/// status and main-resource writers tracked apart, nobody's entry lost to another's write).
async fn managed_fields_survive_other_writers(app: &TestApp) {
    let path = "/apis/hive.openshift.io/v1/selectorsyncsets/owned";
    let applied = app
        .patch(
            &format!("{path}?fieldManager=applier"),
            "application/apply-patch+yaml",
            r#"{"apiVersion":"hive.openshift.io/v1","kind":"SelectorSyncSet","metadata":{"name":"owned"},
                "spec":{"clusterDeploymentSelector":{"matchLabels":{"env":"prod"}},"resourceApplyMode":"Sync"}}"#,
        )
        .await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", applied.body);
    let mut with_status = applied.body.clone();
    with_status["status"] = json!({"clusters": 3, "inSync": 3});
    let status = app
        .put(
            &format!("{path}/status?fieldManager=controller"),
            &with_status,
        )
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    let o = &status.body;
    assert!(
        owns(entry(o, "applier", ""), &["f:spec", "f:resourceApplyMode"]),
        "{o}"
    );
    assert!(
        owns(
            entry(o, "controller", "status"),
            &["f:status", "f:clusters"]
        ),
        "{o}"
    );

    let patched = app
        .patch(
            &format!("{path}?fieldManager=patcher"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"team":"a"}}}"#,
        )
        .await;
    let o = &patched.body;
    assert!(
        owns(entry(o, "applier", ""), &["f:spec", "f:resourceApplyMode"]),
        "{o}"
    );
    assert!(
        owns(entry(o, "controller", "status"), &["f:status", "f:inSync"]),
        "{o}"
    );
    assert!(
        owns(
            entry(o, "patcher", ""),
            &["f:metadata", "f:labels", "f:team"]
        ),
        "{o}"
    );

    // A client-side apply (kubectl's strategic patch) takes over the field it changes and
    // keeps it through the next status write.
    let csa = app
        .patch(
            &format!("{path}?fieldManager=kubectl-client-side-apply"),
            "application/strategic-merge-patch+json",
            r#"{"spec":{"resourceApplyMode":"Upsert"}}"#,
        )
        .await;
    assert_eq!(csa.status, StatusCode::OK, "{}", csa.body);
    let mut again = csa.body.clone();
    again["status"] = json!({"clusters": 4, "inSync": 4});
    let o = &app
        .put(&format!("{path}/status?fieldManager=controller"), &again)
        .await
        .body;
    let csa_entry = entry(o, "kubectl-client-side-apply", "");
    assert!(owns(csa_entry, &["f:spec", "f:resourceApplyMode"]), "{o}");
    assert!(
        !owns(entry(o, "applier", ""), &["f:spec", "f:resourceApplyMode"]),
        "taken over: {o}"
    );
    assert!(
        owns(
            entry(o, "applier", ""),
            &["f:spec", "f:clusterDeploymentSelector"]
        ),
        "{o}"
    );
    assert!(
        owns(
            entry(o, "patcher", ""),
            &["f:metadata", "f:labels", "f:team"]
        ),
        "{o}"
    );
    assert!(
        owns(
            entry(o, "controller", "status"),
            &["f:status", "f:clusters"]
        ),
        "{o}"
    );
    assert_eq!(
        o["metadata"]["managedFields"].as_array().unwrap().len(),
        4,
        "{o}"
    );
}

per_backend!(
    discovery_and_version,
    crud_and_status_errors,
    lists_select_and_page,
    patches,
    server_side_apply,
    finalizers_and_namespaces,
    status_subresource_and_dry_run,
    field_validation,
    custom_resource_definitions,
    seed_cluster_registration,
    logical_clusters,
    secrets,
    like_kube_apiserver,
    managed_fields_survive_other_writers,
);
