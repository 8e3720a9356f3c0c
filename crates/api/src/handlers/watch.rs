//! `GET …?watch=true`: a stream of watch events (`{"type": …, "object": …}` per line).
//!
//! ```text
//!  subscribe to the hub ─▶ [initial state as ADDED (+ BOOKMARK initial-events-end)]
//!        │               ─▶ catch up from the outbox after the start version
//!        └─────────────────▶ live events from the hub, skipping what was sent
//! ```
//!
//! Start version, as Kubernetes: unset → the current state, then changes; `0` → the same
//! (any state will do); `N` → every change after N, or 410 Gone when N was compacted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use syncsets_machinery::table::{self, IncludeObject};
use syncsets_store::{EventType, ListQuery, fields_match, labels_of};
use tokio::sync::mpsc;

use super::Ctx;
use super::list::{self, Fields};
use crate::error::{ApiError, ApiResult};
use crate::hub::{HubEvent, Subscription};
use crate::negotiate::Output;

/// Longest a watch runs without `timeoutSeconds` (or with 0; kube-apiserver: 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Starts a watch.
pub(crate) async fn watch(ctx: &Ctx) -> ApiResult<Response> {
    let fields = list::fields(ctx)?;
    let (mut q, _) = list::store_query(ctx, &fields)?;
    q.limit = None;
    q.after = None;
    let rv = &ctx.query.resource_version;
    let start = match rv.as_str() {
        "" | "0" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {n:?}")))?,
        ),
    };
    let initial = match ctx.query.send_initial_events {
        Some(send) => {
            if send && ctx.query.resource_version_match != "NotOlderThan" {
                return Err(invalid_options(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if send && !ctx.query.allow_watch_bookmarks {
                return Err(invalid_options(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
            send
        }
        None => start.is_none(),
    };
    let hub = &ctx.state.hub;
    let events = hub.subscribe(&q.cluster, &q.resource, q.namespace.as_deref());
    if let Some(n) = start {
        check_not_compacted(ctx, n).await?;
    }
    // As kube-apiserver: `timeoutSeconds=0` is no timeout asked for, not one of zero.
    let timeout = ctx
        .query
        .timeout_seconds
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let watch = Watch {
        ctx: ctx.clone(),
        fields,
        query: q,
        sent: start.unwrap_or(0),
        listed: HashMap::new(),
        headers_sent: false,
        tx,
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, watch.run(events, start, initial)).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = StatusCode::OK;
    let content_type = match ctx.output {
        Output::Table | Output::Metadata | Output::Json | Output::Yaml => "application/json",
    };
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(res)
}

fn invalid_options(field: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        "ListOptions.meta.k8s.io",
        "meta.k8s.io",
        "ListOptions",
        "",
        &[syncsets_machinery::FieldError::forbidden(field, detail)],
    )
}

async fn check_not_compacted(ctx: &Ctx, rv: u64) -> ApiResult<()> {
    let state = ctx
        .state
        .store
        .outbox_state()
        .await
        .map_err(|e| ApiError::internal("reading the outbox state", &e))?;
    if rv < state.compacted {
        return Err(too_old(rv));
    }
    Ok(())
}

fn too_old(rv: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rv} (compacted)"))
}

/// Why a watch stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// The watch cannot go on; the client is told with an ERROR event.
    Error(ApiError),
}

struct Watch {
    ctx: Ctx,
    fields: Fields,
    query: ListQuery,
    /// The last resourceVersion sent (or the start).
    sent: u64,
    /// Objects sent in the initial state, at their versions: a list may include changes
    /// committed after its resourceVersion, and those are not sent again.
    listed: HashMap<(String, String), u64>,
    headers_sent: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Watch {
    async fn run(mut self, mut events: Subscription, start: Option<u64>, initial: bool) {
        if let Err(Stop::Error(e)) = self.stream(&mut events, start, initial).await {
            let _ = self.send_line("ERROR", e.status()).await;
        }
    }

    async fn stream(
        &mut self,
        events: &mut Subscription,
        start: Option<u64>,
        initial: bool,
    ) -> Result<(), Stop> {
        let store = self.ctx.state.store.clone();
        if initial || start.is_none() {
            self.initial_state(initial).await?;
        }
        // Catch up from the outbox on what the hub passed on before this watch subscribed
        // (up to its position, read after subscribing); the rest arrives by subscription.
        let from = self.sent;
        let target = self.ctx.state.hub.position();
        'catch_up: while self.sent < target {
            let batch = store
                .events_after(self.sent, 1024)
                .await
                .map_err(|e| Stop::Error(ApiError::internal("reading change events", &e)))?;
            if batch.is_empty() {
                break;
            }
            for event in batch {
                if event.rv > target {
                    break 'catch_up;
                }
                self.deliver(&HubEvent::new(event)).await?;
            }
        }
        // Compaction may have raced with the read.
        if self
            .ctx
            .state
            .store
            .outbox_state()
            .await
            .is_ok_and(|s| from < s.compacted)
        {
            return Err(Stop::Error(too_old(from)));
        }
        let bookmarks = self.ctx.query.allow_watch_bookmarks;
        let mut tick = tokio::time::interval(self.ctx.state.config.bookmark_interval);
        tick.tick().await;
        let state = self.ctx.state.clone();
        let draining = state.watches_ended();
        tokio::pin!(draining);
        loop {
            tokio::select! {
                // The server is stopping: end the watch as a timeout would; the client
                // resumes from the last version it saw, on another server.
                () = &mut draining => return Ok(()),
                event = events.recv() => match event {
                    Some(event) => self.deliver(&event).await?,
                    // Fell too far behind (or the server is stopping): end the watch; the
                    // client resumes from the last version it saw.
                    None => return Ok(()),
                },
                _ = tick.tick(), if bookmarks => {
                    let at = self.ctx.state.hub.position().max(self.sent);
                    self.bookmark(at, false).await?;
                }
                _ = self.tx.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// Sends the current state as ADDED events (when `send`; else only finds where changes
    /// follow from), read from one snapshot of the store a page at a time: the first lines
    /// leave while later pages are read. Changes follow the first page's resourceVersion
    /// (objects changed since, up to the snapshot, are sent as they are, their older events
    /// skipped).
    async fn initial_state(&mut self, send: bool) -> Result<(), Stop> {
        let store = self.ctx.state.store.clone();
        let listing = |e: &syncsets_store::StoreError| {
            Stop::Error(ApiError::internal("listing for a watch", e))
        };
        if !send {
            let mut q = self.query.clone();
            q.limit = Some(1);
            self.sent = store.list(&q).await.map_err(|e| listing(&e))?.rv;
            return Ok(());
        }
        // Read ahead as fast as the store answers, up to 1,024 pages (half a million
        // objects) ahead of the client: below that, a slow client holds no snapshot open.
        let (pages_tx, mut pages) = mpsc::channel(1024);
        let q = self.query.clone();
        let page = self.ctx.state.config.initial_events_page;
        tokio::spawn(async move { store.list_pages(&q, page, &pages_tx).await });
        // Stored JSON goes out as it is when nothing asks for a conversion or a filter.
        let raw = matches!(self.ctx.output, Output::Json | Output::Yaml)
            && self.fields.other.is_empty()
            && self.ctx.kind.version == self.ctx.kind.storage_version;
        let mut rv = None;
        let mut more = true;
        while let Some(page) = pages.recv().await {
            let page = page.map_err(|e| listing(&e))?;
            more = page.more;
            let rv = *rv.get_or_insert(page.rv);
            self.sent = rv;
            let mut lines = Vec::new();
            for item in &page.items {
                if item.rv > rv {
                    self.listed
                        .insert((item.namespace.clone(), item.name.clone()), item.rv);
                }
                if raw {
                    lines.extend_from_slice(b"{\"type\":\"ADDED\",\"object\":");
                    lines.extend_from_slice(item.json.as_bytes());
                    lines.extend_from_slice(b"}\n");
                    if lines.len() >= 64 * 1024 {
                        self.send_bytes(std::mem::take(&mut lines)).await?;
                    }
                    continue;
                }
                let stored = item
                    .parse()
                    .map_err(|e| Stop::Error(ApiError::internal("reading objects", &e)))?;
                let obj = self.ctx.served(stored.object);
                if self.fields.matches(&obj) {
                    self.send_object("ADDED", obj).await?;
                }
            }
            if !lines.is_empty() {
                self.send_bytes(lines).await?;
            }
        }
        let rv = rv.filter(|_| !more).ok_or_else(|| {
            Stop::Error(ApiError::internal(
                "listing for a watch",
                &std::io::Error::other("the store's list ended before its last page"),
            ))
        })?;
        if self.ctx.query.send_initial_events == Some(true) {
            self.bookmark(rv, true).await?;
        }
        Ok(())
    }

    async fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.tx
            .send(Bytes::from(bytes))
            .await
            .map_err(|_| Stop::Gone)
    }

    /// Sends an event if it is new and passes the filters.
    async fn deliver(&mut self, hub_event: &HubEvent) -> Result<(), Stop> {
        let event = &hub_event.event;
        if event.rv <= self.sent {
            return Ok(());
        }
        self.sent = event.rv;
        let key = &event.key;
        if !self.listed.is_empty()
            && let Some(listed) = self.listed.get(&(key.namespace.clone(), key.name.clone()))
            && event.rv <= *listed
        {
            return Ok(());
        }
        let q = &self.query;
        if key.cluster != q.cluster
            || key.resource != q.resource
            || q.namespace.as_ref().is_some_and(|ns| *ns != key.namespace)
            || !fields_match(&q.fields, &key.namespace, &key.name)
        {
            return Ok(());
        }
        let now = q.labels.matches(&labels_of(&event.object));
        let before = match (&event.kind, &event.prev_labels) {
            (EventType::Modified, Some(prev)) => q.labels.matches(prev),
            _ => now,
        };
        let kind = match (event.kind, before, now) {
            (_, false, false) => return Ok(()),
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (kind, _, _) => kind,
        };
        if !self.fields.matches(&event.object) {
            return Ok(());
        }
        let as_stored = event.object["apiVersion"].as_str() == Some(&self.ctx.kind.api_version());
        if as_stored && matches!(self.ctx.output, Output::Json | Output::Yaml) {
            // The common case: one line made once, sent to every watch.
            return self
                .tx
                .send(hub_event.line(kind))
                .await
                .map_err(|_| Stop::Gone);
        }
        let obj = self.ctx.served(event.object.clone());
        self.send_object(kind.as_str(), obj).await
    }

    async fn send_object(&mut self, kind: &str, obj: Value) -> Result<(), Stop> {
        let object = match self.ctx.output {
            Output::Table => {
                let include = IncludeObject::parse(&self.ctx.query.include_object)
                    .map_err(|e| Stop::Error(ApiError::from_machinery(e, &self.ctx.kind, "")))?;
                let rv = obj["metadata"]["resourceVersion"].clone();
                let headers = !std::mem::replace(&mut self.headers_sent, true);
                table::render(
                    &self.ctx.kind,
                    &[obj],
                    include,
                    json!({"resourceVersion": rv}),
                    headers,
                    jiff::Timestamp::now(),
                )
            }
            Output::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }),
            Output::Json | Output::Yaml => obj,
        };
        self.send_line(kind, object).await
    }

    async fn bookmark(&mut self, rv: u64, initial_events_end: bool) -> Result<(), Stop> {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.ctx.output {
            Output::Table => json!({
                "kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": [], "rows": []
            }),
            _ => json!({
                "kind": self.ctx.kind.kind,
                "apiVersion": self.ctx.kind.api_version(),
                "metadata": metadata,
            }),
        };
        self.send_line("BOOKMARK", object).await
    }

    async fn send_line(&self, kind: &str, object: Value) -> Result<(), Stop> {
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON serialises");
        line.push(b'\n');
        self.send_bytes(line).await
    }
}
