//! Per-kind strategies of the built-in kinds: fields the server sets and the semantic
//! validation Kubernetes (and Hive's admission webhook) performs beyond the schema.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::errors::FieldError;
use crate::registry::Strategy;
use crate::schema::Schema;

const MAX_CONFIG_SIZE: usize = 1024 * 1024;

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn validate_config_keys(obj: &Value, fields: &[&str], errors: &mut Vec<FieldError>) {
    for field in fields {
        if let Some(map) = obj.get(*field).and_then(Value::as_object) {
            for key in map.keys() {
                if !is_config_key(key) {
                    errors.push(FieldError::invalid(
                        field.to_string(),
                        key.as_str(),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
                         (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
                         '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
        }
    }
}

fn immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str], errors: &mut Vec<FieldError>) {
    let Some(old) = old else { return };
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    if obj.get("immutable") != Some(&Value::Bool(true)) {
        errors.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in fields {
        if obj.get(*field) != old.get(*field) {
            errors.push(FieldError::forbidden(
                *field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// Namespaces: `spec.finalizers: [kubernetes]` and `status.phase: Active` on creation;
/// the label `kubernetes.io/metadata.name` always holds the name.
#[derive(Debug)]
pub struct NamespaceStrategy;

/// The label kube-apiserver keeps on every namespace, equal to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn label_name(obj: &mut Value) {
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return;
    };
    let meta = &mut obj["metadata"];
    if meta.get("labels").is_none_or(Value::is_null) {
        meta["labels"] = json!({});
    }
    if let Some(labels) = meta["labels"].as_object_mut() {
        labels.insert(NAMESPACE_NAME_LABEL.into(), Value::String(name));
    }
}

impl Strategy for NamespaceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
        label_name(obj);
    }

    fn prepare_update(&self, obj: &mut Value, old: &Value) {
        obj["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
        label_name(obj);
    }

    fn selectable_fields(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("status.phase", &["status", "phase"])]
    }
}

/// ConfigMaps: key syntax, no overlap of `data` and `binaryData`, size, `immutable`.
#[derive(Debug)]
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_config_keys(obj, &["data", "binaryData"], &mut errors);
        let mut size = 0;
        if let (Some(data), Some(binary)) = (
            obj.get("data").and_then(Value::as_object),
            obj.get("binaryData").and_then(Value::as_object),
        ) {
            for k in data.keys().filter(|k| binary.contains_key(*k)) {
                errors.push(FieldError::invalid(
                    "data",
                    k.as_str(),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        for field in ["data", "binaryData"] {
            if let Some(map) = obj.get(field).and_then(Value::as_object) {
                size += map
                    .iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum::<usize>();
            }
        }
        if size > MAX_CONFIG_SIZE {
            errors.push(FieldError {
                kind: crate::errors::FieldErrorKind::TooLong,
                field: String::new(),
                value: None,
                detail: format!("must have at most {MAX_CONFIG_SIZE} bytes"),
            });
        }
        immutable_data(obj, old, &["data", "binaryData"], &mut errors);
        errors
    }
}

/// Secrets: `stringData` folded into `data`, `type` defaulted and immutable, per-type keys.
#[derive(Debug)]
pub struct SecretStrategy;

impl SecretStrategy {
    fn fold_string_data(obj: &mut Value) {
        let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
            return;
        };
        let Value::Object(entries) = string_data else {
            return;
        };
        let data = obj
            .as_object_mut()
            .expect("object")
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        for (k, v) in entries {
            if let Some(s) = v.as_str() {
                data[k] = Value::String(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
    }
}

impl Strategy for SecretStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        Self::fold_string_data(obj);
        if obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            obj["type"] = json!("Opaque");
        }
    }

    fn prepare_update(&self, obj: &mut Value, old: &Value) {
        Self::fold_string_data(obj);
        if obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            obj["type"] = old.get("type").cloned().unwrap_or_else(|| json!("Opaque"));
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_config_keys(obj, &["data"], &mut errors);
        let data = obj.get("data").and_then(Value::as_object);
        let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        let required: &[&str] = match ty {
            "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
            "kubernetes.io/dockercfg" => &[".dockercfg"],
            "kubernetes.io/tls" => &["tls.crt", "tls.key"],
            "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
            _ => &[],
        };
        for key in required {
            if !has(key) {
                errors.push(FieldError::required(format!("data[{key}]"), ""));
            }
        }
        if ty == "kubernetes.io/basic-auth" && !has("username") && !has("password") {
            errors.push(FieldError::required("data[username]", ""));
        }
        let size: usize = data
            .map(|d| {
                d.values()
                    .map(|v| v.as_str().map_or(0, |s| s.len() * 3 / 4))
                    .sum()
            })
            .unwrap_or(0);
        if size > MAX_CONFIG_SIZE {
            errors.push(FieldError {
                kind: crate::errors::FieldErrorKind::TooLong,
                field: "data".into(),
                value: None,
                detail: format!("Too long: must have at most {MAX_CONFIG_SIZE} bytes"),
            });
        }
        if let Some(old) = old
            && old.get("type") != obj.get("type")
        {
            errors.push(FieldError::invalid(
                "type",
                obj.get("type").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        immutable_data(obj, old, &["data"], &mut errors);
        errors
    }

    fn selectable_fields(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[("type", &["type"])]
    }
}

/// Events: the field selectors `kubectl describe` uses.
#[derive(Debug)]
pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn selectable_fields(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("involvedObject.kind", &["involvedObject", "kind"]),
            ("involvedObject.namespace", &["involvedObject", "namespace"]),
            ("involvedObject.name", &["involvedObject", "name"]),
            ("involvedObject.uid", &["involvedObject", "uid"]),
            (
                "involvedObject.apiVersion",
                &["involvedObject", "apiVersion"],
            ),
            (
                "involvedObject.resourceVersion",
                &["involvedObject", "resourceVersion"],
            ),
            ("involvedObject.fieldPath", &["involvedObject", "fieldPath"]),
            ("reason", &["reason"]),
            ("reportingComponent", &["reportingComponent"]),
            ("source", &["source", "component"]),
            ("type", &["type"]),
        ]
    }
}

/// CustomResourceDefinitions: names, versions and structural schemas; status set on
/// acceptance (this server establishes a CRD as soon as it is stored).
#[derive(Debug)]
pub struct CrdStrategy;

impl CrdStrategy {
    /// The status of a CRD accepted now; `old` is the CRD it replaces, whose conditions
    /// keep their transition times (they did not change) and whose stored versions stay
    /// listed, as kube-apiserver keeps them.
    fn set_status(obj: &mut Value, old: Option<&Value>) {
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut stored: Vec<Value> = old
            .and_then(|o| o["status"]["storedVersions"].as_array())
            .cloned()
            .unwrap_or_default();
        for version in obj["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"].as_bool() == Some(true))
        {
            if !stored.contains(&version["name"]) {
                stored.push(version["name"].clone());
            }
        }
        let condition = |ty: &str, reason: &str, message: &str| {
            let since = old
                .and_then(|o| o["status"]["conditions"].as_array())
                .into_iter()
                .flatten()
                .find(|c| c["type"] == ty && c["status"] == "True")
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
            json!({"type": ty, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
        };
        obj["status"] = json!({
            "acceptedNames": obj["spec"]["names"].clone(),
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "storedVersions": stored,
        });
    }
}

impl Strategy for CrdStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        Self::set_status(obj, None);
    }

    fn prepare_update(&self, obj: &mut Value, old: &Value) {
        Self::set_status(obj, Some(old));
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        validate_crd(obj, old)
    }
}

fn validate_crd(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    use syncsets_types::names;
    let mut errors = Vec::new();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names_ = &spec["names"];
    let plural = names_["plural"].as_str().unwrap_or_default();
    let kind = names_["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    // A version objects may be stored at cannot go (kube-apiserver: it must first be
    // migrated away from and dropped from status.storedVersions).
    let versions: Vec<&Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| &v["name"])
        .collect();
    for (i, stored) in obj["status"]["storedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !versions.contains(&stored) {
            errors.push(FieldError::invalid(
                format!("status.storedVersions[{i}]"),
                stored.as_str().unwrap_or_default(),
                "must appear in spec.versions",
            ));
        }
    }
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    } else {
        if !group.contains('.') {
            errors.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
        for msg in names::validate_dns1123_subdomain(group) {
            errors.push(FieldError::invalid("spec.group", group, msg));
        }
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    } else {
        for msg in names::validate_dns1123_label(plural) {
            errors.push(FieldError::invalid("spec.names.plural", plural, msg));
        }
    }
    if let Some(singular) = names_["singular"].as_str().filter(|s| !s.is_empty()) {
        for msg in names::validate_dns1123_label(singular) {
            errors.push(FieldError::invalid("spec.names.singular", singular, msg));
        }
    }
    if kind.is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    } else if !kind.chars().next().is_some_and(char::is_alphabetic)
        || !kind.chars().all(char::is_alphanumeric)
    {
        errors.push(FieldError::invalid(
            "spec.names.kind",
            kind,
            "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => errors.push(FieldError::not_supported(
            "spec.scope",
            other,
            &[json!("Cluster"), json!("Namespaced")],
        )),
        None => errors.push(FieldError::required("spec.scope", "")),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            json!(
                versions
                    .iter()
                    .map(|v| v["name"].clone())
                    .collect::<Vec<_>>()
            ),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = v["name"].as_str().unwrap_or_default();
        for msg in names::validate_dns1123_label(vname) {
            errors.push(FieldError::invalid(
                format!("spec.versions[{i}].name"),
                vname,
                msg,
            ));
        }
        let schema = &v["schema"]["openAPIV3Schema"];
        if !schema.is_object() {
            errors.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
            continue;
        }
        let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if let Err(e) = Schema::compile(schema) {
            errors.push(FieldError::invalid(
                base.clone(),
                Value::String("object".into()),
                e.to_string(),
            ));
        }
        structural(schema, &base, true, &mut errors);
    }
    if let Some(old) = old {
        if old["spec"]["group"] != spec["group"] {
            errors.push(FieldError::invalid(
                "spec.group",
                group,
                "field is immutable",
            ));
        }
        if old["spec"]["scope"] != spec["scope"] {
            errors.push(FieldError::invalid(
                "spec.scope",
                spec["scope"].clone(),
                "field is immutable",
            ));
        }
    }
    errors
}

/// The structural-schema rules that matter for serving: every node has a type unless it
/// preserves unknown fields or is int-or-string, and `properties` and `additionalProperties`
/// are exclusive.
fn structural(schema: &Value, path: &str, root: bool, errors: &mut Vec<FieldError>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    let typed = obj
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !typed && !preserve && !int_or_string {
        errors.push(FieldError::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if root
        && obj
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "object")
    {
        errors.push(FieldError::invalid(
            format!("{path}.type"),
            obj["type"].clone(),
            "must be object at the root",
        ));
    }
    if obj.contains_key("properties")
        && obj
            .get("additionalProperties")
            .is_some_and(Value::is_object)
    {
        errors.push(FieldError::forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            if root && name == "metadata" {
                continue;
            }
            structural(child, &format!("{path}.properties[{name}]"), false, errors);
        }
    }
    if let Some(items) = obj.get("items") {
        structural(items, &format!("{path}.items"), false, errors);
    }
    if let Some(ap @ Value::Object(_)) = obj.get("additionalProperties") {
        structural(ap, &format!("{path}.additionalProperties"), false, errors);
    }
}

/// RBAC kinds: Kubernetes' validation of PolicyRules, role references and subjects.
#[derive(Debug)]
pub struct RbacStrategy;

impl Strategy for RbacStrategy {
    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let namespaced = matches!(kind, "Role" | "RoleBinding");
        for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
            let path = format!("rules[{i}]");
            let list = |f: &str| rule[f].as_array().map_or(0, Vec::len);
            if list("verbs") == 0 {
                errors.push(FieldError::required(
                    format!("{path}.verbs"),
                    "verbs must contain at least one value",
                ));
            }
            if list("nonResourceURLs") > 0 {
                if namespaced {
                    errors.push(FieldError::invalid(
                        format!("{path}.nonResourceURLs"),
                        rule["nonResourceURLs"].clone(),
                        "namespaced rules cannot apply to non-resource URLs",
                    ));
                }
                if list("apiGroups") > 0 || list("resources") > 0 {
                    errors.push(FieldError::invalid(
                        format!("{path}.nonResourceURLs"),
                        rule["nonResourceURLs"].clone(),
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
            } else {
                if list("apiGroups") == 0 {
                    errors.push(FieldError::required(
                        format!("{path}.apiGroups"),
                        "resource rules must supply at least one api group",
                    ));
                }
                if list("resources") == 0 {
                    errors.push(FieldError::required(
                        format!("{path}.resources"),
                        "resource rules must supply at least one resource",
                    ));
                }
            }
        }
        if kind.ends_with("Binding") {
            let role_kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
            let allowed: &[&str] = if namespaced {
                &["Role", "ClusterRole"]
            } else {
                &["ClusterRole"]
            };
            if !allowed.contains(&role_kind) {
                errors.push(FieldError::not_supported(
                    "roleRef.kind",
                    role_kind,
                    &allowed.iter().map(|k| json!(k)).collect::<Vec<_>>(),
                ));
            }
            if obj["roleRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                errors.push(FieldError::required("roleRef.name", ""));
            }
            if let Some(old) = old
                && old.get("roleRef") != obj.get("roleRef")
            {
                errors.push(FieldError::invalid(
                    "roleRef",
                    obj["roleRef"].clone(),
                    "cannot change roleRef",
                ));
            }
            for (i, subject) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
                let path = format!("subjects[{i}]");
                if subject["name"].as_str().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required(format!("{path}.name"), ""));
                }
                match subject["kind"].as_str().unwrap_or_default() {
                    "User" | "Group" => {}
                    "ServiceAccount"
                        if namespaced
                            || subject["namespace"].as_str().is_some_and(|n| !n.is_empty()) => {}
                    "ServiceAccount" => {
                        errors.push(FieldError::required(format!("{path}.namespace"), ""))
                    }
                    other => errors.push(FieldError::not_supported(
                        format!("{path}.kind"),
                        other,
                        &[json!("ServiceAccount"), json!("User"), json!("Group")],
                    )),
                }
            }
        }
        errors
    }
}

/// SyncSets and SelectorSyncSets: the admission checks of Hive's webhook
/// (`shared/docs/syncset-semantics.md`, "Validation").
#[derive(Debug)]
pub struct SyncSetStrategy {
    /// True for SyncSets (namespaced): secret sources must live in the set's namespace.
    pub namespaced: bool,
}

impl Strategy for SyncSetStrategy {
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &obj["spec"];
        if let Some(mode) = spec["resourceApplyMode"].as_str()
            && !matches!(mode, "" | "Upsert" | "Sync")
        {
            errors.push(FieldError::not_supported(
                "spec.resourceApplyMode",
                mode,
                &[json!("Upsert"), json!("Sync")],
            ));
        }
        for (i, r) in spec["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("spec.resources[{i}]");
            let has = |p: &[&str]| {
                p.iter()
                    .try_fold(r, |v, k| v.get(*k))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            for (field, p) in [
                ("apiVersion", &["apiVersion"][..]),
                ("kind", &["kind"][..]),
                ("metadata.name", &["metadata", "name"][..]),
            ] {
                if !has(p) {
                    errors.push(FieldError::required(
                        format!("{path}.{field}"),
                        "resources must be objects with apiVersion, kind and metadata.name",
                    ));
                }
            }
        }
        for (i, p) in spec["patches"].as_array().into_iter().flatten().enumerate() {
            if let Some(ty) = p["patchType"].as_str()
                && !matches!(ty, "" | "json" | "merge" | "strategic")
            {
                errors.push(FieldError::not_supported(
                    format!("spec.patches[{i}].patchType"),
                    ty,
                    &[json!("json"), json!("merge"), json!("strategic")],
                ));
            }
        }
        let own_namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        for (i, m) in spec["secretMappings"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for side in ["sourceRef", "targetRef"] {
                if m[side]["name"].as_str().unwrap_or_default().is_empty() {
                    errors.push(FieldError::required(
                        format!("spec.secretMappings[{i}].{side}.name"),
                        "",
                    ));
                }
            }
            if self.namespaced
                && let Some(ns) = m["sourceRef"]["namespace"]
                    .as_str()
                    .filter(|ns| !ns.is_empty())
                && ns != own_namespace
            {
                errors.push(FieldError::invalid(
                    format!("spec.secretMappings[{i}].sourceRef.namespace"),
                    ns,
                    "source secret reference must be in same namespace as SyncSet",
                ));
            }
        }
        errors
    }
}

/// RolloutPolicies: counts, percentages, durations and selectors that the schema alone
/// cannot check ([`syncsets_types::rollout::problems`]). That no two policies govern one
/// set needs the store: the API server checks it on write.
#[derive(Debug)]
pub struct RolloutPolicyStrategy;

impl Strategy for RolloutPolicyStrategy {
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        syncsets_types::rollout::problems(&obj["spec"])
            .into_iter()
            .map(|(path, value, msg)| FieldError::invalid(path, value.as_str(), msg))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crd_update_keeps_its_conditions_since_and_its_stored_versions() {
        let crd = |storage: &str| {
            json!({"spec": {"names": {"plural": "ws", "kind": "W"}, "versions": [
                {"name": "v1", "served": true, "storage": storage == "v1"},
                {"name": "v2", "served": true, "storage": storage == "v2"}]}})
        };
        let mut old = crd("v1");
        CrdStrategy.prepare_create(&mut old);
        for c in old["status"]["conditions"].as_array_mut().unwrap() {
            c["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        }
        let mut new = crd("v2");
        CrdStrategy.prepare_update(&mut new, &old);
        assert_eq!(new["status"]["storedVersions"], json!(["v1", "v2"]));
        // v1 may still hold objects: it cannot leave spec.versions.
        let mut without_v1 = new.clone();
        without_v1["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        CrdStrategy.prepare_update(&mut without_v1, &new);
        let errors = validate_crd(&without_v1, Some(&new));
        assert!(
            errors.iter().any(|e| e.field == "status.storedVersions[0]"),
            "{errors:?}"
        );
        for c in new["status"]["conditions"].as_array().unwrap() {
            assert_eq!(c["lastTransitionTime"], "2020-01-01T00:00:00Z", "{c}");
        }
    }

    #[test]
    fn secret_string_data_is_folded() {
        let mut s = json!({"stringData": {"a": "hello"}, "data": {"b": "eA=="}});
        SecretStrategy.prepare_create(&mut s);
        assert_eq!(s["data"]["a"], "aGVsbG8=");
        assert_eq!(s["data"]["b"], "eA==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        let errs = SecretStrategy.validate(&tls, None);
        assert_eq!(errs[0].to_string(), "data[tls.key]: Required value");
    }

    #[test]
    fn configmap_keys_and_immutability() {
        let bad = json!({"data": {"a/b": "x"}});
        assert_eq!(ConfigMapStrategy.validate(&bad, None).len(), 1);
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(ConfigMapStrategy.validate(&new, Some(&old)).len(), 1);
    }

    #[test]
    fn syncset_admission() {
        let ss = json!({
            "metadata": {"name": "s", "namespace": "a"},
            "spec": {
                "resourceApplyMode": "Replace",
                "resources": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}],
                "patches": [{"patchType": "yaml"}],
                "secretMappings": [{"sourceRef": {"name": "x", "namespace": "b"}, "targetRef": {}}]
            }
        });
        let errs: Vec<String> = SyncSetStrategy { namespaced: true }
            .validate(&ss, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with("spec.resourceApplyMode: Unsupported value: \"Replace\""));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.resources[0].metadata.name: Required value"))
        );
        assert!(errs.iter().any(|e| {
            e.starts_with("spec.secretMappings[0].sourceRef.namespace: Invalid value: \"b\"")
        }));
    }

    #[test]
    fn crd_validation() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"properties": {}}}}}}]}
        });
        let errs: Vec<String> = validate_crd(&crd, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
            ]
        );
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("x.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        assert_eq!(validate_crd(&bad, None).len(), 3);
    }
}

/// Kinds holding a pod spec: what kube-apiserver defaults from other fields of it — each
/// container's image pull policy from its image's tag (`SetDefaults_Container`) — and, for
/// a Job, its counts and modes (`SetDefaults_Job`; a CronJob's job template is not
/// defaulted so, as upstream).
#[derive(Debug)]
pub struct WorkloadStrategy {
    /// Where the kind holds its pod spec (a JSON pointer).
    pub pod_spec: &'static str,
    /// The kind is a Job.
    pub job: bool,
}

impl Strategy for WorkloadStrategy {
    fn default(&self, obj: &mut Value) {
        if self.job {
            default_job(obj);
        }
        let Some(pod) = obj.pointer_mut(self.pod_spec) else {
            return;
        };
        for list in ["initContainers", "containers"] {
            let containers = pod.get_mut(list).and_then(Value::as_array_mut);
            for c in containers
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                if c.get("imagePullPolicy").is_none_or(|p| p == "") {
                    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                    c.insert("imagePullPolicy".into(), json!(pull_policy(image)));
                }
            }
        }
    }
}

/// The image pull policy kube-apiserver defaults to: `Always` for the `latest` tag (which
/// an image with neither tag nor digest has), else `IfNotPresent` (a reference upstream
/// cannot parse has no tag).
fn pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference as upstream's `ParseImageName` reads it: `latest` when
/// it has neither tag nor digest, empty with a digest alone; `None` when the reference is
/// not one (the distribution reference grammar: lowercase path components, a registry
/// host with an optional port first, `[\w][\w.-]{0,127}` tags, `algorithm:hex` digests).
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':')?;
        let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
    }
    // A tag follows the last `:` unless a `/` does (then it was a registry's port).
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (name, None),
    };
    if let Some(tag) = tag {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = tag.len() <= 128
            && tag.bytes().next().is_some_and(word)
            && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
        if !ok {
            return None;
        }
    }
    let components: Vec<&str> = path.split('/').collect();
    let host = components.len() > 1
        && (components[0].contains(['.', ':']) || components[0] == "localhost");
    let host_ok = |h: &str| {
        let (host, port) = h.split_once(':').unwrap_or((h, "0"));
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
    };
    let component_ok = |c: &str| {
        let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        edge(c.bytes().next())
            && edge(c.bytes().last())
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
    };
    let (first, rest) = if host {
        (host_ok(components[0]), &components[1..])
    } else {
        (true, &components[..])
    };
    if !first || !rest.iter().all(|c| component_ok(c)) {
        return None;
    }
    Some(match (tag, digest) {
        (Some(tag), _) => tag,
        (None, Some(_)) => "",
        (None, None) => "latest",
    })
}

/// `SetDefaults_Job`.
fn default_job(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let absent =
        |spec: &Map<String, Value>, field: &str| spec.get(field).is_none_or(Value::is_null);
    if absent(spec, "completions") && absent(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    if absent(spec, "parallelism") {
        spec.insert("parallelism".into(), json!(1));
    }
    if absent(spec, "backoffLimit") {
        // With a limit per index, the Job as a whole has none.
        let limit = if absent(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    if absent(spec, "completionMode") {
        spec.insert("completionMode".into(), json!("NonIndexed"));
    }
    if absent(spec, "suspend") {
        spec.insert("suspend".into(), json!(false));
    }
    if absent(spec, "manualSelector") {
        spec.insert("manualSelector".into(), json!(false));
    }
    if absent(spec, "podReplacementPolicy") {
        let policy = if absent(spec, "podFailurePolicy") {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        spec.insert("podReplacementPolicy".into(), json!(policy));
    }
    // A Job without labels of its own gets its pod template's.
    if let Some(labels) = template_labels
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
    {
        meta.insert("labels".into(), labels);
    }
}

/// HorizontalPodAutoscalers defaulted as kube-apiserver defaults them beyond fixed values
/// (`SetDefaults_HorizontalPodAutoscaler`): an empty metrics list is the 80% CPU target an
/// absent one is, and a behavior given completes each direction's rules with upstream's
/// (scale up: no stabilization window, the larger of 4 pods or 100% each 15 s; scale down:
/// 100% each 15 s, its window left to the controller's flag).
#[derive(Debug)]
pub struct AutoscalerStrategy;

impl Strategy for AutoscalerStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if spec
            .get("metrics")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            let metrics = serde_json::from_str(crate::semantics::AUTOSCALER_METRICS)
                .expect("the default metrics are JSON");
            spec.insert("metrics".into(), metrics);
        }
        let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else {
            return;
        };
        complete_rules(
            behavior,
            "scaleUp",
            json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]}),
        );
        complete_rules(
            behavior,
            "scaleDown",
            json!({"selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}]}),
        );
    }
}

/// One direction's scaling rules with what is absent taken from `defaults`
/// (`GenerateHPAScaleUpRules`, `GenerateHPAScaleDownRules`).
fn complete_rules(behavior: &mut Map<String, Value>, direction: &str, defaults: Value) {
    let rules = behavior.entry(direction).or_insert(Value::Null);
    if !rules.is_object() {
        *rules = json!({});
    }
    let (Some(rules), Value::Object(defaults)) = (rules.as_object_mut(), defaults) else {
        return;
    };
    for (field, value) in defaults {
        if rules.get(&field).is_none_or(Value::is_null) {
            rules.insert(field, value);
        }
    }
}

#[cfg(test)]
mod autoscaler_tests {
    use super::*;

    #[test]
    fn an_autoscaler_is_defaulted_as_upstream_defaults_it() {
        let defaulted = |spec: Value| {
            let mut hpa = json!({"spec": spec});
            AutoscalerStrategy.default(&mut hpa);
            hpa["spec"].clone()
        };
        // No behavior: none is made up.
        assert_eq!(
            defaulted(json!({"maxReplicas": 3})),
            json!({"maxReplicas": 3})
        );
        assert_eq!(
            defaulted(json!({"metrics": []}))["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let spec = defaulted(json!({"behavior": {
            "scaleDown": {"stabilizationWindowSeconds": 60, "policies": []}}}));
        assert_eq!(
            spec["behavior"],
            json!({
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                // Given fields stay, an empty list included; the window is not defaulted.
                "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                    "policies": []}})
        );
        let spec = defaulted(json!({"behavior": {"scaleUp": {"selectPolicy": "Disabled"}}}));
        assert_eq!(spec["behavior"]["scaleUp"]["selectPolicy"], "Disabled");
        assert_eq!(spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(
            spec["behavior"]["scaleDown"],
            json!({"selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}]})
        );
    }
}
