//! The one write path.
//!
//! Every change to a stored object — an API request, the server's own bookkeeping, a
//! controller recording what it did — goes through [`Write::run`], kube-apiserver's
//! GuaranteedUpdate: read the object, let the caller propose what it should become, admit
//! the proposal, check it against the writer's policy, store it at the version read, and
//! start over from a fresh read when another writer got in between. After the write, the
//! writer's [`Effects`] run.
//!
//! A caller's precondition (a resourceVersion or uid the client named) belongs in the
//! proposal: a lost race reads the object again, and the proposal then refuses.

use std::future::Future;

use serde_json::Value;
use syncsets_machinery::meta::{self, WriteContext};
use syncsets_machinery::registry::KindInfo;
use syncsets_store::{ObjectKey, Store, StoreError, Stored};

/// How many times a write starts over while other writers keep getting in between.
pub const ATTEMPTS: usize = 16;

/// What the caller wants the object read to become.
#[derive(Debug)]
pub enum Proposal {
    /// Leave it as it is.
    Keep,
    /// Create it (when absent) or replace it with this object, admitted first.
    Write(Value),
    /// Replace it with this object as is (in its stored form, as read), without admission:
    /// the server's own bookkeeping, such as marking an object deleted.
    Mark(Value),
    /// Delete it.
    Delete,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the proposal kept the object, or admitted it unchanged.
    Unchanged,
    /// The object was created.
    Created,
    /// The object was replaced.
    Updated,
    /// The object was replaced without admission ([`Proposal::Mark`]).
    Marked,
    /// The object was deleted (proposed, or its last finalizer was removed).
    Deleted,
}

/// The result of a write.
#[derive(Debug)]
pub struct Written {
    /// What happened.
    pub change: Change,
    /// The object as stored now (or as it would be, in a dry run); for a deletion, its last
    /// state; `Null` when it was absent and stays so.
    pub object: Value,
    /// Admission's warnings.
    pub warnings: Vec<String>,
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    /// The proposal or the writer's policy refused.
    #[error(transparent)]
    Refused(E),
    /// Admission refused the proposed object.
    #[error(transparent)]
    Invalid(syncsets_machinery::Error),
    /// The store failed, or refused (a create's namespace is missing or terminating).
    #[error(transparent)]
    Store(StoreError),
    /// Other writers kept getting in between.
    #[error("the object kept changing while being written")]
    Conflict,
}

/// What a writer adds around the write.
pub trait Effects: Sync {
    /// Refusals of the writer's policy.
    type Error: Send;

    /// The writer's policy on an admitted object about to be stored (it may amend it);
    /// `old` is the object it replaces.
    fn check(
        &self,
        old: Option<&Value>,
        new: &mut Value,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// After an object was created or replaced.
    fn written(&self, object: &Value) -> impl Future<Output = ()> + Send;

    /// After an object was deleted.
    fn deleted(&self, object: &Value) -> impl Future<Output = ()> + Send;
}

/// One write.
pub struct Write<'a> {
    store: &'a dyn Store,
    key: ObjectKey,
    admission: Option<WriteContext<'a>>,
    duplicates: &'a [String],
    dry_run: bool,
}

impl<'a> Write<'a> {
    /// A write of `key`, admitting proposed objects in `admission`.
    pub fn new(store: &'a dyn Store, key: ObjectKey, admission: WriteContext<'a>) -> Self {
        Self {
            store,
            key,
            admission: Some(admission),
            duplicates: &[],
            dry_run: false,
        }
    }

    /// A write of `key` that only keeps, marks or deletes (it admits nothing).
    pub fn removal(store: &'a dyn Store, key: ObjectKey) -> Self {
        Self {
            store,
            key,
            admission: None,
            duplicates: &[],
            dry_run: false,
        }
    }

    /// Fields the request body held twice (admission warns or refuses, per validation).
    pub fn duplicates(mut self, duplicates: &'a [String]) -> Self {
        self.duplicates = duplicates;
        self
    }

    /// Admits and checks, but stores nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Reads the object, then writes what `propose` makes of it.
    pub async fn run<X: Effects>(
        &self,
        effects: &X,
        propose: impl FnMut(Option<&Stored>) -> Result<Proposal, X::Error>,
    ) -> Result<Written, WriteError<X::Error>> {
        self.run_from(None, effects, propose).await
    }

    /// [`Self::run`], starting from `known` (what the caller read already, `Some(None)`
    /// for absent) instead of a first read.
    pub async fn run_from<X: Effects>(
        &self,
        mut known: Option<Option<Stored>>,
        effects: &X,
        mut propose: impl FnMut(Option<&Stored>) -> Result<Proposal, X::Error>,
    ) -> Result<Written, WriteError<X::Error>> {
        for _ in 0..ATTEMPTS {
            let current = match known.take() {
                Some(current) => current,
                None => self.store.get(&self.key).await.map_err(WriteError::Store)?,
            };
            let proposal = propose(current.as_ref()).map_err(WriteError::Refused)?;
            if let Some(written) = self.attempt(current, proposal, effects).await? {
                return Ok(written);
            }
        }
        Err(WriteError::Conflict)
    }

    /// One attempt; `None` when another writer got in between.
    async fn attempt<X: Effects>(
        &self,
        current: Option<Stored>,
        proposal: Proposal,
        effects: &X,
    ) -> Result<Option<Written>, WriteError<X::Error>> {
        match (proposal, current) {
            (Proposal::Keep, current) => Ok(Some(Written {
                change: Change::Unchanged,
                object: current.map_or(Value::Null, |c| c.object),
                warnings: Vec::new(),
            })),
            (Proposal::Delete, None) => Ok(Some(Written {
                change: Change::Unchanged,
                object: Value::Null,
                warnings: Vec::new(),
            })),
            (Proposal::Delete, Some(current)) => {
                if self.dry_run {
                    return Ok(Some(written(Change::Deleted, current.object, Vec::new())));
                }
                self.delete(&current, effects).await
            }
            (Proposal::Mark(_), None) => Err(WriteError::Store(StoreError::NotFound)),
            (Proposal::Mark(object), Some(current)) => {
                self.replace(&current, object, Change::Marked, Vec::new(), effects)
                    .await
            }
            (Proposal::Write(object), None) => self.create(object, effects).await,
            (Proposal::Write(object), Some(current)) => {
                let admission = self.admission();
                let admitted =
                    meta::admit_update(admission, object, &current.object, self.duplicates)
                        .map_err(WriteError::Invalid)?;
                let mut object = admitted.object;
                effects
                    .check(Some(&current.object), &mut object)
                    .await
                    .map_err(WriteError::Refused)?;
                storage_form(admission.kind, &mut object);
                if meta::should_finalize(&object) {
                    // The last finalizer is gone from an object being deleted: it goes.
                    if self.dry_run {
                        return Ok(Some(written(Change::Deleted, object, admitted.warnings)));
                    }
                    return Ok(self
                        .delete(&current, effects)
                        .await?
                        .map(|_| written(Change::Deleted, object, admitted.warnings)));
                }
                self.replace(
                    &current,
                    object,
                    Change::Updated,
                    admitted.warnings,
                    effects,
                )
                .await
            }
        }
    }

    fn admission(&self) -> &WriteContext<'a> {
        self.admission
            .as_ref()
            .expect("a write that proposes objects has an admission context")
    }

    /// Admits and stores a new object. A status write that finds no object creates it:
    /// admitted as a create, then its status as a status update.
    async fn create<X: Effects>(
        &self,
        object: Value,
        effects: &X,
    ) -> Result<Option<Written>, WriteError<X::Error>> {
        let admission = self.admission();
        let status = admission.status.then(|| object.get("status").cloned());
        let as_create = WriteContext {
            status: false,
            ..admission.clone()
        };
        let mut admitted =
            meta::admit_create(&as_create, object, self.duplicates).map_err(WriteError::Invalid)?;
        if let Some(Some(status)) = status {
            let mut with_status = admitted.object.clone();
            with_status["status"] = status;
            let mut again = meta::admit_update(admission, with_status, &admitted.object, &[])
                .map_err(WriteError::Invalid)?;
            again.warnings.splice(0..0, admitted.warnings);
            admitted = again;
        }
        let mut object = admitted.object;
        effects
            .check(None, &mut object)
            .await
            .map_err(WriteError::Refused)?;
        storage_form(admission.kind, &mut object);
        if self.dry_run {
            self.check_namespace(admission.kind).await?;
            // As the store would refuse it: an object of that name exists already.
            if self
                .store
                .get(&self.key)
                .await
                .map_err(WriteError::Store)?
                .is_some()
            {
                return Ok(None);
            }
            return Ok(Some(written(Change::Created, object, admitted.warnings)));
        }
        // The namespace check happens in the same transaction as the write.
        match self
            .store
            .create(&self.key, &object, admission.kind.namespaced)
            .await
        {
            Ok(stored) => {
                effects.written(&stored.object).await;
                Ok(Some(written(
                    Change::Created,
                    stored.object,
                    admitted.warnings,
                )))
            }
            Err(StoreError::AlreadyExists) => Ok(None),
            Err(e) => Err(WriteError::Store(e)),
        }
    }

    /// Stores `object` in place of `current`, unless it is the same.
    async fn replace<X: Effects>(
        &self,
        current: &Stored,
        mut object: Value,
        change: Change,
        warnings: Vec<String>,
        effects: &X,
    ) -> Result<Option<Written>, WriteError<X::Error>> {
        if same(&object, &current.object) {
            return Ok(Some(written(
                Change::Unchanged,
                current.object.clone(),
                warnings,
            )));
        }
        if self.dry_run {
            object["metadata"]["resourceVersion"] = Value::String(current.rv.to_string());
            return Ok(Some(written(change, object, warnings)));
        }
        match self.store.update(&self.key, &object, current.rv).await {
            Ok(stored) => {
                effects.written(&stored.object).await;
                Ok(Some(written(change, stored.object, warnings)))
            }
            Err(StoreError::Conflict | StoreError::NotFound) => Ok(None),
            Err(e) => Err(WriteError::Store(e)),
        }
    }

    /// Deletes `current`, at its version.
    async fn delete<X: Effects>(
        &self,
        current: &Stored,
        effects: &X,
    ) -> Result<Option<Written>, WriteError<X::Error>> {
        match self.store.delete(&self.key, Some(current.rv)).await {
            Ok(gone) => {
                effects.deleted(&gone.object).await;
                Ok(Some(written(Change::Deleted, gone.object, Vec::new())))
            }
            Err(StoreError::Conflict | StoreError::NotFound) => Ok(None),
            Err(e) => Err(WriteError::Store(e)),
        }
    }

    /// A dry-run create's namespace must exist and not be terminating, as a real one's
    /// must (the store checks that in the write's transaction).
    async fn check_namespace<E>(&self, kind: &KindInfo) -> Result<(), WriteError<E>> {
        if !kind.namespaced {
            return Ok(());
        }
        let key = ObjectKey::new(&self.key.cluster, "namespaces", "", &self.key.namespace);
        match self.store.get(&key).await.map_err(WriteError::Store)? {
            None => Err(WriteError::Store(StoreError::NamespaceNotFound)),
            Some(ns) if ns.object["metadata"].get("deletionTimestamp").is_some() => {
                Err(WriteError::Store(StoreError::NamespaceTerminating))
            }
            Some(_) => Ok(()),
        }
    }
}

fn written(change: Change, object: Value, warnings: Vec<String>) -> Written {
    Written {
        change,
        object,
        warnings,
    }
}

/// Whether `new` (as it would be stored) is `current` apart from its resourceVersion.
fn same(new: &Value, current: &Value) -> bool {
    let (Some(new), Some(current)) = (new.as_object(), current.as_object()) else {
        return false;
    };
    new.len() == current.len()
        && new.iter().all(|(k, v)| match (k.as_str(), current.get(k)) {
            ("metadata", Some(Value::Object(cur))) => {
                let Some(meta) = v.as_object() else {
                    return false;
                };
                let cur_len = cur.len() - usize::from(cur.contains_key("resourceVersion"));
                meta.len() - usize::from(meta.contains_key("resourceVersion")) == cur_len
                    && meta
                        .iter()
                        .filter(|(k, _)| *k != "resourceVersion")
                        .all(|(k, v)| cur.get(k) == Some(v))
            }
            (_, Some(cur)) => cur == v,
            (_, None) => false,
        })
}

/// An object as stored: at its kind's storage version.
fn storage_form(kind: &KindInfo, object: &mut Value) {
    if kind.storage_version != kind.version && object.is_object() {
        let gv = if kind.group.is_empty() {
            kind.storage_version.clone()
        } else {
            format!("{}/{}", kind.group, kind.storage_version)
        };
        object["apiVersion"] = Value::String(gv);
    }
}

/// Effects of a writer with no policy and nothing to do after a write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Effects for Plain {
    type Error = std::convert::Infallible;

    async fn check(&self, _old: Option<&Value>, _new: &mut Value) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn written(&self, _object: &Value) {}

    async fn deleted(&self, _object: &Value) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_object_apart_from_its_resource_version() {
        let cur = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "v"}});
        assert!(same(
            &json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
            &cur
        ));
        assert!(same(
            &json!({"metadata": {"name": "a", "resourceVersion": "9"}, "data": {"k": "v"}}),
            &cur
        ));
        assert!(!same(
            &json!({"metadata": {"name": "a"}, "data": {"k": "w"}}),
            &cur
        ));
        assert!(!same(
            &json!({"metadata": {"name": "a", "labels": {}}, "data": {"k": "v"}}),
            &cur
        ));
        assert!(!same(&json!({"metadata": {"name": "a"}}), &cur));
        assert!(!same(
            &json!({"metadata": {"name": "a"}, "data": {"k": "v"}, "x": 1}),
            &cur
        ));
    }
}
