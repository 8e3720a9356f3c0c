//! Built-in kinds: core `v1` Namespace, ConfigMap, Secret and Event, apiextensions
//! CustomResourceDefinition, RBAC's Role, ClusterRole, RoleBinding and ClusterRoleBinding
//! and the authorization reviews (schemas from the k8s-openapi Rust types), and Hive's
//! kinds (schemas from syncsets-types). Their strategies live in `strategies`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::jsonpath::JsonPath;
use crate::registry::{ColumnSource, KindInfo, NameRule, PrinterColumn, Strategy, from_crd};
use crate::schema::Schema;
use crate::strategies;

/// OpenAPI name of ObjectMeta.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// Description of `apiVersion`.
pub const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
/// Description of `kind`.
pub const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
/// Description of the name column.
pub const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
/// Description of `creationTimestamp` (the Age column).
pub const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A Rust type's OpenAPI v3 schema, with definitions of recursive types split out.
fn schema_of<T: schemars::JsonSchema>() -> (Value, BTreeMap<String, Value>) {
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut value = serde_json::to_value(root).expect("schema serialises");
    let obj = value.as_object_mut().expect("object schema");
    obj.remove("title");
    let defs = obj
        .remove("components")
        .and_then(|c| c.get("schemas").cloned())
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    (value, defs)
}

/// Strategic-merge and list metadata that Kubernetes declares on ObjectMeta but the Rust
/// types do not carry (from Kubernetes' published OpenAPI).
fn annotate_object_meta(meta: &mut Value) {
    let props = &mut meta["properties"];
    props["finalizers"]["x-kubernetes-patch-strategy"] = json!("merge");
    props["finalizers"]["x-kubernetes-list-type"] = json!("set");
    props["ownerReferences"]["x-kubernetes-patch-strategy"] = json!("merge");
    props["ownerReferences"]["x-kubernetes-patch-merge-key"] = json!("uid");
    props["ownerReferences"]["x-kubernetes-list-type"] = json!("map");
    props["ownerReferences"]["x-kubernetes-list-map-keys"] = json!(["uid"]);
    props["managedFields"]["x-kubernetes-list-type"] = json!("atomic");
    // FieldsV1 is an opaque trie.
    props["managedFields"]["items"]["properties"]["fieldsV1"]["x-kubernetes-preserve-unknown-fields"] =
        json!(true);
}

/// The ObjectMeta schema: published form and compiled form.
pub fn object_meta_schema() -> (Value, Schema) {
    let (mut meta, _) = schema_of::<ObjectMeta>();
    annotate_object_meta(&mut meta);
    let compiled = Schema::compile(&meta).expect("ObjectMeta schema compiles");
    (meta, compiled)
}

fn name_column() -> PrinterColumn {
    PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: NAME_DOC.into(),
        priority: 0,
        source: ColumnSource::CreatedAt,
    }
}

/// The leading `Name` column of every table (its source is unused: names come from metadata).
pub fn table_name_column() -> PrinterColumn {
    name_column()
}

fn column(name: &str, description: &str, source: ColumnSource) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: "string".into(),
        format: String::new(),
        description: description.into(),
        priority: 0,
        source,
    }
}

fn age() -> PrinterColumn {
    column("Age", CREATION_TIMESTAMP_DOC, ColumnSource::Age)
}

fn path(p: &str) -> ColumnSource {
    ColumnSource::JsonPath(JsonPath::parse(p).expect("static path"))
}

struct CoreKind {
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    status: bool,
    name_rule: NameRule,
    columns: Vec<PrinterColumn>,
    strategy: Arc<dyn Strategy>,
    schema: (Value, BTreeMap<String, Value>),
}

fn core_kind(k: CoreKind) -> KindInfo {
    let (mut published, definitions) = k.schema;
    // The Rust types make `metadata` mandatory; Kubernetes' schemas do not.
    if let Some(required) = published.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| !matches!(r.as_str(), Some("metadata" | "apiVersion" | "kind")));
        if required.is_empty() {
            published
                .as_object_mut()
                .expect("object schema")
                .remove("required");
        }
    }
    // The metadata property refers to the shared ObjectMeta definition.
    if let Some(props) = published
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("#/components/schemas/{OBJECT_META}")}),
        );
    }
    let mut compiled_src = published.clone();
    // `$ref`s (recursive JSONSchemaProps, ObjectMeta) compile to "anything".
    strip_refs(&mut compiled_src);
    let schema = Schema::compile(&compiled_src).expect("built-in schema compiles");
    KindInfo {
        group: String::new(),
        version: "v1".into(),
        kind: k.kind.into(),
        list_kind: format!("{}List", k.kind),
        plural: k.plural.into(),
        singular: k.kind.to_lowercase(),
        short_names: k.short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        namespaced: k.namespaced,
        status_subresource: k.status,
        tracks_generation: false,
        strategic_merge: true,
        name_rule: k.name_rule,
        schema: Arc::new(schema),
        published_schema: published,
        published_definitions: definitions,
        columns: k.columns,
        storage_version: "v1".into(),
        crd_name: None,
        review: false,
        strategy: k.strategy,
    }
}

/// RBAC's four kinds (`rbac.authorization.k8s.io/v1`) and the reviews of
/// `authorization.k8s.io/v1` that `kubectl auth can-i` posts.
fn rbac_kinds() -> Vec<KindInfo> {
    let created_at = || PrinterColumn {
        name: "Created At".into(),
        type_: "date".into(),
        format: String::new(),
        description: CREATION_TIMESTAMP_DOC.into(),
        priority: 0,
        source: ColumnSource::CreatedAt,
    };
    let role_column = || {
        column(
            "Role",
            "The role the binding grants.",
            path(".roleRef.name"),
        )
    };
    let rbac = [
        (
            "Role",
            "roles",
            true,
            vec![created_at()],
            schema_of::<Role>(),
        ),
        (
            "ClusterRole",
            "clusterroles",
            false,
            vec![created_at()],
            schema_of::<ClusterRole>(),
        ),
        (
            "RoleBinding",
            "rolebindings",
            true,
            vec![role_column(), age()],
            schema_of::<RoleBinding>(),
        ),
        (
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            vec![role_column(), age()],
            schema_of::<ClusterRoleBinding>(),
        ),
    ];
    let mut kinds: Vec<KindInfo> = rbac
        .into_iter()
        .map(|(kind, plural, namespaced, columns, schema)| {
            let mut info = core_kind(CoreKind {
                kind,
                plural,
                short_names: &[],
                namespaced,
                status: false,
                name_rule: NameRule::Path,
                columns,
                strategy: Arc::new(strategies::RbacStrategy),
                schema,
            });
            info.group = "rbac.authorization.k8s.io".into();
            info.strategic_merge = false;
            info
        })
        .collect();
    for (kind, plural, schema) in [
        (
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            schema_of::<SelfSubjectAccessReview>(),
        ),
        (
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            schema_of::<SelfSubjectRulesReview>(),
        ),
    ] {
        let mut info = core_kind(CoreKind {
            kind,
            plural,
            short_names: &[],
            namespaced: false,
            status: false,
            name_rule: NameRule::Path,
            columns: Vec::new(),
            strategy: Arc::new(crate::registry::DefaultStrategy),
            schema,
        });
        info.group = "authorization.k8s.io".into();
        info.review = true;
        kinds.push(info);
    }
    kinds
}

/// Replaces `$ref` nodes by schemas that keep any value, for compilation.
fn strip_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("$ref").is_some_and(Value::is_string) {
                map.clear();
                map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                return;
            }
            for child in map.values_mut() {
                strip_refs(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_refs),
        _ => {}
    }
}

/// Every built-in kind.
pub fn kinds() -> Vec<Arc<KindInfo>> {
    let mut kinds = vec![
        core_kind(CoreKind {
            kind: "Namespace",
            plural: "namespaces",
            short_names: &["ns"],
            namespaced: false,
            status: true,
            name_rule: NameRule::Label,
            columns: vec![
                column(
                    "Status",
                    "The status of the namespace",
                    path(".status.phase"),
                ),
                age(),
            ],
            strategy: Arc::new(strategies::NamespaceStrategy),
            schema: schema_of::<Namespace>(),
        }),
        core_kind(CoreKind {
            kind: "ConfigMap",
            plural: "configmaps",
            short_names: &["cm"],
            namespaced: true,
            status: false,
            name_rule: NameRule::Subdomain,
            columns: vec![
                column(
                    "Data",
                    "Data contains the configuration data.",
                    ColumnSource::Count(&["data", "binaryData"]),
                ),
                age(),
            ],
            strategy: Arc::new(strategies::ConfigMapStrategy),
            schema: schema_of::<ConfigMap>(),
        }),
        core_kind(CoreKind {
            kind: "Secret",
            plural: "secrets",
            short_names: &[],
            namespaced: true,
            status: false,
            name_rule: NameRule::Subdomain,
            columns: vec![
                column(
                    "Type",
                    "Used to facilitate programmatic handling of secret data.",
                    path(".type"),
                ),
                column(
                    "Data",
                    "Data contains the secret data.",
                    ColumnSource::Count(&["data"]),
                ),
                age(),
            ],
            strategy: Arc::new(strategies::SecretStrategy),
            schema: schema_of::<Secret>(),
        }),
        core_kind(CoreKind {
            kind: "Event",
            plural: "events",
            short_names: &["ev"],
            namespaced: true,
            status: false,
            name_rule: NameRule::Subdomain,
            columns: vec![
                column(
                    "Type",
                    "Type of this event (Normal, Warning).",
                    path(".type"),
                ),
                column("Reason", "The reason for the event.", path(".reason")),
                column(
                    "Object",
                    "The object this event is about.",
                    path(".involvedObject.name"),
                ),
                column(
                    "Message",
                    "A human-readable description of the event.",
                    path(".message"),
                ),
                age(),
            ],
            strategy: Arc::new(strategies::EventStrategy),
            schema: schema_of::<Event>(),
        }),
    ];
    let mut crd = core_kind(CoreKind {
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        short_names: &["crd", "crds"],
        namespaced: false,
        status: true,
        name_rule: NameRule::Subdomain,
        columns: vec![PrinterColumn {
            name: "Created At".into(),
            type_: "date".into(),
            format: String::new(),
            description: CREATION_TIMESTAMP_DOC.into(),
            priority: 0,
            source: ColumnSource::CreatedAt,
        }],
        strategy: Arc::new(strategies::CrdStrategy),
        schema: schema_of::<CustomResourceDefinition>(),
    });
    crd.group = "apiextensions.k8s.io".into();
    crd.tracks_generation = true;
    crd.strategic_merge = false;
    kinds.push(crd);

    kinds.extend(rbac_kinds());

    for definition in syncsets_types::hive::crds() {
        let value = serde_json::to_value(&definition).expect("CRD serialises");
        let strategy: Arc<dyn Strategy> = match definition.spec.names.kind.as_str() {
            "SyncSet" => Arc::new(strategies::SyncSetStrategy { namespaced: true }),
            "SelectorSyncSet" => Arc::new(strategies::SyncSetStrategy { namespaced: false }),
            _ => Arc::new(crate::registry::DefaultStrategy),
        };
        let infos = from_crd(&value, Some(strategy)).expect("Hive schemas compile");
        for mut info in infos {
            // Built in, even though they are described by CRDs.
            info.crd_name = None;
            info.categories = vec!["hive".into()];
            kinds.push(info);
        }
    }
    kinds.into_iter().map(Arc::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_meta_has_list_semantics() {
        let (_, meta) = object_meta_schema();
        assert_eq!(
            meta.field("finalizers").unwrap().list_type,
            crate::schema::ListType::Set
        );
        assert_eq!(
            meta.field("ownerReferences").unwrap().list_type,
            crate::schema::ListType::Map(vec!["uid".into()])
        );
        assert!(
            meta.field("labels")
                .unwrap()
                .additional_properties
                .is_some()
        );
    }

    #[test]
    fn core_schemas_compile_with_descriptions() {
        for k in kinds() {
            assert!(
                k.schema.type_.is_some() || k.schema.preserve_unknown_fields,
                "{}",
                k.kind
            );
        }
        let cm = kinds().into_iter().find(|k| k.kind == "ConfigMap").unwrap();
        assert!(cm.schema.field("data").unwrap().description.is_some());
    }
}
