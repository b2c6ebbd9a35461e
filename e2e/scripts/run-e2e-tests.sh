#!/usr/bin/env bash
# Run the e2e tests against a real cluster (needs root). If `make e2e-up` already started one, the
# tests reuse it; otherwise each test binary starts its own and stops it when it exits (see
# e2e/src/lib.rs), and tests/teardown.rs checks that cluster-down leaves nothing behind.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/target}"
export STRATA_E2E=1
[[ $(id -u) == 0 ]] || { echo "run-e2e-tests: must run as root" >&2; exit 1; }
cd "$ROOT"
# The builder image needs the strata binary; build it if the workspace can (best effort).
if [[ -z "${STRATA_BIN:-}" ]]; then
  if cargo build -q -p strata-controller --bin strata; then
    export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
  else
    echo "run-e2e-tests: could not build the strata binary; the builder image will be skipped" >&2
  fi
fi
"$HERE/build-kube.sh" >/dev/null
exec cargo test --no-fail-fast -p strata-e2e "$@" -- --test-threads=2
