//! The JSONPath dialect of CRD printer columns and `kubectl -o jsonpath`:
//! `.a.b`, `.a\.b` (escaped dot), `['a.b']`, `[0]`, `[*]`, `..name`, `[?(@.type=="Ready")]`.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Recursive(String),
    Filter {
        path: Vec<String>,
        negate: bool,
        value: Option<Value>,
    },
}

/// A compiled path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
    source: String,
}

/// A path that does not parse.
#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {message}")]
pub struct JsonPathError {
    path: String,
    message: String,
}

impl JsonPath {
    /// Parses a path; surrounding `{…}` are accepted.
    pub fn parse(path: &str) -> Result<Self, JsonPathError> {
        let err = |m: &str| JsonPathError {
            path: path.to_string(),
            message: m.to_string(),
        };
        let trimmed = path.trim();
        let body = trimmed
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(trimmed);
        let body = body.strip_prefix('$').unwrap_or(body);
        let chars: Vec<char> = body.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' if chars.get(i + 1) == Some(&'.') => {
                    i += 2;
                    let (name, next) = read_name(&chars, i);
                    if name.is_empty() {
                        return Err(err("expected a field name after '..'"));
                    }
                    steps.push(Step::Recursive(name));
                    i = next;
                }
                '.' => {
                    i += 1;
                    if chars.get(i) == Some(&'*') {
                        steps.push(Step::Wildcard);
                        i += 1;
                        continue;
                    }
                    let (name, next) = read_name(&chars, i);
                    if !name.is_empty() {
                        steps.push(Step::Field(name));
                    }
                    i = next;
                }
                '[' => {
                    let close = find_bracket_end(&chars, i).ok_or_else(|| err("unclosed '['"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(parse_bracket(inner.trim()).map_err(|m| err(&m))?);
                    i = close + 1;
                }
                c if i == 0 && (c.is_alphanumeric() || c == '_') => {
                    let (name, next) = read_name(&chars, i);
                    steps.push(Step::Field(name));
                    i = next;
                }
                c => return Err(err(&format!("unexpected character {c:?}"))),
            }
        }
        Ok(Self {
            steps,
            source: path.to_string(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every value the path selects, in document order.
    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                apply(step, v, &mut next);
            }
            current = next;
        }
        current
    }
}

fn read_name(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                name.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, i)
}

fn find_bracket_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(start) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return Some(s[1..s.len() - 1].to_string());
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let filter = filter.trim();
        let (lhs, negate, rhs) = if let Some((l, r)) = filter.split_once("!=") {
            (l, true, Some(r))
        } else if let Some((l, r)) = filter.split_once("==") {
            (l, false, Some(r))
        } else {
            (filter, false, None)
        };
        let lhs = lhs
            .trim()
            .strip_prefix('@')
            .ok_or("filters must start with @")?;
        let path: Vec<String> = lhs
            .split('.')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let value = match rhs {
            None => None,
            Some(r) => Some(match unquote(r) {
                Some(s) => Value::String(s),
                None => {
                    serde_json::from_str(r.trim()).map_err(|_| format!("bad filter value {r:?}"))?
                }
            }),
        };
        return Ok(Step::Filter {
            path,
            negate,
            value,
        });
    }
    Err(format!("unsupported expression [{inner}]"))
}

fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(child) = v.get(name) {
                out.push(child);
            }
        }
        Step::Index(i) => {
            if let Value::Array(items) = v {
                let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                if let Some(item) = usize::try_from(idx).ok().and_then(|i| items.get(i)) {
                    out.push(item);
                }
            }
        }
        Step::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Step::Recursive(name) => recurse(name, v, out),
        Step::Filter {
            path,
            negate,
            value,
        } => {
            if let Value::Array(items) = v {
                for item in items {
                    let found = path.iter().try_fold(item, |acc, k| acc.get(k));
                    let keep = match (found, value) {
                        (Some(f), Some(want)) => (f == want) != *negate,
                        (None, Some(_)) => *negate,
                        (f, None) => f.is_some(),
                    };
                    if keep {
                        out.push(item);
                    }
                }
            }
        }
    }
}

fn recurse<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if let Some(child) = map.get(name) {
                out.push(child);
            }
            for child in map.values() {
                recurse(name, child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| recurse(name, i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, v: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .select(v)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn selects_like_kubectl() {
        let v = json!({
            "metadata": {"labels": {"hive.openshift.io/cluster-platform": "aws"}, "name": "x"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "message": "ok"},
                {"type": "Failed", "status": "False", "message": "bad"}
            ]}
        });
        assert_eq!(
            sel(
                ".metadata.labels.hive\\.openshift\\.io/cluster-platform",
                &v
            ),
            vec![json!("aws")]
        );
        assert_eq!(
            sel(".metadata.labels['hive.openshift.io/cluster-platform']", &v),
            vec![json!("aws")]
        );
        assert_eq!(sel(".status.conditions[0].type", &v), vec![json!("Ready")]);
        assert_eq!(
            sel(".status.conditions[-1].type", &v),
            vec![json!("Failed")]
        );
        assert_eq!(
            sel(".status.conditions[?(@.type==\"Failed\")].message", &v),
            vec![json!("bad")]
        );
        assert_eq!(
            sel(".status.conditions[?(@.type=='Ready')].status", &v),
            vec![json!("True")]
        );
        assert_eq!(sel(".status.conditions[*].type", &v).len(), 2);
        assert_eq!(sel("{.metadata.name}", &v), vec![json!("x")]);
        assert_eq!(sel("..message", &v).len(), 2);
        assert!(sel(".spec.nothing", &v).is_empty());
        assert!(JsonPath::parse(".a[").is_err());
    }
}
