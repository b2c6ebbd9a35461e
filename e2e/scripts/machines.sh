#!/usr/bin/env bash
# The local pool's machines: QEMU VMs that boot Strata's first-boot disk image of the CoreOS-like
# base (`strata disk-image`, the code the disk image Job runs) from UEFI firmware, each on the
# machines' bridge with an address of its own, so a registry's log says which machine fetched what.
#
#   machines.sh disk OCI_LAYOUT_DIR
#       make or reuse the disk (cached: ${XDG_CACHE_HOME:-~/.cache}/strata/machine-disk-<key>, key:
#       the layout's index, the disk code, e2e/machines/etc — the files its /etc gets; an 8 GiB
#       root, sparse; cold: ~3 min); prints its path
#   machines.sh up --dir D --disk FILE [--count N]
#       the bridge strata-machines (10.245.0.1/24), DHCP for it (dnsmasq: one address per machine),
#       one VM per machine (worker-0 … worker-N-1, 10.245.0.10+i), each with a copy-on-write disk
#       of its own over FILE; returns once they run (they boot in the background). State, console
#       logs (logs/machine-<name>.console) and QEMU's output under D.
#   machines.sh wait --dir D [--timeout S]
#       until every machine's console shows its login prompt (default 900 s)
#   machines.sh ssh --dir D NAME COMMAND...
#       run COMMAND on machine NAME as root (the cluster's key, handed over by fw_cfg)
#   machines.sh power-cycle NAME QEMU_COMMAND...
#       (used by up) run a machine's QEMU (-no-reboot) and start it again after each reboot
#   machines.sh down --dir D
#       stop the VMs and DHCP; remove the taps and the bridge. Idempotent.
#
# Env: STRATA_BIN (the strata binary: disk), STRATA_MACHINE_ACCEL (tcg; kvm where the host's KVM
# runs stock kernels — here it is PVM, which does not), STRATA_MACHINE_CPUS (1), STRATA_MACHINE_MIB
# (1536). Needs root (taps, bridge, the disk's buildah).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
LOG_NAME=machines
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/strata"
BRIDGE="strata-machines"
NET=10.245.0
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# machine_disk LAYOUT: the cached qcow2 of the base at LAYOUT (an OCI layout, tag latest).
machine_disk() {
  local layout=$1 key dir
  [[ -f "$layout/index.json" ]] || die "no OCI layout at $layout"
  local strata="${STRATA_BIN:-$("$HERE/target-dir.sh")/debug/strata}"
  [[ -x "$strata" ]] || die "no strata binary at $strata (cargo build -p strata-controller --bin strata)"
  # Room for updates: each keeps the pulled image and a deployment beside the booted one. Under
  # software emulation beside busy builds, udev can take longer than systemd's 90 s to show /boot
  # by UUID (seen: a machine in emergency mode, "Timed out waiting for device"): devices get 15 min.
  # Each layer a commit of its own too (as ostree-ext imports): rebase.sh fetches only the layers
  # a machine lacks.
  # A kernel panic reboots the machine after 10 s instead of hanging it, so an update that does
  # not come up ends in GRUB's fall-back to the previous deployment (grub.d/08_strata_boot_counting).
  local etc="$ROOT/e2e/machines/etc" files=(--root-size-mib 8192 --karg systemd.default_device_timeout_sec=900 --karg panic=10 --layer-commits) f
  while IFS= read -r f; do files+=(--etc-file "${f#"$etc"/}=$f"); done < <(find "$etc" -type f | sort)
  # The files by their place in the repository, not on this machine: two checkouts (CI's clone and
  # a working tree) share the disk instead of remaking it for each other.
  key=$( (cat "$layout/index.json" "$ROOT"/controller/src/boot/disk/*; printf '%s\n' "${files[@]}" | sed "s|=$ROOT/|=|"
          find "$etc" -type f | sort | xargs cat) | sha256sum | cut -c1-16)
  dir="$CACHE/machine-disk-$key"
  if [[ ! -f "$dir/disk.qcow2" ]]; then
    log "making the machines' disk from $layout (strata disk-image; ~3 min)…"
    local t0=$SECONDS
    rm -rf "$dir.tmp"
    # buildah 1.28 names an oci: image after its path and refuses one with a dot-directory
    # (~/.cache): the layout is named through a plain link.
    local link=/tmp/strata-machine-base-$key
    ln -sfn "$layout" "$link"
    "$strata" disk-image --format qcow2 --output "$dir.tmp" "${files[@]}" "oci:$link:latest" >&2
    buildah rmi "localhost$link:latest" >/dev/null 2>&1 || true
    rm -f "$link"
    find "$CACHE" -maxdepth 1 -name 'machine-disk-*' ! -name "machine-disk-$key*" -exec rm -rf {} +
    mv "$dir.tmp" "$dir"
    log "disk made in $((SECONDS - t0)) s: $dir/disk.qcow2"
  fi
  echo "$dir/disk.qcow2"
}

DIR="" DISK="" COUNT=2 TIMEOUT=900
parse() {
  while (($#)); do
    case "$1" in
      --dir) DIR=$2; shift 2 ;;
      --disk) DISK=$2; shift 2 ;;
      --count) COUNT=$2; shift 2 ;;
      --timeout) TIMEOUT=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ -n "$DIR" ]] || usage
  M="$DIR/machines"
  PID_DIR="$M/pids" LOG_DIR="$DIR/logs"
}

# The machines' names, MACs and addresses, one per line (as `up` wrote them).
machines() { cat "$M/machines.tsv" 2>/dev/null || true; }

up() {
  [[ $(id -u) == 0 ]] || die "must run as root (taps, bridge)"
  [[ -f "$DISK" ]] || die "no disk at '$DISK' (machines.sh disk OCI_LAYOUT_DIR)"
  if ! [[ "$COUNT" =~ ^[0-9]+$ ]] || ((COUNT > 80)); then die "--count must be 0…80"; fi
  for t in qemu-system-x86_64 qemu-img dnsmasq ip; do
    command -v "$t" >/dev/null || die "missing $t — run e2e/ci-setup.sh (apt packages)"
  done
  [[ -f "$OVMF_CODE" ]] || die "missing $OVMF_CODE (apt: ovmf)"
  mkdir -p "$M" "$PID_DIR" "$LOG_DIR"
  : > "$M/machines.tsv"
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local hosts=() i name mac ip
  for ((i = 0; i < COUNT; i++)); do
    name=worker-$i mac=$(printf '52:54:00:f5:00:%02x' "$i") ip=$NET.$((10 + i))
    printf '%s\t%s\t%s\n' "$name" "$mac" "$ip" >> "$M/machines.tsv"
    hosts+=("--dhcp-host=$mac,$ip,$name")
  done
  # DHCP only (no DNS: --port=0), on the bridge alone; one fixed address per machine's MAC.
  start machines-dhcp dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
    --interface="$BRIDGE" --bind-interfaces --dhcp-range="$NET.10,$NET.99,255.255.255.0,12h" \
    --dhcp-leasefile="$M/leases" --log-dhcp --log-facility=- "${hosts[@]}"
  # The cluster's key: root logs in with it (e2e/machines/etc/ssh/sshd_config.d reads it from
  # fw_cfg).
  [[ -f "$M/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C strata-machines -f "$M/id_ed25519"
  local accel=${STRATA_MACHINE_ACCEL:-tcg}
  [[ $accel == tcg ]] && accel=tcg,thread=multi
  while IFS=$'\t' read -r name mac ip; do
    local tap=sm-$name disk="$M/$name.qcow2"
    ip link show "$tap" >/dev/null 2>&1 || ip tuntap add dev "$tap" mode tap
    ip link set "$tap" master "$BRIDGE" up
    # Each machine writes its own updates; the cached disk stays as made.
    [[ -f "$disk" ]] || qemu-img create -q -f qcow2 -F qcow2 -b "$DISK" "$disk"
    [[ -f "$M/$name.vars.fd" ]] || cp "$OVMF_VARS" "$M/$name.vars.fd"
    # Niced: a booting machine (minutes of emulation) must not slow the builds beside it. Every
    # reboot is a cold power-on (power_cycle): seen under TCG, a guest's warm reset left OVMF
    # spinning before it printed anything, for good (a QMP system_reset did not help either),
    # while cold starts always boot.
    start "machine-$name" "$HERE/machines.sh" power-cycle "$name" nice -n 10 qemu-system-x86_64 \
      -name "$name" -machine q35 -accel "$accel" -no-reboot \
      -smp "${STRATA_MACHINE_CPUS:-1}" -m "${STRATA_MACHINE_MIB:-1536}" \
      -display none -monitor none -vga none \
      -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE" \
      -drive "if=pflash,format=raw,file=$M/$name.vars.fd" \
      -drive "file=$disk,format=qcow2,if=virtio" \
      -netdev "tap,id=net0,ifname=$tap,script=no,downscript=no" \
      -device "virtio-net-pci,netdev=net0,mac=$mac" \
      -fw_cfg "name=opt/strata/authorized_keys,file=$M/id_ed25519.pub" \
      -chardev "file,id=console,path=$LOG_DIR/machine-$name.console,append=on" -serial chardev:console \
      -qmp "unix:$M/$name.qmp,server=on,wait=off"
    log "$name ($ip, $mac) powered on; console $LOG_DIR/machine-$name.console"
  done < <(machines)
  sleep 1
  alive machines-dhcp
  while IFS=$'\t' read -r name _ _; do alive "machine-$name"; done < <(machines)
}

# power_cycle NAME QEMU_COMMAND...: runs the machine, and starts it again each time it rebooted
# (QEMU with -no-reboot exits 0 when the guest resets); ends when QEMU fails or is killed.
power_cycle() {
  local name=$1; shift
  trap 'kill -TERM "$qemu" 2>/dev/null; wait "$qemu"; exit 0' TERM INT
  while true; do
    "$@" &
    qemu=$!
    wait "$qemu" || return 0
    echo "machines: $name rebooted: powered on again ($(date +%T))"
  done
}

# The console without terminal escapes and carriage returns.
console() { sed 's/\x1b\[[0-9;?]*[ -\/]*[@-~]//g; s/\r//g' "$LOG_DIR/machine-$1.console" 2>/dev/null; }

wait_up() {
  local end=$((SECONDS + TIMEOUT)) name
  while IFS=$'\t' read -r name _ ip; do
    until console "$name" | grep -q "login:"; do
      alive "machine-$name"
      ((SECONDS < end)) || die "no login prompt on $name's console in ${TIMEOUT}s; its end:$(echo; console "$name" | tail -20)"
      sleep 2
    done
    log "$name ($ip) is up"
  done < <(machines)
}

# ssh_to NAME CMD...: runs CMD on machine NAME as root.
ssh_to() {
  local name=$1 ip; shift
  ip=$(awk -F'\t' -v n="$name" '$1 == n {print $3}' "$M/machines.tsv" 2>/dev/null)
  [[ -n "$ip" ]] || die "no machine $name in $M/machines.tsv"
  # Keepalives: a machine that went down mid-command (power cut, reset) ends the session within
  # two minutes; without them ssh would wait on the dead connection for good.
  exec ssh -i "$M/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes \
    -o ServerAliveInterval=20 -o ServerAliveCountMax=6 "root@$ip" "$@"
}

down() {
  local name p
  for p in "$PID_DIR"/*; do
    [[ -f "$p" ]] || continue
    p=$(cat "$p")
    kill -TERM "$p" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local left=0
    for p in "$PID_DIR"/*; do [[ -f "$p" ]] && kill -0 "$(cat "$p")" 2>/dev/null && left=1; done
    ((left)) || break
    sleep 0.2
  done
  for p in "$PID_DIR"/*; do [[ -f "$p" ]] && kill -KILL "$(cat "$p")" 2>/dev/null || true; done
  rm -rf "$PID_DIR"
  while IFS=$'\t' read -r name _ _; do ip link del "sm-$name" 2>/dev/null || true; done < <(machines)
  ip link del "$BRIDGE" 2>/dev/null && log "removed bridge $BRIDGE" || true
  # Machine disks hold what they were updated to: gone with the cluster, like its etcd.
  rm -f "$M"/*.qcow2 "$M"/*.vars.fd "$M"/id_ed25519*
}

cmd=${1:-}; shift || true
case "$cmd" in
  disk) (($# == 1)) || usage; machine_disk "$1" ;;
  up) parse "$@"; up ;;
  wait) parse "$@"; wait_up ;;
  down) parse "$@"; down ;;
  power-cycle) (($# >= 2)) || usage; power_cycle "$@" ;;
  ssh) [[ "${1:-}" == --dir ]] && (($# >= 4)) || usage; DIR=$2 M="$2/machines"; shift 2; ssh_to "$@" ;;
  *) usage ;;
esac
