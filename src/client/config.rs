//! How to reach and log in to a server ([`ClientConfig`]), and the QUIC client configuration
//! and endpoint built from it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;

use super::error::ClientError;
use crate::wire::ALPN;

/// Events queued for the application at most by default ([`ClientConfig::event_queue`]); past
/// this, the client stops reading from the server (QUIC flow control then pushes back, and a
/// server may close a session that never reads).
pub const EVENT_QUEUE: usize = 4096;

/// Bytes the server may send ahead on one stream by default
/// ([`ClientConfig::stream_receive_window`]).
pub const STREAM_RECEIVE_WINDOW: u32 = 1024 * 1024;

/// The keep-alive interval of [`ClientConfig::mobile`]: under the ~30 s after which carrier
/// NATs forget an idle UDP binding.
pub const MOBILE_KEEP_ALIVE: Duration = Duration::from_secs(25);

/// How long after a declared loss a path still gets tail copies ([`ClientConfig::tail_copy`]).
pub const TAIL_COPY_LOSS_HOLD: Duration = Duration::from_secs(10);

/// How to reach and log in to a server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's UDP address: the first one tried.
    pub server_addr: SocketAddr,
    /// Further servers, tried in order after [`ClientConfig::server_addr`] (see
    /// [`ClientConfig::servers`]): at the first connection when one does not answer within
    /// [`ClientConfig::connect_timeout`], and when reconnecting after a lost connection once the
    /// server it was on does not answer. All of the same address family as `server_addr`.
    /// A session lives on the server that made it: resuming on another single server makes a
    /// new session there (`session_resumed: false`, rooms joined again).
    pub fallback_servers: Vec<SocketAddr>,
    /// The name the server certificate is checked against.
    pub server_name: String,
    /// Trusted CA certificates. Empty: the platform's are not used; add the server's CA.
    pub roots: Vec<CertificateDer<'static>>,
    /// User id.
    pub user_id: String,
    /// Display name.
    pub user_name: String,
    /// Login token.
    pub token: String,
    /// Keep-alive interval (keeps mobile NAT bindings open).
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// How long to keep trying to reconnect and resume after the connection is lost
    /// (`Duration::ZERO`: never reconnect).
    pub reconnect_for: Duration,
    /// Use BBR congestion control instead of CUBIC (experimental in quinn; see BENCHMARKS.md).
    pub bbr: bool,
    /// Send the resumption request in 0-RTT when reconnecting to a server that issued a session
    /// ticket, saving a round trip (the server acts on nothing else before the handshake
    /// completes, so a replay of that flight cannot repeat anything).
    pub zero_rtt: bool,
    /// A connection that was receiving and then gets no data for a second is probed with a
    /// Ping; when neither the answer nor any other data arrives within this long, the client
    /// abandons it and resumes on a new connection (QUIC's own probe timer backs off to seconds
    /// during an outage, so an old connection can stay silent long after the link is back).
    /// Each wait is jittered by ±20%, and stalls within a minute of the last one double it (up
    /// to 8x), so that the clients of an overloaded server do not all come back at once.
    /// `Duration::ZERO` turns the watchdog off.
    pub stall_timeout: Duration,
    /// How long one reconnection attempt (handshake and Resume answer) may take before a fresh
    /// one starts.
    pub connect_timeout: Duration,
    /// Accept low-priority messages as QUIC datagrams (the server then sends a low message that
    /// fits one datagram that way while the connection is otherwise quiet). Either way low
    /// messages reach the application at most once and in increasing seq order per room, with
    /// gaps where one was dropped.
    pub low_datagrams: bool,
    /// Events queued for the application at most (at least 1). An application that stops
    /// calling [`Client::next_event`] fills this queue, then the stream receive windows, and
    /// then the server's queue for it, which closes the connection as a slow consumer. The
    /// library reconnects once the application has taken the events queued before the close
    /// (its `Reconnecting` event waits its turn in this queue), so an application that hangs
    /// for longer than the server's offline grace comes back as a new session.
    ///
    /// [`Client::next_event`]: super::Client::next_event
    pub event_queue: usize,
    /// Bytes the server may send ahead on each stream it opens to this client (QUIC stream flow
    /// control): with [`ClientConfig::event_queue`], what a client that stops reading holds
    /// before the server's queue for it starts to grow.
    pub stream_receive_window: u32,
    /// A small packet (a message sent, a request) that nothing followed for this long and that
    /// is not yet acknowledged is sent again, once, while the path has lost a packet in the last
    /// 10 s: a lost last packet then costs this plus one one-way delay instead of QUIC's probe
    /// timeout and a round trip. A clean path gets no copies. `Duration::ZERO` turns it off.
    pub tail_copy: Duration,
    /// TLS state shared with other clients of this process ([`TlsSessions`]); `None`: this
    /// client's own, which its reconnections share. With a shared one, a new client's first
    /// connection sends its Login in 0-RTT when an earlier client's connection to the same
    /// server left a session ticket, saving a round trip ([`Client::logged_in_early`] says
    /// whether the server took it).
    ///
    /// [`Client::logged_in_early`]: super::Client::logged_in_early
    pub tls_sessions: Option<TlsSessions>,
    /// With [`ClientConfig::tail_copy`], copy every small packet once, not only the last one:
    /// the copies of the packets sent within one `tail_copy` go together in one packet, so that a
    /// lost packet that others followed costs the same as a lost last one.
    pub tail_copy_all: bool,
}

impl ClientConfig {
    /// A configuration with defaults: server name `localhost`, no roots yet.
    pub fn new(server_addr: SocketAddr, user_id: &str, token: &str) -> ClientConfig {
        ClientConfig {
            server_addr,
            fallback_servers: Vec::new(),
            server_name: "localhost".into(),
            roots: Vec::new(),
            user_id: user_id.into(),
            user_name: String::new(),
            token: token.into(),
            // Short enough that a member who only listens tells the server its new address soon
            // after a NAT rebinding, and well under the ~30 s UDP NAT timeouts of mobile networks.
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reconnect_for: Duration::from_secs(60),
            bbr: false,
            zero_rtt: true,
            stall_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            low_datagrams: true,
            event_queue: EVENT_QUEUE,
            stream_receive_window: STREAM_RECEIVE_WINDOW,
            tail_copy: Duration::from_millis(20),
            tls_sessions: None,
            tail_copy_all: true,
        }
    }

    /// A configuration for a phone app (see README, "Mobile apps"): an idle client sends a
    /// keep-alive every 25 s instead of every 5 s (carrier NATs keep a UDP binding for about
    /// 30 s; every packet wakes the radio), with an idle timeout of 60 s so that one lost
    /// keep-alive round is survived (the server's `idle_timeout_s` must be at least that, and
    /// its `keep_alive_s` a little longer than 25 s (28 by default), or its own keep-alives wake the phone too: QUIC takes
    /// the smaller idle timeout of the two sides, and either side's keep-alive timer restarts
    /// on every packet received). A rebinding is then found from the app's
    /// [`Client::network_changed`] call (the platform's connectivity callback) rather than by
    /// frequent probes, and the stall watchdog waits 5 s instead of 2 s, since cellular links
    /// pause for seconds during handovers and a reconnection costs more packets than patience.
    ///
    /// [`Client::network_changed`]: super::Client::network_changed
    pub fn mobile(server_addr: SocketAddr, user_id: &str, token: &str) -> ClientConfig {
        ClientConfig {
            keep_alive: MOBILE_KEEP_ALIVE,
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..ClientConfig::new(server_addr, user_id, token)
        }
    }

    /// A configuration with defaults ([`ClientConfig::new`]) for several servers, tried in this
    /// order; `None` for an empty list.
    pub fn with_servers(
        servers: &[SocketAddr],
        user_id: &str,
        token: &str,
    ) -> Option<ClientConfig> {
        let (first, rest) = servers.split_first()?;
        Some(ClientConfig {
            fallback_servers: rest.to_vec(),
            ..ClientConfig::new(*first, user_id, token)
        })
    }

    /// Every server, in the order they are tried: `server_addr`, then `fallback_servers`.
    pub fn servers(&self) -> Vec<SocketAddr> {
        let mut all = Vec::with_capacity(1 + self.fallback_servers.len());
        all.push(self.server_addr);
        all.extend(&self.fallback_servers);
        all
    }

    /// Trusts the CA certificates of a PEM document (for a development server, `certs/ca.pem`
    /// as `huddle serve` or `huddle certs` made it) and returns how many were added. A document
    /// without a certificate is `pem::Error::NoItemsFound`.
    pub fn trust_pem(&mut self, pem: &[u8]) -> Result<usize, pem::Error> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>()?;
        if certs.is_empty() {
            return Err(pem::Error::NoItemsFound);
        }
        let added = certs.len();
        self.roots.extend(certs);
        Ok(added)
    }
}

/// The TLS session tickets of a process, for clients that come and go: the clients given the
/// same `TlsSessions` (a clone) in [`ClientConfig::tls_sessions`] share one rustls client
/// configuration, and so its session tickets. rustls resumes a ticket only with the very
/// certificate verifier that received it, so a ticket is good for this process only: it does
/// not survive a restart. Clients with other roots or another `zero_rtt` setting get a
/// configuration of their own (replacing the shared one).
#[derive(Clone, Debug, Default)]
pub struct TlsSessions(Arc<Mutex<Option<SharedTls>>>);

/// The shared rustls configuration and what it was built from.
#[derive(Debug)]
struct SharedTls {
    roots: Vec<CertificateDer<'static>>,
    zero_rtt: bool,
    tls: Arc<rustls::ClientConfig>,
}

impl TlsSessions {
    /// An empty store: the first client builds the configuration the others reuse.
    pub fn new() -> TlsSessions {
        TlsSessions::default()
    }

    /// The shared configuration for `cfg`, built (and kept) by `build` unless the one kept
    /// matches `cfg`'s roots and 0-RTT setting.
    fn tls_for(
        &self,
        cfg: &ClientConfig,
        build: impl FnOnce() -> Result<rustls::ClientConfig, ClientError>,
    ) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let mut shared = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*shared {
            if s.roots == cfg.roots && s.zero_rtt == cfg.zero_rtt {
                return Ok(s.tls.clone());
            }
        }
        let tls = Arc::new(build()?);
        *shared =
            Some(SharedTls { roots: cfg.roots.clone(), zero_rtt: cfg.zero_rtt, tls: tls.clone() });
        Ok(tls)
    }
}

/// The QUIC client configuration Huddle clients use.
pub fn quic_client_config(cfg: &ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
    let tls = match &cfg.tls_sessions {
        Some(sessions) => sessions.tls_for(cfg, || tls_config(cfg))?,
        None => Arc::new(tls_config(cfg)?),
    };
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| ClientError::connection(e.to_string()))?;
    let mut qc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut tc = quinn::TransportConfig::default();
    // The server opens one stream per room plus a session stream; allow a few spares for
    // streams that are finishing. The client never accepts bidirectional streams.
    tc.max_concurrent_uni_streams(32u32.into());
    tc.max_concurrent_bidi_streams(0u32.into());
    tc.stream_receive_window(cfg.stream_receive_window.into());
    tc.receive_window((8u32 * 1024 * 1024).into());
    tc.send_window(1024 * 1024);
    tc.keep_alive_interval(Some(cfg.keep_alive));
    tc.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(cfg.idle_timeout)
            .map_err(|e| ClientError::connection(e.to_string()))?,
    ));
    // Datagrams waiting for the application at most (older ones are dropped first).
    tc.datagram_receive_buffer_size(cfg.low_datagrams.then_some(256 * 1024));
    if !cfg.tail_copy.is_zero() {
        tc.tail_copy(Some(cfg.tail_copy));
        tc.tail_copy_after_loss(Some(TAIL_COPY_LOSS_HOLD));
        tc.tail_copy_all(cfg.tail_copy_all);
    }
    if cfg.bbr {
        tc.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    qc.transport_config(Arc::new(tc));
    Ok(qc)
}

/// The rustls configuration of `cfg`: TLS 1.3, its roots, ALPN `huddle/1`, early data when
/// `zero_rtt`.
fn tls_config(cfg: &ClientConfig) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cfg.roots {
        roots.add(ca.clone()).map_err(|e| ClientError::connection(format!("bad CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::connection(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = cfg.zero_rtt;
    Ok(tls)
}

/// A client endpoint bound to an ephemeral port of the right address family.
pub fn client_endpoint(server: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    quinn::Endpoint::client(any_port(server)?).map_err(|e| ClientError::connection(e.to_string()))
}

/// A new UDP socket on an ephemeral port of the right address family, for
/// `quinn::Endpoint::rebind`.
pub(super) fn fresh_socket(server: SocketAddr) -> Result<std::net::UdpSocket, ClientError> {
    std::net::UdpSocket::bind(any_port(server)?)
        .map_err(|e| ClientError::connection(format!("new socket: {e}")))
}

/// Any address, port 0, of `server`'s family.
fn any_port(server: SocketAddr) -> Result<SocketAddr, ClientError> {
    if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .map_err(|_| ClientError::connection("bad bind address"))
}
