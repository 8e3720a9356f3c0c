//! The RabbitMQ work queue: a key's shard queues (single active consumer), their delay
//! tiers, consumer sessions and the leases handed out from them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Acker, BasicProperties, Channel};
use syncsets_retry::Backoff;
use tokio::sync::{Notify, watch};

use super::{AmqpBus, FIRST_BACKOFF, MAX_BACKOFF, PREFETCH, unavailable};
use crate::{BusError, Lease, LeaseEnd, Outcome, QueueMetrics, Result, WorkQueue};

/// How often a consumer asks the broker how many messages wait in its shard.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// The delay tier of a delay: the next power of two in milliseconds. Messages in a tier
/// queue carry their own expiration; with one delay per use (backoff step, resync period)
/// they expire in order.
pub(super) fn tier(delay: Duration) -> u64 {
    (delay.as_millis().clamp(1, 1 << 40) as u64).next_power_of_two()
}

/// A delivery of a key: its acknowledgement, and whether the consumer session it came on
/// has ended (the broker then hands the message to the shard's next consumer, maybe on
/// another replica, and acknowledging it here is no longer possible).
struct Delivery {
    acker: Acker,
    session: Session,
}

impl Delivery {
    fn live(&self) -> bool {
        !*self.session.ended.borrow()
    }
}

/// A consumer session of one shard: whether it has ended, and how many of its keys are
/// being worked on (a shard given up is released only once they have stopped).
#[derive(Clone)]
struct Session {
    ended: watch::Receiver<bool>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a lease as in flight in its session until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long a shard being given up waits for its work in flight to stop.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// Deliveries of one key, to acknowledge when it is done.
type Ackers = Vec<Delivery>;

/// Marks a consumer session ended when it goes, however it goes.
struct SessionEnd(watch::Sender<bool>);

impl Drop for SessionEnd {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<String>,
    waiting: HashMap<String, Ackers>,
    active: HashSet<String>,
    again: HashMap<String, Ackers>,
}

/// A sharded, durable work queue.
pub struct AmqpQueue {
    bus: Weak<AmqpBus>,
    name: String,
    shards: u16,
    state: Mutex<QueueState>,
    ready: Notify,
    /// The shards this process consumes, each with the signal that gives it up.
    consumers: Mutex<Option<HashMap<u16, watch::Sender<bool>>>>,
    declared: tokio::sync::Mutex<HashSet<String>>,
    me: Weak<AmqpQueue>,
    metrics: QueueMetrics,
    /// Messages ready at the broker in each shard this process consumes, as last asked.
    at_broker: Mutex<HashMap<u16, u32>>,
}

impl AmqpQueue {
    pub(super) fn new(bus: Weak<AmqpBus>, name: &str, shards: u16) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            bus,
            name: name.to_string(),
            shards,
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            consumers: Mutex::new(None),
            declared: tokio::sync::Mutex::new(HashSet::new()),
            me: me.clone(),
            metrics: QueueMetrics::new(name),
            at_broker: Mutex::new(HashMap::new()),
        })
    }

    /// Sets `workqueue_depth`: keys ready here and messages ready in this process's shards.
    fn show_depth(&self, state: &QueueState) {
        let at_broker: u64 = self
            .at_broker
            .lock()
            .expect("depth lock")
            .values()
            .map(|&n| u64::from(n))
            .sum();
        self.metrics
            .depth
            .set((state.ready.len() as u64 + at_broker) as f64);
    }

    /// Records the broker's count of ready messages in `shard` (`None`: no longer consumed).
    fn at_broker(&self, shard: u16, ready: Option<u32>) {
        {
            let mut at_broker = self.at_broker.lock().expect("depth lock");
            match ready {
                Some(n) => at_broker.insert(shard, n),
                None => at_broker.remove(&shard),
            };
        }
        self.show_depth(&self.state.lock().expect("queue lock"));
    }

    fn shard_queue(&self, shard: u16) -> String {
        format!("syncsets.work.{}.{shard}", self.name)
    }

    fn shard_of(&self, key: &str) -> u16 {
        crate::shard_of(key, self.shards)
    }

    fn bus(&self) -> Result<Arc<AmqpBus>> {
        self.bus.upgrade().ok_or(BusError::Closed)
    }

    /// Declares a queue once per process.
    async fn declare(&self, ch: &Channel, name: &str, args: FieldTable) -> Result<()> {
        let mut declared = self.declared.lock().await;
        if declared.contains(name) {
            return Ok(());
        }
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(unavailable)?;
        declared.insert(name.to_string());
        Ok(())
    }

    fn shard_args() -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        args
    }

    async fn send(&self, key: &str, delay: Option<Duration>) -> Result<()> {
        let bus = self.bus()?;
        let shard = self.shard_queue(self.shard_of(key));
        // Declared (once per process) on the publishing channel: no channel per message.
        let ch = bus.publisher().await?;
        self.declare(&ch, &shard, Self::shard_args()).await?;
        let mut props = BasicProperties::default().with_delivery_mode(2);
        let target = match delay {
            None => shard,
            Some(delay) => {
                let tier = tier(delay);
                let queue = format!("{shard}.delay.{tier}");
                let mut args = FieldTable::default();
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(LongString::from("")),
                );
                args.insert(
                    "x-dead-letter-routing-key".into(),
                    AMQPValue::LongString(LongString::from(shard.as_str())),
                );
                self.declare(&ch, &queue, args).await?;
                props = props.with_expiration(delay.as_millis().max(1).to_string().into());
                queue
            }
        };
        drop(ch);
        bus.publish_confirmed(vec![(
            String::new(),
            target,
            key.as_bytes().to_vec(),
            props,
        )])
        .await?;
        self.metrics.adds.increment(1);
        Ok(())
    }

    /// Sends keys now, confirmed together (one round trip to the broker, not one each).
    async fn send_all(&self, keys: &[String]) -> Result<()> {
        let bus = self.bus()?;
        let ch = bus.publisher().await?;
        let mut messages = Vec::with_capacity(keys.len());
        for key in keys {
            let shard = self.shard_queue(self.shard_of(key));
            self.declare(&ch, &shard, Self::shard_args()).await?;
            let props = BasicProperties::default().with_delivery_mode(2);
            messages.push((String::new(), shard, key.as_bytes().to_vec(), props));
        }
        drop(ch);
        bus.publish_confirmed(messages).await?;
        self.metrics.adds.increment(keys.len() as u64);
        Ok(())
    }

    /// Starts consuming every shard, unless told which ([`WorkQueue::assign`]).
    fn start_consuming(&self) {
        let unassigned = self.consumers.lock().expect("consumers lock").is_none();
        if unassigned {
            let all: Vec<u16> = (0..self.shards).collect();
            self.consume_shards(&all);
        }
    }

    /// Consumes exactly these shards: starts the missing consumers, gives up the others.
    fn consume_shards(&self, shards: &[u16]) {
        let mut consumers = self.consumers.lock().expect("consumers lock");
        let consumers = consumers.get_or_insert_with(HashMap::new);
        consumers.retain(|shard, stop| {
            let keep = shards.contains(shard);
            if !keep {
                stop.send_replace(true);
            }
            keep
        });
        for &shard in shards {
            if shard >= self.shards || consumers.contains_key(&shard) {
                continue;
            }
            let (stop_tx, stop) = watch::channel(false);
            consumers.insert(shard, stop_tx);
            let me = self.me.clone();
            tokio::spawn(async move {
                let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
                let mut stop = stop;
                loop {
                    let Some(queue) = me.upgrade() else { return };
                    let consumed = queue.consume(shard, &mut stop).await;
                    queue.at_broker(shard, None);
                    match consumed {
                        Ok(()) => return, // given up
                        Err(e) => {
                            tracing::warn!(queue = %queue.name, shard, error = %syncsets_store::Chain(&e), "work queue consumer interrupted; reconnecting");
                        }
                    }
                    drop(queue);
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            });
        }
    }

    /// Consumes one shard until its session fails (`Err`) or it is given up (`Ok`).
    async fn consume(&self, shard: u16, stop: &mut watch::Receiver<bool>) -> Result<()> {
        let given_up = *stop.borrow();
        if given_up {
            return Ok(());
        }
        let bus = self.bus()?;
        let ch = bus.channel().await?;
        let name = self.shard_queue(shard);
        self.declare(&ch, &name, Self::shard_args()).await?;
        ch.basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let mut consumer = ch
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        drop(bus);
        let (ended, ended_rx) = watch::channel(false);
        let end = SessionEnd(ended);
        let session = Session {
            ended: ended_rx,
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let mut depth = tokio::time::interval(DEPTH_EVERY);
        loop {
            tokio::select! {
                _ = depth.tick() => {
                    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                    // A metric: a failed ask is left to the next tick (a broken channel
                    // ends the session through its consumer).
                    match ch.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
                        Ok(queue) => self.at_broker(shard, Some(queue.message_count())),
                        Err(e) => tracing::debug!(queue = %name, error = %e, "cannot read the shard's depth"),
                    }
                }
                delivery = consumer.next() => {
                    let Some(delivery) = delivery else { break };
                    let delivery = delivery.map_err(unavailable)?;
                    let key = String::from_utf8_lossy(&delivery.data).into_owned();
                    self.arrived(
                        key,
                        Delivery {
                            acker: delivery.acker,
                            session: session.clone(),
                        },
                    );
                }
                () = stopped(stop) => {
                    // Given up: stop the work in flight first, then hand the shard over
                    // (closing the channel returns its unacknowledged messages to the queue,
                    // and the broker activates the shard's next consumer).
                    drop(end);
                    let waited = tokio::time::Instant::now();
                    while session.in_flight.load(Ordering::Acquire) > 0 && waited.elapsed() < RELEASE_WAIT {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let _ = ch.close(200, "shard given up".into()).await;
                    tracing::info!(queue = %self.name, shard, "gave up a work queue shard");
                    return Ok(());
                }
            }
        }
        Err(BusError::Unavailable(
            "the work consumer was cancelled".into(),
        ))
    }

    /// A delivery arrived: coalesce it with a waiting one, park it behind an active one, or
    /// make it ready.
    fn arrived(&self, key: String, delivery: Delivery) {
        if !delivery.live() {
            return; // its session ended: the broker delivers it again
        }
        let mut state = self.state.lock().expect("queue lock");
        if state.active.contains(&key) {
            state.again.entry(key).or_default().push(delivery);
        } else if let Some(ackers) = state.waiting.get_mut(&key) {
            ackers.push(delivery);
        } else {
            state.waiting.insert(key.clone(), vec![delivery]);
            state.ready.push_back(key);
            self.show_depth(&state);
            self.ready.notify_one();
        }
    }

    /// The next ready key with its live deliveries. Deliveries of an ended session are
    /// dropped: another consumer may hold the key now.
    fn take(&self) -> Option<(String, Ackers)> {
        let mut state = self.state.lock().expect("queue lock");
        loop {
            let key = state.ready.pop_front()?;
            let mut ackers = state.waiting.remove(&key).unwrap_or_default();
            ackers.retain(Delivery::live);
            if ackers.is_empty() {
                continue;
            }
            state.active.insert(key.clone());
            self.show_depth(&state);
            if !state.ready.is_empty() {
                self.ready.notify_one();
            }
            return Some((key, ackers));
        }
    }

    fn finish(&self, key: String, ackers: Ackers, outcome: Outcome) {
        let again = {
            let mut state = self.state.lock().expect("queue lock");
            state.active.remove(&key);
            state.again.remove(&key)
        };
        if matches!(outcome, Outcome::Retry(_)) {
            self.metrics.retries.increment(1);
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let Some(queue) = me.upgrade() else { return };
            let ack = |ackers: Ackers| async move {
                for a in ackers {
                    // A failed ack (channel gone) means redelivery: at least once.
                    let _ = a.acker.ack(BasicAckOptions::default()).await;
                }
            };
            match outcome {
                Outcome::Done => ack(ackers).await,
                Outcome::Retry(delay) | Outcome::After(delay) => {
                    // The delayed copy is confirmed before the delivery is acknowledged.
                    let sent = if delay.is_zero() {
                        queue.send(&key, None).await
                    } else {
                        queue.send(&key, Some(delay)).await
                    };
                    match sent {
                        Ok(()) => ack(ackers).await,
                        Err(e) => {
                            tracing::warn!(key, error = %syncsets_store::Chain(&e), "re-enqueueing failed; the delivery will come back");
                            queue.requeue_local(&key, ackers);
                        }
                    }
                }
                Outcome::Abandoned => queue.requeue_local(&key, ackers),
            }
            if let Some(ackers) = again {
                for a in ackers {
                    queue.arrived(key.clone(), a);
                }
            }
        });
    }

    fn requeue_local(&self, key: &str, ackers: Ackers) {
        for a in ackers {
            self.arrived(key.to_string(), a);
        }
    }
}

struct AmqpLeaseEnd {
    queue: Weak<AmqpQueue>,
    key: String,
    ackers: Ackers,
    _in_flight: InFlight,
}

impl LeaseEnd for AmqpLeaseEnd {
    fn finish(self: Box<Self>, outcome: Outcome) {
        if let Some(queue) = self.queue.upgrade() {
            queue.finish(self.key, self.ackers, outcome);
        }
    }

    fn lost(&self) -> Option<watch::Receiver<bool>> {
        self.ackers.first().map(|d| d.session.ended.clone())
    }
}

#[async_trait]
impl WorkQueue for AmqpQueue {
    async fn enqueue(&self, key: &str) -> Result<()> {
        self.send(key, None).await
    }

    async fn enqueue_after(&self, key: &str, delay: Duration) -> Result<()> {
        self.send(key, (!delay.is_zero()).then_some(delay)).await
    }

    async fn enqueue_all(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1024) {
            self.send_all(chunk).await?;
        }
        Ok(())
    }

    fn shards(&self) -> u16 {
        self.shards
    }

    async fn assign(&self, shards: &[u16]) -> Result<()> {
        self.consume_shards(shards);
        Ok(())
    }

    async fn next(&self) -> Result<Lease> {
        self.start_consuming();
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((key, ackers)) = self.take() {
                let in_flight = InFlight::new(&ackers[0].session.in_flight);
                let end = AmqpLeaseEnd {
                    queue: self.me.clone(),
                    key: key.clone(),
                    ackers,
                    _in_flight: in_flight,
                };
                return Ok(Lease::new(key, Box::new(end)));
            }
            notified.await;
        }
    }
}
