//! Encodes a Swagger 2.0 JSON document as gnostic's `openapi.v2.Document` protobuf
//! (`github.com/google/gnostic` `openapiv2/OpenAPIv2.proto`), the only form of
//! `/openapi/v2` kubectl reads. Vendor extensions, defaults and enum values travel as YAML
//! text, for which JSON text qualifies.

use serde_json::Value;

#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// `Any { yaml }`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &v.to_string());
    m
}

fn named_any(name: &str, v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, name);
    m.message(2, any(v));
    m
}

fn extensions(m: &mut Msg, field: u32, obj: &Value) {
    if let Some(map) = obj.as_object() {
        for (k, v) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
            m.message(field, named_any(k, v));
        }
    }
}

/// `Schema`.
fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, s(v, "$ref"));
    m.string(2, s(v, "format"));
    m.string(3, s(v, "title"));
    m.string(4, s(v, "description"));
    if let Some(d) = v.get("default") {
        m.message(5, any(d));
    }
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or_default();
    let i = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or_default();
    let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or_default();
    m.double(6, f("multipleOf"));
    m.double(7, f("maximum"));
    m.boolean(8, b("exclusiveMaximum"));
    m.double(9, f("minimum"));
    m.boolean(10, b("exclusiveMinimum"));
    m.int64(11, i("maxLength"));
    m.int64(12, i("minLength"));
    m.string(13, s(v, "pattern"));
    m.int64(14, i("maxItems"));
    m.int64(15, i("minItems"));
    m.boolean(16, b("uniqueItems"));
    m.int64(17, i("maxProperties"));
    m.int64(18, i("minProperties"));
    for r in v
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            m.bytes(19, r.as_bytes());
        }
    }
    for e in v
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(e));
    }
    match v.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.message(1, schema(ap));
            m.message(21, item);
        }
        Some(Value::Bool(flag)) => {
            let mut item = Msg::default();
            item.key(2, 0);
            item.varint(u64::from(*flag));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        let mut ty = Msg::default();
        ty.string(1, t);
        m.message(22, ty);
    }
    if let Some(items) = v.get("items") {
        let mut it = Msg::default();
        match items {
            Value::Array(list) => list.iter().for_each(|x| it.message(1, schema(x))),
            other => it.message(1, schema(other)),
        }
        m.message(23, it);
    }
    for a in v
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(a));
    }
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, child) in props {
            let mut ns = Msg::default();
            ns.string(1, name);
            ns.message(2, schema(child));
            p.message(1, ns);
        }
        m.message(25, p);
    }
    m.boolean(27, b("readOnly"));
    extensions(&mut m, 31, v);
    m
}

fn parameter(p: &Value) -> Msg {
    let mut param = Msg::default();
    if s(p, "in") == "body" {
        let mut body = Msg::default();
        body.string(1, s(p, "description"));
        body.string(2, s(p, "name"));
        body.string(3, "body");
        body.boolean(4, p["required"].as_bool().unwrap_or_default());
        body.message(5, schema(&p["schema"]));
        param.message(1, body);
    } else {
        let path = s(p, "in") == "path";
        let mut sub = Msg::default();
        sub.boolean(1, p["required"].as_bool().unwrap_or_default());
        sub.string(2, s(p, "in"));
        sub.string(3, s(p, "description"));
        sub.string(4, s(p, "name"));
        let unique = p["uniqueItems"].as_bool().unwrap_or_default();
        if path {
            sub.string(5, s(p, "type"));
            sub.boolean(19, unique);
        } else {
            sub.string(6, s(p, "type"));
            sub.boolean(20, unique);
        }
        let mut non_body = Msg::default();
        non_body.message(if path { 4 } else { 3 }, sub);
        param.message(2, non_body);
    }
    let mut item = Msg::default();
    item.message(1, param);
    item
}

fn operation(o: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(3, s(o, "description"));
    m.string(5, s(o, "operationId"));
    for (field, key) in [(6, "produces"), (7, "consumes")] {
        for t in o.get(key).and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = t.as_str() {
                m.bytes(field, t.as_bytes());
            }
        }
    }
    for p in o
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameter(p));
    }
    if let Some(responses) = o.get("responses").and_then(Value::as_object) {
        let mut rs = Msg::default();
        for (code, r) in responses {
            let mut resp = Msg::default();
            resp.string(1, s(r, "description"));
            if let Some(sc) = r.get("schema").filter(|v| v.is_object()) {
                let mut item = Msg::default();
                item.message(1, schema(sc));
                resp.message(2, item);
            }
            let mut value = Msg::default();
            value.message(1, resp);
            let mut named = Msg::default();
            named.string(1, code);
            named.message(2, value);
            rs.message(1, named);
        }
        m.message(9, rs);
    }
    extensions(&mut m, 13, o);
    m
}

/// Encodes a Swagger 2.0 document.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string(1, s(doc, "swagger"));
    let mut info = Msg::default();
    info.string(1, s(&doc["info"], "title"));
    info.string(2, s(&doc["info"], "version"));
    m.message(2, info);
    let mut paths = Msg::default();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut pi = Msg::default();
        for (field, method) in [
            (2, "get"),
            (3, "put"),
            (4, "post"),
            (5, "delete"),
            (8, "patch"),
        ] {
            if let Some(o) = item.get(method) {
                pi.message(field, operation(o));
            }
        }
        let mut named = Msg::default();
        named.string(1, path);
        named.message(2, pi);
        paths.message(2, named);
    }
    m.message(8, paths);
    let mut defs = Msg::default();
    for (name, sc) in doc["definitions"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.string(1, name);
        named.message(2, schema(sc));
        defs.message(1, named);
    }
    m.message(9, defs);
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_the_minimal_document() {
        // {"swagger":"2.0","info":{"title":"fake","version":"v1"},"paths":{}} as gnostic encodes it,
        // plus the empty definitions message we always send.
        let doc =
            json!({"swagger": "2.0", "info": {"title": "fake", "version": "v1"}, "paths": {}});
        let bytes = encode(&doc);
        assert_eq!(
            bytes,
            vec![
                0x0a, 0x03, b'2', b'.', b'0', 0x12, 0x0a, 0x0a, 0x04, b'f', b'a', b'k', b'e', 0x12,
                0x02, b'v', b'1', 0x42, 0x00, 0x4a, 0x00
            ]
        );
    }

    #[test]
    fn encodes_schemas_with_extensions() {
        let sc = json!({"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-group-version-kind": [{"group": "", "kind": "X", "version": "v1"}]});
        let bytes = schema(&sc).0;
        // type (field 22, wire 2) → key 0xb2 0x01
        assert!(bytes.windows(2).any(|w| w == [0xb2, 0x01]));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains(r#"[{"group":"","kind":"X","version":"v1"}]"#));
    }
}
