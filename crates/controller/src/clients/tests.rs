use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;

fn kubeconfig(user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n{user}"
    )
}

fn clients() -> Clients {
    Clients::new(ClientSettings::default())
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Self-signed certificates and their keys (PEM): usable as CAs and as client identities.
static IDENTITIES: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    (0..3)
        .map(|i| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![format!("id-{i}.example")])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect()
});

#[test]
fn refuses_kubeconfigs_that_touch_the_host() {
    for user in [
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n",
        "    tokenFile: /etc/shadow\n",
        "    client-certificate: /root/cert.pem\n",
    ] {
        let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig(user)).unwrap();
        assert!(refuse_host_access(&kc).is_err(), "{user}");
    }
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig("    token: abc\n")).unwrap();
    assert!(refuse_host_access(&kc).is_ok());
}

#[tokio::test]
async fn only_identical_credentials_share_a_transport() {
    let clients = clients();
    let a = clients
        .for_kubeconfig(&kubeconfig("    token: a\n"))
        .await
        .unwrap();
    let a2 = clients
        .for_kubeconfig(&kubeconfig("    token: a\n"))
        .await
        .unwrap();
    assert_eq!(clients.transports.lock().unwrap().len(), 1);
    let b = clients
        .for_kubeconfig(&kubeconfig("    token: b\n"))
        .await
        .unwrap();
    assert_eq!(clients.transports.lock().unwrap().len(), 2);
    drop((a, a2, b));
    let err = clients
        .for_kubeconfig("clusters: [ {{ token: hunter2")
        .await
        .unwrap_err();
    assert_eq!(
        err.message, "invalid kubeconfig",
        "never quotes the kubeconfig"
    );
}

/// The attack of the security review: another cluster's (public) certificate with a key
/// of one's own, written after that cluster's client exists, must not borrow its TLS setup.
#[tokio::test]
async fn a_certificate_with_another_key_never_borrows_its_owners_connections() {
    let (cert, key) = &IDENTITIES[0];
    let (_, other_key) = &IDENTITIES[1];
    let user = |key: &str| {
        format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert),
            b64(key)
        )
    };
    let clients = clients();
    let owner = clients
        .for_kubeconfig(&kubeconfig(&user(key)))
        .await
        .unwrap();
    let err = clients
        .for_kubeconfig(&kubeconfig(&user(other_key)))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "the kubeconfig's client-key-data does not belong to its client-certificate-data"
    );
    assert_eq!(err.failure, crate::target::Failure::Config);
    drop(owner);
}

/// A kubeconfig's credential fields, each from a small pool so that random pairs are
/// often equal in some fields and differ in others.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Credentials {
    server: u8,
    ca: Option<u8>,
    insecure: bool,
    server_name: Option<u8>,
    cert: Option<u8>,
    key: Option<u8>,
    token: Option<u8>,
    basic: Option<(u8, u8)>,
    impersonate: Option<u8>,
}

impl Credentials {
    fn yaml(&self) -> String {
        let mut cluster = format!("    server: https://127.0.0.{}:6443\n", self.server + 1);
        if let Some(ca) = self.ca {
            cluster += &format!(
                "    certificate-authority-data: {}\n",
                b64(&IDENTITIES[usize::from(ca)].0)
            );
        }
        if self.insecure {
            cluster += "    insecure-skip-tls-verify: true\n";
        }
        if let Some(n) = self.server_name {
            cluster += &format!("    tls-server-name: name-{n}.example\n");
        }
        let mut user = String::new();
        if let Some(c) = self.cert {
            user += &format!(
                "    client-certificate-data: {}\n",
                b64(&IDENTITIES[usize::from(c)].0)
            );
        }
        if let Some(k) = self.key {
            user += &format!(
                "    client-key-data: {}\n",
                b64(&IDENTITIES[usize::from(k)].1)
            );
        }
        if let Some(t) = self.token {
            user += &format!("    token: token-{t}\n");
        }
        if let Some((u, p)) = self.basic {
            user += &format!("    username: user-{u}\n    password: password-{p}\n");
        }
        if let Some(i) = self.impersonate {
            user += &format!("    as: someone-{i}\n");
        }
        if user.is_empty() {
            user = "    {}\n".into();
        }
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n{cluster}contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n{user}"
        )
    }
}

fn credentials() -> impl Strategy<Value = Credentials> {
    (
        0..2u8,
        proptest::option::of(0..2u8),
        any::<bool>(),
        proptest::option::of(0..2u8),
        proptest::option::of(0..2u8),
        proptest::option::of(0..2u8),
        proptest::option::of(0..2u8),
        proptest::option::of((0..2u8, 0..2u8)),
        proptest::option::of(0..2u8),
    )
        .prop_map(
            |(server, ca, insecure, server_name, cert, key, token, basic, impersonate)| {
                Credentials {
                    server,
                    ca,
                    insecure,
                    server_name,
                    cert,
                    key,
                    token,
                    basic,
                    impersonate,
                }
            },
        )
}

/// Pairs of credentials: the second is the first with a random few fields drawn anew, so
/// pairs that are equal, or differ in one field only, are common.
fn pairs() -> impl Strategy<Value = (Credentials, Credentials)> {
    (
        credentials(),
        credentials(),
        proptest::collection::vec(proptest::bool::weighted(0.2), 9),
    )
        .prop_map(|(a, other, redraw)| {
            let mut b = a.clone();
            macro_rules! redraw {
                ($($i:literal $field:ident),*) => {$(
                    if redraw[$i] {
                        b.$field = other.$field;
                    }
                )*};
            }
            redraw!(0 server, 1 ca, 2 insecure, 3 server_name, 4 cert, 5 key, 6 token, 7 basic, 8 impersonate);
            (a, b)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Two kubeconfigs share a transport (so a connection) exactly when every credential
    /// field is the same; whichever is built first, the other never borrows its setup.
    #[test]
    fn kubeconfigs_differing_in_any_credential_never_share_a_connection(
        (a, b) in pairs(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (first, second) in [(&a, &b), (&b, &a)] {
            let clients = clients();
            let build = |c: &Credentials| {
                runtime.block_on(async {
                    let config = clients.config(&c.yaml()).await?;
                    clients.transport(&config)
                })
            };
            // The first is kept alive (cached) while the second is built.
            let first = build(first);
            let second = build(second);
            match (&first, &second) {
                (Ok(x), Ok(y)) => prop_assert_eq!(Arc::ptr_eq(x, y), a == b),
                // Identical kubeconfigs cannot differ in whether they work.
                (Ok(_), Err(_)) | (Err(_), Ok(_)) => prop_assert_ne!(&a, &b),
                (Err(_), Err(_)) => {}
            }
        }
    }
}
