//! Field errors with Kubernetes' reasons and message formats
//! (`k8s.io/apimachinery/pkg/util/validation/field`), and the machinery's error type.

use std::fmt;

use serde_json::Value;

/// What is wrong with a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The value is not valid.
    Invalid,
    /// A required value is missing.
    Required,
    /// The value is not one of the supported values.
    NotSupported,
    /// The value duplicates another.
    Duplicate,
    /// The field may not be set or changed.
    Forbidden,
    /// The value is too long.
    TooLong,
    /// There are too many items.
    TooMany,
    /// The value has the wrong type.
    TypeInvalid,
}

impl FieldErrorKind {
    /// The `reason` of a `StatusCause`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::Required => "Required value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }
}

/// One invalid field, rendered as Kubernetes renders `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The kind of problem.
    pub kind: FieldErrorKind,
    /// The field path, e.g. `spec.resources[0].kind` or `metadata.labels[app]`.
    pub field: String,
    /// The offending value, where the message shows one.
    pub value: Option<Value>,
    /// The explanation.
    pub detail: String,
}

impl FieldError {
    /// An invalid value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// A missing value.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// A field that may not be set.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// A value outside an enumeration.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[Value],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(render_value).collect();
        Self {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    /// A duplicated value.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// A value of the wrong type.
    pub fn type_invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: FieldErrorKind::TypeInvalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// A value that is too long.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// The message after the field path, e.g. `Required value` or `Invalid value: "x": why`.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Renders a value as Go's `%v`/`%q` would in a field error.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

/// Joins field errors as `ErrorList.ToAggregate()` does: one alone, or `[a, b]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Errors of the API machinery, each mapping to one Kubernetes Status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object failed validation (422 Invalid).
    #[error("invalid: {}", aggregate(.0))]
    Invalid(Vec<FieldError>),
    /// The request is malformed (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// A conflict with the current state (409 Conflict), e.g. server-side apply conflicts.
    #[error("{message}")]
    Conflict {
        /// The Status message.
        message: String,
        /// Field causes (`FieldManagerConflict`).
        causes: Vec<(String, String, String)>,
    },
    /// The patch or body type is not supported for this kind (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A well-formed patch that cannot be applied to the object (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The request is not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request asks for more work than is allowed (413).
    #[error("{0}")]
    TooLarge(String),
}

/// Result with the machinery's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_kubernetes() {
        let e = FieldError::invalid("metadata.name", "Foo", "a lowercase RFC 1123 subdomain");
        assert_eq!(
            e.to_string(),
            "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain"
        );
        assert_eq!(
            FieldError::required("spec.x", "").to_string(),
            "spec.x: Required value"
        );
        let e = FieldError::not_supported("spec.mode", "X", &[json!("A"), json!("B")]);
        assert_eq!(
            e.to_string(),
            "spec.mode: Unsupported value: \"X\": supported values: \"A\", \"B\""
        );
        assert_eq!(
            aggregate(&[
                FieldError::required("a", ""),
                FieldError::invalid("b", 3, "too big")
            ]),
            "[a: Required value, b: Invalid value: 3: too big]"
        );
    }
}
