//! Authentication, as kube-apiserver does it: a verified client certificate (user = CN,
//! groups = O), else a bearer token from the static token file (`--token-auth-file` CSV:
//! `token,user,uid,"group1,group2"`), else anonymous. A token that matches nothing is a 401,
//! not anonymous. Anonymous requests reach only the health endpoints and `/version`.
//!
//! Tokens are kept as SHA-256 digests, so neither a lookup's timing nor a memory dump
//! gives them away, and no credential is ever logged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::tls::ConnInfo;

/// Who a request is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Unique id (from the token file; empty otherwise).
    pub uid: String,
    /// Groups, `system:authenticated` or `system:unauthenticated` included.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The anonymous user.
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// An authenticated user (`system:authenticated` added).
    pub fn authenticated(name: &str, uid: &str, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name: name.into(),
            uid: uid.into(),
            groups,
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }
}

/// Credentials were presented and match nobody (a 401, not an anonymous request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthenticated;

/// Credentials a server accepts besides client certificates.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// SHA-256 of each token → its user.
    tokens: HashMap<[u8; 32], UserInfo>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// One CSV record, Go `encoding/csv` style: commas, double-quoted fields with `""` for a quote.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

impl Authenticator {
    /// Reads a token file: one `token,user,uid[,"group1,group2"]` per line. Errors name
    /// the line, never its token.
    pub fn from_token_file(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields = csv_fields(line).map_err(|e| format!("token file line {}: {e}", i + 1))?;
            if fields.len() < 3 {
                return Err(format!(
                    "token file line {}: expected token,user,uid[,groups]",
                    i + 1
                ));
            }
            if fields[0].is_empty() {
                tracing::warn!(line = i + 1, "token file: empty token skipped");
                continue;
            }
            if fields[1].is_empty() {
                return Err(format!("token file line {}: the user is empty", i + 1));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                digest(&fields[0]),
                UserInfo::authenticated(&fields[1], &fields[2], groups),
            );
        }
        Ok(Self { tokens })
    }

    /// How many tokens are known.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Who presents these credentials.
    pub fn authenticate(
        &self,
        conn: Option<&ConnInfo>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, Unauthenticated> {
        if let Some(client) = conn.and_then(|c| c.client.as_ref()) {
            return Ok(UserInfo::authenticated(
                &client.user,
                "",
                client.groups.clone(),
            ));
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(UserInfo::anonymous());
        };
        let value = value.to_str().map_err(|_| Unauthenticated)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(Unauthenticated)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Unauthenticated);
        }
        self.tokens
            .get(&digest(token))
            .cloned()
            .ok_or(Unauthenticated)
    }
}

/// Paths anonymous users may read (Kubernetes' `system:public-info-viewer`).
fn public(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Kubernetes' 401.
fn unauthorized() -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The authentication middleware: puts the request's [`UserInfo`] in its extensions, or
/// answers 401. The Authorization header does not travel further.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(authenticator) = state.config.authenticator.as_ref() else {
        return next.run(request).await;
    };
    let conn = request
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .map(|c| &c.0);
    let user = match authenticator.authenticate(conn, request.headers()) {
        Ok(user) => user,
        Err(Unauthenticated) => return unauthorized(),
    };
    if user.is_anonymous() && !public(request.uri().path()) {
        return unauthorized();
    }
    request.headers_mut().remove(header::AUTHORIZATION);
    if let Some(parsed) = request.extensions().get::<Arc<crate::request::Parsed>>() {
        let _ = parsed.user.set(user.name.clone());
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClientIdentity;
    use axum::http::HeaderValue;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn reads_kube_apiserver_token_files() {
        let a = Authenticator::from_token_file(
            "s3cr3t,alice,1001,\"system:masters,dev\"\n\nt2,bob,1002\n,nobody,1\n\"to,ken\",carol,7,\"a\"\"b\"\n",
        )
        .unwrap();
        assert_eq!(a.token_count(), 3, "the empty token is skipped");
        let alice = a.authenticate(None, &bearer("s3cr3t")).unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(
            alice.groups,
            ["system:masters", "dev", "system:authenticated"]
        );
        assert_eq!(
            a.authenticate(None, &bearer("t2")).unwrap().groups,
            ["system:authenticated"]
        );
        assert_eq!(
            a.authenticate(None, &bearer("to,ken")).unwrap().groups[0],
            "a\"b"
        );
        assert!(Authenticator::from_token_file("x,y").is_err());
        let err = Authenticator::from_token_file("hunter2,\"bob").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn certificates_then_tokens_then_anonymous() {
        let a = Authenticator::from_token_file("tok,alice,1").unwrap();
        assert!(
            a.authenticate(None, &HeaderMap::new())
                .unwrap()
                .is_anonymous()
        );
        assert!(
            a.authenticate(None, &bearer("wrong")).is_err(),
            "an unknown token is not anonymous"
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        assert!(a.authenticate(None, &basic).is_err());
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok"),
        );
        assert_eq!(a.authenticate(None, &lower).unwrap().name, "alice");
        let conn = ConnInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            client: Some(Arc::new(ClientIdentity {
                user: "admin".into(),
                groups: vec!["system:masters".into()],
            })),
        };
        let user = a.authenticate(Some(&conn), &bearer("tok")).unwrap();
        assert_eq!(user.name, "admin", "a certificate comes first");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
    }

    #[test]
    fn only_health_and_version_are_public() {
        for p in [
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/healthz/ping",
            "/version/",
        ] {
            assert!(public(p), "{p}");
        }
        for p in [
            "/",
            "/api",
            "/apis",
            "/openapi/v2",
            "/versions",
            "/healthzz",
            "/v1/clusters",
        ] {
            assert!(!public(p), "{p}");
        }
    }
}
