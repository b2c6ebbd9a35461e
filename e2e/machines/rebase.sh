#!/bin/sh
# Runs ON a machine (the MCD stand-in, e2e/src/mcd.rs, pipes it in over ssh): what the
# machine-config-daemon has rpm-ostree do for a new osImageURL (`rpm-ostree rebase
# ostree-unverified-registry:IMAGE`, pkg/daemon/update.go updateLayeredOS), the way ostree-ext
# imports a container image, with the parts this base has:
#   - skopeo copies the image by digest, with the cluster's pull secret, into a layout kept on the
#     machine: layers it holds already are not fetched again;
#   - the tree is built layer by layer on top of the committed image (the booted one or an earlier
#     update, by their recorded layer lists) that shares the longest first run of layers: only the
#     new layers are unpacked, with their whiteouts, /etc going to /usr/etc (as ostree-ext imports
#     it); the shared part is a hard-linked ostree checkout, so the commit hashes only new files;
#   - `ostree admin deploy` puts it beside the booted deployment, which stays as the rollback, and
#     ostree's GRUB backend writes the new menu. The reboot is the caller's.
# Usage: rebase.sh IMAGE   (IMAGE: repo@sha256:…)
set -eu
IMAGE=$1
AUTH=/var/lib/kubelet/config.json   # where the MCO puts the cluster's pull secret on a node
STATEROOT=strata
REPO=/ostree/repo
OCI=/var/lib/strata-machine/oci
# On the repository's own mount: a hard-linked checkout cannot cross into /var's bind mount.
W=/sysroot/ostree/repo/tmp/strata-rebase
step() { echo "rebase: $(date +%T) $*" >&2; }
fail() { echo "rebase: $*" >&2; exit 3; }

case "$IMAGE" in *@sha256:*) ;; *) echo "rebase: $IMAGE is not pinned by digest" >&2; exit 2 ;; esac
[ -s "$AUTH" ] || { echo "rebase: no pull secret at $AUTH" >&2; exit 2; }
DIGEST=${IMAGE##*@}
TAG=${DIGEST#sha256:}
rm -rf "$W"
mkdir -p "$W" "$(dirname "$OCI")"
trap 'rm -rf "$W"' EXIT

step "fetch $IMAGE"
skopeo copy --quiet --authfile "$AUTH" --preserve-digests "docker://$IMAGE" "oci:$OCI:$TAG" >&2
# The layers (blob digests) and their uncompressed digests, in order: "blob diff_id" per line.
skopeo inspect --raw "oci:$OCI:$TAG" > "$W/manifest.json"
skopeo inspect --config --raw "oci:$OCI:$TAG" > "$W/config.json"
python3 - "$W" <<'EOF' > "$W/layers"
import json, sys
w = sys.argv[1]
layers = [l["digest"] for l in json.load(open(w + "/manifest.json"))["layers"]]
diffs = json.load(open(w + "/config.json"))["rootfs"]["diff_ids"]
assert len(layers) == len(diffs), "manifest and config disagree on the layers"
for blob, diff in zip(layers, diffs):
    print(blob, diff)
EOF
want=$(cut -d' ' -f2 "$W/layers" | tr '\n' ' ')

# The committed image sharing the longest first run of layers: the booted deployment's, or an
# earlier update's (refs strata/images/*).
best="" best_n=0
for rev in $(ostree --repo="$REPO" refs | grep '^strata/images/') \
           $(ostree admin status | awk '$1 == "*" {print $3}' | sed 's/\.[0-9]*$//'); do
  have=$(ostree --repo="$REPO" show --print-metadata-key=strata.dev/image-layers "$rev" 2>/dev/null | tr -d "'") || continue
  n=0
  for d in $want; do
    # shellcheck disable=SC2086 # $have is a word list
    set -- $have
    if [ $# -eq 0 ] || [ "$1" != "$d" ]; then break; fi
    shift; have="$*"; n=$((n + 1))
  done
  if [ "$n" -gt "$best_n" ]; then best=$rev best_n=$n; fi
done
total=$(wc -l < "$W/layers")
if [ -n "$best" ]; then
  step "start from $best: $best_n of $total layers shared"
  ostree --repo="$REPO" checkout -H "$best" "$W/root"
else
  step "no committed image shares a layer: all $total layers"
  mkdir "$W/root"
fi

# The layers after the shared ones: whiteouts first (they hide what the layers below hold), then
# the layer's own files; /etc of an image is /usr/etc of its commit.
to_commit() { p=${1#./}; case "$p" in etc|etc/*) p=usr/$p ;; esac; printf '%s' "$p"; }
i=0
while read -r blob diff; do
  i=$((i + 1))
  [ "$i" -gt "$best_n" ] || continue
  file=$OCI/blobs/${blob%%:*}/${blob#*:}
  tar -tf "$file" | grep -E '(^|/)\.wh\.' | while IFS= read -r wh; do
    dir=$(to_commit "$(dirname "$wh")")
    name=$(basename "$wh")
    if [ "$name" = .wh..wh..opq ]; then
      [ -d "$W/root/$dir" ] && find "$W/root/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    else
      rm -rf "${W:?}/root/$dir/${name#.wh.}"
    fi
  done
  tar -xf "$file" -C "$W/root" --same-owner --same-permissions --xattrs --xattrs-include='*' \
    --transform 's#^\(\./\)\{0,1\}etc\(/\|$\)#usr/etc\2#S' --exclude='.wh.*' --exclude='*/.wh.*'
  step "layer $i of $total unpacked ($diff)"
done < "$W/layers"
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
# keep what they use. The kept layout keeps its blobs for the next fetch.
for ref in $(ostree --repo="$REPO" refs | grep '^strata/images/'); do
  [ "$ref" = "strata/images/$TAG" ] || ostree --repo="$REPO" refs --delete "$ref"
done
step "deployed; reboot to boot it"
