//! A run's workload, the same for every backend: publish open loop, receive and check, drain,
//! count. The backend's driver ([`super::huddle`], `super::compare`) connects the members and
//! hands them over as `Member`s; this module reaches them only through [`Link`] and [`Inbox`].
//!
//! Open loop: publisher `p` sends message `k` at `t0 + phase_p + k / r` whatever happened before.
//! A send's request is queued on the control stream before the next one is built (the future is
//! polled once at once) and its ack is awaited alongside later sends, never before them. The
//! intended time travels in the message, and latency is arrival minus intended time on the same
//! monotonic clock, so a stall in the server or the harness shows up as latency (no coordinated
//! omission).
//!
//! `fanout` goes through its phases in order: the rooms' shape, the clock (t0), receivers
//! (`receive`), publishers and their schedule (`publish`), then following warm-up, measured
//! window and drain, and counting. `hold_connections` is the `--connections-only` workload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::time::Instant;

use super::args::LoadConfig;
use super::link::{Inbox, Link};
use super::report::Summary;
use super::server::{self, CLOCK_TICKS_PER_S};
use super::stats::{AddressChanges, Counters, LatencySummary, Outages, SharedLatency, Timeline};
use publish::{count_publishers, start_publishers, PublisherTask};
use receive::{count_stalled, start_receivers, stop_receivers, Received, SessionTally};

mod publish;
mod receive;

/// Seconds the drain goes on after the last expected delivery, for late duplicates.
const DUPLICATE_GRACE_S: f64 = 0.5;

/// A connected member.
pub(super) struct Member<L: Link> {
    /// Its connection, shared by its publisher and the end of the run.
    pub(super) link: Arc<L>,
    /// The receiving half, taken by its receiver task.
    pub(super) inbox: Option<L::Inbox>,
    /// Its own room, the one it publishes to when it is a publisher.
    pub(super) room: usize,
    pub(super) room_id: String,
    pub(super) index: usize,
    /// Every room it is in and receives from: its own first, then the extra ones
    /// (`--rooms-per-member`) it entered.
    pub(super) rooms: Vec<usize>,
}

/// A progress bar on stderr when `cfg` asks for progress and stderr is a terminal; hidden
/// otherwise.
pub(super) fn progress_bar(cfg: &LoadConfig, len: u64, template: &str) -> ProgressBar {
    if !cfg.progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Prints a phase line on stderr (kept above the progress bar when there is one).
pub(super) fn say(pb: &ProgressBar, cfg: &LoadConfig, msg: &str) {
    if !cfg.progress {
        return;
    }
    if pb.is_hidden() {
        eprintln!("{msg}");
    } else {
        pb.println(msg);
    }
}

/// `--connections-only`: measures the server's memory per idle connection, then holds them.
/// Returns the start of the hold.
pub(super) async fn hold_connections<L: Link>(
    cfg: &LoadConfig,
    members: &mut [Member<L>],
    server_pid: Option<u32>,
    rss_before: Option<u64>,
    summary: &mut Summary,
) -> Instant {
    // Let presence batches and stream setup settle before reading memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = server_pid.and_then(|p| server::rss_bytes(Some(p)));
    summary.server_rss_bytes = rss_after;
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        if !members.is_empty() {
            summary.server_rss_per_connection_bytes =
                Some((b as f64 - a as f64) / members.len() as f64);
        }
    }
    let t0 = Instant::now();
    let cpu0 = cpu_reading(server_pid);
    let deadline = t0 + Duration::from_secs_f64(cfg.duration_s);
    let mut tasks = Vec::with_capacity(members.len());
    for m in members.iter_mut() {
        let Some(mut inbox) = m.inbox.take() else { continue };
        tasks.push(tokio::spawn(async move {
            // Reads (and discards) presence events so that nothing backs up; notes lost
            // connections.
            let mut tally = SessionTally::default();
            while let Ok(Some(d)) = tokio::time::timeout_at(deadline, inbox.next()).await {
                tally.on(d);
            }
            tally
        }));
    }
    let pb = progress_bar(cfg, (cfg.duration_s * 1000.0) as u64, "{msg:10} {elapsed} [{wide_bar}]");
    pb.set_message("holding");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pb.set_position(t0.elapsed().as_millis() as u64);
    }
    pb.finish_and_clear();
    for t in tasks {
        if let Ok(tally) = t.await {
            tally.add_to(summary);
        }
    }
    if let (Some(a), Some(b)) = (cpu0.0, server_pid.and_then(|p| server::cpu_ticks(Some(p)))) {
        summary.server_cpu_s = Some(b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S);
    }
    if let (Some(a), Some(b)) = (cpu0.1, server::cpu_ticks(None)) {
        summary.load_cpu_s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
    }
    summary.server_rss_peak_bytes = server_pid.and_then(|p| server::rss_peak_bytes(Some(p)));
    t0
}

/// What the driver does to the network during the fan-out (Huddle's network simulator).
#[derive(Default)]
pub(super) struct Plan<'a> {
    /// Rebinds, seconds after t0.
    pub(super) rebind_at_s: &'a [f64],
    /// What makes a rebind happen; without it, the rebinds are skipped.
    pub(super) rebind: Option<Rebind<'a>>,
    /// The simulator's start and its blackholes (start, length) in milliseconds after it.
    pub(super) blackholes: Option<(Instant, Vec<(u64, u64)>)>,
    /// Address changes a link outside this process makes (`huddle ipsim`): its start, their
    /// times in milliseconds after it, and what reads this side's addresses. At each the
    /// members are told ([`Link::network_changed`]) once the addresses have changed.
    pub(super) link_rebinds: Option<(Instant, Vec<u64>, LocalAddrs)>,
}

/// Reads the local addresses (as text) of the network namespace the load runs in.
pub(super) type LocalAddrs = fn() -> Vec<String>;

/// What makes the simulator rebind every client to a new port.
pub(super) type Rebind<'a> = Box<dyn Fn() -> BoxFuture<'a, ()> + Send + Sync + 'a>;

/// The address changes [`follow`] goes through.
struct Changes<'a> {
    /// The simulator's rebinds, seconds after t0, and what makes them happen.
    rebind_at_s: &'a [f64],
    rebind: Option<Rebind<'a>>,
    /// An outside link's address changes, and what tells the members of one.
    link: Vec<Instant>,
    local_addrs: Option<LocalAddrs>,
    tell: Box<dyn Fn() + Send + Sync>,
}

/// CPU ticks of the server (when its pid is known) and of this process.
type CpuReading = (Option<u64>, Option<u64>);

fn cpu_reading(server_pid: Option<u32>) -> CpuReading {
    (server_pid.and_then(|p| server::cpu_ticks(Some(p))), server::cpu_ticks(None))
}

/// The fan-out workload. Returns t0, the start of sending.
pub(super) async fn fanout<L: Link>(
    cfg: &LoadConfig,
    members: &mut [Member<L>],
    server_pid: Option<u32>,
    plan: Plan<'_>,
    summary: &mut Summary,
) -> Instant {
    let Plan { rebind_at_s, rebind, blackholes, link_rebinds } = plan;
    let rooms = Rooms::of(cfg, members);
    // Presence events of the joins come first; let them pass before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let link_changes: Vec<Instant> = match &link_rebinds {
        Some((start, at, _)) => at.iter().map(|&ms| *start + Duration::from_millis(ms)).collect(),
        None => Vec::new(),
    };
    let local_addrs = link_rebinds.as_ref().map(|l| l.2);
    let run = Run::start(cfg, rooms.ids, blackholes, rebind_at_s, &link_changes);
    let links: Vec<Arc<L>> = members.iter().map(|m| m.link.clone()).collect();
    let tell = Box::new(move || L::networks_changed(&links));
    let changes = Changes { rebind_at_s, rebind, link: link_changes, local_addrs, tell };
    let (receivers, stalled) = start_receivers(cfg, members, &run);
    let (publishers, schedule) = start_publishers(cfg, members, &run, &rooms.size);
    if let Err(e) = &schedule {
        summary.problems.push(format!("the send schedule thread did not start: {e}"));
    }
    let window = follow(cfg, &run, server_pid, changes, &publishers, summary).await;
    drop(schedule);
    let (mut received, tasks) = stop_receivers(&run, receivers);
    let unacked = count_publishers(publishers, summary).await;
    if !stalled.is_empty() {
        summary.stalled = Some(count_stalled(cfg, stalled).await);
    }
    for h in tasks {
        received.extend(h.await.ok());
    }
    count(cfg, &run, received, unacked, summary);
    count_window_cpu(window, server_pid, summary);
    run.tally.t0
}

/// Who is in which room.
struct Rooms {
    /// Receivers per room: every member in it, extra joiners included, except those that stop
    /// reading (counted apart).
    size: Vec<u64>,
    /// Room ids by room index.
    ids: Vec<String>,
}

impl Rooms {
    fn of<L: Link>(cfg: &LoadConfig, members: &[Member<L>]) -> Rooms {
        let mut size = vec![0u64; cfg.rooms];
        for m in members.iter().filter(|m| !cfg.is_stalled(m.room, m.index)) {
            for &q in &m.rooms {
                size[q] += 1;
            }
        }
        let mut ids = vec![String::new(); cfg.rooms];
        for m in members {
            ids[m.room].clone_from(&m.room_id);
        }
        Rooms { size, ids }
    }
}

/// A fan-out's clock and what its tasks share, fixed before the first send.
struct Run {
    /// Each publisher's rate.
    rate_p: f64,
    /// Seconds of sending: warm-up and measured window.
    send_s: f64,
    /// Messages per publisher at most.
    max_k: u64,
    send_end: Instant,
    /// The end of the drain.
    deadline: Instant,
    errors: Arc<Mutex<Vec<String>>>,
    tally: Arc<Tally>,
    /// Set at the end of the drain: receivers and stalled members stop.
    stop: watch::Sender<bool>,
}

impl Run {
    /// Starts the clock: t0 is a moment from now.
    fn start(
        cfg: &LoadConfig,
        room_ids: Vec<String>,
        blackholes: Option<(Instant, Vec<(u64, u64)>)>,
        rebind_at_s: &[f64],
        link_changes: &[Instant],
    ) -> Run {
        let p = cfg.publishers_per_room;
        let rate_p = cfg.rate / p as f64;
        let send_s = cfg.warmup_s + cfg.duration_s;
        let seconds = (send_s + cfg.drain_s).ceil() as usize + 1;
        let t0 = Instant::now() + Duration::from_millis(50);
        let send_end = t0 + Duration::from_secs_f64(send_s);
        // Blackholes in nanoseconds after t0 (those over before it are left out).
        let outages = Outages::new(match blackholes {
            Some((started, windows)) => {
                let offset = t0.saturating_duration_since(started).as_nanos() as u64;
                windows
                    .iter()
                    .map(|&(s, d)| (s * 1_000_000, (s + d) * 1_000_000))
                    .filter(|&(_, end)| end > offset)
                    .map(|(start, end)| (start.saturating_sub(offset), end - offset))
                    .collect()
            }
            None => Vec::new(),
        });
        // Address changes in nanoseconds after t0 (those before it are left out).
        let mut changes: Vec<u64> = rebind_at_s.iter().map(|s| (s * 1e9) as u64).collect();
        changes.extend(
            link_changes
                .iter()
                .filter(|&&at| at >= t0)
                .map(|&at| at.duration_since(t0).as_nanos() as u64),
        );
        // Those after the last send have no new message to wait for: left out too.
        changes.retain(|&at| at < (send_s * 1e9) as u64);
        changes.sort_unstable();
        let tally = Arc::new(Tally {
            p,
            room_ids,
            t0,
            warmup_ns: (cfg.warmup_s * 1e9) as u64,
            window_end_ns: (send_s * 1e9) as u64,
            counters: Arc::new(Counters::default()),
            timeline: Timeline::new(seconds),
            latency: SharedLatency::new(),
            outages,
            changes: AddressChanges::new(changes),
        });
        Run {
            rate_p,
            send_s,
            max_k: (send_s * rate_p).ceil() as u64 + 1,
            send_end,
            deadline: send_end + Duration::from_secs_f64(cfg.drain_s),
            errors: Arc::new(Mutex::new(Vec::new())),
            tally,
            stop: watch::channel(false).0,
        }
    }

    fn counters(&self) -> &Counters {
        &self.tally.counters
    }
}

/// What every receiver of a run shares: the run's shape and clock, and where they count.
struct Tally {
    /// Publishers per room.
    p: usize,
    /// Room ids by room index.
    room_ids: Vec<String>,
    t0: Instant,
    /// The measured window, in nanoseconds after `t0`, by intended send time.
    warmup_ns: u64,
    window_end_ns: u64,
    counters: Arc<Counters>,
    timeline: Timeline,
    latency: SharedLatency,
    outages: Outages,
    changes: AddressChanges,
}

/// CPU readings at the measured window's start and end (when the run got there).
struct Window {
    start: Option<CpuReading>,
    end: Option<CpuReading>,
}

/// Follows the run through warm-up, measured window and drain: shows progress, rebinds through
/// the simulator at their times, tells the members of an outside link's address changes as
/// they happen, reads CPU at the window's edges and memory at its end. Returns
/// at the end of the drain, or earlier once every publisher is finished and every expected
/// delivery is in, after a short grace in which late duplicates would still be seen.
async fn follow(
    cfg: &LoadConfig,
    run: &Run,
    server_pid: Option<u32>,
    changes: Changes<'_>,
    publishers: &[PublisherTask],
    summary: &mut Summary,
) -> Window {
    let Changes { rebind_at_s, rebind, link, local_addrs, tell } = changes;
    let local_addrs = local_addrs.unwrap_or(Vec::new);
    let mut addrs = local_addrs();
    let mut link = link.into_iter().peekable();
    let (t0, counters) = (run.tally.t0, run.counters());
    let mut rebinds = rebind_at_s.to_vec();
    rebinds.sort_by(f64::total_cmp);
    let mut rebinds = rebinds.into_iter().peekable();

    let total_ms = ((run.send_s + cfg.drain_s) * 1000.0) as u64;
    let pb = progress_bar(cfg, total_ms, "{msg:9} {elapsed:>3} {prefix} [{wide_bar}]");
    pb.set_message("warm-up");
    let window_start = t0 + Duration::from_secs_f64(cfg.warmup_s);
    let mut window = Window { start: None, end: None };
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let grace = Duration::from_secs_f64(cfg.drain_s.min(DUPLICATE_GRACE_S));
    let mut complete_at = None;
    loop {
        // An outside link's address change is told at once, not at the next tick.
        let next_change = link.peek().copied();
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(next_change.unwrap_or(t0)), if next_change.is_some() => {}
        }
        let now = Instant::now();
        while link.next_if(|&at| at <= now).is_some() {
            addrs = address_changed(addrs, local_addrs).await;
            tell();
        }
        while let Some(at) = rebinds.peek() {
            if now < t0 + Duration::from_secs_f64(*at) {
                break;
            }
            rebinds.next();
            if let Some(rebind) = &rebind {
                rebind().await;
            }
        }
        if window.start.is_none() && now >= window_start {
            window.start = Some(cpu_reading(server_pid));
            pb.set_message("measuring");
        }
        if window.end.is_none() && now >= run.send_end {
            window.end = Some(cpu_reading(server_pid));
            summary.server_rss_bytes = server_pid.and_then(|p| server::rss_bytes(Some(p)));
            pb.set_message("draining");
        }
        let delivered = Counters::read(&counters.deliveries);
        if now.duration_since(last.0) >= Duration::from_millis(500) {
            let rate = (delivered - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            pb.set_prefix(format!(
                "sent {} acked {} delivered {delivered} ({rate:.0}/s)",
                Counters::read(&counters.sent),
                Counters::read(&counters.acked)
            ));
            last = (now, delivered);
        }
        pb.set_position(now.saturating_duration_since(t0).as_millis() as u64);
        if now >= run.deadline {
            break;
        }
        if complete_at.is_none()
            && now >= run.send_end
            && publishers.iter().all(|h| h.is_finished())
            && delivered >= Counters::read(&counters.expected)
        {
            complete_at = Some(now);
        }
        if complete_at.is_some_and(|c| now >= c + grace) {
            break;
        }
    }
    pb.finish_and_clear();
    window
}

/// Longest wait for an outside link's address change to show locally.
const ADDRESS_CHANGE_WAIT: Duration = Duration::from_secs(2);

/// Waits (up to [`ADDRESS_CHANGE_WAIT`]) for the local addresses to differ from `before`,
/// as a mobile OS tells its apps once the new address is up: a client told earlier would
/// reconnect from the old one. Returns the addresses now.
async fn address_changed(before: Vec<String>, local_addrs: LocalAddrs) -> Vec<String> {
    let deadline = Instant::now() + ADDRESS_CHANGE_WAIT;
    loop {
        let now = local_addrs();
        if now != before || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Adds up what the receivers and publishers counted.
fn count(cfg: &LoadConfig, run: &Run, received: Vec<Received>, unacked: u64, s: &mut Summary) {
    let receivers = received.iter().filter(|r| r.expects).count() as u64;
    for r in received {
        r.add_to(s);
    }
    let (counters, tally) = (run.counters(), &*run.tally);
    s.sent = Counters::read(&counters.sent);
    s.acked = Counters::read(&counters.acked);
    s.unacked = unacked;
    s.send_errors = Counters::read(&counters.send_errors);
    s.send_error_samples =
        std::mem::take(&mut *run.errors.lock().unwrap_or_else(|e| e.into_inner()));
    s.expected_deliveries = Counters::read(&counters.expected);
    s.lost = s.expected_deliveries.saturating_sub(s.deliveries);
    s.latency_us = LatencySummary::of(&tally.latency.total());
    s.deliveries_per_s = s.measured_deliveries as f64 / cfg.duration_s.max(1e-9);
    s.timeline = tally.timeline.summary();
    s.outages = tally.outages.summary();
    s.address_changes = tally.changes.summary(receivers);
}

/// The measured window's CPU, per delivery too, and the server's memory.
fn count_window_cpu(window: Window, server_pid: Option<u32>, summary: &mut Summary) {
    let end = window.end.unwrap_or_else(|| cpu_reading(server_pid));
    let start = window.start.unwrap_or(end);
    if let (Some(a), Some(b)) = (start.0, end.0) {
        let s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
        summary.server_cpu_s = Some(s);
        if summary.measured_deliveries > 0 {
            summary.server_cpu_us_per_delivery = Some(s * 1e6 / summary.measured_deliveries as f64);
        }
    }
    if let (Some(a), Some(b)) = (start.1, end.1) {
        summary.load_cpu_s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
        if summary.measured_deliveries > 0 {
            summary.load_cpu_us_per_delivery =
                Some(summary.load_cpu_s * 1e6 / summary.measured_deliveries as f64);
        }
    }
    summary.server_rss_peak_bytes = server_pid.and_then(|p| server::rss_peak_bytes(Some(p)));
    if summary.server_rss_bytes.is_none() {
        summary.server_rss_bytes = server_pid.and_then(|p| server::rss_bytes(Some(p)));
    }
}
