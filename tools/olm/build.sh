#!/usr/bin/env bash
# Build strata-olm (this Go module: the bundle generator and validator, on operator-framework/api
# from the Go module proxy) into a cache outside the repo, keyed by what goes into the binary:
# go.mod, go.sum, the *.go sources, this script (its build flags) and the Go version. A warm call
# only hashes and checks.
# Prints the binary's path on the last line of stdout; logs to stderr.
#   STRATA_GO_JOBS=N   go build -p (default 2)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../e2e/scripts/lib.sh
. "$HERE/../../e2e/scripts/lib.sh"
LOG_NAME=olm-build

command -v go >/dev/null || { log "go is not installed (Go >= 1.26 is needed to build tools/olm)"; exit 127; }
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
GOVERSION=$(go env GOVERSION)
KEY=$( { echo "$GOVERSION"; cd "$HERE" && cat build.sh go.mod go.sum $(LC_ALL=C ls *.go); } | sha256sum | cut -c1-16)
DIR="$CACHE/olm-$KEY"
BIN="$DIR/strata-olm"
if [[ -x "$BIN" ]]; then
  log "cached: $BIN (key $KEY: $GOVERSION, go.mod, go.sum, sources, build.sh)"
  echo "$BIN"; exit 0
fi
mkdir -p "$DIR"
# One build at a time per key (parallel tests and make targets share the cache).
exec 9>"$DIR/.lock"
flock 9
if [[ -x "$BIN" ]]; then
  log "cached: $BIN (built by a concurrent run)"
  echo "$BIN"; exit 0
fi
mkdir -p "$GOMODCACHE" "$GOCACHE"
log "building $BIN (key $KEY, $GOVERSION, go build -p ${STRATA_GO_JOBS:-2}; cold: a few minutes on 2 cores)…"
t0=$(date +%s)
(cd "$HERE" && go build -p "${STRATA_GO_JOBS:-2}" -trimpath -ldflags "-s -w" -o "$BIN.tmp" .)
mv "$BIN.tmp" "$BIN"
log "  done in $(( $(date +%s) - t0 ))s"
echo "$BIN"
