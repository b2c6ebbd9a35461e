#!/bin/sh
# Runs ON a machine (the MCD stand-in, e2e/src/mcd.rs, pipes it in over ssh): what the
# machine-config-daemon has rpm-ostree do for a new osImageURL (`rpm-ostree rebase
# ostree-unverified-registry:IMAGE`, pkg/daemon/update.go updateLayeredOS), the way ostree-ext
# imports a container image, with the parts this base has:
#   - the manifest, the config and then only the layers the machine has not committed yet are
#     fetched by digest, with the cluster's pull secret, through skopeo's image proxy
#     (`skopeo experimental-image-proxy`, the interface ostree-ext's container import uses);
#   - each layer is an ostree commit of its own (refs strata/layers/<diff ID>, as ostree-ext keeps
#     ostree/container/blob/…; the disk image made the base's): only the layers no ref holds are
#     fetched and imported (`ostree commit --tree=tar=`, /etc going to /usr/etc as ostree-ext
#     imports it); then every layer is checked out in order onto one tree (hard links, OCI
#     whiteouts processed) and committed: only new files are hashed;
#   - `ostree admin deploy` puts it beside the booted deployment, which stays as the rollback, and
#     ostree's GRUB backend writes the new menu; the next boot tries it once (GRUB boot counting,
#     e2e/machines/etc/grub.d/08_strata_boot_counting, as greenboot does). The reboot is the caller's.
# Usage: rebase.sh IMAGE   (IMAGE: repo@sha256:…)
set -eu
IMAGE=$1
AUTH=/var/lib/kubelet/config.json   # where the MCO puts the cluster's pull secret on a node
STATEROOT=strata
REPO=/ostree/repo
# On the repository's own mount: a hard-linked checkout cannot cross into /var's bind mount.
W=/sysroot/ostree/repo/tmp/strata-rebase
step() { echo "rebase: $(date +%T) $*" >&2; }
fail() { echo "rebase: $*" >&2; exit 3; }

case "$IMAGE" in *@sha256:*) ;; *) echo "rebase: $IMAGE is not pinned by digest" >&2; exit 2 ;; esac
[ -s "$AUTH" ] || { echo "rebase: no pull secret at $AUTH" >&2; exit 2; }
DIGEST=${IMAGE##*@}
TAG=${DIGEST#sha256:}
# An earlier version kept a layout of every fetched image here.
rm -rf /var/lib/strata-machine/oci
rm -rf "$W"
mkdir -p "$W/blobs"
trap 'rm -rf "$W"' EXIT

# fetch.py meta|blobs: the image's manifest and config into $W, or the blobs named on stdin
# ("digest size" lines) into $W/blobs, through skopeo's image proxy (a SOCK_SEQPACKET socket pair,
# one JSON request per packet, data over pipes passed as file descriptors).
cat > "$W/fetch.py" <<'EOF'
import array, json, os, shutil, socket, subprocess, sys, threading
what, image, auth, w = sys.argv[1:5]
mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
proxy = subprocess.Popen(["skopeo", "experimental-image-proxy", "--authfile", auth,
                          "--sockfd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
theirs.close()

def call(method, *args):
    mine.send(json.dumps({"method": method, "args": list(args)}).encode())
    fds = array.array("i")
    msg, ancillary, _, _ = mine.recvmsg(1 << 20, socket.CMSG_LEN(2 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    reply = json.loads(msg)
    if not reply.get("success"):
        sys.exit(f"rebase: {method} {args}: {reply.get('error')}")
    return reply, list(fds)

def piped(path, method, *args):
    # The proxy closes the pipe in FinishPipe, once all was read: read meanwhile.
    reply, fds = call(method, *args)
    def copy():
        with os.fdopen(fds[0], "rb") as data, open(path, "wb") as out:
            shutil.copyfileobj(data, out, 1 << 20)
    reader = threading.Thread(target=copy)
    reader.start()
    call("FinishPipe", reply["pipeid"])
    reader.join()

call("Initialize")
opened, _ = call("OpenImage", "docker://" + image)
if what == "meta":
    piped(w + "/manifest.json", "GetManifest", opened["value"])
    piped(w + "/config.json", "GetFullConfig", opened["value"])
else:
    for line in sys.stdin:
        digest, size = line.split()
        piped(w + "/blobs/" + digest.split(":", 1)[1], "GetBlob", opened["value"], digest, int(size))
# Shutdown has no reply: the proxy exits.
mine.send(json.dumps({"method": "Shutdown", "args": []}).encode())
sys.exit(proxy.wait())
EOF
step "fetch the manifest and config of $IMAGE"
python3 "$W/fetch.py" meta "$IMAGE" "$AUTH" "$W"
# The layers (blob digests, sizes) and their uncompressed digests, in order: "blob size diff_id".
python3 - "$W" <<'EOF' > "$W/layers"
import json, sys
w = sys.argv[1]
layers = json.load(open(w + "/manifest.json"))["layers"]
diffs = json.load(open(w + "/config.json"))["rootfs"]["diff_ids"]
assert len(layers) == len(diffs), "manifest and config disagree on the layers"
for layer, diff in zip(layers, diffs):
    print(layer["digest"], layer["size"], diff)
EOF
want=$(cut -d' ' -f3 "$W/layers" | tr '\n' ' ')

# The layers no ref holds: fetched and imported, each a commit of its own.
total=$(wc -l < "$W/layers")
while read -r blob size diff; do
  ostree --repo="$REPO" rev-parse "strata/layers/${diff#sha256:}" >/dev/null 2>&1 || echo "$blob $size $diff"
done < "$W/layers" > "$W/wanted"
step "fetch $(wc -l < "$W/wanted") of $total layers ($(awk '{s += $2} END {print s + 0}' "$W/wanted") bytes)"
cut -d' ' -f1,2 "$W/wanted" | python3 "$W/fetch.py" blobs "$IMAGE" "$AUTH" "$W"
while read -r blob _ diff; do
  # libarchive converts names to the locale's charset: under C, a non-ASCII name fails.
  LC_ALL=C.UTF-8 ostree --repo="$REPO" commit --branch="strata/layers/${diff#sha256:}" --tree=tar="$W/blobs/${blob#*:}" \
    --tar-autocreate-parents '--tar-pathname-filter=^(\./)?etc(/|$),usr/etc\2' >/dev/null
  rm -f "$W/blobs/${blob#*:}"
  step "layer $diff imported"
done < "$W/wanted"

# The image's tree: each layer checked out in order over the ones below (hard links into the
# repository; a whiteout removes what it names, an opaque one a directory's content).
while read -r _ _ diff; do
  ostree --repo="$REPO" checkout --union --whiteouts -H "strata/layers/${diff#sha256:}" "$W/root"
done < "$W/layers"
step "$total layers checked out"
[ -d "$W/root/usr/lib/modules" ] || fail "$IMAGE has no /usr/lib/modules (not a bootable OS image)"

step "commit"
# Hard links into the repository are known by device and inode: only new files are hashed.
ostree --repo="$REPO" commit --link-checkout-speedup --branch="strata/images/$TAG" --tree=dir="$W/root" \
  --subject="$IMAGE" --add-metadata-string=strata.dev/image="$IMAGE" \
  --add-metadata-string=strata.dev/image-digest="$DIGEST" \
  --add-metadata-string=strata.dev/image-layers="$want" >/dev/null
rm -rf "$W/root"

step "deploy (the booted deployment stays as the rollback)"
# The new deployment keeps the booted one's kernel arguments and merges its /etc.
ostree admin deploy --os="$STATEROOT" "strata/images/$TAG" >&2
# Earlier updates' refs go (their objects with them, at ostree's next cleanup); the deployments
# keep what they use. Layers stay while the new image or the booted one (the rollback) has them.
for ref in $(ostree --repo="$REPO" refs | grep '^strata/images/'); do
  [ "$ref" = "strata/images/$TAG" ] || ostree --repo="$REPO" refs --delete "$ref"
done
booted=$(ostree admin status | awk '$1 == "*" {print $3}' | sed 's/\.[0-9]*$//')
keep=" $want $(ostree --repo="$REPO" show --print-metadata-key=strata.dev/image-layers "$booted" 2>/dev/null | tr -d "'") "
for ref in $(ostree --repo="$REPO" refs | grep '^strata/layers/'); do
  case "$keep" in *" sha256:${ref#strata/layers/} "*) ;; *) ostree --repo="$REPO" refs --delete "$ref" ;; esac
done
# Boot counting (/etc/grub.d/08_strata_boot_counting, in the menu the deploy wrote): the next boot
# tries the new deployment once; one that does not come up sends GRUB back to the booted one.
grub-editenv /boot/grub/grubenv set strata_boot_pending=1
step "deployed; reboot to boot it (once: GRUB falls back to the booted deployment if it does not come up)"
