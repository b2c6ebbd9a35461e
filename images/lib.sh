# shellcheck shell=bash disable=SC2016 # dpkg-query formats and mmdebstrap hooks: single quotes on purpose
# Functions shared by images/build.sh (`make images`) and e2e/scripts/build-images.sh: Debian
# trixie bases made with mmdebstrap, reproducibly, cached by their inputs and pinned by digest,
# and the builder image's assembly (one definition for the e2e image and the release image).
# Source it; it sets no shell options of its own. Needs root (mmdebstrap's root mode), buildah,
# skopeo, jq.
#
# Bases live in ${XDG_CACHE_HOME:-~/.cache}/strata/bases/<name>-<key>/, <key> = sha256 of every
# input (suite, mirrors, packages, kept packages, added files, the functions below):
#   rootfs.tar     the tree, as mmdebstrap made it (full) or the files of the kept packages (slim)
#   oci/           the base image (OCI layout, tag latest): one gzip layer, created at the epoch
#   digest         its manifest digest: the pin the images built on it record and are checked against
#   packages.tsv   package<TAB>version of every package in the image
#   archive        the date of each Debian archive index the packages came from (InRelease Date:)
# A cached base is used as it is (same digest) until STRATA_REFRESH_BASES=1 rebuilds it from the
# archive as it is then (security updates); the same archive state gives the same digest again.

STRATA_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
STRATA_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# buildah with its own vfs storage under the cache (the e2e images live there too).
BUILDAH=(buildah --root "$STRATA_CACHE/buildah/root" --runroot /run/strata-buildah --storage-driver vfs)
DEBIAN_SUITE=trixie
DEBIAN_MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${STRATA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# mmdebstrap clamps file times to this and uses it for generated dates: the tree does not depend on
# the day it was made.
BASE_SOURCE_DATE_EPOCH=1735689600 # 2025-01-01
# Uid/gid of the unprivileged user of the slim bases (distroless's "nonroot").
NONROOT_ID=65532

# Logs with log() of e2e/scripts/lib.sh, which callers source first (with their LOG_NAME).

# prune_untagged: remove the images a rebuild left untagged. Each rebuild of an image under the same
# name leaves its predecessor behind (the vfs builder image is ~440 MB); nothing here builds with a
# layer cache, so an untagged image is never used again, and a dev machine filled up (16 GB seen).
prune_untagged() { "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true; }

# image_label <image> <label>: a label (or annotation) of an image in the storage, or "".
image_label() {
  "${BUILDAH[@]}" inspect --type image \
    --format "{{index .ImageAnnotations \"$2\"}}{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# debian_base <name> [options] — makes (or finds in the cache) a base image and sets:
#   BASE_DIR (its cache directory), BASE_IMAGE (its name in buildah's storage),
#   BASE_DIGEST (its manifest digest, sha256:…).
# Options:
#   --packages a,b,c   packages to install on top of the minbase variant (required)
#   --keep "a b c"     slim base: keep only the files of these packages and of the packages they
#                      depend on (Depends, Pre-Depends), plus the CA bundle when ca-certificates is
#                      kept, /etc/passwd and /etc/group (root, nonroot 65532), /etc/nsswitch.conf,
#                      /tmp and a dpkg record per package (/var/lib/dpkg/status.d, as distroless
#                      images have, so scanners see the versions). Without --keep: the whole tree.
#   --omit "a b"       with --keep: dependencies not to follow (needed only by maintainer scripts)
#   --exclude GLOB     with --keep: leave out paths matching GLOB (relative, e.g. 'usr/share/nginx/html/*')
#   --file SRC:DEST    install the file SRC at DEST (mode 0644, root) in the tree
#   --title TEXT       the image's org.opencontainers.image.title
debian_base() {
  local name=$1; shift
  local packages="" keep="" omit="" title="" excludes=() files=()
  while (($#)); do
    case "$1" in
      --packages) packages=$2; shift 2 ;;
      --keep) keep=$2; shift 2 ;;
      --omit) omit=$2; shift 2 ;;
      --exclude) excludes+=("$2"); shift 2 ;;
      --file) files+=("$2"); shift 2 ;;
      --title) title=$2; shift 2 ;;
      *) log "debian_base: unknown option $1"; return 2 ;;
    esac
  done
  [[ -n "$packages" ]] || { log "debian_base $name: --packages is required"; return 2; }
  local key f
  key=$({
    echo "name=$name suite=$DEBIAN_SUITE mirror=$DEBIAN_MIRROR security=$DEBIAN_SECURITY_MIRROR"
    echo "sde=$BASE_SOURCE_DATE_EPOCH nonroot=$NONROOT_ID title=$title"
    echo "packages=$packages"; echo "keep=$keep"; echo "omit=$omit"
    printf 'exclude=%s\n' "${excludes[@]}"
    for f in "${files[@]}"; do echo "file=${f#*:}"; sha256sum < "${f%%:*}"; done
    declare -f debian_base _debian_slim_tree
  } | sha256sum | cut -c1-16)
  BASE_DIR="$STRATA_CACHE/bases/$name-$key"
  BASE_IMAGE="localhost/strata/base/$name:$key"
  mkdir -p "$STRATA_CACHE/bases"
  # One maker per base at a time (make images and the e2e scripts may run together).
  local lock
  exec {lock}> "$STRATA_CACHE/bases/$name.lock"
  flock "$lock"
  local old_digest=""
  if [[ -f "$BASE_DIR/done" && -n "${STRATA_REFRESH_BASES:-}" ]]; then
    old_digest=$(cat "$BASE_DIR/digest")
    rm -f "$BASE_DIR/done"
  fi
  if [[ -f "$BASE_DIR/done" ]]; then
    BASE_DIGEST=$(cat "$BASE_DIR/digest")
    log "base $name: cached, $BASE_DIGEST (Debian $(sed -z 's/\n$//; s/\n/; /g' "$BASE_DIR/archive"))"
  else
    local t=$SECONDS work
    work=$(mktemp -d "$STRATA_CACHE/bases/.work-$name.XXXXXX")
    log "base $name: mmdebstrap $DEBIAN_SUITE minbase + $packages${keep:+ (slim: keep $keep)}…"
    local hooks=()
    for f in "${files[@]}"; do
      hooks+=(--customize-hook="install -D -m 0644 -o 0 -g 0 '${f%%:*}' \"\$1${f#*:}\"")
    done
    # The archive's dates and the package versions are recorded before the apt lists go.
    SOURCE_DATE_EPOCH=$BASE_SOURCE_DATE_EPOCH mmdebstrap --quiet --mode=root --variant=minbase \
      --include="$packages" --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      "${hooks[@]}" \
      --customize-hook="for f in \"\$1\"/var/lib/apt/lists/*InRelease; do echo \"\$(sed -n 's/^Codename: //p' \"\$f\") of \$(sed -n 's/^Date: //p' \"\$f\")\"; done > '$work/archive'" \
      --customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W -f='\${Package}\t\${Version}\n' > '$work/packages.tsv'" \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
      "$DEBIAN_SUITE" "$work/full.tar" \
      "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" || {
      rm -rf "$work"; return 1; }
    if [[ -n "$keep" ]]; then
      _debian_slim_tree "$work" "$keep" "$omit" "${excludes[@]}" || { rm -rf "$work"; return 1; }
    else
      mv "$work/full.tar" "$work/rootfs.tar"
    fi
    rm -rf "$BASE_DIR"; mkdir -p "$BASE_DIR"
    mv "$work/rootfs.tar" "$work/packages.tsv" "$work/archive" "$BASE_DIR/"
    rm -rf "$work"
    local c
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$c" "$BASE_DIR/rootfs.tar" / >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --label org.opencontainers.image.title="${title:-strata-base-$name}" \
      --label org.opencontainers.image.description="Debian $DEBIAN_SUITE: $packages${keep:+ (files of: $keep and their dependencies)}" \
      --label org.opencontainers.image.version="$DEBIAN_SUITE-$key" \
      --label strata.dev/base-key="$key" "$c"
    "${BUILDAH[@]}" rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" commit -q --timestamp 0 --rm "$c" "$BASE_IMAGE" >/dev/null
    "${BUILDAH[@]}" push -q --digestfile "$BASE_DIR/digest" "$BASE_IMAGE" "oci:$BASE_DIR/oci:latest"
    BASE_DIGEST=$(cat "$BASE_DIR/digest")
    touch "$BASE_DIR/done"
    log "base $name: $BASE_DIGEST, $(wc -l < "$BASE_DIR/packages.tsv") packages, $(_mib "$(stat -c %s "$BASE_DIR/rootfs.tar")") MiB, Debian $(sed -z 's/\n$//; s/\n/; /g' "$BASE_DIR/archive"), made in $((SECONDS - t)) s"
    if [[ -n "$old_digest" ]]; then
      if [[ "$old_digest" == "$BASE_DIGEST" ]]; then log "base $name: refreshed, same digest (nothing changed in the archive)"
      else log "base $name: refreshed, was $old_digest"; fi
    fi
    # Bases of other inputs are not needed any more (images built on them keep their layers).
    find "$STRATA_CACHE/bases" -mindepth 1 -maxdepth 1 -type d -name "$name-*" -not -path "$BASE_DIR" -exec rm -rf {} +
    "${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/strata/base/$name:" |
      grep -v ":$key\$" | xargs -r "${BUILDAH[@]}" rmi >/dev/null 2>&1 || true
  fi
  # The storage may have lost it (another buildah root, a cleanup): bring it back from the layout.
  if ! "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base $name: importing $BASE_DIR/oci into buildah's storage"
    # Not `buildah pull oci:…`: it names the image after the layout's path, and a path with a
    # dot-led component (~/.cache) is no valid image name.
    skopeo copy -q "oci:$BASE_DIR/oci:latest" \
      "containers-storage:[vfs@$STRATA_CACHE/buildah/root+/run/strata-buildah]$BASE_IMAGE"
  fi
  exec {lock}>&-
}

# _debian_slim_tree <work> <keep> <omit> [exclude-glob...]: from <work>/full.tar, writes
# <work>/rootfs.tar with the files of the kept packages and their dependencies, and
# <work>/packages.tsv.
_debian_slim_tree() {
  local work=$1 keep=$2 omit=$3; shift 3
  local excludes=("$@") root="$work/root" admin="$work/root/var/lib/dpkg"
  mkdir "$root"
  tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$work/full.tar"
  rm -f "$work/full.tar"
  q() { dpkg-query --admindir="$admin" "$@" 2>/dev/null; }
  # The closure of Depends and Pre-Depends; of alternatives, the first installed one.
  local -A seen=() skip=()
  local p queue=() deps alt a
  for p in $omit; do skip[$p]=1; done
  for p in $keep; do queue+=("$p"); done
  while ((${#queue[@]})); do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [[ -n "${seen[$p]:-}" || -n "${skip[$p]:-}" ]] && continue
    if [[ "$(q -W -f='${db:Status-Status}' "$p")" != installed ]]; then
      log "slim base: $p is not installed (a virtual package, or not in --packages)"; return 1
    fi
    seen[$p]=1
    deps=$(q -W -f='${Pre-Depends}, ${Depends}' "$p")
    while IFS= read -r alt; do
      alt=$(sed -E 's/\([^)]*\)//g; s/:[a-z0-9]+//g; s/[[:space:]]//g' <<< "$alt")
      [[ -n "$alt" ]] || continue
      local chosen=""
      IFS='|' read -ra as <<< "$alt"
      for a in "${as[@]}"; do
        if [[ -n "${skip[$a]:-}" ]]; then chosen=-; break; fi
        if [[ "$(q -W -f='${db:Status-Status}' "$a")" == installed ]]; then chosen=$a; break; fi
      done
      # A virtual package (awk, debconf-2.0): its provider is named in --omit or --keep.
      [[ -z "$chosen" || "$chosen" == - ]] || queue+=("$chosen")
    done < <(tr ',' '\n' <<< "$deps")
  done
  local pkgs
  pkgs=$(printf '%s\n' "${!seen[@]}" | LC_ALL=C sort)
  log "slim base: $(wc -l <<< "$pkgs") packages: $(paste -sd' ' <<< "$pkgs")"
  # Users, name service, the CA bundle (generated by ca-certificates' maintainer script, so in no
  # package's file list), dpkg records.
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    "$NONROOT_ID" "$NONROOT_ID" > "$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\nnogroup:x:65534:\n' "$NONROOT_ID" > "$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n' > "$root/etc/nsswitch.conf"
  mkdir -p "$root/var/lib/dpkg/status.d" "$root/home/nonroot"
  chown "$NONROOT_ID:$NONROOT_ID" "$root/home/nonroot"
  local list="$work/files"
  {
    printf '%s\n' . bin sbin lib lib64 etc etc/passwd etc/group etc/nsswitch.conf tmp home home/nonroot \
      var var/lib var/lib/dpkg var/lib/dpkg/status.d
    while read -r p; do
      q -s "$p" > "$root/var/lib/dpkg/status.d/$p"
      echo "var/lib/dpkg/status.d/$p"
      q -L "$p" | sed 's|^/||'
    done <<< "$pkgs"
    if grep -qx ca-certificates <<< "$pkgs"; then
      test -s "$root/etc/ssl/certs/ca-certificates.crt" || { log "slim base: no CA bundle"; return 1; }
      (cd "$root" && find etc/ssl/certs)
    fi
  } | while read -r f; do
    [[ -n "$f" && ( -e "$root/$f" || -L "$root/$f" ) ]] || continue
    for a in "${excludes[@]}"; do
      # shellcheck disable=SC2053 # a glob on purpose
      [[ "$f" == $a ]] && continue 2
    done
    echo "$f"
  done | LC_ALL=C sort -u > "$list"
  tar -C "$root" --no-recursion --numeric-owner --xattrs --xattrs-include='*' --format=pax \
    --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    --mtime="@$BASE_SOURCE_DATE_EPOCH" --clamp-mtime -T "$list" -cf "$work/rootfs.tar"
  while read -r p; do q -W -f='${Package}\t${Version}\n' "$p"; done <<< "$pkgs" > "$work/packages.tsv"
  unset -f q
}

# assemble_builder <strata binary> <image name> [buildah config option...]: the builder image on
# the builder base (`builder_base`): buildah, the strata binary at /usr/local/bin/strata
# (entrypoint, cmd `build`), builder-image/local/storage.conf; the options (labels, annotations)
# are added to its configuration. The e2e image and the release image are both made here.
assemble_builder() {
  local bin=$1 image=$2 c; shift 2
  c=$("${BUILDAH[@]}" from "$BASE_IMAGE")
  "${BUILDAH[@]}" copy --chmod 0755 "$c" "$bin" /usr/local/bin/strata >/dev/null
  "${BUILDAH[@]}" copy --chmod 0644 "$c" "$STRATA_REPO_ROOT/builder-image/local/storage.conf" /etc/containers/storage.conf >/dev/null
  # BUILDAH_ISOLATION and STORAGE_DRIVER are defaults for buildah run by hand in the image;
  # `strata build` passes its own (chroot; --storage-driver, overlay unless told otherwise).
  "${BUILDAH[@]}" config --os linux --arch amd64 --entrypoint '["/usr/local/bin/strata"]' --cmd build \
    --env BUILDAH_ISOLATION=chroot --env STORAGE_DRIVER=vfs --workingdir / "$@" "$c"
  "${BUILDAH[@]}" commit -q --timestamp 0 --rm "$c" "$image" >/dev/null
}

# assemble_controller <strata binary> <image name> [buildah config option...]: the controller's
# image on the runtime base (`runtime_base`): the strata binary at /usr/local/bin/strata, user
# 65532, entrypoint strata, cmd controller. `make images` and the e2e cluster both make it here.
assemble_controller() {
  local bin=$1 image=$2 c; shift 2
  c=$("${BUILDAH[@]}" from "$BASE_IMAGE")
  "${BUILDAH[@]}" copy --chmod 0755 "$c" "$bin" /usr/local/bin/strata >/dev/null
  "${BUILDAH[@]}" config --os linux --arch amd64 --user "$NONROOT_ID:$NONROOT_ID" --workingdir / \
    --entrypoint '["/usr/local/bin/strata"]' --cmd controller --port 8080 "$@" "$c"
  "${BUILDAH[@]}" commit -q --timestamp 0 --rm "$c" "$image" >/dev/null
}

# builder_base: the builder's base (Debian trixie minbase + builder-image/local/packages.txt, the
# whole tree: buildah runs RUN steps with it) → BASE_DIR, BASE_IMAGE, BASE_DIGEST.
builder_base() {
  local pkgs
  pkgs=$(grep -v '^#' "$STRATA_REPO_ROOT/builder-image/local/packages.txt" | grep . | paste -sd, -)
  debian_base builder --packages "$pkgs" --title strata-base-builder \
    --file "$STRATA_REPO_ROOT/builder-image/local/50-strata-ulimits.conf:/etc/containers/containers.conf.d/50-strata-ulimits.conf"
}

# glibc's iconv modules (8 of the 14 MiB of libc6): neither strata nor nginx converts charsets.
GCONV='usr/lib/x86_64-linux-gnu/gconv/*'

# runtime_base: what a dynamically linked Rust binary needs, nothing more: the files of libc6
# (without its iconv modules), libgcc-s1 (and gcc-14-base), base-files, netbase and the CA bundle;
# no shell, no package manager.
runtime_base() {
  debian_base runtime --packages ca-certificates,netbase --title strata-base-runtime \
    --keep "base-files netbase libc6 libgcc-s1 ca-certificates" \
    --omit "mawk debconf perl-base openssl dpkg" --exclude "$GCONV"
}

# nginx_base: nginx (Debian's package: core modules) with its libraries, no shell, no Debian
# default page.
nginx_base() {
  debian_base nginx --packages nginx --title strata-base-nginx \
    --keep "base-files nginx nginx-common" \
    --omit "mawk debconf perl-base dpkg iproute2" \
    --exclude 'usr/share/nginx/html/*' --exclude "$GCONV"
}

_mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
