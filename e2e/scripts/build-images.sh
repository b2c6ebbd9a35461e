#!/usr/bin/env bash
# Build the e2e images locally from Debian packages (nothing is pulled from a container registry):
#   pause    scratch + Debian's static catatonit, written to an archive for `ctr images import`
#   os-base  busybox-static root filesystem with /bin/sh and the layout the image gate checks (one
#            kernel directory with a placeholder vmlinuz, /sysroot and /ostree, an empty /boot and
#            /var): stands in for RHCOS in quick tests (usable as FROM with RUN)
#   builder  Debian trixie minbase (mmdebstrap) + buildah 1.39 + the `strata` binary (builder-image/local/)
#            (trixie, not bookworm: bookworm's buildah 1.28 has CVE-2024-1753, CVE-2024-9675, CVE-2024-11218)
# Usage: build-images.sh [--push REGISTRY]   (REGISTRY = host:port, plain HTTP)
#   STRATA_BIN=path/to/strata (or first positional arg) — builder image is skipped when absent.
#   STRATA_REBUILD_IMAGES=1 forces a rebuild.
# After --push, writes $STRATA_IMAGES_OUT (default e2e/.state/images.env) with digest-pinned references.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=build-images
PUSH=""
while (($#)); do
  case "$1" in
    --push) PUSH="$2"; shift 2 ;;
    *) STRATA_BIN="$1"; shift ;;
  esac
done
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
STRATA_BIN="${STRATA_BIN:-${CARGO_TARGET_DIR:-$("$HERE/target-dir.sh")}/debug/strata}"
IMGDIR="$CACHE/images"
mkdir -p "$IMGDIR"
# BUILDAH (the same storage under the cache), image_label, prune_untagged.
# shellcheck source-path=SCRIPTDIR source=../../images/lib.sh
. "$ROOT/images/lib.sh"
TS=(--timestamp 0)

# --- pause -----------------------------------------------------------------------------------
PAUSE_TAR="$IMGDIR/pause.tar"
if [[ -n "${STRATA_REBUILD_IMAGES:-}" || ! -s "$PAUSE_TAR" ]]; then
  log "building pause image (scratch + /usr/bin/catatonit)…"
  c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" copy "$c" /usr/bin/catatonit /catatonit >/dev/null
  "${BUILDAH[@]}" config --entrypoint '["/catatonit","-P"]' --os linux --arch amd64 "$c"
  "${BUILDAH[@]}" commit -q "${TS[@]}" --rm "$c" localhost/strata/pause:catatonit >/dev/null
  rm -f "$PAUSE_TAR"
  "${BUILDAH[@]}" push -q localhost/strata/pause:catatonit "docker-archive:$PAUSE_TAR:localhost/strata/pause:catatonit"
fi

# --- os-base ---------------------------------------------------------------------------------
OS_BASE_VERSION=3 # bumped when the layout changes
if [[ -n "${STRATA_REBUILD_IMAGES:-}" ]] || [[ "$(image_label localhost/strata-test/os-base:latest strata.dev/os-base-version)" != "$OS_BASE_VERSION" ]]; then
  log "building os-base image (busybox-static root filesystem, CoreOS layout)…"
  R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/tmp,root,proc,sys,dev,run,home,boot,sysroot/ostree}
  chmod 1777 "$R/tmp" "$R/var/tmp"
  # What the image gate checks of a CoreOS image: one kernel under /usr/lib/modules (a placeholder
  # here: nothing boots this image) and the ostree layout.
  mkdir -p "$R/usr/lib/modules/0.0.0-strata-test"
  echo "placeholder kernel of the strata test base" > "$R/usr/lib/modules/0.0.0-strata-test/vmlinuz"
  ln -s sysroot/ostree "$R/ostree"
  cp /bin/busybox "$R/bin/busybox"
  for a in $("$R/bin/busybox" --list); do [[ -e "$R/bin/$a" ]] || ln -s busybox "$R/bin/$a"; done
  cat > "$R/etc/os-release" <<'OS'
NAME="Strata test OS"
ID=strata-test
ID_LIKE="rhel fedora"
VERSION_ID=1
PRETTY_NAME="Strata test OS (busybox; stands in for RHCOS in e2e tests)"
OS
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$R/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$R/etc/group"
  tar -C "$R" --numeric-owner --owner=0 --group=0 -cf "$IMGDIR/os-base-rootfs.tar" .
  rm -rf "$R"; trap - EXIT
  c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$c" "$IMGDIR/os-base-rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" config --os linux --arch amd64 --cmd /bin/sh --env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    --label org.opencontainers.image.title=strata-test-os-base --label ostree.linux=strata-test \
    --label containers.bootc=1 --label strata.dev/os-base-version="$OS_BASE_VERSION" "$c"
  "${BUILDAH[@]}" commit -q "${TS[@]}" --rm "$c" localhost/strata-test/os-base:latest >/dev/null
  # The "next release" of the test base: the same tree with one more file, so another digest
  # (upgrade tests move the release ConfigMap to it and back).
  c=$("${BUILDAH[@]}" from localhost/strata-test/os-base:latest)
  "${BUILDAH[@]}" run --isolation chroot "$c" -- /bin/sh -c 'echo 2 > /usr/lib/strata-test-release'
  "${BUILDAH[@]}" config --label strata.dev/os-base-release=2 "$c"
  "${BUILDAH[@]}" commit -q "${TS[@]}" --rm "$c" localhost/strata-test/os-base:next >/dev/null
fi

# --- builder ---------------------------------------------------------------------------------
BUILDER=0
if [[ -x "$STRATA_BIN" ]]; then
  BUILDER=1
  ROOTFS="$IMGDIR/builder-rootfs.tar"
  PKGS=$(grep -v '^#' "$ROOT/builder-image/local/packages.txt" | paste -sd, -)
  # trixie-security too: buildah's fixes arrive there first. The stamp names the suite, so a
  # change of suite rebuilds the cached root filesystem and (through SUM) the builder image.
  SUITE=trixie
  # buildah >= 1.3x raises RLIMIT_NOFILE/NPROC of RUN steps to 1048576 unless told otherwise; a pod
  # (and root on this VM) lacks CAP_SYS_RESOURCE, so the step would fail with "setting RLIMIT_NOFILE
  # ... operation not permitted". -1 keeps the limits the builder was started with.
  export ULIMITS=$'# RUN steps keep the builder process limits (no CAP_SYS_RESOURCE to raise them).\n[containers]\ndefault_ulimits = ["nofile=-1:-1", "nproc=-1:-1"]'
  STAMP="$SUITE+security+$(sha256sum <<< "$ULIMITS" | cut -c1-8):$PKGS"
  SUM=$({ sha256sum "$STRATA_BIN" "$ROOT/builder-image/local/"*; echo "$STAMP"; } | sha256sum | cut -c1-64)
  if [[ -n "${STRATA_REBUILD_IMAGES:-}" || ! -s "$ROOTFS" || "$(cat "$ROOTFS.pkgs" 2>/dev/null)" != "$STAMP" ]]; then
    log "building builder root filesystem: mmdebstrap $SUITE minbase + $PKGS (~2 min)…"
    mmdebstrap --quiet --variant=minbase --include="$PKGS" \
      --dpkgopt='path-exclude=/usr/share/{doc,man,locale}/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
      --customize-hook='mkdir -p "$1/etc/containers/containers.conf.d" && printf "%s\n" "$ULIMITS" > "$1/etc/containers/containers.conf.d/50-strata-ulimits.conf"' \
      "$SUITE" "${ROOTFS%.tar}.new.tar" \
      "deb http://deb.debian.org/debian $SUITE main" "deb http://deb.debian.org/debian-security $SUITE-security main"
    mv "${ROOTFS%.tar}.new.tar" "$ROOTFS"; echo "$STAMP" > "$ROOTFS.pkgs"
  fi
  if [[ -n "${STRATA_REBUILD_IMAGES:-}" ]] || [[ "$(image_label localhost/strata/builder:local strata.dev/inputs-sha256)" != *"$SUM"* ]]; then
    log "building builder image (buildah + strata from $STRATA_BIN)…"
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$c" "$ROOTFS" / >/dev/null
    "${BUILDAH[@]}" copy --chmod 0755 "$c" "$STRATA_BIN" /usr/local/bin/strata >/dev/null
    "${BUILDAH[@]}" copy "$c" "$ROOT/builder-image/local/storage.conf" /etc/containers/storage.conf >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 --entrypoint '["/usr/local/bin/strata"]' --cmd build \
      --env BUILDAH_ISOLATION=chroot --env STORAGE_DRIVER=vfs --workingdir / \
      --label strata.dev/inputs-sha256="$SUM" "$c"
    "${BUILDAH[@]}" commit -q "${TS[@]}" --rm "$c" localhost/strata/builder:local >/dev/null
  fi
else
  log "SKIPPING the builder image: no strata binary at '$STRATA_BIN'"
  log "  (build it with: CARGO_TARGET_DIR=$("$HERE/target-dir.sh") cargo build -p strata-controller --bin strata, or set STRATA_BIN)"
fi

# Images a rebuild left untagged (the old builder image, ~440 MB each time strata changes) go.
prune_untagged

# --- push ------------------------------------------------------------------------------------
if [[ -n "$PUSH" ]]; then
  OUT="${STRATA_IMAGES_OUT:-$ROOT/e2e/.state/images.env}"
  mkdir -p "$(dirname "$OUT")"
  push() { # push <local> <repo> -> prints repo@digest
    local df; df=$(mktemp)
    "${BUILDAH[@]}" push -q --tls-verify=false --digestfile "$df" "$1" "docker://$PUSH/$2:latest" >&2
    echo "$PUSH/$2@$(cat "$df")"; rm -f "$df"
  }
  log "pushing images to $PUSH…"
  {
    echo "STRATA_OS_BASE_IMAGE=$(push localhost/strata-test/os-base:latest strata-test/os-base)"
    echo "STRATA_OS_BASE_IMAGE_NEXT=$(push localhost/strata-test/os-base:next strata-test/os-base-next)"
    if ((BUILDER)); then echo "STRATA_BUILDER_IMAGE=$(push localhost/strata/builder:local strata/builder)"; fi
  } > "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
  cat "$OUT" >&2
fi
echo "PAUSE_TAR=$PAUSE_TAR"
