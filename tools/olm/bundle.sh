#!/usr/bin/env bash
# The OLM bundle (bundle/) from the manifests, and its check.
#   tools/olm/bundle.sh generate [REPO]   write REPO/bundle (default REPO: this checkout)
#   tools/olm/bundle.sh check [REPO]      regenerate into a temp dir, fail on any difference from
#                                         REPO/bundle (drift), then validate REPO/bundle
#   tools/olm/bundle.sh validate DIR      validate a bundle directory
# Needs Go (builds tools/olm once, cached: tools/olm/build.sh) and kubectl (`kubectl kustomize`):
# $KUBECTL, else kubectl on PATH, else the one `make e2e-setup` built into the strata cache.
# Without Go or kubectl it says SKIPPED and exits 0, except under `make test`
# (STRATA_REQUIRE_PREREQUISITES=1) and CI (CI=true), where it fails.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../../e2e/scripts/lib.sh
. "$HERE/../../e2e/scripts/lib.sh"
LOG_NAME=bundle
missing() {
  if [[ "${CI:-}" == true || "${STRATA_REQUIRE_PREREQUISITES:-}" == 1 ]]; then
    log "FAILED: $1 (make test and CI never skip)"; exit 1
  fi
  log "SKIPPED: $1"; exit 0
}
cmd="${1:-}"; shift || true
case "$cmd" in generate|check|validate) ;; *) sed -n '2,9p' "${BASH_SOURCE[0]}" >&2; exit 2;; esac

command -v go >/dev/null || missing "go is not installed (Go >= 1.26 builds tools/olm)"
BIN=$("$HERE/build.sh" | tail -n1)

if [[ "$cmd" == validate ]]; then
  exec "$BIN" validate "${1:?bundle directory}"
fi

REPO="$(cd "${1:-$HERE/../..}" && pwd)"
KUBECTL="${KUBECTL:-}"
if [[ -n "$KUBECTL" ]]; then
  KUBECTL=$(command -v "$KUBECTL" || true)
else
  KUBECTL=$(command -v kubectl || ls -1d "${XDG_CACHE_HOME:-$HOME/.cache}"/strata/kube-*/bin/kubectl 2>/dev/null | sort -V | tail -n1 || true)
fi
[[ -n "$KUBECTL" && -x "$KUBECTL" ]] || missing "kubectl not found (set KUBECTL, or run make e2e-setup)"

t0=$(date +%s%N)
if [[ "$cmd" == generate ]]; then
  "$BIN" generate --repo "$REPO" --out "$REPO/bundle" --kubectl "$KUBECTL"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" generate --repo "$REPO" --out "$tmp/bundle" --kubectl "$KUBECTL"
if ! diff -ru "$REPO/bundle" "$tmp/bundle" >"$tmp/diff"; then
  cat "$tmp/diff"
  log "FAILED: bundle/ differs from what the manifests generate (above: - committed, + generated). Run 'make bundle' and commit bundle/."
  exit 1
fi
log "bundle/ matches the manifests"
"$BIN" validate "$REPO/bundle" || { log "FAILED: validation errors in bundle/ (above)"; exit 1; }
log "check passed in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
