//! The controller's writes to the hub: ClusterSyncs, ClusterSyncLeases, the rollout
//! summaries of (Selector)SyncSets and Events. They take the API's one write path (`syncsets-write`:
//! admission — uid, timestamps, managedFields, validation — and conflict retries), so
//! they land in the outbox like any other change.

use std::sync::Arc;

use serde_json::Value;
use syncsets_machinery::meta::{self, FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::{KindInfo, Registry};
use syncsets_store::{ObjectKey, Store, Stored};
use syncsets_write::{Effects, Proposal, Write, WriteError, Written};

use crate::{Error, Result};

/// The field manager of the controller's hub writes.
pub const MANAGER: &str = "syncsets-controller";

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
    /// core/v1 Event.
    Event,
    /// core/v1 Namespace.
    Namespace,
    /// apps/v1 ControllerRevision (sets' revisions).
    ControllerRevision,
    /// syncsets.io/v1alpha1 RolloutPolicy.
    RolloutPolicy,
}

impl From<crate::model::SetKind> for HubKind {
    fn from(kind: crate::model::SetKind) -> Self {
        match kind {
            crate::model::SetKind::SyncSet => Self::SyncSet,
            crate::model::SetKind::SelectorSyncSet => Self::SelectorSyncSet,
        }
    }
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
            Self::Event => ("", "v1", "events"),
            Self::Namespace => ("", "v1", "namespaces"),
            Self::ControllerRevision => ("apps", "v1", "controllerrevisions"),
            Self::RolloutPolicy => ("syncsets.io", "v1alpha1", "rolloutpolicies"),
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
            .expect("the kinds the controller writes are built in")
    }

    /// The store key of a hub object.
    pub fn key(&self, kind: HubKind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey::new("", &self.kind(kind).group_resource(), namespace, name)
    }

    /// Reads several objects at one instant.
    pub async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>> {
        self.store.get_many(keys).await.map_err(Error::store)
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

    /// Writes one object through the one write path (admission included), starting from
    /// `current` as the caller read it: `propose` gets what is stored and says what it
    /// should become.
    pub(crate) async fn write(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        status: bool,
        current: Option<Option<Stored>>,
        propose: impl FnMut(Option<&Stored>) -> Result<Proposal>,
    ) -> Result<Written> {
        let info = self.kind(kind);
        let now = meta::now();
        Write::new(
            self.store.as_ref(),
            self.key(kind, namespace, name),
            self.context(&info, namespace, &now, status),
        )
        .run_from(current, self, propose)
        .await
        .map_err(|e| write_error(&info, name, e))
    }

    /// Creates `object` with `status`, or replaces the status of the current one.
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
            .write(kind, namespace, name, true, Some(current), |cur| {
                Ok(with_status(cur.map_or(object, |c| &c.object), status))
            })
            .await?;
        stored(written)
    }

    /// Replaces the status of an existing object; nothing if it is gone. Returns the
    /// status as stored.
    pub async fn update_status(
        &self,
        kind: HubKind,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<Value> {
        self.write(kind, namespace, name, true, None, |cur| {
            Ok(cur.map_or(Proposal::Keep, |c| with_status(&c.object, status)))
        })
        .await
        .map(|w| w.object["status"].clone())
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
            .write(kind, namespace, name, false, Some(current), |_| {
                Ok(Proposal::Write(object.clone()))
            })
            .await?;
        stored(written)
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
        let info = self.kind(kind);
        Write::removal(self.store.as_ref(), self.key(kind, namespace, name))
            .run(self, |cur| match cur {
                None => Ok(Proposal::Keep),
                Some(c) if rv.is_some_and(|rv| rv != c.rv) => {
                    Err(Error::Conflict(format!("{}/{name}", info.kind)))
                }
                Some(_) => Ok(Proposal::Delete),
            })
            .await
            .map(drop)
            .map_err(|e| write_error(&info, name, e))
    }
}

fn write_error(info: &KindInfo, name: &str, e: WriteError<Error>) -> Error {
    match e {
        WriteError::Refused(e) => e,
        WriteError::Invalid(e) => Error::Admission(e.to_string()),
        WriteError::Store(e) => Error::store(e),
        WriteError::Conflict => Error::Conflict(format!("{}/{name}", info.kind)),
    }
}

/// `object` with `status`, as a status write proposes it; kept if it has that status.
fn with_status(object: &Value, status: &Value) -> Proposal {
    if object.get("status") == Some(status) {
        return Proposal::Keep;
    }
    let mut new = object.clone();
    new["status"] = status.clone();
    Proposal::Write(new)
}

/// What a write that stores an object stored.
fn stored(written: Written) -> Result<Stored> {
    let rv = written.object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .ok_or_else(|| Error::Admission("a stored object without a resourceVersion".into()))?;
    Ok(Stored {
        object: written.object,
        rv,
    })
}

/// The controller's hub writes have no policy (they are the server's own) and no
/// after-write effects here: API replicas act on them from the change feed.
impl Effects for HubWriter {
    type Error = Error;

    async fn check(&self, _old: Option<&Value>, _new: &mut Value) -> Result<()> {
        Ok(())
    }

    async fn written(&self, _object: &Value) {}

    async fn deleted(&self, _object: &Value) {}
}
