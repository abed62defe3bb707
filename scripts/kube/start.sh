#!/usr/bin/env bash
# Start a local Kubernetes control plane on loopback, for tests:
#   etcd -> kube-apiserver (Node,RBAC) -> kube-controller-manager, kube-scheduler, kwok (fake nodes).
# Binaries come from scripts/kube/build.sh (run here; it only builds what is missing).
#
# Env (all optional):
#   KUBE_STATE        state dir (default /tmp/choreo-kube): certs, kubeconfigs, etcd data, logs, pids
#   KUBE_CACHE        build cache root (default /var/cache/choreo-test/kube), see build.sh
#   KUBE_BIN          use binaries from this dir instead of running build.sh
#   KUBE_NODES        number of kwok fake nodes (default 2)
#   KUBE_APISERVER_PORT (16443) KUBE_ETCD_PORT (12379) KUBE_ETCD_PEER_PORT (12380)
#   KUBE_KCM_PORT (20257) KUBE_SCHEDULER_PORT (20259) KUBE_KWOK_PORT (20247)
#   KUBE_START_TIMEOUT  seconds to wait for each readiness step (default 120)
#
# On success: $KUBE_STATE/kubeconfig is an admin (system:masters) kubeconfig and
# $KUBE_STATE/env can be sourced (KUBECONFIG and PATH with kubectl). stop.sh undoes it all.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
S="${KUBE_STATE:-/tmp/choreo-kube}"
NODES="${KUBE_NODES:-2}"
API_PORT="${KUBE_APISERVER_PORT:-16443}"
ETCD_PORT="${KUBE_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${KUBE_ETCD_PEER_PORT:-12380}"
KCM_PORT="${KUBE_KCM_PORT:-20257}"
SCHED_PORT="${KUBE_SCHEDULER_PORT:-20259}"
KWOK_PORT="${KUBE_KWOK_PORT:-20247}"
TIMEOUT="${KUBE_START_TIMEOUT:-120}"
SERVICE_CIDR=10.96.0.0/16   # objects only: nothing routes to it (no kube-proxy, no kubelet)

now_ms() { local t="${EPOCHREALTIME/[.,]/}"; echo $(( t / 1000 )); }
T0=$(now_ms)
since() { local d=$(( $(now_ms) - T0 )); printf '%d.%01ds' $((d / 1000)) $((d % 1000 / 100)); }
log() { echo "start.sh [$(since)] $*"; }
die() { echo "start.sh: ERROR: $*" >&2; exit 1; }

# ---- refuse to start twice -------------------------------------------------------------------
if [ -d "$S/pids" ]; then
  for f in "$S"/pids/*.pid; do
    [ -e "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then
      die "a plane is already running in $S ($(basename "$f" .pid) pid $(cat "$f")); run stop.sh first"
    fi
  done
fi
if [ -e "$S" ] && [ ! -e "$S/.choreo-kube" ]; then
  [ -z "$(ls -A "$S" 2>/dev/null)" ] || die "$S exists and is not a choreo-kube state dir; refusing to wipe it"
fi
for p in $API_PORT $ETCD_PORT $ETCD_PEER_PORT $KCM_PORT $SCHED_PORT $KWOK_PORT; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then die "port 127.0.0.1:$p is already in use"; fi
done

# ---- binaries --------------------------------------------------------------------------------
if [ -n "${KUBE_BIN:-}" ]; then
  BIN="$KUBE_BIN"
else
  log "build.sh (reuses cached binaries)"
  BIN="$(bash "$HERE/build.sh" | tee /dev/stderr | tail -1)"
fi
STAGES="$BIN/../kwok-stages.yaml"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [ -x "$BIN/$b" ] || die "missing $BIN/$b (run build.sh)"
done
[ -s "$STAGES" ] || die "missing $STAGES (run build.sh)"
log "binaries ready in $BIN; timings below count from here"
T0=$(now_ms)

# ---- fresh state dir -------------------------------------------------------------------------
rm -rf "$S"
mkdir -p "$S"/{pki,logs,pids}
mkdir -m 700 "$S/etcd"
touch "$S/.choreo-kube"
chmod 700 "$S"
PKI="$S/pki"
log "state dir $S"

# ---- PKI (openssl): CA, apiserver serving cert, client certs, service-account key pair ------
ossl() { openssl "$@" 2>>"$S/logs/openssl.log"; }
ossl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
ossl req -x509 -new -key "$PKI/ca.key" -sha256 -days 3650 -subj "/CN=choreo-kube-ca" -out "$PKI/ca.crt"
cat > "$PKI/ext.cnf" <<'EOF'
[server]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
mkcert() { # name subject extension-section
  ossl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key"
  ossl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/ext.cnf" -extensions "$3" -out "$PKI/$1.crt"
  rm -f "$PKI/$1.csr"
}
mkcert apiserver          "/CN=kube-apiserver"                        server
mkcert admin              "/O=system:masters/CN=kubernetes-admin"     client
mkcert controller-manager "/CN=system:kube-controller-manager"        client
mkcert scheduler          "/CN=system:kube-scheduler"                 client
mkcert kwok               "/O=system:masters/CN=kwok-controller"      client
# Front-proxy (request-header) CA: lets aggregated API servers work and keeps the controller-manager
# and scheduler from complaining about a missing requestheader-client-ca-file.
ossl ecparam -name prime256v1 -genkey -noout -out "$PKI/front-proxy-ca.key"
ossl req -x509 -new -key "$PKI/front-proxy-ca.key" -sha256 -days 3650 -subj "/CN=choreo-kube-front-proxy-ca" \
  -out "$PKI/front-proxy-ca.crt"
ossl ecparam -name prime256v1 -genkey -noout -out "$PKI/front-proxy-client.key"
ossl req -new -key "$PKI/front-proxy-client.key" -subj "/CN=front-proxy-client" -out "$PKI/front-proxy-client.csr"
ossl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" \
  -CAcreateserial -days 3650 -sha256 -extfile "$PKI/ext.cnf" -extensions client -out "$PKI/front-proxy-client.crt"
rm -f "$PKI/front-proxy-client.csr"
ossl genrsa -out "$PKI/sa.key" 2048
ossl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
chmod 600 "$PKI"/*.key

mkkubeconfig() { # file cert-name user
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: choreo
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $3
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: choreo
  context: {cluster: choreo, user: $3}
current-context: choreo
EOF
  chmod 600 "$1"
}
mkkubeconfig "$S/kubeconfig"                    admin              kubernetes-admin
mkkubeconfig "$S/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
mkkubeconfig "$S/scheduler.kubeconfig"          scheduler          system:kube-scheduler
mkkubeconfig "$S/kwok.kubeconfig"               kwok               kwok-controller
log "certificates and kubeconfigs written"

# ---- process helpers -------------------------------------------------------------------------
launch() { # name binary args...
  local name="$1"; shift
  setsid nohup "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
  echo $! > "$S/pids/$name.pid"
  log "started $name (pid $!)"
}
alive() { kill -0 "$(cat "$S/pids/$1.pid")" 2>/dev/null; }
wait_for() { # what name command...
  local what="$1" name="$2"; shift 2
  local end=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || { tail -30 "$S/logs/$name.log" >&2; die "$name exited while waiting for $what"; }
    [ "$(date +%s)" -lt "$end" ] || { tail -30 "$S/logs/$name.log" >&2; die "timeout waiting for $what"; }
    sleep 0.2
  done
  log "$what"
}
curl_api() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$API_PORT$1"; }
KUBECTL=("$BIN/kubectl" --kubeconfig "$S/kubeconfig")

# ---- etcd ------------------------------------------------------------------------------------
# Plain HTTP on loopback; --unsafe-no-fsync: the data is thrown away at stop, speed matters more.
launch etcd "$BIN/etcd" \
  --name choreo --data-dir "$S/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "choreo=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
  --unsafe-no-fsync --quota-backend-bytes=$((2*1024*1024*1024)) --log-level=warn
wait_for "etcd healthy" etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# ---- kube-apiserver --------------------------------------------------------------------------
# --endpoint-reconciler-type=none: the "kubernetes" Endpoints may not hold a loopback address.
launch kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --profiling=false
wait_for "kube-apiserver /readyz ok" kube-apiserver curl_api /readyz
READY_AT=$(since)

# ---- controller-manager, scheduler -----------------------------------------------------------
launch kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$S/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --profiling=false
launch kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$S/scheduler.kubeconfig" \
  --authentication-kubeconfig="$S/scheduler.kubeconfig" \
  --authorization-kubeconfig="$S/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
  --leader-elect=false \
  --profiling=false

# ---- kwok: fake nodes with kwok's default node/pod stages + kwok/choreo-stages.yaml ----------
# (Job pods annotated kwok.choreo.test/exit-code=N [kwok.choreo.test/delay=3s] end with that code)
# (pods with a container env var named CHOREO_TEST_UNREADY stay Running but not Ready)
launch kwok "$BIN/kwok" \
  --kubeconfig="$S/kwok.kubeconfig" \
  --config="$STAGES,$HERE/kwok/choreo-stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --server-address="127.0.0.1:$KWOK_PORT"

wait_for "kube-controller-manager healthy" kube-controller-manager \
  curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for "kube-scheduler healthy" kube-scheduler curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"

for i in $(seq 0 $((NODES - 1))); do
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
EOF
done > "$S/nodes.yaml"
"${KUBECTL[@]}" create -f "$S/nodes.yaml" >/dev/null
wait_for "$NODES kwok node(s) Ready" kwok \
  "${KUBECTL[@]}" wait --for=condition=Ready node -l type=kwok --timeout=2s
wait_for "default service account exists" kube-controller-manager \
  "${KUBECTL[@]}" get serviceaccount default -n default

cat > "$S/env" <<EOF
export KUBECONFIG=$S/kubeconfig
export PATH=$BIN:\$PATH
EOF
log "control plane up (apiserver /readyz ok after ${READY_AT}); kubeconfig: $S/kubeconfig; source $S/env"
