#!/usr/bin/env bash
# make demo: build Strata, start the local real cluster, deploy the controller in it from
# manifests/, name the CoreOS-like OS image as the release's base, apply
# e2e/examples/package-install.yaml (packages from the local signed repository), wait for the build
# (which boots the image in a VM before the pin: the boot check), print the pinned MachineConfig.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}"
START=$(date +%s)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
[[ $(id -u) == 0 ]] || { echo "demo: needs root (it runs a kubelet and containerd)" >&2; exit 1; }

say "installing missing Debian packages and building Kubernetes from source if not cached (the first time takes minutes: docs/measurements.md)"
e2e/ci-setup.sh

say "building strata"
cargo build -p strata-controller --bin strata -p strata-e2e --bin strata-e2e-mco
export STRATA_BIN="$CARGO_TARGET_DIR/debug/strata"

say "the local cluster: reused when one runs, else started and left up (etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, registry, the CoreOS-like OS image, a package repository and the OpenShift environment: first time several minutes more)"
"$HERE/with-cluster.sh" --keep true
. e2e/.state/env
say "deploying the controller from manifests/ (its image: buildah + strata, built locally)"
e2e/scripts/deploy-controller.sh >/dev/null

say "the release's OS base: the CoreOS-like image ($STRATA_OS_IMAGE)"
name_release_base "$STRATA_OS_IMAGE"

say "applying e2e/examples/package-install.yaml (push spec: the local registry; packages: $STRATA_PACKAGE_REPO)"
sed -e "s|renderedImagePushSpec: .*|renderedImagePushSpec: $STRATA_REGISTRY/strata-demo/os-image:latest|" \
    -e "s|ARG PACKAGE_REPO=.*|ARG PACKAGE_REPO=$STRATA_PACKAGE_REPO|" e2e/examples/package-install.yaml |
  kubectl apply --server-side --force-conflicts -f -

say "waiting for the build and its boot check (several minutes: the image boots in software emulation; Ctrl-C is safe: the controller keeps going)"
last=""
for _ in $(seq 1 600); do
  build=$(kubectl get smosc worker -o jsonpath='{.status.machineOSBuild.name}' 2>/dev/null || true)
  phase=""
  [[ -n "$build" ]] && phase=$(kubectl get smosb "$build" -o jsonpath='{.status.conditions[?(@.status=="True")].type}' 2>/dev/null || true)
  image=$(kubectl get smosc worker -o jsonpath='{.status.currentImagePullSpec}' 2>/dev/null || true)
  line="build ${build:-<not yet>}: ${phase:-pending}"
  [[ "$line" != "$last" ]] && { echo "    $line"; last=$line; }
  [[ -n "$image" && "$phase" == Succeeded ]] && break
  if [[ "$phase" == Failed ]]; then
    kubectl get smosb "$build" -o jsonpath='{.status.failure}'; echo
    exit 1
  fi
  sleep 2
done
[[ -n "$image" ]] || { echo "demo: the build did not finish in 20 minutes; see kubectl -n strata-system logs deploy/strata-controller" >&2; exit 1; }

say "done in $(( $(date +%s) - START )) s"
echo "    boot check: $(kubectl get smosb "$build" -o jsonpath='{.status.bootCheck}')"
kubectl get smosc,smosb -o wide
echo
kubectl get machineconfig "$(kubectl get mc -l strata.dev/machine-os-config=worker -o name | head -1 | cut -d/ -f2)" -o yaml
cat <<MSG

Look around:
  . e2e/.state/env                                  # kubectl, KUBECONFIG for this cluster
  kubectl describe smosc worker                      # conditions and Events
  kubectl get smosb -o wide                          # builds: phase, times, image, failure message
  kubectl -n strata-system logs deploy/strata-controller
  kubectl -n strata-system get jobs,pods            # builder Jobs and pods
  kubectl -n strata-system get cm -l strata.dev/machine-os-config=worker -o yaml   # rendered Containerfile
Edit the fragment (kubectl edit smosc worker) to see a new build and a new digest.
Tear down: make e2e-down
MSG
