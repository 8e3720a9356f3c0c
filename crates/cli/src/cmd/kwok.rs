//! What a simulated cluster's controllers and kubelets report, as KWOK simulates them
//! without running anything: Deployments, StatefulSets, DaemonSets and ReplicaSets have
//! their replicas ready and available, Jobs complete, Pods run, a while after each change
//! (`fleet-sim --ready-after`).
//!
//! An object annotated `fleet.syncsets.io/never-ready: "true"` never becomes ready: its
//! status says so as a stuck rollout's would (a Deployment's Progressing condition turns
//! False with ProgressDeadlineExceeded, a Job stays active), for testing failure paths.
//!
//! The simulator follows the member server's change feed and writes status through the
//! member's own API (`PUT …/status`), as a cluster's controllers do; the hub never runs it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use syncsets_bus::Bus;
use syncsets_bus::follow::{Followed, follow};
use syncsets_store::{ChangeEvent, EventType, Store};

/// The annotation that keeps an object from ever becoming ready.
pub const NEVER_READY: &str = "fleet.syncsets.io/never-ready";

/// Nodes of a simulated cluster: what a DaemonSet's pods are scheduled on.
pub const NODES: i64 = 3;

/// The workload kinds simulated, by store resource, with their API path.
const WORKLOADS: &[(&str, &str, &str)] = &[
    ("deployments.apps", "apis/apps/v1", "deployments"),
    ("statefulsets.apps", "apis/apps/v1", "statefulsets"),
    ("daemonsets.apps", "apis/apps/v1", "daemonsets"),
    ("replicasets.apps", "apis/apps/v1", "replicasets"),
    ("jobs.batch", "apis/batch/v1", "jobs"),
    ("pods", "api/v1", "pods"),
];

/// Starts simulating the workloads of every cluster of a member server, whose API is at
/// `server`.
pub async fn start(
    store: Arc<dyn Store>,
    bus: &dyn Bus,
    server: String,
    ready_after: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let start = store.watermark().await?;
    let feed = bus.subscribe();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let opener = store.clone();
    Ok(tokio::spawn(async move {
        follow(store, feed, start, |followed| {
            let Followed::Event(event) = followed else {
                return;
            };
            if !WORKLOADS.iter().any(|(r, _, _)| *r == event.key.resource) {
                return;
            }
            let Ok(event) = opener.open_event(event) else {
                return;
            };
            if let Some((path, object)) = update(&event, jiff::Timestamp::now()) {
                let (client, url) = (client.clone(), format!("{server}{path}"));
                tokio::spawn(async move {
                    tokio::time::sleep(ready_after).await;
                    // A conflict means a newer version, whose own event comes; a 404, that
                    // the object is gone.
                    if let Err(e) = client.put(&url).json(&object).send().await {
                        tracing::debug!(url, error = %e, "simulated status not written");
                    }
                });
            }
        })
        .await;
    }))
}

/// The status write a change calls for, if any: its path and the object with its status.
fn update(event: &ChangeEvent, now: jiff::Timestamp) -> Option<(String, Value)> {
    if event.kind == EventType::Deleted {
        return None;
    }
    let key = &event.key;
    let (_, prefix, plural) = WORKLOADS.iter().find(|(r, _, _)| *r == key.resource)?;
    let object = &event.object;
    if object["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    let status = status(plural, object, now)?;
    if object["status"] == status {
        return None;
    }
    let mut written = object.clone();
    written["status"] = status;
    let path = format!(
        "/clusters/{}/{prefix}/namespaces/{}/{plural}/{}/status",
        key.cluster, key.namespace, key.name
    );
    Some((path, written))
}

/// The status a cluster would report for `object`, if it reports one yet; the same
/// status again once reported (so that a status written is not written again).
fn status(plural: &str, object: &Value, now: jiff::Timestamp) -> Option<Value> {
    let meta = &object["metadata"];
    let never = meta["annotations"][NEVER_READY].as_str() == Some("true");
    let generation = meta["generation"].as_i64().unwrap_or(1);
    let spec = &object["spec"];
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let name = meta["name"].as_str().unwrap_or_default();
    // Conditions keep their transition times while their status stays.
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        let old = object["status"]["conditions"].as_array().and_then(|c| {
            c.iter()
                .find(|c| c["type"] == type_ && c["status"] == status)
        });
        let at = old
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| now.to_string(), str::to_string);
        let mut c = json!({"type": type_, "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": at});
        if matches!(plural, "deployments") {
            c["lastUpdateTime"] = json!(at);
        }
        if plural == "pods" {
            c.as_object_mut().map(|c| c.remove("reason"));
            c.as_object_mut().map(|c| c.remove("message"));
        }
        c
    };
    let ready = if never { 0 } else { replicas };
    let status = match plural {
        "deployments" => {
            let replica_set = format!("{name}-{}", template_hash(spec));
            let conditions = if never {
                vec![
                    condition(
                        "Available",
                        "False",
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.".into(),
                    ),
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{replica_set}\" has timed out progressing."),
                    ),
                ]
            } else {
                vec![
                    condition(
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.".into(),
                    ),
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{replica_set}\" has successfully progressed."),
                    ),
                ]
            };
            let mut s = json!({"observedGeneration": generation, "replicas": replicas,
                               "updatedReplicas": replicas, "conditions": conditions});
            counts(
                &mut s,
                &[
                    ("readyReplicas", ready),
                    ("availableReplicas", ready),
                    ("unavailableReplicas", replicas - ready),
                ],
            );
            s
        }
        "statefulsets" => {
            let revision = format!("{name}-{}", template_hash(spec));
            let mut s = json!({"observedGeneration": generation, "replicas": replicas,
                               "currentReplicas": replicas, "updatedReplicas": replicas,
                               "currentRevision": revision, "updateRevision": revision,
                               "collisionCount": 0, "availableReplicas": ready});
            counts(&mut s, &[("readyReplicas", ready)]);
            s
        }
        "daemonsets" => {
            let ready = if never { 0 } else { NODES };
            let mut s = json!({"observedGeneration": generation, "desiredNumberScheduled": NODES,
                               "currentNumberScheduled": NODES, "updatedNumberScheduled": NODES,
                               "numberMisscheduled": 0, "numberReady": ready});
            counts(
                &mut s,
                &[
                    ("numberAvailable", ready),
                    ("numberUnavailable", NODES - ready),
                ],
            );
            s
        }
        "replicasets" => {
            let mut s = json!({"observedGeneration": generation, "replicas": replicas,
                               "fullyLabeledReplicas": replicas});
            counts(
                &mut s,
                &[("readyReplicas", ready), ("availableReplicas", ready)],
            );
            s
        }
        "jobs" => {
            if spec["suspend"] == true {
                return None;
            }
            let started = object["status"]["startTime"]
                .as_str()
                .map_or_else(|| now.to_string(), str::to_string);
            if never {
                json!({"startTime": started, "active": spec["parallelism"].as_i64().unwrap_or(1),
                       "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
            } else {
                let done = object["status"]["completionTime"]
                    .as_str()
                    .map_or_else(|| now.to_string(), str::to_string);
                let message = "Reached expected number of succeeded pods".to_string();
                json!({"startTime": started, "completionTime": done,
                "succeeded": spec["completions"].as_i64().unwrap_or(1),
                "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                "conditions": [
                    condition("SuccessCriteriaMet", "True", "CompletionsReached", message.clone()),
                    condition("Complete", "True", "CompletionsReached", message),
                ]})
            }
        }
        "pods" => {
            let started = object["status"]["startTime"]
                .as_str()
                .map_or_else(|| now.to_string(), str::to_string);
            let running = if never { "False" } else { "True" };
            let containers: Vec<Value> = spec["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let state = if never {
                        json!({"waiting": {"reason": "ContainerCreating"}})
                    } else {
                        json!({"running": {"startedAt": started}})
                    };
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": !never,
                           "started": !never, "restartCount": 0, "state": state})
                })
                .collect();
            json!({"phase": if never { "Pending" } else { "Running" },
                   "conditions": [
                       condition("PodScheduled", "True", "", String::new()),
                       condition("Initialized", "True", "", String::new()),
                       condition("ContainersReady", running, "", String::new()),
                       condition("Ready", running, "", String::new()),
                   ],
                   "hostIP": "10.0.0.1", "podIP": "10.244.0.10", "startTime": started,
                   "containerStatuses": containers, "qosClass": "BestEffort"})
        }
        _ => return None,
    };
    Some(status)
}

/// Sets the counts that are not zero (Kubernetes leaves zero counts out).
fn counts(status: &mut Value, fields: &[(&str, i64)]) {
    for (field, n) in fields {
        if *n != 0 {
            status[*field] = json!(n);
        }
    }
}

/// A short hash of a workload's pod template, as its ReplicaSets and revisions are named.
fn template_hash(spec: &Value) -> String {
    let text = spec["template"].to_string();
    let hash = syncsets_bus::stable_hash(text.as_bytes());
    format!("{:x}", hash & 0xff_ffff_ffff)
        .chars()
        .take(10)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> jiff::Timestamp {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    fn deployment(annotations: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "agent", "namespace": "ns", "generation": 2, "annotations": annotations},
               "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}})
    }

    #[test]
    fn a_deployment_becomes_available_and_then_stays() {
        let d = deployment(json!({}));
        let s = status("deployments", &d, at()).unwrap();
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(
            (s["readyReplicas"].as_i64(), s["availableReplicas"].as_i64()),
            (Some(3), Some(3))
        );
        assert!(s.get("unavailableReplicas").is_none());
        assert_eq!(s["conditions"][0]["type"], "Available");
        assert_eq!(s["conditions"][0]["status"], "True");
        // Reported once: the same status later is no new write.
        let mut reported = d.clone();
        reported["status"] = s.clone();
        let later = status(
            "deployments",
            &reported,
            "2026-12-03T11:00:00Z".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(later, s);
    }

    #[test]
    fn never_ready_says_so_as_a_stuck_rollout() {
        let d = deployment(json!({NEVER_READY: "true"}));
        let s = status("deployments", &d, at()).unwrap();
        assert!(s.get("readyReplicas").is_none() && s.get("availableReplicas").is_none());
        assert_eq!(s["unavailableReplicas"], 3);
        let progressing = &s["conditions"][1];
        assert_eq!(
            (
                progressing["status"].as_str(),
                progressing["reason"].as_str()
            ),
            (Some("False"), Some("ProgressDeadlineExceeded"))
        );
        let job =
            json!({"metadata": {"name": "j", "annotations": {NEVER_READY: "true"}}, "spec": {}});
        let s = status("jobs", &job, at()).unwrap();
        assert_eq!(s["active"], 1);
        assert!(s.get("completionTime").is_none());
    }

    #[test]
    fn jobs_complete_and_pods_run() {
        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 2}});
        let s = status("jobs", &job, at()).unwrap();
        assert_eq!(s["succeeded"], 2);
        assert_eq!(s["conditions"][1]["type"], "Complete");
        let suspended = json!({"metadata": {"name": "j"}, "spec": {"suspend": true}});
        assert!(status("jobs", &suspended, at()).is_none());
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let s = status("pods", &pod, at()).unwrap();
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
    }
}
