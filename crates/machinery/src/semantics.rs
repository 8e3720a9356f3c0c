//! Kubernetes' list semantics of built-in types, which the k8s-openapi Rust types do not
//! carry: how strategic merge patch merges a list (`x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`) and how server-side apply owns its items
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`), as the Go types declare them
//! (`patchStrategy:"merge" patchMergeKey:"name"`, `+listType=map`, `+listMapKey=name`) and
//! kube-apiserver publishes them.
//!
//! A list not named here replaces whole, as upstream: strategic merge patch replaces a
//! list without a patch strategy, and apply treats a list without a list type as atomic.
//!
//! And the defaults kube-apiserver sets whatever the rest of the object says (published
//! as `default` in its OpenAPI, as a CRD's): a port's protocol, which is also a key of its
//! list, a Deployment's replicas, a Pod's restart policy. Defaults that depend on other
//! fields (a container's image pull policy on its tag, a Job's backoff limit on its
//! per-index limit) are not among them, nor those of a type that is also part of another
//! kind's template where upstream does not default it (a Job's spec in a CronJob): the
//! kinds' strategies set those (`strategies::WorkloadStrategy`).

use serde_json::{Value, json};

/// How a list merges.
#[derive(Clone, Copy, Debug)]
pub(crate) enum List {
    /// Items merged by key: strategic merge by `merge_key`, apply by `keys`.
    Map {
        merge_key: &'static str,
        keys: &'static [&'static str],
    },
    /// As `Map`, and a patch keeps only the fields of an item's chosen member
    /// (`patchStrategy:"merge,retainKeys"`: volumes by name).
    MapRetainKeys {
        merge_key: &'static str,
        keys: &'static [&'static str],
    },
    /// Scalars merged by value (finalizers).
    Set,
    /// Merged by key by strategic merge patch, but owned whole by apply (Job conditions).
    MergeAtomic { merge_key: &'static str },
    /// Not a list: an object of which a patch keeps only the fields it names
    /// (`patchStrategy:"retainKeys"`: a Deployment's strategy, whose `rollingUpdate` goes
    /// when its type becomes Recreate).
    RetainKeys,
}

use List::*;

const BY_NAME: List = Map {
    merge_key: "name",
    keys: &["name"],
};
const BY_TYPE: List = Map {
    merge_key: "type",
    keys: &["type"],
};
const BY_IP: List = Map {
    merge_key: "ip",
    keys: &["ip"],
};

/// (definition, property, semantics).
pub(crate) const LISTS: &[(&str, &str, List)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        Set,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        Map {
            merge_key: "uid",
            keys: &["uid"],
        },
    ),
    // Pods and their templates.
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        MapRetainKeys {
            merge_key: "name",
            keys: &["name"],
        },
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", BY_NAME),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", BY_IP),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        Map {
            merge_key: "topologyKey",
            keys: &["topologyKey", "whenUnsatisfiable"],
        },
    ),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", BY_NAME),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        MapRetainKeys {
            merge_key: "name",
            keys: &["name"],
        },
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        Map {
            merge_key: "containerPort",
            keys: &["containerPort", "protocol"],
        },
    ),
    ("io.k8s.api.core.v1.Container", "env", BY_NAME),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        Map {
            merge_key: "mountPath",
            keys: &["mountPath"],
        },
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        Map {
            merge_key: "devicePath",
            keys: &["devicePath"],
        },
    ),
    ("io.k8s.api.core.v1.PodStatus", "conditions", BY_TYPE),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", BY_IP),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        MergeAtomic { merge_key: "ip" },
    ),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", RetainKeys),
    // Services and accounts.
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        Map {
            merge_key: "port",
            keys: &["port", "protocol"],
        },
    ),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", BY_TYPE),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", BY_NAME),
    // Conditions of the other kinds with a status.
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        BY_TYPE,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        BY_TYPE,
    ),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        BY_TYPE,
    ),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", BY_TYPE),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", BY_TYPE),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        MergeAtomic { merge_key: "type" },
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        BY_TYPE,
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        BY_TYPE,
    ),
    // Admission.
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        "webhooks",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "webhooks",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhook",
        "matchConditions",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhook",
        "matchConditions",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec",
        "matchConditions",
        BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus",
        "conditions",
        BY_TYPE,
    ),
];

/// (definition, property, default).
pub(crate) const DEFAULTS: &[(&str, &str, Fixed)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", Text("TCP")),
    ("io.k8s.api.core.v1.ServicePort", "protocol", Text("TCP")),
    ("io.k8s.api.core.v1.EndpointPort", "protocol", Text("TCP")),
    (
        "io.k8s.api.discovery.v1.EndpointPort",
        "protocol",
        Text("TCP"),
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "type", Text("ClusterIP")),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "sessionAffinity",
        Text("None"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "restartPolicy",
        Text("Always"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "dnsPolicy",
        Text("ClusterFirst"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulerName",
        Text("default-scheduler"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "terminationGracePeriodSeconds",
        Int(30),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "terminationMessagePath",
        Text("/dev/termination-log"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "terminationMessagePolicy",
        Text("File"),
    ),
    ("io.k8s.api.apps.v1.DeploymentSpec", "replicas", Int(1)),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        Json(
            r#"{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}}"#,
        ),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "updateStrategy",
        Json(r#"{"type":"RollingUpdate","rollingUpdate":{"partition":0}}"#),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "persistentVolumeClaimRetentionPolicy",
        Json(r#"{"whenDeleted":"Retain","whenScaled":"Retain"}"#),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetSpec",
        "updateStrategy",
        Json(r#"{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}}"#),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "revisionHistoryLimit",
        Int(10),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "progressDeadlineSeconds",
        Int(600),
    ),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "replicas", Int(1)),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "revisionHistoryLimit",
        Int(10),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "podManagementPolicy",
        Text("OrderedReady"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetSpec",
        "revisionHistoryLimit",
        Int(10),
    ),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "replicas", Int(1)),
    // A partial strategy is completed as upstream completes it.
    (
        "io.k8s.api.apps.v1.DeploymentStrategy",
        "type",
        Text("RollingUpdate"),
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDeployment",
        "maxUnavailable",
        Text("25%"),
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDeployment",
        "maxSurge",
        Text("25%"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetUpdateStrategy",
        "type",
        Text("RollingUpdate"),
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDaemonSet",
        "maxUnavailable",
        Int(1),
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDaemonSet",
        "maxSurge",
        Int(0),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetUpdateStrategy",
        "type",
        Text("RollingUpdate"),
    ),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "concurrencyPolicy",
        Text("Allow"),
    ),
    ("io.k8s.api.batch.v1.CronJobSpec", "suspend", Bool(false)),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "successfulJobsHistoryLimit",
        Int(3),
    ),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        "failedJobsHistoryLimit",
        Int(1),
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern",
        "status",
        Text("True"),
    ),
    // Volumes' file modes: 0644.
    (
        "io.k8s.api.core.v1.SecretVolumeSource",
        "defaultMode",
        Int(0o644),
    ),
    (
        "io.k8s.api.core.v1.ConfigMapVolumeSource",
        "defaultMode",
        Int(0o644),
    ),
    (
        "io.k8s.api.core.v1.DownwardAPIVolumeSource",
        "defaultMode",
        Int(0o644),
    ),
    (
        "io.k8s.api.core.v1.ProjectedVolumeSource",
        "defaultMode",
        Int(0o644),
    ),
    ("io.k8s.api.core.v1.HTTPGetAction", "path", Text("/")),
    ("io.k8s.api.core.v1.HTTPGetAction", "scheme", Text("HTTP")),
    ("io.k8s.api.core.v1.Probe", "timeoutSeconds", Int(1)),
    ("io.k8s.api.core.v1.Probe", "periodSeconds", Int(10)),
    ("io.k8s.api.core.v1.Probe", "successThreshold", Int(1)),
    ("io.k8s.api.core.v1.Probe", "failureThreshold", Int(3)),
    (
        "io.k8s.api.core.v1.ObjectFieldSelector",
        "apiVersion",
        Text("v1"),
    ),
    (
        "io.k8s.api.networking.v1.NetworkPolicyPort",
        "protocol",
        Text("TCP"),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "minReplicas",
        Int(1),
    ),
    // Without metrics, an autoscaler targets 80% CPU utilisation.
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "metrics",
        Json(AUTOSCALER_METRICS),
    ),
];

/// An autoscaler's metrics when it names none: 80% CPU utilisation (upstream defaults an
/// absent list and an empty one alike).
pub(crate) const AUTOSCALER_METRICS: &str = r#"[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}]"#;

/// A default value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fixed {
    Text(&'static str),
    Int(i64),
    Bool(bool),
    /// An object or a list, as JSON (an update strategy, an autoscaler's metrics: upstream
    /// sets them when they are absent).
    Json(&'static str),
}

use Fixed::*;

/// Adds the list semantics and defaults of definition `name`'s properties to its schema.
pub(crate) fn annotate(name: &str, schema: &mut Value) {
    // A debugging container's lists are a container's.
    let name = match name {
        "io.k8s.api.core.v1.EphemeralContainer" => "io.k8s.api.core.v1.Container",
        other => other,
    };
    for (_, property, default) in DEFAULTS.iter().filter(|(d, _, _)| *d == name) {
        if let Some(field) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        {
            let value = match *default {
                Text(t) => json!(t),
                Int(i) => json!(i),
                Bool(b) => json!(b),
                Json(text) => serde_json::from_str(text).expect("default is JSON"),
            };
            field.insert("default".into(), value);
        }
    }
    for (_, property, list) in LISTS.iter().filter(|(d, _, _)| *d == name) {
        let Some(field) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if let RetainKeys = list {
            field.insert("x-kubernetes-patch-strategy".into(), json!("retainKeys"));
            continue;
        }
        let (strategy, merge_key, list_type, keys) = match *list {
            Map { merge_key, keys } => ("merge", Some(merge_key), "map", Some(keys)),
            MapRetainKeys { merge_key, keys } => {
                ("merge,retainKeys", Some(merge_key), "map", Some(keys))
            }
            Set => ("merge", None, "set", None),
            MergeAtomic { merge_key } => ("merge", Some(merge_key), "atomic", None),
            RetainKeys => unreachable!("handled above"),
        };
        field.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if let Some(key) = merge_key {
            field.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        field.insert("x-kubernetes-list-type".into(), json!(list_type));
        if let Some(keys) = keys {
            field.insert("x-kubernetes-list-map-keys".into(), json!(keys));
        }
    }
}
