#!/usr/bin/env bash
# Waits, saying so, while another apt or dpkg run (unattended upgrades on a fresh machine, most often) holds
# apt's locks, instead of letting apt-get fail at once; gives up after APT_LOCK_WAIT_SECONDS (default 600).
# Usage: wait-for-apt-locks.sh [LOCK_FILE ...] (default: apt's lists lock and dpkg's frontend lock).
# Without fuser (Debian's psmisc) it cannot see who holds a lock and returns at once: apt-get's own
# DPkg::Lock::Timeout, which ensure-system-deps.sh passes, still waits for the dpkg lock then.
set -euo pipefail

limit="${APT_LOCK_WAIT_SECONDS:-600}"
poll="${APT_LOCK_POLL_SECONDS:-5}"
if [ $# -eq 0 ]; then
  set -- /var/lib/apt/lists/lock /var/lib/dpkg/lock-frontend
fi
command -v fuser >/dev/null 2>&1 || exit 0

for lock in "$@"; do
  waited=0
  while [ -e "$lock" ] && fuser "$lock" >/dev/null 2>&1; do
    if [ "$waited" -eq 0 ]; then echo "Waiting for another apt or dpkg run to release $lock ..."; fi
    if [ "$waited" -ge "$limit" ]; then
      echo "apt is still locked after $limit seconds ($lock); try again later" >&2
      exit 1
    fi
    sleep "$poll"
    waited=$((waited + poll))
  done
done
