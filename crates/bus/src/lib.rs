//! # syncsets-bus
//!
//! How changes leave the database and reach the rest of the system:
//!
//! ```text
//!   store outbox ──relay──▶ Bus::publish ──▶ every API replica's feed ──▶ its watchers
//!   (same tx as           (confirmed,       (Bus::subscribe)
//!    the write)            in rv order)
//!
//!   controllers ──▶ WorkQueue::enqueue(key) ──▶ WorkQueue::next ──▶ Lease::done / retry
//! ```
//!
//! The relay ([`relay`]) publishes outbox events at least once, in resourceVersion order,
//! and records how far it got only after the bus confirmed; receivers drop what they have
//! already seen by resourceVersion. A feed that was interrupted says so
//! ([`FeedItem::Resumed`]), and its reader catches up from the store.
//!
//! Backends: [`local::LocalBus`] (in-process, the default).

pub mod amqp;
pub mod follow;
pub mod local;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use syncsets_store::OutboxEvent;
use tokio::sync::mpsc;

pub use amqp::AmqpBus;
pub use local::LocalBus;

/// Bus errors.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker is unreachable or refused the operation.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus has shut down.
    #[error("bus closed")]
    Closed,
}

/// Result with [`BusError`].
pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// What a replica's feed carries.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// A change event, in resourceVersion order (duplicates possible).
    Event(Arc<OutboxEvent>),
    /// The feed was (re)established: events published meanwhile may be missing, so the
    /// reader catches up from the store's outbox.
    Resumed,
}

/// The change-event bus.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Publishes events in order; returns once the bus has accepted (confirmed) all of them.
    /// Shared (`Arc`): an in-process bus hands them to its feeds as they are.
    async fn publish(&self, events: &[Arc<OutboxEvent>]) -> Result<()>;

    /// This replica's feed of every change event published from now on. It starts with
    /// [`FeedItem::Resumed`].
    fn subscribe(&self) -> mpsc::Receiver<FeedItem>;

    /// The work queue of that name (created on first use).
    fn queue(&self, name: &str) -> Arc<dyn WorkQueue>;

    /// The backend's name.
    fn backend(&self) -> &'static str;

    /// Closes this process's connections (the in-process bus has none): work leased and
    /// not acknowledged goes back to the queues for the other replicas.
    async fn close(&self) {}
}

/// A queue of keys to work on: duplicates waiting are coalesced, one key is never handed
/// out twice at once, and work not acknowledged comes back.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Adds a key (at once).
    async fn enqueue(&self, key: &str) -> Result<()>;

    /// Adds a key after a delay (backoff, periodic resync).
    async fn enqueue_after(&self, key: &str, delay: Duration) -> Result<()>;

    /// Adds many keys at once.
    async fn enqueue_all(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.enqueue(key).await?;
        }
        Ok(())
    }

    /// Waits for the next key. The key is this consumer's until the lease is finished.
    async fn next(&self) -> Result<Lease>;

    /// Shards of the queue: a key always hashes to the same one, and one consumer at a
    /// time takes each.
    fn shards(&self) -> u16 {
        1
    }

    /// Takes only these shards from now on (by default, every shard). A shard given up is
    /// released once its leases in flight have been told they are lost and have ended.
    async fn assign(&self, shards: &[u16]) -> Result<()> {
        let _ = shards;
        Ok(())
    }
}

/// How a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The work is done.
    Done,
    /// Do it again after this delay: it failed (counted in `workqueue_retries_total`).
    Retry(Duration),
    /// Do it again after this delay: it went well, and there is more to see later.
    After(Duration),
    /// The consumer went away without finishing: the key goes back to the queue.
    Abandoned,
}

/// Ends a lease on the queue's side.
pub trait LeaseEnd: Send + Sync {
    /// Finishes the lease.
    fn finish(self: Box<Self>, outcome: Outcome);

    /// Turns true when the lease is lost: the key may be handed to another consumer (a
    /// broker connection ended). `None`: never lost while this process lives.
    fn lost(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
}

/// A key handed to one consumer.
pub struct Lease {
    key: String,
    end: Option<Box<dyn LeaseEnd>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl Lease {
    /// A lease of `key`, ended through `end`.
    pub fn new(key: String, end: Box<dyn LeaseEnd>) -> Self {
        Self {
            key,
            end: Some(end),
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The work is done.
    pub fn done(mut self) {
        self.finish(Outcome::Done);
    }

    /// Do it again after `delay`: it failed.
    pub fn retry(mut self, delay: Duration) {
        self.finish(Outcome::Retry(delay));
    }

    /// Do it again after `delay`: it went well, and there is more to see then.
    pub fn after(mut self, delay: Duration) {
        self.finish(Outcome::After(delay));
    }

    /// Completes when the lease is lost (the key may be handed to another consumer): work
    /// on it must stop, so that no key is ever worked on twice at once. Never completes
    /// for leases that cannot be lost.
    pub async fn lost(&self) {
        match self.end.as_ref().and_then(|e| e.lost()) {
            // An error means the session's sender is gone, which ends it too.
            Some(mut ended) => drop(ended.wait_for(|ended| *ended).await),
            None => std::future::pending().await,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(end) = self.end.take() {
            end.finish(outcome);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.finish(Outcome::Abandoned);
    }
}

/// Counts events published (`syncsets_bus_published_total`).
fn published(bus: &'static str, events: usize) {
    describe();
    metrics::counter!("syncsets_bus_published_total", "bus" => bus).increment(events as u64);
}

/// Describes the bus's and the work queues' metrics (their HELP), once.
fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            "syncsets_bus_published_total",
            "Change events published on the bus (for RabbitMQ: confirmed by the broker)."
        );
        metrics::describe_counter!(
            "syncsets_bus_confirms_total",
            "Publisher confirms received from RabbitMQ, by result (ack, nack)."
        );
        metrics::describe_counter!(
            "syncsets_bus_reconnects_total",
            "Connections to RabbitMQ opened again after one was lost."
        );
        metrics::describe_gauge!(
            "workqueue_depth",
            "Keys waiting in a work queue (for RabbitMQ: ready in the shards this replica consumes, and prefetched), by queue name."
        );
        metrics::describe_counter!(
            "workqueue_adds_total",
            "Keys added to a work queue, by queue name."
        );
        metrics::describe_counter!(
            "workqueue_retries_total",
            "Keys handed back to a work queue to be retried, by queue name."
        );
    });
}

/// A work queue's series, under client-go's workqueue names.
struct QueueMetrics {
    depth: metrics::Gauge,
    adds: metrics::Counter,
    retries: metrics::Counter,
}

impl QueueMetrics {
    fn new(name: &str) -> Self {
        describe();
        let name = name.to_string();
        Self {
            depth: metrics::gauge!("workqueue_depth", "name" => name.clone()),
            adds: metrics::counter!("workqueue_adds_total", "name" => name.clone()),
            retries: metrics::counter!("workqueue_retries_total", "name" => name),
        }
    }
}

/// SplitMix64's finaliser: spreads every bit of `x` over the result (FNV-1a's low bits
/// depend only on the inputs' low bits, so a modulo of a power of two needs this first).
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The shard of `shards` a work queue key goes to, the same in every process.
pub fn shard_of(key: &str, shards: u16) -> u16 {
    (mix(stable_hash(key.as_bytes())) % u64::from(shards.max(1))) as u16
}

/// A hash of `bytes` that every process agrees on, whatever its build or Rust release
/// (FNV-1a; `DefaultHasher` promises neither): work queue shards, replica weights.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut hasher, bytes);
    std::hash::Hasher::finish(&hasher)
}

#[cfg(test)]
mod hash_tests {
    /// FNV-1a's published test vectors: the value never changes with the build.
    #[test]
    fn is_fnv1a() {
        assert_eq!(super::stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Keys that differ only in the high bits of a byte land on different shards.
    #[test]
    fn shards_spread_keys_that_fnv_alone_would_not() {
        let keys = [
            "ns/cluster-1",
            "ns/cluster-A",
            "ns/cluster-Q",
            "ns/cluster-a",
            "ns/cluster-q",
        ];
        assert!(
            keys.iter()
                .all(|k| super::stable_hash(k.as_bytes()) % 16 == 1)
        );
        let shards: std::collections::BTreeSet<u16> =
            keys.iter().map(|k| super::shard_of(k, 16)).collect();
        assert!(shards.len() > 1, "{shards:?}");
    }
}
