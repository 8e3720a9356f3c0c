//! Group commit. One task owns SQLite's write connection: it takes every write waiting in
//! its queue (up to [`MAX_BATCH`]), runs them in one transaction and commits once, so
//! concurrent writers share one `fsync`. Each write checks its preconditions before
//! writing anything, so a write that fails (exists, stale, missing) leaves nothing to undo
//! and the others in its batch still commit; a database error fails the whole batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::{EventType, ObjectKey, OutboxState, Result, StoreError};

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 256;

/// A write.
pub(super) enum Op {
    Create {
        /// The namespace must exist and not be terminating.
        in_namespace: bool,
        key: ObjectKey,
        data: String,
        sealed: Option<Vec<u8>>,
        labels: BTreeMap<String, String>,
    },
    Update {
        key: ObjectKey,
        data: String,
        sealed: Option<Vec<u8>>,
        labels: BTreeMap<String, String>,
        expected: u64,
    },
    Delete {
        key: ObjectKey,
        expected: Option<u64>,
    },
    /// Every event up to this resourceVersion is published.
    MarkPublished(u64),
    /// Removes published events created before `cutoff_ms` or beyond the newest `max_events`.
    Compact { cutoff_ms: i64, max_events: u64 },
    /// Replaces sealed values: objects `(id, rv it must still have, value)` and events
    /// `(rv, value)`. Does not change any resourceVersion.
    Reseal {
        objects: Vec<(i64, i64, Vec<u8>)>,
        events: Vec<(i64, Vec<u8>)>,
    },
}

/// What a committed write did.
pub(super) enum Done {
    /// Created or updated at this resourceVersion.
    Written(u64),
    /// Deleted at this resourceVersion; the object's last stored form.
    Deleted {
        rv: u64,
        data: String,
        sealed: Option<Vec<u8>>,
    },
    /// The relay's position after an outbox operation.
    Outbox(OutboxState),
    /// Rows resealed: objects, events.
    Resealed(u64, u64),
}

/// Events removed by one compaction at most, so that it never holds up writers for long.
const COMPACT_CHUNK: i64 = 10_000;

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// The handle writers use.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Whether the last commit (or probe) failed and none has succeeded since.
    failing: Arc<AtomicBool>,
}

/// How often a failing writer probes whether it can write again.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Writer {
    /// Starts the writer task on `conn` (opened with `opts`, with which it reconnects);
    /// `rv` holds the last committed resourceVersion.
    pub(super) fn spawn(
        conn: SqliteConnection,
        opts: SqliteConnectOptions,
        rv: Arc<AtomicU64>,
        written: Arc<Notify>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let failing = Arc::new(AtomicBool::new(false));
        let task = Task {
            conn: Some(conn),
            opts,
            committed: rv,
            written,
            failing: failing.clone(),
        };
        tokio::spawn(task.run(rx));
        Self { jobs: tx, failing }
    }

    /// Queues a write and waits for its commit.
    pub(super) async fn write(&self, op: Op) -> Result<Done> {
        let (reply, done) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::write_failed("the SQLite writer has stopped"))?;
        done.await
            .map_err(|_| StoreError::write_failed("the SQLite writer has stopped"))?
    }

    /// Whether writes fail now (until a commit or a probe succeeds again).
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// The writer task's state.
struct Task {
    /// `None` after a failure, until a new connection is made.
    conn: Option<SqliteConnection>,
    opts: SqliteConnectOptions,
    committed: Arc<AtomicU64>,
    written: Arc<Notify>,
    failing: Arc<AtomicBool>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            let first = if self.failing.load(Ordering::Acquire) {
                // While failing, probe now and then so that health comes back without a
                // write to show it.
                match tokio::time::timeout(PROBE_INTERVAL, rx.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) => return,
                    Err(_) => {
                        self.probe().await;
                        continue;
                    }
                }
            } else {
                match rx.recv().await {
                    Some(job) => job,
                    None => return,
                }
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.batch(jobs).await;
        }
    }

    /// The connection, made again after a failure.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(SqliteConnection::connect_with(&self.opts).await?);
        }
        Ok(self.conn.as_mut().expect("just made"))
    }

    /// Commits `ops` (none: a probe) on the connection, made again if needed. A failure
    /// marks the writer failing and drops the connection; a success ends that.
    async fn attempt(
        &mut self,
        ops: &[&Op],
        base: u64,
    ) -> Result<(Vec<Result<Done>>, u64), sqlx::Error> {
        let outcome = async { commit(self.connection().await?, ops, base).await }.await;
        match &outcome {
            Ok(_) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("SQLite writes work again");
                }
            }
            Err(_) => self.fail(),
        }
        outcome
    }

    async fn batch(&mut self, jobs: Vec<Job>) {
        let base = self.committed.load(Ordering::Acquire);
        let ops: Vec<&Op> = jobs.iter().map(|j| &j.op).collect();
        match self.attempt(&ops, base).await {
            Ok((results, last)) => {
                self.committed.store(last, Ordering::Release);
                self.written.notify_one();
                for (job, result) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::Chain(&e), writes = jobs.len(), "SQLite commit failed");
                let cause: crate::Cause = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::WriteFailed(cause.clone())));
                }
            }
        }
    }

    /// After a failed commit the connection may still be inside a transaction SQLite has
    /// rolled back itself (a full disk does that), where sqlx would refuse every later
    /// `BEGIN`: the next write starts on a new connection.
    fn fail(&mut self) {
        self.failing.store(true, Ordering::Release);
        self.conn = None;
    }

    /// A write that changes nothing but still needs the disk (it writes a WAL frame).
    async fn probe(&mut self) {
        let _ = self.attempt(&[], 0).await;
    }
}

/// Runs a batch in one transaction. The outer error aborts the batch; inner results are
/// per write.
///
/// With no operations, a probe: it rewrites the counter row as it is, which needs the disk
/// as any write does.
async fn commit(
    conn: &mut SqliteConnection,
    ops: &[&Op],
    base: u64,
) -> Result<(Vec<Result<Done>>, u64), sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so another holder of it (a backup, an
    // operator's sqlite3 shell) is waited for (busy_timeout) rather than failing the batch
    // when a deferred transaction would upgrade.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut rv = base;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(apply(&mut tx, op, &mut rv).await?);
    }
    if ops.is_empty() {
        sqlx::query("UPDATE counters SET value = value WHERE name = 'rv'")
            .execute(&mut *tx)
            .await?;
    } else if rv != base {
        sqlx::query("UPDATE counters SET value = ? WHERE name = 'rv'")
            .bind(rv as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((results, rv))
}

async fn find(
    tx: &mut SqliteConnection,
    key: &ObjectKey,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query("SELECT id, rv FROM objects WHERE cluster = ? AND resource = ? AND namespace = ? AND name = ?")
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|r| (r.get("id"), r.get("rv"))))
}

async fn labels_of(
    tx: &mut SqliteConnection,
    id: i64,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    Ok(
        sqlx::query_as::<_, (String, String)>("SELECT key, value FROM labels WHERE obj_id = ?")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect(),
    )
}

async fn insert_labels(
    tx: &mut SqliteConnection,
    id: i64,
    key: &ObjectKey,
    labels: &BTreeMap<String, String>,
) -> Result<(), sqlx::Error> {
    for (k, v) in labels {
        sqlx::query(
            "INSERT INTO labels (obj_id, cluster, resource, key, value) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(k)
        .bind(v)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One row of the outbox.
struct Outbox<'a> {
    rv: u64,
    key: &'a ObjectKey,
    kind: EventType,
    data: &'a str,
    sealed: Option<&'a [u8]>,
    labels: &'a BTreeMap<String, String>,
    prev: Option<&'a BTreeMap<String, String>>,
}

async fn insert_event(tx: &mut SqliteConnection, e: Outbox<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (rv, cluster, resource, namespace, name, type, data, sealed, labels, prev_labels, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.rv as i64)
    .bind(&e.key.cluster)
    .bind(&e.key.resource)
    .bind(&e.key.namespace)
    .bind(&e.key.name)
    .bind(e.kind.as_str())
    .bind(e.data)
    .bind(e.sealed)
    .bind(serde_json::to_string(e.labels).expect("labels serialise"))
    .bind(e.prev.map(|p| serde_json::to_string(p).expect("labels serialise")))
    .bind(jiff::Timestamp::now().as_millisecond())
    .execute(tx)
    .await?;
    Ok(())
}

/// Runs one write inside the batch's transaction. The outer error aborts the batch; the
/// inner one is this write's own (a precondition that does not hold), which writes nothing.
async fn apply(
    tx: &mut SqliteConnection,
    op: &Op,
    rv: &mut u64,
) -> Result<Result<Done>, sqlx::Error> {
    match op {
        Op::Create {
            in_namespace,
            key,
            data,
            sealed,
            labels,
        } => create(tx, rv, *in_namespace, key, data, sealed.as_deref(), labels).await,
        Op::Update {
            key,
            data,
            sealed,
            labels,
            expected,
        } => update(tx, rv, key, data, sealed.as_deref(), labels, *expected).await,
        Op::Delete { key, expected } => delete(tx, rv, key, *expected).await,
        Op::MarkPublished(published) => mark_published(tx, *published).await,
        Op::Reseal { objects, events } => reseal(tx, objects, events).await,
        Op::Compact {
            cutoff_ms,
            max_events,
        } => compact(tx, *rv, *cutoff_ms, *max_events).await,
    }
}

async fn create(
    tx: &mut SqliteConnection,
    rv: &mut u64,
    in_namespace: bool,
    key: &ObjectKey,
    data: &str,
    sealed: Option<&[u8]>,
    labels: &BTreeMap<String, String>,
) -> Result<Result<Done>, sqlx::Error> {
    if in_namespace {
        let terminating: Option<bool> = sqlx::query_scalar(
            "SELECT json_extract(data, '$.metadata.deletionTimestamp') IS NOT NULL FROM objects \
             WHERE cluster = ? AND resource = 'namespaces' AND namespace = '' AND name = ?",
        )
        .bind(&key.cluster)
        .bind(&key.namespace)
        .fetch_optional(&mut *tx)
        .await?;
        match terminating {
            None => return Ok(Err(StoreError::NamespaceNotFound)),
            Some(true) => return Ok(Err(StoreError::NamespaceTerminating)),
            Some(false) => {}
        }
    }
    if find(tx, key).await?.is_some() {
        return Ok(Err(StoreError::AlreadyExists));
    }
    *rv += 1;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO objects (cluster, resource, namespace, name, rv, data, sealed) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&key.cluster)
    .bind(&key.resource)
    .bind(&key.namespace)
    .bind(&key.name)
    .bind(*rv as i64)
    .bind(data)
    .bind(sealed)
    .fetch_one(&mut *tx)
    .await?;
    insert_labels(tx, id, key, labels).await?;
    let event = Outbox {
        rv: *rv,
        key,
        kind: EventType::Added,
        data,
        sealed,
        labels,
        prev: None,
    };
    insert_event(tx, event).await?;
    Ok(Ok(Done::Written(*rv)))
}

async fn update(
    tx: &mut SqliteConnection,
    rv: &mut u64,
    key: &ObjectKey,
    data: &str,
    sealed: Option<&[u8]>,
    labels: &BTreeMap<String, String>,
    expected: u64,
) -> Result<Result<Done>, sqlx::Error> {
    let Some((id, current)) = find(tx, key).await? else {
        return Ok(Err(StoreError::NotFound));
    };
    if current as u64 != expected {
        return Ok(Err(StoreError::Conflict));
    }
    let prev = labels_of(tx, id).await?;
    *rv += 1;
    sqlx::query("UPDATE objects SET rv = ?, data = ?, sealed = ? WHERE id = ?")
        .bind(*rv as i64)
        .bind(data)
        .bind(sealed)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if prev != *labels {
        sqlx::query("DELETE FROM labels WHERE obj_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_labels(tx, id, key, labels).await?;
    }
    let event = Outbox {
        rv: *rv,
        key,
        kind: EventType::Modified,
        data,
        sealed,
        labels,
        prev: Some(&prev),
    };
    insert_event(tx, event).await?;
    Ok(Ok(Done::Written(*rv)))
}

async fn delete(
    tx: &mut SqliteConnection,
    rv: &mut u64,
    key: &ObjectKey,
    expected: Option<u64>,
) -> Result<Result<Done>, sqlx::Error> {
    let Some((id, current)) = find(tx, key).await? else {
        return Ok(Err(StoreError::NotFound));
    };
    if expected.is_some_and(|e| e != current as u64) {
        return Ok(Err(StoreError::Conflict));
    }
    let row = sqlx::query("SELECT data, sealed FROM objects WHERE id = ?")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let data: String = row.get("data");
    let sealed: Option<Vec<u8>> = row.get("sealed");
    let labels = labels_of(tx, id).await?;
    *rv += 1;
    sqlx::query("DELETE FROM objects WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM labels WHERE obj_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let event = Outbox {
        rv: *rv,
        key,
        kind: EventType::Deleted,
        data: &data,
        sealed: sealed.as_deref(),
        labels: &labels,
        prev: None,
    };
    insert_event(tx, event).await?;
    Ok(Ok(Done::Deleted {
        rv: *rv,
        data,
        sealed,
    }))
}

async fn mark_published(
    tx: &mut SqliteConnection,
    published: u64,
) -> Result<Result<Done>, sqlx::Error> {
    sqlx::query("UPDATE outbox_state SET published = max(published, ?) WHERE id = 1")
        .bind(published as i64)
        .execute(&mut *tx)
        .await?;
    Ok(Ok(Done::Outbox(outbox_state(tx).await?)))
}

async fn reseal(
    tx: &mut SqliteConnection,
    objects: &[(i64, i64, Vec<u8>)],
    events: &[(i64, Vec<u8>)],
) -> Result<Result<Done>, sqlx::Error> {
    let mut done = (0, 0);
    for (id, expected, sealed) in objects {
        let r = sqlx::query("UPDATE objects SET sealed = ? WHERE id = ? AND rv = ?")
            .bind(sealed)
            .bind(id)
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        done.0 += r.rows_affected();
    }
    for (rv, sealed) in events {
        let r = sqlx::query("UPDATE events SET sealed = ? WHERE rv = ?")
            .bind(sealed)
            .bind(rv)
            .execute(&mut *tx)
            .await?;
        done.1 += r.rows_affected();
    }
    Ok(Ok(Done::Resealed(done.0, done.1)))
}

async fn compact(
    tx: &mut SqliteConnection,
    rv: u64,
    cutoff_ms: i64,
    max_events: u64,
) -> Result<Result<Done>, sqlx::Error> {
    let state = outbox_state(tx).await?;
    // resourceVersions are gapless here, so the newest rv less `max_events` is the
    // count limit; the age limit is the last old event of the oldest chunk.
    let by_count = (rv as i64).saturating_sub(max_events as i64);
    let by_age: Option<i64> = sqlx::query_scalar(
        "SELECT max(rv) FROM (SELECT rv, created_at FROM events ORDER BY rv LIMIT ?) \
         WHERE created_at < ?",
    )
    .bind(COMPACT_CHUNK)
    .bind(cutoff_ms)
    .fetch_one(&mut *tx)
    .await?;
    let oldest: Option<i64> = sqlx::query_scalar("SELECT min(rv) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    let Some(oldest) = oldest else {
        return Ok(Ok(Done::Outbox(state)));
    };
    let floor = by_count
        .max(by_age.unwrap_or(0))
        .min(state.published as i64)
        .min(oldest + COMPACT_CHUNK - 1);
    if floor < oldest {
        return Ok(Ok(Done::Outbox(state)));
    }
    sqlx::query("DELETE FROM events WHERE rv <= ?")
        .bind(floor)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE outbox_state SET compacted = max(compacted, ?) WHERE id = 1")
        .bind(floor)
        .execute(&mut *tx)
        .await?;
    Ok(Ok(Done::Outbox(outbox_state(tx).await?)))
}

/// Reads the relay's position.
pub(super) async fn outbox_state(tx: &mut SqliteConnection) -> Result<OutboxState, sqlx::Error> {
    let (published, compacted): (i64, i64) =
        sqlx::query_as("SELECT published, compacted FROM outbox_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
    Ok(OutboxState {
        published: published as u64,
        compacted: compacted as u64,
    })
}
