//! The three non-apply patch types of the Kubernetes API.
//!
//! - JSON patch (RFC 6902) and JSON merge patch (RFC 7386), via the `json-patch` crate.
//! - Strategic merge patch, driven by the kind's schema: lists with a merge key merge item
//!   by item, merge-strategy primitive lists are unions, everything else merges like a JSON
//!   merge patch. Directives: `$patch: replace|delete|merge`, `$retainKeys`,
//!   `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`.
//!   Kinds without strategic metadata (CRD-style kinds) get merge-patch semantics for lists.

use serde_json::{Map, Value};

use crate::errors::{Error, Result};
use crate::schema::{ListType, Schema};

/// Operations one JSON patch may hold (kube-apiserver's limit).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| Error::BadRequest(e.to_string()))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(Error::TooLarge(format!(
            "The allowed operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, but found {}",
            ops.0.len()
        )));
    }
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| Error::Unprocessable(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| Error::BadRequest(e.to_string()))?;
    if !patch.is_object() {
        return Err(Error::BadRequest(
            "merge patch must be a JSON object".to_string(),
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// Which schemas guide a strategic merge.
#[derive(Clone, Copy)]
pub struct StrategicSchemas<'a> {
    /// The kind's root schema.
    pub root: &'a Schema,
    /// The ObjectMeta schema, for `metadata`.
    pub meta: &'a Schema,
    /// Whether list merge metadata is honoured (built-in kinds) or ignored (CRD kinds).
    pub lists: bool,
}

/// Applies a strategic merge patch.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &[u8],
    schemas: StrategicSchemas<'_>,
) -> Result<Value> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| Error::BadRequest(e.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(Error::BadRequest(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let Value::Object(original) = doc.clone() else {
        return Err(Error::BadRequest("cannot patch a non-object".into()));
    };
    let merged = merge_map(original, patch, Some(schemas.root), &schemas, true)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

fn child_schema<'a>(
    schema: Option<&'a Schema>,
    key: &str,
    s: &StrategicSchemas<'a>,
    root: bool,
) -> Option<&'a Schema> {
    if root && key == "metadata" {
        return Some(s.meta);
    }
    schema.and_then(|sc| sc.field(key))
}

/// Merges `patch` into `original`; `None` means the map itself was deleted (`$patch: delete`).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<&Schema>,
    s: &StrategicSchemas<'_>,
    root: bool,
) -> Result<Option<Map<String, Value>>> {
    match patch.remove(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            strip_directives(&mut patch);
            return Ok(Some(patch));
        }
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => {
            return Err(Error::BadRequest(format!("unknown patch type: {other}")));
        }
    }
    let retain = match patch.remove(RETAIN_KEYS) {
        None => None,
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| {
                    k.as_str().map(String::from).ok_or_else(|| {
                        Error::BadRequest("$retainKeys must be a list of strings".into())
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(Error::BadRequest(
                "$retainKeys must be a list of strings".into(),
            ));
        }
    };
    // Directives on sibling lists are applied after the lists themselves merge.
    let mut orders = Vec::new();
    let mut deletions = Vec::new();
    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            orders.push((field.to_string(), patch.remove(&key).unwrap_or_default()));
        } else if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE) {
            deletions.push((field.to_string(), patch.remove(&key).unwrap_or_default()));
        }
    }
    for (key, pv) in patch {
        let cs = child_schema(schema, &key, s, root);
        if pv.is_null() {
            original.remove(&key);
            continue;
        }
        let merged = match (original.remove(&key), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, cs, s, false)?.map(Value::Object)
            }
            (None, Value::Object(mut p)) => {
                // A new map: directives inside it have nothing to act on.
                if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                    None
                } else {
                    p.remove(DIRECTIVE);
                    strip_directives(&mut p);
                    Some(Value::Object(p))
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(o, p, cs, s)?))
            }
            (None, Value::Array(p)) => Some(Value::Array(merge_list(Vec::new(), p, cs, s)?)),
            (_, pv) => Some(pv),
        };
        if let Some(v) = merged {
            original.insert(key, v);
        }
    }
    for (field, values) in deletions {
        let Value::Array(values) = values else {
            return Err(Error::BadRequest(format!(
                "{DELETE_PRIMITIVE}{field} must be a list"
            )));
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            items.retain(|i| !values.contains(i));
        }
    }
    for (field, order) in orders {
        let Value::Array(order) = order else {
            return Err(Error::BadRequest(format!(
                "{SET_ORDER}{field} must be a list"
            )));
        };
        let key = match child_schema(schema, &field, s, root).map(|c| &c.list_type) {
            Some(ListType::Map(keys)) if s.lists => keys.first().cloned(),
            _ => None,
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            reorder(items, &order, key.as_deref());
        }
    }
    if let Some(retain) = retain {
        original.retain(|k, _| retain.contains(k));
    }
    Ok(Some(original))
}

fn strip_directives(map: &mut Map<String, Value>) {
    map.retain(|k, _| !k.starts_with('$'));
    for v in map.values_mut() {
        match v {
            Value::Object(m) => strip_directives(m),
            Value::Array(items) => {
                for i in items.iter_mut() {
                    if let Value::Object(m) = i {
                        strip_directives(m);
                    }
                }
            }
            _ => {}
        }
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Option<&Schema>,
    s: &StrategicSchemas<'_>,
) -> Result<Vec<Value>> {
    // `[{"$patch": "replace"}, ...rest]` replaces the list with the rest.
    let replace = patch
        .iter()
        .any(|i| i.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    if replace {
        return Ok(patch
            .into_iter()
            .filter(|i| i.get(DIRECTIVE).is_none())
            .collect());
    }
    let list_type = match schema {
        Some(sc) if s.lists => sc.list_type.clone(),
        _ => ListType::Atomic,
    };
    match list_type {
        ListType::Atomic => Ok(patch),
        ListType::Set => {
            let mut out = original;
            for item in patch {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            Ok(out)
        }
        ListType::Map(keys) => {
            let key = keys.first().cloned().unwrap_or_default();
            let item_schema = schema.and_then(|sc| sc.items.as_deref());
            let mut out = original;
            for item in patch {
                let Value::Object(mut pm) = item else {
                    return Err(Error::BadRequest(format!(
                        "list items of a merge list must be objects with the merge key {key:?}"
                    )));
                };
                let Some(kv) = pm.get(&key).cloned() else {
                    return Err(Error::BadRequest(format!(
                        "map: {} does not contain declared merge key: {key}",
                        Value::Object(pm)
                    )));
                };
                let pos = out.iter().position(|o| o.get(&key) == Some(&kv));
                let delete = pm.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let Value::Object(om) = std::mem::take(&mut out[i]) else {
                            out[i] = Value::Object(pm);
                            continue;
                        };
                        match merge_map(om, pm, item_schema, s, false)? {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    (None, false) => {
                        pm.remove(DIRECTIVE);
                        strip_directives(&mut pm);
                        out.push(Value::Object(pm));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Orders `items` as `order` says; items it does not mention keep their relative order
/// after the mentioned ones.
fn reorder(items: &mut [Value], order: &[Value], key: Option<&str>) {
    let rank = |item: &Value| -> usize {
        let probe = match key {
            Some(k) => item.get(k),
            None => Some(item),
        };
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == probe,
                None => Some(o) == probe,
            })
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> (Schema, Schema) {
        let root = Schema::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "containers": {"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "image": {"type": "string"},
                            "env": {"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name", "items": {"type": "object"}}
                        }}},
                    "args": {"type": "array", "items": {"type": "string"}}
                }}
            }
        })).unwrap();
        let (_, meta) = crate::builtin::object_meta_schema();
        (root, meta)
    }

    fn smp(doc: Value, patch: Value, lists: bool) -> Value {
        let (root, meta) = schemas();
        strategic_merge_patch(
            &doc,
            patch.to_string().as_bytes(),
            StrategicSchemas {
                root: &root,
                meta: &meta,
                lists,
            },
        )
        .unwrap()
    }

    #[test]
    fn merges_lists_by_key() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}], "args": ["x"]}});
        let out = smp(
            doc.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}], "args": ["y"]}}),
            true,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}])
        );
        assert_eq!(out["spec"]["args"], json!(["y"]));
        // Without list metadata (CRD kinds): merge-patch semantics.
        let out = smp(
            doc,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}),
            false,
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "2"}])
        );
    }

    #[test]
    fn directives() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
            "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "E", "value": "1"}]}, {"name": "b"}]}});
        let out = smp(
            doc.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            true,
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        let out = smp(
            doc.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z"}]}}),
            true,
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
        let out = smp(
            doc.clone(),
            json!({"metadata": {"finalizers": ["c"], "labels": {"x": null}}}),
            true,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
        let out = smp(
            doc.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            true,
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            doc.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            true,
        );
        assert_eq!(out["spec"]["containers"][0]["name"], "b");
        let out = smp(
            doc.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}}}),
            true,
        );
        assert_eq!(out["metadata"]["labels"], json!({"z": "9"}));
        let out = smp(
            doc.clone(),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]}]}}),
            true,
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let out = smp(
            json!({"spec": {"a": 1, "b": 2}}),
            json!({"spec": {"$retainKeys": ["b", "c"], "c": 3}}),
            true,
        );
        assert_eq!(out["spec"], json!({"b": 2, "c": 3}));
    }

    #[test]
    fn rejects_malformed_patches() {
        let (root, meta) = schemas();
        let s = StrategicSchemas {
            root: &root,
            meta: &meta,
            lists: true,
        };
        assert!(strategic_merge_patch(&json!({}), b"[1]", s).is_err());
        assert!(
            strategic_merge_patch(
                &json!({"spec": {"containers": []}}),
                br#"{"spec":{"containers":[{"image":"x"}]}}"#,
                s
            )
            .is_err()
        );
        assert!(json_patch(&json!({}), br#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert!(json_patch(&json!({}), br#"{"op":"add"}"#).is_err());
        assert_eq!(
            json_patch(
                &json!({"a": 1}),
                br#"[{"op":"replace","path":"/a","value":2}]"#
            )
            .unwrap()["a"],
            2
        );
        assert_eq!(
            merge_patch(&json!({"a": 1, "b": 2}), br#"{"a":null}"#).unwrap(),
            json!({"b": 2})
        );
    }
}
