//! `metadata.managedFields`: who owns which fields, read from and written back to the
//! object, with the bookkeeping rules of structured-merge-diff (one entry per manager,
//! operation, API version and subresource; at most ten Update entries).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldset::FieldSet;

/// Apply or Update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// API version the fields were written in.
    pub api_version: String,
    /// Last change (RFC 3339, seconds).
    pub time: Option<String>,
    /// Subresource (`status`) or empty.
    pub subresource: String,
    /// Owned fields.
    pub set: FieldSet,
}

impl ManagedEntry {
    fn same_identity(
        &self,
        manager: &str,
        op: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == op
            && self.subresource == subresource
            && (op == Operation::Apply || self.api_version == api_version)
    }

    pub(super) fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The managed fields of an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Managers(pub Vec<ManagedEntry>);

const MAX_UPDATE_MANAGERS: usize = 10;

impl Managers {
    /// Reads `metadata.managedFields`.
    pub fn decode(obj: &Value) -> Result<Self, String> {
        let Some(list) = obj["metadata"].get("managedFields") else {
            return Ok(Self::default());
        };
        let Value::Array(list) = list else {
            return Err("metadata.managedFields must be a list".into());
        };
        let mut out = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let op = match e["operation"].as_str() {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                other => {
                    return Err(format!(
                        "metadata.managedFields[{i}].operation: unsupported value {other:?}"
                    ));
                }
            };
            let set = match e.get("fieldsV1") {
                Some(f) => FieldSet::from_fields_v1(f)
                    .map_err(|m| format!("metadata.managedFields[{i}].fieldsV1: {m}"))?,
                None => FieldSet::new(),
            };
            out.push(ManagedEntry {
                manager: e["manager"].as_str().unwrap_or("unknown").to_string(),
                operation: op,
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                time: e["time"].as_str().map(String::from),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                set,
            });
        }
        Ok(Self(out))
    }

    /// Writes `metadata.managedFields` (omitted when empty), sorted as Kubernetes sorts it.
    pub fn encode_into(mut self, obj: &mut Value) {
        self.0.retain(|e| !e.set.is_empty());
        self.0.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if self.0.is_empty() {
            meta.remove("managedFields");
            return;
        }
        let list: Vec<Value> = self
            .0
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert(
                    "operation".into(),
                    json!(if e.operation == Operation::Apply {
                        "Apply"
                    } else {
                        "Update"
                    }),
                );
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }

    pub(super) fn position(
        &self,
        manager: &str,
        op: Operation,
        api_version: &str,
        subresource: &str,
    ) -> Option<usize> {
        self.0
            .iter()
            .position(|e| e.same_identity(manager, op, api_version, subresource))
    }

    /// Removes what no manager owns from every entry, and the fields the endpoint resets
    /// (`ignored`) from the writer's own entry only: a status write leaves the spec's
    /// managers as they were, a main-resource write the status's (as kube-apiserver).
    /// Entries left empty go.
    pub(super) fn strip(
        &mut self,
        ignored: &FieldSet,
        manager: &str,
        op: Operation,
        api_version: &str,
        subresource: &str,
    ) {
        let stripped = stripped_fields();
        for e in &mut self.0 {
            e.set = e.set.difference(&stripped);
            if e.same_identity(manager, op, api_version, subresource) {
                e.set = e.set.recursive_difference(ignored);
            }
        }
        self.0.retain(|e| !e.set.is_empty());
    }

    /// Folds the oldest Update entries into `ancient-changes` while there are more than ten.
    pub(super) fn cap(&mut self) {
        let updates = self
            .0
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .count();
        if updates <= MAX_UPDATE_MANAGERS {
            return;
        }
        let mut order: Vec<usize> = (0..self.0.len())
            .filter(|&i| self.0[i].operation == Operation::Update)
            .collect();
        order.sort_by(|&a, &b| {
            (&self.0[a].time, &self.0[a].manager).cmp(&(&self.0[b].time, &self.0[b].manager))
        });
        let mut excess = updates - MAX_UPDATE_MANAGERS;
        let mut first_of_version: BTreeMap<String, usize> = BTreeMap::new();
        let mut drop = Vec::new();
        for i in order {
            if excess == 0 {
                break;
            }
            let version = self.0[i].api_version.clone();
            match first_of_version.get(&version) {
                None => {
                    first_of_version.insert(version, i);
                }
                Some(&keeper) => {
                    let set = self.0[i].set.clone();
                    let time = self.0[i].time.clone();
                    let bucket = &mut self.0[keeper];
                    bucket.manager = "ancient-changes".into();
                    bucket.set = bucket.set.union(&set);
                    bucket.time = time;
                    drop.push(i);
                    excess -= 1;
                }
            }
        }
        drop.sort_unstable();
        for i in drop.into_iter().rev() {
            self.0.remove(i);
        }
    }
}

/// Paths no manager ever owns.
pub(super) fn stripped_fields() -> FieldSet {
    let mut s = FieldSet::new();
    for p in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ] {
        s.insert(&p.iter().map(|e| e.to_string()).collect::<Vec<_>>());
    }
    s
}
