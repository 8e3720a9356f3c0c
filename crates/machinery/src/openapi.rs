//! OpenAPI documents generated from the registry:
//!
//! - `/openapi/v3` (root) and `/openapi/v3/apis/<g>/<v>`: self-contained OpenAPI 3.0 documents
//!   per group-version, used by `kubectl explain` and by kubectl's check for server-side
//!   field validation (an inline `fieldValidation` parameter on each PATCH operation).
//! - `/openapi/v2`: one Swagger 2.0 document, served as JSON or as the gnostic protobuf
//!   kubectl requests (see [`proto`]).

pub mod proto;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::builtin::OBJECT_META;
use crate::registry::{KindInfo, Kinds, Registry};

const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// The OpenAPI name of a kind's schema, as Kubernetes names it.
pub fn schema_name(k: &KindInfo) -> String {
    let prefix = match k.group.as_str() {
        "" => "io.k8s.api.core".to_string(),
        "apiextensions.k8s.io" => {
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string()
        }
        // Kubernetes' own groups, by the name of their package (`io.k8s.api.apps.v1`), as
        // the definitions they refer to are named.
        g if k.crd_name.is_none() && (!g.contains('.') || g.ends_with(".k8s.io")) => {
            format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g))
        }
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{prefix}.{}.{}", k.version, k.kind)
}

/// The document path of a group-version (`api/v1`, `apis/<g>/<v>`).
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A short content hash of a document, changing whenever the document does.
pub fn content_hash(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

fn gvk(k: &KindInfo) -> Value {
    json!({"group": k.group, "kind": k.kind, "version": k.version})
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the resource"),
           "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        enum_query(
            "dryRun",
            &["All"],
            "When present, indicates that modifications should not be persisted. Valid value: All",
        ),
        query(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        enum_query(
            "fieldValidation",
            &["Ignore", "Warn", "Strict"],
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values: Ignore, Warn, Strict.",
        ),
    ];
    if patch {
        p.push(query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."));
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels: comma-separated requirements, each `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)` or `key notin (v1,v2)`.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields: comma-separated `field=value`, `field==value` or `field!=value` (metadata.name, metadata.namespace and the kind's selectable fields).",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call.",
        ),
    ]
}

fn json_body(schema: &str) -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn response(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}},
                                            "application/yaml": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn either_response(a: &str, b: &str) -> Value {
    let schema = json!({"anyOf": [{"$ref": format!("#/components/schemas/{a}")}, {"$ref": format!("#/components/schemas/{b}")}]});
    json!({"description": "OK", "content": {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}})
}

fn op(
    k: &KindInfo,
    action: &str,
    id: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
) -> Value {
    let mut o = Map::new();
    o.insert("description".into(), json!(format!("{action} {}", k.kind)));
    o.insert("operationId".into(), json!(id));
    o.insert("parameters".into(), Value::Array(params));
    if let Some(b) = body {
        o.insert("requestBody".into(), b);
    }
    o.insert("responses".into(), responses);
    o.insert("x-kubernetes-action".into(), json!(action));
    o.insert("x-kubernetes-group-version-kind".into(), gvk(k));
    Value::Object(o)
}

fn patch_body(k: &KindInfo) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{PATCH}")});
    let mut content = Map::new();
    let mut types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if k.strategic_merge {
        types.push("application/strategic-merge-patch+json");
    }
    for t in types {
        content.insert(t.into(), json!({"schema": schema}));
    }
    json!({"required": true, "content": content})
}

fn op_name(k: &KindInfo, verb: &str, namespaced: bool, suffix: &str) -> String {
    let group: String = k
        .group
        .split(['.', '-'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    let version = {
        let mut c = k.version.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    let scope = if namespaced { "Namespaced" } else { "" };
    let group = if group.is_empty() {
        "Core".to_string()
    } else {
        group
    };
    format!("{verb}{group}{version}{scope}{}{suffix}", k.kind)
}

/// The error responses an operation may give, each a `Status`: reads (which also answer
/// 410 Gone for a resourceVersion compacted away) and writes.
const READ_ERRORS: &[u16] = &[400, 401, 403, 404, 406, 410, 429, 500, 503, 504];
const WRITE_ERRORS: &[u16] = &[
    400, 401, 403, 404, 406, 409, 413, 415, 422, 429, 500, 503, 504, 507,
];

fn error_response(code: u16) -> Value {
    let description = match code {
        400 => "BadRequest: the request or its body is malformed",
        401 => "Unauthorized: no valid credentials",
        403 => "Forbidden: RBAC denies it, or the namespace is terminating",
        404 => "NotFound: no such object, namespace or resource",
        406 => "NotAcceptable: no representation the Accept header allows",
        409 => "Conflict: AlreadyExists, a stale resourceVersion, or an apply conflict",
        410 => "Gone: the resourceVersion is older than the events kept",
        413 => "RequestEntityTooLarge: the body is too large",
        415 => "UnsupportedMediaType: a body or patch type the endpoint does not take",
        422 => "Invalid: the object fails validation",
        429 => "TooManyRequests: the client's rate limit (see Retry-After)",
        500 => "InternalError",
        503 => "ServiceUnavailable: the store is unavailable (see Retry-After)",
        504 => "Timeout: the request took longer than its deadline",
        _ => "InsufficientStorage: the store's disk is full (reads still work)",
    };
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{STATUS}")}}}})
}

fn enum_query(name: &str, values: &[&str], description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "enum": values}})
}

fn delete_params() -> Vec<Value> {
    vec![
        enum_query(
            "dryRun",
            &["All"],
            "When present, indicates that modifications should not be persisted.",
        ),
        json!({"name": "gracePeriodSeconds", "in": "query", "description": "The duration in seconds before the object should be deleted.",
               "schema": {"type": "integer", "minimum": 0}}),
        enum_query(
            "propagationPolicy",
            &["Orphan", "Background", "Foreground"],
            "Whether and how garbage collection will be performed.",
        ),
    ]
}

/// One operation of a kind's paths.
struct Operation {
    path: String,
    method: &'static str,
    action: &'static str,
    id: String,
    params: Vec<Value>,
    body: Option<Value>,
    /// Success responses.
    ok: Value,
    errors: &'static [u16],
}

/// The paths of one kind, in OpenAPI 3 form: those kube-apiserver serves for it.
fn kind_paths(k: &KindInfo, paths: &mut Map<String, Value>) {
    let name = schema_name(k);
    let list = format!("{name}List");
    let base = if k.group.is_empty() {
        format!("/api/{}", k.version)
    } else {
        format!("/apis/{}/{}", k.group, k.version)
    };
    let collection = if k.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", k.plural)
    } else {
        format!("{base}/{}", k.plural)
    };
    let item = format!("{collection}/{{name}}");
    let in_ns = |extra: Vec<Value>| {
        let mut p = if k.namespaced {
            vec![path_param("namespace")]
        } else {
            vec![]
        };
        p.extend(extra);
        p
    };
    let named = |extra: Vec<Value>| {
        let mut p = in_ns(vec![path_param("name")]);
        p.extend(extra);
        p
    };
    let ok = |s: &str| json!({"200": response(s)});
    let created = |s: &str| json!({"200": response(s), "201": response(s)});
    let id = |verb: &str, suffix: &str| op_name(k, verb, k.namespaced, suffix);
    let mut ops = vec![
        Operation {
            path: collection.clone(),
            method: "get",
            action: "list",
            id: id("list", ""),
            params: in_ns(list_params()),
            body: None,
            ok: ok(&list),
            errors: READ_ERRORS,
        },
        Operation {
            path: collection.clone(),
            method: "post",
            action: "post",
            id: id("create", ""),
            params: in_ns(write_params(false)),
            body: Some(json_body(&name)),
            ok: created(&name),
            errors: WRITE_ERRORS,
        },
        Operation {
            path: item.clone(),
            method: "get",
            action: "get",
            id: id("read", ""),
            params: named(vec![]),
            body: None,
            ok: ok(&name),
            errors: READ_ERRORS,
        },
        Operation {
            path: item.clone(),
            method: "put",
            action: "put",
            id: id("replace", ""),
            params: named(write_params(false)),
            body: Some(json_body(&name)),
            ok: created(&name),
            errors: WRITE_ERRORS,
        },
        Operation {
            path: item.clone(),
            method: "patch",
            action: "patch",
            id: id("patch", ""),
            params: named(write_params(true)),
            body: Some(patch_body(k)),
            ok: created(&name),
            errors: WRITE_ERRORS,
        },
        Operation {
            path: item.clone(),
            method: "delete",
            action: "delete",
            id: id("delete", ""),
            params: named(delete_params()),
            body: Some(json_body(DELETE_OPTIONS)),
            // A Status when the object is gone; the object itself while finalizers (or a
            // namespace's contents) hold it, as kube-apiserver answers.
            ok: json!({"200": either_response(STATUS, &name)}),
            errors: WRITE_ERRORS,
        },
    ];
    if k.verbs().contains(&"deletecollection") {
        ops.push(Operation {
            path: collection.clone(),
            method: "delete",
            action: "deletecollection",
            id: id("deleteCollection", ""),
            params: in_ns(list_params()),
            body: None,
            ok: ok(STATUS),
            errors: WRITE_ERRORS,
        });
    }
    if k.status_subresource {
        let status = format!("{item}/status");
        ops.extend([
            Operation {
                path: status.clone(),
                method: "get",
                action: "get",
                id: id("read", "Status"),
                params: named(vec![]),
                body: None,
                ok: ok(&name),
                errors: READ_ERRORS,
            },
            Operation {
                path: status.clone(),
                method: "put",
                action: "put",
                id: id("replace", "Status"),
                params: named(write_params(false)),
                body: Some(json_body(&name)),
                ok: created(&name),
                errors: WRITE_ERRORS,
            },
            Operation {
                path: status,
                method: "patch",
                action: "patch",
                id: id("patch", "Status"),
                params: named(write_params(true)),
                body: Some(patch_body(k)),
                ok: created(&name),
                errors: WRITE_ERRORS,
            },
        ]);
    }
    if k.namespaced {
        ops.push(Operation {
            path: format!("{base}/{}", k.plural),
            method: "get",
            action: "list",
            id: op_name(k, "list", false, "ForAllNamespaces"),
            params: list_params(),
            body: None,
            ok: ok(&list),
            errors: READ_ERRORS,
        });
    }
    for o in ops {
        let mut responses = o.ok;
        for code in o.errors {
            responses[code.to_string()] = error_response(*code);
        }
        let entry = paths
            .entry(o.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[o.method] = op(k, o.action, o.id, o.params, o.body, responses);
    }
}

fn common_schemas(registry: &Registry) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    s.insert(OBJECT_META.to_string(), registry.meta_published().clone());
    s.insert(
        LIST_META.to_string(),
        json!({"type": "object", "description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
               "properties": {"continue": {"type": "string"}, "remainingItemCount": {"type": "integer", "format": "int64"},
                              "resourceVersion": {"type": "string"}, "selfLink": {"type": "string"}}}),
    );
    s.insert(
        STATUS.to_string(),
        json!({"type": "object", "description": "Status is a return value for calls that don't return other objects.",
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "code": {"type": "integer", "format": "int32"},
                              "message": {"type": "string"}, "reason": {"type": "string"}, "status": {"type": "string"},
                              "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                              "metadata": {"$ref": format!("#/components/schemas/{LIST_META}")}},
               "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]}),
    );
    s.insert(PATCH.to_string(), json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}));
    s.insert(
        DELETE_OPTIONS.to_string(),
        json!({"type": "object", "description": "DeleteOptions may be provided when deleting an API object.",
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "dryRun": {"type": "array", "items": {"type": "string"}},
                              "gracePeriodSeconds": {"type": "integer", "format": "int64"}, "propagationPolicy": {"type": "string"},
                              "preconditions": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}}}}}),
    );
    s
}

fn kind_schemas(k: &KindInfo, out: &mut BTreeMap<String, Value>) {
    let name = schema_name(k);
    let mut schema = k.published_schema.clone();
    if let Some(o) = schema.as_object_mut() {
        o.insert("x-kubernetes-group-version-kind".into(), json!([gvk(k)]));
    }
    out.insert(name.clone(), schema);
    out.insert(
        format!("{name}List"),
        json!({"type": "object", "description": format!("{} is a list of {}", k.list_kind, k.kind), "required": ["items"],
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                              "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
                              "metadata": {"$ref": format!("#/components/schemas/{LIST_META}")}},
               "x-kubernetes-group-version-kind": [{"group": k.group, "kind": k.list_kind, "version": k.version}]}),
    );
    // Shared by the kinds that refer to them; a kind's own entry above wins.
    for (n, d) in &k.published_definitions {
        out.entry(n.clone()).or_insert_with(|| (**d).clone());
    }
}

/// The OpenAPI 3 document of one group-version.
pub fn v3_group_version(
    registry: &Registry,
    kinds: &Kinds,
    group: &str,
    version: &str,
) -> Option<Value> {
    let members: Vec<_> = kinds.in_group_version(group, version).collect();
    if members.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = common_schemas(registry);
    for k in &members {
        kind_paths(k, &mut paths);
        kind_schemas(k, &mut schemas);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The `/openapi/v3` discovery document listing every group-version document.
pub fn v3_root(registry: &Registry, kinds: &Kinds) -> Value {
    let mut paths = Map::new();
    for g in kinds.groups() {
        for v in &g.versions {
            if let Some(doc) = v3_group_version(registry, kinds, &g.name, v) {
                let path = group_version_path(&g.name, v);
                paths.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", content_hash(&doc))}),
                );
            }
        }
    }
    json!({"paths": paths})
}

/// The Swagger 2.0 document of every kind.
pub fn v2(registry: &Registry, kinds: &Kinds) -> Value {
    let mut paths = Map::new();
    let mut schemas = common_schemas(registry);
    for k in kinds.all() {
        let mut p = Map::new();
        kind_paths(k, &mut p);
        for (path, item) in p {
            paths.insert(path, v3_path_item_to_v2(item));
        }
        kind_schemas(k, &mut schemas);
    }
    let definitions: Map<String, Value> = schemas
        .into_iter()
        .map(|(n, s)| (n, schema_to_v2(s)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

fn v3_path_item_to_v2(item: Value) -> Value {
    let Value::Object(ops) = item else {
        return item;
    };
    let mut out = Map::new();
    for (method, op) in ops {
        let Value::Object(mut o) = op else { continue };
        let mut params: Vec<Value> = o
            .remove("parameters")
            .and_then(|p| p.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|mut p| {
                let ty = p["schema"]["type"].clone();
                if let Some(m) = p.as_object_mut() {
                    m.remove("schema");
                    m.insert("type".into(), ty);
                    if m.get("in").and_then(Value::as_str) == Some("query") {
                        m.insert("uniqueItems".into(), json!(true));
                    }
                }
                p
            })
            .collect();
        let mut consumes = Vec::new();
        if let Some(body) = o.remove("requestBody") {
            let content = body["content"].as_object().cloned().unwrap_or_default();
            let schema = content
                .values()
                .next()
                .map(|c| schema_to_v2(c["schema"].clone()))
                .unwrap_or(json!({}));
            consumes = content.keys().cloned().collect();
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
        }
        o.insert("parameters".into(), Value::Array(params));
        if !consumes.is_empty() {
            o.insert("consumes".into(), json!(consumes));
        }
        o.insert(
            "produces".into(),
            json!(["application/json", "application/yaml"]),
        );
        if let Some(Value::Object(responses)) = o.remove("responses") {
            let converted: Map<String, Value> = responses
                .into_iter()
                .map(|(code, r)| {
                    let schema = r["content"]["application/json"]["schema"].clone();
                    (
                        code,
                        json!({"description": r["description"], "schema": schema_to_v2(schema)}),
                    )
                })
                .collect();
            o.insert("responses".into(), Value::Object(converted));
        }
        out.insert(method, Value::Object(o));
    }
    Value::Object(out)
}

/// Converts an OpenAPI 3 schema to Swagger 2: local `$ref`s point into `definitions`,
/// `nullable` goes, and arrays always have `items` (kubectl's parser insists).
pub fn schema_to_v2(mut s: Value) -> Value {
    fn go(v: &mut Value) {
        match v {
            Value::Object(m) => {
                // A reference beside its own description (and patch strategy) is OpenAPI 3's
                // `allOf: [$ref]`; Swagger 2 has the `$ref` beside them, as kube-apiserver
                // publishes it.
                if let Some(Value::Array(all)) = m.get("allOf")
                    && all.len() == 1
                    && let Some(r) = all[0].get("$ref").cloned()
                {
                    m.remove("allOf");
                    m.insert("$ref".into(), r);
                }
                if let Some(Value::String(r)) = m.get_mut("$ref")
                    && let Some(name) = r.strip_prefix("#/components/schemas/")
                {
                    *r = format!("#/definitions/{name}");
                }
                m.remove("nullable");
                if m.get("type").and_then(Value::as_str) == Some("array")
                    && !m.contains_key("items")
                {
                    m.insert("items".into(), json!({}));
                }
                for (k, child) in m.iter_mut() {
                    match (k.as_str(), child) {
                        // Enum values and defaults are data, not schemas.
                        ("enum" | "default" | "example", _) => {}
                        // Properties are schemas whatever their names (`default`, `enum`).
                        ("properties", Value::Object(properties)) => {
                            properties.values_mut().for_each(go)
                        }
                        (_, child) => go(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(go),
            _ => {}
        }
    }
    go(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_version_documents_are_self_contained() {
        let r = Registry::new();
        let kinds = r.kinds("");
        for g in kinds.groups() {
            for v in &g.versions {
                let doc = v3_group_version(&r, &kinds, &g.name, v).unwrap();
                let schemas = doc["components"]["schemas"].as_object().unwrap();
                let text = doc.to_string();
                for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                    let name = &piece[..piece.find('"').unwrap()];
                    assert!(
                        schemas.contains_key(name),
                        "{}/{v}: dangling $ref {name}",
                        g.name
                    );
                }
                // kubectl's field validation check: PATCH with GVK and fieldValidation.
                let patches: Vec<&Value> = doc["paths"]
                    .as_object()
                    .unwrap()
                    .values()
                    .filter_map(|p| p.get("patch"))
                    .collect();
                assert!(!patches.is_empty());
                for p in patches {
                    assert!(p["x-kubernetes-group-version-kind"].is_object());
                    assert!(
                        p["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|q| q["name"] == "fieldValidation")
                    );
                }
            }
        }
        let doc = v3_group_version(&r, &kinds, "hive.openshift.io", "v1").unwrap();
        let ss = &doc["components"]["schemas"]["io.openshift.hive.v1.SyncSet"];
        assert_eq!(ss["x-kubernetes-group-version-kind"][0]["kind"], "SyncSet");
        assert!(ss["properties"]["spec"]["properties"]["resources"].is_object());
        let patch = &doc["paths"]["/apis/hive.openshift.io/v1/namespaces/{namespace}/syncsets/{name}"]
            ["patch"];
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let core = v3_group_version(&r, &kinds, "", "v1").unwrap();
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
    }

    #[test]
    fn root_lists_every_group_version() {
        let r = Registry::new();
        let root = v3_root(&r, &r.kinds(""));
        for p in [
            "api/v1",
            "apis/hive.openshift.io/v1",
            "apis/hiveinternal.openshift.io/v1alpha1",
            "apis/apiextensions.k8s.io/v1",
        ] {
            assert!(
                root["paths"][p]["serverRelativeURL"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("/openapi/v3/{p}?hash="))
            );
        }
    }

    #[test]
    fn v2_refs_resolve_and_arrays_have_items() {
        let r = Registry::new();
        let doc = v2(&r, &r.kinds(""));
        let defs = doc["definitions"].as_object().unwrap();
        let text = doc.to_string();
        assert!(!text.contains("#/components/"));
        for piece in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
        fn arrays_have_items(v: &Value) -> bool {
            match v {
                Value::Object(m) => {
                    (m.get("type").and_then(Value::as_str) != Some("array")
                        || m.contains_key("items"))
                        && m.iter()
                            .filter(|(k, _)| *k != "enum" && *k != "default")
                            .all(|(_, c)| arrays_have_items(c))
                }
                Value::Array(a) => a.iter().all(arrays_have_items),
                _ => true,
            }
        }
        assert!(arrays_have_items(&doc["definitions"]));
    }
}
