//! The `scale` subresource of Deployments, StatefulSets, ReplicaSets,
//! ReplicationControllers and custom resources whose CRD declares one (`kubectl scale`,
//! autoscalers): an `autoscaling/v1` Scale of the object's desired replicas (`spec.replicas`,
//! or the CRD's `specReplicasPath`), with its current replicas and its pod selector as a
//! string. Writing it (PUT, or a JSON, merge or strategic merge patch of the Scale) changes
//! the object's desired replicas and nothing else.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use syncsets_machinery::FieldError;
use syncsets_machinery::meta::{self, Ownership};
use syncsets_machinery::patch as patches;
use syncsets_machinery::registry::{ScalePaths, ScaleSelector};
use syncsets_write::Proposal;

use super::patch::{JSON_PATCH, MERGE_PATCH, STRATEGIC};
use super::{Ctx, body_rv};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Output};

/// `GET …/scale`.
pub(crate) async fn get(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let stored = ctx
        .current(name)
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
    Ok(respond(ctx, &scale_of(paths(ctx)?, &stored.object), &[]))
}

/// `PUT` (a Scale) or `PATCH` (of the Scale) of `…/scale`.
pub(crate) async fn write(ctx: &Ctx, name: &str, patch: bool, body: Bytes) -> ApiResult<Response> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let patch_type = negotiate::patch_type(&ctx.headers);
    let put = if patch {
        None
    } else {
        Some(ctx.decode_object(&body)?.value)
    };
    let accepted = [JSON_PATCH, MERGE_PATCH, STRATEGIC];
    if patch && !accepted.contains(&patch_type.as_str()) {
        return Err(ApiError::unsupported_media_type(&accepted));
    }
    let paths = paths(ctx)?;
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Update(ctx.manager()?), false)?;
    let written = ctx
        .write(name, Some(wctx), &[], |current| {
            let current = current.ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
            let object = ctx.served(current.object.clone());
            let scale = match &put {
                Some(scale) => scale.clone(),
                None => {
                    let base = scale_of(paths, &object);
                    match patch_type.as_str() {
                        JSON_PATCH => patches::json_patch(&base, &body),
                        // A Scale has no lists: a strategic merge patch is a merge patch.
                        _ => patches::merge_patch(&base, &body),
                    }
                    .map_err(|e| ApiError::from_machinery(e, &ctx.kind, name))?
                }
            };
            if body_rv(&scale, ctx, name)?.is_some_and(|rv| rv != current.rv) {
                return Err(ApiError::conflict(&ctx.kind, name));
            }
            let replicas = match &scale["spec"]["replicas"] {
                Value::Null => 0,
                Value::Number(n)
                    if n.as_i64()
                        .is_some_and(|n| (0..=i64::from(i32::MAX)).contains(&n)) =>
                {
                    n.as_i64().unwrap_or_default()
                }
                other => {
                    return Err(ApiError::invalid(
                        "Scale.autoscaling",
                        "autoscaling",
                        "Scale",
                        name,
                        &[FieldError::invalid(
                            "spec.replicas",
                            other.clone(),
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
            };
            let mut object = object;
            set_at(&mut object, &paths.spec_replicas, json!(replicas));
            Ok(Proposal::Write(object))
        })
        .await?;
    Ok(respond(
        ctx,
        &scale_of(paths, &written.object),
        &written.warnings,
    ))
}

/// Where the kind keeps what its Scale shows.
fn paths(ctx: &Ctx) -> ApiResult<&ScalePaths> {
    ctx.kind
        .scale
        .as_ref()
        .ok_or_else(|| ApiError::not_found(&ctx.kind, "scale"))
}

/// The value at a field path (`Null` if absent).
fn at<'v>(object: &'v Value, path: &[String]) -> &'v Value {
    path.iter().fold(object, |v, field| &v[field.as_str()])
}

/// Sets the value at a field path, making the objects on the way.
fn set_at(object: &mut Value, path: &[String], value: Value) {
    let mut v = object;
    for field in path {
        if !v.is_object() {
            *v = json!({});
        }
        v = &mut v[field.as_str()];
    }
    *v = value;
}

/// A Scale as the response, in JSON or YAML as asked (it has no table of its own: JSON,
/// which a client asking for a table also accepts).
fn respond(ctx: &Ctx, scale: &Value, warnings: &[String]) -> Response {
    let output = match ctx.output {
        Output::Yaml => Output::Yaml,
        Output::Json | Output::Table | Output::Metadata => Output::Json,
    };
    negotiate::respond(StatusCode::OK, scale, output, warnings)
}

/// The Scale of an object.
fn scale_of(paths: &ScalePaths, object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !meta[field].is_null() {
            metadata[field] = meta[field].clone();
        }
    }
    let replicas = |path: &[String]| at(object, path).as_i64().unwrap_or(0);
    let mut status = json!({"replicas": replicas(&paths.status_replicas)});
    let selector = match &paths.selector {
        ScaleSelector::None => String::new(),
        ScaleSelector::Workload => selector_string(&object["spec"]["selector"]),
        ScaleSelector::Path(path) => at(object, path).as_str().unwrap_or_default().to_string(),
    };
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas(&paths.spec_replicas)},
        "status": status,
    })
}

/// A label selector as a string (`app=web,tier in (a,b)`), as Kubernetes prints one: a
/// LabelSelector, or a ReplicationController's map of labels; requirements sorted by key.
fn selector_string(selector: &Value) -> String {
    let Some(selector) = selector.as_object() else {
        return String::new();
    };
    // A ReplicationController's selector is the map itself.
    let labels =
        if selector.contains_key("matchLabels") || selector.contains_key("matchExpressions") {
            selector.get("matchLabels").and_then(Value::as_object)
        } else {
            Some(selector)
        };
    let mut requirements: Vec<(String, String)> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())))
        .collect();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort();
    requirements
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_print_as_kubernetes_prints_them() {
        assert_eq!(
            selector_string(&json!({"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]},
                                     {"key": "d", "operator": "DoesNotExist"}]})),
            "a=1,b=2,c in (x,y),!d"
        );
        assert_eq!(selector_string(&json!({"app": "web"})), "app=web");
        let scale = scale_of(
            &ScalePaths::workload(),
            &json!({"metadata": {"name": "d", "namespace": "n", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}}, "status": {"replicas": 2}}),
        );
        assert_eq!(
            scale,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "d", "namespace": "n", "resourceVersion": "7"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=d"}})
        );
    }

    /// A custom resource's Scale reads the paths its CRD names, and writing one makes the
    /// objects on the way to its replicas.
    #[test]
    fn a_custom_resource_scales_at_its_crds_paths() {
        let paths = ScalePaths::of_crd(&json!({"specReplicasPath": ".spec.workers.count",
            "statusReplicasPath": ".status.ready", "labelSelectorPath": ".status.selector"}))
        .unwrap();
        let mut cr = json!({"metadata": {"name": "w"},
            "spec": {"workers": {"count": 4}}, "status": {"ready": 1, "selector": "app=w"}});
        assert_eq!(
            scale_of(&paths, &cr),
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "w"},
                   "spec": {"replicas": 4}, "status": {"replicas": 1, "selector": "app=w"}})
        );
        let mut bare = json!({"metadata": {"name": "w"}});
        set_at(&mut bare, &paths.spec_replicas, json!(2));
        assert_eq!(bare["spec"]["workers"]["count"], 2);
        set_at(&mut cr, &paths.spec_replicas, json!(7));
        assert_eq!(cr["spec"], json!({"workers": {"count": 7}}));
        assert!(ScalePaths::of_crd(&json!({"specReplicasPath": "spec.x"})).is_none());
    }
}
