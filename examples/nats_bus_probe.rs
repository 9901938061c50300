//! Latency probe of `huddle::cluster::NatsBus` against a local nats-server.
//!
//! Starts `nats-server -js` (the binary in `$NATS_SERVER`, else `nats-server` on PATH) on a free
//! loopback port with a temporary store, then makes 2,000 sequential appends of 200 B to one room
//! log from one connection, first plain, then with `expected_last` (compare-and-set), while a
//! second connection follows the log. Prints p50/p99 of append → PubAck and of append → the
//! entry arriving on the other connection's feed, and stops the server it started.
//!
//! ```sh
//! cargo run --release --features cluster --example nats_bus_probe
//! ```

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use huddle::cluster::{NatsBus, NatsOptions};

const APPENDS: usize = 2_000;
const ENTRY: usize = 200;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let dir = tempfile::TempDir::new()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(&binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let result = probe(port).await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

async fn probe(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nats-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let opts = NatsOptions { nats: vec![format!("nats://127.0.0.1:{port}")], ..Default::default() };
    let appender = NatsBus::connect(opts.clone()).await?;
    let follower = NatsBus::connect(opts).await?;
    println!("nats-server {} (R1, file store, loopback)", appender.server_version());
    for (round, cas) in [(1u64, false), (2, true)] {
        let log = appender.log("probe", round);
        let mut feed = follower.follow(&log, 0).await?;
        let reader = tokio::spawn(async move {
            let mut arrived = HashMap::with_capacity(APPENDS);
            while arrived.len() < APPENDS {
                match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
                    Ok(Some(Ok(record))) => {
                        arrived.insert(record.stream_seq, Instant::now());
                    }
                    _ => break,
                }
            }
            arrived
        });
        let payload = Bytes::from(vec![b'x'; ENTRY]);
        let mut sent = Vec::with_capacity(APPENDS);
        let mut acks = Vec::with_capacity(APPENDS);
        let mut last = 0;
        for i in 0..APPENDS {
            let expected = cas.then_some(last);
            let start = Instant::now();
            let appended =
                appender.append(&log, payload.clone(), &format!("p{round}:{i}"), expected).await?;
            acks.push(start.elapsed());
            sent.push((appended.stream_seq, start));
            last = appended.stream_seq;
        }
        let arrived = reader.await?;
        let mut feed_latency: Vec<Duration> = sent
            .iter()
            .filter_map(|(seq, start)| arrived.get(seq).map(|at| at.duration_since(*start)))
            .collect();
        let label = if cas { "with expected_last" } else { "plain" };
        println!(
            "{APPENDS} sequential appends of {ENTRY} B, {label}: append -> ack {}; append -> feed on \
             the other connection {} ({} of {APPENDS} arrived, {} repaired)",
            summary(&mut acks),
            summary(&mut feed_latency),
            feed_latency.len(),
            follower.gap_repairs(),
        );
    }
    Ok(())
}

fn summary(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:.0} µs, p99 {:.0} µs", micros(at(0.5)), micros(at(0.99)))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
