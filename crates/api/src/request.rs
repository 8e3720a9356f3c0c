//! Parsing of Kubernetes resource paths and query parameters.
//!
//! ```text
//!  [/clusters/{cluster}]/api/{v}/…            core group
//!  [/clusters/{cluster}]/apis/{g}/{v}/…       named groups
//!      …/{resource}[/{name}[/{subresource}]]
//!      …/namespaces/{ns}/{resource}[/{name}[/{subresource}]]
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, Uri, Version};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ApiError, ApiResult};
use crate::rbac::Attributes;

/// A request as every layer reads it: parsed once, by the first middleware (kube-apiserver's
/// `WithRequestInfo`), and handed on as a request extension to authorization, the limits
/// and the handlers.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The logical cluster the path names (`""`: the hub).
    pub cluster: String,
    /// What the path names, or why it names nothing.
    pub route: ApiResult<Route>,
    /// The query, or why it is refused.
    pub query: ApiResult<Query>,
    /// What authorization checks: the attributes of the resource or non-resource request.
    pub attributes: Attributes,
    /// Who asked, once authentication has said (for the request log).
    pub user: std::sync::OnceLock<String>,
}

impl Parsed {
    /// Parses a request's method, path and query.
    pub fn new(method: &Method, uri: &Uri) -> Self {
        let (cluster, path, route) = match split_cluster(uri.path()) {
            Ok((cluster, path)) => {
                let route = route(&cluster, &path);
                (cluster, path, route)
            }
            Err(e) => (String::new(), uri.path().to_string(), Err(e)),
        };
        let query = Query::parse(uri.query());
        // A query the handlers refuse is refused whatever the attributes say.
        let attributes = attributes(
            method,
            &path,
            route.as_ref().ok(),
            query.as_ref().unwrap_or(&Query::default()),
        );
        Self {
            cluster,
            route,
            query,
            attributes,
            user: std::sync::OnceLock::new(),
        }
    }
}

/// The first middleware: parses the request once for every layer after it.
pub async fn parse(mut request: Request, next: Next) -> Response {
    let parsed = Arc::new(Parsed::new(request.method(), request.uri()));
    request.extensions_mut().insert(parsed.clone());
    let protocol = request.version();
    let labels = crate::metrics::RequestLabels::of(&parsed, request.method());
    let started = std::time::Instant::now();
    let in_flight = (!labels.long_running).then(|| labels.in_flight());
    let response = next.run(request).await;
    drop(in_flight);
    let (code, took) = (response.status().as_u16(), started.elapsed());
    labels.answered(code, took);
    log(&parsed, protocol, code, took);
    // A watch is counted as long-running for as long as its response streams.
    if labels.long_running && response.status().is_success() {
        let streaming = labels.long_running();
        response.map(|body| {
            axum::body::Body::from_stream(futures::StreamExt::map(
                body.into_data_stream(),
                move |chunk| {
                    let _ = &streaming;
                    chunk
                },
            ))
        })
    } else {
        response
    }
}

/// One line per request (target `syncsets_api::request`, level debug, as kube-apiserver
/// logs requests at -v=3): who, what, over which protocol (`HTTP/1.1`, `HTTP/2.0`), the
/// answer and how long it took. Never a credential or a body.
fn log(parsed: &Parsed, protocol: Version, code: u16, took: std::time::Duration) {
    let a = &parsed.attributes;
    tracing::debug!(
        target: "syncsets_api::request",
        user = parsed.user.get().map_or("", String::as_str),
        verb = %a.verb,
        cluster = %parsed.cluster,
        resource = %a.resource,
        subresource = %a.subresource,
        namespace = %a.namespace,
        name = %a.name,
        path = a.path.as_deref().unwrap_or(""),
        protocol = ?protocol,
        code,
        latency_ms = took.as_secs_f64() * 1000.0,
        "request"
    );
}

/// The authorizer attributes of a request (kube-apiserver's `RequestInfo`): a resource
/// request's verb, namespace, group, resource, subresource and name; for anything else the
/// path and the method as verb.
fn attributes(method: &Method, path: &str, route: Option<&Route>, query: &Query) -> Attributes {
    let non_resource = || Attributes {
        verb: method.as_str().to_lowercase(),
        path: Some(path.to_string()),
        ..Attributes::default()
    };
    let Some(Route::Resource(info)) = route else {
        return non_resource();
    };
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => return non_resource(),
    };
    let mut name = info.name.clone().unwrap_or_default();
    if info.watch || (name.is_empty() && verb == "get" && query.watch) {
        verb = "watch";
    } else if name.is_empty() && verb == "get" {
        verb = "list";
    }
    if name.is_empty() && matches!(verb, "list" | "watch") {
        // A field selector on exactly one name authorizes as that name.
        let one = query
            .field_selector
            .strip_prefix("metadata.name==")
            .or_else(|| query.field_selector.strip_prefix("metadata.name="));
        if let Some(n) = one.filter(|n| !n.contains([',', '/', '%']) && !n.is_empty()) {
            name = n.to_string();
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }
    // A namespace is its own namespace.
    let namespace = match &info.namespace {
        Some(ns) => ns.clone(),
        None if info.resource == "namespaces" => info.name.clone().unwrap_or_default(),
        None => String::new(),
    };
    Attributes {
        verb: verb.to_string(),
        namespace,
        api_group: info.group.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone().unwrap_or_default(),
        name,
        path: None,
    }
}

/// What a resource path names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Logical cluster (`""` is the hub).
    pub cluster: String,
    /// API group (`""` for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`).
    pub subresource: Option<String>,
    /// The legacy watch path (`…/{v}/watch/…`): a watch whatever the query says.
    pub watch: bool,
}

/// A path after its cluster prefix has been removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A resource path.
    Resource(RequestInfo),
    /// Discovery: `/api`, `/apis`, `/api/v1`, `/apis/g`, `/apis/g/v`.
    Discovery {
        /// The group, for `/apis/{g}[/{v}]`; `Some("")` for `/api/…`.
        group: Option<String>,
        /// The version, when given.
        version: Option<String>,
        /// True for `/api` and `/api/v1` (the legacy core paths).
        core: bool,
    },
    /// Anything else (version, health, OpenAPI, docs…), relative to the cluster.
    Other(String),
}

/// A path segment, percent-decoded; control characters (NUL included) are no part of any
/// name, and PostgreSQL text cannot hold NUL.
fn decode(seg: &str) -> ApiResult<String> {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
        .map(|s| s.into_owned())
        .ok_or_else(|| ApiError::bad_request(format!("invalid path segment {seg:?}")))
}

/// Splits `/clusters/{name}` off a path.
pub fn split_cluster(path: &str) -> ApiResult<(String, String)> {
    if let Some(rest) = path.strip_prefix("/clusters/") {
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let name = decode(name)?;
        if name.is_empty() || !syncsets_types::names::validate_dns1123_subdomain(&name).is_empty() {
            return Err(ApiError::no_route());
        }
        return Ok((name, format!("/{tail}")));
    }
    Ok((String::new(), path.to_string()))
}

/// Classifies a path (without cluster prefix).
pub fn route(cluster: &str, path: &str) -> ApiResult<Route> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    // `/apis//v1/…` is no group's path: an empty segment names nothing (and authorization
    // must never read such a path differently from routing).
    if matches!(segs.first(), Some(&"api" | &"apis")) && segs.iter().any(|s| s.is_empty()) {
        return Err(ApiError::no_route());
    }
    let (group, version, rest, core) = match segs.as_slice() {
        ["api"] => {
            return Ok(Route::Discovery {
                group: Some(String::new()),
                version: None,
                core: true,
            });
        }
        ["apis"] => {
            return Ok(Route::Discovery {
                group: None,
                version: None,
                core: false,
            });
        }
        ["api", v] => {
            return Ok(Route::Discovery {
                group: Some(String::new()),
                version: Some(decode(v)?),
                core: true,
            });
        }
        ["apis", g] => {
            return Ok(Route::Discovery {
                group: Some(decode(g)?),
                version: None,
                core: false,
            });
        }
        ["apis", g, v] => {
            return Ok(Route::Discovery {
                group: Some(decode(g)?),
                version: Some(decode(v)?),
                core: false,
            });
        }
        ["api", v, rest @ ..] => (String::new(), decode(v)?, rest.to_vec(), true),
        ["apis", g, v, rest @ ..] => (decode(g)?, decode(v)?, rest.to_vec(), false),
        _ => return Ok(Route::Other(path.to_string())),
    };
    let _ = core;
    let mut rest: Vec<String> = rest.iter().map(|s| decode(s)).collect::<ApiResult<_>>()?;
    let watch = rest.first().is_some_and(|s| s == "watch");
    if watch {
        rest.remove(0);
    }
    let mut namespace = None;
    // `namespaces/{ns}/{resource}…`, except the namespace subresources status and finalize.
    if rest.len() >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize" {
        namespace = Some(rest[1].clone());
        rest.drain(..2);
    }
    let info = match rest.as_slice() {
        [resource] => RequestInfo {
            resource: resource.clone(),
            ..Default::default()
        },
        [resource, name] => RequestInfo {
            resource: resource.clone(),
            name: Some(name.clone()),
            ..Default::default()
        },
        [resource, name, sub] => RequestInfo {
            resource: resource.clone(),
            name: Some(name.clone()),
            subresource: Some(sub.clone()),
            ..Default::default()
        },
        _ => return Err(ApiError::no_route()),
    };
    if info.resource.is_empty() || info.name.as_deref() == Some("") {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource(RequestInfo {
        cluster: cluster.to_string(),
        group,
        version,
        namespace,
        watch,
        ..info
    }))
}

/// The query parameters the API understands.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// `labelSelector`
    pub label_selector: String,
    /// `fieldSelector`
    pub field_selector: String,
    /// `limit`
    pub limit: Option<usize>,
    /// `continue`
    pub continue_: String,
    /// `resourceVersion`
    pub resource_version: String,
    /// `resourceVersionMatch`
    pub resource_version_match: String,
    /// `watch`
    pub watch: bool,
    /// `allowWatchBookmarks`
    pub allow_watch_bookmarks: bool,
    /// `timeoutSeconds`
    pub timeout_seconds: Option<u64>,
    /// `sendInitialEvents`
    pub send_initial_events: Option<bool>,
    /// `dryRun=All`
    pub dry_run: bool,
    /// `fieldManager`
    pub field_manager: Option<String>,
    /// `fieldValidation`
    pub field_validation: String,
    /// `force`
    pub force: Option<bool>,
    /// `includeObject`
    pub include_object: String,
    /// `gracePeriodSeconds`
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`
    pub propagation_policy: Option<String>,
    /// `orphanDependents`
    pub orphan_dependents: Option<bool>,
    /// `timeout`: the deadline the client asks for (an unreadable one is ignored).
    pub timeout: Option<Duration>,
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "" | "true" | "1" | "True" => Ok(true),
        "false" | "0" | "False" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "invalid value {other:?} for {name}: expected a boolean"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> ApiResult<T> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid value {v:?} for {name}: expected an integer"
        ))
    })
}

impl Query {
    /// Parses a query string.
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let mut q = Query::default();
        let Some(raw) = raw else { return Ok(q) };
        // The first value of a repeated parameter counts, as Go's `url.Values.Get` reads it
        // (and as authorization reads it).
        let mut seen = std::collections::HashSet::new();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        for (k, v) in pairs {
            if v.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "invalid value for {k}: NUL character"
                )));
            }
            match k.as_str() {
                "labelSelector" => q.label_selector = v,
                "fieldSelector" => q.field_selector = v,
                "limit" => {
                    let n: i64 = parse_num(&k, &v)?;
                    q.limit = (n > 0).then_some(n as usize);
                }
                "continue" => q.continue_ = v,
                "resourceVersion" => q.resource_version = v,
                "resourceVersionMatch" => q.resource_version_match = v,
                "watch" => q.watch = parse_bool(&k, &v)?,
                "allowWatchBookmarks" => q.allow_watch_bookmarks = parse_bool(&k, &v)?,
                "timeoutSeconds" => q.timeout_seconds = Some(parse_num(&k, &v)?),
                "sendInitialEvents" => q.send_initial_events = Some(parse_bool(&k, &v)?),
                "dryRun" => match v.as_str() {
                    "All" => q.dry_run = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                        )));
                    }
                },
                "fieldManager" => q.field_manager = Some(v),
                "fieldValidation" => q.field_validation = v,
                "force" => q.force = Some(parse_bool(&k, &v)?),
                "includeObject" => q.include_object = v,
                "gracePeriodSeconds" => q.grace_period_seconds = Some(parse_num(&k, &v)?),
                "propagationPolicy" => q.propagation_policy = Some(v),
                "orphanDependents" => q.orphan_dependents = Some(parse_bool(&k, &v)?),
                "timeout" => q.timeout = parse_go_duration(&v),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`, `1.5h`); `None` if it is not one.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> RequestInfo {
        let (cluster, path) = split_cluster(path).unwrap();
        match route(&cluster, &path).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref()
            ),
            ("", Some("default"), "configmaps", Some("x"))
        );
        let r = res("/apis/hive.openshift.io/v1/selectorsyncsets/a/status");
        assert_eq!(
            (r.group.as_str(), r.namespace, r.subresource.as_deref()),
            ("hive.openshift.io", None, Some("status"))
        );
        let r = res("/api/v1/namespaces/foo");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("foo"), None)
        );
        let r = res("/api/v1/namespaces/foo/status");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let r = res("/clusters/member-7/api/v1/namespaces/a/secrets");
        assert_eq!(
            (
                r.cluster.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str()
            ),
            ("member-7", Some("a"), "secrets")
        );
        let r = res("/api/v1/namespaces/a/config%6daps/n%2F");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("configmaps", Some("n/"))
        );
    }

    #[test]
    fn classifies_other_paths() {
        assert_eq!(
            route("", "/apis").unwrap(),
            Route::Discovery {
                group: None,
                version: None,
                core: false
            }
        );
        assert_eq!(
            route("", "/api/v1").unwrap(),
            Route::Discovery {
                group: Some(String::new()),
                version: Some("v1".into()),
                core: true
            }
        );
        assert_eq!(
            route("", "/version").unwrap(),
            Route::Other("/version".into())
        );
        assert!(route("", "/api/v1/a/b/c/d").is_err());
        assert!(split_cluster("/clusters/BAD/api").is_err());
    }

    #[test]
    fn parses_queries() {
        let q = Query::parse(Some(
            "labelSelector=a%3Db&limit=500&watch=1&dryRun=All&fieldManager=kubectl&force=true",
        ))
        .unwrap();
        assert_eq!(q.label_selector, "a=b");
        assert_eq!(q.limit, Some(500));
        assert!(q.watch && q.dry_run && q.force == Some(true));
        assert!(Query::parse(Some("limit=x")).is_err());
        assert!(Query::parse(Some("dryRun=Some")).is_err());
        assert!(Query::parse(Some("watch=maybe")).is_err());
    }
}
