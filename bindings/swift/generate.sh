#!/usr/bin/env bash
# Generates the Swift binding of bindings/ffi (bindings/swift/README.md):
#   bindings/swift/Sources/Huddle/Huddle.swift   the Swift module `Huddle`
#   bindings/swift/build/HuddleFFI/HuddleFFI.h   the C declarations it calls (module HuddleFFI)
#   bindings/swift/build/HuddleFFI/module.modulemap
# The generator reads the interface from a host build of the library; the sources are the same
# for every Apple target. Works on Linux and macOS.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
frozen=()
if [ "${CI:-}" = true ]; then frozen=(--frozen); fi
case "$(uname -s)" in Darwin) ext=dylib ;; *) ext=so ;; esac

cargo build "${frozen[@]}" -p huddle-ffi --features bindgen
out=bindings/swift/build/HuddleFFI
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$target/debug/uniffi-bindgen" generate --no-format --library "$target/debug/libhuddle_ffi.$ext" \
  --language swift --config bindings/swift/uniffi.toml --out-dir "$tmp"
rm -rf "$out"
mkdir -p "$out" bindings/swift/Sources/Huddle
mv "$tmp/Huddle.swift" bindings/swift/Sources/Huddle/Huddle.swift
mv "$tmp/HuddleFFI.h" "$out/HuddleFFI.h"
# Inside an XCFramework's Headers folder the module map must be called module.modulemap.
mv "$tmp/HuddleFFI.modulemap" "$out/module.modulemap"
