//! Following every change exactly once, in resourceVersion order: the bus feed carries
//! events as they are published (at least once), and after an interruption
//! ([`FeedItem::Resumed`]) the follower reads what it may have missed from the store's
//! outbox. Both the API server's watch hub and the controllers' cache follow this way.

use std::sync::Arc;
use std::time::Duration;

use syncsets_retry::Backoff;
use syncsets_store::{OutboxEvent, Store};
use tokio::sync::mpsc;

use crate::FeedItem;

/// Events read from the outbox at once when catching up.
const CATCH_UP_BATCH: usize = 1024;

/// What a follower hands on.
#[derive(Debug)]
pub enum Followed<'a> {
    /// The next change (its resourceVersion is greater than every one handed on before).
    Event(&'a OutboxEvent),
    /// Changes after `from` were compacted away before the follower read them: whoever
    /// keeps state from events must rebuild it from a list.
    Gap {
        /// The last resourceVersion handed on.
        from: u64,
    },
}

/// Reads `feed` until it closes, handing every change after `start` to `on` once, in
/// order. Returns the last resourceVersion handed on.
pub async fn follow(
    store: Arc<dyn Store>,
    mut feed: mpsc::Receiver<FeedItem>,
    start: u64,
    mut on: impl FnMut(Followed<'_>),
) -> u64 {
    let mut last = start;
    while let Some(item) = feed.recv().await {
        match item {
            FeedItem::Event(event) => {
                if event.rv > last {
                    last = event.rv;
                    on(Followed::Event(&event));
                }
            }
            FeedItem::Resumed => last = catch_up(store.as_ref(), last, &mut on).await,
        }
    }
    last
}

/// Hands on every outbox event after `last` (up to the store's watermark); returns the new
/// position. Retries a failing store until it answers.
pub async fn catch_up(store: &dyn Store, mut last: u64, on: &mut impl FnMut(Followed<'_>)) -> u64 {
    let mut pause = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut checked_gap = false;
    loop {
        if !checked_gap {
            match store.outbox_state().await {
                Ok(state) => {
                    checked_gap = true;
                    if state.compacted > last {
                        on(Followed::Gap { from: last });
                        last = state.compacted;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "reading the outbox state failed; retrying");
                    pause.wait().await;
                    continue;
                }
            }
        }
        match store.outbox_after(last, CATCH_UP_BATCH).await {
            Ok(batch) => {
                for event in &batch {
                    if event.rv > last {
                        last = event.rv;
                        on(Followed::Event(event));
                    }
                }
                if batch.len() < CATCH_UP_BATCH {
                    return last;
                }
            }
            Err(e) => {
                tracing::warn!(error = %syncsets_store::Chain(&e), "catching up from the outbox failed; retrying");
                pause.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{Relay, RelayConfig};
    use crate::{Bus, LocalBus};
    use serde_json::json;
    use syncsets_store::{MemoryStore, ObjectKey};

    async fn write(store: &dyn Store, name: &str) -> u64 {
        let key = ObjectKey::new("", "configmaps", "ns", name);
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}});
        store.create(&key, &obj, false).await.unwrap().rv
    }

    #[tokio::test]
    async fn hands_on_missed_and_new_events_once_in_order() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let bus = Arc::new(LocalBus::new());
        // Written before anyone follows: only the outbox has them.
        let mut expected = vec![
            write(store.as_ref(), "a").await,
            write(store.as_ref(), "b").await,
        ];
        let feed = bus.subscribe();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (store, seen) = (store.clone(), seen.clone());
            async move {
                follow(store, feed, 0, |f| match f {
                    Followed::Event(e) => seen.lock().unwrap().push(e.rv),
                    Followed::Gap { .. } => panic!("nothing was compacted"),
                })
                .await
            }
        });
        let _relay = Relay::spawn(store.clone(), bus.clone(), RelayConfig::default());
        for name in ["c", "d", "e"] {
            expected.push(write(store.as_ref(), name).await);
        }
        for _ in 0..200 {
            if seen.lock().unwrap().len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*seen.lock().unwrap(), expected);
        task.abort();
    }

    #[tokio::test]
    async fn a_compacted_gap_is_reported() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for name in ["a", "b", "c"] {
            write(store.as_ref(), name).await;
        }
        let last = store.watermark().await.unwrap();
        store.mark_published(last).await.unwrap();
        store
            .compact(syncsets_store::Retention {
                window: Duration::ZERO,
                max_events: 0,
            })
            .await
            .unwrap();
        let mut gaps = Vec::new();
        let position = catch_up(store.as_ref(), 0, &mut |f| {
            if let Followed::Gap { from } = f {
                gaps.push(from);
            }
        })
        .await;
        assert_eq!(gaps, vec![0]);
        assert_eq!(position, last);
    }
}
