#!/bin/sh
# csirt-agent post-install (deb postinst, rpm %post): creates the state
# directory and reloads systemd. The service is not enabled here: it needs
# the enrolment first (see /usr/share/doc/csirt-agent/README).
#   deb: $1 = configure (with $2 = the old version on upgrade) | abort-*
#   rpm: $1 = 1 (install) | 2 (upgrade)
set -e

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

# Identity, checkpoints and spool: readable by the agent only. Kept on
# removal so that a reinstall keeps the enrolment.
install -d -m 0750 -o csirt-agent -g csirt-agent /var/lib/csirt-agent
chown csirt-agent:csirt-agent /var/lib/csirt-agent
chmod 0750 /var/lib/csirt-agent

# Only when systemd is running (not in containers or chroots).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# On upgrade, restart the agent if it was running; no-op otherwise.
	systemctl try-restart csirt-agent.service || true
fi
exit 0
