//! # syncsets-types
//!
//! The vocabulary every other crate speaks, with no I/O:
//!
//! ```text
//!   hive      SyncSet, SelectorSyncSet, ClusterDeployment, ClusterSync (Rust types → CRDs)
//!   selector  label selectors: string grammar + metav1.LabelSelector → Selector
//!   fields    field selectors
//!   names     Kubernetes name / label validation with Kubernetes' messages
//!   gvk       group / version / kind / resource identifiers
//!   kubeconfig  kubeconfigs syncsets writes, with kube's types
//!   rollout   syncsets.io RolloutPolicy: waves and health gates for sets' changes
//! ```
//!
//! Depends on serde, schemars and the Kubernetes type crates only.

pub mod fields;
pub mod gvk;
pub mod hive;
pub mod kubeconfig;
pub mod names;
pub mod rollout;
pub mod selector;

pub use fields::FieldSelector;
pub use gvk::{GroupVersion, GroupVersionKind, GroupVersionResource};
pub use selector::{LabelSelector, Selector};
