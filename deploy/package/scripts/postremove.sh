#!/bin/sh
# csirt-agent post-remove (deb postrm, rpm %postun).
#   deb: $1 = remove | purge | upgrade | failed-upgrade | abort-* | disappear
#   rpm: $1 = 0 (erase) | 1 (upgrade)
# Plain removal (deb remove, rpm erase) keeps /var/lib/csirt-agent (identity
# and unsent data) and the user, so that reinstalling keeps the enrolment.
# Purge (deb only) deletes both: the server must then be enrolled again.
# On rpm systems: rm -rf /var/lib/csirt-agent && userdel csirt-agent.
set -e

case "$1" in
purge)
	rm -rf /var/lib/csirt-agent
	if getent passwd csirt-agent >/dev/null; then
		userdel csirt-agent || true
	fi
	if getent group csirt-agent >/dev/null; then
		groupdel csirt-agent || true
	fi
	;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
