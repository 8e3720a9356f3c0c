//! Which event bus a server uses, and how long the outbox keeps events.

use std::sync::Arc;
use std::time::Duration;

use syncsets_bus::relay::RelayConfig;
use syncsets_bus::{AmqpBus, Bus, LocalBus};
use syncsets_store::Retention;

/// Bus selection.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// Event bus: `inprocess` (one server) or an amqp:// URL of RabbitMQ (several servers
    /// and controllers)
    #[arg(long, env = "SYNCSETS_BUS", default_value = "inprocess")]
    pub bus: String,

    /// Shards of each RabbitMQ work queue (the unit of work spread across replicas)
    #[arg(long, env = "SYNCSETS_BUS_SHARDS", default_value_t = 16)]
    pub bus_shards: u16,

    /// How long published change events are kept for watches that resume, in seconds
    #[arg(long, env = "SYNCSETS_EVENT_WINDOW", default_value_t = 900)]
    pub event_window: u64,

    /// How many published change events are kept at most
    #[arg(long, env = "SYNCSETS_EVENT_MAX", default_value_t = 1_000_000)]
    pub event_max: u64,
}

impl BusArgs {
    /// Connects the bus (RabbitMQ is checked now, so a wrong address fails at start).
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Bus>> {
        match self.bus.as_str() {
            "inprocess" | "in-process" | "" => Ok(Arc::new(LocalBus::new())),
            url if url.starts_with("amqp://") || url.starts_with("amqps://") => {
                let bus = AmqpBus::new(url, self.bus_shards);
                if let Err(e) = bus.check().await {
                    // The server keeps working without the broker and catches up later.
                    tracing::warn!(error = %syncsets_store::Chain(&e), "RabbitMQ is not reachable yet; will retry");
                }
                Ok(bus)
            }
            other => anyhow::bail!("unsupported bus {other:?}: expected inprocess or amqp://…"),
        }
    }

    /// The relay settings these arguments select.
    pub fn relay(&self) -> RelayConfig {
        RelayConfig {
            retention: Retention {
                window: Duration::from_secs(self.event_window),
                max_events: self.event_max,
            },
            ..RelayConfig::default()
        }
    }
}
