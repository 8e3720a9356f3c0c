//! Kubernetes RBAC, evaluated as kube-apiserver does it (allow-only, no deny rules):
//!
//! ```text
//!   request attributes ─▶ system:masters? allow
//!                       ─▶ ClusterRoleBindings for the user  → ClusterRole rules (everywhere)
//!                       ─▶ RoleBindings in the request's namespace → Role / ClusterRole rules
//!                       ─▶ the first rule that matches allows; none: 403
//! ```
//!
//! Matching follows `k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go`: `*` for
//! verbs, groups and resources; `*/sub` for a subresource of any resource (`pods/*` is no
//! wildcard); resourceNames restrict names (empty: any); nonResourceURLs match exactly or
//! by a trailing-`*` prefix. ClusterRoles with an `aggregationRule` take the rules of the
//! ClusterRoles their selectors match, as Kubernetes' aggregation controller writes them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use syncsets_types::{LabelSelector, Selector};

use crate::authn::UserInfo;

/// The group every request of whose members is allowed.
pub const MASTERS: &str = "system:masters";

/// A PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Verbs (`*`: any).
    pub verbs: Vec<String>,
    /// API groups (`""`: core, `*`: any).
    pub api_groups: Vec<String>,
    /// Resources (`*`, `resource/sub`, `*/sub`).
    pub resources: Vec<String>,
    /// Names (empty: any).
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`*` or a trailing `*` for a prefix).
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    /// Reads a PolicyRule.
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// The PolicyRule JSON.
    pub fn to_value(&self) -> Value {
        let mut v = json!({"verbs": self.verbs});
        for (field, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                v[field] = json!(list);
            }
        }
        v
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        match &a.path {
            Some(path) => self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || u == path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            }),
            None => {
                self.allows_resource(a)
                    && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
            }
        }
    }

    /// Whether the rule grants `a`'s verb on its group, resource and subresource, whatever
    /// the object's name.
    fn allows_resource(&self, a: &Attributes) -> bool {
        self.verb_matches(&a.verb) && {
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            self.api_groups
                .iter()
                .any(|g| g == "*" || *g == a.api_group)
                && self.resources.iter().any(|r| {
                    r == "*"
                        || *r == combined
                        || (!a.subresource.is_empty()
                            && r.strip_prefix("*/") == Some(a.subresource.as_str()))
                })
        }
    }
}

/// What a request asks to do (kube-apiserver's authorizer attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection, … (non-resource
    /// requests: the HTTP method, lowercase).
    pub verb: String,
    /// Namespace (`""`: cluster scope).
    pub namespace: String,
    /// API group.
    pub api_group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name.
    pub name: String,
    /// The path of a non-resource request.
    pub path: Option<String>,
}

/// A binding's subject.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

impl Subject {
    fn matches(&self, user: &UserInfo) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                !self.namespace.is_empty()
                    && user.name
                        == format!("system:serviceaccount:{}:{}", self.namespace, self.name)
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => format!("ServiceAccount \"{}/{}\"", self.name, self.namespace),
            kind => format!("{kind} \"{}\"", self.name),
        }
    }
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Clone, Debug)]
struct Binding {
    name: String,
    /// `""` for ClusterRoleBindings.
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(v: &Value) -> Self {
        let namespace = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let subjects = v["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Subject {
                kind: s["kind"].as_str().unwrap_or_default().into(),
                name: s["name"].as_str().unwrap_or_default().into(),
                // A ServiceAccount subject of a RoleBinding defaults to its namespace.
                namespace: s["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map_or_else(|| namespace.clone(), str::to_string),
            })
            .collect();
        Self {
            name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            role_kind: v["roleRef"]["kind"].as_str().unwrap_or_default().into(),
            role_name: v["roleRef"]["name"].as_str().unwrap_or_default().into(),
            namespace,
            subjects,
        }
    }

    fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects.iter().find(|s| s.matches(user))
    }
}

/// The outcome of authorizing a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why (Kubernetes' wording: which binding allowed it).
    pub reason: String,
}

/// The RBAC objects of one logical cluster, indexed.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<Rule>>,
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_bindings: Vec<Binding>,
    role_bindings: HashMap<String, Vec<Binding>>,
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Rule::from_value)
        .collect()
}

impl Policy {
    /// Indexes Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.
    pub fn new(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_bindings: &[Value],
    ) -> Self {
        let mut policy = Self::default();
        for r in roles {
            let meta = &r["metadata"];
            let key = (
                meta["namespace"].as_str().unwrap_or_default().to_string(),
                meta["name"].as_str().unwrap_or_default().to_string(),
            );
            policy.roles.insert(key, rules_of(r));
        }
        // Aggregation: a ClusterRole with an aggregationRule has the rules of the
        // ClusterRoles its selectors match (transitively, as the controller converges).
        let labels: BTreeMap<&str, BTreeMap<String, String>> = cluster_roles
            .iter()
            .map(|r| {
                (
                    r["metadata"]["name"].as_str().unwrap_or_default(),
                    syncsets_store::labels_of(r),
                )
            })
            .collect();
        let mut rules: BTreeMap<&str, Vec<Rule>> = cluster_roles
            .iter()
            .map(|r| {
                (
                    r["metadata"]["name"].as_str().unwrap_or_default(),
                    rules_of(r),
                )
            })
            .collect();
        let aggregating: Vec<(&str, Vec<Selector>)> = cluster_roles
            .iter()
            .filter_map(|r| {
                let selectors = r["aggregationRule"]["clusterRoleSelectors"].as_array()?;
                let compiled = selectors
                    .iter()
                    .filter_map(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
                    .filter_map(|s| Selector::from_label_selector(Some(&s)).ok())
                    .collect();
                Some((r["metadata"]["name"].as_str().unwrap_or_default(), compiled))
            })
            .collect();
        for _ in 0..4 {
            for (name, selectors) in &aggregating {
                let mut gathered: Vec<Rule> = Vec::new();
                for (other, other_labels) in &labels {
                    if other != name && selectors.iter().any(|s| s.matches(other_labels)) {
                        for rule in &rules[other] {
                            if !gathered.contains(rule) {
                                gathered.push(rule.clone());
                            }
                        }
                    }
                }
                rules.insert(name, gathered);
            }
        }
        policy.cluster_roles = rules.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        policy.cluster_bindings = cluster_bindings.iter().map(Binding::from_value).collect();
        for b in role_bindings.iter().map(Binding::from_value) {
            policy
                .role_bindings
                .entry(b.namespace.clone())
                .or_default()
                .push(b);
        }
        policy
    }

    fn role_rules(&self, binding: &Binding) -> Option<&[Rule]> {
        match binding.role_kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .get(&binding.role_name)
                .map(Vec::as_slice),
            "Role" if !binding.namespace.is_empty() => self
                .roles
                .get(&(binding.namespace.clone(), binding.role_name.clone()))
                .map(Vec::as_slice),
            _ => None,
        }
    }

    /// The bindings that apply to `user` for a request in `namespace`, with the subject
    /// that matched.
    fn bindings_for<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a Binding, &'a Subject)> + 'a {
        let namespaced = (!namespace.is_empty())
            .then(|| self.role_bindings.get(namespace))
            .flatten()
            .into_iter()
            .flatten();
        self.cluster_bindings
            .iter()
            .chain(namespaced)
            .filter_map(move |b| b.subject_for(user).map(|s| (b, s)))
    }

    /// Authorizes a request.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        for (binding, subject) in self.bindings_for(user, &a.namespace) {
            let Some(rules) = self.role_rules(binding) else {
                continue;
            };
            if rules.iter().any(|r| r.allows(a)) {
                let source = if binding.namespace.is_empty() {
                    format!("ClusterRoleBinding \"{}\"", binding.name)
                } else {
                    format!("RoleBinding \"{}/{}\"", binding.name, binding.namespace)
                };
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by {source} of {} \"{}\" to {}",
                        binding.role_kind,
                        binding.role_name,
                        subject.describe()
                    ),
                };
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }

    /// Every rule that applies to `user` in `namespace` (`""`: cluster-wide grants only).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return bootstrap_rules("cluster-admin");
        }
        self.bindings_for(user, namespace)
            .filter_map(|(b, _)| self.role_rules(b))
            .flatten()
            .cloned()
            .collect()
    }

    /// The names of objects `user` may act on as `a` asks (its name aside): `None` for
    /// any name, or the names its rules list (`resourceNames`).
    pub fn allowed_names(&self, user: &UserInfo, a: &Attributes) -> Option<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for rule in self.rules_for(user, &a.namespace) {
            if !rule.allows_resource(a) {
                continue;
            }
            if rule.resource_names.is_empty() {
                return None;
            }
            names.extend(rule.resource_names);
        }
        Some(names)
    }

    /// The rules of the role a binding refers to (`None`: no such role).
    pub fn role(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        match kind {
            "ClusterRole" => self.cluster_roles.get(name).cloned(),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            _ => None,
        }
    }
}

/// Whether the `owner` rules grant everything `wanted` grants (no escalation), as
/// Kubernetes' policy comparator decides: `wanted` is split into one-verb, one-group,
/// one-resource (one-name, one-URL) pieces, each of which some owner rule must cover. A
/// wanted `*` is covered only by an owner `*`.
pub fn covers(owner: &[Rule], wanted: &Rule) -> bool {
    let one = |v: &str| vec![v.to_string()];
    let names: Vec<Vec<String>> = if wanted.resource_names.is_empty() {
        vec![Vec::new()]
    } else {
        wanted.resource_names.iter().map(|n| one(n)).collect()
    };
    let mut pieces = Vec::new();
    for verb in &wanted.verbs {
        for url in &wanted.non_resource_urls {
            pieces.push(Rule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..Rule::default()
            });
        }
        for group in &wanted.api_groups {
            for resource in &wanted.resources {
                for name in &names {
                    pieces.push(Rule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: name.clone(),
                        ..Rule::default()
                    });
                }
            }
        }
    }
    pieces
        .iter()
        .all(|piece| owner.iter().any(|o| rule_covers(o, piece)))
}

/// Whether one owner rule covers a one-of-each piece.
fn rule_covers(owner: &Rule, piece: &Rule) -> bool {
    let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
    let all = |list: &[String], wanted: &[String]| wanted.iter().all(|w| has(list, w));
    let verbs = has(&owner.verbs, "*") || all(&owner.verbs, &piece.verbs);
    let groups = has(&owner.api_groups, "*") || all(&owner.api_groups, &piece.api_groups);
    let resources = piece.resources.iter().all(|r| {
        has(&owner.resources, "*")
            || has(&owner.resources, r)
            || r.split_once('/')
                .is_some_and(|(_, sub)| has(&owner.resources, &format!("*/{sub}")))
    });
    let urls = piece.non_resource_urls.iter().all(|u| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| o == "*" || o == u || o.strip_suffix('*').is_some_and(|p| u.starts_with(p)))
    });
    let names = if piece.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || all(&owner.resource_names, &piece.resource_names)
    };
    verbs && groups && resources && urls && names
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const HIVE: &str = "hive.openshift.io";
const HIVE_INTERNAL: &str = "hiveinternal.openshift.io";

fn bootstrap_role_rules(name: &str) -> Option<Value> {
    Some(match name {
        "cluster-admin" => json!([rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        "system:discovery" => json!([urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/"
            ]
        )]),
        "system:public-info-viewer" => json!([urls(
            &["get"],
            &["/healthz", "/livez", "/readyz", "/version", "/version/"]
        )]),
        "system:monitoring" => json!([urls(
            &["get"],
            &[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*"
            ]
        )]),
        "system:basic-user" => json!([rule(
            &["create"],
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]
        )]),
        "system:aggregate-to-view" => json!([
            rule(
                READ,
                &[""],
                &["configmaps", "events", "namespaces", "namespaces/status"]
            ),
            rule(
                READ,
                &[HIVE],
                &[
                    "syncsets",
                    "selectorsyncsets",
                    "clusterdeployments",
                    "clusterdeployments/status"
                ]
            ),
            rule(
                READ,
                &[HIVE_INTERNAL],
                &["clustersyncs", "clustersyncleases"]
            ),
            rule(
                READ,
                &["syncsets.io"],
                &["rolloutpolicies", "rolloutpolicies/status"]
            ),
        ]),
        "system:aggregate-to-edit" => json!([
            rule(READ, &[""], &["secrets"]),
            rule(WRITE, &[""], &["configmaps", "events", "secrets"]),
            rule(WRITE, &[HIVE], &["syncsets", "clusterdeployments"]),
        ]),
        "system:aggregate-to-admin" => json!([
            rule(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews"]
            ),
            rule(
                &[
                    "get",
                    "list",
                    "watch",
                    "create",
                    "delete",
                    "deletecollection",
                    "patch",
                    "update"
                ],
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "roles"]
            ),
        ]),
        _ => return None,
    })
}

fn bootstrap_rules(name: &str) -> Vec<Rule> {
    bootstrap_role_rules(name)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(Rule::from_value)
        .collect()
}

/// The default ClusterRoles and ClusterRoleBindings every logical cluster starts with
/// (labelled `kubernetes.io/bootstrapping: rbac-defaults`, as Kubernetes labels its own).
pub fn bootstrap() -> (Vec<Value>, Vec<Value>) {
    let meta = |name: &str, extra: Value| {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                labels[k] = v.clone();
            }
        }
        json!({"name": name, "labels": labels,
               "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
    };
    let role = |name: &str, labels: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": meta(name, labels), "rules": bootstrap_role_rules(name).unwrap_or(json!([]))})
    };
    let aggregated = |name: &str, label: &str, labels: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": meta(name, labels),
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}})
    };
    let roles = vec![
        role("cluster-admin", json!({})),
        role("system:discovery", json!({})),
        role("system:public-info-viewer", json!({})),
        role("system:monitoring", json!({})),
        role("system:basic-user", json!({})),
        role(
            "system:aggregate-to-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
        ),
        role(
            "system:aggregate-to-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        ),
        role(
            "system:aggregate-to-admin",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        ),
        aggregated(
            "view",
            "rbac.authorization.k8s.io/aggregate-to-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        ),
        aggregated(
            "edit",
            "rbac.authorization.k8s.io/aggregate-to-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        ),
        aggregated(
            "admin",
            "rbac.authorization.k8s.io/aggregate-to-admin",
            json!({}),
        ),
    ];
    let bind = |name: &str, groups: &[&str]| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": meta(name, json!({})),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": groups.iter().map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g})).collect::<Vec<_>>()})
    };
    let bindings = vec![
        bind("cluster-admin", &[MASTERS]),
        bind("system:discovery", &["system:authenticated"]),
        bind("system:basic-user", &["system:authenticated"]),
        bind("system:monitoring", &["system:monitoring"]),
        bind(
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ];
    (roles, bindings)
}

#[cfg(test)]
mod tests;
