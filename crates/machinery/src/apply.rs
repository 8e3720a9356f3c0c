//! Server-side apply and field ownership (`metadata.managedFields`), following
//! structured-merge-diff's semantics:
//!
//! ```text
//!  Apply(live, config, manager, force):
//!    merged  = merge(live, config)                         config wins; assoc lists by key
//!    set     = fieldset(config)                            what the applier now declares
//!    merged -= (previous set − set) not owned by others    fields it stopped declaring go
//!    conflicts = other managers ∩ changed(live → merged)   409 unless force
//!  Update(live, new, manager):                             PUT / POST / non-apply PATCH
//!    changed fields move to `manager` (operation Update)
//! ```
//! Lists are atomic unless the schema says `set` or `map` (or carries a strategic merge key);
//! objects without a schema (preserved unknown fields) are granular maps.

pub mod fieldset;
mod managers;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use fieldset::{FieldPath, FieldSet, display_path};
use managers::stripped_fields;
pub use managers::{ManagedEntry, Managers, Operation};

use crate::errors::Error;
use crate::schema::{ListType, Schema};

/// The schemas that describe an object.
#[derive(Clone, Copy)]
pub struct Schemas<'a> {
    /// The kind's root schema.
    pub root: &'a Schema,
    /// ObjectMeta's schema.
    pub meta: &'a Schema,
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Typed(&'a Schema),
    /// No schema: a granular map of deduced values with atomic lists.
    Deduced,
}

impl<'a> Node<'a> {
    /// The child node for a key and whether it is a declared struct field.
    fn field(self, key: &str, resource: bool, s: &Schemas<'a>) -> Result<(Node<'a>, bool), String> {
        if resource {
            match key {
                "metadata" => return Ok((Node::Typed(s.meta), true)),
                "apiVersion" | "kind" => return Ok((Node::Deduced, true)),
                _ => {}
            }
        }
        match self {
            Node::Deduced => Ok((Node::Deduced, false)),
            Node::Typed(sc) => {
                if let Some(child) = sc.properties.get(key) {
                    Ok((Node::Typed(child), true))
                } else if let Some(ap) = sc.additional_properties.as_deref() {
                    Ok((Node::Typed(ap), false))
                } else if sc.preserve_unknown_fields || sc.type_.is_none() {
                    Ok((Node::Deduced, false))
                } else {
                    Err("field not declared in schema".to_string())
                }
            }
        }
    }

    fn lenient_field(self, key: &str, resource: bool, s: &Schemas<'a>) -> (Node<'a>, bool) {
        self.field(key, resource, s)
            .unwrap_or((Node::Deduced, false))
    }

    fn list_type(self) -> ListType {
        match self {
            Node::Typed(sc) => sc.list_type.clone(),
            Node::Deduced => ListType::Atomic,
        }
    }

    fn item(self) -> Node<'a> {
        match self {
            Node::Typed(sc) => sc.items.as_deref().map_or(Node::Deduced, Node::Typed),
            Node::Deduced => Node::Deduced,
        }
    }

    fn atomic_map(self) -> bool {
        matches!(self, Node::Typed(sc) if sc.map_atomic)
    }

    fn embedded(self) -> bool {
        matches!(self, Node::Typed(sc) if sc.embedded_resource)
    }
}

fn push(path: &[String], pe: String) -> FieldPath {
    let mut p = path.to_vec();
    p.push(pe);
    p
}

fn element(item: &Value, node: Node<'_>, lt: &ListType) -> Result<String, String> {
    match lt {
        ListType::Map(keys) => {
            let mut fields = Map::new();
            for key in keys {
                match item.get(key) {
                    Some(v) => {
                        fields.insert(key.clone(), v.clone());
                    }
                    None => {
                        let default = match node.item() {
                            Node::Typed(sc) => {
                                sc.properties.get(key).and_then(|p| p.default.clone())
                            }
                            Node::Deduced => None,
                        };
                        match default {
                            Some(d) => {
                                fields.insert(key.clone(), d);
                            }
                            None => {
                                return Err(format!(
                                    "associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                                ));
                            }
                        }
                    }
                }
            }
            Ok(format!("k:{}", Value::Object(fields)))
        }
        _ => Ok(format!("v:{item}")),
    }
}

/// The fields an applied configuration declares (structured-merge-diff `ToFieldSet`).
pub fn to_field_set(config: &Value, s: &Schemas<'_>) -> Result<FieldSet, Error> {
    let mut set = FieldSet::new();
    walk(config, Node::Typed(s.root), &[], true, s, &mut set)
        .map_err(|(path, msg)| Error::BadRequest(format!("{}: {msg}", display_path(&path))))?;
    Ok(set)
}

fn walk(
    v: &Value,
    node: Node<'_>,
    path: &[String],
    resource: bool,
    s: &Schemas<'_>,
    set: &mut FieldSet,
) -> Result<(), (FieldPath, String)> {
    match v {
        Value::Object(map) if !node.atomic_map() => {
            for (k, cv) in map {
                let cpath = push(path, format!("f:{k}"));
                let (child, declared) =
                    node.field(k, resource, s).map_err(|m| (cpath.clone(), m))?;
                walk(cv, child, &cpath, child.embedded(), s, set)?;
                let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
                if empty || !declared {
                    set.insert(&cpath);
                }
            }
        }
        Value::Array(items) => {
            let lt = node.list_type();
            if lt == ListType::Atomic {
                set.insert(path);
            } else {
                for item in items {
                    let pe = element(item, node, &lt).map_err(|m| (path.to_vec(), m))?;
                    let ipath = push(path, pe);
                    walk(item, node.item(), &ipath, node.item().embedded(), s, set)?;
                    set.insert(&ipath);
                }
            }
        }
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
    Ok(())
}

/// Fields added, modified and removed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Present only in the new version (a new non-leaf node is itself a member).
    pub added: FieldSet,
    /// Leaf values that differ.
    pub modified: FieldSet,
    /// Present only in the old version.
    pub removed: FieldSet,
}

/// Compares two versions of an object.
pub fn compare(old: &Value, new: &Value, s: &Schemas<'_>) -> Comparison {
    let mut cmp = Comparison::default();
    compare_at(
        Some(old),
        Some(new),
        Node::Typed(s.root),
        &[],
        true,
        s,
        &mut cmp,
    );
    cmp
}

fn all_of(
    v: &Value,
    node: Node<'_>,
    path: &[String],
    resource: bool,
    s: &Schemas<'_>,
    set: &mut FieldSet,
) {
    if !path.is_empty() {
        set.insert(path);
    }
    // Undeclared fields cannot occur in stored objects; tolerate them anyway.
    let _ = walk(v, node, path, resource, s, set);
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    node: Node<'_>,
    path: &[String],
    resource: bool,
    s: &Schemas<'_>,
    cmp: &mut Comparison,
) {
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => all_of(n, node, path, resource, s, &mut cmp.added),
        (Some(o), None) => all_of(o, node, path, resource, s, &mut cmp.removed),
        (Some(Value::Object(o)), Some(Value::Object(n))) if !node.atomic_map() => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (child, _) = node.lenient_field(k, resource, s);
                compare_at(
                    o.get(k),
                    n.get(k),
                    child,
                    &push(path, format!("f:{k}")),
                    child.embedded(),
                    s,
                    cmp,
                );
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if node.list_type() != ListType::Atomic => {
            let lt = node.list_type();
            let index = |items: &[Value]| -> BTreeMap<String, usize> {
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| element(item, node, &lt).ok().map(|pe| (pe, i)))
                    .collect()
            };
            let (oi, ni) = (index(o), index(n));
            let mut pes: Vec<&String> = oi.keys().chain(ni.keys()).collect();
            pes.sort();
            pes.dedup();
            let item = node.item();
            for pe in pes {
                compare_at(
                    oi.get(pe).map(|&i| &o[i]),
                    ni.get(pe).map(|&i| &n[i]),
                    item,
                    &push(path, pe.clone()),
                    item.embedded(),
                    s,
                    cmp,
                );
            }
        }
        (Some(o), Some(n)) => {
            if o != n && !path.is_empty() {
                cmp.modified.insert(path);
            }
        }
    }
}

/// Merges an applied configuration into the live object: config values win, maps merge
/// per key, associative lists per item (live order kept, new items appended), everything
/// else is replaced.
pub fn merge(live: &Value, config: &Value, s: &Schemas<'_>) -> Value {
    merge_at(live, config, Node::Typed(s.root), true, s)
}

fn merge_at(
    live: &Value,
    config: &Value,
    node: Node<'_>,
    resource: bool,
    s: &Schemas<'_>,
) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !node.atomic_map() => {
            let mut out = l.clone();
            for (k, cv) in c {
                let (child, _) = node.lenient_field(k, resource, s);
                let merged = match l.get(k) {
                    Some(lv) => merge_at(lv, cv, child, child.embedded(), s),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) if node.list_type() != ListType::Atomic => {
            let lt = node.list_type();
            let item = node.item();
            let mut out = l.clone();
            for citem in c {
                let pe = element(citem, node, &lt).ok();
                let pos = pe.as_ref().and_then(|pe| {
                    out.iter()
                        .position(|o| element(o, node, &lt).ok().as_ref() == Some(pe))
                });
                match pos {
                    Some(i) => out[i] = merge_at(&out[i], citem, item, item.embedded(), s),
                    None => out.push(citem.clone()),
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes the value at `path`; containers it leaves empty are removed too unless `keep`
/// holds them.
fn remove_path(v: &mut Value, path: &[String], keep: &FieldSet, prefix: &mut FieldPath) {
    let Some((pe, rest)) = path.split_first() else {
        return;
    };
    let child = match v {
        Value::Object(map) => pe
            .strip_prefix("f:")
            .and_then(|k| map.get_mut(k).map(|c| (k.to_string(), c))),
        _ => None,
    };
    prefix.push(pe.clone());
    if let Some((key, c)) = child {
        if rest.is_empty() {
            if let Value::Object(map) = v {
                map.remove(&key);
            }
        } else {
            remove_path(c, rest, keep, prefix);
            if is_empty_container(c)
                && !keep.contains(prefix)
                && let Value::Object(map) = v
            {
                map.remove(&key);
            }
        }
    } else if let Value::Array(items) = v {
        let pos = items.iter().position(|item| match pe.split_once(':') {
            Some(("v", json)) => serde_json::from_str::<Value>(json).ok().as_ref() == Some(item),
            Some(("k", json)) => serde_json::from_str::<Map<String, Value>>(json)
                .is_ok_and(|keys| keys.iter().all(|(k, kv)| item.get(k) == Some(kv))),
            _ => false,
        });
        if let Some(i) = pos {
            if rest.is_empty() {
                items.remove(i);
            } else {
                remove_path(&mut items[i], rest, keep, prefix);
            }
        }
    }
    prefix.pop();
}

fn is_empty_container(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

/// Field ownership bookkeeping for one write.
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The API version of the request.
    pub api_version: &'a str,
    /// The subresource written (`status`) or empty.
    pub subresource: &'a str,
    /// Current time, RFC 3339 seconds.
    pub now: &'a str,
    /// Fields the endpoint resets (e.g. `status` on the main resource), never owned.
    pub ignored: &'a FieldSet,
}

/// Records the fields changed by a non-apply write as owned by `writer` (operation Update).
pub fn track_update(
    managers: &mut Managers,
    old: &Value,
    new: &Value,
    s: &Schemas<'_>,
    w: Writer<'_>,
) {
    let cmp = compare(old, new, s);
    let changed = cmp.modified.union(&cmp.added);
    for e in &mut managers.0 {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    let own = changed
        .difference(&cmp.removed)
        .difference(&stripped_fields())
        .recursive_difference(w.ignored);
    if !own.is_empty() {
        match managers.position(w.manager, Operation::Update, w.api_version, w.subresource) {
            Some(i) => {
                let e = &mut managers.0[i];
                e.set = e.set.union(&own);
                e.time = Some(w.now.to_string());
            }
            None => managers.0.push(ManagedEntry {
                manager: w.manager.to_string(),
                operation: Operation::Update,
                api_version: w.api_version.to_string(),
                time: Some(w.now.to_string()),
                subresource: w.subresource.to_string(),
                set: own,
            }),
        }
    }
    managers.strip(
        w.ignored,
        w.manager,
        Operation::Update,
        w.api_version,
        w.subresource,
    );
    managers.cap();
}

/// Server-side apply. Returns the merged object and the new managers, or a 409 Conflict.
pub fn apply(
    live: &Value,
    config: &Value,
    mut managers: Managers,
    s: &Schemas<'_>,
    w: Writer<'_>,
    force: bool,
) -> Result<(Value, Managers), Error> {
    let mut merged = merge(live, config, s);
    let set = to_field_set(config, s)?
        .difference(&stripped_fields())
        .recursive_difference(w.ignored);
    let me = managers.position(w.manager, Operation::Apply, w.api_version, w.subresource);
    let last = me.map(|i| managers.0[i].set.clone()).unwrap_or_default();

    // Prune what this applier declared before and no longer does, unless others own it.
    let others: FieldSet = managers
        .0
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != me)
        .fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.set));
    let keep = others.union(&set);
    for path in last.difference(&set).paths() {
        if others.has_prefix(&path) || set.has_prefix(&path) {
            continue;
        }
        remove_path(&mut merged, &path, &keep, &mut Vec::new());
    }

    let cmp = compare(live, &merged, s);
    let changed = cmp
        .modified
        .union(&cmp.added)
        .recursive_difference(w.ignored);
    let mut conflicts: Vec<(usize, Vec<FieldPath>)> = Vec::new();
    for (i, e) in managers.0.iter().enumerate() {
        if Some(i) == me {
            continue;
        }
        let c = e.set.intersection(&changed);
        if !c.is_empty() {
            conflicts.push((i, c.paths()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&managers, &conflicts));
    }
    for (i, _) in &conflicts {
        let e = &mut managers.0[*i];
        e.set = e.set.difference(&changed);
    }
    for e in &mut managers.0 {
        e.set = e.set.difference(&cmp.removed);
    }
    let no_op = merged == *live;
    match me {
        Some(i) => {
            let e = &mut managers.0[i];
            e.set = set;
            e.api_version = w.api_version.to_string();
            if !no_op || e.time.is_none() {
                e.time = Some(w.now.to_string());
            }
        }
        None => managers.0.push(ManagedEntry {
            manager: w.manager.to_string(),
            operation: Operation::Apply,
            api_version: w.api_version.to_string(),
            time: Some(w.now.to_string()),
            subresource: w.subresource.to_string(),
            set,
        }),
    }
    managers.strip(
        w.ignored,
        w.manager,
        Operation::Apply,
        w.api_version,
        w.subresource,
    );
    Ok((merged, managers))
}

fn conflict_error(managers: &Managers, conflicts: &[(usize, Vec<FieldPath>)]) -> Error {
    let mut sorted: Vec<(String, Vec<String>)> = conflicts
        .iter()
        .map(|(i, paths)| {
            (
                managers.0[*i].describe(),
                paths.iter().map(|p| display_path(p)).collect(),
            )
        })
        .collect();
    sorted.sort();
    let total: usize = sorted.iter().map(|(_, p)| p.len()).sum();
    let causes = sorted
        .iter()
        .flat_map(|(m, paths)| {
            paths.iter().map(move |p| {
                (
                    "FieldManagerConflict".to_string(),
                    format!("conflict with {m}"),
                    p.clone(),
                )
            })
        })
        .collect();
    let message = if total == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            sorted[0].0, sorted[0].1[0]
        )
    } else {
        let mut lines = Vec::new();
        for (m, paths) in &sorted {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    Error::Conflict { message, causes }
}

#[cfg(test)]
mod tests;
