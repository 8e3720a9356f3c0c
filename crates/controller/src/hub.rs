//! The controller's writes to the hub: ClusterSyncs, ClusterSyncLeases and the rollout
//! summaries of (Selector)SyncSets. They go through the same admission as API requests
//! (uid, timestamps, managedFields, validation) and straight into the store, so they land
//! in the outbox like any other change.

use std::sync::Arc;

use serde_json::{Value, json};
use syncsets_machinery::meta::{self, FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::{KindInfo, Registry};
use syncsets_store::{ObjectKey, Store, StoreError, Stored};

use crate::{Error, Result};

/// The field manager of the controller's hub writes.
pub const MANAGER: &str = "syncsets-controller";

/// Attempts of a write that races another writer.
const ATTEMPTS: usize = 8;

/// A hub kind the controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubKind {
    /// `hiveinternal.openshift.io/v1alpha1` ClusterSync.
    ClusterSync,
    /// `hiveinternal.openshift.io/v1alpha1` ClusterSyncLease.
    ClusterSyncLease,
    /// `hive.openshift.io/v1` SyncSet.
    SyncSet,
    /// `hive.openshift.io/v1` SelectorSyncSet.
    SelectorSyncSet,
}

impl HubKind {
    fn coordinates(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::ClusterSync => ("hiveinternal.openshift.io", "v1alpha1", "clustersyncs"),
            Self::ClusterSyncLease => {
                ("hiveinternal.openshift.io", "v1alpha1", "clustersyncleases")
            }
            Self::SyncSet => ("hive.openshift.io", "v1", "syncsets"),
            Self::SelectorSyncSet => ("hive.openshift.io", "v1", "selectorsyncsets"),
        }
    }
}

/// Writes hub objects.
pub struct Hub {
    store: Arc<dyn Store>,
    registry: Registry,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Writes through `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            registry: Registry::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn kind(&self, kind: HubKind) -> Arc<KindInfo> {
        let (group, version, plural) = kind.coordinates();
        self.registry
            .kinds("")
            .get(group, version, plural)
            .cloned()
            .expect("Hive kinds are built in")
    }

    fn key(&self, kind: HubKind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey::new("", &self.kind(kind).group_resource(), namespace, name)
    }

    /// Reads an object.
    pub async fn get(&self, kind: HubKind, namespace: &str, name: &str) -> Result<Option<Stored>> {
        self.store
            .get(&self.key(kind, namespace, name))
            .await
            .map_err(Error::store)
    }

    fn context<'a>(
        &'a self,
        info: &'a KindInfo,
        namespace: &'a str,
        now: &'a str,
        status: bool,
    ) -> WriteContext<'a> {
        WriteContext {
            kind: info,
            meta_schema: self.registry.meta_schema(),
            namespace: (!namespace.is_empty()).then_some(namespace),
            now,
            field_validation: FieldValidation::Strict,
            ownership: Ownership::Update(MANAGER.into()),
            status,
        }
    }

    /// Creates `object` (its status included), or replaces the status of the current one.
    /// `current` is what the caller read; a race with another writer re-reads and retries.
    pub async fn write_status(
        &self,
        kind: HubKind,
        object: &Value,
        status: &Value,
        mut current: Option<Stored>,
    ) -> Result<Stored> {
        let info = self.kind(kind);
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let key = self.key(kind, namespace, name);
        for _ in 0..ATTEMPTS {
            let now = meta::now();
            let result = match &current {
                None => {
                    let created = meta::admit_create(
                        &self.context(&info, namespace, &now, false),
                        object.clone(),
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    let mut with_status = created.object.clone();
                    with_status["status"] = status.clone();
                    let admitted = meta::admit_update(
                        &self.context(&info, namespace, &now, true),
                        with_status,
                        &created.object,
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    self.store
                        .create(&key, &admitted.object, info.namespaced)
                        .await
                }
                Some(cur) => {
                    if cur.object.get("status") == Some(status) {
                        return Ok(cur.clone());
                    }
                    let mut new = cur.object.clone();
                    new["status"] = status.clone();
                    let admitted = meta::admit_update(
                        &self.context(&info, namespace, &now, true),
                        new,
                        &cur.object,
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    self.store.update(&key, &admitted.object, cur.rv).await
                }
            };
            match result {
                Ok(stored) => return Ok(stored),
                Err(StoreError::Conflict | StoreError::AlreadyExists | StoreError::NotFound) => {
                    current = self.store.get(&key).await.map_err(Error::store)?;
                }
                Err(e) => return Err(Error::store(e)),
            }
        }
        Err(Error::Conflict(format!("{}/{name}", info.kind)))
    }

    /// Replaces the status of an existing object; nothing if it is gone.
    pub async fn update_status(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<()> {
        let info = self.kind(kind);
        let key = self.key(kind, namespace, name);
        for _ in 0..ATTEMPTS {
            let Some(cur) = self.store.get(&key).await.map_err(Error::store)? else {
                return Ok(());
            };
            if cur.object.get("status") == Some(status) {
                return Ok(());
            }
            let now = meta::now();
            let mut new = cur.object.clone();
            new["status"] = status.clone();
            let admitted = meta::admit_update(
                &self.context(&info, namespace, &now, true),
                new,
                &cur.object,
                &[],
            )
            .map_err(|e| Error::Admission(e.to_string()))?;
            match self.store.update(&key, &admitted.object, cur.rv).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict | StoreError::NotFound) => {}
                Err(e) => return Err(Error::store(e)),
            }
        }
        Err(Error::Conflict(format!("{}/{name}", info.kind)))
    }

    /// Creates or replaces a main resource (not its status).
    pub async fn put(
        &self,
        kind: HubKind,
        object: &Value,
        mut current: Option<Stored>,
    ) -> Result<Stored> {
        let info = self.kind(kind);
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let key = self.key(kind, namespace, name);
        for _ in 0..ATTEMPTS {
            let now = meta::now();
            let result = match &current {
                None => {
                    let admitted = meta::admit_create(
                        &self.context(&info, namespace, &now, false),
                        object.clone(),
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    self.store
                        .create(&key, &admitted.object, info.namespaced)
                        .await
                }
                Some(cur) => {
                    let mut new = object.clone();
                    new["metadata"]["resourceVersion"] = json!(cur.rv.to_string());
                    let admitted = meta::admit_update(
                        &self.context(&info, namespace, &now, false),
                        new,
                        &cur.object,
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    self.store.update(&key, &admitted.object, cur.rv).await
                }
            };
            match result {
                Ok(stored) => return Ok(stored),
                Err(StoreError::Conflict | StoreError::AlreadyExists | StoreError::NotFound) => {
                    current = self.store.get(&key).await.map_err(Error::store)?;
                }
                Err(e) => return Err(Error::store(e)),
            }
        }
        Err(Error::Conflict(format!("{}/{name}", info.kind)))
    }

    /// Deletes an object if it exists.
    pub async fn delete(&self, kind: HubKind, namespace: &str, name: &str) -> Result<()> {
        match self
            .store
            .delete(&self.key(kind, namespace, name), None)
            .await
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(Error::store(e)),
        }
    }
}
