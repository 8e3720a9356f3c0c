//! Events expire, as kube-apiserver expires them (`--event-ttl`, one hour by default): an
//! Event not seen again for that long is deleted, so that recorders never make the store
//! grow without bound. Every API server sweeps the logical clusters it serves, once a
//! minute (or a quarter of the TTL, if shorter); with several servers on one database,
//! a deletion another already made is simply skipped.

use std::sync::Weak;
use std::time::Duration;

use syncsets_store::{ListQuery, ObjectKey, Store, StoreError};

use crate::AppState;

/// Events read at once while sweeping.
const PAGE: usize = 500;

/// Sweeps expired Events until the server is gone.
pub(crate) async fn run(state: Weak<AppState>, ttl: Duration) {
    let every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let Some(state) = state.upgrade() else { return };
        let clusters: Vec<String> = state.ready_clusters.lock().await.iter().cloned().collect();
        for cluster in clusters {
            match sweep(state.store.as_ref(), &cluster, ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(cluster, expired = n, "expired Events deleted"),
                Err(e) => {
                    tracing::warn!(cluster, error = %syncsets_store::Chain(&e), "expiring Events failed")
                }
            }
        }
    }
}

/// Deletes the Events of `cluster` last seen more than `ttl` ago; returns how many.
pub(crate) async fn sweep(
    store: &dyn Store,
    cluster: &str,
    ttl: Duration,
) -> Result<usize, StoreError> {
    let now = jiff::Timestamp::now();
    let oldest = now - jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    let mut query = ListQuery {
        cluster: cluster.to_string(),
        resource: "events".into(),
        limit: Some(PAGE),
        ..ListQuery::default()
    };
    let mut deleted = 0;
    loop {
        let page = store.list(&query).await?;
        for raw in &page.items {
            let event = match raw.parse() {
                Ok(event) => event,
                Err(e) => {
                    let e = syncsets_store::Chain(&e);
                    tracing::warn!(cluster, namespace = raw.namespace, name = raw.name, error = %e, "unreadable Event left");
                    continue;
                }
            };
            if last_seen(&event.object).is_some_and(|t| t < oldest) {
                let key = ObjectKey::new(cluster, "events", &raw.namespace, &raw.name);
                match store.delete(&key, Some(raw.rv)).await {
                    Ok(_) => deleted += 1,
                    // Seen again meanwhile, or deleted by another server.
                    Err(StoreError::Conflict | StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match page.items.last() {
            Some(last) if page.more => {
                query.after = Some((last.namespace.clone(), last.name.clone()))
            }
            _ => return Ok(deleted),
        }
    }
}

/// When an Event last happened: `lastTimestamp`, `series.lastObservedTime`, `eventTime`,
/// else when it was created.
fn last_seen(event: &serde_json::Value) -> Option<jiff::Timestamp> {
    [
        &event["lastTimestamp"],
        &event["series"]["lastObservedTime"],
        &event["eventTime"],
        &event["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .filter_map(|t| t.as_str()?.parse().ok())
    .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncsets_store::MemoryStore;

    #[tokio::test]
    async fn events_not_seen_within_the_ttl_are_deleted_and_others_kept() {
        let store = MemoryStore::new();
        let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
        let recent = jiff::Timestamp::now().to_string();
        let events = [
            (
                "old",
                json!({"lastTimestamp": old, "metadata": {"creationTimestamp": old}}),
            ),
            (
                "seen-again",
                json!({"lastTimestamp": recent, "metadata": {"creationTimestamp": old}}),
            ),
            ("new-style", json!({"eventTime": recent})),
            ("old-style", json!({"eventTime": old})),
        ];
        for (name, body) in &events {
            let key = ObjectKey::new("", "events", "ns", name);
            store.create(&key, body, false).await.unwrap();
        }
        assert_eq!(
            sweep(&store, "", Duration::from_secs(3600)).await.unwrap(),
            2
        );
        let left = store
            .list(&ListQuery {
                resource: "events".into(),
                ..ListQuery::default()
            })
            .await
            .unwrap();
        let names: Vec<&str> = left.items.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["new-style", "seen-again"]);
    }
}
