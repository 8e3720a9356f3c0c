//! `syncsets dashboard`: who gets in (the browser that opened the printed address, on the
//! right host, reading only), that it reads with the kubeconfig's own permissions, and —
//! in Debian's Chromium driven by Playwright (tests/dashboard/check.mjs) — every page on a
//! hub with a simulated fleet, live, for the admin and for a user bound in one namespace.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use syncsets_testkit::{Process, kubectl_at as kubectl};
use syncsets_types::kubeconfig;

const BIN: &str = env!("CARGO_BIN_EXE_syncsets");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Applies `yaml` as the holder of `kubeconfig`.
fn apply(kubeconfig: &Path, dir: &Path, name: &str, yaml: &str) {
    let file = dir.join(name);
    std::fs::write(&file, yaml).unwrap();
    kubectl(kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
}

/// A SyncSet in `namespace` for the clusters `prefix-00000`…`prefix-00005`, with a
/// ConfigMap in `cm_namespace`.
fn sync_set(name: &str, namespace: &str, prefix: &str, cm_namespace: &str) -> String {
    let refs: String = (0..6)
        .map(|i| format!("  - name: {prefix}-{i:05}\n"))
        .collect();
    format!(
        "apiVersion: hive.openshift.io/v1\nkind: SyncSet\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  clusterDeploymentRefs:\n{refs}  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: {name}\n      namespace: {cm_namespace}\n    data:\n      team: {namespace}\n"
    )
}

/// A hub with its controllers, a user `alice` (token `t-alice`) and the admin's and
/// alice's kubeconfigs.
fn hub(dir: &Path) -> (Process, PathBuf, PathBuf) {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "t-alice,alice,3\n").unwrap();
    let hub = Process::start(
        BIN,
        Process::serve_args(dir, true, &["--token-auth-file", tokens.to_str().unwrap()]),
    );
    let admin = dir.join("kubeconfig");
    let ca = kube::config::Kubeconfig::read_from(&admin)
        .unwrap()
        .clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.certificate_authority_data.clone())
        .unwrap();
    let alice = dir.join("alice.kubeconfig");
    std::fs::write(
        &alice,
        kubeconfig::render(
            "hub",
            kubeconfig::server_with_ca(&hub.url(), &ca),
            "alice",
            kubeconfig::token_user("t-alice"),
        ),
    )
    .unwrap();
    (hub, admin, alice)
}

/// `syncsets dashboard` on a free port with `kubeconfig` (and `more` arguments), and the
/// address it printed.
fn dashboard(kubeconfig: &Path, more: &[&str]) -> (Process, String) {
    let mut args = vec![
        "dashboard",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(more);
    let process = Process::start(BIN, args);
    let url = process.url();
    (process, url)
}

/// The origin and the token of an address `syncsets dashboard` printed.
fn split(url: &str) -> (String, String) {
    let (origin, token) = url.split_once("/#token=").unwrap();
    (origin.to_string(), token.to_string())
}

/// The dashboard's multiplexed stream of `watches` (each a path with its query), their
/// objects whole (`param` `w`) or summarised (`s`).
fn watch_path(param: &str, watches: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://dashboard/watch").unwrap();
    url.query_pairs_mut()
        .extend_pairs(watches.iter().map(|w| (param, w)));
    format!("/watch?{}", url.query().unwrap())
}

/// What a stream sends up to the chunk holding `marker` (`None`: not within 30 s).
async fn stream_until(stream: &mut reqwest::Response, marker: &str) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = String::new();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(marker) {
                break;
            }
        }
        seen
    })
    .await
    .ok()
}

/// The resourceVersion of a list read through the dashboard.
async fn list_rv(http: &reqwest::Client, origin: &str, token: &str, path: &str) -> String {
    let list: serde_json::Value = http
        .get(format!("{origin}{path}"))
        .header("x-syncsets-dashboard-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An installed cluster in team-a, paused, with an annotation nothing decides by.
const CLUSTER: &str = "apiVersion: hive.openshift.io/v1\nkind: ClusterDeployment\nmetadata:\n  name: c1\n  namespace: team-a\n  labels:\n    env: prod\n  annotations:\n    hive.openshift.io/syncset-pause: \"true\"\n    team.example/owner: ops\nspec:\n  clusterName: c1\n  baseDomain: example.com\n  installed: true\n  platform: {}\n  clusterMetadata:\n    clusterID: c1\n    infraID: c1\n    adminKubeconfigSecretRef:\n      name: c1-admin-kubeconfig\n";

/// Lets alice read team-a's clusters, their ClusterSyncs, SyncSets and Events.
const TEAM_A_READER: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: fleet-reader\n  namespace: team-a\nrules:\n- apiGroups: [hive.openshift.io]\n  resources: [clusterdeployments, syncsets]\n  verbs: [get, list, watch]\n- apiGroups: [hiveinternal.openshift.io]\n  resources: [clustersyncs]\n  verbs: [get, list, watch]\n- apiGroups: [\"\"]\n  resources: [events]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: alice-fleet-reader\n  namespace: team-a\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: fleet-reader\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: alice\n";

/// Only the page holding the printed address's token reads through the dashboard, only on
/// its own host names, only the collections it shows, and only to read; what it reads, it
/// reads as the kubeconfig's user; its watches come in one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lets_in_only_its_browser_and_reads_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, admin, alice) = hub(dir.path());
    kubectl(&admin, &["create", "namespace", "team-a"]);
    apply(&admin, dir.path(), "rbac.yaml", TEAM_A_READER);
    let (_admin_dashboard, admin_url) = dashboard(&admin, &[]);
    let (_alice_dashboard, alice_url) = dashboard(&alice, &["--namespace", "team-a"]);

    let http = reqwest::Client::new();
    let (origin, token) = split(&admin_url);
    let sss = "/apis/hive.openshift.io/v1/selectorsyncsets";
    // The page itself is code, no data: anyone may load it.
    let page = http.get(format!("{origin}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/app.js"));
    // Nobody without the token reads through it: not with a wrong one, not with the right
    // one from another site's page, not with another dashboard's.
    let read = |url: String, token: &str| {
        http.get(url)
            .header("x-syncsets-dashboard-token", token)
            .send()
    };
    let (_, alice_token) = split(&alice_url);
    let watch = watch_path("w", &[&format!("{sss}?watch=1")]);
    for path in ["/config.json", sss, &watch] {
        let r = http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        for wrong in ["0123456789abcdef", &alice_token] {
            let r = read(format!("{origin}{path}"), wrong).await.unwrap();
            assert_eq!(r.status(), 401, "{path}");
        }
        let r = http
            .get(format!("{origin}{path}"))
            .header("x-syncsets-dashboard-token", &token)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} from another site");
    }
    let list = read(format!("{origin}{sss}"), &token).await.unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(list.headers()["content-type"], "application/json");
    assert!(
        list.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(
        list.json::<serde_json::Value>().await.unwrap()["kind"],
        "SelectorSyncSetList"
    );
    // A page of another site whose name resolves to 127.0.0.1 names its own host.
    let rebound = http
        .get(format!("{origin}{sss}"))
        .header("host", "evil.example:80")
        .header("x-syncsets-dashboard-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    // Only the page's own reads reach the hub: no Secrets, no writes.
    kubectl(
        &admin,
        &[
            "-n",
            "team-a",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2",
        ],
    );
    for path in [
        "/api/v1/namespaces/team-a/secrets",
        "/api/v1/namespaces/team-a/secrets/db",
        "/api/v1/namespaces/team-a/services/web/proxy/x.js",
        "/apis/hive.openshift.io/v1/syncsets?dryRun=All",
    ] {
        let r = read(format!("{origin}{path}"), &token).await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(!r.text().await.unwrap().contains("hunter2"), "{path}");
    }
    let write = http
        .post(format!("{origin}/api/v1/namespaces"))
        .header("x-syncsets-dashboard-token", &token)
        .header("content-type", "application/json")
        .body(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"via-dashboard"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 405);
    assert_eq!(write.headers()["allow"], "GET");
    let namespaces = kubectl(&admin, &["get", "namespaces", "-o", "name"]);
    assert!(!namespaces.contains("via-dashboard"), "{namespaces}");
    // The page's watches come in one stream, each event tagged with its watch.
    let rv = list_rv(
        &http,
        &origin,
        &token,
        "/apis/hive.openshift.io/v1/namespaces/team-a/syncsets",
    )
    .await;
    let both = watch_path(
        "w",
        &[
            &format!("{sss}?watch=1"),
            &format!(
                "/apis/hive.openshift.io/v1/namespaces/team-a/syncsets?watch=1&resourceVersion={rv}"
            ),
        ],
    );
    let mut stream = read(format!("{origin}{both}"), &token).await.unwrap();
    assert_eq!(stream.status(), 200);
    apply(
        &admin,
        dir.path(),
        "ss.yaml",
        &sync_set("watched", "team-a", "a", "default"),
    );
    let seen = stream_until(&mut stream, "\"watched\"")
        .await
        .expect("the set created reaches the stream");
    let event = seen.lines().find(|l| l.contains("\"watched\"")).unwrap();
    let event: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["i"], 1, "{event}");
    assert_eq!(event["e"]["type"], "ADDED", "{event}");

    // A streaming list of summaries: of each ClusterDeployment what the overviews read,
    // then the bookmark that ends the initial state, whole.
    apply(&admin, dir.path(), "cd.yaml", CLUSTER);
    let summaries = watch_path(
        "s",
        &[
            "/apis/hive.openshift.io/v1/namespaces/team-a/clusterdeployments?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        ],
    );
    let mut stream = read(format!("{origin}{summaries}"), &token).await.unwrap();
    let seen = stream_until(&mut stream, "initial-events-end")
        .await
        .expect("the initial state ends");
    let events: Vec<serde_json::Value> = seen
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{seen}");
    assert_eq!(events[0]["e"]["type"], "ADDED", "{seen}");
    let summary = &events[0]["e"]["object"];
    assert_eq!(
        summary["metadata"]["labels"],
        serde_json::json!({"env": "prod"})
    );
    assert_eq!(
        summary["metadata"]["annotations"],
        serde_json::json!({"hive.openshift.io/syncset-pause": "true"}),
        "only the annotations that decide syncing"
    );
    assert_eq!(summary["spec"], serde_json::json!({"installed": true}));
    assert!(
        summary["metadata"].get("managedFields").is_none(),
        "{summary}"
    );
    assert_eq!(events[1]["e"]["type"], "BOOKMARK", "{seen}");
    assert_eq!(events[1]["e"]["object"]["kind"], "ClusterDeployment");

    // Alice's dashboard reads as alice: her namespace, not what she may not list; a
    // watch she may not make comes back as the hub's refusal, and ends the stream.
    let (alice_origin, _) = split(&alice_url);
    let as_alice = |path: &str| read(format!("{alice_origin}{path}"), &alice_token);
    let forbidden = as_alice(sss).await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let status: serde_json::Value = forbidden.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("User \"alice\" cannot list resource \"selectorsyncsets\""),
        "{status}"
    );
    let refused = as_alice(&watch).await.unwrap().text().await.unwrap();
    let refused: serde_json::Value = serde_json::from_str(refused.trim()).unwrap();
    assert_eq!(refused["status"], 403, "{refused}");
    let own = as_alice("/apis/hive.openshift.io/v1/namespaces/team-a/syncsets")
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let config: serde_json::Value = as_alice("/config.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["namespace"], "team-a");

    // Not on anything but loopback.
    let out = Command::new(BIN)
        .args([
            "dashboard",
            "--kubeconfig",
            admin.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed when dropped (a failing test must not leave a browser behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the browser's lines into `output` up to `marker` (the check script bounds its
/// own waits, and exits when one fails).
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    output: &mut String,
    marker: &str,
) {
    for line in lines {
        let line = line.unwrap();
        output.push_str(&line);
        output.push('\n');
        if line == marker {
            return;
        }
    }
    panic!("the browser stopped before {marker}:\n{output}");
}

/// Whether Debian's Chromium and playwright-core are installed (`.ci/run` installs both).
fn browser_available() -> bool {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/node_modules");
    if !Path::new(CHROMIUM).exists() || !modules.join("playwright-core").exists() {
        syncsets_testkit::unavailable(
            "chromium and playwright-core",
            "apt-get install chromium; npm ci --prefix tests/dashboard",
        );
        return false;
    }
    true
}

/// The dashboard in a real browser: a rollout's counts change live, wave by wave, to
/// converged, a failure
/// is grouped by its message and a failing cluster says why, the fleet map groups, filters,
/// names and opens clusters (by mouse and keyboard), five tabs stay live at once, every
/// page renders (screenshots under
/// target/dashboard-screenshots) and fits a narrow window, and a user bound in team-a sees
/// team-a's sets and clusters only.
#[test]
fn the_dashboard_shows_the_fleet_live_in_a_browser() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_hub, admin, alice) = hub(dir.path());
    for ns in ["team-a", "team-b"] {
        kubectl(&admin, &["create", "namespace", ns]);
    }
    apply(&admin, dir.path(), "rbac.yaml", TEAM_A_READER);
    let admin_arg = admin.to_str().unwrap();
    let mut fleets = Vec::new();
    for (ns, prefix) in [("team-a", "a"), ("team-b", "b")] {
        let fleet = Process::start(
            BIN,
            [
                "fleet-sim",
                "--kubeconfig",
                admin_arg,
                "--clusters",
                "6",
                "--namespace",
                ns,
                "--prefix",
                prefix,
                "--listen",
                "127.0.0.1:0",
            ],
        );
        assert!(
            fleet.first_line.contains("6 registered"),
            "{}",
            fleet.first_line
        );
        fleets.push(fleet);
    }
    apply(
        &admin,
        dir.path(),
        "team-sets.yaml",
        &[
            sync_set("team-a-config", "team-a", "a", "default"),
            sync_set("team-b-config", "team-b", "b", "default"),
            sync_set("broken", "team-a", "a", "missing"),
            // The set the browser watches rolls out in four waves.
            "apiVersion: syncsets.io/v1alpha1\nkind: RolloutPolicy\nmetadata:\n  name: careful\nspec:\n  selector:\n    matchLabels:\n      rollout: careful\n  strategy:\n    type: Progressive\n    progressive:\n      maxConcurrency: 25%\n".into(),
        ]
        .join("---\n"),
    );
    let (_admin_dashboard, admin_url) = dashboard(&admin, &[]);
    let (_alice_dashboard, alice_url) = dashboard(&alice, &["--namespace", "team-a"]);
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");

    let mut browser = Killed(
        Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/check.mjs"))
            .env("ADMIN_URL", &admin_url)
            .env("TEAM_URL", &alice_url)
            .env("SCREENSHOTS", &screenshots)
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut output = String::new();
    let mut lines = BufReader::new(browser.0.stdout.take().unwrap()).lines();
    read_until(&mut lines, &mut output, "READY");
    // The page is open: a set for every simulated cluster, to watch converge.
    apply(
        &admin,
        dir.path(),
        "baseline.yaml",
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: fleet-baseline\n  labels:\n    rollout: careful\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      fleet.syncsets.io/simulated: \"true\"\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: fleet-baseline\n      namespace: default\n    data:\n      owner: platform\n",
    );
    let mut stdin = browser.0.stdin.take().unwrap();
    writeln!(stdin, "GO").unwrap();
    read_until(&mut lines, &mut output, "TABS READY");
    // Five tabs are open: a set they all show.
    apply(
        &admin,
        dir.path(),
        "late.yaml",
        &sync_set("late", "team-a", "a", "default"),
    );
    writeln!(stdin, "GO").unwrap();
    for line in lines {
        output.push_str(&line.unwrap());
        output.push('\n');
    }
    let status = browser.0.wait().unwrap();
    eprintln!("{output}");
    assert!(
        status.success() && output.contains("PASS"),
        "the browser checks failed:\n{output}"
    );
    for page in ["sets", "failures", "cluster", "fleet", "team-a-sets"] {
        assert!(screenshots.join(format!("{page}.png")).exists(), "{page}");
    }
}
