#!/usr/bin/env bash
# Fails when the committed custody/api/_gen differs from what scripts/gen-proto.sh would write from proto/.
#
# The generators stamp their own release into the output (grpcio-tools writes GRPC_GENERATED_VERSION, protoc
# writes the protobuf version twice). Those stamps say which tool ran, not what the code does, and pip picks
# the newest grpcio-tools that pyproject.toml allows, so they are masked on both sides before comparing: a
# new grpcio-tools release must not fail `make lint` when the schema and the code are the same. The stamps
# in the committed code still matter at run time (the generated modules refuse an older grpcio or protobuf),
# which is why pyproject.toml's lower bounds for grpcio and protobuf match them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
case $python in /*) ;; *) python="$PWD/$python" ;; esac
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
bash "$root/scripts/gen-proto.sh" "$scratch/fresh"
mkdir -p "$scratch/committed/custody/api"
cp -r "$root/custody/api/_gen" "$scratch/committed/custody/api/_gen"
"$python" - "$scratch/fresh/custody/api/_gen" "$scratch/committed/custody/api/_gen" <<'PY'
import pathlib
import re
import sys

STAMPS = (
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.M), "GRPC_GENERATED_VERSION = '<stamp>'"),
    (re.compile(r"^# Protobuf Python Version: .*$", re.M), "# Protobuf Python Version: <stamp>"),
    (
        re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"),
        r"\1 <stamp>,",
    ),
)
for folder in sys.argv[1:]:
    for path in pathlib.Path(folder).glob("*.py*"):
        text = path.read_text()
        for pattern, replacement in STAMPS:
            text = pattern.sub(replacement, text)
        path.write_text(text)
PY
# Bytecode caches are not generated code; a checkout that has run anything has them.
if ! diff -r -x __pycache__ -x "*.pyc" "$scratch/fresh/custody/api/_gen" "$scratch/committed/custody/api/_gen"; then
  echo "custody/api/_gen differs from proto/ (beyond the generators' version stamps): run 'make proto' and" \
    "commit the result" >&2
  exit 1
fi
echo "generated gRPC code is up to date"
