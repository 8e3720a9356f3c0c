//! Splicing `metadata.resourceVersion` into stored JSON text without parsing it, so lists
//! can hand stored objects straight to the HTTP layer.

/// Inserts `"resourceVersion":"<rv>"` into the top-level `metadata` object of a JSON
/// object. Returns `None` if the text has no top-level `metadata` object.
pub fn with_resource_version(json: &str, rv: u64) -> Option<String> {
    let b = json.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = ws(b, i);
        match b.get(i)? {
            b'}' => return None,
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(b, i)?;
        let key = &json[i + 1..key_end - 1];
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        if key == "metadata" {
            if b.get(i) != Some(&b'{') {
                return None;
            }
            let at = i + 1;
            let empty = b.get(ws(b, at)) == Some(&b'}');
            let insert = if empty {
                format!("\"resourceVersion\":\"{rv}\"")
            } else {
                format!("\"resourceVersion\":\"{rv}\",")
            };
            let mut out = String::with_capacity(json.len() + insert.len());
            out.push_str(&json[..at]);
            out.push_str(&insert);
            out.push_str(&json[at..]);
            return Some(out);
        }
        i = ws(b, value_end(b, i)?);
        match b.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The index just past the string starting at `i` (which is a quote).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The index just past the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(v: Value) {
        for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            let out = with_resource_version(&text, 42).unwrap();
            let parsed: Value = serde_json::from_str(&out).unwrap();
            let mut want = v.clone();
            want["metadata"]["resourceVersion"] = json!("42");
            assert_eq!(parsed, want, "{text}");
        }
    }

    #[test]
    fn splices_into_top_level_metadata_only() {
        check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "y"}}),
        );
        check(json!({"items": [{"metadata": {"name": "nested"}}], "a\"b": "}{\\", "metadata": {}}));
        check(
            json!({"data": {"metadata": "{\"name\":1}", "k": [1, {"m": "]"}]}, "metadata": {"labels": {"a": "b"}}, "z": null}),
        );
        check(json!({"n": -1.5e3, "t": true, "metadata": {"name": "x"}}));
        // JSONB's text form has spaces after ':' and ','.
        let pg = r#"{"kind": "ConfigMap", "metadata": {"name": "a"}, "apiVersion": "v1"}"#;
        let out = with_resource_version(pg, 7).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["metadata"]["resourceVersion"],
            "7"
        );
        assert!(with_resource_version("{\"a\":1}", 1).is_none());
        assert!(with_resource_version("[]", 1).is_none());
        assert!(with_resource_version("{\"metadata\":", 1).is_none());
    }
}
