//! # syncsets-cli
//!
//! The `syncsets` command line. Every flag has an environment fallback.
//!
//! ```text
//!   syncsets serve       API server and controllers (SQLite under ./data by default)
//!   syncsets controller  controllers only, against PostgreSQL + RabbitMQ
//!   syncsets status      per set: clusters in sync / failing (--watch: until converged)
//!   syncsets resync      reapply everything to clusters now
//!   syncsets plan        what a set would change on each cluster (server-side dry run)
//!   syncsets demo        hub + simulated fleet + example set, converging live
//!   syncsets fleet-sim   a member server of simulated clusters, registered with a hub
//!   syncsets migrate   run the store's migrations
//!   syncsets bench     measure the store and API against raw SQL baselines
//! ```

mod bus_args;
mod cmd;
mod controller_args;
mod hub_args;
pub mod pki;
mod store_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use bus_args::BusArgs;
pub use controller_args::ControllerArgs;
pub use hub_args::HubArgs;
pub use store_args::StoreArgs;

/// The `syncsets` command.
#[derive(Debug, Parser)]
#[command(
    name = "syncsets",
    version,
    about = "Keeps fleets of Kubernetes clusters in sync with SyncSets, without a Kubernetes hub"
)]
pub struct Args {
    /// Log filter (tracing `EnvFilter` syntax); `syncsets_api::request=debug` logs every
    /// API request.
    #[arg(long, env = "SYNCSETS_LOG", default_value = "info", global = true)]
    log: String,

    /// Log format: `text` (colours only on a terminal) or `json` (one object a line).
    #[arg(
        long,
        env = "SYNCSETS_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (and, unless told otherwise, the controllers).
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run controllers only (PostgreSQL and RabbitMQ shared with the API servers).
    Controller(cmd::controller::ControllerCmdArgs),
    /// Run the store's migrations and exit.
    Migrate(cmd::migrate::MigrateArgs),
    /// Measure throughput and latency beside raw SQL baselines.
    Bench(syncsets_bench::BenchArgs),
    /// Host simulated member clusters and register them with a hub.
    FleetSim(cmd::fleet_sim::FleetSimArgs),
    /// Show, per SyncSet and SelectorSyncSet, how many clusters are in sync or failing.
    Status(cmd::status::StatusArgs),
    /// Reapply every set to clusters now (drift correction on demand).
    Resync(cmd::resync::ResyncArgs),
    /// Show what a new or changed set would do on every cluster it targets (server-side
    /// dry run: nothing changes).
    Plan(cmd::plan::PlanArgs),
    /// Follow, pause, resume or undo the rollout of a set a RolloutPolicy governs.
    Rollout(cmd::rollout::RolloutArgs),
    /// Put a new Secret encryption key first and seal every stored Secret with it.
    RotateKeys(cmd::rotate_keys::RotateKeysArgs),
    /// Take a consistent snapshot of the embedded store while it serves.
    Backup(cmd::backup::BackupArgs),
    /// Rebuild a data directory from a snapshot (or ready a PostgreSQL database restored
    /// with pg_restore): resourceVersions never go backwards for clients.
    Restore(cmd::backup::RestoreArgs),
    /// Start a hub, a simulated fleet and an example SelectorSyncSet, and watch it converge.
    Demo(cmd::demo::DemoArgs),
    /// Serve the fleet dashboard on a loopback port, reading the hub with the kubeconfig's
    /// credentials (as `kubectl proxy` does).
    Dashboard(cmd::dashboard::DashboardArgs),
}

impl Args {
    /// Parses the command line and runs the command.
    pub fn parse_and_run() -> ExitCode {
        let args = Args::parse();
        let logs = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
            .with_writer(std::io::stderr);
        match args.log_format {
            LogFormat::Json => logs.json().init(),
            LogFormat::Text => {
                use std::io::IsTerminal as _;
                logs.with_ansi(std::io::stderr().is_terminal()).init()
            }
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: starting the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The process's metrics recorder, before anything registers a metric: a series
        // registered earlier would go nowhere.
        syncsets_api::metrics::install();
        let result = runtime.block_on(async {
            match args.command {
                Command::Serve(a) => cmd::serve::run(*a).await,
                Command::RotateKeys(a) => cmd::rotate_keys::run(a).await,
                Command::Controller(a) => cmd::controller::run(a).await,
                Command::Migrate(a) => cmd::migrate::run(a).await,
                Command::Backup(a) => cmd::backup::backup(a).await,
                Command::Restore(a) => cmd::backup::restore(a).await,
                Command::Bench(a) => syncsets_bench::run(a).await,
                Command::FleetSim(a) => cmd::fleet_sim::run(a).await,
                Command::Status(a) => cmd::status::run(a).await,
                Command::Resync(a) => cmd::resync::run(a).await,
                Command::Plan(a) => cmd::plan::run(a).await,
                Command::Rollout(a) => cmd::rollout::run(a).await,
                Command::Demo(a) => cmd::demo::run(a).await,
                Command::Dashboard(a) => cmd::dashboard::run(a).await,
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}
