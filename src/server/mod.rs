//! The QUIC glue around the sans-IO core: endpoint, connections, timers and shutdown.
//!
//! The core sits behind one `std::sync::Mutex` together with the table of connection outboxes.
//! Every input is handled under that lock and its outputs are dispatched to outboxes before the
//! lock is released; dispatch only pushes into queues, so the lock is never held across an
//! `.await` and a slow connection never slows the others.

mod admin;
mod conn;
mod guard;
mod metrics;
mod outbox;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Notify;

use crate::auth::KeySet;
use crate::certs;
use crate::config::ServerConfig;
use crate::core::{ConnId, Core, Now, Output};
use crate::wire::{ErrorCode, Priority, ALPN};
pub use admin::{admin_routes, AdminRoute};
pub use guard::{client_address, GuardStats, LOG_LINES_PER_WINDOW, LOG_WINDOW};
use guard::{HandshakeMeter, LogLimiter};
use metrics::{FanoutProbe, Metrics, Refused};
use outbox::Outbox;
pub use outbox::{close_connection, OutboxStats, DATAGRAM_SEND_BUFFER};

/// Bytes quinn buffers for one connection attempt before the server has accepted it (0-RTT is
/// off, so little more than the client's Initial packets arrive in that time).
pub const INCOMING_BUFFER_BYTES: u64 = 64 * 1024;

/// Bytes quinn buffers for all connection attempts not yet accepted, together.
pub const INCOMING_BUFFER_TOTAL_BYTES: u64 = 16 * 1024 * 1024;

/// Monotonic and wall-clock time for the core.
#[derive(Clone, Copy)]
struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64);
        Now { mono_ms: self.start.elapsed().as_millis() as u64, unix_ms: unix_ms.unwrap_or(0) }
    }

    fn instant(&self, mono_ms: u64) -> tokio::time::Instant {
        self.start + Duration::from_millis(mono_ms)
    }
}

struct State {
    core: Core,
    outboxes: HashMap<ConnId, Arc<Outbox>>,
}

/// What every connection task shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    clock: Clock,
    timer_changed: Notify,
    config: ServerConfig,
    next_conn: AtomicU64,
    conns: Mutex<ConnCounts>,
    stats: Arc<OutboxStats>,
    guard: Arc<GuardStats>,
    handshakes: Mutex<HandshakeMeter>,
    log_limiter: Mutex<LogLimiter>,
    /// Keys client addresses for the core's address rate limit (seeded per run, so that
    /// nobody can aim for a collision).
    address_keys: RandomState,
    metrics: Metrics,
    /// True while the endpoint accepts connections (false before `run` and once shutting down).
    accepting: AtomicBool,
}

/// Connections from accept to end (handshakes in progress included), in total and per client
/// address ([`client_address`]).
#[derive(Default)]
struct ConnCounts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The core never panics on peer input; if it ever did, keep serving the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one input through the core and dispatches what it asks for, under the lock.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let r = f(&mut state.core, now);
        let state = &mut *state;
        while let Some(out) = state.core.poll_output() {
            dispatch(&state.outboxes, out, &self.metrics);
        }
        if state.core.poll_timeout() != before {
            self.timer_changed.notify_one();
        }
        r
    }

    /// [`Shared::with_core`], timed into the latency histogram of `op`.
    pub(crate) fn timed_core<R>(&self, op: &'static str, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let start = Instant::now();
        let r = self.with_core(f);
        self.metrics.observe(op, start.elapsed());
        r
    }

    /// Registers a connection's outbox; from now on the core counts its operations toward the
    /// rate limit of its client address.
    fn register(&self, conn: ConnId, outbox: Arc<Outbox>, remote: SocketAddr) {
        let key = self.address_keys.hash_one(client_address(remote.ip()));
        self.lock().outboxes.insert(conn, outbox);
        self.with_core(|core, now| core.handle_connect(now, conn, key));
    }

    /// The one log line about a client the server closed for misbehaving (rate-limited).
    fn log_misbehaviour(&self, conn: ConnId, remote: SocketAddr, why: &str) {
        guard::log_misbehaviour(&self.guard, &self.log_limiter, conn, remote, why);
    }

    /// Forgets a finished connection. Its session waits for resumption, unless the server closed
    /// it for breaking the protocol (`closed_for`: a code other than slow_consumer).
    fn unregister(&self, conn: ConnId, closed_for: Option<ErrorCode>) {
        match closed_for {
            Some(code) if code != ErrorCode::SlowConsumer => {
                self.with_core(|core, now| core.handle_protocol_close(now, conn))
            }
            _ => self.with_core(|core, now| core.handle_disconnect(now, conn)),
        }
        self.lock().outboxes.remove(&conn);
    }
}

fn dispatch(outboxes: &HashMap<ConnId, Arc<Outbox>>, out: Output, metrics: &Metrics) {
    match out {
        Output::Reply { conn, frame } => {
            if let Some(o) = outboxes.get(&conn) {
                o.push_control(frame);
            }
        }
        Output::OpenRoomStream { conn, room, header } => {
            if let Some(o) = outboxes.get(&conn) {
                o.open_room(room, header);
            }
        }
        Output::CloseRoomStream { conn, room } => {
            if let Some(o) = outboxes.get(&conn) {
                o.close_room(room);
            }
        }
        Output::Broadcast { to, except, room, frame, priority, message } => {
            // Counted once per broadcast: one atomic add, not one per recipient.
            let mut queued = 0;
            let probe = if message { metrics.fanout_probe() } else { None };
            let urgent = message && priority == Priority::High;
            for conn in to.iter() {
                if Some(*conn) == except {
                    continue;
                }
                if let Some(o) = outboxes.get(conn) {
                    let probe = probe.clone();
                    queued += u64::from(o.push(Some(room), frame.clone(), priority, urgent, probe));
                }
            }
            if message {
                metrics.deliveries(priority, queued);
                if let (Some(probe), 0) = (probe, queued) {
                    FanoutProbe::discard(probe);
                }
            } else {
                metrics.events_out.inc_by(queued);
            }
        }
        Output::Push { conn, room, frame } => {
            if let Some(o) = outboxes.get(&conn) {
                if o.push(room, frame, Priority::High, false, None) {
                    metrics.events_out.inc();
                }
            }
        }
        Output::Close { conn, code } => {
            if let Some(o) = outboxes.get(&conn) {
                o.close(code);
            }
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    admin: Option<std::net::TcpListener>,
}

/// Token keys from the configuration, or the development key (created on first start).
pub fn load_keys(config: &ServerConfig) -> Result<KeySet> {
    let mut keys = KeySet::new();
    if config.token_keys.is_empty() {
        let secret = certs::ensure_token_secret(&config.certs_dir)?;
        keys.insert(certs::DEV_KEY_ID, &secret);
    }
    for k in &config.token_keys {
        let secret = hex::decode(&k.secret_hex)
            .map_err(|e| anyhow!("token key {}: secret_hex is not hex: {e}", k.id))?;
        if secret.len() < 16 {
            return Err(anyhow!("token key {}: a secret needs at least 16 bytes", k.id));
        }
        if !keys.insert(&k.id, &secret) {
            return Err(anyhow!("token key id {:?} is not 1-32 of [A-Za-z0-9_-]", k.id));
        }
    }
    Ok(keys)
}

/// The certificate chain and key from the configuration, or the development ones (created on
/// first start).
pub fn load_tls(
    config: &ServerConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Ok((certs::load_certs(cert)?, certs::load_key(key)?)),
        (None, None) => {
            if certs::ensure_dev_certs(&config.certs_dir)? {
                tracing::info!(dir = %config.certs_dir.display(), "made development certificates");
            }
            let (cert, key) = certs::dev_paths(&config.certs_dir);
            Ok((certs::load_certs(&cert)?, certs::load_key(&key)?))
        }
        _ => Err(anyhow!("--cert and --key go together")),
    }
}

/// The QUIC transport settings the server uses, chosen deliberately (see ARCHITECTURE.md).
pub fn transport_config(config: &ServerConfig) -> Result<quinn::TransportConfig> {
    let t = &config.transport;
    let mut tc = quinn::TransportConfig::default();
    // Clients open exactly one bidirectional stream and no unidirectional ones; quinn allocates
    // state for every stream a peer may open, so these stay as small as the protocol allows.
    tc.max_concurrent_bidi_streams(1u32.into());
    tc.max_concurrent_uni_streams(0u32.into());
    tc.stream_receive_window(t.stream_receive_window.into());
    tc.receive_window(t.receive_window.into());
    tc.send_window(t.send_window);
    tc.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(t.idle_timeout_s.max(1)))
            .context("idle_timeout_s")?,
    ));
    if t.keep_alive_s > 0 {
        // A keep-alive at or past the idle timeout would not keep anything alive: clamp it to
        // a third of the idle timeout. The server's pings keep both ends' idle timers running.
        let idle = Duration::from_secs(t.idle_timeout_s.max(1));
        let keep = Duration::from_secs(t.keep_alive_s).min(idle / 3);
        tc.keep_alive_interval(Some(keep));
    }
    if t.low_datagrams {
        // quinn sends DATAGRAM frames only while it also accepts them. One byte advertises a
        // maximum DATAGRAM frame size no datagram fits: a client that sends one anyway has its
        // connection closed with PROTOCOL_VIOLATION, as with datagrams off.
        tc.datagram_receive_buffer_size(Some(1));
        tc.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    } else {
        tc.datagram_receive_buffer_size(None);
    }
    if t.ack_max_delay_ms >= 1 << 14 {
        // RFC 9000 18.2: an ACK delay of 2^14 ms or more is invalid. Refused even while the
        // threshold is off, so that a bad value does not wait to surface until it is turned on.
        anyhow::bail!("ack_max_delay_ms {} is not below 16384", t.ack_max_delay_ms);
    }
    if t.ack_eliciting_threshold > 0 {
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(t.ack_eliciting_threshold.into());
        if t.ack_loss_fallback_ms > 0 {
            ack.loss_fallback(Some(Duration::from_millis(t.ack_loss_fallback_ms)));
        }
        if t.ack_max_delay_ms > 0 {
            ack.max_ack_delay(Some(Duration::from_millis(t.ack_max_delay_ms)));
            ack.max_ack_delay_above_rtt_after(Some(t.ack_max_delay_after_packets));
        }
        tc.ack_frequency_config(Some(ack));
    }
    match t.congestion.as_str() {
        "cubic" => {}
        "bbr" => {
            tc.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        "newreno" => {
            tc.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
        other => anyhow::bail!("unknown congestion controller {other:?}: cubic, bbr or newreno"),
    }
    Ok(tc)
}

impl Server {
    /// Binds a server with this configuration and TLS identity and token keys.
    pub fn bind_with(
        config: ServerConfig,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        keys: KeySet,
    ) -> Result<Server> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // QUIC allows only 0 or u32::MAX here; the amount of 0-RTT data is bounded by the
        // transport's flow-control windows. Tickets live in a bounded server-side cache and each
        // is taken out on use, so a replayed first flight cannot have its early data accepted.
        tls.max_early_data_size = if config.transport.zero_rtt { u32::MAX } else { 0 };
        tls.session_storage = rustls::server::ServerSessionMemoryCache::new(
            config.transport.tls_session_cache.max(1),
        );
        let crypto = QuicServerConfig::try_from(tls)?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        sc.transport_config(Arc::new(transport_config(&config)?));
        sc.max_incoming(config.transport.max_incoming.max(1));
        sc.incoming_buffer_size(INCOMING_BUFFER_BYTES);
        sc.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_BYTES);
        sc.migration(true);
        let socket = std::net::UdpSocket::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        set_socket_buffers(&socket, config.transport.socket_buffer_bytes);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(sc),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        // Ids start at the start time in microseconds-ish (ms x 1000): unique across restarts at
        // any realistic rate, and below 2^53 so JSON readers keep them exact.
        let start_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
        let id_base = start_ms * 1000;
        // A replay must fit in half the outbound queue, or resuming would end as a slow consumer.
        let mut limits = config.limits.clone();
        limits.max_replay_bytes = limits.max_replay_bytes.min(config.queue.max_bytes / 2);
        limits.max_replay_messages = limits.max_replay_messages.min(config.queue.max_frames / 2);
        let core = Core::new(limits, keys, id_base);
        let admin = admin::bind(&config.admin)?;
        let shared = Arc::new_cyclic(|weak| Shared {
            state: Mutex::new(State { core, outboxes: HashMap::new() }),
            clock: Clock { start: tokio::time::Instant::now() },
            timer_changed: Notify::new(),
            config,
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(ConnCounts::default()),
            stats: Arc::new(OutboxStats::default()),
            guard: Arc::new(GuardStats::default()),
            handshakes: Mutex::new(HandshakeMeter::new(tokio::time::Instant::now())),
            log_limiter: Mutex::new(LogLimiter::new(tokio::time::Instant::now())),
            address_keys: RandomState::new(),
            metrics: Metrics::new(weak.clone()),
            accepting: AtomicBool::new(false),
        });
        Ok(Server { endpoint, shared, admin })
    }

    /// Binds a server, loading or creating certificates and token keys as configured.
    pub fn bind(config: ServerConfig) -> Result<Server> {
        let (chain, key) = load_tls(&config)?;
        let keys = load_keys(&config)?;
        Server::bind_with(config, chain, key, keys)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// The address of the admin HTTP listener, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Counters of the outbound queues.
    pub fn stats(&self) -> Arc<OutboxStats> {
        self.shared.stats.clone()
    }

    /// Counters of the defences (Retry, refused connections, misbehaving clients).
    pub fn guard_stats(&self) -> Arc<GuardStats> {
        self.shared.guard.clone()
    }

    /// Serves until `shutdown` completes, then closes every connection with `server_shutdown`
    /// and waits (bounded) for the endpoint to drain.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Server { endpoint, shared, admin } = self;
        let admin = match admin {
            Some(listener) => Some(admin::serve(shared.clone(), listener)?),
            None => None,
        };
        let timers = tokio::spawn(run_timers(shared.clone()));
        shared.accepting.store(true, Ordering::SeqCst);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    accept(&shared, incoming);
                }
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down");
        shared.accepting.store(false, Ordering::SeqCst);
        // Refuse new connections, tell every connection (after what is queued for it has been
        // written, bounded per connection), then close what is left.
        endpoint.set_server_config(None);
        let code = ErrorCode::ServerShutdown;
        let outboxes: Vec<Arc<Outbox>> = shared.lock().outboxes.values().cloned().collect();
        for o in &outboxes {
            o.close(Some(code));
        }
        let drained = async {
            while !shared.lock().outboxes.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
        endpoint.close(quinn::VarInt::from_u32(u32::from(code.as_u16())), code.name().as_bytes());
        timers.abort();
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
        if let Some(admin) = admin {
            admin.stop().await;
        }
        Ok(())
    }
}

/// Raises a UDP socket's send and receive buffers (best effort: the OS may cap them).
pub fn set_socket_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let sock = quinn::udp::UdpSockRef::from(socket);
    match quinn::udp::UdpSocketState::new(sock) {
        Ok(state) => {
            let _ = state.set_send_buffer_size(quinn::udp::UdpSockRef::from(socket), bytes);
            let _ = state.set_recv_buffer_size(quinn::udp::UdpSockRef::from(socket), bytes);
        }
        Err(e) => tracing::warn!(error = %e, "could not set socket buffers"),
    }
}

/// Validates addresses under a handshake flood, applies the connection caps and starts a
/// connection task.
fn accept(shared: &Arc<Shared>, incoming: quinn::Incoming) {
    let t = &shared.config.transport;
    let attempts = shared
        .handshakes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .tick(tokio::time::Instant::now());
    if attempts > t.retry_above_handshakes_per_s
        && !incoming.remote_address_validated()
        && incoming.may_retry()
    {
        // A Retry is stateless and no larger than the packet it answers: a flood from spoofed
        // addresses costs the server no connection state and reflects nothing bigger.
        shared.guard.retries.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = incoming.retry() {
            e.into_incoming().refuse();
        }
        return;
    }
    let ip = client_address(incoming.remote_address().ip());
    let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
    let from_ip = conns.per_address.get(&ip).copied().unwrap_or(0);
    if conns.total >= t.max_connections
        || (t.max_connections_per_ip > 0 && from_ip >= t.max_connections_per_ip)
    {
        let total = conns.total;
        drop(conns);
        shared.guard.refused.fetch_add(1, Ordering::Relaxed);
        let why = if total >= t.max_connections { Refused::Total } else { Refused::PerIp };
        shared.metrics.refused(why);
        tracing::debug!(%ip, total, from_ip, "connection refused: over the cap");
        incoming.refuse();
        return;
    }
    conns.total += 1;
    *conns.per_address.entry(ip).or_default() += 1;
    drop(conns);
    shared.metrics.connections_accepted.inc();
    shared.metrics.connections_open.inc();
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let shared = shared.clone();
    // Boxed: a future keeps room for what it captured for as long as it lives, and this task
    // lives as long as the connection.
    let incoming = Box::new(incoming);
    tokio::spawn(async move {
        conn::run(shared.clone(), conn_id, incoming).await;
        shared.metrics.connections_open.dec();
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.total = conns.total.saturating_sub(1);
        if let Some(n) = conns.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                conns.per_address.remove(&ip);
            }
        }
    });
}

/// Fires the core's timers (presence flushes, delayed destroys) when they are due.
async fn run_timers(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().core.poll_timeout();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(shared.clock.instant(at)) => {
                        shared.with_core(|core, now| core.handle_timeout(now));
                    }
                    _ = shared.timer_changed.notified() => {}
                }
            }
            None => shared.timer_changed.notified().await,
        }
    }
}

/// Runs a server with `config` until `shutdown` completes.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let ceiling = config.connection_memory_ceiling();
    let max = config.transport.max_connections as u64;
    let server = Server::bind(config)?;
    tracing::info!(addr = %server.local_addr()?, "huddle listening");
    tracing::info!(
        per_connection_bytes = ceiling,
        at_max_connections_bytes = ceiling.saturating_mul(max),
        "memory ceiling (SECURITY.md)"
    );
    server.run(shutdown).await
}
