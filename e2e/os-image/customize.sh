#!/usr/bin/env bash
# mmdebstrap customize hook of the CoreOS-like OS image (e2e/scripts/build-os-image.sh): turns the
# Debian tree at $1 into the shape of an ostree/bootc OS image, the way rpm-ostree composes RHCOS:
#   - the one kernel at /usr/lib/modules/<version>/{vmlinuz,config,System.map,initramfs.img}, /boot empty
#     (the initramfs is dracut --no-hostonly --reproducible with Debian's ostree module, as rpm-ostree does);
#   - the dpkg database in /usr/lib/sysimage/dpkg (rpm-ostree puts rpmdb in /usr/lib/sysimage/rpm) and
#     apt's state/cache/logs in /run/apt, so /var ships empty and `apt-get install` works in a RUN
#     step without writing there itself (maintainer scripts may, as they would with dnf on RHCOS);
#   - /var empty, /home /root /opt /srv /mnt /usr/local as symlinks into /var, /sysroot and
#     /ostree -> sysroot/ostree, with the tmpfiles.d entries that create their targets at boot;
#   - no package sources enabled (RHCOS ships none); the local repository's public key in
#     /etc/apt/keyrings for fragments that add it;
#   - nothing machine-specific or time-dependent (host keys, machine-id, hostname, logs, the iSCSI
#     initiator name and NVMe host NQN that open-iscsi and nvme-cli generate at install).
# Env: STRATA_OS_REPO_KEY = the local repository's armored public key (package-repo.sh key).
set -euo pipefail
R="${1:?usage: customize.sh ROOT}"
log() { echo "os-image customize: $*" >&2; }
: "${STRATA_OS_REPO_KEY:?STRATA_OS_REPO_KEY must name the package repository public key}"

# --- kernel: exactly one, under /usr/lib/modules/<version> ------------------------------------
mapfile -t kvers < <(find "$R/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n')
((${#kvers[@]} == 1)) || { log "expected exactly one kernel, found: ${kvers[*]:-none}"; exit 1; }
K="${kvers[0]}"
M="$R/usr/lib/modules/$K"
for f in vmlinuz config System.map; do
  [[ -e "$R/boot/$f-$K" ]] && mv "$R/boot/$f-$K" "$M/$f"
done
[[ -s "$M/vmlinuz" ]] || { log "no vmlinuz for $K"; exit 1; }
log "kernel $K; building the initramfs (dracut --no-hostonly --reproducible, ostree module)…"
t0=$SECONDS
# Debian's kernel hook was skipped (INITRD=No); this is the one initramfs, where ostree looks for it.
chroot "$R" dracut --quiet --force --no-hostonly --reproducible --kver "$K" "/usr/lib/modules/$K/initramfs.img"
log "initramfs $(du -h "$M/initramfs.img" | cut -f1) in $((SECONDS - t0)) s"
rm -rf "${R:?}"/boot/* "$R/vmlinuz" "$R/vmlinuz.old" "$R/initrd.img" "$R/initrd.img.old"

# --- package manager: dpkg database in /usr, apt state volatile --------------------------------
mkdir -p "$R/usr/lib/sysimage/apt"
mv "$R/var/lib/dpkg" "$R/usr/lib/sysimage/dpkg"
[[ -e "$R/var/lib/apt/extended_states" ]] && mv "$R/var/lib/apt/extended_states" "$R/usr/lib/sysimage/apt/"
cat > "$R/etc/dpkg/dpkg.cfg.d/50-strata-sysimage" <<'EOF'
# The dpkg database lives in /usr (like rpm-ostree's /usr/lib/sysimage/rpm): /var belongs to the machine.
admindir /usr/lib/sysimage/dpkg
EOF
# dpkg's log would be the only thing it writes to /var.
sed -i 's|^log /var/log/dpkg.log|# log /var/log/dpkg.log  (disabled: /var ships empty; see dpkg.cfg.d/50-strata-sysimage)|' "$R/etc/dpkg/dpkg.cfg"
cat > "$R/etc/apt/apt.conf.d/50-strata-sysimage" <<'EOF'
// The package database lives in /usr; apt's lists, downloads and logs go to /run/apt, so a
// `RUN apt-get update && apt-get install …` works on the empty /var without apt writing there.
Dir::State::status "/usr/lib/sysimage/dpkg/status";
Dir::State::extended_states "/usr/lib/sysimage/apt/extended_states";
Dir::State "/run/apt/";
Dir::Cache "/run/apt/";
Dir::Log "/run/apt/";
// Some maintainer scripts run dpkg-query without DPKG_ADMINDIR (ucf clears its environment) and so
// look at /var/lib/dpkg: while dpkg runs, that path points at the database (the booted system has
// the same link from tmpfiles.d, as rpm-ostree links /var/lib/rpm); an empty /var gets it back empty.
DPkg::Pre-Invoke { "[ -e /var/lib/dpkg ] || { mkdir -p /var/lib && ln -s ../../usr/lib/sysimage/dpkg /var/lib/dpkg && touch /run/strata-dpkg-link; }"; };
DPkg::Post-Invoke { "[ ! -e /run/strata-dpkg-link ] || { rm -f /var/lib/dpkg /run/strata-dpkg-link; rmdir /var/lib 2>/dev/null || true; }"; };
EOF
# debconf's database is package-manager state too; in /var/cache it would be missing at build time.
mkdir -p "$R/usr/lib/sysimage/debconf"
for db in config templates passwords; do
  [[ -e "$R/var/cache/debconf/$db.dat" ]] && mv "$R/var/cache/debconf/$db.dat" "$R/usr/lib/sysimage/debconf/"
done
sed -i 's|^Filename: /var/cache/debconf/|Filename: /usr/lib/sysimage/debconf/|' "$R/etc/debconf.conf"
# dpkg-query and update-alternatives run outside dpkg read the admindir from the environment.
echo 'DPKG_ADMINDIR=/usr/lib/sysimage/dpkg' >> "$R/etc/environment"

# --- package sources: none enabled; trust the local repository's key for fragments -------------
rm -f "$R/etc/apt/sources.list" "$R"/etc/apt/sources.list.d/*
install -D -m 0644 "$STRATA_OS_REPO_KEY" "$R/etc/apt/keyrings/strata-local.asc"

# --- ostree layout ------------------------------------------------------------------------------
mkdir -p "$R/sysroot"
ln -sfn sysroot/ostree "$R/ostree"
link_into_var() { # link_into_var PATH TARGET — PATH must hold nothing but directories and symlinks
  local p="$R/$1"
  if [[ -d "$p" && ! -L "$p" ]]; then
    if find "$p" -mindepth 1 -not -type d -not -type l -print -quit | grep -q .; then
      log "/$1 is not empty:"; find "$p" -mindepth 1 -not -type d -not -type l >&2; exit 1
    fi
    rm -rf "$p"
  fi
  ln -sfn "$2" "$p"
}
rm -f "$R"/root/.bashrc "$R"/root/.profile   # base-files' copies of /etc/skel; /var/roothome starts empty
link_into_var home var/home
link_into_var root var/roothome
link_into_var opt var/opt
link_into_var srv var/srv
link_into_var mnt var/mnt
link_into_var media run/media
link_into_var usr/local ../var/usrlocal
cat > "$R/usr/lib/tmpfiles.d/strata-ostree-layout.conf" <<'EOF'
# Targets of the ostree-style symlinks (/home, /root, /opt, /srv, /mnt, /usr/local, /media),
# created at boot because the image ships an empty /var (as rpm-ostree's integration does).
d /var/home 0755 root root -
d /var/roothome 0700 root root -
d /var/opt 0755 root root -
d /var/srv 0755 root root -
d /var/mnt 0755 root root -
d /var/usrlocal 0755 root root -
d /var/usrlocal/bin 0755 root root -
d /var/usrlocal/etc 0755 root root -
d /var/usrlocal/games 0755 root root -
d /var/usrlocal/include 0755 root root -
d /var/usrlocal/lib 0755 root root -
d /var/usrlocal/libexec 0755 root root -
d /var/usrlocal/sbin 0755 root root -
d /var/usrlocal/share 0755 root root -
L /var/usrlocal/man - - - - share/man
d /var/usrlocal/src 0755 root root -
d /run/media 0755 root root -
# The package database lives in /usr; tools that only know the default path find it here.
L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg
EOF

# --- boot loader: ostree's GRUB backend ------------------------------------------------------
# A machine's ostree (sysroot.bootloader=grub2, set by `strata disk-image` when this file exists)
# writes each new menu with grub-mkconfig, whose 15_ostree turns ostree's boot loader entries into
# menu entries; 15_ostree does nothing without this file. Debian's own 10_linux finds no kernel in
# an ostree /boot, so the menu is ostree's deployments, newest first.
cat > "$R/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR="Strata CoreOS-like"
GRUB_CMDLINE_LINUX=""
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
GRUB_DISABLE_SUBMENU=true
EOF

# --- nothing machine-specific or time-dependent ----------------------------------------------
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/systemd/system/ssh.service.d"
cat > "$R/etc/systemd/system/ssh.service.d/10-strata-hostkeys.conf" <<'EOF'
# The image ships no host keys (every machine makes its own on first boot, as RHCOS's sshd-keygen does).
# The empty ExecStartPre= clears the unit's own list, so the keys exist before `sshd -t` checks them
# (appended after it, as a plain drop-in line would be, sshd -t failed first: ssh.service failed on boot).
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
echo uninitialized > "$R/etc/machine-id"   # systemd makes one on first boot (ConditionFirstBoot=yes)
# Storage identities made at install time would be shared by every node: regenerate them per machine.
# open-iscsi's startup checks make the initiator name at boot from GenerateName=yes.
[[ -e "$R/etc/iscsi/initiatorname.iscsi" ]] && echo 'GenerateName=yes' > "$R/etc/iscsi/initiatorname.iscsi"
rm -f "$R/etc/nvme/hostnqn" "$R/etc/nvme/hostid"
cat > "$R/usr/lib/systemd/system/strata-nvme-hostnqn.service" <<'EOF'
[Unit]
Description=Generate this machine's NVMe host NQN and host ID
ConditionPathExists=!/etc/nvme/hostnqn
Before=nvmf-autoconnect.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /etc/nvme && n=$$(nvme gen-hostnqn) && echo "$$n" > /etc/nvme/hostnqn && echo "$${n##*uuid:}" > /etc/nvme/hostid'
[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable strata-nvme-hostnqn.service >/dev/null 2>&1
rm -f "$R/etc/hostname" "$R/etc/resolv.conf" "$R/etc/.pwd.lock"
rm -rf "$R"/var/lib/dbus/machine-id
chroot "$R" systemctl set-default multi-user.target >/dev/null 2>&1
# /var ships empty, so the directories and links packages put there come back at boot from
# tmpfiles.d, with their modes and owners (as rpm-ostree and ostree-ext turn an image's /var into
# tmpfiles.d entries): auditd (/var/log/audit) and ovsdb-server (/var/lib/openvswitch,
# /var/log/openvswitch) failed on the first boot without them. Paths the layout file above already
# creates are left to it; files in /var are not carried (none is needed at boot).
var_tmpfiles() {
  local known
  known=$(awk '$1 ~ /^[dL]$/ {print $2}' "$R/usr/lib/tmpfiles.d/strata-ostree-layout.conf")
  chroot "$R" find /var -mindepth 1 \( -type d -o -type l \) -printf '%y %#m %u %g %p %l\n' | sort -k5,5 |
    while read -r type mode user group path target; do
      grep -qxF -- "$path" <<<"$known" && continue
      case $type in
        d) echo "d $path $mode $user $group -" ;;
        l) echo "L $path - - - - $target" ;;
      esac
    done
}
{
  echo "# The image's /var, as packages installed it (e2e/os-image/customize.sh): made at boot."
  var_tmpfiles
} > "$R/usr/lib/tmpfiles.d/strata-var.conf"
log "/var as tmpfiles.d: $(grep -c '^[dL] ' "$R/usr/lib/tmpfiles.d/strata-var.conf") entries"
rm -rf "${R:?}"/var/* "$R"/var/.[!.]* 2>/dev/null || true
chmod 0755 "$R/var"
log "done: /var empty, /boot empty, dpkg database in /usr/lib/sysimage/dpkg"
