//! The RabbitMQ bus against the real broker on this machine.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use syncsets_bus::{AmqpBus, Bus, FeedItem};
use syncsets_store::{EventType, ObjectKey, OutboxEvent};

fn event(rv: u64) -> Arc<OutboxEvent> {
    Arc::new(OutboxEvent {
        rv,
        kind: EventType::Added,
        key: ObjectKey::new("", "secrets", "ns", &format!("s{rv}")),
        data: json!({"metadata": {"name": format!("s{rv}")}}),
        sealed: Some(vec![1, 2, 3, rv as u8]),
        prev_labels: None,
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn every_replica_feed_gets_every_event_in_order() {
    let Some(url) = syncsets_testkit::rabbitmq_url() else {
        return;
    };
    let (a, b) = (AmqpBus::new(&url, 2), AmqpBus::new(&url, 2));
    let (mut fa, mut fb) = (a.subscribe(), b.subscribe());
    for feed in [&mut fa, &mut fb] {
        let first = tokio::time::timeout(Duration::from_secs(10), feed.recv()).await;
        assert!(matches!(first, Ok(Some(FeedItem::Resumed))), "bound first");
    }
    let events: Vec<Arc<OutboxEvent>> = (1..=200).map(event).collect();
    a.publish(&events[..100]).await.unwrap();
    a.publish(&events[100..]).await.unwrap();
    for feed in [&mut fa, &mut fb] {
        for want in &events {
            match tokio::time::timeout(Duration::from_secs(10), feed.recv()).await {
                Ok(Some(FeedItem::Event(got))) => assert_eq!(got, *want),
                other => panic!("expected rv {}, got {other:?}", want.rv),
            }
        }
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn work_queue_coalesces_leases_once_and_delays() {
    let Some(url) = syncsets_testkit::rabbitmq_url() else {
        return;
    };
    let bus = AmqpBus::new(&url, 2);
    let name = unique("wq");
    let q = bus.queue(&name);
    for key in ["a", "b", "a", "a"] {
        q.enqueue(key).await.unwrap();
    }
    let mut leases = Vec::new();
    for _ in 0..2 {
        leases.push(
            tokio::time::timeout(Duration::from_secs(10), q.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let keys: HashSet<&str> = leases.iter().map(|l| l.key()).collect();
    assert_eq!(keys, HashSet::from(["a", "b"]));
    // Enqueued while active: handed out again only after the lease ends. What is
    // enqueued after it while it is held comes first.
    q.enqueue("a").await.unwrap();
    q.enqueue("c").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.key(),
        "c",
        "a is active: it waits for its lease to end"
    );
    next.done();
    for l in leases {
        l.done();
    }
    let again = tokio::time::timeout(Duration::from_secs(10), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.key(), "a");
    let started = std::time::Instant::now();
    again.retry(Duration::from_millis(500));
    let later = tokio::time::timeout(Duration::from_secs(10), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.key(), "a");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "delayed by the TTL queue"
    );
    later.done();
    // Nothing else was left: a key enqueued now is the next one handed out.
    q.enqueue("z").await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(10), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.key(), "z", "nothing was left before it");
    last.done();
    bus.delete_work_queue(&name, &[Duration::from_millis(500)])
        .await
        .unwrap();
    bus.close().await;
}

#[tokio::test]
async fn a_dead_replicas_work_moves_to_a_living_one() {
    let Some(url) = syncsets_testkit::rabbitmq_url() else {
        return;
    };
    let name = unique("failover");
    let first = AmqpBus::new(&url, 4);
    let second = AmqpBus::new(&url, 4);
    let (q1, q2) = (first.queue(&name), second.queue(&name));
    // The first replica becomes the active consumer of every shard.
    let producer = AmqpBus::new(&url, 4);
    let qp = producer.queue(&name);
    qp.enqueue("warm-up").await.unwrap();
    q1.next().await.unwrap().done();
    tokio::spawn({
        let q2 = q2.clone();
        async move {
            // Registers the second replica's consumers, which wait (single active consumer)
            // until the first replica is gone; the lease it gets is dropped, so it returns.
            let _ = q2.next().await;
        }
    });
    // Both replicas consume every shard before the work arrives.
    let vhost = syncsets_testkit::amqp_vhost(&url);
    let shards: Vec<String> = (0..4)
        .map(|s| format!("syncsets.work.{name}.{s}"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let consumers = syncsets_testkit::rabbitmq_consumers(&vhost);
        if shards.iter().all(|q| consumers.get(q) == Some(&2)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second replica never consumed every shard: {consumers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for k in &keys {
        qp.enqueue(k).await.unwrap();
    }
    // The first replica takes some work and dies holding it.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(
            tokio::time::timeout(Duration::from_secs(10), q1.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let held_keys: Vec<String> = held.iter().map(|l| l.key().to_string()).collect();
    std::mem::forget(held); // a dead process acknowledges nothing and gives nothing back
    first.close().await;
    // Everything, held work included, is handed to the second replica.
    let mut done = HashSet::new();
    while done.len() < keys.len() {
        let l = tokio::time::timeout(Duration::from_secs(20), q2.next())
            .await
            .expect("work moved")
            .unwrap();
        done.insert(l.key().to_string());
        l.done();
    }
    assert!(held_keys.iter().all(|k| done.contains(k)));
    second.delete_work_queue(&name, &[]).await.unwrap();
    second.close().await;
    producer.close().await;
}
