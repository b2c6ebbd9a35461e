#!/usr/bin/env bash
# Runs a command on Node.js 22 or newer (package.json's `engines`): the system's node when it is
# new enough, else Node $NODE_VERSION, installed once from the npm registry (the node-<os>-<arch>
# package carries the official binary; nodejs.org need not be reachable) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/strata/node-$NODE_VERSION. npm and npx stay the system's: their
# `#!/usr/bin/env node` then runs them on that node.
#
# Usage: scripts/node.sh COMMAND [ARG…]   run COMMAND with that node first in PATH
#        scripts/node.sh                  print the directory to put first in PATH
set -euo pipefail

NODE_MAJOR=22
NODE_VERSION=22.23.5

# The major version of the node in PATH, 0 when there is none.
system_major() {
  local v
  v=$(node --version 2>/dev/null) || { echo 0; return; }
  v=${v#v}
  echo "${v%%.*}"
}

if [ "$(system_major)" -ge "$NODE_MAJOR" ]; then
  bin=$(dirname "$(command -v node)")
else
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/strata/node-$NODE_VERSION"
  bin="$dir/bin"
  if [ ! -x "$bin/node" ]; then
    case "$(uname -s)" in
      Linux) os=linux ;;
      Darwin) os=darwin ;;
      *) echo "node.sh: no Node.js package for $(uname -s) on the npm registry" >&2; exit 1 ;;
    esac
    case "$(uname -m)" in
      x86_64 | amd64) arch=x64 ;;
      aarch64 | arm64) arch=arm64 ;;
      *) echo "node.sh: no Node.js package for $(uname -m) on the npm registry" >&2; exit 1 ;;
    esac
    pkg="node-$os-$arch@$NODE_VERSION"
    echo "node.sh: node $(node --version 2>/dev/null || echo missing) is older than $NODE_MAJOR: installing $pkg from the npm registry into $dir" >&2
    mkdir -p "$(dirname "$dir")"
    # Unpacked beside its destination, then renamed: an interrupted install leaves no half a node.
    tmp=$(mktemp -d "$dir.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # npm pack checks the tarball against the registry's integrity hash. Run outside any project.
    tgz=$(cd "$tmp" && npm pack --silent "$pkg")
    tar -xzf "$tmp/$tgz" -C "$tmp"
    "$tmp/package/bin/node" --version >/dev/null
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
  fi
fi

if [ $# -eq 0 ]; then
  echo "$bin"
  exit 0
fi
PATH="$bin:$PATH" exec "$@"
