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
//! - [`runner`]: the workload, the same for every backend: publish, receive, check, drain,
//!   count.
//! - [`link`]: a member's connection as the runner sees it (publish, receive).
//! - [`huddle`]: the Huddle backend: connect the members (QUIC, the client library), enter the
//!   rooms, close; its [`link::Link`].
//! - `compare` (feature `compare`): the same for Redis pub/sub and NATS, to run the same
//!   workload against them side by side (`--backend`).
//! - `ipsim`: a run across `huddle ipsim`'s link (`--ipsim-schedule`): its blackholes and
//!   address changes for the runner.
//! - [`startup`]: `--startup`, new members timed from their start to their first message.
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
pub mod huddle;
mod ipsim;
pub mod link;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod startup;
pub mod stats;

use anyhow::Result;

use server::SpawnedServer;

pub use args::{Backend, LoadArgs, LoadConfig, Trust};
pub use report::Summary;

/// Runs `huddle load`: prints the table on stdout and returns the process exit code (0 when
/// nothing was lost, duplicated or reordered and every member connected; 1 otherwise).
pub async fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let summary = run_with(LoadConfig::from(args)).await?;
    print!("{}", summary.table());
    Ok(summary.exit_code())
}

/// Runs the load described by `cfg` and returns its summary; writes the JSON summary and the
/// plot when `cfg` asks for them.
pub async fn run_with(mut cfg: LoadConfig) -> Result<Summary> {
    cfg.validate()?;
    let mut spawned = None;
    let mut server_addr = cfg.server.unwrap_or_else(|| "127.0.0.1:0".parse().expect("constant"));
    let mut server_pid = cfg.server_pid;
    let mut certs_dir = cfg.certs_dir.clone();
    if cfg.spawn_server {
        let s = SpawnedServer::start(&cfg)?;
        server_addr = s.addr;
        server_pid = Some(s.pid);
        certs_dir = s.certs_dir();
        if cfg.web_members > 0 && cfg.web_cert_hash.is_none() {
            cfg.web_cert_hash = s.web_cert_hash();
        }
        spawned = Some(s);
    }
    let result = match cfg.backend {
        Backend::Huddle => huddle::drive(&cfg, server_addr, server_pid, &certs_dir).await,
        #[cfg(feature = "compare")]
        Backend::Redis | Backend::Nats => compare::drive(&cfg, server_addr, server_pid).await,
        #[cfg(not(feature = "compare"))]
        Backend::Redis | Backend::Nats => {
            Err(anyhow::anyhow!("built without the `compare` feature"))
        }
    };
    if let (Err(_), Some(s)) = (&result, spawned.as_mut()) {
        if !s.is_running() {
            eprintln!("the spawned server exited; its log:\n{}", s.log_tail());
        }
    }
    // Kills the spawned server (if any) now that every connection is closed.
    drop(spawned);
    let mut summary = result?;
    summary.judge();
    if let Some(path) = &cfg.json {
        summary.write_json(path)?;
    }
    if let Some(path) = &cfg.plot {
        if cfg.connections_only {
            eprintln!("--plot: a connections-only run has no timeline to draw");
        } else {
            plot::draw(&summary, path)?;
        }
    }
    Ok(summary)
}
