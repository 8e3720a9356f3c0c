//! SyncSet semantics end to end: a hub with controllers, simulated member clusters, Hive
//! YAML applied with kubectl on the hub and the result checked with kubectl on the members.

mod fleet;

use std::time::Duration;

use fleet::{Fleet, Hub, test_config};
use serde_json::{Value, json};

fn sss(name: &str, selector: &str, mode: &str, resources: &str) -> String {
    format!(
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: {name}\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      {selector}\n  resourceApplyMode: {mode}\n  resources:\n{resources}"
    )
}

fn cm(name: &str, data: &str) -> String {
    format!(
        "  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: {name}\n      namespace: default\n    data:\n      {data}\n"
    )
}

async fn resources_reach_matching_clusters_with_the_managed_label_and_status(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("prod-1", json!({"env": "prod"})).await;
    fleet.register("prod-2", json!({"env": "prod"})).await;
    fleet.register("dev-1", json!({"env": "dev"})).await;
    fleet
        .hub_apply(&sss(
            "baseline",
            "env: prod",
            "Upsert",
            &cm("fleet-settings", "owner: platform"),
        ))
        .await;
    for cluster in ["prod-1", "prod-2"] {
        let status = fleet
            .until_set(cluster, "selectorSyncSets", "baseline", "Success")
            .await;
        assert_eq!(status["observedGeneration"], 1);
        let cm = fleet
            .until_on_member(cluster, &["cm", "fleet-settings", "-n", "default"])
            .await;
        assert_eq!(cm["data"]["owner"], "platform");
        assert_eq!(
            cm["metadata"]["labels"]["hive.openshift.io/managed"],
            "true"
        );
        let cs = fleet.cluster_sync(cluster).await.unwrap();
        let condition = &cs["status"]["conditions"][0];
        assert_eq!(condition["type"], "Failed");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "Success");
        assert_eq!(
            condition["message"],
            "All SyncSets and SelectorSyncSets have been applied to the cluster"
        );
        assert_eq!(cs["status"]["controlledByReplica"], 0);
        assert!(cs["status"]["firstSuccessTime"].is_string());
        assert_eq!(
            cs["metadata"]["ownerReferences"][0]["kind"],
            "ClusterDeployment"
        );
    }
    assert!(
        fleet
            .member_get("dev-1", &["cm", "fleet-settings", "-n", "default"])
            .await
            .is_none()
    );
    let dev = fleet
        .until("dev-1's ClusterSync", || fleet.cluster_sync("dev-1"))
        .await;
    assert!(dev["status"].get("selectorSyncSets").is_none());

    // "Did my rollout land?": the summary and kubectl's columns say so.
    fleet
        .until("the rollout summary", || async {
            let s = fleet
                .hub_get("/apis/hive.openshift.io/v1/selectorsyncsets/baseline")
                .await?;
            (s["status"]["inSync"] == 2).then_some(s)
        })
        .await;
    let (ok, out, _) = fleet.hub_kubectl(&["get", "sss", "baseline"]).await;
    assert!(ok);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CLUSTERS", "INSYNC", "FAILING", "AGE"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["baseline", "2", "2", "0"]);

    // The summary is the controller's: a status written by someone else is put right.
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "patch",
            "sss",
            "baseline",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"clusters":5,"inSync":5}}"#,
        ])
        .await;
    assert!(ok, "{err}");
    fleet
        .until("the summary to be put right", || async {
            let s = fleet
                .hub_get("/apis/hive.openshift.io/v1/selectorsyncsets/baseline")
                .await?;
            (s["status"]["clusters"] == 2 && s["status"]["inSync"] == 2).then_some(())
        })
        .await;
}

async fn sync_mode_deletes_what_is_removed_unmatched_or_deleted(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    let two = format!("{}{}", cm("one", "k: v"), cm("two", "k: v"));
    fleet.hub_apply(&sss("s", "env: prod", "Sync", &two)).await;
    let status = fleet
        .until_set("a", "selectorSyncSets", "s", "Success")
        .await;
    assert_eq!(status["resourcesToDelete"].as_array().unwrap().len(), 2);
    fleet.until_on_member("a", &["cm", "two"]).await;

    // Removed from the set: deleted.
    fleet
        .hub_apply(&sss("s", "env: prod", "Sync", &cm("one", "k: v")))
        .await;
    fleet.until_gone_from_member("a", &["cm", "two"]).await;
    assert!(fleet.member_get("a", &["cm", "one"]).await.is_some());

    // The cluster stops matching: everything it got is deleted, and the set forgotten.
    let (ok, _, err) = fleet
        .hub_kubectl(&["-n", "fleet", "label", "cd", "a", "env=dev", "--overwrite"])
        .await;
    assert!(ok, "{err}");
    fleet.until_gone_from_member("a", &["cm", "one"]).await;
    fleet
        .until("the set leaves the status", || async {
            let cs = fleet.cluster_sync("a").await?;
            cs["status"].get("selectorSyncSets").is_none().then_some(())
        })
        .await;

    // Matching again, then the set is deleted: its objects go too.
    fleet
        .hub_kubectl(&["-n", "fleet", "label", "cd", "a", "env=prod", "--overwrite"])
        .await;
    fleet.until_on_member("a", &["cm", "one"]).await;
    let (ok, _, err) = fleet.hub_kubectl(&["delete", "sss", "s"]).await;
    assert!(ok, "{err}");
    fleet.until_gone_from_member("a", &["cm", "one"]).await;
}

async fn upsert_mode_and_switching_from_sync_leave_objects_in_place(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    let two = format!("{}{}", cm("one", "k: v"), cm("two", "k: v"));
    fleet.hub_apply(&sss("s", "env: prod", "Sync", &two)).await;
    fleet.until_on_member("a", &["cm", "two"]).await;
    // Sync → Upsert, removing "two" at once: it is orphaned, not deleted.
    fleet
        .hub_apply(&sss("s", "env: prod", "Upsert", &cm("one", "k: v")))
        .await;
    fleet
        .until("the tracked list to clear", || async {
            let cs = fleet.cluster_sync("a").await?;
            let s = &cs["status"]["selectorSyncSets"][0];
            (s["observedGeneration"] == 2 && s.get("resourcesToDelete").is_none()).then_some(())
        })
        .await;
    assert!(fleet.member_get("a", &["cm", "two"]).await.is_some());
    // Upsert sets leave their objects behind when deleted.
    fleet.hub_kubectl(&["delete", "sss", "s"]).await;
    fleet
        .until("the set to leave the status", || async {
            let cs = fleet.cluster_sync("a").await?;
            cs["status"].get("selectorSyncSets").is_none().then_some(())
        })
        .await;
    assert!(fleet.member_get("a", &["cm", "one"]).await.is_some());
}

async fn syncsets_with_patches_and_secret_mappings_from_hives_docs(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet
        .register("ClusterName".to_lowercase().as_str(), json!({}))
        .await;
    // The patch target exists on the cluster already.
    let (ok, _, err) = fleet
        .kubectl(
            &fleet.member_kubeconfig("clustername"),
            &[
                "create",
                "configmap",
                "foo",
                "--from-literal=foo=bar",
                "--from-literal=keep=yes",
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    fleet
        .member_kubectl("clustername", &["create", "namespace", "openshift-config"])
        .await;
    // The Group kind is OpenShift's; the member learns it from a CRD.
    let crd = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
      "metadata": {"name": "groups.user.openshift.io"},
      "spec": {"group": "user.openshift.io", "scope": "Cluster", "names": {"plural": "groups", "singular": "group", "kind": "Group", "listKind": "GroupList"},
        "versions": [{"name": "v1", "served": true, "storage": true,
          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;
    let (ok, _, err) = fleet
        .kubectl(
            &fleet.member_kubeconfig("clustername"),
            &["apply", "-f", "-"],
            Some(crd),
        )
        .await;
    assert!(ok, "{err}");
    // The mapped secret on the hub, in the SyncSet's namespace (Hive's example says default).
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "create",
            "secret",
            "generic",
            "ad-bind-password",
            "--from-literal=bindPassword=s3cret",
        ])
        .await;
    assert!(ok, "{err}");
    let doc = std::fs::read_to_string(
        "tests/fixtures/hive/syncset-mygroup-resources-patches-secretmappings.yaml",
    )
    .unwrap()
    .replace("name: ClusterName", "name: clustername")
    .replace(
        "namespace: default\n    targetRef",
        "namespace: fleet\n    targetRef",
    );
    let (ok, _, err) = fleet
        .kubectl(
            &fleet.hub_kubeconfig(),
            &["-n", "fleet", "apply", "-f", "-"],
            Some(&doc),
        )
        .await;
    assert!(ok, "{err}");
    fleet
        .until_set("clustername", "syncSets", "mygroup", "Success")
        .await;
    let group = fleet
        .until_on_member("clustername", &["groups.user.openshift.io", "mygroup"])
        .await;
    assert_eq!(group["users"], json!(["myuser"]));
    let patched = fleet
        .member_get("clustername", &["cm", "foo"])
        .await
        .unwrap();
    assert_eq!(
        patched["data"],
        json!({"foo": "new-bar", "keep": "yes"}),
        "merge patch"
    );
    let secret = fleet
        .member_get(
            "clustername",
            &["secret", "ad-bind-password", "-n", "openshift-config"],
        )
        .await
        .unwrap();
    assert_eq!(secret["data"]["bindPassword"], "czNjcmV0");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["metadata"]["labels"]["hive.openshift.io/managed"],
        "true"
    );

    // Strategic and JSON patches too.
    let patches = r#"apiVersion: hive.openshift.io/v1
kind: SyncSet
metadata:
  name: patches
  namespace: fleet
spec:
  clusterDeploymentRefs:
  - name: clustername
  patches:
  - apiVersion: v1
    kind: ConfigMap
    name: foo
    namespace: default
    patch: '{"data": {"strategic": "yes"}}'
  - apiVersion: v1
    kind: ConfigMap
    name: foo
    namespace: default
    patchType: json
    patch: '[{"op": "remove", "path": "/data/keep"}]'
"#;
    fleet.hub_apply(patches).await;
    fleet
        .until_set("clustername", "syncSets", "patches", "Success")
        .await;
    let patched = fleet
        .member_get("clustername", &["cm", "foo"])
        .await
        .unwrap();
    assert_eq!(
        patched["data"],
        json!({"foo": "new-bar", "strategic": "yes"})
    );

    // A changed source Secret reaches the cluster without waiting for a full reapply.
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "patch",
            "secret",
            "ad-bind-password",
            "-p",
            r#"{"stringData":{"bindPassword":"n3w"}}"#,
        ])
        .await;
    assert!(ok, "{err}");
    fleet
        .until("the new secret on the cluster", || async {
            let s = fleet
                .member_get(
                    "clustername",
                    &["secret", "ad-bind-password", "-n", "openshift-config"],
                )
                .await?;
            (s["data"]["bindPassword"] == "bjN3").then_some(())
        })
        .await;
}

async fn apply_behaviors(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    let set = |behavior: &str, data: &str| {
        format!(
            "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: {}\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: prod\n  applyBehavior: {behavior}\n  resources:\n{}",
            behavior.to_lowercase(),
            cm(&behavior.to_lowercase(), data)
        )
    };
    for behavior in ["Apply", "CreateOnly", "CreateOrUpdate"] {
        fleet
            .hub_apply(&set(behavior, "a: \"1\"\n      b: \"1\""))
            .await;
    }
    for name in ["apply", "createonly", "createorupdate"] {
        fleet
            .until_set("a", "selectorSyncSets", name, "Success")
            .await;
        // Someone edits each object on the cluster.
        let (ok, _, err) = fleet
            .member_kubectl(
                "a",
                &["patch", "cm", name, "-p", r#"{"data":{"foreign":"x"}}"#],
            )
            .await;
        assert!(ok, "{err}");
    }
    // The sets change: b goes, a becomes 2.
    for behavior in ["Apply", "CreateOnly", "CreateOrUpdate"] {
        fleet.hub_apply(&set(behavior, "a: \"2\"")).await;
    }
    for name in ["apply", "createonly", "createorupdate"] {
        fleet
            .until(&format!("{name} at generation 2"), || async {
                let cs = fleet.cluster_sync("a").await?;
                cs["status"]["selectorSyncSets"]
                    .as_array()?
                    .iter()
                    .any(|s| {
                        s["name"] == name
                            && s["observedGeneration"] == 2
                            && s["result"] == "Success"
                    })
                    .then_some(())
            })
            .await;
    }
    let data = |name: &'static str| {
        let fleet = &fleet;
        async move { fleet.member_get("a", &["cm", name]).await.unwrap()["data"].clone() }
    };
    // Apply: what we stop declaring disappears; what others set stays (not ours).
    assert_eq!(data("apply").await, json!({"a": "2", "foreign": "x"}));
    // CreateOnly: left alone once it exists.
    assert_eq!(
        data("createonly").await,
        json!({"a": "1", "b": "1", "foreign": "x"})
    );
    // CreateOrUpdate: declared fields updated, nothing removed.
    assert_eq!(
        data("createorupdate").await,
        json!({"a": "2", "b": "1", "foreign": "x"})
    );
}

async fn templates_read_cluster_labels_and_follow_label_changes(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet
        .register(
            "gcp-1",
            json!({"hive.openshift.io/cluster-platform": "gcp", "env": "prod"}),
        )
        .await;
    fleet
        .member_kubectl("gcp-1", &["create", "namespace", "myns"])
        .await;
    let fragment = std::fs::read_to_string(
        "tests/fixtures/hive/syncset-spec-fragment-enableresourcetemplates-fromcdlabel.yaml",
    )
    .unwrap();
    let body: String = fragment
        .lines()
        .filter(|l| !l.starts_with('#') && *l != "---")
        .map(|l| format!("{l}\n"))
        .collect();
    let doc = format!(
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: templated\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: prod\n{body}"
    );
    fleet.hub_apply(&doc).await;
    fleet
        .until_set("gcp-1", "selectorSyncSets", "templated", "Success")
        .await;
    let cm = fleet
        .member_get("gcp-1", &["cm", "mycm", "-n", "myns"])
        .await
        .unwrap();
    let expected: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string("tests/fixtures/hive/configmap-fromcdlabel-rendered-result.yaml")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cm["data"], expected["data"], "Hive's documented result");
    fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "label",
            "cd",
            "gcp-1",
            "hive.openshift.io/cluster-platform=aws",
            "--overwrite",
        ])
        .await;
    fleet
        .until("the relabelled value", || async {
            let cm = fleet
                .member_get("gcp-1", &["cm", "mycm", "-n", "myns"])
                .await?;
            (cm["data"]["platform"] == "the platform is aws").then_some(())
        })
        .await;
}

async fn a_set_stops_at_its_first_failure_and_says_why(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    let resources = format!(
        "{}  - apiVersion: example.com/v1\n    kind: Widget\n    metadata:\n      name: w\n{}",
        cm("first", "k: v"),
        cm("third", "k: v")
    );
    fleet
        .hub_apply(&sss("broken", "env: prod", "Upsert", &resources))
        .await;
    fleet
        .hub_apply(&sss("fine", "env: prod", "Upsert", &cm("other", "k: v")))
        .await;
    let status = fleet
        .until_set("a", "selectorSyncSets", "broken", "Failure")
        .await;
    let message = status["failureMessage"].as_str().unwrap();
    assert!(
        message.starts_with("failed to apply resource 1: ") && message.contains("example.com/v1"),
        "{message}"
    );
    assert!(
        fleet.member_get("a", &["cm", "first"]).await.is_some(),
        "before the failure"
    );
    assert!(
        fleet.member_get("a", &["cm", "third"]).await.is_none(),
        "after the failure"
    );
    fleet
        .until_set("a", "selectorSyncSets", "fine", "Success")
        .await;
    let cs = fleet.cluster_sync("a").await.unwrap();
    let condition = &cs["status"]["conditions"][0];
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "Failure");
    assert_eq!(condition["message"], "SelectorSyncSet broken is failing");
    let summary = fleet
        .until("the failing summary", || async {
            let s = fleet
                .hub_get("/apis/hive.openshift.io/v1/selectorsyncsets/broken")
                .await?;
            (s["status"]["failing"] == 1).then_some(s)
        })
        .await;
    assert_eq!(summary["status"]["failingClusters"], json!(["fleet/a"]));
}

async fn paused_and_uninstalled_clusters_are_skipped(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("paused", json!({"env": "prod"})).await;
    fleet.register("live", json!({"env": "prod"})).await;
    fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "annotate",
            "cd",
            "paused",
            "hive.openshift.io/syncset-pause=true",
        ])
        .await;
    fleet
        .hub_apply(&sss("s", "env: prod", "Upsert", &cm("x", "k: v")))
        .await;
    fleet
        .until_set("live", "selectorSyncSets", "s", "Success")
        .await;
    // The set is in the controllers' view (live got it): a reconcile of the paused
    // cluster from now on leaves it alone.
    fleet.until_reconciled("paused").await;
    assert!(fleet.member_get("paused", &["cm", "x"]).await.is_none());
    // It may have been reconciled once before the annotation landed, never since.
    let untouched = fleet.cluster_sync("paused").await;
    assert!(
        untouched.is_none_or(|cs| cs["status"].get("selectorSyncSets").is_none()),
        "a paused cluster's status is left alone"
    );
    fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "annotate",
            "cd",
            "paused",
            "hive.openshift.io/syncset-pause-",
        ])
        .await;
    fleet.until_on_member("paused", &["cm", "x"]).await;

    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "patch",
            "cd",
            "live",
            "--type=merge",
            "-p",
            r#"{"spec":{"installed":false}}"#,
        ])
        .await;
    assert!(ok, "{err}");
    fleet
        .hub_apply(&sss("s", "env: prod", "Upsert", &cm("second", "k: v")))
        .await;
    fleet.until_on_member("paused", &["cm", "second"]).await;
    fleet.until_reconciled("live").await;
    assert!(
        fleet.member_get("live", &["cm", "second"]).await.is_none(),
        "not installed: skipped"
    );
}

async fn drift_is_corrected_on_reapply_and_on_request(hub: Hub) {
    let mut config = test_config();
    config.reapply_interval = Duration::from_secs(3);
    let Some(fleet) = Fleet::start(hub, config).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    fleet
        .hub_apply(&sss(
            "s",
            "env: prod",
            "Upsert",
            &cm("guarded", "mode: safe"),
        ))
        .await;
    fleet.until_on_member("a", &["cm", "guarded"]).await;
    let drift = |value: &'static str| {
        let fleet = &fleet;
        async move {
            let patch = format!(r#"{{"data":{{"mode":"{value}"}}}}"#);
            let (ok, _, err) = fleet
                .member_kubectl("a", &["patch", "cm", "guarded", "-p", &patch])
                .await;
            assert!(ok, "{err}");
        }
    };
    let restored = || async {
        let cm = fleet.member_get("a", &["cm", "guarded"]).await?;
        (cm["data"]["mode"] == "safe").then_some(())
    };
    drift("unsafe").await;
    fleet
        .until("the periodic reapply to restore it", restored)
        .await;

    // Asked for now: deleting the lease (what `syncsets resync` does) reapplies at once.
    let mut config = test_config();
    config.reapply_interval = Duration::from_secs(3600);
    drop(fleet);
    let Some(fleet) = Fleet::start(hub, config).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    fleet
        .hub_apply(&sss(
            "s",
            "env: prod",
            "Upsert",
            &cm("guarded", "mode: safe"),
        ))
        .await;
    fleet.until_on_member("a", &["cm", "guarded"]).await;
    fleet
        .until("the lease", || {
            fleet.hub_get(
                "/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncleases/a",
            )
        })
        .await;
    let (ok, _, err) = fleet
        .member_kubectl(
            "a",
            &[
                "patch",
                "cm",
                "guarded",
                "-p",
                r#"{"data":{"mode":"unsafe"}}"#,
            ],
        )
        .await;
    assert!(ok, "{err}");
    fleet.until_reconciled("a").await;
    let cm = fleet.member_get("a", &["cm", "guarded"]).await.unwrap();
    assert_eq!(
        cm["data"]["mode"], "unsafe",
        "nothing reapplies before the interval"
    );
    let (ok, _, err) = fleet
        .hub_kubectl(&["-n", "fleet", "delete", "clustersynclease", "a"])
        .await;
    assert!(ok, "{err}");
    fleet
        .until("the resync to restore it", || async {
            let cm = fleet.member_get("a", &["cm", "guarded"]).await?;
            (cm["data"]["mode"] == "safe").then_some(())
        })
        .await;
}

async fn an_unreachable_cluster_is_reported_and_does_not_hold_up_the_fleet(hub: Hub) {
    // Long enough that the live clusters converge well within the silent cluster's wait.
    let mut config = test_config();
    config.clients.request_timeout = Duration::from_secs(10);
    let Some(fleet) = Fleet::start(hub, config).await else {
        return;
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    fleet
        .register_at("dead", &dead, json!({"env": "prod"}))
        .await;
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    fleet
        .register_at("silent", &silent_url, json!({"env": "prod"}))
        .await;
    for i in 0..5 {
        fleet
            .register(&format!("live-{i}"), json!({"env": "prod"}))
            .await;
    }
    fleet
        .hub_apply(&sss("s", "env: prod", "Upsert", &cm("x", "k: v")))
        .await;
    for i in 0..5 {
        fleet
            .until_set(&format!("live-{i}"), "selectorSyncSets", "s", "Success")
            .await;
    }
    // The fleet did not wait for the silent cluster: it is still waiting for its answer.
    let undecided = fleet.cluster_sync("silent").await.is_none_or(|cs| {
        !cs["status"]["selectorSyncSets"]
            .as_array()
            .is_some_and(|sets| sets.iter().any(|s| s["name"] == "s"))
    });
    assert!(undecided, "the live clusters waited for the silent one");
    let silent_status = fleet
        .until_set("silent", "selectorSyncSets", "s", "Failure")
        .await;
    let message = silent_status["failureMessage"].as_str().unwrap();
    assert!(
        message.contains("no answer within") || message.contains("imed out"),
        "{message}"
    );
    let status = fleet
        .until_set("dead", "selectorSyncSets", "s", "Failure")
        .await;
    let message = status["failureMessage"].as_str().unwrap();
    assert!(message.contains("onnect"), "{message}");
    let cs = fleet.cluster_sync("dead").await.unwrap();
    assert_eq!(cs["status"]["conditions"][0]["reason"], "Unreachable");
    assert!(!message.contains("kubeconfig"), "no credentials are echoed");
    fleet
        .until("the breaker to open", || async {
            fleet
                .controller
                .as_ref()
                .unwrap()
                .reconciler()
                .health
                .unreachable("fleet/dead")
                .then_some(())
        })
        .await;
    // Its failed reconciles went back to the work queue, counted as retries.
    let metrics = syncsets_api::metrics::install().unwrap().render();
    let retries = metrics.lines().find_map(|l| {
        l.strip_prefix(r#"workqueue_retries_total{name="clustersync"} "#)?
            .parse::<f64>()
            .ok()
    });
    assert!(retries.is_some_and(|n| n > 0.0), "retries: {retries:?}");
    // Why, for kubectl describe: Events on its ClusterDeployment.
    let reasons = || async {
        let (ok, out, err) = fleet
            .hub_kubectl(&[
                "-n",
                "fleet",
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=dead",
                "-o",
                "jsonpath={.items[*].reason}",
            ])
            .await;
        assert!(ok, "{err}");
        out
    };
    fleet
        .until("the unreachable cluster's Events", || async {
            let out = reasons().await;
            (out.contains("ClusterUnreachable") && out.contains("CircuitBreakerOpen")).then_some(())
        })
        .await;
    // It answers again (its kubeconfig now reaches a live simulated cluster): the breaker
    // closes, and says so.
    let revived = fleet::kubeconfig(&fleet.cluster_url("dead-revived"));
    let patch = json!({"stringData": {"kubeconfig": revived}}).to_string();
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "patch",
            "secret",
            "dead-admin-kubeconfig",
            "-p",
            &patch,
        ])
        .await;
    assert!(ok, "{err}");
    fleet
        .until("the breaker to close, with an Event", || async {
            reasons()
                .await
                .contains("CircuitBreakerClosed")
                .then_some(())
        })
        .await;
}

async fn a_new_kubeconfig_takes_effect(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    fleet
        .hub_apply(&sss("s", "env: prod", "Upsert", &cm("x", "k: v")))
        .await;
    fleet.until_on_member("a", &["cm", "x"]).await;
    // The cluster moves: its kubeconfig now points at another (simulated) API server.
    let moved = fleet::kubeconfig(&fleet.cluster_url("a-moved"));
    let patch = json!({"stringData": {"kubeconfig": moved}}).to_string();
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "patch",
            "secret",
            "a-admin-kubeconfig",
            "-p",
            &patch,
        ])
        .await;
    assert!(ok, "{err}");
    fleet.until_on_member("a-moved", &["cm", "x"]).await;
}

async fn invalid_sets_are_refused_at_admission_and_nothing_is_stored(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    let bad = r#"apiVersion: hive.openshift.io/v1
kind: SelectorSyncSet
metadata:
  name: bad
spec:
  resourceApplyMode: Replace
  resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      namespace: default
  patches:
  - apiVersion: v1
    kind: ConfigMap
    name: x
    patch: '{}'
    patchType: yaml
"#;
    let (ok, _, err) = fleet
        .kubectl(&fleet.hub_kubeconfig(), &["apply", "-f", "-"], Some(bad))
        .await;
    assert!(!ok);
    assert!(
        err.contains(r#"The SelectorSyncSet "bad" is invalid"#),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.resourceApplyMode: Unsupported value: "Replace""#),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.patches[0].patchType: Unsupported value: "yaml""#),
        "{err}"
    );
    assert!(
        err.contains("spec.resources[0].metadata.name: Required value"),
        "{err}"
    );
    let cross_namespace = r#"apiVersion: hive.openshift.io/v1
kind: SyncSet
metadata:
  name: bad
  namespace: fleet
spec:
  clusterDeploymentRefs:
  - name: a
  secretMappings:
  - sourceRef:
      name: creds
      namespace: kube-system
    targetRef:
      name: creds
      namespace: default
"#;
    let (ok, _, err) = fleet
        .kubectl(
            &fleet.hub_kubeconfig(),
            &["apply", "-f", "-"],
            Some(cross_namespace),
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("source secret reference must be in same namespace as SyncSet"),
        "{err}"
    );
    for (kind, ns) in [("sss", "default"), ("ss", "fleet")] {
        let (ok, _, err) = fleet.hub_kubectl(&["-n", ns, "get", kind, "bad"]).await;
        assert!(!ok && err.contains("NotFound"), "nothing stored: {err}");
    }
}

async fn what_an_earlier_cluster_of_the_same_name_left_is_never_acted_on(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    // On the cluster about to be registered, an object that is not ours.
    let (ok, _, err) = fleet
        .member_kubectl(
            "b",
            &[
                "-n",
                "default",
                "create",
                "configmap",
                "victim",
                "--from-literal=k=v",
            ],
        )
        .await;
    assert!(ok, "{err}");
    // The ClusterSync an earlier ClusterDeployment "b" (another uid, another cluster) left
    // behind: in Sync mode, a set that is gone now tracked a ConfigMap "victim".
    fleet
        .hub_apply(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet\n---\napiVersion: hiveinternal.openshift.io/v1alpha1\nkind: ClusterSync\nmetadata:\n  name: b\n  namespace: fleet\n  ownerReferences:\n  - apiVersion: hive.openshift.io/v1\n    kind: ClusterDeployment\n    name: b\n    uid: 00000000-0000-0000-0000-00000000dead\nspec: {}\n",
        )
        .await;
    let status = json!({"status": {"syncSets": [{
        "name": "gone", "observedGeneration": 1, "result": "Success",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "resourcesToDelete": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "victim"}]}]}});
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "patch",
            "csync",
            "b",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .await;
    assert!(ok, "{err}");

    fleet.register("b", json!({})).await;
    let cd = fleet
        .hub_get("/apis/hive.openshift.io/v1/namespaces/fleet/clusterdeployments/b")
        .await
        .unwrap();
    let uid = cd["metadata"]["uid"].clone();
    // Once b is reconciled, what the other cluster's state named is still there...
    let cs = fleet
        .until("b reconciled", || async {
            let cs = fleet.cluster_sync("b").await?;
            cs["status"]["conditions"].is_array().then_some(cs)
        })
        .await;
    assert!(
        fleet
            .member_get("b", &["-n", "default", "cm", "victim"])
            .await
            .is_some(),
        "{cs}"
    );
    // ...and b's ClusterSync is its own, started afresh.
    assert_eq!(cs["metadata"]["ownerReferences"][0]["uid"], uid, "{cs}");
    assert_eq!(cs["status"]["syncSets"], Value::Null, "{cs}");
}

async fn a_cluster_gets_only_the_selector_sync_sets_recorded_as_usable_for_it(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("a", json!({"env": "prod"})).await;
    fleet.register("b", json!({"env": "prod"})).await;
    fleet.register("c", json!({"env": "prod"})).await;
    // b was labelled, and c's kubeconfig written, by someone who may use only "other"
    // (the API server's records).
    for (kind, name) in [("cd", "b"), ("secret", "c-admin-kubeconfig")] {
        let (ok, _, err) = fleet
            .hub_kubectl(&[
                "-n",
                "fleet",
                "annotate",
                kind,
                name,
                "syncsets.io/usable-selectorsyncsets=other",
            ])
            .await;
        assert!(ok, "{err}");
    }
    fleet
        .hub_apply(&sss(
            "platform",
            "env: prod",
            "Upsert",
            &cm("from-platform", "k: v"),
        ))
        .await;
    fleet
        .hub_apply(&sss(
            "other",
            "env: prod",
            "Upsert",
            &cm("from-other", "k: v"),
        ))
        .await;
    fleet.until_on_member("a", &["cm", "from-platform"]).await;
    fleet.until_on_member("a", &["cm", "from-other"]).await;
    // b and c are reconciled with "other" (as they would have been with "platform", made
    // first)...
    for cluster in ["b", "c"] {
        fleet
            .until_set(cluster, "selectorSyncSets", "other", "Success")
            .await;
        let cs = fleet.cluster_sync(cluster).await.unwrap();
        let sets: Vec<&str> = cs["status"]["selectorSyncSets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(sets, ["other"], "{cs}");
        // ...and hold nothing of "platform".
        assert!(
            fleet
                .member_get(cluster, &["cm", "from-platform"])
                .await
                .is_none()
        );
    }
}

/// Each test on both hubs: SQLite with the in-process bus (the embedded default), and
/// PostgreSQL with RabbitMQ (the scaled-out form).
macro_rules! on_every_hub {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Hub::Sqlite).await;
                }
            )*
        }
        mod postgres_rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Hub::PostgresRabbitmq).await;
                }
            )*
        }
    };
}

on_every_hub!(
    resources_reach_matching_clusters_with_the_managed_label_and_status,
    sync_mode_deletes_what_is_removed_unmatched_or_deleted,
    upsert_mode_and_switching_from_sync_leave_objects_in_place,
    syncsets_with_patches_and_secret_mappings_from_hives_docs,
    apply_behaviors,
    templates_read_cluster_labels_and_follow_label_changes,
    a_set_stops_at_its_first_failure_and_says_why,
    paused_and_uninstalled_clusters_are_skipped,
    drift_is_corrected_on_reapply_and_on_request,
    an_unreachable_cluster_is_reported_and_does_not_hold_up_the_fleet,
    a_new_kubeconfig_takes_effect,
    invalid_sets_are_refused_at_admission_and_nothing_is_stored,
    what_an_earlier_cluster_of_the_same_name_left_is_never_acted_on,
    a_cluster_gets_only_the_selector_sync_sets_recorded_as_usable_for_it,
    plan_says_what_applying_then_does_and_changes_nothing,
    plan_never_writes_and_follows_the_reconcile_in_its_corners,
);

/// `syncsets plan <args>` against the fleet's hub: (success, stdout, stderr).
fn plan(fleet: &Fleet, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncsets"))
        .arg("plan")
        .args(args)
        .arg("--kubeconfig")
        .arg(fleet.hub_kubeconfig())
        .args(["--timeout", "2s"])
        .env("SYNCSETS_LOG", "warn")
        .output()
        .expect("syncsets runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The objects of the `platform` set on a cluster: `Kind/name` → resourceVersion.
async fn platform_objects(
    fleet: &Fleet,
    cluster: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut objects = std::collections::BTreeMap::new();
    let cms = fleet
        .member_get(cluster, &["-n", "platform", "configmaps"])
        .await
        .unwrap();
    let ns = fleet.member_get(cluster, &["namespace", "platform"]).await;
    for o in cms["items"].as_array().unwrap().iter().chain(ns.as_ref()) {
        let name = o["metadata"]["name"].as_str().unwrap();
        if name == "kube-root-ca.crt" {
            continue;
        }
        objects.insert(
            format!("{}/{name}", o["kind"].as_str().unwrap()),
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    objects
}

/// What `syncsets plan` says a change would do, per cluster, is what applying it then does;
/// planning changes nothing on the hub or on any cluster; clusters that cannot be asked
/// are said to be, grouped; a set the hub would refuse is refused.
async fn plan_says_what_applying_then_does_and_changes_nothing(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    for c in ["prod-1", "prod-2", "prod-3"] {
        fleet.register(c, json!({"env": "prod"})).await;
    }
    fleet.register("dev-1", json!({"env": "dev"})).await;
    // Nothing listens on port 1.
    fleet
        .register_at("gone-1", "http://127.0.0.1:1", json!({"env": "prod"}))
        .await;
    let set = |mode: &str, last: &str| {
        format!(
            "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: platform\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: prod\n  resourceApplyMode: Sync\n  resources:\n  - apiVersion: v1\n    kind: Namespace\n    metadata:\n      name: platform\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: settings\n      namespace: platform\n    data:\n      mode: {mode}\n      size: \"3\"\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: {last}\n      namespace: platform\n    data:\n      x: \"1\"\n"
        )
    };
    fleet.hub_apply(&set("a", "old")).await;
    for c in ["prod-1", "prod-2", "prod-3"] {
        fleet
            .until_set(c, "selectorSyncSets", "platform", "Success")
            .await;
    }
    // Someone deleted the settings on prod-2.
    let (ok, _, err) = fleet
        .member_kubectl("prod-2", &["-n", "platform", "delete", "cm", "settings"])
        .await;
    assert!(ok, "{err}");

    // The stored set against what clusters hold now: only prod-2 differs.
    let (ok, out, err) = plan(&fleet, &["sss/platform"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("Plan for SelectorSyncSet/platform (stored, generation 1): 4 clusters;"),
        "{out}"
    );
    for line in [
        "2 clusters: no change\n",
        "1 cluster:  create ConfigMap platform/settings\n",
        "1 cluster:  could not be asked: unreachable\n",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }

    // A change: one value changes, one object is replaced by another (Sync mode).
    let file = fleet.dir.path().join("platform-v2.yaml");
    std::fs::write(&file, set("b", "new")).unwrap();
    let hub_before = fleet
        .hub_get("/apis/hive.openshift.io/v1/selectorsyncsets/platform")
        .await
        .unwrap();
    let syncs_before = fleet
        .hub_get("/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncs")
        .await
        .unwrap();
    let mut before = std::collections::BTreeMap::new();
    for c in ["prod-1", "prod-2", "prod-3"] {
        before.insert(c, platform_objects(&fleet, c).await);
    }
    let (ok, out, err) = plan(&fleet, &["-f", file.to_str().unwrap(), "-o", "json"]);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let (ok, text, err) = plan(&fleet, &["-f", file.to_str().unwrap(), "--detail"]);
    assert!(ok, "{text}{err}");
    let expected_text = [
        "Plan for SelectorSyncSet/platform (as given, not stored): 4 clusters; server-side dry run, nothing was changed.",
        "  2 clusters: delete ConfigMap platform/old",
        "              change ConfigMap platform/settings: .data.mode",
        "              create ConfigMap platform/new",
        "                fleet/prod-1 fleet/prod-3",
        "  1 cluster:  delete ConfigMap platform/old",
        "              create ConfigMap platform/settings",
        "              create ConfigMap platform/new",
        "                fleet/prod-2",
        "  1 cluster:  could not be asked: unreachable",
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > expected_text.len(), "{text}");
    assert_eq!(lines[..expected_text.len()], expected_text, "{text}");
    assert!(
        lines[expected_text.len()].starts_with("                fleet/gone-1: unreachable: "),
        "{text}"
    );

    // Nothing changed, on the hub or on the clusters.
    assert_eq!(
        fleet
            .hub_get("/apis/hive.openshift.io/v1/selectorsyncsets/platform")
            .await
            .unwrap()["metadata"],
        hub_before["metadata"]
    );
    // (The unreachable cluster's is rewritten as the controllers retry it.)
    let versions = |list: &Value| -> Vec<(String, String)> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|cs| cs["metadata"]["name"] != "gone-1")
            .map(|cs| {
                (
                    cs["metadata"]["name"].as_str().unwrap().to_string(),
                    cs["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        versions(
            &fleet
                .hub_get("/apis/hiveinternal.openshift.io/v1alpha1/namespaces/fleet/clustersyncs")
                .await
                .unwrap()
        ),
        versions(&syncs_before)
    );
    for c in ["prod-1", "prod-2", "prod-3"] {
        assert_eq!(platform_objects(&fleet, c).await, before[c], "{c}");
    }

    // Apply it; each cluster then changes exactly as planned.
    fleet.hub_apply(&set("b", "new")).await;
    for c in ["prod-1", "prod-2", "prod-3"] {
        fleet
            .until(&format!("{c} at generation 2"), || async {
                let cs = fleet.cluster_sync(c).await?;
                cs["status"]["selectorSyncSets"]
                    .as_array()?
                    .iter()
                    .any(|s| s["observedGeneration"] == 2 && s["result"] == "Success")
                    .then_some(())
            })
            .await;
    }
    for planned in report["clusters"].as_array().unwrap() {
        let cluster = planned["cluster"].as_str().unwrap();
        if cluster == "fleet/gone-1" {
            assert_eq!(planned["outcome"], "NotAsked", "{planned}");
            continue;
        }
        let c = cluster.strip_prefix("fleet/").unwrap();
        let after = platform_objects(&fleet, c).await;
        let mut done: Vec<(String, String)> = Vec::new();
        for (object, rv) in &before[c] {
            match after.get(object) {
                None => done.push(("delete".into(), object.clone())),
                Some(now) if now != rv => done.push(("change".into(), object.clone())),
                Some(_) => {}
            }
        }
        for object in after.keys().filter(|o| !before[c].contains_key(*o)) {
            done.push(("create".into(), object.clone()));
        }
        let mut said: Vec<(String, String)> = planned["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ch| {
                (
                    ch["action"].as_str().unwrap().to_string(),
                    format!(
                        "{}/{}",
                        ch["kind"].as_str().unwrap(),
                        ch["name"].as_str().unwrap()
                    ),
                )
            })
            .collect();
        done.sort();
        said.sort();
        assert_eq!(done, said, "{cluster}: done vs planned");
        assert_eq!(
            planned["unchanged"].as_u64().unwrap() as usize,
            after.len() - said.iter().filter(|(a, _)| a != "delete").count(),
            "{cluster}: {planned}"
        );
    }

    // A set the hub would refuse is refused, with the hub's reasons.
    let bad = fleet.dir.path().join("bad.yaml");
    std::fs::write(&bad, set("b", "new").replace("Sync\n", "Sometimes\n")).unwrap();
    let (ok, out, err) = plan(&fleet, &["-f", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("resourceApplyMode"), "{out}{err}");
    let (ok, _, err) = plan(&fleet, &["sss/nonesuch"]);
    assert!(!ok && err.contains("\"nonesuch\" not found"), "{err}");
}

/// The harder cases of `syncsets plan`: a patch whose target's name holds `#` (never a
/// write: the name is one path segment), objects in a namespace the set creates (a
/// resource and a copied Secret), a patch of an object the set creates, an object another
/// set also declares (kept, not deleted), and the cluster's objects left as they were.
async fn plan_never_writes_and_follows_the_reconcile_in_its_corners(hub: Hub) {
    let Some(fleet) = Fleet::start(hub, test_config()).await else {
        return;
    };
    fleet.register("c1", json!({"env": "prod"})).await;
    let cm = |name: &str, ns: &str, v: &str| {
        format!(
            "  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: {name}\n      namespace: {ns}\n    data:\n      v: \"{v}\"\n"
        )
    };
    let sss = |name: &str, body: &str| {
        format!(
            "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: {name}\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      env: prod\n  resourceApplyMode: Sync\n{body}"
        )
    };
    fleet
        .hub_apply(&sss(
            "a",
            &format!(
                "  resources:\n{}{}",
                cm("shared", "default", "1"),
                cm("live", "default", "1")
            ),
        ))
        .await;
    fleet
        .hub_apply(&sss(
            "b",
            &format!("  resources:\n{}", cm("shared", "default", "1")),
        ))
        .await;
    fleet
        .until_set("c1", "selectorSyncSets", "a", "Success")
        .await;
    fleet
        .until_set("c1", "selectorSyncSets", "b", "Success")
        .await;
    let (ok, _, err) = fleet
        .hub_kubectl(&[
            "-n",
            "fleet",
            "create",
            "secret",
            "generic",
            "src",
            "--from-literal=k=v",
        ])
        .await;
    assert!(ok, "{err}");
    let live = fleet
        .member_get("c1", &["-n", "default", "cm", "live"])
        .await
        .unwrap();

    // A new set: a namespace with a ConfigMap, a copied Secret and a patch in it, and a
    // patch of "live#".
    let new = sss(
        "new",
        &format!(
            "  resources:\n  - apiVersion: v1\n    kind: Namespace\n    metadata:\n      name: made\n{}  secretMappings:\n  - sourceRef:\n      name: src\n      namespace: fleet\n    targetRef:\n      name: copy\n      namespace: made\n  patches:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: inside\n    namespace: made\n    patch: '{{\"data\":{{\"p\":\"1\"}}}}'\n    patchType: merge\n  - apiVersion: v1\n    kind: ConfigMap\n    name: 'live#'\n    namespace: default\n    patch: '{{\"data\":{{\"v\":\"2\"}}}}'\n    patchType: merge\n",
            cm("inside", "made", "1")
        ),
    );
    let file = fleet.dir.path().join("new.yaml");
    std::fs::write(&file, &new).unwrap();
    let (ok, out, err) = plan(&fleet, &["-f", file.to_str().unwrap(), "-o", "json"]);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let c1 = &report["clusters"][0];
    assert_eq!(c1["cluster"], "fleet/c1", "{report}");
    assert_eq!(c1["outcome"], "Fail", "{report}");
    let changes: Vec<String> = c1["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}/{}",
                c["action"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "create Namespace/made",
            "create ConfigMap/inside",
            "create Secret/copy"
        ],
        "{report}"
    );
    let reason = c1["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("failed to apply patch 1: 404") && reason.contains("live#"),
        "{reason}"
    );
    assert_eq!(
        fleet
            .member_get("c1", &["-n", "default", "cm", "live"])
            .await
            .unwrap(),
        live,
        "the patch of live# did not touch live"
    );
    assert!(
        fleet
            .member_get("c1", &["namespace", "made"])
            .await
            .is_none()
    );

    // Set a without "shared": b declares it too, so nothing is deleted.
    let file = fleet.dir.path().join("a.yaml");
    std::fs::write(
        &file,
        sss(
            "a",
            &format!("  resources:\n{}", cm("live", "default", "1")),
        ),
    )
    .unwrap();
    let (ok, out, err) = plan(&fleet, &["-f", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("  1 cluster:  no change\n"), "{out}");
    // Without b, it would be.
    let (ok, _, err) = fleet.hub_kubectl(&["delete", "sss", "b"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = plan(&fleet, &["-f", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("  1 cluster:  delete ConfigMap default/shared\n"),
        "{out}"
    );
}
