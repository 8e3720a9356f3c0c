//! Compatibility with the real kubectl: every installed version (1.27 … 1.33) against a hub
//! as users run it (`syncsets serve` over TLS, its admin kubeconfig, a temporary SQLite
//! store), over HTTP/2 (kubectl's choice over TLS) and, with the newest kubectl, over
//! HTTP/1.1 too: every test runs over both, and the hub's request log shows which.

use std::path::{Path, PathBuf};
use std::process::Command;

use syncsets_testkit::Process;

/// A kubectl binary and the protocol it speaks.
#[derive(Clone)]
struct Kubectl {
    bin: PathBuf,
    /// HTTP/1.1 (client-go's HTTP/2 turned off: `DISABLE_HTTP2`), else HTTP/2.
    http1: bool,
}

impl Kubectl {
    /// The protocol as the hub's request log names it.
    fn protocol(&self) -> &'static str {
        if self.http1 { "HTTP/1.1" } else { "HTTP/2.0" }
    }

    /// A command running this kubectl with `kubeconfig`.
    fn command(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG");
        if self.http1 {
            cmd.env("DISABLE_HTTP2", "1");
        }
        cmd
    }

    /// `/usr/bin/kubectl over HTTP/2`, for messages.
    fn name(&self) -> String {
        format!("{} over {}", self.bin.display(), self.protocol())
    }
}

/// A hub and its admin kubeconfig. Dropped at the end of a test that did not fail, it
/// asserts that every request it logged came over its kubectl's protocol.
struct Server {
    _process: Process,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    protocol: &'static str,
}

impl Server {
    /// A hub for `k` to use.
    fn start(k: &Kubectl) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let process = Process::serve_logging_to(
            env!("CARGO_BIN_EXE_syncsets"),
            &data,
            &["--log-format", "json"],
            &dir.path().join("hub.log"),
        );
        Self {
            _process: process,
            kubeconfig: data.join("kubeconfig"),
            dir,
            protocol: k.protocol(),
        }
    }

    /// A command running `k` against this hub.
    fn command(&self, k: &Kubectl) -> Command {
        let mut cmd = k.command(&self.kubeconfig);
        let cache = self.dir.path().join(format!(
            "cache-{}",
            k.bin.file_name().unwrap().to_string_lossy()
        ));
        cmd.arg("--cache-dir").arg(cache);
        cmd
    }

    /// Runs kubectl (blocking the test thread is fine: the hub is another process).
    fn kubectl(&self, k: &Kubectl, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = self.command(k);
        cmd.args(args);
        let out = if let Some(input) = stdin {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        } else {
            cmd.output()
                .unwrap_or_else(|e| panic!("running {}: {e}", k.name()))
        };
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl and requires success; returns stdout.
    #[track_caller]
    fn ok(&self, k: &Kubectl, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(k, args, None);
        assert!(
            ok,
            "{} {args:?} failed:\nstdout: {out}\nstderr: {err}",
            k.name()
        );
        out
    }

    /// `kubectl get <what> -o jsonpath=<path>`, required to succeed.
    #[track_caller]
    fn jsonpath(&self, k: &Kubectl, what: &str, path: &str) -> String {
        self.ok(k, &["get", what, "-o", &format!("jsonpath={path}")])
    }

    /// Runs kubectl with stdin and requires success.
    #[track_caller]
    fn ok_stdin(&self, k: &Kubectl, args: &[&str], input: &str) -> String {
        let (ok, out, err) = self.kubectl(k, args, Some(input));
        assert!(
            ok,
            "{} {args:?} failed:\nstdout: {out}\nstderr: {err}",
            k.name()
        );
        out
    }

    /// Runs kubectl and requires failure; returns stderr.
    #[track_caller]
    fn fails(&self, k: &Kubectl, args: &[&str], input: Option<&str>) -> String {
        let (ok, out, err) = self.kubectl(k, args, input);
        assert!(!ok, "{} {args:?} should fail:\nstdout: {out}", k.name());
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        assert_eq!(
            syncsets_testkit::logged_protocols(&self.dir.path().join("hub.log")),
            [self.protocol],
            "every request over {}",
            self.protocol
        );
    }
}

/// Every installed kubectl (`kubectl.1.NN` beside the cloud SDK, then `/usr/bin/kubectl`)
/// over HTTP/2, then the newest over HTTP/1.1.
fn kubectls() -> Vec<Kubectl> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/google-cloud-sdk/bin")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("kubectl.1."))
                })
                .collect()
        })
        .unwrap_or_default();
    bins.sort();
    let default = PathBuf::from("/usr/bin/kubectl");
    if default.exists() {
        bins.push(default);
    }
    assert!(
        !bins.is_empty(),
        "kubectl must be installed (see the README)"
    );
    let mut all: Vec<Kubectl> = bins
        .into_iter()
        .map(|bin| Kubectl { bin, http1: false })
        .collect();
    let newest = all.last().unwrap().clone();
    all.push(Kubectl {
        http1: true,
        ..newest
    });
    all
}

/// The newest kubectl, over HTTP/2 and over HTTP/1.1.
fn newest() -> Vec<Kubectl> {
    let all = kubectls();
    all[all.len() - 2..].to_vec()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/hive/{name}", env!("CARGO_MANIFEST_DIR"))
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels:\n    app: web\ndata:\n  a: \"1\"\n";

/// kubectl's generators (`kubectl create deployment`, `job`, `cronjob`, `service`, …, `kubectl
/// run`, `kubectl expose`) send protobuf from kubectl 1.32 on: every object arrives whole,
/// pointer fields that are zero kept (`--replicas=0`), with every kubectl.
#[test]
fn kubectl_generators_create_workloads_with_every_kubectl() {
    for k in &kubectls() {
        let s = Server::start(k);
        let v = k.name();
        s.ok(
            k,
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx:1.27",
                "--port=8080",
                "--replicas=0",
            ],
        );
        assert_eq!(s.jsonpath(k, "deploy/web", "{.spec.replicas}"), "0", "{v}");
        assert_eq!(
            s.jsonpath(k, "deploy/web",
                "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.template.spec.containers[0].ports[0].protocol}"
            ),
            "nginx:1.27 8080 TCP",
            "{v}"
        );
        assert_eq!(
            s.jsonpath(
                k,
                "deploy/web",
                "{.spec.selector.matchLabels.app} {.spec.strategy.type}"
            ),
            "web RollingUpdate",
            "{v}"
        );
        s.ok(
            k,
            &[
                "expose",
                "deployment",
                "web",
                "--port=80",
                "--target-port=8080",
            ],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "svc/web",
                "{.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app}"
            ),
            "80 8080 web",
            "{v}"
        );
        s.ok(
            k,
            &["create", "service", "nodeport", "edge", "--tcp=443:8443"],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "svc/edge",
                "{.spec.type} {.spec.ports[0].name} {.spec.ports[0].targetPort}"
            ),
            "NodePort 443-8443 8443",
            "{v}"
        );
        s.ok(
            k,
            &["create", "job", "once", "--image=busybox", "--", "date"],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "job/once",
                "{.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].command[0]}"
            ),
            "Never date",
            "{v}"
        );
        s.ok(
            k,
            &[
                "create",
                "cronjob",
                "nightly",
                "--image=busybox",
                "--schedule=0 3 * * *",
                "--",
                "date",
            ],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "cronjob/nightly",
                "{.spec.schedule} {.spec.jobTemplate.spec.template.spec.restartPolicy}"
            ),
            "0 3 * * * OnFailure",
            "{v}"
        );
        s.ok(k, &["create", "serviceaccount", "robot"]);
        s.ok(
            k,
            &[
                "create",
                "quota",
                "compute",
                "--hard=cpu=4,memory=8Gi,pods=10",
            ],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "quota/compute",
                "{.spec.hard.cpu} {.spec.hard.memory} {.spec.hard.pods}"
            ),
            "4 8Gi 10",
            "{v}"
        );
        s.ok(
            k,
            &[
                "create",
                "priorityclass",
                "critical",
                "--value=1000000",
                "--description=platform",
            ],
        );
        assert_eq!(
            s.jsonpath(k, "pc/critical", "{.value} {.description}"),
            "1000000 platform",
            "{v}"
        );
        // A zero Go's JSON keeps (no omitempty): the value of a PriorityClass.
        s.ok(k, &["create", "priorityclass", "low"]);
        assert_eq!(s.jsonpath(k, "pc/low", "{.value}"), "0", "{v}");
        s.ok(
            k,
            &[
                "create",
                "pdb",
                "web",
                "--selector=app=web",
                "--min-available=0",
            ],
        );
        assert_eq!(s.jsonpath(k, "pdb/web", "{.spec.minAvailable}"), "0", "{v}");
        // Tables print what Go's printers print for absent fields: 0, N/A.
        let row = |what: &str| -> Vec<String> {
            s.ok(k, &["get", what, "--no-headers"])
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        assert_eq!(row("deploy/web")[..4], ["web", "0/0", "0", "0"], "{v}");
        assert_eq!(row("pdb/web")[..4], ["web", "0", "N/A", "0"], "{v}");
        s.ok(
            k,
            &[
                "create",
                "ingress",
                "web",
                "--rule=web.example.com/*=web:80",
            ],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "ingress/web",
                "{.spec.rules[0].host} {.spec.rules[0].http.paths[0].backend.service.port.number}"
            ),
            "web.example.com 80",
            "{v}"
        );
        s.ok(
            k,
            &[
                "run",
                "tool",
                "--image=busybox",
                "--restart=Never",
                "--labels=app=tool",
                "--",
                "sleep",
                "3600",
            ],
        );
        assert_eq!(
            s.jsonpath(
                k,
                "pod/tool",
                "{.spec.containers[0].args[1]} {.metadata.labels.app}"
            ),
            "3600 tool",
            "{v}"
        );
        s.ok(
            k,
            &[
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=token=s3cr3t",
            ],
        );
        assert_eq!(
            s.jsonpath(k, "secret/creds", "{.data.token}"),
            "czNjcjN0",
            "{v}"
        );
    }
}

/// The everyday command set, with every installed kubectl, each against its own server.
#[test]
fn everyday_commands_work_with_every_kubectl() {
    for k in &kubectls() {
        let s = Server::start(k);
        let v = k.name();
        assert!(s.ok(k, &["get", "ns"]).contains("default"), "{v}");
        s.ok(k, &["create", "namespace", "team-a"]);
        s.ok_stdin(k, &["create", "-f", "-"], CM);
        let table = s.ok(k, &["get", "cm", "-o", "wide", "--show-labels"]);
        assert!(
            table.contains("DATA") && table.contains("app=web"),
            "{v}: {table}"
        );
        assert!(
            s.ok(k, &["get", "cm", "-l", "app=web", "-o", "name"])
                .contains("configmap/demo"),
            "{v}"
        );
        assert_eq!(
            s.ok(k, &["get", "cm", "demo", "-o", "jsonpath={.data.a}"]),
            "1",
            "{v}"
        );
        assert!(
            s.ok(k, &["get", "cm", "demo", "-o", "yaml"])
                .contains("resourceVersion"),
            "{v}"
        );
        assert!(
            s.ok(k, &["get", "cm", "demo", "-o", "json"])
                .contains("\"uid\""),
            "{v}"
        );
        s.ok_stdin(k, &["apply", "-f", "-"], &CM.replace("\"1\"", "\"2\""));
        s.ok_stdin(
            k,
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &CM.replace("\"1\"", "\"3\""),
        );
        s.ok(k, &["label", "cm", "demo", "tier=x"]);
        s.ok(k, &["annotate", "cm", "demo", "note=hi"]);
        s.ok(k, &["patch", "cm", "demo", "-p", r#"{"data":{"b":"2"}}"#]);
        s.ok(
            k,
            &[
                "patch",
                "cm",
                "demo",
                "--type",
                "merge",
                "-p",
                r#"{"data":{"c":"3"}}"#,
            ],
        );
        s.ok(
            k,
            &[
                "patch",
                "cm",
                "demo",
                "--type",
                "json",
                "-p",
                r#"[{"op":"add","path":"/data/d","value":"4"}]"#,
            ],
        );
        assert_eq!(
            s.ok(k, &["get", "cm", "demo", "-o", "jsonpath={.data}"]),
            r#"{"a":"3","b":"2","c":"3","d":"4"}"#,
            "{v}"
        );
        assert!(
            s.ok(k, &["describe", "cm", "demo"]).contains("tier=x"),
            "{v}"
        );
        assert!(
            s.ok(k, &["explain", "configmap.data"])
                .contains("map[string]string"),
            "{v}"
        );
        assert!(
            s.ok(k, &["explain", "syncset.spec.resourceApplyMode"])
                .contains("Upsert"),
            "{v}"
        );
        let resources = s.ok(k, &["api-resources"]);
        for short in ["ss ", "sss ", "cd ", "csync "] {
            assert!(
                resources.contains(short),
                "{v}: {short} missing from\n{resources}"
            );
        }
        assert!(
            s.ok(k, &["api-versions"]).contains("hive.openshift.io/v1"),
            "{v}"
        );
        // diff exits 1 when there are differences.
        let (_, diff, _) = s.kubectl(k, &["diff", "-f", "-"], Some(&CM.replace("\"1\"", "\"9\"")));
        assert!(diff.contains("+  a: \"9\""), "{v}: {diff}");
        s.ok_stdin(k, &["replace", "-f", "-"], &CM.replace("\"1\"", "\"5\""));
        s.ok(
            k,
            &[
                "create",
                "secret",
                "generic",
                "creds",
                "--from-literal=token=abc",
            ],
        );
        assert_eq!(
            s.ok(
                k,
                &["get", "secret", "creds", "-o", "jsonpath={.data.token}"]
            ),
            "YWJj",
            "{v}"
        );
        let err = s.fails(k, &["get", "cm", "nope"], None);
        assert!(
            err.contains("Error from server (NotFound): configmaps \"nope\" not found"),
            "{v}: {err}"
        );
        let err = s.fails(
            k,
            &["create", "-f", "-"],
            Some(&CM.replace("name: demo", "name: Demo")),
        );
        assert!(err.contains("is invalid"), "{v}: {err}");
        let err = s.fails(
            k,
            &["apply", "-f", "-"],
            Some(&CM.replace("\ndata:", "\nbogus: 1\ndata:")),
        );
        assert!(err.contains("unknown field \"bogus\""), "{v}: {err}");
        s.ok(k, &["delete", "cm", "-l", "app=web"]);
        assert!(s.ok(k, &["get", "cm", "-o", "name"]).is_empty(), "{v}");
        s.ok(k, &["delete", "namespace", "team-a"]);
    }
}

/// `kubectl delete ns --wait` returns when the namespace is gone: while a finalizer holds
/// an object inside, the namespace is Terminating, refuses new objects and kubectl waits.
#[test]
fn deleting_a_namespace_waits_for_its_contents() {
    for k in &newest() {
        let s = Server::start(k);
        let v = k.name();
        s.ok(k, &["create", "namespace", "team-a"]);
        s.ok_stdin(
            k,
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: team-a\n  finalizers: [example.com/hold]\n",
        );
        let mut delete = s
            .command(k)
            .args(["delete", "namespace", "team-a", "--wait", "--timeout=60s"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert!(
            delete.try_wait().unwrap().is_none(),
            "{v}: kubectl returned while the namespace still exists"
        );
        assert_eq!(
            s.ok(
                k,
                &[
                    "get",
                    "namespace",
                    "team-a",
                    "-o",
                    "jsonpath={.status.phase}"
                ]
            ),
            "Terminating",
            "{v}"
        );
        let err = s.fails(k, &["create", "cm", "late", "-n", "team-a"], None);
        assert!(err.contains("is being terminated"), "{v}: {err}");
        s.ok(
            k,
            &[
                "patch",
                "cm",
                "held",
                "-n",
                "team-a",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
        );
        let out = delete.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{v}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = s.fails(k, &["get", "namespace", "team-a"], None);
        assert!(err.contains("not found"), "{v}: {err}");
    }
}

/// Hive's documented manifests apply unchanged, with the oldest and newest kubectl.
#[test]
fn hive_documented_yaml_applies_unchanged() {
    let all = kubectls();
    // The oldest over HTTP/2, the newest over HTTP/1.1.
    for k in [all.first().unwrap(), all.last().unwrap()] {
        let s = Server::start(k);
        s.ok(k, &["create", "namespace", "hive"]);
        s.ok(k, &["create", "namespace", "mynamespace"]);
        for f in [
            "syncset-mygroup-resources-patches-secretmappings.yaml",
            "syncset-sise-deploy-strategic-patch.yaml",
            "selectorsyncset-mygroup.yaml",
            "clusterdeployment-adoption-gcp.yaml",
            "clusterdeployment-aws-provisioning.yaml",
            "config-samples-hive_v1_clusterdeployment.yaml",
            "secret-pull-secret.yaml",
            "secret-aws-creds.yaml",
            "secret-gcp-creds.yaml",
        ] {
            s.ok(k, &["apply", "-f", &fixture(f)]);
        }
        // The scale-test template's SelectorSyncSet (resourceApplyMode: Sync), instantiated.
        let template = std::fs::read_to_string(fixture(
            "template-selectorsyncset-scaletest-resourceapplymode-sync.yaml",
        ))
        .unwrap();
        let objects = &template[template.find("objects:").unwrap() + "objects:\n".len()..];
        let sss = objects
            .trim_start_matches("- ")
            .replace("\n  ", "\n")
            .replace("${RESOURCE_INDEX}", "3");
        s.ok_stdin(k, &["apply", "-f", "-"], &sss);
        let all = s.ok(k, &["get", "ss,sss,cd", "-A"]);
        for name in [
            "mygroup",
            "sise-deploy-syncset",
            "scaletest-3-configmap",
            "my-gcp-cluster",
            "foo",
        ] {
            assert!(all.contains(name), "{name} missing from\n{all}");
        }
        let cd = s.ok(k, &["get", "cd", "my-gcp-cluster", "-n", "hive", "-o", "jsonpath={.spec.platform.gcp.region} {.spec.installed} {.spec.clusterMetadata.adminKubeconfigSecretRef.name}"]);
        assert_eq!(cd, "us-east1 true my-gcp-cluster-admin-kubeconfig");
        let sss = s.ok(
            k,
            &[
                "get",
                "sss",
                "scaletest-3-configmap",
                "-o",
                "jsonpath={.spec.resourceApplyMode} {.spec.resources[9].metadata.name}",
            ],
        );
        assert_eq!(sss, "Sync scaletest-3-configmap-9");
        assert!(
            s.ok(k, &["describe", "ss", "mygroup"])
                .contains("Secret Mappings")
        );
        // Admission rejects what Hive's webhook rejects.
        let bad = "apiVersion: hive.openshift.io/v1\nkind: SyncSet\nmetadata: {name: bad}\nspec:\n  clusterDeploymentRefs: [{name: c}]\n  resourceApplyMode: Replace\n  patches: [{apiVersion: v1, kind: ConfigMap, name: x, patch: '{}', patchType: yaml}]\n";
        let err = s.fails(k, &["apply", "-f", "-"], Some(bad));
        assert!(
            err.contains("spec.resourceApplyMode: Unsupported value: \"Replace\""),
            "{err}"
        );
        assert!(
            err.contains("spec.patches[0].patchType: Unsupported value: \"yaml\""),
            "{err}"
        );
    }
}

/// CRDs registered at runtime are served with validation, defaults and printer columns.
#[test]
fn custom_resources_with_kubectl() {
    for k in &newest() {
        let s = Server::start(k);
        s.ok_stdin(
            k,
            &["apply", "-f", "-"],
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, kind: Widget, shortNames: [wd]}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    additionalPrinterColumns:\n    - {name: Size, type: integer, jsonPath: .spec.size}\n    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}\n    subresources:\n      status: {}\n      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size, labelSelectorPath: .status.selector}\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              size: {type: integer, minimum: 1}\n              color: {type: string, default: red}\n          status:\n            type: object\n            properties:\n              size: {type: integer}\n              selector: {type: string}\n",
        );
        s.ok_stdin(
            k,
            &["apply", "-f", "-"],
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
        );
        let wide = s.ok(k, &["get", "wd", "-o", "wide"]);
        assert!(
            wide.contains("SIZE") && wide.contains("COLOR") && wide.contains("red"),
            "{wide}"
        );
        assert!(
            !s.ok(k, &["get", "wd"]).contains("COLOR"),
            "priority-1 columns only with -o wide"
        );
        assert!(
            s.ok(k, &["explain", "widget.spec.size"])
                .contains("integer")
        );
        let err = s.fails(
            k,
            &["apply", "-f", "-"],
            Some(
                "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n",
            ),
        );
        assert!(
            err.contains("should be greater than or equal to 1"),
            "{err}"
        );
        // The CRD's scale subresource: its own replica paths, and the CR's validation.
        s.ok(k, &["scale", "widget", "w1", "--replicas=4"]);
        assert_eq!(
            s.jsonpath(k, "widget/w1", "{.spec.size} {.spec.color}"),
            "4 red"
        );
        let scale = s.ok(
            k,
            &[
                "get",
                "widget",
                "w1",
                "--subresource=scale",
                "-o",
                "jsonpath={.kind} {.spec.replicas} {.status.replicas}",
            ],
        );
        assert_eq!(scale, "Scale 4 0");
        let err = s.fails(k, &["scale", "widget", "w1", "--replicas=0"], None);
        assert!(
            err.contains("should be greater than or equal to 1"),
            "{err}"
        );
        s.ok(k, &["delete", "crd", "widgets.example.com"]);
        let err = s.fails(k, &["get", "widgets.example.com"], None);
        assert!(
            err.contains("the server doesn't have a resource type") || err.contains("NotFound"),
            "{err}"
        );
    }
}

/// A monitoring agent's Deployment, as a platform team ships it.
const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: agent:1
        ports:
        - containerPort: 9100
        env:
        - {name: A, value: \"1\"}
      - name: sidecar
        image: sidecar:1
      tolerations:
      - operator: Exists
";

/// A Deployment with every kubectl: apply, a strategic merge patch of one container's image
/// (containers merge by name), `kubectl diff` (the patch shows, then nothing once applied
/// again), server-side apply (ports keyed by port and protocol, which defaults to TCP), the
/// table's READY column, `kubectl scale` and `kubectl explain`.
#[test]
fn a_deployment_applies_patches_and_diffs_as_on_a_cluster() {
    for k in &kubectls() {
        let s = Server::start(k);
        s.ok_stdin(k, &["apply", "-f", "-"], DEPLOYMENT);
        let table = s.ok(k, &["get", "deploy", "agent"]);
        assert!(
            table.contains("READY") && table.contains("0/2"),
            "{}: {table}",
            k.name()
        );
        s.ok(
            k,
            &[
                "patch",
                "deploy",
                "agent",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"agent:2"}]}}}}"#,
            ],
        );
        assert_eq!(
            s.jsonpath(k, "deploy/agent", "{range .spec.template.spec.containers[*]}{.name}={.image},{.env[0].name},{.ports[0].protocol} {end}"),
            "agent=agent:2,A,TCP sidecar=sidecar:1,, ",
            "{}",
            k.name()
        );
        let (same, diff, err) = s.kubectl(k, &["diff", "-f", "-"], Some(DEPLOYMENT));
        assert!(
            !same
                && diff.contains("-        image: agent:2")
                && diff.contains("+        image: agent:1"),
            "{}: {diff}{err}",
            k.name()
        );
        s.ok_stdin(k, &["apply", "-f", "-"], DEPLOYMENT);
        let (same, diff, err) = s.kubectl(k, &["diff", "-f", "-"], Some(DEPLOYMENT));
        assert!(same && diff.is_empty(), "{}: {diff}{err}", k.name());
        // A port's protocol is a key of its list: applied without it, it is TCP.
        s.ok_stdin(
            k,
            &["apply", "--server-side", "-f", "-"],
            &DEPLOYMENT.replace("name: agent\n  namespace", "name: applied\n  namespace"),
        );
        assert_eq!(
            s.jsonpath(
                k,
                "deploy/applied",
                "{.spec.template.spec.containers[0].ports[*].protocol}"
            ),
            "TCP",
            "{}",
            k.name()
        );
        // Containers are keyed by name for apply too: another manager's apply of one
        // container leaves the other.
        s.ok_stdin(
            k,
            &["apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-"],
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: applied, namespace: default}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: agent, image: agent:3}\n",
        );
        assert_eq!(
            s.jsonpath(
                k,
                "deploy/applied",
                "{range .spec.template.spec.containers[*]}{.name}={.image} {end}"
            ),
            "agent=agent:3 sidecar=sidecar:1 ",
            "{}",
            k.name()
        );
        // The scale subresource: kubectl scale changes the replicas and nothing else.
        s.ok(k, &["scale", "deploy", "agent", "--replicas=5"]);
        assert_eq!(
            s.jsonpath(
                k,
                "deploy/agent",
                "{.spec.replicas} {.spec.template.spec.containers[0].image}"
            ),
            "5 agent:1",
            "{}",
            k.name()
        );
        assert_eq!(
            s.ok(
                k,
                &[
                    "get",
                    "deploy",
                    "agent",
                    "--subresource=scale",
                    "-o",
                    "jsonpath={.kind} {.spec.replicas} {.status.selector}"
                ]
            ),
            "Scale 5 app=agent",
            "{}",
            k.name()
        );
        let explained = s.ok(
            k,
            &["explain", "deploy.spec.template.spec.containers.ports"],
        );
        assert!(
            explained.contains("containerPort"),
            "{}: {explained}",
            k.name()
        );
    }
}

/// Server-side apply conflicts reach the user as kubectl presents them.
#[test]
fn server_side_apply_conflicts_with_kubectl() {
    for k in &newest() {
        let s = Server::start(k);
        s.ok_stdin(k, &["apply", "--server-side", "-f", "-"], CM);
        s.ok_stdin(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "other",
                "-f",
                "-",
            ],
            &CM.replace("\"1\"", "\"1\"\n  b: \"2\""),
        );
        let err = s.fails(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "other",
                "-f",
                "-",
            ],
            Some(&CM.replace("\"1\"", "\"7\"")),
        );
        assert!(err.contains("conflict with \"kubectl\": .data.a"), "{err}");
        s.ok_stdin(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &CM.replace("\"1\"", "\"7\""),
        );
        assert_eq!(
            s.ok(k, &["get", "cm", "demo", "-o", "jsonpath={.data.a}"]),
            "7"
        );
    }
}

/// `kubectl get -w` (table, YAML, with events and a selector) and `kubectl wait`, with every
/// installed kubectl.
#[test]
fn watches_work_with_every_kubectl() {
    for k in &kubectls() {
        let s = Server::start(k);
        let v = k.name();
        s.ok_stdin(k, &["create", "-f", "-"], CM);
        let watch = |args: &[&str], out: &str| {
            let file = std::fs::File::create(s.dir.path().join(out)).unwrap();
            s.command(k)
                .args(args)
                .stdout(file)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut children = vec![
            watch(&["get", "cm", "-w"], "table.txt"),
            watch(&["get", "cm", "-w", "-o", "yaml"], "yaml.txt"),
            watch(
                &["get", "cm", "-w", "--output-watch-events", "-l", "app=web"],
                "events.txt",
            ),
        ];
        // `kubectl wait` watches one object until a condition holds.
        let waiter = s
            .command(k)
            .args([
                "wait",
                "cm/demo",
                "--for=jsonpath={.data.a}=2",
                "--timeout=30s",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        s.ok(k, &["create", "cm", "second", "--from-literal=x=1"]);
        s.ok(k, &["patch", "cm", "demo", "-p", r#"{"data":{"a":"2"}}"#]);
        s.ok(k, &["label", "cm", "demo", "app=db", "--overwrite"]);
        s.ok(k, &["delete", "cm", "second"]);
        let waited = waiter.wait_with_output().unwrap();
        assert!(
            waited.status.success(),
            "{v}: kubectl wait: {}",
            String::from_utf8_lossy(&waited.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(1500));
        for child in &mut children {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let read = |f: &str| std::fs::read_to_string(s.dir.path().join(f)).unwrap();
        let table = read("table.txt");
        let rows: Vec<&str> = table.lines().collect();
        assert!(
            rows[0].starts_with("NAME") && rows[0].contains("DATA"),
            "{v}: {table}"
        );
        assert_eq!(
            rows.iter().filter(|l| l.starts_with("NAME")).count(),
            1,
            "{v}: one header\n{table}"
        );
        let names: Vec<&str> = rows[1..]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            names,
            ["demo", "second", "demo", "demo", "second"],
            "{v}: {table}"
        );
        let yaml = read("yaml.txt");
        assert_eq!(yaml.matches("kind: ConfigMap").count(), 5, "{v}: {yaml}");
        assert!(yaml.contains("a: \"2\""), "{v}: {yaml}");
        let events = read("events.txt");
        let kinds: Vec<&str> = events
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        // demo as listed, its patch, then it leaves the selector.
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{v}: {events}");
    }
}
