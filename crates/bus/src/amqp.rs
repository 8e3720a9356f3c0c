//! The RabbitMQ bus (`--bus amqp://…`).
//!
//! ```text
//!  change events   relay ──▶ exchange syncsets.events (topic) ──▶ one exclusive queue per
//!                  (confirmed)                                    API replica ──▶ its hub
//!
//!  work queue q    enqueue(key) ──▶ syncsets.work.q.<shard>  (durable, single active
//!                                   consumer: one replica per shard, another takes over
//!                                   when it dies; a key always hashes to the same shard;
//!                                   `assign` picks this process's shards, and a shard
//!                                   given up is released only after its leases stop)
//!                  enqueue_after ──▶ syncsets.work.q.<shard>.delay.<tier>  (TTL, dead-
//!                                   lettered into the shard when the delay is over)
//! ```
//!
//! Every connection failure is retried with backoff; meanwhile the feed reports nothing
//! and, once back, [`FeedItem::Resumed`] (its reader catches up from the outbox), publishes
//! fail (the relay retries them; writes to the store are unaffected), and unacknowledged
//! work returns to its queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use syncsets_retry::Backoff;
use syncsets_store::OutboxEvent;
use tokio::sync::mpsc;

use crate::{Bus, BusError, FeedItem, Result, WorkQueue};

const EVENTS_EXCHANGE: &str = "syncsets.events";
const FEED_CAPACITY: usize = 65_536;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Deliveries a shard consumer holds unacknowledged at most.
const PREFETCH: u16 = 512;

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The RabbitMQ bus.
pub struct AmqpBus {
    uri: String,
    shards: u16,
    connection: tokio::sync::Mutex<Option<Connection>>,
    publisher: tokio::sync::Mutex<Option<Channel>>,
    queues: Mutex<HashMap<String, Arc<AmqpQueue>>>,
    me: Weak<AmqpBus>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// A bus on the broker at `uri` (connected lazily, reconnected as needed); work queues
    /// are split into `shards`.
    pub fn new(uri: &str, shards: u16) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            uri: uri.to_string(),
            shards: shards.max(1),
            connection: tokio::sync::Mutex::new(None),
            publisher: tokio::sync::Mutex::new(None),
            queues: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Connects now (to fail fast on a wrong address).
    pub async fn check(&self) -> Result<()> {
        self.channel().await.map(drop)
    }

    /// Closes the connection (its unacknowledged work returns to the queues); the bus
    /// reconnects when used again.
    pub async fn close(&self) {
        *self.publisher.lock().await = None;
        if let Some(c) = self.connection.lock().await.take() {
            let _ = c.close(200, "closing".into()).await;
        }
    }

    /// Deletes a work queue's shard queues and their delay queues (tests, tooling).
    pub async fn delete_work_queue(&self, name: &str, tiers: &[Duration]) -> Result<()> {
        let ch = self.channel().await?;
        for shard in 0..self.shards {
            let queue = format!("syncsets.work.{name}.{shard}");
            for t in tiers {
                let delay = format!("{queue}.delay.{}", tier(*t));
                ch.queue_delete(delay.into(), Default::default())
                    .await
                    .map_err(unavailable)?;
            }
            ch.queue_delete(queue.into(), Default::default())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// A new channel on the shared connection, reconnecting if it is down.
    async fn channel(&self) -> Result<Channel> {
        let mut conn = self.connection.lock().await;
        if let Some(c) = conn.as_ref()
            && c.status().connected()
            && let Ok(ch) = c.create_channel().await
        {
            return Ok(ch);
        }
        let props = ConnectionProperties::default().with_connection_name("syncsets".into());
        let c = Connection::connect(&self.uri, props)
            .await
            .map_err(unavailable)?;
        if conn.is_some() {
            metrics::counter!("syncsets_bus_reconnects_total", "bus" => "rabbitmq").increment(1);
        }
        let ch = c.create_channel().await.map_err(unavailable)?;
        ch.exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        *conn = Some(c);
        Ok(ch)
    }

    async fn publisher(&self) -> Result<Channel> {
        let mut publisher = self.publisher.lock().await;
        if let Some(ch) = publisher.as_ref()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        *publisher = Some(ch.clone());
        Ok(ch)
    }

    /// Publishes messages and waits for the broker's confirmations.
    async fn publish_confirmed(
        &self,
        messages: Vec<(String, String, Vec<u8>, BasicProperties)>,
    ) -> Result<()> {
        let ch = self.publisher().await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for (exchange, key, payload, props) in messages {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props,
                )
                .await;
            match confirm {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    *self.publisher.lock().await = None;
                    return Err(unavailable(e));
                }
            }
        }
        let count = confirms.len() as u64;
        for confirm in confirms {
            match confirm.await {
                Ok(c) if c.is_ack() => {}
                Ok(_) => {
                    metrics::counter!("syncsets_bus_confirms_total", "bus" => "rabbitmq", "result" => "nack").increment(1);
                    return Err(BusError::Unavailable("the broker refused a message".into()));
                }
                Err(e) => {
                    *self.publisher.lock().await = None;
                    return Err(unavailable(e));
                }
            }
        }
        metrics::counter!("syncsets_bus_confirms_total", "bus" => "rabbitmq", "result" => "ack")
            .increment(count);
        Ok(())
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, events: &[Arc<OutboxEvent>]) -> Result<()> {
        let messages = events
            .iter()
            .map(|e| {
                let payload = serde_json::to_vec(&**e).expect("events serialise");
                // Transient: the outbox, not the broker, is the durable copy.
                let props = BasicProperties::default().with_delivery_mode(1);
                (
                    EVENTS_EXCHANGE.to_string(),
                    e.key.resource.clone(),
                    payload,
                    props,
                )
            })
            .collect();
        self.publish_confirmed(messages).await?;
        crate::published(self.backend(), events.len());
        Ok(())
    }

    fn subscribe(&self) -> mpsc::Receiver<FeedItem> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
            loop {
                let Some(bus) = me.upgrade() else { return };
                match feed(&bus, &tx).await {
                    Ok(()) => return, // the reader has gone
                    Err(e) => {
                        tracing::warn!(error = %syncsets_store::Chain(&e), "event feed interrupted; reconnecting")
                    }
                }
                drop(bus);
                backoff.wait().await;
            }
        });
        rx
    }

    fn queue(&self, name: &str) -> Arc<dyn WorkQueue> {
        self.queues
            .lock()
            .expect("queues lock")
            .entry(name.to_string())
            .or_insert_with(|| AmqpQueue::new(self.me.clone(), name, self.shards))
            .clone()
    }

    fn backend(&self) -> &'static str {
        "rabbitmq"
    }

    async fn close(&self) {
        AmqpBus::close(self).await;
    }
}

/// Runs one connection's worth of feed: an exclusive queue bound to every change event.
async fn feed(bus: &AmqpBus, tx: &mpsc::Sender<FeedItem>) -> Result<()> {
    let ch = bus.channel().await?;
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    ch.queue_bind(
        queue.name().clone(),
        EVENTS_EXCHANGE.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    let mut consumer = ch
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    // Bound: everything published from here on reaches us; the reader catches up on the rest.
    if tx.send(FeedItem::Resumed).await.is_err() {
        return Ok(());
    }
    let mut behind = false;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(unavailable)?;
        let event: OutboxEvent = match serde_json::from_slice(&delivery.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %syncsets_store::Chain(&e), "unreadable change event on the bus; skipping it");
                continue;
            }
        };
        if behind {
            match tx.try_send(FeedItem::Resumed) {
                Ok(()) => behind = false,
                Err(mpsc::error::TrySendError::Full(_)) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
        match tx.try_send(FeedItem::Event(Arc::new(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => behind = true,
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Err(BusError::Unavailable(
        "the event consumer was cancelled".into(),
    ))
}

mod queue;

pub use queue::AmqpQueue;
use queue::tier;
