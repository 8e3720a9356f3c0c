//! Clients of target clusters, built from the kubeconfig in each cluster's Secret and kept
//! in memory only: cached per cluster (least recently used ones dropped beyond a bound),
//! rebuilt when the kubeconfig changes.
//!
//! ```text
//!   cluster ─▶ Target (kube::Client: base URL, credentials, rate limit, discovery cache)
//!                 └─▶ Transport (hyper connection pool + TLS), shared by every cluster
//!                     with the same TLS settings (CA, client certificate, server name)
//! ```
//!
//! Clusters with distinct CAs (real clusters) get their own transport; many clusters
//! behind one endpoint share connections instead of holding one pool each.
//!
//! A kubeconfig may only carry data: one that would read local files, run a command
//! (`exec`, `auth-provider`) or use a proxy is refused, since the hub must not do what
//! whoever wrote a Secret says. Errors never quote the kubeconfig.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt as _;
use kube::config::KubeConfigOptions;
use syncsets_store::{ObjectKey, Store};
use tower::ServiceBuilder;

use crate::model::{Cluster, resources};
use crate::plan::fnv1a;
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
    /// The resourceVersion of the Secret it was built from.
    version: Option<u64>,
    used: u64,
}

/// A cluster's kubeconfig, as read from its Secret (in memory only).
#[derive(Clone)]
pub struct Kubeconfig {
    /// The Secret's resourceVersion (`None`: there is none).
    pub version: Option<u64>,
    /// The kubeconfig's YAML, or why there is none to use.
    pub text: Result<String, TargetError>,
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
        }
    }
}

/// Builds and caches target clients.
pub struct Clients {
    store: Arc<dyn Store>,
    settings: ClientSettings,
    cache: Mutex<(HashMap<String, Cached>, u64)>,
    transports: Mutex<HashMap<u64, Weak<Transport>>>,
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
    /// Clients reading kubeconfigs from `store`.
    pub fn new(store: Arc<dyn Store>, settings: ClientSettings) -> Self {
        Self {
            store,
            settings,
            cache: Mutex::new((HashMap::new(), 0)),
            transports: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a cluster's client (its kubeconfig changed).
    pub fn forget(&self, key: &str) {
        self.cache.lock().expect("client cache").0.remove(key);
    }

    /// How many clients are cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().expect("client cache").0.len()
    }

    /// The client of a cluster, built from its kubeconfig Secret as read (`kubeconfig`)
    /// unless one from the same version of the Secret is cached.
    pub async fn target(
        &self,
        cluster: &Cluster,
        kubeconfig: &Kubeconfig,
    ) -> Result<Arc<Target>, TargetError> {
        let key = cluster.key();
        {
            let mut cache = self.cache.lock().expect("client cache");
            let (map, clock) = &mut *cache;
            *clock += 1;
            if let Some(c) = map.get_mut(&key)
                && c.version == kubeconfig.version
            {
                c.used = *clock;
                return Ok(c.target.clone());
            }
        }
        let text = kubeconfig.text.as_ref().map_err(Clone::clone)?;
        let target = Arc::new(self.for_kubeconfig(text).await?);
        let mut cache = self.cache.lock().expect("client cache");
        let (map, clock) = &mut *cache;
        if map.len() >= self.settings.cache_size
            && !map.contains_key(&key)
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            key,
            Cached {
                target: target.clone(),
                version: kubeconfig.version,
                used: *clock,
            },
        );
        Ok(target)
    }

    /// Reads a cluster's kubeconfig Secret (key `kubeconfig`). A store failure is an
    /// error; a missing or unusable kubeconfig is reported in [`Kubeconfig::text`].
    pub async fn kubeconfig(
        &self,
        cluster: &Cluster,
    ) -> Result<Kubeconfig, syncsets_store::StoreError> {
        let Some(secret) = cluster.kubeconfig_secret.as_deref() else {
            return Ok(Kubeconfig::unusable(
                "the ClusterDeployment names no admin kubeconfig Secret",
            ));
        };
        let key = ObjectKey::new("", resources::SECRETS, &cluster.namespace, secret);
        let Some(stored) = self.store.get(&key).await? else {
            return Ok(Kubeconfig::unusable(&format!("Secret {secret} not found")));
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
        Ok(Kubeconfig {
            version: Some(stored.rv),
            text,
        })
    }

    /// A client for the cluster a kubeconfig (YAML text) points at.
    pub async fn for_kubeconfig(&self, text: &str) -> Result<Target, TargetError> {
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

    /// The shared transport for a config's TLS settings.
    fn transport(&self, config: &kube::Config) -> Result<Arc<Transport>, TargetError> {
        let mut identity = Vec::new();
        for cert in config.root_cert.iter().flatten() {
            identity.extend_from_slice(b"ca:");
            identity.extend_from_slice(cert);
        }
        identity.extend_from_slice(format!("insecure:{};", config.accept_invalid_certs).as_bytes());
        identity.extend_from_slice(format!("sni:{:?};", config.tls_server_name).as_bytes());
        // The certificate identifies the key: the (secret) key itself is not needed here.
        identity.extend_from_slice(b"cert:");
        identity.extend_from_slice(
            config
                .auth_info
                .client_certificate_data
                .as_deref()
                .unwrap_or("")
                .as_bytes(),
        );
        let id = fnv1a(&identity);
        let mut transports = self.transports.lock().expect("transports");
        if let Some(t) = transports.get(&id).and_then(Weak::upgrade) {
            return Ok(t);
        }
        let https = config.rustls_https_connector().map_err(|e| {
            TargetError::config(format!(
                "TLS configuration: {}",
                TargetError::from_kube(&e).message
            ))
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
        transports.insert(id, Arc::downgrade(&transport));
        Ok(transport)
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
mod tests {
    use super::*;

    fn kubeconfig(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n{user}"
        )
    }

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
    async fn clusters_with_the_same_tls_settings_share_a_transport() {
        let store: Arc<dyn Store> = Arc::new(syncsets_store::MemoryStore::new());
        let clients = Clients::new(store, ClientSettings::default());
        let a = clients
            .for_kubeconfig(&kubeconfig("    token: a\n"))
            .await
            .unwrap();
        let b = clients
            .for_kubeconfig(&kubeconfig("    token: b\n"))
            .await
            .unwrap();
        assert_eq!(clients.transports.lock().unwrap().len(), 1);
        drop((a, b));
        let err = clients
            .for_kubeconfig("clusters: [ {{ token: hunter2")
            .await
            .unwrap_err();
        assert_eq!(
            err.message, "invalid kubeconfig",
            "never quotes the kubeconfig"
        );
    }
}
