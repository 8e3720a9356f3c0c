//! Clients of target clusters, built from the kubeconfig in each cluster's Secret and kept
//! in memory only: cached per cluster (least recently used ones dropped beyond a bound),
//! rebuilt when the kubeconfig changes.
//!
//! ```text
//!   cluster ─▶ Target (kube::Client: base URL, credentials, rate limit, discovery cache)
//!                 └─▶ Transport (hyper connection pool + TLS), shared only by clusters
//!                     whose kubeconfigs carry exactly the same endpoint and credentials
//! ```
//!
//! The hub holds an admin credential for every cluster, and whoever may write a Secret
//! and a ClusterDeployment in a namespace chooses what such a kubeconfig says. So nothing
//! built from one cluster's kubeconfig is ever used for another's unless every credential
//! in them is equal: a transport is keyed by a SHA-256 digest of the endpoint, the CAs, the
//! TLS options and the whole user entry (client certificate *and key*, token, basic auth,
//! impersonation); a cached client is checked against a digest of the kubeconfig it was
//! built from. Real clusters, each with its own credentials, get their own transport;
//! simulated clusters behind one endpoint with one credential share connections instead
//! of holding one pool each.
//!
//! A kubeconfig may only carry data: one that would read local files, run a command
//! (`exec`, `auth-provider`) or use a proxy is refused, since the hub must not do what
//! whoever wrote a Secret says. Errors never quote the kubeconfig.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt as _;
use kube::config::KubeConfigOptions;
use syncsets_store::{ObjectKey, Stored};
use syncsets_types::hive::UsableSets;
use tower::ServiceBuilder;

use crate::model::{Cluster, resources};
use crate::target::{Target, TargetError};

type Connector = hyper_timeout::TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>;
type Transport = HyperClient<Connector, kube::client::Body>;

/// How clients are built.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Connecting gives up after this.
    pub connect_timeout: Duration,
    /// A request gives up after this.
    pub request_timeout: Duration,
    /// Requests per second to one cluster, on average.
    pub qps: f64,
    /// Requests to one cluster at once beyond the average.
    pub burst: u32,
    /// Clients kept at most.
    pub cache_size: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            qps: 100.0,
            burst: 200,
            cache_size: 2048,
        }
    }
}

struct Cached {
    target: Arc<Target>,
    /// SHA-256 of the kubeconfig it was built from.
    digest: Digest,
}

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// A cluster's kubeconfig, as read from its Secret (in memory only).
#[derive(Clone)]
pub struct Kubeconfig {
    /// The Secret's resourceVersion (`None`: there is none).
    pub version: Option<u64>,
    /// The kubeconfig's YAML, or why there is none to use.
    pub text: Result<String, TargetError>,
    /// The SelectorSyncSets its writer may use, as the same Secret records them.
    pub usable: UsableSets,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the kubeconfig itself: it holds credentials.
        f.debug_struct("Kubeconfig")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    fn unusable(why: &str) -> Self {
        Self {
            version: None,
            text: Err(TargetError::config(why)),
            usable: UsableSets::Any,
        }
    }
}

/// Builds and caches target clients.
pub struct Clients {
    settings: ClientSettings,
    /// Cluster key → its client, the least recently used dropped first.
    cache: Mutex<lru::LruCache<String, Cached>>,
    transports: Mutex<HashMap<TransportKey, Weak<Transport>>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

/// Keeps a shared transport alive as long as a client uses it.
struct Pinned {
    transport: Arc<Transport>,
}

impl Clone for Pinned {
    fn clone(&self) -> Self {
        Self {
            transport: self.transport.clone(),
        }
    }
}

impl tower::Service<http::Request<kube::client::Body>> for Pinned {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        self.transport.request(req)
    }
}

impl Clients {
    /// Clients built with `settings`.
    pub fn new(settings: ClientSettings) -> Self {
        Self {
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(settings.cache_size).unwrap_or(NonZeroUsize::MIN),
            )),
            settings,
            transports: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a cluster's client (its kubeconfig changed).
    pub fn forget(&self, key: &str) {
        self.cache.lock().expect("client cache").pop(key);
    }

    /// How many clients are cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("client cache").len()
    }

    /// The client of a cluster, built from its kubeconfig Secret as read (`kubeconfig`)
    /// unless one built from exactly the same kubeconfig is cached for this cluster.
    pub async fn target(
        &self,
        cluster: &Cluster,
        kubeconfig: &Kubeconfig,
    ) -> Result<Arc<Target>, TargetError> {
        let key = cluster.key();
        let text = kubeconfig.text.as_ref().map_err(Clone::clone)?;
        let digest = sha256(text.as_bytes());
        if let Some(c) = self.cache.lock().expect("client cache").get(&key)
            && c.digest == digest
        {
            return Ok(c.target.clone());
        }
        let target = Arc::new(self.for_kubeconfig(text).await?);
        let cached = Cached {
            target: target.clone(),
            digest,
        };
        self.cache.lock().expect("client cache").put(key, cached);
        Ok(target)
    }

    /// The key of a cluster's kubeconfig Secret, if its ClusterDeployment names one.
    pub fn kubeconfig_key(cluster: &Cluster) -> Option<ObjectKey> {
        let secret = cluster.kubeconfig_secret.as_deref()?;
        Some(ObjectKey::new(
            "",
            resources::SECRETS,
            &cluster.namespace,
            secret,
        ))
    }

    /// A cluster's kubeconfig from its Secret (key `kubeconfig`) as read at
    /// [`Self::kubeconfig_key`]: a missing or unusable one is reported in
    /// [`Kubeconfig::text`].
    pub fn kubeconfig(cluster: &Cluster, stored: Option<Stored>) -> Kubeconfig {
        let Some(secret) = cluster.kubeconfig_secret.as_deref() else {
            return Kubeconfig::unusable("the ClusterDeployment names no admin kubeconfig Secret");
        };
        let Some(stored) = stored else {
            return Kubeconfig::unusable(&format!("Secret {secret} not found"));
        };
        let text = stored.object["data"]["kubeconfig"]
            .as_str()
            .ok_or_else(|| {
                TargetError::config(format!("Secret {secret} has no key \"kubeconfig\""))
            })
            .and_then(|data| {
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| {
                        TargetError::config(format!("Secret {secret}: kubeconfig is not base64"))
                    })
            })
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    TargetError::config(format!("Secret {secret}: kubeconfig is not UTF-8"))
                })
            });
        Kubeconfig {
            version: Some(stored.rv),
            text,
            usable: UsableSets::of(&stored.object["metadata"]["annotations"]),
        }
    }

    /// A client for the cluster a kubeconfig (YAML text) points at.
    pub async fn for_kubeconfig(&self, text: &str) -> Result<Target, TargetError> {
        let config = self.config(text).await?;
        let transport = self.transport(&config)?;
        let auth = config
            .auth_layer()
            .map_err(|_| TargetError::config("the kubeconfig's credentials cannot be used"))?;
        let headers = config.extra_headers_layer().map_err(|_| {
            TargetError::config("the kubeconfig's impersonation settings are invalid")
        })?;
        let service = ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(auth)
            .layer(headers)
            .map_err(tower::BoxError::from)
            .service(Pinned { transport });
        let client = kube::Client::new(service, config.default_namespace.clone());
        Ok(Target::new(
            client,
            self.settings.qps,
            self.settings.burst,
            self.settings.request_timeout,
        ))
    }

    /// The client configuration a kubeconfig (YAML text) describes, with our settings.
    async fn config(&self, text: &str) -> Result<kube::Config, TargetError> {
        // Parse errors quote the YAML (credentials included): say only that it is invalid.
        let kubeconfig = kube::config::Kubeconfig::from_yaml(text)
            .map_err(|_| TargetError::config("invalid kubeconfig"))?;
        refuse_host_access(&kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|_| TargetError::config("invalid kubeconfig"))?;
        config.proxy_url = None;
        config.default_retry = false;
        config.connect_timeout = Some(self.settings.connect_timeout);
        config.read_timeout = Some(self.settings.request_timeout);
        config.write_timeout = Some(self.settings.request_timeout);
        config.reset_reader_on_write = true;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!(
                "syncsets-controller/",
                env!("CARGO_PKG_VERSION")
            )),
        ));
        Ok(config)
    }

    /// The transport for a config: shared with another cluster's only when both stand for
    /// the same endpoint and credentials ([`TransportKey`]).
    fn transport(&self, config: &kube::Config) -> Result<Arc<Transport>, TargetError> {
        let key = TransportKey::of(config)?;
        let mut transports = self.transports.lock().expect("transports");
        if let Some(t) = transports.get(&key).and_then(Weak::upgrade) {
            return Ok(t);
        }
        let https = config.rustls_https_connector().map_err(|e| {
            let detail = TargetError::from_kube(&e).message;
            // rustls says "private key does not match certificate" (or similar) when a
            // kubeconfig pairs someone's certificate with another key.
            if detail.contains("private key") || detail.contains("KeyMismatch") {
                TargetError::config(
                    "the kubeconfig's client-key-data does not belong to its client-certificate-data",
                )
            } else {
                TargetError::config(format!("TLS configuration: {detail}"))
            }
        })?;
        let mut connector = hyper_timeout::TimeoutConnector::new(https);
        connector.set_connect_timeout(config.connect_timeout);
        connector.set_read_timeout(config.read_timeout);
        connector.set_write_timeout(config.write_timeout);
        connector.set_reset_reader_on_write(true);
        let transport = Arc::new(
            HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .pool_timer(TokioTimer::new())
                .build(connector),
        );
        transports.retain(|_, t| t.strong_count() > 0);
        transports.insert(key, Arc::downgrade(&transport));
        Ok(transport)
    }
}

/// What a transport stands for: a SHA-256 digest of everything that decides where its
/// connections go and whose they are — the endpoint, the CAs, the TLS options and the
/// whole user entry (client certificate and key, token, basic auth, impersonation, even
/// what we refuse), plus the headers sent. Two configs that differ in any of it never share
/// a transport, hence never a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TransportKey(Digest);

impl TransportKey {
    fn of(config: &kube::Config) -> Result<Self, TargetError> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        // Each field tagged and length-prefixed, so no two configs encode alike.
        let mut field = |tag: u8, bytes: &[u8]| {
            digest.update(&[tag]);
            digest.update(&(bytes.len() as u64).to_be_bytes());
            digest.update(bytes);
        };
        let url = &config.cluster_url;
        field(1, url.scheme_str().unwrap_or_default().as_bytes());
        field(
            2,
            url.authority()
                .map(|a| a.as_str())
                .unwrap_or_default()
                .as_bytes(),
        );
        // No CA (the system's roots) is not an empty list of CAs (none trusted).
        field(12, &[u8::from(config.root_cert.is_some())]);
        for cert in config.root_cert.iter().flatten() {
            field(3, cert);
        }
        field(4, &[u8::from(config.accept_invalid_certs)]);
        match &config.tls_server_name {
            Some(name) => field(5, name.as_bytes()),
            None => field(6, &[]),
        }
        // Every user field, secrets included: serialised here only to be digested.
        let user = serde_json::to_vec(&config.auth_info)
            .map_err(|_| TargetError::config("the kubeconfig's user cannot be read"))?;
        field(7, &user);
        for (name, value) in &config.headers {
            field(8, name.as_str().as_bytes());
            field(9, value.as_bytes());
        }
        field(10, &[u8::from(config.disable_compression)]);
        if let Some(proxy) = &config.proxy_url {
            field(11, proxy.to_string().as_bytes());
        }
        let mut out = [0; 32];
        out.copy_from_slice(digest.finish().as_ref());
        Ok(Self(out))
    }
}

/// Refuses kubeconfigs that would make the hub read its own files or run commands.
fn refuse_host_access(kubeconfig: &kube::config::Kubeconfig) -> Result<(), TargetError> {
    for named in &kubeconfig.clusters {
        if let Some(c) = &named.cluster {
            if c.certificate_authority.is_some() {
                return Err(TargetError::config(
                    "the kubeconfig refers to a CA file: embed certificate-authority-data instead",
                ));
            }
            if c.proxy_url.is_some() {
                return Err(TargetError::config(
                    "the kubeconfig sets a proxy-url, which syncsets does not use",
                ));
            }
        }
    }
    for named in &kubeconfig.auth_infos {
        if let Some(a) = &named.auth_info {
            if a.exec.is_some() || a.auth_provider.is_some() {
                return Err(TargetError::config(
                    "the kubeconfig runs a credential plugin (exec/auth-provider): embed a token or client certificate instead",
                ));
            }
            if a.token_file.is_some() || a.client_certificate.is_some() || a.client_key.is_some() {
                return Err(TargetError::config(
                    "the kubeconfig refers to credential files: embed token, client-certificate-data and client-key-data instead",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
