//! An in-memory store: a sorted map and an event log behind one lock. Used by tests and by
//! the fleet simulator, where up to 100,000 member clusters live in one process.
//!
//! Objects are kept as their JSON text (a `serde_json::Value` costs several times that),
//! and the event log shares each object's text rather than copying it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    ChangeEvent, EventType, ListPage, ListQuery, ObjectKey, OutboxEvent, OutboxState, RawObject,
    Result, Retention, Store, StoreError, Stored, fields_match, labels_of, namespace_key, storable,
    with_rv,
};

/// Events kept for watches; older ones are dropped.
const EVENT_WINDOW: usize = 100_000;

/// An object as kept: its resourceVersion and JSON text, resourceVersion included.
#[derive(Clone, Debug)]
struct Kept {
    rv: u64,
    json: Arc<str>,
}

impl Kept {
    fn new(object: &Value, rv: u64) -> Self {
        Self {
            rv,
            json: object.to_string().into(),
        }
    }

    fn value(&self) -> Value {
        serde_json::from_str(&self.json).expect("kept objects are JSON")
    }

    fn stored(&self) -> Stored {
        Stored {
            object: self.value(),
            rv: self.rv,
        }
    }
}

/// An event as kept: the object it leaves is shared with the object map.
#[derive(Debug)]
struct KeptEvent {
    kind: EventType,
    key: ObjectKey,
    object: Kept,
    prev_labels: Option<BTreeMap<String, String>>,
}

impl KeptEvent {
    fn outbox_event(&self) -> OutboxEvent {
        OutboxEvent {
            rv: self.object.rv,
            kind: self.kind,
            key: self.key.clone(),
            data: storable(&self.object.value()),
            sealed: None,
            prev_labels: self.prev_labels.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    objects: BTreeMap<ObjectKey, Kept>,
    events: VecDeque<KeptEvent>,
    outbox: OutboxState,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    written: tokio::sync::Notify,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    fn record(
        &mut self,
        kind: EventType,
        key: &ObjectKey,
        object: &Kept,
        prev_labels: Option<BTreeMap<String, String>>,
    ) {
        self.events.push_back(KeptEvent {
            kind,
            key: key.clone(),
            object: object.clone(),
            prev_labels,
        });
        // Memory is bounded: beyond the window the oldest events go, published or not (a
        // memory store does not survive its process anyway).
        while self.events.len() > EVENT_WINDOW {
            if let Some(e) = self.events.pop_front() {
                self.outbox.compacted = e.object.rv;
            }
        }
    }

    /// Writes an object: its next resourceVersion, kept and recorded.
    fn write(
        &mut self,
        kind: EventType,
        key: &ObjectKey,
        object: &Value,
        prev_labels: Option<BTreeMap<String, String>>,
    ) -> Stored {
        self.rv += 1;
        let rv = self.rv;
        let out = with_rv(storable(object), rv);
        let kept = Kept::new(&out, rv);
        self.record(kind, key, &kept, prev_labels);
        self.objects.insert(key.clone(), kept);
        Stored { object: out, rv }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>> {
        let kept = self
            .state
            .lock()
            .expect("store lock")
            .objects
            .get(key)
            .cloned();
        Ok(kept.map(|k| k.stored()))
    }

    async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>> {
        crate::check_get_many(keys)?;
        let state = self.state.lock().expect("store lock");
        Ok(keys
            .iter()
            .map(|k| state.objects.get(k).map(|kept| kept.stored()))
            .collect())
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        let state = self.state.lock().expect("store lock");
        let start = ObjectKey {
            cluster: q.cluster.clone(),
            resource: q.resource.clone(),
            namespace: q.namespace.clone().unwrap_or_default(),
            name: String::new(),
        };
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut more = false;
        for (k, kept) in state.objects.range(start..) {
            if k.cluster != q.cluster || k.resource != q.resource {
                break;
            }
            if let Some(ns) = &q.namespace
                && &k.namespace != ns
            {
                break;
            }
            if let Some((ans, aname)) = &q.after
                && (&k.namespace, &k.name) <= (ans, aname)
            {
                continue;
            }
            if !fields_match(&q.fields, &k.namespace, &k.name)
                || (!q.labels.is_everything() && !q.labels.matches(&labels_of(&kept.value())))
            {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(RawObject {
                rv: kept.rv,
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                json: kept.json.to_string(),
            });
        }
        Ok(ListPage {
            items,
            rv: state.rv,
            more,
        })
    }

    async fn create(&self, key: &ObjectKey, object: &Value, in_namespace: bool) -> Result<Stored> {
        let mut state = self.state.lock().expect("store lock");
        if in_namespace {
            match state.objects.get(&namespace_key(key)) {
                None => return Err(StoreError::NamespaceNotFound),
                Some(ns) if ns.value()["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(StoreError::NamespaceTerminating);
                }
                Some(_) => {}
            }
        }
        if state.objects.contains_key(key) {
            return Err(StoreError::AlreadyExists);
        }
        let stored = state.write(EventType::Added, key, object, None);
        self.written.notify_one();
        Ok(stored)
    }

    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored> {
        let mut state = self.state.lock().expect("store lock");
        let prev_labels = match state.objects.get(key) {
            None => return Err(StoreError::NotFound),
            Some(kept) if kept.rv != expected_rv => return Err(StoreError::Conflict),
            Some(kept) => labels_of(&kept.value()),
        };
        let stored = state.write(EventType::Modified, key, object, Some(prev_labels));
        self.written.notify_one();
        Ok(stored)
    }

    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored> {
        let mut state = self.state.lock().expect("store lock");
        match state.objects.get(key) {
            None => return Err(StoreError::NotFound),
            Some(kept) if expected_rv.is_some_and(|e| e != kept.rv) => {
                return Err(StoreError::Conflict);
            }
            Some(_) => {}
        }
        let gone = state.objects.remove(key).expect("checked").value();
        state.rv += 1;
        let rv = state.rv;
        let out = with_rv(gone, rv);
        let kept = Kept::new(&out, rv);
        state.record(EventType::Deleted, key, &kept, None);
        self.written.notify_one();
        Ok(Stored { object: out, rv })
    }

    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let state = self.state.lock().expect("store lock");
        let start = state.events.partition_point(|e| e.object.rv <= after);
        Ok(state
            .events
            .iter()
            .skip(start)
            .take(limit)
            .map(KeptEvent::outbox_event)
            .collect())
    }

    fn open_event(&self, event: &OutboxEvent) -> Result<ChangeEvent> {
        crate::open_event(None, event)
    }

    async fn outbox_state(&self) -> Result<OutboxState> {
        Ok(self.state.lock().expect("store lock").outbox)
    }

    async fn mark_published(&self, rv: u64) -> Result<()> {
        let mut state = self.state.lock().expect("store lock");
        state.outbox.published = state.outbox.published.max(rv);
        Ok(())
    }

    async fn compact(&self, retention: Retention) -> Result<OutboxState> {
        let mut state = self.state.lock().expect("store lock");
        let keep = retention.max_events.min(usize::MAX as u64) as usize;
        while state.events.len() > keep
            && state
                .events
                .front()
                .is_some_and(|e| e.object.rv <= state.outbox.published)
        {
            if let Some(e) = state.events.pop_front() {
                state.outbox.compacted = e.object.rv;
            }
        }
        Ok(state.outbox)
    }

    fn writes(&self) -> &tokio::sync::Notify {
        &self.written
    }

    async fn watermark(&self) -> Result<u64> {
        Ok(self.state.lock().expect("store lock").rv)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
