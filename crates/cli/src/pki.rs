//! The server's certificates, made on first start under the data directory:
//!
//! ```text
//!   ca.crt  ca.key        a CA of this installation (10 years); signs the two below, and
//!                         client certificates it signs authenticate as their CN / O
//!   server.crt server.key the serving certificate (1 year; made again when it nears expiry
//!                         or lacks a requested name)
//!   admin.crt admin.key   CN=syncsets-admin, O=system:masters: the kubeconfig's credential
//! ```
//!
//! Private keys are written with mode 0600. Certificates and keys can be supplied instead
//! (`--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file`).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// The admin credential's user.
pub const ADMIN_USER: &str = "syncsets-admin";
/// Its group: allowed everything.
pub const ADMIN_GROUP: &str = "system:masters";

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Credential {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// What a TLS server needs.
pub struct Pki {
    /// The CA clients should trust for the server (and that signs client certificates).
    pub ca: String,
    /// Every CA whose client certificates are accepted.
    pub client_cas: String,
    /// The serving certificate.
    pub server: Credential,
    /// The admin client certificate.
    pub admin: Credential,
}

/// Writes a file only its owner can read — a key, or a kubeconfig carrying one —
/// replacing one that exists ([`syncsets_store::private_file::replace`]).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    syncsets_store::private_file::replace(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(days * 86_400);
}

fn new_ca() -> anyhow::Result<Credential> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, "syncsets-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, 3650);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(Credential {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn issuer(ca: &Credential) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(&ca.key).context("reading the CA key")?;
    Issuer::from_ca_cert_pem(&ca.cert, key).context("reading the CA certificate")
}

/// Issues a certificate signed by `ca`: a server's for `names` (IP addresses or DNS
/// names), or a client's for `user` in `group`.
fn issue(
    ca: &Credential,
    cn: &str,
    names: &[String],
    group: Option<&str>,
    server: bool,
) -> anyhow::Result<Credential> {
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(group) = group {
        p.distinguished_name.push(DnType::OrganizationName, group);
    }
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    validity(&mut p, 365);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer(ca)?)?;
    Ok(Credential {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a client certificate for `user` in `group` (the organisation), signed by the
/// CA under `dir`.
pub fn issue_client(dir: &Path, user: &str, group: Option<&str>) -> anyhow::Result<Credential> {
    let ca = Credential {
        cert: read(&dir.join("ca.crt"))?,
        key: read(&dir.join("ca.key"))?,
    };
    issue(&ca, user, &[], group, false)
}

/// Whether a certificate is valid for 30 more days and names every one of `names`.
fn still_good(cert_pem: &str, names: &[String]) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let horizon = OffsetDateTime::now_utc() + Duration::from_secs(30 * 86_400);
    if cert.validity().not_after.to_datetime() < horizon {
        return false;
    }
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return false;
    };
    names.iter().all(|name| {
        sans.value
            .general_names
            .iter()
            .any(|g| match (g, name.parse::<IpAddr>()) {
                (x509_parser::extensions::GeneralName::DNSName(d), Err(_)) => d == name,
                (x509_parser::extensions::GeneralName::IPAddress(bytes), Ok(ip)) => match ip {
                    IpAddr::V4(v4) => *bytes == v4.octets(),
                    IpAddr::V6(v6) => *bytes == v6.octets(),
                },
                _ => false,
            })
    })
}

/// The certificates under `dir`, made or renewed as needed. `names` are the serving
/// certificate's names beyond 127.0.0.1, ::1 and localhost.
pub fn ensure(dir: &Path, names: &[String]) -> anyhow::Result<Pki> {
    syncsets_store::private_file::private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca = if ca_crt.exists() && ca_key.exists() {
        Credential {
            cert: read(&ca_crt)?,
            key: read(&ca_key)?,
        }
    } else {
        let ca = new_ca()?;
        write_private(&ca_key, &ca.key)?;
        write_private(&ca_crt, &ca.cert)?;
        ca
    };
    let mut all_names: Vec<String> = ["127.0.0.1", "::1", "localhost"].map(String::from).to_vec();
    for n in names {
        if !all_names.contains(n) {
            all_names.push(n.clone());
        }
    }
    let (server_crt, server_key) = (dir.join("server.crt"), dir.join("server.key"));
    let server = match (read(&server_crt), read(&server_key)) {
        (Ok(cert), Ok(key)) if still_good(&cert, &all_names) => Credential { cert, key },
        _ => {
            let server = issue(&ca, "syncsets", &all_names, None, true)?;
            write_private(&server_key, &server.key)?;
            write_private(&server_crt, &server.cert)?;
            server
        }
    };
    let (admin_crt, admin_key) = (dir.join("admin.crt"), dir.join("admin.key"));
    let admin = match (read(&admin_crt), read(&admin_key)) {
        (Ok(cert), Ok(key)) if still_good_client(&cert) => Credential { cert, key },
        _ => {
            let admin = issue(&ca, ADMIN_USER, &[], Some(ADMIN_GROUP), false)?;
            write_private(&admin_key, &admin.key)?;
            write_private(&admin_crt, &admin.cert)?;
            admin
        }
    };
    // Every file here is its owner's only, those an older version wrote included.
    for file in [
        &ca_crt,
        &ca_key,
        &server_crt,
        &server_key,
        &admin_crt,
        &admin_key,
    ] {
        syncsets_store::private_file::restrict(file)
            .with_context(|| format!("restricting {}", file.display()))?;
    }
    Ok(Pki {
        client_cas: ca.cert.clone(),
        ca: ca.cert,
        server,
        admin,
    })
}

fn still_good_client(cert_pem: &str) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    x509_parser::parse_x509_certificate(der.as_ref()).is_ok_and(|(_, c)| {
        c.validity().not_after.to_datetime()
            > OffsetDateTime::now_utc() + Duration::from_secs(30 * 86_400)
    })
}

/// The rustls configuration: this certificate, client certificates optional (verified
/// against `client_cas` when presented), HTTP/2 or HTTP/1.1 by ALPN (as kube-apiserver).
pub fn server_config(
    server: &Credential,
    client_cas: &str,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_cas.as_bytes()) {
        roots.add(cert.context("reading a client CA certificate")?)?;
    }
    if roots.is_empty() {
        bail!("no client CA certificate");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server.cert.as_bytes())
            .collect::<Result<_, _>>()
            .context("reading the serving certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(server.key.as_bytes()).context("reading the serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// A kubeconfig for `server` trusting `ca` and authenticating with `user`'s certificate.
pub fn kubeconfig(server: &str, ca: &str, user: &Credential) -> String {
    use syncsets_types::kubeconfig;
    kubeconfig::render(
        "syncsets",
        kubeconfig::server_with_ca(server, &b64(ca)),
        ADMIN_USER,
        kubeconfig::certificate_user(&b64(&user.cert), &b64(&user.key)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_keeps_and_renews_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        #[cfg(unix)]
        for key in ["ca.key", "server.key", "admin.key"] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let again = ensure(dir.path(), &[]).unwrap();
        assert_eq!(again.server.cert, pki.server.cert, "kept");
        assert_eq!(again.ca, pki.ca);
        let renamed = ensure(dir.path(), &["hub.example.com".into(), "10.0.0.7".into()]).unwrap();
        assert_ne!(
            renamed.server.cert, pki.server.cert,
            "a new name makes a new certificate"
        );
        assert_eq!(renamed.ca, pki.ca, "from the same CA");
        assert!(still_good(
            &renamed.server.cert,
            &["10.0.0.7".into(), "localhost".into()]
        ));
        assert!(!still_good(&renamed.server.cert, &["10.0.0.8".into()]));
        server_config(&renamed.server, &renamed.client_cas).unwrap();
        let der = CertificateDer::from_pem_slice(pki.admin.cert.as_bytes()).unwrap();
        let id = syncsets_api::tls::identity_of(&der).unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups.as_slice()),
            (ADMIN_USER, &[ADMIN_GROUP.to_string()][..])
        );
    }
}
