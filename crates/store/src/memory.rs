//! An in-memory store: a sorted map and an event log behind one lock. Used by tests and by
//! the fleet simulator, where thousands of member clusters live in one process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    ChangeEvent, EventType, ListPage, ListQuery, ObjectKey, OutboxEvent, OutboxState, RawObject,
    Result, Retention, Store, StoreError, Stored, fields_match, labels_of, namespace_key, storable,
    with_rv,
};

/// Events kept for watches; older ones are dropped.
const EVENT_WINDOW: usize = 100_000;

#[derive(Debug, Default)]
struct State {
    rv: u64,
    objects: BTreeMap<ObjectKey, (u64, Value)>,
    events: VecDeque<OutboxEvent>,
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
    fn record(&mut self, kind: EventType, key: &ObjectKey, object: &Value, prev: Option<&Value>) {
        self.events.push_back(OutboxEvent {
            rv: self.rv,
            kind,
            key: key.clone(),
            data: storable(object),
            sealed: None,
            prev_labels: prev.map(labels_of),
        });
        // Memory is bounded: beyond the window the oldest events go, published or not (a
        // memory store does not survive its process anyway).
        while self.events.len() > EVENT_WINDOW {
            if let Some(e) = self.events.pop_front() {
                self.outbox.compacted = e.rv;
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>> {
        let state = self.state.lock().expect("store lock");
        Ok(state.objects.get(key).map(|(rv, v)| Stored {
            object: with_rv(v.clone(), *rv),
            rv: *rv,
        }))
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
        for (k, (rv, v)) in state.objects.range(start..) {
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
            if !fields_match(&q.fields, &k.namespace, &k.name) || !q.labels.matches(&labels_of(v)) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(RawObject {
                rv: *rv,
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                json: with_rv(v.clone(), *rv).to_string(),
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
                Some((_, ns)) if ns["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(StoreError::NamespaceTerminating);
                }
                Some(_) => {}
            }
        }
        if state.objects.contains_key(key) {
            return Err(StoreError::AlreadyExists);
        }
        state.rv += 1;
        let rv = state.rv;
        let stored = storable(object);
        state.objects.insert(key.clone(), (rv, stored.clone()));
        let out = with_rv(stored, rv);
        state.record(EventType::Added, key, &out, None);
        self.written.notify_one();
        Ok(Stored { object: out, rv })
    }

    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored> {
        let mut state = self.state.lock().expect("store lock");
        let prev = match state.objects.get(key) {
            None => return Err(StoreError::NotFound),
            Some((rv, _)) if *rv != expected_rv => return Err(StoreError::Conflict),
            Some((_, v)) => v.clone(),
        };
        state.rv += 1;
        let rv = state.rv;
        let stored = storable(object);
        state.objects.insert(key.clone(), (rv, stored.clone()));
        let out = with_rv(stored, rv);
        state.record(EventType::Modified, key, &out, Some(&prev));
        self.written.notify_one();
        Ok(Stored { object: out, rv })
    }

    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored> {
        let mut state = self.state.lock().expect("store lock");
        match state.objects.get(key) {
            None => return Err(StoreError::NotFound),
            Some((rv, _)) if expected_rv.is_some_and(|e| e != *rv) => {
                return Err(StoreError::Conflict);
            }
            Some(_) => {}
        }
        let (_, v) = state.objects.remove(key).expect("checked");
        state.rv += 1;
        let rv = state.rv;
        let out = with_rv(v, rv);
        state.record(EventType::Deleted, key, &out, None);
        self.written.notify_one();
        Ok(Stored { object: out, rv })
    }

    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let state = self.state.lock().expect("store lock");
        let start = state.events.partition_point(|e| e.rv <= after);
        Ok(state
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
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
                .is_some_and(|e| e.rv <= state.outbox.published)
        {
            if let Some(e) = state.events.pop_front() {
                state.outbox.compacted = e.rv;
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
