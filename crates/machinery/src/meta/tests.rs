use serde_json::json;

use super::*;
use crate::registry::Registry;

fn ctx<'a>(
    r: &'a Registry,
    kind: &'a KindInfo,
    fv: FieldValidation,
    status: bool,
) -> WriteContext<'a> {
    WriteContext {
        kind,
        meta_schema: r.meta_schema(),
        namespace: Some("default"),
        now: "2024-01-01T00:00:00Z",
        field_validation: fv,
        ownership: Ownership::Update("test".into()),
        status,
    }
}

#[test]
fn create_sets_system_fields_and_ownership() {
    let r = Registry::new();
    let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"generateName": "cfg-", "resourceVersion": "9", "uid": "x"},
        "data": {"a": "b"}});
    let out = admit_create(&ctx(&r, &cm, FieldValidation::Strict, false), obj, &[]).unwrap();
    let meta = &out.object["metadata"];
    assert!(meta["name"].as_str().unwrap().starts_with("cfg-"));
    assert_eq!(meta["name"].as_str().unwrap().len(), 9);
    assert_eq!(meta["namespace"], "default");
    assert_ne!(meta["uid"], "x");
    assert!(meta.get("resourceVersion").is_none());
    assert!(
        meta.get("generation").is_none(),
        "ConfigMaps have no generation"
    );
    assert_eq!(meta["managedFields"][0]["manager"], "test");
    assert_eq!(
        meta["managedFields"][0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:generateName": {}}})
    );
}

#[test]
fn field_validation_modes() {
    let r = Registry::new();
    let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "spec": {"x": 1}});
    let err = admit_create(
        &ctx(&r, &cm, FieldValidation::Strict, false),
        obj.clone(),
        &["data.k".into()],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\", duplicate field \"data.k\""
    );
    let out = admit_create(
        &ctx(&r, &cm, FieldValidation::Warn, false),
        obj.clone(),
        &[],
    )
    .unwrap();
    assert_eq!(out.warnings, vec!["unknown field \"spec\""]);
    assert!(out.object.get("spec").is_none());
    let out = admit_create(&ctx(&r, &cm, FieldValidation::Ignore, false), obj, &[]).unwrap();
    assert!(out.warnings.is_empty());
}

#[test]
fn invalid_objects_report_causes() {
    let r = Registry::new();
    let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Foo", "labels": {"a b": "c"}}, "data": {"k": 5}});
    match admit_create(&ctx(&r, &cm, FieldValidation::Strict, false), obj, &[]).unwrap_err() {
        Error::Invalid(errs) => {
            let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
            assert!(
                msgs[0].starts_with(
                    "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain"
                ),
                "{msgs:?}"
            );
            assert!(
                msgs.iter()
                    .any(|m| m.starts_with("metadata.labels: Invalid value: \"a b\""))
            );
            assert!(msgs.iter().any(|m| m == "data[k]: Invalid value: \"integer\": data[k] in body must be of type string: \"integer\""), "{msgs:?}");
        }
        other => panic!("{other:?}"),
    }
    let wrong = json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "a"}});
    assert!(matches!(
        admit_create(&ctx(&r, &cm, FieldValidation::Strict, false), wrong, &[]),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn update_rules_for_crd_kinds() {
    let r = Registry::new();
    let ss = r
        .kinds("")
        .get("hive.openshift.io", "v1", "syncsets")
        .unwrap()
        .clone();
    let c = ctx(&r, &ss, FieldValidation::Strict, false);
    let created = admit_create(
        &c,
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "SyncSet", "metadata": {"name": "s"},
               "spec": {"clusterDeploymentRefs": [{"name": "a"}]}, "status": {}}),
        &[],
    )
    .unwrap()
    .object;
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created.get("status").is_none(),
        "status is dropped on create"
    );
    // Metadata-only change: generation stays.
    let mut labelled = created.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let out = admit_update(&c, labelled, &created, &[]).unwrap().object;
    assert_eq!(out["metadata"]["generation"], 1);
    // Spec change: generation bumps; uid and creationTimestamp cannot be changed.
    let mut changed = out.clone();
    changed["spec"]["clusterDeploymentRefs"] = json!([{"name": "b"}]);
    changed["metadata"]["creationTimestamp"] = json!("1999-01-01T00:00:00Z");
    let out2 = admit_update(&c, changed, &out, &[]).unwrap().object;
    assert_eq!(out2["metadata"]["generation"], 2);
    assert_eq!(
        out2["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    // Status through the main resource is ignored; through /status only status changes.
    let mut with_status = out2.clone();
    with_status["status"] = json!({});
    with_status["spec"]["clusterDeploymentRefs"] = json!([{"name": "c"}]);
    let s = ctx(&r, &ss, FieldValidation::Strict, true);
    let out3 = admit_update(&s, with_status, &out2, &[]).unwrap().object;
    assert_eq!(out3["spec"], out2["spec"]);
    assert_eq!(out3["status"], json!({}));
    assert_eq!(out3["metadata"]["generation"], 2);
}

#[test]
fn finalizers_during_deletion() {
    let r = Registry::new();
    let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
    let c = ctx(&r, &cm, FieldValidation::Strict, false);
    let mut obj = admit_create(&c, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "finalizers": ["example.com/x"]}}), &[]).unwrap().object;
    mark_deleting(&mut obj, "2024-01-01T00:00:01Z", false);
    assert!(!should_finalize(&obj));
    let mut more = obj.clone();
    more["metadata"]["finalizers"] = json!(["example.com/x", "example.com/y"]);
    assert!(matches!(
        admit_update(&c, more, &obj, &[]),
        Err(Error::Invalid(_))
    ));
    let mut fewer = obj.clone();
    fewer["metadata"]["finalizers"] = json!([]);
    let out = admit_update(&c, fewer, &obj, &[]).unwrap().object;
    assert!(should_finalize(&out));
    assert_eq!(out["metadata"]["deletionTimestamp"], "2024-01-01T00:00:01Z");
    let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "finalizers": ["nope"]}});
    assert!(matches!(admit_create(&c, bad, &[]), Err(Error::Invalid(_))));
}

#[test]
fn a_create_is_named_from_generate_name_before_admission_and_keeps_that_name() {
    let mut named = json!({"metadata": {"name": "kept", "generateName": "cfg-"}});
    assert_eq!(name_for_create(&mut named), "kept");
    assert_eq!(named["metadata"]["name"], "kept");
    let mut generated = json!({"metadata": {"generateName": "cfg-"}});
    let name = name_for_create(&mut generated);
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    assert_eq!(generated["metadata"]["name"], name.as_str());
    for mut nameless in [json!({"metadata": {}}), json!({"metadata": "x"}), json!([])] {
        assert_eq!(name_for_create(&mut nameless), "");
    }
}

/// An object stored before a default existed (an older version wrote it): its next write,
/// of labels or of status, is no change of its spec, as kube-apiserver defaults what it
/// reads from storage.
#[test]
fn defaults_added_since_an_object_was_stored_are_no_change_of_its_spec() {
    let r = Registry::new();
    let deploy = r
        .kinds("")
        .get("apps", "v1", "deployments")
        .unwrap()
        .clone();
    let c = ctx(&r, &deploy, FieldValidation::Strict, false);
    let created = admit_create(
        &c,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
                   "metadata": {"labels": {"app": "d"}},
                   "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}),
        &[],
    )
    .unwrap()
    .object;
    // As an older version stored it: without the pull policy it now defaults.
    let mut stored = created.clone();
    let container = &mut stored["spec"]["template"]["spec"]["containers"][0];
    container.as_object_mut().unwrap().remove("imagePullPolicy");
    let mut labelled = stored.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let out = admit_update(&c, labelled, &stored, &[]).unwrap().object;
    assert_eq!(
        out["metadata"]["generation"], 1,
        "a label is no new generation"
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let s = ctx(&r, &deploy, FieldValidation::Strict, true);
    let mut with_status = stored.clone();
    with_status["status"] = json!({"replicas": 1});
    let out = admit_update(&s, with_status, &stored, &[]).unwrap().object;
    assert_eq!(
        out["metadata"]["generation"], 1,
        "a status write is no new generation"
    );
}

#[test]
fn a_service_is_named_as_a_dns_1035_label() {
    let r = Registry::new();
    let service = crate::builtin::kinds()
        .into_iter()
        .find(|k| k.kind == "Service")
        .unwrap();
    let named = |name: &str| {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}]}});
        admit_create(&ctx(&r, &service, FieldValidation::Strict, false), obj, &[])
    };
    assert!(named("web-1").is_ok());
    let err = named("1web").unwrap_err().to_string();
    assert!(
        err.contains("metadata.name: Invalid value: \"1web\": a DNS-1035 label must"),
        "{err}"
    );
}
