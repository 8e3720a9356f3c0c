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
use crate::registry::{
    ColumnSource, KindInfo, NameRule, PrinterColumn, ScalePaths, Strategy, from_crd,
};
use crate::schema::{Definitions, Schema, reference};
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

/// A Rust type's OpenAPI v3 schema, and the definitions it refers to by their upstream
/// names (`io.k8s.api.core.v1.PodSpec`), with Kubernetes' list semantics added.
fn schema_of<T: schemars::JsonSchema>() -> (Value, BTreeMap<String, Value>) {
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    settings.meta_schema = None;
    let root = settings.into_generator().into_root_schema_for::<T>();
    let mut value = serde_json::to_value(root).expect("schema serialises");
    let obj = value.as_object_mut().expect("object schema");
    obj.remove("title");
    let mut defs: BTreeMap<String, Value> = obj
        .remove("components")
        .and_then(|c| c.get("schemas").cloned())
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    crate::semantics::annotate(&T::schema_name(), &mut value);
    for (name, def) in &mut defs {
        crate::semantics::annotate(name, def);
        // Any object, kept as given (a ControllerRevision's `data`), as Kubernetes keeps
        // a RawExtension's bytes.
        if name == "io.k8s.apimachinery.pkg.runtime.RawExtension" {
            def["x-kubernetes-preserve-unknown-fields"] = json!(true);
        }
    }
    (value, defs)
}

/// `schema` with every `$ref` to one of `defs` replaced by the definition (its own
/// description kept), except a type's reference to itself or its enclosing types, which
/// stays a `$ref`.
fn inline(schema: &Value, defs: &BTreeMap<String, Value>, enclosing: &mut Vec<String>) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(name) = reference(map)
                && let Some(def) = defs.get(name)
                && !enclosing.iter().any(|e| e == name)
            {
                enclosing.push(name.to_string());
                let mut out = inline(def, defs, enclosing);
                enclosing.pop();
                if let Some(out) = out.as_object_mut() {
                    for (k, v) in map.iter().filter(|(k, _)| *k != "$ref" && *k != "allOf") {
                        out.insert(k.clone(), v.clone());
                    }
                }
                return out;
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(v, defs, enclosing)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline(v, defs, enclosing)).collect())
        }
        other => other.clone(),
    }
}

/// The ObjectMeta schema: published form and compiled form.
pub fn object_meta_schema() -> (Value, Schema) {
    let (root, defs) = schema_of::<ObjectMeta>();
    let mut meta = inline(&root, &defs, &mut vec![OBJECT_META.to_string()]);
    // FieldsV1 is an opaque trie.
    meta["properties"]["managedFields"]["items"]["properties"]["fieldsV1"]["x-kubernetes-preserve-unknown-fields"] =
        json!(true);
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
    let mut shared = SHARED.lock().expect("definitions lock");
    let Shared {
        compiled: definitions_compiled,
        published: published_shared,
    } = &mut *shared;
    let (mut published, mut definitions) = k.schema;
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
    // The object's own metadata compiles to "anything" here: the registry's ObjectMeta
    // schema governs it. Nested ones (a template's) are ObjectMeta, compiled.
    let mut root = published.clone();
    if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "metadata".into(),
            json!({"x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    let schema = definitions_compiled
        .compile(&root, &definitions)
        .expect("built-in schema compiles");
    // The published ObjectMeta is the registry's.
    definitions.remove(OBJECT_META);
    // Kinds share the definitions they hold in common (PodSpec, in nine of them).
    let definitions = definitions
        .into_iter()
        .map(|(name, def)| {
            let shared = published_shared
                .entry(name.clone())
                .or_insert_with(|| Arc::new(def))
                .clone();
            (name, shared)
        })
        .collect();
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
        scale: None,
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

/// What a built-in kind has beside its spec.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// Nothing: no status subresource.
    None,
    /// A status subresource.
    Status,
    /// A status subresource, and `metadata.generation` that counts changes of the spec.
    StatusGeneration,
}

/// A built-in kind from its k8s-openapi type, which gives its group, version, kind, plural
/// and scope; Kubernetes' short names, subresources and printer columns are given.
fn typed<T>(short_names: &'static [&'static str], sub: Sub, columns: Vec<PrinterColumn>) -> KindInfo
where
    T: k8s_openapi::Resource + schemars::JsonSchema + 'static,
{
    use std::any::TypeId;
    let namespaced =
        TypeId::of::<T::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    let mut columns = columns;
    columns.push(age());
    let mut info = core_kind(CoreKind {
        kind: T::KIND,
        plural: T::URL_PATH_SEGMENT,
        short_names,
        namespaced,
        status: sub != Sub::None,
        // Services are named as DNS-1035 labels (a Service name is a DNS name in the
        // cluster); everything else here as subdomains.
        name_rule: if T::KIND == "Service" {
            NameRule::Dns1035Label
        } else {
            NameRule::Subdomain
        },
        columns,
        strategy: workload_strategy(T::KIND),
        schema: schema_of::<T>(),
    });
    info.group = T::GROUP.into();
    info.version = T::VERSION.into();
    info.storage_version = T::VERSION.into();
    info.tracks_generation = sub == Sub::StatusGeneration;
    info.scale = matches!(
        T::KIND,
        "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController"
    )
    .then(ScalePaths::workload);
    // `kubectl get all`.
    if matches!(
        T::KIND,
        "Pod"
            | "Service"
            | "ReplicationController"
            | "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "CronJob"
            | "HorizontalPodAutoscaler"
    ) {
        info.categories = vec!["all".into()];
    }
    info
}

/// The strategy of a kind holding a pod spec, with where it holds it; the default one for
/// the others.
fn workload_strategy(kind: &str) -> Arc<dyn Strategy> {
    if kind == "HorizontalPodAutoscaler" {
        return Arc::new(strategies::AutoscalerStrategy);
    }
    let pod_spec = match kind {
        "Pod" => "/spec",
        "PodTemplate" => "/template/spec",
        "ReplicationController"
        | "ReplicaSet"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "Job" => "/spec/template/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return Arc::new(crate::registry::DefaultStrategy),
    };
    Arc::new(strategies::WorkloadStrategy {
        pod_spec,
        job: kind == "Job",
    })
}

/// A column of a JSONPath's value of an OpenAPI type; integers print 0 when absent, as
/// Go's printers print a zero value.
fn typed_column(name: &str, type_: &str, description: &str, p: &str) -> PrinterColumn {
    let source = match type_ {
        "integer" => ColumnSource::JsonPathOr(JsonPath::parse(p).expect("static path"), json!(0)),
        _ => path(p),
    };
    PrinterColumn {
        type_: type_.into(),
        ..column(name, description, source)
    }
}

/// A string column showing `absent` when the field is (a nil pointer, as Go's printers
/// show it).
fn or_column(name: &str, description: &str, p: &str, absent: &str) -> PrinterColumn {
    column(
        name,
        description,
        ColumnSource::JsonPathOr(JsonPath::parse(p).expect("static path"), json!(absent)),
    )
}

/// `ready/desired` (`kubectl get deploy`'s READY); the desired count is one when not set.
fn ratio(name: &str, description: &str, of: &str, to: &str) -> PrinterColumn {
    PrinterColumn {
        source: ColumnSource::Ratio(
            JsonPath::parse(of).expect("static path"),
            JsonPath::parse(to).expect("static path"),
            1,
        ),
        ..column(name, description, path(of))
    }
}

/// The kinds a Kubernetes 1.33 cluster serves for configuration and workloads, beyond
/// those above: core/v1, apps/v1, batch/v1, autoscaling/v2, networking.k8s.io/v1,
/// policy/v1, storage.k8s.io/v1, scheduling.k8s.io/v1, coordination.k8s.io/v1,
/// admissionregistration.k8s.io/v1, discovery.k8s.io/v1 and node.k8s.io/v1.
fn cluster_kinds() -> Vec<KindInfo> {
    use k8s_openapi::api::admissionregistration::v1 as admission;
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        networking::v1 as networking, node::v1 as node, policy::v1 as policy,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };
    let int =
        |name: &str, description: &str, p: &str| typed_column(name, "integer", description, p);
    let text =
        |name: &str, description: &str, p: &str| typed_column(name, "string", description, p);
    let ready = || {
        ratio(
            "Ready",
            "Ready replicas of the desired.",
            ".status.readyReplicas",
            ".spec.replicas",
        )
    };
    vec![
        // core/v1
        typed::<core::ServiceAccount>(&["sa"], Sub::None, vec![]),
        typed::<core::Service>(
            &["svc"],
            Sub::Status,
            vec![
                text("Type", "The type of the service.", ".spec.type"),
                text(
                    "Cluster-IP",
                    "The IP address of the service.",
                    ".spec.clusterIP",
                ),
            ],
        ),
        typed::<core::Endpoints>(&["ep"], Sub::None, vec![]),
        typed::<core::Pod>(
            &["po"],
            Sub::Status,
            vec![text("Status", "The phase of the pod.", ".status.phase")],
        ),
        typed::<core::PersistentVolumeClaim>(
            &["pvc"],
            Sub::Status,
            vec![
                text("Status", "The phase of the claim.", ".status.phase"),
                text(
                    "Volume",
                    "The volume bound to the claim.",
                    ".spec.volumeName",
                ),
            ],
        ),
        typed::<core::LimitRange>(&["limits"], Sub::None, vec![]),
        typed::<core::ResourceQuota>(&["quota"], Sub::Status, vec![]),
        typed::<core::ReplicationController>(
            &["rc"],
            Sub::StatusGeneration,
            vec![
                int("Desired", "Desired replicas.", ".spec.replicas"),
                int("Current", "Current replicas.", ".status.replicas"),
                int("Ready", "Ready replicas.", ".status.readyReplicas"),
            ],
        ),
        typed::<core::PodTemplate>(&[], Sub::None, vec![]),
        // apps/v1
        typed::<apps::Deployment>(
            &["deploy"],
            Sub::StatusGeneration,
            vec![
                ready(),
                int(
                    "Up-to-date",
                    "Replicas of the latest template.",
                    ".status.updatedReplicas",
                ),
                int(
                    "Available",
                    "Available replicas.",
                    ".status.availableReplicas",
                ),
            ],
        ),
        typed::<apps::StatefulSet>(&["sts"], Sub::StatusGeneration, vec![ready()]),
        typed::<apps::DaemonSet>(
            &["ds"],
            Sub::StatusGeneration,
            vec![
                int(
                    "Desired",
                    "Nodes that should run the pod.",
                    ".status.desiredNumberScheduled",
                ),
                int(
                    "Current",
                    "Nodes that run the pod.",
                    ".status.currentNumberScheduled",
                ),
                int("Ready", "Nodes whose pod is ready.", ".status.numberReady"),
                int(
                    "Up-to-date",
                    "Nodes that run the latest template.",
                    ".status.updatedNumberScheduled",
                ),
                int(
                    "Available",
                    "Nodes whose pod is available.",
                    ".status.numberAvailable",
                ),
            ],
        ),
        typed::<apps::ReplicaSet>(
            &["rs"],
            Sub::StatusGeneration,
            vec![
                int("Desired", "Desired replicas.", ".spec.replicas"),
                int("Current", "Current replicas.", ".status.replicas"),
                int("Ready", "Ready replicas.", ".status.readyReplicas"),
            ],
        ),
        typed::<apps::ControllerRevision>(
            &[],
            Sub::None,
            vec![int("Revision", "The revision.", ".revision")],
        ),
        // batch/v1
        typed::<batch::Job>(
            &[],
            Sub::StatusGeneration,
            vec![ratio(
                "Completions",
                "Succeeded pods of the completions wanted.",
                ".status.succeeded",
                ".spec.completions",
            )],
        ),
        typed::<batch::CronJob>(
            &["cj"],
            Sub::StatusGeneration,
            vec![
                text(
                    "Schedule",
                    "The schedule, in Cron format.",
                    ".spec.schedule",
                ),
                typed_column(
                    "Suspend",
                    "boolean",
                    "Whether new jobs are suspended.",
                    ".spec.suspend",
                ),
                typed_column(
                    "Last Schedule",
                    "date",
                    "When a job was last scheduled.",
                    ".status.lastScheduleTime",
                ),
            ],
        ),
        // autoscaling/v2
        typed::<autoscaling::HorizontalPodAutoscaler>(
            &["hpa"],
            Sub::StatusGeneration,
            vec![
                text(
                    "Reference",
                    "The target's name.",
                    ".spec.scaleTargetRef.name",
                ),
                or_column(
                    "MinPods",
                    "The lower limit of replicas.",
                    ".spec.minReplicas",
                    "<unset>",
                ),
                int(
                    "MaxPods",
                    "The upper limit of replicas.",
                    ".spec.maxReplicas",
                ),
                int("Replicas", "Current replicas.", ".status.currentReplicas"),
            ],
        ),
        // networking.k8s.io/v1
        typed::<networking::NetworkPolicy>(&["netpol"], Sub::None, vec![]),
        typed::<networking::Ingress>(
            &["ing"],
            Sub::StatusGeneration,
            vec![text(
                "Class",
                "The ingress class.",
                ".spec.ingressClassName",
            )],
        ),
        typed::<networking::IngressClass>(
            &[],
            Sub::None,
            vec![text(
                "Controller",
                "The controller of the class.",
                ".spec.controller",
            )],
        ),
        typed::<networking::IPAddress>(&["ip"], Sub::None, vec![]),
        typed::<networking::ServiceCIDR>(&[], Sub::Status, vec![]),
        // policy/v1
        typed::<policy::PodDisruptionBudget>(
            &["pdb"],
            Sub::StatusGeneration,
            vec![
                or_column(
                    "Min Available",
                    "Pods that must stay available.",
                    ".spec.minAvailable",
                    "N/A",
                ),
                or_column(
                    "Max Unavailable",
                    "Pods that may be unavailable.",
                    ".spec.maxUnavailable",
                    "N/A",
                ),
                int(
                    "Allowed Disruptions",
                    "Disruptions allowed now.",
                    ".status.disruptionsAllowed",
                ),
            ],
        ),
        // storage.k8s.io/v1
        typed::<storage::StorageClass>(
            &["sc"],
            Sub::None,
            vec![
                text("Provisioner", "The volume plugin.", ".provisioner"),
                text(
                    "ReclaimPolicy",
                    "What happens to released volumes.",
                    ".reclaimPolicy",
                ),
                text(
                    "VolumeBindingMode",
                    "When volumes are bound.",
                    ".volumeBindingMode",
                ),
            ],
        ),
        typed::<storage::CSIDriver>(&[], Sub::None, vec![]),
        typed::<storage::CSINode>(&[], Sub::None, vec![]),
        typed::<storage::CSIStorageCapacity>(&[], Sub::None, vec![]),
        typed::<storage::VolumeAttachment>(
            &[],
            Sub::Status,
            vec![
                text("Attacher", "The volume driver.", ".spec.attacher"),
                text(
                    "Node",
                    "The node the volume is attached to.",
                    ".spec.nodeName",
                ),
                typed_column(
                    "Attached",
                    "boolean",
                    "Whether the volume is attached.",
                    ".status.attached",
                ),
            ],
        ),
        // scheduling.k8s.io/v1
        typed::<scheduling::PriorityClass>(
            &["pc"],
            Sub::None,
            vec![
                int("Value", "The priority of pods of this class.", ".value"),
                typed_column(
                    "Global-Default",
                    "boolean",
                    "Whether pods without a class get this one.",
                    ".globalDefault",
                ),
            ],
        ),
        // coordination.k8s.io/v1
        typed::<coordination::Lease>(
            &[],
            Sub::None,
            vec![text(
                "Holder",
                "The holder of the lease.",
                ".spec.holderIdentity",
            )],
        ),
        // admissionregistration.k8s.io/v1
        typed::<admission::MutatingWebhookConfiguration>(&[], Sub::None, vec![]),
        typed::<admission::ValidatingWebhookConfiguration>(&[], Sub::None, vec![]),
        typed::<admission::ValidatingAdmissionPolicy>(&[], Sub::StatusGeneration, vec![]),
        typed::<admission::ValidatingAdmissionPolicyBinding>(&[], Sub::None, vec![]),
        // discovery.k8s.io/v1
        typed::<discovery::EndpointSlice>(
            &[],
            Sub::None,
            vec![text(
                "AddressType",
                "The type of the addresses.",
                ".addressType",
            )],
        ),
        // node.k8s.io/v1
        typed::<node::RuntimeClass>(
            &[],
            Sub::None,
            vec![text("Handler", "The runtime handler.", ".handler")],
        ),
    ]
}

/// What the built-in kinds share: each definition compiled once, and published once.
#[derive(Default)]
struct Shared {
    compiled: Definitions,
    published: std::collections::HashMap<String, Arc<Value>>,
}

static SHARED: std::sync::LazyLock<std::sync::Mutex<Shared>> =
    std::sync::LazyLock::new(Default::default);

/// Every built-in kind (built once per process, then shared).
pub fn kinds() -> Vec<Arc<KindInfo>> {
    static KINDS: std::sync::LazyLock<Vec<Arc<KindInfo>>> = std::sync::LazyLock::new(build);
    KINDS.clone()
}

fn build() -> Vec<Arc<KindInfo>> {
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
    kinds.extend(cluster_kinds());

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
    let policy = serde_json::to_value(syncsets_types::rollout::crd()).expect("CRD serialises");
    let infos = from_crd(&policy, Some(Arc::new(strategies::RolloutPolicyStrategy)))
        .expect("RolloutPolicy's schema compiles");
    for mut info in infos {
        info.crd_name = None;
        info.categories = vec!["syncsets".into()];
        kinds.push(info);
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

    fn kind(name: &str) -> Arc<KindInfo> {
        kinds().into_iter().find(|k| k.kind == name).unwrap()
    }

    #[test]
    fn every_list_semantic_names_a_list_of_a_served_definition() {
        let mut definitions: BTreeMap<String, Value> = BTreeMap::new();
        for k in kinds() {
            definitions.extend(
                k.published_definitions
                    .iter()
                    .map(|(n, d)| (n.clone(), (**d).clone())),
            );
            definitions.insert(crate::openapi::schema_name(&k), k.published_schema.clone());
        }
        definitions.insert(OBJECT_META.into(), object_meta_schema().0);
        for (definition, property, semantics) in crate::semantics::LISTS {
            let field = &definitions
                .get(*definition)
                .unwrap_or_else(|| panic!("{definition} is not served"))["properties"][*property];
            assert!(
                field["x-kubernetes-patch-strategy"].is_string(),
                "{definition}.{property} not annotated"
            );
            if !matches!(semantics, crate::semantics::List::RetainKeys) {
                assert_eq!(field["type"], "array", "{definition}.{property}");
                assert!(field["x-kubernetes-list-type"].is_string());
            }
        }
    }

    #[test]
    fn every_default_names_a_property_of_a_served_definition() {
        let mut definitions: BTreeMap<String, Value> = BTreeMap::new();
        for k in kinds() {
            definitions.extend(
                k.published_definitions
                    .iter()
                    .map(|(n, d)| (n.clone(), (**d).clone())),
            );
        }
        for (definition, property, _) in crate::semantics::DEFAULTS {
            let field = &definitions
                .get(*definition)
                .unwrap_or_else(|| panic!("{definition} is not served"))["properties"][*property];
            assert!(!field["default"].is_null(), "{definition}.{property}");
        }
        // Applied as kube-apiserver applies them.
        let mut deploy = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}}});
        crate::schema::apply_defaults(&mut deploy, &kind("Deployment").schema);
        assert_eq!(deploy["spec"]["replicas"], 1);
        assert_eq!(
            deploy["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );
        assert_eq!(
            deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
    }

    /// Defaults that depend on other fields, set as kube-apiserver sets them: a container's
    /// pull policy from its image, a Job's counts (not those of a CronJob's job template).
    #[test]
    fn workloads_are_defaulted_from_their_other_fields_as_upstream() {
        let defaulted = |name: &str, mut obj: Value| {
            let k = kind(name);
            crate::schema::apply_defaults(&mut obj, &k.schema);
            k.strategy.default(&mut obj);
            obj
        };
        let containers = json!([
            {"name": "a", "image": "busybox"},
            {"name": "b", "image": "localhost:5000/tools/b"},
            {"name": "c", "image": "registry:5000/tools/c:1.2"},
            {"name": "d", "image": "d@sha256:0123456789abcdef0123456789abcdef"},
            {"name": "e", "image": "e:latest", "imagePullPolicy": "Never"},
            {"name": "f", "image": "MyRepo/f"},
            {"name": "g", "image": "g:1@sha256:0123456789abcdef0123456789abcdef"},
            {"name": "h", "image": "x:y:latest"},
        ]);
        let job = defaulted(
            "Job",
            json!({"metadata": {"name": "j"}, "spec": {"template": {
                "metadata": {"labels": {"app": "j"}},
                "spec": {"restartPolicy": "Never", "containers": containers,
                         "volumes": [{"name": "s", "secret": {"secretName": "s"}}]}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(
            (
                &spec["completions"],
                &spec["parallelism"],
                &spec["backoffLimit"]
            ),
            (&json!(1), &json!(1), &json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(job["metadata"]["labels"], json!({"app": "j"}));
        let pod = &spec["template"]["spec"];
        let policies: Vec<&Value> = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["imagePullPolicy"])
            .collect();
        assert_eq!(
            policies,
            // Not references, f and h have no tag upstream either.
            [
                "Always",
                "Always",
                "IfNotPresent",
                "IfNotPresent",
                "Never",
                "IfNotPresent",
                "IfNotPresent",
                "IfNotPresent"
            ]
        );
        assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o644);

        // A parallel Job keeps its completions unset; a limit per index lifts the Job's.
        let job = defaulted(
            "Job",
            json!({"spec": {"parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 1,
                "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "a:1"}]}}}}),
        );
        let spec = &job["spec"];
        assert!(spec.get("completions").is_none());
        assert_eq!(spec["backoffLimit"], i64::from(i32::MAX));
        assert_eq!(spec["podReplacementPolicy"], "Failed");
        assert_eq!(
            spec["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
        assert!(job["metadata"].get("labels").is_none());

        // A CronJob's job template gets its containers' defaults, not a Job's.
        let cron = defaulted(
            "CronJob",
            json!({"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "a", "livenessProbe": {"exec": {"command": ["true"]}},
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}}}}),
        );
        let job_spec = &cron["spec"]["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none() && job_spec.get("parallelism").is_none());
        let container = &job_spec["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "Always");
        assert_eq!(
            container["livenessProbe"],
            json!({"exec": {"command": ["true"]}, "timeoutSeconds": 1, "periodSeconds": 10,
                   "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );

        let hpa = defaulted(
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let policy = defaulted(
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}}),
        );
        assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn a_kubernetes_cluster_s_kinds_are_served_with_their_scope_and_names() {
        let deploy = kind("Deployment");
        assert_eq!(
            (
                deploy.group.as_str(),
                deploy.version.as_str(),
                deploy.plural.as_str()
            ),
            ("apps", "v1", "deployments")
        );
        assert!(deploy.namespaced && deploy.status_subresource && deploy.tracks_generation);
        assert_eq!(deploy.short_names, ["deploy"]);
        assert_eq!(deploy.categories, ["all"]);
        let pc = kind("PriorityClass");
        assert_eq!(pc.group, "scheduling.k8s.io");
        assert!(!pc.namespaced && !pc.status_subresource);
        assert_eq!(kind("HorizontalPodAutoscaler").version, "v2");
        assert_eq!(kind("Service").name_rule, NameRule::Dns1035Label);
        for (name, group) in [
            ("ServiceAccount", ""),
            ("ResourceQuota", ""),
            ("LimitRange", ""),
            ("DaemonSet", "apps"),
            ("CronJob", "batch"),
            ("NetworkPolicy", "networking.k8s.io"),
            ("PodDisruptionBudget", "policy"),
            ("StorageClass", "storage.k8s.io"),
            ("Lease", "coordination.k8s.io"),
            (
                "ValidatingWebhookConfiguration",
                "admissionregistration.k8s.io",
            ),
            ("EndpointSlice", "discovery.k8s.io"),
            ("RuntimeClass", "node.k8s.io"),
        ] {
            assert_eq!(kind(name).group, group, "{name}");
        }
    }

    #[test]
    fn deployment_containers_merge_by_name_and_ports_by_port_and_protocol() {
        let deploy = kind("Deployment");
        let pod = deploy
            .schema
            .field("spec")
            .and_then(|s| s.field("template"))
            .and_then(|t| t.field("spec"))
            .unwrap();
        let containers = pod.field("containers").unwrap();
        assert_eq!(
            containers.list_type,
            crate::schema::ListType::Map(vec!["name".into()])
        );
        let ports = containers.items.as_ref().unwrap().field("ports").unwrap();
        assert_eq!(
            ports.list_type,
            crate::schema::ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        // Tolerations have no key: replaced whole.
        assert_eq!(
            pod.field("tolerations").unwrap().list_type,
            crate::schema::ListType::Atomic
        );
        let (_, meta) = object_meta_schema();
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "agent", "image": "agent:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "sidecar:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": "agent:2", "env": [{"name": "B", "value": "2"}]}]}}}});
        let out = crate::patch::strategic_merge_patch(
            &live,
            patch.to_string().as_bytes(),
            crate::patch::StrategicSchemas {
                root: &deploy.schema,
                meta: &meta,
                lists: true,
            },
        )
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "agent", "image": "agent:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "sidecar", "image": "sidecar:1"}
            ])
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
