//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into JSON, for the built-in kinds typed clients send that way: kubectl ≥ 1.32 creates
//! Namespaces, ConfigMaps, Secrets, Roles and bindings in protobuf, `kubectl auth can-i`
//! posts its reviews so, and typed deletes send DeleteOptions.
//!
//! ```text
//!   "k8s\0" ‖ runtime.Unknown{ typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3, contentType=4 }
//! ```
//! `raw` is the object's own message (gogo-protobuf, proto2). Field numbers follow
//! `k8s.io/api/core/v1` and `k8s.io/apimachinery/pkg/apis/meta/v1` `generated.proto`.
//! Zero values, which gogo writes for every non-pointer field, are dropped, as Go's JSON
//! encoding (`omitempty`) would drop them.

use base64::Engine as _;
use serde_json::{Map, Value};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    Msg(&'static [(u32, &'static str, F)]),
    RepStr,
    RepMsg(&'static [(u32, &'static str, F)]),
    MapStrStr,
    /// map<string, bytes>: values base64 in JSON.
    MapStrBytes,
    /// metav1.Time: seconds (nanos ignored), RFC 3339.
    Time,
    /// metav1.MicroTime: seconds and nanos, RFC 3339 with microseconds.
    MicroTime,
    /// FieldsV1: raw JSON bytes.
    FieldsV1,
}

type Desc = &'static [(u32, &'static str, F)];

const OWNER_REFERENCE: Desc = &[
    (1, "kind", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "controller", F::Bool),
    (7, "blockOwnerDeletion", F::Bool),
];

const MANAGED_FIELDS_ENTRY: Desc = &[
    (1, "manager", F::Str),
    (2, "operation", F::Str),
    (3, "apiVersion", F::Str),
    (4, "time", F::Time),
    (6, "fieldsType", F::Str),
    (7, "fieldsV1", F::FieldsV1),
    (8, "subresource", F::Str),
];

const OBJECT_META: Desc = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (4, "selfLink", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::Int),
    (8, "creationTimestamp", F::Time),
    (9, "deletionTimestamp", F::Time),
    (10, "deletionGracePeriodSeconds", F::Int),
    (11, "labels", F::MapStrStr),
    (12, "annotations", F::MapStrStr),
    (13, "ownerReferences", F::RepMsg(OWNER_REFERENCE)),
    (14, "finalizers", F::RepStr),
    (17, "managedFields", F::RepMsg(MANAGED_FIELDS_ENTRY)),
];

const NAMESPACE_CONDITION: Desc = &[
    (1, "type", F::Str),
    (2, "status", F::Str),
    (4, "lastTransitionTime", F::Time),
    (5, "reason", F::Str),
    (6, "message", F::Str),
];

const NAMESPACE: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(&[(1, "finalizers", F::RepStr)])),
    (
        3,
        "status",
        F::Msg(&[
            (1, "phase", F::Str),
            (2, "conditions", F::RepMsg(NAMESPACE_CONDITION)),
        ]),
    ),
];

const CONFIG_MAP: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStrStr),
    (3, "binaryData", F::MapStrBytes),
    (4, "immutable", F::Bool),
];

const SECRET: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStrBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStrStr),
    (5, "immutable", F::Bool),
];

const OBJECT_REFERENCE: Desc = &[
    (1, "kind", F::Str),
    (2, "namespace", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "fieldPath", F::Str),
];

const EVENT: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "involvedObject", F::Msg(OBJECT_REFERENCE)),
    (3, "reason", F::Str),
    (4, "message", F::Str),
    (
        5,
        "source",
        F::Msg(&[(1, "component", F::Str), (2, "host", F::Str)]),
    ),
    (6, "firstTimestamp", F::Time),
    (7, "lastTimestamp", F::Time),
    (8, "count", F::Int),
    (9, "type", F::Str),
    (10, "eventTime", F::MicroTime),
    (
        11,
        "series",
        F::Msg(&[(1, "count", F::Int), (2, "lastObservedTime", F::MicroTime)]),
    ),
    (12, "action", F::Str),
    (13, "related", F::Msg(OBJECT_REFERENCE)),
    (14, "reportingComponent", F::Str),
    (15, "reportingInstance", F::Str),
];

const DELETE_OPTIONS: Desc = &[
    (1, "gracePeriodSeconds", F::Int),
    (
        2,
        "preconditions",
        F::Msg(&[(1, "uid", F::Str), (2, "resourceVersion", F::Str)]),
    ),
    (3, "orphanDependents", F::Bool),
    (4, "propagationPolicy", F::Str),
    (5, "dryRun", F::RepStr),
    (
        6,
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        F::Bool,
    ),
];

const POLICY_RULE: Desc = &[
    (1, "verbs", F::RepStr),
    (2, "apiGroups", F::RepStr),
    (3, "resources", F::RepStr),
    (4, "resourceNames", F::RepStr),
    (5, "nonResourceURLs", F::RepStr),
];

const LABEL_SELECTOR: Desc = &[
    (1, "matchLabels", F::MapStrStr),
    (
        2,
        "matchExpressions",
        F::RepMsg(&[
            (1, "key", F::Str),
            (2, "operator", F::Str),
            (3, "values", F::RepStr),
        ]),
    ),
];

const ROLE: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "rules", F::RepMsg(POLICY_RULE)),
];

const CLUSTER_ROLE: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "rules", F::RepMsg(POLICY_RULE)),
    (
        3,
        "aggregationRule",
        F::Msg(&[(1, "clusterRoleSelectors", F::RepMsg(LABEL_SELECTOR))]),
    ),
];

const ROLE_BINDING: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (
        2,
        "subjects",
        F::RepMsg(&[
            (1, "kind", F::Str),
            (2, "apiGroup", F::Str),
            (3, "name", F::Str),
            (4, "namespace", F::Str),
        ]),
    ),
    (
        3,
        "roleRef",
        F::Msg(&[
            (1, "apiGroup", F::Str),
            (2, "kind", F::Str),
            (3, "name", F::Str),
        ]),
    ),
];

const SELF_SUBJECT_ACCESS_REVIEW: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (
        2,
        "spec",
        F::Msg(&[
            (
                1,
                "resourceAttributes",
                F::Msg(&[
                    (1, "namespace", F::Str),
                    (2, "verb", F::Str),
                    (3, "group", F::Str),
                    (4, "version", F::Str),
                    (5, "resource", F::Str),
                    (6, "subresource", F::Str),
                    (7, "name", F::Str),
                ]),
            ),
            (
                2,
                "nonResourceAttributes",
                F::Msg(&[(1, "path", F::Str), (2, "verb", F::Str)]),
            ),
        ]),
    ),
];

const SELF_SUBJECT_RULES_REVIEW: Desc = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(&[(1, "namespace", F::Str)])),
];

fn descriptor(api_version: &str, kind: &str) -> Option<Desc> {
    match (api_version, kind) {
        ("rbac.authorization.k8s.io/v1", "Role") => Some(ROLE),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => Some(CLUSTER_ROLE),
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            Some(ROLE_BINDING)
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => Some(SELF_SUBJECT_ACCESS_REVIEW),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => Some(SELF_SUBJECT_RULES_REVIEW),
        ("v1", "Namespace") => Some(NAMESPACE),
        ("v1", "ConfigMap") => Some(CONFIG_MAP),
        ("v1", "Secret") => Some(SECRET),
        ("v1", "Event") => Some(EVENT),
        (_, "DeleteOptions") => Some(DELETE_OPTIONS),
        _ => None,
    }
}

/// Decodes a protobuf body into the object's JSON form (with `apiVersion` and `kind`).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf prefix")?;
    let envelope = Reader::new(body).fields()?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (num, value) in envelope {
        match (num, value) {
            (1, Wire::Len(tm)) => {
                for (n, v) in Reader::new(tm).fields()? {
                    if let Wire::Len(s) = v {
                        let s = std::str::from_utf8(s).map_err(|_| "typeMeta is not UTF-8")?;
                        match n {
                            1 => api_version = s.to_string(),
                            2 => kind = s.to_string(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Wire::Len(r)) => raw = r,
            (3, Wire::Len(enc)) if !enc.is_empty() => {
                return Err(format!(
                    "unsupported content encoding {:?}",
                    String::from_utf8_lossy(enc)
                ));
            }
            _ => {}
        }
    }
    let desc = descriptor(&api_version, &kind)
        .ok_or_else(|| format!("protobuf is not supported for {api_version}, Kind={kind}"))?;
    let mut obj = message(raw, desc)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn fields(mut self) -> Result<Vec<(u32, Wire<'a>)>, String> {
        let mut out = Vec::new();
        while self.pos < self.buf.len() {
            let key = self.varint()?;
            let num = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
            let wire = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    if self.pos + n > self.buf.len() {
                        return Err("truncated fixed-width field".into());
                    }
                    self.pos += n;
                    Wire::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                    let end = self
                        .pos
                        .checked_add(len)
                        .filter(|e| *e <= self.buf.len())
                        .ok_or("truncated field")?;
                    let s = &self.buf[self.pos..end];
                    self.pos = end;
                    Wire::Len(s)
                }
                other => return Err(format!("unsupported wire type {other}")),
            };
            out.push((num, wire));
        }
        Ok(out)
    }
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "string field is not UTF-8".to_string())
}

fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, v) in Reader::new(b).fields()? {
        if let Wire::Len(s) = v {
            match n {
                1 => key = text(s)?,
                2 => value = s,
                _ => {}
            }
        }
    }
    Ok((key, value))
}

fn timestamp(b: &[u8], micro: bool) -> Result<Option<Value>, String> {
    let mut seconds: i64 = 0;
    let mut nanos: i64 = 0;
    for (n, v) in Reader::new(b).fields()? {
        if let Wire::Varint(x) = v {
            match n {
                1 => seconds = x as i64,
                2 => nanos = i64::from(x as i32),
                _ => {}
            }
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(None);
    }
    let ts = jiff::Timestamp::new(seconds, if micro { nanos as i32 } else { 0 })
        .map_err(|e| format!("invalid timestamp: {e}"))?;
    let fmt = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Some(Value::String(ts.strftime(fmt).to_string())))
}

fn message(b: &[u8], desc: Desc) -> Result<Value, String> {
    let mut out = Map::new();
    for (num, wire) in Reader::new(b).fields()? {
        let Some(&(_, name, field)) = desc.iter().find(|(n, _, _)| *n == num) else {
            continue;
        };
        let value = match (field, wire) {
            (F::Str, Wire::Len(s)) => Some(Value::String(text(s)?)).filter(|v| v != ""),
            (F::Int, Wire::Varint(x)) => Some(Value::from(x as i64)).filter(|v| v != 0),
            (F::Bool, Wire::Varint(x)) => Some(Value::Bool(x != 0)),
            (F::Msg(d), Wire::Len(s)) => Some(message(s, d)?),
            (F::Time, Wire::Len(s)) => timestamp(s, false)?,
            (F::MicroTime, Wire::Len(s)) => timestamp(s, true)?,
            (F::FieldsV1, Wire::Len(s)) => {
                let raw = Reader::new(s)
                    .fields()?
                    .into_iter()
                    .find_map(|(n, w)| match (n, w) {
                        (1, Wire::Len(r)) => Some(r),
                        _ => None,
                    })
                    .unwrap_or_default();
                Some(
                    serde_json::from_slice(raw)
                        .map_err(|e| format!("fieldsV1 is not JSON: {e}"))?,
                )
            }
            (F::RepStr, Wire::Len(s)) => {
                let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(Value::String(text(s)?));
                }
                None
            }
            (F::RepMsg(d), Wire::Len(s)) => {
                let item = message(s, d)?;
                let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(item);
                }
                None
            }
            (F::MapStrStr | F::MapStrBytes, Wire::Len(s)) => {
                let (k, v) = map_entry(s)?;
                let v = if matches!(field, F::MapStrStr) {
                    Value::String(text(v)?)
                } else {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v))
                };
                let map = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = map {
                    m.insert(k, v);
                }
                None
            }
            _ => return Err(format!("field {name} has an unexpected wire type")),
        };
        if let Some(v) = value {
            out.insert(name.to_string(), v);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `kubectl create namespace foo`, as laid out by gogo-protobuf.
    const NAMESPACE_FOO: &[u8] = &[
        0x6b, 0x38, 0x73, 0x00, // k8s\0
        0x0a, 0x0f, 0x0a, 0x02, b'v', b'1', 0x12, 0x09, b'N', b'a', b'm', b'e', b's', b'p', b'a',
        b'c', b'e', 0x12, 0x1b, // raw
        0x0a, 0x13, 0x0a, 0x03, b'f', b'o', b'o', 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00,
        0x32, 0x00, 0x38, 0x00, 0x42, 0x00, // metadata
        0x12, 0x00, // spec
        0x1a, 0x02, 0x0a, 0x00, // status
        0x1a, 0x00, 0x22, 0x00,
    ];

    #[test]
    fn decodes_kubectl_create_namespace() {
        let v = decode(NAMESPACE_FOO).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}, "spec": {}, "status": {}})
        );
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = vec![0x0a, 2, b'v', b'1', 0x12, kind.len() as u8];
        tm.extend_from_slice(kind.as_bytes());
        let mut out = MAGIC.to_vec();
        out.push(0x0a);
        out.push(tm.len() as u8);
        out.extend(tm);
        out.push(0x12);
        out.push(raw.len() as u8);
        out.extend_from_slice(raw);
        out.extend([0x1a, 0, 0x22, 0]);
        out
    }

    #[test]
    fn decodes_secret_bytes_as_base64_and_labels() {
        // metadata{name:"s", labels{app:web}}, data{k: "v"}, type "".
        let meta = [
            0x0a, 0x01, b's', 0x5a, 0x09, 0x0a, 0x03, b'a', b'p', b'p', 0x12, 0x02, b'w', b'e',
        ];
        let mut raw = vec![0x0a, meta.len() as u8];
        raw.extend_from_slice(&meta);
        raw.extend([0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x1a, 0x00]);
        let v = decode(&envelope("Secret", &raw)).unwrap();
        assert_eq!(v["data"]["k"], "dg==");
        assert_eq!(v["metadata"]["labels"]["app"], "we");
        assert!(v.get("type").is_none());
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\x05\x0a\x02").is_err());
        assert!(decode(&envelope("Widget", &[])).is_err());
        let mut truncated = NAMESPACE_FOO.to_vec();
        truncated.truncate(30);
        assert!(decode(&truncated).is_err());
    }
}
