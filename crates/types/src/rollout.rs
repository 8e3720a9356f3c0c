//! `syncsets.io/v1alpha1` RolloutPolicy: how a change to the SyncSets and SelectorSyncSets it
//! governs reaches the fleet — at once (`All`, today's behaviour and the default without a
//! policy) or wave by wave behind health gates (`Progressive`, the vocabulary of Open Cluster
//! Management's rolloutStrategy). Its status is the rollouts' state: the controllers keep it
//! there, not in memory.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LabelSelector;

/// The API group of syncsets' own kinds.
pub const GROUP: &str = "syncsets.io";

/// A set annotation: `"true"` pauses its rollout (no further wave starts).
pub const PAUSED_ANNOTATION: &str = "syncsets.io/rollout-paused";
/// A set annotation: a halted rollout resumes when this (an RFC 3339 time) is later than
/// the halt. `syncsets rollout resume` sets it.
pub const RESUMED_ANNOTATION: &str = "syncsets.io/rollout-resumed-at";
/// A set annotation asking the controllers to roll the set back: to the revision it names,
/// or (empty or `previous`) to the one its rollout started from (the last that completed;
/// for a completed rollout, the revision before it). The controllers write that revision's
/// spec as the set's new generation and remove the annotation.
pub const UNDO_ANNOTATION: &str = "syncsets.io/rollout-undo";

/// Labels of the ControllerRevisions keeping a set's revisions.
pub const REVISION_KIND_LABEL: &str = "syncsets.io/set-kind";
/// See [`REVISION_KIND_LABEL`].
pub const REVISION_NAME_LABEL: &str = "syncsets.io/set-name";
/// The namespace holding SelectorSyncSets' revisions (a SyncSet's live in its own).
pub const SYSTEM_NAMESPACE: &str = "syncsets-system";

/// RolloutPolicySpec says which sets a policy governs and how their changes roll out.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "syncsets.io",
    version = "v1alpha1",
    kind = "RolloutPolicy",
    shortname = "rp",
    status = "RolloutPolicyStatus",
    doc = "RolloutPolicy governs how changes to the SyncSets and SelectorSyncSets it selects reach their clusters: at once, or wave by wave behind health gates.",
    printcolumn = r#"{"name":"Strategy","type":"string","description":"All or Progressive","jsonPath":".spec.strategy.type"}"#,
    printcolumn = r#"{"name":"Rollouts","type":"integer","description":"Sets it governs","jsonPath":".status.governed"}"#,
    printcolumn = r#"{"name":"Progressing","type":"integer","description":"Rollouts in progress","jsonPath":".status.progressing"}"#,
    printcolumn = r#"{"name":"Halted","type":"integer","description":"Rollouts halted by failures","jsonPath":".status.halted"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicySpec {
    /// The SyncSets and SelectorSyncSets this policy governs, by their labels. A set is
    /// governed by one policy at most.
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub selector: LabelSelector,
    /// How changes roll out.
    pub strategy: RolloutStrategy,
}

/// How changes to the governed sets roll out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// `All`: every cluster at once (the behaviour without a policy); `Progressive`: wave by
    /// wave, each wave healthy for `minSuccessTime` before the next.
    #[serde(rename = "type")]
    pub type_: String,
    /// The waves and gates of a `Progressive` rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressive: Option<Progressive>,
}

/// The waves and health gates of a progressive rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progressive {
    /// Ordered groups of clusters, each rolled out before the next (canaries first). A
    /// cluster belongs to the first group whose selector matches it; clusters in no group
    /// come after every group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub cluster_groups: Vec<ClusterGroup>,
    /// A ClusterDeployment label: after the groups, the clusters in no group roll out one
    /// value of this label at a time (in the values' order), then those without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// How many clusters of a group are updated at once: a count or a percentage of the
    /// clusters the set targets (at least one). Unset: a whole group at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<IntOrString>,
    /// How long a wave stays healthy before the next starts (a Go duration, e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_success_time: Option<String>,
    /// A cluster not healthy this long after its wave started has failed (a Go duration;
    /// default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Failed clusters (a count or a percentage of the clusters the set targets) the rollout
    /// tolerates: one more halts it. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<IntOrString>,
}

/// A named group of clusters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGroup {
    /// The group's name, shown as its wave.
    pub name: String,
    /// The ClusterDeployments in the group, by their labels.
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub selector: LabelSelector,
}

/// RolloutPolicyStatus is the state of the rollouts of the sets the policy governs. The
/// controllers keep it; a controller restarted mid-rollout continues from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicyStatus {
    /// The policy generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many sets the policy governs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<i64>,
    /// Of those, rollouts in progress (or paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressing: Option<i64>,
    /// Of those, rollouts halted by failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<i64>,
    /// One entry per governed set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub rollouts: Vec<SetRollout>,
}

/// The rollout of one governed set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetRollout {
    /// `SyncSet` or `SelectorSyncSet`.
    pub kind: String,
    /// A SyncSet's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The set's name.
    pub name: String,
    /// The set's uid (a set made again under the same name starts afresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The revision (the set's generation) rolling out.
    pub revision: i64,
    /// The revision clusters not yet reached keep (none: they get nothing of the set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<i64>,
    /// `Progressing`, `Paused`, `Halted` or `Complete`.
    pub phase: String,
    /// The waves, in order (fixed when the rollout starts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub waves: Vec<Wave>,
    /// The wave rolling out: 1 to the number of waves (0: paused before the first).
    pub wave: i64,
    /// When the current wave started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_start_time: Option<String>,
    /// Since when every cluster of the waves reached is healthy or counted failed (within
    /// `maxFailures`); the next wave starts `minSuccessTime` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_time: Option<String>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Clusters the set targets.
    pub clusters: i64,
    /// Clusters reached that hold the revision.
    pub updated: i64,
    /// Of the clusters reached: healthy, still progressing, failed.
    pub healthy: i64,
    /// See `healthy`.
    pub progressing: i64,
    /// See `healthy`.
    pub failed: i64,
    /// The failed clusters (the first few) and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub failed_clusters: Vec<FailedCluster>,
    /// The `syncsets.io/rollout-resumed-at` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// Failures a person accepted by resuming after a halt: the rollout halts again only
    /// beyond `maxFailures` plus these.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tolerated: i64,
    /// What the rollout is doing or waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One wave of a rollout: a cluster group, one value of `groupBy`, or the rest, in slices of
/// at most `maxConcurrency` clusters (by a stable hash of the cluster's key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// What it is, in words: the group (`canary`), the label value (`region=eu`) or
    /// `others`, with the slice when there are several (`region=eu 2/3`).
    pub name: String,
    /// The cluster group it rolls out, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The `groupBy` label value it rolls out, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Which slice of its group (1-based), of `slices`.
    pub slice: i64,
    /// How many slices its group was cut into.
    pub slices: i64,
    /// Where the slice starts in its group: clusters are ordered by a stable hash of their
    /// key (a number below 2^53) and cut into slices of `maxConcurrency`; this is the
    /// first one's, so a cluster that joins later falls in the slice its hash does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// Clusters in the wave when the rollout started.
    pub clusters: i64,
}

/// A cluster counted failed, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedCluster {
    /// `namespace/name` of its ClusterDeployment.
    pub cluster: String,
    /// Why: the apply error, or the objects not healthy and what they say.
    pub reason: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The CustomResourceDefinition of RolloutPolicy.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = RolloutPolicy::crd();
    crd.spec.names.list_kind = Some("RolloutPolicyList".into());
    crd.spec.scope = "Cluster".into();
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut json = serde_json::to_value(&*root).expect("schema serialises");
            strip_nullable(&mut json);
            if let Some(obj) = json.as_object_mut() {
                obj.remove("title");
            }
            *root = serde_json::from_value(json).expect("schema deserialises");
        }
    }
    crd
}

/// Removes `nullable` (the API never stores null) and joins descriptions' lines (doc
/// comments wrap; `kubectl explain` wraps again), keeping paragraphs.
fn strip_nullable(schema: &mut Value) {
    match schema {
        Value::Object(obj) => {
            obj.remove("nullable");
            if let Some(Value::String(d)) = obj.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            obj.values_mut().for_each(strip_nullable);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

/// A count or percentage (`25%`) of `total`, rounded up as OCM rounds maxConcurrency (a
/// percentage of a non-empty fleet is at least one); an error says what is wrong.
pub fn scaled(value: &IntOrString, total: i64, round_up: bool) -> Result<i64, String> {
    match value {
        IntOrString::Int(n) if *n < 0 => Err("must be greater than or equal to 0".into()),
        IntOrString::Int(n) => Ok(i64::from(*n)),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err("must be an integer or a percentage (e.g. '25%')".into());
            };
            let percent: i64 = number
                .parse()
                .map_err(|_| "must be an integer or a percentage (e.g. '25%')".to_string())?;
            if !(0..=100).contains(&percent) {
                return Err("must be a percentage between 0% and 100%".into());
            }
            let scaled = total * percent;
            Ok(if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            })
        }
    }
}

/// A Go duration (`90s`, `5m`, `1h30m`), as seconds; an error says what is wrong.
pub fn duration_seconds(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration (e.g. \"30s\", \"5m\", \"1h30m\")");
    if text.is_empty() || text.starts_with('-') {
        return Err(invalid());
    }
    // Go's units, longest first so `ms` is not read as minutes.
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, factor) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(invalid)?;
        total += number * factor;
        rest = &rest[unit.len()..];
    }
    Ok(total.round() as i64)
}

impl RolloutPolicySpec {
    /// Whether the strategy is `Progressive`.
    pub fn progressive(&self) -> Option<&Progressive> {
        self.strategy
            .progressive
            .as_ref()
            .filter(|_| self.strategy.type_ == "Progressive")
    }
}

/// What is wrong with a policy's spec, as (field path, bad value, message) — for the API
/// server's 422 field causes.
pub fn problems(spec: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut bad = |path: &str, value: &Value, msg: &str| {
        let shown = value
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        out.push((path.to_string(), shown, msg.to_string()));
    };
    if let Err(e) = crate::Selector::from_label_selector(
        serde_json::from_value::<LabelSelector>(spec["selector"].clone())
            .ok()
            .as_ref(),
    ) {
        bad("spec.selector", &spec["selector"], &e.0);
    }
    let strategy = &spec["strategy"];
    match strategy["type"].as_str() {
        Some("All") => {}
        Some("Progressive") if strategy["progressive"].is_object() => {}
        Some("Progressive") => bad(
            "spec.strategy.progressive",
            &Value::Null,
            "required when type is Progressive",
        ),
        _ => bad(
            "spec.strategy.type",
            &strategy["type"],
            "supported values: \"All\", \"Progressive\"",
        ),
    }
    let p = &strategy["progressive"];
    let mut names = BTreeSet::new();
    for (i, g) in p["clusterGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = g["name"].as_str().unwrap_or_default();
        let path = format!("spec.strategy.progressive.clusterGroups[{i}]");
        if name.is_empty() {
            bad(&format!("{path}.name"), &g["name"], "must not be empty");
        } else if !names.insert(name) {
            bad(&format!("{path}.name"), &g["name"], "duplicate group name");
        }
        let selector = serde_json::from_value::<LabelSelector>(g["selector"].clone()).ok();
        if let Err(e) = crate::Selector::from_label_selector(selector.as_ref()) {
            bad(&format!("{path}.selector"), &g["selector"], &e.0);
        }
    }
    if let Some(label) = p["groupBy"].as_str()
        && let Err(msg) = crate::names::validate_label_key(label)
    {
        bad("spec.strategy.progressive.groupBy", &p["groupBy"], &msg);
    }
    for field in ["maxConcurrency", "maxFailures"] {
        let v = &p[field];
        if v.is_null() {
            continue;
        }
        let parsed = serde_json::from_value::<IntOrString>(v.clone())
            .map_err(|e| e.to_string())
            .and_then(|n| scaled(&n, 100, true));
        match parsed {
            Err(msg) => bad(&format!("spec.strategy.progressive.{field}"), v, &msg),
            Ok(0) if field == "maxConcurrency" => bad(
                &format!("spec.strategy.progressive.{field}"),
                v,
                "must be greater than 0",
            ),
            Ok(_) => {}
        }
    }
    for field in ["minSuccessTime", "progressDeadline"] {
        if let Some(text) = p[field].as_str()
            && let Err(msg) = duration_seconds(text)
        {
            bad(
                &format!("spec.strategy.progressive.{field}"),
                &p[field],
                &msg,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(duration_seconds("90s"), Ok(90));
        assert_eq!(duration_seconds("5m"), Ok(300));
        assert_eq!(duration_seconds("1h30m"), Ok(5400));
        assert_eq!(duration_seconds("1.5h"), Ok(5400));
        assert_eq!(duration_seconds("500ms"), Ok(1));
        for bad in ["", "5", "5 m", "-5m", "5d", "m"] {
            assert!(duration_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_and_percentages() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled(&pct("25%"), 10, true), Ok(3));
        assert_eq!(scaled(&pct("25%"), 10, false), Ok(2));
        assert_eq!(scaled(&IntOrString::Int(4), 10, true), Ok(4));
        assert!(scaled(&pct("101%"), 10, true).is_err());
        assert!(scaled(&pct("ten"), 10, true).is_err());
        assert!(scaled(&IntOrString::Int(-1), 10, true).is_err());
    }

    #[test]
    fn problems_name_their_fields() {
        let spec = json!({"selector": {"matchLabels": {"rollout": "careful"}},
            "strategy": {"type": "Progressive", "progressive": {
                "clusterGroups": [{"name": "canary", "selector": {}}, {"name": "canary", "selector": {}}],
                "maxConcurrency": "120%", "maxFailures": "x", "minSuccessTime": "5 minutes",
                "groupBy": "not a label"}}});
        let fields: Vec<String> = problems(&spec).into_iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            [
                "spec.strategy.progressive.clusterGroups[1].name",
                "spec.strategy.progressive.groupBy",
                "spec.strategy.progressive.maxConcurrency",
                "spec.strategy.progressive.maxFailures",
                "spec.strategy.progressive.minSuccessTime",
            ]
        );
        let ok = json!({"selector": {}, "strategy": {"type": "All"}});
        assert!(problems(&ok).is_empty());
    }
}
