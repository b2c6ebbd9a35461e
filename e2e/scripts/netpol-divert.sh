#!/usr/bin/env bash
# The netfilter rules that hand new pod connections to kube-network-policies (see cluster-up.sh and
# e2e/README.md "NetworkPolicy"). kube-network-policies' own nftables rules use the nft `queue`
# expression, which this kernel lacks (CONFIG_NFT_QUEUE unset, no modules); these rules do the same
# with iptables' NFQUEUE target (xt_NFQUEUE), in chain mangle/STRATA-NETPOL.
#   netpol-divert.sh add <pod CIDR> <queue number> <state dir>   (removes stale rules first)
#   netpol-divert.sh del [<state dir>]                           idempotent
# <state dir> records whether this script created the ip mangle table, so `del` removes it again
# when nothing else has rules in it.
set -euo pipefail
CHAIN=STRATA-NETPOL
COMMENT=strata-e2e-netpol
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_NAME=netpol-divert
mangle() { ipt -t mangle "$@"; }  # iptables -w 10 -t mangle

del() {
  local dir=${1:-}
  if mangle -S "$CHAIN" >/dev/null 2>&1; then
    local hook rule
    for hook in POSTROUTING INPUT; do
      # every rule jumping to our chain (iptables -S prints them as "-A <hook> ... -j STRATA-NETPOL")
      while read -r rule; do
        eval "mangle ${rule/#-A/-D}" || true
      done < <(mangle -S "$hook" 2>/dev/null | grep -- "-j $CHAIN\$" || true)
    done
    mangle -F "$CHAIN"
    mangle -X "$CHAIN"
    log "removed mangle/$CHAIN and its jumps"
  fi
  # The ip mangle table (and its base chains) exists only because of us: remove it once empty.
  if [[ -n "$dir" && -f "$dir/mangle-table-created" ]]; then
    if nft list table ip mangle >/dev/null 2>&1 && ! iptables-save -t mangle 2>/dev/null | grep -q '^-A'; then
      flock /run/xtables.lock nft delete table ip mangle && log "removed the empty ip mangle table"
    fi
    rm -f "$dir/mangle-table-created"
  fi
}

add() {
  local cidr=$1 queue=$2 dir=$3
  del ""
  nft list table ip mangle >/dev/null 2>&1 || touch "$dir/mangle-table-created"
  mangle -N "$CHAIN"
  mangle -A "$CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  mangle -A "$CHAIN" -s "$cidr" -j NFQUEUE --queue-num "$queue"
  mangle -A "$CHAIN" -d "$cidr" -j NFQUEUE --queue-num "$queue"
  # forwarded and node-originated packets, except root's own sockets (upstream: "meta skuid 0 accept")
  mangle -A POSTROUTING -m owner ! --uid-owner 0 -m comment --comment "$COMMENT" -j "$CHAIN"
  # pod -> node (local delivery never reaches POSTROUTING)
  mangle -A INPUT -s "$cidr" -m comment --comment "$COMMENT" -j "$CHAIN"
}

case "${1:-}" in
  add) [[ $# == 4 ]] || { log "usage: $0 add <pod CIDR> <queue> <state dir>"; exit 2; }; add "$2" "$3" "$4" ;;
  del) del "${2:-}" ;;
  *) log "usage: $0 add <pod CIDR> <queue> <state dir> | del [<state dir>]"; exit 2 ;;
esac
