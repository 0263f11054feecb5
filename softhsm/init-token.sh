#!/bin/sh
# Create a SoftHSM2 token for custody development in DIR (its own softhsm2.conf and token directory).
#
# Usage: CUSTODY_HSM_PIN=... CUSTODY_HSM_SO_PIN=... softhsm/init-token.sh DIR [LABEL]
#
# The PINs come from the environment so they do not end up in shell history; softhsm2-util itself only
# accepts them on its command line, so they are visible in its argv while it runs. Tests and
# `custody dev init` use custody.hsm.softhsm.create_softhsm_token, which does the same from Python.
set -eu

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: CUSTODY_HSM_PIN=... CUSTODY_HSM_SO_PIN=... $0 DIR [LABEL]" >&2
    exit 2
fi
if [ -z "${CUSTODY_HSM_PIN:-}" ] || [ -z "${CUSTODY_HSM_SO_PIN:-}" ]; then
    echo "set CUSTODY_HSM_PIN and CUSTODY_HSM_SO_PIN (4 to 255 characters each) before running $0" >&2
    exit 2
fi
if ! command -v softhsm2-util >/dev/null 2>&1; then
    echo "softhsm2-util was not found; install softhsm2 (for example: apt-get install softhsm2)" >&2
    exit 1
fi

directory=$1
label=${2:-custody}
template="$(dirname "$0")/softhsm2.conf.template"

mkdir -p "$directory/tokens"
tokendir=$(cd "$directory/tokens" && pwd)
sed "s|^directories.tokendir = @TOKENDIR@$|directories.tokendir = $tokendir|" "$template" > "$directory/softhsm2.conf"

SOFTHSM2_CONF="$directory/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
    --pin "$CUSTODY_HSM_PIN" --so-pin "$CUSTODY_HSM_SO_PIN" >/dev/null

echo "created token '$label'; use it with:"
echo "export SOFTHSM2_CONF=$(cd "$directory" && pwd)/softhsm2.conf"
