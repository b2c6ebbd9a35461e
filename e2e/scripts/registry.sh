#!/usr/bin/env bash
# Stop or start the local cluster's registry (docker-registry), keeping its storage and port:
# the e2e fault tests take it away mid-build and bring it back.  Usage: registry.sh stop|start
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${STRATA_E2E_STATE:-$HERE/../.state}"
. "$STATE/env"
D="$STRATA_E2E_DIR"
pid=$(cat "$D/pids/registry" 2>/dev/null || echo 0)
case "${1:-}" in
  stop)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true ;;
  start)
    kill -0 "$pid" 2>/dev/null && exit 0
    # The daemon must not inherit our descriptors (a caller's `flock` lock would live on in it).
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null; done
    setsid docker-registry serve "$D/registry.yml" >> "$D/logs/registry.log" 2>&1 < /dev/null &
    echo $! > "$D/pids/registry"
    for _ in $(seq 1 100); do curl -sf "http://$STRATA_REGISTRY/v2/" >/dev/null && exit 0; sleep 0.1; done
    echo "registry.sh: the registry did not come back; see $D/logs/registry.log" >&2; exit 1 ;;
  *) echo "usage: registry.sh stop|start" >&2; exit 2 ;;
esac
