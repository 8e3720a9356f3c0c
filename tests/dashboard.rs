//! `syncsets dashboard`: who gets in (the browser that opened the printed address, on the
//! right host, reading only), that it reads with the kubeconfig's own permissions, and —
//! in Debian's Chromium driven by Playwright (tests/dashboard/check.mjs) — every page on a
//! hub with a simulated fleet, live, for the admin and for a user bound in one namespace.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Lets alice read team-a's clusters, their ClusterSyncs, SyncSets and Events.
const TEAM_A_READER: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: fleet-reader\n  namespace: team-a\nrules:\n- apiGroups: [hive.openshift.io]\n  resources: [clusterdeployments, syncsets]\n  verbs: [get, list, watch]\n- apiGroups: [hiveinternal.openshift.io]\n  resources: [clustersyncs]\n  verbs: [get, list, watch]\n- apiGroups: [\"\"]\n  resources: [events]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: alice-fleet-reader\n  namespace: team-a\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: fleet-reader\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: alice\n";

/// Only the browser that opened the printed address gets in, only on the dashboard's own
/// host names, and only to read; what it reads, it reads as the kubeconfig's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lets_in_only_its_browser_and_reads_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, admin, alice) = hub(dir.path());
    kubectl(&admin, &["create", "namespace", "team-a"]);
    apply(&admin, dir.path(), "rbac.yaml", TEAM_A_READER);
    let (_admin_dashboard, admin_url) = dashboard(&admin, &[]);
    let (_alice_dashboard, alice_url) = dashboard(&alice, &["--namespace", "team-a"]);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = admin_url.split("/?").next().unwrap().to_string();
    let sss = "/apis/hive.openshift.io/v1/selectorsyncsets";
    // Nobody without the token or its cookie: not the page, not the hub.
    for path in ["/", "/app.js", "/config.json", sss] {
        let r = http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(!r.text().await.unwrap().contains("items"), "{path}");
    }
    let r = http
        .get(format!("{origin}/?token=0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong token");
    // The token is exchanged for a cookie, sent back to the page only.
    let r = http.get(&admin_url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let get = |url: String| http.get(url).header("cookie", cookie.clone()).send();
    let page = get(format!("{origin}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/app.js"));
    let list = get(format!("{origin}{sss}")).await.unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(
        list.json::<serde_json::Value>().await.unwrap()["kind"],
        "SelectorSyncSetList"
    );
    // A page of another site whose name resolves to 127.0.0.1 names its own host.
    let rebound = http
        .get(format!("{origin}{sss}"))
        .header("host", "evil.example:80")
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    // Only reads reach the hub.
    let write = http
        .post(format!("{origin}/api/v1/namespaces"))
        .header("cookie", cookie.clone())
        .header("content-type", "application/json")
        .body(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"via-dashboard"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 405);
    assert_eq!(write.headers()["allow"], "GET");
    let namespaces = kubectl(&admin, &["get", "namespaces", "-o", "name"]);
    assert!(!namespaces.contains("via-dashboard"), "{namespaces}");
    // Another dashboard's cookie does not open this one.
    let r = http
        .get(format!("{}/", alice_url.split("/?").next().unwrap()))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Alice's dashboard reads as alice: her namespace, not what she may not list.
    let r = http.get(&alice_url).send().await.unwrap();
    let alice_cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let alice_origin = alice_url.split("/?").next().unwrap();
    let as_alice = |path: &str| {
        http.get(format!("{alice_origin}{path}"))
            .header("cookie", alice_cookie.clone())
            .send()
    };
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
/// names and opens clusters (by mouse and keyboard), every page renders (screenshots under
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

    let mut browser = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/check.mjs"))
        .env("ADMIN_URL", &admin_url)
        .env("TEAM_URL", &alice_url)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = String::new();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let started = Instant::now();
    for line in lines.by_ref() {
        let line = line.unwrap();
        output.push_str(&line);
        output.push('\n');
        if line == "READY" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the browser did not open the dashboard: {output}"
        );
    }
    // The page is open: a set for every simulated cluster, to watch converge.
    apply(
        &admin,
        dir.path(),
        "baseline.yaml",
        "apiVersion: hive.openshift.io/v1\nkind: SelectorSyncSet\nmetadata:\n  name: fleet-baseline\n  labels:\n    rollout: careful\nspec:\n  clusterDeploymentSelector:\n    matchLabels:\n      fleet.syncsets.io/simulated: \"true\"\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: fleet-baseline\n      namespace: default\n    data:\n      owner: platform\n",
    );
    let mut stdin = browser.stdin.take().unwrap();
    writeln!(stdin, "GO").unwrap();
    for line in lines {
        output.push_str(&line.unwrap());
        output.push('\n');
    }
    let status = browser.wait().unwrap();
    eprintln!("{output}");
    assert!(
        status.success() && output.contains("PASS"),
        "the browser checks failed:\n{output}"
    );
    for page in ["sets", "failures", "cluster", "fleet", "team-a-sets"] {
        assert!(screenshots.join(format!("{page}.png")).exists(), "{page}");
    }
}
