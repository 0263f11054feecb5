#!/usr/bin/env bash
# Makes sure the system packages custody needs are present: SoftHSM2 (the PKCS#11 token used in development
# and tests) and Python's venv module; with --with-node also Node.js and npm, which `make test` needs for the
# Ethereum tools its end-to-end tests drive (anvil, cast, ethers, viem; see tests/tools). Installs them with
# apt-get when running as root on Debian or Ubuntu; otherwise says exactly what to install and stops.
set -euo pipefail

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || {
  echo "custody needs Python 3.11 or newer as python3; found: $(python3 --version 2>&1 || echo none)" >&2
  exit 1
}
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("python3-venv")
if [ "${1:-}" = "--with-node" ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "custody needs these system packages: ${missing[*]}. This machine has no apt-get: install them with" >&2
  echo "your package manager (SoftHSM2 is 'softhsm' on Fedora and 'softhsm' in Homebrew), then run make again." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "custody needs these system packages: ${missing[*]}. Install them as root:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  echo "then run make again." >&2
  exit 1
fi

echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg run (unattended upgrades on a fresh machine, most often) holds apt's locks for a while;
# waiting for it, and saying so, beats failing at once.
lock_wait=(-o DPkg::Lock::Timeout=600)
bash "$(dirname "$0")/wait-for-apt-locks.sh"
apt-get "${lock_wait[@]}" update -qq
apt-get "${lock_wait[@]}" install -y -qq "${missing[@]}" >/dev/null
