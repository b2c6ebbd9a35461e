#!/usr/bin/env bash
# The OpenShift environment of the local cluster, with real parts (e2e/README.md "The OpenShift
# environment"): what a real cluster has and Strata must cope with, next to the open plain-HTTP
# registry of cluster-up.sh.
#   - stand-ins for OpenShift's config CRDs Strata reads (Proxy, Image, ImageDigestMirrorSet,
#     ImageTagMirrorSet: e2e/openshift/config-crds.yaml, checked against OpenShift's own by
#     `make conformance`), namespaces openshift-config and openshift-config-managed;
#   - a release registry (docker-registry, TLS from the "release CA", htpasswd): its credentials
#     exist only in the global pull secret openshift-config/pull-secret; its CA only in
#     openshift-config/registry-cas, named by images.config.openshift.io/cluster;
#   - an internal registry (docker-registry, TLS from the "service CA", no auth), the service CA
#     published as OpenShift publishes it (strata-e2e-mco service-ca: openshift-service-ca.crt in
#     every namespace, openshift-config-managed/service-ca);
#   - a forward proxy (squid) named by proxies.config.openshift.io/cluster, and pod egress to the
#     registries above and the HTTPS package repository blocked except through it (iptables chain
#     filter/STRATA-OSENV);
#   - a mirror registry (TLS from a "mirror CA", htpasswd; credentials in the pull secret) holding
#     the base images under another path, chosen by ImageDigestMirrorSet/ImageTagMirrorSet
#     strata-e2e-mirror for a source that does not resolve;
#   - the signed package repository over HTTPS (nginx) requiring a client certificate: server
#     certificate from the "user CA" (openshift-config/user-ca-bundle), client certificate + key as
#     the entitlement Secret openshift-config-managed/etc-pki-entitlement.
#
# Usage (cluster-up.sh / cluster-down.sh call it):
#   openshift-env.sh up      with D NODE_IP POD_CIDR SVC_CIDR APISERVER REGISTRY PACKAGE_REPO MCO_BIN
#                            STRATA_OS_BASE_IMAGE STRATA_OS_BASE_IMAGE_NEXT STRATA_OS_IMAGE and
#                            KUBECONFIG/PATH (kubectl) in the environment; writes $D/openshift-env/env
#                            (export lines for e2e/.state/env)
#   openshift-env.sh down [D]  stops its processes, removes its netfilter rules; idempotent
# Processes run on the host in their own sessions, bound to the node IP; state in $D/openshift-env,
# logs in $D/logs (proxy-access.log: squid's access log).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHAIN=STRATA-OSENV
COMMENT=strata-e2e-openshift-env
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=openshift-env LOG_T0=$(date +%s.%N)

# --- down ------------------------------------------------------------------------------------------
del_rules() {
  if ipt -S "$CHAIN" >/dev/null 2>&1; then
    local rule
    while read -r rule; do eval "ipt ${rule/#-A/-D}" || true; done < <(ipt -S INPUT 2>/dev/null | grep -- "-j $CHAIN\$" || true)
    ipt -F "$CHAIN"; ipt -X "$CHAIN"
    log "removed filter/$CHAIN and its jump"
  fi
}
down() { # all at once: SIGTERM every process group, wait up to 5 s for all, then SIGKILL the rest
  local d=${1:-${D:-}}
  if [[ -n "$d" && -d "$d/openshift-env" ]]; then
    local o="$d/openshift-env" n p pids=() names=()
    if [[ -d "$o/package-repo-https" ]]; then
      "$HERE/package-repo.sh" stop --dir "$o/package-repo-https" 2>/dev/null || log "WARNING: could not stop the HTTPS package repository"
    fi
    for n in $(tac "$o/pids/order" 2>/dev/null); do
      p=$(cat "$o/pids/$n" 2>/dev/null || true)
      if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
        pids+=("$p"); names+=("$n")
      fi
      rm -f "$o/pids/$n"
    done
    for _ in $(seq 50); do
      local left=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
      ((left)) || break
      sleep 0.1
    done
    for p in "${pids[@]}"; do
      if kill -0 "$p" 2>/dev/null; then kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; log "killed pid $p"; fi
    done
    ((${#names[@]})) && log "stopped ${names[*]}"
    rm -f "$o/pids/order"
  fi
  del_rules
}

if [[ "${1:-}" == down ]]; then down "${2:-}"; exit 0; fi
[[ "${1:-}" == up ]] || { sed -n '2,31p' "${BASH_SOURCE[0]}" >&2; exit 2; }

# --- up: inputs --------------------------------------------------------------------------------------
for v in D NODE_IP POD_CIDR SVC_CIDR APISERVER REGISTRY PACKAGE_REPO MCO_BIN STRATA_OS_BASE_IMAGE \
         STRATA_OS_BASE_IMAGE_NEXT STRATA_OS_IMAGE KUBECONFIG; do
  [[ -n "${!v:-}" ]] || die "$v is not set (openshift-env.sh up is run by cluster-up.sh)"
done
for t in docker-registry squid nginx skopeo openssl curl jq iptables kubectl python3 envsubst; do
  command -v "$t" >/dev/null || die "missing $t — run e2e/ci-setup.sh (apt packages: squid, nginx-light, apache2-utils, skopeo, gettext-base)"
done
[[ -x "$MCO_BIN" ]] || die "missing $MCO_BIN (cargo build -p strata-e2e --bin strata-e2e-mco)"
CONFIG_CRDS="$ROOT/e2e/openshift/config-crds.yaml"
[[ -s "$CONFIG_CRDS" ]] || die "missing $CONFIG_CRDS"

O="$D/openshift-env"
P="$O/pki"
L="$D/logs"
PID_DIR="$O/pids" LOG_DIR="$L" WAIT_FOR_POLL=0.1 WAIT_FOR_QUIET=1  # start, alive, wait_for
mkdir -p "$O/pids" "$P" "$L" "$O"/{release,internal,mirror}-registry "$O/proxy"
read -r RELP INTP MIRP PROXP PKGP < <(free_ports 5)
RELEASE="$NODE_IP:$RELP" INTERNAL="$NODE_IP:$INTP" MIRROR="$NODE_IP:$MIRP" PROXY="http://$NODE_IP:$PROXP"
log "ports: release registry $RELP, internal registry $INTP, mirror registry $MIRP, proxy $PROXP, HTTPS package repo $PKGP"

# --- PKI: five local CAs and what they sign ---------------------------------------------------------
ca() { # ca <name> <subject>
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$P/$1.key" -out "$P/$1.crt"
}
leaf() { # leaf <name> <ca> <subject> <ext> [rsa]
  local key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  [[ "${5:-}" == rsa ]] && key=(-newkey rsa:2048)
  ossl req "${key[@]}" -nodes -subj "$3" -keyout "$P/$1.key" -out "$P/$1.csr"
  ossl x509 -req -in "$P/$1.csr" -CA "$P/$2.crt" -CAkey "$P/$2.key" -CAcreateserial -days 7 -out "$P/$1.crt" \
    -extfile <(printf '%b' "$4")
  rm -f "$P/$1.csr"
}
SERVER_EXT="extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
ca release-ca "/O=Strata e2e/CN=Strata e2e release registry CA"
ca mirror-ca "/O=Strata e2e/CN=Strata e2e mirror registry CA"
# named like the service-ca operator names its signer (openshift-service-serving-signer@<unix time>)
ca service-ca "/CN=openshift-service-serving-signer@$(date +%s)"
ca user-ca "/O=Strata e2e/CN=Strata e2e corporate CA (additional trust bundle)"
ca entitlement-ca "/O=Strata e2e/CN=Strata e2e entitlement CA"
leaf release release-ca "/CN=$NODE_IP" "subjectAltName=IP:$NODE_IP\n$SERVER_EXT"
leaf mirror mirror-ca "/CN=$NODE_IP" "subjectAltName=IP:$NODE_IP\n$SERVER_EXT"
leaf internal service-ca "/CN=image-registry.openshift-image-registry.svc" \
  "subjectAltName=DNS:image-registry.openshift-image-registry.svc,DNS:image-registry.openshift-image-registry.svc.cluster.local,IP:$NODE_IP\n$SERVER_EXT"
leaf package-repo user-ca "/CN=$NODE_IP" "subjectAltName=IP:$NODE_IP\n$SERVER_EXT"
# The entitlement certificate: RSA with a PKCS#1 key and a consumer-UUID-like CN, as Red Hat's are;
# entitlement.pem also carries the ENTITLEMENT DATA and RSA SIGNATURE blocks that follow the
# certificate in a real /etc/pki/entitlement/<serial>.pem (clients must skip them).
leaf entitlement entitlement-ca "/O=strata-e2e-org/CN=$(cat /proc/sys/kernel/random/uuid)" \
  "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment" rsa
ossl rsa -in "$P/entitlement.key" -traditional -out "$P/entitlement-key.pem"
{
  cat "$P/entitlement.crt"
  echo "-----BEGIN ENTITLEMENT DATA-----"
  printf '{"consumer":"strata-e2e","products":[{"id":"strata-e2e","content":[{"path":"/","type":"deb"}]}]}' | gzip -9n | base64 -w 64
  echo "-----END ENTITLEMENT DATA-----"
  echo "-----BEGIN RSA SIGNATURE-----"
  openssl rand -base64 256 | tr -d '\n' | fold -w 64; echo
  echo "-----END RSA SIGNATURE-----"
} > "$P/entitlement.pem"
chmod 600 "$P"/*.key "$P/entitlement-key.pem"
log "PKI: release, mirror, service, user and entitlement CAs; server certificates; the entitlement certificate"

# --- credentials (only ever in the global pull secret) ---------------------------------------------
REL_USER=strata-release REL_PASS=$(openssl rand -hex 16)
MIR_USER=strata-mirror MIR_PASS=$(openssl rand -hex 16)
# bcrypt <password> -> the htpasswd hash (docker-registry accepts bcrypt only). Cost 4, bcrypt's
# minimum: docker-registry checks the hash on every request (no session), and at cost 10 each check
# takes ~0.3 s of CPU here — a 48-layer push would spend a minute hashing.
bcrypt() {
  if command -v htpasswd >/dev/null; then htpasswd -niBC 4 x <<< "$1" | cut -d: -f2
  else python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.stdin.read().strip(), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' <<< "$1"; fi
}
echo "$REL_USER:$(bcrypt "$REL_PASS")" > "$O/release-registry/htpasswd"
echo "$MIR_USER:$(bcrypt "$MIR_PASS")" > "$O/mirror-registry/htpasswd"

# --- registries (docker-registry, TLS) ---------------------------------------------------------------
registry() { # registry <name> <port> <cert> [htpasswd]
  local dir="$O/$1" auth=""
  [[ -n "${4:-}" ]] && auth="auth: {htpasswd: {realm: $1, path: $4}}"
  cat > "$dir/config.yml" <<RC
version: 0.1
log: {level: info, formatter: text}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
$auth
http:
  addr: $NODE_IP:$2
  secret: $(openssl rand -hex 16)
  tls: {certificate: $P/$3.crt, key: $P/$3.key}
RC
  start "$1" docker-registry serve "$dir/config.yml"
}
registry release-registry "$RELP" release "$O/release-registry/htpasswd"
registry internal-registry "$INTP" internal
registry mirror-registry "$MIRP" mirror "$O/mirror-registry/htpasswd"

# --- the proxy (squid) ------------------------------------------------------------------------------
# Pods and the node may use it; CONNECT only to 443 and the ports of the TLS servers above (squid's
# default refuses CONNECT to anything but 443). Nothing is cached. Every request is logged to
# $D/logs/proxy-access.log (squid's native format: time, elapsed, client, result/status, bytes,
# method, URL — "CONNECT host:port" for tunnels — hierarchy/peer, type).
touch "$L/proxy-access.log" "$L/proxy-cache.log"
chown proxy:proxy "$L/proxy-access.log" "$L/proxy-cache.log" "$O/proxy"
cat > "$O/proxy/squid.conf" <<SQ
http_port $NODE_IP:$PROXP
visible_hostname strata-e2e-proxy
pid_filename $O/proxy/squid.pid
cache_effective_user proxy
coredump_dir $O/proxy
cache deny all
cache_mem 8 MB
access_log stdio:$L/proxy-access.log squid
cache_log $L/proxy-cache.log
cache_store_log none
logfile_rotate 0
pinger_enable off
netdb_filename none
shutdown_lifetime 0 seconds
acl clients src $POD_CIDR $NODE_IP/32 127.0.0.1/32
acl tunnel_ports port 443 $RELP $INTP $MIRP $PKGP
acl CONNECT method CONNECT
http_access deny CONNECT !tunnel_ports
http_access allow clients
http_access deny all
SQ
start proxy squid -N -f "$O/proxy/squid.conf"

# --- the HTTPS package repository (nginx, client certificates) --------------------------------------
PKG_HTTPS=$("$HERE/package-repo.sh" start --port "$PKGP" --dir "$O/package-repo-https" --bind "$NODE_IP" \
  --tls-cert "$P/package-repo.crt" --tls-key "$P/package-repo.key" --client-ca "$P/entitlement-ca.crt" | tail -1)

# --- the service CA publication (Rust stand-in, e2e/src/service_ca.rs) ---------------------------------
start service-ca env KUBECONFIG="$KUBECONFIG" "$MCO_BIN" service-ca --ca-bundle "$P/service-ca.crt"

# --- OpenShift's config CRDs (our stand-ins), namespaces --------------------------------------------
kubectl apply --server-side -f "$CONFIG_CRDS" >/dev/null
kubectl apply -f "$ROOT/e2e/openshift/config-namespaces.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/proxies.config.openshift.io crd/images.config.openshift.io \
  crd/imagedigestmirrorsets.config.openshift.io crd/imagetagmirrorsets.config.openshift.io >/dev/null

# --- wait for the servers, then copy the images ------------------------------------------------------
status() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$@" || true; }
is() { [[ "$(status "${@:2}")" == "$1" ]]; }  # is <HTTP status> <curl args...>
wait_for "release registry" 30 release-registry is 401 --cacert "$P/release-ca.crt" "https://$RELEASE/v2/"
wait_for "internal registry" 30 internal-registry is 200 --cacert "$P/service-ca.crt" "https://$INTERNAL/v2/"
wait_for "mirror registry" 30 mirror-registry is 401 --cacert "$P/mirror-ca.crt" "https://$MIRROR/v2/"
wait_for "proxy" 30 proxy is 401 --proxy "$PROXY" --cacert "$P/release-ca.crt" "https://$RELEASE/v2/"
log "registries and proxy answer (anonymous: 401 from the release and mirror registries)"

# skopeo: straight from the open registry, blobs as they are (no recompression: same digests);
# the credentials in a private auth file that is removed right after.
AUTH="$O/push-auth.json"
(umask 077; jq -n --arg r "$RELEASE" --arg ra "$(printf '%s:%s' "$REL_USER" "$REL_PASS" | base64 -w0)" \
  --arg m "$MIRROR" --arg ma "$(printf '%s:%s' "$MIR_USER" "$MIR_PASS" | base64 -w0)" \
  '{auths: {($r): {auth: $ra}, ($m): {auth: $ma}}}' > "$AUTH")
mkdir -p "$O/certs/$RELEASE" "$O/certs/$MIRROR"
cp "$P/release-ca.crt" "$O/certs/$RELEASE/ca.crt"; cp "$P/mirror-ca.crt" "$O/certs/$MIRROR/ca.crt"
copy() { # copy <src ref@digest> <dest repo> <cert dir> [tag]: prints dest@digest, checks the digest
  local digest=${1#*@} dest
  dest="$2@$digest"; [[ -n "${4:-}" ]] && dest="$2:$4"
  skopeo copy -q --preserve-digests --src-tls-verify=false --dest-cert-dir "$3" --dest-authfile "$AUTH" \
    "docker://$1" "docker://$dest" >&2
  local got; got="sha256:$(skopeo inspect --raw --cert-dir "$3" --authfile "$AUTH" "docker://$2@$digest" | sha256sum | cut -d' ' -f1)"
  [[ "$got" == "$digest" ]] || die "copied $1 to $2 but it serves $got"
  echo "$2@$digest"
}
REL_REPO="$RELEASE/openshift-release-dev/ocp-v4.0-art-dev"
MIR_REPO="$MIRROR/mirror/ocp-v4.0-art-dev"
MIR_TAG_REPO="$MIRROR/mirror/os-base"
SOURCE_REPO=quay.example.invalid/openshift-release-dev/ocp-v4.0-art-dev
SOURCE_TAG_REPO=quay.example.invalid/strata-e2e/os-base
if getent hosts "${SOURCE_REPO%%/*}" >/dev/null 2>&1; then die "${SOURCE_REPO%%/*} resolves on this machine; the mirror source must not"; fi
RC="$O/release-copy.out"
copy "$STRATA_OS_IMAGE" "$REL_REPO" "$O/certs/$RELEASE" > "$RC" 2> "$L/release-copy.log" &  # 1.3 GiB: meanwhile the rest
COPY_PID=$!
# On failure: no copy left running (its skopeo is a child of the background subshell), no auth file.
on_exit() {
  if kill -0 "$COPY_PID" 2>/dev/null; then
    # shellcheck disable=SC2046
    kill $(ps -o pid= --ppid "$COPY_PID") "$COPY_PID" 2>/dev/null || true
  fi
  rm -f "$AUTH"
}
trap on_exit EXIT
REL_BASE=$(copy "$STRATA_OS_BASE_IMAGE" "$REL_REPO" "$O/certs/$RELEASE")
REL_BASE_NEXT=$(copy "$STRATA_OS_BASE_IMAGE_NEXT" "$REL_REPO" "$O/certs/$RELEASE")
copy "$STRATA_OS_BASE_IMAGE" "$MIR_REPO" "$O/certs/$MIRROR" >/dev/null
copy "$STRATA_OS_BASE_IMAGE_NEXT" "$MIR_REPO" "$O/certs/$MIRROR" >/dev/null
copy "$STRATA_OS_BASE_IMAGE" "$MIR_TAG_REPO" "$O/certs/$MIRROR" latest >/dev/null
BASE_DIGEST=${STRATA_OS_BASE_IMAGE#*@} NEXT_DIGEST=${STRATA_OS_BASE_IMAGE_NEXT#*@}

# --- objects: the pull secret, the CAs, image config, mirrors, proxy, entitlement -------------------
PULL_SECRET=$(jq -cn --arg r "$RELEASE" --arg ra "$(printf '%s:%s' "$REL_USER" "$REL_PASS" | b64)" \
  --arg m "$MIRROR" --arg ma "$(printf '%s:%s' "$MIR_USER" "$MIR_PASS" | b64)" \
  --arg s "${SOURCE_REPO%%/*}" --arg sa "$(printf 'unused:unused' | b64)" \
  '{auths: {($r): {auth: $ra, email: "strata-e2e@example.invalid"}, ($m): {auth: $ma}, ($s): {auth: $sa}}}')
REG_CAS_RELEASE="$NODE_IP..$RELP" REG_CAS_MIRROR="$NODE_IP..$MIRP"
# noProxy as the cluster-network-operator computes status.noProxy (spec.noProxy + localhost,
# 127.0.0.1, .svc, .cluster.local, the service and pod networks, the API server), sorted. The API
# server and the two plain-HTTP servers share the node IP with the proxied ones, so they are listed
# as host:port (Go's httpproxy and containers/image match the port; the node IP alone is NOT in it).
PACKAGE_REPO_HOSTPORT=$(sed -E 's#^[a-z]+://##; s#/.*$##' <<< "$PACKAGE_REPO")
SPEC_NO_PROXY="$REGISTRY,$PACKAGE_REPO_HOSTPORT"
NO_PROXY=$(printf '%s\n' .cluster.local .svc 127.0.0.1 localhost "$SVC_CIDR" "$POD_CIDR" "$APISERVER" "$REGISTRY" "$PACKAGE_REPO_HOSTPORT" | LC_ALL=C sort -u | paste -sd, -)
# The Secrets and ConfigMaps from kubectl create (their files as they are), then the configuration
# objects (e2e/openshift/cluster-config.yaml), applied together.
{
  # The global pull secret: the only place the release and mirror registries' credentials exist
  # (plus an entry for the unreachable source, as real pull secrets carry quay.io's).
  kubectl create secret generic pull-secret -n openshift-config --type=kubernetes.io/dockerconfigjson \
    --from-literal=.dockerconfigjson="$PULL_SECRET" --dry-run=client -o yaml
  echo ---
  # Per-registry CAs (key <host>..<port>), named by images.config.openshift.io/cluster.
  kubectl create configmap registry-cas -n openshift-config \
    --from-file="$REG_CAS_RELEASE=$P/release-ca.crt" --from-file="$REG_CAS_MIRROR=$P/mirror-ca.crt" --dry-run=client -o yaml
  echo ---
  # The cluster-wide additional trust bundle (installer: additionalTrustBundle; proxy trustedCA).
  kubectl create configmap user-ca-bundle -n openshift-config --from-file=ca-bundle.crt="$P/user-ca.crt" --dry-run=client -o yaml
  echo ---
  # What cluster-image-registry-operator publishes for the internal registry (the MCO lays these
  # down on nodes as /etc/docker/certs.d/<host:port>/ca.crt).
  kubectl create configmap image-registry-ca -n openshift-config-managed \
    --from-file="$NODE_IP..$INTP=$P/service-ca.crt" --dry-run=client -o yaml
  echo ---
  # The entitlement (simple content access) certificate, as OpenShift's Insights operator publishes it.
  kubectl create secret generic etc-pki-entitlement -n openshift-config-managed --type=Opaque \
    --from-file=entitlement.pem="$P/entitlement.pem" --from-file=entitlement-key.pem="$P/entitlement-key.pem" --dry-run=client -o yaml
  echo ---
  render "$ROOT/e2e/openshift/cluster-config.yaml" REGISTRY="$REGISTRY" PROXY="$PROXY" SPEC_NO_PROXY="$SPEC_NO_PROXY" \
    SOURCE_REPO="$SOURCE_REPO" MIR_REPO="$MIR_REPO" SOURCE_TAG_REPO="$SOURCE_TAG_REPO" MIR_TAG_REPO="$MIR_TAG_REPO"
} | kubectl apply --server-side --force-conflicts -f - >/dev/null
kubectl patch proxy.config.openshift.io cluster --subresource=status --type=merge \
  -p "{\"status\":{\"httpProxy\":\"$PROXY\",\"httpsProxy\":\"$PROXY\",\"noProxy\":\"$NO_PROXY\"}}" >/dev/null
kubectl patch image.config.openshift.io cluster --subresource=status --type=merge \
  -p "{\"status\":{\"internalRegistryHostname\":\"$INTERNAL\"}}" >/dev/null
log "objects: pull secret, registry-cas, user-ca-bundle, image-registry-ca, etc-pki-entitlement, image/proxy config, IDMS/ITMS"

# --- pod egress: the TLS servers only through the proxy --------------------------------------------
del_rules
ipt -N "$CHAIN"
ipt -A "$CHAIN" -s "$POD_CIDR" -d "$NODE_IP" -p tcp -m multiport --dports "$RELP,$INTP,$MIRP,$PKGP" \
  -m conntrack --ctstate NEW -j REJECT --reject-with tcp-reset
ipt -I INPUT 1 -m comment --comment "$COMMENT" -j "$CHAIN"
log "pods may reach $NODE_IP:{$RELP,$INTP,$MIRP,$PKGP} only through the proxy (filter/$CHAIN)"

# --- the release copy, the service CA publication ----------------------------------------------------
wait "$COPY_PID" || die "copying $STRATA_OS_IMAGE to the release registry failed: $(tail -5 "$L/release-copy.log")"
REL_OS=$(cat "$RC"); rm -f "$RC" "$AUTH"
wait_for "openshift-service-ca.crt injected in default" 30 service-ca sh -c \
  "kubectl get configmap -n default openshift-service-ca.crt -o jsonpath='{.data.service-ca\.crt}' | grep -q 'BEGIN CERTIFICATE'"
wait_for "openshift-config-managed/service-ca" 30 service-ca \
  kubectl get configmap -n openshift-config-managed service-ca
# The HTTPS repository with the entitlement certificate, trusting the user CA, through the proxy.
curl -sf --max-time 10 --proxy "$PROXY" --cacert "$P/user-ca.crt" --cert "$P/entitlement.pem" --key "$P/entitlement-key.pem" \
  "${PKG_HTTPS}dists/strata/InRelease" | grep -q 'BEGIN PGP SIGNED MESSAGE' || die "the HTTPS package repository does not serve InRelease"
log "release copy done ($REL_OS); service CA published; HTTPS package repository serves with the entitlement"

cat > "$O/env" <<ENV
export STRATA_RELEASE_REGISTRY=$RELEASE
export STRATA_RELEASE_OS_BASE_IMAGE=$REL_BASE
export STRATA_RELEASE_OS_BASE_IMAGE_NEXT=$REL_BASE_NEXT
export STRATA_RELEASE_OS_IMAGE=$REL_OS
export STRATA_INTERNAL_REGISTRY=$INTERNAL
export STRATA_MIRROR_REGISTRY=$MIRROR
export STRATA_MIRROR_SOURCE_OS_BASE_IMAGE=$SOURCE_REPO@$BASE_DIGEST
export STRATA_MIRROR_SOURCE_OS_BASE_IMAGE_NEXT=$SOURCE_REPO@$NEXT_DIGEST
export STRATA_MIRROR_SOURCE_OS_BASE_TAGGED=$SOURCE_TAG_REPO:latest
export STRATA_PROXY=$PROXY
export STRATA_NO_PROXY=$NO_PROXY
export STRATA_PROXY_LOG=$L/proxy-access.log
export STRATA_PACKAGE_REPO_HTTPS=$PKG_HTTPS
export STRATA_OPENSHIFT_ENV_DIR=$O
ENV
log "up"
