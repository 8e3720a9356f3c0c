//! Kubernetes Events (core/v1) about clusters and sets, so that `kubectl describe cd X`
//! and `kubectl describe sss Y` say why a cluster fails.
//!
//! Recorded on transitions only — a set starts failing on a cluster or fails differently,
//! recovers, a cluster's circuit breaker opens or closes — never on every reconcile, and
//! beside the reconciles, not in their way ([`Recorder`]). Like client-go's event
//! recorder, identical events (same object, type, reason and message) are one Event whose
//! `count` and `lastTimestamp` move: a set failing the same way on 412 clusters is one
//! Event on the set, counted 412 times (written once a second with every occurrence
//! since, not 412 times). The API server expires Events an hour after their last
//! occurrence (`--event-ttl`), so they never grow without bound.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use syncsets_machinery::meta;
use syncsets_types::hive::{ClusterSyncStatus, SyncStatus, UnhealthyResource};
use syncsets_write::Proposal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Result;
use crate::hub::{HubKind, HubWriter};
use crate::model::{Cluster, SetDef};
use crate::plan::status_of;

/// The object an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Involved {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// Namespace (`""`: cluster-scoped; its Events go to `default`, as Kubernetes puts them).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid` (kubectl describe selects Events by it).
    pub uid: String,
}

impl Involved {
    /// A ClusterDeployment.
    pub fn cluster(c: &Cluster) -> Self {
        Self {
            api_version: "hive.openshift.io/v1",
            kind: "ClusterDeployment",
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            uid: c.uid.clone(),
        }
    }

    /// A SyncSet or SelectorSyncSet.
    pub fn set(s: &SetDef) -> Self {
        Self {
            api_version: "hive.openshift.io/v1",
            kind: s.kind.as_str(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            uid: s.uid.clone(),
        }
    }
}

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// Things going as they should.
    Normal,
    /// Something a person may need to look at.
    Warning,
}

/// One Event to record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Note {
    /// Warning or Normal.
    pub kind: Type,
    /// A CamelCase reason (`SyncFailed`, …).
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// Longest message kept (as Kubernetes' events API bounds a note), in bytes.
const MESSAGE_MAX: usize = 1024;

/// Who records: `source.component` and `reportingComponent`.
const COMPONENT: &str = "syncsets-controller";

/// The Events a reconcile's status change calls for: on the cluster, and on each set.
pub fn transitions<'s>(
    sets: &'s [std::sync::Arc<SetDef>],
    previous: Option<&ClusterSyncStatus>,
    now: &ClusterSyncStatus,
) -> (Vec<Note>, Vec<(&'s SetDef, Note)>) {
    let mut on_cluster = Vec::new();
    let mut on_sets = Vec::new();
    for set in sets {
        let (Some(is), was) = (status_of(Some(now), set), status_of(previous, set)) else {
            continue;
        };
        let failing = |s: &SyncStatus| s.result != "Success";
        if failing(is) {
            let message = is.failure_message.clone().unwrap_or_default();
            let changed =
                was.is_none_or(|w| !failing(w) || w.failure_message != is.failure_message);
            if changed {
                on_cluster.push(Note {
                    kind: Type::Warning,
                    reason: "SyncFailed",
                    message: format!("{} {}: {message}", set.kind.as_str(), set.display_name()),
                });
                on_sets.push((
                    &**set,
                    Note {
                        kind: Type::Warning,
                        reason: "SyncFailed",
                        message,
                    },
                ));
            }
        } else if was.is_some_and(failing) {
            on_cluster.push(Note {
                kind: Type::Normal,
                reason: "SyncRecovered",
                message: format!(
                    "{} {} applied again after failing",
                    set.kind.as_str(),
                    set.display_name()
                ),
            });
        }
        // What was applied failing to become healthy, and becoming healthy after that.
        let degraded = |s: &SyncStatus| s.health.as_deref() == Some("Degraded");
        // Only the degraded objects: a progressing one's message moves as it rolls out.
        let degraded_ones = |s: &SyncStatus| -> Vec<UnhealthyResource> {
            s.unhealthy_resources
                .iter()
                .filter(|u| u.health == "Degraded")
                .cloned()
                .collect()
        };
        if degraded(is) && was.is_none_or(|w| !degraded(w) || degraded_ones(w) != degraded_ones(is))
        {
            let why: Vec<String> = is
                .unhealthy_resources
                .iter()
                .filter(|u| u.health == "Degraded")
                .map(|u| {
                    let r = &u.resource;
                    let kind = r.kind.as_deref().unwrap_or_default();
                    match &r.namespace {
                        Some(ns) => format!("{kind} {ns}/{}: {}", r.name, u.message),
                        None => format!("{kind} {}: {}", r.name, u.message),
                    }
                })
                .collect();
            let message = why.join("; ");
            on_cluster.push(Note {
                kind: Type::Warning,
                reason: "Degraded",
                message: format!("{} {}: {message}", set.kind.as_str(), set.display_name()),
            });
            on_sets.push((
                &**set,
                Note {
                    kind: Type::Warning,
                    reason: "Degraded",
                    message,
                },
            ));
        } else if is.health.as_deref() == Some("Healthy") && was.is_some_and(degraded) {
            on_cluster.push(Note {
                kind: Type::Normal,
                reason: "Healthy",
                message: format!(
                    "{} {}: what it applied is healthy again",
                    set.kind.as_str(),
                    set.display_name()
                ),
            });
        }
    }
    (on_cluster, on_sets)
}

/// Events waiting to be written, at most (beyond, they are dropped and counted in
/// `syncsets_events_dropped_total`, as client-go's recorder drops what it cannot send).
const QUEUED_MAX: usize = 10_000;

/// How long occurrences gather before they are written: the same Event seen on many
/// clusters within it is one write, its count moved by all of them.
const GATHER: Duration = Duration::from_secs(1);

/// Records Events beside the reconciles, never in their way: notes are queued (and
/// dropped when the queue is full), gathered for a second, and each distinct Event
/// written once with all its occurrences.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<(Involved, Note)>,
}

impl Recorder {
    /// Starts the writer; it ends when every recorder is dropped.
    pub fn start(hub: HubWriter, replica: i64) -> (Self, JoinHandle<()>) {
        metrics::describe_counter!(
            "syncsets_events_dropped_total",
            "Kubernetes Events not recorded because too many were waiting to be written."
        );
        let (tx, rx) = mpsc::channel(QUEUED_MAX);
        (Self { tx }, tokio::spawn(write(hub, rx, replica)))
    }

    /// Records `note` about `involved`.
    pub fn record(&self, involved: Involved, note: Note) {
        if self.tx.try_send((involved, note)).is_err() {
            metrics::counter!("syncsets_events_dropped_total").increment(1);
        }
    }
}

/// Writes what the recorders send, a second's worth at a time.
async fn write(hub: HubWriter, mut rx: mpsc::Receiver<(Involved, Note)>, replica: i64) {
    while let Some(first) = rx.recv().await {
        let mut gathered: HashMap<(Involved, Note), u64> = HashMap::new();
        *gathered.entry(first).or_default() += 1;
        let until = tokio::time::Instant::now() + GATHER;
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(next) => *gathered.entry(next).or_default() += 1,
                    None => break,
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        for ((involved, note), times) in gathered {
            if let Err(e) = hub.record_event(&involved, &note, times, replica).await {
                tracing::warn!(object = %involved.name, reason = note.reason, error = %e, "recording an Event failed");
            }
        }
    }
}

impl HubWriter {
    /// Records `times` occurrences of `note` about `involved`: a new Event, or the same
    /// one counted on.
    pub async fn record_event(
        &self,
        involved: &Involved,
        note: &Note,
        times: u64,
        replica: i64,
    ) -> Result<()> {
        let namespace = if involved.namespace.is_empty() {
            "default"
        } else {
            &involved.namespace
        };
        let message = truncate(&note.message);
        let type_ = match note.kind {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        };
        // One name per (object, type, reason, message): the same event again is found by
        // name and counted.
        let digest = syncsets_bus::stable_hash(
            format!(
                "{}\0{}\0{}\0{}\0{type_}\0{}\0{message}",
                involved.kind, involved.namespace, involved.name, involved.uid, note.reason
            )
            .as_bytes(),
        );
        let prefix: String = involved.name.chars().take(200).collect();
        let name = format!("{prefix}.{digest:016x}");
        let now = meta::now();
        let instance = format!("{COMPONENT}-{replica}");
        self.write(HubKind::Event, namespace, &name, false, None, |current| {
            Ok(match current {
                Some(c) => {
                    let mut event = c.object.clone();
                    let count = event["count"].as_u64().unwrap_or(1) + times;
                    event["count"] = json!(count);
                    event["lastTimestamp"] = json!(now);
                    Proposal::Write(event)
                }
                None => Proposal::Write(json!({
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": involved.api_version, "kind": involved.kind,
                        "namespace": (!involved.namespace.is_empty()).then_some(&involved.namespace),
                        "name": involved.name, "uid": involved.uid,
                    },
                    "type": type_, "reason": note.reason, "message": message,
                    "count": times, "firstTimestamp": now, "lastTimestamp": now,
                    "source": {"component": COMPONENT},
                    "reportingComponent": COMPONENT, "reportingInstance": instance,
                })),
            })
        })
        .await
        .map(drop)
    }
}

/// `message`, cut at [`MESSAGE_MAX`] bytes on a character boundary.
fn truncate(message: &str) -> &str {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let mut end = MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SetKind;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use syncsets_types::hive::{SyncResourceReference, UnhealthyResource};

    fn status(name: &str, failure: Option<&str>) -> SyncStatus {
        SyncStatus {
            name: name.into(),
            observed_generation: 1,
            resources_to_delete: vec![],
            result: if failure.is_some() {
                "Failure"
            } else {
                "Success"
            }
            .into(),
            failure_message: failure.map(str::to_string),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            first_success_time: None,
            health: None,
            unhealthy_resources: Vec::new(),
            health_transition_time: None,
        }
    }

    fn sss(name: &str) -> std::sync::Arc<SetDef> {
        let obj = json!({
            "apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
            "spec": {"clusterDeploymentSelector": {}},
        });
        std::sync::Arc::new(SetDef::from_object(SetKind::SelectorSyncSet, &obj).unwrap())
    }

    fn with(sets: Vec<SyncStatus>) -> ClusterSyncStatus {
        ClusterSyncStatus {
            selector_sync_sets: sets,
            ..Default::default()
        }
    }

    #[test]
    fn failures_are_noted_when_they_begin_or_change_and_recoveries_once() {
        let sets = vec![sss("a"), sss("b")];
        // First failure: on the cluster and on the set.
        let now = with(vec![status("a", Some("boom")), status("b", None)]);
        let (cluster, on_sets) = transitions(&sets, None, &now);
        assert_eq!(cluster.len(), 1);
        assert_eq!(cluster[0].reason, "SyncFailed");
        assert_eq!(cluster[0].message, "SelectorSyncSet a: boom");
        assert_eq!(on_sets.len(), 1);
        assert_eq!(on_sets[0].0.name, "a");
        assert_eq!(on_sets[0].1.message, "boom");
        // The same failure again: nothing.
        let (cluster, on_sets) = transitions(&sets, Some(&now), &now.clone());
        assert!(cluster.is_empty() && on_sets.is_empty());
        // A different failure: noted.
        let other = with(vec![status("a", Some("bang")), status("b", None)]);
        let (cluster, _) = transitions(&sets, Some(&now), &other);
        assert_eq!(cluster[0].message, "SelectorSyncSet a: bang");
        // Recovery: a Normal event on the cluster, once.
        let ok = with(vec![status("a", None), status("b", None)]);
        let (cluster, on_sets) = transitions(&sets, Some(&other), &ok);
        assert_eq!(cluster.len(), 1);
        assert_eq!(
            (cluster[0].kind, cluster[0].reason),
            (Type::Normal, "SyncRecovered")
        );
        assert!(on_sets.is_empty());
        let (cluster, _) = transitions(&sets, Some(&ok), &ok);
        assert!(cluster.is_empty());
    }

    #[test]
    fn degraded_objects_are_noted_when_they_begin_and_their_recovery_once() {
        let sets = vec![sss("a")];
        let healthy = |health: &str, unhealthy: Vec<UnhealthyResource>| {
            let mut s = status("a", None);
            s.health = Some(health.into());
            s.unhealthy_resources = unhealthy;
            with(vec![s])
        };
        let stuck = UnhealthyResource {
            resource: SyncResourceReference {
                api_version: "apps/v1".into(),
                kind: Some("Deployment".into()),
                name: "web".into(),
                namespace: Some("default".into()),
            },
            health: "Degraded".into(),
            message: "timed out progressing".into(),
        };
        let progressing = healthy("Progressing", vec![]);
        let degraded = healthy("Degraded", vec![stuck]);
        let (cluster, on_sets) = transitions(&sets, Some(&progressing), &degraded);
        assert_eq!(
            (
                cluster[0].kind,
                cluster[0].reason,
                cluster[0].message.as_str()
            ),
            (
                Type::Warning,
                "Degraded",
                "SelectorSyncSet a: Deployment default/web: timed out progressing"
            )
        );
        assert_eq!(
            on_sets[0].1.message,
            "Deployment default/web: timed out progressing"
        );
        let (cluster, on_sets) = transitions(&sets, Some(&degraded), &degraded.clone());
        assert!(cluster.is_empty() && on_sets.is_empty(), "once");
        let (cluster, _) = transitions(&sets, Some(&degraded), &healthy("Healthy", vec![]));
        assert_eq!(
            (cluster[0].kind, cluster[0].reason),
            (Type::Normal, "Healthy")
        );
        let (cluster, _) = transitions(&sets, Some(&progressing), &healthy("Healthy", vec![]));
        assert!(
            cluster.is_empty(),
            "progressing to healthy is the normal course"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MESSAGE_MAX);
        let cut = truncate(&long);
        assert!(cut.len() <= MESSAGE_MAX && cut.len() > MESSAGE_MAX - 2);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
