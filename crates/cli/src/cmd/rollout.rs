//! `syncsets rollout status|pause|resume|undo SET`: the verbs of `kubectl rollout`, for a
//! SyncSet or SelectorSyncSet a RolloutPolicy governs (`sss/NAME`, `ss/NAMESPACE/NAME`).
//!
//! Each is an annotation on the set, so plain kubectl does the same:
//!
//! ```text
//!   pause   kubectl annotate sss/NAME syncsets.io/rollout-paused=true
//!   resume  kubectl annotate sss/NAME syncsets.io/rollout-paused- \
//!               syncsets.io/rollout-resumed-at=$(date -u +%FT%TZ) --overwrite
//!   undo    kubectl annotate sss/NAME syncsets.io/rollout-undo=        (or =REVISION)
//!   status  kubectl get rolloutpolicy -o yaml   (status.rollouts)
//! ```
//!
//! The controllers act on them and record each as an Event on the set.

use std::time::Duration;

use anyhow::bail;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use syncsets_controller::SetKind;
use syncsets_types::hive::{SelectorSyncSet, SyncSet};
use syncsets_types::rollout::{
    PAUSED_ANNOTATION, RESUMED_ANNOTATION, RolloutPolicy, SetRollout, UNDO_ANNOTATION,
};

use crate::cmd::plan::parse_set_name;
use crate::hub_args::HubArgs;

/// Arguments of `rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Show the set's rollout; wait until it completes (exit 0) or halts (exit 1).
    Status {
        #[command(flatten)]
        set: SetArg,
        /// Wait for the rollout to complete or halt (`--watch=false`: print once)
        #[arg(long, short = 'w', default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
        /// Give up waiting after this many seconds (0: never)
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Start no further wave until resumed.
    Pause {
        #[command(flatten)]
        set: SetArg,
    },
    /// Continue a paused rollout, or one halted by failures (its failed clusters get a new
    /// progressDeadline).
    Resume {
        #[command(flatten)]
        set: SetArg,
    },
    /// Roll the set back to its previous revision (the one its rollout started from), or
    /// to --to-revision, as a new revision that rolls out under the same policy.
    Undo {
        #[command(flatten)]
        set: SetArg,
        /// The revision to go back to
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

#[derive(Debug, clap::Args)]
struct SetArg {
    /// The set: sss/NAME, ss/NAMESPACE/NAME (ss/NAME with --namespace)
    set: String,
    /// Namespace of a SyncSet named ss/NAME
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    #[command(flatten)]
    hub: HubArgs,
}

/// Runs `rollout`.
pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let (set, annotations) = match &args.verb {
        Verb::Status {
            set,
            watch,
            timeout,
        } => return status(set, *watch, *timeout).await,
        Verb::Pause { set } => (set, json!({PAUSED_ANNOTATION: "true"})),
        Verb::Resume { set } => (
            set,
            json!({PAUSED_ANNOTATION: null, RESUMED_ANNOTATION: jiff::Timestamp::now().to_string()}),
        ),
        Verb::Undo { set, to_revision } => (
            set,
            json!({UNDO_ANNOTATION: to_revision.map_or(String::new(), |r| r.to_string())}),
        ),
    };
    let (kind, namespace, name) = parse_set_name(&set.set, &set.namespace)?;
    let client = set.hub.client().await?;
    let patch = Patch::Merge(json!({"metadata": {"annotations": annotations}}));
    let params = PatchParams::default();
    match kind {
        SetKind::SelectorSyncSet => {
            Api::<SelectorSyncSet>::all(client)
                .patch(&name, &params, &patch)
                .await?;
        }
        SetKind::SyncSet => {
            Api::<SyncSet>::namespaced(client, &namespace)
                .patch(&name, &params, &patch)
                .await?;
        }
    }
    let verb = match args.verb {
        Verb::Pause { .. } => "paused",
        Verb::Resume { .. } => "resumed",
        _ => "undo requested",
    };
    println!("{} {verb}", set.set);
    Ok(())
}

async fn status(set: &SetArg, watch: bool, timeout: u64) -> anyhow::Result<()> {
    let (kind, namespace, name) = parse_set_name(&set.set, &set.namespace)?;
    let client = set.hub.client().await?;
    let policies: Api<RolloutPolicy> = Api::all(client.clone());
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        // The set's generation: a rollout for an older one (or an undo not yet carried
        // out) is not the one to report on.
        let (meta, summary) = match kind {
            SetKind::SelectorSyncSet => {
                let s = Api::<SelectorSyncSet>::all(client.clone())
                    .get(&name)
                    .await?;
                (s.metadata, s.status.map(|s| s.rollout))
            }
            SetKind::SyncSet => {
                let s = Api::<SyncSet>::namespaced(client.clone(), &namespace)
                    .get(&name)
                    .await?;
                (s.metadata, s.status.map(|s| s.rollout))
            }
        };
        let generation = meta.generation.unwrap_or(1);
        let undoing = meta
            .annotations
            .is_some_and(|a| a.contains_key(UNDO_ANNOTATION));
        // Where the rollout is: from the policy's status, or — RolloutPolicies being
        // cluster-scoped, which a user bound in a namespace may not read — from the set's.
        let (text, phase, current) = match policies.list(&ListParams::default()).await {
            Ok(list) => {
                let found = list.items.iter().find_map(|p| {
                    let rollouts = p.status.as_ref()?.rollouts.iter();
                    let r = rollouts
                        .clone()
                        .find(|r| {
                            r.kind == kind.as_str()
                                && r.name == name
                                && r.namespace.as_deref().unwrap_or_default() == namespace
                        })?
                        .clone();
                    Some((p.metadata.name.clone().unwrap_or_default(), r))
                });
                let Some((policy, rollout)) = found else {
                    bail!(
                        "{} is governed by no progressive RolloutPolicy (yet): its changes reach \
                         every cluster at once (see `syncsets status`)",
                        set.set
                    );
                };
                let current = rollout.revision == generation && !undoing;
                let text = if current {
                    describe(&policy, &rollout)
                } else {
                    format!("waiting for revision {generation} to start rolling out")
                };
                (text, rollout.phase, current)
            }
            Err(kube::Error::Api(e)) if e.code == 403 => {
                let summary = summary.unwrap_or_default();
                let (Some(policy), Some(phase)) = (&summary.rollout_policy, &summary.rollout_phase)
                else {
                    bail!(
                        "{} shows no progressive rollout (and RolloutPolicies may not be read: {})",
                        set.set,
                        e.message
                    );
                };
                let text = format!(
                    "revision {generation} under RolloutPolicy {policy}: {phase}, wave {}: {} clusters, {} in sync, {} failing (the policy's status names failed clusters; reading it needs access to rolloutpolicies)",
                    summary.rollout_wave.as_deref().unwrap_or("-"),
                    summary.clusters.unwrap_or(0),
                    summary.in_sync.unwrap_or(0),
                    summary.failing.unwrap_or(0),
                );
                let current = summary.observed_generation == Some(generation) && !undoing;
                (text, phase.clone(), current)
            }
            Err(e) => return Err(e.into()),
        };
        if text != last {
            println!("{text}");
            last = text;
        }
        match phase.as_str() {
            "Complete" if current => return Ok(()),
            "Halted" if current => bail!("rollout halted: undo, resume or change the set"),
            _ if !watch => return Ok(()),
            _ if timeout > 0 && started.elapsed() > Duration::from_secs(timeout) => {
                bail!("timed out waiting for the rollout")
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// What a rollout is doing, in a few lines.
fn describe(policy: &str, r: &SetRollout) -> String {
    let wave = r
        .waves
        .get((r.wave - 1).max(0) as usize)
        .map_or(String::new(), |w| format!(" ({})", w.name));
    let mut out = format!(
        "revision {}{} under RolloutPolicy {policy}: {}, wave {} of {}{wave}: {} clusters, {} updated, {} healthy, {} progressing, {} failed",
        r.revision,
        r.from_revision
            .map_or(String::new(), |f| format!(" (from {f})")),
        r.phase,
        r.wave,
        r.waves.len(),
        r.clusters,
        r.updated,
        r.healthy,
        r.progressing,
        r.failed,
    );
    if let Some(m) = &r.message {
        out.push_str(&format!("\n  {m}"));
    }
    for f in &r.failed_clusters {
        out.push_str(&format!("\n  failed {}: {}", f.cluster, f.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_is_told_in_a_line_and_its_failures() {
        let r: SetRollout = serde_json::from_value(json!({
            "kind": "SelectorSyncSet", "name": "b", "revision": 3, "fromRevision": 2,
            "phase": "Halted", "wave": 1, "clusters": 10, "updated": 2, "healthy": 0,
            "progressing": 0, "failed": 2,
            "waves": [{"name": "canary", "slice": 1, "slices": 1, "clusters": 2},
                      {"name": "others", "slice": 1, "slices": 1, "clusters": 8}],
            "failedClusters": [{"cluster": "fleet/a", "reason": "not healthy: Deployment x/y"}],
            "message": "halted"}))
        .unwrap();
        let text = describe("careful", &r);
        assert!(text.starts_with(
            "revision 3 (from 2) under RolloutPolicy careful: Halted, wave 1 of 2 (canary): 10 clusters"
        ));
        assert!(text.contains("failed fleet/a: not healthy: Deployment x/y"));
    }
}
