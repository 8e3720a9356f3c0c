//! Field selectors (`?fieldSelector=metadata.name=foo,metadata.namespace!=bar`), with the
//! escaping rules of `k8s.io/apimachinery/pkg/fields`: `\,`, `\=` and `\\` inside values.

use std::fmt;

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// True for `!=`.
    pub negated: bool,
    /// The (unescaped) value.
    pub value: String,
}

/// A conjunction of field requirements; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// The terms, all of which must hold.
    pub requirements: Vec<FieldRequirement>,
}

/// Why a field selector was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldSelectorError(pub String);

impl FieldSelector {
    /// Parses the query-string form.
    pub fn parse(input: &str) -> Result<Self, FieldSelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, negated, value) = split_term(term).ok_or_else(|| {
                FieldSelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                ))
            })?;
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                negated,
                value: unescape(value)
                    .map_err(|e| FieldSelectorError(format!("invalid selector: '{input}'; {e}")))?,
            });
        }
        Ok(Self { requirements })
    }

    /// The value an equality term requires for `field`, if any.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Whether the selector holds given a lookup of field values.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = lookup(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.negated { "!=" } else { "=" };
                format!("{}{op}{}", r.field, escape(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Splits `a!=b`, `a==b` or `a=b` at the first unescaped operator.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    let bytes = term.as_bytes();
    let mut escaped = false;
    for i in 0..bytes.len() {
        if escaped {
            escaped = false;
            continue;
        }
        match bytes[i] {
            b'\\' => escaped = true,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], true, &term[i + 2..]));
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], false, &term[i + 2..]));
            }
            b'=' => return Some((&term[..i], false, &term[i + 1..])),
            _ => {}
        }
    }
    None
}

fn unescape(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".into()),
            }
        } else if c == ',' || c == '=' {
            return Err(format!("invalid field selector: unescaped {c} in value"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let s = FieldSelector::parse("metadata.name=a\\,b,metadata.namespace!=x").unwrap();
        assert_eq!(s.requirements.len(), 2);
        assert_eq!(s.requirements[0].value, "a,b");
        assert_eq!(s.required_value("metadata.name"), Some("a,b"));
        assert!(s.matches(|f| match f {
            "metadata.name" => Some("a,b".into()),
            _ => Some("y".into()),
        }));
        assert!(!s.matches(|_| Some("x".into())));
        assert_eq!(s.to_string(), "metadata.name=a\\,b,metadata.namespace!=x");
    }

    #[test]
    fn rejects_garbage() {
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("a=b\\q").is_err());
        assert!(FieldSelector::parse("a=b=c").is_err());
        assert!(FieldSelector::parse("").unwrap().requirements.is_empty());
        assert_eq!(
            FieldSelector::parse("a==b").unwrap().requirements[0].value,
            "b"
        );
    }
}
