//! Server-side apply scenarios, following the worked examples of structured-merge-diff.

use serde_json::json;

use super::*;
use crate::registry::Registry;

fn configmap_schemas(r: &Registry) -> (std::sync::Arc<crate::registry::KindInfo>, Schema) {
    let cm = r.kinds("").get("", "v1", "configmaps").unwrap().clone();
    (cm, r.meta_schema().clone())
}

fn writer<'a>(manager: &'a str, ignored: &'a FieldSet) -> Writer<'a> {
    Writer {
        manager,
        api_version: "v1",
        subresource: "",
        now: "2024-05-01T10:00:00Z",
        ignored,
    }
}

#[test]
fn configmap_apply_update_conflict_force_prune() {
    let r = Registry::new();
    let (cm, meta) = configmap_schemas(&r);
    let s = Schemas {
        root: &cm.schema,
        meta: &meta,
    };
    let none = FieldSet::new();
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "labels": {"app": "web"}},
        "data": {"key": "v1", "other": "x"}
    });
    let live = json!({});
    let (obj, managers) = apply(
        &live,
        &config,
        Managers::default(),
        &s,
        writer("kubectl", &none),
        false,
    )
    .unwrap();
    let mut encoded = obj.clone();
    managers.clone().encode_into(&mut encoded);
    assert_eq!(
        encoded["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-05-01T10:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:key": {}, "f:other": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}}])
    );

    // kubectl edit changes data.key and adds data.extra.
    let mut edited = obj.clone();
    edited["data"]["key"] = json!("v2");
    edited["data"]["extra"] = json!("y");
    let mut m2 = managers.clone();
    track_update(&mut m2, &obj, &edited, &s, writer("kubectl-edit", &none));
    let mut enc = edited.clone();
    m2.clone().encode_into(&mut enc);
    let mf = &enc["metadata"]["managedFields"];
    assert_eq!(
        mf[0]["fieldsV1"],
        json!({"f:data": {"f:other": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
    assert_eq!(mf[1]["manager"], "kubectl-edit");
    assert_eq!(
        mf[1]["fieldsV1"],
        json!({"f:data": {"f:extra": {}, "f:key": {}}})
    );

    // Re-applying the original value conflicts with kubectl-edit.
    let err = apply(
        &edited,
        &config,
        m2.clone(),
        &s,
        writer("kubectl", &none),
        false,
    )
    .unwrap_err();
    match err {
        Error::Conflict { message, causes } => {
            assert_eq!(
                message,
                "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.key"
            );
            assert_eq!(
                causes,
                vec![(
                    "FieldManagerConflict".to_string(),
                    "conflict with \"kubectl-edit\" using v1".to_string(),
                    ".data.key".to_string()
                )]
            );
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    // Applying the value kubectl-edit set is no conflict: ownership is shared.
    let mut same = config.clone();
    same["data"]["key"] = json!("v2");
    assert!(
        apply(
            &edited,
            &same,
            m2.clone(),
            &s,
            writer("kubectl", &none),
            false
        )
        .is_ok()
    );

    // Force takes the field over; kubectl-edit keeps data.extra.
    let (forced, m3) = apply(&edited, &config, m2, &s, writer("kubectl", &none), true).unwrap();
    assert_eq!(forced["data"]["key"], "v1");
    let edit = m3.0.iter().find(|e| e.manager == "kubectl-edit").unwrap();
    assert_eq!(edit.set.to_fields_v1(), json!({"f:data": {"f:extra": {}}}));

    // Dropping `other` from the config deletes it: nobody else owns it.
    let mut smaller = config.clone();
    smaller["data"].as_object_mut().unwrap().remove("other");
    let (pruned, _) = apply(&forced, &smaller, m3, &s, writer("kubectl", &none), false).unwrap();
    assert_eq!(pruned["data"], json!({"key": "v1", "extra": "y"}));
}

#[test]
fn fields_owned_by_others_survive_pruning() {
    let r = Registry::new();
    let (cm, meta) = configmap_schemas(&r);
    let s = Schemas {
        root: &cm.schema,
        meta: &meta,
    };
    let none = FieldSet::new();
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"shared": "1", "mine": "2"}});
    let (obj, m) = apply(
        &json!({}),
        &a,
        Managers::default(),
        &s,
        writer("a", &none),
        false,
    )
    .unwrap();
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"shared": "1"}});
    let (obj, m) = apply(&obj, &b, m, &s, writer("b", &none), false).unwrap();
    let empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}});
    let (obj, m) = apply(&obj, &empty, m, &s, writer("a", &none), false).unwrap();
    assert_eq!(obj["data"], json!({"shared": "1"}));
    let (obj, _) = apply(&obj, &empty, m, &s, writer("b", &none), false).unwrap();
    assert!(obj.get("data").is_none(), "{obj}");
}

#[test]
fn associative_lists_and_sets() {
    let root = Schema::compile(&json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"app": {"type": "string"}}},
                "containers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "image": {"type": "string"},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                            "items": {"type": "object", "properties": {"containerPort": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}}
                    }}}
            }}
        }
    }))
    .unwrap();
    let (_, meta) = crate::builtin::object_meta_schema();
    let s = Schemas {
        root: &root,
        meta: &meta,
    };
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "finalizers": ["example.com/fin"]},
        "spec": {"replicas": 3, "selector": {"app": "nginx"},
            "containers": [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
    });
    let set = to_field_set(&config, &s)
        .unwrap()
        .difference(&stripped_fields());
    assert_eq!(
        set.to_fields_v1(),
        json!({"f:metadata": {"f:finalizers": {"v:\"example.com/fin\"": {}}},
               "f:spec": {"f:replicas": {}, "f:selector": {},
                 "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                   "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}})
    );
    // A second applier adds a sidecar; the first applier's containers stay put.
    let none = FieldSet::new();
    let w = |m| Writer {
        manager: m,
        api_version: "apps/v1",
        subresource: "",
        now: "t",
        ignored: &none,
    };
    let (obj, m) = apply(&json!({}), &config, Managers::default(), &s, w("a"), false).unwrap();
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}});
    let (obj, m) = apply(&obj, &sidecar, m, &s, w("b"), false).unwrap();
    let names: Vec<_> = obj["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("nginx"), json!("sidecar")]);
    // The first applier dropping its container removes only its own item.
    let mut without = config.clone();
    without["spec"]["containers"] = json!([]);
    let (obj, _) = apply(&obj, &without, m, &s, w("a"), false).unwrap();
    let names: Vec<_> = obj["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("sidecar")]);
}

#[test]
fn unknown_fields_are_rejected_and_preserved_fields_are_granular() {
    let root = Schema::compile(&json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"known": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}))
    .unwrap();
    let (_, meta) = crate::builtin::object_meta_schema();
    let s = Schemas {
        root: &root,
        meta: &meta,
    };
    let err = to_field_set(&json!({"spec": {"nope": 1}}), &s).unwrap_err();
    assert_eq!(err.to_string(), ".spec.nope: field not declared in schema");
    let set = to_field_set(&json!({"spec": {"free": {"a": {"b": 1}, "l": [1, 2]}}}), &s).unwrap();
    assert_eq!(
        set.to_fields_v1(),
        json!({"f:spec": {"f:free": {"f:a": {".": {}, "f:b": {}}, "f:l": {}}}})
    );
}

#[test]
fn update_on_create_marks_new_maps() {
    let r = Registry::new();
    let (cm, meta) = configmap_schemas(&r);
    let s = Schemas {
        root: &cm.schema,
        meta: &meta,
    };
    let none = FieldSet::new();
    let created = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"key": "v"}});
    let mut m = Managers::default();
    track_update(
        &mut m,
        &json!({}),
        &created,
        &s,
        writer("kubectl-create", &none),
    );
    assert_eq!(
        m.0[0].set.to_fields_v1(),
        json!({"f:data": {".": {}, "f:key": {}}})
    );
}

#[test]
fn caps_update_managers() {
    let r = Registry::new();
    let (cm, meta) = configmap_schemas(&r);
    let s = Schemas {
        root: &cm.schema,
        meta: &meta,
    };
    let none = FieldSet::new();
    let mut m = Managers::default();
    let mut obj = json!({"data": {}});
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        let name = format!("m{i:02}");
        let now = format!("2024-01-01T00:00:{i:02}Z");
        track_update(
            &mut m,
            &obj,
            &next,
            &s,
            Writer {
                manager: &name,
                api_version: "v1",
                subresource: "",
                now: &now,
                ignored: &none,
            },
        );
        obj = next;
    }
    assert_eq!(m.0.len(), 10);
    assert!(m.0.iter().any(|e| e.manager == "ancient-changes"));
}
