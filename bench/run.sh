#!/usr/bin/env bash
# make bench: build strata and strata-bench, reuse the running local cluster (or start one and stop
# it at the end, like make demo), then run the measurements under the cluster lock that the e2e
# tests share. Writes bench/RESULTS.md. Extra arguments go to strata-bench (e.g. --runs 3 --scale 0).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$ROOT/e2e/scripts/target-dir.sh")}"
LOCK="${STRATA_CLUSTER_LOCK:-/tmp/strata-cluster.lock}"
START=$(date +%s)
say() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }
[[ $(id -u) == 0 ]] || { echo "bench: needs root (the local cluster runs a kubelet and containerd)" >&2; exit 1; }

say "installing missing Debian packages and building Kubernetes from source if not cached"
e2e/ci-setup.sh
say "building strata and strata-bench"
cargo build -q --locked -p strata-controller --bin strata
cargo build -q --locked -p strata-bench
export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
BENCH="$CARGO_TARGET_DIR/debug/strata-bench"

STARTED=0
if [[ -f e2e/.state/env ]] && . e2e/.state/env && kubectl get --raw /readyz >/dev/null 2>&1; then
  say "reusing the running local cluster (e2e/.state/env)"
else
  say "starting the local cluster (stopped again at the end)"
  e2e/scripts/cluster-up.sh
  STARTED=1
fi
. e2e/.state/env
stop() { if ((STARTED)); then say "stopping the cluster this run started"; e2e/scripts/cluster-down.sh || true; fi; }
trap stop EXIT

say "measuring (under $LOCK; waits while others' e2e tests hold it)"
status=0
flock "$LOCK" "$BENCH" "$@" || status=$?
if ((status)); then
  say "the bench failed; cleaning up its objects and redeploying the controller"
  flock "$LOCK" "$BENCH" cleanup || true
fi
say "done in $(( $(date +%s) - START )) s (results: bench/RESULTS.md)"
exit $status
