# shellcheck shell=bash
# Helpers shared by the repository's shell scripts (e2e/scripts/, images/, tools/olm/, bench/): one
# definition each. Source it; it sets no shell options and runs nothing. What a script sets first:
#   LOG_NAME   the prefix of its log lines (log, die)
#   LOG_T0     optional, a `date +%s.%N` time: log lines then carry the seconds since it
#   START      a `date +%s` time (say)
#   PID_DIR, LOG_DIR  where start keeps the pids and the output of the processes it starts (start,
#              alive, wait_for); WAIT_FOR_POLL, WAIT_FOR_QUIET optional (wait_for)

# log <message...>: "<LOG_NAME>: <message>" on stderr, or "<LOG_NAME> [  12.3s]: <message>" with LOG_T0.
log() {
  if [[ -n "${LOG_T0:-}" ]]; then
    printf '%s [%5.1fs]: %s\n' "$LOG_NAME" "$(echo "$(date +%s.%N) - $LOG_T0" | bc)" "$*" >&2
  else
    echo "$LOG_NAME: $*" >&2
  fi
}
die() { log "ERROR: $*"; exit 1; }
# say <message...>: a step of a long run (make demo, make bench), with the seconds since START, on stdout.
say() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# --- background processes ----------------------------------------------------------------------------
# close_fds: close every inherited fd but 0-2 (and bash's 255), e.g. the lock of a caller's
# `flock /tmp/strata-cluster.lock make e2e-up`: held by the daemons, it would block the
# `flock … make e2e-down` that stops them.
close_fds() {
  local f
  for f in "/proc/$BASHPID/fd/"*; do
    f=${f##*/}
    if ((f > 2 && f != 255)); then eval "exec $f>&-" 2>/dev/null || true; fi
  done
}
# start <name> <cmd...>: in its own session, no inherited fds; output appended to
# $LOG_DIR/<name>.log, pid in $PID_DIR/<name>, <name> appended to $PID_DIR/order (stopped in reverse).
start() {
  local n=$1; shift
  (close_fds; exec setsid "$@") >> "$LOG_DIR/$n.log" 2>&1 < /dev/null &
  echo $! > "$PID_DIR/$n"
  echo "$n" >> "$PID_DIR/order"
}
# stop_started <name> [timeout s]: SIGTERM the process group `start` began for <name>, SIGKILL
# after the timeout (10 s); logs which. Nothing when it is not running.
stop_started() {
  local p; p=$(cat "$PID_DIR/$1" 2>/dev/null || true); [[ -n "$p" ]] || return 0
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq $(( ${2:-10} * 5 ))); do kill -0 "$p" 2>/dev/null || { log "stopped $1"; return 0; }; sleep 0.2; done
  kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
  log "killed $1"
}
# containerd_clear <socket>: every task of containerd's k8s.io namespace killed and deleted, then
# every container deleted (what a stopped kubelet left).
containerd_clear() {
  local sock=$1 t c p
  if [[ -S "$sock" ]]; then
    for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for t in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
    done
    for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
}
# containerd_kill_shims <socket>: the shims of that containerd (after it stopped).
containerd_kill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $1" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
}
# alive <name>: dies with the last lines of its log unless the process start started is running.
alive() { kill -0 "$(cat "$PID_DIR/$1")" 2>/dev/null || die "$1 exited; last log lines:$(echo; tail -20 "$LOG_DIR/$1.log")"; }
# wait_for <what> <timeout s> <proc> <cmd...>: until <cmd> succeeds, every WAIT_FOR_POLL s (default
# 0.2), while process <proc> (- for none) is alive; then logs "<what> ready" unless WAIT_FOR_QUIET=1.
wait_for() {
  local what=$1 to=$2 proc=$3; shift 3
  local end=$(( $(date +%s) + to ))
  until "$@" >/dev/null 2>&1; do
    [[ $proc == - ]] || alive "$proc"
    (( $(date +%s) < end )) || die "timed out after ${to}s waiting for $what"
    sleep "${WAIT_FOR_POLL:-0.2}"
  done
  [[ "${WAIT_FOR_QUIET:-}" == 1 ]] || log "$what ready"
}
# free_ports <n>: n free TCP ports on one line (bound together, so distinct, then released).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("0.0.0.0",0))
print(*[s.getsockname()[1] for s in ss])
PY
}

# --- small wrappers ------------------------------------------------------------------------------------
ossl() { openssl "$@" 2>/dev/null; }
b64() { base64 -w0; }  # stdin, on one line
ipt() { iptables -w 10 "$@"; }
# render <template> <NAME=value>...: the template with each $NAME (or ${NAME}) replaced by its value;
# nothing else in it is touched (envsubst with that list of names).
render() {
  local t=$1 a names=""; shift
  for a in "$@"; do names+=" \${${a%%=*}}"; done
  env "$@" envsubst "$names" < "$t"
}

# name_release_base IMAGE: name IMAGE as the release's OS base (the release ConfigMap's
# baseOSContainerImage, which the MCO stand-in and Strata read). Needs the cluster's kubectl env.
name_release_base() {
  kubectl -n openshift-machine-config-operator patch configmap machine-config-osimageurl \
    --type merge -p "{\"data\":{\"baseOSContainerImage\":\"$1\"}}" >/dev/null
}

# cni_remove_state <network>: what the bridge plugin leaves on the host for CNI network <network>
# when its pods were not torn down: host-local addresses, cached results, and the masquerade rules
# (a jump per pod in nat/POSTROUTING, its comment `name: "<network>" id: …`, to a chain of its own).
cni_remove_state() {
  local net=$1 rule chain
  rm -rf "/var/lib/cni/networks/$net"
  { grep -l "\"$net\"" /var/lib/cni/results/* 2>/dev/null || true; } | xargs -r rm -f
  # iptables -S prints the comment's quotes escaped: --comment "name: \"<network>\" id: \"…\""
  while read -r rule; do
    chain=${rule##*-j }
    eval "ipt -t nat ${rule/#-A/-D}" 2>/dev/null || true
    ipt -t nat -F "$chain" 2>/dev/null && ipt -t nat -X "$chain" 2>/dev/null || true
  done < <(ipt -t nat -S POSTROUTING 2>/dev/null | grep -F -- "name: \\\"$net\\\" " || true)
}

# cni_conflist <dir> <network> <bridge> <subnet>: a node's CNI network: a bridge of its own with
# host-local addresses from <subnet>, masquerading traffic that leaves it, and port mappings.
cni_conflist() {
  cat > "$1/10-$2.conflist" <<CNI
{"cniVersion":"1.0.0","name":"$2","plugins":[
 {"type":"bridge","bridge":"$3","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$4"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
CNI
}
