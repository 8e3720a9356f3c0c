//! Decoding request bodies (JSON or YAML) into JSON values, noting duplicate fields so that
//! `fieldValidation=Strict` can reject them and `Warn` can report them.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A decoded body and the paths of fields that appeared more than once (the last one wins).
#[derive(Debug)]
pub struct Decoded {
    /// The value.
    pub value: Value,
    /// Paths of duplicated fields, e.g. `spec.replicas`.
    pub duplicates: Vec<String>,
}

/// Decodes JSON, rejecting trailing data and nesting beyond serde_json's limit (128).
pub fn json(bytes: &[u8]) -> Result<Decoded, String> {
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed {
        path: String::new(),
        dups: &dups,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Decoded {
        value,
        duplicates: dups.into_inner(),
    })
}

/// Deepest nesting accepted in a body, as serde_json's limit for JSON.
const MAX_DEPTH: usize = 128;

/// Decodes one YAML document. A JSON document (valid YAML too) is read as JSON: clients
/// such as kube-rs and client-go send their apply patches so, and the YAML parser took
/// several times as long on them.
pub fn yaml(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.trim_ascii_start().starts_with(b"{")
        && let Ok(decoded) = json(bytes)
    {
        return Ok(decoded);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8: {e}"))?;
    // The YAML parser takes time quadratic in the nesting of flow collections (100,000
    // levels: most of a minute), so deep nesting is refused before it parses.
    if flow_depth(text) > MAX_DEPTH {
        return Err(format!("exceeded max depth of {MAX_DEPTH}"));
    }
    let dups = RefCell::new(Vec::new());
    let value = ValueSeed {
        path: String::new(),
        dups: &dups,
    }
    .deserialize(serde_norway::Deserializer::from_str(text))
    .map_err(|e| e.to_string())?;
    if depth(&value) > MAX_DEPTH {
        return Err(format!("exceeded max depth of {MAX_DEPTH}"));
    }
    Ok(Decoded {
        value,
        duplicates: dups.into_inner(),
    })
}

/// The deepest nesting of `[` and `{` in YAML text, outside quotes and comments (an upper
/// bound: brackets inside plain scalars count too, which only matters past the limit).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    let mut prev = '\n';
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' => {
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '#' if prev.is_whitespace() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
        prev = c;
    }
    max
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

struct ValueSeed<'a> {
    path: String,
    dups: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            path: format!("{}[{}]", self.path, items.len()),
            dups: self.dups,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            let value = map.next_value_seed(ValueSeed {
                path: path.clone(),
                dups: self.dups,
            })?;
            if obj.insert(key, value).is_some() {
                self.dups.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates() {
        let d = json(br#"{"a":1,"spec":{"x":[{"y":1,"y":2}],"b":1,"b":2},"a":3}"#).unwrap();
        assert_eq!(d.duplicates, vec!["spec.x[0].y", "spec.b", "a"]);
        assert_eq!(d.value["a"], 3);
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(json(b"{").is_err());
        assert!(json(b"{} {}").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(json(deep.as_bytes()).is_err());
        assert!(yaml(b"a: [").is_err());
        assert_eq!(
            yaml(b"a: 1\nb: {c: 1, c: 2}\n").unwrap().duplicates,
            vec!["b.c"]
        );
        assert!(yaml(b"a: 1\n---\nb: 2\n").is_err());
        assert_eq!(yaml(b"a: {b: [1, 2]}").unwrap().value["a"]["b"][1], 2);
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            yaml(deep.as_bytes()).unwrap_err(),
            "exceeded max depth of 128"
        );
        // Brackets in quotes and comments are text.
        let quoted = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: [1]\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500)
        );
        assert_eq!(yaml(quoted.as_bytes()).unwrap().value["c"][0], 1);
        // Block nesting as deep as a body can hold parses and is refused by depth.
        let mut block = String::new();
        for level in 0..2_000 {
            block.push_str(&" ".repeat(level));
            block.push_str("a:\n");
        }
        assert!(yaml(block.as_bytes()).is_err());
    }
}
