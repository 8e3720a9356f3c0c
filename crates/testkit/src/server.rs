//! [`TestServer`]: the API server in the test's process on 127.0.0.1:0, over the backend a
//! test asks for — the one way tests start a server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use syncsets_api::{AppState, Config};
use syncsets_bus::Bus;
use syncsets_store::Keyring;
use tokio::sync::oneshot;

use crate::TestDb;

/// The store a test server runs on.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// A SQLite file in the server's temporary directory.
    #[default]
    Sqlite,
    /// A fresh PostgreSQL database, dropped by [`TestServer::stop`].
    Postgres,
    /// The in-memory store.
    Memory,
    /// A store URL the test chose.
    Url(String),
}

/// How a [`TestServer`] starts.
#[derive(Default)]
pub struct Builder {
    backend: Backend,
    token_file: Option<String>,
    bookmark_interval: Option<Duration>,
    initial_events_page: Option<usize>,
    bus: Option<Arc<dyn Bus>>,
}

impl Builder {
    /// Runs on `backend` (default: SQLite).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Authenticates with these `--token-auth-file` lines (and so applies RBAC and rate
    /// limits); requests carry the token of the first line.
    pub fn token_auth(mut self, lines: &str) -> Self {
        self.token_file = Some(lines.to_string());
        self
    }

    /// Sends watch bookmarks this often.
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = Some(every);
        self
    }

    /// Reads a watch's initial state this many objects at a time.
    pub fn initial_events_page(mut self, objects: usize) -> Self {
        self.initial_events_page = Some(objects);
        self
    }

    /// Uses this event bus (default: in-process).
    pub fn bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Starts the server; `None` when its PostgreSQL is unavailable outside CI (see
    /// [`crate::unavailable`]).
    pub async fn start(self) -> Option<TestServer> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (url, db) = match self.backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("db.sqlite").display()),
                None,
            ),
            Backend::Postgres => {
                let db = TestDb::create().await?;
                (db.url.clone(), Some(db))
            }
            Backend::Memory => ("memory://".to_string(), None),
            Backend::Url(url) => (url, None),
        };
        let keyring = Arc::new(Keyring::new(vec![("k1".into(), vec![3; 32])]).expect("a key"));
        // The recorder first, as the binary installs it: the store registers its metrics.
        syncsets_api::metrics::install();
        let store = syncsets_store::open(&url, Some(keyring))
            .await
            .expect("the store opens");
        let authenticator = self.token_file.as_deref().map(|lines| {
            Arc::new(
                syncsets_api::authn::Authenticator::from_token_file(lines)
                    .expect("a valid token file"),
            )
        });
        let mut config = Config {
            authenticator,
            ..Config::default()
        };
        if let Some(every) = self.bookmark_interval {
            config.bookmark_interval = every;
        }
        if let Some(objects) = self.initial_events_page {
            config.initial_events_page = objects;
        }
        let state = match self.bus {
            Some(bus) => AppState::with_bus(store, bus, config).await,
            None => AppState::new(store, config).await,
        }
        .expect("the server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let (tx, rx) = oneshot::channel();
        tokio::spawn(syncsets_api::run(state.clone(), listener, async {
            let _ = rx.await;
        }));
        let token = self.token_file.as_deref().map(|lines| {
            lines
                .split([',', '\n'])
                .next()
                .unwrap_or_default()
                .to_string()
        });
        Some(TestServer {
            base,
            state,
            token,
            dir,
            db,
            stop: Some(tx),
        })
    }
}

/// A running API server; it stops when dropped (its PostgreSQL database stays until
/// [`TestServer::stop`] or the next hour's sweep).
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its state (store, bus, registry).
    pub state: Arc<AppState>,
    /// The bearer token requests carry (servers with authentication).
    pub token: Option<String>,
    /// Its temporary directory (SQLite file, kubeconfig).
    pub dir: tempfile::TempDir,
    db: Option<TestDb>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// How to start one.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A server over a temporary SQLite file.
    pub async fn sqlite() -> Self {
        Self::builder()
            .start()
            .await
            .expect("SQLite is always available")
    }

    /// A kubeconfig file for this server (with the token, if it has one).
    pub fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        if !path.exists() {
            std::fs::write(&path, kubeconfig(&self.base, self.token.as_deref()))
                .expect("writing the kubeconfig");
        }
        path
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(db) = self.db.take() {
            db.drop_db().await;
        }
    }
}

/// A kubeconfig for `server` (namespace `default`), with a bearer `token` or no credentials.
pub fn kubeconfig(server: &str, token: Option<&str>) -> String {
    let user = token.map(syncsets_types::kubeconfig::token_user);
    syncsets_types::kubeconfig::render(
        "test",
        syncsets_types::kubeconfig::server(server),
        "test",
        user.unwrap_or_default(),
    )
}
