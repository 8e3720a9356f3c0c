//! `syncsets bench` (its own crate: measurement tooling, apart from the product code): measurements beside baselines taken in the same run, on the same
//! machine, through the same database driver, so the figures are ratios that survive a
//! noisy shared machine.
//!
//! ```text
//!   create   API creates/s with N concurrent HTTP clients   vs  raw INSERTs/s, N connections
//!            (SQLite: one connection, its best)
//!   list     label-selector list over a large collection     vs  the raw SQL query, p50
//! ```
//!
//! and the event path ([`watch`]): relay throughput, watch latency, fan-out.
//!
//! The server runs in-process on 127.0.0.1:0 over a throw-away store: a temporary SQLite
//! file, or a temporary database on the given PostgreSQL server (dropped afterwards).

mod fleet;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sqlx::Executor;
use syncsets_api::{AppState, Config};
use syncsets_bus::relay::{Relay, RelayConfig};
use syncsets_bus::{AmqpBus, Bus, LocalBus};

use syncsets_store::{Keyring, ObjectKey, Store};
use tokio::sync::oneshot;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Backend: `sqlite` (a temporary file), `memory`, or a postgres:// URL of a server on
    /// which a temporary database is created
    #[arg(long, env = "SYNCSETS_BENCH_STORE", default_value = "sqlite")]
    store: String,

    /// Concurrent clients for the create benchmark (a hub serves many clients at once)
    #[arg(long, default_value_t = 32)]
    clients: usize,

    /// Objects created in the create benchmark
    #[arg(long, default_value_t = 4000)]
    creates: usize,

    /// Size of the collection for the selector list benchmark
    #[arg(long, default_value_t = 100_000)]
    objects: usize,

    /// Percentage of that collection the selector matches
    #[arg(long, default_value_t = 1.0)]
    selected_percent: f64,

    /// Timed list requests (after two warm-up requests)
    #[arg(long, default_value_t = 30)]
    samples: usize,

    /// Event bus: `inprocess`, or an amqp:// URL of RabbitMQ
    #[arg(long, env = "SYNCSETS_BENCH_BUS", default_value = "inprocess")]
    bus: String,

    /// Writes per second while watch latency is measured
    #[arg(long, default_value_t = 100)]
    watch_rate: u32,

    /// Writes while watch latency is measured (each reaches every watcher)
    #[arg(long, default_value_t = 500)]
    watch_writes: usize,

    /// Benchmarks to run (`fleet`, convergence of a simulated fleet, takes minutes and
    /// runs only when asked for)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,list,relay,watch,fanout"
    )]
    only: Vec<String>,

    #[command(flatten)]
    fleet: fleet::FleetArgs,
}

/// A temporary backend.
struct Backend {
    url: String,
    kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    db: Option<syncsets_testkit::TestDb>,
}

impl Backend {
    async fn prepare(spec: &str) -> anyhow::Result<Self> {
        match spec {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(Self {
                    url,
                    kind: "sqlite",
                    _dir: Some(dir),
                    db: None,
                })
            }
            "memory" => Ok(Self {
                url: "memory://".into(),
                kind: "memory",
                _dir: None,
                db: None,
            }),
            url if url.starts_with("postgres") => {
                let db = syncsets_testkit::TestDb::create_on(url)
                    .await
                    .context("creating a database on PostgreSQL")?;
                Ok(Self {
                    url: db.url.clone(),
                    kind: "postgres",
                    _dir: None,
                    db: Some(db),
                })
            }
            other => {
                bail!("unknown bench store {other:?}: use sqlite, memory or a postgres:// URL")
            }
        }
    }

    async fn cleanup(self) {
        if let Some(db) = self.db {
            db.drop_db().await;
        }
    }
}

/// A ConfigMap of about 1 KiB.
pub(crate) fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "bench", "labels": labels},
           "data": {"payload": "x".repeat(900)}})
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// Runs the benchmarks.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut result = Ok(());
    if args.only.iter().any(|o| o != "fleet") {
        let backend = Backend::prepare(&args.store).await?;
        result = run_on(&args, &backend).await;
        backend.cleanup().await;
    }
    if args.only.iter().any(|o| o == "fleet") {
        let backend = Backend::prepare(&args.store).await?;
        let fleet = fleet::run(&args.fleet, &backend.url, &args.bus).await;
        backend.cleanup().await;
        if !fleet? {
            bail!("a fleet benchmark missed its target");
        }
    }
    result
}

async fn run_on(args: &BenchArgs, backend: &Backend) -> anyhow::Result<()> {
    let keyring = Arc::new(Keyring::new(vec![(
        "bench".into(),
        Keyring::generate_key()?,
    )])?);
    let store = syncsets_store::open(&backend.url, Some(keyring)).await?;
    let amqp = args.bus.starts_with("amqp").then_some(args.bus.as_str());
    let bus: Arc<dyn Bus> = match amqp {
        Some(url) => {
            let bus = AmqpBus::new(url, 16);
            bus.check().await.context("connecting to RabbitMQ")?;
            bus
        }
        None => Arc::new(LocalBus::new()),
    };
    // The relay is started below (its own benchmark times it on a backlog).
    let config = Config {
        relay: None,
        // The watch benchmark holds 1,000 watches (each its own connection) from this one
        // client, beside the writers.
        limits: syncsets_api::limits::Limits {
            max_watches: 0,
            connections: syncsets_api::serve::ConnectionLimits {
                max: 0,
                max_per_address: 0,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Config::default()
    };
    let state = AppState::with_bus(store.clone(), bus.clone(), config)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(syncsets_api::run(state, listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    client
        .post(format!("{base}/api/v1/namespaces"))
        .json(&ns)
        .send()
        .await?
        .error_for_status()?;

    println!(
        "syncsets bench — backend {}, {} CPUs",
        backend.kind,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut failed = false;
    // The relay runs throughout, as in `serve`; its own benchmark starts it on a backlog.
    let _relay = if args.only.iter().any(|o| o == "relay") {
        let (ok, relay) = watch::bench_relay(store.clone(), bus.clone(), amqp).await?;
        failed |= !ok;
        relay
    } else {
        Relay::spawn(store.clone(), bus.clone(), RelayConfig::default())
    };
    if args.only.iter().any(|o| o == "create") {
        failed |= !bench_create(args, backend, &client, &base).await?;
    }
    if args.only.iter().any(|o| o == "list") {
        failed |= !bench_list(args, backend, store.as_ref(), &client, &base).await?;
    }
    if args.only.iter().any(|o| o == "watch") {
        let target = Duration::from_millis(if amqp.is_some() { 50 } else { 20 });
        let bus_name = bus.backend();
        failed |= !watch::bench_watch(
            &client,
            &base,
            bus_name,
            target,
            args.watch_rate,
            args.watch_writes,
        )
        .await?;
    }
    if args.only.iter().any(|o| o == "fanout") {
        failed |= !watch::bench_fanout(&client, &base, args.clients.min(8)).await?;
    }
    let _ = stop.send(());
    let _ = server.await;
    if failed {
        bail!("a benchmark missed its target");
    }
    Ok(())
}

/// The raw SQL baselines, through the same driver as the store, on the same database.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn connect(backend: &Backend, clients: usize) -> anyhow::Result<Option<Self>> {
        Ok(match backend.kind {
            "sqlite" => {
                let opts: sqlx::sqlite::SqliteConnectOptions = backend.url.parse()?;
                let opts = opts
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(60));
                // SQLite has one writer: more connections only fight over its lock (32 of
                // them managed a tenth of one connection's rate here), so one is the baseline.
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect_with(opts)
                    .await?;
                pool.execute("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)").await?;
                Some(Self::Sqlite(pool))
            }
            "postgres" => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(clients as u32)
                    .test_before_acquire(false)
                    .connect(&backend.url)
                    .await?;
                pool.execute("CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, doc JSONB NOT NULL)").await?;
                Some(Self::Postgres(pool))
            }
            _ => None,
        })
    }

    /// Single-row INSERTs of a document of the same size, autocommitted, `clients` at once.
    async fn insert_rate(&self, clients: usize, per_client: usize) -> anyhow::Result<f64> {
        let doc = configmap("raw", json!({"client": "0"}));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let doc = doc.clone();
            let raw = match self {
                Self::Sqlite(p) => Self::Sqlite(p.clone()),
                Self::Postgres(p) => Self::Postgres(p.clone()),
            };
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    match &raw {
                        Self::Sqlite(p) => {
                            sqlx::query("INSERT INTO bench_raw (doc) VALUES (?)")
                                .bind(doc.to_string())
                                .execute(p)
                                .await?;
                        }
                        Self::Postgres(p) => {
                            sqlx::query("INSERT INTO bench_raw (doc) VALUES ($1)")
                                .bind(&doc)
                                .execute(p)
                                .await?;
                        }
                    }
                }
                Ok::<_, sqlx::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
    }

    /// One run of the query a hand-written client would use for the selector list.
    async fn query_time(&self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        match self {
            Self::Sqlite(p) => {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT o.rv, o.data FROM labels l JOIN objects o ON o.id = l.obj_id \
                     WHERE l.cluster = '' AND l.resource = 'configmaps' AND l.key = 'bench' AND l.value = 'selected' \
                     ORDER BY o.namespace, o.name",
                )
                .fetch_all(p)
                .await?;
                std::hint::black_box(rows);
            }
            Self::Postgres(p) => {
                let rows: Vec<(i64, Value)> = sqlx::query_as(
                    "SELECT rv, data FROM objects WHERE cluster = '' AND resource = 'configmaps' \
                     AND labels @> '{\"bench\":\"selected\"}' ORDER BY namespace, name",
                )
                .fetch_all(p)
                .await?;
                std::hint::black_box(rows);
            }
        }
        Ok(t.elapsed())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Rounds of the create benchmark; API and raw rounds alternate so that the machine's
/// noise falls on both sides of the ratio.
const ROUNDS: usize = 5;

/// API create throughput vs raw INSERT throughput, both with `clients` concurrent writers.
async fn bench_create(
    args: &BenchArgs,
    backend: &Backend,
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<bool> {
    let per_client = args.creates.div_ceil(args.clients * ROUNDS).max(1);
    let raw = Raw::connect(backend, args.clients).await?;
    let (mut api_rates, mut raw_rates) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        api_rates.push(api_create_rate(client, base, args.clients, per_client, round).await?);
        if let Some(raw) = &raw {
            raw_rates.push(raw.insert_rate(args.clients, per_client).await?);
        }
    }
    let api_rate = median(api_rates);
    if raw_rates.is_empty() {
        println!("create     API {api_rate:>8.0}/s   (no SQL baseline for memory)");
        return Ok(true);
    }
    let raw_rate = median(raw_rates);
    let ratio = api_rate / raw_rate;
    let ok = ratio >= 0.5;
    println!(
        "create     API {api_rate:>8.0}/s   raw INSERT {raw_rate:>8.0}/s   ratio {ratio:.2} (target ≥ 0.50)  {}   [median of {ROUNDS} alternating rounds, {} clients]",
        verdict(ok),
        args.clients
    );
    Ok(ok)
}

async fn api_create_rate(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    per_client: usize,
    round: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let url = format!("{base}/api/v1/namespaces/bench/configmaps");
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let body = configmap(
                    &format!("create-{round}-{c}-{i}"),
                    json!({"client": c.to_string()}),
                );
                let res = client.post(&url).json(&body).send().await?;
                let status = res.status();
                // Reading the body lets the connection go back to the pool.
                let text = res.text().await?;
                if status != reqwest::StatusCode::CREATED {
                    bail!("create failed: {status} {text}");
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((clients * per_client) as f64 / started.elapsed().as_secs_f64())
}

/// p50 of a label-selector list over HTTP vs p50 of the equivalent raw SQL query; the
/// two (and the store alone) are sampled in turn.
async fn bench_list(
    args: &BenchArgs,
    backend: &Backend,
    store: &dyn Store,
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<bool> {
    let every = (100.0 / args.selected_percent).round().max(1.0) as usize;
    let selected = args.objects / every;
    let loading = Instant::now();
    // Loaded through the store, untimed: the list is what is measured.
    load(store, args.objects, every).await?;
    eprintln!(
        "loaded {} objects in {:.1}s",
        args.objects,
        loading.elapsed().as_secs_f64()
    );

    let url = format!("{base}/api/v1/namespaces/bench/configmaps?labelSelector=bench%3Dselected");
    let q = syncsets_store::ListQuery {
        cluster: String::new(),
        resource: "configmaps".into(),
        namespace: Some("bench".into()),
        labels: syncsets_types::Selector::parse("bench=selected")?,
        ..Default::default()
    };
    let raw = Raw::connect(backend, 1).await?;
    let (mut api, mut in_store, mut raw_times) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.samples + 2 {
        let t = Instant::now();
        let res = client.get(&url).send().await?.error_for_status()?;
        let bytes = res.bytes().await?;
        let elapsed = t.elapsed();
        let body: Value = serde_json::from_slice(&bytes)?;
        let n = body["items"].as_array().map_or(0, Vec::len);
        if n != selected {
            bail!("the selector returned {n} objects, expected {selected}");
        }
        let t = Instant::now();
        std::hint::black_box(store.list(&q).await?);
        let store_elapsed = t.elapsed();
        let raw_elapsed = match &raw {
            Some(r) => Some(r.query_time().await?),
            None => None,
        };
        // The first rounds warm caches.
        if i >= 2 {
            api.push(elapsed);
            in_store.push(store_elapsed);
            raw_times.extend(raw_elapsed);
        }
    }
    api.sort();
    in_store.sort();
    raw_times.sort();
    let line = format!(
        "list       {selected} of {} by label: API p50 {} p99 {}   store p50 {}",
        args.objects,
        ms(percentile(&api, 0.5)),
        ms(percentile(&api, 0.99)),
        ms(percentile(&in_store, 0.5))
    );
    if raw_times.is_empty() {
        println!("{line}");
        return Ok(true);
    }
    let (a, r) = (percentile(&api, 0.5), percentile(&raw_times, 0.5));
    let ratio = a.as_secs_f64() / r.as_secs_f64();
    let ok = ratio <= 2.0;
    println!(
        "{line}   raw SQL p50 {}   ratio {ratio:.2} (target ≤ 2.00)  {}",
        ms(r),
        verdict(ok)
    );
    Ok(ok)
}

/// Loads `objects` ConfigMaps, every `every`-th labelled `bench=selected`.
async fn load(store: &dyn Store, objects: usize, every: usize) -> anyhow::Result<()> {
    let mut next = 0usize;
    let chunk = 64;
    while next < objects {
        let end = (next + chunk).min(objects);
        let futures = (next..end).map(|i| {
            let labels = if i % every == 0 {
                json!({"bench": "selected"})
            } else {
                json!({"bench": format!("other-{}", i % 13)})
            };
            let name = format!("list-{i:06}");
            let obj = configmap(&name, labels);
            async move {
                let key = ObjectKey::new("", "configmaps", "bench", &name);
                store.create(&key, &obj, true).await
            }
        });
        for r in futures::future::join_all(futures).await {
            r?;
        }
        next = end;
    }
    Ok(())
}
