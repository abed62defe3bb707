#!/usr/bin/env bash
# Build a local Kubernetes control plane from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd  (module ./k8s)
#   kwok                                                                    (module ./kwok)
# into ${KUBE_CACHE:-/var/cache/choreo-test/kube}/<k8s version>/bin/.
#
# Idempotent: a binary is rebuilt only when it is missing or when the go.mod/go.sum
# of its module (or the Go version) changed since it was built (stamp file beside it).
# Nothing is written into the repository: builds run with -mod=readonly.
#
# Env:
#   KUBE_CACHE          output root (default /var/cache/choreo-test/kube)
#   KUBE_BUILD_P        go build -p (default 2; the machine has 2 cores: keep it <= 2; builds run under nice -n 19)
#   KUBE_BUILD_ONLY     space-separated subset of binaries to build (default: all)
#   GOCACHE/GOMODCACHE  honoured as usual (defaults ~/.cache/go-build, ~/go/pkg/mod)
#
# Prints the bin dir as its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="/usr/local/go/bin:${PATH}"
command -v go >/dev/null || { echo "build.sh: go not found (expected /usr/local/go/bin/go)" >&2; exit 1; }

K8S_VERSION="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$HERE/k8s/go.mod")"
KWOK_VERSION="$(awk '$1=="sigs.k8s.io/kwok" && $2 ~ /^v/ {print $2; exit}' "$HERE/kwok/go.mod")"
ETCD_VERSION="$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$HERE/k8s/go.mod")"
[ -n "$K8S_VERSION" ] && [ -n "$KWOK_VERSION" ] && [ -n "$ETCD_VERSION" ] \
  || { echo "build.sh: cannot read versions from $HERE/{k8s,kwok}/go.mod" >&2; exit 1; }

KUBE_CACHE="${KUBE_CACHE:-/var/cache/choreo-test/kube}"
BIN="$KUBE_CACHE/$K8S_VERSION/bin"
P="${KUBE_BUILD_P:-2}"
ONLY="${KUBE_BUILD_ONLY:-kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok}"
mkdir -p "$BIN"

# -mod=readonly: never touch go.mod/go.sum; -trimpath + -s -w: smaller, path-free binaries.
export GOFLAGS="-mod=readonly -buildvcs=false -trimpath -p=$P"
export CGO_ENABLED="${CGO_ENABLED:-0}"
GOVER="$(go env GOVERSION)"

# Version stamping as kubernetes' hack/lib/version.sh does (otherwise binaries report v0.0.0-master).
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
K8S_LDX=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDX+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  K8S_LDX+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "build.sh: kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, $GOVER, -p=$P -> $BIN"

build() { # name moddir pkg extra-ldflags
  local name="$1" moddir="$2" pkg="$3" ldx="$4"
  case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac
  local stamp want
  stamp="$BIN/.$name.stamp"
  want="$(cat "$moddir/go.mod" "$moddir/go.sum" | sha256sum | cut -c1-16) $GOVER $pkg"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "build.sh: $name: cached ($(du -h "$BIN/$name" | cut -f1))"
    return 0
  fi
  echo "build.sh: $name: go build $pkg ..."
  local t0=$SECONDS
  ( cd "$moddir" && nice -n 19 go build -ldflags="-s -w$ldx" -o "$BIN/.$name.tmp" "$pkg" )
  mv -f "$BIN/.$name.tmp" "$BIN/$name"
  echo "$want" > "$stamp"
  echo "build.sh: $name: built in $((SECONDS - t0))s ($(du -h "$BIN/$name" | cut -f1))"
}

build kube-apiserver          "$HERE/k8s"  k8s.io/kubernetes/cmd/kube-apiserver          "$K8S_LDX"
build kube-controller-manager "$HERE/k8s"  k8s.io/kubernetes/cmd/kube-controller-manager "$K8S_LDX"
build kube-scheduler          "$HERE/k8s"  k8s.io/kubernetes/cmd/kube-scheduler          "$K8S_LDX"
build kubectl                 "$HERE/k8s"  k8s.io/kubernetes/cmd/kubectl                 "$K8S_LDX"
# etcd's main package is the root of go.etcd.io/etcd/server/v3; built in the k8s module so it is
# the exact etcd version kubernetes itself pins (MVS-consistent with the apiserver's etcd client).
build etcd                    "$HERE/k8s"  go.etcd.io/etcd/server/v3 \
  " -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}"
build kwok                    "$HERE/kwok" sigs.k8s.io/kwok/cmd/kwok \
  " -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"

# kwok itself has no built-in stages (kwokctl adds them); take kwok's own default stages from the
# module source of the same version: node-initialize, node-heartbeat-with-lease (node Ready + lease)
# and pod-ready / pod-complete (Job pods -> Succeeded) / pod-delete (the "fast" pod set).
STAGES="$KUBE_CACHE/$K8S_VERSION/kwok-stages.yaml"
if [ ! -s "$STAGES" ] || [ "$(head -1 "$STAGES")" != "# kwok $KWOK_VERSION stages" ]; then
  kdir="$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  {
    echo "# kwok $KWOK_VERSION stages"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"; echo "# from sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage/$f"; cat "$kdir/kustomize/stage/$f"
    done
  } > "$STAGES.tmp"
  mv -f "$STAGES.tmp" "$STAGES"
  echo "build.sh: wrote $STAGES"
fi

echo "$BIN"
