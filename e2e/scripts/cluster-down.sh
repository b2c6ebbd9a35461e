#!/usr/bin/env bash
# Stop the cluster started by cluster-up.sh: pods, kubelet, containerd (and its shims), the
# NetworkPolicy agent and its netfilter rules, control plane, registry; unmount everything under the
# cluster dir, remove CNI netns/veth/bridge/host-local state, kubelet cgroups, and the temp dir.
# Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="${STRATA_E2E_STATE:-$ROOT/e2e/.state}"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=cluster-down
BRIDGE=strata0
CNI_NET=strata-e2e

mkdir -p "$STATE"
exec 9>"$STATE/lock"
flock -w 300 9 || { log "timed out waiting for $STATE/lock"; exit 1; }
D="${1:-$(cat "$STATE/cluster-dir" 2>/dev/null || true)}"
if [[ -z "$D" || ! -d "$D" ]]; then
  "$HERE/openshift-env.sh" down || true  # its netfilter rules, should they have outlived the dir
  log "no cluster recorded in $STATE"; rm -f "$STATE/env" "$STATE/cluster-dir"; exit 0
fi
case "$D" in /tmp/strata-e2e.*) ;; *) log "refusing to tear down unexpected dir '$D'"; exit 1 ;; esac
rm -f "$STATE/env"
# 0. the OpenShift environment (proxy, TLS registries, HTTPS package repository, service-CA stand-in,
#    filter/STRATA-OSENV)
"$HERE/openshift-env.sh" down "$D" || log "WARNING: could not stop the OpenShift environment"
# 0b. the pool's machines (VMs, their DHCP, taps and bridge)
"$HERE/machines.sh" down --dir "$D" || log "WARNING: could not stop the machines"
CSOCK="$D/containerd/containerd.sock"
PID_DIR="$D/pids"  # stop_started
pid() { cat "$D/pids/$1" 2>/dev/null || true; }
ctrk() { ctr --address "$CSOCK" -n k8s.io "$@"; }

# 1. let the kubelet tear pods down properly (CNI DEL, volume unmounts) while everything still runs
KUBECTL="$(cat "$D/bin-dir" 2>/dev/null || echo /nonexistent)/kubectl"
if [[ -f "$D/admin.kubeconfig" && -x "$KUBECTL" ]] && kill -0 "$(pid kubelet)" 2>/dev/null; then
  "$KUBECTL" --kubeconfig "$D/admin.kubeconfig" --request-timeout=10s \
    delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 150); do
    if [[ "$(ctrk tasks ls -q 2>/dev/null | wc -l)" == 0 ]]; then break; fi; sleep 0.2
  done
fi
# the directories of this cluster's provisioned volumes (removed once nothing uses them, below)
PV_DIRS=()
if [[ -f "$D/admin.kubeconfig" && -x "$KUBECTL" ]]; then
  mapfile -t PV_DIRS < <("$KUBECTL" --kubeconfig "$D/admin.kubeconfig" --request-timeout=10s get pv \
    -o jsonpath='{range .items[*]}{.spec.hostPath.path}{"\n"}{end}' 2>/dev/null | grep '^/tmp/hostpath_pv/.' || true)
fi
"$HERE/second-node.sh" down "$D" || log "WARNING: could not stop the second node"
stop_started kubelet 15
# 2. whatever is left in containerd: kill tasks, remove containers (remember their netns)
NETNS=()
if [[ -S "$CSOCK" ]]; then
  for c in $(ctrk containers ls -q 2>/dev/null); do
    ns=$(ctrk containers info "$c" 2>/dev/null | jq -r '.Spec.linux.namespaces[]? | select(.type=="network") | .path // empty' 2>/dev/null || true)
    if [[ "$ns" == /var/run/netns/* || "$ns" == /run/netns/* ]]; then NETNS+=("$ns"); fi
  done
fi
containerd_clear "$CSOCK"
stop_started containerd 15
containerd_kill_shims "$CSOCK"
# 3. the package repository's server, the NetworkPolicy agent, control plane + registry (reverse
#    start order)
[[ -d "$D/package-repo" ]] && { "$HERE/package-repo.sh" stop --dir "$D/package-repo" || log "WARNING: could not stop the package repository"; }
for n in $(tac "$D/pids/order" 2>/dev/null); do stop_started "$n" 10; done
# 3b. the rules that queued pod connections to the NetworkPolicy agent (it is gone now), and its
#     own nftables table should it ever have created one (its rule sync fails on this kernel)
"$HERE/netpol-divert.sh" del "$D/netpol" || log "WARNING: could not remove the NetworkPolicy rules (mangle/STRATA-NETPOL)"
if nft list table inet kube-network-policies >/dev/null 2>&1; then
  nft delete table inet kube-network-policies && log "removed nftables table inet kube-network-policies"
fi
# 4. mounts under the cluster dir and the pods' network namespaces
for i in 1 2 3; do
  mapfile -t ms < <(awk -v d="$D" 'index($2, d)==1 {print $2}' /proc/self/mounts | sort -r)
  ((${#ms[@]})) || break
  for m in "${ms[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
for ns in "${NETNS[@]}" $({ grep -l "$CNI_NET" /var/lib/cni/results/* 2>/dev/null || true; } | xargs -r -n1 jq -r '.netns // empty' 2>/dev/null || true); do
  if [[ -e "$ns" ]]; then umount "$ns" 2>/dev/null || true; rm -f "$ns"; fi
done
# orphaned pod netns (containerd died before tearing them down): address in our pod CIDR, no process
# (the conflist is missing in the dir of a cluster that never got that far: no reason to stop here)
CIDR_PREFIX=$(sed -n 's|.*"subnet":"\([0-9]*\.[0-9]*\.[0-9]*\.\)[0-9]*/.*|\1|p' "$D"/cni/*.conflist 2>/dev/null | head -1 || true)
if [[ -n "$CIDR_PREFIX" ]]; then
  for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do
    if [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && ip -n "$ns" -4 -o addr show 2>/dev/null | grep -qF " inet $CIDR_PREFIX"; then
      ip netns delete "$ns" 2>/dev/null && log "removed orphaned netns $ns" || true
    fi
  done
fi
# 5. CNI leftovers: bridge (+ veths), host-local IPs, cached results, masquerade rules
ip link del "$BRIDGE" 2>/dev/null && log "removed bridge $BRIDGE" || true
cni_remove_state "$CNI_NET"
# 6. kubelet cgroups (cgroupfs driver, v1 hierarchies and unified): first kill anything still in them
#    (container processes orphaned when containerd or its shims died without cleaning up)
for _ in 1 2 3; do
  pids=$({ cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null || true; } | sort -u)
  [[ -z "$pids" ]] && break
  log "killing orphaned pod processes: $(echo $pids)"
  kill -KILL $pids 2>/dev/null || true; sleep 0.5
done
# 6. kubelet cgroups (cgroupfs driver, v1 hierarchies and unified)
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/kubepods; do
  [[ -d "$h" ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
done
# 7. paths the kubelet/containerd use outside their configured dirs (hard-coded upstream)
find /var/log/containers -maxdepth 1 -type l -lname "$D/*" -delete 2>/dev/null || true
if ! pgrep -x kubelet >/dev/null; then rm -f /var/lib/kubelet/device-plugins/kubelet.sock; fi
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /run/containerd/s 2>/dev/null || true
# 7. the provisioned volumes' directories (the provisioner is gone; nothing else removes them)
for pv in "${PV_DIRS[@]}"; do
  if [[ "$pv" == /tmp/hostpath_pv/?* && -d "$pv" ]]; then rm -rf "$pv"; log "removed volume $pv"; fi
done
rmdir /tmp/hostpath_pv 2>/dev/null || true
# 8. the dir itself
if awk -v d="$D" 'index($2, d)==1 {f=1} END {exit !f}' /proc/self/mounts; then
  log "WARNING: mounts left under $D:"; awk -v d="$D" 'index($2, d)==1 {print "  " $2}' /proc/self/mounts >&2
else
  rm -rf "$D"
fi
rm -f "$STATE/cluster-dir" "$STATE/images.env"
log "cluster at $D is down"
