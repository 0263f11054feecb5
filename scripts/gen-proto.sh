#!/usr/bin/env bash
# Generates the Python gRPC code for proto/custody/v1 into OUT/custody/api/_gen (OUT defaults to the
# repository root). The import path is mapped so the generated modules import each other as
# custody.api._gen.*, which keeps them inside the custody package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
python=${PYTHON:-$root/.venv/bin/python}
# The generator runs from the output folder, so a relative interpreter path is made absolute first.
case $python in /*) ;; *) python="$PWD/$python" ;; esac
mkdir -p "$out/custody/api/_gen"
rm -f "$out"/custody/api/_gen/custody_pb2*.py "$out"/custody/api/_gen/custody_pb2*.pyi
cd "$out"
"$python" -m grpc_tools.protoc \
  -Icustody/api/_gen="$root/proto/custody/v1" \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  "$root/proto/custody/v1/custody.proto"
touch custody/api/_gen/__init__.py
