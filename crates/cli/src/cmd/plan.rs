//! `syncsets plan`: what a new or changed SyncSet or SelectorSyncSet would do on every
//! cluster it targets, before it does it — and nothing changes, on the hub or on any
//! cluster.
//!
//! The set is a stored one (`sss/NAME`, `ss/NAMESPACE/NAME`) or one in a file (`-f`),
//! validated by the hub with a dry-run create or update. For each cluster it targets, or
//! applied to before, the controllers' own reconcile plan is made (a full reapply of this
//! set, Sync-mode deletions included) and carried out with every write a server-side dry
//! run on the cluster (`dryRun=All`); the object the cluster answers with is compared with
//! the one it holds. Clusters are then grouped by identical outcome.
//!
//! Everything is read through the Kubernetes API with the kubeconfig's credentials: a
//! cluster whose kubeconfig Secret the user may not read cannot be asked, as it would be
//! for `kubectl get secret`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value;
use syncsets_controller::preview::{self, Preview};
use syncsets_controller::{
    ClientSettings, Clients, Cluster, Diff, Failure, HubSecrets, SetDef, SetKind, TargetError,
    segment,
};
use syncsets_types::hive::ClusterSyncStatus;

use crate::controller_args::parse_duration;
use crate::hub_args::HubArgs;

/// Arguments of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A stored set: sss/NAME (or selectorsyncset/NAME), ss/NAMESPACE/NAME (or
    /// syncset/NAMESPACE/NAME; ss/NAME in --namespace)
    set: Option<String>,

    /// A file holding the set as it would be, new or changed, not stored ("-": standard
    /// input)
    #[arg(long, short = 'f', conflicts_with = "set")]
    filename: Option<PathBuf>,

    /// Namespace of a SyncSet named ss/NAME, or of one in a file that names none
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,

    /// Name the clusters of each outcome, and why each cluster could not be asked
    #[arg(long)]
    detail: bool,

    /// Clusters asked at once
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,

    /// A cluster that has not answered a request within this is unreachable
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    #[command(flatten)]
    hub: HubArgs,
}

/// How the plan is written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Output {
    /// A summary grouped by outcome.
    Text,
    /// Everything, as YAML.
    Yaml,
    /// Everything, as JSON.
    Json,
}

/// What applying would do on one cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Outcome {
    /// Objects would be created, changed or deleted.
    Change,
    /// Every object is as the set has it already.
    NoChange,
    /// Applying would fail (after the changes listed, if any).
    Fail,
    /// The cluster could not be asked (unreachable, or no usable kubeconfig).
    NotAsked,
    /// Nothing is synced to this cluster now (paused, not installed, being deleted…).
    Skipped,
}

/// One object a cluster would change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `create`, `change`, `delete`, or `unknown` (the cluster refuses dry runs of it).
    pub action: &'static str,
    /// The object's apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace (none: cluster-scoped).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The fields that would change (`change` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Why it cannot be known (`unknown` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One cluster's plan.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    /// `namespace/name` of its ClusterDeployment.
    pub cluster: String,
    /// What would happen.
    pub outcome: Outcome,
    /// What would change, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Objects that would stay as they are.
    pub unchanged: usize,
    /// Why it would fail, could not be asked, or is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Clusters with the same outcome.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// How many.
    pub count: usize,
    /// What would happen.
    pub outcome: Outcome,
    /// What would change on each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why (for clusters not asked: the kind of failure; each cluster's own is in
    /// `clusters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which.
    pub clusters: Vec<String>,
}

/// The whole plan.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The set: `SelectorSyncSet/NAME` or `SyncSet/NAMESPACE/NAME`.
    pub set: String,
    /// Its generation as planned (a changed set's next one).
    pub generation: i64,
    /// Whether the set planned is the stored one (else: a file's, not stored).
    pub stored: bool,
    /// Clusters grouped by outcome, the largest group first.
    pub summary: Vec<Group>,
    /// Every cluster's plan, by name.
    pub clusters: Vec<ClusterPlan>,
}

/// Runs `plan`.
pub async fn run(args: PlanArgs) -> anyhow::Result<()> {
    let client = args.hub.client().await?;
    let (set, stored) = match (&args.set, &args.filename) {
        (Some(name), None) => (stored_set(&client, name, &args.namespace).await?, true),
        (None, Some(file)) => (proposed_set(&client, file, &args.namespace).await?, false),
        _ => bail!("name a stored set (sss/NAME, ss/NAMESPACE/NAME) or a file (-f FILE)"),
    };
    let report = plan(&client, set, stored, &args).await?;
    match args.output {
        Output::Text => print!("{}", render(&report, args.detail)),
        Output::Yaml => print!("{}", serde_norway::to_string(&report)?),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

/// A set's kind and the API path of its collection.
fn collection(kind: SetKind, namespace: &str) -> String {
    match kind {
        SetKind::SelectorSyncSet => "/apis/hive.openshift.io/v1/selectorsyncsets".into(),
        SetKind::SyncSet => format!(
            "/apis/hive.openshift.io/v1/namespaces/{}/syncsets",
            segment(namespace)
        ),
    }
}

/// Reads `sss/NAME` or `ss/NAMESPACE/NAME` (`ss/NAME`: in `namespace`).
pub(crate) fn parse_set_name(
    text: &str,
    namespace: &str,
) -> anyhow::Result<(SetKind, String, String)> {
    let mut parts = text.split('/');
    let kind = match parts
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "sss" | "selectorsyncset" | "selectorsyncsets" | "selectorsyncsets.hive.openshift.io" => {
            SetKind::SelectorSyncSet
        }
        "ss" | "syncset" | "syncsets" | "syncsets.hive.openshift.io" => SetKind::SyncSet,
        other => bail!("{other:?} is not a set kind: name a set as sss/NAME or ss/NAMESPACE/NAME"),
    };
    let rest: Vec<&str> = parts.collect();
    match (kind, rest.as_slice()) {
        (SetKind::SelectorSyncSet, [name]) if !name.is_empty() => {
            Ok((kind, String::new(), name.to_string()))
        }
        (SetKind::SyncSet, [name]) if !name.is_empty() => {
            Ok((kind, namespace.to_string(), name.to_string()))
        }
        (SetKind::SyncSet, [ns, name]) if !ns.is_empty() && !name.is_empty() => {
            Ok((kind, ns.to_string(), name.to_string()))
        }
        _ => bail!("{text:?}: name a set as sss/NAME or ss/NAMESPACE/NAME"),
    }
}

/// The API's own message for a refused request.
fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow!("{}", s.message),
        other => other.into(),
    }
}

async fn get(client: &kube::Client, path: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("an encoded path is a valid URI");
    client.request::<Value>(request).await
}

async fn get_opt(client: &kube::Client, path: &str) -> anyhow::Result<Option<Value>> {
    match get(client, path).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(api_error(e)),
    }
}

/// Every object of a collection, a page at a time.
async fn list(client: &kube::Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let mut params = vec![("limit", "500")];
        if !token.is_empty() {
            params.push(("continue", token.as_str()));
        }
        let url = reqwest::Url::parse_with_params(&format!("http://hub{path}"), &params)?;
        let page = get(
            client,
            &format!("{}?{}", url.path(), url.query().unwrap_or("")),
        )
        .await
        .map_err(api_error)?;
        items.extend(page["items"].as_array().into_iter().flatten().cloned());
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return Ok(items);
        }
    }
}

/// A stored set.
async fn stored_set(
    client: &kube::Client,
    name: &str,
    namespace: &str,
) -> anyhow::Result<Arc<SetDef>> {
    let (kind, ns, name) = parse_set_name(name, namespace)?;
    let object = get(
        client,
        &format!("{}/{}", collection(kind, &ns), segment(&name)),
    )
    .await
    .map_err(api_error)?;
    set_def(kind, &object)
}

/// A set as a file has it, validated (and defaulted) by the hub with a dry-run create or
/// update: a set the hub would refuse is refused here, with the hub's reasons.
async fn proposed_set(
    client: &kube::Client,
    file: &std::path::Path,
    namespace: &str,
) -> anyhow::Result<Arc<SetDef>> {
    let text = if file == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut object: Value = serde_norway::from_str(&text)
        .with_context(|| format!("{}: not a YAML or JSON object", file.display()))?;
    let kind = match (object["apiVersion"].as_str(), object["kind"].as_str()) {
        (Some("hive.openshift.io/v1"), Some("SelectorSyncSet")) => SetKind::SelectorSyncSet,
        (Some("hive.openshift.io/v1"), Some("SyncSet")) => SetKind::SyncSet,
        (v, k) => bail!(
            "{}: holds {} {}, not a hive.openshift.io/v1 SyncSet or SelectorSyncSet",
            file.display(),
            v.unwrap_or("no apiVersion"),
            k.unwrap_or("no kind")
        ),
    };
    if !object["metadata"].is_object() {
        bail!("{}: the set has no metadata", file.display());
    }
    let ns = match kind {
        SetKind::SyncSet => {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(namespace)
                .to_string();
            object["metadata"]["namespace"] = Value::String(ns.clone());
            ns
        }
        SetKind::SelectorSyncSet => String::new(),
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        bail!("{}: the set has no metadata.name", file.display());
    };
    let path = collection(kind, &ns);
    let name = segment(&name);
    let existing = get_opt(client, &format!("{path}/{name}")).await?;
    let body = |object: &Value| serde_json::to_vec(object).expect("objects serialise");
    let request = match &existing {
        Some(current) => {
            object["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            http::Request::put(format!("{path}/{name}?dryRun=All")).body(body(&object))
        }
        None => http::Request::post(format!("{path}?dryRun=All")).body(body(&object)),
    }
    .expect("an encoded path is a valid URI");
    let request = {
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        http::Request::from_parts(parts, body)
    };
    let validated: Value = client.request(request).await.map_err(api_error)?;
    set_def(kind, &validated)
}

fn set_def(kind: SetKind, object: &Value) -> anyhow::Result<Arc<SetDef>> {
    SetDef::from_object(kind, object)
        .map(Arc::new)
        .ok_or_else(|| anyhow!("the set's spec cannot be read"))
}

/// A cluster to plan: its ClusterDeployment and its ClusterSync status.
struct Candidate {
    cluster: Cluster,
    previous: Option<ClusterSyncStatus>,
}

/// Plans `set` on every cluster it targets or was applied to.
async fn plan(
    client: &kube::Client,
    set: Arc<SetDef>,
    stored: bool,
    args: &PlanArgs,
) -> anyhow::Result<Report> {
    let scope = match set.kind {
        SetKind::SyncSet => format!("/namespaces/{}", segment(&set.namespace)),
        SetKind::SelectorSyncSet => String::new(),
    };
    let deployments = list(
        client,
        &format!("/apis/hive.openshift.io/v1{scope}/clusterdeployments"),
    )
    .await?;
    // ClusterSync statuses by cluster, with the uid of the ClusterDeployment they are of.
    let mut syncs: BTreeMap<String, (String, ClusterSyncStatus)> = BTreeMap::new();
    for cs in list(
        client,
        &format!("/apis/hiveinternal.openshift.io/v1alpha1{scope}/clustersyncs"),
    )
    .await?
    {
        let key = format!(
            "{}/{}",
            cs["metadata"]["namespace"].as_str().unwrap_or_default(),
            cs["metadata"]["name"].as_str().unwrap_or_default()
        );
        // As the reconcile reads it: an unreadable status is none.
        if let Some(status) = cs
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
        {
            let owner = cs["metadata"]["ownerReferences"][0]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            syncs.insert(key, (owner, status));
        }
    }
    let candidates: Vec<Candidate> = deployments
        .iter()
        .map(Cluster::from_object)
        .filter_map(|cluster| {
            // One written for an earlier ClusterDeployment of this name is not its own:
            // the reconcile drops it and acts on nothing it says.
            let previous = syncs
                .remove(&cluster.key())
                .filter(|(owner, _)| *owner == cluster.uid)
                .map(|(_, status)| status);
            let held = syncs_of(previous.as_ref(), &set);
            (set.applies_to(&cluster) || held).then_some(Candidate { cluster, previous })
        })
        .collect();
    let others = other_sets(client, &set).await?;
    let secrets = hub_secrets(client, &set).await?;
    let clients = Clients::new(ClientSettings {
        connect_timeout: args.timeout,
        request_timeout: args.timeout,
        cache_size: 1,
        ..ClientSettings::default()
    });
    let progress = indicatif::ProgressBar::new(candidates.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} planning {bar:40} {pos}/{len} clusters ({elapsed})",
        )
        .expect("a valid template"),
    );
    let mut clusters: Vec<ClusterPlan> =
        futures::stream::iter(candidates.into_iter().map(|candidate| {
            let (clients, set, others, secrets, progress) =
                (&clients, &set, &others, &secrets, &progress);
            async move {
                let planned = plan_cluster(client, clients, set, others, secrets, candidate).await;
                progress.inc(1);
                planned
            }
        }))
        .buffer_unordered(usize::from(args.parallel))
        .filter_map(std::future::ready)
        .collect()
        .await;
    progress.finish_and_clear();
    clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Ok(Report {
        set: match set.kind {
            SetKind::SyncSet => format!("SyncSet/{}/{}", set.namespace, set.name),
            SetKind::SelectorSyncSet => format!("SelectorSyncSet/{}", set.name),
        },
        generation: set.generation,
        stored,
        summary: group(&clusters),
        clusters,
    })
}

/// Whether a ClusterSync status records a result of `set`.
fn syncs_of(status: Option<&ClusterSyncStatus>, set: &SetDef) -> bool {
    syncsets_controller::status_of(status, set).is_some()
}

/// The other sets that may apply to the clusters `set` targets: what they declare is kept
/// when `set` no longer declares it, as the reconcile keeps it. Sets the user may not list
/// are left out, with a warning.
async fn other_sets(client: &kube::Client, set: &SetDef) -> anyhow::Result<Vec<Arc<SetDef>>> {
    let syncsets = match set.kind {
        SetKind::SyncSet => format!(
            "/apis/hive.openshift.io/v1/namespaces/{}/syncsets",
            segment(&set.namespace)
        ),
        SetKind::SelectorSyncSet => "/apis/hive.openshift.io/v1/syncsets".into(),
    };
    let mut others = Vec::new();
    for (kind, path) in [
        (SetKind::SyncSet, syncsets.as_str()),
        (
            SetKind::SelectorSyncSet,
            "/apis/hive.openshift.io/v1/selectorsyncsets",
        ),
    ] {
        match list(client, path).await {
            Ok(items) => others.extend(
                items
                    .iter()
                    .filter_map(|o| SetDef::from_object(kind, o))
                    .map(Arc::new),
            ),
            Err(e) => eprintln!(
                "warning: {kind}s not read ({e}): objects they declare that this set no longer does may be listed as deleted"
            ),
        }
    }
    Ok(others)
}

/// An object as the hub served it, in the form the controllers read the store's.
fn stored(object: Value) -> syncsets_store::Stored {
    let rv = object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    syncsets_store::Stored { object, rv }
}

/// The hub Secrets the set copies (read with the user's credentials).
async fn hub_secrets(client: &kube::Client, set: &SetDef) -> anyhow::Result<HubSecrets> {
    let mut secrets = HubSecrets::new();
    for (ns, name) in set.source_secrets() {
        let path = format!(
            "/api/v1/namespaces/{}/secrets/{}",
            segment(&ns),
            segment(&name)
        );
        let secret = get_opt(client, &path)
            .await
            .with_context(|| format!("reading Secret {ns}/{name}, which the set copies"))?;
        let secret = secret.map(stored).map(|s| (s.object, s.rv));
        secrets.insert((ns, name), secret);
    }
    Ok(secrets)
}

/// One cluster's plan (`None`: the set does not concern it after all).
async fn plan_cluster(
    client: &kube::Client,
    clients: &Clients,
    set: &Arc<SetDef>,
    others: &[Arc<SetDef>],
    secrets: &HubSecrets,
    candidate: Candidate,
) -> Option<ClusterPlan> {
    let Candidate {
        mut cluster,
        previous,
    } = candidate;
    let name = cluster.key();
    let plan = |outcome, changes, unchanged, reason| {
        Some(ClusterPlan {
            cluster: name.clone(),
            outcome,
            changes,
            unchanged,
            reason,
        })
    };
    if let Some(reason) = cluster.skip_reason() {
        return plan(Outcome::Skipped, Vec::new(), 0, Some(reason.into()));
    }
    // Read with the user's credentials: one who may not read it cannot plan for it.
    let secret = match &cluster.kubeconfig_secret {
        Some(secret) => {
            let path = format!(
                "/api/v1/namespaces/{}/secrets/{}",
                segment(&cluster.namespace),
                segment(secret)
            );
            match get_opt(client, &path).await {
                Ok(secret) => secret,
                Err(e) => {
                    let why = format!("no usable kubeconfig: reading Secret {secret}: {e}");
                    return plan(Outcome::NotAsked, Vec::new(), 0, Some(why));
                }
            }
        }
        None => None,
    };
    let kubeconfig = Clients::kubeconfig(&cluster, secret.map(stored));
    cluster.kubeconfig_usable_sets = kubeconfig.usable.clone();
    let reconcile = preview::plan_one(&cluster, set, others, previous.as_ref(), secrets);
    if reconcile.sets.is_empty() && reconcile.retired.is_empty() {
        return None;
    }
    let not_asked = |e: TargetError| {
        let class = match e.failure {
            Failure::Config => "no usable kubeconfig",
            _ => "unreachable",
        };
        plan(
            Outcome::NotAsked,
            Vec::new(),
            0,
            Some(format!("{class}: {}", e.message)),
        )
    };
    let target = match &kubeconfig.text {
        Ok(text) => match clients.for_kubeconfig(text).await {
            Ok(target) => target,
            Err(e) => return not_asked(e),
        },
        Err(e) => return not_asked(e.clone()),
    };
    let preview = match preview::preview(&target, &reconcile, secrets).await {
        Ok(p) => p,
        Err(e) => return not_asked(e),
    };
    let (changes, unchanged) = changes_of(&preview);
    let (outcome, reason) = match (preview.failures.is_empty(), changes.is_empty()) {
        (false, _) => (Outcome::Fail, Some(preview.failures.join("; "))),
        (true, false) => (Outcome::Change, None),
        (true, true) => (Outcome::NoChange, None),
    };
    plan(outcome, changes, unchanged, reason)
}

/// The changes of a preview, and how many objects it leaves unchanged.
fn changes_of(preview: &Preview) -> (Vec<Change>, usize) {
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for touched in &preview.objects {
        let (action, fields, reason) = match &touched.diff {
            Diff::Create => ("create", Vec::new(), None),
            Diff::Change(fields) => ("change", fields.clone(), None),
            Diff::Delete => ("delete", Vec::new(), None),
            Diff::NotPreviewable(why) => ("unknown", Vec::new(), Some(why.clone())),
            Diff::Unchanged => {
                unchanged += 1;
                continue;
            }
        };
        let o = &touched.object;
        changes.push(Change {
            action,
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            fields,
            reason,
        });
    }
    (changes, unchanged)
}

/// Groups clusters by identical outcome, the largest group first. Clusters not asked are
/// grouped by the kind of failure (their own messages name their own addresses).
pub fn group(clusters: &[ClusterPlan]) -> Vec<Group> {
    let mut groups: BTreeMap<(Outcome, Vec<Change>, Option<String>), Vec<String>> = BTreeMap::new();
    for c in clusters {
        let reason = match c.outcome {
            Outcome::NotAsked => c
                .reason
                .as_deref()
                .and_then(|r| r.split_once(':'))
                .map(|(class, _)| class.to_string()),
            _ => c.reason.clone(),
        };
        groups
            .entry((c.outcome, c.changes.clone(), reason))
            .or_default()
            .push(c.cluster.clone());
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|((outcome, changes, reason), clusters)| Group {
            count: clusters.len(),
            outcome,
            changes,
            reason,
            clusters,
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.outcome.cmp(&b.outcome)));
    groups
}

/// One change as a line: `change ConfigMap platform/settings: .data.mode`.
fn change_line(c: &Change) -> String {
    let object = if c.namespace.is_empty() {
        format!("{} {}", c.kind, c.name)
    } else {
        format!("{} {}/{}", c.kind, c.namespace, c.name)
    };
    match (&c.reason, c.fields.is_empty()) {
        (Some(why), _) => format!("{} {object}: {why}", c.action),
        (None, true) => format!("{} {object}", c.action),
        (None, false) => format!("{} {object}: {}", c.action, c.fields.join(", ")),
    }
}

/// The plan for people: one paragraph per group of clusters with the same outcome.
pub fn render(report: &Report, detail: bool) -> String {
    let total: usize = report.summary.iter().map(|g| g.count).sum();
    let what = if report.stored {
        format!("{} (stored, generation {})", report.set, report.generation)
    } else {
        format!("{} (as given, not stored)", report.set)
    };
    let mut out = format!(
        "Plan for {what}: {total} cluster{}; server-side dry run, nothing was changed.\n",
        if total == 1 { "" } else { "s" }
    );
    let width = report
        .summary
        .iter()
        .map(|g| g.count.to_string().len())
        .max()
        .unwrap_or(1);
    for g in &report.summary {
        let mut lines: Vec<String> = g.changes.iter().map(change_line).collect();
        match (g.outcome, &g.reason) {
            (Outcome::NoChange, _) => lines.push("no change".into()),
            (Outcome::Fail, Some(r)) => lines.push(format!("would fail: {r}")),
            (Outcome::NotAsked, Some(r)) => lines.push(format!("could not be asked: {r}")),
            (Outcome::Skipped, Some(r)) => lines.push(format!("not synced: {r}")),
            _ => {}
        }
        let head = format!(
            "  {:>width$} {:<9} ",
            g.count,
            if g.count == 1 {
                "cluster:"
            } else {
                "clusters:"
            }
        );
        let indent = " ".repeat(head.len());
        for (i, line) in lines.iter().enumerate() {
            out.push_str(if i == 0 { &head } else { &indent });
            out.push_str(line);
            out.push('\n');
        }
        if detail {
            if g.outcome == Outcome::NotAsked {
                for c in report
                    .clusters
                    .iter()
                    .filter(|c| g.clusters.contains(&c.cluster))
                {
                    let why = c.reason.as_deref().unwrap_or_default();
                    out.push_str(&format!("{indent}  {}: {why}\n", c.cluster));
                }
            } else {
                out.push_str(&format!("{indent}  {}\n", g.clusters.join(" ")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(
        name: &str,
        outcome: Outcome,
        changes: &[Change],
        reason: Option<&str>,
    ) -> ClusterPlan {
        ClusterPlan {
            cluster: format!("fleet/{name}"),
            outcome,
            changes: changes.to_vec(),
            unchanged: 1,
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn set_names_are_kind_slash_name() {
        let p = |t| parse_set_name(t, "team-a").map_err(|e| e.to_string());
        assert_eq!(
            p("sss/baseline").unwrap(),
            (SetKind::SelectorSyncSet, String::new(), "baseline".into())
        );
        assert_eq!(
            p("ss/x").unwrap(),
            (SetKind::SyncSet, "team-a".into(), "x".into())
        );
        assert_eq!(
            p("syncset/team-b/x").unwrap(),
            (SetKind::SyncSet, "team-b".into(), "x".into())
        );
        for bad in ["sss/a/b", "sss/", "cm/x", "ss//x", "baseline"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clusters_with_the_same_outcome_are_one_group() {
        let change = Change {
            action: "change",
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "platform".into(),
            name: "settings".into(),
            fields: vec![".data.mode".into()],
            reason: None,
        };
        let create = Change {
            action: "create",
            fields: Vec::new(),
            ..change.clone()
        };
        let clusters = [
            cluster("a", Outcome::Change, std::slice::from_ref(&change), None),
            cluster("b", Outcome::Change, std::slice::from_ref(&change), None),
            cluster("c", Outcome::Change, std::slice::from_ref(&create), None),
            cluster(
                "d",
                Outcome::NotAsked,
                &[],
                Some("unreachable: dial 127.0.0.1:1"),
            ),
            cluster(
                "e",
                Outcome::NotAsked,
                &[],
                Some("unreachable: dial 127.0.0.1:2"),
            ),
            cluster("f", Outcome::NoChange, &[], None),
        ];
        let report = Report {
            set: "SelectorSyncSet/baseline".into(),
            generation: 2,
            stored: false,
            summary: group(&clusters),
            clusters: clusters.to_vec(),
        };
        let counts: Vec<(usize, Outcome)> = report
            .summary
            .iter()
            .map(|g| (g.count, g.outcome))
            .collect();
        assert_eq!(
            counts,
            [
                (2, Outcome::Change),
                (2, Outcome::NotAsked),
                (1, Outcome::Change),
                (1, Outcome::NoChange)
            ]
        );
        assert_eq!(
            render(&report, false),
            "Plan for SelectorSyncSet/baseline (as given, not stored): 6 clusters; server-side dry run, nothing was changed.\n\
             \x20 2 clusters: change ConfigMap platform/settings: .data.mode\n\
             \x20 2 clusters: could not be asked: unreachable\n\
             \x20 1 cluster:  create ConfigMap platform/settings\n\
             \x20 1 cluster:  no change\n"
        );
        let detailed = render(&report, true);
        assert!(detailed.contains("    fleet/a fleet/b\n"), "{detailed}");
        assert!(
            detailed.contains("fleet/e: unreachable: dial 127.0.0.1:2\n"),
            "{detailed}"
        );
    }
}
