#!/bin/sh
# A boot that reached multi-user.target (strata-boot-complete.service): the try of a new
# deployment succeeded, or GRUB fell back to the previous one. After a fall-back the deployment
# that did not come up is removed (`ostree admin undeploy`), so no later boot tries it again and
# the booted one is the default, as greenboot's `rpm-ostree rollback` leaves it; the
# machine-config-daemon then reports the machine degraded (it booted another image than its
# config's).
set -eu
env=/boot/grub/grubenv
[ -e "$env" ] || exit 0
if grub-editenv "$env" list | grep -qx 'strata_boot_fell_back=1'; then
  booted=$(ostree admin status | awk '$1 == "*" {print NR; exit}')
  first=$(ostree admin status | awk '/^[* ] [^ ]/ {print NR; exit}')
  if [ -n "$booted" ] && [ "$booted" != "$first" ]; then
    echo "strata-boot-complete: the new deployment did not boot; GRUB booted the previous one; removing the new one"
    ostree admin undeploy 0
  fi
fi
grub-editenv "$env" unset strata_boot_pending strata_boot_fell_back
