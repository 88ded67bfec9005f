#!/bin/sh
# csirt-agent pre-remove (deb prerm, rpm %preun): stops and disables the
# service when the package is removed (not on upgrade).
#   deb: $1 = remove | upgrade | deconfigure | failed-upgrade
#   rpm: $1 = 0 (erase) | 1 (upgrade)
set -e

case "$1" in
remove | deconfigure | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop csirt-agent.service || true
fi
# Disabling only removes the unit's symlinks under /etc/systemd/system: it
# works without a running systemd, so a unit enabled in a container or
# chroot leaves no dangling link either.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable csirt-agent.service >/dev/null 2>&1 || true
fi
exit 0
