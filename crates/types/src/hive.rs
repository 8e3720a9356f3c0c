//! OpenShift Hive's kinds as Rust types ("code first"). Their generated schemas match
//! Hive's CRDs (`shared/reference/hive-crds/`) in field names, types, enums, required
//! fields, scope, short names and the status subresource; a test in this crate compares
//! them. ClusterDeployment types only the fields syncsets reads and preserves the rest.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::selector::LabelSelector;

/// The `hive.openshift.io` API group.
pub const HIVE_GROUP: &str = "hive.openshift.io";
/// The `hiveinternal.openshift.io` API group.
pub const HIVE_INTERNAL_GROUP: &str = "hiveinternal.openshift.io";
/// Label put on every object a SyncSet applies to a target cluster.
pub const MANAGED_LABEL: &str = "hive.openshift.io/managed";
/// Annotation on a ClusterDeployment that pauses syncing to it.
pub const PAUSE_ANNOTATION: &str = "hive.openshift.io/syncset-pause";
/// Annotation on a ClusterDeployment naming the SelectorSyncSets it may be attached to
/// (comma-separated): set by the API server from the `use` grants of whoever last changed
/// its labels or kubeconfig reference. Absent: any set (an administrator's write).
/// Kubeconfig Secrets carry it too, for whoever wrote their `kubeconfig`: a cluster is
/// attached only to sets both allow.
pub const USABLE_SETS_ANNOTATION: &str = "syncsets.io/usable-selectorsyncsets";

/// Which SelectorSyncSets a ClusterDeployment may be attached to, from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UsableSets {
    /// Any (no [`USABLE_SETS_ANNOTATION`]).
    #[default]
    Any,
    /// Only these names.
    Only(std::collections::BTreeSet<String>),
}

impl UsableSets {
    /// Reads [`USABLE_SETS_ANNOTATION`] from an object's `metadata.annotations`.
    pub fn of(annotations: &Value) -> Self {
        match annotations
            .get(USABLE_SETS_ANNOTATION)
            .and_then(Value::as_str)
        {
            None => Self::Any,
            Some(list) => Self::Only(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
        }
    }

    /// Whether a set of this name may be attached.
    pub fn allows(&self, set: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => names.contains(set),
        }
    }

    /// The annotation's value (`None`: no annotation).
    pub fn annotation(&self) -> Option<String> {
        match self {
            Self::Any => None,
            Self::Only(names) => Some(names.iter().cloned().collect::<Vec<_>>().join(",")),
        }
    }
}

/// A reference to an object in the same namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct LocalObjectReference {
    /// Name of the referent.
    #[serde(default)]
    #[schemars(extend("default" = ""))]
    pub name: String,
}

/// Spec shared by SyncSets and SelectorSyncSets: what to apply and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncSetCommonSpec {
    /// Resources is the list of objects to sync from RawExtension definitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "embedded_resources")]
    pub resources: Vec<Value>,
    /// ResourceApplyMode indicates if the Resource apply mode is "Upsert" (default) or "Sync".
    /// ApplyMode "Upsert" indicates create and update.
    /// ApplyMode "Sync" indicates create, update and delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_apply_mode: Option<String>,
    /// Patches is the list of patches to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<SyncObjectPatch>,
    /// Secrets is the list of secrets to sync along with their respective destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_mappings: Vec<SecretMapping>,
    /// ApplyBehavior indicates how resources in this syncset will be applied to the target
    /// cluster: "Apply" (default), "CreateOnly" or "CreateOrUpdate".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "Apply", "CreateOnly", "CreateOrUpdate"]))]
    pub apply_behavior: Option<String>,
    /// EnableResourceTemplates, if True, honours `{{ fromCDLabel "key" }}` in string values
    /// of Resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_resource_templates: Option<bool>,
    /// EnablePatchTemplates, if True, honours `{{ fromCDLabel "key" }}` in Patches[].Patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_patch_templates: Option<bool>,
}

fn embedded_resources(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "description": "Resources is the list of objects to sync from RawExtension definitions.",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-embedded-resource": true
        }
    })
}

fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn plain_integer(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer" })
}

fn preserved_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// A patch to apply to a specific object on the target cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncObjectPatch {
    /// APIVersion is the Group and Version of the object to be patched.
    pub api_version: String,
    /// Kind is the Kind of the object to be patched.
    pub kind: String,
    /// Name is the name of the object to be patched.
    pub name: String,
    /// Namespace is the Namespace in which the object to patch exists.
    /// Defaults to the SyncSet's Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Patch is the patch to apply.
    pub patch: String,
    /// PatchType indicates the PatchType as "strategic" (default), "json", or "merge".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
}

/// A source secret on the hub and its destination on the target cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMapping {
    /// SourceRef specifies the name and namespace of a secret on the management cluster
    pub source_ref: SecretReference,
    /// TargetRef specifies the target name and namespace of the secret on the target cluster
    pub target_ref: SecretReference,
}

/// A secret by name and optional namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretReference {
    /// Name is the name of the secret
    pub name: String,
    /// Namespace is the namespace where the secret lives. If not present, it is assumed to be
    /// the namespace of the syncset with the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// SyncSetSpec defines the SyncSetCommonSpec resources and patches to sync along with
/// ClusterDeploymentRefs indicating which clusters the SyncSet applies to in the
/// SyncSet's namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hive.openshift.io",
    version = "v1",
    kind = "SyncSet",
    namespaced,
    shortname = "ss",
    status = "SyncSetStatus",
    doc = "SyncSet is the Schema for the SyncSet API",
    printcolumn = r#"{"name":"Clusters","type":"integer","description":"Clusters the set targets","jsonPath":".status.clusters"}"#,
    printcolumn = r#"{"name":"InSync","type":"integer","description":"Clusters with the current generation applied successfully","jsonPath":".status.inSync"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","description":"Clusters where applying the set failed","jsonPath":".status.failing"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","priority":1,"description":"Clusters in sync whose objects are all healthy","jsonPath":".status.healthy"}"#,
    printcolumn = r#"{"name":"Degraded","type":"integer","priority":1,"description":"Clusters in sync where an object failed to become healthy","jsonPath":".status.degraded"}"#,
    printcolumn = r#"{"name":"FailingClusters","type":"string","priority":1,"description":"The first few failing clusters","jsonPath":".status.failingClusters[*]"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","priority":1,"description":"The progressive rollout of this generation: Progressing, Paused, Halted or Complete","jsonPath":".status.rolloutPhase"}"#,
    printcolumn = r#"{"name":"Wave","type":"string","priority":1,"description":"The wave rolling out, n/m","jsonPath":".status.rolloutWave"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SyncSetSpec {
    /// The resources, patches and secrets to sync.
    #[serde(flatten)]
    pub common: SyncSetCommonSpec,
    /// ClusterDeploymentRefs is the list of LocalObjectReference indicating which clusters the
    /// SyncSet applies to in the SyncSet's namespace.
    pub cluster_deployment_refs: Vec<LocalObjectReference>,
}

/// SyncSetStatus defines the observed state of a SyncSet. Hive leaves it empty; syncsets
/// summarises the rollout here (an extension: every field is optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncSetStatus {
    /// The rollout summary.
    #[serde(flatten)]
    pub rollout: RolloutSummary,
}

/// How far a SyncSet or SelectorSyncSet has rolled out over the clusters it targets
/// (a syncsets extension of Hive's empty status).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSummary {
    /// The generation of the set the counts refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Clusters the set targets (installed, not being deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<i64>,
    /// Clusters where the set's current generation was applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync: Option<i64>,
    /// Clusters where applying the set failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<i64>,
    /// The first few failing clusters, as namespace/name, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_clusters: Vec<String>,
    /// Clusters in sync whose objects are all healthy (kstatus: rolled out, available,
    /// complete or ready, as each kind goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<i64>,
    /// Clusters in sync whose objects are not all healthy yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressing: Option<i64>,
    /// Clusters in sync where an object failed to become healthy (a Deployment past its
    /// progress deadline, a failed Job, a Stalled condition…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<i64>,
    /// The RolloutPolicy governing the set, if a progressive one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_policy: Option<String>,
    /// Its rollout of this generation: `Progressing`, `Paused`, `Halted` or `Complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_phase: Option<String>,
    /// The wave rolling out, as `n/m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_wave: Option<String>,
}

/// SelectorSyncSetSpec defines the SyncSetCommonSpec resources and patches to sync along
/// with a ClusterDeploymentSelector indicating which clusters the SelectorSyncSet applies
/// to in any namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hive.openshift.io",
    version = "v1",
    kind = "SelectorSyncSet",
    shortname = "sss",
    status = "SelectorSyncSetStatus",
    doc = "SelectorSyncSet is the Schema for the SelectorSyncSet API",
    printcolumn = r#"{"name":"Clusters","type":"integer","description":"Clusters the set targets","jsonPath":".status.clusters"}"#,
    printcolumn = r#"{"name":"InSync","type":"integer","description":"Clusters with the current generation applied successfully","jsonPath":".status.inSync"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","description":"Clusters where applying the set failed","jsonPath":".status.failing"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","priority":1,"description":"Clusters in sync whose objects are all healthy","jsonPath":".status.healthy"}"#,
    printcolumn = r#"{"name":"Degraded","type":"integer","priority":1,"description":"Clusters in sync where an object failed to become healthy","jsonPath":".status.degraded"}"#,
    printcolumn = r#"{"name":"FailingClusters","type":"string","priority":1,"description":"The first few failing clusters","jsonPath":".status.failingClusters[*]"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","priority":1,"description":"The progressive rollout of this generation: Progressing, Paused, Halted or Complete","jsonPath":".status.rolloutPhase"}"#,
    printcolumn = r#"{"name":"Wave","type":"string","priority":1,"description":"The wave rolling out, n/m","jsonPath":".status.rolloutWave"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelectorSyncSetSpec {
    /// The resources, patches and secrets to sync.
    #[serde(flatten)]
    pub common: SyncSetCommonSpec,
    /// ClusterDeploymentSelector is a LabelSelector indicating which clusters the
    /// SelectorSyncSet applies to in any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub cluster_deployment_selector: Option<LabelSelector>,
}

impl SelectorSyncSetSpec {
    /// The clusters this set selects: its `clusterDeploymentSelector`, a missing or invalid
    /// one matching nothing. The controllers and admission both decide by this.
    pub fn selector(&self) -> crate::Selector {
        crate::Selector::from_label_selector(self.cluster_deployment_selector.as_ref())
            .unwrap_or_else(|_| crate::Selector::nothing())
    }
}

/// SelectorSyncSetStatus defines the observed state of a SelectorSyncSet. Hive leaves it
/// empty; syncsets summarises the rollout here (an extension: every field is optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SelectorSyncSetStatus {
    /// The rollout summary.
    #[serde(flatten)]
    pub rollout: RolloutSummary,
}

/// ClusterDeploymentSpec defines the desired state of ClusterDeployment. syncsets types the
/// fields it reads and preserves every other field of Hive's schema as given.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hive.openshift.io",
    version = "v1",
    kind = "ClusterDeployment",
    namespaced,
    shortname = "cd",
    status = "ClusterDeploymentStatus",
    doc = "ClusterDeployment is the Schema for the clusterdeployments API",
    printcolumn = r#"{"name":"InfraID","type":"string","jsonPath":".spec.clusterMetadata.infraID"}"#,
    printcolumn = r#"{"name":"Platform","type":"string","jsonPath":".metadata.labels.hive\\.openshift\\.io/cluster-platform"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".metadata.labels.hive\\.openshift\\.io/cluster-region"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".metadata.labels.hive\\.openshift\\.io/version"}"#,
    printcolumn = r#"{"name":"ClusterType","type":"string","jsonPath":".metadata.labels.hive\\.openshift\\.io/cluster-type"}"#,
    printcolumn = r#"{"name":"ProvisionStatus","type":"string","jsonPath":".status.conditions[?(@.type=='Provisioned')].reason"}"#,
    printcolumn = r#"{"name":"PowerState","type":"string","jsonPath":".status.powerState"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDeploymentSpec {
    /// ClusterName is the friendly name of the cluster.
    pub cluster_name: String,
    /// BaseDomain is the base domain to which the cluster should belong.
    pub base_domain: String,
    /// Platform is the configuration for the specific platform upon which to perform the
    /// installation.
    #[schemars(schema_with = "preserved_object")]
    pub platform: BTreeMap<String, Value>,
    /// ClusterMetadata contains metadata information about the installed cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_metadata: Option<ClusterMetadata>,
    /// Installed is true if the cluster has been installed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<bool>,
    /// PreserveOnDelete allows the user to disconnect a cluster from Hive without it being
    /// deprovisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_on_delete: Option<bool>,
    /// PullSecretRef is the reference to the secret to use when pulling images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret_ref: Option<LocalObjectReference>,
    /// ManageDNS specifies whether a DNSZone should be created and managed automatically.
    #[serde(default, rename = "manageDNS", skip_serializing_if = "Option::is_none")]
    pub manage_dns: Option<bool>,
    /// PowerState indicates whether a cluster should be running or hibernating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "Running", "Hibernating"]))]
    pub power_state: Option<String>,
    /// HibernateAfter will transition a cluster to hibernating power state after it has been
    /// running for the given duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub hibernate_after: Option<String>,
    /// InstallAttemptsLimit is the maximum number of times Hive will attempt to install the
    /// cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_attempts_limit: Option<i32>,
    /// BoundServiceAccountSignkingKeySecretRef refers to a Secret that contains a
    /// 'bound-service-account-signing-key.key' data key pointing to the private key that will
    /// be used to sign ServiceAccount objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_service_account_signing_key_secret_ref: Option<LocalObjectReference>,
    /// CertificateBundles is a list of certificate bundles associated with this cluster
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_objects")]
    pub certificate_bundles: Option<Vec<Value>>,
    /// ClusterInstallLocalReference is the reference to a custom resource that will carry
    /// out installation for this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub cluster_install_ref: Option<Value>,
    /// ClusterPoolRef is a reference to the ClusterPool that this ClusterDeployment
    /// originated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub cluster_pool_ref: Option<Value>,
    /// ControlPlaneConfig contains additional configuration for the target cluster's control
    /// plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub control_plane_config: Option<Value>,
    /// Ingress allows defining desired clusteringress/shards to be configured on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_objects")]
    pub ingress: Option<Vec<Value>>,
    /// Provisioning contains settings used only for initial cluster provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub provisioning: Option<Value>,
}

/// ClusterMetadata contains metadata information about the installed cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetadata {
    /// ClusterID is a globally unique identifier for this cluster generated during
    /// installation.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// InfraID is an identifier for this cluster generated during installation.
    #[serde(rename = "infraID")]
    pub infra_id: String,
    /// AdminKubeconfigSecretRef references the secret containing the admin kubeconfig for
    /// this cluster.
    pub admin_kubeconfig_secret_ref: LocalObjectReference,
    /// AdminPasswordSecretRef references the secret containing the admin username/password
    /// which can be used to login to this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_secret_ref: Option<LocalObjectReference>,
    /// MetadataJSONSecretRef references the secret containing the metadata.json emitted by
    /// the installer.
    #[serde(
        default,
        rename = "metadataJSONSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_json_secret_ref: Option<LocalObjectReference>,
    /// Platform holds platform-specific cluster metadata
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub platform: Option<Value>,
}

/// ClusterDeploymentStatus defines the observed state of ClusterDeployment
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDeploymentStatus {
    /// APIURL is the URL where the cluster's API can be accessed.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// WebConsoleURL is the URL for the cluster's web console UI.
    #[serde(
        default,
        rename = "webConsoleURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub web_console_url: Option<String>,
    /// Conditions includes more detailed status for the cluster deployment
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// InstalledTimestamp is the time we first detected that the cluster has been
    /// successfully installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_timestamp: Option<Time>,
    /// PowerState indicates the powerstate of cluster
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<String>,
    /// CertificateBundles contains the status of the certificate bundles associated with
    /// this cluster deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_objects")]
    pub certificate_bundles: Option<Vec<Value>>,
    /// CLIImage is the name of the oc cli image to use when installing the target cluster
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli_image: Option<String>,
    /// ClusterVersionStatus will hold a copy of the remote cluster's ClusterVersion.Status
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub cluster_version_status: Option<Value>,
    /// InstallRestarts is the total count of container restarts on the clusters install job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain_integer")]
    pub install_restarts: Option<i64>,
    /// InstallStartedTimestamp is the time when all pre-requisites were met and cluster
    /// installation was launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_started_timestamp: Option<Time>,
    /// InstallVersion is the version of OpenShift as reported by the release image resolved
    /// for the installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_version: Option<String>,
    /// InstallerImage is the name of the installer image to use when installing the target
    /// cluster
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer_image: Option<String>,
    /// Platform-specific status
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub platform_status: Option<Value>,
    /// ProvisionRef is a reference to the last ClusterProvision created for the deployment
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_ref: Option<LocalObjectReference>,
}

/// A status condition, as used by ClusterDeployments and ClusterSyncs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type is the type of the condition.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status is the status of the condition.
    pub status: String,
    /// LastProbeTime is the last time we probed the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// LastTransitionTime is the last time the condition transitioned from one status to
    /// another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Unique, one-word, CamelCase reason for the condition's last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message indicating details about last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// ClusterSyncSpec defines the desired state of ClusterSync
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hiveinternal.openshift.io",
    version = "v1alpha1",
    kind = "ClusterSync",
    namespaced,
    shortname = "csync",
    status = "ClusterSyncStatus",
    doc = "ClusterSync is the status of all of the SelectorSyncSets and SyncSets that apply to a ClusterDeployment.",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[0].reason"}"#,
    printcolumn = r#"{"name":"ControllerReplica","type":"string","jsonPath":".status.controlledByReplica"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Failed\")].message"}"#
)]
pub struct ClusterSyncSpec {}

/// ClusterSyncStatus defines the observed state of ClusterSync
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSyncStatus {
    /// SyncSets is the sync status of all of the SyncSets for the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_sets: Vec<SyncStatus>,
    /// SelectorSyncSets is the sync status of all of the SelectorSyncSets for the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selector_sync_sets: Vec<SyncStatus>,
    /// Conditions is a list of conditions associated with syncing to the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterSyncCondition>,
    /// FirstSuccessTime is the time we first successfully applied all (selector)syncsets to
    /// a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success_time: Option<Time>,
    /// ControlledByReplica indicates which replica is responsible for (the CD related to)
    /// this clustersync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_by_replica: Option<i64>,
}

/// The status of syncing one SyncSet or SelectorSyncSet to a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Name is the name of the SyncSet or SelectorSyncSet.
    pub name: String,
    /// ObservedGeneration is the generation of the SyncSet or SelectorSyncSet that was last
    /// observed.
    pub observed_generation: i64,
    /// ResourcesToDelete is the list of resources in the cluster that should be deleted when
    /// the SyncSet or SelectorSyncSet is deleted or is no longer matched to the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources_to_delete: Vec<SyncResourceReference>,
    /// Result is the result of the last attempt to apply the SyncSet or SelectorSyncSet to
    /// the cluster.
    #[schemars(extend("enum" = ["Success", "Failure"]))]
    pub result: String,
    /// FailureMessage is a message describing why the SyncSet or SelectorSyncSet could not be
    /// applied. This is only set when Result is Failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// LastTransitionTime is the time when this status last changed.
    pub last_transition_time: Time,
    /// FirstSuccessTime is the time when the SyncSet or SelectorSyncSet was first successfully
    /// applied to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success_time: Option<Time>,
    /// How the objects applied are doing (a syncsets extension, which Hive's clients
    /// ignore): `Healthy`, `Progressing` or `Degraded`, by kstatus rules; set once applied
    /// successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Healthy", "Progressing", "Degraded"]))]
    pub health: Option<String>,
    /// The objects applied that are not healthy, with why (a syncsets extension; at most
    /// 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_resources: Vec<UnhealthyResource>,
    /// When `health` last changed (a syncsets extension; `lastTransitionTime` is Hive's,
    /// for the result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_transition_time: Option<Time>,
}

/// An object applied to a cluster that is not healthy (yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyResource {
    /// The object.
    #[serde(flatten)]
    pub resource: SyncResourceReference,
    /// `Progressing` or `Degraded`.
    #[schemars(extend("enum" = ["Progressing", "Degraded"]))]
    pub health: String,
    /// Why, as its status says.
    pub message: String,
}

/// A reference to a resource applied to a cluster, to delete later.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct SyncResourceReference {
    /// APIVersion is the Group and Version of the resource.
    pub api_version: String,
    /// Kind is the Kind of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name is the name of the resource.
    pub name: String,
    /// Namespace is the namespace of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A ClusterSync condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSyncCondition {
    /// Type is the type of the condition.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status is the status of the condition.
    pub status: String,
    /// LastProbeTime is the last time we probed the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// LastTransitionTime is the last time the condition transitioned from one status to
    /// another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Unique, one-word, CamelCase reason for the condition's last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message indicating details about last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// ClusterSyncLeaseSpec is the specification of a ClusterSyncLease.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "hiveinternal.openshift.io",
    version = "v1alpha1",
    kind = "ClusterSyncLease",
    namespaced,
    shortname = "csl",
    doc = "ClusterSyncLease is a record of the last time that SyncSets and SelectorSyncSets were applied to a cluster."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSyncLeaseSpec {
    /// RenewTime is the time when SyncSets and SelectorSyncSets were last applied to the
    /// cluster.
    pub renew_time: MicroTime,
}

/// The CustomResourceDefinitions of the Hive kinds syncsets serves, generated from the
/// types above and normalised to Hive's conventions (no `nullable`, ClusterDeployment
/// preserving unknown fields).
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        SyncSet::crd(),
        SelectorSyncSet::crd(),
        ClusterDeployment::crd(),
        ClusterSync::crd(),
        ClusterSyncLease::crd(),
    ];
    for crd in &mut crds {
        crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
        let preserve = crd.spec.names.kind == "ClusterDeployment";
        for version in &mut crd.spec.versions {
            let Some(schema) = version.schema.as_mut() else {
                continue;
            };
            let Some(root) = schema.open_api_v3_schema.as_mut() else {
                continue;
            };
            let mut json = serde_json::to_value(&*root).expect("schema serialises");
            normalise(&mut json, preserve);
            // Root description and title come from kube-derive; Hive has a description only.
            // kube-derive requires `spec`; Hive's CRDs do not.
            if let Some(obj) = json.as_object_mut() {
                obj.remove("title");
                obj.remove("required");
            }
            *root = serde_json::from_value(json).expect("normalised schema deserialises");
        }
    }
    crds
}

/// Removes `nullable` (Hive's schemas never allow null) and, for ClusterDeployment, marks
/// every object schema as preserving unknown fields so Hive manifests round-trip intact.
fn normalise(schema: &mut Value, preserve_unknown: bool) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("nullable");
    if preserve_unknown && obj.get("type").and_then(Value::as_str) == Some("object") {
        obj.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for child in props.values_mut() {
            normalise(child, preserve_unknown);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = obj.get_mut(key) {
            normalise(child, preserve_unknown);
        }
    }
}

#[cfg(test)]
mod tests;
