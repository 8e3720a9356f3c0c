//! Field sets: tries of path elements, encoded as Kubernetes' `FieldsV1`.
//!
//! ```text
//!   {"f:data": {"f:a": {}}, "f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}, "f:port": {}}}}}
//!      f:<field>   map key or struct field      k:<json>  associative-list item by its keys
//!      v:<json>    set item                      .         the node itself is a member
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths. Each node may itself be a member and may have children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// A path: a sequence of encoded path elements (`f:spec`, `k:{"name":"a"}`…).
pub type FieldPath = Vec<String>;

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds a path as a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// Whether a path is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.member
    }

    /// Whether some member lies at or below `path`.
    pub fn has_prefix(&self, path: &[String]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        !node.is_empty()
    }

    /// Removes a path (the member at exactly that path, keeping members below it).
    pub fn remove(&mut self, path: &[String]) {
        fn go(node: &mut FieldSet, path: &[String]) {
            match path.split_first() {
                None => node.member = false,
                Some((pe, rest)) => {
                    if let Some(child) = node.children.get_mut(pe) {
                        go(child, rest);
                        if child.is_empty() {
                            node.children.remove(pe);
                        }
                    }
                }
            }
        }
        go(self, path);
    }

    /// Every member path, depth first.
    pub fn paths(&self) -> Vec<FieldPath> {
        fn go(node: &FieldSet, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
            if node.member {
                out.push(prefix.clone());
            }
            for (pe, child) in &node.children {
                prefix.push(pe.clone());
                go(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        go(self, &mut Vec::new(), &mut out);
        out
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// `self ∖ other` (members only; structure is pruned where it empties).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// `self ∖ other`, where a member of `other` removes everything below it too.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) if o.member => continue,
                Some(o) => child.recursive_difference(o),
                None => child.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = child.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Encodes as `FieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (pe, child) in &self.children {
            if child.is_empty() {
                continue;
            }
            map.insert(pe.clone(), child.encode_node());
        }
        Value::Object(map)
    }

    fn encode_node(&self) -> Value {
        let mut map = Map::new();
        let has_children = self.children.values().any(|c| !c.is_empty());
        if self.member && has_children {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            if !child.is_empty() {
                map.insert(pe.clone(), child.encode_node());
            }
        }
        Value::Object(map)
    }

    /// Decodes `FieldsV1` JSON; unknown element prefixes are ignored, as Kubernetes does.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = v else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut out = FieldSet::new();
        for (k, child) in map {
            if k == "." {
                continue;
            }
            if !(k.starts_with("f:")
                || k.starts_with("k:")
                || k.starts_with("v:")
                || k.starts_with("i:"))
            {
                continue;
            }
            let Value::Object(cm) = child else {
                return Err(format!("fieldsV1 entry {k:?} must be an object"));
            };
            let mut node = FieldSet::from_fields_v1(child)?;
            if cm.is_empty() || cm.contains_key(".") {
                node.member = true;
            }
            out.children.insert(k.clone(), node);
        }
        Ok(out)
    }
}

/// Renders a path as structured-merge-diff prints it in conflicts:
/// `.spec.containers[name="nginx"].image`, `.metadata.finalizers[="a"]`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = fields
                .iter()
                .map(|(name, v)| format!("{name}={}", display_value(v)))
                .collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            let value: Value = serde_json::from_str(v).unwrap_or(Value::Null);
            out.push_str(&format!("[={}]", display_value(&value)));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(parts: &[&str]) -> FieldPath {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn encodes_like_kubernetes() {
        let mut s = FieldSet::new();
        s.insert(&p(&["f:data"]));
        s.insert(&p(&["f:data", "f:a"]));
        s.insert(&p(&["f:metadata", "f:labels", "f:app"]));
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&v).unwrap(), s);
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&p(&["f:x"]));
        a.insert(&p(&["f:y", "f:z"]));
        let mut b = FieldSet::new();
        b.insert(&p(&["f:y", "f:z"]));
        assert_eq!(a.difference(&b).paths(), vec![p(&["f:x"])]);
        assert_eq!(a.intersection(&b).paths(), vec![p(&["f:y", "f:z"])]);
        assert_eq!(b.union(&a).paths().len(), 2);
        let mut parent = FieldSet::new();
        parent.insert(&p(&["f:y"]));
        assert_eq!(a.recursive_difference(&parent).paths(), vec![p(&["f:x"])]);
    }

    #[test]
    fn displays_paths() {
        assert_eq!(
            display_path(&p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"nginx\"}",
                "f:image"
            ])),
            ".spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(
            display_path(&p(&["f:metadata", "f:finalizers", "v:\"a\""])),
            ".metadata.finalizers[=\"a\"]"
        );
    }
}
