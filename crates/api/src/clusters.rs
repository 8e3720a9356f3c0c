//! Seed compatibility: `POST /v1/clusters {"name","namespace","kubeconfig"}` adopts a
//! cluster the way Hive does — the namespace (created if needed), a Secret holding the
//! admin kubeconfig, and an installed ClusterDeployment referring to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use syncsets_machinery::meta::{self, Ownership};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Ctx, store_new};

/// The registration request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    name: String,
    namespace: String,
    kubeconfig: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// `POST /v1/clusters`.
pub async fn register(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    match adopt(&state, &body).await {
        Ok(cd) => (StatusCode::CREATED, Json(cd)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn adopt(state: &Arc<AppState>, body: &[u8]) -> ApiResult<Value> {
    let reg: Registration = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"name\", \"namespace\", \"kubeconfig\"[, \"labels\"]}}: {e}"
        ))
    })?;
    if reg.kubeconfig.trim().is_empty() {
        return Err(ApiError::bad_request("kubeconfig must not be empty"));
    }
    let kinds = state.kinds("").await?;
    let kind = |g: &str, v: &str, p: &str| kinds.get(g, v, p).cloned().expect("built-in kind");
    let ns_kind = kind("", "v1", "namespaces");
    let secret_kind = kind("", "v1", "secrets");
    let cd_kind = kind("hive.openshift.io", "v1", "clusterdeployments");
    let now = meta::now();
    let manager = Ownership::Update("syncsets-cluster-registration".into());

    let cd_ctx = Ctx::internal(state, cd_kind.clone(), "", Some(&reg.namespace));
    if cd_ctx.current(&reg.name).await?.is_some() {
        return Err(ApiError::already_exists(&cd_kind, &reg.name));
    }

    let ns_ctx = Ctx::internal(state, ns_kind.clone(), "", None);
    if ns_ctx.current(&reg.namespace).await?.is_none() {
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": reg.namespace}});
        let admitted = meta::admit_create(
            &ns_ctx.write_context(&now, manager.clone(), false)?,
            ns,
            &[],
        )
        .map_err(|e| ApiError::from_machinery(e, &ns_kind, &reg.namespace))?;
        match store_new(&ns_ctx, &reg.namespace, admitted.object).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }

    let secret_name = format!("{}-admin-kubeconfig", reg.name);
    let secret_ctx = Ctx::internal(state, secret_kind.clone(), "", Some(&reg.namespace));
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name, "namespace": reg.namespace,
                     "labels": {"hive.openshift.io/cluster-deployment-name": reg.name}},
        "data": {"kubeconfig": base64::engine::general_purpose::STANDARD.encode(reg.kubeconfig.as_bytes())},
    });
    let admitted = meta::admit_create(
        &secret_ctx.write_context(&now, manager.clone(), false)?,
        secret,
        &[],
    )
    .map_err(|e| ApiError::from_machinery(e, &secret_kind, &secret_name))?;
    match store_new(&secret_ctx, &secret_name, admitted.object.clone()).await {
        Ok(_) => {}
        // Re-registration after a failed attempt replaces the kubeconfig.
        Err(e) if e.reason == "AlreadyExists" => {
            let current = secret_ctx
                .current(&secret_name)
                .await?
                .ok_or_else(|| ApiError::not_found(&secret_kind, &secret_name))?;
            let replaced = meta::admit_update(
                &secret_ctx.write_context(&now, manager.clone(), false)?,
                admitted.object,
                &current.object,
                &[],
            )
            .map_err(|e| ApiError::from_machinery(e, &secret_kind, &secret_name))?;
            secret_ctx
                .commit_update(&secret_name, &current, replaced)
                .await?;
        }
        Err(e) => return Err(e),
    }

    let cd = json!({
        "apiVersion": "hive.openshift.io/v1", "kind": "ClusterDeployment",
        "metadata": {"name": reg.name, "namespace": reg.namespace, "labels": reg.labels},
        "spec": {
            "clusterName": reg.name,
            "baseDomain": "",
            "platform": {},
            "installed": true,
            "clusterMetadata": {
                "clusterID": uuid::Uuid::new_v4().to_string(),
                "infraID": reg.name,
                "adminKubeconfigSecretRef": {"name": secret_name},
            },
        },
    });
    let admitted = meta::admit_create(&cd_ctx.write_context(&now, manager, false)?, cd, &[])
        .map_err(|e| ApiError::from_machinery(e, &cd_kind, &reg.name))?;
    store_new(&cd_ctx, &reg.name, admitted.object).await
}
