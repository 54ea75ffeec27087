#!/bin/sh
# PID 1 of a fleet test host: authorize the key in $AUTHORIZED_KEY, start
# dockerd in the background (its own cgroup parent), then run sshd.
set -eu
# The engine mounts /proc/sys read-only (the CLI's --security-opt
# systempaths=unconfined has no API equivalent in community.docker):
# dockerd must set per-network-namespace sysctls for its containers.
mount -o remount,rw /proc/sys 2>/dev/null || true
printf '%s\n' "${AUTHORIZED_KEY:?AUTHORIZED_KEY is not set}" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
dockerd --cgroup-parent="/$(hostname)" >/var/log/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e
