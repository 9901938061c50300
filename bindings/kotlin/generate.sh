#!/usr/bin/env bash
# Generates the Kotlin binding of bindings/ffi into OUT (bindings/kotlin/README.md):
#   OUT/kotlin/chat/huddle/huddle_ffi.kt            the generated sources (package chat.huddle)
#   OUT/resources/<JNA prefix>/libhuddle_ffi.<ext>  the native library, where JNA finds it on
#                                                   the class path (linux-x86-64, darwin-aarch64...)
# Usage: bindings/kotlin/generate.sh OUT [debug|release]   (the library's profile; debug default)
set -euo pipefail
out=$(realpath -m "$1")
profile=${2:-debug}
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
frozen=()
if [ "${CI:-}" = true ]; then frozen=(--frozen); fi

case "$(uname -s)" in
  Darwin) os=darwin ext=dylib ;;
  *) os=linux ext=so ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86-64 ;;
  arm64 | aarch64) arch=aarch64 ;;
  *) arch=$(uname -m) ;;
esac

# The generator is built as bindings/test.sh builds it (debug, `bindgen` feature), so the two
# scripts share one build; a release library is built on its own, without the generator's crates.
cargo build "${frozen[@]}" -p huddle-ffi --features bindgen
lib=$target/debug/libhuddle_ffi.$ext
if [ "$profile" = release ]; then
  cargo build "${frozen[@]}" -p huddle-ffi --lib --release
  lib=$target/release/libhuddle_ffi.$ext
fi

rm -rf "$out/kotlin" "$out/resources"
mkdir -p "$out/kotlin" "$out/resources/$os-$arch"
"$target/debug/uniffi-bindgen" generate --no-format --library "$lib" --language kotlin \
  --config bindings/kotlin/uniffi.toml --out-dir "$out/kotlin"

# UniFFI 0.29 gives every Kotlin object AutoCloseable's `close()` (it frees the Rust object);
# HuddleClient's own async `close` collides with it (uniffi-rs issue 2955) and the file would
# not compile. In Kotlin that operation is `shutdown()`; `close()` stays AutoCloseable's.
src=$out/kotlin/chat/huddle/huddle_ffi.kt
n=$(grep -c 'suspend fun `close`()' "$src" || true)
if [ "$n" != 2 ]; then
  echo "generate.sh: expected HuddleClient's suspend close() twice in $src, found $n" >&2
  exit 1
fi
sed 's/suspend fun `close`()/suspend fun `shutdown`()/' "$src" >"$src.tmp"
mv "$src.tmp" "$src"

cp "$lib" "$out/resources/$os-$arch/"
