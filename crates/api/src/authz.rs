//! Authorization of every request with RBAC ([`crate::rbac`]), as kube-apiserver does it:
//! the request's attributes (verb, namespace, group, resource, subresource, name, or the
//! path of a non-resource request) are checked against the Roles and bindings of the
//! logical cluster it addresses; a denial is a 403 Status in Kubernetes' words. Also here:
//! the reviews `kubectl auth can-i` asks (SelfSubjectAccessReview, SelfSubjectRulesReview)
//! and the escalation check on writes of Roles and bindings.
//!
//! Authorization is on exactly when authentication is (servers `serve` runs); lists and
//! watches are authorized as a whole, never item by item (as in Kubernetes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use syncsets_store::{ListQuery, Store, StoreError};

use crate::AppState;
use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::rbac::{self, Attributes, Policy, Rule};

/// The group of RBAC's kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

const RBAC_RESOURCES: [&str; 4] = [
    "roles.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
];

/// Whether a store resource is one of RBAC's (its changes invalidate the policy).
pub fn is_rbac(resource: &str) -> bool {
    RBAC_RESOURCES.contains(&resource)
}

/// Each logical cluster's policy, built from its RBAC objects on first use and dropped when
/// one of them changes (on this replica at once; on others when the change event arrives).
#[derive(Debug, Default)]
pub struct RbacCache {
    policies: Mutex<Policies>,
}

#[derive(Debug, Default)]
struct Policies {
    by_cluster: HashMap<String, Arc<Policy>>,
    /// Bumped by every invalidation: a policy built from reads that an invalidation
    /// overtook is not kept.
    generation: u64,
}

/// Policies kept at most (requests can name any logical cluster).
const CACHED_POLICIES: usize = 4096;

impl RbacCache {
    /// Forgets a cluster's policy.
    pub fn invalidate(&self, cluster: &str) {
        let mut p = self.policies.lock().expect("rbac cache");
        p.generation += 1;
        p.by_cluster.remove(cluster);
    }

    /// Forgets every policy.
    pub fn clear(&self) {
        let mut p = self.policies.lock().expect("rbac cache");
        p.generation += 1;
        p.by_cluster.clear();
    }

    /// A cluster's policy.
    pub async fn policy(
        &self,
        store: &dyn Store,
        cluster: &str,
    ) -> Result<Arc<Policy>, StoreError> {
        let generation = {
            let p = self.policies.lock().expect("rbac cache");
            if let Some(policy) = p.by_cluster.get(cluster) {
                return Ok(policy.clone());
            }
            p.generation
        };
        let mut lists: Vec<Vec<Value>> = Vec::new();
        for resource in RBAC_RESOURCES {
            let q = ListQuery {
                cluster: cluster.to_string(),
                resource: resource.into(),
                ..ListQuery::default()
            };
            let page = store.list(&q).await?;
            lists.push(
                page.items
                    .iter()
                    .map(|r| r.parse().map(|s| s.object))
                    .collect::<Result<_, _>>()?,
            );
        }
        let policy = Arc::new(Policy::new(&lists[0], &lists[1], &lists[2], &lists[3]));
        let mut p = self.policies.lock().expect("rbac cache");
        if p.generation == generation {
            if p.by_cluster.len() >= CACHED_POLICIES {
                p.by_cluster.clear();
            }
            p.by_cluster.insert(cluster.to_string(), policy.clone());
        }
        Ok(policy)
    }
}

fn quoted_groups(user: &UserInfo) -> String {
    user.groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Kubernetes' 403 for a request the policy does not allow.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let suffix = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    if let Some(path) = &a.path {
        return ApiError::forbidden_with(
            format!(
                "forbidden: User {:?} cannot {} path {path:?}{suffix}",
                user.name, a.verb
            ),
            json!({}),
        );
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    let core = format!(
        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}{suffix}",
        user.name, a.verb, a.api_group
    );
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {core}")
    } else {
        format!("{qualified} {:?} is forbidden: {core}", a.name)
    };
    let mut details = json!({"kind": a.resource});
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    if !a.api_group.is_empty() {
        details["group"] = json!(a.api_group);
    }
    ApiError::forbidden_with(message, details)
}

/// The authorization middleware (after authentication).
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.authenticator.is_none() {
        return next.run(request).await;
    }
    let Some(user) = request.extensions().get::<UserInfo>().cloned() else {
        return next.run(request).await;
    };
    let Some(parsed) = request
        .extensions()
        .get::<Arc<crate::request::Parsed>>()
        .cloned()
    else {
        let missing = std::io::Error::other("the request was not parsed");
        return ApiError::internal("authorizing", &missing).into_response();
    };
    let attrs = &parsed.attributes;
    let policy = match state
        .rbac
        .policy(state.store.as_ref(), &parsed.cluster)
        .await
    {
        Ok(p) => p,
        Err(e) => return ApiError::internal("reading RBAC policy", &e).into_response(),
    };
    let decision = policy.authorize(&user, attrs);
    if !decision.allowed {
        tracing::debug!(user = %user.name, verb = %attrs.verb, resource = %attrs.resource, path = ?attrs.path, "forbidden");
        return forbidden(&user, attrs, &decision.reason).into_response();
    }
    next.run(request).await
}

/// The user whose write the policy checks beyond RBAC (escalation, attaching clusters)
/// apply to: `None` for the server's own writes, on a server without authentication, and
/// for `system:masters`, which Kubernetes exempts as well.
pub(crate) fn checked_user(ctx: &Ctx) -> Option<&UserInfo> {
    let user = ctx.user.as_ref()?;
    let exempt =
        ctx.state.config.authenticator.is_none() || user.groups.iter().any(|g| g == rbac::MASTERS);
    (!exempt).then_some(user)
}

/// The RBAC policy of the request's logical cluster.
pub(crate) async fn policy(ctx: &Ctx) -> ApiResult<Arc<Policy>> {
    ctx.state
        .rbac
        .policy(ctx.state.store.as_ref(), &ctx.info.cluster)
        .await
        .map_err(|e| ApiError::internal("reading RBAC policy", &e))
}

/// Answers a SelfSubjectAccessReview or SelfSubjectRulesReview for the requesting user.
pub(crate) async fn review(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut review = ctx.decode_object(body)?.value;
    let user = ctx.user.clone().unwrap_or_else(UserInfo::anonymous);
    let enforcing = ctx.state.config.authenticator.is_some();
    let policy = policy(ctx).await?;
    let invalid = |field: &str, value: Value, msg: &str| {
        ApiError::invalid(
            &ctx.kind.qualified_kind(),
            &ctx.kind.group,
            &ctx.kind.kind,
            "",
            &[syncsets_machinery::FieldError::invalid(field, value, msg)],
        )
    };
    let status = if ctx.kind.kind == "SelfSubjectAccessReview" {
        let spec = &review["spec"];
        let (res, non) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
        let attrs = match (res.is_object(), non.is_object()) {
            (true, false) => {
                let s = |f: &str| res[f].as_str().unwrap_or_default().to_string();
                Attributes {
                    verb: s("verb"),
                    namespace: s("namespace"),
                    api_group: s("group"),
                    resource: s("resource"),
                    subresource: s("subresource"),
                    name: s("name"),
                    path: None,
                }
            }
            (false, true) => Attributes {
                verb: non["verb"].as_str().unwrap_or_default().to_string(),
                path: Some(non["path"].as_str().unwrap_or_default().to_string()),
                ..Attributes::default()
            },
            _ => {
                return Err(invalid(
                    "spec.resourceAttributes",
                    res.clone(),
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                ));
            }
        };
        let decision = if enforcing {
            policy.authorize(&user, &attrs)
        } else {
            rbac::Decision {
                allowed: true,
                reason: "authorization is off on this server".into(),
            }
        };
        let mut status = json!({"allowed": decision.allowed});
        if !decision.reason.is_empty() {
            status["reason"] = json!(decision.reason);
        }
        status
    } else {
        let namespace = review["spec"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if namespace.is_empty() {
            return Err(ApiError::bad_request("no namespace on request"));
        }
        let rules: Vec<Rule> = if enforcing {
            policy.rules_for(&user, &namespace)
        } else {
            rbac::Policy::default().rules_for(
                &UserInfo::authenticated("", "", vec![rbac::MASTERS.into()]),
                "",
            )
        };
        let (resource, non_resource): (Vec<&Rule>, Vec<&Rule>) =
            rules.iter().partition(|r| r.non_resource_urls.is_empty());
        review["spec"] = json!({});
        json!({
            "resourceRules": resource.iter().map(|r| r.to_value()).collect::<Vec<_>>(),
            "nonResourceRules": non_resource.iter().map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls})).collect::<Vec<_>>(),
            "incomplete": false,
        })
    };
    review["status"] = status;
    review["metadata"] = json!({});
    review["apiVersion"] = json!(ctx.kind.api_version());
    review["kind"] = json!(ctx.kind.kind);
    Ok((StatusCode::CREATED, axum::Json(review)).into_response())
}

/// The policy checks of a write beyond its verb, run before it is stored (`old`: the
/// object it replaces): RBAC escalation, one RolloutPolicy per set, and attaching clusters to SelectorSyncSets
/// ([`crate::attach`], which records on a ClusterDeployment what it may be attached to).
pub(crate) async fn check_write(ctx: &Ctx, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
    check_escalation(ctx, new).await?;
    crate::governance::check(ctx, new).await?;
    crate::attach::check(ctx, old, new).await
}

/// Refuses a write of a Role, ClusterRole, RoleBinding or ClusterRoleBinding that would
/// grant the writer permissions it does not hold, unless it may `escalate` (roles) or
/// `bind` (bindings), as Kubernetes does.
async fn check_escalation(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    if ctx.kind.group != RBAC_GROUP {
        return Ok(());
    }
    let Some(user) = checked_user(ctx) else {
        return Ok(());
    };
    let policy = policy(ctx).await?;
    let namespace = ctx.namespace().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let allowed_to = |verb: &str, resource: &str, target: &str| {
        policy
            .authorize(
                user,
                &Attributes {
                    verb: verb.into(),
                    namespace: namespace.clone(),
                    api_group: RBAC_GROUP.into(),
                    resource: resource.into(),
                    name: target.into(),
                    ..Attributes::default()
                },
            )
            .allowed
    };
    let granted: Vec<Rule> = if ctx.kind.kind.ends_with("Binding") {
        let kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
        let role = obj["roleRef"]["name"].as_str().unwrap_or_default();
        let resource = if kind == "Role" {
            "roles"
        } else {
            "clusterroles"
        };
        if allowed_to("bind", resource, role) {
            return Ok(());
        }
        match policy.role(kind, &namespace, role) {
            Some(rules) => rules,
            None => {
                return Err(ApiError::not_found(&ctx.kind, role)
                    .with_message(format!("{}.{RBAC_GROUP} {role:?} not found", resource)));
            }
        }
    } else {
        if allowed_to("escalate", &ctx.kind.plural, &name) {
            return Ok(());
        }
        let mut rules: Vec<Rule> = obj["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::from_value)
            .collect();
        // An aggregating ClusterRole takes the rules of whatever its selectors match (the
        // bootstrap cluster-admin included): as in Kubernetes, only full authority may write
        // one.
        if !obj["aggregationRule"].is_null() {
            rules.push(Rule::from_value(
                &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            ));
            rules.push(Rule::from_value(
                &json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
            ));
        }
        rules
    };
    let held = policy.rules_for(user, &namespace);
    let missing: Vec<String> = granted
        .iter()
        .filter(|r| !rbac::covers(&held, r))
        .map(|r| r.to_value().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(
        &ctx.kind,
        &name,
        &format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            quoted_groups(user),
            missing.join("\n")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn attrs(method: Method, path: &str, query: &str) -> Attributes {
        let uri: axum::http::Uri = format!("{path}?{query}").parse().expect("a test URI");
        crate::request::Parsed::new(&method, &uri).attributes
    }

    #[test]
    fn requests_map_to_kubernetes_attributes() {
        let a = attrs(Method::GET, "/api/v1/namespaces/team-a/configmaps/x", "");
        assert_eq!(
            (
                a.verb.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.name.as_str()
            ),
            ("get", "team-a", "configmaps", "x")
        );
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/team-a/configmaps", "").verb,
            "list"
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/api/v1/namespaces/team-a/configmaps",
                "watch=true"
            )
            .verb,
            "watch"
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/api/v1/watch/namespaces/team-a/configmaps",
                ""
            )
            .verb,
            "watch"
        );
        let all = attrs(Method::GET, "/api/v1/configmaps", "watch=1");
        assert_eq!((all.verb.as_str(), all.namespace.as_str()), ("watch", ""));
        let named = attrs(
            Method::GET,
            "/api/v1/namespaces/n/configmaps",
            "fieldSelector=metadata.name%3Done",
        );
        assert_eq!((named.verb.as_str(), named.name.as_str()), ("list", "one"));
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/n/configmaps", "").verb,
            "deletecollection"
        );
        let ns = attrs(Method::DELETE, "/api/v1/namespaces/foo", "");
        assert_eq!(
            (
                ns.verb.as_str(),
                ns.namespace.as_str(),
                ns.resource.as_str(),
                ns.name.as_str()
            ),
            ("delete", "foo", "namespaces", "foo")
        );
        let status = attrs(
            Method::PUT,
            "/apis/hive.openshift.io/v1/namespaces/f/clusterdeployments/c/status",
            "",
        );
        assert_eq!(
            (
                status.api_group.as_str(),
                status.subresource.as_str(),
                status.verb.as_str()
            ),
            ("hive.openshift.io", "status", "update")
        );
        assert_eq!(
            attrs(
                Method::PATCH,
                "/apis/hive.openshift.io/v1/selectorsyncsets/s",
                ""
            )
            .verb,
            "patch"
        );
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v2",
            "/v1/clusters",
        ] {
            assert_eq!(attrs(Method::GET, p, "").path.as_deref(), Some(p), "{p}");
        }
        assert_eq!(attrs(Method::POST, "/v1/clusters", "").verb, "post");
    }

    #[test]
    fn denials_read_like_kubernetes() {
        let alice = UserInfo::authenticated("alice", "", vec![]);
        let e = forbidden(
            &alice,
            &attrs(Method::GET, "/api/v1/namespaces/team-b/configmaps/x", ""),
            "",
        );
        assert_eq!(e.code, StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            r#"configmaps "x" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "team-b""#
        );
        assert_eq!(e.details, Some(json!({"kind": "configmaps", "name": "x"})));
        let e = forbidden(
            &alice,
            &attrs(
                Method::GET,
                "/apis/hive.openshift.io/v1/clusterdeployments",
                "",
            ),
            "",
        );
        assert_eq!(
            e.message,
            r#"clusterdeployments.hive.openshift.io is forbidden: User "alice" cannot list resource "clusterdeployments" in API group "hive.openshift.io" at the cluster scope"#
        );
        let e = forbidden(&alice, &attrs(Method::GET, "/metrics", ""), "");
        assert_eq!(
            e.message,
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
    }
}
