//! `--startup N`: how long a member that starts takes to be logged in, to be in its room and to
//! receive its first message, the handshake cost a user sees when an app starts. One member is
//! already in the room and publishes a message every [`PEER_INTERVAL`]; then N new members
//! start one after the other, each on a connection (and a socket) of its own, and each is timed
//! from its start. Transport-free: the backend says how a member starts ([`Newcomer`]), so
//! Huddle (full handshake or 0-RTT), Redis and NATS are timed by the same code.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::args::LoadConfig;
use super::link::{Delivery, Inbox, Link};
use super::report::{StartupSummary, Summary};
use super::stats::{latency_histogram, record, LatencySummary};

/// How often the member already in the room publishes: up to this much of each first-delivery
/// figure is waiting for the next message.
pub const PEER_INTERVAL: Duration = Duration::from_millis(10);
/// How long one new member may take to start and receive its first message.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between two new members.
const TRIAL_PAUSE: Duration = Duration::from_millis(200);

/// A new member that has started: logged in and in its room.
pub struct Newcomer<L: Link> {
    /// Its connection.
    pub link: Arc<L>,
    /// Its deliveries.
    pub inbox: L::Inbox,
    /// When it started (before any packet was sent): what every figure counts from.
    pub started: Instant,
    /// From the start to the login answered (Huddle), the TLS and the protocol's handshake done
    /// (Redis `HELLO`, NATS `CONNECT`).
    pub login: Duration,
    /// Whether its login travelled in 0-RTT and the server took it (`None`: not applicable).
    pub early_data: Option<bool>,
}

/// Publishes to `room_id` through `peer` every [`PEER_INTERVAL`] and starts `cfg.startup` new
/// members one after the other with `start(i)`, which returns once member `i` is in the room;
/// records their figures in `summary.startup`.
pub async fn startup<L, F, Fut>(
    cfg: &LoadConfig,
    peer: Arc<L>,
    room_id: &str,
    mut start: F,
    summary: &mut Summary,
) where
    L: Link,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Newcomer<L>, String>>,
{
    let publisher = {
        let (peer, room, body) = (peer.clone(), room_id.to_string(), vec![0u8; cfg.body_size()]);
        let priority = cfg.priority;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PEER_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // Not awaited: a slow answer must not hold the next message back.
                tokio::spawn(peer.publish(&room, body.clone(), priority));
            }
        })
    };
    let (mut login, mut joined, mut first) =
        (latency_histogram(), latency_histogram(), latency_histogram());
    let mut out = StartupSummary {
        zero_rtt: cfg.zero_rtt,
        message_every_ms: PEER_INTERVAL.as_millis() as u64,
        ..StartupSummary::default()
    };
    for i in 0..cfg.startup {
        let trial = async {
            let mut n = start(i).await?;
            let in_room = n.started.elapsed();
            loop {
                match n.inbox.next().await {
                    Some(Delivery::Message { room, .. }) if room == room_id => break,
                    Some(Delivery::Lost(why)) => return Err(why),
                    Some(_) => {}
                    None => return Err("the connection ended".to_string()),
                }
            }
            Ok((n.started.elapsed(), in_room, n))
        };
        match tokio::time::timeout(TRIAL_TIMEOUT, trial).await {
            Ok(Ok((delivered, in_room, n))) => {
                record(&mut login, n.login.as_micros() as u64);
                record(&mut joined, in_room.as_micros() as u64);
                record(&mut first, delivered.as_micros() as u64);
                if let Some(early) = n.early_data {
                    *out.early_data.get_or_insert(0) += u64::from(early);
                }
                n.link.finish(summary);
            }
            Ok(Err(e)) => out.failures.push(format!("new member {i}: {e}")),
            Err(_) => out.failures.push(format!("new member {i}: timed out")),
        }
        tokio::time::sleep(TRIAL_PAUSE).await;
    }
    publisher.abort();
    out.members = cfg.startup as u64;
    out.login_us = LatencySummary::of(&login);
    out.in_room_us = LatencySummary::of(&joined);
    out.first_delivery_us = LatencySummary::of(&first);
    summary.connect_failures = out.failures.len() as u64;
    summary.startup = Some(out);
}
