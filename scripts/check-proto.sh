#!/usr/bin/env bash
# Fails when the committed custody/api/_gen differs from what scripts/gen-proto.sh would write from proto/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
bash "$root/scripts/gen-proto.sh" "$scratch"
# Bytecode caches are not generated code; a checkout that has run anything has them.
if ! diff -r -x __pycache__ -x "*.pyc" "$scratch/custody/api/_gen" "$root/custody/api/_gen" >/dev/null; then
  echo "custody/api/_gen differs from proto/: run 'make proto' and commit the result" >&2
  exit 1
fi
echo "generated gRPC code is up to date"
