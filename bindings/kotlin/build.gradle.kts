// The JVM library `chat.huddle:huddle-kotlin`: UniFFI's Kotlin for bindings/ffi (package
// chat.huddle) and the native library, both generated in the build by generate.sh (nothing
// generated is committed). The native library goes into the jar under JNA's resource prefix
// (linux-x86-64/libhuddle_ffi.so, darwin-aarch64/libhuddle_ffi.dylib, ...), where JNA finds it.
// Needs the Rust toolchain and bash. `-Phuddle.cargoProfile=debug` builds the library faster.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    kotlin("jvm") version "2.1.20"
    `java-library`
}

group = "chat.huddle"
version = "0.1.0"

val repoRoot: File = projectDir.resolve("../..").canonicalFile
val generated = layout.buildDirectory.dir("generated/uniffi")
val cargoProfile = providers.gradleProperty("huddle.cargoProfile").getOrElse("release")

val generateBindings by tasks.registering(Exec::class) {
    description = "Builds bindings/ffi and generates its Kotlin sources and native library."
    group = "build"
    workingDir = repoRoot
    commandLine("bash", "bindings/kotlin/generate.sh", generated.get().asFile.path, cargoProfile)
    inputs.property("cargoProfile", cargoProfile)
    inputs.files(
        fileTree(repoRoot.resolve("src")),
        fileTree(repoRoot.resolve("bindings/ffi")),
        repoRoot.resolve("Cargo.toml"),
        repoRoot.resolve("Cargo.lock"),
        projectDir.resolve("generate.sh"),
        projectDir.resolve("uniffi.toml"),
    )
    outputs.dir(generated)
}

sourceSets {
    main {
        kotlin.srcDir(files(generated.map { it.dir("kotlin") }).builtBy(generateBindings))
        resources.srcDir(files(generated.map { it.dir("resources") }).builtBy(generateBindings))
    }
}

dependencies {
    api("net.java.dev.jna:jna:5.14.0")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.8.0")
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

val buildServer by tasks.registering(Exec::class) {
    description = "Builds the `huddle` binary the server test starts."
    workingDir = repoRoot
    commandLine("cargo", "build", "--bin", "huddle")
}

// src/test/kotlin/chat/huddle/ServerTest.kt is a program (a main, plain checks), not a JUnit
// suite: it starts its own `huddle serve` on 127.0.0.1. bindings/kotlin/test.sh runs the same
// file with kotlinc where no Gradle repository is reachable.
val serverTest by tasks.registering(JavaExec::class) {
    description = "Runs the binding against a real huddle serve on 127.0.0.1."
    group = "verification"
    dependsOn(buildServer)
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("chat.huddle.ServerTestKt")
    environment("HUDDLE_BIN", repoRoot.resolve("target/debug/huddle").path)
}

tasks.named("check") { dependsOn(serverTest) }
