//! The event-path benchmarks of `syncsets bench`:
//!
//! ```text
//!   relay    outbox events/s published (confirmed)     vs  raw publish-with-confirm/s
//!            through the bus (RabbitMQ only)               of messages of the same size
//!   watch    latency p50/p99 from a write's acknowledgement (its commit) to receipt of
//!            its event by each of 1, 100 and 1,000 HTTP watchers (and 1,000 over one
//!            HTTP/2 connection) at a steady write rate, once every watch is live
//!   fan-out  create throughput with 1,000 watch streams open (each on its own namespace)
//!            vs with none
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use syncsets_bus::Bus;
use syncsets_bus::relay::{Relay, RelayConfig};
use syncsets_store::{ObjectKey, Store};

use crate::{configmap, ms, percentile, verdict};

/// Events the relay benchmark publishes.
const RELAY_EVENTS: usize = 20_000;

/// Relay throughput on a backlog, beside the broker's raw confirmed publish rate.
pub async fn bench_relay(
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    amqp: Option<&str>,
) -> anyhow::Result<(bool, Relay)> {
    // A backlog in the outbox, written while no relay runs.
    let start = store
        .outbox_state()
        .await?
        .published
        .max(store.watermark().await?);
    store.mark_published(start).await?;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..RELAY_EVENTS / 8 {
                let name = format!("relay-{c}-{i}");
                let key = ObjectKey::new("", "configmaps", "bench", &name);
                store
                    .create(&key, &configmap(&name, json!({})), false)
                    .await?;
            }
            Ok::<_, syncsets_store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let started = Instant::now();
    let relay = Relay::spawn(store.clone(), bus.clone(), RelayConfig::default());
    while relay.published() < RELAY_EVENTS as u64 {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "the relay published {} of {RELAY_EVENTS} events in 2 minutes",
                relay.published()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let relay_rate = RELAY_EVENTS as f64 / started.elapsed().as_secs_f64();
    let Some(url) = amqp else {
        println!(
            "relay      {relay_rate:>8.0} events/s published through the {} bus",
            bus.backend()
        );
        return Ok((true, relay));
    };
    let raw_rate = raw_publish_rate(url, store.as_ref()).await?;
    let ratio = relay_rate / raw_rate;
    println!(
        "relay      {relay_rate:>8.0} events/s   raw publish+confirm {raw_rate:>8.0}/s   ratio {ratio:.2}   [{RELAY_EVENTS} events of ~1 KiB]"
    );
    Ok((true, relay))
}

/// Messages/s RabbitMQ accepts with publisher confirms, in batches of the relay's size,
/// on one channel, to a queue nobody consumes (deleted afterwards).
async fn raw_publish_rate(url: &str, store: &dyn Store) -> anyhow::Result<f64> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await?;
    let sample = store.outbox_after(0, 1).await?;
    let payload = serde_json::to_vec(&sample.first().map(|e| e.data.clone()).unwrap_or_default())?;
    let batch = RelayConfig::default().batch;
    let started = Instant::now();
    let mut sent = 0;
    while sent < RELAY_EVENTS {
        let mut confirms = Vec::with_capacity(batch);
        for _ in 0..batch.min(RELAY_EVENTS - sent) {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.name().clone(),
                    BasicPublishOptions::default(),
                    &payload,
                    lapin::BasicProperties::default().with_delivery_mode(1),
                )
                .await?,
            );
        }
        sent += confirms.len();
        for c in confirms {
            if !c.await?.is_ack() {
                bail!("the broker refused a message");
            }
        }
    }
    let rate = RELAY_EVENTS as f64 / started.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    Ok(rate)
}

/// Microseconds since the benchmark's epoch.
fn micros(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// What one watch stream received: (write number, receipt time) of every event of a
/// `lat-<number>-…` object; and its response, so that its connection stays open.
type Received = (Vec<(usize, u64)>, reqwest::Response);

/// Watch streams opened by [`open_watchers`].
struct Watchers {
    /// Each stream's task: a stream that has all it waited for stays open until its task's
    /// result is dropped, so that streams done early do not close their connections while
    /// the others still receive.
    tasks: Vec<tokio::task::JoinHandle<Received>>,
    /// Streams that have received an event (any event).
    live: Arc<AtomicUsize>,
}

impl Watchers {
    /// Waits until every stream has received an event.
    async fn all_live(&self, within: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + within;
        while self.live.load(Ordering::Relaxed) < self.tasks.len() {
            if Instant::now() > end {
                bail!(
                    "{} of {} watch streams received no event within {within:?}",
                    self.tasks.len() - self.live.load(Ordering::Relaxed),
                    self.tasks.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Opens `n` watch streams; each task collects the events of `lat-<number>-…` objects until
/// it has `expect` of them or `deadline` passes.
async fn open_watchers(
    client: &reqwest::Client,
    url: impl Fn(usize) -> String,
    n: usize,
    expect: usize,
    epoch: Instant,
    deadline: Duration,
) -> anyhow::Result<Watchers> {
    let responses = futures::future::join_all((0..n).map(|i| client.get(url(i)).send())).await;
    let live = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for res in responses {
        let mut res = res?.error_for_status()?;
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::with_capacity(expect.min(1 << 16));
            let mut buf: Vec<u8> = Vec::new();
            let mut seen_any = false;
            let end = tokio::time::Instant::now() + deadline;
            while received.len() < expect {
                let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(end, res.chunk()).await else {
                    break;
                };
                let now = micros(epoch);
                buf.extend_from_slice(&chunk);
                while let Some(i) = memchr::memchr(b'\n', &buf) {
                    if !std::mem::replace(&mut seen_any, true) {
                        live.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(seq) = write_number(&buf[..i]) {
                        received.push((seq, now));
                    }
                    buf.drain(..=i);
                }
            }
            (received, res)
        }));
    }
    Ok(Watchers { tasks, live })
}

/// The write number in a `lat-<number>-…` name.
fn write_number(line: &[u8]) -> Option<usize> {
    const MARK: &[u8] = b"\"name\":\"lat-";
    let at = memchr::memmem::find(line, MARK)? + MARK.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Watch latency with 1, 100 and 1,000 watchers, each on its own connection, and with
/// 1,000 sharing one HTTP/2 connection.
pub async fn bench_watch(
    client: &reqwest::Client,
    base: &str,
    bus: &str,
    target: Duration,
    rate: u32,
    writes: usize,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let epoch = Instant::now();
    // Every watch its own HTTP/1.1 connection, then 1,000 watches multiplexed over one
    // HTTP/2 connection (prior knowledge: the bench's server is plain HTTP), as kubectl
    // and client-go share one connection to kube-apiserver.
    let http2 = reqwest::Client::builder().http2_prior_knowledge().build()?;
    for (case, (n, watching, over)) in [
        (1usize, client, "one HTTP/1.1 connection"),
        (100, client, "100 HTTP/1.1 connections"),
        (1000, client, "1,000 HTTP/1.1 connections"),
        (1000, &http2, "one HTTP/2 connection"),
    ]
    .into_iter()
    .enumerate()
    {
        let list: serde_json::Value = client
            .get(format!("{base}/api/v1/namespaces/bench/configmaps?limit=1"))
            .send()
            .await?
            .json()
            .await?;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let url =
            format!("{base}/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion={rv}");
        let watchers = open_watchers(
            watching,
            |_| url.clone(),
            n,
            writes,
            epoch,
            Duration::from_secs(60),
        )
        .await?;
        // The measured writes begin once every watch has had an event: a watch still being
        // set up is not what is measured.
        client
            .post(format!("{base}/api/v1/namespaces/bench/configmaps"))
            .json(&configmap(&format!("warm-up-{case}"), json!({})))
            .send()
            .await?
            .error_for_status()?;
        watchers.all_live(Duration::from_secs(30)).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        // Latency is counted from the write's acknowledgement (it follows the commit by a
        // response's way back; an event that arrives even earlier counts as 0), and, for
        // information, from the request (the write itself included).
        let (mut requested, mut acked) = (Vec::with_capacity(writes), Vec::with_capacity(writes));
        for seq in 0..writes {
            tick.tick().await;
            let name = format!("lat-{seq}-{case}");
            requested.push(micros(epoch));
            let res = client
                .post(format!("{base}/api/v1/namespaces/bench/configmaps"))
                .json(&configmap(&name, json!({})))
                .send()
                .await?;
            acked.push(micros(epoch));
            if res.status() != reqwest::StatusCode::CREATED {
                bail!("create failed: {}", res.status());
            }
        }
        // Every stream's results, before any stream is closed.
        let mut finished = Vec::with_capacity(n);
        for task in watchers.tasks {
            finished.push(task.await?);
        }
        let (mut from_ack, mut from_request) = (Vec::new(), Vec::new());
        for (received, _) in &finished {
            for &(seq, at) in received {
                from_ack.push(Duration::from_micros(at.saturating_sub(acked[seq])));
                from_request.push(Duration::from_micros(at.saturating_sub(requested[seq])));
            }
        }
        let delivered = from_ack.len();
        if delivered == 0 {
            bail!("no watch events arrived");
        }
        from_ack.sort_unstable();
        from_request.sort_unstable();
        let (p50, p99) = (percentile(&from_ack, 0.5), percentile(&from_ack, 0.99));
        let request_p99 = percentile(&from_request, 0.99);
        let pass = p99 <= target && delivered == n * writes;
        ok &= pass;
        println!(
            "watch      {n:>5} watchers: p50 {}  p99 {}  (target p99 ≤ {})  {}   [over {over}; from commit; p99 from request {}; {bus} bus, {writes} writes at {rate}/s, {delivered} of {} deliveries]",
            ms(p50),
            ms(p99),
            ms(target),
            verdict(pass),
            ms(request_p99),
            n * writes
        );
    }
    Ok(ok)
}

/// Create throughput with 1,000 watch streams open (each on a namespace of its own, as
/// users and tools watching their own things) against none.
pub async fn bench_fanout(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
) -> anyhow::Result<bool> {
    const WATCHERS: usize = 1000;
    let burst = |label: String| {
        let (client, base) = (client.clone(), base.to_string());
        async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (client, base, label) = (client.clone(), base.clone(), label.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(3) {
                        let name = format!("fan-{label}-{c}-{n}");
                        let res = client
                            .post(format!("{base}/api/v1/namespaces/bench/configmaps"))
                            .json(&configmap(&name, json!({})))
                            .send()
                            .await?;
                        res.error_for_status()?.bytes().await?;
                        n += 1;
                    }
                    Ok::<_, anyhow::Error>(n)
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await??;
            }
            Ok::<_, anyhow::Error>(total as f64 / started.elapsed().as_secs_f64())
        }
    };
    for i in 0..WATCHERS {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("watch-{i}")}});
        client
            .post(format!("{base}/api/v1/namespaces"))
            .json(&ns)
            .send()
            .await?;
    }
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..3 {
        without.push(burst(format!("none{round}")).await?);
        let watchers = open_watchers(
            client,
            |i| {
                format!(
                    "{base}/api/v1/namespaces/watch-{i}/configmaps?watch=true&resourceVersion=0"
                )
            },
            WATCHERS,
            usize::MAX,
            Instant::now(),
            Duration::from_secs(5),
        )
        .await?;
        with.push(burst(format!("some{round}")).await?);
        for task in watchers.tasks {
            task.abort();
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (a, b) = (median(without), median(with));
    let slowdown = 1.0 - b / a;
    let ok = slowdown <= 0.2;
    println!(
        "fan-out    creates/s with {WATCHERS} watch streams {b:>7.0}   without {a:>7.0}   slowdown {:.0}% (target ≤ 20%)  {}   [median of 3 alternating rounds, {clients} clients]",
        slowdown * 100.0,
        verdict(ok)
    );
    Ok(ok)
}
