#!/usr/bin/env bash
# Deploy the Strata controller into the running local cluster from manifests/ (overlays/local):
# its image is the locally built builder image (buildah + strata), pushed to the cluster's registry
# and used by digest; its ServiceAccount and least-privilege RBAC come from manifests/base.
# Used by `make demo`, the e2e tests and `make bench`. Idempotent. Needs e2e/.state/env.
#   STRATA_BIN        the strata binary to put in the image (default: the workspace's debug build)
#   STRATA_REPLICAS   controller replicas (default: the manifests' 2)
#   STRATA_CONTROLLER_ARGS  extra controller flags, space-separated (e.g. "--build-history=3")
#   STRATA_BUILDER_IMAGE_OVERRIDE  image the builder Jobs run (default: the controller's own image);
#                     `make bench` sets a no-op builder here for its 500-pool scale run
#   STRATA_METRICS_TLS=1  add manifests/components/metrics-tls (/metrics over TLS for authorised
#                     callers; the Secret strata-controller-metrics-tls must exist)
# Prints the builder image reference (digest-pinned) as its last line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
STATE="${STRATA_E2E_STATE:-$ROOT/e2e/.state}"
[[ -f "$STATE/env" ]] || { echo "deploy-controller: no cluster ($STATE/env missing); run make e2e-up" >&2; exit 1; }
. "$STATE/env"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=deploy-controller

# The image (buildah + strata) is rebuilt only when the strata binary changed.
STRATA_IMAGES_OUT="$STATE/controller-images.env" "$HERE/build-images.sh" --push "$STRATA_REGISTRY" >"$STATE/build-images.log" 2>&1 ||
  { cat "$STATE/build-images.log" >&2; exit 1; }
BUILDER=$(sed -n 's/^STRATA_BUILDER_IMAGE=//p' "$STATE/controller-images.env")
[[ -n "$BUILDER" ]] || { echo "deploy-controller: no builder image was built (is STRATA_BIN set?)" >&2; exit 1; }
ARGS="[controller"
# each a YAML double-quoted string: its backslashes and quotes escaped (JSON values, e.g.
# --builder-tolerations=[{"key":…}])
read -ra EXTRA_ARGS <<< "${STRATA_CONTROLLER_ARGS:-}"  # split on spaces, no globbing
for a in "${EXTRA_ARGS[@]}"; do a=${a//\\/\\\\}; ARGS+=", \"${a//\"/\\\"}\""; done
ARGS+="]"

DEPLOY="$STATE/deploy"
mkdir -p "$DEPLOY"
REL=$(realpath --relative-to="$DEPLOY" "$ROOT/manifests/overlays/local")
COMPONENTS=""
if [[ "${STRATA_METRICS_TLS:-}" == 1 ]]; then
  COMPONENTS=$(realpath --relative-to="$DEPLOY" "$ROOT/manifests/components/metrics-tls")
fi
# The kustomization and the controller's patch from e2e/manifests/deploy-*.yaml; the controller's
# NetworkPolicy patch adds a port per server it reaches. Builder pods' policy is the controller's
# own (--builder-egress): the cluster's networks and the package repository are its settings.
REPLICAS=${STRATA_REPLICAS:-2}
# The package repository's host:port (RUN steps install from it), for --builder-egress-allow.
package_repo_endpoint() {
  local repo=${STRATA_PACKAGE_REPO#*://}
  echo "${repo%%/*}"
}
render "$ROOT/e2e/manifests/deploy-kustomization.yaml" REL="$REL" COMPONENTS="$COMPONENTS" \
  IMAGE_NAME="${BUILDER%@*}" IMAGE_DIGEST="${BUILDER#*@}" > "$DEPLOY/kustomization.yaml"
render "$ROOT/e2e/manifests/deploy-controller-patch.yaml" REPLICAS="$REPLICAS" ARGS="$ARGS" \
  BUILDER_IMAGE="${STRATA_BUILDER_IMAGE_OVERRIDE:-$BUILDER}" STRATA_REGISTRY="$STRATA_REGISTRY" \
  CPU_REQUEST="${STRATA_BUILDER_CPU_REQUEST:-200m}" NODE_IP="$STRATA_E2E_NODE_IP" \
  API_PORT="${STRATA_E2E_APISERVER##*:}" CLUSTER_NETWORKS="$STRATA_E2E_CLUSTER_NETWORKS" \
  EGRESS_ALLOW="$(package_repo_endpoint)" > "$DEPLOY/controller-patch.yaml"
# The controller reaches the API server, the registry and the proxy on the node's address, on ports
# of their own (the OpenShift environment's TLS registries only through the proxy).
PORTS=("${STRATA_E2E_APISERVER##*:}" "${STRATA_REGISTRY##*:}")
if [[ -n "${STRATA_PROXY:-}" ]]; then
  port=${STRATA_PROXY%/}; PORTS+=("${port##*:}")
fi
printf -- '- op: add\n  path: /spec/egress/1/ports/-\n  value: {protocol: TCP, port: %s}\n' "${PORTS[@]}" \
  > "$DEPLOY/controller-egress-patch.yaml"
log "applying manifests/overlays/local (image $BUILDER)"
kubectl apply --server-side --force-conflicts -k "$DEPLOY" >/dev/null
kubectl wait --for=condition=Established crd/machineosconfigs.strata.dev crd/machineosbuilds.strata.dev --timeout=60s >/dev/null
# The push Secret the examples name (the local registry needs no credentials), opted in for the
# examples' MachineOSConfig (Strata uses a Secret only for the configs its annotation names).
kubectl -n strata-system create secret docker-registry push-secret --docker-server="$STRATA_REGISTRY" \
  --docker-username=demo --docker-password=demo --dry-run=client -o yaml |
  kubectl annotate --local -f - strata.dev/allowed-machine-os-configs=worker -o yaml |
  kubectl apply --server-side --force-conflicts -f - >/dev/null
kubectl -n strata-system rollout status deployment/strata-controller --timeout=180s >&2
# `rollout status` is done while replaced pods still terminate, and a replaced leader reconciles
# with its old settings until it exits: wait until only the new pods are left.
want=$REPLICAS
for _ in $(seq 1 120); do
  have=$(kubectl -n strata-system get pods -l app.kubernetes.io/name=strata-controller -o name | wc -l)
  ((have == want)) && break
  sleep 0.5
done
echo "$BUILDER"
