#!/usr/bin/env bash
# Makes the Secrets the manifests name, and an admin kubeconfig. Nothing secret is ever
# committed: the values are generated here, kept in a directory outside git
# (deploy/.secrets/NAMESPACE, mode 0700), and created in the cluster once — a Secret that
# exists is never replaced (a new encryption key would make every stored Secret unreadable).
#
#   deploy/secrets.sh [--namespace NS] [--overlay NAME] [--san NAME]... [--server URL]
#                     [--dir DIR] [--renew-tls] [--print]
#
#   --namespace NS   where syncsets runs (syncsets)
#   --overlay NAME   hub, scaled, openshift-hub or openshift-scaled (hub); the scaled ones
#                    also need the PostgreSQL Secret
#   --san NAME       one more DNS name or IP address for the serving certificate, e.g. the
#                    OpenShift Route's host or a load balancer's (repeatable)
#   --server URL     the API's URL in the admin kubeconfig (https://127.0.0.1:7070, which
#                    `kubectl -n NS port-forward svc/syncsets 7070` serves)
#   --dir DIR        where the values are kept (deploy/.secrets/NS)
#   --renew-tls      issue the serving certificate again (same CA) and replace Secret
#                    syncsets-tls; pods read it when they restart
#   --print          print the Secrets as YAML and touch no cluster (generated in a
#                    temporary directory unless --dir is given); the manifests' checks use it
#
# Secrets (namespace NS):
#   syncsets-encryption     encryption.keys: `k1 <base64 of 32 random bytes>`, the AES-256-GCM
#                           key Secrets are sealed with at rest (syncsets rotate-keys format)
#   syncsets-tls            tls.crt, tls.key: the serving certificate (the Service's names,
#                           localhost, 127.0.0.1, --san); ca.crt: the installation's CA, which
#                           clients trust and whose client certificates authenticate
#   syncsets-auth           tokens.csv: kube-apiserver's token file; Prometheus' token, user
#                           prometheus in group system:monitoring (get on /metrics, nothing else)
#   syncsets-metrics-token  token: that token, for the ServiceMonitor
#   syncsets-postgresql     password, url (scaled overlays): PostgreSQL's password and the
#                           store URL syncsets uses
# KUBECTL names the client (kubectl; oc works too).
# Local only (DIR): ca.key (keep it safe: it signs client certificates that authenticate),
# admin.crt/admin.key (CN=syncsets-admin, O=system:masters) and kubeconfig.
set -euo pipefail

namespace=syncsets
overlay=hub
sans=()
server=https://127.0.0.1:7070
dir=
renew=false
print=false
while [ $# -gt 0 ]; do
    case "$1" in
    --namespace) namespace=$2; shift 2 ;;
    --overlay) overlay=$2; shift 2 ;;
    --san) sans+=("$2"); shift 2 ;;
    --server) server=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --renew-tls) renew=true; shift ;;
    --print) print=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "secrets.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$overlay" in
hub | openshift-hub) postgres=false ;;
scaled | openshift-scaled) postgres=true ;;
*) echo "secrets.sh: unknown overlay $overlay" >&2; exit 2 ;;
esac
$print && postgres=true

command -v openssl >/dev/null || { echo "secrets.sh: needs openssl" >&2; exit 1; }
umask 077
tmp=
if [ -z "$dir" ]; then
    if $print; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        dir=$tmp
    else
        dir=$(cd "$(dirname "$0")" && pwd)/.secrets/$namespace
    fi
fi
mkdir -p "$dir"
chmod 0700 "$dir"
log() { $print || echo "secrets.sh: $*" >&2; }

# ---- values, made once ---------------------------------------------------------------------
if [ ! -s "$dir/encryption.keys" ]; then
    printf 'k1 %s\n' "$(openssl rand -base64 32)" >"$dir/encryption.keys"
    log "new encryption key in $dir/encryption.keys"
fi
if [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 3650 -subj "/CN=syncsets-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    rm -f "$dir/tls.crt" "$dir/admin.crt"
    log "new CA in $dir/ca.crt"
fi

# issue NAME CN EXTENSIONS [O]: a key and a certificate signed by the CA, one year.
issue() {
    local name=$1 cn=$2 ext=$3 org=${4:-} subj
    subj="/CN=$cn${org:+/O=$org}"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$ext" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$dir/$name.ext" \
        -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

names=(syncsets "syncsets.$namespace" "syncsets.$namespace.svc" "syncsets.$namespace.svc.cluster.local" localhost 127.0.0.1 ::1 "${sans[@]}")
san=
for n in "${names[@]}"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
if $renew || [ ! -s "$dir/tls.crt" ] || [ "$(cat "$dir/tls.sans" 2>/dev/null)" != "$san" ]; then
    issue tls syncsets "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
    printf '%s' "$san" >"$dir/tls.sans"
    renew=true
    log "serving certificate for $san"
fi
if [ ! -s "$dir/admin.crt" ]; then
    issue admin syncsets-admin "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid" system:masters
    log "admin client certificate (CN=syncsets-admin, O=system:masters)"
fi
[ -s "$dir/prometheus.token" ] || openssl rand -hex 32 | tr -d '\n' >"$dir/prometheus.token"
printf '%s,prometheus,prometheus,"system:monitoring"\n' "$(cat "$dir/prometheus.token")" >"$dir/tokens.csv"
[ -s "$dir/postgresql.password" ] || openssl rand -hex 24 | tr -d '\n' >"$dir/postgresql.password"
printf 'postgres://syncsets:%s@syncsets-postgresql:5432/syncsets' "$(cat "$dir/postgresql.password")" >"$dir/postgresql.url"

b64() { base64 -w0 <"$1"; }
cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: syncsets
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$dir/ca.crt")
users:
- name: syncsets-admin
  user:
    client-certificate-data: $(b64 "$dir/admin.crt")
    client-key-data: $(b64 "$dir/admin.key")
contexts:
- name: syncsets
  context:
    cluster: syncsets
    user: syncsets-admin
current-context: syncsets
EOF

# ---- the Secrets -----------------------------------------------------------------------------
# secret NAME TYPE KEY=FILE...: the Secret's YAML.
secret() {
    local name=$1 type=$2 pair
    shift 2
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n' "$name" "$namespace"
    printf '  labels:\n    app.kubernetes.io/part-of: syncsets\ntype: %s\ndata:\n' "$type"
    for pair in "$@"; do
        printf '  %s: %s\n' "${pair%%=*}" "$(b64 "$dir/${pair#*=}")"
    done
}
names=(syncsets-encryption syncsets-tls syncsets-auth syncsets-metrics-token)
if $postgres; then names+=(syncsets-postgresql); fi
doc() {
    case "$1" in
    syncsets-encryption) secret "$1" Opaque encryption.keys=encryption.keys ;;
    syncsets-tls) secret "$1" kubernetes.io/tls tls.crt=tls.crt tls.key=tls.key ca.crt=ca.crt ;;
    syncsets-auth) secret "$1" Opaque tokens.csv=tokens.csv ;;
    syncsets-metrics-token) secret "$1" Opaque token=prometheus.token ;;
    syncsets-postgresql) secret "$1" Opaque password=postgresql.password url=postgresql.url ;;
    esac
}

if $print; then
    for name in "${names[@]}"; do doc "$name"; done
    exit 0
fi

kubectl=${KUBECTL:-kubectl}
command -v "$kubectl" >/dev/null || { echo "secrets.sh: needs $kubectl" >&2; exit 1; }
"$kubectl" get namespace "$namespace" >/dev/null ||
    { echo "secrets.sh: namespace $namespace does not exist (apply the overlay first)" >&2; exit 1; }
for name in "${names[@]}"; do
    if "$kubectl" -n "$namespace" get secret "$name" >/dev/null 2>&1; then
        if [ "$name" = syncsets-tls ] && $renew; then
            doc "$name" | "$kubectl" apply -f - >/dev/null
            echo "secrets.sh: replaced $name (restart the syncsets pods to serve it)"
        else
            echo "secrets.sh: kept $name (it exists)"
        fi
    else
        doc "$name" | "$kubectl" create -f - >/dev/null
        echo "secrets.sh: created $name"
    fi
done
echo "secrets.sh: admin kubeconfig $dir/kubeconfig (server $server); keep $dir safe"
