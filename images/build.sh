#!/usr/bin/env bash
# `make images`: the three release images as OCI archives, each on a Debian trixie base that is
# made here with mmdebstrap, reproducibly, and pinned by digest (images/README.md):
#   strata-controller      runtime base (libc6, libgcc-s1, CA bundle; no shell) + release `strata`,
#                          user 65532, entrypoint strata, cmd controller
#   strata-builder         builder base (minbase + buildah 1.39, netavark, ca-certificates) + release
#                          `strata` (images/lib.sh assemble_builder, the e2e builder's definition)
#   strata-console-plugin  nginx base (nginx and its libraries; no shell) + console-plugin's
#                          production build (dist/) + console-plugin/nginx.conf, user 65532, 9443
# Usage: images/build.sh            (needs root: mmdebstrap's root mode; buildah, skopeo, jq, npm)
# Env:   STRATA_IMAGES_DIR      output directory (default ${XDG_CACHE_HOME:-~/.cache}/strata/images/release)
#        STRATA_REFRESH_BASES=1 rebuild the bases from the Debian archive as it is now (security updates)
#        STRATA_REBUILD_IMAGES=1 rebuild the images even when their inputs did not change
#        STRATA_RELEASE_BIN     use this strata binary instead of `cargo build --release`
#        CARGO_TARGET_DIR       cargo's target dir (default: e2e/scripts/target-dir.sh)
# Prints, at the end, each archive with its digest and size; writes them to $OUT/images.env.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
START=$SECONDS
# shellcheck source-path=SCRIPTDIR source=../e2e/scripts/lib.sh
. "$ROOT/e2e/scripts/lib.sh"
LOG_NAME=images
step() { log "[$((SECONDS - START)) s] $*"; }
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
OUT="${STRATA_IMAGES_DIR:-$STRATA_CACHE/images/release}"
WORK="$OUT/.work"
mkdir -p "$OUT" "$WORK"
[[ $(id -u) == 0 ]] || { log "must run as root (mmdebstrap's root mode, buildah's storage)"; exit 1; }
for t in mmdebstrap buildah skopeo jq npm cargo git; do
  command -v "$t" >/dev/null || { log "missing $t"; exit 1; }
done

# --- the release binary --------------------------------------------------------------------------
if [[ -n "${STRATA_RELEASE_BIN:-}" ]]; then
  BIN=$STRATA_RELEASE_BIN
  step "strata: $BIN (STRATA_RELEASE_BIN)"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$("$ROOT/e2e/scripts/target-dir.sh")}"
  step "strata: cargo build --release (cold: ~15 min on 2 cores; thin LTO)…"
  t=$SECONDS
  (cd "$ROOT" && cargo build --release --locked -p strata-controller --bin strata)
  BIN="$CARGO_TARGET_DIR/release/strata"
  step "strata: built in $((SECONDS - t)) s"
fi
VERSION_LINE=$("$BIN" --version) # strata 0.1.0 (commit b734c98, 2026-11-29)
VERSION=$(awk '{print $2}' <<< "$VERSION_LINE")
COMMIT=$(sed -n 's/.*(commit \([^,)]*\).*/\1/p' <<< "$VERSION_LINE")
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
[[ "$COMMIT" != *-dirty ]] || REVISION+="-dirty"
step "strata: $VERSION_LINE; dynamic libraries: $(ldd "$BIN" | awk '$1 !~ /vdso/ {print $1}' | paste -sd' ' -)"
# The labels every image carries (besides its base's, set per image).
LABELS=(org.opencontainers.image.version="$VERSION" org.opencontainers.image.revision="$REVISION"
  org.opencontainers.image.licenses=Apache-2.0 org.opencontainers.image.vendor=Strata)

# --- the console plugin's production build -------------------------------------------------------
PLUGIN="$ROOT/console-plugin"
# Its inputs: the files git would commit (tracked, or new and not ignored: no node_modules, dist).
PLUGIN_SUM=$(cd "$ROOT" && git ls-files -z -co --exclude-standard -- console-plugin |
  { xargs -0 sha256sum 2>/dev/null || true; } | sha256sum | cut -c1-16)
DIST="$WORK/console-plugin-dist-$PLUGIN_SUM"
if [[ -f "$DIST/plugin-manifest.json" ]]; then
  step "console plugin: production build cached ($DIST)"
else
  t=$SECONDS
  step "console plugin: npm ci (when node_modules is older than the lock file) and npm run build, node $("$PLUGIN/scripts/node.sh" node --version)…"
  make --no-print-directory -C "$ROOT" console-deps >&2
  (cd "$PLUGIN" && scripts/node.sh npm run --silent build) >&2
  rm -rf "$WORK"/console-plugin-dist-*
  cp -a "$PLUGIN/dist" "$DIST.tmp" && mv "$DIST.tmp" "$DIST"
  step "console plugin: built in $((SECONDS - t)) s ($(du -sh "$DIST" | cut -f1))"
fi

# --- images --------------------------------------------------------------------------------------
# finish <name> <inputs> <smoke function>: smoke-test the committed image
# localhost/strata/release/<name>:$VERSION, write $OUT/<name>.oci.tar, check that its first layers
# are its base's.
declare -A DIGEST=() BASE_OF=()
finish() {
  local name=$1 inputs=$2 image="localhost/strata/release/$1:$VERSION" df
  "$3" "$image" || { log "$name: smoke test FAILED"; exit 1; }
  rm -f "$OUT/$name.oci.tar"
  df=$(mktemp)
  "${BUILDAH[@]}" push -q --digestfile "$df" "$image" "oci-archive:$OUT/$name.oci.tar:$name:$VERSION"
  DIGEST[$name]=$(cat "$df"); rm -f "$df"
  # The pin, checked: the image's first layers are exactly the base's (same compressed blobs).
  local base_layers image_layers n
  base_layers=$(skopeo inspect --raw "oci:$BASE_DIR/oci:latest" | jq -r '.layers[].digest')
  image_layers=$(skopeo inspect --raw "oci-archive:$OUT/$name.oci.tar" | jq -r '.layers[].digest')
  n=$(wc -l <<< "$base_layers")
  [[ "$(head -n "$n" <<< "$image_layers")" == "$base_layers" ]] ||
    { log "$name: its layers do not start with its base's ($BASE_DIGEST)"; exit 1; }
  echo "$inputs" > "$OUT/$name.inputs"
  echo "${DIGEST[$name]}" > "$OUT/$name.digest"
}
# fresh <name> <inputs>: true when $OUT/<name>.oci.tar was made from these inputs.
fresh() {
  [[ -z "${STRATA_REBUILD_IMAGES:-}" && -s "$OUT/$1.oci.tar" && "$(cat "$OUT/$1.inputs" 2>/dev/null)" == "$2" ]]
}
base_args() { # BASE_ARGS: the OCI annotations naming the current base
  BASE_ARGS=(--annotation "org.opencontainers.image.base.name=$BASE_IMAGE"
    --annotation "org.opencontainers.image.base.digest=$BASE_DIGEST")
}
inputs_of() { # inputs_of <files...>: one hash of the base, the labels, this script and the files
  { echo "$BASE_DIGEST ${LABELS[*]}"; cat "${BASH_SOURCE[0]}" "$HERE/lib.sh"; cat "$@"; } | sha256sum | cut -c1-64
}
label_args() { local l; for l in "${LABELS[@]}" "$@"; do printf '%s\0%s\0' --label "$l"; done; }

# Smoke tests, each in a throwaway container of the committed image (nothing is committed).
# run_in <image> [buildah run option...] -- <command...>: its output; fails with the command.
run_in() {
  local image=$1 s rc=0 opts=(); shift
  while [[ "$1" != -- ]]; do opts+=("$1"); shift; done
  s=$("${BUILDAH[@]}" from "$image")
  "${BUILDAH[@]}" run --isolation chroot "${opts[@]}" "$s" "$@" 2>&1 || rc=$?
  "${BUILDAH[@]}" rm "$s" >/dev/null
  return $rc
}
smoke_controller() { # the binary runs as the image's user: every library it needs is there
  local out
  out=$(run_in "$1" --user "$NONROOT_ID:$NONROOT_ID" -- /usr/local/bin/strata --version) || { echo "$out" >&2; return 1; }
  [[ "$out" == "$VERSION_LINE" ]] || { log "strata --version in the image: $out"; return 1; }
  log "strata-controller: as $NONROOT_ID: $out"
}
smoke_builder() {
  local out
  out=$(run_in "$1" -- /bin/sh -c 'buildah --version && strata --version') || { echo "$out" >&2; return 1; }
  log "strata-builder: $(paste -sd';' <<< "$out" | sed 's/;/; /')"
}
smoke_console_plugin() { # nginx as the image's user serves dist/ over TLS (a throwaway certificate)
  local s mnt tmp rc=0
  s=$("${BUILDAH[@]}" from "$1"); mnt=$("${BUILDAH[@]}" mount "$s"); tmp=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=smoke \
    -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
  chmod 0755 "$tmp"; chmod 0644 "$tmp/tls.key"; touch "$tmp/log"; chown "$NONROOT_ID" "$tmp/log"
  mkdir -p "$mnt/var/cert"
  # Own mount, network and PID namespaces: nothing listens on the host, nothing is left behind.
  # shellcheck disable=SC2016 # the script's variables are its own
  timeout 60 unshare --mount --net --pid --fork --mount-proc="$mnt/proc" sh -ec '
    mnt=$1 tmp=$2 id=$3
    ip link set lo up
    mount --rbind /dev "$mnt/dev"
    mount --bind "$tmp" "$mnt/var/cert"
    chroot --userspec="$id:$id" "$mnt" /usr/sbin/nginx -e /dev/stderr -g "daemon off;" >>"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -skf -o /dev/null https://127.0.0.1:9443/plugin-manifest.json && break; sleep 0.1; done
    curl -skf https://127.0.0.1:9443/plugin-manifest.json > "$tmp/manifest.json"
    code=$(curl -sk -o /dev/null -w "%{http_code}" https://127.0.0.1:9443/index-debian.html)
    kill "$pid"; wait "$pid" || true
    [ "$code" = 404 ]
  ' sh "$mnt" "$tmp" "$NONROOT_ID" || rc=$?
  if ((rc == 0)) && cmp -s "$tmp/manifest.json" "$DIST/plugin-manifest.json"; then
    log "strata-console-plugin: nginx as $NONROOT_ID served plugin-manifest.json over TLS on 9443 (Debian's default page: 404)"
  else
    log "strata-console-plugin: nginx did not serve dist/ (exit $rc); its log:"; cat "$tmp/log" >&2; rc=1
  fi
  "${BUILDAH[@]}" umount "$s" >/dev/null; "${BUILDAH[@]}" rm "$s" >/dev/null; rm -rf "$tmp"
  return $rc
}

# controller
step "controller: base…"
runtime_base; BASE_OF[strata-controller]="runtime $BASE_DIGEST"
IN=$(inputs_of "$BIN")
if fresh strata-controller "$IN"; then
  step "controller: unchanged ($OUT/strata-controller.oci.tar)"; DIGEST[strata-controller]=$(cat "$OUT/strata-controller.digest")
else
  step "controller: assembling on $BASE_DIGEST…"
  mapfile -d '' L < <(label_args org.opencontainers.image.title=strata-controller \
    "org.opencontainers.image.description=Strata's controller (strata controller): on-cluster OS image builds for CoreOS pools")
  base_args
  assemble_controller "$BIN" "localhost/strata/release/strata-controller:$VERSION" "${L[@]}" "${BASE_ARGS[@]}"
  finish strata-controller "$IN" smoke_controller
fi

# builder
step "builder: base…"
builder_base; BASE_OF[strata-builder]="builder $BASE_DIGEST"
IN=$(inputs_of "$BIN" "$ROOT/builder-image/local/storage.conf")
if fresh strata-builder "$IN"; then
  step "builder: unchanged ($OUT/strata-builder.oci.tar)"; DIGEST[strata-builder]=$(cat "$OUT/strata-builder.digest")
else
  step "builder: assembling on $BASE_DIGEST…"
  mapfile -d '' L < <(label_args org.opencontainers.image.title=strata-builder \
    "org.opencontainers.image.description=Strata's builder (strata build: pull, build, push with buildah)")
  base_args
  assemble_builder "$BIN" "localhost/strata/release/strata-builder:$VERSION" "${L[@]}" "${BASE_ARGS[@]}"
  finish strata-builder "$IN" smoke_builder
fi

# console plugin
step "console plugin: base…"
nginx_base; BASE_OF[strata-console-plugin]="nginx $BASE_DIGEST"
IN=$(inputs_of "$PLUGIN/nginx.conf" <(echo "$PLUGIN_SUM"))
if fresh strata-console-plugin "$IN"; then
  step "console plugin: unchanged ($OUT/strata-console-plugin.oci.tar)"; DIGEST[strata-console-plugin]=$(cat "$OUT/strata-console-plugin.digest")
else
  step "console plugin: assembling on $BASE_DIGEST…"
  c=$("${BUILDAH[@]}" from "$BASE_IMAGE")
  "${BUILDAH[@]}" copy --chmod 0644 "$c" "$PLUGIN/nginx.conf" /etc/nginx/nginx.conf >/dev/null
  "${BUILDAH[@]}" copy "$c" "$DIST" /usr/share/nginx/html >/dev/null
  mapfile -d '' L < <(label_args org.opencontainers.image.title=strata-console-plugin \
    "org.opencontainers.image.description=Strata's OpenShift console plugin, served by nginx over TLS on 9443")
  # -e: nginx opens its error log before reading the configuration; the compiled-in path is not
  # writable for an unprivileged user.
  base_args
  "${BUILDAH[@]}" config --os linux --arch amd64 --user "$NONROOT_ID:$NONROOT_ID" --workingdir / \
    --cmd '["/usr/sbin/nginx", "-e", "/dev/stderr", "-g", "daemon off;"]' --port 9443 \
    "${L[@]}" "${BASE_ARGS[@]}" "$c"
  "${BUILDAH[@]}" commit -q --timestamp 0 --rm "$c" "localhost/strata/release/strata-console-plugin:$VERSION" >/dev/null
  finish strata-console-plugin "$IN" smoke_console_plugin
fi

prune_untagged

# --- summary -------------------------------------------------------------------------------------
{
  echo "# Written by images/build.sh ($VERSION_LINE)"
  for name in strata-controller strata-builder strata-console-plugin; do
    var=${name#strata-}; var=STRATA_${var//-/_}; var=${var^^}
    echo "${var}_ARCHIVE=$OUT/$name.oci.tar"
    echo "${var}_DIGEST=${DIGEST[$name]}"
    echo "${var}_BASE_DIGEST=${BASE_OF[$name]#* }"
  done
} > "$OUT/images.env"
step "done. Images (OCI archives; push with: skopeo copy --preserve-digests oci-archive:FILE docker://REGISTRY/NAME:$VERSION):"
for name in strata-controller strata-builder strata-console-plugin; do
  size=$(skopeo inspect --raw "oci-archive:$OUT/$name.oci.tar" | jq '[.config.size, .layers[].size] | add')
  printf '  %-22s %s  %6s MiB compressed  on base %s\n      %s\n' "$name" "${DIGEST[$name]}" "$(_mib "$size")" \
    "${BASE_OF[$name]}" "$OUT/$name.oci.tar" >&2
done
log "digests also in $OUT/images.env"
