#!/bin/sh
# Runs inside the OS image (buildah run), so the sysroot is made by the image's own ostree and
# GRUB (controller/src/boot/disk/mod.rs). In: /run/strata-image (the image's tree, read-only),
# env STRATA_STATEROOT, STRATA_KARGS (one per line), STRATA_IMAGE_REF, STRATA_IMAGE_DIGEST (its
# manifest's), STRATA_IMAGE_LAYERS (its layers' diff IDs, space-separated), STRATA_BOOT_UUID,
# STRATA_LAYER_TARS ("diff_id=path" per layer, paths below /run/strata-disk/layers, the image's
# layers as an OCI layout; empty: no layer commits).
# Out, in /run/strata-disk: sysroot/ (ostree repo + one deployment, /boot's content under
# sysroot/boot), grub-entries.cfg (ostree's GRUB menu entries), BOOTX64.EFI.
set -eu
IMAGE=/run/strata-image
W=/run/strata-disk
S=$W/sysroot
step() { echo "disk-image: $*" >&2; }

mkdir -p "$S"
ostree admin init-fs --modern "$S"
R=$S/ostree/repo
# The disk's first boot loader config is written below from ostree's own generator (grub-mkconfig
# cannot probe an unmounted file); the machine's later deployments use ostree's GRUB backend (set
# after the deploy) when the image carries /etc/default/grub.
ostree --repo="$R" config set sysroot.bootloader none
# ostree keeps 3% of the file system it writes to free by default: 7.5 GB of the host's disk where
# the work directory lies, nothing to do with the disk being made. Lifted while the disk is made,
# and put back (the machine's own repository keeps ostree's default).
ostree --repo="$R" config set core.min-free-space-percent 0

selinux=""
if [ -e "$IMAGE/etc/selinux/config" ] || [ -e "$IMAGE/usr/etc/selinux/config" ]; then
  selinux="--selinux-policy=$IMAGE"
fi
step "commit the image's tree"
# An image keeps its defaults in /etc; an ostree commit carries them in /usr/etc (ostree-ext moves
# them on import; ostree admin deploy wants /usr/etc): the tree without /etc, plus a small tree
# holding a copy of /etc at usr/etc.
printf '/etc\n' > "$W/skip-list"
mkdir -p "$W/etc-tree/usr"
cp -a "$IMAGE/etc" "$W/etc-tree/usr/etc"
# shellcheck disable=SC2086 # $selinux is one word or none
ostree --repo="$R" commit --branch=strata/image --tree=dir="$IMAGE" --tree=dir="$W/etc-tree" \
  --skip-list="$W/skip-list" $selinux \
  --subject="$STRATA_IMAGE_REF" --add-metadata-string=strata.dev/image="$STRATA_IMAGE_REF" \
  --add-metadata-string=strata.dev/image-digest="$STRATA_IMAGE_DIGEST" \
  --add-metadata-string=strata.dev/image-layers="$STRATA_IMAGE_LAYERS" >/dev/null

if [ -n "${STRATA_LAYER_TARS:-}" ]; then
  # As ostree-ext keeps ostree/container/blob/… refs: an update that imports images the same way
  # fetches only the layers no ref holds. The files are the commit's above (same content, same
  # objects): each layer adds its directory metadata, whiteout markers and what later layers
  # replace. /etc goes to /usr/etc, as in the commit.
  step "one commit per layer ($(echo "$STRATA_LAYER_TARS" | wc -w) layers)"
  for pair in $STRATA_LAYER_TARS; do
    diff=${pair%%=*}
    # libarchive converts names to the locale's charset: under C, a non-ASCII name fails.
    LC_ALL=C.UTF-8 ostree --repo="$R" commit --branch="strata/layers/${diff#sha256:}" --tree=tar="$W/layers/${pair#*=}" \
      --tar-autocreate-parents '--tar-pathname-filter=^(\./)?etc(/|$),usr/etc\2' >/dev/null
  done
  rm -rf "$W/layers"
fi

ostree admin os-init --sysroot="$S" "$STRATA_STATEROOT" >/dev/null
rm -rf "$W/etc-tree"
step "deploy"
set --
while IFS= read -r karg; do
  [ -n "$karg" ] && set -- "$@" "--karg=$karg"
done <<KARGS
$STRATA_KARGS
KARGS
ostree admin deploy --sysroot="$S" --os="$STRATA_STATEROOT" "$@" strata/image >&2
ostree --repo="$R" config unset core.min-free-space-percent
if [ -e "$IMAGE/etc/default/grub" ]; then
  # On the machine, `ostree admin deploy` writes the next menu with grub-mkconfig (15_ostree).
  ostree --repo="$R" config set sysroot.bootloader grub2
fi

step "GRUB menu entries (ostree's generator) and EFI binary"
version=$(readlink "$S/boot/loader")
version=${version#loader.}
GRUB2_BOOT_DEVICE_ID="$STRATA_BOOT_UUID" \
GRUB2_PREPARE_ROOT_CACHE="search --no-floppy --fs-uuid --set=root $STRATA_BOOT_UUID" \
  ostree admin instutil grub2-generate --sysroot="$S" "$version" > "$W/grub-entries.cfg"
mkdir -p "$S/boot/grub"
cp -a /usr/lib/grub/x86_64-efi "$S/boot/grub/"
# shellcheck disable=SC2086 # STRATA_GRUB_MODULES is a word list
grub-mkimage -O x86_64-efi -p /grub -c "$W/grub-early.cfg" -o "$W/BOOTX64.EFI" $STRATA_GRUB_MODULES
step "done"
