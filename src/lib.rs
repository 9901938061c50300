//! Huddle: a QUIC transport server for multi-person chat rooms, with its client library.
//!
//! See README.md for a tour and ARCHITECTURE.md for the code map.
#![warn(missing_docs)]

pub mod auth;
pub mod certs;
pub mod cli;
pub mod client;
pub mod core;
pub mod framed;
#[doc(hidden)]
pub mod fuzzing;
pub mod load;
pub mod netsim;
pub mod server;
pub mod udp;
pub mod wire;
