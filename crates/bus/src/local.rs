//! The in-process bus: no extra process; feeds and work queues live in this process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use syncsets_store::OutboxEvent;
use tokio::sync::{Notify, mpsc};

use crate::{Bus, FeedItem, Lease, LeaseEnd, Outcome, QueueMetrics, Result, WorkQueue};

/// Events a feed may hold before its reader is considered behind: it then skips events
/// and is told to catch up from the store ([`FeedItem::Resumed`]).
const FEED_CAPACITY: usize = 65_536;

struct Feed {
    tx: mpsc::Sender<FeedItem>,
    /// Events were dropped since the reader last kept up.
    behind: bool,
}

/// The in-process bus.
#[derive(Default)]
pub struct LocalBus {
    feeds: Mutex<Vec<Feed>>,
    queues: Mutex<HashMap<String, Arc<LocalQueue>>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus").finish_non_exhaustive()
    }
}

impl LocalBus {
    /// A bus with no feeds and no queues.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, events: &[Arc<OutboxEvent>]) -> Result<()> {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        feeds.retain_mut(|feed| {
            for event in events {
                if feed.behind {
                    match feed.tx.try_send(FeedItem::Resumed) {
                        Ok(()) => feed.behind = false,
                        Err(mpsc::error::TrySendError::Full(_)) => continue,
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
                match feed.tx.try_send(FeedItem::Event(event.clone())) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => feed.behind = true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        crate::published(self.backend(), events.len());
        Ok(())
    }

    fn subscribe(&self) -> mpsc::Receiver<FeedItem> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        tx.try_send(FeedItem::Resumed).expect("a new feed has room");
        self.feeds
            .lock()
            .expect("feeds lock")
            .push(Feed { tx, behind: false });
        rx
    }

    fn queue(&self, name: &str) -> Arc<dyn WorkQueue> {
        self.queues
            .lock()
            .expect("queues lock")
            .entry(name.to_string())
            .or_insert_with(|| Arc::new_cyclic(|me| LocalQueue::new(me.clone(), name)))
            .clone()
    }

    fn backend(&self) -> &'static str {
        "in-process"
    }
}

#[derive(Default)]
struct QueueState {
    /// Keys waiting, in order.
    ready: VecDeque<String>,
    /// The same keys, for coalescing.
    waiting: HashSet<String>,
    /// Keys handed out and not finished.
    active: HashSet<String>,
    /// Active keys enqueued again meanwhile: they go back once finished.
    again: HashSet<String>,
}

/// An in-process work queue.
pub struct LocalQueue {
    me: Weak<LocalQueue>,
    state: Mutex<QueueState>,
    ready: Notify,
    metrics: QueueMetrics,
}

impl LocalQueue {
    fn new(me: Weak<LocalQueue>, name: &str) -> Self {
        Self {
            me,
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            metrics: QueueMetrics::new(name),
        }
    }

    fn add(&self, key: &str) {
        let mut state = self.state.lock().expect("queue lock");
        if state.active.contains(key) {
            state.again.insert(key.to_string());
        } else if state.waiting.insert(key.to_string()) {
            state.ready.push_back(key.to_string());
            self.metrics.adds.increment(1);
            self.metrics.depth.set(state.ready.len() as f64);
            self.ready.notify_one();
        }
    }

    fn add_later(&self, key: &str, delay: Duration) {
        let (me, key) = (self.me.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(queue) = me.upgrade() {
                queue.add(&key);
            }
        });
    }

    fn take(&self) -> Option<String> {
        let mut state = self.state.lock().expect("queue lock");
        let key = state.ready.pop_front()?;
        state.waiting.remove(&key);
        state.active.insert(key.clone());
        self.metrics.depth.set(state.ready.len() as f64);
        if !state.ready.is_empty() {
            // Pass the wake-up on: another consumer may be waiting.
            self.ready.notify_one();
        }
        Some(key)
    }

    fn finish(&self, key: &str, outcome: Outcome) {
        let again = {
            let mut state = self.state.lock().expect("queue lock");
            state.active.remove(key);
            state.again.remove(key)
        };
        if matches!(outcome, Outcome::Retry(_)) {
            self.metrics.retries.increment(1);
        }
        match outcome {
            Outcome::Done if again => self.add(key),
            Outcome::Done => {}
            Outcome::Abandoned => self.add(key),
            Outcome::Retry(delay) if again || delay.is_zero() => self.add(key),
            // A look later is promised whatever else runs now (its consumer counts on it).
            Outcome::After(delay) if again => {
                self.add(key);
                self.add_later(key, delay);
            }
            Outcome::Retry(delay) | Outcome::After(delay) => self.add_later(key, delay),
        }
    }
}

struct LocalLeaseEnd {
    queue: Weak<LocalQueue>,
    key: String,
}

impl LeaseEnd for LocalLeaseEnd {
    fn finish(self: Box<Self>, outcome: Outcome) {
        if let Some(queue) = self.queue.upgrade() {
            queue.finish(&self.key, outcome);
        }
    }
}

#[async_trait]
impl WorkQueue for LocalQueue {
    async fn enqueue(&self, key: &str) -> Result<()> {
        self.add(key);
        Ok(())
    }

    async fn enqueue_after(&self, key: &str, delay: Duration) -> Result<()> {
        if delay.is_zero() {
            self.add(key);
        } else {
            self.add_later(key, delay);
        }
        Ok(())
    }

    async fn next(&self) -> Result<Lease> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(key) = self.take() {
                let end = LocalLeaseEnd {
                    queue: self.me.clone(),
                    key: key.clone(),
                };
                return Ok(Lease::new(key, Box::new(end)));
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rv: u64) -> Arc<OutboxEvent> {
        Arc::new(OutboxEvent {
            rv,
            kind: syncsets_store::EventType::Added,
            key: syncsets_store::ObjectKey::new("", "configmaps", "ns", &format!("c{rv}")),
            data: serde_json::json!({}),
            sealed: None,
            prev_labels: None,
        })
    }

    #[tokio::test]
    async fn feeds_get_every_event_in_order() {
        let bus = LocalBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(&[event(1), event(2)]).await.unwrap();
        bus.publish(&[event(3)]).await.unwrap();
        for feed in [&mut a, &mut b] {
            assert!(matches!(feed.recv().await, Some(FeedItem::Resumed)));
            for rv in 1..=3 {
                match feed.recv().await {
                    Some(FeedItem::Event(e)) => assert_eq!(e.rv, rv),
                    other => panic!("expected event {rv}, got {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_feed_that_falls_behind_is_told_to_resume() {
        let bus = LocalBus::new();
        let mut feed = bus.subscribe();
        let many: Vec<Arc<OutboxEvent>> = (1..=FEED_CAPACITY as u64 + 10).map(event).collect();
        bus.publish(&many).await.unwrap();
        let mut last = 0;
        let mut resumed = 0;
        while let Ok(item) = feed.try_recv() {
            match item {
                FeedItem::Event(e) => last = e.rv,
                FeedItem::Resumed => resumed += 1,
            }
        }
        assert_eq!(resumed, 1, "only the initial Resumed so far");
        assert_eq!(last, FEED_CAPACITY as u64 - 1);
        bus.publish(&[event(FEED_CAPACITY as u64 + 11)])
            .await
            .unwrap();
        assert!(matches!(feed.recv().await, Some(FeedItem::Resumed)));
        assert!(
            matches!(feed.recv().await, Some(FeedItem::Event(e)) if e.rv == FEED_CAPACITY as u64 + 11)
        );
    }

    #[tokio::test]
    async fn waiting_duplicates_coalesce() {
        let bus = LocalBus::new();
        let q = bus.queue("q");
        for key in ["a", "b", "a", "a"] {
            q.enqueue(key).await.unwrap();
        }
        let a = q.next().await.unwrap();
        let b = q.next().await.unwrap();
        assert_eq!((a.key(), b.key()), ("a", "b"));
        a.done();
        b.done();
        let none = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(none.is_err(), "nothing left");
    }

    #[tokio::test]
    async fn an_active_key_is_not_handed_out_twice() {
        let bus = LocalBus::new();
        let q = bus.queue("q");
        q.enqueue("a").await.unwrap();
        let first = q.next().await.unwrap();
        q.enqueue("a").await.unwrap();
        q.enqueue("a").await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(blocked.is_err(), "a is active");
        first.done();
        let second = q.next().await.unwrap();
        assert_eq!(second.key(), "a");
        second.done();
        let none = tokio::time::timeout(Duration::from_millis(50), q.next()).await;
        assert!(none.is_err(), "the two re-adds were one");
    }

    #[tokio::test]
    async fn abandoned_and_retried_work_comes_back() {
        let bus = LocalBus::new();
        let q = bus.queue("q");
        q.enqueue("a").await.unwrap();
        drop(q.next().await.unwrap());
        let again = q.next().await.unwrap();
        assert_eq!(again.key(), "a");
        let t = tokio::time::Instant::now();
        again.retry(Duration::from_millis(100));
        let later = q.next().await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(100));
        later.done();
        q.enqueue_after("b", Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(q.next().await.unwrap().key(), "b");
    }
}
