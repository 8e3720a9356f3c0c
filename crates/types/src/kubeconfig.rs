//! Kubeconfigs syncsets writes — for kubectl, for its tests, for clusters it registers —
//! built with kube's own types and serialised, never formatted by hand.

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// A cluster entry for `server`.
pub fn server(url: &str) -> Cluster {
    Cluster {
        server: Some(url.to_string()),
        ..Cluster::default()
    }
}

/// A cluster entry for `server`, trusting `ca_data` (base64 PEM).
pub fn server_with_ca(url: &str, ca_data: &str) -> Cluster {
    Cluster {
        certificate_authority_data: Some(ca_data.to_string()),
        ..server(url)
    }
}

/// A kubeconfig whose one context, `name`, reaches `cluster` as `user` (named `user_name`)
/// in namespace `default`, as YAML.
pub fn render(name: &str, cluster: Cluster, user_name: &str, user: AuthInfo) -> String {
    let config = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: name.to_string(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.to_string(),
            auth_info: Some(user),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: name.to_string(),
            context: Some(Context {
                cluster: name.to_string(),
                user: Some(user_name.to_string()),
                namespace: Some("default".into()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(name.to_string()),
        ..Kubeconfig::default()
    };
    serde_norway::to_string(&config).expect("a kubeconfig serialises")
}

/// A user authenticating with a bearer token.
pub fn token_user(token: &str) -> AuthInfo {
    AuthInfo {
        token: Some(token.to_string().into()),
        ..AuthInfo::default()
    }
}

/// A user authenticating with a client certificate (`cert_data`, `key_data`: base64 PEM).
pub fn certificate_user(cert_data: &str, key_data: &str) -> AuthInfo {
    AuthInfo {
        client_certificate_data: Some(cert_data.to_string()),
        client_key_data: Some(key_data.to_string().into()),
        ..AuthInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_back_what_is_written() {
        let text = render(
            "t",
            server("http://127.0.0.1:1/clusters/c1"),
            "u",
            token_user("s3cret"),
        );
        let back = Kubeconfig::from_yaml(&text).expect("parses");
        assert_eq!(back.current_context.as_deref(), Some("t"));
        let cluster = back.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(
            cluster.server.as_deref(),
            Some("http://127.0.0.1:1/clusters/c1")
        );
        let context = back.contexts[0].context.as_ref().expect("context");
        assert_eq!(
            (context.cluster.as_str(), context.user.as_deref()),
            ("t", Some("u"))
        );
        let user = back.auth_infos[0].auth_info.as_ref().expect("user");
        assert!(user.token.is_some());
        assert!(text.contains("token: s3cret"), "{text}");
    }
}
