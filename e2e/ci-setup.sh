#!/usr/bin/env bash
# Machine setup (idempotent), shared by `make demo`, `make test` and CI: the Debian packages that
# are missing, then the Kubernetes + etcd binaries (cached under ${XDG_CACHE_HOME:-$HOME/.cache}/strata;
# how long a cold build and a warm check take: docs/measurements.md).
#   --test   also what only the tests need: Debian's prometheus (promtool for the alert rule
#            tests, the server for e2e/tests/prometheus.rs) and Debian's chromium for the console
#            plugin's browser tests.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKGS=(containerd runc containernetworking-plugins docker-registry buildah skopeo umoci catatonit
      busybox-static mmdebstrap iptables nftables openssl jq curl bc uidmap fuse-overlayfs
      dpkg-dev gnupg python3 gettext-base
      squid nginx-light apache2-utils  # the OpenShift environment: proxy, HTTPS package repo, htpasswd -B
      qemu-system-x86 qemu-utils ovmf mtools dosfstools fdisk e2fsprogs  # disk images and boot checks (docs/booting.md)
      dnsmasq-base openssh-client)  # the local pool's machines: DHCP on their bridge (e2e/scripts/machines.sh)
if [[ "${1:-}" == --test ]]; then
  PKGS+=(prometheus chromium)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci-setup: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "ci-setup: Go (>= 1.26) is required to build Kubernetes" >&2; exit 1; }
"$HERE/scripts/build-kube.sh"
