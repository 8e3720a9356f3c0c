//! Progressive rollouts: which revision of a set each cluster gets while a change rolls out,
//! and how a rollout moves from wave to wave (or halts). Pure: the cache decides with
//! [`admits`] and the revisions it holds, the leader steps each rollout with [`step`] and
//! keeps the result in the RolloutPolicy's status — the rollout's only state.
//!
//! ```text
//!   set generation G+1 seen ──▶ rollout {revision G+1, from G, waves [canary, eu, us, others]}
//!   wave n: its clusters get G+1, the rest keep what they hold (else G)
//!     every cluster reached healthy (or failed within maxFailures) for minSuccessTime
//!       ──▶ wave n+1 … ──▶ Complete
//!     failed > maxFailures ──▶ Halted until resumed, undone or changed again
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use syncsets_types::Selector;
use syncsets_types::rollout::{
    FailedCluster, RolloutPolicySpec, SetRollout, Wave, duration_seconds, scaled,
};

use crate::events::{Note, Type};
use crate::model::{Cluster, SetDef, SetKind};

mod drive;
pub use drive::drive;

/// A set: kind, namespace, name.
pub type SetId = (SetKind, String, String);

/// Phases of a rollout.
pub mod phase {
    /// Waves are rolling out.
    pub const PROGRESSING: &str = "Progressing";
    /// Paused by `syncsets.io/rollout-paused`: no further wave starts.
    pub const PAUSED: &str = "Paused";
    /// Too many clusters failed: nothing further rolls out until a person acts.
    pub const HALTED: &str = "Halted";
    /// Every cluster has the revision.
    pub const COMPLETE: &str = "Complete";
}

/// Default `progressDeadline`.
const DEFAULT_DEADLINE: i64 = 600;
/// Failed clusters a status names.
const FAILED_NAMED: usize = 10;

/// A RolloutPolicy as the controllers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// The sets it governs, by their labels.
    pub selector: Selector,
    /// Its waves and gates; `None` for `All`.
    pub progressive: Option<Params>,
    /// Its status as stored: each governed set's rollout.
    pub rollouts: BTreeMap<SetId, SetRollout>,
    /// Its status as stored, whole.
    pub status: Value,
}

/// The waves and gates of a progressive policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    groups: Vec<(String, Selector)>,
    group_by: Option<String>,
    max_concurrency: Option<IntOrString>,
    min_success: i64,
    deadline: i64,
    max_failures: IntOrString,
}

impl Policy {
    /// Reads a RolloutPolicy (`None` if it does not decode: the API server validated it).
    pub fn from_object(obj: &Value) -> Option<Self> {
        let spec: RolloutPolicySpec = serde_json::from_value(obj["spec"].clone()).ok()?;
        let selector = Selector::from_label_selector(Some(&spec.selector)).ok()?;
        let progressive = spec.progressive().map(|p| Params {
            groups: p
                .cluster_groups
                .iter()
                .map(|g| {
                    let s = Selector::from_label_selector(Some(&g.selector))
                        .unwrap_or_else(|_| Selector::nothing());
                    (g.name.clone(), s)
                })
                .collect(),
            group_by: p.group_by.clone().filter(|l| !l.is_empty()),
            max_concurrency: p.max_concurrency.clone(),
            min_success: p
                .min_success_time
                .as_deref()
                .and_then(|d| duration_seconds(d).ok())
                .unwrap_or(0),
            deadline: p
                .progress_deadline
                .as_deref()
                .and_then(|d| duration_seconds(d).ok())
                .unwrap_or(DEFAULT_DEADLINE),
            max_failures: p.max_failures.clone().unwrap_or(IntOrString::Int(0)),
        });
        let status = obj.get("status").cloned().unwrap_or(Value::Null);
        // Entry by entry: one that does not decode loses itself, not every rollout.
        let rollouts = status["rollouts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| serde_json::from_value::<SetRollout>(r.clone()).ok())
            .filter_map(|r| {
                let kind = SetKind::of_name(&r.kind)?;
                let id = (
                    kind,
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone(),
                );
                Some((id, r))
            })
            .collect();
        Some(Self {
            name: obj["metadata"]["name"].as_str()?.to_string(),
            generation: obj["metadata"]["generation"].as_i64().unwrap_or(1),
            selector,
            progressive,
            rollouts,
            status,
        })
    }

    /// Whether the policy governs `set`.
    pub fn governs(&self, set: &SetDef) -> bool {
        self.selector.matches(&set.labels)
    }
}

/// The policy governing `set`: the first by name that selects it (admission refuses a
/// second; one stored before is ignored).
pub fn governing<'p>(
    policies: impl IntoIterator<Item = &'p Arc<Policy>>,
    set: &SetDef,
) -> Option<&'p Arc<Policy>> {
    policies.into_iter().find(|p| p.governs(set))
}

/// The name of the ControllerRevision keeping revision `generation` of a set:
/// `selectorsyncset-NAME-GEN` or `syncset-NAME-GEN`, a long name cut and told apart by a
/// digest of it. The cache keeps revisions under this name only.
pub fn revision_name(kind: SetKind, name: &str, generation: i64) -> String {
    let prefix = match kind {
        SetKind::SyncSet => "syncset",
        SetKind::SelectorSyncSet => "selectorsyncset",
    };
    if name.len() <= 200 {
        return format!("{prefix}-{name}-{generation}");
    }
    let digest = crate::clients::sha256(name.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut end = 200;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}-{}-{tag}-{generation}", &name[..end])
}

/// Which group of waves a cluster falls in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bucket {
    /// The `i`th cluster group.
    Group(usize),
    /// A value of the `groupBy` label.
    Value(String),
    /// Neither.
    Others,
}

fn bucket(params: &Params, cluster: &Cluster) -> Bucket {
    if let Some(i) = params
        .groups
        .iter()
        .position(|(_, s)| s.matches(&cluster.labels))
    {
        return Bucket::Group(i);
    }
    match params.group_by.as_ref().and_then(|l| cluster.labels.get(l)) {
        Some(v) => Bucket::Value(v.clone()),
        None => Bucket::Others,
    }
}

/// A stable place for a cluster, below 2^53 (exact in JSON): slices of a group are runs of
/// clusters in this order.
fn place(key: &str) -> i64 {
    let digest = crate::clients::sha256(key.as_bytes());
    (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 11) as i64
}

/// The waves of a rollout starting now over `clusters` (key, cluster).
pub fn plan_waves(params: &Params, clusters: &[(&str, &Cluster)]) -> Vec<Wave> {
    let total = clusters.len() as i64;
    let mut buckets: BTreeMap<Bucket, Vec<i64>> = BTreeMap::new();
    for (k, c) in clusters {
        buckets.entry(bucket(params, c)).or_default().push(place(k));
    }
    let per_wave = params
        .max_concurrency
        .as_ref()
        .and_then(|m| scaled(m, total, true).ok())
        .filter(|n| *n > 0);
    let mut waves = Vec::new();
    for (b, mut places) in buckets {
        places.sort_unstable();
        let n = places.len() as i64;
        let per = per_wave.unwrap_or(n).max(1);
        let slices = ((n + per - 1) / per).max(1);
        let (label, group, value) = match &b {
            Bucket::Group(i) => (
                params.groups[*i].0.clone(),
                Some(params.groups[*i].0.clone()),
                None,
            ),
            Bucket::Value(v) => (
                format!("{}={v}", params.group_by.as_deref().unwrap_or_default()),
                None,
                Some(v.clone()),
            ),
            Bucket::Others => ("others".to_string(), None, None),
        };
        for (i, chunk) in places.chunks(per as usize).enumerate() {
            let slice = i as i64 + 1;
            waves.push(Wave {
                name: if slices > 1 {
                    format!("{label} {slice}/{slices}")
                } else {
                    label.clone()
                },
                group: group.clone(),
                value: value.clone(),
                slice,
                slices,
                start: (slice > 1).then_some(chunk[0]),
                clusters: chunk.len() as i64,
            });
        }
    }
    waves
}

/// The wave (0-based) a cluster belongs to in a rollout's waves: by the rule that made
/// them, so a cluster that joins mid-rollout has one too; a cluster of a group or label
/// value that had no wave goes in the last.
pub fn wave_of(params: &Params, waves: &[Wave], key: &str, cluster: &Cluster) -> usize {
    let b = bucket(params, cluster);
    let matches = |w: &Wave| match &b {
        Bucket::Group(i) => w.group.as_deref() == Some(params.groups[*i].0.as_str()),
        Bucket::Value(v) => w.group.is_none() && w.value.as_deref() == Some(v.as_str()),
        Bucket::Others => w.group.is_none() && w.value.is_none(),
    };
    let Some(first) = waves.iter().position(&matches) else {
        return waves.len().saturating_sub(1);
    };
    let at = place(key);
    let after = waves[first + 1..]
        .iter()
        .take_while(|w| matches(w) && w.start.is_some_and(|s| s <= at))
        .count();
    first + after
}

/// Whether a rollout has reached the cluster: it gets the revision rolling out.
pub fn admits(params: &Params, rollout: &SetRollout, key: &str, cluster: &Cluster) -> bool {
    rollout.phase == phase::COMPLETE
        || (wave_of(params, &rollout.waves, key, cluster) as i64) < rollout.wave
}

/// How a set stands on a cluster, from its ClusterSync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The generation last applied (or tried).
    pub generation: i64,
    /// It applied.
    pub success: bool,
    /// `Healthy`, `Progressing`, `Degraded`, or `None` (not recorded).
    pub health: Option<&'static str>,
    /// Why it failed or is not healthy (the failure message, or the first object not
    /// healthy and what it says).
    pub why: Option<Arc<str>>,
}

/// A cluster a set targets, as a rollout step sees it.
pub struct Seen<'a> {
    /// Its key.
    pub key: &'a str,
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The set's result there.
    pub held: Option<&'a Held>,
}

/// A rollout after one step, and the Events its transitions call for.
pub struct Stepped {
    /// The rollout now.
    pub rollout: SetRollout,
    /// Events to record on the set.
    pub notes: Vec<Note>,
}

fn note(kind: Type, reason: &'static str, message: String) -> Note {
    Note {
        kind,
        reason,
        message,
    }
}

/// Moves a set's rollout on: starts one for a new generation, counts the clusters reached,
/// halts past `maxFailures`, starts the next wave once every cluster reached has been
/// healthy for `minSuccessTime`. `any_held`: some cluster holds the set already (a set
/// first governed by a policy is taken as rolled out; a new one rolls out from nothing).
pub fn step(
    params: &Params,
    set: &SetDef,
    previous: Option<&SetRollout>,
    seen: &[Seen<'_>],
    any_held: bool,
    now: jiff::Timestamp,
) -> Stepped {
    let now_text = now.to_string();
    let mut notes = Vec::new();
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| (now - t).get_seconds())
    };
    // A rollout of a set made again under the same name is not this one's.
    let previous = previous.filter(|p| p.uid.as_deref().is_none_or(|u| u == set.uid));
    let mut r = match previous {
        Some(p) if p.revision == set.generation => p.clone(),
        _ => {
            // First governed: taken as rolled out if every cluster has the generation;
            // else it rolls out from the newest one they hold.
            let held_before = seen
                .iter()
                .filter_map(|s| {
                    s.held
                        .filter(|h| h.success && h.generation < set.generation)
                })
                .map(|h| h.generation)
                .max();
            let from = match previous {
                Some(p) if p.phase == phase::COMPLETE => Some(p.revision),
                Some(p) => p.from_revision,
                None => held_before,
            };
            let adopted = previous.is_none()
                && any_held
                && seen.iter().all(|s| {
                    s.held
                        .is_some_and(|h| h.success && h.generation == set.generation)
                });
            let keys: Vec<(&str, &Cluster)> = seen.iter().map(|s| (s.key, s.cluster)).collect();
            let waves = if adopted {
                Vec::new()
            } else {
                plan_waves(params, &keys)
            };
            let paused = set.asks.paused && !waves.is_empty() && !adopted;
            let r = SetRollout {
                kind: set.kind.as_str().to_string(),
                namespace: (!set.namespace.is_empty()).then(|| set.namespace.clone()),
                name: set.name.clone(),
                uid: Some(set.uid.clone()),
                revision: set.generation,
                from_revision: from,
                phase: if adopted || waves.is_empty() {
                    phase::COMPLETE
                } else if paused {
                    phase::PAUSED
                } else {
                    phase::PROGRESSING
                }
                .to_string(),
                // Paused from the start: not even the first wave.
                wave: if paused { 0 } else { 1 },
                resumed: set.asks.resumed_at.clone(),
                wave_start_time: Some(now_text.clone()),
                last_transition_time: Some(now_text.clone()),
                waves,
                ..SetRollout::default()
            };
            if !adopted {
                notes.push(note(
                    Type::Normal,
                    "RolloutStarted",
                    format!(
                        "rolling out revision {} to {} clusters in {} waves{}; wave 1: {}",
                        r.revision,
                        seen.len(),
                        r.waves.len(),
                        from.map_or(String::new(), |f| format!(
                            " (clusters not yet reached keep revision {f})"
                        )),
                        r.waves.first().map_or("-", |w| w.name.as_str())
                    ),
                ));
            }
            r
        }
    };
    let to = |r: &mut SetRollout, phase: &str| {
        r.phase = phase.to_string();
        r.last_transition_time = Some(now_text.clone());
    };
    // A resume asked for after the halt, not acted on yet, and not from the future (a
    // clock far ahead would resume every later halt).
    let time = |t: Option<&str>| t.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let resume = set.asks.resumed_at.as_deref().filter(|asked| {
        r.resumed.as_deref() != Some(*asked)
            && time(Some(asked)).is_some_and(|at| {
                at <= now + jiff::SignedDuration::from_secs(300)
                    && time(r.last_transition_time.as_deref()).is_none_or(|halt| at > halt)
            })
    });
    let mut resumed_halt = false;
    if r.phase != phase::COMPLETE {
        if set.asks.paused && r.phase == phase::PROGRESSING {
            to(&mut r, phase::PAUSED);
            notes.push(note(
                Type::Normal,
                "RolloutPaused",
                format!("paused at wave {}", r.wave),
            ));
        } else if !set.asks.paused && r.phase == phase::PAUSED {
            to(&mut r, phase::PROGRESSING);
            r.settled_time = None;
            if r.wave == 0 {
                r.wave = 1;
                r.wave_start_time = Some(now_text.clone());
            }
            notes.push(note(
                Type::Normal,
                "RolloutResumed",
                format!("resumed at wave {}", r.wave),
            ));
        } else if r.phase == phase::HALTED
            && let Some(asked) = resume
        {
            to(&mut r, phase::PROGRESSING);
            r.resumed = Some(asked.to_string());
            r.wave_start_time = Some(now_text.clone());
            r.settled_time = None;
            resumed_halt = true;
        }
    }

    // Count the clusters reached.
    let past_deadline = since(&r.wave_start_time) > params.deadline;
    let (mut updated, mut healthy, mut progressing) = (0, 0, 0);
    let mut failed: Vec<FailedCluster> = Vec::new();
    for s in seen {
        if !admits(params, &r, s.key, s.cluster) {
            continue;
        }
        let at_revision = s.held.filter(|h| h.generation == r.revision);
        let why = |h: Option<&Held>| {
            h.and_then(|h| h.why.as_deref())
                .unwrap_or_default()
                .to_string()
        };
        let failure = match at_revision {
            Some(h) if h.success => {
                updated += 1;
                match h.health {
                    Some("Healthy") => {
                        healthy += 1;
                        None
                    }
                    Some("Degraded") => Some(format!("not healthy: {}", why(Some(h)))),
                    _ if past_deadline => Some(format!(
                        "not healthy within progressDeadline: {}",
                        why(Some(h))
                    )),
                    _ => None,
                }
            }
            Some(h) if past_deadline => Some(format!("not applied: {}", why(Some(h)))),
            _ if past_deadline => Some(match s.held.filter(|h| !h.success) {
                Some(h) => format!("not applied within progressDeadline: {}", why(Some(h))),
                None => "not applied within progressDeadline".to_string(),
            }),
            _ => None,
        };
        match failure {
            Some(reason) => failed.push(FailedCluster {
                cluster: s.key.to_string(),
                reason,
            }),
            None if at_revision.is_some_and(|h| h.success && h.health == Some("Healthy")) => {}
            None => progressing += 1,
        }
    }
    let total = seen.len() as i64;
    let failures = failed.len() as i64;
    if resumed_halt {
        // Whoever resumed accepted the failures there are: the rollout halts again only on
        // more.
        r.tolerated = failures;
        notes.push(note(
            Type::Normal,
            "RolloutResumed",
            format!(
                "resumed after a halt at wave {}, accepting {failures} failed clusters; the \
                 others get a new progressDeadline",
                r.wave
            ),
        ));
    }
    let budget = scaled(&params.max_failures, total, false).unwrap_or(0) + r.tolerated;
    r.clusters = total;
    r.updated = updated;
    r.healthy = healthy;
    r.progressing = progressing;
    r.failed = failures;
    failed.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    r.failed_clusters = failed.iter().take(FAILED_NAMED).cloned().collect();

    let waves = r.waves.len() as i64;
    if r.phase == phase::PROGRESSING && failures > budget {
        to(&mut r, phase::HALTED);
        r.settled_time = None;
        let named: Vec<String> = failed
            .iter()
            .take(3)
            .map(|f| format!("{}: {}", f.cluster, f.reason))
            .collect();
        notes.push(note(
            Type::Warning,
            "RolloutHalted",
            format!(
                "halted at wave {} of {waves}: {failures} clusters failed (maxFailures {budget}); {}",
                r.wave,
                named.join("; ")
            ),
        ));
    } else if r.phase == phase::PROGRESSING {
        if progressing == 0 {
            let settled = r
                .settled_time
                .get_or_insert_with(|| now_text.clone())
                .clone();
            if since(&Some(settled)) >= params.min_success {
                if r.wave < waves {
                    r.wave += 1;
                    r.wave_start_time = Some(now_text.clone());
                    r.settled_time = None;
                    notes.push(note(
                        Type::Normal,
                        "WaveStarted",
                        format!(
                            "wave {} of {waves} ({}) started",
                            r.wave,
                            r.waves[(r.wave - 1) as usize].name
                        ),
                    ));
                } else {
                    to(&mut r, phase::COMPLETE);
                    notes.push(note(
                        Type::Normal,
                        "RolloutComplete",
                        format!(
                            "revision {} reached every cluster ({failures} failed)",
                            r.revision
                        ),
                    ));
                }
            }
        } else {
            r.settled_time = None;
        }
    }
    r.message = Some(message(&r, params, budget));
    Stepped { rollout: r, notes }
}

fn message(r: &SetRollout, params: &Params, budget: i64) -> String {
    let waves = r.waves.len();
    let wave = r
        .waves
        .get((r.wave - 1).max(0) as usize)
        .map_or(String::new(), |w| format!(" ({})", w.name));
    match r.phase.as_str() {
        phase::COMPLETE => format!("revision {} is rolled out", r.revision),
        phase::HALTED => format!(
            "halted at wave {} of {waves}{wave}: {} failed, more than maxFailures {budget}; \
             undo, resume or change the set",
            r.wave, r.failed
        ),
        phase::PAUSED if r.wave == 0 => format!("paused before wave 1 of {waves}"),
        phase::PAUSED => format!("paused at wave {} of {waves}{wave}", r.wave),
        _ if r.progressing > 0 => format!(
            "wave {} of {waves}{wave}: waiting for {} clusters to be healthy",
            r.wave, r.progressing
        ),
        _ => format!(
            "wave {} of {waves}{wave}: healthy; the next starts after minSuccessTime ({}s)",
            r.wave, params.min_success
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(progressive: Value) -> Policy {
        Policy::from_object(&json!({"metadata": {"name": "p"}, "spec": {
            "selector": {"matchLabels": {"rollout": "careful"}},
            "strategy": {"type": "Progressive", "progressive": progressive}}}))
        .unwrap()
    }

    fn cluster(name: &str, labels: &[(&str, &str)]) -> Cluster {
        Cluster {
            namespace: "fleet".into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            installed: true,
            ..Cluster::default()
        }
    }

    fn fleet() -> Vec<(String, Cluster)> {
        (0..20)
            .map(|i| {
                let region = ["eu", "us"][i % 2];
                let mut labels = vec![("region", region)];
                if i < 2 {
                    labels.push(("ring", "canary"));
                }
                let c = cluster(&format!("c{i:02}"), &labels);
                (c.key(), c)
            })
            .collect()
    }

    #[test]
    fn waves_go_groups_then_label_values_then_the_rest_in_slices() {
        let p = policy(
            json!({"clusterGroups": [{"name": "canary", "selector": {"matchLabels": {"ring": "canary"}}}],
            "groupBy": "region", "maxConcurrency": 5}),
        );
        let params = p.progressive.unwrap();
        let mut clusters = fleet();
        clusters.push(("fleet/x".into(), cluster("x", &[])));
        let keys: Vec<(&str, &Cluster)> = clusters.iter().map(|(k, c)| (k.as_str(), c)).collect();
        let waves = plan_waves(&params, &keys);
        let names: Vec<&str> = waves.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "canary",
                "region=eu 1/2",
                "region=eu 2/2",
                "region=us 1/2",
                "region=us 2/2",
                "others"
            ]
        );
        assert_eq!(waves.iter().map(|w| w.clusters).sum::<i64>(), 21);
        // Every cluster's wave is the one that counted it.
        let mut counted = vec![0; waves.len()];
        for (k, c) in &keys {
            counted[wave_of(&params, &waves, k, c)] += 1;
        }
        assert_eq!(
            counted,
            waves.iter().map(|w| w.clusters).collect::<Vec<_>>()
        );
        // A joiner with a value no wave has goes last.
        let late = cluster("late", &[("region", "ap")]);
        assert_eq!(
            wave_of(&params, &waves, "fleet/late", &late),
            waves.len() - 1
        );
    }

    /// A set applied at `generation`, its objects `health`.
    fn held(generation: i64, health: &'static str, why: Option<&str>) -> Held {
        Held {
            generation,
            success: true,
            health: Some(health),
            why: why.map(Arc::from),
        }
    }

    fn set(generation: i64) -> SetDef {
        SetDef::from_object(
            SetKind::SelectorSyncSet,
            &json!({"metadata": {"name": "s", "generation": generation}, "spec": {}}),
        )
        .unwrap()
    }

    #[test]
    fn a_rollout_waits_for_health_then_moves_on_and_halts_past_its_budget() {
        let p = policy(
            json!({"clusterGroups": [{"name": "canary", "selector": {"matchLabels": {"ring": "canary"}}}],
            "minSuccessTime": "60s", "progressDeadline": "10m", "maxFailures": 0}),
        );
        let params = p.progressive.unwrap();
        let clusters = fleet();
        let healthy = held(2, "Healthy", None);
        let degraded = held(
            2,
            "Degraded",
            Some("Deployment a/b: ProgressDeadlineExceeded"),
        );
        let old = held(1, "Healthy", None);
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        fn seen_with<'a>(
            clusters: &'a [(String, Cluster)],
            canary: &'a Held,
            old: &'a Held,
        ) -> Vec<Seen<'a>> {
            clusters
                .iter()
                .map(|(k, c)| Seen {
                    key: k,
                    cluster: c,
                    held: Some(if c.labels.contains_key("ring") {
                        canary
                    } else {
                        old
                    }),
                })
                .collect()
        }
        let seen = |canary| seen_with(&clusters, canary, &old);
        // Generation 1 was there before the policy: adopted, nothing rolls.
        let adopted = step(&params, &set(1), None, &seen(&old), true, t0).rollout;
        assert_eq!(adopted.phase, phase::COMPLETE);
        // Generation 2: wave 1 (canary) starts.
        let s = step(&params, &set(2), Some(&adopted), &seen(&old), true, t0);
        assert_eq!(
            (
                s.rollout.phase.as_str(),
                s.rollout.wave,
                s.rollout.from_revision
            ),
            (phase::PROGRESSING, 1, Some(1))
        );
        assert_eq!(s.rollout.waves.len(), 2);
        assert_eq!(s.notes[0].reason, "RolloutStarted");
        // The same revision, later.
        let again = |r: &SetRollout, canary: &Held, t| {
            step(
                &params,
                &set(2),
                Some(r),
                &seen_with(&clusters, canary, &old),
                true,
                t,
            )
        };
        // Canaries healthy: settled, but the next wave waits minSuccessTime.
        let t1 = t0 + jiff::SignedDuration::from_secs(10);
        let s = again(&s.rollout, &healthy, t1);
        assert_eq!(
            (s.rollout.wave, s.rollout.healthy, s.rollout.progressing),
            (1, 2, 0)
        );
        let t2 = t1 + jiff::SignedDuration::from_secs(61);
        let moved = again(&s.rollout, &healthy, t2);
        assert_eq!(moved.rollout.wave, 2);
        assert_eq!(moved.notes[0].reason, "WaveStarted");
        // Canaries degraded instead: halted, naming them.
        let s = again(&s.rollout, &degraded, t1);
        assert_eq!(s.rollout.phase, phase::HALTED);
        assert_eq!(s.rollout.failed, 2);
        assert!(
            s.rollout.failed_clusters[0]
                .reason
                .contains("ProgressDeadlineExceeded")
        );
        assert_eq!(s.notes[0].reason, "RolloutHalted");
        // And stays halted, however long.
        let later = again(&s.rollout, &healthy, t2);
        assert_eq!(
            (later.rollout.phase.as_str(), later.rollout.wave),
            (phase::HALTED, 1)
        );
        // A change starts again from the last revision that completed.
        let s3 = step(
            &params,
            &set(3),
            Some(&later.rollout),
            &seen(&old),
            true,
            t2,
        );
        assert_eq!(
            (s3.rollout.revision, s3.rollout.from_revision),
            (3, Some(1))
        );
    }

    #[test]
    fn clusters_that_never_answer_fail_at_the_deadline_not_before() {
        let p = policy(json!({"progressDeadline": "5m", "maxFailures": "10%"}));
        let params = p.progressive.unwrap();
        let clusters = fleet();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let healthy = held(2, "Healthy", None);
        let unreachable = Held {
            generation: 1,
            success: false,
            health: None,
            why: Some("unreachable: connection refused".into()),
        };
        let seen: Vec<Seen<'_>> = clusters
            .iter()
            .enumerate()
            .map(|(i, (k, c))| Seen {
                key: k,
                cluster: c,
                held: Some(if i < 2 { &unreachable } else { &healthy }),
            })
            .collect();
        let start = step(&params, &set(2), None, &seen, false, t0).rollout;
        assert_eq!(start.waves.len(), 1);
        let after = |r: &SetRollout, seconds| {
            step(
                &params,
                &set(2),
                Some(r),
                &seen,
                false,
                t0 + jiff::SignedDuration::from_secs(seconds),
            )
        };
        let early = after(&start, 60);
        assert_eq!((early.rollout.failed, early.rollout.progressing), (0, 2));
        let late = after(&early.rollout, 301);
        assert_eq!(late.rollout.failed, 2, "2 of 20 is within 10%");
        assert_eq!(late.rollout.phase, phase::COMPLETE, "not waiting for them");
        assert!(
            late.rollout.failed_clusters[0]
                .reason
                .contains("connection refused")
        );
    }

    #[test]
    fn slices_hold_max_concurrency_exactly_and_joiners_fall_in_one() {
        let p = policy(
            json!({"clusterGroups": [{"name": "canary", "selector": {"matchLabels": {"ring": "canary"}}}],
            "maxConcurrency": 1}),
        );
        let params = p.progressive.unwrap();
        let clusters = fleet();
        let keys: Vec<(&str, &Cluster)> = clusters.iter().map(|(k, c)| (k.as_str(), c)).collect();
        let waves = plan_waves(&params, &keys);
        assert_eq!(waves.len(), 20, "one cluster a wave");
        assert!(waves.iter().all(|w| w.clusters == 1));
        let mut places: Vec<usize> = keys
            .iter()
            .map(|(k, c)| wave_of(&params, &waves, k, c))
            .collect();
        places.sort_unstable();
        assert_eq!(places, (0..20).collect::<Vec<_>>());
        // A joiner lands in one of its group's slices, by its hash.
        let late = cluster("late", &[("ring", "canary")]);
        assert!(wave_of(&params, &waves, "fleet/late", &late) < 2);
    }

    #[test]
    fn a_set_first_governed_rolls_out_unless_every_cluster_has_it_and_pause_holds_the_first_wave() {
        let p = policy(json!({"minSuccessTime": "0s"}));
        let params = p.progressive.unwrap();
        let clusters = fleet();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let new = held(2, "Healthy", None);
        let old = held(1, "Healthy", None);
        let seen: Vec<Seen<'_>> = clusters
            .iter()
            .enumerate()
            .map(|(i, (k, c))| Seen {
                key: k,
                cluster: c,
                held: Some(if i == 0 { &old } else { &new }),
            })
            .collect();
        // Labelled into the policy with its change: the change rolls out from what they hold.
        let r = step(&params, &set(2), None, &seen, true, t0).rollout;
        assert_eq!(
            (r.phase.as_str(), r.from_revision),
            (phase::PROGRESSING, Some(1))
        );
        // Made again under the same name: a new rollout, not the old one's.
        let mut again = set(2);
        again.uid = "other".into();
        let r2 = step(&params, &again, Some(&r), &seen, true, t0).rollout;
        assert_eq!(r2.uid.as_deref(), Some("other"));
        // Paused when the change comes: not even the first wave starts.
        let mut paused = set(3);
        paused.asks.paused = true;
        let r3 = step(&params, &paused, Some(&r), &seen, true, t0).rollout;
        assert_eq!((r3.phase.as_str(), r3.wave), (phase::PAUSED, 0));
        assert!(!admits(&params, &r3, seen[0].key, seen[0].cluster));
        paused.asks.paused = false;
        let r4 = step(&params, &paused, Some(&r3), &seen, true, t0).rollout;
        assert_eq!((r4.phase.as_str(), r4.wave), (phase::PROGRESSING, 1));
    }

    #[test]
    fn resuming_a_halt_accepts_its_failures_once() {
        let p = policy(json!({"progressDeadline": "1m"}));
        let params = p.progressive.unwrap();
        let clusters = fleet();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let bad = held(2, "Degraded", Some("x"));
        let seen: Vec<Seen<'_>> = clusters
            .iter()
            .map(|(k, c)| Seen {
                key: k,
                cluster: c,
                held: Some(&bad),
            })
            .collect();
        let start = step(&params, &set(2), None, &seen, false, t0).rollout;
        let halted = step(&params, &set(2), Some(&start), &seen, false, t0).rollout;
        assert_eq!(halted.phase, phase::HALTED);
        let t1 = t0 + jiff::SignedDuration::from_secs(5);
        // A resume from before the halt, or from far in the future, is not acted on.
        for stale in ["2025-12-31T00:00:00Z", "2026-01-02T00:00:00Z"] {
            let mut s = set(2);
            s.asks.resumed_at = Some(stale.into());
            assert_eq!(
                step(&params, &s, Some(&halted), &seen, false, t1)
                    .rollout
                    .phase,
                phase::HALTED
            );
        }
        let mut s = set(2);
        s.asks.resumed_at = Some("2026-01-01T00:00:03Z".into());
        let resumed = step(&params, &s, Some(&halted), &seen, false, t1);
        assert_eq!(
            resumed.rollout.phase,
            phase::COMPLETE,
            "its failures accepted, one wave"
        );
        assert_eq!(resumed.rollout.tolerated, 20);
        assert!(resumed.notes.iter().any(|n| n.reason == "RolloutResumed"));
    }
}
