//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL` (a write is on
//! disk before it is acknowledged). One writer connection serialises writes, as SQLite
//! does anyway; readers use a pool and see consistent snapshots.

mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use syncsets_types::selector::Operator;
use writer::{Done, Op, Writer};

use crate::{
    ChangeEvent, EventType, Keyring, ListPage, ListQuery, MetaField, ObjectKey, OutboxEvent,
    OutboxState, PageSender, Paging, RESEAL_PAGE, Resealed, Result, Retention, Store, StoreError,
    Stored, count_key, labels_of, list_page, placed, reseal_value, row_key, seal, unseal,
};

/// SQLite-backed store.
pub struct SqliteStore {
    writer: Writer,
    readers: SqlitePool,
    keyring: Option<Arc<Keyring>>,
    rv: Arc<AtomicU64>,
    written: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("rv", &self.rv).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `sqlite://path` and runs migrations.
    pub async fn open(url: &str, keyring: Option<Arc<Keyring>>) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::config(
                "in-memory SQLite gives every pooled connection its own database; use memory:// or a file",
            ));
        }
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-8192");
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::config(format!("creating {}: {e}", dir.display())))?;
        }
        // The database is its owner's only, whatever the umask: created 0600 here (SQLite
        // gives its -wal and -shm files the database's mode), and an older file, or its
        // -wal and -shm, made so.
        let db = opts.get_filename().to_path_buf();
        crate::private_file::touch(&db)
            .map_err(|e| StoreError::config(format!("creating {}: {e}", db.display())))?;
        for suffix in ["-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            crate::private_file::restrict(std::path::Path::new(&name))
                .map_err(|e| StoreError::config(format!("restricting {name:?}: {e}")))?;
        }
        let mut writer = SqliteConnection::connect_with(&opts).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer)
            .await?;
        let rv: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'rv'")
            .fetch_one(&mut writer)
            .await?;
        // Connections are local and checked by every query anyway: no ping per checkout.
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.clone().read_only(true))
            .await?;
        let rv = Arc::new(AtomicU64::new(rv as u64));
        let written = Arc::new(tokio::sync::Notify::new());
        Ok(Self {
            writer: Writer::spawn(writer, opts.clone(), rv.clone(), written.clone()),
            written,
            readers,
            keyring,
            rv,
        })
    }

    /// One page of a list, read through `conn` (the readers, or a transaction's
    /// connection); `watermark`: the resourceVersion it reflects.
    async fn read_page<'c>(
        &self,
        conn: impl sqlx::SqliteExecutor<'c>,
        q: &ListQuery,
        watermark: u64,
    ) -> Result<ListPage> {
        let (sql, binds) = list_statement(q);
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
            .fetch_all(conn)
            .await?;
        list_page(self.keyring.as_deref(), q, rows, watermark)
    }

    /// The query plan of a list (`EXPLAIN QUERY PLAN`), for tests and diagnostics.
    pub async fn explain_list(&self, q: &ListQuery) -> Result<String> {
        let (sql, binds) = list_statement(q);
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))),
            binds,
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn decode(
        &self,
        key: ObjectKey,
        rv: i64,
        data: &str,
        sealed: Option<Vec<u8>>,
    ) -> Result<Stored> {
        let data: Value = serde_json::from_str(data).map_err(StoreError::corrupt)?;
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
}

enum Bind {
    Text(String),
    Int(i64),
}

/// The SQL of a list and its parameters, in order.
///
/// The first positive label requirement drives the query from the label index
/// (`labels CROSS JOIN objects`: SQLite keeps that join order), so a selector never scans
/// every object of a kind; the other requirements filter by object id.
fn list_statement(q: &ListQuery) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let driver = q
        .labels
        .requirements
        .iter()
        .position(|r| !matches!(r.op, Operator::NotIn | Operator::DoesNotExist));
    let mut sql = String::from("SELECT o.rv, o.data, o.sealed, o.namespace, o.name FROM ");
    match driver {
        Some(i) => {
            let r = &q.labels.requirements[i];
            sql.push_str(
                "labels d CROSS JOIN objects o ON o.id = d.obj_id \
                 WHERE d.cluster = ? AND d.resource = ? AND d.key = ?",
            );
            binds.extend([
                Bind::Text(q.cluster.clone()),
                Bind::Text(q.resource.clone()),
                Bind::Text(r.key.clone()),
            ]);
            value_condition(r, "d.value", &mut sql, &mut binds);
            sql.push_str(" AND o.cluster = ? AND o.resource = ?");
        }
        None => sql.push_str("objects o WHERE o.cluster = ? AND o.resource = ?"),
    }
    binds.push(Bind::Text(q.cluster.clone()));
    binds.push(Bind::Text(q.resource.clone()));
    if let Some(ns) = &q.namespace {
        sql.push_str(" AND o.namespace = ?");
        binds.push(Bind::Text(ns.clone()));
    }
    if let Some((ns, name)) = &q.after {
        sql.push_str(" AND (o.namespace, o.name) > (?, ?)");
        binds.push(Bind::Text(ns.clone()));
        binds.push(Bind::Text(name.clone()));
    }
    for f in &q.fields {
        let col = match f.field {
            MetaField::Name => "o.name",
            MetaField::Namespace => "o.namespace",
        };
        sql.push_str(&format!(
            " AND {col} {} ?",
            if f.negated { "<>" } else { "=" }
        ));
        binds.push(Bind::Text(f.value.clone()));
    }
    for (i, r) in q.labels.requirements.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        let not = if matches!(r.op, Operator::NotIn | Operator::DoesNotExist) {
            "NOT "
        } else {
            ""
        };
        sql.push_str(&format!(
            " AND o.id {not}IN (SELECT obj_id FROM labels WHERE cluster = ? AND resource = ? AND key = ?"
        ));
        binds.extend([
            Bind::Text(q.cluster.clone()),
            Bind::Text(q.resource.clone()),
            Bind::Text(r.key.clone()),
        ]);
        value_condition(r, "value", &mut sql, &mut binds);
        sql.push(')');
    }
    if q.labels.matches_nothing {
        sql.push_str(" AND 0");
    }
    sql.push_str(" ORDER BY o.namespace, o.name");
    if let Some(limit) = q.limit {
        sql.push_str(&format!(" LIMIT {}", limit + 1));
    }
    (sql, binds)
}

/// The condition on a label's value that a requirement adds (none for exists / not exists).
fn value_condition(
    r: &syncsets_types::selector::Requirement,
    col: &str,
    sql: &mut String,
    binds: &mut Vec<Bind>,
) {
    match r.op {
        Operator::In | Operator::NotIn => {
            let placeholders = vec!["?"; r.values.len()].join(", ");
            sql.push_str(&format!(" AND {col} IN ({placeholders})"));
            binds.extend(r.values.iter().map(|v| Bind::Text(v.clone())));
        }
        Operator::Exists | Operator::DoesNotExist => {}
        Operator::GreaterThan | Operator::LessThan => {
            // Integers only: an optional leading '-' and at least one digit.
            let cmp = if r.op == Operator::GreaterThan {
                ">"
            } else {
                "<"
            };
            sql.push_str(&format!(
                " AND ltrim({col}, '-') <> '' AND NOT ltrim({col}, '-') GLOB '*[^0-9]*' \
                 AND {col} NOT GLOB '?*-*' AND CAST({col} AS INTEGER) {cmp} ?"
            ));
            binds.push(Bind::Int(r.bound().unwrap_or_default()));
        }
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
        };
    }
    query
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>> {
        let row = sqlx::query(
            "SELECT rv, data, sealed FROM objects WHERE cluster = ? AND resource = ? AND namespace = ? AND name = ?",
        )
        .bind(&key.cluster)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            self.decode(
                key.clone(),
                r.get("rv"),
                r.get::<&str, _>("data"),
                r.get("sealed"),
            )
        })
        .transpose()
    }

    async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>> {
        crate::check_get_many(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One statement reads in one snapshot; each key is looked up in the key index.
        let rows = vec!["(?, ?, ?, ?, ?)"; keys.len()].join(", ");
        let sql = format!(
            "SELECT k.column1 AS position, o.rv, o.data, o.sealed FROM (VALUES {rows}) AS k \
             JOIN objects o ON o.cluster = k.column2 AND o.resource = k.column3 \
             AND o.namespace = k.column4 AND o.name = k.column5"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (i, key) in keys.iter().enumerate() {
            query = query
                .bind(i as i64)
                .bind(&key.cluster)
                .bind(&key.resource)
                .bind(&key.namespace)
                .bind(&key.name);
        }
        let rows = query.fetch_all(&self.readers).await?;
        placed(keys, rows, |key, r| {
            self.decode(key, r.get("rv"), r.get::<&str, _>("data"), r.get("sealed"))
        })
    }

    async fn list(&self, q: &ListQuery) -> Result<ListPage> {
        // Everything up to the counter read now is committed, so the page reflects it.
        let watermark = self.rv.load(Ordering::Acquire);
        self.read_page(&self.readers, q, watermark).await
    }

    async fn list_pages(&self, query: &ListQuery, page: usize, pages: &PageSender) {
        // One read transaction: WAL gives each statement in it the snapshot of its first.
        let read = async {
            let watermark = self.rv.load(Ordering::Acquire);
            let mut tx = self.readers.begin().await?;
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
        let op = Op::Create {
            in_namespace,
            key: key.clone(),
            data: row.data.to_string(),
            sealed: row.sealed,
            labels: labels_of(object),
        };
        match self.writer.write(op).await? {
            Done::Written(rv) => Ok(Stored {
                object: crate::with_rv(crate::storable(object), rv),
                rv,
            }),
            _ => Err(StoreError::write_failed("unexpected writer reply")),
        }
    }

    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored> {
        let row = seal(self.keyring.as_deref(), key, object)?;
        let op = Op::Update {
            key: key.clone(),
            data: row.data.to_string(),
            sealed: row.sealed,
            labels: labels_of(object),
            expected: expected_rv,
        };
        match self.writer.write(op).await? {
            Done::Written(rv) => Ok(Stored {
                object: crate::with_rv(crate::storable(object), rv),
                rv,
            }),
            _ => Err(StoreError::write_failed("unexpected writer reply")),
        }
    }

    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored> {
        let op = Op::Delete {
            key: key.clone(),
            expected: expected_rv,
        };
        match self.writer.write(op).await? {
            Done::Deleted { rv, data, sealed } => {
                self.decode(key.clone(), rv as i64, &data, sealed)
            }
            _ => Err(StoreError::write_failed("unexpected writer reply")),
        }
    }

    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let watermark = self.rv.load(Ordering::Acquire);
        let rows = sqlx::query(
            "SELECT rv, cluster, resource, namespace, name, type, data, sealed, prev_labels FROM events \
             WHERE rv > ? AND rv <= ? ORDER BY rv LIMIT ?",
        )
        .bind(after as i64)
        .bind(watermark as i64)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        let json = |text: &str| -> Result<Value> {
            serde_json::from_str(text).map_err(StoreError::corrupt)
        };
        rows.into_iter()
            .map(|r| {
                let prev: Option<&str> = r.get("prev_labels");
                Ok(OutboxEvent {
                    rv: r.get::<i64, _>("rv") as u64,
                    kind: EventType::parse(r.get("type"))?,
                    key: ObjectKey::new(
                        r.get("cluster"),
                        r.get("resource"),
                        r.get("namespace"),
                        r.get("name"),
                    ),
                    data: json(r.get("data"))?,
                    sealed: r.get("sealed"),
                    prev_labels: prev
                        .map(|p| serde_json::from_str(p).map_err(StoreError::corrupt))
                        .transpose()?,
                })
            })
            .collect()
    }

    fn open_event(&self, event: &OutboxEvent) -> Result<ChangeEvent> {
        crate::open_event(self.keyring.as_deref(), event)
    }

    async fn outbox_state(&self) -> Result<OutboxState> {
        let mut conn = self.readers.acquire().await?;
        Ok(writer::outbox_state(&mut conn).await?)
    }

    async fn mark_published(&self, rv: u64) -> Result<()> {
        self.writer.write(Op::MarkPublished(rv)).await.map(drop)
    }

    async fn compact(&self, retention: Retention) -> Result<OutboxState> {
        let cutoff = jiff::Timestamp::now().as_millisecond()
            - retention.window.as_millis().min(i64::MAX as u128) as i64;
        let op = Op::Compact {
            cutoff_ms: cutoff,
            max_events: retention.max_events,
        };
        match self.writer.write(op).await? {
            Done::Outbox(state) => Ok(state),
            _ => Err(StoreError::write_failed("unexpected writer reply")),
        }
    }

    fn writes(&self) -> &tokio::sync::Notify {
        &self.written
    }

    async fn watermark(&self) -> Result<u64> {
        Ok(self.rv.load(Ordering::Acquire))
    }

    async fn ready(&self) -> Result<()> {
        if self.writer.failing() {
            return Err(StoreError::write_failed(
                "SQLite writes are failing (the log says why); probing until one succeeds",
            ));
        }
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn reseal(&self) -> Result<Resealed> {
        let keyring = self.keyring.as_deref();
        // Seal with the file's first key as it is now.
        keyring.inspect(|k| k.reload());
        let mut done = Resealed::default();
        let key = row_key::<sqlx::sqlite::SqliteRow>;
        for table in ["objects", "events"] {
            let (cursor, sql) = if table == "objects" {
                (
                    "id",
                    "SELECT id, rv, cluster, resource, namespace, name, sealed FROM objects WHERE sealed IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
                )
            } else {
                (
                    "rv",
                    "SELECT rv, cluster, resource, namespace, name, sealed FROM events WHERE sealed IS NOT NULL AND rv > ? ORDER BY rv LIMIT ?",
                )
            };
            let mut after = 0i64;
            loop {
                let rows = sqlx::query(sql)
                    .bind(after)
                    .bind(RESEAL_PAGE)
                    .fetch_all(&self.readers)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = last.get(cursor);
                let (mut objects, mut events) = (Vec::new(), Vec::new());
                for r in &rows {
                    let sealed: Vec<u8> = r.get("sealed");
                    let Some(new) = reseal_value(keyring, &key(r), &sealed)? else {
                        continue;
                    };
                    if table == "objects" {
                        objects.push((r.get("id"), r.get("rv"), new));
                    } else {
                        events.push((r.get("rv"), new));
                    }
                }
                if objects.is_empty() && events.is_empty() {
                    continue;
                }
                match self.writer.write(Op::Reseal { objects, events }).await? {
                    Done::Resealed(o, e) => {
                        done.objects += o;
                        done.events += e;
                    }
                    _ => return Err(StoreError::write_failed("unexpected writer reply")),
                }
            }
        }
        Ok(done)
    }

    async fn sealed_keys(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        use futures::TryStreamExt as _;
        let mut counts = std::collections::BTreeMap::new();
        for sql in [
            "SELECT substr(sealed, 1, 260) AS head FROM objects WHERE sealed IS NOT NULL",
            "SELECT substr(sealed, 1, 260) AS head FROM events WHERE sealed IS NOT NULL",
        ] {
            let mut rows = sqlx::query(sql).fetch(&self.readers);
            while let Some(r) = rows.try_next().await? {
                count_key(&mut counts, r.get::<&[u8], _>("head"));
            }
        }
        Ok(counts)
    }
}
