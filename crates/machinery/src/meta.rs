//! Object lifecycle on writes: the admission pipeline every create, update, patch and apply
//! goes through, free of I/O.
//!
//! ```text
//!   body ─▶ kind check ─▶ prune unknown fields (Strict: 400, Warn: warnings)
//!        ─▶ system metadata (uid, creationTimestamp, generation, namespace, generateName)
//!        ─▶ status subresource rules ─▶ defaults ─▶ strategy.prepare_*
//!        ─▶ validation (metadata, schema, strategy) ─▶ managedFields
//! ```

use serde_json::{Map, Value, json};
use syncsets_types::names;

use crate::apply::{self, FieldSet, Managers, Schemas, Writer};
use crate::errors::{Error, FieldError, Result};
use crate::registry::{KindInfo, NameRule};
use crate::schema::{self, Path, Schema};

/// `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown and duplicate fields are an error.
    Strict,
    /// They are reported in `Warning` headers (the default).
    #[default]
    Warn,
    /// They are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query value (`""` means the default).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "Warn" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            "Ignore" => Ok(Self::Ignore),
            other => Err(Error::BadRequest(format!(
                "fieldValidation must be one of Ignore, Warn, or Strict; got {other:?}"
            ))),
        }
    }
}

/// Who owns the fields a write changes.
#[derive(Clone, Debug)]
pub enum Ownership {
    /// A non-apply write by this field manager.
    Update(String),
    /// Server-side apply has already computed `metadata.managedFields`.
    Applied,
}

/// The context of one write.
#[derive(Clone)]
pub struct WriteContext<'a> {
    /// The kind written.
    pub kind: &'a KindInfo,
    /// ObjectMeta's schema.
    pub meta_schema: &'a Schema,
    /// The request's namespace (namespaced kinds).
    pub namespace: Option<&'a str>,
    /// Now, RFC 3339 seconds.
    pub now: &'a str,
    /// How unknown fields are treated.
    pub field_validation: FieldValidation,
    /// Field ownership of this write.
    pub ownership: Ownership,
    /// True for writes to the `status` subresource.
    pub status: bool,
}

/// The result of admission.
#[derive(Debug)]
pub struct Admitted {
    /// The object to store.
    pub object: Value,
    /// `Warning` header messages.
    pub warnings: Vec<String>,
}

/// The current time as Kubernetes writes timestamps.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl WriteContext<'_> {
    fn schemas(&self) -> Schemas<'_> {
        Schemas {
            root: &self.kind.schema,
            meta: self.meta_schema,
        }
    }

    /// Fields the endpoint resets, which nobody owns: `status` on the main resource of a
    /// kind with a status subresource, everything but `status` on the subresource.
    pub fn ignored_fields(&self) -> FieldSet {
        let mut set = FieldSet::new();
        if self.kind.status_subresource {
            if self.status {
                set.insert(&["f:spec".to_string()]);
            } else {
                set.insert(&["f:status".to_string()]);
            }
        }
        set
    }

    fn subresource(&self) -> &'static str {
        if self.status { "status" } else { "" }
    }

    /// Checks apiVersion/kind, prunes unknown fields and applies field validation.
    fn decode_checks(&self, obj: &mut Value, duplicates: &[String]) -> Result<Vec<String>> {
        let kind = self.kind;
        if !obj.is_object() {
            return Err(Error::BadRequest(format!(
                "the object provided is unrecognized (must be of type {})",
                kind.kind
            )));
        }
        // As kube-apiserver's decoder: what the body leaves out (or empty) is the URL's.
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                obj["kind"] = Value::from(kind.kind.as_str());
            }
            Some(k) if k != kind.kind => {
                return Err(Error::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    kind.kind
                )));
            }
            _ => {}
        }
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v == kind.api_version() => {}
            None | Some("") => {
                obj["apiVersion"] = Value::from(kind.api_version());
            }
            Some(v) => {
                return Err(Error::BadRequest(format!(
                    "the API version in the data ({v}) does not match the expected API version ({})",
                    kind.api_version()
                )));
            }
        }
        if !obj.get("metadata").is_none_or(Value::is_object) {
            return Err(Error::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
                kind.kind, kind.version, kind.kind
            )));
        }
        let unknown = schema::prune(obj, &kind.schema, self.meta_schema);
        let mut problems: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        problems.extend(
            duplicates
                .iter()
                .map(|p| format!("duplicate field \"{p}\"")),
        );
        match self.field_validation {
            FieldValidation::Strict if !problems.is_empty() => Err(Error::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                kind.kind,
                kind.version,
                kind.kind,
                problems.join(", ")
            ))),
            FieldValidation::Warn => Ok(problems),
            _ => Ok(Vec::new()),
        }
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The name of an object about to be created: its `metadata.name`, or, when it has none, one
/// made from its `generateName` now and written into it (`""`: neither). Admission of a
/// create does this; a caller that needs the name before admitting calls it first.
pub fn name_for_create(obj: &mut Value) -> String {
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(meta) => name_from_generate_name(meta),
        None => String::new(),
    }
}

fn name_from_generate_name(meta: &mut Map<String, Value>) -> String {
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty()
        && let Some(base) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
    {
        let generated = generate_name(base);
        meta.insert("name".into(), json!(generated));
        return generated;
    }
    name.to_string()
}

/// `generateName` + 5 random characters, as Kubernetes' SimpleNameGenerator does.
pub fn generate_name(base: &str) -> String {
    let base: String = base.chars().take(58).collect();
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[*b as usize % GENERATE_ALPHABET.len()] as char)
        .collect();
    format!("{base}{suffix}")
}

/// Drops empty `labels`, `annotations`, `finalizers` and `ownerReferences`: kube-apiserver
/// stores ObjectMeta with these omitted when empty, so `{}` and absent read back the same.
fn drop_empty_metadata(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match meta.get(field) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

/// Admits a new object (POST, or apply creating an object).
pub fn admit_create(
    ctx: &WriteContext<'_>,
    mut obj: Value,
    duplicates: &[String],
) -> Result<Admitted> {
    let warnings = ctx.decode_checks(&mut obj, duplicates)?;
    let kind = ctx.kind;
    {
        let meta = meta_mut(&mut obj);
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if kind.namespaced {
            let ns = ctx.namespace.unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(Error::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request"
                            .into(),
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        name_from_generate_name(meta);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(ctx.now));
        if kind.tracks_generation {
            meta.insert("generation".into(), json!(1));
        }
    }
    if kind.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    schema::apply_defaults(&mut obj, &kind.schema);
    kind.strategy.default(&mut obj);
    kind.strategy.prepare_create(&mut obj);
    drop_empty_metadata(&mut obj);
    validate(ctx, &mut obj, None)?;
    finish_ownership(ctx, &mut obj, &mut json!({}), None)?;
    Ok(Admitted {
        object: obj,
        warnings,
    })
}

/// Admits a replacement of `old` (PUT, patch, apply, status writes).
pub fn admit_update(
    ctx: &WriteContext<'_>,
    mut obj: Value,
    old: &Value,
    duplicates: &[String],
) -> Result<Admitted> {
    let warnings = ctx.decode_checks(&mut obj, duplicates)?;
    let kind = ctx.kind;
    // The stored object as this version defaults it, as kube-apiserver defaults what it
    // reads from storage: a default added since it was written is no change of its spec
    // (no new generation, no owner), whatever the write.
    let mut defaulted_old = old.clone();
    schema::apply_defaults(&mut defaulted_old, &kind.schema);
    kind.strategy.default(&mut defaulted_old);
    let old = &defaulted_old;
    let body_managed = obj["metadata"].get("managedFields").cloned();
    if ctx.status {
        // Only status changes through the status subresource.
        let status = obj.as_object_mut().and_then(|o| o.remove("status"));
        let managed = body_managed.clone();
        obj = old.clone();
        let o = obj.as_object_mut().expect("stored objects are objects");
        match status {
            Some(s) => {
                o.insert("status".into(), s);
            }
            None => {
                o.remove("status");
            }
        }
        if let Some(m) = managed {
            meta_mut(&mut obj).insert("managedFields".into(), m);
        }
    } else if kind.status_subresource {
        let o = obj.as_object_mut().expect("checked object");
        match old.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.remove("status");
            }
        }
    }
    {
        let no_meta = Map::new();
        let old_meta = old["metadata"].as_object().unwrap_or(&no_meta);
        let meta = meta_mut(&mut obj);
        let old_name = old_meta.get("name").cloned().unwrap_or(Value::Null);
        match meta.get("name") {
            Some(n) if *n != old_name && n.as_str().is_some_and(|s| !s.is_empty()) => {
                return Err(Error::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    n.as_str().unwrap_or_default(),
                    old_name.as_str().unwrap_or_default()
                )));
            }
            _ => {
                meta.insert("name".into(), old_name);
            }
        }
        if kind.namespaced {
            let old_ns = old_meta.get("namespace").cloned().unwrap_or(Value::Null);
            match meta.get("namespace") {
                Some(n) if *n != old_ns && n.as_str().is_some_and(|s| !s.is_empty()) => {
                    return Err(Error::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request"
                            .into(),
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), old_ns);
                }
            }
        } else {
            meta.remove("namespace");
        }
        if let Some(uid) = meta
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && Some(uid) != old_meta.get("uid").and_then(Value::as_str)
        {
            return Err(Error::Invalid(vec![FieldError::invalid(
                "metadata.uid",
                uid,
                "field is immutable",
            )]));
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            match old_meta.get(field) {
                Some(v) => {
                    meta.insert(field.into(), v.clone());
                }
                None => {
                    meta.remove(field);
                }
            }
        }
        meta.remove("resourceVersion");
    }
    schema::apply_defaults(&mut obj, &kind.schema);
    kind.strategy.default(&mut obj);
    if !ctx.status {
        kind.strategy.prepare_update(&mut obj, old);
    }
    if kind.tracks_generation && spec_changed(kind, &obj, old) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut obj).insert("generation".into(), json!(generation));
    }
    drop_empty_metadata(&mut obj);
    validate(ctx, &mut obj, Some(old))?;
    finish_ownership(ctx, &mut obj, &mut defaulted_old, body_managed.as_ref())?;
    Ok(Admitted {
        object: obj,
        warnings,
    })
}

/// Whether anything but metadata (and status, where it is a subresource) changed.
fn spec_changed(kind: &KindInfo, new: &Value, old: &Value) -> bool {
    fn fields<'v>(
        kind: &'v KindInfo,
        v: &'v Value,
    ) -> impl Iterator<Item = (&'v String, &'v Value)> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "metadata" && !(kind.status_subresource && *k == "status"))
    }
    fields(kind, new).count() != fields(kind, old).count()
        || fields(kind, new).any(|(k, v)| old.get(k.as_str()) != Some(v))
}

/// Records the write in `obj`'s managedFields. `old` is the stored object; its
/// managedFields are consumed.
fn finish_ownership(
    ctx: &WriteContext<'_>,
    obj: &mut Value,
    old: &mut Value,
    body_managed: Option<&Value>,
) -> Result<()> {
    let Ownership::Update(manager) = &ctx.ownership else {
        return Ok(());
    };
    // A client may send managedFields (kubectl migrating to server-side apply); an explicit
    // empty list resets ownership.
    let base = match body_managed {
        Some(Value::Array(list)) if list.is_empty() && !ctx.status => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            return Ok(());
        }
        Some(v @ Value::Array(list)) if !list.is_empty() && !ctx.status => {
            Managers::decode(&json!({"metadata": {"managedFields": v}}))
                .map_err(Error::BadRequest)?
        }
        _ => Managers::decode(old).map_err(Error::BadRequest)?,
    };
    let mut managers = base;
    // Compared without their managedFields, which the new ones replace.
    for v in [&mut *old, &mut *obj] {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    }
    let ignored = ctx.ignored_fields();
    apply::track_update(
        &mut managers,
        old,
        obj,
        &ctx.schemas(),
        Writer {
            manager,
            api_version: &ctx.kind.api_version(),
            subresource: ctx.subresource(),
            now: ctx.now,
            ignored: &ignored,
        },
    );
    managers.encode_into(obj);
    Ok(())
}

/// Validates metadata, the schema and the kind's own rules.
fn validate(ctx: &WriteContext<'_>, obj: &mut Value, old: Option<&Value>) -> Result<()> {
    let mut errors = validate_meta(ctx.kind, obj, old);
    // Field types of ObjectMeta (ownerReferences a list, …), as kube-apiserver's decoding.
    if obj["metadata"].is_object() {
        schema::validate(
            &obj["metadata"],
            ctx.meta_schema,
            &Path::root().field("metadata"),
            &mut errors,
        );
    }
    // The kind's schema covers the body: its type meta and metadata are set aside (and put
    // back) rather than the object copied.
    let set_aside: Vec<(&str, Value)> = match obj.as_object_mut() {
        Some(o) => ["metadata", "apiVersion", "kind"]
            .into_iter()
            .filter_map(|k| o.remove(k).map(|v| (k, v)))
            .collect(),
        None => Vec::new(),
    };
    schema::validate(obj, &ctx.kind.schema, &Path::root(), &mut errors);
    if let Some(o) = obj.as_object_mut() {
        for (k, v) in set_aside {
            o.insert(k.into(), v);
        }
    }
    let obj = &*obj;
    errors.extend(ctx.kind.strategy.validate(obj, old));
    if errors.is_empty() {
        Ok(())
    } else {
        errors.dedup_by(|a, b| a.to_string() == b.to_string());
        Err(Error::Invalid(errors))
    }
}

fn validate_meta(kind: &KindInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let mut msgs = match kind.name_rule {
            NameRule::Label => names::validate_dns1123_label(name),
            NameRule::Dns1035Label => names::validate_dns1035_label(name),
            NameRule::Subdomain => names::validate_dns1123_subdomain(name),
            NameRule::Path => Vec::new(),
        };
        msgs.extend(names::validate_path_segment(name));
        for msg in msgs {
            errors.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    // Kubernetes decodes both as map[string]string: anything else is refused.
    for field in ["labels", "annotations"] {
        if let Some(v) = meta.get(field).filter(|v| !v.is_null() && !v.is_object()) {
            errors.push(FieldError::invalid(
                format!("metadata.{field}"),
                v.clone(),
                "must be a map of strings",
            ));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for msg in names::validate_qualified_name(k) {
                errors.push(FieldError::invalid("metadata.labels", k.as_str(), msg));
            }
            match v.as_str() {
                Some(s) => {
                    if let Err(msg) = names::validate_label_value(s) {
                        errors.push(FieldError::invalid("metadata.labels", s, msg));
                    }
                }
                None => errors.push(FieldError::invalid(
                    "metadata.labels",
                    v.clone(),
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            for msg in names::validate_qualified_name(&k.to_lowercase()) {
                errors.push(FieldError::invalid("metadata.annotations", k.as_str(), msg));
            }
            if !v.is_string() {
                errors.push(FieldError::invalid(
                    "metadata.annotations",
                    v.clone(),
                    "annotation values must be strings",
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        const MAX: usize = 256 * 1024;
        if total > MAX {
            errors.push(FieldError {
                kind: crate::errors::FieldErrorKind::TooLong,
                field: "metadata.annotations".into(),
                value: None,
                detail: format!("must have at most {MAX} bytes"),
            });
        }
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in finalizers.iter().enumerate() {
            let field = format!("metadata.finalizers[{i}]");
            let Some(s) = f.as_str() else {
                errors.push(FieldError::invalid(field, f.clone(), "must be a string"));
                continue;
            };
            for msg in names::validate_qualified_name(s) {
                errors.push(FieldError::invalid(field.clone(), s, msg));
            }
            if !s.contains('/') && !matches!(s, "kubernetes" | "orphan" | "foregroundDeletion") {
                errors.push(FieldError::invalid(
                    field.clone(),
                    s,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
            if !seen.insert(s) {
                errors.push(FieldError::duplicate("metadata.finalizers", s));
            }
        }
        if let Some(old) = old
            && old["metadata"].get("deletionTimestamp").is_some()
        {
            let before: Vec<&Value> = old["metadata"]["finalizers"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if finalizers.iter().any(|f| !before.contains(&f)) {
                errors.push(FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        for (i, r) in refs.iter().enumerate() {
            for field in ["apiVersion", "kind", "name", "uid"] {
                if r[field].as_str().unwrap_or_default().is_empty() {
                    errors.push(FieldError::invalid(
                        format!("metadata.ownerReferences[{i}].{field}"),
                        "",
                        format!("{field} must not be empty"),
                    ));
                }
            }
        }
    }
    errors
}

/// Marks an object as being deleted (it has finalizers): sets `deletionTimestamp` once and
/// bumps `generation` the first time.
pub fn mark_deleting(obj: &mut Value, now: &str, tracks_generation: bool) {
    let meta = meta_mut(obj);
    if meta.get("deletionTimestamp").is_some() {
        return;
    }
    meta.insert("deletionTimestamp".into(), json!(now));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    if tracks_generation
        && let Some(g) = meta
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
    {
        meta.insert("generation".into(), json!(g + 1));
    }
}

/// Whether an object is being deleted and has no finalizers left: it should be removed.
pub fn should_finalize(obj: &Value) -> bool {
    let meta = &obj["metadata"];
    meta.get("deletionTimestamp").is_some()
        && meta["finalizers"].as_array().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests;
