//! The Huddle backend: members are Huddle clients (the real client library), each its own QUIC
//! connection, spread over several client UDP endpoints, optionally through the in-process
//! network simulator (`--netsim`). Connecting them, logging in, entering the rooms, the
//! transport counters and closing are here, and the client's [`Link`] in `link`; the workload
//! is the runner's (`fanout`, `hold_connections`), as for the Redis and NATS backends in
//! `compare`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use futures::stream::StreamExt;
use futures::FutureExt;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::args::{LoadConfig, Trust};
use super::link::{Link, Tap};
use super::report::{NetsimSummary, Summary};
use super::runner::{fanout, hold_connections, progress_bar, say, Member, Plan, Rebind};
use super::server::{self, UdpCounters, CLOCK_TICKS_PER_S};
use super::startup::{startup, Newcomer};
use super::stats::{latency_histogram, record, LatencySummary};
use crate::auth::KeySet;
use crate::certs;
use crate::client::{Client, ClientConfig, TlsSessions};
use crate::netsim::{parse_spec, Proxy, ProxyConfig};
use crate::wire::{RoomConfig, RoomInfo};
use link::listener;

mod link;
mod web;

pub use link::HuddleInbox;
pub use web::{Mixed, MixedInbox, WebInbox, WebMember};

/// Attempts to connect, log in and enter the room, per member.
const CONNECT_ATTEMPTS: u32 = 3;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a `--startup --zero-rtt` member's first connection stays open after its login, for
/// the session ticket to arrive.
const TICKET_WAIT: Duration = Duration::from_millis(500);
/// Token lifetime: longer than any bounded run.
const TOKEN_TTL_S: u64 = 2 * 3600;

/// Runs `cfg` against the Huddle server at `server_addr`, trusting `cfg.trust` or else the CA
/// and token secret in `certs_dir`.
pub(super) async fn drive(
    cfg: &LoadConfig,
    server_addr: SocketAddr,
    server_pid: Option<u32>,
    certs_dir: &Path,
) -> Result<Summary> {
    let trust = match &cfg.trust {
        Some(t) => t.clone(),
        None => read_trust(certs_dir)?,
    };
    let before = Before::read(server_addr, server_pid);
    let net = Netsim::start(cfg, server_addr).await?;
    if cfg.startup > 0 {
        return start_up(cfg, &trust, server_pid, net).await;
    }
    let eps = bind_endpoints(cfg, net.connect_addr)?;
    let names = Names::new()?;
    let mut servers = vec![net.connect_addr];
    servers.extend(&cfg.more_servers);
    let mut connected = connect(cfg, &trust, &eps, &servers, &names).await;
    let members_per_server = match servers.len() {
        1 => BTreeMap::new(),
        _ => per_server(&connected),
    };
    let mut members = join(cfg, &mut connected, &names).await;
    let mut web_members = Vec::new();
    if cfg.web_members > 0 {
        let started = Instant::now();
        let (web, took, failures) = web::connect(cfg, &trust, net.connect_addr, &names).await?;
        let elapsed_s = started.elapsed().as_secs_f64();
        for f in failures.iter().take(5) {
            eprintln!("{f}");
        }
        if cfg.progress {
            eprintln!("{} WebTransport members connected in {elapsed_s:.2} s", web.len());
        }
        took.iter().for_each(|t| record(&mut connected.hist, t.as_micros() as u64));
        let all = (members.len() + web.len()) as f64;
        connected.handshakes_per_s = all / (connected.elapsed_s + elapsed_s).max(1e-9);
        connected.failures.extend(failures);
        web_members = web;
    }
    let mut summary = Summary {
        mode: if cfg.connections_only { "connections_only" } else { "fanout" }.to_string(),
        server_addr: net.connect_addr.to_string(),
        server_pid,
        members_per_server,
        connections: (members.len() + web_members.len()) as u64,
        connect_failures: connected.failures.len() as u64,
        endpoints: eps.len() as u64,
        handshakes_per_s: connected.handshakes_per_s,
        connect_us: LatencySummary::of(&connected.hist),
        config: cfg.clone(),
        ..Summary::default()
    };
    let t0 = if cfg.web_members == 0 {
        workload(cfg, &mut members, server_pid, &before, &net, &mut summary).await?
    } else {
        let mut mixed = web::mix(std::mem::take(&mut members), web_members);
        let t0 = workload(cfg, &mut mixed, server_pid, &before, &net, &mut summary).await?;
        for m in &mixed {
            m.link.finish(&mut summary);
        }
        t0
    };
    count_socket_drops(server_addr, &before, &eps, &net, &mut summary);
    close(members, &eps, &mut summary).await;
    net.stop(cfg, t0, &mut summary).await;
    if let (Some(a), Some(b)) = (before.udp, server::udp_counters()) {
        summary.udp_rcvbuf_errors = Some(b.rcvbuf_errors.saturating_sub(a.rcvbuf_errors));
        summary.udp_sndbuf_errors = Some(b.sndbuf_errors.saturating_sub(a.sndbuf_errors));
        summary.udp_in_errors = Some(b.in_errors.saturating_sub(a.in_errors));
    }
    if let (Some(a), Some(b)) = (before.cpu, server::cpu_ticks(None)) {
        summary.load_cpu_total_s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
    }
    Ok(summary)
}

/// The run's workload on `members`: holding them (`--connections-only`) or the fan-out.
async fn workload<L: Link>(
    cfg: &LoadConfig,
    members: &mut [Member<L>],
    server_pid: Option<u32>,
    before: &Before,
    net: &Netsim,
    summary: &mut Summary,
) -> Result<Instant> {
    Ok(if cfg.connections_only {
        hold_connections(cfg, members, server_pid, before.rss, summary).await
    } else {
        let plan = super::ipsim::with_schedule(net.plan(), cfg)?;
        fanout(cfg, members, server_pid, plan, summary).await
    })
}

fn read_trust(dir: &Path) -> Result<Trust> {
    let ca = certs::load_certs(&dir.join(certs::CA_FILE))
        .with_context(|| format!("the CA to trust, in {}", dir.display()))?
        .remove(0);
    let secret = certs::read_token_secret(&dir.join(certs::TOKEN_SECRET_FILE))?;
    let mut keys = KeySet::new();
    keys.insert(certs::DEV_KEY_ID, &secret);
    Ok(Trust { ca, keys, key_id: certs::DEV_KEY_ID.to_string() })
}

/// Counters read before the run, so that the summary counts only its part.
struct Before {
    /// This process's CPU ticks.
    cpu: Option<u64>,
    udp: Option<UdpCounters>,
    /// The server socket's kernel drops (a loopback server's).
    server_drops: Option<u64>,
    /// The server's memory.
    rss: Option<u64>,
}

impl Before {
    fn read(server_addr: SocketAddr, server_pid: Option<u32>) -> Before {
        Before {
            cpu: server::cpu_ticks(None),
            udp: server::udp_counters(),
            server_drops: server::udp_socket_drops().get(&server_addr.port()).copied(),
            rss: server_pid.and_then(|p| server::rss_bytes(Some(p))),
        }
    }
}

/// The network simulator between every member and the server (`--netsim`), if asked for.
struct Netsim {
    /// Where members connect: the simulator, or the server.
    connect_addr: SocketAddr,
    /// The simulator and when it started.
    proxy: Option<(Proxy, Instant)>,
    /// Rebinds, seconds after t0.
    rebind_at_s: Vec<f64>,
    /// Blackholes (start, length) in milliseconds after the simulator's start.
    blackholes_ms: Vec<(u64, u64)>,
}

impl Netsim {
    async fn start(cfg: &LoadConfig, server_addr: SocketAddr) -> Result<Netsim> {
        let mut net = Netsim {
            connect_addr: server_addr,
            proxy: None,
            rebind_at_s: Vec::new(),
            blackholes_ms: Vec::new(),
        };
        let Some(spec) = &cfg.netsim else { return Ok(net) };
        let (imp, rest) = parse_spec(spec).map_err(|e| anyhow!("--netsim: {e}"))?;
        net.blackholes_ms.clone_from(&imp.blackholes);
        let (mut to_server, mut to_client) = (imp.clone(), imp);
        for (k, v) in rest {
            let fraction =
                || v.parse::<f64>().map_err(|_| anyhow!("--netsim {k}={v}: not a number"));
            match k.as_str() {
                "rebind-at" => net.rebind_at_s.push(
                    v.parse::<f64>().map_err(|_| anyhow!("--netsim rebind-at={v}: not seconds"))?,
                ),
                "loss-to-server" => to_server.loss = fraction()?,
                "loss-to-client" => to_client.loss = fraction()?,
                _ => return Err(anyhow!("--netsim: unknown key {k:?}")),
            }
        }
        let listen = if server_addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
        let p = Proxy::start(ProxyConfig {
            listen: listen.parse().expect("constant address parses"),
            upstream: server_addr,
            to_server,
            to_client,
            seed: cfg.seed,
            rebind_at_ms: Vec::new(),
        })
        .await
        .context("starting the network simulator")?;
        net.connect_addr = p.local_addr();
        net.proxy = Some((p, Instant::now()));
        Ok(net)
    }

    /// What the simulator does during the fan-out.
    fn plan(&self) -> Plan<'_> {
        Plan {
            rebind_at_s: &self.rebind_at_s,
            rebind: self
                .proxy
                .as_ref()
                .map(|(p, _)| -> Rebind<'_> { Box::new(move || p.rebind_now().boxed()) }),
            blackholes: self.proxy.as_ref().map(|p| (p.1, self.blackholes_ms.clone())),
            link_rebinds: None,
        }
    }

    /// Stops the simulator, if any, and adds its counters to `summary`.
    async fn stop(self, cfg: &LoadConfig, t0: Instant, summary: &mut Summary) {
        if let Some((p, started)) = self.proxy {
            let start_to_t0 = t0.saturating_duration_since(started).as_secs_f64();
            let stats = p.stop().await;
            summary.netsim =
                Some(NetsimSummary::new(cfg.netsim.as_deref().unwrap_or(""), &stats, start_to_t0));
        }
    }
}

/// Client endpoints, each its own socket with large buffers: many connections behind one
/// small default buffer lose datagrams in the kernel (RcvbufErrors).
fn bind_endpoints(cfg: &LoadConfig, connect_addr: SocketAddr) -> Result<Vec<quinn::Endpoint>> {
    let endpoints = cfg.connections().div_ceil(cfg.connections_per_endpoint);
    let mut eps = Vec::with_capacity(endpoints);
    for _ in 0..endpoints {
        eps.push(bind_endpoint(cfg, connect_addr)?);
    }
    Ok(eps)
}

/// One client endpoint on a socket of its own, of `connect_addr`'s family (loopback for a
/// loopback server).
fn bind_endpoint(cfg: &LoadConfig, connect_addr: SocketAddr) -> Result<quinn::Endpoint> {
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
    let socket = std::net::UdpSocket::bind(bind).context("binding a client socket")?;
    crate::udp::set_socket_buffers(&socket, cfg.socket_buffer_bytes);
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// Names unique to this run, so runs against one long-lived server do not collide, and the
/// time its tokens start from.
struct Names {
    nonce: u32,
    now_s: u64,
}

impl Names {
    fn new() -> Result<Names> {
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        Ok(Names { nonce: rand::random(), now_s })
    }

    fn room_id(&self, r: usize) -> String {
        format!("load-{:08x}-{r}", self.nonce)
    }

    fn user(&self, r: usize, j: usize) -> String {
        format!("ld{:08x}r{r}m{j}", self.nonce)
    }
}

/// A member connected and logged in: its client, the tap its events go to (unless they go to the
/// client's queue), its room and its index in the room.
type Dialed = (Client, Option<Arc<Tap>>, usize, usize);

/// The connect phase's outcome.
struct Connected {
    /// By member: connected, or not.
    clients: Vec<Option<Dialed>>,
    /// Why members are not in the run (connecting, then entering rooms).
    failures: Vec<String>,
    /// Connect times, in microseconds.
    hist: Histogram<u64>,
    /// How long connecting took, in seconds.
    elapsed_s: f64,
    handshakes_per_s: f64,
}

/// Connects and logs in every member (timed: handshakes/s, connect time).
async fn connect(
    cfg: &LoadConfig,
    trust: &Trust,
    eps: &[quinn::Endpoint],
    servers: &[SocketAddr],
    names: &Names,
) -> Connected {
    let n = cfg.connections();
    let pb = progress_bar(cfg, n as u64, "{msg:10} {pos}/{len} {elapsed} [{wide_bar}]");
    pb.set_message("connecting");
    let to: Vec<String> = servers.iter().map(|a| a.to_string()).collect();
    let what = format!("connecting {n} members over {} endpoints to {}", eps.len(), to.join(","));
    say(&pb, cfg, &what);
    let started = Instant::now();
    let mut hist = latency_histogram();
    let mut clients: Vec<Option<Dialed>> = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let mut connects = futures::stream::iter((0..n).filter(|i| !cfg.is_web(i % cfg.members)))
        .map(|i| {
            let (r, j) = (i / cfg.members, i % cfg.members);
            // Round-robin: member i starts on server i mod N and falls back on the others.
            let order: Vec<SocketAddr> =
                (0..servers.len()).map(|k| servers[(i + k) % servers.len()]).collect();
            let cc = client_config(cfg, trust, &order, names, r, j);
            // A member that stops reading needs the client's queue (it fills, and flow control
            // pushes back); an idle one reads through it too. The others' events go straight
            // to their receiver's checks from the client's reader tasks.
            let listen = !cfg.connections_only && !cfg.is_stalled(r, j);
            let dial = dial(eps[i % eps.len()].clone(), cc, listen);
            async move { (i, r, j, dial.await) }
        })
        .buffer_unordered(cfg.connect_concurrency);
    clients.resize_with(n, || None);
    while let Some((i, r, j, res)) = connects.next().await {
        match res {
            Ok((client, tap, took)) => {
                record(&mut hist, took.as_micros() as u64);
                clients[i] = Some((client, tap, r, j));
            }
            Err(e) => failures.push(format!("member {r}/{j}: {e}")),
        }
        pb.inc(1);
    }
    drop(connects);
    let elapsed_s = started.elapsed().as_secs_f64();
    let handshakes_per_s = clients.iter().flatten().count() as f64 / elapsed_s.max(1e-9);
    pb.finish_and_clear();
    Connected { clients, failures, hist, elapsed_s, handshakes_per_s }
}

/// How many connected members each server has.
fn per_server(connected: &Connected) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (client, ..) in connected.clients.iter().flatten() {
        *counts.entry(client.connection().remote_address().to_string()).or_insert(0) += 1;
    }
    counts
}

/// Member `j` of room `r`'s client configuration, with a fresh token.
fn client_config(
    cfg: &LoadConfig,
    trust: &Trust,
    servers: &[SocketAddr],
    names: &Names,
    r: usize,
    j: usize,
) -> ClientConfig {
    let user = names.user(r, j);
    let now_s = names.now_s;
    let token =
        trust.keys.mint(&trust.key_id, &user, now_s.saturating_sub(60), now_s + TOKEN_TTL_S);
    let mut cc = ClientConfig::new(servers[0], &user, token.as_deref().unwrap_or(""));
    cc.fallback_servers = servers[1..].to_vec();
    cc.roots = vec![trust.ca.clone()];
    cc.bbr = cfg.client_bbr;
    cc.stall_timeout = Duration::from_millis(cfg.client_stall_timeout_ms);
    cc.tail_copy = Duration::from_millis(cfg.client_tail_copy_ms);
    cc.tail_copy_all = cfg.client_tail_copy_all;
    cc.zero_rtt = cfg.client_zero_rtt;
    if cfg.is_stalled(r, j) {
        cc.event_queue = cfg.stalled_event_queue.unwrap_or(cc.event_queue);
        cc.stream_receive_window = cfg.stalled_stream_window.unwrap_or(cc.stream_receive_window);
    }
    cc
}

/// Connects and logs in one member (retrying), its events going to a [`Tap`] when `listen`.
/// Returns the client, its tap and how long it took.
async fn dial(
    ep: quinn::Endpoint,
    cc: ClientConfig,
    listen: bool,
) -> Result<(Client, Option<Arc<Tap>>, Duration), String> {
    let started = Instant::now();
    let mut last = String::new();
    for _ in 0..CONNECT_ATTEMPTS {
        let tap = listen.then(|| Arc::new(Tap::default()));
        let (ep, cc) = (ep.clone(), cc.clone());
        let c = async {
            match &tap {
                Some(tap) => Client::connect_with_listener(ep, cc, listener(tap)).await,
                None => Client::connect_on(ep, cc).await,
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, c).await {
            Ok(Ok(client)) => return Ok((client, tap, started.elapsed())),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err(last)
}

/// Has every connected member enter its rooms; those that entered their own are the run's
/// members, in room order. Prints the connect phase's outcome.
async fn join(cfg: &LoadConfig, connected: &mut Connected, names: &Names) -> Vec<Member<Client>> {
    let clients = std::mem::take(&mut connected.clients);
    let n = clients.iter().flatten().count();
    let pb = progress_bar(cfg, n as u64, "{msg:10} {pos}/{len} {elapsed} [{wide_bar}]");
    pb.set_message("joining");
    let mut members: Vec<Member<Client>> = Vec::with_capacity(n);
    let mut joins = futures::stream::iter(clients.into_iter().flatten())
        .map(|(client, tap, r, j)| async move {
            let (rooms, errors) = enter_rooms(cfg, &client, names, r, j).await;
            (client, tap, r, j, rooms, errors)
        })
        .buffer_unordered(cfg.connect_concurrency);
    while let Some((client, tap, r, j, rooms, errors)) = joins.next().await {
        connected.failures.extend(errors);
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
                room_id: names.room_id(r),
                index: j,
                rooms,
            });
        }
        pb.inc(1);
    }
    drop(joins);
    pb.finish_and_clear();
    members.sort_by_key(|m| (m.room, m.index));
    for f in connected.failures.iter().take(5) {
        say(&pb, cfg, f);
    }
    let (elapsed_s, rate) = (connected.elapsed_s, connected.handshakes_per_s);
    let what =
        format!("{} members connected in {elapsed_s:.2} s ({rate:.0} handshakes/s)", members.len());
    say(&pb, cfg, &what);
    members
}

/// Member `j` of room `r` enters its own room, then the next `rooms_per_member - 1` (distinct:
/// K <= rooms). Returns the rooms it is in (none without its own: it is not a member of the run)
/// and what failed.
async fn enter_rooms(
    cfg: &LoadConfig,
    client: &Client,
    names: &Names,
    r: usize,
    j: usize,
) -> (Vec<usize>, Vec<String>) {
    let k = cfg.rooms_per_member;
    let mut joined = Vec::with_capacity(k);
    let mut errors = Vec::new();
    for q in (0..k).map(|d| (r + d) % cfg.rooms) {
        let info = RoomInfo { room_id: names.room_id(q), room_name: format!("load room {q}") };
        let res =
            tokio::time::timeout(CONNECT_TIMEOUT, client.enter_room(info, RoomConfig::default()))
                .await;
        let what = if q == r { "its room".to_string() } else { format!("room {q}") };
        match res {
            Ok(Ok(_)) => joined.push(q),
            Ok(Err(e)) => errors.push(format!("member {r}/{j} entering {what}: {e}")),
            Err(_) => errors.push(format!("member {r}/{j} entering {what}: timed out")),
        }
        if joined.is_empty() {
            break;
        }
    }
    (joined, errors)
}

/// `--startup`: a member already in room 0 publishes while new members start one after
/// another, each on a socket of its own.
async fn start_up(
    cfg: &LoadConfig,
    trust: &Trust,
    server_pid: Option<u32>,
    net: Netsim,
) -> Result<Summary> {
    let names = Names::new()?;
    let addr = net.connect_addr;
    let cc = client_config(cfg, trust, &[addr], &names, 0, 0);
    let (peer, tap, _) = dial(bind_endpoint(cfg, addr)?, cc, true)
        .await
        .map_err(|e| anyhow!("the member already in the room: {e}"))?;
    let (rooms, errors) = enter_rooms(cfg, &peer, &names, 0, 0).await;
    if rooms.is_empty() {
        return Err(anyhow!("the member already in the room: {}", errors.join("; ")));
    }
    let peer = Arc::new(peer);
    let mut summary = Summary {
        mode: "startup".to_string(),
        server_addr: addr.to_string(),
        server_pid,
        connections: 1,
        config: cfg.clone(),
        ..Summary::default()
    };
    let names = &names;
    let start = |i| new_member(cfg, trust, names, addr, i);
    startup(cfg, peer.clone(), &names.room_id(0), start, &mut summary).await;
    peer.finish(&mut summary);
    drop(tap);
    net.stop(cfg, Instant::now(), &mut summary).await;
    Ok(summary)
}

/// New member `i` of `--startup` (member i + 1 of room 0): with `--zero-rtt`, a first
/// connection that leaves a session ticket; then, timed, a new socket, connecting, the login
/// and entering the room.
async fn new_member(
    cfg: &LoadConfig,
    trust: &Trust,
    names: &Names,
    addr: SocketAddr,
    i: usize,
) -> Result<Newcomer<Client>, String> {
    let j = i + 1;
    let mut cc = client_config(cfg, trust, &[addr], names, 0, j);
    cc.tls_sessions = Some(TlsSessions::new());
    if cfg.zero_rtt {
        let ep = bind_endpoint(cfg, addr).map_err(|e| e.to_string())?;
        let first = Client::connect_on(ep, cc.clone())
            .await
            .map_err(|e| format!("its first connection: {e}"))?;
        // The server's NewSessionTicket follows the handshake.
        tokio::time::sleep(TICKET_WAIT).await;
        first.close();
    }
    let ep = bind_endpoint(cfg, addr).map_err(|e| e.to_string())?;
    let tap = Arc::new(Tap::default());
    let started = Instant::now();
    let client =
        Client::connect_with_listener(ep, cc, listener(&tap)).await.map_err(|e| e.to_string())?;
    let login = started.elapsed();
    let (rooms, errors) = enter_rooms(cfg, &client, names, 0, j).await;
    if rooms.is_empty() {
        client.close();
        return Err(errors.join("; "));
    }
    Ok(Newcomer {
        early_data: Some(client.logged_in_early()),
        link: Arc::new(client),
        inbox: HuddleInbox::Tap(tap),
        started,
        login,
    })
}

/// Per-socket kernel drops: the client sockets are this run's, so their counters are this
/// run's; an external server's counter runs from its start, so only this run's part counts.
fn count_socket_drops(
    server_addr: SocketAddr,
    before: &Before,
    eps: &[quinn::Endpoint],
    net: &Netsim,
    summary: &mut Summary,
) {
    let drops = server::udp_socket_drops();
    if server_addr.ip().is_loopback() {
        summary.server_socket_drops = drops
            .get(&server_addr.port())
            .map(|d| d.saturating_sub(before.server_drops.unwrap_or(0)));
    }
    let client_ports: Vec<u16> =
        eps.iter().filter_map(|e| e.local_addr().ok()).map(|a| a.port()).collect();
    summary.client_socket_drops =
        Some(client_ports.iter().filter_map(|p| drops.get(p)).sum::<u64>());
    if net.proxy.is_some() {
        summary.netsim_socket_drops = drops.get(&net.connect_addr.port()).copied();
    }
}

/// Adds the members' transport counters to `summary`, closes them, and waits (briefly) for the
/// endpoints to be idle.
async fn close(members: Vec<Member<Client>>, eps: &[quinn::Endpoint], summary: &mut Summary) {
    for m in &members {
        m.link.finish(summary);
    }
    let idle = futures::future::join_all(eps.iter().map(|e| e.wait_idle()));
    let _ = tokio::time::timeout(Duration::from_secs(2), idle).await;
    drop(members);
}
