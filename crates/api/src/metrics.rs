//! Prometheus metrics: recorded through the `metrics` facade by each component where things
//! happen, and served at `/metrics` in Prometheus' text format by the exporter this process
//! installed. Access is Kubernetes': `get` on the non-resource URL `/metrics`, which the
//! bootstrap `system:monitoring` ClusterRole grants to the group of that name, as
//! kube-apiserver's bootstrap policy does (and `cluster-admin` has everything).
//!
//! The API's own metrics use kube-apiserver's names and labels, so dashboards and alerts
//! written for it read them: `apiserver_request_total`, `apiserver_request_duration_seconds`,
//! `apiserver_current_inflight_requests`, `apiserver_longrunning_requests`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Label, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::rbac::Attributes;
use crate::request::{Parsed, Route};

/// kube-apiserver's request duration buckets (seconds).
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Buckets (seconds) of the other durations: reconciles, store and bus operations.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Hive's buckets (seconds) of its time-to-first-apply histograms.
const HIVE_FIRST_APPLY_BUCKETS: &[f64] = &[5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];

/// Histograms with buckets of their own: kube-apiserver's, and Hive's (so that dashboards
/// written for them read these).
const NAMED_BUCKETS: &[(&str, &[f64])] = &[
    ("apiserver_request_duration_seconds", REQUEST_BUCKETS),
    (
        "hive_syncsetinstance_apply_duration_seconds",
        &[0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0],
    ),
    (
        "hive_syncset_apply_duration_seconds",
        HIVE_FIRST_APPLY_BUCKETS,
    ),
    (
        "hive_selectorsyncset_apply_duration_seconds",
        HIVE_FIRST_APPLY_BUCKETS,
    ),
    (
        "hive_clustersync_first_success_duration_seconds",
        &[60.0, 300.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0],
    ),
];

/// How often histograms' samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs this process's Prometheus recorder (the first call does; later calls find it)
/// and describes the API's metrics. `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Every histogram is one (not a summary): these buckets, unless named below.
            let mut builder = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS)
                .ok()?;
            for (name, buckets) in NAMED_BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).into()), buckets)
                    .ok()?;
            }
            let handle = builder.install_recorder().ok()?;
            describe();
            // Histograms keep their samples until upkeep folds them into the buckets: done
            // here every few seconds, whether anyone scrapes or not.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "apiserver_request_total",
        "Counter of apiserver requests broken out for each verb, group, version, resource, subresource, scope, component and HTTP response code."
    );
    metrics::describe_histogram!(
        "apiserver_request_duration_seconds",
        metrics::Unit::Seconds,
        "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component (watches excluded)."
    );
    metrics::describe_gauge!(
        "apiserver_current_inflight_requests",
        "Requests being served now, by request kind (readOnly, mutating), watches excluded."
    );
    metrics::describe_gauge!(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component."
    );
}

/// `GET /metrics`: everything this process records, in Prometheus' text format.
pub async fn serve() -> Response {
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process",
        )
            .into_response();
    };
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The labels kube-apiserver gives a request: its verb as the metrics name it (`LIST`,
/// `WATCH`, else the HTTP method), group, version, resource, subresource, scope and
/// component. Made once per request, its strings shared (not copied) by every series it
/// is recorded in.
pub struct RequestLabels {
    labels: Vec<Label>,
    /// Mutating (for the in-flight gauge), else read-only.
    pub mutating: bool,
    /// A watch: long-running, left out of the duration histogram.
    pub long_running: bool,
}

/// A label value shared by every clone of it (`""` needs no allocation).
fn shared(value: &str) -> SharedString {
    if value.is_empty() {
        SharedString::const_str("")
    } else {
        SharedString::from_shared(Arc::from(value))
    }
}

impl RequestLabels {
    /// The labels of a parsed request.
    pub fn of(parsed: &Parsed, method: &axum::http::Method) -> Self {
        let a: &Attributes = &parsed.attributes;
        let verb = match a.verb.as_str() {
            "list" => "LIST",
            "watch" => "WATCH",
            _ => match *method {
                axum::http::Method::GET => "GET",
                axum::http::Method::HEAD => "HEAD",
                axum::http::Method::POST => "POST",
                axum::http::Method::PUT => "PUT",
                axum::http::Method::PATCH => "PATCH",
                axum::http::Method::DELETE => "DELETE",
                axum::http::Method::OPTIONS => "OPTIONS",
                _ => "OTHER",
            },
        };
        let version = match &parsed.route {
            Ok(Route::Resource(info)) => info.version.as_str(),
            _ => "",
        };
        let scope = if a.path.is_some() {
            ""
        } else if !a.name.is_empty() {
            "resource"
        } else if !a.namespace.is_empty() {
            "namespace"
        } else {
            "cluster"
        };
        Self {
            labels: vec![
                Label::from_static_parts("verb", verb),
                Label::new("group", shared(&a.api_group)),
                Label::new("version", shared(version)),
                Label::new("resource", shared(&a.resource)),
                Label::new("subresource", shared(&a.subresource)),
                Label::from_static_parts("scope", scope),
                Label::from_static_parts("component", "apiserver"),
            ],
            mutating: !matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD),
            long_running: verb == "WATCH",
        }
    }

    /// A request answered `code` after `took`.
    pub fn answered(&self, code: u16, took: Duration) {
        if !self.long_running {
            metrics::histogram!("apiserver_request_duration_seconds", self.labels.iter())
                .record(took.as_secs_f64());
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("code", code.to_string()));
        metrics::counter!("apiserver_request_total", labels).increment(1);
    }

    /// The in-flight gauge of this request's kind, for the time it runs.
    pub fn in_flight(&self) -> Gauged {
        let kind = if self.mutating {
            "mutating"
        } else {
            "readOnly"
        };
        Gauged::raise(metrics::gauge!(
            "apiserver_current_inflight_requests",
            "request_kind" => kind
        ))
    }

    /// The long-running gauge of this watch, for the time it streams.
    pub fn long_running(&self) -> Gauged {
        let labels: Vec<Label> = self
            .labels
            .iter()
            .filter(|l| l.key() != "subresource")
            .cloned()
            .collect();
        Gauged::raise(metrics::gauge!("apiserver_longrunning_requests", labels))
    }
}

/// A gauge raised by one while this lives.
pub struct Gauged(metrics::Gauge);

impl Gauged {
    fn raise(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
