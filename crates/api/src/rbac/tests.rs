//! RBAC evaluation, without I/O.

use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::authenticated(name, "", groups.iter().map(|g| g.to_string()).collect())
}

fn res(verb: &str, ns: &str, group: &str, resource: &str, name: &str) -> Attributes {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        verb: verb.into(),
        namespace: ns.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        path: None,
    }
}

fn path(verb: &str, p: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        path: Some(p.into()),
        ..Attributes::default()
    }
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

fn binding(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": ns}, "roleRef": {"kind": kind, "name": role}, "subjects": subjects})
}

fn policy(roles: &[Value], rbs: &[Value], crbs: &[Value]) -> Policy {
    let (mut cluster_roles, mut cluster_bindings) = bootstrap();
    cluster_bindings.extend_from_slice(crbs);
    cluster_roles.push(json!({"metadata": {"name": "secret-reader"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["only-this"]}]}));
    Policy::new(roles, &cluster_roles, rbs, &cluster_bindings)
}

#[test]
fn a_user_bound_in_one_namespace_has_nothing_elsewhere() {
    let alice = user("alice", &[]);
    let p = policy(
        &[],
        &[binding(
            "team-a",
            "alice-edit",
            "ClusterRole",
            "edit",
            json!([{"kind": "User", "name": "alice"}]),
        )],
        &[],
    );
    let allowed = |a: Attributes| p.authorize(&alice, &a).allowed;
    assert!(allowed(res("get", "team-a", "", "configmaps", "x")));
    assert!(allowed(res("create", "team-a", "", "secrets", "")));
    assert!(allowed(res(
        "list",
        "team-a",
        "hive.openshift.io",
        "syncsets",
        ""
    )));
    assert!(
        !allowed(res("get", "team-b", "", "configmaps", "x")),
        "another namespace"
    );
    assert!(
        !allowed(res("list", "", "", "configmaps", "")),
        "all namespaces need a cluster-wide grant"
    );
    assert!(!allowed(res("watch", "team-b", "", "configmaps", "")));
    assert!(
        !allowed(res(
            "list",
            "team-a",
            "rbac.authorization.k8s.io",
            "rolebindings",
            ""
        )),
        "edit has no RBAC"
    );
    let d = p.authorize(&alice, &res("get", "team-a", "", "configmaps", "x"));
    assert_eq!(
        d.reason,
        "RBAC: allowed by RoleBinding \"alice-edit/team-a\" of ClusterRole \"edit\" to User \"alice\""
    );
}

#[test]
fn view_excludes_secrets_and_admin_includes_rbac() {
    let bob = user("bob", &["dev"]);
    let p = policy(
        &[],
        &[
            binding(
                "team-a",
                "dev-view",
                "ClusterRole",
                "view",
                json!([{"kind": "Group", "name": "dev"}]),
            ),
            binding(
                "team-b",
                "dev-admin",
                "ClusterRole",
                "admin",
                json!([{"kind": "Group", "name": "dev"}]),
            ),
        ],
        &[],
    );
    assert!(
        p.authorize(&bob, &res("list", "team-a", "", "configmaps", ""))
            .allowed
    );
    assert!(
        !p.authorize(&bob, &res("get", "team-a", "", "secrets", "s"))
            .allowed,
        "view reads no secrets"
    );
    assert!(
        !p.authorize(&bob, &res("create", "team-a", "", "configmaps", ""))
            .allowed
    );
    assert!(
        p.authorize(
            &bob,
            &res(
                "create",
                "team-b",
                "rbac.authorization.k8s.io",
                "rolebindings",
                ""
            )
        )
        .allowed
    );
    assert!(
        p.authorize(&bob, &res("delete", "team-b", "", "secrets", "s"))
            .allowed,
        "admin ⊇ edit"
    );
    assert!(
        p.authorize(&bob, &res("watch", "team-b", "", "events", ""))
            .allowed,
        "admin ⊇ view"
    );
}

#[test]
fn roles_names_subresources_and_wildcards() {
    let carol = user("carol", &[]);
    let p = policy(
        &[role(
            "ns",
            "narrow",
            json!([
                {"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"]},
                {"verbs": ["get"], "apiGroups": ["hive.openshift.io"], "resources": ["clusterdeployments/status"]},
                {"verbs": ["*"], "apiGroups": ["hiveinternal.openshift.io"], "resources": ["*/status"]}
            ]),
        )],
        &[binding(
            "ns",
            "carol",
            "Role",
            "narrow",
            json!([{"kind": "User", "name": "carol"}]),
        )],
        &[],
    );
    let allowed = |a: Attributes| p.authorize(&carol, &a).allowed;
    assert!(allowed(res("get", "ns", "", "configmaps", "one")));
    assert!(!allowed(res("get", "ns", "", "configmaps", "two")));
    assert!(
        !allowed(res("list", "ns", "", "configmaps", "")),
        "names do not allow lists"
    );
    assert!(allowed(res(
        "get",
        "ns",
        "hive.openshift.io",
        "clusterdeployments/status",
        "c"
    )));
    assert!(
        !allowed(res(
            "get",
            "ns",
            "hive.openshift.io",
            "clusterdeployments",
            "c"
        )),
        "the subresource only"
    );
    assert!(allowed(res(
        "patch",
        "ns",
        "hiveinternal.openshift.io",
        "clustersyncs/status",
        "c"
    )));
    assert!(!allowed(res(
        "patch",
        "ns",
        "hiveinternal.openshift.io",
        "clustersyncs",
        "c"
    )));
    // A Role binding from another namespace does not apply.
    assert!(!allowed(res("get", "other", "", "configmaps", "one")));
}

#[test]
fn cluster_roles_bound_cluster_wide_and_the_masters() {
    let ops = user("ops", &[]);
    let p = policy(
        &[],
        &[],
        &[binding(
            "",
            "ops-view",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "ops"}]),
        )],
    );
    assert!(
        p.authorize(&ops, &res("list", "", "", "configmaps", ""))
            .allowed
    );
    assert!(
        p.authorize(&ops, &res("get", "any", "", "namespaces", "any"))
            .allowed
    );
    assert!(
        !p.authorize(&ops, &res("delete", "any", "", "configmaps", "x"))
            .allowed
    );
    let root = user("root", &[MASTERS]);
    let d = p.authorize(&root, &res("delete", "", "", "namespaces", "kube-system"));
    assert!(d.allowed && d.reason.is_empty());
    let secret = p.authorize(&ops, &res("get", "x", "", "secrets", "only-this"));
    assert!(!secret.allowed, "secret-reader is not bound");
}

#[test]
fn non_resource_urls_and_the_default_bindings() {
    let p = policy(&[], &[], &[]);
    let anonymous = UserInfo::anonymous();
    let someone = user("someone", &[]);
    assert!(p.authorize(&anonymous, &path("get", "/healthz")).allowed);
    assert!(p.authorize(&anonymous, &path("get", "/version/")).allowed);
    assert!(
        !p.authorize(&anonymous, &path("get", "/api")).allowed,
        "discovery is for the authenticated"
    );
    assert!(p.authorize(&someone, &path("get", "/api")).allowed);
    assert!(
        p.authorize(&someone, &path("get", "/apis/hive.openshift.io/v1"))
            .allowed
    );
    assert!(!p.authorize(&someone, &path("post", "/v1/clusters")).allowed);
    assert!(
        p.authorize(
            &someone,
            &res(
                "create",
                "",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                ""
            )
        )
        .allowed
    );
    assert!(
        !p.authorize(&someone, &res("list", "default", "", "configmaps", ""))
            .allowed
    );
}

#[test]
fn service_account_subjects_default_to_the_binding_namespace() {
    let sa = user(
        "system:serviceaccount:team-a:deployer",
        &["system:serviceaccounts"],
    );
    let p = policy(
        &[],
        &[binding(
            "team-a",
            "deployer",
            "ClusterRole",
            "edit",
            json!([{"kind": "ServiceAccount", "name": "deployer"}]),
        )],
        &[],
    );
    let d = p.authorize(&sa, &res("create", "team-a", "", "configmaps", ""));
    assert!(d.allowed);
    assert!(
        d.reason.ends_with("to ServiceAccount \"deployer/team-a\""),
        "{}",
        d.reason
    );
}

#[test]
fn escalation_is_judged_by_coverage() {
    let edit = policy(&[], &[], &[])
        .role("ClusterRole", "", "edit")
        .unwrap();
    let want = |v: Value| Rule::from_value(&v);
    assert!(covers(
        &edit,
        &want(json!({"verbs": ["get", "create"], "apiGroups": [""], "resources": ["configmaps"]}))
    ));
    assert!(covers(
        &edit,
        &want(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["x"]})
        )
    ));
    assert!(
        !covers(
            &edit,
            &want(json!({"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}))
        ),
        "a wildcard needs a wildcard"
    );
    assert!(!covers(
        &edit,
        &want(
            json!({"verbs": ["get"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]})
        )
    ));
    let admin_rules = bootstrap_rules("cluster-admin");
    assert!(covers(
        &admin_rules,
        &want(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}))
    ));
    assert!(covers(
        &admin_rules,
        &want(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}))
    ));
    let named = vec![want(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}),
    )];
    assert!(
        !covers(
            &named,
            &want(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}))
        ),
        "a named grant does not cover all names"
    );
}
