//! Whether an object on a cluster is healthy, by the rules kubectl (`rollout status`,
//! `wait`) and Flux use — kstatus (sigs.k8s.io/cli-utils/pkg/kstatus): a status that has
//! not caught up with the object's generation is in progress; Deployments, StatefulSets,
//! DaemonSets and ReplicaSets are healthy once rolled out and available, Jobs once
//! complete, Pods once running and ready (or succeeded), CustomResourceDefinitions once
//! established; any other kind with a `Ready` or `Available` condition once it is `True`
//! (and it fails when a `Stalled` condition is `True`); an object without status is
//! healthy once it exists.

use serde_json::Value;

/// How an object is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Rolled out, available, complete or ready, as its kind goes.
    Healthy,
    /// Not yet: why.
    Progressing(String),
    /// It will not get there by itself: why.
    Failed(String),
}

use Health::{Failed, Healthy, Progressing};

/// Whether objects of a kind have rules of their own (else a `Ready`, `Available` or
/// `Stalled` condition decides, or nothing: healthy).
pub fn has_rules(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "apps" | "extensions",
            "Deployment" | "DaemonSet" | "ReplicaSet"
        ) | ("apps", "StatefulSet")
            | ("batch", "Job")
            | ("", "Pod")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// The health of `object` as a cluster returned it.
pub fn health(object: &Value) -> Health {
    let meta = &object["metadata"];
    if meta["deletionTimestamp"].is_string() {
        return Progressing("being deleted".into());
    }
    let status = &object["status"];
    if let (Some(generation), Some(observed)) = (
        meta["generation"].as_i64(),
        status["observedGeneration"].as_i64(),
    ) && observed < generation
    {
        return Progressing(format!(
            "observed generation {observed} is behind generation {generation}"
        ));
    }
    if let Some(c) = condition(status, "Stalled").filter(|c| c["status"] == "True") {
        return Failed(condition_message(c, "stalled"));
    }
    if let Some(c) = condition(status, "Reconciling").filter(|c| c["status"] == "True") {
        return Progressing(condition_message(c, "reconciling"));
    }
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(g, _)| g);
    match (group, object["kind"].as_str().unwrap_or_default()) {
        ("apps" | "extensions", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps" | "extensions", "DaemonSet") => daemon_set(status),
        ("apps" | "extensions", "ReplicaSet") => replica_set(object),
        ("batch", "Job") => job(object),
        ("", "Pod") => pod(status),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(status),
        _ => generic(status),
    }
}

/// The condition of `type_` in a status.
fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A condition's message, or its reason, or `fallback`.
fn condition_message(c: &Value, fallback: &str) -> String {
    [&c["message"], &c["reason"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|m| !m.is_empty())
        .unwrap_or(fallback)
        .to_string()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn deployment(object: &Value) -> Health {
    let status = &object["status"];
    // Without a progress deadline (math.MaxInt32) the controller sets no Progressing
    // condition: its rollout is judged by the counts alone.
    let mut progressed =
        object["spec"]["progressDeadlineSeconds"].as_i64() == Some(i64::from(i32::MAX));
    let mut available = false;
    if let Some(c) = condition(status, "Progressing") {
        if c["reason"] == "ProgressDeadlineExceeded" {
            return Failed(condition_message(c, "progress deadline exceeded"));
        }
        progressed |= c["status"] == "True" && c["reason"] == "NewReplicaSetAvailable";
    }
    if let Some(c) = condition(status, "Available") {
        available = c["status"] == "True";
    }
    let spec = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let replicas = int(&status["replicas"]);
    let updated = int(&status["updatedReplicas"]);
    let ready = int(&status["readyReplicas"]);
    let avail = int(&status["availableReplicas"]);
    if spec > replicas {
        Progressing(format!("replicas: {replicas}/{spec}"))
    } else if spec > updated {
        Progressing(format!("updated: {updated}/{spec}"))
    } else if replicas > spec {
        Progressing(format!("pending termination: {}", replicas - spec))
    } else if updated > avail {
        Progressing(format!("available: {avail}/{updated}"))
    } else if spec > ready {
        Progressing(format!("ready: {ready}/{spec}"))
    } else if !progressed {
        Progressing("the new ReplicaSet is not available yet".into())
    } else if !available {
        Progressing("the Deployment is not available".into())
    } else {
        Healthy
    }
}

fn stateful_set(object: &Value) -> Health {
    let status = &object["status"];
    let spec = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let replicas = int(&status["replicas"]);
    if spec > replicas {
        return Progressing(format!("replicas: {replicas}/{spec}"));
    }
    if replicas > spec {
        return Progressing(format!("pending termination: {}", replicas - spec));
    }
    let ready = int(&status["readyReplicas"]);
    let current = int(&status["currentReplicas"]);
    let updated = int(&status["updatedReplicas"]);
    let rolling = object["spec"]["updateStrategy"]["type"]
        .as_str()
        .is_none_or(|t| t == "RollingUpdate");
    let partition = object["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0);
    if rolling && partition > 0 {
        // A partitioned rollout is done when the replicas from the partition up are updated.
        let want = (spec - partition).max(0);
        return if updated < want {
            Progressing(format!("updated: {updated}/{want} (partition {partition})"))
        } else if spec > ready {
            Progressing(format!("ready: {ready}/{spec}"))
        } else {
            Healthy
        };
    }
    if spec > ready {
        Progressing(format!("ready: {ready}/{spec}"))
    } else if rolling && spec > updated {
        Progressing(format!("updated: {updated}/{spec}"))
    } else if rolling && spec > current {
        Progressing(format!("current: {current}/{spec}"))
    } else if rolling && status["currentRevision"] != status["updateRevision"] {
        Progressing("the update revision is not current yet".into())
    } else {
        Healthy
    }
}

fn daemon_set(status: &Value) -> Health {
    // A new DaemonSet's status is all zeros until its controller has looked at it.
    if status["observedGeneration"].as_i64().is_none() {
        return Progressing("not observed by its controller yet".into());
    }
    let Some(desired) = status["desiredNumberScheduled"].as_i64() else {
        return Progressing("no pods scheduled yet".into());
    };
    let scheduled = int(&status["currentNumberScheduled"]);
    let updated = int(&status["updatedNumberScheduled"]);
    let available = int(&status["numberAvailable"]);
    let ready = int(&status["numberReady"]);
    if desired > scheduled {
        Progressing(format!("scheduled: {scheduled}/{desired}"))
    } else if desired > updated {
        Progressing(format!("updated: {updated}/{desired}"))
    } else if desired > available {
        Progressing(format!("available: {available}/{desired}"))
    } else if desired > ready {
        Progressing(format!("ready: {ready}/{desired}"))
    } else {
        Healthy
    }
}

fn replica_set(object: &Value) -> Health {
    let status = &object["status"];
    let spec = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let labelled = int(&status["fullyLabeledReplicas"]);
    let available = int(&status["availableReplicas"]);
    let ready = int(&status["readyReplicas"]);
    if spec > labelled {
        Progressing(format!("labelled: {labelled}/{spec}"))
    } else if spec > available {
        Progressing(format!("available: {available}/{spec}"))
    } else if spec > ready {
        Progressing(format!("ready: {ready}/{spec}"))
    } else {
        Healthy
    }
}

fn job(object: &Value) -> Health {
    let status = &object["status"];
    if let Some(c) = condition(status, "Failed").filter(|c| c["status"] == "True") {
        return Failed(condition_message(c, "the Job failed"));
    }
    if condition(status, "Complete").is_some_and(|c| c["status"] == "True") {
        return Healthy;
    }
    if object["spec"]["suspend"] == true {
        return Progressing("suspended".into());
    }
    let completions = object["spec"]["completions"].as_i64().unwrap_or(1);
    Progressing(format!(
        "succeeded: {}/{completions}",
        int(&status["succeeded"])
    ))
}

fn pod(status: &Value) -> Health {
    match status["phase"].as_str().unwrap_or_default() {
        "Succeeded" => Healthy,
        "Failed" => Failed(
            status["message"]
                .as_str()
                .or(status["reason"].as_str())
                .unwrap_or("the Pod failed")
                .to_string(),
        ),
        "Running" if condition(status, "Ready").is_some_and(|c| c["status"] == "True") => Healthy,
        phase => {
            let waiting = status["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|c| c["state"]["waiting"]["reason"].as_str());
            if waiting == Some("CrashLoopBackOff") {
                return Failed("a container is crash-looping (CrashLoopBackOff)".into());
            }
            Progressing(match waiting {
                Some(reason) => format!("a container is waiting: {reason}"),
                None if phase.is_empty() => "not scheduled yet".into(),
                None => format!("{phase}, not ready"),
            })
        }
    }
}

fn crd(status: &Value) -> Health {
    if let Some(c) = condition(status, "NamesAccepted").filter(|c| c["status"] == "False") {
        return Failed(condition_message(c, "names not accepted"));
    }
    match condition(status, "Established") {
        Some(c) if c["status"] == "True" => Healthy,
        Some(c) if c["status"] == "False" && c["reason"] != "Installing" => {
            Failed(condition_message(c, "not established"))
        }
        _ => Progressing("not established yet".into()),
    }
}

fn generic(status: &Value) -> Health {
    for type_ in ["Ready", "Available"] {
        if let Some(c) = condition(status, type_) {
            return if c["status"] == "True" {
                Healthy
            } else {
                Progressing(format!("{type_}: {}", condition_message(c, "not yet")))
            };
        }
    }
    Healthy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_with(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "generation": 2}, "spec": {"replicas": 3},
               "status": status})
    }

    #[test]
    fn a_deployment_is_healthy_once_rolled_out_and_available() {
        let rolled_out = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
        assert_eq!(health(&deployment_with(rolled_out.clone())), Healthy);
        // Applied, not yet observed.
        let mut behind = rolled_out.clone();
        behind["observedGeneration"] = json!(1);
        assert!(
            matches!(health(&deployment_with(behind)), Progressing(m) if m.contains("generation"))
        );
        // Rolling.
        let mut rolling = rolled_out.clone();
        rolling["updatedReplicas"] = json!(1);
        assert_eq!(
            health(&deployment_with(rolling)),
            Progressing("updated: 1/3".into())
        );
        let mut unavailable = rolled_out.clone();
        unavailable["availableReplicas"] = json!(2);
        unavailable["readyReplicas"] = json!(2);
        assert_eq!(
            health(&deployment_with(unavailable)),
            Progressing("available: 2/3".into())
        );
        // No status yet: nothing has rolled out.
        assert!(matches!(
            health(&deployment_with(Value::Null)),
            Progressing(_)
        ));
        // Without a progress deadline there is no Progressing condition: the counts decide.
        let mut no_deadline = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [{"type": "Available", "status": "True"}]}));
        assert!(matches!(health(&no_deadline), Progressing(_)));
        no_deadline["spec"]["progressDeadlineSeconds"] = json!(2147483647);
        assert_eq!(health(&no_deadline), Healthy);
        // Stuck: what fleet-sim's never-ready Deployment says, as a real one would.
        let stuck = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "unavailableReplicas": 3, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"d-1\" has timed out progressing."}]});
        assert_eq!(
            health(&deployment_with(stuck)),
            Failed("ReplicaSet \"d-1\" has timed out progressing.".into())
        );
    }

    #[test]
    fn statefulsets_daemonsets_and_replicasets_roll_out() {
        let sts = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
                   "spec": {"replicas": 2}, "status": status})
        };
        let done = json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
            "currentReplicas": 2, "updatedReplicas": 2, "currentRevision": "s-1",
            "updateRevision": "s-1"});
        assert_eq!(health(&sts(done.clone())), Healthy);
        let mut updating = done.clone();
        updating["updateRevision"] = json!("s-2");
        assert!(matches!(health(&sts(updating)), Progressing(_)));
        let mut partitioned = sts(done.clone());
        partitioned["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        partitioned["status"]["updatedReplicas"] = json!(1);
        partitioned["status"]["updateRevision"] = json!("s-2");
        assert_eq!(health(&partitioned), Healthy);

        let ds = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1},
                   "status": status})
        };
        assert!(matches!(health(&ds(json!({}))), Progressing(_)));
        // As created: zeros everywhere, nothing observed yet.
        let zeros = json!({"desiredNumberScheduled": 0, "currentNumberScheduled": 0,
            "updatedNumberScheduled": 0, "numberReady": 0, "numberMisscheduled": 0});
        assert!(matches!(health(&ds(zeros)), Progressing(_)));
        let ready = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3,
            "numberReady": 3});
        assert_eq!(health(&ds(ready.clone())), Healthy);
        let mut unready = ready;
        unready["numberAvailable"] = json!(0);
        assert_eq!(health(&ds(unready)), Progressing("available: 0/3".into()));

        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"replicas": 2},
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "availableReplicas": 1,
                       "readyReplicas": 1}});
        assert_eq!(health(&rs), Progressing("available: 1/2".into()));
    }

    #[test]
    fn jobs_pods_and_crds() {
        let job = |status: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {}, "status": status});
        assert_eq!(
            health(&job(
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
            )),
            Healthy
        );
        assert_eq!(
            health(&job(json!({"active": 1}))),
            Progressing("succeeded: 0/1".into())
        );
        assert_eq!(
            health(&job(
                json!({"conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
            )),
            Failed("Job has reached the specified backoff limit".into())
        );

        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "status": status});
        assert_eq!(
            health(&pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Healthy
        );
        assert_eq!(health(&pod(json!({"phase": "Succeeded"}))), Healthy);
        assert_eq!(
            health(&pod(json!({"phase": "Pending", "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}))),
            Progressing("a container is waiting: ImagePullBackOff".into())
        );
        assert!(matches!(
            health(&pod(json!({"phase": "Running", "containerStatuses": [
                {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))),
            Failed(_)
        ));

        let crd = |status: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "status": status})
        };
        assert_eq!(
            health(&crd(
                json!({"conditions": [{"type": "Established", "status": "True"}]})
            )),
            Healthy
        );
        assert!(matches!(health(&crd(json!({}))), Progressing(_)));
        assert!(matches!(
            health(&crd(
                json!({"conditions": [{"type": "Established", "status": "False", "reason": "Installing"}]})
            )),
            Progressing(_)
        ));
        assert!(matches!(
            health(&crd(
                json!({"conditions": [{"type": "Established", "status": "False", "reason": "NotAccepted"}]})
            )),
            Failed(_)
        ));
        assert!(matches!(
            health(&crd(json!({"conditions": [{"type": "NamesAccepted", "status": "False",
                "reason": "ListKindConflict"}]}))),
            Failed(m) if m == "ListKindConflict"
        ));
    }

    #[test]
    fn other_kinds_go_by_ready_available_stalled_or_nothing() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "data": {"k": "v"}});
        assert_eq!(health(&cm), Healthy);
        let custom = |conditions: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Database",
                   "metadata": {"generation": 3}, "status": {"observedGeneration": 3,
                   "conditions": conditions}})
        };
        assert_eq!(
            health(&custom(json!([{"type": "Ready", "status": "True"}]))),
            Healthy
        );
        assert_eq!(
            health(&custom(
                json!([{"type": "Ready", "status": "False", "message": "provisioning"}])
            )),
            Progressing("Ready: provisioning".into())
        );
        assert_eq!(
            health(&custom(json!([{"type": "Available", "status": "Unknown"}]))),
            Progressing("Available: not yet".into())
        );
        assert_eq!(
            health(&custom(
                json!([{"type": "Stalled", "status": "True", "reason": "QuotaExceeded"}])
            )),
            Failed("QuotaExceeded".into())
        );
        let mut deleting = cm;
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(matches!(health(&deleting), Progressing(_)));
    }
}
