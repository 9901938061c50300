//! Prometheus metrics: counters bumped where things happen, and gauges read at scrape time.
//!
//! The hot path stays cheap: every counter a connection or a delivery touches is resolved once
//! (a handle to one atomic) and bumped with a relaxed add, one add per broadcast rather than per
//! recipient. What is state rather than an event (rooms, members, sessions, queue depths, QUIC
//! path statistics) is read when Prometheus scrapes, by [`Scrape`], so it costs nothing between
//! scrapes.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::guard::GuardStats;
use super::outbox::OutboxStats;
use super::probe::FanoutProbe;
use crate::wire::Priority;

/// One label, as `(name, value)`.
type Label = [(&'static str, &'static str); 1];

fn latency_histogram() -> Histogram {
    // 10 µs to about 0.3 s, doubling.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
}

/// QUIC path statistics of connections that have ended, so that the totals stay monotonic
/// when a connection (and its live statistics) goes away.
#[derive(Debug, Default)]
pub(crate) struct EndedPaths {
    lost_packets: AtomicU64,
    sent_packets: AtomicU64,
    congestion_events: AtomicU64,
    tail_copies: AtomicU64,
    udp_tx_bytes: AtomicU64,
    udp_rx_bytes: AtomicU64,
}

/// Sums of QUIC statistics over a set of connections.
#[derive(Default)]
struct PathSums {
    lost_packets: u64,
    sent_packets: u64,
    congestion_events: u64,
    tail_copies: u64,
    udp_tx_bytes: u64,
    udp_rx_bytes: u64,
}

impl PathSums {
    fn add(&mut self, s: &quinn::ConnectionStats) {
        self.lost_packets += s.path.lost_packets;
        self.sent_packets += s.path.sent_packets;
        self.congestion_events += s.path.congestion_events;
        self.tail_copies += s.path.tail_copies;
        self.udp_tx_bytes += s.udp_tx.bytes;
        self.udp_rx_bytes += s.udp_rx.bytes;
    }
}

impl EndedPaths {
    /// Adds a connection's final statistics.
    pub(crate) fn add(&self, s: &quinn::ConnectionStats) {
        let r = Ordering::Relaxed;
        self.lost_packets.fetch_add(s.path.lost_packets, r);
        self.sent_packets.fetch_add(s.path.sent_packets, r);
        self.congestion_events.fetch_add(s.path.congestion_events, r);
        self.tail_copies.fetch_add(s.path.tail_copies, r);
        self.udp_tx_bytes.fetch_add(s.udp_tx.bytes, r);
        self.udp_rx_bytes.fetch_add(s.udp_rx.bytes, r);
    }

    fn sums(&self) -> PathSums {
        let r = Ordering::Relaxed;
        PathSums {
            lost_packets: self.lost_packets.load(r),
            sent_packets: self.sent_packets.load(r),
            congestion_events: self.congestion_events.load(r),
            tail_copies: self.tail_copies.load(r),
            udp_tx_bytes: self.udp_tx_bytes.load(r),
            udp_rx_bytes: self.udp_rx_bytes.load(r),
        }
    }
}

/// Every metric of a server, and the registry that renders them.
pub(crate) struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    pub connections_accepted: Counter,
    refused: Family<Label, Counter>,
    pub handshakes_ok: Counter,
    pub handshakes_failed: Counter,
    logins: Family<Label, Counter>,
    resumptions: Family<Label, Counter>,
    messages_in: [Counter; 3],
    deliveries: [Counter; 3],
    pub events_out: Counter,
    pub bytes_in: Counter,
    latency: Family<Label, Histogram, fn() -> Histogram>,
    fanout: Histogram,
    /// Room messages fanned out so far, for sampling [`Metrics::fanout_probe`].
    fanouts: AtomicU64,
    pub ended_paths: Arc<EndedPaths>,
}

/// One room message in this many has its fan-out timed (`huddle_fanout_seconds`).
const FANOUT_SAMPLE: u64 = 16;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refused {
    /// Over `max_connections`.
    Total,
    /// Over `max_connections_per_ip`.
    PerIp,
}

impl Metrics {
    /// The metrics of a server; `source` is read at scrape time.
    pub fn new(source: Weak<dyn ScrapeSource>) -> Metrics {
        let mut r = Registry::with_prefix("huddle");
        let connections_open = Gauge::default();
        r.register("connections_open", "QUIC connections being served", connections_open.clone());
        let connections_accepted = Counter::default();
        r.register(
            "connections_accepted",
            "Connections accepted under the caps (before their handshake)",
            connections_accepted.clone(),
        );
        let refused: Family<Label, Counter> = Family::default();
        r.register("connections_refused", "Connections refused, by reason", refused.clone());
        let handshakes: Family<Label, Counter> = Family::default();
        r.register("handshakes", "QUIC handshakes finished, by result", handshakes.clone());
        let logins: Family<Label, Counter> = Family::default();
        r.register("logins", "Logins, by result (ok, or the error name)", logins.clone());
        let resumptions: Family<Label, Counter> = Family::default();
        r.register(
            "resumptions",
            "Resume requests, by result (resumed, new_session, or the error name)",
            resumptions.clone(),
        );
        let mut by_priority = |name: &str, help: &str| -> [Counter; 3] {
            let family: Family<Label, Counter> = Family::default();
            r.register(name, help, family.clone());
            [Priority::Low, Priority::Medium, Priority::High]
                .map(|p| family.get_or_create(&[("priority", p.name())]).clone())
        };
        let messages_in = by_priority(
            "messages_received",
            "Room messages sent by clients (requests, refused ones included), by priority",
        );
        let deliveries = by_priority(
            "deliveries",
            "Room messages queued for a receiving connection, by priority",
        );
        let events_out = Counter::default();
        r.register(
            "events_sent",
            "Other frames queued on event streams: member, attribute and session events, replays",
            events_out.clone(),
        );
        let bytes_in = Counter::default();
        r.register(
            "received_bytes",
            "Frame bytes read from clients' control streams",
            bytes_in.clone(),
        );
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        r.register(
            "request_duration_seconds",
            "Time to handle a request or an admin operation (core lock wait included), by op",
            latency.clone(),
        );
        // 10 µs to about 0.36 s in steps of 25%: finer than the request latencies, since a
        // fan-out's length is what a tail-latency budget is spent on.
        let fanout = Histogram::new(exponential_buckets(0.000_01, 1.25, 48));
        r.register(
            "fanout_seconds",
            format!(
                "For one room message in {FANOUT_SAMPLE}: from the start of its fan-out to the \
                 last recipient's copy handed to QUIC"
            ),
            fanout.clone(),
        );
        let build: Family<Vec<(&'static str, &'static str)>, Gauge> = Family::default();
        r.register(
            "build_info",
            "The running build: version and git commit (always 1)",
            build.clone(),
        );
        build.get_or_create(&crate::build_labels()).set(1);
        let ended_paths = Arc::new(EndedPaths::default());
        r.register_collector(Box::new(Scrape { source, ended_paths: ended_paths.clone() }));
        // Series that a dashboard expects exist from the start, at zero.
        for reason in ["max_connections", "max_connections_per_ip"] {
            let _ = refused.get_or_create(&[("reason", reason)]);
        }
        let _ = logins.get_or_create(&[("result", "ok")]);
        for result in ["resumed", "new_session"] {
            let _ = resumptions.get_or_create(&[("result", result)]);
        }
        let handshakes_ok = handshakes.get_or_create(&[("result", "ok")]).clone();
        let handshakes_failed = handshakes.get_or_create(&[("result", "failed")]).clone();
        Metrics {
            registry: r,
            connections_open,
            connections_accepted,
            refused,
            handshakes_ok,
            handshakes_failed,
            logins,
            resumptions,
            messages_in,
            deliveries,
            events_out,
            bytes_in,
            latency,
            fanout,
            fanouts: AtomicU64::new(0),
            ended_paths,
        }
    }

    /// A probe for the fan-out of one room message in [`FANOUT_SAMPLE`], `None` for the others.
    pub fn fanout_probe(&self) -> Option<Arc<FanoutProbe>> {
        if self.fanouts.fetch_add(1, Ordering::Relaxed) % FANOUT_SAMPLE != 0 {
            return None;
        }
        Some(Arc::new(FanoutProbe::start(self.fanout.clone())))
    }

    /// Counts a refused connection.
    pub fn refused(&self, why: Refused) {
        let reason = match why {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        };
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a login or a resume by its result.
    pub fn login(&self, resume: bool, result: &'static str) {
        let family = if resume { &self.resumptions } else { &self.logins };
        family.get_or_create(&[("result", result)]).inc();
    }

    /// Counts a message request received from a client.
    pub fn message_in(&self, priority: Priority) {
        self.messages_in[priority as usize].inc();
    }

    /// Counts deliveries of one message to `n` connections.
    pub fn deliveries(&self, priority: Priority, n: u64) {
        self.deliveries[priority as usize].inc_by(n);
    }

    /// Records how long an operation took.
    pub fn observe(&self, op: &'static str, took: Duration) {
        self.latency.get_or_create(&[("op", op)]).observe(took.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# metrics could not be encoded");
        }
        out
    }
}

/// Rooms, members and sessions held by the core.
pub(crate) struct CoreCounts {
    pub rooms: usize,
    pub members: usize,
    pub sessions: usize,
    /// Bytes held by every room's history.
    pub history_bytes: usize,
}

/// One connection being served, as a scrape sees it.
pub(crate) struct ConnSample {
    /// Bytes and frames queued for it.
    pub queued_bytes: usize,
    pub queued_frames: usize,
    /// Its QUIC statistics.
    pub path: quinn::ConnectionStats,
}

/// What a scrape reads from the running server: state rather than events. The server's shared
/// state implements it, so that the metrics need not know the server's types.
pub(crate) trait ScrapeSource: Send + Sync {
    /// What the core holds.
    fn core_counts(&self) -> CoreCounts;
    /// Every connection being served.
    fn connections(&self) -> Vec<ConnSample>;
    /// The defences' counters.
    fn guard(&self) -> &GuardStats;
    /// The outbound queues' counters.
    fn outbox_stats(&self) -> &OutboxStats;
}

/// What is read at scrape time.
struct Scrape {
    source: Weak<dyn ScrapeSource>,
    ended_paths: Arc<EndedPaths>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

fn gauge<N>(e: &mut DescriptorEncoder, name: &str, help: &str, v: N) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, &format!("{help}."), None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, &format!("{help}."), None, c.metric_type())?)
}

/// A gauge with one label taking several values.
fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[Label],
    v: &[f64],
) -> fmt::Result {
    let help = format!("{help}.");
    let mut family = e.encode_descriptor(name, &help, None, ConstGauge::new(0.0).metric_type())?;
    for (labels, v) in values.iter().zip(v) {
        ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let Some(source) = self.source.upgrade() else { return Ok(()) };
        let CoreCounts { rooms, members, sessions, history_bytes } = source.core_counts();
        gauge(
            &mut e,
            "history_bytes",
            "Bytes held by every room's history (bounded by limits.history_max_total_bytes)",
            history_bytes as i64,
        )?;
        let connections = source.connections();
        gauge(
            &mut e,
            "rooms",
            "Rooms held, empty ones awaiting a delayed destroy included",
            rooms as i64,
        )?;
        gauge(
            &mut e,
            "members",
            "Room memberships (users in rooms, summed over rooms)",
            members as i64,
        )?;
        gauge(
            &mut e,
            "sessions",
            "Sessions, held ones awaiting resumption included",
            sessions as i64,
        )?;
        let (mut bytes, mut frames, mut max_bytes, mut max_frames) =
            (0usize, 0usize, 0usize, 0usize);
        let mut live = PathSums::default();
        let (mut rtt_sum, mut rtt_max) = (0.0f64, 0.0f64);
        for c in &connections {
            let (b, f) = (c.queued_bytes, c.queued_frames);
            bytes += b;
            frames += f;
            max_bytes = max_bytes.max(b);
            max_frames = max_frames.max(f);
            let stats = &c.path;
            live.add(stats);
            let rtt = stats.path.rtt.as_secs_f64();
            rtt_sum += rtt;
            rtt_max = rtt_max.max(rtt);
        }
        let stat = [[("stat", "sum")], [("stat", "max")]];
        gauges(
            &mut e,
            "outbound_queue_bytes",
            "Bytes queued for connections: in all, and the largest one connection has",
            &stat,
            &[bytes as f64, max_bytes as f64],
        )?;
        gauges(
            &mut e,
            "outbound_queue_frames",
            "Frames queued for connections: in all, and the most one connection has",
            &stat,
            &[frames as f64, max_frames as f64],
        )?;
        let mean = if connections.is_empty() { 0.0 } else { rtt_sum / connections.len() as f64 };
        gauges(
            &mut e,
            "quic_rtt_seconds",
            "Smoothed RTT over the connections being served: mean and max",
            &[[("stat", "mean")], [("stat", "max")]],
            &[mean, rtt_max],
        )?;
        let ended = self.ended_paths.sums();
        counter(
            &mut e,
            "quic_lost_packets",
            "Packets QUIC declared lost, all connections",
            ended.lost_packets + live.lost_packets,
        )?;
        counter(
            &mut e,
            "quic_sent_packets",
            "Packets QUIC sent, all connections",
            ended.sent_packets + live.sent_packets,
        )?;
        counter(
            &mut e,
            "quic_congestion_events",
            "QUIC congestion events, all connections",
            ended.congestion_events + live.congestion_events,
        )?;
        counter(
            &mut e,
            "quic_tail_copies",
            "Packets whose stream data QUIC sent again before any loss was declared (tail copies), all connections",
            ended.tail_copies + live.tail_copies,
        )?;
        counter(
            &mut e,
            "quic_udp_sent_bytes",
            "UDP payload bytes sent, all connections",
            ended.udp_tx_bytes + live.udp_tx_bytes,
        )?;
        counter(
            &mut e,
            "quic_udp_received_bytes",
            "UDP payload bytes received, all connections",
            ended.udp_rx_bytes + live.udp_rx_bytes,
        )?;
        let r = Ordering::Relaxed;
        let g = source.guard();
        counter(
            &mut e,
            "address_validation_retries",
            "New connections answered with a QUIC Retry under a handshake flood",
            g.retries.load(r),
        )?;
        counter(
            &mut e,
            "handshake_timeouts",
            "Handshakes abandoned at the handshake deadline",
            g.handshake_timeouts.load(r),
        )?;
        counter(&mut e, "misbehaving_clients", "Connections closed for what the client did (bad frames, failed logins, transport errors)", g.misbehaving.load(r))?;
        let s = source.outbox_stats();
        gauge(
            &mut e,
            "outbound_queue_peak_bytes",
            "The most bytes one connection has had queued since the start",
            s.peak_queued_bytes.load(r) as i64,
        )?;
        gauge(
            &mut e,
            "stream_opens_waiting",
            "Stream writers waiting for a client to allow one more unidirectional stream",
            s.waiting_for_stream.load(r) as i64,
        )?;
        counter(
            &mut e,
            "sent_bytes",
            "Frame bytes written to clients' streams",
            s.bytes_sent.load(r),
        )?;
        counter(
            &mut e,
            "low_datagrams",
            "Low-priority messages sent as QUIC datagrams instead of on a stream",
            s.datagrams_sent.load(r),
        )?;
        counter(
            &mut e,
            "slow_consumer_disconnects",
            "Connections closed as slow consumers (7000)",
            s.slow_consumers.load(r),
        )?;
        let mut drops = e.encode_descriptor(
            "dropped_frames",
            "Frames not delivered, by reason",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (reason, v) in [
            ("low_priority_backlog", s.dropped_low.load(r)),
            ("slow_consumer", s.dropped_slow.load(r)),
            ("connection_closing", s.dropped_closing.load(r)),
        ] {
            ConstCounter::new(v).encode(drops.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}
