#!/usr/bin/env bash
# make bench: build strata and strata-bench as release builds (what users run), reuse the running
# local cluster or start one and stop it at the end (e2e/scripts/with-cluster.sh, as make demo and
# the e2e runner do), then measure. strata-bench takes the cluster lock the e2e tests share for each
# section, so others' tests can run in between. Writes bench/RESULTS.md and bench/results.json.
# Extra arguments go to strata-bench (e.g. --runs 1 --skip mco,scale; see `strata-bench --help`).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$ROOT/e2e/scripts/target-dir.sh")}"
START=$(date +%s)
# shellcheck source-path=SCRIPTDIR source=../e2e/scripts/lib.sh
. "$ROOT/e2e/scripts/lib.sh"
[[ $(id -u) == 0 ]] || { echo "bench: needs root (the local cluster runs a kubelet and containerd)" >&2; exit 1; }

say "installing missing Debian packages and building Kubernetes from source if not cached" >&2
e2e/ci-setup.sh
say "building strata, strata-bench and the MCO stand-in (release; cold: ~15 min on 2 cores)" >&2
cargo build -q --locked --release -p strata-controller --bin strata
cargo build -q --locked --release -p strata-bench
# cluster-up.sh finds the MCO stand-in next to STRATA_BIN.
cargo build -q --locked --release -p strata-e2e --bin strata-e2e-mco
# The cluster's builder image is made from STRATA_BIN when cluster-up starts it.
export STRATA_BIN="$CARGO_TARGET_DIR/release/strata"
BENCH="$CARGO_TARGET_DIR/release/strata-bench"

# A cluster started here leaves out the second node: no section uses it, and on 2 cores its
# kubelet, containerd and policy agent take time from what is measured (a reused cluster is as it is).
export STRATA_SECOND_NODE="${STRATA_SECOND_NODE:-0}"
say "measuring on the local cluster (reused, or started and stopped around the run)" >&2
status=0
e2e/scripts/with-cluster.sh "$BENCH" --strata-bin "$STRATA_BIN" "$@" || status=$?
if ((status)); then
  say "the bench failed (see bench/RESULTS.md for the sections that did)" >&2
fi
say "done in $(( $(date +%s) - START )) s (results: bench/RESULTS.md, bench/results.json)" >&2
exit $status
