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
#   package-repo.sh start --port N --dir D [--bind ADDR] --tls-cert F --tls-key F --client-ca F
#                                              the same over HTTPS (nginx): server certificate F/F,
#                                              and only clients whose certificate --client-ca signed
#                                              get anything (others: 400, as nginx answers); prints
#                                              https://<host>:<port>/
#   package-repo.sh stop --dir D               stop the server started with that D
# Fragments use it as (URL = http://<host>:<port>/):
#   Types: deb / URIs: URL / Suites: strata / Components: main / Signed-By: /etc/apt/keyrings/strata-local.asc
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/strata: package-repo-key/ (kept: the OS image embeds the
# public key) and package-repo-<key>/ keyed by the build function, the package list and the suite.
# Serving is busybox httpd (HTTP) or nginx (HTTPS with client certificates: the stand-in for a
# repository that wants the entitlement certificate, see openshift-env.sh), in serve_start/serve_stop.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
SUITE="${STRATA_OS_IMAGE_SUITE:-trixie}"
MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${STRATA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
LIST="$ROOT/e2e/os-image/repo-packages.txt"
KEYDIR="$CACHE/package-repo-key"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=package-repo

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
  # Keyed by what builds it (the build function's text, not the whole script: serving changes
  # must not rebuild, nor delete the directory a running server uses), the list and the suite.
  sum=$({ declare -f build; cat "$LIST"; echo "$SUITE $MIRROR $fpr"; } | sha256sum | cut -c1-16)
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

# --- serving ----------------------------------------------------------------------------------------
serve_start() { # serve_start REPO ADDR PORT DIR   (HTTPS when TLS_CERT is set)
  # The daemon must not inherit our descriptors (a caller's flock would live on in it).
  for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null; done
  if [[ -n "$TLS_CERT" ]]; then
    # nginx, not busybox httpd: TLS with client-certificate verification (ssl_verify_client on).
    # Runs as root (the repository is under root's 0700 cache); every path of its own in DIR.
    mkdir -p "$4/nginx-tmp"
    cat > "$4/nginx.conf" <<NGINX
daemon off;
user root;
worker_processes 1;
pid $4/nginx.pid;
error_log $4/nginx-error.log notice;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  access_log $4/nginx-access.log;
  client_body_temp_path $4/nginx-tmp/body;
  proxy_temp_path $4/nginx-tmp/proxy;
  fastcgi_temp_path $4/nginx-tmp/fastcgi;
  uwsgi_temp_path $4/nginx-tmp/uwsgi;
  scgi_temp_path $4/nginx-tmp/scgi;
  server {
    listen $2:$3 ssl;
    ssl_certificate $TLS_CERT;
    ssl_certificate_key $TLS_KEY;
    ssl_client_certificate $CLIENT_CA;
    ssl_verify_client on;
    ssl_verify_depth 2;
    root $1;
    autoindex on;
  }
}
NGINX
    setsid nginx -p "$4" -e "$4/nginx-error.log" -c "$4/nginx.conf" >> "$4/httpd.log" 2>&1 < /dev/null &
  else
    setsid busybox httpd -f -p "$2:$3" -h "$1" >> "$4/httpd.log" 2>&1 < /dev/null &
  fi
  echo $! > "$4/httpd.pid"
}
serve_stop() { # serve_stop DIR
  local pid; pid=$(cat "$1/httpd.pid" 2>/dev/null || echo 0)
  ((pid > 0)) || return 0
  # nginx: the master and its worker share the session setsid gave them
  kill -TERM -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  rm -f "$1/httpd.pid"
}
# Whether the server started in DIR answers (HTTPS: any HTTP status over TLS; a client without
# the certificate gets 400, which proves TLS and nginx are up).
serve_answers() { # serve_answers HOST PORT
  if [[ -n "$TLS_CERT" ]]; then
    local code; code=$(curl -sk -o /dev/null -w '%{http_code}' "https://$1:$2/dists/strata/InRelease" || true)
    [[ "$code" != 000 && -n "$code" ]]
  else
    curl -sf "http://$1:$2/dists/strata/InRelease" >/dev/null
  fi
}

cmd="${1:-}"; shift || true
PORT="" DIR="" BIND=0.0.0.0 TLS_CERT="" TLS_KEY="" CLIENT_CA=""
while (($#)); do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --tls-cert) TLS_CERT="$2"; shift 2 ;;
    --tls-key) TLS_KEY="$2"; shift 2 ;;
    --client-ca) CLIENT_CA="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --bind) BIND="$2"; shift 2 ;;
    *) echo "package-repo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$cmd" in
  key) ensure_key; echo "$KEYDIR/strata-local.asc" ;;
  build) build ;;
  start)
    [[ -n "$PORT" && -n "$DIR" ]] || { echo "usage: package-repo.sh start --port N --dir D [--bind ADDR] [--tls-cert F --tls-key F --client-ca F]" >&2; exit 2; }
    if [[ -n "$TLS_CERT$TLS_KEY$CLIENT_CA" ]]; then
      [[ -s "$TLS_CERT" && -s "$TLS_KEY" && -s "$CLIENT_CA" ]] || { echo "package-repo.sh: HTTPS needs --tls-cert, --tls-key and --client-ca (existing files)" >&2; exit 2; }
      command -v nginx >/dev/null || { echo "package-repo.sh: HTTPS needs nginx (apt-get install nginx-light; e2e/ci-setup.sh)" >&2; exit 1; }
      TLS_CERT=$(realpath "$TLS_CERT") TLS_KEY=$(realpath "$TLS_KEY") CLIENT_CA=$(realpath "$CLIENT_CA")
    fi
    repo=$(build)
    mkdir -p "$DIR"
    if [[ -s "$DIR/httpd.pid" ]] && kill -0 "$(cat "$DIR/httpd.pid")" 2>/dev/null; then
      log "already serving (pid $(cat "$DIR/httpd.pid"))"
    else
      serve_start "$repo" "$BIND" "$PORT" "$DIR"
    fi
    host=$BIND; [[ $host == 0.0.0.0 ]] && host=127.0.0.1
    scheme=http; [[ -n "$TLS_CERT" ]] && scheme=https
    for _ in $(seq 1 100); do
      if serve_answers "$host" "$PORT"; then
        log "serving $repo on $scheme://$BIND:$PORT (pid $(cat "$DIR/httpd.pid"))"
        echo "$scheme://$host:$PORT/"; exit 0
      fi
      kill -0 "$(cat "$DIR/httpd.pid")" 2>/dev/null || break
      sleep 0.1
    done
    log "the server did not answer on port $PORT; see $DIR/httpd.log"; serve_stop "$DIR"; exit 1 ;;
  stop)
    [[ -n "$DIR" ]] || { echo "usage: package-repo.sh stop --dir D" >&2; exit 2; }
    serve_stop "$DIR"; log "stopped" ;;
  *) sed -n '2,27p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
