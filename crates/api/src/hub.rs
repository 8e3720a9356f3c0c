//! This replica's side of the bus: one task reads the bus feed, opens each event (a Secret
//! is unsealed only here, in memory) and fans it out to the watches of this process.
//!
//! The hub delivers every event exactly once and in resourceVersion order: it drops what it
//! has already passed on (the relay publishes at least once), and when its feed was
//! interrupted ([`FeedItem::Resumed`]) it reads what it may have missed from the store's
//! outbox before going on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use syncsets_bus::follow::{Followed, follow};
use syncsets_bus::{Bus, FeedItem};
use syncsets_machinery::registry::Registry;
use syncsets_store::{ChangeEvent, EventType, ListQuery, ObjectKey, Store};

use crate::lifecycle::CRD_RESOURCE;
use tokio::sync::{mpsc, watch};

/// Events a slow watch may fall behind before it is closed (its client then re-watches from
/// the last version it saw, as Kubernetes clients do).
const WATCH_BUFFER: usize = 8_192;

/// A watch's interest: one resource of one logical cluster, in one namespace or all.
struct Sub {
    namespace: Option<String>,
    tx: mpsc::Sender<Arc<HubEvent>>,
}

/// Watches by (cluster, resource): an event reaches only the watches of its collection, so
/// watches elsewhere cost it nothing.
type Subs = Mutex<HashMap<(String, String), HashMap<u64, Sub>>>;

/// An event as passed on to watches, with its object's JSON text, made once however many
/// watches send it.
#[derive(Debug)]
pub struct HubEvent {
    /// The change.
    pub event: ChangeEvent,
    /// Watch event lines: ADDED, MODIFIED, DELETED.
    lines: [OnceLock<Bytes>; 3],
}

impl HubEvent {
    /// Wraps an event.
    pub fn new(event: ChangeEvent) -> Self {
        Self {
            event,
            lines: Default::default(),
        }
    }

    /// The watch event line (`{"type":…,"object":…}` and a newline) of this object as
    /// stored, for an event type (a selector can turn a modification into ADDED or DELETED).
    pub fn line(&self, kind: EventType) -> Bytes {
        let slot = match kind {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        };
        self.lines[slot]
            .get_or_init(|| {
                let mut line = Vec::with_capacity(1024);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(kind.as_str().as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                serde_json::to_writer(&mut line, &self.event.object).expect("JSON serialises");
                line.extend_from_slice(b"}\n");
                Bytes::from(line)
            })
            .clone()
    }
}

/// The fan-out point of this replica.
pub struct Hub {
    subs: Arc<Subs>,
    next_id: AtomicU64,
    position: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("position", &*self.position.borrow())
            .finish_non_exhaustive()
    }
}

/// A watch's feed from the hub; ends (returns `None`) if the watch falls too far behind.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<HubEvent>>,
    key: (String, String),
    id: u64,
    subs: Arc<Subs>,
}

impl Subscription {
    /// The next event of the watched collection.
    pub async fn recv(&mut self) -> Option<Arc<HubEvent>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.subs.lock().expect("hub lock");
        if let Some(of_key) = subs.get_mut(&self.key) {
            of_key.remove(&self.id);
            if of_key.is_empty() {
                subs.remove(&self.key);
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    /// Starts reading the bus.
    pub async fn start(
        store: Arc<dyn Store>,
        bus: &dyn Bus,
        rbac: Arc<crate::authz::RbacCache>,
        registry: Arc<Registry>,
    ) -> syncsets_store::Result<Self> {
        let start = store.watermark().await?;
        let subs: Arc<Subs> = Arc::default();
        let (position_tx, position) = watch::channel(start);
        let feed = bus.subscribe();
        let caches = Caches { rbac, registry };
        let task = tokio::spawn(run(store, feed, subs.clone(), position_tx, start, caches));
        Ok(Self {
            subs,
            next_id: AtomicU64::new(0),
            position,
            task,
        })
    }

    /// Events of one collection from now on.
    pub fn subscribe(
        &self,
        cluster: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let key = (cluster.to_string(), resource.to_string());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Sub {
            namespace: namespace.map(str::to_string),
            tx,
        };
        self.subs
            .lock()
            .expect("hub lock")
            .entry(key.clone())
            .or_default()
            .insert(id, sub);
        Subscription {
            rx,
            key,
            id,
            subs: self.subs.clone(),
        }
    }

    /// The resourceVersion of the last event passed on (every earlier one was, too).
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }
}

/// What every replica derives from the objects and keeps in step from the change feed,
/// whichever replica served the write.
struct Caches {
    /// RBAC policies.
    rbac: Arc<crate::authz::RbacCache>,
    /// The kinds served: a CRD written through any replica is served (or no longer) by all.
    registry: Arc<Registry>,
}

impl Caches {
    /// Before the event is opened (whether or not it can be).
    fn changing(&self, key: &ObjectKey) {
        if crate::authz::is_rbac(&key.resource) {
            self.rbac.invalidate(&key.cluster);
        }
    }

    /// With the opened event.
    fn changed(&self, event: &ChangeEvent) {
        if event.key.resource == CRD_RESOURCE {
            let cluster = &event.key.cluster;
            if event.kind == EventType::Deleted {
                self.registry.remove_crd(cluster, &event.key.name, event.rv);
            } else if let Err(e) = self.registry.install_crd(cluster, &event.object) {
                tracing::warn!(cluster, crd = %event.key.name, error = %syncsets_store::Chain(&e), "CRD stored but not served");
            }
        }
    }

    /// Changes were lost: forget the policies, and read every served cluster's CRDs again.
    fn lost(&self, store: &Arc<dyn Store>) {
        self.rbac.clear();
        let (store, registry) = (store.clone(), self.registry.clone());
        tokio::spawn(async move {
            for cluster in registry.clusters_with_crds() {
                let q = ListQuery {
                    cluster: cluster.clone(),
                    resource: CRD_RESOURCE.to_string(),
                    ..ListQuery::default()
                };
                let (crds, listed_at): (Vec<_>, u64) = match store.list(&q).await {
                    Ok(page) => (
                        page.items
                            .iter()
                            .filter_map(|r| r.parse().ok())
                            .map(|s| s.object)
                            .collect(),
                        page.rv,
                    ),
                    Err(e) => {
                        tracing::error!(cluster, error = %syncsets_store::Chain(&e), "reloading CRDs after lost changes");
                        continue;
                    }
                };
                // Changes observed meanwhile are newer than the list, and are kept.
                for (crd, e) in registry.reconcile_crds(&cluster, &crds, listed_at) {
                    tracing::warn!(cluster, crd, error = %syncsets_store::Chain(&e), "stored CRD does not compile; not served");
                }
            }
        });
    }
}

async fn run(
    store: Arc<dyn Store>,
    feed: tokio::sync::mpsc::Receiver<FeedItem>,
    subs: Arc<Subs>,
    position: watch::Sender<u64>,
    start: u64,
    caches: Caches,
) {
    let opener = store.clone();
    follow(store, feed, start, |followed| match followed {
        Followed::Event(event) => {
            // Position first: a watch that subscribes after this reads the event from the
            // outbox (it catches up to the position); one that subscribed before gets it here.
            position.send_replace(event.rv);
            // RBAC objects and CRDs changed through any replica change this one's policy
            // and kinds.
            caches.changing(&event.key);
            match opener.open_event(event) {
                Ok(opened) => {
                    caches.changed(&opened);
                    dispatch(&subs, Arc::new(HubEvent::new(opened)));
                }
                Err(e) => {
                    tracing::error!(rv = event.rv, error = %syncsets_store::Chain(&e), "cannot open a change event; skipping it");
                }
            }
        }
        Followed::Gap { from } => {
            // Changes were compacted before this replica read them: end every watch, so
            // that its client re-watches (and gets 410 Gone if its version is too old).
            tracing::warn!(from, "change events were compacted before this replica read them; closing watches");
            subs.lock().expect("hub lock").clear();
            // RBAC and CRD changes may be among the lost events.
            caches.lost(&opener);
        }
    })
    .await;
}

/// Hands an event to the watches of its collection; a watch whose buffer is full is
/// dropped (its stream ends and its client re-watches from the last version it saw).
fn dispatch(subs: &Subs, event: Arc<HubEvent>) {
    let key = &event.event.key;
    let mut subs = subs.lock().expect("hub lock");
    // Borrowed lookup would need a tuple of references; the clone is two short strings.
    let Some(of_key) = subs.get_mut(&(key.cluster.clone(), key.resource.clone())) else {
        return;
    };
    of_key.retain(|_, sub| {
        if sub
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != key.namespace)
        {
            return true;
        }
        match sub.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("a watch fell behind; closing it");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}
