#!/usr/bin/env bash
# Run the e2e tests against a real cluster (needs root). If `make e2e-up` already started one, the
# tests reuse it and it stays up. Otherwise this script starts one cluster for all test binaries
# (one binary's cluster tearing down while the next binary reuses it would race), stops it at the
# end, and then runs tests/teardown.rs, which starts its own cluster and checks that cluster-down
# leaves nothing behind.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}"
export STRATA_E2E=1
[[ $(id -u) == 0 ]] || { echo "run-e2e-tests: must run as root" >&2; exit 1; }
cd "$ROOT"
# The builder image needs the strata binary; build it if the workspace can (best effort).
if [[ -z "${STRATA_BIN:-}" ]]; then
  cargo build -q -p strata-controller --bin strata
  export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
fi
cargo build -q -p strata-e2e --bin strata-e2e-mco
"$HERE/build-kube.sh" >/dev/null
cargo test --no-run -q -p strata-e2e

# The cluster: reused when one runs (it stays up), else started for all test binaries and stopped
# at the end (with-cluster.sh, as make demo and make bench use it). The suite runs on the small
# release base; a reused cluster's own base (make demo's CoreOS-like one) is named again after it.
TEARDOWN=cluster_down_leaves_no_process_mount_or_network_state
status=0
"$HERE/with-cluster.sh" sh -c 'exec "$0" "$STRATA_OS_BASE_IMAGE" "$@"' "$HERE/on-release-base.sh" \
  cargo test --no-fail-fast -p strata-e2e "$@" -- --test-threads=2 --skip "$TEARDOWN" || status=$?
# tests/teardown.rs starts a cluster of its own and checks that cluster-down leaves nothing behind:
# it runs once no cluster is up (`make teardown-test` after `make e2e-down`, as .ci/run does).
# A filtered run (arguments: `--test rollout`, a test name) runs only what it names.
if [[ -f "$ROOT/e2e/.state/env" ]]; then
  echo "run-e2e-tests: $TEARDOWN not run: a cluster is up (make e2e-down, then make teardown-test)" >&2
elif (($#)); then
  echo "run-e2e-tests: $TEARDOWN not run: a filtered run ($*); make teardown-test runs it" >&2
else
  "$HERE/run-teardown-test.sh" || status=$?
fi
exit $status
