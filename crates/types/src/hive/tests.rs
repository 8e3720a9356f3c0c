//! Conformance of the generated Hive schemas with Hive's own CRDs.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

fn reference(name: &str) -> Value {
    let path = format!(
        "{}/testdata/hive-crds/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap()
}

fn ours(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(crd).unwrap()
}

/// Compares two schemas node by node. `opaque` subtrees of ours (preserving unknown fields,
/// no properties) stand for whatever Hive declares below them.
fn compare(path: &str, theirs: &Value, ours: &Value, errors: &mut Vec<String>) {
    let ours_opaque = ours.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && ours.get("properties").is_none()
        && ours.get("items").is_none();
    for key in [
        "type",
        "format",
        "enum",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-embedded-resource",
        "pattern",
    ] {
        if ours_opaque && key != "type" {
            continue;
        }
        if theirs.get(key) != ours.get(key) {
            errors.push(format!(
                "{path}: {key} differs: hive {:?}, ours {:?}",
                theirs.get(key),
                ours.get(key)
            ));
        }
    }
    if ours_opaque {
        return;
    }
    let required = |v: &Value| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if required(theirs) != required(ours) {
        errors.push(format!(
            "{path}: required differs: hive {:?}, ours {:?}",
            required(theirs),
            required(ours)
        ));
    }
    let props = |v: &Value| v.get("properties").and_then(Value::as_object).cloned();
    match (props(theirs), props(ours)) {
        (Some(t), Some(o)) => {
            for (name, t_child) in &t {
                match o.get(name) {
                    Some(o_child) => compare(&format!("{path}.{name}"), t_child, o_child, errors),
                    None => errors.push(format!("{path}.{name}: missing in ours")),
                }
            }
            for name in o.keys() {
                if !t.contains_key(name) {
                    errors.push(format!("{path}.{name}: not in hive's schema"));
                }
            }
        }
        (Some(_), None) => errors.push(format!("{path}: hive declares properties, ours none")),
        (None, Some(_)) => errors.push(format!("{path}: ours declares properties, hive none")),
        (None, None) => {}
    }
    if let (Some(t), Some(o)) = (theirs.get("items"), ours.get("items")) {
        compare(&format!("{path}[]"), t, o, errors);
    }
    if let (Some(t), Some(o)) = (
        theirs.get("additionalProperties"),
        ours.get("additionalProperties"),
    ) {
        compare(&format!("{path}{{}}"), t, o, errors);
    }
}

/// The rollout summary syncsets adds to the (empty) status of Hive's SyncSets and
/// SelectorSyncSets, with printer columns showing it: removed from ours before comparing.
fn strip_rollout_extension(ours: &mut Value) {
    let version = &mut ours["spec"]["versions"][0];
    let columns: Vec<String> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "Clusters",
            "InSync",
            "Failing",
            "Healthy",
            "Degraded",
            "FailingClusters",
            "Rollout",
            "Wave",
            "Age"
        ]
    );
    version
        .as_object_mut()
        .unwrap()
        .remove("additionalPrinterColumns");
    let status = &mut version["schema"]["openAPIV3Schema"]["properties"]["status"];
    let fields: BTreeSet<&str> = status["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "clusters",
            "degraded",
            "failing",
            "failingClusters",
            "healthy",
            "inSync",
            "observedGeneration",
            "progressing",
            "rolloutPhase",
            "rolloutPolicy",
            "rolloutWave",
        ])
    );
    status.as_object_mut().unwrap().remove("properties");
}

/// The health syncsets adds to each set's result in a ClusterSync (fields Hive's clients
/// ignore): removed from ours before comparing.
fn strip_health_extension(ours: &mut Value) {
    let status = &mut ours["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"];
    for list in ["syncSets", "selectorSyncSets"] {
        let result = status[list]["items"]["properties"].as_object_mut().unwrap();
        for field in ["health", "unhealthyResources", "healthTransitionTime"] {
            assert!(result.remove(field).is_some(), "{list}.{field}");
        }
    }
}

fn assert_conforms(kind: &str, file: &str) {
    let theirs = reference(file);
    let mut ours = ours(kind);
    if kind.ends_with("SyncSet") {
        strip_rollout_extension(&mut ours);
    }
    if kind == "ClusterSync" {
        strip_health_extension(&mut ours);
    }
    let spec = |v: &Value, k: &str| v["spec"][k].clone();
    assert_eq!(spec(&theirs, "group"), spec(&ours, "group"), "{kind} group");
    assert_eq!(spec(&theirs, "scope"), spec(&ours, "scope"), "{kind} scope");
    assert_eq!(spec(&theirs, "names"), spec(&ours, "names"), "{kind} names");
    let (tv, ov) = (&theirs["spec"]["versions"][0], &ours["spec"]["versions"][0]);
    assert_eq!(tv["name"], ov["name"], "{kind} version");
    assert_eq!(
        tv["subresources"], ov["subresources"],
        "{kind} subresources"
    );
    assert_eq!(
        tv["additionalPrinterColumns"], ov["additionalPrinterColumns"],
        "{kind} printer columns"
    );
    let mut t_schema = tv["schema"]["openAPIV3Schema"].clone();
    // apiVersion, kind and metadata are added to every kind by the registry.
    for field in ["apiVersion", "kind", "metadata"] {
        t_schema["properties"]
            .as_object_mut()
            .unwrap()
            .remove(field);
    }
    let mut errors = Vec::new();
    compare(
        kind,
        &t_schema,
        &ov["schema"]["openAPIV3Schema"],
        &mut errors,
    );
    assert!(
        errors.is_empty(),
        "{kind} schema differs from Hive's:\n{}",
        errors.join("\n")
    );
}

#[test]
fn syncset_matches_hive() {
    assert_conforms("SyncSet", "hive.openshift.io_syncsets");
}

#[test]
fn selectorsyncset_matches_hive() {
    assert_conforms("SelectorSyncSet", "hive.openshift.io_selectorsyncsets");
}

#[test]
fn clustersync_matches_hive() {
    assert_conforms("ClusterSync", "hiveinternal.openshift.io_clustersyncs");
}

#[test]
fn clusterdeployment_matches_hive() {
    // Hive declares the root as a plain object; ours preserves unknown fields everywhere.
    assert_conforms("ClusterDeployment", "hive.openshift.io_clusterdeployments");
}

#[test]
fn clustersynclease_is_hives() {
    let lease = ours("ClusterSyncLease");
    assert_eq!(lease["spec"]["group"], "hiveinternal.openshift.io");
    assert_eq!(lease["spec"]["scope"], "Namespaced");
    assert_eq!(
        lease["spec"]["names"]["shortNames"],
        serde_json::json!(["csl"])
    );
    let schema = &lease["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        schema["properties"]["spec"]["required"],
        serde_json::json!(["renewTime"])
    );
    assert_eq!(
        schema["properties"]["spec"]["properties"]["renewTime"]["format"],
        "date-time"
    );
}

#[test]
fn typed_values_round_trip() {
    let yaml = r#"
apiVersion: hive.openshift.io/v1
kind: SelectorSyncSet
metadata:
  name: example
spec:
  clusterDeploymentSelector:
    matchLabels:
      cluster-group: prod
  resourceApplyMode: Sync
  resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: cm
      namespace: default
    data:
      a: b
  patches:
  - apiVersion: v1
    kind: ConfigMap
    name: cm
    namespace: default
    patch: '{"data":{"c":"d"}}'
    patchType: merge
"#;
    let sss: SelectorSyncSet = serde_norway::from_str(yaml).unwrap();
    assert_eq!(sss.spec.common.resources.len(), 1);
    assert_eq!(sss.spec.common.resource_apply_mode.as_deref(), Some("Sync"));
    let back = serde_json::to_value(&sss).unwrap();
    assert_eq!(back["spec"]["patches"][0]["patchType"], "merge");
    assert_eq!(
        back["spec"]["clusterDeploymentSelector"]["matchLabels"]["cluster-group"],
        "prod"
    );
}
