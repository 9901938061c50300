//! The publishing side of a fan-out: each publisher sends open loop at the times the schedule
//! thread wakes it, and counts acks and send errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Member, Run};
use crate::load::args::LoadConfig;
use crate::load::link::Link;
use crate::load::report::Summary;
use crate::load::schedule::{Schedule, Slot, Tick};
use crate::load::stats::{encode_body, latency_histogram, record, Counters, LatencySummary, Stamp};
use crate::wire::Priority;

/// Send errors kept as samples.
const ERROR_SAMPLES: usize = 5;

/// A publisher's task: acks that never came, and how late each send left.
pub(super) type PublisherTask = JoinHandle<(u64, Histogram<u64>)>;

/// Starts the publishers, the first `p` members of each room, each with a seeded random phase,
/// and the schedule thread that wakes them at their intended times. If the thread cannot start,
/// the publishers' channels close and nothing is sent.
pub(super) fn start_publishers<L: Link>(
    cfg: &LoadConfig,
    members: &[Member<L>],
    run: &Run,
    room_size: &[u64],
) -> (Vec<PublisherTask>, std::io::Result<Schedule>) {
    let p = run.tally.p;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut publishers = Vec::new();
    let mut slots = Vec::new();
    for m in members.iter().filter(|m| m.index < p) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        slots.push(Slot {
            phase_s: rng.gen_range(0.0..1.0) / run.rate_p,
            rate: run.rate_p,
            ticks: tx,
        });
        let job = Publisher {
            link: m.link.clone(),
            room_id: m.room_id.clone(),
            publisher: (m.room * p + m.index) as u32,
            size: cfg.body_size(),
            priority: cfg.priority,
            recipients: room_size[m.room].saturating_sub(1),
            t0: run.tally.t0,
            warmup_ns: run.tally.warmup_ns,
            deadline: run.deadline,
            counters: run.tally.counters.clone(),
            errors: run.errors.clone(),
        };
        publishers.push(tokio::spawn(job.run(rx)));
        if cfg.low_flood > 0.0 {
            let end = run.tally.t0 + Duration::from_secs_f64(run.send_s);
            let room_id = m.room_id.clone();
            let (rate, size) = (cfg.low_flood, cfg.low_flood_size);
            tokio::spawn(flood(m.link.clone(), room_id, (rate, size), run.tally.t0, end));
        }
    }
    let schedule = Schedule::start(run.tally.t0.into_std(), run.send_s, slots);
    (publishers, schedule)
}

/// `--low-flood`: low-priority messages of `size` bytes to `room_id` at `rate` a second from
/// `t0` to `end`, beside the publisher's own. Their bodies carry no stamp of this run (receivers count
/// them as foreign); each send is left to itself, so a slow answer never holds the next back.
async fn flood<L: Link>(
    link: Arc<L>,
    room_id: String,
    (rate, size): (f64, usize),
    t0: Instant,
    end: Instant,
) {
    let body = encode_body(Stamp { intended_ns: 0, publisher: u32::MAX, k: 0 }, size);
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval_at(t0, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick.tick().await < end {
        tokio::spawn(link.publish(&room_id, body.clone(), Priority::Low));
    }
}

/// Awaits the publishers (each waits for its last acks until the drain deadline): adds how late
/// sends left to `summary` and returns the sends never acked.
pub(super) async fn count_publishers(publishers: Vec<PublisherTask>, summary: &mut Summary) -> u64 {
    let mut unacked = 0;
    let mut lag = latency_histogram();
    for h in publishers {
        if let Ok((n, l)) = h.await {
            unacked += n;
            let _ = lag.add(&l);
        }
    }
    summary.send_lag_us = LatencySummary::of(&lag);
    unacked
}

/// One publisher's open-loop send schedule.
struct Publisher<L: Link> {
    link: Arc<L>,
    room_id: String,
    publisher: u32,
    size: usize,
    priority: Priority,
    recipients: u64,
    t0: Instant,
    warmup_ns: u64,
    deadline: Instant,
    counters: Arc<Counters>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl<L: Link> Publisher<L> {
    /// Sends until the end of the measured window, then waits (until the drain deadline) for
    /// the acks still in flight. Returns how many never came, and how late each send left.
    async fn run(self, mut ticks: UnboundedReceiver<Tick>) -> (u64, Histogram<u64>) {
        let mut inflight = FuturesUnordered::new();
        let mut lag = latency_histogram();
        loop {
            // Sends first; acks are handled while waiting for the next tick.
            let tick = tokio::select! {
                biased;
                t = ticks.recv() => match t {
                    Some(t) => t,
                    None => break,
                },
                Some(r) = inflight.next(), if !inflight.is_empty() => {
                    self.acked(r);
                    continue;
                }
            };
            let at = self.t0 + Duration::from_nanos(tick.intended_ns);
            if tick.intended_ns >= self.warmup_ns {
                record(&mut lag, Instant::now().saturating_duration_since(at).as_micros() as u64);
            }
            let stamp =
                Stamp { intended_ns: tick.intended_ns, publisher: self.publisher, k: tick.k };
            let body = encode_body(stamp, self.size);
            let mut send = Box::pin(self.link.publish(&self.room_id, body, self.priority));
            Counters::add(&self.counters.sent, 1);
            // The first poll queues the request on the control stream, so sends leave in order.
            match futures::poll!(send.as_mut()) {
                std::task::Poll::Ready(r) => self.acked(r),
                std::task::Poll::Pending => inflight.push(send),
            }
        }
        let drain = async {
            while let Some(r) = inflight.next().await {
                self.acked(r);
            }
        };
        let _ = tokio::time::timeout_at(self.deadline, drain).await;
        (inflight.len() as u64, lag)
    }

    fn acked(&self, r: Result<(), String>) {
        match r {
            Ok(_) => {
                Counters::add(&self.counters.acked, 1);
                Counters::add(&self.counters.expected, self.recipients);
            }
            Err(e) => {
                Counters::add(&self.counters.send_errors, 1);
                let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.len() < ERROR_SAMPLES {
                    errors.push(e);
                }
            }
        }
    }
}
