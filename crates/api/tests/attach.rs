//! Attaching a cluster to a SelectorSyncSet needs the verb `use` on it: a namespace editor
//! cannot make a ClusterDeployment match an administrator's set (creating, relabelling or
//! repointing it, or rewriting the kubeconfig it uses), and `POST /v1/clusters` neither
//! attaches without `use` nor replaces what exists.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKENS: &str = "t-admin,admin,1,system:masters\nt-mallory,mallory,2\n";
const CDS: &str = "/apis/hive.openshift.io/v1/namespaces/team-a/clusterdeployments";
const SECRETS: &str = "/api/v1/namespaces/team-a/secrets";
const MERGE: &str = "application/merge-patch+json";

fn cd(name: &str, labels: Value, secret: &str) -> Value {
    json!({"apiVersion": "hive.openshift.io/v1", "kind": "ClusterDeployment",
           "metadata": {"name": name, "labels": labels},
           "spec": {"clusterName": name, "baseDomain": "example.com", "platform": {}, "installed": true,
                    "clusterMetadata": {"clusterID": "x", "infraID": name,
                                        "adminKubeconfigSecretRef": {"name": secret}}}})
}

fn kubeconfig_secret(name: &str, server: &str) -> Value {
    let kc = syncsets_testkit::kubeconfig(server, Some("t"));
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "stringData": {"kubeconfig": kc}})
}

/// A RoleBinding or ClusterRoleBinding of `role` to mallory.
fn binding(kind: &str, name: &str, role_kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}]})
}

fn as_admin(app: &mut TestApp) {
    app.token = Some("t-admin".into());
}

fn as_mallory(app: &mut TestApp) {
    app.token = Some("t-mallory".into());
}

/// A 403 naming the sets the write would attach to.
#[track_caller]
fn refused(reply: &common::Reply, sets: &[&str]) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"User "mallory" cannot use resource "selectorsyncsets""#),
        "{message}"
    );
    for set in sets {
        assert!(message.contains(&format!("{set:?}")), "{message}");
    }
}

/// Sets a ClusterDeployment's `env` label (merge patch).
async fn relabel(app: &TestApp, name: &str, env: &str) -> common::Reply {
    let patch = json!({"metadata": {"labels": {"env": env}}}).to_string();
    app.patch(&format!("{CDS}/{name}"), MERGE, &patch).await
}

async fn labels_of(app: &TestApp, name: &str) -> Value {
    app.get(&format!("{CDS}/{name}")).await.body["metadata"]["labels"].clone()
}

#[tokio::test]
async fn attaching_a_cluster_to_a_selector_sync_set_needs_use_on_it() {
    let mut app = TestApp::sqlite_as(TOKENS).await;
    as_admin(&mut app);
    let created = |r: common::Reply| assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    created(
        app.post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
        )
        .await,
    );
    created(
        app.post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
            &binding("RoleBinding", "mallory-edit", "ClusterRole", "edit"),
        )
        .await,
    );
    for (name, env) in [("platform", "prod"), ("staging", "staging")] {
        created(app.post("/apis/hive.openshift.io/v1/selectorsyncsets", &json!({
            "apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
            "metadata": {"name": name},
            "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": env}},
                     "secretMappings": [{"sourceRef": {"name": "pull", "namespace": "platform"},
                                         "targetRef": {"name": "pull", "namespace": "kube-system"}}]}})).await);
    }
    // The administrator attaches freely (Hive's YAML as is).
    created(
        app.post(CDS, &cd("prod-1", json!({"env": "prod"}), "prod-1-kc"))
            .await,
    );

    as_mallory(&mut app);
    // Creating a matching ClusterDeployment: refused, nothing stored (dry run alike).
    let r = app
        .post(CDS, &cd("mine", json!({"env": "prod"}), "mine-kc"))
        .await;
    refused(&r, &["platform"]);
    let r = app
        .post(
            &format!("{CDS}?dryRun=All"),
            &cd("mine", json!({"env": "prod"}), "mine-kc"),
        )
        .await;
    refused(&r, &["platform"]);
    assert_eq!(
        app.get(&format!("{CDS}/mine")).await.status,
        StatusCode::NOT_FOUND
    );
    // One matching nothing is the editor's own business.
    created(
        app.post(CDS, &cd("mine", json!({"env": "test"}), "mine-kc"))
            .await,
    );
    created(
        app.post(
            SECRETS,
            &kubeconfig_secret("mine-kc", "https://127.0.0.1:1"),
        )
        .await,
    );
    // Relabelling it into a set, by merge patch, update or server-side apply: refused.
    let r = relabel(&app, "mine", "prod").await;
    refused(&r, &["platform"]);
    let mut current = app.get(&format!("{CDS}/mine")).await.body;
    current["metadata"]["labels"] = json!({"env": "staging"});
    refused(
        &app.put(&format!("{CDS}/mine"), &current).await,
        &["staging"],
    );
    let r = app
        .patch(
            &format!("{CDS}/mine?fieldManager=mallory&force=true"),
            "application/apply-patch+yaml",
            &cd("mine", json!({"env": "prod"}), "mine-kc").to_string(),
        )
        .await;
    refused(&r, &["platform"]);
    assert_eq!(labels_of(&app, "mine").await, json!({"env": "test"}));

    // Taking over a cluster that is attached: its kubeconfig Secret, or its reference.
    refused(
        &app.post(
            SECRETS,
            &kubeconfig_secret("prod-1-kc", "https://127.0.0.1:2"),
        )
        .await,
        &["platform"],
    );
    refused(
        &app.patch(
            &format!("{CDS}/prod-1"),
            MERGE,
            r#"{"spec":{"clusterMetadata":{"adminKubeconfigSecretRef":{"name":"mine-kc"}}}}"#,
        )
        .await,
        &["platform"],
    );
    // An edit that attaches nothing new is allowed.
    let r = app
        .patch(
            &format!("{CDS}/prod-1"),
            MERGE,
            r#"{"metadata":{"labels":{"owner":"team-a"}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Once granted `use` on one set in this namespace, that set (and only it) is open.
    as_admin(&mut app);
    created(
        app.post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles",
            &json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "use-platform"},
        "rules": [{"apiGroups": ["hive.openshift.io"], "resources": ["selectorsyncsets"],
                   "resourceNames": ["platform"], "verbs": ["use"]}]}),
        )
        .await,
    );
    created(
        app.post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
            &binding(
                "RoleBinding",
                "mallory-use-platform",
                "Role",
                "use-platform",
            ),
        )
        .await,
    );
    as_mallory(&mut app);
    // Her kubeconfig Secret was written before the grant: it must be written again.
    let r = relabel(&app, "mine", "prod").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains(r#"its kubeconfig Secret "mine-kc" was written by a user who may not use SelectorSyncSet "platform""#),
        "{message}"
    );
    let r = app
        .put(
            &format!("{SECRETS}/mine-kc"),
            &kubeconfig_secret("mine-kc", "https://127.0.0.1:5"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = relabel(&app, "mine", "prod").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    refused(&relabel(&app, "mine", "staging").await, &["staging"]);
    assert_eq!(usable_of(&app, "mine").await, json!("platform"));

    // Labels set ahead of a set that does not exist yet: the cluster is recorded as usable
    // only for the sets its labeller may use, so a set made later does not attach it.
    let r = app
        .post(CDS, &cd("early", json!({"env": "later"}), "early-kc"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(usable_of(&app, "early").await, json!("platform"));
    // The record is the server's: a user's own value is not taken.
    let forged = json!({"metadata": {"annotations": {USABLE: "later,staging"}}}).to_string();
    let r = app.patch(&format!("{CDS}/early"), MERGE, &forged).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(usable_of(&app, "early").await, json!("platform"));
    // An edit by someone who may use fewer sets keeps the sets the cluster had.
    as_admin(&mut app);
    let r = app
        .delete("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/mallory-use-platform")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    as_mallory(&mut app);
    let r = app
        .patch(
            &format!("{CDS}/mine"),
            MERGE,
            r#"{"metadata":{"labels":{"owner":"mallory"}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(usable_of(&app, "mine").await, json!("platform"));
    // An administrator's relabelling vouches for every set; their edits are taken as is.
    as_admin(&mut app);
    let r = relabel(&app, "early", "prod").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(usable_of(&app, "early").await, Value::Null);

    // A kubeconfig Secret an editor makes ahead of an administrator's ClusterDeployment
    // that names it: that cluster may be attached only to what the editor may use.
    as_mallory(&mut app);
    created(
        app.post(
            SECRETS,
            &kubeconfig_secret("ahead-kc", "https://127.0.0.1:9"),
        )
        .await,
    );
    as_admin(&mut app);
    let r = app
        .post(CDS, &cd("ahead", json!({"env": "prod"}), "ahead-kc"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains(r#"kubeconfig Secret "ahead-kc" was written by a user who may not use SelectorSyncSet "platform""#),
        "{:?}",
        r.body
    );
    // The administrator vouches for the Secret by removing its record.
    let unrecord = json!({"metadata": {"annotations": {USABLE: null}}}).to_string();
    let r = app
        .patch(&format!("{SECRETS}/ahead-kc"), MERGE, &unrecord)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    created(
        app.post(CDS, &cd("ahead", json!({"env": "prod"}), "ahead-kc"))
            .await,
    );
    assert_eq!(usable_of(&app, "ahead").await, Value::Null);
    app.stop().await;
}

const USABLE: &str = "syncsets.io/usable-selectorsyncsets";

/// A ClusterDeployment's record of the sets it may be attached to.
async fn usable_of(app: &TestApp, name: &str) -> Value {
    app.get(&format!("{CDS}/{name}")).await.body["metadata"]["annotations"][USABLE].clone()
}

#[tokio::test]
async fn registration_needs_use_and_never_replaces_what_exists() {
    let mut app = TestApp::sqlite_as(TOKENS).await;
    as_admin(&mut app);
    let kc = |server: &str| {
        kubeconfig_secret("x", server)["stringData"]["kubeconfig"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let register = |name: &str, server: &str, labels: Value| json!({"name": name, "namespace": "fleet", "kubeconfig": kc(server), "labels": labels});
    let r = app.post("/apis/hive.openshift.io/v1/selectorsyncsets", &json!({
        "apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "metadata": {"name": "platform"},
        "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "prod"}}}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Registered, then the same request again: the same cluster, 200.
    let first = register("c1", "https://127.0.0.1:1", json!({"env": "prod"}));
    let r = app.post("/v1/clusters", &first).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for (field, value) in r.body["metadata"].as_object().unwrap() {
        assert!(!value.is_null(), "metadata.{field} is null: {}", r.body);
    }
    let r = app.post("/v1/clusters", &first).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["name"], "c1");
    // Another kubeconfig or other labels for that name: 409, nothing replaced.
    for other in [
        register("c1", "https://127.0.0.1:666", json!({"env": "prod"})),
        register("c1", "https://127.0.0.1:1", json!({"env": "dev"})),
    ] {
        let r = app.post("/v1/clusters", &other).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    }
    let secret = app
        .get("/api/v1/namespaces/fleet/secrets/c1-admin-kubeconfig")
        .await;
    let stored = secret.body["data"]["kubeconfig"].as_str().unwrap();
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .unwrap();
    assert!(String::from_utf8(stored).unwrap().contains("127.0.0.1:1\n"));
    assert_eq!(
        labels_of_cd(&app, "fleet", "c1").await,
        json!({"env": "prod"})
    );
    // A Secret of that name that holds another kubeconfig is not taken over either.
    let r = app
        .post(
            "/api/v1/namespaces/fleet/secrets",
            &kubeconfig_secret("c2-admin-kubeconfig", "https://127.0.0.1:2"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            "/v1/clusters",
            &register("c2", "https://127.0.0.1:3", json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("c2-admin-kubeconfig"),
        "{:?}",
        r.body
    );
    // ...but one holding this very kubeconfig (a registration cut short) is completed.
    let r = app
        .post(
            "/v1/clusters",
            &register("c2", "https://127.0.0.1:2", json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // A registrant allowed to POST /v1/clusters must also be allowed to create what it
    // makes, in that namespace, and to use the sets the labels select: else 403, and
    // nothing written, not even the namespace.
    let registrar = |rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "registrar"}, "rules": rules})
    };
    let post_only = json!([{"nonResourceURLs": ["/v1/clusters"], "verbs": ["post"]}]);
    let r = app
        .post(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &registrar(post_only.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &binding(
                "ClusterRoleBinding",
                "registrar",
                "ClusterRole",
                "registrar",
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    as_mallory(&mut app);
    let mut theirs = register("m1", "https://127.0.0.1:4", json!({"env": "prod"}));
    theirs["namespace"] = json!("mallory-ns");
    let r = app.post("/v1/clusters", &theirs).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains(r#"User "mallory" cannot create resource "namespaces""#),
        "{:?}",
        r.body
    );
    as_admin(&mut app);
    let mut creator = post_only.as_array().unwrap().clone();
    creator.push(
        json!({"apiGroups": ["", "hive.openshift.io"], "verbs": ["create"],
                        "resources": ["namespaces", "secrets", "clusterdeployments"]}),
    );
    let r = app
        .put(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/registrar",
            &registrar(Value::Array(creator)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    as_mallory(&mut app);
    refused(&app.post("/v1/clusters", &theirs).await, &["platform"]);
    as_admin(&mut app);
    assert_eq!(
        app.get("/api/v1/namespaces/mallory-ns").await.status,
        StatusCode::NOT_FOUND
    );
    // A cluster they may register is recorded as theirs: its ClusterDeployment and its
    // kubeconfig Secret both name the sets they may use (none).
    as_mallory(&mut app);
    let mut theirs = register("m2", "https://127.0.0.1:4", json!({"env": "test"}));
    theirs["namespace"] = json!("mallory-ns");
    let r = app.post("/v1/clusters", &theirs).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    as_admin(&mut app);
    for path in [
        "/apis/hive.openshift.io/v1/namespaces/mallory-ns/clusterdeployments/m2",
        "/api/v1/namespaces/mallory-ns/secrets/m2-admin-kubeconfig",
    ] {
        let annotations = app.get(path).await.body["metadata"]["annotations"].clone();
        assert_eq!(annotations[USABLE], json!(""), "{path}: {annotations}");
    }
    app.stop().await;
}

async fn labels_of_cd(app: &TestApp, namespace: &str, name: &str) -> Value {
    app.get(&format!(
        "/apis/hive.openshift.io/v1/namespaces/{namespace}/clusterdeployments/{name}"
    ))
    .await
    .body["metadata"]["labels"]
        .clone()
}
