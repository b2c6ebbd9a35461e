#!/usr/bin/env bash
# on-release-base.sh IMAGE COMMAND [ARGS...]: run COMMAND with IMAGE named as the release's OS base
# (machine-config-osimageurl baseOSContainerImage), then name the base the cluster had again,
# whatever COMMAND did. The e2e suite runs on the small base it expects, in a cluster `make demo`
# left on the CoreOS-like one, and leaves it as it found it. Run inside with-cluster.sh (KUBECONFIG
# and kubectl from the cluster's env file).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=on-release-base
(($# >= 2)) || die "usage: on-release-base.sh IMAGE COMMAND [ARGS...]"
image=$1; shift
before=$(kubectl -n openshift-machine-config-operator get configmap machine-config-osimageurl -o jsonpath='{.data.baseOSContainerImage}')
[[ -n "$before" ]] || die "machine-config-osimageurl has no baseOSContainerImage"
if [[ "$before" != "$image" ]]; then
  log "the release base is $before; naming $image for the run"
  name_release_base "$image"
fi
status=0
"$@" || status=$?
if [[ "$before" != "$image" ]]; then
  log "naming the release base $before again"
  name_release_base "$before"
fi
exit $status
