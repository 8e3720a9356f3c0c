//! What the controller knows of hub objects: compact, parsed forms of ClusterDeployments and
//! (Selector)SyncSets, and references to objects on target clusters.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use syncsets_types::Selector;
use syncsets_types::hive::{
    PAUSE_ANNOTATION, SelectorSyncSetSpec, SyncResourceReference, SyncSetCommonSpec, SyncSetSpec,
    UsableSets,
};

/// Hive's annotation that marks a cluster being relocated to another hub.
pub const RELOCATE_ANNOTATION: &str = "hive.openshift.io/relocate";
/// Hive's annotation that pauses every controller for a cluster.
pub const RECONCILE_PAUSE_ANNOTATION: &str = "hive.openshift.io/reconcile-pause";

/// Group resources of the hub objects the controller follows.
pub mod resources {
    /// ClusterDeployments.
    pub const CLUSTER_DEPLOYMENTS: &str = "clusterdeployments.hive.openshift.io";
    /// SyncSets.
    pub const SYNCSETS: &str = "syncsets.hive.openshift.io";
    /// SelectorSyncSets.
    pub const SELECTOR_SYNCSETS: &str = "selectorsyncsets.hive.openshift.io";
    /// ClusterSyncs.
    pub const CLUSTER_SYNCS: &str = "clustersyncs.hiveinternal.openshift.io";
    /// ClusterSyncLeases.
    pub const CLUSTER_SYNC_LEASES: &str = "clustersyncleases.hiveinternal.openshift.io";
    /// Secrets.
    pub const SECRETS: &str = "secrets";
    /// RolloutPolicies.
    pub const ROLLOUT_POLICIES: &str = "rolloutpolicies.syncsets.io";
    /// ControllerRevisions (sets' revisions among them).
    pub const CONTROLLER_REVISIONS: &str = "controllerrevisions.apps";
}

/// A cluster's work-queue key: `namespace/name` of its ClusterDeployment.
pub fn cluster_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Splits a work-queue key.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
}

/// Go's `strconv.ParseBool` truth, as Hive reads its annotations.
fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// A ClusterDeployment as the controller sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// Labels (what selectors and templates read).
    pub labels: BTreeMap<String, String>,
    /// `spec.installed`.
    pub installed: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `hive.openshift.io/syncset-pause` or `reconcile-pause` is true.
    pub paused: bool,
    /// `hive.openshift.io/relocate` is present.
    pub relocating: bool,
    /// The Secret (same namespace) holding the admin kubeconfig.
    pub kubeconfig_secret: Option<String>,
    /// The SelectorSyncSets it may be attached to (whoever labelled it may `use` them).
    pub usable_sets: UsableSets,
    /// The SelectorSyncSets whoever wrote its kubeconfig Secret may `use` (from the Secret,
    /// filled in by the cache).
    pub kubeconfig_usable_sets: UsableSets,
    /// When it was installed (`status.installedTimestamp`), else created: where Hive's
    /// time-to-first-apply metrics count from.
    pub installed_at: Option<jiff::Timestamp>,
    /// When its `Unreachable` condition last changed, if it has one (Hive's metrics count
    /// from it when it is later).
    pub reachability_changed_at: Option<jiff::Timestamp>,
}

/// Hive's annotation putting a SyncSet in a group for its time-to-first-apply metric.
pub const METRICS_GROUP_ANNOTATION: &str = "hive.openshift.io/syncset-metrics-group";

/// A timestamp field, if it holds one.
fn timestamp(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()?.parse().ok()
}

impl Cluster {
    /// Reads a ClusterDeployment object.
    pub fn from_object(obj: &Value) -> Self {
        let meta = &obj["metadata"];
        let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let annotation = |k: &str| meta["annotations"][k].as_str();
        Self {
            namespace: str_of(&meta["namespace"]),
            name: str_of(&meta["name"]),
            uid: str_of(&meta["uid"]),
            labels: syncsets_store::labels_of(obj),
            installed: obj["spec"]["installed"].as_bool().unwrap_or(false),
            deleting: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            paused: annotation(PAUSE_ANNOTATION).is_some_and(parse_bool)
                || annotation(RECONCILE_PAUSE_ANNOTATION).is_some_and(parse_bool),
            relocating: annotation(RELOCATE_ANNOTATION).is_some(),
            kubeconfig_secret: obj["spec"]["clusterMetadata"]["adminKubeconfigSecretRef"]["name"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            usable_sets: UsableSets::of(&meta["annotations"]),
            kubeconfig_usable_sets: UsableSets::Any,
            installed_at: timestamp(&obj["status"]["installedTimestamp"])
                .or_else(|| timestamp(&meta["creationTimestamp"])),
            reachability_changed_at: obj["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Unreachable"))
                .and_then(|c| timestamp(&c["lastTransitionTime"])),
        }
    }

    /// The work-queue key.
    pub fn key(&self) -> String {
        cluster_key(&self.namespace, &self.name)
    }

    /// Why nothing is synced to this cluster now, if so (Hive's order of checks).
    pub fn skip_reason(&self) -> Option<&'static str> {
        if self.paused {
            Some("syncing is paused")
        } else if self.relocating {
            Some("the cluster is being relocated")
        } else if self.deleting {
            Some("the cluster is being deleted")
        } else if !self.installed {
            Some("the cluster is not installed")
        } else {
            None
        }
    }
}

/// SyncSet or SelectorSyncSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// A namespaced SyncSet naming its clusters.
    SyncSet,
    /// A cluster-scoped SelectorSyncSet selecting its clusters by label.
    SelectorSyncSet,
}

impl SetKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyncSet => "SyncSet",
            Self::SelectorSyncSet => "SelectorSyncSet",
        }
    }

    /// The group resource of the kind.
    pub fn resource(self) -> &'static str {
        match self {
            Self::SyncSet => resources::SYNCSETS,
            Self::SelectorSyncSet => resources::SELECTOR_SYNCSETS,
        }
    }

    /// The kind named `name` (`SyncSet`, `SelectorSyncSet`), if a set's.
    pub fn of_name(name: &str) -> Option<Self> {
        [Self::SyncSet, Self::SelectorSyncSet]
            .into_iter()
            .find(|k| k.as_str() == name)
    }

    /// The kind of a group resource, if it is a set's.
    pub fn of_resource(resource: &str) -> Option<Self> {
        [Self::SyncSet, Self::SelectorSyncSet]
            .into_iter()
            .find(|k| k.resource() == resource)
    }
}

impl fmt::Display for SetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which clusters a set applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// A SyncSet's `clusterDeploymentRefs` (names in its namespace).
    Refs(Vec<String>),
    /// A SelectorSyncSet's `clusterDeploymentSelector` (a missing or invalid one matches
    /// nothing).
    Selector(Selector),
}

/// A SyncSet or SelectorSyncSet as the controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SetDef {
    /// SyncSet or SelectorSyncSet.
    pub kind: SetKind,
    /// Namespace (`""` for SelectorSyncSets).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.creationTimestamp`.
    pub created: Option<jiff::Timestamp>,
    /// A SyncSet's `hive.openshift.io/syncset-metrics-group` annotation: the group its
    /// time-to-first-apply is reported under (Hive's `none` without one).
    pub metrics_group: Option<String>,
    /// Which clusters it applies to.
    pub targets: Targets,
    /// What to apply and how.
    pub spec: SyncSetCommonSpec,
    /// The set is being deleted (it no longer applies anywhere).
    pub deleting: bool,
    /// Its labels (which RolloutPolicy governs it).
    pub labels: BTreeMap<String, String>,
    /// What its annotations ask of its rollout.
    pub asks: RolloutAsks,
}

/// What a set's annotations ask of its rollout (see `syncsets_types::rollout`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutAsks {
    /// `syncsets.io/rollout-paused` is true: no further wave starts.
    pub paused: bool,
    /// `syncsets.io/rollout-resumed-at` (an RFC 3339 time): a halted rollout resumes when
    /// it is new and later than the halt.
    pub resumed_at: Option<String>,
    /// `syncsets.io/rollout-undo`: the revision to roll back to (empty or `previous`: the
    /// one the rollout started from).
    pub undo: Option<String>,
}

impl RolloutAsks {
    fn of(annotations: &Value) -> Self {
        use syncsets_types::rollout::{PAUSED_ANNOTATION, RESUMED_ANNOTATION, UNDO_ANNOTATION};
        Self {
            paused: annotations[PAUSED_ANNOTATION]
                .as_str()
                .is_some_and(parse_bool),
            resumed_at: annotations[RESUMED_ANNOTATION].as_str().map(str::to_string),
            undo: annotations[UNDO_ANNOTATION].as_str().map(str::to_string),
        }
    }
}

impl SetDef {
    /// Reads a SyncSet or SelectorSyncSet object; `None` if its spec does not decode (the
    /// API server validated it, so only a schema change could cause that).
    pub fn from_object(kind: SetKind, obj: &Value) -> Option<Self> {
        let meta = &obj["metadata"];
        let spec = obj
            .get("spec")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        let (targets, common) = match kind {
            SetKind::SyncSet => {
                let spec: SyncSetSpec = serde_json::from_value(spec).ok()?;
                let refs = spec
                    .cluster_deployment_refs
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                (Targets::Refs(refs), spec.common)
            }
            SetKind::SelectorSyncSet => {
                let spec: SelectorSyncSetSpec = serde_json::from_value(spec).ok()?;
                (Targets::Selector(spec.selector()), spec.common)
            }
        };
        Some(Self {
            kind,
            namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
            uid: meta["uid"].as_str().unwrap_or_default().to_string(),
            generation: meta["generation"].as_i64().unwrap_or(1),
            created: timestamp(&meta["creationTimestamp"]),
            metrics_group: meta["annotations"][METRICS_GROUP_ANNOTATION]
                .as_str()
                .filter(|g| !g.is_empty())
                .map(str::to_string),
            targets,
            spec: common,
            deleting: meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            labels: syncsets_store::labels_of(obj),
            asks: RolloutAsks::of(&meta["annotations"]),
        })
    }

    /// This set as it was at an earlier revision: `spec` (a revision's) with this set's
    /// identity, targets and labels.
    pub fn at_revision(&self, generation: i64, spec: SyncSetCommonSpec) -> Self {
        Self {
            generation,
            spec,
            ..self.clone()
        }
    }

    /// `namespace/name` of a SyncSet, the name of a SelectorSyncSet.
    pub fn display_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Whether the set applies to a cluster.
    pub fn applies_to(&self, cluster: &Cluster) -> bool {
        if self.deleting {
            return false;
        }
        match &self.targets {
            Targets::Refs(names) => {
                self.namespace == cluster.namespace && names.contains(&cluster.name)
            }
            Targets::Selector(selector) => {
                selector.matches(&cluster.labels)
                    && cluster.usable_sets.allows(&self.name)
                    && cluster.kubeconfig_usable_sets.allows(&self.name)
            }
        }
    }

    /// `Sync` mode: applied objects are tracked and deleted when no longer declared.
    pub fn sync_mode(&self) -> bool {
        self.spec.resource_apply_mode.as_deref() == Some("Sync")
    }

    /// Secrets on the hub this set copies to its clusters, as (namespace, name); mappings
    /// that may not be read ([`Self::secret_source`]) are left out.
    pub fn source_secrets(&self) -> impl Iterator<Item = (String, String)> + '_ {
        (0..self.spec.secret_mappings.len()).filter_map(|i| self.secret_source(i).ok())
    }

    /// The hub Secret (namespace, name) a set's secret mapping `index` copies, or why it may
    /// not: a SyncSet reads only its own namespace (its source namespace defaults to it),
    /// a SelectorSyncSet must name one. Admission refuses such sets; this holds for any
    /// that were stored before.
    pub fn secret_source(&self, index: usize) -> Result<(String, String), String> {
        let mapping = &self.spec.secret_mappings[index];
        let name = mapping.source_ref.name.clone();
        let source_ns = mapping
            .source_ref
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty());
        match (self.kind, source_ns) {
            (SetKind::SyncSet, None) => Ok((self.namespace.clone(), name)),
            (SetKind::SyncSet, Some(ns)) if ns != self.namespace => {
                Err(format!("source in wrong namespace for secret {index}"))
            }
            (_, Some(ns)) => Ok((ns, name)),
            (SetKind::SelectorSyncSet, None) => {
                Err(format!("source namespace missing for secret {index}"))
            }
        }
    }
}

/// An object on a target cluster, as recorded in `resourcesToDelete`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjRef {
    /// The reference of an object.
    pub fn of(obj: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Self {
            api_version: s(&obj["apiVersion"]),
            kind: s(&obj["kind"]),
            namespace: s(&obj["metadata"]["namespace"]),
            name: s(&obj["metadata"]["name"]),
        }
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// Same object: group, kind, namespace and name equal (the version does not matter:
    /// `v1beta1` and `v1` of one kind are one object in storage).
    pub fn same_object(&self, other: &ObjRef) -> bool {
        self.group() == other.group()
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }

    /// Whether this declared object is `tracked`: the same object, where a declaration
    /// without a namespace also stands for the object in `default` (where it is applied
    /// when its kind turns out to be namespaced).
    pub fn covers(&self, tracked: &ObjRef) -> bool {
        self.group() == tracked.group()
            && self.kind == tracked.kind
            && self.name == tracked.name
            && (self.namespace == tracked.namespace
                || (self.namespace.is_empty() && tracked.namespace == "default"))
    }

    /// The ClusterSync form.
    pub fn to_status(&self) -> SyncResourceReference {
        SyncResourceReference {
            api_version: self.api_version.clone(),
            kind: Some(self.kind.clone()),
            name: self.name.clone(),
            namespace: (!self.namespace.is_empty()).then(|| self.namespace.clone()),
        }
    }

    /// From the ClusterSync form.
    pub fn from_status(r: &SyncResourceReference) -> Self {
        Self {
            api_version: r.api_version.clone(),
            kind: r.kind.clone().unwrap_or_default(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name: r.name.clone(),
        }
    }
}

impl fmt::Display for ObjRef {
    /// `v1, Kind=ConfigMap ns/name`, as Hive prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (group, version) = match self.api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        if group.is_empty() {
            write!(f, "{version}, Kind={}", self.kind)?;
        } else {
            write!(f, "{group}/{version}, Kind={}", self.kind)?;
        }
        write!(f, " {}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncsets_types::hive::USABLE_SETS_ANNOTATION;

    #[test]
    fn reads_cluster_deployments_as_hive_does() {
        let cd = json!({
            "metadata": {"name": "c1", "namespace": "fleet", "uid": "u",
                "labels": {"env": "prod"},
                "annotations": {"hive.openshift.io/syncset-pause": "True"}},
            "spec": {"installed": true, "clusterMetadata": {"adminKubeconfigSecretRef": {"name": "c1-kc"}}}
        });
        let c = Cluster::from_object(&cd);
        assert_eq!(c.key(), "fleet/c1");
        assert!(c.paused && c.installed && !c.deleting);
        assert_eq!(c.kubeconfig_secret.as_deref(), Some("c1-kc"));
        assert_eq!(c.skip_reason(), Some("syncing is paused"));
        let mut unpaused = cd.clone();
        unpaused["metadata"]["annotations"]["hive.openshift.io/syncset-pause"] = json!("no");
        assert_eq!(Cluster::from_object(&unpaused).skip_reason(), None);
        unpaused["spec"]["installed"] = json!(false);
        assert!(Cluster::from_object(&unpaused).skip_reason().is_some());
    }

    #[test]
    fn sets_target_clusters() {
        let c = Cluster {
            namespace: "fleet".into(),
            name: "c1".into(),
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            ..Cluster::default()
        };
        let ss = SetDef::from_object(
            SetKind::SyncSet,
            &json!({"metadata": {"name": "s", "namespace": "fleet", "generation": 2},
                    "spec": {"clusterDeploymentRefs": [{"name": "c1"}]}}),
        )
        .unwrap();
        assert!(ss.applies_to(&c));
        assert_eq!(ss.generation, 2);
        let sss = |sel: Value| {
            SetDef::from_object(
                SetKind::SelectorSyncSet,
                &json!({"metadata": {"name": "x"}, "spec": {"clusterDeploymentSelector": sel}}),
            )
            .unwrap()
        };
        assert!(sss(json!({"matchLabels": {"env": "prod"}})).applies_to(&c));
        assert!(!sss(json!({"matchLabels": {"env": "dev"}})).applies_to(&c));
        assert!(
            sss(json!({})).applies_to(&c),
            "an empty selector matches all"
        );
        assert!(!sss(Value::Null).applies_to(&c), "no selector matches none");
        // A cluster labelled by someone who may use only some sets gets only those.
        let only = |annotation: &str| Cluster {
            usable_sets: UsableSets::of(&json!({USABLE_SETS_ANNOTATION: annotation})),
            ..c.clone()
        };
        let prod = sss(json!({"matchLabels": {"env": "prod"}}));
        assert!(!prod.applies_to(&only("")));
        assert!(!prod.applies_to(&only("y,z")));
        assert!(prod.applies_to(&only("w,x")));
        assert!(
            ss.applies_to(&only("")),
            "a SyncSet names its clusters itself"
        );
    }

    #[test]
    fn references_compare_without_version() {
        let a = ObjRef::of(
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}),
        );
        let mut b = a.clone();
        b.api_version = "apps/v1beta1".into();
        assert!(a.same_object(&b));
        assert_eq!(a.to_string(), "apps/v1, Kind=Deployment n/d");
        let cm = ObjRef::of(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        );
        assert_eq!(cm.to_string(), "v1, Kind=ConfigMap /c");
        assert_eq!(ObjRef::from_status(&cm.to_status()), cm);
    }
}
