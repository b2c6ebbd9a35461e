#!/usr/bin/env bash
# The CoreOS-like image's "next release" (e2e/os-image/next_release.py): the base with five layers
# changed, as a z-stream that updated four packages and the OS version; the other 43 layers are the
# same blobs. Release-upgrade tests and the bench's machines section name it in the release.
#
# Usage: os-image-next.sh BASE_OCI_LAYOUT [--push HOST:PORT/REPO:TAG]
#   stdout, last line: with --push the digest-pinned reference, else the layout directory.
# Cache: ${XDG_CACHE_HOME:-~/.cache}/strata/os-image-next-<key> (key: the base's index and the
# deriving script; blobs shared with the base by hard links; ~10 s cold).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=os-image-next
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
BASE=${1:-}; shift || true
PUSH=""
while (($#)); do
  case "$1" in
    --push) PUSH="$2"; shift 2 ;;
    *) echo "os-image-next.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -f "$BASE/index.json" ]] || { log "no OCI layout at '$BASE' (usage: os-image-next.sh BASE_OCI_LAYOUT [--push REF])"; exit 2; }
KEY=$(cat "$BASE/index.json" "$ROOT/e2e/os-image/next_release.py" | sha256sum | cut -c1-16)
OUT="$CACHE/os-image-next-$KEY"
mkdir -p "$CACHE"
# One writer at a time (two checkouts' clusters coming up together), as build-os-image.sh.
exec 9> "$CACHE/os-image.lock"
flock 9
if [[ ! -f "$OUT/done" ]]; then
  log "deriving the next release from $BASE (five layers rewritten, ~10 s)…"
  rm -rf "$OUT"; mkdir -p "$OUT"
  python3 "$ROOT/e2e/os-image/next_release.py" --base "$BASE" --out "$OUT/oci" > "$OUT/summary.json"
  touch "$OUT/done"
  # Older derivations go (their blobs are links: only the rewritten layers free space).
  find "$CACHE" -maxdepth 1 -name 'os-image-next-*' -not -path "$OUT" -exec rm -rf {} +
fi
if [[ -n "$PUSH" ]]; then
  df=$(mktemp); trap 'rm -f "$df"' EXIT
  skopeo copy -q --dest-tls-verify=false --preserve-digests --digestfile "$df" "oci:$OUT/oci:latest" "docker://$PUSH" >&2
  [[ "$(cat "$df")" == "$(jq -r .manifest "$OUT/summary.json")" ]] || { log "pushed digest $(cat "$df") differs from the layout's"; exit 1; }
  echo "${PUSH%:*}@$(cat "$df")"
else
  echo "$OUT/oci"
fi
