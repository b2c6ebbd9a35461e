#!/usr/bin/env bash
# Build the NetworkPolicy agent of the local cluster, sigs.k8s.io/kube-network-policies (pinned in
# e2e/kube-build/kube-network-policies/go.mod), from the Go module proxy into a version-keyed cache
# outside the repo, like build-kube.sh. Prints the binary's path on the last line of stdout.
#   STRATA_NETPOL_BIN=/path     use an existing binary instead (only checked for presence)
#   STRATA_GO_JOBS=N            go build -p (default 2)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KB="$HERE/../kube-build/kube-network-policies"
MOD=sigs.k8s.io/kube-network-policies
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=build-netpol

if [[ -n "${STRATA_NETPOL_BIN:-}" ]]; then
  [[ -x "$STRATA_NETPOL_BIN" ]] || { log "STRATA_NETPOL_BIN=$STRATA_NETPOL_BIN is not an executable"; exit 1; }
  log "using existing binary $STRATA_NETPOL_BIN"
  echo "$STRATA_NETPOL_BIN"; exit 0
fi

VER=$(awk -v m="$MOD" '$1==m {print $2; exit}' "$KB/go.mod")
[[ -n "$VER" ]] || { log "cannot read the $MOD pin from $KB/go.mod"; exit 1; }
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
BIN="$CACHE/kube-network-policies-$VER/bin"
OUT="$BIN/kube-network-policies"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS=-mod=mod
JOBS="${STRATA_GO_JOBS:-2}"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

# The binary has no --version flag: read the module version Go embedded in it (`go version -m`).
have() { # have [binary]
  local b=${1:-$OUT}
  [[ -x "$b" ]] && go version -m "$b" 2>/dev/null | awk -v m="$MOD" -v v="$VER" '($1=="dep" || $1=="mod") && $2==m && $3==v {f=1} END {exit !f}'
}
if ! have; then
  log "building $MOD $VER into $BIN (cold: ~4.5 CPU-minutes, 5.5 min wall measured on 2 busy cores; warm: seconds)…"
  t0=$(date +%s)
  (cd "$KB" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$OUT.tmp" "$MOD/cmd")
  have "$OUT.tmp" || { rm -f "$OUT.tmp"; log "the binary built does not embed $MOD $VER"; exit 1; }
  mv "$OUT.tmp" "$OUT"
  log "  done in $(( $(date +%s) - t0 ))s"
fi
log "kube-network-policies $VER up to date: $OUT"
echo "$OUT"
