#!/usr/bin/env bash
# The local cluster's second node, strata-node-2: a containerd and a kubelet of its own in a network
# namespace of its own (strata-n2), so its pods get a bridge, a pod network (10.244.1.0/24) and a
# node address (10.246.0.2) of their own, as on a second machine; kube-network-policies runs there
# too (NetworkPolicy is enforced per node). It shares the host's file systems (a hostPath claim is
# the same directory on both nodes) and the control plane and registry of the first node, reached
# through a veth pair. It carries the taint and label e2e.strata.dev/second-node: only pods that
# tolerate it run there (e2e/tests/two_nodes.rs), so the rest of the suite is unchanged.
#   second-node.sh up     with D NODE_IP KUBECONFIG PAUSE_TAR NETPOL_BIN NETPOL_QUEUE API_PORT in the
#                         environment, kube binaries on PATH; called by cluster-up.sh
#   second-node.sh down D stop it and remove what it made (netns, veth, route, cgroups, CNI state);
#                         idempotent; called by cluster-down.sh
# Hard-coded kubelet path shared with the first node: /var/lib/kubelet/device-plugins (each kubelet
# empties it at start); no device plugin runs here, so the first kubelet loses nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=second-node

NAME=strata-node-2
NETNS=strata-n2
HOST_LINK=strata-n2h
HOST_ADDR=10.246.0.1
NODE2_IP=10.246.0.2
POD_CIDR2=10.244.1.0/24
CNI_NET2=strata-e2e-2
BRIDGE2=strata1
CGROUP=strata-node-2
TAINT=e2e.strata.dev/second-node
in_ns() { nsenter --net="/run/netns/$NETNS" "$@"; }

up() {
  local v
  for v in D NODE_IP KUBECONFIG PAUSE_TAR NETPOL_BIN NETPOL_QUEUE API_PORT; do
    [[ -n "${!v:-}" ]] || die "up: $v is not set"
  done
  local N="$D/node2"
  mkdir -p "$N"/{containerd,cni,kubelet/seccomp/strata,kubelet/pki,pod-logs,netpol}
  PID_DIR="$D/pids" LOG_DIR="$D/logs"
  # --- the node's network: a veth to the host, a route to its pod network ---------------------
  # (what a cluster killed without cluster-down.sh left of it goes first: no cluster is up)
  ip netns delete "$NETNS" 2>/dev/null || true
  ip link del "$HOST_LINK" 2>/dev/null || true
  ip netns add "$NETNS"
  ip link add "$HOST_LINK" type veth peer name eth0 netns "$NETNS"
  ip addr add "$HOST_ADDR/30" dev "$HOST_LINK"
  ip link set "$HOST_LINK" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" addr add "$NODE2_IP/30" dev eth0
  ip -n "$NETNS" link set eth0 up
  ip -n "$NETNS" route add default via "$HOST_ADDR"
  ip route replace "$POD_CIDR2" via "$NODE2_IP"
  in_ns sysctl -qw net.ipv4.ip_forward=1
  # --- cgroups: its kubelet's pods under /strata-node-2/kubepods, apart from the first node's ----
  local h
  for h in /sys/fs/cgroup/*/; do
    mkdir -p "$h$CGROUP"
    if [[ -f "${h}cpuset.cpus" ]]; then
      cat "${h}cpuset.cpus" > "$h$CGROUP/cpuset.cpus"
      cat "${h}cpuset.mems" > "$h$CGROUP/cpuset.mems"
    fi
  done
  # --- containerd: the first node's settings, its own root, state, socket and CNI network --------
  cni_conflist "$N/cni" "$CNI_NET2" "$BRIDGE2" "$POD_CIDR2"
  local sock="$N/containerd/containerd.sock"
  sed -e "s|$D/containerd/|$N/containerd/|g" -e "s|$D/runc|$N/runc|" -e "s|$D/cni|$N/cni|" \
    "$D/containerd/config.toml" > "$N/containerd/config.toml"
  grep -q "$N/containerd/containerd.sock" "$N/containerd/config.toml" || die "could not derive containerd's config"
  start containerd-2 nsenter --net="/run/netns/$NETNS" containerd --config "$N/containerd/config.toml"
  wait_for "containerd of $NAME" 30 containerd-2 ctr --address "$sock" version
  ctr --address "$sock" -n k8s.io images import --no-unpack=false "$PAUSE_TAR" >/dev/null
  ctr --address "$sock" -n k8s.io images label localhost/strata/pause:catatonit io.cri-containerd.pinned=pinned >/dev/null || true
  # --- kubelet ---------------------------------------------------------------------------------
  cp "$ROOT/manifests/seccomp/strata-builder.json" "$N/kubelet/seccomp/strata/builder.json"
  local port
  read -r port < <(free_ports 1)
  { render "$ROOT/e2e/manifests/kubelet.yaml" NODE_IP="$NODE2_IP" PORT="$port" RUNTIME_SOCKET="$sock" \
      POD_LOGS_DIR="$N/pod-logs" CLIENT_CA="$D/pki/ca.crt"
    echo "cgroupRoot: /$CGROUP"
    echo "registerWithTaints: [{key: $TAINT, value: \"true\", effect: NoSchedule}]"
  } > "$N/kubelet.yaml"
  start kubelet-2 nsenter --net="/run/netns/$NETNS" kubelet --config="$N/kubelet.yaml" \
    --kubeconfig="$KUBECONFIG" --hostname-override="$NAME" --node-ip="$NODE2_IP" \
    --node-labels="$TAINT=true" --root-dir="$N/kubelet" --cert-dir="$N/kubelet/pki" --v=1
  # --- NetworkPolicy: kube-network-policies in the node's namespace, as the first node's --------
  local q=$((NETPOL_QUEUE + 1)) mport
  read -r mport < <(free_ports 1)
  start kube-network-policies-2 env KUBERNETES_SERVICE_HOST="$NODE_IP" KUBERNETES_SERVICE_PORT="$API_PORT" \
    nsenter --net="/run/netns/$NETNS" \
    unshare --mount --propagation private sh -c 'mount --bind "$0" /run && exec "$@"' "$D/netpol/run" \
    "$NETPOL_BIN" --hostname-override="$NAME" --nfqueue-id="$q" \
    --metrics-bind-address="127.0.0.1:$mport" --netfilter-bug-1766-fix=false --v=1
  wait_for "kube-network-policies of $NAME on netfilter queue $q" 60 kube-network-policies-2 \
    in_ns awk -v q="$q" '$1==q {f=1} END {exit !f}' /proc/net/netfilter/nfnetlink_queue
  in_ns "$HERE/netpol-divert.sh" add "$POD_CIDR2" "$q" "$N/netpol"
  wait_for "node $NAME Ready" 120 kubelet-2 sh -c \
    "kubectl get node '$NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  echo "export STRATA_E2E_SECOND_NODE_NETWORKS=$POD_CIDR2,${HOST_ADDR%.*}.0/30"
  echo "export STRATA_E2E_SECOND_NODE=$NAME"
  echo "export STRATA_E2E_SECOND_NODE_TAINT=$TAINT"
}

down() {
  local D=$1 N="$1/node2" sock="$1/node2/containerd/containerd.sock"
  [[ -d "$N" ]] || return 0
  PID_DIR="$D/pids"  # stop_started
  stop_started kubelet-2 15
  containerd_clear "$sock"
  stop_started containerd-2 15
  containerd_kill_shims "$sock"
  stop_started kube-network-policies-2
  # the pods' network namespaces (an address in its pod network), then its own (veth and bridge
  # go with it), the route, the CNI state
  local ns
  for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do
    if ip -n "$ns" -4 -o addr show 2>/dev/null | grep -qF " inet ${POD_CIDR2%.*}."; then
      umount "/run/netns/$ns" 2>/dev/null || true; ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
    fi
  done
  ip netns delete "$NETNS" 2>/dev/null || true
  ip link del "$HOST_LINK" 2>/dev/null || true
  ip route del "$POD_CIDR2" 2>/dev/null || true
  cni_remove_state "$CNI_NET2"
  # mounts under its dirs (pods' volumes), then its cgroups: processes left in them first
  local ms m
  mapfile -t ms < <(awk -v d="$N/" 'index($2, d)==1 {print $2}' /proc/self/mounts | sort -r)
  for m in "${ms[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  local pids
  for _ in 1 2 3; do
    pids=$(find /sys/fs/cgroup/*/"$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z "$pids" ]] && break
    kill -KILL $pids 2>/dev/null || true; sleep 0.5
  done
  local h
  for h in /sys/fs/cgroup/*/"$CGROUP"; do
    [[ -d "$h" ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  log "$NAME is down"
}

case "${1:-}" in
  up) up ;;
  down) [[ $# == 2 ]] || die "usage: $0 down <cluster dir>"; down "$2" ;;
  *) die "usage: $0 up | down <cluster dir>" ;;
esac
