//! The registry of kinds: one table that discovery, routing, validation, OpenAPI and tables
//! all read. Built-in kinds are Rust types; other kinds come from CustomResourceDefinition
//! objects and are registered at runtime. Every logical cluster (`""` is the hub) has its
//! own CRDs on top of the shared built-ins.
//!
//! ```text
//!   builtin::core_kinds() ─┐
//!   types::hive::crds() ───┼─ from_crd ─▶ KindInfo ─▶ Kinds (immutable snapshot, per cluster)
//!   CRD objects (runtime) ─┘
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde_json::{Value, json};

use crate::builtin;
use crate::errors::FieldError;
use crate::jsonpath::JsonPath;
use crate::schema::{Schema, SchemaError};

/// Per-kind behaviour beyond the schema: server-set fields and semantic validation.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Defaults that depend on other fields (upstream's `SetDefaults_*` functions: a
    /// container's image pull policy on its image's tag), set after the schema's fixed
    /// defaults, on every write as kube-apiserver defaults every request it decodes.
    fn default(&self, _obj: &mut Value) {}

    /// Sets server-owned fields of a new object (e.g. a Namespace's phase).
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Sets server-owned fields of an updated object.
    fn prepare_update(&self, _obj: &mut Value, _old: &Value) {}

    /// Semantic validation beyond the schema (`old` is set on update).
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        Vec::new()
    }

    /// Field selector keys this kind supports beyond `metadata.name`/`metadata.namespace`,
    /// with the JSON path of each.
    fn selectable_fields(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[]
    }
}

/// The default strategy: schema validation only.
#[derive(Debug)]
pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

/// How a table cell is computed.
#[derive(Clone, Debug)]
pub enum ColumnSource {
    /// A JSONPath into the object (CRD `additionalPrinterColumns`).
    JsonPath(JsonPath),
    /// The number of entries of the maps at these top-level fields (ConfigMap/Secret "Data").
    Count(&'static [&'static str]),
    /// The object's age, rendered by the server as `duration.HumanDuration` does.
    Age,
    /// The creation time as RFC 3339 (the default table's "Created At").
    CreatedAt,
    /// `a/b` of two integers: `a` 0 when absent, `b` the given default (`kubectl get
    /// deploy`'s READY, a Job's COMPLETIONS, one when not set).
    Ratio(JsonPath, JsonPath, i64),
    /// A JSONPath, and what a built-in kind's printer shows when the field is absent (a Go
    /// zero value: `0`; a nil pointer: `<unset>`, `N/A`).
    JsonPathOr(JsonPath, Value),
}

/// A column of `kubectl get` output.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    /// Column name (kubectl upper-cases it).
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean or date.
    pub type_: String,
    /// OpenAPI format (`name` for the name column).
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 is always shown; higher only with `-o wide`.
    pub priority: i64,
    /// How the cell is computed.
    pub source: ColumnSource,
}

/// Where an object keeps what its `scale` subresource shows: field paths (segments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// The desired replicas (`spec.replicas`).
    pub spec_replicas: Vec<String>,
    /// The current replicas (`status.replicas`).
    pub status_replicas: Vec<String>,
    /// The pod selector.
    pub selector: ScaleSelector,
}

/// Where a Scale's `status.selector` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleSelector {
    /// None.
    None,
    /// A LabelSelector (or a ReplicationController's map of labels) at `spec.selector`,
    /// printed as a string: built-in workloads.
    Workload,
    /// A string already in selector form at this path (a CRD's `labelSelectorPath`).
    Path(Vec<String>),
}

impl ScalePaths {
    /// A built-in workload's: `spec.replicas`, `status.replicas`, `spec.selector`.
    pub fn workload() -> Self {
        Self {
            spec_replicas: vec!["spec".into(), "replicas".into()],
            status_replicas: vec!["status".into(), "replicas".into()],
            selector: ScaleSelector::Workload,
        }
    }

    /// A CRD version's `subresources.scale`, if it has one with usable paths (`.spec.x`).
    pub fn of_crd(scale: &Value) -> Option<Self> {
        let path = |v: &Value| -> Option<Vec<String>> {
            let p = v.as_str()?.strip_prefix('.')?;
            let segments: Vec<String> = p.split('.').map(String::from).collect();
            (!segments.iter().any(String::is_empty)).then_some(segments)
        };
        if !scale.is_object() {
            return None;
        }
        Some(Self {
            spec_replicas: path(&scale["specReplicasPath"])?,
            status_replicas: path(&scale["statusReplicasPath"])?,
            selector: path(&scale["labelSelectorPath"])
                .map_or(ScaleSelector::None, ScaleSelector::Path),
        })
    }
}

/// Which rule object names follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (Namespaces).
    Label,
    /// RFC 1035 label: a label starting with a letter (Services).
    Dns1035Label,
    /// Any valid path segment (RBAC kinds: `system:discovery`).
    Path,
}

/// Everything the server knows about one served kind in one version.
#[derive(Clone, Debug)]
pub struct KindInfo {
    /// API group (empty for core).
    pub group: String,
    /// Served version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Kind of lists.
    pub list_kind: String,
    /// Plural resource name, as in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names (`ss`, `cd`…).
    pub short_names: Vec<String>,
    /// Categories (`all`…).
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether the `status` subresource exists (status then changes only through it).
    pub status_subresource: bool,
    /// Serves the `scale` subresource (an autoscaling/v1 Scale), with where its replicas
    /// and selector are.
    pub scale: Option<ScalePaths>,
    /// Whether `metadata.generation` is maintained (bumped when the spec changes).
    pub tracks_generation: bool,
    /// Whether strategic merge patch uses this kind's own patch metadata (built-in kinds).
    /// Other kinds get merge-patch semantics from strategic patches.
    pub strategic_merge: bool,
    /// Name validation rule.
    pub name_rule: NameRule,
    /// The compiled root schema (`metadata` is governed by the shared ObjectMeta schema).
    pub schema: Arc<Schema>,
    /// The root schema as published in OpenAPI.
    pub published_schema: Value,
    /// Extra named schemas the published schema refers to (`$ref`), keyed by OpenAPI name.
    pub published_definitions: BTreeMap<String, Arc<Value>>,
    /// Table columns after `Name`.
    pub columns: Vec<PrinterColumn>,
    /// The version objects are stored in (equal to `version` for single-version kinds).
    pub storage_version: String,
    /// The CRD this kind comes from, if any.
    pub crd_name: Option<String>,
    /// A review (SelfSubjectAccessReview…): only `create`, answered and never stored.
    pub review: bool,
    /// Per-kind behaviour.
    pub strategy: Arc<dyn Strategy>,
}

impl KindInfo {
    /// The `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`: the resource's name in messages and the store key.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind` or `Kind.group`, as used in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Whether this is core/v1 Namespace (deleted one at a time, through termination).
    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// Verbs served for the main resource.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.review {
            return vec!["create"];
        }
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        // As kube-apiserver: namespaces are deleted one at a time.
        if self.is_namespace() {
            verbs.retain(|v| *v != "deletecollection");
        }
        verbs
    }
}

/// One API group with its served versions, preferred first.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    /// Group name (empty for core).
    pub name: String,
    /// Versions, highest priority first.
    pub versions: Vec<String>,
}

/// An immutable snapshot of the kinds served in one logical cluster.
#[derive(Debug, Default)]
pub struct Kinds {
    kinds: Vec<Arc<KindInfo>>,
    by_resource: HashMap<(String, String, String), usize>,
}

impl Kinds {
    fn build(kinds: Vec<Arc<KindInfo>>) -> Self {
        let mut by_resource = HashMap::new();
        for (i, k) in kinds.iter().enumerate() {
            by_resource
                .entry((k.group.clone(), k.version.clone(), k.plural.clone()))
                .or_insert(i);
        }
        Self { kinds, by_resource }
    }

    /// Looks a kind up by group, version and plural resource name.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<KindInfo>> {
        self.by_resource
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .map(|&i| &self.kinds[i])
    }

    /// Looks a kind up by group, version and kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Arc<KindInfo>> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    /// Every served kind.
    pub fn all(&self) -> &[Arc<KindInfo>] {
        &self.kinds
    }

    /// Kinds of one group-version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<KindInfo>> + 'a {
        self.kinds
            .iter()
            .filter(move |k| k.group == group && k.version == version)
    }

    /// The groups served, each with versions in priority order (core group first).
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for k in &self.kinds {
            let versions = groups.entry(&k.group).or_default();
            if !versions.contains(&k.version) {
                versions.push(k.version.clone());
            }
        }
        let mut out: Vec<GroupInfo> = groups
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by(|a, b| compare_versions(b, a));
                GroupInfo {
                    name: name.to_string(),
                    versions,
                }
            })
            .collect();
        out.sort_by(|a, b| (!a.name.is_empty(), &a.name).cmp(&(!b.name.is_empty(), &b.name)));
        out
    }
}

/// Orders Kubernetes versions by priority: GA > beta > alpha, then by number; other
/// strings sort after all of them alphabetically (apimachinery `CompareKubeAwareVersionStrings`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, stage, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => sa.cmp(&sb).then(ma.cmp(&mb)).then(na.cmp(&nb)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

/// The kinds of every logical cluster.
#[derive(Debug)]
pub struct Registry {
    builtin: Vec<Arc<KindInfo>>,
    meta_schema: Arc<Schema>,
    meta_published: Value,
    clusters: RwLock<HashMap<String, ClusterKinds>>,
    empty: Arc<Kinds>,
    /// The kinds of every CRD some cluster serves, by the CRD's name and spec (all they
    /// are made of): a fleet's clusters installing the same operator share one compiled
    /// schema.
    compiled_crds: Mutex<HashMap<String, Vec<Weak<KindInfo>>>>,
}

#[derive(Debug, Default)]
struct ClusterKinds {
    crds: BTreeMap<String, Vec<Arc<KindInfo>>>,
    /// CRD name → the newest resourceVersion observed of it, created, changed or deleted:
    /// CRDs are observed from the write that served them and from the change feed, in
    /// either order, and an older observation never undoes a newer one.
    seen: HashMap<String, u64>,
    snapshot: Arc<Kinds>,
}

impl ClusterKinds {
    /// Records an observation at `rv`; false if a newer one was seen already.
    fn observe(&mut self, name: &str, rv: u64) -> bool {
        let seen = self.seen.entry(name.to_string()).or_default();
        if rv < *seen {
            return false;
        }
        *seen = rv;
        true
    }
}

/// An object's `metadata.resourceVersion` (0: none).
fn resource_version(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub fn new() -> Self {
        let builtin = builtin::kinds();
        let (meta_published, meta_schema) = builtin::object_meta_schema();
        let empty = Arc::new(Kinds::build(builtin.clone()));
        Self {
            builtin,
            meta_schema: Arc::new(meta_schema),
            meta_published,
            clusters: RwLock::new(HashMap::new()),
            empty,
            compiled_crds: Mutex::default(),
        }
    }

    /// The shared ObjectMeta schema used to prune and validate `metadata`.
    pub fn meta_schema(&self) -> &Schema {
        &self.meta_schema
    }

    /// The published ObjectMeta schema.
    pub fn meta_published(&self) -> &Value {
        &self.meta_published
    }

    /// The kinds served in a logical cluster.
    pub fn kinds(&self, cluster: &str) -> Arc<Kinds> {
        let clusters = self.clusters.read().expect("registry lock");
        clusters
            .get(cluster)
            .map(|c| c.snapshot.clone())
            .unwrap_or_else(|| self.empty.clone())
    }

    /// Registers (or re-registers) the kinds of a CRD object, unless a newer version of it
    /// (or its deletion) was observed already. A CRD naming a resource that a built-in kind
    /// already serves is stored but does not replace the built-in.
    pub fn install_crd(&self, cluster: &str, crd: &Value) -> Result<(), SchemaError> {
        let infos = self.crd_kinds(crd)?;
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut clusters = self.clusters.write().expect("registry lock");
        let entry = clusters.entry(cluster.to_string()).or_default();
        if !entry.observe(&name, resource_version(crd)) {
            return Ok(());
        }
        entry.crds.insert(name, infos);
        entry.snapshot = Arc::new(self.snapshot(&entry.crds));
        Ok(())
    }

    /// A CRD's kinds, compiled unless a cluster serves the same CRD (name and spec) already.
    fn crd_kinds(&self, crd: &Value) -> Result<Vec<Arc<KindInfo>>, SchemaError> {
        let key = serde_json::to_string(&(&crd["metadata"]["name"], &crd["spec"]))
            .expect("JSON serialises");
        let mut compiled = self.compiled_crds.lock().expect("compiled CRDs lock");
        if let Some(infos) = compiled
            .get(&key)
            .and_then(|kept| kept.iter().map(Weak::upgrade).collect::<Option<Vec<_>>>())
        {
            return Ok(infos);
        }
        let infos: Vec<Arc<KindInfo>> = from_crd(crd, None)?.into_iter().map(Arc::new).collect();
        compiled.retain(|_, kept| kept.iter().all(|k| k.strong_count() > 0));
        compiled.insert(key, infos.iter().map(Arc::downgrade).collect());
        Ok(infos)
    }

    /// The logical clusters with CRDs registered.
    pub fn clusters_with_crds(&self) -> Vec<String> {
        let clusters = self.clusters.read().expect("registry lock");
        clusters.keys().cloned().collect()
    }

    /// Brings a cluster's CRDs in line with a list of them made at `listed_at` (every
    /// change up to it reflected): listed ones are installed, and registered ones missing
    /// from it removed, unless observed after it. Returns those that do not compile.
    pub fn reconcile_crds(
        &self,
        cluster: &str,
        crds: &[Value],
        listed_at: u64,
    ) -> Vec<(String, SchemaError)> {
        let mut failed = Vec::new();
        for crd in crds {
            if let Err(e) = self.install_crd(cluster, crd) {
                let name = crd["metadata"]["name"].as_str().unwrap_or_default();
                failed.push((name.to_string(), e));
            }
        }
        let listed: Vec<&str> = crds
            .iter()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        let gone: Vec<String> = {
            let clusters = self.clusters.read().expect("registry lock");
            clusters
                .get(cluster)
                .map(|e| {
                    e.crds
                        .keys()
                        .filter(|n| !listed.contains(&n.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        for name in gone {
            self.remove_crd(cluster, &name, listed_at);
        }
        failed
    }

    /// Unregisters the kinds of a CRD deleted at `rv`, unless it was observed after that.
    pub fn remove_crd(&self, cluster: &str, name: &str, rv: u64) {
        let mut clusters = self.clusters.write().expect("registry lock");
        if let Some(entry) = clusters.get_mut(cluster)
            && entry.observe(name, rv)
            && entry.crds.remove(name).is_some()
        {
            entry.snapshot = Arc::new(self.snapshot(&entry.crds));
        }
    }

    fn snapshot(&self, crds: &BTreeMap<String, Vec<Arc<KindInfo>>>) -> Kinds {
        let mut kinds = self.builtin.clone();
        for infos in crds.values() {
            for info in infos {
                let taken = kinds
                    .iter()
                    .any(|k| k.group == info.group && k.plural == info.plural);
                let version_known = kinds.iter().any(|k| {
                    k.group == info.group && k.version == info.version && k.plural == info.plural
                });
                if !version_known && (!taken || info.crd_name.is_some()) {
                    if taken
                        && kinds.iter().any(|k| {
                            k.group == info.group && k.plural == info.plural && k.crd_name.is_none()
                        })
                    {
                        continue;
                    }
                    kinds.push(info.clone());
                }
            }
        }
        Kinds::build(kinds)
    }
}

/// Builds the kinds a CustomResourceDefinition serves (one per served version).
/// `strategy` overrides the default strategy (used by built-in Hive kinds).
pub fn from_crd(
    crd: &Value,
    strategy: Option<Arc<dyn Strategy>>,
) -> Result<Vec<KindInfo>, SchemaError> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let str_at = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = str_at(&names["kind"]);
    let plural = str_at(&names["plural"]);
    let singular = match names["singular"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => kind.to_lowercase(),
    };
    let list_kind = match names["listKind"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{kind}List"),
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .map(|v| str_at(&v["name"]))
        .unwrap_or_default();
    let strategy = strategy.unwrap_or_else(|| Arc::new(DefaultStrategy));
    let mut out = Vec::new();
    for v in &versions {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let version = str_at(&v["name"]);
        let root = v["schema"]["openAPIV3Schema"].clone();
        let root = if root.is_object() {
            root
        } else {
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        };
        let schema = Schema::compile(&root)?;
        let mut published = root.clone();
        if let Some(props) = published
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            props.insert(
                "metadata".into(),
                json!({"$ref": format!("#/components/schemas/{}", builtin::OBJECT_META)}),
            );
            props
                .entry("apiVersion")
                .or_insert(json!({"type": "string", "description": builtin::API_VERSION_DOC}));
            props
                .entry("kind")
                .or_insert(json!({"type": "string", "description": builtin::KIND_DOC}));
        }
        let columns = crd_columns(v.get("additionalPrinterColumns"));
        out.push(KindInfo {
            group: str_at(&spec["group"]),
            version,
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            status_subresource: v["subresources"]["status"].is_object(),
            scale: ScalePaths::of_crd(&v["subresources"]["scale"]),
            tracks_generation: true,
            strategic_merge: false,
            name_rule: NameRule::Subdomain,
            schema: Arc::new(schema),
            published_schema: published,
            published_definitions: BTreeMap::new(),
            columns,
            storage_version: storage_version.clone(),
            crd_name: crd["metadata"]["name"].as_str().map(String::from),
            review: false,
            strategy: strategy.clone(),
        });
    }
    Ok(out)
}

fn crd_columns(spec: Option<&Value>) -> Vec<PrinterColumn> {
    let list = spec.and_then(Value::as_array).cloned().unwrap_or_default();
    if list.is_empty() {
        return vec![PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: builtin::CREATION_TIMESTAMP_DOC.into(),
            priority: 0,
            source: ColumnSource::JsonPath(
                JsonPath::parse(".metadata.creationTimestamp").expect("static path"),
            ),
        }];
    }
    list.iter()
        .filter_map(|c| {
            let path = c["jsonPath"].as_str()?;
            Some(PrinterColumn {
                name: c["name"].as_str()?.to_string(),
                type_: c["type"].as_str().unwrap_or("string").to_string(),
                format: c["format"].as_str().unwrap_or_default().to_string(),
                description: c["description"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| {
                        format!("Custom resource definition column (in JSONPath format): {path}")
                    }),
                priority: c["priority"].as_i64().unwrap_or(0),
                source: ColumnSource::JsonPath(JsonPath::parse(path).ok()?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd(rv: u64) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com", "resourceVersion": rv.to_string()},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    /// CRDs are observed from the write and from the change feed, in either order: an
    /// older observation never undoes a newer one.
    #[test]
    fn crd_observations_apply_in_version_order() {
        let r = Registry::new();
        let served = |r: &Registry| r.kinds("c").get("example.com", "v1", "widgets").is_some();
        r.install_crd("c", &widget_crd(5)).unwrap();
        assert!(served(&r));
        r.install_crd("c", &widget_crd(3)).unwrap();
        r.remove_crd("c", "widgets.example.com", 4);
        assert!(
            served(&r),
            "late observations of older versions are ignored"
        );
        r.remove_crd("c", "widgets.example.com", 6);
        assert!(!served(&r));
        r.install_crd("c", &widget_crd(5)).unwrap();
        assert!(
            !served(&r),
            "a version older than the deletion does not come back"
        );
        r.install_crd("c", &widget_crd(7)).unwrap();
        assert!(served(&r), "created again");
        // A list made before a newer observation neither removes nor downgrades it.
        assert!(r.reconcile_crds("c", &[], 6).is_empty());
        assert!(served(&r));
        r.reconcile_crds("c", &[], 8);
        assert!(!served(&r), "missing from a newer list: gone");
    }

    /// Clusters installing the same CRD share its compiled kinds; a CRD differing in any of
    /// its spec gets its own, and none is kept once no cluster serves it.
    #[test]
    fn clusters_serving_the_same_crd_share_its_compiled_kinds() {
        let r = Registry::new();
        let widget = |r: &Registry, c: &str| {
            r.kinds(c)
                .get("example.com", "v1", "widgets")
                .cloned()
                .unwrap()
        };
        r.install_crd("a", &widget_crd(1)).unwrap();
        r.install_crd("b", &widget_crd(2)).unwrap();
        assert!(
            Arc::ptr_eq(&widget(&r, "a"), &widget(&r, "b")),
            "one compile"
        );
        let mut other = widget_crd(3);
        other["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"] =
            json!({"size": {"type": "integer"}});
        r.install_crd("c", &other).unwrap();
        assert!(!Arc::ptr_eq(&widget(&r, "a"), &widget(&r, "c")));
        assert!(widget(&r, "c").schema.properties.contains_key("size"));
        assert!(!widget(&r, "a").schema.properties.contains_key("size"));
        for c in ["a", "b", "c"] {
            r.remove_crd(c, "widgets.example.com", 10);
        }
        r.install_crd("d", &widget_crd(11)).unwrap();
        let kept = r.compiled_crds.lock().unwrap().len();
        assert_eq!(kept, 1, "only the CRD a cluster still serves");
    }

    #[test]
    fn version_priority() {
        let mut v = vec![
            "v1alpha1", "v2", "foo", "v1beta2", "v1", "v1beta1", "v10", "bar",
        ];
        v.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(
            v,
            vec![
                "v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"
            ]
        );
    }

    #[test]
    fn builtin_kinds_are_served() {
        let r = Registry::new();
        let kinds = r.kinds("");
        for (g, v, p) in [
            ("", "v1", "namespaces"),
            ("", "v1", "configmaps"),
            ("", "v1", "secrets"),
            ("", "v1", "events"),
            ("hive.openshift.io", "v1", "syncsets"),
            ("hive.openshift.io", "v1", "selectorsyncsets"),
            ("hive.openshift.io", "v1", "clusterdeployments"),
            ("hiveinternal.openshift.io", "v1alpha1", "clustersyncs"),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        ] {
            assert!(kinds.get(g, v, p).is_some(), "{g}/{v}/{p}");
        }
        let groups = kinds.groups();
        assert_eq!(groups[0].name, "");
        let ss = kinds.get("hive.openshift.io", "v1", "syncsets").unwrap();
        assert_eq!(ss.short_names, vec!["ss"]);
        assert!(ss.namespaced && ss.status_subresource);
        let sss = kinds
            .get("hive.openshift.io", "v1", "selectorsyncsets")
            .unwrap();
        assert!(!sss.namespaced);
    }

    #[test]
    fn crds_register_per_cluster() {
        let r = Registry::new();
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced",
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        });
        r.install_crd("member-1", &crd).unwrap();
        assert!(
            r.kinds("member-1")
                .get("example.com", "v1", "widgets")
                .is_some()
        );
        assert!(r.kinds("").get("example.com", "v1", "widgets").is_none());
        let w = r
            .kinds("member-1")
            .get("example.com", "v1beta1", "widgets")
            .unwrap()
            .clone();
        assert_eq!(w.storage_version, "v1");
        assert_eq!(w.list_kind, "WidgetList");
        let groups = r.kinds("member-1").groups();
        let g = groups.iter().find(|g| g.name == "example.com").unwrap();
        assert_eq!(g.versions, vec!["v1", "v1beta1"]);
        r.remove_crd("member-1", "widgets.example.com", 1);
        assert!(
            r.kinds("member-1")
                .get("example.com", "v1", "widgets")
                .is_none()
        );
    }
}
