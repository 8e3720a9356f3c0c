//! Planner and status tests: no I/O, builders for clusters, sets and statuses.

use super::fold::failed_condition;
use super::*;
use crate::model::{SetDef, Targets};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use syncsets_types::Selector;
use syncsets_types::hive::{SecretMapping, SecretReference, SyncSetCommonSpec};

fn t(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

fn mk_cluster() -> Cluster {
    Cluster {
        namespace: "fleet".into(),
        name: "c1".into(),
        uid: "u1".into(),
        labels: BTreeMap::from([("region".into(), "eu".into())]),
        installed: true,
        kubeconfig_secret: Some("c1-kc".into()),
        ..Cluster::default()
    }
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": name}})
}

fn mk_set(kind: SetKind, name: &str, resources: Vec<Value>) -> SetDef {
    SetDef {
        kind,
        namespace: if kind == SetKind::SyncSet {
            "fleet".into()
        } else {
            String::new()
        },
        name: name.into(),
        uid: format!("uid-{name}"),
        generation: 1,
        created: None,
        metrics_group: None,
        targets: match kind {
            SetKind::SyncSet => Targets::Refs(vec!["c1".into()]),
            SetKind::SelectorSyncSet => Targets::Selector(Selector::everything()),
        },
        spec: SyncSetCommonSpec {
            resources,
            ..SyncSetCommonSpec::default()
        },
        deleting: false,
        labels: Default::default(),
        asks: Default::default(),
    }
}

fn sync(mut set: SetDef) -> SetDef {
    set.spec.resource_apply_mode = Some("Sync".into());
    set
}

fn cm_ref(name: &str) -> ObjRef {
    ObjRef::of(&cm(name))
}

fn mk_status(name: &str, generation: i64, result: &str, tracked: &[&str]) -> SyncStatus {
    SyncStatus {
        name: name.into(),
        observed_generation: generation,
        resources_to_delete: tracked.iter().map(|n| cm_ref(n).to_status()).collect(),
        result: result.into(),
        failure_message: (result != "Success").then(|| "boom".into()),
        last_transition_time: t(0),
        first_success_time: Some(t(0)),
        health: None,
        unhealthy_resources: Vec::new(),
        health_transition_time: None,
    }
}

fn previous(ss: Vec<SyncStatus>, sss: Vec<SyncStatus>) -> ClusterSyncStatus {
    ClusterSyncStatus {
        sync_sets: ss,
        selector_sync_sets: sss,
        ..ClusterSyncStatus::default()
    }
}

fn arc(sets: Vec<SetDef>) -> Vec<Arc<SetDef>> {
    sets.into_iter().map(Arc::new).collect()
}

fn steps(p: &SetPlan) -> &Vec<Step> {
    p.work.as_ref().unwrap().steps.as_ref().unwrap()
}

/// Everything in the plan succeeded.
fn all_ok(plan: &Plan) -> Outcomes {
    Outcomes {
        retired: plan
            .retired
            .iter()
            .map(|_| RetiredOutcome::default())
            .collect(),
        sets: plan
            .sets
            .iter()
            .map(|p| SetOutcome {
                applied: p
                    .work
                    .as_ref()
                    .map(|w| w.declared.clone())
                    .unwrap_or_default(),
                ..SetOutcome::default()
            })
            .collect(),
        unreachable: None,
    }
}

#[test]
fn syncsets_come_first_and_each_kind_by_name() {
    let sets = arc(vec![
        mk_set(SetKind::SelectorSyncSet, "a", vec![cm("x")]),
        mk_set(SetKind::SyncSet, "z", vec![cm("y")]),
        mk_set(SetKind::SyncSet, "b", vec![cm("w")]),
    ]);
    let plan = plan(&mk_cluster(), &sets, &Context::default());
    let order: Vec<(SetKind, &str)> = plan
        .sets
        .iter()
        .map(|p| (p.set.kind, p.set.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (SetKind::SyncSet, "b"),
            (SetKind::SyncSet, "z"),
            (SetKind::SelectorSyncSet, "a")
        ]
    );
}

#[test]
fn within_a_set_resources_then_secrets_then_patches_all_labelled() {
    let mut set = mk_set(SetKind::SyncSet, "s", vec![cm("a"), cm("b")]);
    set.spec.secret_mappings = vec![SecretMapping {
        source_ref: SecretReference {
            name: "src".into(),
            namespace: None,
        },
        target_ref: SecretReference {
            name: "dst".into(),
            namespace: Some("default".into()),
        },
    }];
    set.spec.patches = vec![SyncObjectPatch {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "a".into(),
        namespace: Some("default".into()),
        patch: r#"{"data":{"p":"1"}}"#.into(),
        patch_type: Some("merge".into()),
    }];
    let plan = plan(&mk_cluster(), &arc(vec![set]), &Context::default());
    let steps = steps(&plan.sets[0]);
    assert!(matches!(
        &steps[0],
        Step::Resource {
            index: 0,
            rendered: None
        }
    ));
    let first = object_to_apply(&plan.sets[0].set, 0, None);
    assert_eq!(first["metadata"]["labels"][MANAGED_LABEL], "true");
    assert_eq!(first["data"]["k"], "a");
    assert!(matches!(&steps[1], Step::Resource { index: 1, .. }));
    assert!(
        matches!(&steps[2], Step::Secret { index: 0, source: Ok((ns, n)), .. } if ns == "fleet" && n == "src")
    );
    assert!(matches!(
        &steps[3],
        Step::Patch {
            index: 0,
            patch_type: PatchType::Merge,
            ..
        }
    ));
    let declared: Vec<&str> = plan.sets[0]
        .work
        .as_ref()
        .unwrap()
        .declared
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        declared,
        ["a", "b", "dst"],
        "patches are not declared objects"
    );
}

#[test]
fn a_set_applied_at_its_generation_is_left_alone_until_a_full_reapply() {
    let sets = arc(vec![mk_set(SetKind::SyncSet, "s", vec![cm("a")])]);
    let prev = previous(vec![mk_status("s", 1, "Success", &[])], vec![]);
    let quiet = plan(
        &mk_cluster(),
        &sets,
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    assert!(quiet.sets[0].work.is_none());
    assert!(!quiet.has_work());
    let full = plan(
        &mk_cluster(),
        &sets,
        &Context {
            previous: Some(&prev),
            full: true,
            ..Context::default()
        },
    );
    assert!(full.sets[0].work.is_some());

    let failed = previous(vec![mk_status("s", 1, "Failure", &[])], vec![]);
    assert!(
        plan(
            &mk_cluster(),
            &sets,
            &Context {
                previous: Some(&failed),
                ..Context::default()
            }
        )
        .sets[0]
            .work
            .is_some()
    );
    let old_gen = previous(vec![mk_status("s", 0, "Success", &[])], vec![]);
    assert!(
        plan(
            &mk_cluster(),
            &sets,
            &Context {
                previous: Some(&old_gen),
                ..Context::default()
            }
        )
        .sets[0]
            .work
            .is_some()
    );
}

#[test]
fn changed_inputs_reapply_a_set() {
    let mut set = mk_set(SetKind::SelectorSyncSet, "s", vec![cm("a")]);
    set.spec.enable_resource_templates = Some(true);
    let sets = arc(vec![set]);
    let cluster = mk_cluster();
    let prev = previous(vec![], vec![mk_status("s", 1, "Success", &[])]);
    let digest = inputs_digest(&sets[0], &cluster, &BTreeMap::new()).unwrap();
    let applied = BTreeMap::from([("SelectorSyncSet/s".to_string(), digest)]);
    let ctx = Context {
        previous: Some(&prev),
        applied_digests: Some(&applied),
        ..Context::default()
    };
    assert!(
        plan(&cluster, &sets, &ctx).sets[0].work.is_none(),
        "same labels"
    );
    let mut relabelled = cluster.clone();
    relabelled.labels.insert("region".into(), "us".into());
    assert!(
        plan(&relabelled, &sets, &ctx).sets[0].work.is_some(),
        "a label the template reads changed"
    );
    let untemplated = arc(vec![mk_set(SetKind::SelectorSyncSet, "s", vec![cm("a")])]);
    assert!(inputs_digest(&untemplated[0], &cluster, &BTreeMap::new()).is_none());
    assert!(
        plan(&relabelled, &untemplated, &ctx).sets[0].work.is_none(),
        "labels matter to templates only"
    );
}

#[test]
fn templates_render_from_cluster_labels() {
    let mut set = mk_set(
        SetKind::SelectorSyncSet,
        "s",
        vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm-{{ fromCDLabel \"region\" }}"}, "data": {"r": "{{ fromCDLabel \"region\" }}"}})],
    );
    set.spec.enable_resource_templates = Some(true);
    set.spec.enable_patch_templates = Some(true);
    set.spec.patches = vec![SyncObjectPatch {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "x".into(),
        namespace: None,
        patch: r#"{"data":{"r":"{{ fromCDLabel "region" }}"}}"#.into(),
        patch_type: Some("merge".into()),
    }];
    let plan = plan(&mk_cluster(), &arc(vec![set]), &Context::default());
    let steps = steps(&plan.sets[0]);
    assert!(
        matches!(&steps[0], Step::Resource { rendered: Some(object), .. } if object["metadata"]["name"] == "cm-eu" && object["data"]["r"] == "eu")
    );
    assert!(matches!(&steps[1], Step::Patch { patch, .. } if patch == r#"{"data":{"r":"eu"}}"#));
}

#[test]
fn a_decode_or_template_error_fails_the_set_before_anything_is_done() {
    let mut set = sync(mk_set(
        SetKind::SyncSet,
        "s",
        vec![
            cm("a"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        ],
    ));
    set.spec.patches = vec![SyncObjectPatch {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "a".into(),
        namespace: None,
        patch: "{not json".into(),
        patch_type: None,
    }];
    let prev = previous(vec![mk_status("s", 1, "Success", &["old"])], vec![]);
    let plan = plan(
        &mk_cluster(),
        &arc(vec![set]),
        &Context {
            previous: Some(&prev),
            full: true,
            ..Context::default()
        },
    );
    let work = plan.sets[0].work.as_ref().unwrap();
    let err = work.steps.as_ref().unwrap_err();
    assert!(err.starts_with("[failed to decode resource 1: Object 'metadata.name' is missing, failed to apply patch 0:"), "{err}");
    assert!(
        work.removed.is_empty(),
        "nothing is deleted for a set that failed to decode"
    );
    assert!(!plan.has_work());
    let status = fold(&plan, &Outcomes::default(), Some(&prev), 0, &t(10));
    let s = &status.sync_sets[0];
    assert_eq!(s.result, "Failure");
    assert_eq!(
        s.resources_to_delete,
        vec![cm_ref("old").to_status()],
        "still tracked"
    );
}

#[test]
fn sync_mode_deletes_removed_resources_and_tracks_applied_ones() {
    let set = sync(mk_set(SetKind::SyncSet, "s", vec![cm("b"), cm("a")]));
    let prev = previous(vec![mk_status("s", 1, "Success", &["a", "gone"])], vec![]);
    let mut set2 = set.clone();
    set2.generation = 2;
    let plan = plan(
        &mk_cluster(),
        &arc(vec![set2]),
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    assert_eq!(
        plan.sets[0].work.as_ref().unwrap().removed,
        vec![cm_ref("gone")]
    );
    let status = fold(&plan, &all_ok(&plan), Some(&prev), 3, &t(10));
    let s = &status.sync_sets[0];
    assert_eq!(s.result, "Success");
    assert_eq!(s.observed_generation, 2);
    let tracked: Vec<&str> = s
        .resources_to_delete
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(tracked, ["a", "b"], "sorted, the removed one gone");
    assert_eq!(s.last_transition_time, t(10));
    assert_eq!(s.first_success_time, Some(t(0)), "first success is kept");
    assert_eq!(status.controlled_by_replica, Some(3));
}

#[test]
fn a_failed_delete_stays_tracked_and_fails_the_set() {
    let set = sync(mk_set(SetKind::SyncSet, "s", vec![cm("a")]));
    let prev = previous(vec![mk_status("s", 0, "Success", &["a", "gone"])], vec![]);
    let plan = plan(
        &mk_cluster(),
        &arc(vec![set]),
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    let mut outcomes = all_ok(&plan);
    outcomes.sets[0].delete_failures =
        vec![(cm_ref("gone"), "could not delete resource: nope".into())];
    let status = fold(&plan, &outcomes, Some(&prev), 0, &t(10));
    let s = &status.sync_sets[0];
    assert_eq!(s.result, "Failure");
    assert_eq!(
        s.failure_message.as_deref(),
        Some("failed to delete v1, Kind=ConfigMap default/gone: could not delete resource: nope")
    );
    let tracked: Vec<&str> = s
        .resources_to_delete
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(tracked, ["a", "gone"]);
}

#[test]
fn stopping_at_the_first_failure_keeps_unreached_objects_tracked() {
    let set = sync(mk_set(
        SetKind::SyncSet,
        "s",
        vec![cm("a"), cm("b"), cm("c")],
    ));
    let prev = previous(vec![mk_status("s", 0, "Success", &["a", "b", "c"])], vec![]);
    let plan = plan(
        &mk_cluster(),
        &arc(vec![set]),
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    let outcomes = Outcomes {
        sets: vec![SetOutcome {
            applied: vec![cm_ref("a")],
            failure: Some("failed to apply resource 1: denied".into()),
            ..SetOutcome::default()
        }],
        ..Outcomes::default()
    };
    let status = fold(&plan, &outcomes, Some(&prev), 0, &t(10));
    let s = &status.sync_sets[0];
    assert_eq!(
        s.failure_message.as_deref(),
        Some("failed to apply resource 1: denied")
    );
    assert_eq!(s.resources_to_delete.len(), 3);
    let c = &status.conditions[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("Failure"))
    );
    assert_eq!(c.message.as_deref(), Some("SyncSet s is failing"));
}

#[test]
fn sets_that_no_longer_apply_have_their_objects_deleted_then_are_forgotten() {
    let prev = previous(
        vec![
            mk_status("old-sync", 1, "Success", &["x"]),
            mk_status("old-upsert", 1, "Success", &[]),
        ],
        vec![mk_status("gone", 1, "Success", &["y", "kept"])],
    );
    let sets = arc(vec![mk_set(
        SetKind::SelectorSyncSet,
        "new",
        vec![cm("kept")],
    )]);
    let plan = plan(
        &mk_cluster(),
        &sets,
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    let retired: Vec<(&str, Vec<&str>)> = plan
        .retired
        .iter()
        .map(|r| {
            (
                r.old.name.as_str(),
                r.delete.iter().map(|d| d.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        retired,
        [
            ("old-sync", vec!["x"]),
            ("old-upsert", vec![]),
            ("gone", vec!["y"])
        ],
        "an object another set declares now moved, and is not deleted"
    );
    let mut outcomes = all_ok(&plan);
    outcomes.retired[2].delete_failures =
        vec![(cm_ref("y"), "could not delete resource: timeout".into())];
    let status = fold(&plan, &outcomes, Some(&prev), 0, &t(10));
    assert!(status.sync_sets.is_empty(), "deleted sets are forgotten");
    let names: Vec<&str> = status
        .selector_sync_sets
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["gone", "new"],
        "a failed deletion keeps its set, Failure"
    );
    assert_eq!(status.selector_sync_sets[0].result, "Failure");
    assert_eq!(
        status.conditions[0].message.as_deref(),
        Some("SelectorSyncSet gone is failing")
    );
}

#[test]
fn switching_sync_to_upsert_orphans_the_tracked_objects() {
    let set = mk_set(SetKind::SyncSet, "s", vec![cm("a")]);
    let prev = previous(vec![mk_status("s", 0, "Success", &["a", "b"])], vec![]);
    let plan = plan(
        &mk_cluster(),
        &arc(vec![set]),
        &Context {
            previous: Some(&prev),
            ..Context::default()
        },
    );
    assert!(plan.sets[0].work.as_ref().unwrap().removed.is_empty());
    let status = fold(&plan, &all_ok(&plan), Some(&prev), 0, &t(10));
    assert!(status.sync_sets[0].resources_to_delete.is_empty());
}

#[test]
fn an_unchanged_status_keeps_its_timestamps() {
    let sets = arc(vec![sync(mk_set(
        SetKind::SyncSet,
        "s",
        vec![cm("b"), cm("a")],
    ))]);
    let first = plan(&mk_cluster(), &sets, &Context::default());
    let s1 = fold(&first, &all_ok(&first), None, 0, &t(10));
    assert_eq!(s1.sync_sets[0].first_success_time, Some(t(10)));
    assert_eq!(s1.first_success_time, Some(t(10)));
    let again = plan(
        &mk_cluster(),
        &sets,
        &Context {
            previous: Some(&s1),
            full: true,
            ..Context::default()
        },
    );
    let s2 = fold(&again, &all_ok(&again), Some(&s1), 0, &t(20));
    assert_eq!(
        s2, s1,
        "a full reapply that changes nothing changes no field"
    );
}

#[test]
fn condition_messages_are_hives() {
    let status = |ss: &[&str], sss: &[&str]| {
        let mk = |names: &[&str]| {
            names
                .iter()
                .map(|n| mk_status(n, 1, "Failure", &[]))
                .collect::<Vec<_>>()
        };
        failed_condition(&mk(ss), &mk(sss), None, None, &t(0))
            .message
            .unwrap()
    };
    assert_eq!(status(&["a"], &[]), "SyncSet a is failing");
    assert_eq!(status(&["a", "b"], &[]), "SyncSets a, b are failing");
    assert_eq!(
        status(&["a"], &["x"]),
        "SyncSet a and SelectorSyncSet x are failing"
    );
    assert_eq!(
        status(&["a", "b"], &["x", "y"]),
        "SyncSets a, b and SelectorSyncSets x, y are failing"
    );
    assert_eq!(
        status(&[], &[]),
        "All SyncSets and SelectorSyncSets have been applied to the cluster"
    );
    let ok = failed_condition(&[], &[], None, None, &t(0));
    assert_eq!(
        (ok.status.as_str(), ok.reason.as_deref()),
        ("False", Some("Success"))
    );
    let same = failed_condition(&[], &[], None, Some(&ok), &t(50));
    assert_eq!(
        same.last_transition_time,
        Some(t(0)),
        "unchanged: timestamps kept"
    );
    let down = failed_condition(
        &[mk_status("a", 1, "Failure", &[])],
        &[],
        Some("connection refused"),
        Some(&ok),
        &t(60),
    );
    assert_eq!(down.reason.as_deref(), Some("Unreachable"));
    assert_eq!(
        down.message.as_deref(),
        Some("SyncSet a is failing: the cluster is unreachable: connection refused")
    );
    assert_eq!(down.last_transition_time, Some(t(60)));
}

#[test]
fn selector_syncset_secrets_need_a_source_namespace() {
    let mut set = mk_set(SetKind::SelectorSyncSet, "s", vec![]);
    set.spec.secret_mappings = vec![SecretMapping {
        source_ref: SecretReference {
            name: "src".into(),
            namespace: None,
        },
        target_ref: SecretReference {
            name: "dst".into(),
            namespace: Some("default".into()),
        },
    }];
    let plan = plan(&mk_cluster(), &arc(vec![set]), &Context::default());
    assert!(
        matches!(&steps(&plan.sets[0])[0], Step::Secret { source: Err(e), .. } if e == "source namespace missing for secret 0")
    );
}
