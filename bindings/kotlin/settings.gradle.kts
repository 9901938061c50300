// Huddle's Kotlin binding as a Gradle build of its own (bindings/kotlin/README.md). An app uses
// it with `includeBuild("<huddle checkout>/bindings/kotlin")` and the dependency
// `implementation("chat.huddle:huddle-kotlin:0.1.0")`.
pluginManagement {
    repositories {
        gradlePluginPortal()
        mavenCentral()
    }
}

dependencyResolutionManagement {
    repositories {
        mavenCentral()
    }
}

rootProject.name = "huddle-kotlin"
