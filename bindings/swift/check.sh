#!/usr/bin/env bash
# Checks the Swift binding as far as a Linux machine allows (bindings/swift/README.md); no
# Swift compiler is run. Generates it (generate.sh), then:
#   1. the files are there and not empty; the module map names module HuddleFFI and its header;
#   2. Huddle.swift declares connect, connectWithListener, HuddleClient with every operation,
#      EventListener, HuddleEvent and HuddleError;
#   3. the header compiles as C (gcc), every C function Huddle.swift calls is declared in it, and
#      a C program taking the address of every declared function links and loads against the
#      built libhuddle_ffi.so (all symbols bound at load);
#   4. Huddle.swift, Package.swift and README.md's Swift blocks parse with tree-sitter's Swift
#      grammar (installed from PyPI into a cache folder's venv: HUDDLE_SWIFT_CACHE, default
#      ~/.cache/huddle-swift).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cache=${HUDDLE_SWIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/huddle-swift}
bindings/swift/generate.sh

swift=bindings/swift/Sources/Huddle/Huddle.swift
header=bindings/swift/build/HuddleFFI/HuddleFFI.h
modulemap=bindings/swift/build/HuddleFFI/module.modulemap
passed=0
fail() {
  echo "swift check: $*" >&2
  exit 1
}

for f in "$swift" "$header" "$modulemap"; do
  [ -s "$f" ] || fail "$f is missing or empty"
done
grep -q '^module HuddleFFI {' "$modulemap" && grep -q 'header "HuddleFFI.h"' "$modulemap" ||
  fail "module map: $(cat "$modulemap")"
grep -q '^import HuddleFFI$' "$swift" || fail "Huddle.swift does not import HuddleFFI"
passed=$((passed + 1))

for decl in 'public func connect(options: ConnectOptions)async throws  -> HuddleClient' \
  'public func connectWithListener(options: ConnectOptions, listener: EventListener)' \
  'open class HuddleClient: HuddleClientProtocol' 'public protocol EventListener: AnyObject' \
  'func onEvent(event: HuddleEvent)' 'public enum HuddleEvent {' 'public enum HuddleError: Swift.Error {' \
  'case Server(' 'case roomMessage(' 'public struct ConnectOptions {'; do
  grep -qF "$decl" "$swift" || fail "Huddle.swift lacks: $decl"
done
for op in batchRoomAttributes close createRoom deleteRoomAttributes enterRoom joinRoom \
  leaveAllRooms leaveRoom logout nextClientMsgId nextEvent queryHistory queryJoinedRooms \
  queryRoomAttributes queryRoomMemberAttributesList queryRoomMembers \
  queryRoomMembersAttributes queryRoomMembersById queryRoomOnlineCount renewToken sendCustom \
  sendText sessionId setRoomAttributes setRoomMembersAttributes state switchRoom userId; do
  grep -q "^open func $op(" "$swift" || fail "HuddleClient lacks $op"
done
passed=$((passed + 1))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declared=$(grep -oE '\b(uniffi|ffi)_huddle_ffi_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
called=$(grep -oE '\b(uniffi|ffi)_huddle_ffi_[a-z0-9_]+' "$swift" | sort -u)
missing=$(comm -13 <(echo "$declared") <(echo "$called"))
[ -z "$missing" ] || fail "Huddle.swift calls functions the header lacks: $missing"
{
  echo "#include <stdint.h>"
  echo "#include \"$(realpath "$header")\""
  echo "void *const symbols[] = {"
  for f in $declared; do echo "  (void *)&$f,"; done
  echo "};"
  echo "int main(void) { return symbols[0] == 0; }"
} >"$work/symbols.c"
gcc -Wall -Werror -D_Nullable= -D_Nonnull= "$work/symbols.c" -o "$work/symbols" \
  -L"$target/debug" -lhuddle_ffi -Wl,-z,now
LD_LIBRARY_PATH="$target/debug" "$work/symbols" || fail "the library does not load"
passed=$((passed + 1))

if [ ! -x "$cache/venv/bin/python" ] ||
  ! "$cache/venv/bin/python" -c 'import tree_sitter, tree_sitter_swift' 2>/dev/null; then
  python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q --disable-pip-version-check tree-sitter==0.25.2 \
    tree-sitter-swift==0.7.4
fi
"$cache/venv/bin/python" bindings/swift/check_syntax.py "$swift" bindings/swift/Package.swift \
  bindings/swift/README.md
passed=$((passed + 1))

echo "swift binding: $(echo "$declared" | wc -l) C functions, $passed groups of checks passed" \
  "(generated and parsed, not compiled: no Swift toolchain)"
echo "$passed passed, 0 failed"
