//! Structural schemas (the OpenAPI v3 subset of CustomResourceDefinitions), compiled once per
//! kind and used to validate, prune, default and merge objects.
//!
//! ```text
//!   JSONSchemaProps (JSON) ──compile──▶ Schema ──┬─ prune    unknown fields (reported for Strict/Warn)
//!                                               ├─ default  `default:` values
//!                                               ├─ validate types, enums, formats, bounds…
//!                                               └─ list/map topology for patches and apply
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

/// The JSON type of a schema node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `object`
    Object,
    /// `array`
    Array,
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `number`
    Number,
    /// `boolean`
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    /// The name used in schemas and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// How a list merges (`x-kubernetes-list-type`, or a strategic merge key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    #[default]
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// A list of objects merged by the given key fields.
    Map(Vec<String>),
}

/// A compiled structural schema node. Children are shared: the nodes of a definition
/// (`io.k8s.api.core.v1.PodSpec`) are compiled once for every kind that holds one
/// ([`Definitions`]).
#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// The declared type; `None` for int-or-string and untyped preserved values.
    pub type_: Option<Type>,
    /// `format`, e.g. `int64`, `date-time`, `byte`.
    pub format: Option<String>,
    /// Field descriptions (a shared definition's own, not the referring field's).
    pub description: Option<String>,
    /// Known properties of an object.
    pub properties: BTreeMap<String, Arc<Schema>>,
    /// Schema of the values of a map (`additionalProperties`).
    pub additional_properties: Option<Arc<Schema>>,
    /// Schema of the items of an array.
    pub items: Option<Arc<Schema>>,
    /// Required properties.
    pub required: Vec<String>,
    /// Allowed values.
    pub enum_: Vec<Value>,
    /// Whether `null` is a value rather than an absent field.
    pub nullable: bool,
    /// `x-kubernetes-preserve-unknown-fields`.
    pub preserve_unknown_fields: bool,
    /// `x-kubernetes-embedded-resource`: the value is a whole object with apiVersion/kind/metadata.
    pub embedded_resource: bool,
    /// `x-kubernetes-int-or-string`.
    pub int_or_string: bool,
    /// List topology.
    pub list_type: ListType,
    /// `x-kubernetes-map-type: atomic`: the object is replaced as a whole.
    pub map_atomic: bool,
    /// Strategic-merge `x-kubernetes-patch-strategy` contains `retainKeys`.
    pub retain_keys: bool,
    /// `default`.
    pub default: Option<Value>,
    /// `pattern` (compiled).
    pub pattern: Option<regex::Regex>,
    /// `maxLength` / `minLength`.
    pub max_length: Option<u64>,
    /// Minimum string length.
    pub min_length: Option<u64>,
    /// `maximum`.
    pub maximum: Option<f64>,
    /// `minimum`.
    pub minimum: Option<f64>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `maxProperties`.
    pub max_properties: Option<u64>,
    /// `minProperties`.
    pub min_properties: Option<u64>,
    /// `uniqueItems`.
    pub unique_items: bool,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `allOf`/`anyOf`/`oneOf`/`not`: value validations only (structural schemas keep types
    /// out of them).
    pub all_of: Vec<Schema>,
    /// `anyOf`.
    pub any_of: Vec<Schema>,
    /// `oneOf`.
    pub one_of: Vec<Schema>,
    /// `not`.
    pub not: Option<Arc<Schema>>,
}

/// A schema that cannot be compiled, with the path of the offending node.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// Where in the schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Schema {
    /// A schema that keeps anything (an untyped value preserving unknown fields).
    pub fn any() -> Self {
        Self {
            preserve_unknown_fields: true,
            ..Self::default()
        }
    }

    /// Compiles a `JSONSchemaProps` document.
    pub fn compile(json: &Value) -> Result<Self, SchemaError> {
        compile_at(json, "openAPIV3Schema", &mut Refs::default())
    }

    /// Whether this node is an object whose fields are known (struct-like).
    pub fn is_struct(&self) -> bool {
        !self.properties.is_empty()
            || (self.additional_properties.is_none()
                && self.type_ == Some(Type::Object)
                && !self.preserve_unknown_fields)
    }

    /// The schema of the field `name` of an object, if declared.
    pub fn field(&self, name: &str) -> Option<&Schema> {
        self.properties
            .get(name)
            .or(self.additional_properties.as_ref())
            .map(|s| &**s)
    }

    /// Walks a dotted path of property names (e.g. `["spec", "resources"]`).
    pub fn at(&self, path: &[&str]) -> Option<&Schema> {
        path.iter().try_fold(self, |s, p| s.field(p))
    }
}

/// Compiles schemas that refer to shared definitions (`$ref: #/components/schemas/<name>`,
/// or OpenAPI 3's `allOf: [{$ref}]` beside a description), each definition once: every
/// schema that refers to it, in any kind, shares its compiled nodes. A reference to a
/// definition not given, or to one that encloses it (a recursive type), keeps anything.
#[derive(Debug, Default)]
pub struct Definitions {
    compiled: HashMap<String, Arc<Schema>>,
}

impl Definitions {
    /// Compiles `json`, whose references name definitions of `defs` (the same name must
    /// always be the same definition).
    pub fn compile(
        &mut self,
        json: &Value,
        defs: &BTreeMap<String, Value>,
    ) -> Result<Schema, SchemaError> {
        let mut refs = Refs {
            defs: Some(defs),
            compiled: Some(&mut self.compiled),
            enclosing: Vec::new(),
            cut_at: None,
        };
        compile_at(json, "openAPIV3Schema", &mut refs)
    }

    /// How many definitions were compiled.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }
}

/// How a compilation resolves references (CRD schemas have none to resolve).
#[derive(Default)]
struct Refs<'a> {
    defs: Option<&'a BTreeMap<String, Value>>,
    compiled: Option<&'a mut HashMap<String, Arc<Schema>>>,
    enclosing: Vec<String>,
    /// The outermost enclosing definition a reference was cut at (a recursive type), since
    /// this was last reset: a definition compiled with a cut at a definition enclosing it
    /// depends on where it was met, and is not shared.
    cut_at: Option<usize>,
}

/// The definition a schema node refers to: `{"$ref": …}`, or `{"allOf": [{"$ref": …}], …}`.
pub fn reference(map: &serde_json::Map<String, Value>) -> Option<&str> {
    let target = match map.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0].get("$ref"),
        _ => map.get("$ref"),
    };
    target
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

/// A child node: a shared definition when it is a plain reference to one.
fn compile_child(json: &Value, path: &str, refs: &mut Refs) -> Result<Arc<Schema>, SchemaError> {
    let Some(defs) = refs.defs else {
        return compile_at(json, path, refs).map(Arc::new);
    };
    let Some((name, map)) = json
        .as_object()
        .and_then(|m| reference(m).map(|name| (name.to_string(), m)))
    else {
        return compile_at(json, path, refs).map(Arc::new);
    };
    if let Some(at) = refs.enclosing.iter().position(|e| *e == name) {
        refs.cut_at = Some(refs.cut_at.map_or(at, |c| c.min(at)));
        return Ok(Arc::new(Schema::any()));
    }
    let Some(def) = defs.get(&name) else {
        return Ok(Arc::new(Schema::any()));
    };
    // What the reference says beside it (a default, a patch strategy) overrides the
    // definition, for this place only.
    let siblings: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "$ref" | "allOf" | "description"))
        .collect();
    let shared = siblings.is_empty();
    if shared && let Some(compiled) = refs.compiled.as_ref().and_then(|c| c.get(&name)) {
        return Ok(compiled.clone());
    }
    let depth = refs.enclosing.len();
    let outer_cut = refs.cut_at.take();
    refs.enclosing.push(name.clone());
    let compiled = if shared {
        compile_at(def, path, refs)
    } else {
        let mut merged = def.clone();
        if let Some(m) = merged.as_object_mut() {
            for (k, v) in siblings {
                m.insert(k.clone(), v.clone());
            }
        }
        compile_at(&merged, path, refs)
    };
    refs.enclosing.pop();
    let inner_cut = refs.cut_at;
    refs.cut_at = match (outer_cut, inner_cut) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let compiled = Arc::new(compiled?);
    // Shared only if it is the same wherever it is met: no cut at a definition enclosing it.
    if shared
        && inner_cut.is_none_or(|at| at >= depth)
        && let Some(c) = refs.compiled.as_mut()
    {
        c.insert(name, compiled.clone());
    }
    Ok(compiled)
}

fn compile_at(json: &Value, path: &str, refs: &mut Refs) -> Result<Schema, SchemaError> {
    let err = |message: String| SchemaError {
        path: path.to_string(),
        message,
    };
    let Some(obj) = json.as_object() else {
        return Err(err("must be an object".into()));
    };
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str).map(String::from);
    let u64_of = |k: &str| obj.get(k).and_then(Value::as_u64);
    let f64_of = |k: &str| obj.get(k).and_then(Value::as_f64);
    let bool_of = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);

    let type_ = match str_of("type") {
        None => None,
        Some(t) if t.is_empty() => None,
        Some(t) => Some(Type::parse(&t).ok_or_else(|| err(format!("unsupported type {t:?}")))?),
    };
    let mut schema = Schema {
        type_,
        format: str_of("format"),
        description: str_of("description"),
        nullable: bool_of("nullable"),
        preserve_unknown_fields: bool_of("x-kubernetes-preserve-unknown-fields"),
        embedded_resource: bool_of("x-kubernetes-embedded-resource"),
        int_or_string: bool_of("x-kubernetes-int-or-string"),
        map_atomic: str_of("x-kubernetes-map-type").as_deref() == Some("atomic"),
        default: obj.get("default").cloned(),
        max_length: u64_of("maxLength"),
        min_length: u64_of("minLength"),
        maximum: f64_of("maximum"),
        minimum: f64_of("minimum"),
        exclusive_maximum: bool_of("exclusiveMaximum"),
        exclusive_minimum: bool_of("exclusiveMinimum"),
        max_items: u64_of("maxItems"),
        min_items: u64_of("minItems"),
        max_properties: u64_of("maxProperties"),
        min_properties: u64_of("minProperties"),
        unique_items: bool_of("uniqueItems"),
        multiple_of: f64_of("multipleOf"),
        ..Schema::default()
    };
    if let Some(p) = str_of("pattern") {
        schema.pattern =
            Some(regex::Regex::new(&p).map_err(|e| err(format!("invalid pattern {p:?}: {e}")))?);
    }
    if let Some(Value::Array(values)) = obj.get("enum") {
        schema.enum_ = values.clone();
    }
    if let Some(Value::Array(req)) = obj.get("required") {
        schema.required = req
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            let child = compile_child(child, &format!("{path}.properties[{name}]"), refs)?;
            schema.properties.insert(name.clone(), child);
        }
    }
    match obj.get("additionalProperties") {
        Some(Value::Object(_)) => {
            let child = compile_child(
                &obj["additionalProperties"],
                &format!("{path}.additionalProperties"),
                refs,
            )?;
            schema.additional_properties = Some(child);
        }
        // `additionalProperties: true` keeps any value (only allowed with preserve-unknown).
        Some(Value::Bool(true)) => {
            schema.additional_properties = Some(Arc::new(Schema::any()));
        }
        _ => {}
    }
    match obj.get("items") {
        Some(items @ Value::Object(_)) => {
            schema.items = Some(compile_child(items, &format!("{path}.items"), refs)?);
        }
        Some(Value::Array(list)) if list.len() == 1 => {
            schema.items = Some(compile_child(&list[0], &format!("{path}.items"), refs)?);
        }
        _ => {}
    }
    for (key, target) in [("allOf", 0), ("anyOf", 1), ("oneOf", 2)] {
        if let Some(Value::Array(list)) = obj.get(key) {
            let compiled = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    compile_child(s, &format!("{path}.{key}[{i}]"), refs).map(Arc::unwrap_or_clone)
                })
                .collect::<Result<Vec<_>, _>>()?;
            match target {
                0 => schema.all_of = compiled,
                1 => schema.any_of = compiled,
                _ => schema.one_of = compiled,
            }
        }
    }
    if let Some(not) = obj.get("not") {
        schema.not = Some(Arc::new(compile_at(not, &format!("{path}.not"), refs)?));
    }

    // List topology: CRD list-type, or the strategic-merge metadata of built-in kinds.
    let patch_strategy = str_of("x-kubernetes-patch-strategy").unwrap_or_default();
    schema.retain_keys = patch_strategy.split(',').any(|s| s == "retainKeys");
    schema.list_type = match str_of("x-kubernetes-list-type").as_deref() {
        Some("set") => ListType::Set,
        Some("map") => {
            let keys = obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            ListType::Map(keys)
        }
        Some("atomic") => ListType::Atomic,
        _ if patch_strategy.split(',').any(|s| s == "merge") => {
            match str_of("x-kubernetes-patch-merge-key") {
                Some(key) => ListType::Map(vec![key]),
                None => ListType::Set,
            }
        }
        _ => ListType::Atomic,
    };
    Ok(schema)
}

/// A path into an object, rendered as Kubernetes field paths (`spec.items[0].name`,
/// `metadata.labels[app]`). Each step borrows the one before: descending costs nothing,
/// and a path is only spelled out when an error names it.
#[derive(Clone, Copy, Debug, Default)]
pub enum Path<'a> {
    /// The object itself.
    #[default]
    Root,
    /// A field of an object.
    Field(&'a Path<'a>, &'a str),
    /// An item of a list.
    Index(&'a Path<'a>, usize),
    /// A value of a map.
    Key(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    /// The root path.
    pub fn root() -> Self {
        Self::Root
    }

    /// This path extended by a field.
    pub fn field(&'a self, name: &'a str) -> Self {
        Self::Field(self, name)
    }

    /// This path extended by a list index.
    pub fn index(&'a self, i: usize) -> Self {
        Self::Index(self, i)
    }

    /// This path extended by a map key.
    pub fn key(&'a self, k: &'a str) -> Self {
        Self::Key(self, k)
    }

    /// Writes the path; false if it is the root (nothing written).
    fn write(&self, f: &mut std::fmt::Formatter<'_>) -> Result<bool, std::fmt::Error> {
        match self {
            Self::Root => Ok(false),
            Self::Field(parent, name) => {
                if parent.write(f)? {
                    f.write_str(".")?;
                }
                f.write_str(name)?;
                Ok(true)
            }
            Self::Index(parent, i) => {
                parent.write(f)?;
                write!(f, "[{i}]")?;
                Ok(true)
            }
            Self::Key(parent, k) => {
                parent.write(f)?;
                write!(f, "[{k}]")?;
                Ok(true)
            }
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.write(f)? {
            f.write_str("<root>")?;
        }
        Ok(())
    }
}

/// Removes fields the schema does not declare (unless preserved) and `null`s of non-nullable
/// fields. Returns the paths of removed unknown fields, for strict/warn field validation.
/// `apiVersion`, `kind` and `metadata` are always kept at the root and in embedded resources;
/// `metadata` is pruned by `meta_schema`.
pub fn prune(value: &mut Value, schema: &Schema, meta_schema: &Schema) -> Vec<String> {
    let mut unknown = Vec::new();
    prune_node(
        value,
        schema,
        meta_schema,
        &Path::root(),
        true,
        &mut unknown,
    );
    unknown
}

fn prune_node(
    value: &mut Value,
    schema: &Schema,
    meta: &Schema,
    path: &Path<'_>,
    is_resource: bool,
    unknown: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let resource = is_resource || schema.embedded_resource;
            if schema.properties.is_empty()
                && schema.additional_properties.is_none()
                && schema.preserve_unknown_fields
                && !resource
            {
                return;
            }
            map.retain(|key, v| {
                let child_path = path.field(key);
                if resource
                    && (key == "apiVersion" || key == "kind")
                    && !schema.properties.contains_key(key)
                {
                    return true;
                }
                if resource && key == "metadata" {
                    if v.is_null() {
                        return false;
                    }
                    prune_node(v, meta, meta, &child_path, false, unknown);
                    return true;
                }
                match schema.field(key) {
                    Some(cs) if v.is_null() && !cs.nullable => false,
                    Some(cs) => {
                        if schema.additional_properties.is_some()
                            && !schema.properties.contains_key(key)
                        {
                            prune_node(v, cs, meta, &path.key(key), false, unknown);
                        } else {
                            prune_node(v, cs, meta, &child_path, false, unknown);
                        }
                        true
                    }
                    None if schema.preserve_unknown_fields => true,
                    None => {
                        unknown.push(child_path.to_string());
                        false
                    }
                }
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.items.as_deref() {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item, item_schema, meta, &path.index(i), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default:` values to absent fields, recursively (CRD defaulting).
pub fn apply_defaults(value: &mut Value, schema: &Schema) {
    match value {
        Value::Object(map) => {
            for (name, child) in &schema.properties {
                if !map.contains_key(name)
                    && let Some(d) = &child.default
                {
                    map.insert(name.clone(), d.clone());
                }
                if let Some(v) = map.get_mut(name) {
                    apply_defaults(v, child);
                }
            }
            if let Some(ap) = schema.additional_properties.as_deref() {
                for (k, v) in map.iter_mut() {
                    if !schema.properties.contains_key(k) {
                        apply_defaults(v, ap);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.items.as_deref() {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

mod validate;

pub use validate::validate;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "count": {"type": "integer", "format": "int32", "minimum": 0},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "when": {"type": "string", "format": "date-time"},
                        "opt": {"type": "string", "nullable": true}
                    }
                }
            }
        }))
        .unwrap()
    }

    fn errors_of(v: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(v, &schema(), &Path::root(), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn validates_types_enums_and_bounds() {
        assert!(errors_of(&json!({"spec": {"name": "abc", "count": 3, "port": "http", "when": "2024-01-02T03:04:05Z"}})).is_empty());
        let errs = errors_of(
            &json!({"spec": {"name": "ABCDEFG", "mode": "C", "count": -1, "port": 1.5, "tags": ["a", "a"], "when": "yesterday"}}),
        );
        assert_eq!(errs.len(), 7, "{errs:#?}");
        assert!(errs.contains(
            &"spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\"".to_string()
        ));
        assert!(errs.contains(&"spec.count: Invalid value: -1: spec.count in body should be greater than or equal to 0".to_string()));
        assert!(errs.contains(&"spec.tags[1]: Duplicate value: \"a\"".to_string()));
        let errs = errors_of(&json!({"spec": {"count": "x"}}));
        assert!(
            errs.contains(&"spec.name: Required value".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(&"spec.count: Invalid value: \"string\": spec.count in body must be of type integer: \"string\"".to_string()), "{errs:?}");
        assert_eq!(
            errors_of(&json!({"spec": {"name": "a", "count": 3000000000u64}})).len(),
            1
        );
    }

    #[test]
    fn prunes_unknown_fields_and_nulls() {
        let meta =
            Schema::compile(&json!({"type": "object", "properties": {"name": {"type": "string"}}}))
                .unwrap();
        let mut v = json!({
            "apiVersion": "x/v1", "kind": "K",
            "metadata": {"name": "n", "bogus": 1},
            "spec": {"name": "a", "extra": true, "free": {"anything": {"deep": 1}}, "labels": {"k": "v"}, "mode": null, "opt": null},
            "top": 1
        });
        let unknown = prune(&mut v, &schema(), &meta);
        assert_eq!(unknown, vec!["metadata.bogus", "spec.extra", "top"]);
        assert_eq!(v["spec"]["free"]["anything"]["deep"], 1);
        assert!(v["spec"].get("mode").is_none());
        assert!(v["spec"]["opt"].is_null());
        assert_eq!(v["apiVersion"], "x/v1");
    }

    #[test]
    fn applies_defaults() {
        let mut v = json!({"spec": {"name": "a"}});
        apply_defaults(&mut v, &schema());
        assert_eq!(v["spec"]["mode"], "A");
    }

    #[test]
    fn reads_list_topology() {
        let s = Schema::compile(&json!({"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name", "items": {"type": "object"}})).unwrap();
        assert_eq!(s.list_type, ListType::Map(vec!["name".into()]));
        let s = Schema::compile(&json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"]})).unwrap();
        assert_eq!(s.list_type, ListType::Map(vec!["a".into(), "b".into()]));
        assert!(
            Schema::compile(&json!({"type": "object", "properties": {"a": {"type": "wat"}}}))
                .is_err()
        );
    }
}
