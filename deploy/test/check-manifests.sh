#!/usr/bin/env bash
# Checks the image and deployment files statically, the way CI does:
#
#   deploy/test/check-manifests.sh [--binary PATH/TO/syncsets]
#
#  1. renders every overlay (deploy/overlays/*) with `kubectl kustomize` (kubectl 1.33's
#     kustomize when installed: kubectl.1.33), and deploy/secrets.sh --print's Secrets;
#  2. validate.py: every object against the Kubernetes 1.33 schemas (kubernetes-validate,
#     strict) or, for ServiceMonitor, PrometheusRule, RabbitmqCluster and Route, against
#     the CRD schemas vendored in deploy/test/crd-schemas; restricted pod security, probes,
#     resources, grace periods; references between objects; and, with a syncsets binary
#     (--binary, else target/debug or target/release), that the binary reads every
#     SYNCSETS_* variable and flag the manifests set;
#  3. promtool: the PrometheusRule's rules load, and deploy/test/alerts-test.yaml's cases
#     fire as expected;
#  4. checkov on the Dockerfile (--framework dockerfile) and on the rendered manifests
#     (--framework kubernetes): no failed check but those in checkov-accepted.txt, each
#     with its reason, and no line there that accepts nothing.
#
# Tools: the PyPI packages pinned in deploy/test/requirements.txt, in the venv DEPLOY_VENV
# (target/deploy-venv), and promtool (Debian's prometheus package). Without them it prints
# SKIPPED and passes, except under CI=true, where it fails. KEEP=1 keeps what it rendered.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${DEPLOY_VENV:-$repo/target/deploy-venv}
binary=${SYNCSETS_BINARY:-}
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-manifests: unknown argument $1" >&2; exit 2 ;;
    esac
done

say() { printf 'check-manifests: %s\n' "$*"; }
die() { printf 'check-manifests: FAILED: %s\n' "$*" >&2; exit 1; }
skip() {
    if [ "${CI:-}" = true ]; then die "$1"; fi
    echo "SKIPPED: check-manifests.sh: $1"
    exit 0
}

# ---- tools ---------------------------------------------------------------------------------
kubectl=
for k in kubectl.1.33 /usr/lib/google-cloud-sdk/bin/kubectl.1.33 kubectl; do
    if command -v "$k" >/dev/null 2>&1; then kubectl=$(command -v "$k"); break; fi
done
[ -n "$kubectl" ] || skip "kubectl is not installed"
python=$venv/bin/python
[ -x "$python" ] && "$python" -c 'import kubernetes_validate, jsonschema, referencing, yaml' 2>/dev/null ||
    skip "no venv with deploy/test/requirements.txt at $venv"
[ -x "$venv/bin/checkov" ] || skip "checkov is not installed in $venv"
command -v promtool >/dev/null || skip "promtool is not installed (Debian package prometheus)"
# The venv holds exactly the pinned versions.
while read -r pin; do
    pkg=${pin%%==*}
    have=$("$python" -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || echo none)
    [ "$pkg==$have" = "$pin" ] || die "$venv has $pkg $have, requirements.txt pins $pin"
done < <(grep -E '^[A-Za-z0-9_.-]+==' "$here/requirements.txt")
if [ -z "$binary" ]; then
    for b in "$repo/target/debug/syncsets" "$repo/target/release/syncsets"; do
        if [ -x "$b" ] && { [ -z "$binary" ] || [ "$b" -nt "$binary" ]; }; then binary=$b; fi
    done
fi
say "kubectl $("$kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p') (kustomize $("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')), $("$venv/bin/checkov" --version 2>/dev/null | tail -n 1 | sed 's/^/checkov /'), $(promtool --version 2>&1 | head -n 1)"

out=$(mktemp -d /tmp/syncsets-check-manifests.XXXXXX)
cleanup() { local rc=$?; if [ "${KEEP:-}" = 1 ]; then say "kept $out"; else rm -rf "$out"; fi; exit "$rc"; }
trap cleanup EXIT

# ---- 1. render -----------------------------------------------------------------------------
mkdir -p "$out/rendered"
overlays=()
for dir in "$repo"/deploy/overlays/*/; do
    name=$(basename "$dir")
    timeout 120 "$kubectl" kustomize "$dir" >"$out/rendered/$name.yaml" ||
        die "kubectl kustomize deploy/overlays/$name failed"
    overlays+=("$name")
done
[ "${#overlays[@]}" -ge 4 ] || die "expected the overlays hub, scaled, openshift-hub, openshift-scaled; found ${overlays[*]}"
timeout 60 "$repo/deploy/secrets.sh" --print >"$out/rendered/secrets.yaml" || die "deploy/secrets.sh --print failed"
say "rendered ${overlays[*]} and the Secrets"

# ---- 2. schemas, pods, references, flags -----------------------------------------------------
flags=()
if [ -n "$binary" ]; then
    flags=(--binary "$binary")
    say "flags and variables checked against $binary"
elif [ "${CI:-}" = true ]; then
    die "no syncsets binary to check the manifests' flags against (--binary)"
else
    say "no syncsets binary: flags and variables not checked (SKIPPED that part)"
fi
overlay_files=()
for name in "${overlays[@]}"; do overlay_files+=("$out/rendered/$name.yaml"); done
timeout 300 "$python" "$here/validate.py" --kubernetes-version 1.33 \
    --crd-schemas "$here/crd-schemas" --secrets "$out/rendered/secrets.yaml" \
    --external-secret syncsets-rabbitmq-default-user=RabbitmqCluster/syncsets-rabbitmq \
    "${flags[@]}" "${overlay_files[@]}" || die "validate.py found problems (above)"

# ---- 3. alerts -------------------------------------------------------------------------------
mkdir -p "$out/rules"
for name in "${overlays[@]}"; do
    "$python" - "$out/rendered/$name.yaml" "$out/rules/$name.yaml" <<'EOF'
import sys, yaml
rules = [o["spec"] for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"{sys.argv[1]}: expected one PrometheusRule, found {len(rules)}")
yaml.safe_dump(rules[0], open(sys.argv[2], "w"), sort_keys=False)
EOF
done
for name in "${overlays[@]}"; do
    cmp -s "$out/rules/${overlays[0]}.yaml" "$out/rules/$name.yaml" ||
        die "the PrometheusRule differs between overlays ${overlays[0]} and $name"
done
cp "$out/rules/${overlays[0]}.yaml" "$out/rules/rules.yaml"
cp "$here/alerts-test.yaml" "$out/rules/"
timeout 60 promtool check rules "$out/rules/rules.yaml" || die "promtool check rules"
timeout 120 promtool test rules "$out/rules/alerts-test.yaml" || die "promtool test rules"

# ---- 4. checkov ------------------------------------------------------------------------------
# Offline: no platform key, no downloads of external checks or guidelines.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
run_checkov() { # report args...
    local report=$1 rc=0
    shift
    timeout 600 "$venv/bin/checkov" --quiet --skip-download --output json "$@" >"$report" 2>"$report.err" || rc=$?
    # 1 = some check failed (judged below); anything else is checkov failing.
    [ "$rc" = 0 ] || [ "$rc" = 1 ] || { cat "$report.err" >&2; die "checkov $* exited $rc"; }
}
run_checkov "$out/checkov-dockerfile.json" --framework dockerfile -f "$repo/Dockerfile"
run_checkov "$out/checkov-kubernetes.json" --framework kubernetes -d "$out/rendered"
"$python" "$here/checkov-gate.py" "$here/checkov-accepted.txt" \
    "$out/checkov-dockerfile.json" "$out/checkov-kubernetes.json" || die "checkov (above)"

say "passed"
