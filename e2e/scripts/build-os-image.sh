#!/usr/bin/env bash
# Build the CoreOS-like OS image: the stand-in for RHEL CoreOS that e2e tests, examples and
# benchmarks layer on (the busybox os-base of build-images.sh stays for quick tests). A real Debian
# trixie tree made by mmdebstrap from e2e/os-image/packages.txt — systemd, one kernel with its
# modules, vmlinuz and initramfs under /usr/lib/modules/<version>, apt/dpkg with its database in
# /usr/lib/sysimage/dpkg, /etc, an empty /var, the ostree layout (e2e/os-image/customize.sh) — written
# as an OCI image layout of ~48 layers chunked by package like rpm-ostree does (e2e/os-image/chunk.py),
# reproducible: the same inputs give the same digest.
#
# Usage: build-os-image.sh [--push HOST:PORT/REPO[:TAG]] [--dest-tls-verify BOOL]
#                          [--dest-cert-dir DIR] [--dest-authfile FILE]
#   stdout, last line: with --push the digest-pinned reference HOST:PORT/REPO@sha256:…, else the
#   OCI layout directory (use it as oci:DIR:latest). Progress and timings go to stderr.
#   --dest-tls-verify defaults to false (plain HTTP registry) unless --dest-cert-dir is given.
# Env: STRATA_OS_IMAGE_LAYERS (48), STRATA_JOBS (2, compression processes), STRATA_REBUILD_OS_IMAGE=1,
#      STRATA_DEBIAN_MIRROR, STRATA_DEBIAN_SECURITY_MIRROR.
# Cache (${XDG_CACHE_HOME:-~/.cache}/strata): os-rootfs-<key> (the tree; key: package list, customize
# hook, suite, mirrors, repository key) and os-image-<key> (the OCI layout; key: the rootfs key, this
# script, the chunker, the layer count). A warm run only checks that they exist.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OSDIR="$ROOT/e2e/os-image"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
SUITE=trixie
MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${STRATA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LAYERS="${STRATA_OS_IMAGE_LAYERS:-48}"
JOBS="${STRATA_JOBS:-2}"
# Fixed install-time clock (shadow's password dates, dracut, …) so the tree does not depend on the day.
SOURCE_DATE_EPOCH=1735689600 # 2025-01-01
START=$SECONDS
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=build-os-image
took() { echo "$((SECONDS - $1)) s"; }

PUSH="" TLS_VERIFY="" CERT_DIR="" AUTHFILE=""
while (($#)); do
  case "$1" in
    --push) PUSH="$2"; shift 2 ;;
    --dest-tls-verify) TLS_VERIFY="$2"; shift 2 ;;
    --dest-tls-verify=*) TLS_VERIFY="${1#*=}"; shift ;;
    --dest-cert-dir) CERT_DIR="$2"; shift 2 ;;
    --dest-authfile) AUTHFILE="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-os-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { log "must run as root (mmdebstrap root mode, chroot for dracut)"; exit 1; }
for t in mmdebstrap python3 skopeo; do
  command -v "$t" >/dev/null || { log "missing $t (apt-get install mmdebstrap python3 skopeo)"; exit 1; }
done

# --- cache keys ----------------------------------------------------------------------------------
REPO_KEY=$("$HERE/package-repo.sh" key)
PKGS=$(grep -v '^#' "$OSDIR/packages.txt" | grep . | sort | paste -sd, -)
ROOTFS_INPUTS=$(cat "$OSDIR/packages.txt" "$OSDIR/customize.sh" "$REPO_KEY" \
  <(echo "suite=$SUITE mirror=$MIRROR security=$SECURITY_MIRROR sde=$SOURCE_DATE_EPOCH mmdebstrap-call=3") | sha256sum | cut -c1-16)
IMAGE_KEY=$(cat "${BASH_SOURCE[0]}" "$OSDIR/chunk.py" <(echo "rootfs=$ROOTFS_INPUTS layers=$LAYERS") | sha256sum | cut -c1-16)
RFS="$CACHE/os-rootfs-$ROOTFS_INPUTS"
OUT="$CACHE/os-image-$IMAGE_KEY"
if [[ -n "${STRATA_REBUILD_OS_IMAGE:-}" ]]; then rm -rf "$RFS" "$OUT"; fi
mkdir -p "$CACHE"
# One builder at a time per cache (the e2e test and a script run may race).
exec 9> "$CACHE/os-image.lock"
flock 9

# --- root filesystem -------------------------------------------------------------------------------
if [[ -f "$RFS/done" ]]; then
  log "root filesystem cached: $RFS"
else
  t=$SECONDS
  log "building the root filesystem: mmdebstrap $SUITE minbase + $(wc -l <<< "${PKGS//,/$'\n'}") packages (cold: several minutes)…"
  rm -rf "$RFS"; mkdir -p "$RFS"
  date +%s > "$RFS/started"
  # INITRD=No: Debian's kernel hook would write /boot/initrd.img; customize.sh builds the one
  # initramfs ostree wants, in /usr/lib/modules/<version>. Docs and man pages are left out, as
  # RHCOS's treefile does (documentation: false); copyright files stay.
  INITRD=No SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH STRATA_OS_REPO_KEY="$REPO_KEY" \
  mmdebstrap --quiet --mode=root --variant=minbase --include="$PKGS" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook="\"$OSDIR/customize.sh\" \"\$1\"" \
    "$SUITE" "$RFS/root" \
    "deb $MIRROR $SUITE main non-free-firmware" \
    "deb $SECURITY_MIRROR $SUITE-security main non-free-firmware"
  # mmdebstrap's mounts are gone now: empty what the image must not carry.
  find "$RFS/root/tmp" "$RFS/root/run" "$RFS/root/dev" -mindepth 1 -delete
  DPKG_ADMINDIR="$RFS/root/usr/lib/sysimage/dpkg" dpkg-query -W -f='${Package}\t${Version}\t${Installed-Size}\n' \
    > "$RFS/packages.tsv"
  touch "$RFS/done"
  log "root filesystem: $(wc -l < "$RFS/packages.tsv") packages, $(du -sh "$RFS/root" | cut -f1) in $(took "$t")"
fi

# --- OCI image layout, chunked ---------------------------------------------------------------------
if [[ -f "$OUT/done" ]]; then
  log "image cached: $OUT/oci"
else
  t=$SECONDS
  KVER=$(find "$RFS/root/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n')
  log "writing the OCI layout: $LAYERS layers chunked by package, gzip, $JOBS processes…"
  rm -rf "$OUT"; mkdir -p "$OUT"
  python3 "$OSDIR/chunk.py" --root "$RFS/root" --out "$OUT/oci" --built-after "$(cat "$RFS/started")" \
    --layers "$LAYERS" --jobs "$JOBS" --tag latest \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env DPKG_ADMINDIR=/usr/lib/sysimage/dpkg \
    --label containers.bootc=1 --label ostree.bootable=true --label "ostree.linux=$KVER" \
    --label org.opencontainers.image.title=strata-os-coreos \
    --label "org.opencontainers.image.description=CoreOS-like Debian $SUITE OS image (stands in for RHEL CoreOS in Strata's tests)" \
    --label "org.opencontainers.image.version=$SUITE-$ROOTFS_INPUTS" \
    --label "strata.dev/os-image-key=$IMAGE_KEY" > "$OUT/summary.json"
  cp "$RFS/packages.tsv" "$OUT/packages.tsv"
  touch "$OUT/done"
  jq -r '"image: \(.layers) layers, \(.packages) packages, \(.uncompressed / 1048576 | floor) MiB uncompressed (tar), \(.compressed / 1048576 | floor) MiB compressed, manifest \(.manifest)"' "$OUT/summary.json" >&2
  log "OCI layout written in $(took "$t")"
  # Images and trees of other inputs: the newest other one of each kind is kept (two checkouts on
  # one machine, a branch and main, each keep theirs), older ones go (~2 GiB each).
  for kind in os-image os-rootfs; do
    find "$CACHE" -maxdepth 1 -name "$kind-*" -not -name '*.lock' -not -path "$OUT" -not -path "$RFS" \
      -printf '%T@ %p\n' | sort -rn | tail -n +2 | cut -d' ' -f2- | xargs -r rm -rf
  done
fi

# --- push ------------------------------------------------------------------------------------------
if [[ -n "$PUSH" ]]; then
  t=$SECONDS
  ref="$PUSH"; [[ "${ref##*/}" == *:* ]] || ref="$ref:latest"
  [[ -n "$TLS_VERIFY" ]] || { [[ -n "$CERT_DIR" ]] && TLS_VERIFY=true || TLS_VERIFY=false; }
  args=(--dest-tls-verify="$TLS_VERIFY" --preserve-digests)
  [[ -n "$CERT_DIR" ]] && args+=(--dest-cert-dir "$CERT_DIR")
  [[ -n "$AUTHFILE" ]] && args+=(--dest-authfile "$AUTHFILE")
  df=$(mktemp); trap 'rm -f "$df"' EXIT
  log "pushing to $ref…"
  skopeo copy -q "${args[@]}" --digestfile "$df" "oci:$OUT/oci:latest" "docker://$ref" >&2
  digest=$(cat "$df")
  [[ "$digest" == "$(jq -r .manifest "$OUT/summary.json")" ]] || { log "pushed digest $digest differs from the layout's"; exit 1; }
  log "pushed in $(took "$t"); total $(took "$START")"
  echo "${ref%:*}@$digest"
else
  log "done in $(took "$START")"
  echo "$OUT/oci"
fi
