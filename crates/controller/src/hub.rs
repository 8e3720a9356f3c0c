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
pub struct HubWriter {
    store: Arc<dyn Store>,
    registry: Registry,
}

impl std::fmt::Debug for HubWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubWriter").finish_non_exhaustive()
    }
}

impl HubWriter {
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

    /// Writes one object from what is stored now, retrying when another writer got in
    /// between: `make` gets the current object (`None`: absent) and returns the admitted
    /// object to store, or `None` to leave things as they are.
    async fn write(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        mut current: Option<Stored>,
        make: impl Fn(&KindInfo, Option<&Stored>, &str) -> Result<Option<Value>>,
    ) -> Result<Option<Stored>> {
        let info = self.kind(kind);
        let key = self.key(kind, namespace, name);
        for _ in 0..ATTEMPTS {
            let Some(object) = make(&info, current.as_ref(), &meta::now())? else {
                return Ok(current);
            };
            let result = match &current {
                None => self.store.create(&key, &object, info.namespaced).await,
                Some(cur) => self.store.update(&key, &object, cur.rv).await,
            };
            match result {
                Ok(stored) => return Ok(Some(stored)),
                Err(StoreError::Conflict | StoreError::AlreadyExists | StoreError::NotFound) => {
                    current = self.store.get(&key).await.map_err(Error::store)?;
                }
                Err(e) => return Err(Error::store(e)),
            }
        }
        Err(Error::Conflict(format!("{}/{name}", info.kind)))
    }

    /// `current` with `status` through the status subresource's admission; `None` if it
    /// has that status already.
    fn with_status(
        &self,
        info: &KindInfo,
        current: &Stored,
        status: &Value,
        now: &str,
    ) -> Result<Option<Value>> {
        if current.object.get("status") == Some(status) {
            return Ok(None);
        }
        let mut new = current.object.clone();
        new["status"] = status.clone();
        let namespace = current.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let admitted = meta::admit_update(
            &self.context(info, namespace, now, true),
            new,
            &current.object,
            &[],
        )
        .map_err(|e| Error::Admission(e.to_string()))?;
        Ok(Some(admitted.object))
    }

    /// Creates `object` (its status included), or replaces the status of the current one.
    /// `current` is what the caller read.
    pub async fn write_status(
        &self,
        kind: HubKind,
        object: &Value,
        status: &Value,
        current: Option<Stored>,
    ) -> Result<Stored> {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let written = self
            .write(kind, namespace, name, current, |info, cur, now| match cur {
                Some(cur) => self.with_status(info, cur, status, now),
                None => {
                    let created = meta::admit_create(
                        &self.context(info, namespace, now, false),
                        object.clone(),
                        &[],
                    )
                    .map_err(|e| Error::Admission(e.to_string()))?;
                    let stored = Stored {
                        object: created.object,
                        rv: 0,
                    };
                    Ok(Some(
                        self.with_status(info, &stored, status, now)?
                            .unwrap_or(stored.object),
                    ))
                }
            })
            .await?;
        Ok(written.expect("written, or it exists already"))
    }

    /// Replaces the status of an existing object; nothing if it is gone.
    pub async fn update_status(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<()> {
        let current = self.get(kind, namespace, name).await?;
        if current.is_none() {
            return Ok(());
        }
        self.write(kind, namespace, name, current, |info, cur, now| match cur {
            Some(cur) => self.with_status(info, cur, status, now),
            None => Ok(None), // deleted meanwhile
        })
        .await
        .map(drop)
    }

    /// Creates or replaces a main resource (not its status).
    pub async fn put(
        &self,
        kind: HubKind,
        object: &Value,
        current: Option<Stored>,
    ) -> Result<Stored> {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let written = self
            .write(kind, namespace, name, current, |info, cur, now| {
                let wctx = self.context(info, namespace, now, false);
                let admitted = match cur {
                    None => meta::admit_create(&wctx, object.clone(), &[]),
                    Some(cur) => {
                        let mut new = object.clone();
                        new["metadata"]["resourceVersion"] = json!(cur.rv.to_string());
                        meta::admit_update(&wctx, new, &cur.object, &[])
                    }
                };
                let admitted = admitted.map_err(|e| Error::Admission(e.to_string()))?;
                Ok(Some(admitted.object))
            })
            .await?;
        Ok(written.expect("put always writes"))
    }

    /// Deletes an object if it exists.
    pub async fn delete(&self, kind: HubKind, namespace: &str, name: &str) -> Result<()> {
        self.delete_at(kind, namespace, name, None).await
    }

    /// Deletes an object if it exists and, with `rv`, is still at that resourceVersion
    /// (else a conflict error: it was written since it was read).
    pub async fn delete_at(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        rv: Option<u64>,
    ) -> Result<()> {
        match self
            .store
            .delete(&self.key(kind, namespace, name), rv)
            .await
        {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(Error::store(e)),
        }
    }
}
