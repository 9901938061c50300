//! The result of a run: a serialisable summary, its table, and its JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::args::{Backend, LoadConfig};
use super::stats::{AddressChangeSummary, LatencySummary, OutageSummary, SecondSummary};
use crate::netsim::ProxyStats;
use crate::wire::Priority;

/// Everything a run measured. Fields that need a server pid are `null` without one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// `fanout`, `connections_only` or `startup`.
    pub mode: String,
    /// The server's address (the proxy's when `--netsim` is given).
    pub server_addr: String,
    /// The server's pid, when known.
    pub server_pid: Option<u32>,
    /// Members connected to each server after the connect phase, with several `--server`s.
    pub members_per_server: BTreeMap<String, u64>,
    /// Connections logged in and in their rooms.
    pub connections: u64,
    /// Members that could not connect, log in or enter their room (after retries).
    pub connect_failures: u64,
    /// Client UDP endpoints used.
    pub endpoints: u64,
    /// Connections (handshake and login) completed per second during the connect phase.
    pub handshakes_per_s: f64,
    /// Handshake and login time per connection, microseconds.
    pub connect_us: LatencySummary,
    /// Server resident memory added per connection (connections-only runs).
    pub server_rss_per_connection_bytes: Option<f64>,
    /// Send requests made.
    pub sent: u64,
    /// Sends acknowledged by the server.
    pub acked: u64,
    /// Sends still unanswered when the drain ended.
    pub unacked: u64,
    /// Sends the server or the connection refused.
    pub send_errors: u64,
    /// A few of the send errors.
    pub send_error_samples: Vec<String>,
    /// Sum over acknowledged sends of the room's members other than the publisher.
    pub expected_deliveries: u64,
    /// First deliveries, warm-up included.
    pub deliveries: u64,
    /// expected_deliveries - deliveries (0 when more arrived than were acknowledged).
    pub lost: u64,
    /// Deliveries of a message a member had already received.
    pub duplicates: u64,
    /// Deliveries of a message after a later one from the same publisher.
    pub out_of_order: u64,
    /// Room messages that were not this run's, or carried an impossible stamp.
    pub foreign_messages: u64,
    /// Messages a member received that it had published itself (Redis pub/sub has no "no
    /// echo"); not counted as deliveries.
    pub own_echoes: u64,
    /// Deliveries of messages intended within the measured window.
    pub measured_deliveries: u64,
    /// measured_deliveries / duration.
    pub deliveries_per_s: f64,
    /// Latency from the intended send time to arrival, measured window only, microseconds.
    pub latency_us: LatencySummary,
    /// How late the harness itself queued each send of the measured window after its intended
    /// time (timer slack, scheduling), microseconds; part of `latency_us`, shown so that the
    /// harness's share can be told apart from the server's.
    pub send_lag_us: LatencySummary,
    /// Server CPU seconds (user + system) during the measured window.
    pub server_cpu_s: Option<f64>,
    /// Server resident memory at the end of the measured window (connections-only: after
    /// connecting), bytes.
    pub server_rss_bytes: Option<u64>,
    /// Server peak resident memory, bytes.
    pub server_rss_peak_bytes: Option<u64>,
    /// Server CPU microseconds per measured delivery.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// This load generator's CPU seconds during the measured window.
    pub load_cpu_s: f64,
    /// This load generator's CPU seconds over the whole run.
    pub load_cpu_total_s: f64,
    /// Load generator CPU microseconds per measured delivery.
    pub load_cpu_us_per_delivery: Option<f64>,
    /// Connections lost during the run (each needed a reconnect): the client library's
    /// `Reconnecting` events, and `Disconnected` ones it did not try to recover from.
    pub reconnects: u64,
    /// Sessions that ended for good before the run did (`Disconnected`).
    pub disconnects: u64,
    /// Reconnects that resumed (`Resumed` events).
    pub resumed: u64,
    /// Messages the server replayed after resumptions (sum of the rooms' `replayed`).
    pub recovered_messages: u64,
    /// How delivery came back after each blackhole (`--netsim`, `--ipsim-schedule`).
    pub outages: Vec<OutageSummary>,
    /// How the members came back after each address change of the client side (`--netsim`
    /// rebind-at, `--ipsim-schedule`).
    pub address_changes: Vec<AddressChangeSummary>,
    /// Why connections were lost or ended, with counts.
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Host UDP receive-buffer drops during the run (/proc/net/snmp RcvbufErrors).
    pub udp_rcvbuf_errors: Option<u64>,
    /// Host UDP send-buffer drops during the run.
    pub udp_sndbuf_errors: Option<u64>,
    /// Host UDP receive errors during the run (all causes).
    pub udp_in_errors: Option<u64>,
    /// Datagrams the server's socket dropped in the kernel (/proc/net/udp; a local server only).
    pub server_socket_drops: Option<u64>,
    /// Datagrams the load generator's client sockets dropped in the kernel.
    pub client_socket_drops: Option<u64>,
    /// Datagrams the network simulator's listening socket dropped in the kernel.
    pub netsim_socket_drops: Option<u64>,
    /// Packets the client connections declared lost (QUIC loss detection, client side).
    pub client_lost_packets: u64,
    /// Packets the client connections sent.
    pub client_sent_packets: u64,
    /// Congestion events of the client connections (each declared loss episode).
    pub client_congestion_events: u64,
    /// Packets whose stream data the client connections sent again before any loss was declared
    /// (tail copies and probe data, quinn-proto patch 0008).
    pub client_tail_copies: u64,
    /// Largest smoothed RTT of a client connection at the end, microseconds.
    pub client_max_rtt_us: u64,
    /// The network simulator's counters, when one ran.
    pub netsim: Option<NetsimSummary>,
    /// The members that stopped reading (`--stalled-members`), when there were any. They are
    /// not in the counts and latencies above.
    pub stalled: Option<StalledSummary>,
    /// New members' start-up (`--startup`), when measured.
    pub startup: Option<StartupSummary>,
    /// Per second of arrival since the start of sending.
    pub timeline: Vec<SecondSummary>,
    /// Why this run counts as failed (empty: it passed).
    pub problems: Vec<String>,
    /// The configuration of the run.
    pub config: LoadConfig,
}

/// How long new members took from their start to their first message (`--startup`), in
/// microseconds from the start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StartupSummary {
    /// New members started.
    pub members: u64,
    /// Whether each first made a connection of its own and kept its session ticket
    /// (`--zero-rtt`).
    pub zero_rtt: bool,
    /// How often the member already in the room publishes, milliseconds.
    pub message_every_ms: u64,
    /// New members whose login the server took in 0-RTT (`None`: not a Huddle run).
    pub early_data: Option<u64>,
    /// To the login answered (Redis, NATS: connected, TLS and the protocol's handshake done).
    pub login_us: LatencySummary,
    /// To the room entered (Redis, NATS: subscribed).
    pub in_room_us: LatencySummary,
    /// To the first room message received.
    pub first_delivery_us: LatencySummary,
    /// Why new members failed.
    pub failures: Vec<String>,
}

/// How the members that stopped reading fared (`--stalled-members`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StalledSummary {
    /// Members that stopped reading.
    pub members: u64,
    /// When they stopped, seconds after the start of sending (the end of the warm-up).
    pub stopped_at_s: f64,
    /// Room messages they read before they stopped (not counted as deliveries).
    pub deliveries_before_stop: u64,
    /// Members whose connection the server closed as a slow consumer (7000) at least once.
    pub closed_slow_consumer: u64,
    /// Members whose connection was closed otherwise (and never as a slow consumer).
    pub closed_other: u64,
    /// Members still on their first connection at the end.
    pub never_closed: u64,
    /// Members back on a new connection after a close (at least once).
    pub reconnected: u64,
    /// Seconds from the stop to the first close of each closed member: the earliest.
    pub first_close_after_s: Option<f64>,
    /// The median.
    pub median_close_after_s: Option<f64>,
    /// The latest.
    pub last_close_after_s: Option<f64>,
    /// Closes by code and reason.
    pub close_reasons: BTreeMap<String, u64>,
}

/// The proxy's counters.
#[derive(Clone, Debug, Serialize)]
pub struct NetsimSummary {
    /// The spec as given.
    pub spec: String,
    /// Datagrams offered client to server.
    pub to_server_offered: u64,
    /// Dropped client to server (loss and blackholes).
    pub to_server_dropped: u64,
    /// Datagrams offered server to client.
    pub to_client_offered: u64,
    /// Dropped server to client (loss and blackholes).
    pub to_client_dropped: u64,
    /// Upstream rebinds done (per client address).
    pub rebinds: u64,
    /// Seconds from the proxy's start to the start of sending (blackholes count from the
    /// proxy's start).
    pub start_to_t0_s: f64,
}

impl NetsimSummary {
    /// From the proxy's counters.
    pub fn new(spec: &str, s: &ProxyStats, start_to_t0_s: f64) -> NetsimSummary {
        NetsimSummary {
            spec: spec.to_string(),
            to_server_offered: s.to_server.offered,
            to_server_dropped: s.to_server.lost
                + s.to_server.blackholed
                + s.to_server.queue_dropped,
            to_client_offered: s.to_client.offered,
            to_client_dropped: s.to_client.lost
                + s.to_client.blackholed
                + s.to_client.queue_dropped,
            rebinds: s.rebinds,
            start_to_t0_s,
        }
    }
}

impl Summary {
    /// Adds to `problems` from the counters: duplicates, reordering, send errors, connection
    /// failures, and loss unless the priority is low (best effort).
    pub fn judge(&mut self) {
        let mut p = Vec::new();
        if self.connect_failures > 0 {
            p.push(format!("{} members could not connect", self.connect_failures));
        }
        if self.mode == "fanout" {
            if self.duplicates > 0 {
                p.push(format!("{} duplicate deliveries", self.duplicates));
            }
            if self.out_of_order > 0 {
                p.push(format!("{} out-of-order deliveries", self.out_of_order));
            }
            if self.lost > 0 && self.config.priority != Priority::Low {
                p.push(format!("{} lost deliveries", self.lost));
            }
            if self.send_errors > 0 {
                p.push(format!("{} send errors", self.send_errors));
            }
            if self.expected_deliveries == 0 {
                p.push("nothing was delivered".to_string());
            }
        }
        if self.disconnects > 0 {
            p.push(format!("{} sessions ended before the run did", self.disconnects));
        }
        self.problems.extend(p);
    }

    /// 0 when the run had no problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.problems.is_empty())
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// A one-line description of the workload.
    pub fn headline(&self) -> String {
        let c = &self.config;
        if let Some(st) = &self.startup {
            return format!(
                "{} new members one after another{}, a message every {} ms in their room",
                c.startup,
                if c.zero_rtt { ", each with a session ticket kept (0-RTT)" } else { "" },
                st.message_every_ms
            );
        }
        if self.mode == "connections_only" {
            return format!(
                "{} rooms x {} members, idle connections held {} s",
                c.rooms, c.members, c.duration_s
            );
        }
        let in_rooms = if c.rooms_per_member > 1 {
            format!(" (each in {} rooms)", c.rooms_per_member)
        } else {
            String::new()
        };
        let flood = if c.low_flood > 0.0 {
            format!(", + {} low msg/s of {} B per publisher", c.low_flood, c.low_flood_size)
        } else {
            String::new()
        };
        format!(
            "{} room{} x {} members{in_rooms}, {} publisher{}/room, {} msg/s per room, {} B, {}{flood}, {} s warm-up + {} s",
            c.rooms,
            if c.rooms == 1 { "" } else { "s" },
            c.members,
            c.publishers_per_room,
            if c.publishers_per_room == 1 { "" } else { "s" },
            c.rate,
            c.body_size(),
            c.priority.name(),
            c.warmup_s,
            c.duration_s,
        )
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<18} {v}");
        };
        let _ = writeln!(t, "huddle load: {}", self.headline());
        row(
            &mut t,
            "server",
            format!(
                "{}{}{}",
                self.server_addr,
                self.server_pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                match self.config.backend {
                    Backend::Huddle => String::new(),
                    b => format!(
                        ", {} over TCP{}",
                        b.name(),
                        if self.config.plaintext { "" } else { " + TLS" }
                    ),
                }
            ),
        );
        if !self.members_per_server.is_empty() {
            let each: Vec<String> =
                self.members_per_server.iter().map(|(a, n)| format!("{a}: {n}")).collect();
            row(&mut t, "members per server", each.join(", "));
        }
        if self.startup.is_none() {
            row(
                &mut t,
                "connections",
                format!(
                    "{} ({} failed) over {} endpoints, {:.0} handshakes/s",
                    self.connections, self.connect_failures, self.endpoints, self.handshakes_per_s
                ),
            );
            row(
                &mut t,
                "connect+login",
                format!(
                    "p50 {}  p99 {}  max {}",
                    ms(self.connect_us.p50),
                    ms(self.connect_us.p99),
                    ms(self.connect_us.max)
                ),
            );
        }
        if let Some(st) = &self.startup {
            let fig = |l: &LatencySummary| format!("p50 {} max {}", ms(l.p50), ms(l.max));
            row(
                &mut t,
                "startup",
                format!(
                    "{} of {} new members: logged in {}, in the room {}, first message {}{}",
                    st.first_delivery_us.count,
                    st.members,
                    fig(&st.login_us),
                    fig(&st.in_room_us),
                    fig(&st.first_delivery_us),
                    st.early_data
                        .map(|n| format!("; 0-RTT login accepted {n} of {}", st.members))
                        .unwrap_or_default()
                ),
            );
        }
        if self.mode == "fanout" {
            row(
                &mut t,
                "sent / acked",
                format!(
                    "{} / {} ({} send errors, {} unacked)",
                    self.sent, self.acked, self.send_errors, self.unacked
                ),
            );
            row(
                &mut t,
                "deliveries",
                format!(
                    "{} of {} expected: {} lost, {} duplicates, {} out of order",
                    self.deliveries,
                    self.expected_deliveries,
                    self.lost,
                    self.duplicates,
                    self.out_of_order
                ),
            );
            row(
                &mut t,
                "throughput",
                format!("{:.0} deliveries/s in the measured window", self.deliveries_per_s),
            );
            let l = &self.latency_us;
            row(
                &mut t,
                "latency",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max),
                    l.count
                ),
            );
            let g = &self.send_lag_us;
            row(
                &mut t,
                "send lag",
                format!(
                    "p50 {}  p99 {}  max {}  (harness lateness, included in latency)",
                    ms(g.p50),
                    ms(g.p99),
                    ms(g.max)
                ),
            );
        }
        let server = match (self.server_cpu_s, self.server_rss_bytes) {
            (None, None) => "no pid: give --server-pid or --spawn-server".to_string(),
            (cpu, rss) => {
                let mut s = String::new();
                if let Some(cpu) = cpu {
                    let _ = write!(s, "CPU {cpu:.2} s");
                    if let Some(per) = self.server_cpu_us_per_delivery {
                        let _ = write!(s, " ({per:.2} us/delivery)");
                    }
                    s.push_str(", ");
                }
                if let Some(rss) = rss {
                    let _ = write!(s, "RSS {}", mb(rss));
                }
                if let Some(peak) = self.server_rss_peak_bytes {
                    let _ = write!(s, " (peak {})", mb(peak));
                }
                if let Some(per) = self.server_rss_per_connection_bytes {
                    let _ = write!(s, ", {:.1} KB per connection", per / 1024.0);
                }
                s
            }
        };
        row(&mut t, "server cost", server);
        row(
            &mut t,
            "load generator",
            format!(
                "CPU {:.2} s in the window{} ({:.2} s in all)",
                self.load_cpu_s,
                self.load_cpu_us_per_delivery
                    .map(|p| format!(", {p:.2} us/delivery"))
                    .unwrap_or_default(),
                self.load_cpu_total_s
            ),
        );
        row(
            &mut t,
            "udp (host)",
            format!(
                "RcvbufErrors {}  SndbufErrors {}  InErrors {}; client QUIC lost {} of {} packets, \
                 {} congestion events, {} copies",
                opt(self.udp_rcvbuf_errors),
                opt(self.udp_sndbuf_errors),
                opt(self.udp_in_errors),
                self.client_lost_packets,
                self.client_sent_packets,
                self.client_congestion_events,
                self.client_tail_copies
            ),
        );
        row(
            &mut t,
            "socket drops",
            format!(
                "server {}  clients {}{}",
                opt(self.server_socket_drops),
                opt(self.client_socket_drops),
                self.netsim_socket_drops
                    .map(|d| format!("  netsim listener {d}"))
                    .unwrap_or_default()
            ),
        );
        row(
            &mut t,
            "reconnects",
            format!(
                "{} (resumed {}, recovered messages {}, ended {}){}",
                self.reconnects,
                self.resumed,
                self.recovered_messages,
                self.disconnects,
                if self.disconnect_reasons.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", self.disconnect_reasons)
                }
            ),
        );
        if let Some(st) = &self.stalled {
            let after = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            row(
                &mut t,
                "stalled members",
                format!(
                    "{} stopped reading at {:.1} s (not counted above): {} closed as slow \
                     consumers, {} closed otherwise, {} never closed, {} reconnected; first \
                     closes {}/{}/{} s after the stop (first/median/last)",
                    st.members,
                    st.stopped_at_s,
                    st.closed_slow_consumer,
                    st.closed_other,
                    st.never_closed,
                    st.reconnected,
                    after(st.first_close_after_s),
                    after(st.median_close_after_s),
                    after(st.last_close_after_s),
                ),
            );
        }
        for o in &self.outages {
            let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0} ms"));
            row(
                &mut t,
                "blackhole",
                format!(
                    "{:.1}-{:.1} s: first delivery {} after its end, caught up {} after, {} \
                     deliveries of messages sent during it",
                    o.start_s,
                    o.start_s + o.duration_s,
                    ms(o.first_delivery_after_end_ms),
                    ms(o.caught_up_after_end_ms),
                    o.deliveries_of_messages_sent_during
                ),
            );
        }
        for c in &self.address_changes {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
            row(
                &mut t,
                "address change",
                format!(
                    "at {:.1} s: first new delivery p50 {} max {} after it ({} members; {} got none)",
                    c.at_s,
                    ms(c.first_delivery_p50_ms),
                    ms(c.first_delivery_max_ms),
                    c.members_delivered,
                    c.members_without
                ),
            );
        }
        if let Some(n) = &self.netsim {
            row(
                &mut t,
                "netsim",
                format!(
                    "{}: to server {} of {} dropped, to clients {} of {} dropped, {} rebinds",
                    n.spec,
                    n.to_server_dropped,
                    n.to_server_offered,
                    n.to_client_dropped,
                    n.to_client_offered,
                    n.rebinds
                ),
            );
        }
        let verdict = if self.problems.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        };
        row(&mut t, "result", verdict);
        t
    }
}

fn ms(us: u64) -> String {
    if us < 1000 {
        format!("{us} us")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
