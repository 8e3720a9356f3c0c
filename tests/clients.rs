//! Clients nobody here wrote, against the real binary over TLS: the official Python client
//! (PyPI `kubernetes`) and the official JavaScript client (`@kubernetes/client-node`), each
//! through CRUD with typed objects that carry no kind, label selectors, replace conflicts,
//! server-side apply, watch, custom objects and error Status. The scripts live in
//! `tests/clients/`; `.ci/run` installs their pinned packages (Python into
//! `target/clients/venv`, JavaScript into `tests/clients/js/node_modules`). Without them the
//! tests skip, except under CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use syncsets_testkit::Process;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A TLS hub (`syncsets serve`, no controllers) and its admin kubeconfig.
fn hub(dir: &Path) -> (Process, PathBuf) {
    let process = Process::start(
        env!("CARGO_BIN_EXE_syncsets"),
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--controllers",
            "false",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
    );
    (process, dir.join("kubeconfig"))
}

/// Runs a client script; panics with its output unless it prints `ok` and succeeds.
fn run(program: &Path, script: &Path, kubeconfig: &Path) {
    let out = Command::new(program)
        .arg(script)
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{} {}:\n{stdout}\n{}",
        program.display(),
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_official_python_client() {
    let python = std::env::var_os("SYNCSETS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/clients/venv/bin/python"));
    let ready = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        syncsets_testkit::unavailable(
            "the Python client",
            &format!("no `kubernetes` package for {}", python.display()),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_hub, kubeconfig) = hub(dir.path());
    run(
        &python,
        &root().join("tests/clients/python/client_test.py"),
        &kubeconfig,
    );
}

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
    let dir = tempfile::tempdir().unwrap();
    let (_hub, kubeconfig) = hub(dir.path());
    run(Path::new("node"), &js.join("client_test.mjs"), &kubeconfig);
}
