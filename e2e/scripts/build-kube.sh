#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl (k8s.io/kubernetes,
# pinned in e2e/kube-build/k8s/go.mod) and etcd (pinned in e2e/kube-build/etcd/go.mod) from the Go
# module proxy into a version-keyed cache outside the repo, then kube-network-policies (build-netpol.sh).
# Prints the bin dir on the last line of stdout.
#   STRATA_KUBE_BIN_DIR=/path   use existing binaries instead (only checked for presence)
#   STRATA_GO_JOBS=N            go build -p (default 2)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KB="$HERE/../kube-build"
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=build-kube

if [[ -n "${STRATA_KUBE_BIN_DIR:-}" ]]; then
  for b in "${BINS[@]}"; do
    [[ -x "$STRATA_KUBE_BIN_DIR/$b" ]] || { log "STRATA_KUBE_BIN_DIR=$STRATA_KUBE_BIN_DIR lacks $b"; exit 1; }
  done
  log "using existing binaries in $STRATA_KUBE_BIN_DIR"
  echo "$STRATA_KUBE_BIN_DIR"; exit 0
fi

K8S=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$KB/k8s/go.mod"); K8S=${K8S#v}
ETCD=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$KB/etcd/go.mod"); ETCD=${ETCD#v}
[[ -n "$K8S" && -n "$ETCD" ]] || { log "cannot read pins from $KB/*/go.mod"; exit 1; }
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
BIN="$CACHE/kube-v$K8S-etcd-v$ETCD/bin"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS=-mod=mod
JOBS="${STRATA_GO_JOBS:-2}"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

have() { # have <binary> <expected substring of --version>
  local v=(--version); [[ $1 == kubectl ]] && v=(version --client)
  local out
  [[ -x "$BIN/$1" ]] && out=$("$BIN/$1" "${v[@]}" 2>/dev/null) && [[ $out == *"$2"* ]]
}

MAJOR=${K8S%%.*}; MINOR=${K8S#*.}; MINOR=${MINOR%%.*}
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF+=" -X $p.gitVersion=v$K8S -X $p.gitMajor=$MAJOR -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
  LDF+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done
TAGS=selinux,notest,grpcnotrace

todo_static=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  have "$b" "v$K8S" || todo_static+=("k8s.io/kubernetes/cmd/$b")
done
if ((${#todo_static[@]})); then
  log "building ${todo_static[*]##*/} v$K8S into $BIN (cold: ~5 min on 2 cores, ~7.5 min with kubelet+etcd; warm GOCACHE: ~10 s)…"
  t0=$(date +%s)
  (cd "$KB/k8s" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -tags "$TAGS" -ldflags "$LDF" -o "$BIN/" "${todo_static[@]}")
  log "  done in $(( $(date +%s) - t0 ))s"
fi
if ! have kubelet "v$K8S"; then
  log "building kubelet v$K8S (cgo; ~2-3 min cold)…"
  t0=$(date +%s)
  (cd "$KB/k8s" && go build -p "$JOBS" -trimpath -tags "$TAGS" -ldflags "$LDF" -o "$BIN/" k8s.io/kubernetes/cmd/kubelet)
  log "  done in $(( $(date +%s) - t0 ))s"
fi
if ! have etcd "$ETCD"; then
  log "building etcd v$ETCD (~30 s cold)…"
  t0=$(date +%s)
  (cd "$KB/etcd" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  log "  done in $(( $(date +%s) - t0 ))s"
fi
for b in "${BINS[@]}"; do [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b after build"; exit 1; }; done
log "binaries up to date in $BIN (kubernetes v$K8S, etcd v$ETCD)"
# The cluster's NetworkPolicy agent (own version-keyed cache dir; cluster-up.sh also calls this).
"$HERE/build-netpol.sh" >/dev/null
echo "$BIN"
