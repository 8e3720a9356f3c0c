//! Clients nobody here wrote, against the real binary: the official Python client (PyPI
//! `kubernetes`) and the official JavaScript client (`@kubernetes/client-node`) over TLS,
//! each through CRUD with typed objects that carry no kind, label selectors, replace
//! conflicts, server-side apply, watch, custom objects and error Status, over HTTP/1.1 and
//! over HTTP/2 (the hub's request log says which each request came over); and schemathesis,
//! generating requests from our own OpenAPI. The scripts live in `tests/clients/`;
//! `.ci/run` installs their pinned packages (Python into `target/clients/venv`, JavaScript
//! into `tests/clients/js/node_modules`). Without them the tests skip, except under CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use syncsets_testkit::Process;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The protocols each client test runs over, as the hub's request log names them.
const PROTOCOLS: [&str; 2] = ["HTTP/1.1", "HTTP/2.0"];

/// Runs `client` (given the admin kubeconfig of a TLS hub, `syncsets serve` without
/// controllers, that logs every request) and returns the protocols the hub's request lines
/// name; panics with its output unless the client prints `ok` and succeeds.
fn run(client: impl FnOnce(&Path) -> Command) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let _hub = Process::serve_logging_to(
        env!("CARGO_BIN_EXE_syncsets"),
        &dir.path().join("data"),
        &["--log-format", "json"],
        &log,
    );
    let mut command = client(&dir.path().join("data/kubeconfig"));
    let out = command
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{command:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    syncsets_testkit::logged_protocols(&log)
}

/// The Python with `module` installed (`SYNCSETS_TEST_PYTHON`, or the virtual environment
/// `.ci/run` makes), or `None` after reporting it unavailable.
fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("SYNCSETS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/clients/venv/bin/python"));
    let ready = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        syncsets_testkit::unavailable(
            module,
            &format!("no `{module}` package for {}", python.display()),
        );
        return None;
    }
    Some(python)
}

/// Over HTTP/1.1 (urllib3's own) and HTTP/2 (urllib3's HTTP/2, package `h2`).
#[test]
fn the_official_python_client() {
    let Some(python) = python_with("kubernetes") else {
        return;
    };
    for protocol in PROTOCOLS {
        let seen = run(|kubeconfig| {
            let mut command = Command::new(&python);
            command
                .arg(root().join("tests/clients/python/client_test.py"))
                .arg(kubeconfig)
                .arg(protocol.trim_end_matches(".0"));
            command
        });
        assert_eq!(
            Vec::from_iter(seen),
            [protocol],
            "every request over {protocol}"
        );
    }
}

/// Over HTTP/1.1 (node-fetch, the client's own) and HTTP/2 (`http2.mjs` carries the
/// client's node-fetch calls, its watch included, on undici).
#[test]
fn the_official_javascript_client() {
    let js = root().join("tests/clients/js");
    if !js.join("node_modules/@kubernetes/client-node").is_dir() {
        syncsets_testkit::unavailable(
            "the JavaScript client",
            "tests/clients/js/node_modules is not installed (npm ci)",
        );
        return;
    }
    for protocol in PROTOCOLS {
        let seen = run(|kubeconfig| {
            let mut command = Command::new("node");
            if protocol == "HTTP/2.0" {
                command.arg("--import").arg(js.join("http2.mjs"));
            }
            command.arg(js.join("client_test.mjs")).arg(kubeconfig);
            command
        });
        assert_eq!(
            Vec::from_iter(seen),
            [protocol],
            "every request over {protocol}"
        );
    }
}

/// schemathesis against our OpenAPI for core/v1 and hive.openshift.io/v1, bounded in time:
/// no server error, every response in the documented schema, content type and status code.
/// Watches are left out (`watch`, `allowWatchBookmarks`): a stream of events is not a
/// document OpenAPI can describe; the watch tests cover them.
#[test]
fn schemathesis_finds_nothing_undocumented() {
    let Some(python) = python_with("schemathesis") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hub = Process::serve_plain(env!("CARGO_BIN_EXE_syncsets"), dir.path(), &[]);
    let url = hub.url();
    for group_version in ["api/v1", "apis/hive.openshift.io/v1"] {
        let fetched = Command::new("curl")
            .args(["-sf", &format!("{url}/openapi/v3/{group_version}")])
            .output()
            .unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
        for item in doc["paths"].as_object_mut().unwrap().values_mut() {
            for op in item.as_object_mut().unwrap().values_mut() {
                if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                    params.retain(|p| p["name"] != "watch" && p["name"] != "allowWatchBookmarks");
                }
            }
        }
        let schema = dir.path().join("openapi.json");
        std::fs::write(&schema, doc.to_string()).unwrap();
        let out = Command::new(python.with_file_name("schemathesis"))
            .arg("run")
            .arg(&schema)
            .args([
                "--url",
                &url,
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "10",
                "--max-time",
                "45",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--seed",
                "1",
            ])
            .env("NO_COLOR", "1")
            // Its example database and crash cache go to the test's own directory.
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "schemathesis on {group_version}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
