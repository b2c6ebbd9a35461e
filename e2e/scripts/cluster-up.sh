#!/usr/bin/env bash
# Start a real single-node Kubernetes cluster from locally built upstream binaries:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian) + runc + CNI bridge,
# kubelet, kube-network-policies (NetworkPolicy enforcement), docker-registry (Debian); images built
# locally (build-images.sh), OpenShift stand-ins applied, the OpenShift environment (openshift-env.sh).
# Everything lives in a fresh temp dir; processes run in the background. Needs root.
# Writes $STRATA_E2E_STATE/env (default e2e/.state/env). Stop with cluster-down.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE="${STRATA_E2E_STATE:-$ROOT/e2e/.state}"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=cluster-up LOG_T0=$(date +%s.%N)

[[ $(id -u) == 0 ]] || die "must run as root (kubelet, containerd, CNI)"
mkdir -p "$STATE"
exec 9>"$STATE/lock"   # serialises with a cluster-down.sh still in progress
flock -w 300 9 || die "timed out waiting for $STATE/lock"
if [[ -f "$STATE/cluster-dir" ]] && [[ -d "$(cat "$STATE/cluster-dir")" ]]; then
  OLD=$(cat "$STATE/cluster-dir")
  if kill -0 "$(cat "$OLD/pids/kube-apiserver" 2>/dev/null || echo 0)" 2>/dev/null; then
    die "a cluster is already running in $OLD; run cluster-down.sh (make e2e-down) first"
  fi
  log "cleaning up a stale cluster record ($OLD)"
  flock -u 9; "$HERE/cluster-down.sh" >&2; flock -w 300 9
fi
# A cluster whose checkout is gone (a CI clone removed while its cluster was up, its processes
# killed) leaves its dir, mounts and provisioned volumes behind: tens of GiB, until the next
# cluster's kubelet evicts pods under DiskPressure. One cluster runs on a machine (one bridge, one
# kubepods cgroup), so with none alive every such dir and volume is stale.
# All checked before any is torn down: a teardown also removes what a live cluster shares (the
# bridge, the CNI state).
STALE=()
for old in /tmp/strata-e2e.*; do
  [[ -d "$old" ]] || continue
  if kill -0 "$(cat "$old/pids/kube-apiserver" 2>/dev/null || echo 0)" 2>/dev/null; then
    die "a cluster is already running in $old (another checkout's?): stop it first (make e2e-down there, or e2e/scripts/cluster-down.sh $old)"
  fi
  STALE+=("$old")
done
for old in "${STALE[@]}"; do
  log "removing the remains of a cluster no checkout records ($old, $(du -sh "$old" 2>/dev/null | cut -f1))"
  flock -u 9; "$HERE/cluster-down.sh" "$old" >&2 || log "WARNING: could not remove $old"; flock -w 300 9
done
if [[ -d /tmp/hostpath_pv ]] && [[ -n "$(ls -A /tmp/hostpath_pv)" ]]; then
  log "removing volumes no running cluster provisioned: $(du -sh /tmp/hostpath_pv | cut -f1) in /tmp/hostpath_pv"
  rm -rf /tmp/hostpath_pv
fi
# The kubelet evicts pods when the disk is under 1 % free (e2e/manifests/kubelet.yaml); a make test
# run in the demo's cluster needs about 25 GiB.
FREE_GIB=$(df -P --block-size=1G /tmp | awk 'NR==2 {print $4}')
if ((FREE_GIB < 25)); then
  log "WARNING: $FREE_GIB GiB free on /tmp's disk; make test needs about 25 GiB (the cache claim's builds, the machines' disks, the registry)"
fi
for t in containerd runc ctr docker-registry openssl curl buildah mmdebstrap catatonit busybox iptables iptables-save nft unshare flock bc envsubst; do
  command -v "$t" >/dev/null || die "missing $t — run e2e/ci-setup.sh (apt packages)"
done
[[ -x /usr/lib/cni/bridge ]] || die "missing /usr/lib/cni/bridge (apt: containernetworking-plugins)"

BIN=$("$HERE/build-kube.sh" | tail -1)
log "kube binaries: $BIN"
NETPOL_BIN=$("$HERE/build-netpol.sh" | tail -1)
log "NetworkPolicy agent: $NETPOL_BIN"
export PATH="$BIN:$PATH"

NODE_IP="${STRATA_NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for(i=1;i<=NF;i++) if($i=="src"){print $(i+1); exit}}')}"
[[ -n "$NODE_IP" ]] || NODE_IP=$(hostname -I | awk '{print $1}')
[[ -n "$NODE_IP" ]] || die "cannot determine node IP (set STRATA_NODE_IP)"
NODE_NAME="${STRATA_NODE_NAME:-strata-node}"
POD_CIDR="${STRATA_POD_CIDR:-10.244.0.0/24}"
SVC_CIDR="10.0.0.0/24"
BRIDGE=strata0
CNI_NET=strata-e2e

mkdir -p "$STATE"
D=$(mktemp -d /tmp/strata-e2e.XXXXXX)
chmod 755 "$D"
echo "$D" > "$STATE/cluster-dir"
echo "$BIN" > "$D/bin-dir"
mkdir -p "$D"/{pki,logs,pids,etcd,containerd,cni,certs.d,kubelet,pod-logs,registry}
PID_DIR="$D/pids" LOG_DIR="$D/logs"  # start, alive, wait_for
UP_OK=0
on_exit() {
  ((UP_OK)) && return 0
  log "FAILED — tearing down (logs kept in $STATE/failed-logs)"
  rm -rf "$STATE/failed-logs"; cp -r "$D/logs" "$STATE/failed-logs" 2>/dev/null || true
  flock -u 9; "$HERE/cluster-down.sh" >&2 || true
}
trap on_exit EXIT

# --- free ports ------------------------------------------------------------------------------
read -r EP PP AP KP SP RP KLP NPP PRP < <(free_ports 9)
log "dir $D, node IP $NODE_IP, ports etcd=$EP apiserver=$AP registry=$RP kubelet=$KLP netpol-metrics=$NPP package-repo=$PRP"

# --- PKI -------------------------------------------------------------------------------------
P="$D/pki"
ec() { echo "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"; }
ossl req -x509 $(ec) -days 7 -subj /CN=strata-e2e-ca -keyout "$P/ca.key" -out "$P/ca.crt"
cert() { # cert <name> <subject> <ext>
  ossl req $(ec) -subj "$2" -keyout "$P/$1.key" -out "$P/$1.csr"
  ossl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 7 -out "$P/$1.crt" -extfile <(printf '%b' "$3")
}
cert apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment"
cert admin "/O=system:masters/CN=strata-e2e-admin" "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature"
cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature"
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$P/sa.key"
ossl pkey -in "$P/sa.key" -pubout -out "$P/sa.pub"
KUBECONFIG="$D/admin.kubeconfig"
cat > "$KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters:
- name: strata-e2e
  cluster: {server: "https://$NODE_IP:$AP", certificate-authority-data: $(b64 < "$P/ca.crt")}
users:
- name: admin
  user: {client-certificate-data: $(b64 < "$P/admin.crt"), client-key-data: $(b64 < "$P/admin.key")}
contexts:
- name: strata-e2e
  context: {cluster: strata-e2e, user: admin}
current-context: strata-e2e
KC
export KUBECONFIG

CURL=(curl -sf --max-time 5 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key")

# --- images (cached; quick when warm) -----------------------------------------------------------
PAUSE_TAR=$("$HERE/build-images.sh" ${STRATA_BIN:+"$STRATA_BIN"} | sed -n 's/^PAUSE_TAR=//p')

# --- etcd ------------------------------------------------------------------------------------
start etcd etcd --name strata --data-dir "$D/etcd" \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "strata=http://127.0.0.1:$PP" --unsafe-no-fsync --log-level warn
wait_for etcd 30 etcd curl -sf "http://127.0.0.1:$EP/health"

# --- registry --------------------------------------------------------------------------------
cat > "$D/registry.yml" <<RC
version: 0.1
log:
  level: warn
  # One line per request with the client's address and the bytes sent: which machine fetched what.
  accesslog: {disabled: false}
storage:
  filesystem: {rootdirectory: $D/registry}
  delete: {enabled: true}
http:
  addr: 0.0.0.0:$RP
RC
start registry docker-registry serve "$D/registry.yml"

# --- kube-apiserver --------------------------------------------------------------------------
# Audit log of what Strata's ServiceAccounts do (the e2e tests check it for 403s); nothing else.
cp "$ROOT/e2e/manifests/audit-policy.yaml" "$D/audit-policy.yaml"
start kube-apiserver kube-apiserver --etcd-servers="http://127.0.0.1:$EP" \
  --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port="$AP" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
  --kubelet-client-certificate="$P/kubelet-client.crt" --kubelet-client-key="$P/kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --service-cluster-ip-range="$SVC_CIDR" --allow-privileged=true --authorization-mode=Node,RBAC \
  --service-account-issuer="https://$NODE_IP:$AP" --service-account-key-file="$P/sa.pub" \
  --service-account-signing-key-file="$P/sa.key" --profiling=false --v=1 \
  --audit-policy-file="$D/audit-policy.yaml" --audit-log-path="$D/logs/audit.log" --audit-log-maxsize=200
wait_for "kube-apiserver /readyz" 120 kube-apiserver "${CURL[@]}" "https://127.0.0.1:$AP/readyz"
wait_for "namespace default" 30 kube-apiserver "${CURL[@]}" "https://127.0.0.1:$AP/api/v1/namespaces/default"

# --- controller-manager, scheduler -----------------------------------------------------------
start kube-controller-manager kube-controller-manager --kubeconfig="$KUBECONFIG" --leader-elect=false \
  --controllers='*' --use-service-account-credentials \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --bind-address=127.0.0.1 --secure-port="$KP" --enable-hostpath-provisioner --v=1
start kube-scheduler kube-scheduler --kubeconfig="$KUBECONFIG" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$SP" --v=1

# --- containerd + CNI ------------------------------------------------------------------------
sysctl -qw net.ipv4.ip_forward=1
cni_conflist "$D/cni" "$CNI_NET" "$BRIDGE" "$POD_CIDR"
mkdir -p "$D/certs.d/$NODE_IP:$RP"
cat > "$D/certs.d/$NODE_IP:$RP/hosts.toml" <<HT
server = "http://$NODE_IP:$RP"
[host."http://$NODE_IP:$RP"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
HT
CSOCK="$D/containerd/containerd.sock"
cat > "$D/containerd/config.toml" <<CT
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CSOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/strata/pause:catatonit"
  # This machine's root lacks CAP_SYS_RESOURCE (CapBnd 0x1fffeffffff, bit 24 clear), so runc cannot
  # lower oom_score_adj below 0 (kubelet asks -998 for sandboxes): "nsexec: failed to update
  # /proc/self/oom_score_adj: Permission denied". This containerd option clamps it to our own value.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$D/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$D/certs.d"
CT
start containerd containerd --config "$D/containerd/config.toml"
wait_for containerd 30 containerd ctr --address "$CSOCK" version
ctr --address "$CSOCK" -n k8s.io images import --no-unpack=false "$PAUSE_TAR" >/dev/null
ctr --address "$CSOCK" -n k8s.io images label localhost/strata/pause:catatonit io.cri-containerd.pinned=pinned >/dev/null || true

# --- kubelet ---------------------------------------------------------------------------------
# The builder pods' seccomp profile (manifests/seccomp/strata-builder.json: the runtime's default
# plus what buildah needs to enter its own user namespace), where the kubelet looks for Localhost
# profiles.
mkdir -p "$D/kubelet/seccomp/strata"
cp "$ROOT/manifests/seccomp/strata-builder.json" "$D/kubelet/seccomp/strata/builder.json"
render "$ROOT/e2e/manifests/kubelet.yaml" NODE_IP="$NODE_IP" PORT="$KLP" RUNTIME_SOCKET="$CSOCK" \
  POD_LOGS_DIR="$D/pod-logs" CLIENT_CA="$P/ca.crt" > "$D/kubelet.yaml"
start kubelet kubelet --config="$D/kubelet.yaml" --kubeconfig="$KUBECONFIG" --hostname-override="$NODE_NAME" \
  --node-ip="$NODE_IP" --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki" --v=1

# --- wait for the rest -----------------------------------------------------------------------
wait_for registry 30 registry curl -sf "http://$NODE_IP:$RP/v2/"
wait_for "kube-controller-manager /healthz" 60 kube-controller-manager curl -skf "https://127.0.0.1:$KP/healthz"
wait_for "kube-scheduler /healthz" 60 kube-scheduler curl -skf "https://127.0.0.1:$SP/healthz"
wait_for "ServiceAccount default/default" 60 kube-controller-manager kubectl get serviceaccount default -n default
wait_for "node $NODE_NAME Ready" 120 kubelet sh -c "kubectl get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"

# --- NetworkPolicy enforcement: kube-network-policies ------------------------------------------
# Upstream runs it as a hostNetwork DaemonSet (its install.yaml: ServiceAccount kube-system/
# kube-network-policies, a ClusterRole to list/watch pods, namespaces, networkpolicies). Here it is
# a host process with that same identity. It only knows in-cluster config, read from fixed paths
# (/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}) and KUBERNETES_SERVICE_HOST/PORT,
# so it runs in a private mount namespace where $D/netpol/run is bind-mounted on /run (nothing
# is written to the host's /run; the mount vanishes with the process).
# It decides in user space, for the first packet of every connection handed to it through
# netfilter queue $NETPOL_QUEUE, whether the NetworkPolicies allow it. Its own nftables rules send
# packets to the queue with the nft `queue` expression, which this kernel lacks
# (CONFIG_NFT_QUEUE unset, no module support): its rule sync fails with "no such file or
# directory" and leaves nothing behind. The same diversion is made below with iptables' NFQUEUE
# target (xt_NFQUEUE, built in) in chain mangle/STRATA-NETPOL: new connections from or to the pod
# network, in POSTROUTING (forwarded and node-originated, except root's own sockets, as upstream)
# and in INPUT (pod -> node: upstream's postrouting hook never sees it, a one-node cluster would
# leave every pod -> API server / registry connection unenforced) — scripts/netpol-divert.sh.
# Fail-closed like upstream's default (no --fail-open): if the agent dies, new pod connections drop.
NETPOL_QUEUE="${STRATA_NETPOL_QUEUE:-100}"
NP="$D/netpol"
SA_DIR="$NP/run/secrets/kubernetes.io/serviceaccount"
mkdir -p "$SA_DIR"
if awk -v q="$NETPOL_QUEUE" '$1==q {f=1} END {exit !f}' /proc/net/netfilter/nfnetlink_queue 2>/dev/null; then
  die "netfilter queue $NETPOL_QUEUE is already bound by another process (set STRATA_NETPOL_QUEUE)"
fi
kubectl apply -f "$ROOT/e2e/manifests/kube-network-policies.yaml" >/dev/null
kubectl create token kube-network-policies -n kube-system --duration=168h > "$SA_DIR/token"
cp "$P/ca.crt" "$SA_DIR/ca.crt"
echo kube-system > "$SA_DIR/namespace"
start kube-network-policies env KUBERNETES_SERVICE_HOST="$NODE_IP" KUBERNETES_SERVICE_PORT="$AP" \
  unshare --mount --propagation private sh -c 'mount --bind "$0" /run && exec "$@"' "$NP/run" \
  "$NETPOL_BIN" --hostname-override="$NODE_NAME" --nfqueue-id="$NETPOL_QUEUE" \
  --metrics-bind-address="127.0.0.1:$NPP" --netfilter-bug-1766-fix=false --v=1
# bound to the queue = informers synced, ready to judge packets
wait_for "kube-network-policies on netfilter queue $NETPOL_QUEUE" 60 kube-network-policies \
  awk -v q="$NETPOL_QUEUE" '$1==q {f=1} END {exit !f}' /proc/net/netfilter/nfnetlink_queue
wait_for "kube-network-policies /metrics" 10 kube-network-policies curl -sf "http://127.0.0.1:$NPP/metrics"
"$HERE/netpol-divert.sh" add "$POD_CIDR" "$NETPOL_QUEUE" "$NP"
log "NetworkPolicy enforcement on (kube-network-policies, queue $NETPOL_QUEUE, mangle/STRATA-NETPOL)"

# --- the second node (e2e/scripts/second-node.sh): a kubelet and containerd in a network namespace
#     of their own, tainted so that only the tests that ask for it place pods there
SECOND_NODE_ENV=""
if [[ "${STRATA_SECOND_NODE:-1}" == 1 ]]; then
  SECOND_NODE_ENV=$(D="$D" NODE_IP="$NODE_IP" KUBECONFIG="$KUBECONFIG" PAUSE_TAR="$PAUSE_TAR" \
    NETPOL_BIN="$NETPOL_BIN" NETPOL_QUEUE="$NETPOL_QUEUE" API_PORT="$AP" "$HERE/second-node.sh" up)
  eval "$SECOND_NODE_ENV"  # STRATA_E2E_SECOND_NODE_NETWORKS: its pod network and address
fi

# --- a default StorageClass, as every OpenShift install has one --------------------------------
# Upstream's development provisioner (kube-controller-manager --enable-hostpath-provisioner): a
# claim becomes a directory /tmp/hostpath_pv/<uuid> on this node, removed with the claim;
# cluster-down removes those of this cluster. It enforces no capacity.
kubectl apply -f "$ROOT/e2e/manifests/storageclass.yaml" >/dev/null

# --- images + OpenShift stand-ins ------------------------------------------------------------
STRATA_IMAGES_OUT="$D/images.env" "$HERE/build-images.sh" --push "$NODE_IP:$RP" ${STRATA_BIN:+"$STRATA_BIN"} >/dev/null
# shellcheck disable=SC1091
source "$D/images.env"
kubectl apply -f "$ROOT/e2e/openshift/crds.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/machineconfigs.machineconfiguration.openshift.io crd/machineconfigpools.machineconfiguration.openshift.io >/dev/null
kubectl apply -f "$ROOT/e2e/openshift/objects.yaml" >/dev/null
kubectl create configmap machine-config-osimageurl -n openshift-machine-config-operator \
  --from-literal=baseOSContainerImage="$STRATA_OS_BASE_IMAGE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The MCO's render and node controllers, emulated (e2e/src/mco.rs): pools are rendered from their
# MachineConfigs and their machines rolled, one at a time, unless paused.
MCO_BIN="${STRATA_E2E_MCO_BIN:-$(dirname "${STRATA_BIN:-${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}/debug/strata}")/strata-e2e-mco}"
[[ -x "$MCO_BIN" ]] || die "missing the MCO stand-in $MCO_BIN (cargo build -p strata-e2e --bin strata-e2e-mco)"
start mco env KUBECONFIG="$KUBECONFIG" "$MCO_BIN"
for pool in worker infra; do
  wait_for "pool $pool rendered and updated by the MCO stand-in" 60 mco sh -c \
    "kubectl get mcp $pool -o jsonpath='{.status.conditions[?(@.type==\"Updated\")].status}' | grep -qx True"
done
log "OpenShift stand-ins applied; base image $STRATA_OS_BASE_IMAGE"

# --- the CoreOS-like OS image and the package repository fragments install from -----------------
# The release ConfigMap keeps the small base (quick builds for most tests); the CoreOS-sized image
# (e2e/scripts/build-os-image.sh: cached, minutes when cold) is what `make demo` and the realistic
# e2e tests name there instead. Builder pods reach the repository on the node's address.
log "the CoreOS-like OS image (cold: mmdebstrap and 48 layers, several minutes; warm: seconds)…"
STRATA_OS_IMAGE=$("$HERE/build-os-image.sh" --push "$NODE_IP:$RP/strata-test/os-coreos:latest" | tail -1)
OS_LAYOUT=$("$HERE/build-os-image.sh" 2>/dev/null | tail -1)
# Its next release (five layers changed, e2e/scripts/os-image-next.sh): release-upgrade tests.
STRATA_OS_IMAGE_NEXT=$("$HERE/os-image-next.sh" "$OS_LAYOUT" --push "$NODE_IP:$RP/strata-test/os-coreos:next" | tail -1)
STRATA_PACKAGE_REPO=$("$HERE/package-repo.sh" start --port "$PRP" --dir "$D/package-repo" --bind "$NODE_IP" | tail -1)
log "OS image $STRATA_OS_IMAGE (next release $STRATA_OS_IMAGE_NEXT); package repository $STRATA_PACKAGE_REPO"
# --- the pool's machines: VMs booted from Strata's disk image of that base (e2e/scripts/machines.sh),
#     on a bridge of their own; they boot in the background (minutes under software emulation)
MACHINES="${STRATA_MACHINES:-2}"
if ((MACHINES > 0)); then
  MACHINE_DISK=$("$HERE/machines.sh" disk "$OS_LAYOUT")
  "$HERE/machines.sh" up --dir "$D" --disk "$MACHINE_DISK" --count "$MACHINES"
  # The machine-config-daemon, stood in for (e2e/src/mcd.rs): registers each machine's Node once it
  # answers, and deploys and reboots into the image its desired config names.
  start mcd env KUBECONFIG="$KUBECONFIG" "$MCO_BIN" machine-daemon --dir "$D"
fi
# --- the OpenShift environment: pull secret, cluster CAs, proxy, mirrors, entitlement (README) --
D="$D" NODE_IP="$NODE_IP" POD_CIDR="$POD_CIDR" SVC_CIDR="$SVC_CIDR" APISERVER="$NODE_IP:$AP" REGISTRY="$NODE_IP:$RP" \
  PACKAGE_REPO="$STRATA_PACKAGE_REPO" MCO_BIN="$MCO_BIN" STRATA_OS_BASE_IMAGE="$STRATA_OS_BASE_IMAGE" \
  STRATA_OS_BASE_IMAGE_NEXT="$STRATA_OS_BASE_IMAGE_NEXT" STRATA_OS_IMAGE="$STRATA_OS_IMAGE" "$HERE/openshift-env.sh" up

cat > "$STATE/env.tmp" <<ENV
export KUBECONFIG=$KUBECONFIG
export PATH=$BIN:\$PATH
export STRATA_REGISTRY=$NODE_IP:$RP
export STRATA_OS_BASE_IMAGE=$STRATA_OS_BASE_IMAGE
export STRATA_OS_BASE_IMAGE_NEXT=$STRATA_OS_BASE_IMAGE_NEXT
export STRATA_OS_IMAGE=$STRATA_OS_IMAGE
export STRATA_OS_IMAGE_NEXT=$STRATA_OS_IMAGE_NEXT
export STRATA_PACKAGE_REPO=$STRATA_PACKAGE_REPO
export STRATA_BUILDER_IMAGE=${STRATA_BUILDER_IMAGE:-}
export STRATA_E2E_NODE_IP=$NODE_IP
export STRATA_E2E_APISERVER=https://$NODE_IP:$AP
export STRATA_E2E_CLUSTER_NETWORKS=$POD_CIDR,$SVC_CIDR${STRATA_E2E_SECOND_NODE_NETWORKS:+,$STRATA_E2E_SECOND_NODE_NETWORKS}
export STRATA_E2E_DIR=$D
export STRATA_E2E_NETPOL=kube-network-policies
export STRATA_E2E_NETPOL_METRICS=http://127.0.0.1:$NPP/metrics
export STRATA_E2E_MACHINES=$( ((MACHINES > 0)) && echo "$D/machines/machines.tsv")
$(cat "$D/openshift-env/env")
$SECOND_NODE_ENV
ENV
mv "$STATE/env.tmp" "$STATE/env"
UP_OK=1
log "cluster up: source $STATE/env (kubectl, KUBECONFIG, STRATA_REGISTRY=$NODE_IP:$RP)"
