#!/usr/bin/env bash
# Proves the image's build and run steps without a container engine: the same commands the
# Dockerfile runs, read from it (deploy/test/dockerfile.py), on this machine.
#
#   deploy/test/image-steps.sh [--build] [release|debug|PATH/TO/syncsets]
#
#   release, debug  use target/<profile>/syncsets (default: release)
#   PATH            use that binary
#   --build         first run the Dockerfile's `cargo build` (debug: without --release)
#                   in a copy of the build context, as `docker build` would: proves the
#                   context holds what the build needs (minutes; not done by the test suite,
#                   which has built the binary already)
#
# Steps, each from the Dockerfile:
#  1. build context: what the build stage COPYs passes .dockerignore and holds every file
#     the compiler reads (include_str!, sqlx::migrate!) — deploy/test/build-context.py;
#  2. the binary links only libraries the runtime base image has (distroless/cc-debian12);
#  3. the build stage's install steps and the runtime stage's COPY lines (owner, mode) lay
#     out a root filesystem in a temporary directory, beside a volume directory laid out as
#     a new volume is (from the image's directory, as Docker does);
#  4. it runs there as the container would: in a mount namespace of its own, chrooted into
#     that root mounted read-only with only the volume writable, no_new_privs, cwd = WORKDIR
#     and HOME = / (neither writable), the Dockerfile's ENTRYPOINT, CMD and ENV and nothing
#     else — except SYNCSETS_LISTEN, moved to 127.0.0.1 and a free port as `docker run -e`
#     would (no traffic leaves loopback). Three runs: as USER (65532:0) on a new volume;
#     as an arbitrary UID with GID 0 (OpenShift's restricted SCC) on another; that UID again
#     on its volume (a restart);
#  5. each run answers /livez and /readyz with 200 (curl -k), refuses /metrics to anonymous
#     users, writes its data directory 0700 and its files 0600, owned by that UID, and on
#     SIGTERM fails /readyz (while it still runs) and exits 0 within STOP_TIMEOUT seconds;
#  6. the same, as the manifests run it (deploy/test/pod.py lays out a rendered container
#     as the kubelet would: user, fsGroup, environment, Secrets from deploy/secrets.sh,
#     volumes): the hub's Deployment (Prometheus' token reads /metrics, verifying the CA
#     under the ServiceMonitor's server name; the admin certificate writes a Secret; the
#     encryption key is the mounted one), and a controller of the scaled overlay against
#     this machine's PostgreSQL and RabbitMQ (SYNCSETS_TEST_POSTGRES, SYNCSETS_TEST_AMQP),
#     in a database and virtual host of its own, dropped afterwards (plain-HTTP /metrics,
#     /livez and /readyz on its metrics address).
#
# Needs root (mount namespace, chroot), util-linux (unshare, setpriv), coreutils, curl,
# python3, ldd; for 6, kubectl, the deploy venv (PyYAML), psql and rabbitmqctl. Without
# them: prints SKIPPED (for all, or for 6) and passes, except under CI=true, where it fails.
# Environment: START_TIMEOUT (60), STOP_TIMEOUT (40), KEEP=1 keeps the temporary directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-40}

say() { printf 'image-steps: %s\n' "$*"; }
die() { printf 'image-steps: FAILED: %s\n' "$*" >&2; exit 1; }

build=false
target=release
for arg in "$@"; do
    case "$arg" in
    --build) build=true ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) target=$arg ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = true ]; then die "needs root (mount namespace, chroot)"; fi
    echo "SKIPPED: image-steps.sh needs root (mount namespace, chroot)"
    exit 0
fi
for tool in unshare setpriv chroot curl python3 ldd timeout; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

# ---- the Dockerfile, read ------------------------------------------------------------------
df_vars=$(python3 "$here/dockerfile.py" "$repo/Dockerfile") || die "cannot read the Dockerfile"
eval "$df_vars"
say "builder $DF_BUILDER; runtime $DF_BASE"
say "build: $DF_CARGO, then: $(printf '%s; ' "${DF_BUILD_STEPS[@]}")"
say "run: USER $DF_USER, WORKDIR $DF_WORKDIR, ENTRYPOINT ${DF_ENTRYPOINT[*]}, CMD ${DF_CMD[*]}, ENV ${DF_ENV[*]}, VOLUME ${DF_VOLUME[*]}, EXPOSE ${DF_EXPOSE[*]}"

# What the base image brings (gcr.io/distroless/cc-debian12: distroless' static + base +
# cc layers): its config's environment, its users, and the shared libraries of libc6,
# libssl3, libgcc-s1, libstdc++6 and libgomp1. Another base needs these facts updated.
case "$DF_BASE" in
gcr.io/distroless/cc-debian12:*) ;;
*) die "runtime base $DF_BASE: image-steps.sh knows gcr.io/distroless/cc-debian12 only" ;;
esac
base_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
base_libs='^(ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libresolv\.so\.2|libutil\.so\.1|libanl\.so\.1|libnss_[a-z]+\.so\.2|libssl\.so\.3|libcrypto\.so\.3|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libgomp\.so\.1)$'

[[ "$DF_CARGO" =~ ^cargo\ build\ .*--locked.*--bin\ syncsets ]] ||
    die "the build runs '$DF_CARGO': expected cargo build --locked … --bin syncsets"
[ "${#DF_VOLUME[@]}" = 1 ] || die "expected one VOLUME, found ${DF_VOLUME[*]}"
volume_path=${DF_VOLUME[0]}
data_dir=
port_env=
for kv in "${DF_ENV[@]}"; do
    case "$kv" in
    SYNCSETS_DATA_DIR=*) data_dir=${kv#*=} ;;
    SYNCSETS_LISTEN=*) port_env=${kv#*=} ;;
    esac
done
[ -n "$data_dir" ] || die "ENV SYNCSETS_DATA_DIR is not set"
case "$data_dir/" in
"$volume_path"/*) ;;
*) die "SYNCSETS_DATA_DIR=$data_dir is not on the VOLUME $volume_path" ;;
esac
[ "$data_dir" != "$volume_path" ] ||
    die "SYNCSETS_DATA_DIR must be a directory under the volume (the server makes it 0700, which it can do only to a directory it owns)"
[ -n "$port_env" ] || die "ENV SYNCSETS_LISTEN is not set"
listen_port=${port_env##*:}
printf '%s\n' "${DF_EXPOSE[@]}" | grep -qx "$listen_port" || die "SYNCSETS_LISTEN=$port_env: port not in EXPOSE"
[ "$DF_WORKDIR" = / ] || die "WORKDIR $DF_WORKDIR: image-steps.sh runs from / (chroot's directory) only"
case "$DF_USER" in
[0-9]*:0) [ "${DF_USER%%:*}" != 0 ] || die "USER is root" ;;
*) die "USER $DF_USER: expected a numeric non-root UID with group 0 (UID:0)" ;;
esac

# ---- 1. the build context ------------------------------------------------------------------
python3 "$here/build-context.py" "$repo" "${DF_CONTEXT[@]}"

# ---- the binary ----------------------------------------------------------------------------
case "$target" in
release | debug) profile=$target; binary=$repo/target/$profile/syncsets ;;
*) profile=; binary=$(cd "$(dirname "$target")" && pwd)/$(basename "$target") ;;
esac

tmp=$(mktemp -d /tmp/syncsets-image-steps.XXXXXX)
pid=
on_exit=()
cleanup() {
    local rc=$? c
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    for c in "${on_exit[@]}"; do "$c" || true; done
    # The mounts live in the server's own mount namespace, gone with it: nothing is
    # mounted under $tmp out here.
    if [ "${KEEP:-}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if $build; then
    [ -n "$profile" ] || die "--build needs a profile (release or debug), not a path"
    # The build context as `docker build` sends it, then the Dockerfile's command in it.
    mkdir -p "$tmp/context"
    for src in "${DF_CONTEXT[@]}"; do
        mkdir -p "$tmp/context/$(dirname "$src")"
        cp -a "$repo/$src" "$tmp/context/$src"
    done
    find "$tmp/context" -name target -type d -prune -exec rm -rf {} +
    cargo=$DF_CARGO
    [ "$profile" = release ] || cargo=${cargo/ --release/}
    say "building in a copy of the context: $cargo"
    read -ra cargo_words <<<"$cargo"
    (cd "$tmp/context" && CARGO_TARGET_DIR="$repo/target/image-steps" timeout 3600 "${cargo_words[@]}")
    binary=$repo/target/image-steps/$profile/syncsets
fi
[ -x "$binary" ] || die "no binary at $binary (build it, or give its path)"
say "binary $binary ($(stat -c %s "$binary") bytes)"

# ---- 2. shared libraries -------------------------------------------------------------------
libs=()
while read -r name path; do
    [[ "$name" =~ $base_libs ]] || die "$binary needs $name, which $DF_BASE does not have"
    libs+=("$path")
done < <(ldd "$binary" | awk '/=>/ { print $1, $3; next } /^\t\// { n = $1; sub(".*/", "", n); print n, $1 }')
glibc=$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n 1 || true)
say "links ${#libs[@]} libraries, all in the base image${glibc:+; newest glibc symbol $glibc (bookworm has 2.36)}"

# ---- 3. the root filesystem ----------------------------------------------------------------
rootfs=$tmp/rootfs
out=$tmp/out
mkdir -p "$rootfs" "$out"
chmod 0755 "$tmp" "$rootfs"
# The base image: its directories, users (distroless: root, nobody, nonroot 65532), /tmp,
# CA bundle, and the libraries the binary links.
install -d -m 0755 "$rootfs"/{dev,proc,etc/ssl/certs,usr/local/bin,var/lib,home}
install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
install -d -m 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/" 2>/dev/null || : >"$rootfs/etc/ssl/certs/ca-certificates.crt"
for lib in "${libs[@]}"; do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
# The build stage's install steps, as written, with /out and target/<profile> here.
mkdir -p "$tmp/build/target/release"
ln -s "$binary" "$tmp/build/target/release/syncsets"
for step in "${DF_BUILD_STEPS[@]}"; do
    [[ "$step" =~ ^install\  ]] || die "build step '$step': only install steps are understood"
    (cd "$tmp/build" && eval "${step//\/out/$out}")
done
# The runtime stage's COPY lines.
for copy in "${DF_COPY[@]}"; do
    IFS='|' read -r from chown chmod src dst <<<"$copy"
    [ "$from" = build ] || die "COPY $src: only COPY --from=build is understood"
    src=$out${src#/out}
    mkdir -p "$(dirname "$rootfs$dst")"
    if [ -d "$src" ]; then cp -a "$src" "$rootfs$dst"; else cp -L "$src" "$rootfs$dst"; fi
    [ -z "$chown" ] || chown -R "$chown" "$rootfs$dst"
    [ -z "$chmod" ] || chmod "$chmod" "$rootfs$dst"
done
[ -x "$rootfs${DF_ENTRYPOINT[0]}" ] || die "ENTRYPOINT ${DF_ENTRYPOINT[0]} is not in the image"
[ -d "$rootfs$volume_path" ] || die "VOLUME $volume_path is not in the image"
say "image: $(find "$rootfs" -type f | wc -l) files; $volume_path is owned by $(stat -c '%u:%g, mode %a' "$rootfs$volume_path")"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- 4., 5. a run --------------------------------------------------------------------------
# run NAME: starts the server as the container would and checks it, then stops it. Reads
#   R_USER      UID:GID          R_GROUPS  supplementary groups (comma-separated)
#   R_ENV       (array) its whole environment, the listen address last
#   R_ARGV      (array) ENTRYPOINT and CMD (or the pod's command and args)
#   R_MOUNTS    (array) HOST_DIR|PATH|ro or rw, the volume among them
#   R_DATA      the data directory's path on the host
#   R_URL       where it serves /livez, /readyz and /metrics (https://127.0.0.1:PORT)
#   R_ANON      what anonymous /metrics must answer (a regular expression: 401|403, or 200)
#   R_EXTRA     a function with more checks, or empty
run() {
    local name=$1 log=$tmp/$1.log code m rest
    say "run $name: UID:GID $R_USER, groups ${R_GROUPS:-${R_USER#*:}}, ${R_ARGV[*]:1}, $R_URL"
    # Mount points, made in the image as the container runtime makes them.
    for m in "${R_MOUNTS[@]}"; do
        rest=${m#*|}
        mkdir -p "$rootfs${rest%|*}"
    done
    # The mount namespace is the container's: the root filesystem read-only, the volumes
    # over it, /dev and /proc; chroot then changes to / (the WORKDIR) and to the user and
    # starts the program with exactly this environment. no_new_privs is what
    # allowPrivilegeEscalation: false sets. exec all the way: $pid is the server's.
    env -i "${R_ENV[@]}" unshare --mount --propagation private -- /bin/sh -c '
        set -e
        root=$1 user=$2 groups=$3 nmounts=$4; shift 4
        mount --bind "$root" "$root"
        mount -o remount,bind,ro "$root"
        mount --rbind /dev "$root/dev"
        mount --rbind /proc "$root/proc"
        while [ "$nmounts" -gt 0 ]; do
            m=$1; shift; nmounts=$((nmounts - 1))
            src=${m%%|*} rest=${m#*|}; dst=${rest%|*} mode=${rest##*|}
            mount --bind "$src" "$root$dst"
            [ "$mode" = rw ] || mount -o remount,bind,ro "$root$dst"
        done
        exec setpriv --no-new-privs chroot --userspec="$user" --groups="$groups" "$root" "$@"
    ' sh "$rootfs" "$R_USER" "${R_GROUPS:-${R_USER#*:}}" "${#R_MOUNTS[@]}" "${R_MOUNTS[@]}" "${R_ARGV[@]}" \
        >"$log" 2>&1 &
    pid=$!
    local deadline=$((SECONDS + START_TIMEOUT)) live='' ready=''
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            die "run $name: the server exited before it was ready"
        fi
        live=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 2 "$R_URL/livez" || true)
        ready=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 2 "$R_URL/readyz" || true)
        [ "$live" = 200 ] && [ "$ready" = 200 ] && break
        sleep 0.5
    done
    if [ "$live" != 200 ] || [ "$ready" != 200 ]; then
        cat "$log" >&2
        die "run $name: /livez $live, /readyz $ready after ${START_TIMEOUT}s"
    fi
    code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 5 "$R_URL/metrics" || true)
    [[ "$code" =~ ^($R_ANON)$ ]] || die "run $name: anonymous /metrics answered $code, expected $R_ANON"
    say "run $name: /livez 200, /readyz 200, anonymous /metrics $code"

    # What it wrote: its data directory, 0700, files 0600, all its UID's, and nothing beside.
    local uid=${R_USER%%:*} vol wrong
    vol=$(dirname "$R_DATA")
    [ -d "$R_DATA" ] || die "run $name: no data directory $R_DATA"
    [ "$(stat -c '%u %a' "$R_DATA")" = "$uid 700" ] ||
        die "run $name: the data directory is $(stat -c '%u %a' "$R_DATA"), expected $uid 700"
    wrong=$(find "$R_DATA" \( -type f ! -perm 0600 -o -type d ! -perm 0700 -o ! -uid "$uid" \) -printf '%P %u %m\n' || true)
    [ -z "$wrong" ] || die "run $name: in the data directory, not the UID's own (0700, 0600): $wrong"
    [ -z "$(find "$vol" -mindepth 1 -maxdepth 1 ! -name "$(basename "$R_DATA")")" ] ||
        die "run $name: wrote beside the data directory: $(ls -A "$vol")"
    [ -z "$R_EXTRA" ] || "$R_EXTRA" "$name"

    # SIGTERM: /readyz fails first (while the process lives on), then a clean exit, in time.
    local started=$SECONDS rc=0 n=0 unready=
    kill -TERM "$pid"
    while [ $n -lt 20 ] && kill -0 "$pid" 2>/dev/null; do
        code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 1 "$R_URL/readyz" || true)
        if [ "$code" = 000 ]; then unready=" (no longer listening)"; break; fi
        if [ "$code" != 200 ]; then unready=" (/readyz $code meanwhile)"; break; fi
        sleep 0.1
        n=$((n + 1))
    done
    if kill -0 "$pid" 2>/dev/null && [ -z "$unready" ]; then
        die "run $name: /readyz still answers 200 two seconds after SIGTERM"
    fi
    local stop_deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $stop_deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        cat "$log" >&2
        die "run $name: still running ${STOP_TIMEOUT}s after SIGTERM"
    fi
    wait "$pid" || rc=$?
    pid=
    if [ "$rc" != 0 ]; then
        cat "$log" >&2
        die "run $name: exit code $rc after SIGTERM, expected 0"
    fi
    say "run $name: SIGTERM → exit 0 in $((SECONDS - started))s$unready"
}

# A new volume, as Docker makes one from the image's directory (owner and mode copied).
new_volume() {
    local vol=$tmp/$1
    mkdir "$vol"
    chown --reference="$rootfs$volume_path" "$vol"
    chmod --reference="$rootfs$volume_path" "$vol"
    echo "$vol"
}

# as_image NAME UID:GID VOLUME_DIR: the image as `docker run -v VOLUME_DIR:VOLUME` runs it.
as_image() {
    R_USER=$2
    R_GROUPS=
    R_PORT=$(free_port)
    R_URL=https://127.0.0.1:$R_PORT
    R_ANON='401|403'
    R_ENV=("${base_env[@]}" HOME=/ HOSTNAME=syncsets-image-steps "${DF_ENV[@]}" "SYNCSETS_LISTEN=127.0.0.1:$R_PORT")
    R_ARGV=("${DF_ENTRYPOINT[@]}" "${DF_CMD[@]}")
    R_MOUNTS=("$3|$volume_path|rw")
    R_DATA=$3${data_dir#"$volume_path"}
    R_EXTRA=
    run "$1"
}

as_image image-user "$DF_USER" "$(new_volume vol-image-user)"
uid=$((1000600000 + RANDOM % 100000))
vol=$(new_volume vol-arbitrary)
as_image arbitrary-uid "$uid:0" "$vol"
as_image restart "$uid:0" "$vol"

# ---- 6. as the manifests run it --------------------------------------------------------------
# A container of a rendered overlay, laid out as the kubelet would (deploy/test/pod.py):
# its user and fsGroup, environment, Secrets (deploy/secrets.sh's) and volumes. Proves the
# manifests' settings work with this binary.
venv_python=${DEPLOY_VENV:-$repo/target/deploy-venv}/bin/python
[ -x "$venv_python" ] || venv_python=python3
kubectl=
for k in kubectl.1.33 /usr/lib/google-cloud-sdk/bin/kubectl.1.33 kubectl; do
    if command -v "$k" >/dev/null 2>&1; then kubectl=$(command -v "$k"); break; fi
done
if [ -z "$kubectl" ] || ! "$venv_python" -c 'import yaml' 2>/dev/null; then
    [ "${CI:-}" != true ] || die "the manifests' runs need kubectl and PyYAML (the deploy venv)"
    say "SKIPPED the manifests' runs: they need kubectl and PyYAML (the deploy venv)"
    say "passed"
    exit 0
fi
mkdir -p "$tmp/secrets"
"$repo/deploy/secrets.sh" --print --dir "$tmp/secrets" >"$tmp/secrets.yaml" || die "deploy/secrets.sh --print failed"

# as_pod NAME OVERLAY KIND/NAME CONTAINER HOSTNAME [VAR=VALUE...]: sets R_* for run.
as_pod() {
    local name=$1 overlay=$2 workload=$3 container=$4 host=$5 pod_vars kv m src rest dst pod_data=
    shift 5
    timeout 120 "$kubectl" kustomize "$repo/deploy/overlays/$overlay" >"$tmp/$overlay.yaml" ||
        die "kubectl kustomize deploy/overlays/$overlay failed"
    mkdir -p "$tmp/pod-$name"
    pod_vars=$("$venv_python" "$here/pod.py" "$tmp/$overlay.yaml" "$workload" "$container" \
        "$tmp/secrets.yaml" "$tmp/pod-$name" "$@") || die "cannot lay out $overlay's $workload"
    eval "$pod_vars"
    R_USER=$POD_USER
    [[ "$R_USER" =~ ^[0-9]+:[0-9]+$ ]] || die "$overlay's $workload sets no runAsUser and runAsGroup: $R_USER"
    R_GROUPS=$POD_GROUPS
    R_ENV=("${base_env[@]}" HOME=/ "HOSTNAME=$host" "${DF_ENV[@]}" "${POD_ENV[@]}")
    if [ "${#POD_COMMAND[@]}" -gt 0 ]; then R_ARGV=("${POD_COMMAND[@]}" "${POD_ARGS[@]}")
    elif [ "${#POD_ARGS[@]}" -gt 0 ]; then R_ARGV=("${DF_ENTRYPOINT[@]}" "${POD_ARGS[@]}")
    else R_ARGV=("${DF_ENTRYPOINT[@]}" "${DF_CMD[@]}"); fi
    R_MOUNTS=("${POD_MOUNTS[@]}")
    for kv in "${POD_ENV[@]}"; do case "$kv" in SYNCSETS_DATA_DIR=*) pod_data=${kv#*=} ;; esac; done
    pod_data=${pod_data:-$data_dir}
    R_DATA=
    for m in "${POD_MOUNTS[@]}"; do
        src=${m%%|*} rest=${m#*|}; dst=${rest%|*}
        case "$pod_data/" in "$dst"/*) R_DATA=$src${pod_data#"$dst"} ;; esac
    done
    [ -n "$R_DATA" ] || die "$overlay's $workload keeps its data directory $pod_data on no volume"
}

# Sealed with the key Secret syncsets-encryption mounts, not one of its own.
own_key() {
    [ ! -e "$R_DATA/encryption.keys" ] ||
        die "run $1: the server made its own encryption.keys: it does not read SYNCSETS_ENCRYPTION_KEY_FILE"
}

# The hub: its serving certificate verifies against the CA under the name the
# ServiceMonitor uses, Prometheus' token reads /metrics, the admin certificate writes.
hub_checks() {
    local code body
    code=$(curl -s -o "$tmp/metrics.txt" -w '%{http_code}' --max-time 10 \
        --cacert "$tmp/secrets/ca.crt" --resolve "syncsets:$R_PORT:127.0.0.1" \
        -H "Authorization: Bearer $(cat "$tmp/secrets/prometheus.token")" "https://syncsets:$R_PORT/metrics" || true)
    [ "$code" = 200 ] && grep -q '^apiserver_request_total' "$tmp/metrics.txt" ||
        die "run $1: /metrics with Prometheus' token answered $code"
    body='{"apiVersion":"v1","kind":"Secret","metadata":{"name":"image-steps"},"stringData":{"k":"sealed?"}}'
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$tmp/secrets/ca.crt" \
        --cert "$tmp/secrets/admin.crt" --key "$tmp/secrets/admin.key" -H 'Content-Type: application/json' \
        -d "$body" "https://localhost:$R_PORT/api/v1/namespaces/default/secrets" || true)
    [ "$code" = 201 ] || die "run $1: creating a Secret as the admin answered $code"
    own_key "$1"
    say "run $1: Prometheus' token reads /metrics (CA and name checked), the admin certificate writes a Secret"
}
as_pod hub-manifest hub Deployment/syncsets syncsets syncsets-7d4b9c-x2x5q
R_PORT=$(free_port)
R_URL=https://127.0.0.1:$R_PORT
R_ANON='401|403'
R_ENV+=("SYNCSETS_LISTEN=127.0.0.1:$R_PORT")
R_EXTRA=hub_checks
run hub-manifest

# A controller of the scaled overlay, on this machine's PostgreSQL and RabbitMQ (the test
# suite's: SYNCSETS_TEST_POSTGRES, SYNCSETS_TEST_AMQP), in a database and a virtual host of
# its own, removed afterwards.
pg=${SYNCSETS_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}
amqp=${SYNCSETS_TEST_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}
amqp=${amqp%/*}
if command -v psql >/dev/null && command -v rabbitmqctl >/dev/null &&
    timeout 5 psql "$pg/postgres" -Atqc 'select 1' >/dev/null 2>&1 &&
    timeout 30 rabbitmqctl -q list_vhosts >/dev/null 2>&1; then
    db=image_steps_$$_$RANDOM
    vhost=image-steps-$$-$RANDOM
    timeout 30 psql "$pg/postgres" -Atqc "create database $db" >/dev/null || die "cannot create database $db"
    timeout 30 rabbitmqctl -q add_vhost "$vhost" >/dev/null || die "cannot add virtual host $vhost"
    timeout 30 rabbitmqctl -q set_permissions -p "$vhost" "$(printf '%s' "$amqp" | sed 's#^amqps*://\([^:@]*\).*#\1#')" '.*' '.*' '.*' >/dev/null ||
        die "cannot grant $vhost"
    drop_backends() {
        timeout 30 psql "$pg/postgres" -Atqc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
        timeout 30 rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    }
    on_exit+=(drop_backends)
    R_PORT=$(free_port)
    as_pod scaled-controller scaled StatefulSet/syncsets-controller controller syncsets-controller-1 \
        "SYNCSETS_STORE=$pg/$db" RABBITMQ_USERNAME=unused RABBITMQ_PASSWORD=unused \
        "SYNCSETS_BUS=$amqp/$vhost" "SYNCSETS_METRICS_BIND_ADDRESS=127.0.0.1:$R_PORT"
    R_URL=http://127.0.0.1:$R_PORT
    R_ANON=200
    controller_checks() {
        # Its first metrics come with its first ticks: on a busy machine, a few seconds.
        local tries=0
        until curl -s --max-time 5 "$R_URL/metrics" | grep -q '^# TYPE '; do
            tries=$((tries + 1))
            [ "$tries" -lt 40 ] || die "run $1: /metrics has no metrics after 20 s"
            sleep 0.5
        done
        own_key "$1"
        say "run $1: plain /metrics, /livez, /readyz on the metrics address"
    }
    R_EXTRA=controller_checks
    run scaled-controller
    drop_backends
elif [ "${CI:-}" = true ]; then
    die "the controller's run needs PostgreSQL ($pg) and RabbitMQ (rabbitmqctl) on this machine"
else
    say "SKIPPED the controller's run: no PostgreSQL at $pg or no RabbitMQ (rabbitmqctl)"
fi
say "passed"
