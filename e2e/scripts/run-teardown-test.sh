#!/usr/bin/env bash
# tests/teardown.rs: starts a cluster of its own and checks that cluster-down leaves no process,
# mount or network state behind. Only one cluster runs per machine, so it needs none to be up.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}"
export STRATA_E2E=1
[[ ! -f "$ROOT/e2e/.state/env" ]] || { echo "run-teardown-test: a cluster is up (make e2e-down first)" >&2; exit 1; }
cd "$ROOT"
if [[ -z "${STRATA_BIN:-}" ]]; then
  cargo build -q -p strata-controller --bin strata
  export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
fi
cargo build -q -p strata-e2e --bin strata-e2e-mco
exec cargo test -p strata-e2e --test teardown "$@"
