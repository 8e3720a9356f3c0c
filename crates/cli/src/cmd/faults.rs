//! Faults of simulated clusters, for trying the controllers' backoff, circuit breaker and
//! status against what real fleets do: set with `fleet-sim --fault`, and changed while it
//! runs on the member server's `/fleet-sim/faults` (kubectl's `--raw` works).
//!
//! ```text
//!   /clusters/sim-00007/… ─▶ sim-00007's fault ─┬─ unreachable       connection closed, no answer
//!                                              ├─ latency           every answer later by this
//!                                              ├─ discoveryLatency  /api, /apis…, /version, /openapi later still
//!                                              ├─ throttleRate      this share answered 429 (Retry-After: 1)
//!                                              ├─ errorRate         this share answered 500
//!                                              └─ served
//!
//!   GET    /fleet-sim/faults             every cluster's fault, by name
//!   GET    /fleet-sim/faults/{cluster}   one cluster's ({} when it has none)
//!   PUT    /fleet-sim/faults/{cluster}   sets it, replacing the one before (POST too)
//!   DELETE /fleet-sim/faults/{cluster}   clears it;  DELETE /fleet-sim/faults  clears all
//! ```
//!
//! A fault is JSON: `{"unreachable": true}`, `{"latency": "200ms", "errorRate": 0.1}`, …;
//! on the command line `--fault <clusters>:<faults>`, where `<clusters>` is a cluster's
//! name, `all`, or a share of the fleet (`10%`: every tenth cluster), and `<faults>` is
//! `unreachable`, `latency=200ms`, `discovery-latency=2s`, `errors=10%`, `throttle=5%`,
//! comma-separated.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use syncsets_api::ApiError;

/// Longest latency a fault may add: the simulator answers, if late.
const MAX_LATENCY: Duration = Duration::from_secs(600);

/// What a simulated cluster does wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Every request's connection is closed without an answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
    /// Added before every answer (a Go duration: `200ms`).
    #[serde(default, with = "go_duration", skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Added, besides `latency`, before discovery answers (`/api`, `/apis…`, `/version`,
    /// `/openapi…`).
    #[serde(default, with = "go_duration", skip_serializing_if = "Option::is_none")]
    pub discovery_latency: Option<Duration>,
    /// The share of requests answered 500 Internal Server Error (0 to 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error_rate: f64,
    /// The share of requests answered 429 Too Many Requests (0 to 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttle_rate: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Fault {
    /// Why this fault cannot be used, if it cannot.
    fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("errorRate", self.error_rate),
            ("throttleRate", self.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: must be between 0 and 1, not {rate}"));
            }
        }
        if self.error_rate + self.throttle_rate > 1.0 {
            return Err(format!(
                "errorRate + throttleRate: must be at most 1, not {}",
                self.error_rate + self.throttle_rate
            ));
        }
        for (name, d) in [
            ("latency", self.latency),
            ("discoveryLatency", self.discovery_latency),
        ] {
            if d.is_some_and(|d| d > MAX_LATENCY) {
                return Err(format!("{name}: must be at most 10m"));
            }
        }
        Ok(())
    }

    fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// Parses `unreachable,latency=200ms,errors=10%` (the command line's form).
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut fault = Self::default();
        for part in text.split(',').map(str::trim) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let duration = || {
                crate::controller_args::parse_duration(value)
                    .with_context(|| format!("fault {name}"))
            };
            let share = || parse_share(value).with_context(|| format!("fault {name}"));
            match (name, value.is_empty()) {
                ("unreachable", true) => fault.unreachable = true,
                ("latency", false) => fault.latency = Some(duration()?),
                ("discovery-latency", false) => fault.discovery_latency = Some(duration()?),
                ("errors", false) => fault.error_rate = share()?,
                ("throttle", false) => fault.throttle_rate = share()?,
                _ => bail!(
                    "unknown fault {part:?}: use unreachable, latency=<duration>, \
                     discovery-latency=<duration>, errors=<share> or throttle=<share>"
                ),
            }
        }
        fault.check().map_err(anyhow::Error::msg)?;
        Ok(fault)
    }
}

/// `10%` or `0.1`.
fn parse_share(text: &str) -> anyhow::Result<f64> {
    let share = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    }
    .ok()
    .filter(|s| (0.0..=1.0).contains(s));
    share.with_context(|| format!("{text:?} is not a share: use e.g. 10% or 0.1"))
}

/// `--fault <clusters>:<faults>`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultArg {
    clusters: Selector,
    fault: Fault,
}

#[derive(Clone, Debug, PartialEq)]
enum Selector {
    All,
    /// Evenly spread: cluster `i` when ⌊(i+1)·share⌋ > ⌊i·share⌋.
    Share(f64),
    Named(String),
}

impl Selector {
    fn selects(&self, i: usize, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Share(s) => ((i + 1) as f64 * s).floor() > (i as f64 * s).floor(),
            Self::Named(n) => n == name,
        }
    }
}

impl std::str::FromStr for FaultArg {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (clusters, faults) = text.split_once(':').with_context(|| {
            format!("{text:?}: expected <clusters>:<faults>, e.g. 10%:unreachable")
        })?;
        let clusters = match clusters.trim() {
            "all" => Selector::All,
            s if s.ends_with('%') => Selector::Share(parse_share(s)?),
            name => Selector::Named(name.to_string()),
        };
        Ok(Self {
            clusters,
            fault: Fault::parse(faults)?,
        })
    }
}

/// The faults of a member server's simulated clusters.
#[derive(Debug)]
pub struct Faults {
    /// Names of the clusters simulated: `prefix-00000` … (`count` of them).
    prefix: String,
    count: usize,
    by_cluster: RwLock<BTreeMap<String, Fault>>,
}

impl Faults {
    /// No faults yet, for clusters `prefix-00000` … `prefix-{count - 1}`; then those of
    /// `args`, later ones replacing earlier ones.
    pub fn new(prefix: &str, count: usize, args: &[FaultArg]) -> anyhow::Result<Arc<Self>> {
        let faults = Self {
            prefix: prefix.to_string(),
            count,
            by_cluster: RwLock::default(),
        };
        {
            let mut by_cluster = faults.by_cluster.write().expect("faults lock");
            for arg in args {
                if let Selector::Named(name) = &arg.clusters
                    && !faults.simulates(name)
                {
                    bail!(
                        "--fault {name}: not a simulated cluster ({})",
                        faults.names()
                    );
                }
                for i in 0..count {
                    let name = faults.name(i);
                    if arg.clusters.selects(i, &name) {
                        by_cluster.insert(name, arg.fault);
                    }
                }
            }
            by_cluster.retain(|_, f| !f.is_none());
        }
        Ok(Arc::new(faults))
    }

    fn name(&self, i: usize) -> String {
        super::fleet_sim::cluster_name(&self.prefix, i)
    }

    fn names(&self) -> String {
        match self.count {
            0 => "none are".into(),
            1 => format!("{} is the only one", self.name(0)),
            n => format!("they are {} to {}", self.name(0), self.name(n - 1)),
        }
    }

    fn simulates(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|i| i < self.count && self.name(i) == name)
    }

    fn get(&self, cluster: &str) -> Option<Fault> {
        self.by_cluster
            .read()
            .expect("faults lock")
            .get(cluster)
            .copied()
    }

    /// The member's routes with the faults applied, and the routes that change them.
    pub fn wrap(self: &Arc<Self>, member: Router) -> Router {
        let admin = Router::new()
            .route(
                "/fleet-sim/faults",
                axum::routing::get(list).delete(clear_all),
            )
            .route(
                "/fleet-sim/faults/{cluster}",
                axum::routing::get(show).put(set).post(set).delete(clear),
            )
            .with_state(self.clone());
        member
            .layer(axum::middleware::from_fn_with_state(self.clone(), inject))
            .merge(admin)
    }
}

/// `/clusters/{name}/{rest}` → (name, rest).
fn cluster_of(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/clusters/")?;
    Some(match rest.split_once('/') {
        Some((name, rest)) => (name, rest),
        None => (rest, ""),
    })
}

/// Whether a cluster-relative path is discovery.
fn is_discovery(rest: &str) -> bool {
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
            | ["version"]
            | ["openapi", ..]
    )
}

async fn inject(State(faults): State<Arc<Faults>>, request: Request, next: Next) -> Response {
    let Some((fault, discovery)) = cluster_of(request.uri().path())
        .and_then(|(name, rest)| faults.get(name).map(|f| (f, is_discovery(rest))))
    else {
        return next.run(request).await;
    };
    if fault.unreachable {
        let mut response = Response::new(Body::empty());
        response
            .extensions_mut()
            .insert(syncsets_api::serve::DropConnection);
        return response;
    }
    let mut delay = fault.latency.unwrap_or_default();
    if discovery {
        delay += fault.discovery_latency.unwrap_or_default();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let draw = fastrand::f64();
    if draw < fault.throttle_rate {
        return ApiError::too_many_requests(
            "the server has received too many requests and has asked us to try again later \
             (a simulated fault)",
            1,
        )
        .into_response();
    }
    if draw < fault.throttle_rate + fault.error_rate {
        return ApiError::status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: a simulated fault",
        )
        .into_response();
    }
    next.run(request).await
}

fn unknown_cluster(faults: &Faults, name: &str) -> ApiError {
    ApiError::status_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "{name:?} is not a cluster this server simulates: {}",
            faults.names()
        ),
    )
}

async fn list(State(faults): State<Arc<Faults>>) -> Response {
    let by_cluster = faults.by_cluster.read().expect("faults lock").clone();
    axum::Json(by_cluster).into_response()
}

async fn show(State(faults): State<Arc<Faults>>, Path(cluster): Path<String>) -> Response {
    if !faults.simulates(&cluster) {
        return unknown_cluster(&faults, &cluster).into_response();
    }
    axum::Json(faults.get(&cluster).unwrap_or_default()).into_response()
}

async fn set(
    State(faults): State<Arc<Faults>>,
    Path(cluster): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !faults.simulates(&cluster) {
        return unknown_cluster(&faults, &cluster).into_response();
    }
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return ApiError::bad_request(format!(
                "a fault is {{\"unreachable\", \"latency\", \"discoveryLatency\", \"errorRate\", \"throttleRate\"}}: {e}"
            ))
            .into_response();
        }
    };
    if let Err(e) = fault.check() {
        return ApiError::status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("the fault of {cluster} is invalid: {e}"),
        )
        .into_response();
    }
    let mut by_cluster = faults.by_cluster.write().expect("faults lock");
    if fault.is_none() {
        by_cluster.remove(&cluster);
    } else {
        by_cluster.insert(cluster, fault);
    }
    axum::Json(fault).into_response()
}

async fn clear(State(faults): State<Arc<Faults>>, Path(cluster): Path<String>) -> Response {
    if !faults.simulates(&cluster) {
        return unknown_cluster(&faults, &cluster).into_response();
    }
    let was = faults
        .by_cluster
        .write()
        .expect("faults lock")
        .remove(&cluster);
    axum::Json(was.unwrap_or_default()).into_response()
}

async fn clear_all(State(faults): State<Arc<Faults>>) -> Response {
    let was = std::mem::take(&mut *faults.by_cluster.write().expect("faults lock"));
    axum::Json(was).into_response()
}

/// `Option<Duration>` as a Go duration string (`200ms`, `2s`, `1m30s`).
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&render(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        syncsets_api::parse_go_duration(&text)
            .map(Some)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}: expected e.g. 200ms, 2s or 1m30s"
                ))
            })
    }

    /// Whole minutes and seconds as `1m30s`, anything finer in milliseconds.
    pub fn render(d: Duration) -> String {
        let ms = d.as_millis();
        if !ms.is_multiple_of(1000) || ms == 0 {
            return format!("{ms}ms");
        }
        let (m, s) = (ms / 60_000, ms / 1000 % 60);
        match (m, s) {
            (0, s) => format!("{s}s"),
            (m, 0) => format!("{m}m"),
            (m, s) => format!("{m}m{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_form() {
        let arg: FaultArg = "10%:unreachable".parse().unwrap();
        assert_eq!(arg.clusters, Selector::Share(0.1));
        assert!(arg.fault.unreachable);
        let arg: FaultArg = "sim-00003:latency=200ms,errors=30%,throttle=0.2,discovery-latency=1s"
            .parse()
            .unwrap();
        assert_eq!(arg.clusters, Selector::Named("sim-00003".into()));
        assert_eq!(
            arg.fault,
            Fault {
                unreachable: false,
                latency: Some(Duration::from_millis(200)),
                discovery_latency: Some(Duration::from_secs(1)),
                error_rate: 0.3,
                throttle_rate: 0.2,
            }
        );
        for bad in [
            "unreachable",
            "all:down",
            "all:errors=150%",
            "all:errors=60%,throttle=50%",
            "all:latency=soon",
            "all:latency=11m",
            "all:unreachable=yes",
            "x%:unreachable",
        ] {
            assert!(bad.parse::<FaultArg>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_share_selects_that_many_clusters_spread_evenly() {
        let args = ["10%:unreachable".parse().unwrap()];
        let faults = Faults::new("sim", 100, &args).unwrap();
        let down: Vec<String> = faults.by_cluster.read().unwrap().keys().cloned().collect();
        assert_eq!(down.len(), 10);
        assert_eq!(down[0], "sim-00009");
        assert_eq!(down[9], "sim-00099");
        // Later arguments replace earlier ones; an empty fault is none.
        let args = [
            "all:latency=1s".parse().unwrap(),
            "sim-00001:errors=0".parse().unwrap(),
        ];
        let faults = Faults::new("sim", 3, &args).unwrap();
        assert_eq!(faults.by_cluster.read().unwrap().len(), 2);
        assert!(faults.get("sim-00001").is_none());
        assert!(Faults::new("sim", 3, &["sim-00003:unreachable".parse().unwrap()]).is_err());
    }

    #[test]
    fn knows_its_clusters_and_discovery() {
        let faults = Faults::new("sim", 12, &[]).unwrap();
        assert!(faults.simulates("sim-00011"));
        for name in [
            "sim-00012",
            "sim-0001",
            "sim-000011",
            "other-00001",
            "sim00001",
        ] {
            assert!(!faults.simulates(name), "{name}");
        }
        assert_eq!(
            cluster_of("/clusters/sim-00001/api/v1"),
            Some(("sim-00001", "api/v1"))
        );
        assert_eq!(cluster_of("/api"), None);
        for d in [
            "api",
            "api/v1",
            "apis",
            "apis/apps/v1",
            "version",
            "openapi/v3/apis/apps/v1",
        ] {
            assert!(is_discovery(d), "{d}");
        }
        for r in ["api/v1/namespaces", "apis/apps/v1/deployments"] {
            assert!(!is_discovery(r), "{r}");
        }
    }

    #[test]
    fn durations_round_trip_as_go_writes_them() {
        for (d, text) in [
            (200, "200ms"),
            (2000, "2s"),
            (90_000, "1m30s"),
            (120_000, "2m"),
        ] {
            let d = Duration::from_millis(d);
            assert_eq!(go_duration::render(d), text);
            assert_eq!(syncsets_api::parse_go_duration(text), Some(d));
        }
    }
}
