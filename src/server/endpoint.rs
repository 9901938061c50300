//! The bound server: its QUIC endpoint and admin listener, the accept loop with its connection
//! caps and address validation, the core's timers, and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc::UnboundedReceiver;

use super::admin;
use super::broker::Broker;
use super::config::ServerConfig;
use super::conn;
use super::error::ServerError;
use super::guard::{client_address, GuardStats};
use super::identity::{check_identity, load_keys, load_tls, name_identity_files};
use super::ids::id_base;
use super::metrics::Refused;
use super::outbox::{Outbox, OutboxStats};
use super::secrets::{configured_quic_keys, quic_keys, QuicKeys, SignedCids};
use super::shared::Shared;
use super::transport::{server_config, transport_config};
use super::webcert::WebCert;
use super::weblisten;
use crate::auth::KeySet;
use crate::core::{Bus, BusEvent, Core, NodeRef};
use crate::udp::set_socket_buffers;
use crate::wire::ErrorCode;

/// A bound server, ready to run.
pub struct Server {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    admin: Option<std::net::TcpListener>,
    web: Option<std::net::TcpListener>,
    web_cert: Option<Arc<WebCert>>,
    /// Cluster mode: the broker's events for this node's core.
    bus_events: Option<UnboundedReceiver<BusEvent>>,
}

impl Server {
    /// Binds a server with this configuration and TLS identity and token keys. Its QUIC reset
    /// and Retry keys come from `quic_secret_file` when configured, else they are fresh.
    pub fn bind_with(
        config: ServerConfig,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        keys: KeySet,
    ) -> Result<Server, ServerError> {
        let quic = configured_quic_keys(&config)?;
        Server::bind_keyed(config, chain, key, keys, quic, None)
    }

    /// [`Server::bind_with`] for a node of a cluster: its rooms' logs are carried by `broker`,
    /// shared with the other nodes. The configuration must name the node (`node_id`); the
    /// node's incarnation is random.
    pub fn bind_clustered(
        config: ServerConfig,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        keys: KeySet,
        broker: Broker,
    ) -> Result<Server, ServerError> {
        let quic = configured_quic_keys(&config)?;
        Server::bind_keyed(config, chain, key, keys, quic, Some(broker))
    }

    fn bind_keyed(
        config: ServerConfig,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        keys: KeySet,
        quic: Option<QuicKeys>,
        broker: Option<Broker>,
    ) -> Result<Server, ServerError> {
        // With the development identity (no `cert`), browsers get a short-lived certificate of
        // their own, accepted through its hash (webcert.rs).
        let web_cert = match config.web_transport && config.cert.is_none() {
            true => Some(Arc::new(WebCert::new(SystemTime::now())?)),
            false => None,
        };
        let mut sc = server_config(&config, chain, key, web_cert.clone())
            .map_err(|e| name_identity_files(&config, e))?;
        let mut ec = quinn::EndpointConfig::default();
        if let Some(QuicKeys { reset, token, cid }) = quic {
            ec.reset_key(Arc::new(reset));
            ec.cid_generator(move || Box::new(SignedCids(cid.clone())));
            sc.token_key(Arc::new(token));
        }
        let socket = std::net::UdpSocket::bind(config.listen)
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        set_socket_buffers(&socket, config.transport.socket_buffer_bytes);
        let endpoint = quinn::Endpoint::new(ec, Some(sc), socket, Arc::new(quinn::TokioRuntime))
            .map_err(ServerError::Endpoint)?;
        // Ids start from the start time (and the node id): unique across restarts at any
        // realistic rate, and below 2^53 so JSON readers keep them exact.
        let start_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
        let id_base = id_base(config.node_id, start_ms)?;
        // The core keeps a resumption's replay under the outbound queue bound
        // (`Limits::replay_budget`), or resuming would end as a slow consumer.
        let mut limits = config.limits.clone();
        limits.outbound_queue_bytes = config.queue.max_bytes;
        limits.outbound_queue_frames = config.queue.max_frames;
        // A history page, an eighth: a few pages asked at once still fit beside live traffic.
        limits.history_page_max_bytes =
            limits.history_page_max_bytes.min(config.queue.max_bytes / 8);
        let (core, carrier, bus_events) = match broker {
            None => (Core::new(limits, keys, id_base), None, None),
            Some(broker) => {
                let id = config.node_id.ok_or(ServerError::ClusterNodeId)?;
                let node = NodeRef { id, incarnation: rand::random() };
                let core = Core::with_bus(limits, keys, id_base, Bus::External { node });
                let (carrier, events) = broker.attach(node);
                (core, Some(carrier), Some(events))
            }
        };
        let admin = admin::bind(&config.admin)?;
        let web = config.web_listen.map(weblisten::bind).transpose()?;
        let shared = Shared::new(core, config, carrier);
        Ok(Server { endpoint, shared, admin, web, web_cert, bus_events })
    }

    /// Checks a configuration as [`Server::bind`] would (values, token keys, certificate and
    /// key, the admin token) without binding a socket or writing a file: what `huddle serve
    /// --check-config` runs. Returns the token keys the server would verify logins with (the
    /// development key only once its secret exists).
    pub fn check(config: &ServerConfig) -> Result<KeySet, ServerError> {
        check_cluster(config)?;
        transport_config(config)?;
        admin::check_token(&config.admin)?;
        id_base(config.node_id, 0)?;
        configured_quic_keys(config)?;
        check_identity(config)
    }

    /// Binds a server, loading or creating certificates and token keys as configured.
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        check_cluster(&config)?;
        if config.cluster.is_some() {
            return Err(ServerError::ClusterUnsupported(
                "Server::bind serves a single node: a cluster node is bound with \
                 Server::bind_with_broker (huddle serve --cluster does this)",
            ));
        }
        Server::bind_loaded(config, None)
    }

    /// [`Server::bind`] for a node of a cluster whose room logs `broker` carries (what
    /// `huddle serve --cluster` runs with a `NatsBroker`). The configuration must name the node
    /// (`node_id`).
    pub fn bind_with_broker(config: ServerConfig, broker: Broker) -> Result<Server, ServerError> {
        Server::bind_loaded(config, Some(broker))
    }

    fn bind_loaded(config: ServerConfig, broker: Option<Broker>) -> Result<Server, ServerError> {
        let (chain, key) = load_tls(&config)?;
        let keys = load_keys(&config)?;
        let quic = quic_keys(&config)?;
        Server::bind_keyed(config, chain, key, keys, quic, broker)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The address of the admin HTTP listener, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address of the web listener (demo page, `/config.json`), when one is configured.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The SHA-256 of the certificate presented to WebTransport clients now, when the server
    /// makes one (the development identity); `None` with a configured certificate.
    pub fn web_cert_hash(&self) -> Option<[u8; 32]> {
        self.web_cert.as_ref().map(|c| c.hash())
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
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server { endpoint, shared, admin, web, web_cert, bus_events } = self;
        let ceiling = shared.config.connection_memory_ceiling();
        let max = shared.config.transport.max_connections as u64;
        tracing::info!(
            per_connection_bytes = ceiling,
            max_connections = max,
            at_max_connections_bytes = ceiling.saturating_mul(max),
            "memory ceiling (SECURITY.md)"
        );
        let admin = match admin {
            Some(listener) => Some(admin::serve(shared.clone(), listener)?),
            None => None,
        };
        let web = match web {
            Some(listener) => {
                let quic = endpoint.local_addr().map_err(ServerError::LocalAddr)?;
                Some(weblisten::serve(listener, quic, web_cert.clone())?)
            }
            None => None,
        };
        let rotation = web_cert.map(|cert| tokio::spawn(rotate_web_cert(cert)));
        let timers = tokio::spawn(run_timers(shared.clone()));
        let bus = bus_events.map(|events| tokio::spawn(run_bus(shared.clone(), events)));
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
        if let Some(bus) = bus {
            bus.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
        if let Some(admin) = admin {
            admin.stop().await;
        }
        if let Some(web) = web {
            web.stop().await;
        }
        if let Some(rotation) = rotation {
            rotation.abort();
        }
        Ok(())
    }
}

/// Refuses a `[cluster]` configuration this build cannot serve.
fn check_cluster(config: &ServerConfig) -> Result<(), ServerError> {
    if config.cluster.is_none() || cfg!(feature = "cluster") {
        return Ok(());
    }
    Err(ServerError::ClusterUnsupported(
        "cluster mode needs a build with the `cluster` feature: \
         cargo build --release --features cluster",
    ))
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

/// Feeds the broker's events to the core (cluster mode), as many as have arrived under one
/// lock.
async fn run_bus(shared: Arc<Shared>, mut events: UnboundedReceiver<BusEvent>) {
    const BATCH: usize = 64;
    let mut batch = Vec::with_capacity(BATCH);
    while events.recv_many(&mut batch, BATCH).await > 0 {
        shared.with_core(|core, now| {
            for event in batch.drain(..) {
                core.handle_bus(now, event);
            }
        });
    }
}

/// Replaces the browsers' certificate before it expires (`WEB_CERT_ROTATE_AFTER`).
async fn rotate_web_cert(cert: Arc<WebCert>) {
    loop {
        let wait = cert.rotate_at().duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
        match cert.rotate(SystemTime::now()) {
            Ok(()) => {
                tracing::info!(hash = %hex::encode(cert.hash()), "rotated the WebTransport certificate")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot rotate the WebTransport certificate");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

/// Runs a server with `config` until `shutdown` completes.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = Server::bind(config)?;
    let addr = server.local_addr().map_err(ServerError::LocalAddr)?;
    tracing::info!(%addr, "huddle listening");
    if let Some(hash) = server.web_cert_hash() {
        tracing::info!(sha256 = %hex::encode(hash), "WebTransport development certificate");
    }
    server.run(shutdown).await
}
