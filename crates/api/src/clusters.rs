//! Seed compatibility: `POST /v1/clusters {"name","namespace","kubeconfig"}` adopts a
//! cluster the way Hive does — the namespace (created if needed), a Secret holding the
//! admin kubeconfig, and an installed ClusterDeployment referring to it.
//!
//! It never replaces what exists: a ClusterDeployment or kubeconfig Secret of that name is
//! a 409, unless it is what this very request would write (the request is repeated, say
//! after a lost answer, or after a failure between the two writes). Attaching the new
//! cluster to SelectorSyncSets by its labels needs `use` on them ([`crate::attach`]),
//! checked before anything is written, and so is RBAC for what it creates: the registrant
//! needs `create` on Secrets and ClusterDeployments in the namespace (and on namespaces
//! when it is new), besides `post` on `/v1/clusters`.

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
use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Ctx, store_new};
use crate::rbac::Attributes;
use syncsets_write::Proposal;

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
pub async fn register(
    State(state): State<Arc<AppState>>,
    user: Option<axum::Extension<UserInfo>>,
    body: axum::body::Bytes,
) -> Response {
    match adopt(&state, user.map(|axum::Extension(u)| u), &body).await {
        Ok((cd, true)) => (StatusCode::CREATED, Json(cd)).into_response(),
        Ok((cd, false)) => (StatusCode::OK, Json(cd)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Registers the cluster; returns its ClusterDeployment and whether it is new.
async fn adopt(
    state: &Arc<AppState>,
    user: Option<UserInfo>,
    body: &[u8],
) -> ApiResult<(Value, bool)> {
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

    let secret_name = format!("{}-admin-kubeconfig", reg.name);
    let encoded = base64::engine::general_purpose::STANDARD.encode(reg.kubeconfig.as_bytes());
    // Written as the registrant, so the Secret records the sets they may use.
    let secret_ctx = Ctx {
        user: user.clone(),
        ..Ctx::internal(state, secret_kind.clone(), "", Some(&reg.namespace))
    };
    let existing_secret = secret_ctx.current(&secret_name).await?;
    let same_secret = existing_secret
        .as_ref()
        .map(|s| s.object["data"]["kubeconfig"].as_str() == Some(encoded.as_str()));
    if same_secret == Some(false) {
        return Err(ApiError::already_exists(&secret_kind, &secret_name));
    }
    let cd_ctx = Ctx {
        user,
        ..Ctx::internal(state, cd_kind.clone(), "", Some(&reg.namespace))
    };
    if let Some(existing) = cd_ctx.current(&reg.name).await? {
        let same = same_secret == Some(true)
            && existing.object["metadata"]["labels"] == json!(reg.labels)
            && existing.object["spec"]["clusterMetadata"]["adminKubeconfigSecretRef"]["name"]
                == json!(secret_name);
        return if same {
            Ok((cd_ctx.served(existing.object), false))
        } else {
            Err(ApiError::already_exists(&cd_kind, &reg.name))
        };
    }
    let mut cd = json!({
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
    // Whether the registrant may do what this does, before anything is written: create
    // the namespace (if new), the Secret and the ClusterDeployment, and attach the cluster
    // to the sets its labels select.
    let ns_ctx = Ctx::internal(state, ns_kind.clone(), "", None);
    let new_namespace = ns_ctx.current(&reg.namespace).await?.is_none();
    authorize(&cd_ctx, &reg.namespace, new_namespace).await?;
    crate::attach::check(&cd_ctx, None, &mut cd).await?;

    if new_namespace {
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": reg.namespace}});
        let wctx = ns_ctx.write_context(&now, manager.clone(), false)?;
        match store_new(&ns_ctx, &reg.namespace, wctx, &[], ns).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }

    if existing_secret.is_none() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": reg.namespace,
                         "labels": {"hive.openshift.io/cluster-deployment-name": reg.name}},
            "data": {"kubeconfig": encoded},
        });
        let wctx = secret_ctx.write_context(&now, manager.clone(), false)?;
        // A concurrent registration that got there first wrote this very Secret or another:
        // either way it is not replaced (409).
        store_new(&secret_ctx, &secret_name, wctx, &[], secret).await?;
    }

    let wctx = cd_ctx.write_context(&now, manager, false)?;
    let created = store_new(&cd_ctx, &reg.name, wctx, &[], cd).await?.object;
    // Until the ClusterDeployment existed, whoever may write Secrets in the namespace could
    // rewrite this one unchecked (afterwards that needs `use` on its sets): a kubeconfig
    // that is no longer the registered one undoes the registration.
    let now_secret = secret_ctx.current(&secret_name).await?;
    if now_secret.is_none_or(|s| s.object["data"]["kubeconfig"].as_str() != Some(&encoded)) {
        let undo = cd_ctx
            .write(&reg.name, None, &[], |_| Ok(Proposal::Delete))
            .await;
        if let Err(e) = undo {
            tracing::warn!(cluster = %reg.name, error = %e.message, "cannot undo a registration");
        }
        return Err(ApiError::conflict_message(
            &secret_kind,
            &secret_name,
            format!(
                "Secret {secret_name:?} was changed by someone else during registration; nothing was registered"
            ),
        ));
    }
    Ok((created, true))
}

/// The registrant may create what registration creates in `namespace` (and the namespace,
/// if it is new), as if it wrote them itself.
async fn authorize(ctx: &Ctx, namespace: &str, new_namespace: bool) -> ApiResult<()> {
    let Some(user) = crate::authz::checked_user(ctx) else {
        return Ok(());
    };
    let policy = crate::authz::policy(ctx).await?;
    let mut wanted = vec![
        ("", "secrets", namespace),
        ("hive.openshift.io", "clusterdeployments", namespace),
    ];
    if new_namespace {
        wanted.insert(0, ("", "namespaces", ""));
    }
    for (group, resource, namespace) in wanted {
        let attributes = Attributes {
            verb: "create".into(),
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            ..Attributes::default()
        };
        let decision = policy.authorize(user, &attributes);
        if !decision.allowed {
            return Err(crate::authz::forbidden(user, &attributes, &decision.reason));
        }
    }
    Ok(())
}
