//! Every store [`open`](crate::open)s measured: each operation's latency and its failures,
//! recorded through the `metrics` facade (served by whichever exporter the process installed).
//!
//! - `syncsets_store_operation_duration_seconds{backend, operation}`: a histogram; a write
//!   is one transaction (SQLite batches several writers' transactions into one commit).
//! - `syncsets_store_operation_errors_total{backend, operation}`: operations that failed —
//!   the database, the disk, a seal — not those that answered as asked (not found, already
//!   exists, a resourceVersion conflict, a missing namespace: the API's 404s, 409s and 422s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Counter, Histogram, Label};
use serde_json::Value;

use crate::{
    ChangeEvent, ListPage, ListQuery, ObjectKey, OutboxEvent, OutboxState, PageSender, Resealed,
    Result, Retention, Role, Store, StoreError, Stored,
};

/// The operations measured, each with its own series.
#[derive(Clone, Copy)]
enum Op {
    Get,
    GetMany,
    List,
    Create,
    Update,
    Delete,
    OutboxAfter,
    OutboxState,
    MarkPublished,
    Compact,
    Watermark,
}

impl Op {
    const ALL: [Op; 11] = [
        Op::Get,
        Op::GetMany,
        Op::List,
        Op::Create,
        Op::Update,
        Op::Delete,
        Op::OutboxAfter,
        Op::OutboxState,
        Op::MarkPublished,
        Op::Compact,
        Op::Watermark,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetMany => "get_many",
            Op::List => "list",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::OutboxAfter => "outbox_read",
            Op::OutboxState => "outbox_state",
            Op::MarkPublished => "mark_published",
            Op::Compact => "compact",
            Op::Watermark => "watermark",
        }
    }
}

/// One operation's series, registered once.
struct Series {
    duration: Histogram,
    errors: Counter,
}

/// A store whose operations are measured.
pub struct Measured {
    inner: Arc<dyn Store>,
    series: Vec<Series>,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// Describes the store's metrics (their HELP).
fn describe() {
    metrics::describe_histogram!(
        "syncsets_store_operation_duration_seconds",
        metrics::Unit::Seconds,
        "How long store operations took, by backend and operation (a write is one transaction)."
    );
    metrics::describe_counter!(
        "syncsets_store_operation_errors_total",
        "Store operations that failed (database, disk, encryption), by backend and operation; not found, conflicts and existing objects are answers, not errors."
    );
}

impl Measured {
    /// Measures `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        describe();
        let backend = inner.backend();
        let series = Op::ALL
            .iter()
            .map(|op| {
                let labels = || {
                    vec![
                        Label::new("backend", backend),
                        Label::new("operation", op.name()),
                    ]
                };
                Series {
                    duration: metrics::histogram!(
                        "syncsets_store_operation_duration_seconds",
                        labels()
                    ),
                    errors: metrics::counter!("syncsets_store_operation_errors_total", labels()),
                }
            })
            .collect();
        Self { inner, series }
    }

    async fn measure<T>(
        &self,
        op: Op,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = work.await;
        let series = &self.series[op as usize];
        series.duration.record(started.elapsed());
        if let Err(e) = &result
            && failed(e)
        {
            series.errors.increment(1);
        }
        result
    }
}

/// Whether `e` is a failure of the store rather than its answer.
fn failed(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::AlreadyExists
            | StoreError::NotFound
            | StoreError::NamespaceNotFound
            | StoreError::NamespaceTerminating
            | StoreError::Conflict
    )
}

#[async_trait]
impl Store for Measured {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>> {
        self.measure(Op::Get, self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>> {
        self.measure(Op::GetMany, self.inner.get_many(keys)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.measure(Op::List, self.inner.list(query)).await
    }

    async fn list_pages(&self, query: &ListQuery, page: usize, pages: &PageSender) {
        self.inner.list_pages(query, page, pages).await;
    }

    async fn create(&self, key: &ObjectKey, object: &Value, in_namespace: bool) -> Result<Stored> {
        self.measure(Op::Create, self.inner.create(key, object, in_namespace))
            .await
    }

    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored> {
        self.measure(Op::Update, self.inner.update(key, object, expected_rv))
            .await
    }

    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored> {
        self.measure(Op::Delete, self.inner.delete(key, expected_rv))
            .await
    }

    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        self.measure(Op::OutboxAfter, self.inner.outbox_after(after, limit))
            .await
    }

    fn open_event(&self, event: &OutboxEvent) -> Result<ChangeEvent> {
        self.inner.open_event(event)
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        self.measure(Op::OutboxAfter, self.inner.events_after(after, limit))
            .await
    }

    async fn outbox_state(&self) -> Result<OutboxState> {
        self.measure(Op::OutboxState, self.inner.outbox_state())
            .await
    }

    async fn mark_published(&self, rv: u64) -> Result<()> {
        self.measure(Op::MarkPublished, self.inner.mark_published(rv))
            .await
    }

    async fn compact(&self, retention: Retention) -> Result<OutboxState> {
        self.measure(Op::Compact, self.inner.compact(retention))
            .await
    }

    async fn lead(&self, role: Role) -> Result<()> {
        self.inner.lead(role).await
    }

    async fn still_leading(&self, role: Role) -> bool {
        self.inner.still_leading(role).await
    }

    fn writes(&self) -> &tokio::sync::Notify {
        self.inner.writes()
    }

    async fn watermark(&self) -> Result<u64> {
        self.measure(Op::Watermark, self.inner.watermark()).await
    }

    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn reseal(&self) -> Result<Resealed> {
        self.inner.reseal().await
    }

    async fn sealed_keys(&self) -> Result<BTreeMap<String, u64>> {
        self.inner.sealed_keys().await
    }
}
