//! Request limits, applied after authentication and before authorization:
//!
//! - every request but a watch has a deadline (`--request-timeout`, shortened by the
//!   `timeout` query parameter kubectl's `--request-timeout` sends); past it the client gets
//!   504 `Timeout` while the handler runs to completion, as in kube-apiserver, so a write is
//!   never cut in half;
//! - each client (its user, or its address when anonymous) is held to a rate with bursts
//!   (`governor`'s GCRA, the token bucket's exact twin); beyond it the client gets 429
//!   `TooManyRequests` with `Retry-After`, which client-go and kubectl honour.
//!   Members of `system:masters` are exempt, as API Priority and Fairness exempts them, and so
//!   is everyone on a server without authentication (only its own process talks to it);
//! - each client holds at most so many watch streams at once (429 beyond).
//!
//! The body-size limit is enforced where bodies are read (`handlers`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use crate::authn::UserInfo;
use crate::tls::ConnInfo;
use crate::{ApiError, AppState};

/// Limits on what one client may ask of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Deadline of every request but watches (kube-apiserver: 60 s).
    pub request_timeout: Duration,
    /// Sustained requests per second per client (0: unlimited).
    pub client_qps: f64,
    /// Requests a client may send at once after being idle.
    pub client_burst: u32,
    /// Watch streams one client may hold open (0: unlimited).
    pub max_watches: usize,
    /// Connections: how many, and how long one may stay silent.
    pub connections: crate::serve::ConnectionLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            client_qps: 100.0,
            client_burst: 200,
            max_watches: 100,
            connections: crate::serve::ConnectionLimits::default(),
        }
    }
}

/// Clients tracked beyond which idle ones (back to a full burst) are forgotten.
const TRACKED_CLIENTS: usize = 10_000;

type ClientLimiter<C> = governor::RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    C,
    governor::middleware::NoOpMiddleware<<C as governor::clock::Clock>::Instant>,
>;

/// Per-client state of the limits.
pub struct Tracker<C: governor::clock::Clock = governor::clock::DefaultClock> {
    /// `None`: no rate limit.
    rates: Option<ClientLimiter<C>>,
    clock: C,
    watches: Arc<Mutex<HashMap<String, usize>>>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

impl Tracker {
    /// The state for these limits.
    pub fn new(limits: &Limits) -> Self {
        Self::with_clock(limits, governor::clock::DefaultClock::default())
    }
}

impl<C: governor::clock::Clock + Clone> Tracker<C> {
    fn with_clock(limits: &Limits, clock: C) -> Self {
        let rates = syncsets_retry::quota(limits.client_qps, limits.client_burst)
            .map(|q| governor::RateLimiter::new(q, Default::default(), clock.clone()));
        Self {
            rates,
            clock,
            watches: Arc::default(),
        }
    }

    /// Counts one request of `client`, or says how long until it may send one.
    fn take(&self, client: &str) -> Result<(), Duration> {
        let Some(rates) = &self.rates else {
            return Ok(());
        };
        if rates.len() >= TRACKED_CLIENTS {
            rates.retain_recent();
        }
        rates
            .check_key(&client.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Opens a watch slot for `client`, released when the guard is dropped.
    fn watch(&self, limits: &Limits, client: &str) -> Option<WatchSlot> {
        let mut watches = self.watches.lock().expect("watch counts");
        let open = watches.entry(client.to_string()).or_default();
        if limits.max_watches > 0 && *open >= limits.max_watches {
            return None;
        }
        *open += 1;
        Some(WatchSlot {
            watches: self.watches.clone(),
            client: client.to_string(),
        })
    }

    /// Watch streams `client` holds open.
    pub fn open_watches(&self, client: &str) -> usize {
        let watches = self.watches.lock().expect("watch counts");
        watches.get(client).copied().unwrap_or(0)
    }
}

/// One open watch stream of a client.
struct WatchSlot {
    watches: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watches = self.watches.lock().expect("watch counts");
        if let Some(open) = watches.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                watches.remove(&self.client);
            }
        }
    }
}

/// Who a request counts against: its user, or its address when anonymous.
fn client_of(request: &Request) -> (String, bool) {
    if let Some(user) = request.extensions().get::<UserInfo>()
        && !user.is_anonymous()
    {
        let exempt = user.groups.iter().any(|g| g == "system:masters");
        return (format!("user:{}", user.name), exempt);
    }
    let addr = request
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .map(|c| c.0.remote.ip().to_string())
        .unwrap_or_default();
    (format!("addr:{addr}"), false)
}

/// The request as the first middleware parsed it.
fn parsed(request: &Request) -> Option<&crate::request::Parsed> {
    request
        .extensions()
        .get::<Arc<crate::request::Parsed>>()
        .map(Arc::as_ref)
}

/// The deadline the request asks for with `?timeout=`, if shorter than the server's.
fn requested_timeout(request: &Request, limit: Duration) -> Duration {
    let asked = parsed(request)
        .and_then(|p| p.query.as_ref().ok())
        .and_then(|q| q.timeout);
    match asked {
        Some(d) if !d.is_zero() => d.min(limit),
        _ => limit,
    }
}

/// The middleware.
pub async fn limit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limits = &state.config.limits;
    let (client, exempt) = client_of(&request);
    let exempt = exempt || state.config.authenticator.is_none();
    if !exempt && let Err(wait) = state.limits.take(&client) {
        tracing::debug!(%client, "rate limited");
        return ApiError::too_many_requests(
            "Too many requests, please try again later.",
            wait.as_secs_f64().ceil() as u64,
        )
        .into_response();
    }
    if parsed(&request).is_some_and(|p| p.attributes.verb == "watch") {
        let Some(slot) = state.limits.watch(limits, &client) else {
            return ApiError::too_many_requests(
                format!(
                    "Too many watches: at most {} open watch streams per client",
                    limits.max_watches
                ),
                5,
            )
            .into_response();
        };
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        // The slot is held by the body's stream and released when the stream ends.
        let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }));
        return Response::from_parts(parts, body);
    }
    let deadline = requested_timeout(&request, limits.request_timeout);
    let mut handler = tokio::spawn(next.run(request));
    match tokio::time::timeout(deadline, &mut handler).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => ApiError::internal("handling the request", &e).into_response(),
        Err(_) => {
            tracing::warn!(%client, ?deadline, "request timed out");
            ApiError::timeout().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| crate::request::parse_go_duration(s);
        assert_eq!(d("30s"), Some(Duration::from_secs(30)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "s", "10", "10x", "-1s", "1s2", "ms10"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    fn tracker(qps: f64, burst: u32) -> (Tracker<FakeRelativeClock>, FakeRelativeClock) {
        let limits = Limits {
            client_qps: qps,
            client_burst: burst,
            ..Limits::default()
        };
        let clock = FakeRelativeClock::default();
        (Tracker::with_clock(&limits, clock.clone()), clock)
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let (t, clock) = tracker(10.0, 3);
        for _ in 0..3 {
            assert!(t.take("a").is_ok());
        }
        let wait = t.take("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(t.take("b").is_ok(), "each client has its own");
        clock.advance(Duration::from_millis(100));
        assert!(t.take("a").is_ok());
        assert!(t.take("a").is_err());
        let (unlimited, _) = tracker(0.0, 1);
        assert!((0..10_000).all(|_| unlimited.take("a").is_ok()));
    }

    #[test]
    fn idle_clients_are_forgotten_when_many_are_tracked() {
        let (t, clock) = tracker(1.0, 1);
        for i in 0..TRACKED_CLIENTS {
            t.take(&i.to_string()).unwrap();
        }
        clock.advance(Duration::from_secs(2));
        t.take("new").unwrap();
        assert_eq!(t.rates.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn watch_slots_are_counted_per_client_and_released() {
        let limits = Limits {
            max_watches: 2,
            ..Limits::default()
        };
        let t = Tracker::new(&limits);
        let a = t.watch(&limits, "a").unwrap();
        let _b = t.watch(&limits, "a").unwrap();
        assert!(t.watch(&limits, "a").is_none());
        assert!(t.watch(&limits, "other").is_some());
        drop(a);
        assert_eq!(t.open_watches("a"), 1);
        assert!(t.watch(&limits, "a").is_some());
    }
}
