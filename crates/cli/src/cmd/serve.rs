//! `syncsets serve`: the API server on the embedded default or a configured store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context as _, bail};
use syncsets_api::authn::Authenticator;
use syncsets_api::{AppState, Config};

use crate::controller_args::ShutdownArgs;
use crate::{BusArgs, ControllerArgs, StoreArgs, pki};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    bus: BusArgs,

    /// Address to listen on
    #[arg(long, env = "SYNCSETS_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,

    /// Where to write a kubeconfig for this server [default: <data-dir>/kubeconfig]
    #[arg(long, env = "SYNCSETS_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    security: SecurityArgs,

    #[command(flatten)]
    limits: LimitArgs,

    /// Run the SyncSet controllers in this process (false: API server only, with
    /// `syncsets controller` processes elsewhere)
    #[arg(long, env = "SYNCSETS_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,

    #[command(flatten)]
    controller: ControllerArgs,

    #[command(flatten)]
    shutdown: ShutdownArgs,

    /// On SIGTERM, how long `/readyz` fails while everything is still served, before
    /// watches end and new connections are refused (as kube-apiserver's flag of this name:
    /// time for Services and load balancers to stop sending traffic here)
    #[arg(long, env = "SYNCSETS_SHUTDOWN_DELAY_DURATION", default_value = "0s", value_parser = crate::controller_args::parse_duration)]
    shutdown_delay_duration: std::time::Duration,

    /// How long an Event is kept after it last happened (as kube-apiserver's --event-ttl)
    #[arg(long, env = "SYNCSETS_EVENT_TTL", default_value = "1h", value_parser = crate::controller_args::parse_duration)]
    event_ttl: std::time::Duration,
}

/// How the server is reached and who may call it.
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    /// Serve plain HTTP, on loopback addresses only, for development and tests: no TLS,
    /// and no authentication unless --token-auth-file is given
    #[arg(long, env = "SYNCSETS_INSECURE_HTTP")]
    pub insecure_http: bool,

    /// Serving certificate chain, PEM [default: made under <data-dir>/pki]
    #[arg(
        long,
        env = "SYNCSETS_TLS_CERT_FILE",
        requires = "tls_private_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// The serving certificate's private key, PEM
    #[arg(
        long,
        env = "SYNCSETS_TLS_PRIVATE_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_private_key_file: Option<PathBuf>,

    /// More CA certificates (PEM) whose client certificates authenticate (user = CN,
    /// groups = O); the data directory's own CA always does
    #[arg(long, env = "SYNCSETS_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Bearer tokens, in kube-apiserver's --token-auth-file form:
    /// token,user,uid,"group1,group2" per line
    #[arg(long, env = "SYNCSETS_TOKEN_AUTH_FILE")]
    pub token_auth_file: Option<PathBuf>,

    /// More names (DNS names or IP addresses) for the generated serving certificate
    #[arg(long = "tls-san", env = "SYNCSETS_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
}

/// What one client may ask of the server.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Deadline of every request but watches (Go duration: 60s, 1m30s); clients may ask
    /// for less with ?timeout=
    #[arg(long, env = "SYNCSETS_REQUEST_TIMEOUT", default_value = "60s", value_parser = crate::controller_args::parse_duration)]
    pub request_timeout: std::time::Duration,

    /// Sustained requests per second per client, beyond which it gets 429 with Retry-After
    /// (0: unlimited; system:masters is exempt)
    #[arg(long, env = "SYNCSETS_CLIENT_QPS", default_value_t = 100.0)]
    pub client_qps: f64,

    /// Requests a client may send in a burst
    #[arg(long, env = "SYNCSETS_CLIENT_BURST", default_value_t = 200)]
    pub client_burst: u32,

    /// Watch streams one client may hold open (0: unlimited)
    #[arg(long, env = "SYNCSETS_MAX_WATCHES_PER_CLIENT", default_value_t = 100)]
    pub max_watches_per_client: usize,

    /// Connections open at once; more are closed on arrival (0: unlimited)
    #[arg(long, env = "SYNCSETS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections open at once from one address (0: unlimited)
    #[arg(
        long,
        env = "SYNCSETS_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_000
    )]
    pub max_connections_per_address: usize,

    /// Longest a connection may take to send its first byte, a request's headers, or its
    /// next request when kept alive (Go duration); silent and slow clients are closed
    #[arg(long, env = "SYNCSETS_HEADER_TIMEOUT", default_value = "30s", value_parser = crate::controller_args::parse_duration)]
    pub header_timeout: std::time::Duration,
}

impl LimitArgs {
    /// The server's limits.
    pub fn limits(&self) -> syncsets_api::limits::Limits {
        syncsets_api::limits::Limits {
            request_timeout: self
                .request_timeout
                .max(std::time::Duration::from_millis(1)),
            client_qps: self.client_qps.max(0.0),
            client_burst: self.client_burst,
            max_watches: self.max_watches_per_client,
            connections: syncsets_api::serve::ConnectionLimits {
                max: self.max_connections,
                max_per_address: self.max_connections_per_address,
                header_timeout: self
                    .header_timeout
                    .max(std::time::Duration::from_millis(100)),
            },
        }
    }
}

/// A bound server, before it serves.
pub struct Bound {
    listener: Listening,
    /// Its URL.
    pub url: String,
    /// A kubeconfig for it, with the admin credential (TLS) or none (plain HTTP).
    pub kubeconfig: String,
}

enum Listening {
    Plain(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
}

impl Bound {
    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        state: std::sync::Arc<AppState>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        match self.listener {
            Listening::Plain(l) => syncsets_api::run(state, l, shutdown).await,
            Listening::Tls(l, acceptor) => {
                syncsets_api::run_tls(state, l, acceptor, shutdown).await
            }
        }
    }
}

impl SecurityArgs {
    /// Who may call: client certificates and the token file's tokens over TLS; over plain
    /// HTTP only the tokens, if any (else no authentication at all).
    pub fn authenticator(&self) -> anyhow::Result<Option<Arc<Authenticator>>> {
        let tokens = match &self.token_auth_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(
                    Authenticator::from_token_file(&text)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(match (self.insecure_http, tokens) {
            (true, None) => None,
            (_, tokens) => Some(Arc::new(tokens.unwrap_or_default())),
        })
    }

    /// Binds `addr`: TLS with this installation's certificates (made under
    /// `<data_dir>/pki` on first start) unless plain HTTP was asked for.
    pub async fn bind(&self, data_dir: &Path, addr: SocketAddr) -> anyhow::Result<Bound> {
        if self.insecure_http && !addr.ip().is_loopback() {
            bail!("refusing to serve plain HTTP on {addr}: only loopback addresses are allowed");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        if self.insecure_http {
            let url = format!("http://{host}:{}", local.port());
            return Ok(Bound {
                listener: Listening::Plain(listener),
                kubeconfig: kubeconfig(&url),
                url,
            });
        }
        let mut names = self.tls_sans.clone();
        if !local.ip().is_unspecified() {
            names.push(local.ip().to_string());
        }
        let mut pki = pki::ensure(&data_dir.join("pki"), &names)?;
        let mut trusted = pki.ca.clone();
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_private_key_file) {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            pki.server = pki::Credential {
                cert: read(cert)?,
                key: read(key)?,
            };
            // The kubeconfig trusts the supplied chain too (include its CA in the file).
            trusted.push_str(&pki.server.cert);
        }
        if let Some(path) = &self.client_ca_file {
            let extra = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            pki.client_cas.push('\n');
            pki.client_cas.push_str(&extra);
        }
        let config = pki::server_config(&pki.server, &pki.client_cas)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let url = format!("https://{host}:{}", local.port());
        Ok(Bound {
            listener: Listening::Tls(listener, acceptor),
            kubeconfig: pki::kubeconfig(&url, &trusted, &pki.admin),
            url,
        })
    }
}

/// A kubeconfig that points kubectl at a plain-HTTP server (no credentials).
pub fn kubeconfig(server: &str) -> String {
    use syncsets_types::kubeconfig;
    kubeconfig::render(
        "syncsets",
        kubeconfig::server(server),
        "syncsets",
        Default::default(),
    )
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let bus = args.bus.open().await?;
    let config = Config {
        relay: Some(args.bus.relay()),
        authenticator: args.security.authenticator()?,
        limits: args.limits.limits(),
        event_ttl: args.event_ttl,
        ..Config::default()
    };
    let bound = args
        .security
        .bind(&args.store.data_dir, args.listen)
        .await?;
    let state = AppState::with_bus(store, bus, config)
        .await
        .map_err(|e| anyhow::anyhow!("preparing the server: {}", e.message))?;
    let controllers = if args.controllers {
        Some(
            syncsets_controller::Controller::start(
                state.store.clone(),
                state.bus.clone(),
                args.controller.config(),
            )
            .await
            .context("starting the controllers")?,
        )
    } else {
        None
    };
    let path = args
        .kubeconfig
        .unwrap_or_else(|| args.store.data_dir.join("kubeconfig"));
    crate::pki::write_private(&path, &bound.kubeconfig)?;
    let server = bound.url.clone();
    tracing::info!(%server, kubeconfig = %path.display(), store = state.store.backend(), "serving");
    println!(
        "syncsets serving on {server} (store: {}, bus: {}); kubectl --kubeconfig {} get ns",
        state.store.backend(),
        state.bus.backend(),
        path.display()
    );
    let (stop_accepting, accepting) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(bound.serve(state.clone(), async move {
        let _ = accepting.await;
    }));
    tokio::select! {
        served = &mut serving => return Ok(served??),
        () = shutdown_signal() => {}
    }
    let delay = args.shutdown_delay_duration;
    stop(
        state,
        controllers,
        stop_accepting,
        serving,
        delay,
        &args.shutdown,
    )
    .await
}

/// Stops on SIGTERM, in order: `/readyz` fails while everything is still served, for
/// the shutdown delay; then watches end cleanly (clients watch again elsewhere) and new
/// connections are refused; requests and reconciles in flight finish, within the grace
/// period; the relay records its position; the bus closes. A second signal exits at once.
async fn stop(
    state: Arc<AppState>,
    controllers: Option<syncsets_controller::Controller>,
    stop_accepting: tokio::sync::oneshot::Sender<()>,
    mut serving: tokio::task::JoinHandle<std::io::Result<()>>,
    delay: std::time::Duration,
    shutdown: &ShutdownArgs,
) -> anyhow::Result<()> {
    exit_on_second_signal();
    tracing::info!(?delay, grace = ?shutdown.shutdown_grace_period, "stopping: /readyz fails");
    state.stop();
    tokio::time::sleep(delay).await;
    let deadline = tokio::time::Instant::now() + shutdown.shutdown_grace_period;
    state.end_watches();
    let _ = stop_accepting.send(());
    let drain = async {
        match tokio::time::timeout_at(deadline, &mut serving).await {
            Ok(served) => served
                .map_err(anyhow::Error::from)?
                .map_err(anyhow::Error::from),
            Err(_) => {
                tracing::warn!("requests still open after the grace period; closing them");
                serving.abort();
                Ok(())
            }
        }
    };
    let reconciles = async {
        if let Some(c) = controllers {
            c.shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
    };
    let (drained, ()) = tokio::join!(drain, reconciles);
    if let Some(relay) = &state.relay
        && tokio::time::timeout(CLOSE_WITHIN, relay.stop())
            .await
            .is_err()
    {
        tracing::warn!("the outbox relay did not stop in time");
    }
    close_bus(state.bus.as_ref()).await;
    tracing::info!("stopped");
    drained
}

/// How long closing a connection (the relay's last write, the bus) may take at exit.
pub const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes the bus, giving up after [`CLOSE_WITHIN`] (a broker that does not answer).
pub async fn close_bus(bus: &dyn syncsets_bus::Bus) {
    if tokio::time::timeout(CLOSE_WITHIN, bus.close())
        .await
        .is_err()
    {
        tracing::warn!("the bus did not close in time");
    }
}

/// After the first SIGTERM or SIGINT, a second one exits at once (status 1), as
/// Kubernetes' own servers do.
pub fn exit_on_second_signal() {
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
