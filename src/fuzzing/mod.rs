//! The bodies of the fuzz targets in `fuzz/`, as plain functions.
//!
//! The cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and `tests/fuzz_corpus.rs`, which replays
//! the committed corpus and regressions on stable Rust, call these same functions: there is one
//! harness, not two. Each function takes arbitrary bytes and panics only when it finds a broken
//! invariant (a bug); every other outcome, errors included, is a pass.
//!
//! [`harness`] is the one way to drive the sans-IO core in a test: `request_handler` runs on
//! it, and so do the core's own tests (`tests/core/`, `tests/attributes.rs`).

mod core;
mod frames;
pub mod harness;
mod seeds;

pub use self::core::request_handler;
pub use self::frames::frame_decode;
pub use self::seeds::{
    sample_events, sample_headers, sample_requests, sample_responses, seeds, Seed,
};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The fuzz targets by name (as in `fuzz/Cargo.toml` and `fuzz/corpus/<name>/`) with their
/// bodies.
pub const TARGETS: &[(&str, Target)] =
    &[("frame_decode", frame_decode), ("request_handler", request_handler)];
