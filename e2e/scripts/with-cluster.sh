#!/usr/bin/env bash
# Run a command against the local cluster: reuse the running one (e2e/.state/env whose API server
# answers /readyz), or start one with cluster-up.sh and stop it with cluster-down.sh when the
# command ends — also when it fails or on Ctrl-C/TERM — unless --keep is given.
#
#   with-cluster.sh [--keep] [--lock] [--] COMMAND [ARGS...]
#     --keep   leave a cluster this script started running (make demo: it stays up for a look around)
#     --lock   hold the cluster lock (STRATA_CLUSTER_LOCK, default /tmp/strata-cluster.lock) for the
#              whole run: start, command, stop (for a command that uses the cluster throughout)
#
# COMMAND runs with the cluster's env file sourced (KUBECONFIG, PATH with kubectl, STRATA_REGISTRY,
# the images …) and STRATA_CLUSTER_STARTED=1 when this script started the cluster, 0 when it reused
# one. The exit status is COMMAND's (or cluster-up.sh's when the cluster could not start).
# Used by `make bench` (bench/run.sh); `make demo` and the e2e runner can use it the same way:
#   with-cluster.sh --keep true                  # make demo: make sure a cluster runs, leave it up
#   with-cluster.sh cargo test -p strata-e2e …   # e2e runner: tests on a reused or a fresh cluster
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="${STRATA_E2E_STATE:-$ROOT/e2e/.state}"
KEEP=0
LOCK=0
while (($#)); do
  case "$1" in
    --keep) KEEP=1; shift ;;
    --lock) LOCK=1; shift ;;
    --) shift; break ;;
    -*) echo "with-cluster: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: with-cluster.sh [--keep] [--lock] [--] COMMAND [ARGS...]" >&2; exit 2; }
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=with-cluster

if ((LOCK)); then
  lockfile="${STRATA_CLUSTER_LOCK:-/tmp/strata-cluster.lock}"
  log "waiting for $lockfile"
  args=()
  ((KEEP)) && args+=(--keep)
  exec flock "$lockfile" "$0" "${args[@]}" -- "$@"
fi

running() {
  [[ -f "$STATE/env" ]] || return 1
  # A subshell: the env file's PATH and KUBECONFIG only for this check.
  ( . "$STATE/env" && kubectl get --raw /readyz >/dev/null 2>&1 )
}

STARTED=0
if running; then
  log "reusing the running local cluster ($STATE/env)"
else
  log "starting the local cluster (cluster-up.sh)"
  # Stop what we start, however we leave; a failed start tears itself down.
  if ((!KEEP)); then
    trap 'log "stopping the cluster this run started"; "$HERE/cluster-down.sh" >&2 || log "cluster-down.sh failed"' EXIT
  fi
  trap 'exit 130' INT
  trap 'exit 143' TERM
  "$HERE/cluster-up.sh" >&2
  STARTED=1
fi
. "$STATE/env"
export STRATA_CLUSTER_STARTED=$STARTED
status=0
"$@" || status=$?
exit $status
