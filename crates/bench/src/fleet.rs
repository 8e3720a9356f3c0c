//! The fleet benchmark of `syncsets bench --only fleet`: convergence from cold.
//!
//! ```text
//!   bench ──spawns──▶ syncsets serve      hub: API + controllers (the product as shipped)
//!         ──spawns──▶ syncsets fleet-sim  member server: N simulated clusters, registered
//!   1. ceiling   server-side applies/s the member takes from the bench itself, through the
//!                controller's own client stack, as many at once as the controller runs
//!   2. rollout   the workload's sets created on the hub; time until every set reports
//!                every targeted cluster in sync; applies/s; hub + controller peak RSS;
//!                the member's memory per simulated cluster
//!   3. plan      (--fleet-plan) `syncsets plan -f` of a change to the first set, timed,
//!                then the change applied and timed: the plan beside the apply
//! ```
//!
//! Workloads: `hive` is Hive's scale test (hack/scaletest: 60 SelectorSyncSets × 10
//! ConfigMaps of about 1 KiB, resourceApplyMode Sync) over 1,000 clusters; `wide` is one
//! such set over 10,000 clusters; `platform` is what platform teams ship (a monitoring
//! agent, and an operator with its CRD and a custom resource: tests/fixtures/platform)
//! over 1,000 clusters.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::verdict;

/// A kubeconfig for a simulated cluster (no credentials).
fn kubeconfig(server: &str) -> String {
    use syncsets_types::kubeconfig;
    kubeconfig::render("c", kubeconfig::server(server), "c", Default::default())
}

/// Hive's scale-test workload (`hack/scaletest/syncset-template.yaml`).
const HIVE_TEMPLATE: &str = include_str!(
    "../../../tests/fixtures/hive/template-selectorsyncset-scaletest-resourceapplymode-sync.yaml"
);

/// The label the scale-test sets select (hiveutil sets it on the clusters it creates).
const SCALETEST_LABEL: &str = "hive.openshift.io/hiveutil-created=true";

/// Arguments of the fleet benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Fleet workloads: `hive` (60 sets × 10 ConfigMaps), `wide` (1 set × 10) and/or
    /// `platform` (a monitoring agent and an operator)
    #[arg(long, value_delimiter = ',', default_value = "hive,wide")]
    fleet_workload: Vec<String>,

    /// Clusters [default: 1,000 for hive, 10,000 for wide]
    #[arg(long)]
    fleet_clusters: Option<usize>,

    /// Concurrent reconciles of the controller (and applies of the ceiling measurement)
    #[arg(long, default_value_t = 64)]
    fleet_workers: usize,

    /// Then each workload again with this share of the fleet unreachable (`10%`), its
    /// reachable clusters' rollout beside the one without faults
    #[arg(long)]
    fleet_down: Option<String>,

    /// After the rollout, `syncsets plan` a change to the workload's first set (an
    /// annotation on every object), then apply that change: the plan's time beside the
    /// apply's
    #[arg(long)]
    fleet_plan: bool,

    /// After the rollout, change the workload's first set at once, then again under a
    /// Progressive RolloutPolicy (waves of 25%, no minSuccessTime): the progressive
    /// rollout's time and the controllers' CPU beside the change at once
    #[arg(long)]
    fleet_rollout: bool,

    /// After the rollout, open `syncsets dashboard` over the fleet in Debian's Chromium
    /// (headless, tests/dashboard/measure.mjs; `npm ci --prefix tests/dashboard` first):
    /// first render of the Sets page and of the fleet map beside the lists the map needs
    /// fetched alone, then redraws and frames on the map while a change reaches every
    /// cluster
    #[arg(long)]
    fleet_dashboard: bool,
}

/// A workload.
struct Workload {
    name: &'static str,
    /// What its sets hold, for the report.
    what: &'static str,
    sets: Vec<Value>,
    clusters: usize,
    target: Duration,
}

impl Workload {
    /// Objects of all its sets (applies per cluster).
    fn objects(&self) -> Vec<Value> {
        self.sets
            .iter()
            .flat_map(|set| {
                set["spec"]["resources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The platform sets of the realistic workload: a monitoring agent (namespace,
/// ServiceAccount, RBAC, DaemonSet, Service) and an operator (CRD, namespace, RBAC,
/// Deployment, then a custom resource), from tests/fixtures/platform, selecting the
/// benchmark's clusters.
fn platform_sets() -> anyhow::Result<Vec<Value>> {
    [
        include_str!("../../../tests/fixtures/platform/monitoring-agent.yaml"),
        include_str!("../../../tests/fixtures/platform/backup-operator.yaml"),
    ]
    .iter()
    .map(|text| {
        let mut set: Value = serde_norway::from_str(text).context("reading a platform set")?;
        let (key, value) = SCALETEST_LABEL.split_once('=').expect("k=v");
        set["spec"]["clusterDeploymentSelector"] = serde_json::json!({"matchLabels": {key: value}});
        Ok(set)
    })
    .collect()
}

/// The SelectorSyncSets of Hive's scale test, `count` of them.
fn scaletest_sets(count: usize) -> anyhow::Result<Vec<Value>> {
    let body: String = HIVE_TEMPLATE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (0..count)
        .map(|i| {
            let doc: Value =
                serde_norway::from_str(&body.replace("${RESOURCE_INDEX}", &i.to_string()))
                    .context("reading Hive's scale-test template")?;
            Ok(doc["objects"][0].clone())
        })
        .collect()
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Starts `syncsets <args>` and waits for its first line of output (the rest is discarded).
async fn spawn(args: &[String], first_line_within: Duration) -> anyhow::Result<(Proc, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .env("SYNCSETS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let proc = Proc(child);
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    tokio::time::timeout(first_line_within, reader.read_line(&mut line))
        .await
        .with_context(|| format!("`syncsets {}` did not start", args[0]))??;
    // The rest is read too: a child writing to a closed pipe would fail.
    tokio::spawn(async move { tokio::io::copy(&mut reader, &mut tokio::io::sink()).await });
    Ok((proc, line))
}

fn url_in(line: &str) -> anyhow::Result<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|w| w.trim_end_matches([':', ',']).to_string())
        .with_context(|| format!("no address in {line:?}"))
}

/// How long each ceiling sample lasts.
const CEILING_SAMPLE: Duration = Duration::from_secs(15);

/// CPU time (user and system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses: utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak and current resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// How many items a list has, read in pages of 500 as kubectl reads lists: the hub never
/// holds a whole fleet's list for the benchmark's sake.
async fn count(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let (mut n, mut token) = (0, String::new());
    loop {
        let mut query = vec![("limit", "500")];
        if !token.is_empty() {
            query.push(("continue", token.as_str()));
        }
        let page: Value = client
            .get(url)
            .query(&query)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        n += page["items"].as_array().map_or(0, Vec::len);
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return Ok(n);
        }
    }
}

/// Server-side applies/s the member takes from `workers` concurrent appliers through the
/// controller's client stack, unthrottled, over `duration`, in the rollout's pattern: each
/// applier takes a fresh cluster (a new client, discovery, the cluster's first requests),
/// applies every one of `objects` to it, and moves on. Each measurement takes clusters of
/// its own (`round`): applying again to the first one's clusters changes nothing, which
/// costs the member less than the rollout's first applies and overstated its ceiling.
async fn ceiling(
    member: &str,
    round: &'static str,
    workers: usize,
    duration: Duration,
    objects: &[Value],
) -> anyhow::Result<f64> {
    let settings = syncsets_controller::ClientSettings {
        qps: 1e9,
        burst: u32::MAX,
        ..Default::default()
    };
    let clients = Arc::new(syncsets_controller::Clients::new(settings));
    let applied = Arc::new(AtomicU64::new(0));
    let objects = Arc::new(objects.to_vec());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (applied, objects, clients, member) = (
            applied.clone(),
            objects.clone(),
            clients.clone(),
            member.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            // Logical clusters nobody registered: the rollout's clusters stay untouched.
            for j in 0.. {
                let cluster = format!("ceiling-{round}-{w}-{j}");
                let target = clients
                    .for_kubeconfig(&kubeconfig(&format!("{member}/clusters/{cluster}")))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for object in objects.iter() {
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                    target
                        .write(object.clone(), syncsets_controller::Behavior::Apply)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    applied.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(applied.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Runs the fleet benchmark on `store` (a URL) and `bus`; returns whether every target
/// was met.
pub async fn run(args: &FleetArgs, store: &str, bus: &str) -> anyhow::Result<bool> {
    let mut ok = true;
    for name in &args.fleet_workload {
        let workload = match name.as_str() {
            "hive" => Workload {
                name: "hive",
                what: "10 ConfigMaps each",
                sets: scaletest_sets(60)?,
                clusters: args.fleet_clusters.unwrap_or(1_000),
                target: Duration::from_secs(300),
            },
            "wide" => {
                let clusters = args.fleet_clusters.unwrap_or(10_000);
                Workload {
                    name: "wide",
                    what: "10 ConfigMaps",
                    sets: scaletest_sets(1)?,
                    clusters,
                    // 100,000 clusters in 10 minutes.
                    target: Duration::from_secs(if clusters >= 100_000 { 600 } else { 120 }),
                }
            }
            "platform" => Workload {
                name: "platform",
                what: "a monitoring agent and an operator with its CRD and a custom resource",
                sets: platform_sets()?,
                clusters: args.fleet_clusters.unwrap_or(1_000),
                target: Duration::from_secs(120),
            },
            other => bail!("unknown fleet workload {other:?}: use hive, wide or platform"),
        };
        let healthy = run_workload(args, &workload, store, bus, None).await?;
        ok &= healthy.ok;
        if let Some(down) = &args.fleet_down {
            let share = down
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|p| (0.0..100.0).contains(p))
                .with_context(|| format!("--fleet-down {down:?}: expected a share, e.g. 10%"))?;
            let faulty =
                run_workload(args, &workload, store, bus, Some((down, share / 100.0))).await?;
            // Applies/s to the clusters that can be reached, beside the rollout without
            // faults of the same run.
            let ratio = faulty.rate / healthy.rate;
            println!(
                "  with {down} of the fleet down: the rest at {:.0} applies/s = {ratio:.2} × the rollout without faults (target ≥ 0.80) {}",
                faulty.rate,
                verdict(ratio >= 0.8)
            );
            ok &= faulty.ok && ratio >= 0.8;
        }
    }
    Ok(ok)
}

/// How a workload's rollout went.
struct Outcome {
    /// Every target met.
    ok: bool,
    /// Applies/s to the clusters that could be reached.
    rate: f64,
}

/// How many of `clusters` a share selects (as `fleet-sim --fault <share>:…` does: cluster
/// `i` when ⌊(i+1)·share⌋ > ⌊i·share⌋).
fn selected(clusters: usize, share: f64) -> usize {
    (clusters as f64 * share).floor() as usize
}

async fn run_workload(
    args: &FleetArgs,
    w: &Workload,
    store: &str,
    bus: &str,
    down: Option<(&str, f64)>,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    let store = if store.starts_with("sqlite") {
        format!("sqlite://{}", Path::new(&data).join("hub.db").display())
    } else {
        store.to_string()
    };
    let down_count = down.map_or(0, |(_, share)| selected(w.clusters, share));
    let reachable = w.clusters - down_count;
    let objects = w.objects();
    let applies = objects.len() * reachable;
    let faults = match down {
        Some((text, _)) => {
            format!(", {down_count} of them unreachable (fleet-sim --fault {text}:unreachable)")
        }
        None => String::new(),
    };
    println!(
        "\nfleet {}: {} clusters × {} set(s), {} ({} objects; hub store {}, bus {bus}){faults}: {applies} applies",
        w.name,
        w.clusters,
        w.sets.len(),
        w.what,
        objects.len(),
        store.split("://").next().unwrap_or_default()
    );
    let s = |v: &str| v.to_string();
    // With a shared bus the controllers run as their own process (as in production), and
    // their memory is measured alone; on the embedded default they live in the hub.
    let separate = bus.starts_with("amqp");
    let workers = args.fleet_workers.to_string();
    let (hub_proc, line) = spawn(
        &[
            s("serve"),
            s("--insecure-http"),
            s("--listen"),
            s("127.0.0.1:0"),
            s("--data-dir"),
            data.clone(),
            s("--store"),
            store.clone(),
            s("--bus"),
            s(bus),
            s("--workers"),
            workers.clone(),
            s("--controllers"),
            (!separate).to_string(),
        ],
        Duration::from_secs(60),
    )
    .await?;
    let controller_proc = if separate {
        let (proc, _) = spawn(
            &[
                s("controller"),
                s("--data-dir"),
                data.clone(),
                s("--store"),
                store.clone(),
                s("--bus"),
                s(bus),
                s("--workers"),
                workers.clone(),
                s("--metrics-bind-address"),
                s("127.0.0.1:0"),
            ],
            Duration::from_secs(60),
        )
        .await?;
        Some(proc)
    } else {
        None
    };
    let hub = url_in(&line)?;
    let hub_pid = hub_proc.0.id().unwrap_or_default();
    let controller_pid = controller_proc
        .as_ref()
        .map_or(hub_pid, |p| p.0.id().unwrap_or_default());
    let registering = Instant::now();
    let mut sim_args = vec![
        s("fleet-sim"),
        s("--hub"),
        hub.clone(),
        s("--clusters"),
        w.clusters.to_string(),
        s("--listen"),
        s("127.0.0.1:0"),
        s("--labels"),
        s(SCALETEST_LABEL),
        s("--concurrency"),
        s("32"),
    ];
    if let Some((text, _)) = down {
        sim_args.push(s("--fault"));
        sim_args.push(format!("{text}:unreachable"));
    }
    let (member_proc, line) = spawn(&sim_args, Duration::from_secs(1800)).await?;
    let member = url_in(&line)?;
    println!(
        "  registered in {:.1}s",
        registering.elapsed().as_secs_f64()
    );
    // An empty member server, for the memory a simulated cluster costs.
    let empty_member = {
        let (proc, _) = spawn(
            &[
                s("fleet-sim"),
                s("--hub"),
                hub.clone(),
                s("--clusters"),
                s("0"),
                s("--listen"),
                s("127.0.0.1:0"),
            ],
            Duration::from_secs(60),
        )
        .await?;
        rss_mib(proc.0.id().unwrap_or_default()).1
    };

    // The controllers look at every new cluster once (no sets yet): wait until they are done.
    let client = reqwest::Client::new();
    let syncs = format!("{hub}/apis/hiveinternal.openshift.io/v1alpha1/clustersyncs");
    let settling = Instant::now();
    while count(&client, &syncs).await? < w.clusters {
        if settling.elapsed() > Duration::from_secs(600) {
            bail!("the controllers did not look at every cluster within 10 minutes");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sets = &w.sets;
    let member_pid = member_proc.0.id().unwrap_or_default();
    // The member's memory with the fleet registered, and before the rollout (after the
    // ceiling's own clusters): what the fleet's clusters cost is the sum of the growths.
    let member_registered = rss_mib(member_pid).1;
    // With faults, the rollout without them is the baseline: no ceiling.
    let measure_ceiling = down.is_none();
    let ceiling_before = if measure_ceiling {
        let member_cpu = cpu_seconds(member_pid);
        let before = ceiling(&member, "a", args.fleet_workers, CEILING_SAMPLE, &objects).await?;
        let ceiling_cpu = (cpu_seconds(member_pid) - member_cpu) / CEILING_SAMPLE.as_secs_f64();
        println!(
            "  member ceiling: {before:.0} server-side applies/s ({} appliers, unthrottled, {} objects per fresh cluster; member CPU {:.0}%)",
            args.fleet_workers,
            objects.len(),
            ceiling_cpu * 100.0
        );
        before
    } else {
        0.0
    };
    let (hub_cpu, member_cpu) = (cpu_seconds(hub_pid), cpu_seconds(member_pid));
    let controller_cpu = cpu_seconds(controller_pid);

    let member_before = rss_mib(member_pid).1;
    let started = Instant::now();
    for set in sets {
        client
            .post(format!("{hub}/apis/hive.openshift.io/v1/selectorsyncsets"))
            .json(set)
            .send()
            .await?
            .error_for_status()?;
    }
    let give_up = w.target * 3;
    let mut peak_rss = 0.0f64;
    let mut last_report = Instant::now();
    let elapsed = loop {
        let list = get_json(
            &client,
            &format!("{hub}/apis/hive.openshift.io/v1/selectorsyncsets"),
        )
        .await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let in_sync: u64 = items
            .iter()
            .map(|s| s["status"]["inSync"].as_u64().unwrap_or(0))
            .sum();
        let failing: u64 = items
            .iter()
            .map(|s| s["status"]["failing"].as_u64().unwrap_or(0))
            .sum();
        let done = items.len() == w.sets.len()
            && items.iter().all(|s| {
                s["status"]["inSync"].as_u64() == Some(reachable as u64)
                    && s["status"]["failing"].as_u64().unwrap_or(0) == down_count as u64
            });
        peak_rss = peak_rss.max(rss_mib(controller_pid).0);
        if done {
            break started.elapsed();
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "  … {:>4.0}s: {in_sync} of {} (set, cluster) pairs in sync, {failing} failing",
                started.elapsed().as_secs_f64(),
                w.sets.len() * reachable
            );
        }
        if started.elapsed() > give_up {
            println!(
                "  gave up after {give_up:?}: {in_sync} of {} in sync",
                w.sets.len() * reachable
            );
            break give_up;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rate = applies as f64 / elapsed.as_secs_f64();
    let secs = elapsed.as_secs_f64();
    let used = |pid: u32, before: f64| (cpu_seconds(pid) - before) / secs * 100.0;
    let (member_use, controller_use) = (
        used(member_pid, member_cpu),
        used(controller_pid, controller_cpu),
    );
    let hub_use = if controller_pid == hub_pid {
        0.0
    } else {
        used(hub_pid, hub_cpu)
    };
    let (hwm, _) = rss_mib(controller_pid);
    let peak = peak_rss.max(hwm);
    let hub_peak = rss_mib(hub_pid).0;
    let member_after = rss_mib(member_pid).1;
    let fleet_cost =
        (member_registered - empty_member).max(0.0) + (member_after - member_before).max(0.0);
    let in_time = elapsed <= w.target;
    println!(
        "  converged in {:.1}s (target ≤ {}s) {}",
        elapsed.as_secs_f64(),
        w.target.as_secs(),
        verdict(in_time)
    );
    println!(
        "  member RSS {member_after:.0} MiB after the rollout: {:.1} KiB per simulated cluster with its objects (an empty member: {empty_member:.0} MiB)",
        fleet_cost * 1024.0 / w.clusters as f64
    );
    let mut ratio_ok = true;
    if measure_ceiling {
        // The ceiling again, after the rollout: the machine is shared, so take the mean.
        let ceiling_after =
            ceiling(&member, "b", args.fleet_workers, CEILING_SAMPLE, &objects).await?;
        let ceiling = (ceiling_before + ceiling_after) / 2.0;
        println!(
            "  member ceiling after the rollout: {ceiling_after:.0} applies/s; mean {ceiling:.0}"
        );
        let ratio = rate / ceiling;
        ratio_ok = ratio >= 0.7;
        println!(
            "  {rate:.0} applies/s = {ratio:.2} × the member's ceiling (target ≥ 0.70) {}",
            verdict(ratio_ok)
        );
    } else {
        println!("  {rate:.0} applies/s to the reachable clusters");
    }
    let controller_what = if separate {
        "controller"
    } else {
        "hub + controllers"
    };
    let hub_note = if separate {
        format!(", API server {hub_use:.0}%")
    } else {
        String::new()
    };
    println!(
        "  CPU during the rollout (of 200%): member {member_use:.0}%, {controller_what} {controller_use:.0}%{hub_note}"
    );
    // MiB: 200 at 10,000 clusters, 1 GiB at 100,000.
    let memory_target = match w.clusters {
        n if n >= 100_000 => Some((1024.0, "1 GiB at 100,000")),
        n if n >= 10_000 => Some((200.0, "200 MB at 10,000")),
        _ => None,
    };
    let memory_ok = memory_target.is_none_or(|(limit, _)| peak <= limit);
    let target_note = match memory_target {
        Some((_, what)) => format!(" (target ≤ {what} clusters) {}", verdict(memory_ok)),
        None => String::new(),
    };
    if separate {
        println!(
            "  controller peak RSS {peak:.0} MiB{target_note}; the API server's {hub_peak:.0} MiB"
        );
    } else {
        println!(
            "  hub + controllers peak RSS {peak:.0} MiB, SQLite's page cache included{target_note}"
        );
    }
    if args.fleet_plan && down.is_none() {
        plan_then_apply(&client, &hub, &data, &sets[0], reachable).await?;
    }
    let mut dashboard_ok = true;
    if args.fleet_dashboard && down.is_none() {
        dashboard_ok = dashboard(&client, &hub, &data, &sets[0], reachable, controller_pid).await?;
    }
    if args.fleet_rollout && down.is_none() {
        at_once_then_progressive(&client, &hub, &sets[0], reachable, controller_pid).await?;
    }
    Ok(Outcome {
        ok: in_time && ratio_ok && memory_ok && dashboard_ok,
        rate,
    })
}

/// Changes `set` (an annotation on every object) and waits until each of `clusters` has
/// the new generation; returns the time it took and the `pid`'s CPU share meanwhile.
async fn change_and_wait(
    client: &reqwest::Client,
    url: &str,
    value: &str,
    clusters: usize,
    pid: u32,
    done: impl AsyncFn(&reqwest::Client, i64) -> anyhow::Result<bool>,
) -> anyhow::Result<(Duration, f64)> {
    let mut changed = get_json(client, url).await?;
    for object in changed["spec"]["resources"]
        .as_array_mut()
        .context("resources")?
    {
        object["metadata"]["annotations"]["bench.syncsets.io/rollout"] =
            Value::String(value.into());
    }
    let generation = changed["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
    let cpu = cpu_seconds(pid);
    let started = Instant::now();
    client
        .put(url)
        .json(&changed)
        .send()
        .await?
        .error_for_status()?;
    loop {
        let now = get_json(client, url).await?;
        if now["status"]["observedGeneration"].as_i64() >= Some(generation)
            && now["status"]["inSync"].as_u64() == Some(clusters as u64)
            && done(client, generation).await?
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the change did not reach every cluster within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    Ok((took, (cpu_seconds(pid) - cpu) / took.as_secs_f64() * 100.0))
}

/// The same change to `set` made at once, then under a Progressive RolloutPolicy (waves of
/// 25% of the fleet, no minSuccessTime, so the waves' cost shows rather than waiting):
/// what rolling out progressively costs beside rolling out at once, in the same run.
async fn at_once_then_progressive(
    client: &reqwest::Client,
    hub: &str,
    set: &Value,
    clusters: usize,
    controller_pid: u32,
) -> anyhow::Result<()> {
    let name = set["metadata"]["name"].as_str().context("a named set")?;
    let url = format!("{hub}/apis/hive.openshift.io/v1/selectorsyncsets/{name}");
    let policy_url = format!("{hub}/apis/syncsets.io/v1alpha1/rolloutpolicies");
    let at_once = async |_: &reqwest::Client, _: i64| Ok(true);
    let (once, once_cpu) =
        change_and_wait(client, &url, "at-once", clusters, controller_pid, at_once).await?;
    client
        .post(&policy_url)
        .json(&serde_json::json!({"apiVersion": "syncsets.io/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "bench"},
            "spec": {"selector": {"matchLabels": {"bench.syncsets.io/rollout": "progressive"}},
                     "strategy": {"type": "Progressive", "progressive": {
                         "maxConcurrency": "25%", "minSuccessTime": "0s", "progressDeadline": "10m"}}}}))
        .send()
        .await?
        .error_for_status()?;
    client
        .patch(&url)
        .header("content-type", "application/merge-patch+json")
        .json(&serde_json::json!({"metadata": {"labels": {"bench.syncsets.io/rollout": "progressive"}}}))
        .send()
        .await?
        .error_for_status()?;
    // Governed from now on: taken as rolled out (every cluster has it) before the change.
    let rollout =
        async |client: &reqwest::Client, generation: i64| -> anyhow::Result<Option<Value>> {
            let policy = get_json(client, &format!("{policy_url}/bench")).await?;
            Ok(policy["status"]["rollouts"]
                .as_array()
                .and_then(|r| {
                    r.iter()
                        .find(|r| r["name"] == name && r["revision"] == generation)
                })
                .cloned())
        };
    let current = get_json(client, &url).await?["metadata"]["generation"]
        .as_i64()
        .unwrap_or(1);
    let adopting = Instant::now();
    while rollout(client, current)
        .await?
        .is_none_or(|r| r["phase"] != "Complete")
    {
        if adopting.elapsed() > Duration::from_secs(60) {
            bail!("the policy did not take the set in within a minute");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let complete = async |client: &reqwest::Client, generation: i64| {
        Ok(rollout(client, generation)
            .await?
            .is_some_and(|r| r["phase"] == "Complete"))
    };
    let (progressive, progressive_cpu) = change_and_wait(
        client,
        &url,
        "progressive",
        clusters,
        controller_pid,
        complete,
    )
    .await?;
    let waves = rollout(client, current + 1)
        .await?
        .map_or(0, |r| r["waves"].as_array().map_or(0, Vec::len));
    println!(
        "  a change at once: {:.1}s (controllers' CPU {once_cpu:.0}%); under a Progressive policy in {waves} waves of 25%: {:.1}s = {:.2} × (CPU {progressive_cpu:.0}%)",
        once.as_secs_f64(),
        progressive.as_secs_f64(),
        progressive.as_secs_f64() / once.as_secs_f64()
    );
    Ok(())
}

/// `syncsets dashboard` over the fleet, driven in Debian's Chromium by
/// tests/dashboard/measure.mjs: the first render of the Sets page and of the fleet map
/// (target ≤ 1 s each) beside the lists the map needs, fetched and parsed alone in the
/// same browser; then, on the map, redraws, long tasks and frame gaps while a change to
/// `set` reaches every one of `clusters`. Whether the targets were met.
async fn dashboard(
    client: &reqwest::Client,
    hub: &str,
    data: &str,
    set: &Value,
    clusters: usize,
    controller_pid: u32,
) -> anyhow::Result<bool> {
    use tokio::io::AsyncWriteExt as _;
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dashboard");
    if !tests.join("node_modules/playwright-core").exists() {
        bail!(
            "--fleet-dashboard drives Chromium with playwright-core: run `npm ci --prefix tests/dashboard` (and `apt-get install chromium`)"
        );
    }
    let kubeconfig_path = Path::new(data).join("dashboard.kubeconfig");
    std::fs::write(&kubeconfig_path, kubeconfig(hub))?;
    let (_dashboard, line) = spawn(
        &[
            "dashboard".into(),
            "--kubeconfig".into(),
            kubeconfig_path.to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ],
        Duration::from_secs(60),
    )
    .await?;
    let url = url_in(&line)?;
    let mut browser = Command::new("node")
        .arg(tests.join("measure.mjs"))
        .env("DASHBOARD_URL", &url)
        .env("CHROMIUM", "/usr/bin/chromium")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut lines = BufReader::new(browser.stdout.take().context("piped")?).lines();
    while let Some(line) = lines.next_line().await? {
        if line == "MAP READY" {
            break;
        }
    }
    let name = set["metadata"]["name"].as_str().context("a named set")?;
    let set_url = format!("{hub}/apis/hive.openshift.io/v1/selectorsyncsets/{name}");
    let at_once = async |_: &reqwest::Client, _: i64| Ok(true);
    let (took, _) = change_and_wait(
        client,
        &set_url,
        "dashboard",
        clusters,
        controller_pid,
        at_once,
    )
    .await?;
    let mut stdin = browser.stdin.take().context("piped")?;
    stdin.write_all(b"DONE\n").await?;
    let mut report = None;
    while let Some(line) = lines.next_line().await? {
        if line.starts_with('{') {
            report = Some(serde_json::from_str::<Value>(&line)?);
        }
    }
    let status = browser.wait().await?;
    let r = report.with_context(|| format!("the browser measured nothing ({status})"))?;
    let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let ok = ms("setsMs") <= 1000.0 && ms("mapMs") <= 1000.0;
    println!(
        "  dashboard in Chromium (headless) over {} clusters: first render of Sets {:.0} ms, of the fleet map {:.0} ms (target ≤ 1 s each) {}; the four lists the map needs, fetched and parsed alone in the same browser: {:.0} ms (the map {:.2} ×)",
        r["cells"],
        ms("setsMs"),
        ms("mapMs"),
        verdict(ok),
        ms("listsMs"),
        ms("mapMs") / ms("listsMs")
    );
    println!(
        "  where a load's time goes (ms from navigation, the last of each): {}",
        r["marks"]
    );
    println!(
        "  while a change reached every cluster ({:.1}s): {} redraws of the map, the longest {:.0} ms; longest task {:.0} ms, longest gap between frames {:.0} ms; {} clusters in sync on the map after",
        took.as_secs_f64(),
        r["renders"],
        ms("longestRenderMs"),
        ms("longestTask"),
        ms("longestGap"),
        r["insync"]
    );
    Ok(ok)
}

/// `syncsets plan -f` of a change to `set` (an annotation on every object) over the fleet,
/// timed, then the change applied and timed until every one of `clusters` has it: what
/// seeing a change before making it costs, beside making it.
async fn plan_then_apply(
    client: &reqwest::Client,
    hub: &str,
    data: &str,
    set: &Value,
    clusters: usize,
) -> anyhow::Result<()> {
    let name = set["metadata"]["name"].as_str().context("a named set")?;
    let url = format!("{hub}/apis/hive.openshift.io/v1/selectorsyncsets/{name}");
    let mut changed = get_json(client, &url).await?;
    for object in changed["spec"]["resources"]
        .as_array_mut()
        .context("resources")?
    {
        // Every kind has annotations (a ConfigMap's data would be a field only some have).
        object["metadata"]["annotations"]["bench.syncsets.io/planned"] =
            Value::String("changed".into());
    }
    let file = Path::new(data).join("changed-set.json");
    std::fs::write(&file, serde_json::to_vec(&changed)?)?;
    let kubeconfig = Path::new(data).join("kubeconfig");
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(["plan", "-o", "json", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("-f")
        .arg(&file)
        .env("SYNCSETS_LOG", "warn")
        .output()
        .await?;
    let planning = started.elapsed();
    if !out.status.success() {
        bail!(
            "syncsets plan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let changing = report["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["outcome"] == "Change")
        .count();
    let objects = changed["spec"]["resources"].as_array().map_or(0, Vec::len);
    println!(
        "  plan of a change to {objects} objects: {changing} of {clusters} clusters would change, found in {:.1}s ({:.0} clusters/s)",
        planning.as_secs_f64(),
        clusters as f64 / planning.as_secs_f64()
    );
    if changing != clusters {
        bail!("the plan found {changing} clusters changing, not {clusters}");
    }
    let started = Instant::now();
    client
        .put(&url)
        .json(&changed)
        .send()
        .await?
        .error_for_status()?;
    let generation = changed["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
    loop {
        let now = get_json(client, &url).await?;
        if now["status"]["observedGeneration"].as_i64() >= Some(generation)
            && now["status"]["inSync"].as_u64() == Some(clusters as u64)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the change was not applied everywhere within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let applying = started.elapsed();
    println!(
        "  applying that change: {:.1}s; the plan took {:.2} × the apply's time",
        applying.as_secs_f64(),
        planning.as_secs_f64() / applying.as_secs_f64()
    );
    Ok(())
}
