//! PostgreSQL: objects as JSONB, labels in a GIN-indexed JSONB column, resourceVersions from
//! a sequence. Each write is one statement (object row + outbox row), so it costs one round
//! trip and needs no explicit transaction; concurrent creates share statements (`batch`).
//!
//! Sequence values can commit out of order and abandoned ones leave gaps, so "everything up
//! to rv N is settled" is established by [`PostgresStore::settle`]: read the sequence, then
//! take a fresh transaction id X, and wait until no transaction with an id below X runs.
//! Writers take their transaction id before their resourceVersion (`syncsets_next_rv()`),
//! so any holder of a version up to N has an id below X.

mod batch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use syncsets_retry::Backoff;
use syncsets_types::selector::Operator;
use tokio::sync::Mutex;

use crate::{
    ChangeEvent, EventType, Keyring, ListPage, ListQuery, MetaField, ObjectKey, OutboxEvent,
    OutboxState, PageSender, Paging, RESEAL_PAGE, Resealed, Result, Retention, Role, Store,
    StoreError, Stored, count_key, labels_of, list_page, placed, reseal_value, row_key, seal,
    unseal,
};

/// Longest a request waits for a database connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `/readyz` waits for the database's answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a computed watermark is reused by lists.
const WATERMARK_TTL: Duration = Duration::from_millis(20);

/// Events removed by one compaction at most.
const COMPACT_CHUNK: i64 = 10_000;

/// The advisory lock held by the process leading a role.
fn advisory_lock(role: Role) -> i64 {
    match role {
        Role::Relay => 0x5359_4e43_5345_5453,      // "SYNCSETS"
        Role::Controller => 0x5359_4e43_4354_524c, // "SYNCCTRL"
    }
}

/// PostgreSQL-backed store.
pub struct PostgresStore {
    pool: PgPool,
    keyring: Option<Arc<Keyring>>,
    watermark: AtomicU64,
    settled_at: Mutex<Option<Instant>>,
    stats: Arc<Statistics>,
    creates: batch::Batcher,
    /// The connections holding advisory locks of the roles this process leads.
    leases: Mutex<HashMap<Role, sqlx::PgConnection>>,
    written: tokio::sync::Notify,
}

/// Keeps planner statistics fresh. Right after a bulk load PostgreSQL knows nothing of the
/// new rows and may answer a label selector by scanning a whole kind instead of using the
/// GIN index; autovacuum only catches up after a minute. So the store runs `ANALYZE`
/// itself once the writes since the last one exceed a tenth of the table (at least 1,000).
#[derive(Debug)]
struct Statistics {
    writes: AtomicU64,
    threshold: AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

impl Statistics {
    fn note(self: &Arc<Self>, pool: &PgPool, writes: u64) {
        let total = self.writes.fetch_add(writes, Ordering::AcqRel) + writes;
        if total < self.threshold.load(Ordering::Acquire)
            || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.writes.store(0, Ordering::Release);
        let (me, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            match sqlx::query("ANALYZE objects").execute(&pool).await {
                Ok(_) => {
                    let rows: Option<f32> = sqlx::query_scalar(
                        "SELECT reltuples FROM pg_class WHERE relname = 'objects'",
                    )
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
                    let tenth = rows.map_or(0, |r| (r.max(0.0) / 10.0) as u64);
                    me.threshold.store(tenth.max(1000), Ordering::Release);
                }
                Err(e) => tracing::warn!(error = %crate::Chain(&e), "ANALYZE objects failed"),
            }
            me.running.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("watermark", &self.watermark)
            .finish()
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn labels_from(v: Option<Value>) -> Option<BTreeMap<String, String>> {
    v.and_then(|v| v.as_object().cloned()).map(|m| {
        m.into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect()
    })
}

impl PostgresStore {
    /// Connects and runs migrations.
    pub async fn open(url: &str, keyring: Option<Arc<Keyring>>) -> Result<Self> {
        let opts: PgConnectOptions = url.parse()?;
        // Connections are checked by every query anyway: no extra round trip per checkout.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            // Bounded well inside a request's deadline: with the database unreachable a
            // request is answered 503 (Retry-After) in seconds instead of queueing.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Self {
            creates: batch::Batcher::spawn(pool.clone()),
            leases: Mutex::new(HashMap::new()),
            written: tokio::sync::Notify::new(),
            pool,
            keyring,
            watermark: AtomicU64::new(0),
            settled_at: Mutex::new(None),
            stats: Arc::new(Statistics {
                writes: AtomicU64::new(0),
                threshold: AtomicU64::new(1000),
                running: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        store.settle().await?;
        Ok(store)
    }

    /// Establishes a fresh watermark: every resourceVersion up to it is committed (and
    /// visible to every later snapshot) or abandoned.
    pub async fn settle(&self) -> Result<u64> {
        let known = self.watermark.load(Ordering::Acquire);
        let (last, called): (i64, bool) =
            sqlx::query_as("SELECT last_value, is_called FROM rv_seq")
                .fetch_one(&self.pool)
                .await?;
        if !called || last as u64 <= known {
            // Nothing handed out since the last settle point.
            return Ok(known);
        }
        let (last, _, xid): (i64, bool, String) =
            sqlx::query_as("SELECT last, called, xid FROM syncsets_settle_point()")
                .fetch_one(&self.pool)
                .await?;
        let mut pause = Backoff::new(Duration::from_micros(200), Duration::from_millis(50));
        loop {
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE x < $1::xid8",
            )
            .bind(&xid)
            .fetch_one(&self.pool)
            .await?;
            if running == 0 {
                break;
            }
            pause.wait().await;
        }
        self.watermark.fetch_max(last as u64, Ordering::AcqRel);
        Ok(self.watermark.load(Ordering::Acquire))
    }

    /// One page of a list, read through `conn` (the pool, or a transaction's connection);
    /// `watermark`: the resourceVersion it reflects.
    async fn read_page<'c>(
        &self,
        conn: impl sqlx::PgExecutor<'c>,
        q: &ListQuery,
        watermark: u64,
    ) -> Result<ListPage> {
        let (sql, p) = list_statement(q);
        let rows = p
            .bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_all(conn)
            .await?;
        list_page(self.keyring.as_deref(), q, rows, watermark)
    }

    async fn recent_watermark(&self) -> Result<u64> {
        let mut at = self.settled_at.lock().await;
        if at.is_some_and(|t| t.elapsed() < WATERMARK_TTL) {
            return Ok(self.watermark.load(Ordering::Acquire));
        }
        let w = self.settle().await?;
        *at = Some(Instant::now());
        Ok(w)
    }

    /// The query plan of a list (`EXPLAIN`), for tests and diagnostics.
    pub async fn explain_list(&self, q: &ListQuery) -> Result<String> {
        let (sql, p) = list_statement(q);
        let rows: Vec<String> = p
            .bind_all(sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        Ok(rows.join("\n"))
    }

    fn note_writes(&self, writes: u64) {
        self.stats.note(&self.pool, writes);
        self.written.notify_one();
    }

    fn decode(
        &self,
        key: ObjectKey,
        rv: i64,
        data: Value,
        sealed: Option<Vec<u8>>,
    ) -> Result<Stored> {
        let object = unseal(
            self.keyring.as_deref(),
            &key,
            data,
            sealed.as_deref(),
            rv as u64,
        )?;
        Ok(Stored {
            object,
            rv: rv as u64,
        })
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        let found = by_key("SELECT rv FROM objects", key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }
}

/// `select` of the one object `key` names.
fn by_key<'q>(
    select: &str,
    key: &'q ObjectKey,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let sql =
        format!("{select} WHERE cluster = $1 AND resource = $2 AND namespace = $3 AND name = $4");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
}

/// Query parameters collected while building SQL; each addition yields its placeholder.
#[derive(Default)]
struct Params(Vec<Param>);

enum Param {
    Text(String),
    Json(Value),
    Int(i64),
}

impl Params {
    fn add(&mut self, p: Param) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.add(Param::Text(s.to_string()))
    }

    fn json(&mut self, v: Value) -> String {
        self.add(Param::Json(v))
    }

    fn int(&mut self, i: i64) -> String {
        self.add(Param::Int(i))
    }

    fn bind_all<'q>(
        self,
        mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        for p in self.0 {
            query = match p {
                Param::Text(s) => query.bind(s),
                Param::Json(v) => query.bind(v),
                Param::Int(i) => query.bind(i),
            };
        }
        query
    }
}

/// The SQL of a list and its parameters.
fn list_statement(q: &ListQuery) -> (String, Params) {
    let mut p = Params::default();
    let mut sql = format!(
        "SELECT rv, data::text AS data, sealed, namespace, name FROM objects WHERE cluster = {} AND resource = {}",
        p.text(&q.cluster),
        p.text(&q.resource)
    );
    if let Some(ns) = &q.namespace {
        sql += &format!(" AND namespace = {}", p.text(ns));
    }
    if let Some((ns, name)) = &q.after {
        sql += &format!(
            " AND (namespace, name) > ({}, {})",
            p.text(ns),
            p.text(name)
        );
    }
    for f in &q.fields {
        let col = match f.field {
            MetaField::Name => "name",
            MetaField::Namespace => "namespace",
        };
        let op = if f.negated { "<>" } else { "=" };
        sql += &format!(" AND {col} {op} {}", p.text(&f.value));
    }
    // Single-value equalities fold into one containment document for the GIN index.
    let equal: Map<String, Value> = q
        .labels
        .requirements
        .iter()
        .filter(|r| r.op == Operator::In && r.values.len() == 1)
        .map(|r| (r.key.clone(), json!(r.values[0])))
        .collect();
    if !equal.is_empty() {
        sql += &format!(" AND labels @> {}", p.json(Value::Object(equal)));
    }
    for r in &q.labels.requirements {
        match r.op {
            Operator::In if r.values.len() == 1 => {}
            Operator::In | Operator::NotIn => {
                let any: Vec<String> = r
                    .values
                    .iter()
                    .map(|v| format!("labels @> {}", p.json(json!({&r.key: v}))))
                    .collect();
                let not = if r.op == Operator::NotIn { "NOT " } else { "" };
                sql += &format!(" AND {not}({})", any.join(" OR "));
            }
            Operator::Exists => sql += &format!(" AND labels ? {}", p.text(&r.key)),
            Operator::DoesNotExist => sql += &format!(" AND NOT (labels ? {})", p.text(&r.key)),
            Operator::GreaterThan | Operator::LessThan => {
                let cmp = if r.op == Operator::GreaterThan {
                    ">"
                } else {
                    "<"
                };
                let k = p.text(&r.key);
                let bound = p.int(r.bound().unwrap_or_default());
                sql += &format!(
                    " AND labels ? {k} AND CASE WHEN labels->>{k} ~ '^-?[0-9]{{1,18}}$' \
                         THEN (labels->>{k})::bigint {cmp} {bound} ELSE false END"
                );
            }
        }
    }
    if q.labels.matches_nothing {
        sql += " AND false";
    }
    sql += " ORDER BY namespace, name";
    if let Some(limit) = q.limit {
        sql += &format!(" LIMIT {}", limit + 1);
    }
    (sql, p)
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>> {
        let row = by_key("SELECT rv, data, sealed FROM objects", key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.decode(key.clone(), r.get("rv"), r.get("data"), r.get("sealed")))
            .transpose()
    }

    async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>> {
        crate::check_get_many(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let column = |f: fn(&ObjectKey) -> &String| keys.iter().map(f).collect::<Vec<_>>();
        let positions: Vec<i64> = (0..keys.len() as i64).collect();
        // One statement reads in one snapshot; each key is looked up by the primary key.
        let rows = sqlx::query(
            "SELECT k.position, o.rv, o.data, o.sealed \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 AS k(position, cluster, resource, namespace, name) \
             JOIN objects o USING (cluster, resource, namespace, name)",
        )
        .bind(&positions)
        .bind(column(|k| &k.cluster))
        .bind(column(|k| &k.resource))
        .bind(column(|k| &k.namespace))
        .bind(column(|k| &k.name))
        .fetch_all(&self.pool)
        .await?;
        placed(keys, rows, |key, r| {
            self.decode(key, r.get("rv"), r.get("data"), r.get("sealed"))
        })
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        let watermark = self.recent_watermark().await?;
        self.read_page(&self.pool, q, watermark).await
    }

    async fn list_pages(&self, query: &ListQuery, page: usize, pages: &PageSender) {
        // One read-only REPEATABLE READ transaction: every page from its first snapshot.
        let read = async {
            let watermark = self.recent_watermark().await?;
            let mut tx = self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let mut paging = Paging::new(query, page);
            loop {
                let listed = self.read_page(&mut *tx, paging.query(), watermark).await?;
                if !paging.send(listed, pages).await {
                    return Ok::<_, StoreError>(());
                }
            }
        };
        if let Err(e) = read.await {
            let _ = pages.send(Err(e)).await;
        }
    }

    async fn create(&self, key: &ObjectKey, object: &Value, in_namespace: bool) -> Result<Stored> {
        let row = seal(self.keyring.as_deref(), key, object)?;
        let create = batch::Create {
            key: key.clone(),
            labels: labels_json(&labels_of(object)),
            data: row.data,
            sealed: row.sealed,
            in_namespace,
        };
        let rv = self.creates.create(create).await?;
        self.note_writes(1);
        Ok(Stored {
            object: crate::with_rv(crate::storable(object), rv),
            rv,
        })
    }

    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored> {
        let row = seal(self.keyring.as_deref(), key, object)?;
        let labels = labels_json(&labels_of(object));
        let rv: Option<i64> = sqlx::query_scalar(
            "WITH r AS (SELECT syncsets_next_rv() AS rv), \
             old AS (SELECT labels FROM objects WHERE cluster = $1 AND resource = $2 AND namespace = $3 AND name = $4 AND rv = $8), \
             o AS (UPDATE objects SET rv = r.rv, labels = $5, data = $6, sealed = $7 FROM r \
                   WHERE cluster = $1 AND resource = $2 AND namespace = $3 AND name = $4 AND objects.rv = $8 \
                   RETURNING objects.rv), \
             e AS (INSERT INTO events (rv, cluster, resource, namespace, name, type, data, sealed, labels, prev_labels) \
                   SELECT o.rv, $1, $2, $3, $4, 'MODIFIED', $6, $7, $5, (SELECT labels FROM old) FROM o) \
             SELECT rv FROM o",
        )
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(&labels)
        .bind(&row.data)
        .bind(row.sealed.as_deref())
        .bind(expected_rv as i64)
        .fetch_optional(&self.pool)
        .await?;
        match rv {
            Some(rv) => {
                self.note_writes(1);
                Ok(Stored {
                    object: crate::with_rv(crate::storable(object), rv as u64),
                    rv: rv as u64,
                })
            }
            None if self.exists(key).await? => Err(StoreError::Conflict),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored> {
        let row = sqlx::query(
            "WITH r AS (SELECT syncsets_next_rv() AS rv), \
             d AS (DELETE FROM objects WHERE cluster = $1 AND resource = $2 AND namespace = $3 AND name = $4 \
                   AND ($5::bigint IS NULL OR rv = $5) RETURNING data, sealed, labels), \
             e AS (INSERT INTO events (rv, cluster, resource, namespace, name, type, data, sealed, labels) \
                   SELECT r.rv, $1, $2, $3, $4, 'DELETED', d.data, d.sealed, d.labels FROM d, r) \
             SELECT r.rv, d.data, d.sealed FROM d, r",
        )
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(expected_rv.map(|r| r as i64))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                self.note_writes(1);
                self.decode(key.clone(), r.get("rv"), r.get("data"), r.get("sealed"))
            }
            None if self.exists(key).await? => Err(StoreError::Conflict),
            None => Err(StoreError::NotFound),
        }
    }

    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let watermark = self.settle().await?;
        let rows = sqlx::query(
            "SELECT rv, cluster, resource, namespace, name, type, data, sealed, prev_labels FROM events \
             WHERE rv > $1 AND rv <= $2 ORDER BY rv LIMIT $3",
        )
        .bind(after as i64)
        .bind(watermark as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OutboxEvent {
                    rv: r.get::<i64, _>("rv") as u64,
                    kind: EventType::parse(r.get("type"))?,
                    key: ObjectKey::new(
                        r.get("cluster"),
                        r.get("resource"),
                        r.get("namespace"),
                        r.get("name"),
                    ),
                    data: r.get("data"),
                    sealed: r.get("sealed"),
                    prev_labels: labels_from(r.get("prev_labels")),
                })
            })
            .collect()
    }

    fn open_event(&self, event: &OutboxEvent) -> Result<ChangeEvent> {
        crate::open_event(self.keyring.as_deref(), event)
    }

    async fn outbox_state(&self) -> Result<OutboxState> {
        let (published, compacted): (i64, i64) =
            sqlx::query_as("SELECT published, compacted FROM outbox_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(OutboxState {
            published: published as u64,
            compacted: compacted as u64,
        })
    }

    async fn mark_published(&self, rv: u64) -> Result<()> {
        sqlx::query("UPDATE outbox_state SET published = GREATEST(published, $1) WHERE id = 1")
            .bind(rv as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn compact(&self, retention: Retention) -> Result<OutboxState> {
        // One statement: the floor is the newest published event that is either older than
        // the window or beyond the newest `max_events` (versions may have gaps, so the
        // count limit keeps at most that many), looking at most one chunk ahead.
        sqlx::query(
            "WITH s AS (SELECT published FROM outbox_state WHERE id = 1), \
             chunk AS (SELECT rv, created_at FROM events ORDER BY rv LIMIT $3), \
             floor AS (SELECT LEAST((SELECT published FROM s), (SELECT max(rv) FROM chunk), GREATEST( \
                 COALESCE((SELECT max(rv) FROM chunk WHERE created_at < now() - make_interval(secs => $1)), 0), \
                 (SELECT COALESCE(max(rv), 0) FROM events) - $2)) AS rv), \
             d AS (DELETE FROM events WHERE rv <= (SELECT rv FROM floor)) \
             UPDATE outbox_state SET compacted = GREATEST(compacted, (SELECT rv FROM floor)) \
             WHERE id = 1 AND (SELECT rv FROM floor) IS NOT NULL",
        )
        .bind(retention.window.as_secs_f64())
        .bind(retention.max_events.min(i64::MAX as u64) as i64)
        .bind(COMPACT_CHUNK)
        .execute(&self.pool)
        .await?;
        self.outbox_state().await
    }

    async fn lead(&self, role: Role) -> Result<()> {
        loop {
            {
                let mut leases = self.leases.lock().await;
                if leases.contains_key(&role) {
                    return Ok(());
                }
                let mut conn = self.pool.acquire().await?.detach();
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(advisory_lock(role))
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    leases.insert(role, conn);
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn still_leading(&self, role: Role) -> bool {
        let mut leases = self.leases.lock().await;
        let alive = match leases.get_mut(&role) {
            Some(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
            None => false,
        };
        if !alive {
            leases.remove(&role);
        }
        alive
    }

    fn writes(&self) -> &tokio::sync::Notify {
        &self.written
    }

    async fn watermark(&self) -> Result<u64> {
        self.settle().await
    }

    async fn ready(&self) -> Result<()> {
        match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool)).await
        {
            Ok(done) => done.map(drop).map_err(StoreError::from),
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn reseal(&self) -> Result<Resealed> {
        let keyring = self.keyring.as_deref();
        // Seal with the file's first key as it is now.
        keyring.inspect(|k| k.reload());
        let mut done = Resealed::default();
        let key = row_key::<sqlx::postgres::PgRow>;
        // Objects, in primary-key order; a value is replaced only if its object is unchanged.
        let mut after = ObjectKey::default();
        loop {
            let rows = sqlx::query(
                "SELECT cluster, resource, namespace, name, rv, sealed FROM objects \
                 WHERE sealed IS NOT NULL AND (cluster, resource, namespace, name) > ($1, $2, $3, $4) \
                 ORDER BY cluster, resource, namespace, name LIMIT $5",
            )
            .bind(&after.cluster)
            .bind(&after.resource)
            .bind(&after.namespace)
            .bind(&after.name)
            .bind(RESEAL_PAGE)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = key(last);
            let mut tx = self.pool.begin().await?;
            for r in &rows {
                let k = key(r);
                let Some(new) = reseal_value(keyring, &k, r.get("sealed"))? else {
                    continue;
                };
                let updated = sqlx::query(
                    "UPDATE objects SET sealed = $1 WHERE cluster = $2 AND resource = $3 \
                     AND namespace = $4 AND name = $5 AND rv = $6",
                )
                .bind(new)
                .bind(&k.cluster)
                .bind(&k.resource)
                .bind(&k.namespace)
                .bind(&k.name)
                .bind(r.get::<i64, _>("rv"))
                .execute(&mut *tx)
                .await?;
                done.objects += updated.rows_affected();
            }
            tx.commit().await?;
        }
        // The outbox: events never change, so only compaction can race (and then it wins).
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT rv, cluster, resource, namespace, name, sealed FROM events \
                 WHERE sealed IS NOT NULL AND rv > $1 ORDER BY rv LIMIT $2",
            )
            .bind(after)
            .bind(RESEAL_PAGE)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.get("rv");
            let mut tx = self.pool.begin().await?;
            for r in &rows {
                let Some(new) = reseal_value(keyring, &key(r), r.get("sealed"))? else {
                    continue;
                };
                let updated = sqlx::query("UPDATE events SET sealed = $1 WHERE rv = $2")
                    .bind(new)
                    .bind(r.get::<i64, _>("rv"))
                    .execute(&mut *tx)
                    .await?;
                done.events += updated.rows_affected();
            }
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn sealed_keys(&self) -> Result<BTreeMap<String, u64>> {
        use futures::TryStreamExt as _;
        let mut counts = BTreeMap::new();
        for sql in [
            "SELECT substring(sealed from 1 for 260) AS head FROM objects WHERE sealed IS NOT NULL",
            "SELECT substring(sealed from 1 for 260) AS head FROM events WHERE sealed IS NOT NULL",
        ] {
            let mut rows = sqlx::query(sql).fetch(&self.pool);
            while let Some(r) = rows.try_next().await? {
                count_key(&mut counts, r.get::<&[u8], _>("head"));
            }
        }
        Ok(counts)
    }
}
