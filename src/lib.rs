//! Huddle: a QUIC transport server for multi-person chat rooms, with its client library.
//!
//! See README.md for a tour and ARCHITECTURE.md for the code map. The wire format is always
//! built; the rest is behind cargo features (`client`, `server`, `cli`, `load`, `netsim`,
//! `fuzzing`, `cluster`), all on by default except `fuzzing` and `cluster` (the NATS JetStream layer
//! of cluster mode, `huddle::cluster`). An application that only connects to a server
//! needs `default-features = false, features = ["client"]`.
#![warn(missing_docs)]

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod certs;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(any(feature = "client", feature = "server"))]
pub mod congestion;
#[cfg(feature = "server")]
pub mod core;
#[cfg(any(feature = "client", feature = "server"))]
pub mod framed;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "load")]
pub mod load;
#[cfg(feature = "netsim")]
pub mod netsim;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "server", feature = "netsim"))]
pub mod udp;
pub mod wire;

/// This build: the crate's version and the git commit it was built from ("unknown" outside a
/// git checkout), as `huddle --version` prints them.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HUDDLE_GIT_COMMIT"), ")");

/// The labels of the `huddle_build_info` metric.
#[cfg(feature = "server")]
fn build_labels() -> Vec<(&'static str, &'static str)> {
    vec![("version", env!("CARGO_PKG_VERSION")), ("commit", env!("HUDDLE_GIT_COMMIT"))]
}
