//! `--backend redis|nats`: the same workload against Redis 7 pub/sub and NATS 2.9, for the side
//! by side comparison of issue 3 (feature `compare`).
//!
//! A room is a Redis channel or a NATS subject; each member is its own TCP connection, with TLS
//! trusting `--certs-dir`/ca.pem unless `--plaintext`, subscribed to its room and, with
//! `--rooms-per-member K`, the next K-1 (as a Huddle member enters them). The runner's
//! schedule, stamps, checks, histograms and CPU readings are the ones Huddle runs use
//! (`runner::fanout`); only connecting and the two [`Link`] implementations are here.
//!
//! What differs from Huddle and why: Redis has no "no echo", so a Redis publisher (a RESP3
//! connection that both subscribes and publishes) gets its own messages back and its receiver
//! drops them; that is one delivery per message more work for Redis than the counted ones
//! (0.1% in a room of 1,000, 1% in a room of 100). NATS connections use `no_echo`. Neither has
//! priorities; `--priority` is ignored. Core NATS has no publish ack: a send counts as accepted
//! once the client library has queued it.
//!
//! Members reconnect by themselves, as real clients do: a NATS member through async-nats's own
//! reconnection (which subscribes again), a Redis member here (a new connection, `SUBSCRIBE`
//! again) when its connection closes. Both also reconnect at once when told the network changed
//! ([`Link::network_changed`]: a TCP connection bound to the old address would otherwise hang
//! until a timeout). Pub/sub on both is at most once: what was published while a member was
//! away is not replayed, and shows up as lost deliveries (and, for sends on a connection that
//! broke, as send errors or unacknowledged sends). Each reconnect is counted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::stream::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::args::{Backend, LoadConfig};
use super::link::{Delivery, Inbox, Link, Session};
use super::report::Summary;
use super::runner::{fanout, Member, Plan};
use super::server::{self, CLOCK_TICKS_PER_S};
use super::startup::{startup, Newcomer};
use super::stats::{latency_histogram, record, LatencySummary};
use crate::certs;
use crate::wire::Priority;

/// Attempts to connect and subscribe, per member.
const CONNECT_ATTEMPTS: u32 = 3;
/// How long one attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one reconnection attempt of a Redis member may take, and how many it makes.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_ATTEMPTS: u32 = 20;
/// The pause between two failed reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Runs `cfg` against the Redis or NATS server at `server`.
pub(super) async fn drive(
    cfg: &LoadConfig,
    server: SocketAddr,
    server_pid: Option<u32>,
) -> Result<Summary> {
    let ca = if cfg.plaintext {
        None
    } else {
        let path = cfg.certs_dir.join(certs::CA_FILE);
        Some(std::fs::read(&path).with_context(|| format!("the CA to trust, {}", path.display()))?)
    };
    match cfg.backend {
        Backend::Redis => {
            let scheme = if ca.is_some() { "rediss" } else { "redis" };
            // RESP3, so that one connection both subscribes and publishes.
            let url = format!("{scheme}://{server}/?protocol=resp3");
            let client = match ca {
                Some(pem) => redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates { client_tls: None, root_cert: Some(pem) },
                ),
                None => redis::Client::open(url.as_str()),
            }
            .context("the Redis client")?;
            run(cfg, server, server_pid, |rooms| redis_member(client.clone(), rooms)).await
        }
        Backend::Nats => {
            let tls = match ca {
                Some(pem) => Some(rustls_config(&pem)?),
                None => None,
            };
            run(cfg, server, server_pid, |rooms| nats_member(server, tls.clone(), rooms)).await
        }
        Backend::Huddle => Err(anyhow!("the Huddle backend is the runner's own")),
    }
}

/// A TLS client configuration trusting the CA in `pem` (ring, as the rest of the crate).
fn rustls_config(pem: &[u8]) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs::parse_certs(pem)? {
        roots.add(ca).context("the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects every member (retrying), subscribes it to its rooms, runs the fan-out and counts.
async fn run<L, F, Fut>(
    cfg: &LoadConfig,
    server: SocketAddr,
    server_pid: Option<u32>,
    dial: F,
) -> Result<Summary>
where
    L: Link,
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<(L, L::Inbox, Duration)>>,
{
    let run_start_cpu = server::cpu_ticks(None);
    let n = cfg.connections();
    let nonce: u32 = rand::random();
    let room_id = |r: usize| format!("load-{nonce:08x}-{r}");
    if cfg.startup > 0 {
        return start_up(cfg, server, server_pid, &room_id(0), dial).await;
    }
    if cfg.progress {
        eprintln!("connecting {n} {} members to {server}", cfg.backend.name());
    }
    let started = Instant::now();
    let mut connect_hist = latency_histogram();
    let mut failures = Vec::new();
    let mut members = Vec::with_capacity(n);
    let mut connects = futures::stream::iter(0..n)
        .map(|i| {
            let (r, j) = (i / cfg.members, i % cfg.members);
            // Its own room first, then the next K-1.
            let rooms: Vec<usize> =
                (0..cfg.rooms_per_member).map(|d| (r + d) % cfg.rooms).collect();
            let names: Vec<String> = rooms.iter().map(|&q| room_id(q)).collect();
            let dial = &dial;
            async move {
                let t = Instant::now();
                let mut last = String::new();
                for _ in 0..CONNECT_ATTEMPTS {
                    match tokio::time::timeout(CONNECT_TIMEOUT, dial(names.clone())).await {
                        Ok(Ok((link, inbox, _))) => {
                            return (r, j, rooms, names, Ok(((link, inbox), t.elapsed())))
                        }
                        Ok(Err(e)) => last = format!("{e:#}"),
                        Err(_) => last = "timed out".into(),
                    }
                }
                (r, j, rooms, names, Err(last))
            }
        })
        .buffer_unordered(cfg.connect_concurrency);
    while let Some((r, j, rooms, mut names, res)) = connects.next().await {
        match res {
            Ok(((link, inbox), took)) => {
                record(&mut connect_hist, took.as_micros() as u64);
                members.push(Member {
                    link: Arc::new(link),
                    inbox: Some(inbox),
                    room: r,
                    room_id: names.swap_remove(0),
                    index: j,
                    rooms,
                });
            }
            Err(e) => failures.push(format!("member {r}/{j}: {e}")),
        }
    }
    drop(connects);
    let connect_s = started.elapsed().as_secs_f64();
    members.sort_by_key(|m| (m.room, m.index));
    if cfg.progress {
        for f in failures.iter().take(5) {
            eprintln!("{f}");
        }
        eprintln!("{} members connected in {connect_s:.2} s", members.len());
    }
    let mut summary = Summary {
        mode: "fanout".to_string(),
        server_addr: server.to_string(),
        server_pid,
        connections: members.len() as u64,
        connect_failures: failures.len() as u64,
        handshakes_per_s: members.len() as f64 / connect_s.max(1e-9),
        connect_us: LatencySummary::of(&connect_hist),
        config: cfg.clone(),
        ..Summary::default()
    };
    fanout(
        cfg,
        &mut members,
        server_pid,
        super::ipsim::with_schedule(Plan::default(), cfg)?,
        &mut summary,
    )
    .await;
    for m in &members {
        m.link.finish(&mut summary);
    }
    drop(members);
    if let (Some(a), Some(b)) = (run_start_cpu, server::cpu_ticks(None)) {
        summary.load_cpu_total_s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_S;
    }
    Ok(summary)
}

/// `--startup`: a member already subscribed publishes while new members connect and subscribe
/// one after another, each timed from its start.
async fn start_up<L, F, Fut>(
    cfg: &LoadConfig,
    server: SocketAddr,
    server_pid: Option<u32>,
    room_id: &str,
    dial: F,
) -> Result<Summary>
where
    L: Link,
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<(L, L::Inbox, Duration)>>,
{
    let (peer, peer_inbox, _) =
        dial(vec![room_id.to_string()]).await.context("the member already in")?;
    let peer = Arc::new(peer);
    let mut summary = Summary {
        mode: "startup".to_string(),
        server_addr: server.to_string(),
        server_pid,
        connections: 1,
        config: cfg.clone(),
        ..Summary::default()
    };
    let start = |_| async {
        let started = Instant::now();
        let (link, inbox, login) =
            dial(vec![room_id.to_string()]).await.map_err(|e| format!("{e:#}"))?;
        Ok(Newcomer { link: Arc::new(link), inbox, started, login, early_data: None })
    };
    startup(cfg, peer.clone(), room_id, start, &mut summary).await;
    peer.finish(&mut summary);
    drop(peer_inbox);
    Ok(summary)
}

/// A member's Redis connection: RESP3, multiplexed, with pushes (its subscription's messages)
/// going to its inbox; replaced by a new one, subscribed again, when it closes or the network
/// changes.
pub struct RedisLink(Arc<RedisMember>);

/// The deliveries of a [`RedisLink`]: its messages, and its reconnections.
pub struct RedisInbox(UnboundedReceiver<Delivery>);

/// What a Redis member's link, its connections' push senders and its reconnection task share.
struct RedisMember {
    client: redis::Client,
    rooms: Vec<String>,
    /// The connection in use; `None` while reconnecting.
    con: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// Counts connections: a close of one that has been replaced is not acted on.
    generation: AtomicU64,
    reconnecting: AtomicBool,
    /// Set when the run is over: no more reconnecting.
    finished: AtomicBool,
    inbox: UnboundedSender<Delivery>,
}

/// Connects a Redis member and subscribes it to `rooms`; the duration is how long the
/// connection (TCP, TLS, `HELLO`) took.
async fn redis_member(
    client: redis::Client,
    rooms: Vec<String>,
) -> Result<(RedisLink, RedisInbox, Duration)> {
    let (tx, rx) = unbounded_channel();
    let member = Arc::new(RedisMember {
        client,
        rooms,
        con: Mutex::new(None),
        generation: AtomicU64::new(0),
        reconnecting: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        inbox: tx,
    });
    let (con, connected) = redis_connect(&member, 0).await?;
    *lock(&member.con) = Some(con);
    Ok((RedisLink(member), RedisInbox(rx), connected))
}

/// Connects and subscribes `member` to its rooms; the connection's pushes go to its inbox,
/// tagged `generation`. The duration is how long connecting took, before the subscriptions.
async fn redis_connect(
    member: &Arc<RedisMember>,
    generation: u64,
) -> Result<(redis::aio::MultiplexedConnection, Duration)> {
    let started = Instant::now();
    let weak: Weak<RedisMember> = Arc::downgrade(member);
    let pushes = move |push: redis::PushInfo| -> Result<(), ()> {
        weak.upgrade().ok_or(())?.on_push(generation, push);
        Ok(())
    };
    // TCP_NODELAY, as real Redis clients set it: redis-rs leaves Nagle's algorithm on unless
    // built with its `tcp_nodelay` feature, which held a publish behind the previous one's ACK.
    let config = redis::AsyncConnectionConfig::new()
        .set_push_sender(pushes)
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let mut con = member.client.get_multiplexed_async_connection_with_config(&config).await?;
    let connected = started.elapsed();
    con.subscribe(&member.rooms).await?;
    Ok((con, connected))
}

impl RedisMember {
    fn on_push(self: &Arc<Self>, generation: u64, push: redis::PushInfo) {
        match push.kind {
            redis::PushKind::Message => {
                let mut data = push.data.into_iter();
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else { return };
                let room = match channel {
                    redis::Value::BulkString(b) => String::from_utf8(b).unwrap_or_default(),
                    _ => String::new(),
                };
                let body = match payload {
                    redis::Value::BulkString(b) => Some(b),
                    _ => None,
                };
                let _ = self.inbox.send(Delivery::Message { room, body });
            }
            redis::PushKind::Disconnection
                if generation == self.generation.load(Ordering::SeqCst) =>
            {
                self.reconnect("redis connection closed");
            }
            // Subscribe confirmations, and the close of a connection already replaced.
            _ => {}
        }
    }

    /// Drops the connection and makes a new one in a task of its own (unless one is being
    /// made already), subscribed to the rooms again; bounded by [`RECONNECT_ATTEMPTS`].
    fn reconnect(self: &Arc<Self>, reason: &str) {
        if self.finished.load(Ordering::SeqCst) || self.reconnecting.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.inbox.send(Delivery::Session(Session::Reconnecting { reason: reason.into() }));
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        drop(lock(&self.con).take());
        let me = self.clone();
        tokio::spawn(async move {
            for _ in 0..RECONNECT_ATTEMPTS {
                if me.finished.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(Ok((con, _))) =
                    tokio::time::timeout(RECONNECT_TIMEOUT, redis_connect(&me, generation)).await
                {
                    *lock(&me.con) = Some(con);
                    me.reconnecting.store(false, Ordering::SeqCst);
                    let _ = me.inbox.send(Delivery::Session(Session::Resumed { replayed: 0 }));
                    return;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
            let _ = me.inbox.send(Delivery::Session(Session::Disconnected {
                code: None,
                reason: "could not reconnect".into(),
            }));
        });
    }
}

impl Link for RedisLink {
    type Inbox = RedisInbox;

    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        _priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let (con, room) = (lock(&self.0.con).clone(), room.to_string());
        async move {
            let mut con = con.ok_or("not connected: reconnecting")?;
            let _receivers: i64 = con.publish(room, body).await.map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    fn network_changed(self: &Arc<Self>) {
        self.0.reconnect("network changed");
    }

    fn finish(&self, _summary: &mut Summary) {
        self.0.finished.store(true, Ordering::SeqCst);
    }
}

impl Inbox for RedisInbox {
    async fn next(&mut self) -> Option<Delivery> {
        self.0.recv().await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A member's NATS connection (`no_echo`: it does not hear its own messages). async-nats sets
/// TCP_NODELAY on every connection it makes, and reconnects (subscribing again) by itself.
pub struct NatsLink(async_nats::Client);

/// The subscriptions of a [`NatsLink`] to its rooms, and its connection's reconnections.
pub struct NatsInbox(
    futures::stream::SelectAll<async_nats::Subscriber>,
    UnboundedReceiver<Delivery>,
);

/// Connects a NATS member and subscribes it to `rooms`; the duration is how long the connection
/// (TCP, TLS, `CONNECT`) took.
async fn nats_member(
    server: SocketAddr,
    tls: Option<rustls::ClientConfig>,
    rooms: Vec<String>,
) -> Result<(NatsLink, NatsInbox, Duration)> {
    let started = Instant::now();
    let (tx, events) = unbounded_channel();
    // Connected events count only after a disconnection: the first one is the first connect.
    let away = Arc::new(AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new().no_echo().event_callback(move |e| {
        let session = match e {
            async_nats::Event::Disconnected if !away.swap(true, Ordering::SeqCst) => {
                Some(Session::Reconnecting { reason: "nats connection closed".into() })
            }
            async_nats::Event::Connected if away.swap(false, Ordering::SeqCst) => {
                Some(Session::Resumed { replayed: 0 })
            }
            _ => None,
        };
        if let Some(s) = session {
            let _ = tx.send(Delivery::Session(s));
        }
        async {}
    });
    let url = match tls {
        Some(tls) => {
            options = options.require_tls(true).tls_client_config(tls);
            format!("tls://{server}")
        }
        None => format!("nats://{server}"),
    };
    let client = options.connect(url).await?;
    let connected = started.elapsed();
    let mut subs = futures::stream::SelectAll::new();
    for room in rooms {
        subs.push(client.subscribe(room).await?);
    }
    // The subscriptions reach the server before any publisher starts.
    client.flush().await?;
    Ok((NatsLink(client), NatsInbox(subs, events), connected))
}

impl Link for NatsLink {
    type Inbox = NatsInbox;

    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        _priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let (client, room) = (self.0.clone(), room.to_string());
        async move { client.publish(room, body.into()).await.map_err(|e| e.to_string()) }
    }

    fn network_changed(self: &Arc<Self>) {
        let client = self.0.clone();
        tokio::spawn(async move {
            let _ = client.force_reconnect().await;
        });
    }

    fn finish(&self, _summary: &mut Summary) {}
}

impl Inbox for NatsInbox {
    async fn next(&mut self) -> Option<Delivery> {
        tokio::select! {
            m = self.0.next() => {
                let m = m?;
                Some(Delivery::Message { room: m.subject.to_string(), body: Some(m.payload.to_vec()) })
            }
            Some(d) = self.1.recv() => Some(d),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::mem::ManuallyDrop;
    use std::net::TcpStream;
    use std::os::fd::FromRawFd;

    use tokio::net::TcpListener;

    use super::*;

    /// TCP_NODELAY of this process's TCP socket connected to `peer`, read with `getsockopt` on
    /// the descriptors in /proc/self/fd; `None` when there is none.
    fn nodelay_towards(peer: SocketAddr) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            if !target.to_string_lossy().starts_with("socket:") {
                continue;
            }
            // SAFETY: `fd` is an open socket of this process; ManuallyDrop never closes it, and
            // only getpeername and getsockopt are called on it.
            let sock = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            if sock.peer_addr().ok() == Some(peer) {
                return sock.nodelay().ok();
            }
        }
        None
    }

    /// Accepts the member's connection on a listener that never answers and reads the client
    /// socket's TCP_NODELAY (the clients set it right after connecting, before the handshake).
    async fn nodelay_of<F: Future<Output = ()> + Send + 'static>(
        dial: impl FnOnce(SocketAddr) -> F,
    ) -> Option<bool> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let member = tokio::spawn(dial(addr));
        let (_server_side, _) =
            tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = nodelay_towards(addr);
        while seen != Some(true) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen = nodelay_towards(addr);
        }
        member.abort();
        seen
    }

    #[tokio::test]
    async fn redis_members_set_tcp_nodelay() {
        let seen = nodelay_of(|addr| async move {
            let client = redis::Client::open(format!("redis://{addr}/?protocol=resp3")).unwrap();
            let _ = redis_member(client, vec!["room".into()]).await;
        })
        .await;
        assert_eq!(seen, Some(true), "the Redis member's socket has Nagle's algorithm on");
    }

    #[tokio::test]
    async fn nats_members_set_tcp_nodelay() {
        let seen = nodelay_of(|addr| async move {
            let _ = nats_member(addr, None, vec!["room".into()]).await;
        })
        .await;
        assert_eq!(seen, Some(true), "the NATS member's socket has Nagle's algorithm on");
    }
}
