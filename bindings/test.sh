#!/usr/bin/env bash
# Builds the FFI library (bindings/ffi) and its binding generator, generates the Python module
# into a temporary folder, and runs bindings/python/test_huddle.py against a real `huddle serve`
# on 127.0.0.1 (bindings/README.md). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
frozen=()
if [ "${CI:-}" = true ]; then frozen=(--frozen); fi

cargo build "${frozen[@]}" --bin huddle
cargo build "${frozen[@]}" -p huddle-ffi --features bindgen

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "$target/debug/libhuddle_ffi.so" "$out/"
"$target/debug/uniffi-bindgen" generate --no-format --library "$out/libhuddle_ffi.so" \
  --language python --out-dir "$out"

HUDDLE_BIN="$target/debug/huddle" HUDDLE_FFI_PY="$out" timeout 300 python3 bindings/python/test_huddle.py
