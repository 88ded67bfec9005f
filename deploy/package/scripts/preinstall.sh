#!/bin/sh
# csirt-agent pre-install (deb preinst, rpm %pre): creates the system user
# and group the service runs as, before the files are unpacked.
#   deb: $1 = install | upgrade | abort-upgrade
#   rpm: $1 = 1 (install) | 2 (upgrade)
set -e

case "$1" in
install | upgrade | 1 | 2) ;;
*) exit 0 ;;
esac

if ! getent group csirt-agent >/dev/null; then
	groupadd --system csirt-agent
fi
if ! getent passwd csirt-agent >/dev/null; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	# No login shell and no home directory: the account only runs the service.
	useradd --system --gid csirt-agent --no-create-home --home-dir /nonexistent \
		--shell "$nologin" --comment "CSIRT Toscana agent" csirt-agent
fi
# Groups that may read logs: adm (Debian: /var/log/auth.log, syslog...) and
# systemd-journal (the whole journal). The unit adds them too
# (SupplementaryGroups); membership also serves `runuser -u csirt-agent`.
for g in adm systemd-journal; do
	if getent group "$g" >/dev/null; then
		usermod --append --groups "$g" csirt-agent
	fi
done
exit 0
