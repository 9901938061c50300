#!/usr/bin/env bash
# Compiles the generated Kotlin binding, src/test/kotlin/chat/huddle/ServerTest.kt and README.md's
# Kotlin with kotlinc, and runs the test against a real `huddle serve` on 127.0.0.1 (README.md).
# Installs what is missing: a JDK and JNA from Debian's packages, and the Kotlin compiler (with
# kotlin-stdlib and kotlinx-coroutines-core) from the npm registry's `kotlin-compiler` package
# into a cache folder (HUDDLE_KOTLIN_CACHE, default ~/.cache/huddle-kotlin). Exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
kotlin_version=2.4.20
cache=${HUDDLE_KOTLIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/huddle-kotlin}
frozen=()
if [ "${CI:-}" = true ]; then frozen=(--frozen); fi

jna=/usr/share/java/jna.jar
if ! command -v java >/dev/null || [ ! -f "$jna" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends default-jdk-headless libjna-java >/dev/null ||
    { apt-get update >/dev/null &&
      apt-get install -y --no-install-recommends default-jdk-headless libjna-java >/dev/null; }
fi
kh=$cache/$kotlin_version/node_modules/kotlin-compiler
if [ ! -x "$kh/bin/kotlinc" ]; then
  mkdir -p "$cache/$kotlin_version"
  npm install --prefix "$cache/$kotlin_version" --no-save --no-audit --no-fund \
    "kotlin-compiler@$kotlin_version" >/dev/null
fi
coroutines=$kh/lib/kotlinx-coroutines-core-jvm.jar
stdlib=$kh/lib/kotlin-stdlib.jar

cargo build "${frozen[@]}" --bin huddle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bindings/kotlin/generate.sh "$work/gen" debug

# The generated file takes most of the compile time: its jar is kept, named by its content.
generated=$work/gen/kotlin/chat/huddle/huddle_ffi.kt
bindings_jar=$cache/$kotlin_version/huddle-ffi-$(sha256sum "$generated" | cut -c1-16).jar
if [ ! -f "$bindings_jar" ]; then
  "$kh/bin/kotlinc" -nowarn -cp "$jna:$coroutines" -d "$work/bindings.jar" "$generated"
  mv "$work/bindings.jar" "$bindings_jar"
fi
# README.md's ```kotlin blocks are compiled too (not run), so the documented code stays true.
awk '/^```kotlin$/ {on = 1; next} /^```$/ {on = 0} on' bindings/kotlin/README.md >"$work/Readme.kt"
[ -s "$work/Readme.kt" ] || { echo "test.sh: no Kotlin in bindings/kotlin/README.md" >&2; exit 1; }
"$kh/bin/kotlinc" -nowarn -cp "$jna:$coroutines:$bindings_jar" -d "$work/test.jar" \
  bindings/kotlin/src/test/kotlin/chat/huddle/*.kt "$work/Readme.kt"

# The native library is loaded from the class path (resources/<JNA prefix>/), as in a jar.
HUDDLE_BIN="$target/debug/huddle" timeout 300 java \
  -cp "$work/test.jar:$bindings_jar:$work/gen/resources:$stdlib:$jna:$coroutines" chat.huddle.ServerTestKt
