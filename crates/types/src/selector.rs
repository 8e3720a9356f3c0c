//! Label selectors: the string grammar of `?labelSelector=` and the structured
//! `metav1.LabelSelector` used by SelectorSyncSets, both compiled into one
//! [`Selector`] that the store turns into indexed SQL and controllers evaluate in memory.
//!
//! Grammar (as in `k8s.io/apimachinery/pkg/labels`):
//! ```text
//! selector    ::= requirement ( "," requirement )*
//! requirement ::= "!" KEY                      (does not exist)
//!               | KEY                          (exists)
//!               | KEY ("=" | "==" | "!=") VALUE
//!               | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//!               | KEY (">" | "<") INTEGER
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names;

/// How a requirement relates a label key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=v`, `key==v`, `key in (v1,v2)`: the label exists with one of the values.
    In,
    /// `key!=v`, `key notin (v1,v2)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label holds an integer greater than n.
    GreaterThan,
    /// `key<n`: the label holds an integer less than n.
    LessThan,
}

/// One clause of a selector; a selector matches when every requirement does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The relation.
    pub op: Operator,
    /// Values for `In`/`NotIn` (sorted, deduplicated); one integer for `GreaterThan`/`LessThan`.
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a set of labels satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (value, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }

    /// The integer bound of a `>`/`<` requirement.
    pub fn bound(&self) -> Option<i64> {
        self.values.first().and_then(|v| v.parse().ok())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In if self.values.len() == 1 => write!(f, "{}={}", self.key, self.values[0]),
            Operator::NotIn if self.values.len() == 1 => {
                write!(f, "{}!={}", self.key, self.values[0])
            }
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, self.values[0]),
            Operator::LessThan => write!(f, "{}<{}", self.key, self.values[0]),
        }
    }
}

/// A conjunction of requirements. The empty selector matches everything;
/// [`Selector::nothing`] matches nothing (a nil `metav1.LabelSelector`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The requirements, all of which must hold.
    pub requirements: Vec<Requirement>,
    /// True for the selector that matches no object at all.
    pub matches_nothing: bool,
}

/// Why a selector string or structure was rejected; the message is what Kubernetes says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses the string form used in `?labelSelector=` and `kubectl -l`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser::new(input).parse()
    }

    /// Compiles a structured `metav1.LabelSelector`.
    /// `None` (a nil selector) matches nothing; an empty selector matches everything.
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::nothing());
        };
        let mut requirements = Vec::new();
        for (key, value) in &selector.match_labels {
            requirements.push(new_requirement(key, Operator::In, vec![value.clone()])?);
        }
        for expr in &selector.match_expressions {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError(format!(
                        "\"{other}\" is not a valid label selector operator"
                    )));
                }
            };
            requirements.push(new_requirement(&expr.key, op, expr.values.clone())?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// `metav1.LabelSelector`: the structured selector in SelectorSyncSets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Requirements on label values, ANDed together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    /// Exact label values, each equivalent to an `In` requirement with one value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// One element of `matchExpressions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabelSelectorRequirement {
    /// The label key that the selector applies to.
    pub key: String,
    /// One of In, NotIn, Exists and DoesNotExist.
    pub operator: String,
    /// Values for In and NotIn; must be empty for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub values: Vec<String>,
}

fn new_requirement(
    key: &str,
    op: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    if let Err(msg) = names::validate_label_key(key) {
        return Err(SelectorError(format!("invalid label key \"{key}\": {msg}")));
    }
    match op {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                return Err(SelectorError(
                    "values set must be empty for exists and does not exist".into(),
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 || values[0].parse::<i64>().is_err() {
                return Err(SelectorError(
                    "for 'Gt', 'Lt' operators, exactly one value is required and it must be an integer"
                        .into(),
                ));
            }
            return Ok(Requirement {
                key: key.into(),
                op,
                values,
            });
        }
    }
    for v in &values {
        if let Err(msg) = names::validate_label_value(v) {
            return Err(SelectorError(format!(
                "invalid label value: \"{v}\": {msg}"
            )));
        }
    }
    values.sort();
    values.dedup();
    Ok(Requirement {
        key: key.into(),
        op,
        values,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Comma,
    Open,
    Close,
    Gt,
    Lt,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Not => "!".into(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::Comma => ",".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
            Token::End => "end of string".into(),
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>') || c.is_whitespace()
}

impl Parser {
    fn new(input: &str) -> Self {
        let mut tokens = Vec::new();
        let mut chars = input.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let token = match c {
                '!' => {
                    chars.next();
                    if chars.peek() == Some(&'=') {
                        chars.next();
                        Token::NotEq
                    } else {
                        Token::Not
                    }
                }
                '=' => {
                    chars.next();
                    if chars.peek() == Some(&'=') {
                        chars.next();
                        Token::DoubleEq
                    } else {
                        Token::Eq
                    }
                }
                ',' | '(' | ')' | '<' | '>' => {
                    chars.next();
                    match c {
                        ',' => Token::Comma,
                        '(' => Token::Open,
                        ')' => Token::Close,
                        '<' => Token::Lt,
                        _ => Token::Gt,
                    }
                }
                _ => {
                    let mut ident = String::new();
                    while let Some(&c) = chars.peek() {
                        if is_special(c) {
                            break;
                        }
                        ident.push(c);
                        chars.next();
                    }
                    Token::Ident(ident)
                }
            };
            tokens.push(token);
        }
        tokens.push(Token::End);
        Self { tokens, pos: 0 }
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn parse(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if *self.peek() == Token::End {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                Token::End => break,
                Token::Comma => {
                    if *self.peek() == Token::End {
                        return Err(SelectorError(
                            "found ',', expected: identifier after ','".into(),
                        ));
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.describe()
                    )));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            matches_nothing: false,
        })
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = *self.peek() == Token::Not;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(k) => k,
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    t.describe()
                )));
            }
        };
        if negated {
            return new_requirement(&key, Operator::DoesNotExist, vec![]);
        }
        let (op, values) = match self.peek().clone() {
            Token::End | Token::Comma => (Operator::Exists, vec![]),
            Token::Eq | Token::DoubleEq | Token::NotEq => {
                let op = if self.next() == Token::NotEq {
                    Operator::NotIn
                } else {
                    Operator::In
                };
                let value = match self.peek().clone() {
                    Token::Ident(v) => {
                        self.next();
                        v
                    }
                    Token::End | Token::Comma => String::new(),
                    t => {
                        return Err(SelectorError(format!(
                            "found '{}', expected: identifier",
                            t.describe()
                        )));
                    }
                };
                (op, vec![value])
            }
            Token::Gt | Token::Lt => {
                let op = if self.next() == Token::Gt {
                    Operator::GreaterThan
                } else {
                    Operator::LessThan
                };
                match self.next() {
                    Token::Ident(v) => (op, vec![v]),
                    t => {
                        return Err(SelectorError(format!(
                            "found '{}', expected: identifier",
                            t.describe()
                        )));
                    }
                }
            }
            Token::Ident(word) if word == "in" || word == "notin" => {
                self.next();
                let op = if word == "in" {
                    Operator::In
                } else {
                    Operator::NotIn
                };
                (op, self.value_set()?)
            }
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.describe()
                )));
            }
        };
        new_requirement(&key, op, values)
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: '('",
                    t.describe()
                )));
            }
        }
        let mut values = Vec::new();
        if *self.peek() == Token::Close {
            self.next();
            return Ok(vec![String::new()]);
        }
        loop {
            match self.next() {
                Token::Ident(v) => values.push(v),
                // `in (a,,b)` and `in (a,)` carry empty values, as in Kubernetes.
                Token::Comma => {
                    values.push(String::new());
                    continue;
                }
                Token::Close => {
                    values.push(String::new());
                    return Ok(values);
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.describe()
                    )));
                }
            }
            match self.next() {
                Token::Comma => {
                    if *self.peek() == Token::Close {
                        self.next();
                        values.push(String::new());
                        return Ok(values);
                    }
                }
                Token::Close => return Ok(values),
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',' or ')'",
                        t.describe()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = Selector::parse("a=1,b==2,c!=3,d in (x, y),e notin (z),f,!g,h>5,i<7").unwrap();
        let ops: Vec<_> = s
            .requirements
            .iter()
            .map(|r| (r.key.as_str(), r.op))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("a", Operator::In),
                ("b", Operator::In),
                ("c", Operator::NotIn),
                ("d", Operator::In),
                ("e", Operator::NotIn),
                ("f", Operator::Exists),
                ("g", Operator::DoesNotExist),
                ("h", Operator::GreaterThan),
                ("i", Operator::LessThan),
            ]
        );
        assert_eq!(s.requirements[3].values, vec!["x", "y"]);
    }

    #[test]
    fn matching_follows_kubernetes() {
        let s = Selector::parse("env in (prod,stage),tier!=db,!legacy").unwrap();
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "stage"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("legacy", "")])));
        // != matches objects that lack the key entirely.
        assert!(Selector::parse("a!=b").unwrap().matches(&labels(&[])));
        assert!(
            Selector::parse("n>3")
                .unwrap()
                .matches(&labels(&[("n", "4")]))
        );
        assert!(
            !Selector::parse("n>3")
                .unwrap()
                .matches(&labels(&[("n", "x")]))
        );
    }

    #[test]
    fn empty_values_are_allowed() {
        let s = Selector::parse("a=,b in ()").unwrap();
        assert!(s.matches(&labels(&[("a", ""), ("b", "")])));
        assert!(Selector::parse("").unwrap().is_everything());
        assert!(Selector::parse("  ").unwrap().is_everything());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "a b",
            "a in x",
            "a in (x",
            "=x",
            "a,",
            "a!",
            "a=(",
            "in (a)x",
            "a=b c",
            "k=v;drop table objects",
            "a'b=1",
            "a=\"x\"",
            "-a=1",
            "a>x",
            &"k".repeat(64),
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn structured_selector() {
        let sel = LabelSelector {
            match_labels: [("cloud".to_string(), "aws".to_string())].into(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: vec!["dev".into()],
            }],
        };
        let s = Selector::from_label_selector(Some(&sel)).unwrap();
        assert!(s.matches(&labels(&[("cloud", "aws"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("cloud", "aws"), ("env", "dev")])));
        assert!(
            !Selector::from_label_selector(None)
                .unwrap()
                .matches(&labels(&[]))
        );
        let empty = LabelSelector::default();
        assert!(
            Selector::from_label_selector(Some(&empty))
                .unwrap()
                .matches(&labels(&[]))
        );
        let bad = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "In".into(),
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(Selector::from_label_selector(Some(&bad)).is_err());
    }

    #[test]
    fn displays_canonically() {
        let s = Selector::parse("b in (y,x), a=1, !c").unwrap();
        assert_eq!(s.to_string(), "a=1,b in (x,y),!c");
    }
}
