//! Spreading the work queue's shards over the controller replicas that are alive.
//!
//! Each replica renews a heartbeat in the store; every replica reads them all and assigns
//! shards by rendezvous hashing over the live ones (so a change of membership moves only
//! the shards that must move), then consumes exactly its own. RabbitMQ's single-active-
//! consumer keeps a shard with one replica even while two replicas briefly disagree; a
//! replica gives a shard up only after stopping the work in flight from it.
//!
//! A replica that dies stops renewing; after `ttl` the others take its shards (its broker
//! connection is gone already, so its unacknowledged work is back in the queues). A
//! replica that lives on but cannot renew — cut off from the store, or paused — loses its
//! [`Standing`] after `renew_deadline`, before anyone may take its shards: its work stops
//! and it lets its shards go (see `standing.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use syncsets_bus::WorkQueue;
use syncsets_store::{ListQuery, ObjectKey, Store, StoreError};

use crate::standing::Standing;
use syncsets_bus::{mix, stable_hash};

/// Where heartbeats are kept (not served by the API).
pub const RESOURCE: &str = "controllerreplicas.syncsets.io";

/// Heartbeat settings.
#[derive(Clone, Debug)]
pub struct MembershipSettings {
    /// How often a replica renews its heartbeat and looks at the others'.
    pub heartbeat: Duration,
    /// A replica whose heartbeat is older than this is considered gone.
    pub ttl: Duration,
    /// A replica that has not stored a heartbeat for this long stops acting (shorter than
    /// `ttl`: it has stopped before the others take its work).
    pub renew_deadline: Duration,
}

impl MembershipSettings {
    /// For a `ttl`: heartbeats five times as often, and a renew deadline of two thirds of
    /// it (ten seconds: every two seconds, and a replica that has not renewed for 6.7 s
    /// stops, 3.3 s before the others may take its work).
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            heartbeat: ttl / 5,
            ttl,
            renew_deadline: ttl * 2 / 3,
        }
    }
}

impl Default for MembershipSettings {
    fn default() -> Self {
        Self::with_ttl(Duration::from_secs(10))
    }
}

/// The shards `me` owns among `members`: each shard goes to the member with the highest
/// weight for it (rendezvous hashing) that does not have its share (⌈shards/members⌉)
/// yet, so that every replica gets work. Every member computes the same assignment.
pub fn owned_shards(me: &str, members: &[String], shards: u16) -> Vec<u16> {
    if members.is_empty() {
        return Vec::new();
    }
    let cap = usize::from(shards).div_ceil(members.len());
    let mut counts = vec![0usize; members.len()];
    let mut mine = Vec::new();
    for shard in 0..shards {
        let owner = (0..members.len())
            .filter(|&i| counts[i] < cap)
            .max_by_key(|&i| (weight(&members[i], shard), members[i].as_str()))
            .expect("the shares cover every shard");
        counts[owner] += 1;
        if members[owner] == me {
            mine.push(shard);
        }
    }
    mine
}

/// A member's weight for a shard: well mixed, so that members whose ids share a long
/// prefix still win different shards.
fn weight(member: &str, shard: u16) -> u64 {
    mix(stable_hash(member.as_bytes()) ^ mix(u64::from(shard) + 1))
}

fn millis(at: SystemTime) -> i64 {
    jiff::Timestamp::try_from(at).map_or(0, |t| t.as_millisecond())
}

fn key(id: &str) -> ObjectKey {
    ObjectKey::new("", RESOURCE, "", id)
}

/// Stores `id`'s heartbeat, renewed at `at`.
async fn heartbeat(
    store: &dyn Store,
    id: &str,
    replica: i64,
    at: SystemTime,
) -> Result<(), StoreError> {
    let object = json!({"apiVersion": "syncsets.io/v1", "kind": "ControllerReplica",
        "metadata": {"name": id}, "spec": {"replica": replica, "renewTime": millis(at)}});
    match store.get(&key(id)).await? {
        Some(cur) => store.update(&key(id), &object, cur.rv).await.map(drop),
        None => store.create(&key(id), &object, false).await.map(drop),
    }
}

/// The replicas alive now (`me` always among them), sorted.
async fn live_members(
    store: &dyn Store,
    me: &str,
    ttl: Duration,
) -> Result<Vec<String>, StoreError> {
    let q = ListQuery {
        cluster: String::new(),
        resource: RESOURCE.into(),
        ..ListQuery::default()
    };
    let now = millis(SystemTime::now());
    let mut members = vec![me.to_string()];
    for raw in store.list(&q).await?.items {
        let stored = raw.parse()?;
        let renewed = stored.object["spec"]["renewTime"].as_i64().unwrap_or(0);
        let age = now - renewed;
        if age <= ttl.as_millis() as i64 {
            if raw.name != me {
                members.push(raw.name);
            }
        } else if age > 30 * ttl.as_millis() as i64 {
            // Long gone: forget it (whoever sees it first).
            let _ = store.delete(&key(&raw.name), Some(stored.rv)).await;
        }
    }
    members.sort();
    Ok(members)
}

/// This replica in the membership.
pub struct Member {
    store: Arc<dyn Store>,
    queue: Arc<dyn WorkQueue>,
    /// Unique per process.
    pub id: String,
    replica: i64,
    settings: MembershipSettings,
    owned: Option<Vec<u16>>,
    standing: Arc<Standing>,
}

impl Member {
    /// Joins: renews the heartbeat once and takes this replica's shards.
    pub async fn join(
        store: Arc<dyn Store>,
        queue: Arc<dyn WorkQueue>,
        replica: i64,
        settings: MembershipSettings,
    ) -> Result<Self, StoreError> {
        let mut member = Self {
            store,
            queue,
            id: format!("{replica}-{}", uuid::Uuid::new_v4().simple()),
            replica,
            standing: Arc::new(Standing::renewed_within(settings.renew_deadline)),
            settings,
            owned: None,
        };
        member.round().await?;
        Ok(member)
    }

    /// This replica's standing, renewed by each heartbeat stored.
    pub fn standing(&self) -> Arc<Standing> {
        self.standing.clone()
    }

    async fn round(&mut self) -> Result<(), StoreError> {
        let (began, at) = (Instant::now(), SystemTime::now());
        heartbeat(self.store.as_ref(), &self.id, self.replica, at).await?;
        self.standing.renewed(began, at);
        if !self.standing.holds() {
            // Stored, but too late to act on (a slow store): the shards stay released
            // until a heartbeat is stored in time.
            return Ok(());
        }
        let members = live_members(self.store.as_ref(), &self.id, self.settings.ttl).await?;
        let mine = owned_shards(&self.id, &members, self.queue.shards());
        if self.owned.as_ref() != Some(&mine) {
            tracing::info!(replicas = members.len(), shards = ?mine, "work queue shards assigned to this replica");
            match self.queue.assign(&mine).await {
                Ok(()) => self.owned = Some(mine),
                Err(e) => {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "cannot take the assigned shards")
                }
            }
        }
        Ok(())
    }

    /// Keeps the heartbeat and the assignment current until aborted. When the standing
    /// lapses (a heartbeat that cannot be stored, however long it hangs), lets the shards
    /// go, so that the broker hands them to the replicas that take them over.
    pub async fn run(mut self) {
        loop {
            let standing = self.standing.clone();
            let holding = self.owned.as_ref().is_some_and(|o| !o.is_empty());
            let lapsed = tokio::select! {
                biased;
                () = standing.lapsed(), if holding => true,
                () = self.tick() => false,
            };
            if lapsed {
                tracing::warn!(
                    deadline = ?self.settings.renew_deadline,
                    "controller heartbeat not stored in time: work stopped, shards released"
                );
                if let Err(e) = self.queue.assign(&[]).await {
                    tracing::debug!(error = %syncsets_store::Chain(&e), "releasing the shards");
                }
                self.owned = None;
            }
        }
    }

    async fn tick(&mut self) {
        tokio::time::sleep(self.settings.heartbeat).await;
        if let Err(e) = self.round().await {
            tracing::warn!(error = %syncsets_store::Chain(&e), "controller heartbeat failed");
        }
    }
}

/// Removes this replica's heartbeat (a clean shutdown: the others take its shards now).
pub async fn leave(store: &dyn Store, id: &str) {
    match store.delete(&key(id), None).await {
        Ok(_) | Err(StoreError::NotFound) => {}
        Err(e) => {
            tracing::warn!(error = %syncsets_store::Chain(&e), "cannot remove the controller heartbeat")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_has_one_owner_and_few_move() {
        // Ids as replicas make them: a long shared prefix must not matter.
        let members: Vec<String> = [
            "1-5b1f2a0c9d8e4f7a8b6c5d4e3f2a1b0c",
            "2-5b1f2a0c9d8e4f7a8b6c5d4e3f2a1b0d",
            "3-0b1f2a0c9d8e4f7a8b6c5d4e3f2a1b0c",
        ]
        .map(String::from)
        .to_vec();
        let mut all: Vec<u16> = members
            .iter()
            .flat_map(|m| owned_shards(m, &members, 64))
            .collect();
        all.sort();
        assert_eq!(
            all,
            (0..64).collect::<Vec<u16>>(),
            "each shard exactly once"
        );
        for m in &members {
            let n = owned_shards(m, &members, 64).len();
            assert!((21..=22).contains(&n), "{m} owns {n} of 64: a fair share");
        }
        // When one leaves, most shards stay where they were.
        let two = members[..2].to_vec();
        let kept: usize = two
            .iter()
            .map(|m| {
                let after = owned_shards(m, &two, 64);
                owned_shards(m, &members, 64)
                    .iter()
                    .filter(|s| after.contains(s))
                    .count()
            })
            .sum();
        assert!(
            kept >= 36,
            "{kept} of the 43 shards of the remaining two stay"
        );
    }

    #[tokio::test]
    async fn replicas_see_each_other_until_one_goes_quiet() {
        let store: Arc<dyn Store> = Arc::new(syncsets_store::MemoryStore::new());
        heartbeat(store.as_ref(), "a", 0, SystemTime::now())
            .await
            .unwrap();
        heartbeat(store.as_ref(), "b", 1, SystemTime::now())
            .await
            .unwrap();
        let ttl = Duration::from_millis(300);
        assert_eq!(
            live_members(store.as_ref(), "a", ttl).await.unwrap(),
            ["a", "b"]
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        heartbeat(store.as_ref(), "a", 0, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(live_members(store.as_ref(), "a", ttl).await.unwrap(), ["a"]);
        leave(store.as_ref(), "a").await;
        assert_eq!(live_members(store.as_ref(), "b", ttl).await.unwrap(), ["b"]);
    }
}
