// swift-tools-version:5.9
// Huddle's Swift binding (bindings/swift/README.md). Before building: `generate.sh` writes
// Sources/Huddle/Huddle.swift, and `build-xcframework.sh` (on a Mac) writes
// build/HuddleFFI.xcframework, the Rust library for every Apple target with its C header.
import PackageDescription

let package = Package(
    name: "Huddle",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Huddle", targets: ["Huddle"]),
    ],
    targets: [
        // A release publishes the zipped XCFramework and replaces `path:` with
        // `url: "<release asset>", checksum: "<swift package compute-checksum output>"`.
        .binaryTarget(name: "HuddleFFI", path: "build/HuddleFFI.xcframework"),
        .target(name: "Huddle", dependencies: ["HuddleFFI"], path: "Sources/Huddle"),
    ]
)
