//! `huddle load`: an open-loop load generator for a Huddle server.
//!
//! Rooms of members, each member its own QUIC connection through the real client library,
//! spread over several client UDP endpoints. Publishers send at intended times
//! `t0 + phase + k / rate` whatever happened before; every member checks that each publisher's
//! messages arrive exactly once and in order, and records latency from the intended send time
//! (carried in the message) to arrival in an HdrHistogram, so there is no coordinated omission.
//! The server can be started by the harness (`--spawn-server`) or be external (`--server`,
//! `--server-pid` for its CPU and memory), and an in-process network simulator can sit in
//! between (`--netsim`).
//!
//! - [`args`]: flags and the resolved configuration, with the bounds every run stays within.
//! - [`runner`]: connect, publish, receive, drain, count.
//! - [`link`]: a member's connection as the runner sees it (publish, receive), for Huddle.
//! - `compare` (feature `compare`): the same for Redis pub/sub and NATS, to run the same
//!   workload against them side by side (`--backend`).
//! - [`schedule`]: the thread that wakes publishers at their intended send times.
//! - [`stats`]: message stamps, histograms, the per-second timeline, order checks.
//! - [`report`]: the summary, its table and JSON.
//! - [`plot`]: the SVG picture of a run.
//! - [`curve`]: latency against load from several runs' JSON summaries (`huddle load-curve`).
//! - [`server`]: the spawned server and /proc readings.

pub mod args;
#[cfg(feature = "compare")]
pub mod compare;
pub mod curve;
pub mod link;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod stats;

pub use args::{Backend, LoadArgs, LoadConfig, Trust};
pub use report::Summary;
pub use runner::run_with;

/// Runs `huddle load`: prints the table on stdout and returns the process exit code (0 when
/// nothing was lost, duplicated or reordered and every member connected; 1 otherwise).
pub async fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let summary = run_with(LoadConfig::from(args)).await?;
    print!("{}", summary.table());
    Ok(summary.exit_code())
}
