//! Validation of a value against a structural schema: types, enums, formats, bounds,
//! required and unknown properties, list and map topology — every failure a field error
//! with Kubernetes' message.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{ListType, Path, Schema, Type};
use crate::errors::FieldError;

/// Validates a value against a schema, appending field errors.
pub fn validate(value: &Value, schema: &Schema, path: &Path<'_>, errors: &mut Vec<FieldError>) {
    let p = || path.to_string();
    if value.is_null() {
        if !schema.nullable && (schema.type_.is_some() || schema.int_or_string) {
            let ty = schema.type_.map(Type::name).unwrap_or("string");
            errors.push(FieldError::type_invalid(
                p(),
                "null",
                format!("{} in body must be of type {ty}: \"null\"", p()),
            ));
        }
        return;
    }
    if schema.int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError::type_invalid(
                p(),
                type_name(value),
                format!(
                    "{} in body must be of type integer,string: \"{}\"",
                    p(),
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(ty) = schema.type_ {
        let ok = match ty {
            Type::Object => value.is_object(),
            Type::Array => value.is_array(),
            Type::String => value.is_string(),
            Type::Integer => value.is_i64() || value.is_u64(),
            Type::Number => value.is_number(),
            Type::Boolean => value.is_boolean(),
        };
        if !ok {
            errors.push(FieldError::type_invalid(
                p(),
                type_name(value),
                format!(
                    "{} in body must be of type {}: \"{}\"",
                    p(),
                    ty.name(),
                    type_name(value)
                ),
            ));
            return;
        }
    }
    if !schema.enum_.is_empty() && !schema.enum_.contains(value) {
        errors.push(FieldError::not_supported(p(), value.clone(), &schema.enum_));
    }
    match value {
        Value::String(s) => validate_string(s, schema, path, errors),
        Value::Number(n) => validate_number(n, schema, path, errors),
        Value::Object(map) => validate_object(map, schema, path, errors),
        Value::Array(items) => validate_array(items, schema, path, errors),
        Value::Bool(_) | Value::Null => {}
    }
    for sub in &schema.all_of {
        validate(value, sub, path, errors);
    }
    if !schema.any_of.is_empty() && !schema.any_of.iter().any(|s| passes(value, s, path)) {
        errors.push(FieldError::invalid(
            p(),
            value.clone(),
            "must validate at least one schema (anyOf)",
        ));
    }
    if !schema.one_of.is_empty() {
        let n = schema
            .one_of
            .iter()
            .filter(|s| passes(value, s, path))
            .count();
        if n != 1 {
            errors.push(FieldError::invalid(
                p(),
                value.clone(),
                "must validate one and only one schema (oneOf)",
            ));
        }
    }
    if let Some(not) = schema.not.as_deref()
        && passes(value, not, path)
    {
        errors.push(FieldError::invalid(
            p(),
            value.clone(),
            "must not validate the schema (not)",
        ));
    }
}

fn passes(value: &Value, schema: &Schema, path: &Path<'_>) -> bool {
    let mut errs = Vec::new();
    validate(value, schema, path, &mut errs);
    errs.is_empty()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate_string(s: &str, schema: &Schema, path: &Path<'_>, errors: &mut Vec<FieldError>) {
    let p = || path.to_string();
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.max_length
        && chars > max
    {
        errors.push(FieldError {
            kind: crate::errors::FieldErrorKind::TooLong,
            field: p(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema.min_length
        && chars < min
    {
        errors.push(FieldError::invalid(
            p(),
            s,
            format!("{} in body should be at least {min} chars long", p()),
        ));
    }
    if let Some(re) = &schema.pattern
        && !re.is_match(s)
    {
        errors.push(FieldError::invalid(
            p(),
            s,
            format!("{} in body should match '{}'", p(), re.as_str()),
        ));
    }
    match schema.format.as_deref() {
        Some("date-time")
            if jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", s).is_err()
                && s.parse::<jiff::Timestamp>().is_err() =>
        {
            errors.push(FieldError::invalid(
                p(),
                s,
                format!("{} in body must be of type date-time: {s:?}", p()),
            ));
        }
        Some("byte") if !is_base64(s) => {
            errors.push(FieldError::invalid(
                p(),
                s,
                format!("{} in body must be of type byte: {s:?}", p()),
            ));
        }
        _ => {}
    }
}

fn is_base64(s: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

fn validate_number(
    n: &serde_json::Number,
    schema: &Schema,
    path: &Path<'_>,
    errors: &mut Vec<FieldError>,
) {
    let p = || path.to_string();
    let Some(x) = n.as_f64() else { return };
    if let Some(max) = schema.maximum
        && (x > max || (schema.exclusive_maximum && x >= max))
    {
        let rel = if schema.exclusive_maximum {
            "less than"
        } else {
            "less than or equal to"
        };
        errors.push(FieldError::invalid(
            p(),
            Value::Number(n.clone()),
            format!("{} in body should be {rel} {max}", p()),
        ));
    }
    if let Some(min) = schema.minimum
        && (x < min || (schema.exclusive_minimum && x <= min))
    {
        let rel = if schema.exclusive_minimum {
            "greater than"
        } else {
            "greater than or equal to"
        };
        errors.push(FieldError::invalid(
            p(),
            Value::Number(n.clone()),
            format!("{} in body should be {rel} {min}", p()),
        ));
    }
    if let Some(m) = schema.multiple_of
        && m != 0.0
        && (x / m).fract() != 0.0
    {
        errors.push(FieldError::invalid(
            p(),
            Value::Number(n.clone()),
            format!("{} in body should be a multiple of {m}", p()),
        ));
    }
    if schema.type_ == Some(Type::Integer)
        && schema.format.as_deref() == Some("int32")
        && let Some(i) = n.as_i64()
        && i32::try_from(i).is_err()
    {
        errors.push(FieldError::invalid(
            p(),
            Value::Number(n.clone()),
            format!("{} in body must be of type int32", p()),
        ));
    }
}

fn validate_object(
    map: &Map<String, Value>,
    schema: &Schema,
    path: &Path<'_>,
    errors: &mut Vec<FieldError>,
) {
    for name in &schema.required {
        if !map.contains_key(name) {
            errors.push(FieldError::required(path_join(path, name), ""));
        }
    }
    if let Some(max) = schema.max_properties
        && map.len() as u64 > max
    {
        errors.push(FieldError {
            kind: crate::errors::FieldErrorKind::TooMany,
            field: path.to_string(),
            value: None,
            detail: format!("must have at most {max} items"),
        });
    }
    if let Some(min) = schema.min_properties
        && (map.len() as u64) < min
    {
        errors.push(FieldError::invalid(
            path.to_string(),
            map.len() as u64,
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    for (k, v) in map {
        if let Some(child) = schema.properties.get(k) {
            validate(v, child, &path.field(k), errors);
        } else if let Some(ap) = schema.additional_properties.as_deref() {
            validate(v, ap, &path.key(k), errors);
        }
    }
    if schema.embedded_resource {
        for field in ["apiVersion", "kind"] {
            match map.get(field) {
                Some(Value::String(s)) if !s.is_empty() => {}
                _ => errors.push(FieldError::required(
                    path_join(path, field),
                    "must not be empty",
                )),
            }
        }
        if let Some(meta) = map.get("metadata")
            && !meta.is_object()
        {
            errors.push(FieldError::type_invalid(
                path_join(path, "metadata"),
                type_name(meta),
                "must be of type object",
            ));
        }
    }
}

fn path_join(path: &Path<'_>, field: &str) -> String {
    path.field(field).to_string()
}

fn validate_array(items: &[Value], schema: &Schema, path: &Path<'_>, errors: &mut Vec<FieldError>) {
    if let Some(max) = schema.max_items
        && items.len() as u64 > max
    {
        errors.push(FieldError {
            kind: crate::errors::FieldErrorKind::TooMany,
            field: path.to_string(),
            value: Some(Value::from(items.len())),
            detail: format!("must have at most {max} items"),
        });
    }
    if let Some(min) = schema.min_items
        && (items.len() as u64) < min
    {
        errors.push(FieldError::invalid(
            path.to_string(),
            items.len() as u64,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(item_schema) = schema.items.as_deref() {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &path.index(i), errors);
        }
    }
    match &schema.list_type {
        ListType::Set => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    errors.push(FieldError::duplicate(
                        path.index(i).to_string(),
                        item.clone(),
                    ));
                }
            }
        }
        ListType::Map(keys) if !keys.is_empty() => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                    .collect();
                if !seen.insert(key) {
                    let shown: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    errors.push(FieldError::duplicate(
                        path.index(i).to_string(),
                        Value::Object(shown),
                    ));
                }
            }
        }
        _ if schema.unique_items => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    errors.push(FieldError::duplicate(
                        path.index(i).to_string(),
                        item.clone(),
                    ));
                }
            }
        }
        _ => {}
    }
}
