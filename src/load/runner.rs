//! A run: connect the members, publish open loop, receive and check, then count.
//!
//! Open loop: publisher `p` sends message `k` at `t0 + phase_p + k / r` whatever happened before.
//! A send's request is queued on the control stream before the next one is built (the future is
//! polled once at once) and its ack is awaited alongside later sends, never before them. The
//! intended time travels in the message, and latency is arrival minus intended time on the same
//! monotonic clock, so a stall in the server or the harness shows up as latency (no coordinated
//! omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::time::Instant;

use super::args::{Backend, LoadConfig, Trust};
use super::link::{Delivery, DirectFn, HuddleInbox, Inbox, Link, Tap};
use super::report::{NetsimSummary, StalledSummary, Summary};
use super::schedule::{Schedule, Slot, Tick};
use super::server::{self, SpawnedServer, CLOCK_TICKS_PER_S};
use super::stats::{
    decode_body, encode_body, latency_histogram, record, Counters, LatencySummary, OrderCheck,
    Outages, SharedLatency, Stamp, Timeline, Verdict,
};
use crate::auth::KeySet;
use crate::certs;
use crate::client::{Client, ClientConfig, ClientEvent};
use crate::netsim::{parse_spec, Proxy, ProxyConfig};
use crate::wire::{ErrorCode, Priority, RoomConfig, RoomInfo};

/// Attempts to connect, log in and enter the room, per member.
const CONNECT_ATTEMPTS: u32 = 3;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Token lifetime: longer than any bounded run.
const TOKEN_TTL_S: u64 = 2 * 3600;
/// Seconds the drain goes on after the last expected delivery, for late duplicates.
const DUPLICATE_GRACE_S: f64 = 0.5;
/// Send errors kept as samples.
const ERROR_SAMPLES: usize = 5;

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

/// A member connected and logged in: its client, the tap its events go to (unless they go to the
/// client's queue), its room and its index in the room.
type Connected = (Client, Option<Arc<Tap>>, usize, usize);

/// What one receiver counted.
struct Received {
    deliveries: u64,
    measured: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    echoes: u64,
    sessions: SessionTally,
}

/// What a member's session went through: lost connections, resumptions, replayed messages.
#[derive(Debug, Default)]
struct SessionTally {
    reconnects: u64,
    resumed: u64,
    recovered: u64,
    ended: u64,
    reasons: BTreeMap<String, u64>,
    reconnecting: bool,
}

impl SessionTally {
    /// Notes a session event (room messages are the receiver's).
    fn on_event(&mut self, e: ClientEvent) {
        match e {
            ClientEvent::Reconnecting { reason } => {
                self.reconnects += 1;
                self.reconnecting = true;
                self.count("lost: ", &reason);
            }
            ClientEvent::Resumed { rooms, .. } => {
                self.resumed += 1;
                self.reconnecting = false;
                self.recovered += rooms.iter().map(|r| u64::from(r.replayed)).sum::<u64>();
            }
            ClientEvent::Disconnected { code, reason } => {
                // A loss the library did not try to recover from still needed a reconnect.
                if !self.reconnecting {
                    self.reconnects += 1;
                }
                self.ended += 1;
                self.count(&format!("ended ({code:?}): "), &reason);
            }
            _ => {}
        }
    }

    /// Notes a connection lost for good (Redis, NATS: no resumption).
    fn on_lost(&mut self, reason: String) {
        self.reconnects += 1;
        self.ended += 1;
        self.count("lost: ", &reason);
    }

    /// Counts a reason with its numbers taken out ("stalled: no data for N ms"), so that a
    /// thousand stalls are one line of the report, not a thousand.
    fn count(&mut self, prefix: &str, reason: &str) {
        let mut key = prefix.to_string();
        let mut digits = false;
        for c in reason.chars() {
            if !c.is_ascii_digit() {
                key.push(c);
            } else if !digits {
                key.push('N');
            }
            digits = c.is_ascii_digit();
        }
        *self.reasons.entry(key).or_default() += 1;
    }

    fn add_to(self, s: &mut Summary) {
        s.reconnects += self.reconnects;
        s.resumed += self.resumed;
        s.recovered_messages += self.recovered;
        s.disconnects += self.ended;
        for (k, v) in self.reasons {
            *s.disconnect_reasons.entry(k).or_default() += v;
        }
    }
}

/// Runs the load described by `cfg` and returns its summary; writes the JSON summary and the
/// plot when `cfg` asks for them.
pub async fn run_with(cfg: LoadConfig) -> Result<Summary> {
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
        spawned = Some(s);
    }
    let result = match cfg.backend {
        Backend::Huddle => {
            let trust = match &cfg.trust {
                Some(t) => t.clone(),
                None => read_trust(&certs_dir)?,
            };
            drive(&cfg, server_addr, server_pid, &trust).await
        }
        #[cfg(feature = "compare")]
        Backend::Redis | Backend::Nats => {
            super::compare::drive(&cfg, server_addr, server_pid).await
        }
        #[cfg(not(feature = "compare"))]
        Backend::Redis | Backend::Nats => Err(anyhow!("built without the `compare` feature")),
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
            super::plot::draw(&summary, path)?;
        }
    }
    Ok(summary)
}

fn read_trust(dir: &std::path::Path) -> Result<Trust> {
    let ca = certs::load_certs(&dir.join(certs::CA_FILE))
        .with_context(|| format!("the CA to trust, in {}", dir.display()))?
        .remove(0);
    let secret = certs::read_token_secret(&dir.join(certs::TOKEN_SECRET_FILE))?;
    let mut keys = KeySet::new();
    keys.insert(certs::DEV_KEY_ID, &secret);
    Ok(Trust { ca, keys, key_id: certs::DEV_KEY_ID.to_string() })
}

fn progress_bar(cfg: &LoadConfig, len: u64, template: &str) -> ProgressBar {
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
fn say(pb: &ProgressBar, cfg: &LoadConfig, msg: &str) {
    if !cfg.progress {
        return;
    }
    if pb.is_hidden() {
        eprintln!("{msg}");
    } else {
        pb.println(msg);
    }
}

async fn drive(
    cfg: &LoadConfig,
    server_addr: SocketAddr,
    server_pid: Option<u32>,
    trust: &Trust,
) -> Result<Summary> {
    let run_start_cpu = server::cpu_ticks(None);
    let udp_before = server::udp_counters();
    let server_drops_before = server::udp_socket_drops().get(&server_addr.port()).copied();
    let rss_before = server_pid.and_then(|p| server::rss_bytes(Some(p)));

    // The network simulator, if asked for, sits between every member and the server.
    let mut proxy = None;
    let mut rebind_at_s = Vec::new();
    let mut connect_addr = server_addr;
    let mut blackholes_ms = Vec::new();
    if let Some(spec) = &cfg.netsim {
        let (imp, rest) = parse_spec(spec).map_err(|e| anyhow!("--netsim: {e}"))?;
        blackholes_ms.clone_from(&imp.blackholes);
        for (k, v) in rest {
            match k.as_str() {
                "rebind-at" => rebind_at_s.push(
                    v.parse::<f64>().map_err(|_| anyhow!("--netsim rebind-at={v}: not seconds"))?,
                ),
                _ => return Err(anyhow!("--netsim: unknown key {k:?}")),
            }
        }
        let listen = if server_addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
        let p = Proxy::start(ProxyConfig {
            listen: listen.parse().expect("constant address parses"),
            upstream: server_addr,
            to_server: imp.clone(),
            to_client: imp,
            seed: cfg.seed,
            rebind_at_ms: Vec::new(),
        })
        .await
        .context("starting the network simulator")?;
        connect_addr = p.local_addr();
        proxy = Some((p, Instant::now()));
    }

    // Client endpoints, each its own socket with large buffers: many connections behind one
    // small default buffer lose datagrams in the kernel (RcvbufErrors).
    let n = cfg.connections();
    let endpoints = n.div_ceil(cfg.connections_per_endpoint);
    let bind: SocketAddr = if connect_addr.ip().is_loopback() {
        if connect_addr.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
    } else if connect_addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .expect("constant address parses");
    let mut eps = Vec::with_capacity(endpoints);
    for _ in 0..endpoints {
        let socket = std::net::UdpSocket::bind(bind).context("binding a client socket")?;
        crate::udp::set_socket_buffers(&socket, cfg.socket_buffer_bytes);
        let ep = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        eps.push(ep);
    }

    // Names unique to this run, so runs against one long-lived server do not collide.
    let nonce: u32 = rand::random();
    let room_id = |r: usize| format!("load-{nonce:08x}-{r}");
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();

    // Connect and log in (timed: handshakes/s, connect time), then enter the rooms.
    let pb = progress_bar(cfg, n as u64, "{msg:10} {pos}/{len} {elapsed} [{wide_bar}]");
    pb.set_message("connecting");
    say(&pb, cfg, &format!("connecting {n} members over {endpoints} endpoints to {connect_addr}"));
    let connect_start = Instant::now();
    let mut connect_hist = latency_histogram();
    let mut clients: Vec<Option<Connected>> = Vec::with_capacity(n);
    let mut failures: Vec<String> = Vec::new();
    {
        let mut connects = futures::stream::iter(0..n)
            .map(|i| {
                let (r, j) = (i / cfg.members, i % cfg.members);
                let user = format!("ld{nonce:08x}r{r}m{j}");
                let token = trust.keys.mint(
                    &trust.key_id,
                    &user,
                    now_s.saturating_sub(60),
                    now_s + TOKEN_TTL_S,
                );
                let mut cc = ClientConfig::new(connect_addr, &user, token.as_deref().unwrap_or(""));
                cc.roots = vec![trust.ca.clone()];
                cc.bbr = cfg.client_bbr;
                cc.stall_timeout = Duration::from_millis(cfg.client_stall_timeout_ms);
                cc.zero_rtt = cfg.client_zero_rtt;
                if cfg.is_stalled(r, j) {
                    cc.event_queue = cfg.stalled_event_queue.unwrap_or(cc.event_queue);
                    cc.stream_receive_window =
                        cfg.stalled_stream_window.unwrap_or(cc.stream_receive_window);
                }
                let ep = eps[i % endpoints].clone();
                // A member that stops reading needs the client's queue (it fills, and flow
                // control pushes back); an idle one reads through it too. The others' events
                // go straight to their receiver's checks from the client's reader tasks.
                let listen = !cfg.connections_only && !cfg.is_stalled(r, j);
                async move {
                    let started = Instant::now();
                    let mut last = String::new();
                    for _ in 0..CONNECT_ATTEMPTS {
                        let tap = listen.then(|| Arc::new(Tap::default()));
                        let (ep, cc) = (ep.clone(), cc.clone());
                        let c = async {
                            match &tap {
                                Some(tap) => {
                                    Client::connect_with_listener(ep, cc, tap.listener()).await
                                }
                                None => Client::connect_on(ep, cc).await,
                            }
                        };
                        match tokio::time::timeout(CONNECT_TIMEOUT, c).await {
                            Ok(Ok(client)) => {
                                return (i, r, j, Ok((client, tap, started.elapsed())))
                            }
                            Ok(Err(e)) => last = e.to_string(),
                            Err(_) => last = "timed out".into(),
                        }
                    }
                    (i, r, j, Err(last))
                }
            })
            .buffer_unordered(cfg.connect_concurrency);
        clients.resize_with(n, || None);
        while let Some((i, r, j, res)) = connects.next().await {
            match res {
                Ok((client, tap, took)) => {
                    record(&mut connect_hist, took.as_micros() as u64);
                    clients[i] = Some((client, tap, r, j));
                }
                Err(e) => failures.push(format!("member {r}/{j}: {e}")),
            }
            pb.inc(1);
        }
    }
    let connect_elapsed = connect_start.elapsed().as_secs_f64();
    let connected = clients.iter().filter(|c| c.is_some()).count();
    let handshakes_per_s = connected as f64 / connect_elapsed.max(1e-9);
    pb.finish_and_clear();

    let pb = progress_bar(cfg, connected as u64, "{msg:10} {pos}/{len} {elapsed} [{wide_bar}]");
    pb.set_message("joining");
    let mut members: Vec<Member<Client>> = Vec::with_capacity(connected);
    {
        // Its own room first, then the next `rooms_per_member - 1` (distinct: K <= rooms).
        let k = cfg.rooms_per_member;
        let mut joins = futures::stream::iter(clients.into_iter().flatten())
            .map(|(client, tap, r, j)| {
                let room_id = &room_id;
                async move {
                    let mut joined = Vec::with_capacity(k);
                    let mut errors = Vec::new();
                    for q in (0..k).map(|d| (r + d) % cfg.rooms) {
                        let info =
                            RoomInfo { room_id: room_id(q), room_name: format!("load room {q}") };
                        let res = tokio::time::timeout(
                            CONNECT_TIMEOUT,
                            client.enter_room(info, RoomConfig::default()),
                        )
                        .await;
                        let what =
                            if q == r { "its room".to_string() } else { format!("room {q}") };
                        match res {
                            Ok(Ok(_)) => joined.push(q),
                            Ok(Err(e)) => {
                                errors.push(format!("member {r}/{j} entering {what}: {e}"))
                            }
                            Err(_) => {
                                errors.push(format!("member {r}/{j} entering {what}: timed out"))
                            }
                        }
                        if joined.is_empty() {
                            // Without its own room it is not a member of the run.
                            break;
                        }
                    }
                    (client, tap, r, j, joined, errors)
                }
            })
            .buffer_unordered(cfg.connect_concurrency);
        while let Some((client, tap, r, j, rooms, errors)) = joins.next().await {
            failures.extend(errors);
            if !rooms.is_empty() {
                let client = Arc::new(client);
                let inbox = match tap {
                    Some(tap) => HuddleInbox::Tap(tap),
                    None => HuddleInbox::Queue(client.clone()),
                };
                members.push(Member {
                    inbox: Some(inbox),
                    link: client,
                    room: r,
                    room_id: room_id(r),
                    index: j,
                    rooms,
                });
            }
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    members.sort_by_key(|m| (m.room, m.index));
    for f in failures.iter().take(5) {
        say(&pb, cfg, f);
    }
    say(
        &pb,
        cfg,
        &format!(
            "{} members connected in {connect_elapsed:.2} s ({handshakes_per_s:.0} handshakes/s)",
            members.len()
        ),
    );

    let mut summary = Summary {
        mode: if cfg.connections_only { "connections_only" } else { "fanout" }.to_string(),
        server_addr: connect_addr.to_string(),
        server_pid,
        connections: members.len() as u64,
        connect_failures: failures.len() as u64,
        endpoints: endpoints as u64,
        handshakes_per_s,
        connect_us: LatencySummary::of(&connect_hist),
        config: cfg.clone(),
        ..Summary::default()
    };

    let t0 = if cfg.connections_only {
        hold_connections(cfg, &members, server_pid, rss_before, &mut summary).await
    } else {
        let plan = Plan {
            rebind_at_s: &rebind_at_s,
            proxy: proxy.as_ref().map(|p| &p.0),
            blackholes: proxy.as_ref().map(|p| (p.1, blackholes_ms.clone())),
        };
        fanout(cfg, &mut members, server_pid, plan, &mut summary).await
    };

    // Per-socket kernel drops (the client sockets are this run's, so their counters are this
    // run's), then client-side transport counters, then close everything.
    let drops = server::udp_socket_drops();
    if server_addr.ip().is_loopback() {
        // An external server's counter runs from its start: count this run's part.
        summary.server_socket_drops = drops
            .get(&server_addr.port())
            .map(|d| d.saturating_sub(server_drops_before.unwrap_or(0)));
    }
    let client_ports: Vec<u16> =
        eps.iter().filter_map(|e| e.local_addr().ok()).map(|a| a.port()).collect();
    summary.client_socket_drops =
        Some(client_ports.iter().filter_map(|p| drops.get(p)).sum::<u64>());
    if proxy.is_some() {
        summary.netsim_socket_drops = drops.get(&connect_addr.port()).copied();
    }
    for m in &members {
        m.link.finish(&mut summary);
    }
    let idle = futures::future::join_all(eps.iter().map(|e| e.wait_idle()));
    let _ = tokio::time::timeout(Duration::from_secs(2), idle).await;
    drop(members);

    if let Some((p, started)) = proxy {
        let start_to_t0 = t0.saturating_duration_since(started).as_secs_f64();
        let stats = p.stop().await;
        summary.netsim =
            Some(NetsimSummary::new(cfg.netsim.as_deref().unwrap_or(""), &stats, start_to_t0));
    }
    if let (Some(a), Some(b)) = (udp_before, server::udp_counters()) {
        summary.udp_rcvbuf_errors = Some(b.rcvbuf_errors.saturating_sub(a.rcvbuf_errors));
        summary.udp_sndbuf_errors = Some(b.sndbuf_errors.saturating_sub(a.sndbuf_errors));
        summary.udp_in_errors = Some(b.in_errors.saturating_sub(a.in_errors));
    }
    if let (Some(a), Some(b)) = (run_start_cpu, server::cpu_ticks(None)) {
        summary.load_cpu_total_s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
    }
    Ok(summary)
}

/// `--connections-only`: measures the server's memory per idle connection, then holds them.
/// Returns the start of the hold.
async fn hold_connections(
    cfg: &LoadConfig,
    members: &[Member<Client>],
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
    let cpu0 = (server_pid.and_then(|p| server::cpu_ticks(Some(p))), server::cpu_ticks(None));
    let deadline = t0 + Duration::from_secs_f64(cfg.duration_s);
    let mut tasks = Vec::with_capacity(members.len());
    for m in members {
        let client = m.link.clone();
        tasks.push(tokio::spawn(async move {
            // Reads (and discards) presence events so that nothing backs up; notes lost
            // connections.
            let mut tally = SessionTally::default();
            while let Ok(Some(e)) = tokio::time::timeout_at(deadline, client.next_event()).await {
                tally.on_event(e);
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

/// What the network simulator does during the fan-out.
#[derive(Default)]
pub(super) struct Plan<'a> {
    /// Rebinds, seconds after t0.
    rebind_at_s: &'a [f64],
    proxy: Option<&'a Proxy>,
    /// The proxy's start and its blackholes (start, length) in milliseconds after it.
    blackholes: Option<(Instant, Vec<(u64, u64)>)>,
}

/// The fan-out workload. Returns t0, the start of sending.
pub(super) async fn fanout<L: Link>(
    cfg: &LoadConfig,
    members: &mut [Member<L>],
    server_pid: Option<u32>,
    plan: Plan<'_>,
    summary: &mut Summary,
) -> Instant {
    let Plan { rebind_at_s, proxy, blackholes } = plan;
    let p = cfg.publishers_per_room;
    let rate_p = cfg.rate / p as f64;
    let send_s = cfg.warmup_s + cfg.duration_s;
    let max_k = (send_s * rate_p).ceil() as u64 + 1;
    // Every member in a room, extra joiners included, receives its messages; those that stop
    // reading are counted apart.
    let mut room_size = vec![0u64; cfg.rooms];
    for m in members.iter().filter(|m| !cfg.is_stalled(m.room, m.index)) {
        for &q in &m.rooms {
            room_size[q] += 1;
        }
    }
    let mut room_ids = vec![String::new(); cfg.rooms];
    for m in members.iter() {
        room_ids[m.room].clone_from(&m.room_id);
    }
    let counters = Arc::new(Counters::default());
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let seconds = (send_s + cfg.drain_s).ceil() as usize + 1;
    let (stop_tx, stop_rx) = watch::channel(false);

    // Presence events of the joins come first; let them pass before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now() + Duration::from_millis(50);
    let send_end = t0 + Duration::from_secs_f64(send_s);
    let deadline = send_end + Duration::from_secs_f64(cfg.drain_s);
    let warmup_ns = (cfg.warmup_s * 1e9) as u64;
    let window_end_ns = (send_s * 1e9) as u64;
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
    let tally = Arc::new(Tally {
        p,
        room_ids,
        t0,
        warmup_ns,
        window_end_ns,
        counters: counters.clone(),
        timeline: Timeline::new(seconds),
        latency: SharedLatency::new(),
        outages,
    });

    let mut receivers = Vec::with_capacity(members.len());
    let mut stalled = Vec::new();
    let stall_at = t0 + Duration::from_secs_f64(cfg.warmup_s);
    for m in members.iter_mut() {
        let Some(mut inbox) = m.inbox.take() else { continue };
        if cfg.is_stalled(m.room, m.index) {
            let (link, mut stop) = (m.link.clone(), stop_rx.clone());
            stalled.push(tokio::spawn(async move {
                // Reads (and discards) until the end of the warm-up, then never again.
                let mut read = 0u64;
                loop {
                    tokio::select! {
                        biased;
                        _ = tokio::time::sleep_until(stall_at) => break,
                        _ = stop.changed() => break,
                        e = inbox.next() => match e {
                            Some(Delivery::Message { .. }) => read += 1,
                            Some(_) => {}
                            None => break,
                        },
                    }
                }
                let outcome = link.watch_stalled(stop).await;
                drop(inbox);
                (read, outcome)
            }));
            continue;
        }
        // Its own publisher index, if it publishes: a system that echoes (Redis) sends it back.
        let own = (m.index < p).then_some((m.room * p + m.index) as u32);
        let r = Receiving {
            // One track per (room, publisher): room slot `i` of `rooms` holds publishers
            // i * p .. i * p + p.
            order: OrderCheck::new(p * m.rooms.len(), max_k),
            got: Received {
                deliveries: 0,
                measured: 0,
                duplicates: 0,
                out_of_order: 0,
                foreign: 0,
                echoes: 0,
                sessions: SessionTally::default(),
            },
            receiver: receivers.len(),
            own,
            rooms: m.rooms.clone(),
            tally: tally.clone(),
            ended: false,
        };
        // Straight from the connection's reader tasks where the backend can (Huddle): the
        // runner takes what was counted at the end, and later deliveries find nothing to count.
        let shared = Arc::new(Mutex::new(Some(r)));
        let sink = shared.clone();
        let direct: DirectFn = Box::new(move |d| {
            if let Some(r) = sink.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                r.on(d);
            }
        });
        let (mut inbox, mut r) = match inbox.direct(direct) {
            Ok(()) => {
                receivers.push(ReceiverTask::Direct(shared));
                continue;
            }
            // Refused: the function was dropped without being called, so the receiver is
            // still there to take back.
            Err(inbox) => {
                let r = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                (inbox, r.expect("a refused direct function never runs"))
            }
        };
        let mut stop = stop_rx.clone();
        receivers.push(ReceiverTask::Task(tokio::spawn(async move {
            while !r.ended {
                let ev = tokio::select! {
                    e = inbox.next() => e,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => break,
                };
                match ev {
                    Some(d) => r.on(d),
                    None => break,
                }
            }
            r.got
        })));
    }

    // Publishers: the first `p` members of each room, each with a seeded random phase, woken
    // by the schedule thread at their intended times.
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut publishers = Vec::new();
    let mut slots = Vec::new();
    for m in members.iter().filter(|m| m.index < p) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        slots.push(Slot { phase_s: rng.gen_range(0.0..1.0) / rate_p, rate: rate_p, ticks: tx });
        let job = Publisher {
            link: m.link.clone(),
            room_id: m.room_id.clone(),
            publisher: (m.room * p + m.index) as u32,
            size: cfg.body_size(),
            priority: cfg.priority,
            recipients: room_size[m.room].saturating_sub(1),
            t0,
            warmup_ns,
            deadline,
            counters: counters.clone(),
            errors: errors.clone(),
        };
        publishers.push(tokio::spawn(job.run(rx)));
    }
    // If the thread cannot start, the publishers' channels close and nothing is sent.
    let schedule = Schedule::start(t0.into_std(), send_s, slots);
    if let Err(e) = &schedule {
        summary.problems.push(format!("the send schedule thread did not start: {e}"));
    }

    // Rebinds through the simulator, at their times after t0.
    let mut rebinds = rebind_at_s.to_vec();
    rebinds.sort_by(f64::total_cmp);
    let mut rebinds = rebinds.into_iter().peekable();

    // Progress, the measured window's samples, and the end of the drain.
    let total_ms = ((send_s + cfg.drain_s) * 1000.0) as u64;
    let pb = progress_bar(cfg, total_ms, "{msg:9} {elapsed:>3} {prefix} [{wide_bar}]");
    pb.set_message("warm-up");
    let window_start = t0 + Duration::from_secs_f64(cfg.warmup_s);
    let mut at_window_start = None;
    let mut at_window_end = None;
    let cpu = || (server_pid.and_then(|p| server::cpu_ticks(Some(p))), server::cpu_ticks(None));
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let grace = Duration::from_secs_f64(cfg.drain_s.min(DUPLICATE_GRACE_S));
    let mut complete_at = None;
    loop {
        tick.tick().await;
        let now = Instant::now();
        while let Some(at) = rebinds.peek() {
            if now < t0 + Duration::from_secs_f64(*at) {
                break;
            }
            rebinds.next();
            if let Some(proxy) = proxy {
                proxy.rebind_now().await;
            }
        }
        if at_window_start.is_none() && now >= window_start {
            at_window_start = Some(cpu());
            pb.set_message("measuring");
        }
        if at_window_end.is_none() && now >= send_end {
            at_window_end = Some(cpu());
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
        if now >= deadline {
            break;
        }
        // Done early once every publisher is finished and every expected delivery is in, after
        // a short grace in which late duplicates would still be seen.
        if complete_at.is_none()
            && now >= send_end
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
    drop(schedule);
    let _ = stop_tx.send(true);
    // Direct receivers stop counting here, as the receiver tasks do on `stop`.
    let mut received = Vec::with_capacity(receivers.len());
    let mut tasks = Vec::new();
    for h in receivers {
        match h {
            ReceiverTask::Task(h) => tasks.push(h),
            ReceiverTask::Direct(shared) => {
                let r = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                received.extend(r.map(|r| r.got));
            }
        }
    }

    let mut unacked = 0;
    let mut lag = latency_histogram();
    for h in publishers {
        if let Ok((n, l)) = h.await {
            unacked += n;
            let _ = lag.add(&l);
        }
    }
    summary.send_lag_us = LatencySummary::of(&lag);
    if !stalled.is_empty() {
        let mut st = StalledSummary { stopped_at_s: cfg.warmup_s, ..StalledSummary::default() };
        let mut first_closes = Vec::new();
        for h in stalled {
            let Ok((read, outcome)) = h.await else { continue };
            st.members += 1;
            st.deliveries_before_stop += read;
            st.reconnected += u64::from(outcome.reconnected > 0);
            match outcome.closes.first() {
                None => st.never_closed += 1,
                Some((after, ..)) => first_closes.push(*after),
            }
            let slow = u64::from(ErrorCode::SlowConsumer.as_u16());
            if outcome.closes.iter().any(|c| c.1 == Some(slow)) {
                st.closed_slow_consumer += 1;
            } else if !outcome.closes.is_empty() {
                st.closed_other += 1;
            }
            for (_, code, reason) in outcome.closes {
                let code = code.map_or("-".to_string(), |c| c.to_string());
                *st.close_reasons.entry(format!("{code}: {reason}")).or_default() += 1;
            }
        }
        first_closes.sort_by(f64::total_cmp);
        st.first_close_after_s = first_closes.first().copied();
        st.median_close_after_s = first_closes.get(first_closes.len() / 2).copied();
        st.last_close_after_s = first_closes.last().copied();
        summary.stalled = Some(st);
    }
    for h in tasks {
        received.extend(h.await.ok());
    }
    for r in received {
        summary.deliveries += r.deliveries;
        summary.measured_deliveries += r.measured;
        summary.duplicates += r.duplicates;
        summary.out_of_order += r.out_of_order;
        summary.foreign_messages += r.foreign;
        summary.own_echoes += r.echoes;
        r.sessions.add_to(summary);
    }
    summary.sent = Counters::read(&counters.sent);
    summary.acked = Counters::read(&counters.acked);
    summary.unacked = unacked;
    summary.send_errors = Counters::read(&counters.send_errors);
    summary.send_error_samples =
        std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    summary.expected_deliveries = Counters::read(&counters.expected);
    summary.lost = summary.expected_deliveries.saturating_sub(summary.deliveries);
    summary.latency_us = LatencySummary::of(&tally.latency.total());
    summary.deliveries_per_s = summary.measured_deliveries as f64 / cfg.duration_s.max(1e-9);
    summary.timeline = tally.timeline.summary();
    summary.outages = tally.outages.summary();

    let end = at_window_end.unwrap_or_else(cpu);
    let start = at_window_start.unwrap_or(end);
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
    t0
}

/// A member's receiver: a task reading its inbox, or counts its connection's tasks update.
enum ReceiverTask {
    Task(tokio::task::JoinHandle<Received>),
    Direct(Arc<Mutex<Option<Receiving>>>),
}

/// One member's receiving side: checks and counts each delivery.
struct Receiving {
    order: OrderCheck,
    got: Received,
    /// Which shard of the shared latency histogram it records into.
    receiver: usize,
    /// Its own publisher index, if it publishes.
    own: Option<u32>,
    /// The rooms it receives from.
    rooms: Vec<usize>,
    tally: Arc<Tally>,
    /// The connection is gone for good: nothing more will come.
    ended: bool,
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
}

impl Receiving {
    fn on(&mut self, d: Delivery) {
        let (r, t) = (&mut self.got, &*self.tally);
        let (room, body) = match d {
            Delivery::Message { room, body } => (room, body),
            Delivery::Session(e) => return r.sessions.on_event(e),
            Delivery::Lost(reason) => {
                self.ended = true;
                return r.sessions.on_lost(reason);
            }
        };
        let arrival_ns = t.t0.elapsed().as_nanos() as u64;
        let stamp = body.as_deref().and_then(decode_body);
        // The publisher's room must be one of this member's and the one the message came in.
        let p = t.p;
        let slot = stamp.and_then(|s| {
            let q = s.publisher as usize / p;
            let i = self.rooms.iter().position(|&x| x == q)?;
            (t.room_ids[q] == room).then_some((s, i))
        });
        let Some((s, i)) = slot else {
            r.foreign += 1;
            return;
        };
        if self.own == Some(s.publisher) {
            r.echoes += 1;
            return;
        }
        match self.order.check(i * p + s.publisher as usize % p, s.k) {
            Verdict::Invalid => {
                r.foreign += 1;
                return;
            }
            Verdict::Duplicate => {
                r.duplicates += 1;
                return;
            }
            Verdict::OutOfOrder => r.out_of_order += 1,
            Verdict::InOrder => {}
        }
        r.deliveries += 1;
        Counters::add(&t.counters.deliveries, 1);
        let latency_us = arrival_ns.saturating_sub(s.intended_ns) / 1000;
        t.timeline.record(arrival_ns, latency_us);
        t.outages.record(s.intended_ns, arrival_ns);
        if s.intended_ns >= t.warmup_ns && s.intended_ns < t.window_end_ns {
            r.measured += 1;
            t.latency.record(self.receiver, latency_us);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_without_their_numbers() {
        let mut t = SessionTally::default();
        t.count("lost: ", "stalled: no data for 2630 ms");
        t.count("lost: ", "stalled: no data for 4110 ms");
        t.count("ended (Some(2008)): ", "closed by server with code 2008 (session_resumed)");
        let want = [
            ("ended (Some(2008)): closed by server with code N (session_resumed)", 1),
            ("lost: stalled: no data for N ms", 2),
        ];
        let got: Vec<_> = t.reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, want);
    }
}
