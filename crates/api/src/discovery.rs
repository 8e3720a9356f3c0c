//! Discovery: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{g}`, `/apis/{g}/{v}`, in the
//! legacy form and as aggregated discovery (`apidiscovery.k8s.io` v2 / v2beta1), which lets
//! kubectl learn every resource in two requests.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use syncsets_machinery::registry::{KindInfo, Kinds};

use crate::error::{ApiError, ApiResult};

/// The Kubernetes version this server presents itself as.
pub const KUBE_MINOR: &str = "33";

fn json_response(value: &Value, content_type: &str) -> Response {
    let mut res = Response::new(Body::from(serde_json::to_vec(value).unwrap_or_default()));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    res
}

/// `/version`.
pub fn version() -> Response {
    let v = json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+syncsets-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    });
    json_response(&v, "application/json")
}

/// Plain-text health answers.
pub fn health(ok: bool) -> Response {
    let mut res = Response::new(Body::from(if ok { "ok" } else { "not ready" }));
    *res.status_mut() = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Which aggregated discovery version the client accepts first, if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        if params.first() != Some(&"application/json") {
            continue;
        }
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        } else if params.len() == 1 {
            // Plain JSON comes first: legacy discovery.
            return None;
        }
    }
    None
}

fn resource_entry(k: &KindInfo) -> Value {
    let mut r = json!({
        "name": k.plural,
        "singularName": k.singular,
        "namespaced": k.namespaced,
        "kind": k.kind,
        "verbs": k.verbs(),
        "storageVersionHash": storage_hash(k),
    });
    if !k.short_names.is_empty() {
        r["shortNames"] = json!(k.short_names);
    }
    if !k.categories.is_empty() {
        r["categories"] = json!(k.categories);
    }
    r
}

fn storage_hash(k: &KindInfo) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&k.group, &k.storage_version, &k.kind).hash(&mut h);
    let bytes = h.finish().to_be_bytes();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn resource_list(kinds: &Kinds, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in kinds.in_group_version(group, version) {
        resources.push(resource_entry(k));
        if k.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if k.scale.is_some() {
            resources.push(json!({
                "name": format!("{}/scale", k.plural),
                "singularName": "",
                "namespaced": k.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
}

fn aggregated_list(kinds: &Kinds, core: bool, version: &str) -> Value {
    let items: Vec<Value> = kinds
        .groups()
        .into_iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = kinds
                        .in_group_version(&g.name, v)
                        .map(|k| {
                            let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
                            let mut r = json!({
                                "resource": k.plural,
                                "responseKind": gvk,
                                "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": k.singular,
                                "verbs": k.verbs(),
                            });
                            if !k.short_names.is_empty() {
                                r["shortNames"] = json!(k.short_names);
                            }
                            if !k.categories.is_empty() {
                                r["categories"] = json!(k.categories);
                            }
                            let mut subresources = Vec::new();
                            if k.status_subresource {
                                subresources.push(json!({"subresource": "status", "responseKind": gvk, "verbs": ["get", "patch", "update"]}));
                            }
                            if k.scale.is_some() {
                                subresources.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
                            }
                            if !subresources.is_empty() {
                                r["subresources"] = json!(subresources);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if g.name.is_empty() { json!({}) } else { json!({"name": g.name}) };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

/// Serves a discovery path.
pub fn serve(
    kinds: &Kinds,
    headers: &HeaderMap,
    host: &str,
    group: Option<&str>,
    version: Option<&str>,
    core: bool,
) -> ApiResult<Response> {
    match (group, version) {
        (Some(""), None) if core => {
            if let Some(v) = aggregated(headers) {
                let ct = format!(
                    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                );
                return Ok(json_response(&aggregated_list(kinds, true, v), &ct));
            }
            let body = json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
            });
            Ok(json_response(&body, "application/json"))
        }
        (None, None) => {
            if let Some(v) = aggregated(headers) {
                let ct = format!(
                    "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                );
                return Ok(json_response(&aggregated_list(kinds, false, v), &ct));
            }
            let groups: Vec<Value> = kinds
                .groups()
                .into_iter()
                .filter(|g| !g.name.is_empty())
                .map(|g| group_entry(&g.name, &g.versions))
                .collect();
            Ok(json_response(
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                "application/json",
            ))
        }
        (Some(g), None) => {
            let info = kinds
                .groups()
                .into_iter()
                .find(|x| x.name == g && !g.is_empty())
                .ok_or_else(ApiError::no_route)?;
            let mut body = group_entry(&info.name, &info.versions);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            Ok(json_response(&body, "application/json"))
        }
        (Some(g), Some(v)) => {
            let list = resource_list(kinds, g, v).ok_or_else(ApiError::no_route)?;
            Ok(json_response(&list, "application/json"))
        }
        (None, Some(_)) => Err(ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsets_machinery::registry::Registry;

    #[test]
    fn aggregated_discovery_is_negotiated() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"),
        );
        assert_eq!(aggregated(&h), Some("v2"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert_eq!(aggregated(&h), Some("v2beta1"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(aggregated(&h), None);
    }

    #[test]
    fn lists_resources_with_status() {
        let r = Registry::new();
        let list = resource_list(&r.kinds(""), "hive.openshift.io", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"syncsets") && names.contains(&"syncsets/status"));
        let agg = aggregated_list(&r.kinds(""), false, "v2");
        assert!(
            agg["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "hive.openshift.io")
        );
        let core = aggregated_list(&r.kinds(""), true, "v2");
        assert_eq!(core["items"][0]["metadata"], json!({}));
    }
}
