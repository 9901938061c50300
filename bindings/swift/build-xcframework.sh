#!/usr/bin/env bash
# Builds build/HuddleFFI.xcframework on a Mac with Xcode (bindings/swift/README.md): the Rust
# library as a static library for each Apple platform, with HuddleFFI.h and module.modulemap.
#   ios-arm64                          aarch64-apple-ios        (devices)
#   ios-arm64_x86_64-simulator         aarch64-apple-ios-sim + x86_64-apple-ios (lipo)
#   macos-arm64_x86_64                 aarch64-apple-darwin + x86_64-apple-darwin (lipo)
# Then zips it and prints the checksum Package.swift's binaryTarget(url:checksum:) needs.
# Not run on Linux: needs xcodebuild, lipo and the Apple SDKs.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin
  x86_64-apple-darwin)

bindings/swift/generate.sh
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo rustc -p huddle-ffi --lib --release --target "$t" --crate-type staticlib
done

out=bindings/swift/build
lib=libhuddle_ffi.a
mkdir -p "$out/ios-sim" "$out/macos"
lipo -create "$target/aarch64-apple-ios-sim/release/$lib" "$target/x86_64-apple-ios/release/$lib" \
  -output "$out/ios-sim/$lib"
lipo -create "$target/aarch64-apple-darwin/release/$lib" \
  "$target/x86_64-apple-darwin/release/$lib" -output "$out/macos/$lib"
rm -rf "$out/HuddleFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$target/aarch64-apple-ios/release/$lib" -headers "$out/HuddleFFI" \
  -library "$out/ios-sim/$lib" -headers "$out/HuddleFFI" \
  -library "$out/macos/$lib" -headers "$out/HuddleFFI" \
  -output "$out/HuddleFFI.xcframework"
(cd "$out" && rm -f HuddleFFI.xcframework.zip && zip -qry HuddleFFI.xcframework.zip HuddleFFI.xcframework)
swift package compute-checksum "$out/HuddleFFI.xcframework.zip"
