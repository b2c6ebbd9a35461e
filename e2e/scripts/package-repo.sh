#!/usr/bin/env bash
# A local apt repository of real Debian trixie packages, so fragments can `apt-get install` in the
# CoreOS-like OS image (build-os-image.sh) without the Internet: the packages of
# e2e/os-image/repo-packages.txt and their dependency closure, downloaded from the Debian mirror
# with apt-get download, indexed (Packages, Release) and signed (InRelease, Release.gpg) with a
# local key whose public key the OS image trusts (/etc/apt/keyrings/strata-local.asc).
#
# Usage:
#   package-repo.sh key                        make the signing key once; print the public key's path
#   package-repo.sh build                      build (or reuse) the repository; print its directory
#   package-repo.sh start --port N --dir D [--bind ADDR]
#                                              serve it over HTTP on ADDR:N (default 0.0.0.0); D keeps
#                                              the pid and the log; prints the URL as the last line
#   package-repo.sh stop --dir D               stop the server started with that D
# Fragments use it as (URL = http://<host>:<port>/):
#   Types: deb / URIs: URL / Suites: strata / Components: main / Signed-By: /etc/apt/keyrings/strata-local.asc
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/strata: package-repo-key/ (kept: the OS image embeds the
# public key) and package-repo-<key>/ keyed by this script, the package list and the suite.
# Serving is busybox httpd, kept to serve_start/serve_stop so TLS with client certificates can
# replace it without touching the rest.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
SUITE="${STRATA_OS_IMAGE_SUITE:-trixie}"
MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${STRATA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LIST="$ROOT/e2e/os-image/repo-packages.txt"
KEYDIR="$CACHE/package-repo-key"
log() { echo "package-repo: $*" >&2; }

# --- signing key (made once, kept: the OS image's cache key includes its fingerprint) ------------
ensure_key() {
  if [[ ! -s "$KEYDIR/strata-local.asc" ]]; then
    log "making the repository signing key (ed25519, no passphrase: a local test repository)…"
    rm -rf "$KEYDIR.new"; mkdir -p "$KEYDIR.new/gnupg"; chmod 700 "$KEYDIR.new/gnupg"
    export GNUPGHOME="$KEYDIR.new/gnupg"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
      --quick-generate-key 'Strata local package repository <strata-local@localhost>' ed25519 sign never 2>/dev/null
    gpg --batch --armor --export > "$KEYDIR.new/strata-local.asc"
    gpgconf --kill gpg-agent 2>/dev/null || true
    unset GNUPGHOME
    rm -rf "$KEYDIR"; mv "$KEYDIR.new" "$KEYDIR"
    # the agent was started with the .new path as its home; nothing of it is left running
  fi
}

# --- repository ----------------------------------------------------------------------------------
repo_dir() {
  ensure_key
  local fpr sum
  fpr=$(sha256sum < "$KEYDIR/strata-local.asc" | cut -c1-16)
  sum=$(cat "${BASH_SOURCE[0]}" "$LIST" <(echo "$SUITE $MIRROR $fpr") | sha256sum | cut -c1-16)
  echo "$CACHE/package-repo-$sum"
}

build() {
  local out; out=$(repo_dir)
  if [[ -s "$out/repo/dists/strata/InRelease" ]]; then log "cached: $out/repo"; echo "$out/repo"; return; fi
  local t0=$SECONDS w
  w="$out.work"; rm -rf "$w"; mkdir -p "$w"/{apt/state/lists/partial,apt/cache/archives/partial,apt/empty,pool}
  log "building the repository (apt-get download from $MIRROR $SUITE, closure of $(grep -v '^#' "$LIST" | xargs))…"
  # A private apt configuration for trixie; the host's own apt state is never touched.
  cat > "$w/apt/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SECURITY_MIRROR $SUITE-security main
EOF
  cat > "$w/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$w/apt/sources.list";
Dir::Etc::SourceParts "$w/apt/empty";
Dir::Etc::Preferences "$w/apt/empty/preferences";
Dir::Etc::PreferencesParts "$w/apt/empty";
APT::Sandbox::User "root";
Dir::State "$w/apt/state/";
Dir::State::status "/dev/null";
Dir::Cache "$w/apt/cache/";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
EOF
  export APT_CONFIG="$w/apt/apt.conf"
  apt-get update -q >/dev/null
  mapfile -t want < <(grep -v '^#' "$LIST" | grep .)
  # The dependency closure (Depends/Pre-Depends; virtual packages resolved to their providers).
  mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${want[@]}" | grep -v '^ ' | grep -v '^<' | sort -u)
  (cd "$w/pool" && apt-get download -q "${closure[@]}" >/dev/null)
  unset APT_CONFIG
  local d="$w/repo" bin="dists/strata/main/binary-amd64"
  mkdir -p "$d/pool/main" "$d/$bin"
  mv "$w"/pool/*.deb "$d/pool/main/"
  (cd "$d" && dpkg-scanpackages --multiversion pool/main /dev/null 2>/dev/null > "$bin/Packages")
  gzip -9nk "$d/$bin/Packages"
  {
    echo "Origin: Strata"
    echo "Label: Strata local packages"
    echo "Suite: strata"
    echo "Codename: strata"
    echo "Date: $(date -u -R)"
    echo "Architectures: amd64"
    echo "Components: main"
    echo "Description: Debian $SUITE packages for Strata fragments ($(grep -v '^#' "$LIST" | xargs))"
    for h in MD5Sum:md5sum SHA256:sha256sum; do
      echo "${h%%:*}:"
      for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz; do
        printf ' %s %s %s\n' "$("${h#*:}" < "$d/dists/strata/$f" | cut -d' ' -f1)" "$(stat -c %s "$d/dists/strata/$f")" "$f"
      done
    done
  } > "$d/dists/strata/Release"
  export GNUPGHOME="$KEYDIR/gnupg"
  gpg --batch --yes --quiet --digest-algo SHA512 --clearsign -o "$d/dists/strata/InRelease" "$d/dists/strata/Release"
  gpg --batch --yes --quiet --digest-algo SHA512 -abs -o "$d/dists/strata/Release.gpg" "$d/dists/strata/Release"
  gpgconf --kill gpg-agent 2>/dev/null || true
  unset GNUPGHOME
  cp "$KEYDIR/strata-local.asc" "$d/strata-local.asc"
  rm -rf "$out"; mkdir -p "$out"; mv "$d" "$out/repo"; rm -rf "$w"
  # Older repositories (other inputs) are not needed any more.
  find "$CACHE" -maxdepth 1 -name 'package-repo-*' -not -name package-repo-key -not -path "$out" -exec rm -rf {} +
  log "built $(find "$out/repo/pool" -name '*.deb' | wc -l) packages, $(du -sh "$out/repo" | cut -f1), in $((SECONDS - t0)) s: $out/repo"
  echo "$out/repo"
}

# --- serving (swap this part for HTTPS with client certificates) ----------------------------------
serve_start() { # serve_start REPO ADDR PORT DIR
  # The daemon must not inherit our descriptors (a caller's flock would live on in it).
  for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null; done
  setsid busybox httpd -f -p "$2:$3" -h "$1" >> "$4/httpd.log" 2>&1 < /dev/null &
  echo $! > "$4/httpd.pid"
}
serve_stop() { # serve_stop DIR
  local pid; pid=$(cat "$1/httpd.pid" 2>/dev/null || echo 0)
  ((pid > 0)) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1/httpd.pid"
}

cmd="${1:-}"; shift || true
PORT="" DIR="" BIND=0.0.0.0
while (($#)); do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --bind) BIND="$2"; shift 2 ;;
    *) echo "package-repo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$cmd" in
  key) ensure_key; echo "$KEYDIR/strata-local.asc" ;;
  build) build ;;
  start)
    [[ -n "$PORT" && -n "$DIR" ]] || { echo "usage: package-repo.sh start --port N --dir D [--bind ADDR]" >&2; exit 2; }
    repo=$(build)
    mkdir -p "$DIR"
    if [[ -s "$DIR/httpd.pid" ]] && kill -0 "$(cat "$DIR/httpd.pid")" 2>/dev/null; then
      log "already serving (pid $(cat "$DIR/httpd.pid"))"
    else
      serve_start "$repo" "$BIND" "$PORT" "$DIR"
    fi
    host=$BIND; [[ $host == 0.0.0.0 ]] && host=127.0.0.1
    for _ in $(seq 1 100); do
      if curl -sf "http://$host:$PORT/dists/strata/InRelease" >/dev/null; then
        log "serving $repo on $BIND:$PORT (pid $(cat "$DIR/httpd.pid"))"
        echo "http://$host:$PORT/"; exit 0
      fi
      sleep 0.1
    done
    log "the server did not answer on port $PORT; see $DIR/httpd.log"; serve_stop "$DIR"; exit 1 ;;
  stop)
    [[ -n "$DIR" ]] || { echo "usage: package-repo.sh stop --dir D" >&2; exit 2; }
    serve_stop "$DIR"; log "stopped" ;;
  *) sed -n '2,22p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
