//! `syncsets status`: the fleet at a glance — per SyncSet and SelectorSyncSet, how many
//! clusters it targets, how many have its current generation applied, how many fail, and
//! why. `--watch` redraws with progress bars until nothing is pending.
//!
//! It reads the hub through the Kubernetes API (any kubeconfig for it works): the rollout
//! summaries the controllers keep on each set, and the ClusterSyncs of failing clusters.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::api::{Api, ListParams};
use syncsets_types::hive::{ClusterSync, RolloutSummary, SelectorSyncSet, SyncSet};

use crate::controller_args::parse_duration;
use crate::hub_args::HubArgs;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    hub: HubArgs,

    /// Redraw until every targeted cluster is in sync or failing (exits 1 if any fail)
    #[arg(long, short)]
    watch: bool,

    /// How often to redraw with --watch
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,

    /// Give up watching after this (0: never)
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    timeout: Duration,

    /// Failures shown at most
    #[arg(long, default_value_t = 10)]
    failures: usize,
}

/// One set's line.
#[derive(Debug, Clone)]
pub struct SetLine {
    /// `SelectorSyncSet/name` or `SyncSet/namespace/name`.
    pub id: String,
    /// Its name (as ClusterSync status lists it).
    pub name: String,
    /// SyncSet or SelectorSyncSet.
    pub kind: &'static str,
    /// The set's generation.
    pub generation: i64,
    /// What the controllers last summarised.
    pub summary: RolloutSummary,
}

impl SetLine {
    /// The summary describes the current generation.
    pub fn current(&self) -> bool {
        self.summary.observed_generation == Some(self.generation)
    }

    /// Clusters neither in sync nor failing yet.
    pub fn pending(&self) -> i64 {
        let s = &self.summary;
        if !self.current() {
            return s.clusters.unwrap_or(0).max(1);
        }
        s.clusters.unwrap_or(0) - s.in_sync.unwrap_or(0) - s.failing.unwrap_or(0)
    }
}

/// The fleet's state.
#[derive(Debug, Default)]
pub struct Report {
    /// Every set.
    pub sets: Vec<SetLine>,
    /// (set id, cluster, message) of the first failures.
    pub failures: Vec<(String, String, String)>,
}

impl Report {
    /// Nothing is pending.
    pub fn converged(&self) -> bool {
        self.sets.iter().all(|s| s.pending() == 0)
    }

    /// Clusters failing, over all sets.
    pub fn failing(&self) -> i64 {
        self.sets
            .iter()
            .map(|s| s.summary.failing.unwrap_or(0))
            .sum()
    }
}

/// Reads the fleet's state from the hub.
pub async fn fetch(client: &kube::Client, max_failures: usize) -> anyhow::Result<Report> {
    let mut sets = Vec::new();
    let sss: Api<SelectorSyncSet> = Api::all(client.clone());
    for s in sss
        .list(&ListParams::default())
        .await
        .context("listing SelectorSyncSets")?
    {
        let name = s.metadata.name.clone().unwrap_or_default();
        sets.push(SetLine {
            id: format!("SelectorSyncSet/{name}"),
            name,
            kind: "SelectorSyncSet",
            generation: s.metadata.generation.unwrap_or(0),
            summary: s.status.map(|st| st.rollout).unwrap_or_default(),
        });
    }
    let ss: Api<SyncSet> = Api::all(client.clone());
    for s in ss
        .list(&ListParams::default())
        .await
        .context("listing SyncSets")?
    {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        sets.push(SetLine {
            id: format!("SyncSet/{ns}/{name}"),
            name,
            kind: "SyncSet",
            generation: s.metadata.generation.unwrap_or(0),
            summary: s.status.map(|st| st.rollout).unwrap_or_default(),
        });
    }
    let mut failures = Vec::new();
    'sets: for set in &sets {
        for cluster in &set.summary.failing_clusters {
            if failures.len() >= max_failures {
                break 'sets;
            }
            let Some((ns, name)) = cluster.split_once('/') else {
                continue;
            };
            let api: Api<ClusterSync> = Api::namespaced(client.clone(), ns);
            let message = match api.get_opt(name).await? {
                Some(cs) => {
                    let status = cs.status.unwrap_or_default();
                    let list = if set.kind == "SyncSet" {
                        status.sync_sets
                    } else {
                        status.selector_sync_sets
                    };
                    list.into_iter()
                        .find(|s| s.name == set.name)
                        .and_then(|s| s.failure_message)
                        .unwrap_or_default()
                }
                None => String::new(),
            };
            failures.push((set.id.clone(), cluster.clone(), message));
        }
    }
    Ok(Report { sets, failures })
}

fn bar(done: i64, failing: i64, total: i64, width: usize) -> String {
    if total <= 0 {
        return " ".repeat(width + 2);
    }
    let ok = (done as usize * width) / total as usize;
    let bad = ((failing as usize * width) / total as usize).min(width - ok);
    format!(
        "[{}{}{}]",
        "#".repeat(ok),
        "!".repeat(bad),
        "-".repeat(width - ok - bad)
    )
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if report.sets.is_empty() {
        out.push_str("No SyncSets or SelectorSyncSets yet.\n");
        return out;
    }
    let width = report
        .sets
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(3)
        .max(3);
    out.push_str(&format!(
        "{:<width$}  {:>8}  {:>7}  {:>7}  {:>7}\n",
        "SET", "CLUSTERS", "IN SYNC", "FAILING", "PENDING"
    ));
    for s in &report.sets {
        let (clusters, in_sync, failing) = (
            s.summary.clusters.unwrap_or(0),
            s.summary.in_sync.unwrap_or(0),
            s.summary.failing.unwrap_or(0),
        );
        let pct = if clusters > 0 {
            in_sync * 100 / clusters
        } else {
            100
        };
        let note = if s.current() {
            String::new()
        } else {
            "  (summarising…)".into()
        };
        // What was applied is doing (kstatus), where the controllers record it.
        let health = match (
            s.summary.healthy,
            s.summary.progressing.unwrap_or(0),
            s.summary.degraded.unwrap_or(0),
        ) {
            (Some(healthy), progressing, degraded) if progressing + degraded > 0 => {
                format!("  healthy {healthy}, progressing {progressing}, degraded {degraded}")
            }
            _ => String::new(),
        };
        // A progressive rollout under way: where it is.
        let rollout = match (&s.summary.rollout_phase, &s.summary.rollout_wave) {
            (Some(phase), Some(wave)) if phase != "Complete" => {
                format!("  rollout {phase}, wave {wave}")
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<width$}  {clusters:>8}  {in_sync:>7}  {failing:>7}  {:>7}  {} {pct:>3}%{health}{rollout}{note}\n",
            s.id,
            s.pending(),
            bar(in_sync, failing, clusters, 30),
        ));
    }
    if !report.failures.is_empty() {
        out.push_str("\nFailures:\n");
        for (set, cluster, message) in &report.failures {
            let first = message.lines().next().unwrap_or_default();
            let short: String = first.chars().take(160).collect();
            out.push_str(&format!("  {cluster}  {set}: {short}\n"));
        }
    }
    out
}

/// A client for the hub from a kubeconfig file.
pub async fn client(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    client_for(&text)
        .await
        .with_context(|| format!("using the kubeconfig {}", path.display()))
}

/// A client for the hub from a kubeconfig's text.
pub async fn client_for(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    // Parse errors would quote the kubeconfig, credentials included.
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|_| anyhow::anyhow!("not a valid kubeconfig"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Redraws the report until it converges (or `timeout` passes); returns the last one.
pub async fn watch(
    client: &kube::Client,
    interval: Duration,
    timeout: Duration,
    max_failures: usize,
) -> anyhow::Result<Report> {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    loop {
        let report = fetch(client, max_failures).await?;
        let text = render(&report);
        let mut stdout = std::io::stdout().lock();
        if tty {
            // Home and clear, then the report: a live view.
            write!(stdout, "\x1b[H\x1b[2J{text}")?;
        } else {
            writeln!(stdout, "{text}")?;
        }
        stdout.flush()?;
        drop(stdout);
        if report.converged() && !report.sets.is_empty() {
            return Ok(report);
        }
        if !timeout.is_zero() && started.elapsed() >= timeout {
            bail!("not converged after {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs `status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.hub.client().await?;
    if !args.watch {
        let report = fetch(&client, args.failures).await?;
        print!("{}", render(&report));
        return Ok(());
    }
    let report = watch(&client, args.interval, args.timeout, args.failures).await?;
    let failing = report.failing();
    if failing > 0 {
        bail!("the rollout converged with {failing} failing cluster(s)");
    }
    println!("All targeted clusters are in sync.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(clusters: i64, in_sync: i64, failing: i64, observed: i64) -> SetLine {
        SetLine {
            id: "SelectorSyncSet/s".into(),
            name: "s".into(),
            kind: "SelectorSyncSet",
            generation: 2,
            summary: RolloutSummary {
                observed_generation: Some(observed),
                clusters: Some(clusters),
                in_sync: Some(in_sync),
                failing: Some(failing),
                ..RolloutSummary::default()
            },
        }
    }

    #[test]
    fn renders_progress_and_knows_when_it_is_done() {
        let report = Report {
            sets: vec![line(10, 5, 1, 2)],
            failures: vec![(
                "SelectorSyncSet/s".into(),
                "fleet/c1".into(),
                "failed to apply resource 0: 403 Forbidden".into(),
            )],
        };
        let text = render(&report);
        assert!(
            text.contains("[###############!!!------------]  50%\n"),
            "{text}"
        );
        let mut rolling = line(10, 5, 1, 2);
        rolling.summary.healthy = Some(3);
        rolling.summary.progressing = Some(1);
        rolling.summary.degraded = Some(1);
        rolling.summary.rollout_phase = Some("Halted".into());
        rolling.summary.rollout_wave = Some("1/4".into());
        let health = render(&Report {
            sets: vec![rolling],
            ..Report::default()
        });
        assert!(
            health.contains(
                "  50%  healthy 3, progressing 1, degraded 1  rollout Halted, wave 1/4\n"
            ),
            "{health}"
        );
        assert!(
            text.contains("fleet/c1  SelectorSyncSet/s: failed to apply resource 0"),
            "{text}"
        );
        assert!(!report.converged());
        assert!(
            Report {
                sets: vec![line(10, 9, 1, 2)],
                ..Report::default()
            }
            .converged()
        );
        assert!(
            !Report {
                sets: vec![line(10, 10, 0, 1)],
                ..Report::default()
            }
            .converged(),
            "an old generation's summary"
        );
    }
}
