//! `syncsets controller`: controllers only, as many replicas as wanted, sharing PostgreSQL
//! and RabbitMQ with the API servers. Work spreads over the replicas through RabbitMQ's
//! sharded queues (one consumer per shard); one replica at a time leads (a PostgreSQL
//! advisory lock) and turns changes into work.

use anyhow::{Context as _, bail};

use crate::{BusArgs, ControllerArgs, StoreArgs};

/// Arguments of `controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerCmdArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    bus: BusArgs,

    #[command(flatten)]
    controller: ControllerArgs,
}

/// Runs the controllers until SIGINT or SIGTERM.
pub async fn run(args: ControllerCmdArgs) -> anyhow::Result<()> {
    if !args.bus.bus.starts_with("amqp") {
        bail!(
            "`syncsets controller` needs a bus shared with the API servers (--bus amqp://…): the \
             in-process bus cannot reach another process. `syncsets serve` runs the controllers \
             in-process on the embedded default."
        );
    }
    let store = args.store.open().await?;
    let bus = args.bus.open().await?;
    let config = args.controller.config();
    let replica = config.replica;
    let controllers = syncsets_controller::Controller::start(store.clone(), bus.clone(), config)
        .await
        .context("starting the controllers")?;
    println!(
        "syncsets controller replica {replica} running (store: {}, bus: {})",
        store.backend(),
        bus.backend()
    );
    super::serve::shutdown_signal().await;
    controllers.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
