//! The image and the manifests (`Dockerfile`, `deploy/`), checked by their own scripts with
//! the binary this test suite built: the Dockerfile's build and run steps run without a
//! container engine — as a non-root user and under an arbitrary UID, on a read-only root
//! with only the volume writable, probed on `/livez` and `/readyz`, stopped with SIGTERM —
//! and every overlay renders, validates against Kubernetes 1.33 (and the vendored CRD
//! schemas), meets the restricted pod profile and passes checkov (but for the findings
//! `deploy/test/checkov-accepted.txt` accepts, each with its reason).

use std::path::Path;
use std::process::Command;

/// The `syncsets` binary.
const BIN: &str = env!("CARGO_BIN_EXE_syncsets");

/// Runs a script of `deploy/test` with `args`; it must pass. A script that cannot run here
/// says `SKIPPED` (a failure under CI, as every missing backend is).
fn script(name: &str, args: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("deploy/test").join(name))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(line) = text.lines().find(|l| l.contains("SKIPPED")) {
        syncsets_testkit::unavailable(name, line);
        return;
    }
    assert!(out.status.success(), "{name} failed:\n{text}");
}

#[test]
fn the_image_builds_and_runs_as_its_dockerfile_says() {
    script("image-steps.sh", &[BIN]);
}

#[test]
fn every_manifest_renders_validates_and_passes_checkov() {
    script("check-manifests.sh", &["--binary", BIN]);
}
