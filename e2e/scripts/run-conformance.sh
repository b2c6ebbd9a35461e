#!/usr/bin/env bash
# `make conformance`: Strata checked against OpenShift's own files in ../shared/fixtures (never copied
# into this repository; STRATA_SHARED_DIR names another place): OpenShift's MachineOSConfig
# validation suite against our schema and on the real API server, the local cluster's stand-in
# CRDs against OpenShift's CRDs, the real-world layering Containerfiles through the renderer.
# These tests are `#[ignore = "conformance: …"]` in `cargo test`; here they run with `--ignored`,
# and a missing fixture fails them. The ones that need a cluster reuse the running local cluster or
# start one for the run (with-cluster.sh). Needs root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}"
SHARED="${STRATA_SHARED_DIR:-$ROOT/../shared}"
[[ -d "$SHARED/fixtures" ]] || {
  echo "conformance: $SHARED/fixtures is absent: these checks compare Strata with OpenShift's own CRDs and suites kept there (set STRATA_SHARED_DIR)" >&2
  exit 1
}
export STRATA_SHARED_DIR="$(cd "$SHARED" && pwd)"
export STRATA_E2E=1 STRATA_REQUIRE_PREREQUISITES=1
cd "$ROOT"
if [[ -z "${STRATA_BIN:-}" ]]; then
  cargo build -q -p strata-controller --bin strata
  export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"
fi
cargo build -q -p strata-e2e --bin strata-e2e-mco
cargo test --no-run -q --workspace --locked
"$HERE/with-cluster.sh" cargo test --workspace --locked -- --ignored --test-threads=2
