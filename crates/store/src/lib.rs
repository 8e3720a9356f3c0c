//! # syncsets-store
//!
//! Object storage behind one [`Store`] trait, with three backends:
//!
//! ```text
//!            ┌──────────── Store ────────────┐
//!            │ get · list · create · update  │   resourceVersion: store-wide, monotonic
//!            │ delete · watermark            │   every write also appends an outbox event
//!            └──┬────────────┬────────────┬──┘   (same transaction)
//!       SqliteStore     PostgresStore    MemoryStore
//!       file, WAL,      JSONB, GIN       tests and the
//!       label table     labels, sequence fleet simulator
//! ```
//!
//! Objects are JSON values keyed by (logical cluster, resource, namespace, name). Secrets are
//! sealed with AES-256-GCM before they reach the database ([`keyring`]).

pub mod backup;
pub mod keyring;
mod measured;
mod memory;
mod postgres;
pub mod private_file;
pub mod rawjson;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncsets_types::Selector;

pub use keyring::Keyring;
pub use measured::Measured;
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Identifies an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Logical cluster (`""` is the hub).
    pub cluster: String,
    /// Group resource: `configmaps`, `syncsets.hive.openshift.io`.
    pub resource: String,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(cluster: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            cluster: cluster.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Whether this key names a Secret, whose contents are sealed.
    pub fn is_secret(&self) -> bool {
        self.resource == "secrets"
    }
}

/// An object as stored, with its resourceVersion (also set in `metadata.resourceVersion`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The object.
    pub object: Value,
    /// Its resourceVersion.
    pub rv: u64,
}

/// A requirement on `metadata.name` or `metadata.namespace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMatch {
    /// `metadata.name` or `metadata.namespace`.
    pub field: MetaField,
    /// True for `!=`.
    pub negated: bool,
    /// The value.
    pub value: String,
}

/// The metadata fields the store can select on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaField {
    /// `metadata.name`
    Name,
    /// `metadata.namespace`
    Namespace,
}

/// A list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Logical cluster.
    pub cluster: String,
    /// Group resource.
    pub resource: String,
    /// Namespace, or all namespaces.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: Selector,
    /// Name/namespace requirements.
    pub fields: Vec<FieldMatch>,
    /// Page size.
    pub limit: Option<usize>,
    /// Start after this (namespace, name).
    pub after: Option<(String, String)>,
}

/// An object as listed: its JSON text, `metadata.resourceVersion` included, ready to send
/// without parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct RawObject {
    /// Its resourceVersion.
    pub rv: u64,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object's JSON text.
    pub json: String,
}

impl RawObject {
    /// Parses the object.
    pub fn parse(&self) -> Result<Stored> {
        let object = serde_json::from_str(&self.json).map_err(StoreError::corrupt)?;
        Ok(Stored {
            object,
            rv: self.rv,
        })
    }
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Items in (namespace, name) order.
    pub items: Vec<RawObject>,
    /// A resourceVersion such that every change up to it is reflected in `items` (a watch
    /// from it misses nothing).
    pub rv: u64,
    /// Whether more items follow.
    pub more: bool,
}

/// What a change event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The watch event type string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "ADDED" => Ok(Self::Added),
            "MODIFIED" => Ok(Self::Modified),
            "DELETED" => Ok(Self::Deleted),
            other => Err(StoreError::corrupt(format!("unknown event type {other:?}"))),
        }
    }
}

/// A change, as recorded in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// The change's resourceVersion.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The object's key.
    pub key: ObjectKey,
    /// The object after the change (before it, for deletions), with `rv` set.
    pub object: Value,
    /// Labels before the change (modifications), for selector-filtered watches.
    pub prev_labels: Option<BTreeMap<String, String>>,
}

/// A change as it leaves the outbox and travels the bus: a Secret's contents stay sealed
/// (`data` is then a stub with identity and labels), so nothing on the way holds plaintext.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The change's resourceVersion.
    pub rv: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The object's key.
    pub key: ObjectKey,
    /// The object as stored (without `metadata.resourceVersion`).
    pub data: Value,
    /// For Secrets: the whole object, sealed ([`Keyring`]), base64 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "sealed_base64"
    )]
    pub sealed: Option<Vec<u8>>,
    /// Labels before the change (modifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_labels: Option<BTreeMap<String, String>>,
}

mod sealed_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Where the outbox relay stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxState {
    /// Every event up to this resourceVersion has been published (confirmed by the bus).
    pub published: u64,
    /// Events up to this resourceVersion have been compacted away: watching from an older
    /// version is answered with 410 Gone.
    pub compacted: u64,
}

/// How long outbox events are kept once published.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Published events older than this are removed.
    pub window: std::time::Duration,
    /// At most this many published events are kept.
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            window: std::time::Duration::from_secs(15 * 60),
            max_events: 1_000_000,
        }
    }
}

/// Work one process at a time does when several share a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Publishing the outbox to the bus (API servers).
    Relay,
    /// Turning changes into controller work and summarising rollouts (controllers).
    Controller,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object exists already.
    #[error("object already exists")]
    AlreadyExists,
    /// The object does not exist.
    #[error("object not found")]
    NotFound,
    /// The namespace of a new object does not exist.
    #[error("namespace not found")]
    NamespaceNotFound,
    /// The namespace of a new object is being deleted.
    #[error("namespace is terminating")]
    NamespaceTerminating,
    /// The object's resourceVersion is not the expected one.
    #[error("object has been modified")]
    Conflict,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrating the database schema")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write could not be committed.
    #[error("write failed")]
    WriteFailed(#[source] Cause),
    /// Stored data could not be read back.
    #[error("corrupt stored data")]
    Corrupt(#[source] Cause),
    /// Sealing or unsealing a Secret failed.
    #[error("secret encryption")]
    Crypto(#[source] Cause),
    /// The store URL or options are invalid.
    #[error("invalid store configuration")]
    Config(#[source] Cause),
}

/// What caused a [`StoreError`]; shared, because one failed commit fails every write it
/// carried.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// A write failed because of `cause`.
    pub fn write_failed(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::WriteFailed(Arc::from(cause.into()))
    }

    /// Stored data is unreadable, because of `cause`.
    pub fn corrupt(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Corrupt(Arc::from(cause.into()))
    }

    /// Sealing or unsealing failed, because of `cause`.
    pub fn crypto(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Crypto(Arc::from(cause.into()))
    }

    /// The configuration is invalid, because of `cause`.
    pub fn config(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Config(Arc::from(cause.into()))
    }
}

/// What kind of storage failure an error comes from, for answering it as kube-apiserver
/// would: a full disk, or a database that cannot be reached (try again shortly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No space left (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`, `ENOSPC`).
    Full,
    /// The database cannot be reached or has no connection to give in time.
    Unavailable,
}

/// The [`Fault`] behind `err` or any of its causes, if it is one.
pub fn fault(err: &(dyn std::error::Error + 'static)) -> Option<Fault> {
    let mut next = Some(err);
    while let Some(e) = next {
        // A shared cause hides its error behind the Arc (whose `source` skips it).
        if let Some(shared) = e.downcast_ref::<Cause>()
            && let Some(f) = fault(shared.as_ref())
        {
            return Some(f);
        }
        if let Some(sql) = e.downcast_ref::<sqlx::Error>() {
            match sql {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                    return Some(Fault::Unavailable);
                }
                sqlx::Error::Database(db) => {
                    // SQLite's primary result code 13; PostgreSQL's SQLSTATE 53100.
                    let code = db.code();
                    if matches!(code.as_deref(), Some("13" | "53100")) {
                        return Some(Fault::Full);
                    }
                    if code
                        .as_deref()
                        .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03")
                    {
                        return Some(Fault::Unavailable);
                    }
                }
                _ => {}
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull {
                return Some(Fault::Full);
            }
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return Some(Fault::Unavailable);
            }
        }
        next = e.source();
    }
    None
}

/// An error and its causes, `outer: inner: innermost`: how logs and messages show errors
/// (each error's own message says only what it adds).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        write!(f, "{shown}")?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            // Some errors (sqlx's) say their source's message already: it is not repeated.
            let message = e.to_string();
            if !shown.ends_with(&message) {
                write!(f, ": {message}")?;
            }
            shown = message;
            cause = e.source();
        }
        Ok(())
    }
}

/// The most keys one [`Store::get_many`] reads (SQLite binds five parameters a key).
pub const GET_MANY_MAX: usize = 1000;

fn check_get_many(keys: &[ObjectKey]) -> Result<()> {
    if keys.len() > GET_MANY_MAX {
        return Err(StoreError::config(format!(
            "{} keys read at once; at most {GET_MANY_MAX}",
            keys.len()
        )));
    }
    Ok(())
}

/// Where [`Store::list_pages`] sends its pages.
pub type PageSender = tokio::sync::mpsc::Sender<Result<ListPage>>;

/// Sends a whole list as pages of `page` objects.
async fn send_in_pages(all: ListPage, page: usize, pages: &PageSender) {
    let total = all.items.len();
    let mut items = all.items.into_iter();
    let mut sent = 0;
    loop {
        let chunk: Vec<RawObject> = items.by_ref().take(page.max(1)).collect();
        sent += chunk.len();
        let more = sent < total;
        if pages
            .send(Ok(ListPage {
                items: chunk,
                rv: all.rv,
                more,
            }))
            .await
            .is_err()
            || !more
        {
            return;
        }
    }
}

/// The pages of a list read one after another (an SQL store's [`Store::list_pages`]).
struct Paging {
    query: ListQuery,
}

impl Paging {
    fn new(query: &ListQuery, page: usize) -> Self {
        let mut query = query.clone();
        query.limit = Some(page.max(1));
        query.after = None;
        Self { query }
    }

    /// The query of the next page.
    fn query(&self) -> &ListQuery {
        &self.query
    }

    /// Sends a page read; whether another is to be read.
    async fn send(&mut self, listed: ListPage, pages: &PageSender) -> bool {
        self.query.after = listed
            .items
            .last()
            .filter(|_| listed.more)
            .map(|l| (l.namespace.clone(), l.name.clone()));
        pages.send(Ok(listed)).await.is_ok() && self.query.after.is_some()
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Object storage.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Reads one object.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Stored>>;

    /// Reads several objects at one instant (one snapshot, one round trip): each key's
    /// object, in the order of `keys`. At most [`GET_MANY_MAX`] keys.
    async fn get_many(&self, keys: &[ObjectKey]) -> Result<Vec<Option<Stored>>>;

    /// Lists objects in (namespace, name) order.
    async fn list(&self, query: &ListQuery) -> Result<ListPage>;

    /// Lists every object `query` selects (its `limit` and `after` aside) `page` objects at
    /// a time, all read from one snapshot of the store, sending each page to `pages` as it
    /// is read (each with the first page's resourceVersion), as fast as `pages` takes them;
    /// stops early once `pages` is closed, and sends an error last. A store without
    /// snapshots across statements reads everything at once.
    async fn list_pages(&self, query: &ListQuery, page: usize, pages: &PageSender) {
        let mut q = query.clone();
        q.limit = None;
        q.after = None;
        match self.list(&q).await {
            Ok(all) => send_in_pages(all, page, pages).await,
            Err(e) => {
                let _ = pages.send(Err(e)).await;
            }
        }
    }

    /// Creates an object; [`StoreError::AlreadyExists`] if the key is taken. With
    /// `in_namespace`, the object's namespace (a `namespaces` object of the same cluster)
    /// must exist and not be terminating — checked atomically with the write
    /// ([`StoreError::NamespaceNotFound`], [`StoreError::NamespaceTerminating`]).
    async fn create(&self, key: &ObjectKey, object: &Value, in_namespace: bool) -> Result<Stored>;

    /// Replaces an object whose resourceVersion is `expected_rv`;
    /// [`StoreError::Conflict`] or [`StoreError::NotFound`] otherwise.
    async fn update(&self, key: &ObjectKey, object: &Value, expected_rv: u64) -> Result<Stored>;

    /// Deletes an object (if its resourceVersion is `expected_rv`, when given). Returns the
    /// object as it was, carrying the resourceVersion of the deletion.
    async fn delete(&self, key: &ObjectKey, expected_rv: Option<u64>) -> Result<Stored>;

    /// Outbox events with resourceVersion greater than `after`, oldest first, up to `limit`,
    /// and only up to the watermark, in their travelling (sealed) form.
    async fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>>;

    /// Opens an outbox event: unseals a Secret and sets the resourceVersion.
    fn open_event(&self, event: &OutboxEvent) -> Result<ChangeEvent>;

    /// Outbox events after `after`, opened.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeEvent>> {
        self.outbox_after(after, limit)
            .await?
            .iter()
            .map(|e| self.open_event(e))
            .collect()
    }

    /// Where the relay stands.
    async fn outbox_state(&self) -> Result<OutboxState>;

    /// Records that every event up to `rv` has been published (never moves back).
    async fn mark_published(&self, rv: u64) -> Result<()>;

    /// Removes published events beyond the retention; returns the new state.
    async fn compact(&self, retention: Retention) -> Result<OutboxState>;

    /// Waits until this process leads `role`: with several processes on one database, one
    /// at a time does that work (the others wait here, and take over when it dies).
    async fn lead(&self, role: Role) -> Result<()> {
        let _ = role;
        Ok(())
    }

    /// Whether this process still leads `role`.
    async fn still_leading(&self, role: Role) -> bool {
        let _ = role;
        true
    }

    /// Signalled after writes (a permit is kept when nobody waits), so the outbox relay
    /// need not poll for this process's own changes.
    fn writes(&self) -> &tokio::sync::Notify;

    /// A resourceVersion up to which every change is settled (committed or abandoned):
    /// lists return it, and watches from it miss nothing.
    async fn watermark(&self) -> Result<u64>;

    /// Whether the store can serve reads and writes now (`/readyz`).
    async fn ready(&self) -> Result<()> {
        self.watermark().await.map(drop)
    }

    /// The backend's name, for logs and benchmarks.
    fn backend(&self) -> &'static str;

    /// Seals every stored Secret, in objects and in the outbox, with the keyring's primary
    /// key (after a rotation). Values changed meanwhile are left to their writer, and found
    /// by [`Store::sealed_keys`]. Nothing is at rest in the memory store: nothing to do.
    async fn reseal(&self) -> Result<Resealed> {
        Ok(Resealed::default())
    }

    /// How many stored values (objects and outbox) each key id seals.
    async fn sealed_keys(&self) -> Result<BTreeMap<String, u64>> {
        Ok(BTreeMap::new())
    }
}

/// What [`Store::reseal`] rewrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Objects (Secrets) sealed again.
    pub objects: u64,
    /// Outbox events sealed again.
    pub events: u64,
}

/// Rows read per page when resealing.
const RESEAL_PAGE: i64 = 256;

/// A sealed value of `key` sealed with the primary key, or `None` if it already is.
fn reseal_value(
    keyring: Option<&Keyring>,
    key: &ObjectKey,
    sealed: &[u8],
) -> Result<Option<Vec<u8>>> {
    let keyring =
        keyring.ok_or_else(|| StoreError::crypto("no encryption key configured for Secrets"))?;
    keyring.reseal(sealed, aad(key).as_bytes())
}

/// Counts a sealed value's key id (its first bytes are enough).
fn count_key(counts: &mut BTreeMap<String, u64>, prefix: &[u8]) {
    let id = Keyring::key_id_of(prefix).unwrap_or("(unreadable)");
    *counts.entry(id.to_string()).or_default() += 1;
}

/// Opens a store from a URL: `sqlite://path`, `postgres://…`, `memory://`; its operations
/// are measured ([`Measured`]).
pub async fn open(url: &str, keyring: Option<Arc<Keyring>>) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(url, keyring).await?)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Arc::new(PostgresStore::open(url, keyring).await?)
    } else if url.starts_with("memory:") {
        Arc::new(MemoryStore::new())
    } else {
        return Err(StoreError::config(format!(
            "unsupported store URL {url:?}: expected sqlite://, postgres:// or memory://"
        )));
    };
    Ok(Arc::new(Measured::new(store)))
}

/// Runs the migrations of a store URL and returns the names applied.
pub async fn migrate(url: &str) -> Result<()> {
    if url.starts_with("sqlite:") {
        SqliteStore::open(url, None).await.map(|_| ())
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        PostgresStore::open(url, None).await.map(|_| ())
    } else {
        Ok(())
    }
}

/// Converts libpq keyword/value parameters (`POSTGRES_PARAMS="user=postgres dbname=x
/// host=localhost sslmode=disable"`, as in the seed) to a `postgres://` URL.
pub fn postgres_url_from_params(params: &str) -> Result<String> {
    let mut user = String::new();
    let mut password = String::new();
    let mut host = "localhost".to_string();
    let mut port = "5432".to_string();
    let mut dbname = String::new();
    let mut extra = Vec::new();
    for part in params.split_whitespace() {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            StoreError::config(format!("POSTGRES_PARAMS: expected key=value, got {part:?}"))
        })?;
        let v = v.trim_matches('\'');
        match k {
            "user" => user = v.into(),
            "password" => password = v.into(),
            "host" => host = v.into(),
            "port" => port = v.into(),
            "dbname" => dbname = v.into(),
            "sslmode" | "application_name" | "connect_timeout" => extra.push(format!("{k}={v}")),
            other => {
                return Err(StoreError::config(format!(
                    "POSTGRES_PARAMS: unsupported key {other:?}"
                )));
            }
        }
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let auth = match (user.is_empty(), password.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!("{}@", enc(&user)),
        (false, false) => format!("{}:{}@", enc(&user), enc(&password)),
    };
    let query = if extra.is_empty() {
        String::new()
    } else {
        format!("?{}", extra.join("&"))
    };
    Ok(format!(
        "postgres://{auth}{host}:{port}/{}{query}",
        enc(&dbname)
    ))
}

/// Labels of an object as a map.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.resourceVersion`.
fn with_rv(mut object: Value, rv: u64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
    object
}

/// The object's JSON as stored: without resourceVersion.
fn storable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    o
}

/// The form of an object in a database row: JSON plus, for Secrets, the sealed object.
struct Row {
    data: Value,
    sealed: Option<Vec<u8>>,
}

fn seal(keyring: Option<&Keyring>, key: &ObjectKey, object: &Value) -> Result<Row> {
    let data = storable(object);
    if !key.is_secret() {
        return Ok(Row { data, sealed: None });
    }
    let keyring =
        keyring.ok_or_else(|| StoreError::crypto("no encryption key configured for Secrets"))?;
    let plaintext = serde_json::to_vec(&data).map_err(StoreError::corrupt)?;
    let sealed = keyring.seal(&plaintext, aad(key).as_bytes())?;
    // Only what listing needs stays readable: identity and labels.
    let meta = &data["metadata"];
    let stub = serde_json::json!({
        "apiVersion": data["apiVersion"], "kind": data["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"]}
    });
    Ok(Row {
        data: stub,
        sealed: Some(sealed),
    })
}

/// Opens an outbox event with a keyring.
fn open_event(keyring: Option<&Keyring>, event: &OutboxEvent) -> Result<ChangeEvent> {
    let object = unseal(
        keyring,
        &event.key,
        event.data.clone(),
        event.sealed.as_deref(),
        event.rv,
    )?;
    Ok(ChangeEvent {
        rv: event.rv,
        kind: event.kind,
        key: event.key.clone(),
        object,
        prev_labels: event.prev_labels.clone(),
    })
}

fn unseal(
    keyring: Option<&Keyring>,
    key: &ObjectKey,
    data: Value,
    sealed: Option<&[u8]>,
    rv: u64,
) -> Result<Value> {
    let object = match sealed {
        None => data,
        Some(bytes) => {
            let keyring = keyring
                .ok_or_else(|| StoreError::crypto("no encryption key configured for Secrets"))?;
            let plain = keyring.open(bytes, aad(key).as_bytes())?;
            serde_json::from_slice(&plain).map_err(StoreError::corrupt)?
        }
    };
    Ok(with_rv(object, rv))
}

/// The key of an SQL row with `cluster`, `resource`, `namespace` and `name` columns.
fn row_key<R>(r: &R) -> ObjectKey
where
    R: sqlx::Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    ObjectKey {
        cluster: r.get("cluster"),
        resource: r.get("resource"),
        namespace: r.get("namespace"),
        name: r.get("name"),
    }
}

/// The rows of an SQL backend's [`Store::get_many`] statement, each with the `position` of
/// its key, in the order of `keys` (`None` where no row came), each decoded by `decode`.
fn placed<R>(
    keys: &[ObjectKey],
    rows: Vec<R>,
    decode: impl Fn(ObjectKey, &R) -> Result<Stored>,
) -> Result<Vec<Option<Stored>>>
where
    R: sqlx::Row,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let mut found = vec![None; keys.len()];
    for r in rows {
        let i = usize::try_from(r.get::<i64, _>("position"))
            .ok()
            .filter(|i| *i < keys.len())
            .ok_or_else(|| StoreError::corrupt("a read returned an unknown position"))?;
        found[i] = Some(decode(keys[i].clone(), &r)?);
    }
    Ok(found)
}

/// The page an SQL backend's list statement returned: rows of `namespace`, `name`, `data`,
/// `sealed` and `rv`, one more than the limit when there are more.
fn list_page<R>(keyring: Option<&Keyring>, q: &ListQuery, rows: Vec<R>, rv: u64) -> Result<ListPage>
where
    R: sqlx::Row,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let more = q.limit.is_some_and(|l| rows.len() > l);
    let items = rows
        .iter()
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|r| {
            let key = ObjectKey::new(&q.cluster, &q.resource, r.get("namespace"), r.get("name"));
            let rv: i64 = r.get("rv");
            raw_object(keyring, key, r.get("data"), r.get("sealed"), rv as u64)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ListPage { items, rv, more })
}

/// A listed row as JSON text with its resourceVersion: Secrets are opened, nothing is parsed.
fn raw_object(
    keyring: Option<&Keyring>,
    key: ObjectKey,
    data: &str,
    sealed: Option<&[u8]>,
    rv: u64,
) -> Result<RawObject> {
    let opened;
    let text = match sealed {
        None => data,
        Some(bytes) => {
            let keyring = keyring
                .ok_or_else(|| StoreError::crypto("no encryption key configured for Secrets"))?;
            opened = String::from_utf8(keyring.open(bytes, aad(&key).as_bytes())?)
                .map_err(StoreError::corrupt)?;
            &opened
        }
    };
    let json = rawjson::with_resource_version(text, rv).ok_or_else(|| {
        StoreError::corrupt(format!(
            "stored object {}/{} has no metadata",
            key.namespace, key.name
        ))
    })?;
    Ok(RawObject {
        rv,
        namespace: key.namespace,
        name: key.name,
        json,
    })
}

fn aad(key: &ObjectKey) -> String {
    format!(
        "{}/{}/{}/{}",
        key.cluster, key.resource, key.namespace, key.name
    )
}

/// The key of the Namespace object a namespaced key lives in.
fn namespace_key(key: &ObjectKey) -> ObjectKey {
    ObjectKey::new(&key.cluster, "namespaces", "", &key.namespace)
}

/// Whether a (namespace, name) passes the name/namespace requirements.
/// Whether an object's namespace and name pass field requirements.
pub fn fields_match(fields: &[FieldMatch], namespace: &str, name: &str) -> bool {
    fields.iter().all(|f| {
        let actual = match f.field {
            MetaField::Name => name,
            MetaField::Namespace => namespace,
        };
        (actual == f.value) != f.negated
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_params() {
        assert!(postgres_url_from_params("user=postgres password=hello world").is_err());
        assert_eq!(
            postgres_url_from_params(
                "user=postgres password=helloworld dbname=syncsets sslmode=disable host=localhost"
            )
            .unwrap(),
            "postgres://postgres:helloworld@localhost:5432/syncsets?sslmode=disable"
        );
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let database = StoreError::Database(sqlx::Error::PoolTimedOut);
        let shown = Chain(&database).to_string();
        assert_eq!(
            shown,
            format!("database error: {}", sqlx::Error::PoolTimedOut)
        );
        // One failed commit fails every write it carried, each with the cause.
        let batch = StoreError::WriteFailed(Arc::new(database));
        assert_eq!(Chain(&batch).to_string(), format!("write failed: {shown}"));
        let corrupt = StoreError::corrupt(serde_json::from_str::<Value>("{").unwrap_err());
        let text = Chain(&corrupt).to_string();
        assert!(
            text.starts_with("corrupt stored data: EOF while parsing"),
            "{text}"
        );
        assert!(std::error::Error::source(&corrupt).is_some());
        // A cause that already says its own cause's message is not followed by it again.
        #[derive(Debug, thiserror::Error)]
        #[error("returned: {0}")]
        struct Says(#[source] std::io::Error);
        let says = StoreError::write_failed(Says(std::io::Error::other("disk full")));
        assert_eq!(
            Chain(&says).to_string(),
            "write failed: returned: disk full"
        );
    }
}
