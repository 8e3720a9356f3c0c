//! Serving over TLS, and who is on the other end of a connection.
//!
//! The handshake runs in the connection's own task in [`crate::serve`], after the
//! connection is admitted and under the header timeout. A client certificate is optional:
//! verified against the client CA, its subject read once per connection
//! (→ [`ConnInfo::client`]).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// The identity in a verified client certificate: the user is the subject's common name,
/// the groups its organisations (as Kubernetes reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Subject CN.
    pub user: String,
    /// Subject O values.
    pub groups: Vec<String>,
}

/// Reads the identity of a (verified) certificate.
pub fn identity_of(der: &CertificateDer<'_>) -> Option<ClientIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(ClientIdentity { user, groups })
}

/// What a request knows of its connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The client certificate's identity, when the client presented one.
    pub client: Option<Arc<ClientIdentity>>,
}
