//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into JSON, for the built-in kinds typed clients send that way: kubectl ≥ 1.32 creates
//! Namespaces, ConfigMaps, Secrets, Deployments, Jobs, Services… in protobuf
//! (`kubectl create deployment`), `kubectl auth can-i` posts its reviews so, and typed
//! deletes send DeleteOptions.
//!
//! ```text
//!   "k8s\0" ‖ runtime.Unknown{ typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3, contentType=4 }
//! ```
//! `raw` is the object's own message (gogo-protobuf, proto2). The layout of every message
//! is upstream's, read off the Go types of Kubernetes 1.33 by
//! `tools/k8s-protobuf-fields.py` into `protobuf/fields.json`. The JSON is what Go's
//! encoding gives the same object: gogo writes every field that is not a pointer, so a
//! zero value (`""`, `0`, `false`) on the wire is left out where Go's JSON leaves it out
//! (`omitempty`), and kept where it keeps it (a PriorityClass's `value: 0`) or where the
//! field is a pointer and the zero is meant (`replicas: 0`, `emptyDir: {}`). An empty
//! struct that is not a pointer is left out too (Go would write `{}`): to the API server a
//! Go zero value and an absent field are the same, and defaulting applies.
//! Fields the table does not know are skipped, as gogo skips them.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use serde_json::{Map, Value};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// The layout of each message, by Go name (`k8s.io/api/apps/v1.Deployment`), and the
/// message of each kind (`apps/v1/Deployment`).
#[derive(serde::Deserialize)]
struct Table {
    kinds: HashMap<String, String>,
    messages: HashMap<String, Vec<Field>>,
}

/// `[number, JSON name, type, flags]`.
#[derive(serde::Deserialize)]
struct Field(u32, String, String, Vec<String>);

impl Field {
    fn has(&self, flag: &str) -> bool {
        self.3.iter().any(|f| f == flag)
    }

    fn is_map(&self) -> bool {
        self.3.iter().any(|f| f.starts_with("map:"))
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    serde_json::from_str(include_str!("protobuf/fields.json")).expect("protobuf/fields.json")
});

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
    let table = &*TABLE;
    let name = match kind.as_str() {
        "DeleteOptions" => table.kinds.get("DeleteOptions"),
        _ => table.kinds.get(&format!("{api_version}/{kind}")),
    }
    .ok_or_else(|| format!("protobuf is not supported for {api_version}, Kind={kind}"))?;
    let mut obj = message(raw, name, table)?;
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

/// The single field of a wrapper message (`raw` of RawExtension and FieldsV1, `string`
/// of Quantity).
fn first_bytes(b: &[u8]) -> Result<&[u8], String> {
    Ok(Reader::new(b)
        .fields()?
        .into_iter()
        .find_map(|(n, w)| match (n, w) {
            (1, Wire::Len(r)) => Some(r),
            _ => None,
        })
        .unwrap_or_default())
}

/// One value of a field of type `ty`.
fn value(ty: &str, wire: Wire, table: &Table) -> Result<Option<Value>, String> {
    Ok(Some(match (ty, wire) {
        ("string", Wire::Len(s)) => Value::String(text(s)?),
        ("bytes", Wire::Len(s)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(s))
        }
        ("int", Wire::Varint(x)) => Value::from(x as i64),
        ("bool", Wire::Varint(x)) => Value::Bool(x != 0),
        ("time", Wire::Len(s)) => return timestamp(s, false),
        ("microtime", Wire::Len(s)) => return timestamp(s, true),
        ("quantity", Wire::Len(s)) => Value::String(text(first_bytes(s)?)?),
        ("rawextension" | "fieldsv1", Wire::Len(s)) => {
            let raw = first_bytes(s)?;
            if raw.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(raw).map_err(|e| format!("{ty} is not JSON: {e}"))?
        }
        ("stringlist", Wire::Len(s)) => {
            let mut items = Vec::new();
            for (n, w) in Reader::new(s).fields()? {
                if let (1, Wire::Len(t)) = (n, w) {
                    items.push(Value::String(text(t)?));
                }
            }
            Value::Array(items)
        }
        ("intorstring", Wire::Len(s)) => {
            let (mut kind, mut int, mut string) = (0, 0i64, String::new());
            for (n, w) in Reader::new(s).fields()? {
                match (n, w) {
                    (1, Wire::Varint(x)) => kind = x,
                    (2, Wire::Varint(x)) => int = x as i64,
                    (3, Wire::Len(t)) => string = text(t)?,
                    _ => {}
                }
            }
            if kind == 1 {
                Value::String(string)
            } else {
                Value::from(int)
            }
        }
        (message_name, Wire::Len(s)) if table.messages.contains_key(message_name) => {
            message(s, message_name, table)?
        }
        _ => return Err(format!("a {ty} field has an unexpected wire type")),
    }))
}

/// Types whose zero value Go's JSON writes unless the field says `omitempty`.
const SCALARS: [&str; 4] = ["string", "int", "bool", "bytes"];

/// A Go zero value: what gogo writes for a field that is not a pointer and was not set.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn message(b: &[u8], name: &str, table: &Table) -> Result<Value, String> {
    let fields = table
        .messages
        .get(name)
        .ok_or_else(|| format!("no layout for {name}"))?;
    let mut out = Map::new();
    for (num, wire) in Reader::new(b).fields()? {
        let Some(field) = fields.iter().find(|f| f.0 == num) else {
            continue;
        };
        let (json_name, ty) = (field.1.as_str(), field.2.as_str());
        if field.is_map() {
            let Wire::Len(entry) = wire else {
                return Err(format!("map {json_name} has an unexpected wire type"));
            };
            let (mut key, mut item) = (String::new(), None);
            for (n, w) in Reader::new(entry).fields()? {
                match (n, w) {
                    (1, Wire::Len(k)) => key = text(k)?,
                    (2, w) => item = value(ty, w, table)?,
                    _ => {}
                }
            }
            // A value absent from the entry is the type's zero value.
            let item = item.unwrap_or_else(|| match ty {
                "int" => Value::from(0),
                "bool" => Value::Bool(false),
                t if table.messages.contains_key(t) => Value::Object(Map::new()),
                _ => Value::String(String::new()),
            });
            if let Value::Object(m) = out
                .entry(json_name)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                m.insert(key, item);
            }
            continue;
        }
        if field.has("list") {
            // Scalars may come packed, several to one length-delimited field.
            let items = match (ty, wire) {
                ("int" | "bool", Wire::Len(packed)) => {
                    let mut r = Reader::new(packed);
                    let mut items = Vec::new();
                    while r.pos < packed.len() {
                        let x = r.varint()?;
                        items.push(if ty == "bool" {
                            Value::Bool(x != 0)
                        } else {
                            Value::from(x as i64)
                        });
                    }
                    items
                }
                (_, w) => value(ty, w, table)?.into_iter().collect(),
            };
            if let Value::Array(list) = out
                .entry(json_name)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.extend(items);
            }
            continue;
        }
        let Some(v) = value(ty, wire, table)? else {
            continue;
        };
        if field.has("inline") {
            if let Value::Object(inner) = v {
                out.extend(inner);
            }
        } else if field.has("pointer")
            || !is_zero(&v)
            || (SCALARS.contains(&ty) && !field.has("omitempty"))
        {
            out.insert(json_name.to_string(), v);
        } else {
            out.remove(json_name);
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
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}})
        );
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
        let v = decode(&envelope_of("v1", "Secret", &raw)).unwrap();
        assert_eq!(v["data"]["k"], "dg==");
        assert_eq!(v["metadata"]["labels"]["app"], "we");
        assert!(v.get("type").is_none());
    }

    #[test]
    fn every_served_kind_typed_clients_send_has_a_whole_layout() {
        let table = &*TABLE;
        let known = [
            "string",
            "bytes",
            "int",
            "bool",
            "time",
            "microtime",
            "quantity",
            "rawextension",
            "fieldsv1",
            "intorstring",
            "stringlist",
        ];
        for (name, fields) in &table.messages {
            for f in fields {
                assert!(
                    known.contains(&f.2.as_str()) || table.messages.contains_key(&f.2),
                    "{name}.{}: {}",
                    f.1,
                    f.2
                );
            }
        }
        for k in crate::builtin::kinds() {
            // CRDs, Hive's kinds and our own: clients send them as JSON.
            if k.group == "apiextensions.k8s.io"
                || k.group.ends_with("openshift.io")
                || k.group == "syncsets.io"
            {
                continue;
            }
            let message = &table.kinds[&format!("{}/{}", k.api_version(), k.kind)];
            assert!(table.messages.contains_key(message), "{message}");
        }
    }

    /// A message: fields as (number, bytes) pairs, each length-delimited.
    fn fields(of: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, bytes) in of {
            out.push(n << 3 | 2);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        out
    }

    fn envelope_of(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = fields(&[(1, api_version.as_bytes()), (2, kind.as_bytes())]);
        let mut out = MAGIC.to_vec();
        out.extend(fields(&[(1, &tm), (2, raw)]));
        out
    }

    #[test]
    fn decodes_single_fields_zeros_go_keeps_and_wrapped_lists() {
        // A NetworkPolicy peer's ipBlock is one object (its Go tag says `rep`, its wire
        // does not).
        let cidr = fields(&[(1, b"10.0.0.0/8")]);
        let peer = fields(&[(3, &cidr)]);
        let rule = fields(&[(2, &peer)]);
        let spec = fields(&[(2, &rule)]);
        let meta = fields(&[(1, b"np")]);
        let np = decode(&envelope_of(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            &fields(&[(1, &meta), (2, &spec)]),
        ))
        .unwrap();
        assert_eq!(
            np["spec"]["ingress"][0]["from"][0]["ipBlock"],
            json!({"cidr": "10.0.0.0/8"})
        );
        // A PriorityClass's value has no omitempty: 0 stays, as Go writes it.
        let mut pc = fields(&[(1, &fields(&[(1, b"low")]))]);
        pc.extend([2 << 3, 0, 3 << 3, 0]); // value 0, globalDefault false
        let pc = decode(&envelope_of("scheduling.k8s.io/v1", "PriorityClass", &pc)).unwrap();
        assert_eq!(pc["value"], 0);
        assert!(pc.get("globalDefault").is_none(), "{pc}");
        // SubjectAccessReview extra: map<string, ExtraValue{repeated string items}>.
        let items = fields(&[(1, b"a"), (1, b"b")]);
        let entry = fields(&[(1, b"scopes"), (2, &items)]);
        let spec = fields(&[(3, b"jane"), (5, &entry)]);
        let sar = decode(&envelope_of(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            &fields(&[(2, &spec)]),
        ))
        .unwrap();
        assert_eq!(
            sar["spec"],
            json!({"user": "jane", "extra": {"scopes": ["a", "b"]}})
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"{}").is_err());
        assert!(decode(b"k8s\0\x0a\x05\x0a\x02").is_err());
        assert!(decode(&envelope_of("v1", "Widget", &[])).is_err());
        let mut truncated = NAMESPACE_FOO.to_vec();
        truncated.truncate(30);
        assert!(decode(&truncated).is_err());
    }
}
