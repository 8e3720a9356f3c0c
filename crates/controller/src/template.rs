//! Hive's templates: `{{ fromCDLabel "key" }}` becomes the value of the ClusterDeployment's
//! label `key` (`""` when it has none). Resources are templated in every string value (map
//! keys never); patches as a whole string.
//!
//! Hive runs Go's `text/template` with that one function; syncsets implements the subset
//! that function can be used in: actions `{{ fromCDLabel "…" }}` (or a raw `` `…` `` string),
//! with optional `{{-`/`-}}` whitespace trimming. Anything else is an error, as a template
//! Go could not parse or run would be.

use std::collections::BTreeMap;

use serde_json::Value;

/// Renders one template string.
pub fn render(text: &str, labels: &BTreeMap<String, String>) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let fail = |why: String| {
        format!("failed to parse template string {text:?}: template: cdParams:1: {why}")
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let mut literal = &rest[..open];
        let mut action = &rest[open + 2..];
        if let Some(trimmed) = action.strip_prefix("- ") {
            literal = literal.trim_end();
            action = trimmed;
        }
        out.push_str(literal);
        let close = action
            .find("}}")
            .ok_or_else(|| fail("unclosed action".into()))?;
        let mut inner = &action[..close];
        rest = &action[close + 2..];
        if let Some(trimmed) = inner.strip_suffix(" -") {
            inner = trimmed;
            rest = rest.trim_start();
        }
        let inner = inner.trim();
        let Some(arg) = inner.strip_prefix("fromCDLabel") else {
            let word = inner.split_whitespace().next().unwrap_or_default();
            return Err(if word.is_empty() {
                fail("missing value for command".into())
            } else {
                fail(format!("function {word:?} not defined"))
            });
        };
        let key = string_literal(arg.trim()).ok_or_else(|| {
            fail(format!(
                "fromCDLabel takes one string argument, got {:?}",
                arg.trim()
            ))
        })?;
        out.push_str(labels.get(&key).map_or("", String::as_str));
    }
    out.push_str(rest);
    Ok(out)
}

/// A Go string literal: `"…"` with escapes, or a raw `` `…` ``.
fn string_literal(s: &str) -> Option<String> {
    if let Some(raw) = s.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        return (!raw.contains('`')).then(|| raw.to_string());
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        return serde_json::from_str::<String>(s).ok();
    }
    None
}

/// Renders every string value of an object, recursively.
pub fn render_value(value: &mut Value, labels: &BTreeMap<String, String>) -> Result<(), String> {
    match value {
        Value::String(s) => {
            if s.contains("{{") {
                *s = render(s, labels)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| render_value(v, labels)),
        Value::Object(map) => map.values_mut().try_for_each(|v| render_value(v, labels)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("region".to_string(), "eu-west".to_string()),
            (
                "hive.openshift.io/cluster-platform".to_string(),
                "aws".to_string(),
            ),
        ])
    }

    #[test]
    fn substitutes_labels() {
        let l = labels();
        assert_eq!(
            render(r#"r-{{ fromCDLabel "region" }}"#, &l).unwrap(),
            "r-eu-west"
        );
        assert_eq!(
            render(r#"{{fromCDLabel "hive.openshift.io/cluster-platform"}}/{{ fromCDLabel `region` }}"#, &l).unwrap(),
            "aws/eu-west"
        );
        assert_eq!(
            render(r#"[{{ fromCDLabel "missing" }}]"#, &l).unwrap(),
            "[]"
        );
        assert_eq!(
            render("a  {{- fromCDLabel \"region\" -}}  b", &l).unwrap(),
            "aeu-westb"
        );
        assert_eq!(render("no template", &l).unwrap(), "no template");
    }

    #[test]
    fn rejects_what_go_would() {
        let l = labels();
        let e = render("{{ fromCDLabel \"region\" ", &l).unwrap_err();
        assert!(e.contains("unclosed action"), "{e}");
        let e = render("{{ env \"HOME\" }}", &l).unwrap_err();
        assert!(e.contains("function \"env\" not defined"), "{e}");
        assert!(render("{{ fromCDLabel region }}", &l).is_err());
        assert!(render("{{ }}", &l).is_err());
    }

    #[test]
    fn renders_string_values_only() {
        let mut obj = json!({"metadata": {"name": "cm-{{ fromCDLabel \"region\" }}",
                                "labels": {"{{ fromCDLabel \"region\" }}": "x"}},
                             "data": {"n": 3, "list": ["{{ fromCDLabel \"region\" }}"]}});
        render_value(&mut obj, &labels()).unwrap();
        assert_eq!(obj["metadata"]["name"], "cm-eu-west");
        assert!(
            obj["metadata"]["labels"]
                .get("{{ fromCDLabel \"region\" }}")
                .is_some()
        );
        assert_eq!(obj["data"]["list"][0], "eu-west");
        assert_eq!(obj["data"]["n"], 3);
    }
}
