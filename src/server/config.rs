//! Server configuration: command-line flags over a TOML file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::Limits;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

/// Everything `huddle serve` can be told. Every field has a default; a TOML file may set any.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Folder of the development CA, certificate, key and token secret.
    pub certs_dir: PathBuf,
    /// Server certificate chain (PEM). With `key`, replaces the development certificate.
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub key: Option<PathBuf>,
    /// Token signing keys. When empty, the key `dev` from `certs_dir/token.secret` is used
    /// (created on first start).
    pub token_keys: Vec<TokenKey>,
    /// Public keys for ES256 and RS256 login JWTs (docs/PROTOCOL.md section 5), each from a PEM
    /// file read at start.
    pub jwt_public_keys: Vec<JwtPublicKey>,
    /// A JSON Web Key Set file (RSA and EC P-256 public keys, each with a `kid`) read at start,
    /// for ES256 and RS256 login JWTs.
    pub jwks_file: Option<PathBuf>,
    /// When set, a login JWT must carry this `aud` (a string, or an array holding it).
    pub jwt_audience: Option<String>,
    /// When set, a login JWT must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// Room core limits.
    pub limits: Limits,
    /// QUIC transport and connection limits.
    pub transport: TransportLimits,
    /// Per-connection outbound queue bounds.
    pub queue: QueueLimits,
    /// The admin HTTP listener (admin API, metrics, health); off unless `listen` is set.
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// Accept WebTransport sessions (ALPN `h3`, `https://HOST:PORT/huddle`) on the UDP port
    /// beside native connections (docs/PROTOCOL.md, "WebTransport").
    pub web_transport: bool,
    /// The web listener (HTTP/1, TCP): the demo page and `/config.json`; off unless set.
    pub web_listen: Option<SocketAddr>,
    /// Origins a WebTransport session may come from (exact `scheme://host[:port]`, or `*`).
    /// Empty: loopback origins with the development certificate, none with `cert`/`key`.
    pub web_origins: Vec<String>,
    /// This node's id, 0 to 1023, when several servers serve the same clients (a client with
    /// a server list, a cluster): session and message ids are then `node_id << 43` plus a
    /// counter, so that ids made by nodes with different ids never collide (docs/PROTOCOL.md,
    /// "Ids"). Unset: the single-server layout (start time in ms x 1,000).
    pub node_id: Option<u16>,
    /// A file of 64 random bytes (hex) the QUIC stateless-reset key and Retry token key are
    /// derived from; servers that share it can reset and validate each other's connections.
    /// Unset: `certs_dir/quic.secret` when it exists, made on first start with the
    /// development certificate, else fresh keys per process.
    pub quic_secret_file: Option<PathBuf>,
    /// Cluster mode: rooms shared with other nodes through NATS JetStream (README, "Running a
    /// cluster"); needs a build with the `cluster` feature. Unset: a single node.
    pub cluster: Option<ClusterConfig>,
}

/// The `[cluster]` table: how to reach NATS and lay the cluster out on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS seed URLs, for example `nats://127.0.0.1:4222`.
    pub nats: Vec<String>,
    /// Prefix of every stream, bucket and subject (`[A-Za-z0-9_-]+`), so that several clusters
    /// can share one NATS.
    pub prefix: String,
    /// Room-log streams; fixed at the cluster's first start.
    pub shards: u32,
    /// JetStream replicas of every stream: 1 for one nats-server, 3 in production.
    pub replicas: usize,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// A PEM file of CA certificates to verify the NATS servers with; implies TLS.
    pub tls_ca: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            prefix: "huddle".into(),
            shards: 1,
            replicas: 1,
            credentials: None,
            tls_ca: None,
        }
    }
}

/// The admin HTTP listener: the admin API under `/v1`, Prometheus metrics at `/metrics`, and
/// `/healthz` and `/readyz`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// TCP address to listen on; none (the default) leaves the listener off.
    pub listen: Option<SocketAddr>,
    /// The bearer secret of the admin API (at least 16 bytes). The `HUDDLE_ADMIN_TOKEN`
    /// environment variable overrides it; the server refuses to start a listener without one.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Open TCP connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Open TCP connections per client IP address at most (below `max_connections`, so that
    /// one address cannot take them all).
    pub max_per_address: usize,
    /// Seconds a request's header has to arrive in full, counted from when the listener
    /// starts waiting for it: after the connection is accepted, and between the requests of
    /// a kept-alive connection (so this also bounds an idle connection).
    pub header_timeout_s: u64,
    /// Seconds a request has, from the end of its header, for its body to arrive and its
    /// answer to be made; past it the answer is 408 with a JSON error body.
    pub body_timeout_s: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            max_connections: 256,
            max_per_address: 32,
            header_timeout_s: 5,
            body_timeout_s: 10,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| "<secret>");
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &token)
            .field("max_connections", &self.max_connections)
            .field("max_per_address", &self.max_per_address)
            .field("header_timeout_s", &self.header_timeout_s)
            .field("body_timeout_s", &self.body_timeout_s)
            .finish()
    }
}

/// Logging: level and format of the server's log lines (on stderr).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (for example `info` or `huddle=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (human-readable, the default) or `json` (one JSON object per line).
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into() }
    }
}

/// A token signing key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    /// Key id, 1-32 of `[A-Za-z0-9_-]`.
    pub id: String,
    /// The secret, hex-encoded (at least 16 bytes).
    pub secret_hex: String,
}

/// A public key for login JWTs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtPublicKey {
    /// Key id: a JWT whose header names it is checked with this key only (1-128 printable
    /// ASCII characters, unique among all the keys).
    pub kid: String,
    /// `ES256` (an EC P-256 key) or `RS256` (an RSA key of 2048 bits or more).
    pub alg: String,
    /// The public key, PEM (`PUBLIC KEY`, or for RSA also `RSA PUBLIC KEY`).
    pub pem_file: PathBuf,
}

/// QUIC transport settings and connection caps.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportLimits {
    /// Idle timeout: a connection silent this long is dead (also bounds the handshake). QUIC
    /// uses the smaller of both sides' values: Huddle's default client asks for 30 s, its
    /// mobile profile (`ClientConfig::mobile`) for 60 s, which this must not cut short.
    pub idle_timeout_s: u64,
    /// Keep-alive interval (at most half the idle timeout); under the ~30 s UDP NAT timeouts
    /// of mobile networks, and a little longer than the mobile profile's 25 s: each side's
    /// timer restarts on every packet it receives, so the shorter one sets how often an idle
    /// phone's radio wakes, and two equal ones fire together (a round trip apart) and double
    /// the packets.
    pub keep_alive_s: u64,
    /// Seconds a new connection has to log in.
    pub login_timeout_s: u64,
    /// Seconds the rest of a frame has to arrive once its first byte has.
    pub frame_timeout_s: u64,
    /// Seconds a QUIC handshake has to complete (the connection is dropped otherwise).
    pub handshake_timeout_s: u64,
    /// Above this many new connection attempts per second, an attempt from an address that has
    /// not been validated gets a QUIC Retry (address validation: one more round trip, and
    /// spoofed source addresses get nothing but the Retry). 0: always validate.
    pub retry_above_handshakes_per_s: u32,
    /// Connections at once, in total.
    pub max_connections: usize,
    /// Connections at once from one client address, an IPv4 address or an IPv6 /64 (0: no
    /// per-address cap).
    pub max_connections_per_ip: usize,
    /// Handshakes in progress at once (quinn `max_incoming`).
    pub max_incoming: usize,
    /// Bytes of unacknowledged data the server buffers per connection (quinn `send_window`).
    pub send_window: u64,
    /// Bytes a client may send on its control stream ahead of the server reading it.
    pub stream_receive_window: u32,
    /// Bytes a client may send on a connection ahead of the server reading it.
    pub receive_window: u32,
    /// UDP socket send and receive buffer size in bytes (0: the OS default).
    pub socket_buffer_bytes: usize,
    /// Benchmark baseline only: carry every room's events on one ordered stream per
    /// connection (as a TCP-based system must), instead of one stream per room.
    pub single_event_stream: bool,
    /// Congestion controller for server-to-client traffic: "cubic" (the default),
    /// "loss-tolerant" (CUBIC that keeps its window through a loss that came without queueing
    /// delay while recent loss stays under 15%: `huddle::congestion`; a lower tail on a lossy
    /// last mile, BENCHMARKS.md "Copies of every small packet"), "bbr" (quinn's experimental
    /// BBR: it keeps rooms flowing at 5% loss where CUBIC falls behind, but stalled connections
    /// for tens of seconds in our lossy tests; see BENCHMARKS.md) or "newreno".
    pub congestion: String,
    /// Accept 0-RTT: a returning client's resumption (or login) travels in its first flight and
    /// is answered one round trip sooner. Only Login and Resume are acted on before the handshake
    /// completes; every later request waits for it, so a replayed flight never applies anything
    /// twice (and the single-use session tickets refuse the replay's early data outright).
    pub zero_rtt: bool,
    /// TLS session tickets remembered for resumption and 0-RTT (each used at most once).
    pub tls_session_cache: usize,
    /// Send a low-priority room message as a QUIC DATAGRAM to a client that accepts them, when
    /// the connection has nothing else waiting and the message fits one datagram (otherwise it
    /// goes on the room's low stream, as to clients without datagram support).
    pub low_datagrams: bool,
    /// Ask clients (QUIC ACK frequency extension) to acknowledge only every this many + 1
    /// ack-eliciting packets (or after their max ACK delay, 25 ms at most on a short path):
    /// fewer ACK packets for both ends to send, receive and process on busy connections. 1 is
    /// QUIC's usual every-other-packet; 0 leaves the clients' own setting.
    pub ack_eliciting_threshold: u32,
    /// With `ack_eliciting_threshold` on (above 0): once the server declares a packet to a client
    /// lost, it asks that client for QUIC's usual ACK rate (every other packet, and at once for
    /// any gap) until this many milliseconds pass without a loss. Sparse ACKs cost latency on
    /// a lossy path and save nothing there. 0: keep the threshold whatever the loss.
    pub ack_loss_fallback_ms: u64,
    /// With `ack_eliciting_threshold` on: the longest a client may hold back an ACK, in
    /// milliseconds, once the path has proved clean (`ack_max_delay_after_packets`). Longer
    /// lets a client that receives a few messages per delay acknowledge several in one packet;
    /// a lost last message is probed for that much later. 0: the clients' own throughout
    /// (quinn's: 25 ms).
    pub ack_max_delay_ms: u64,
    /// `ack_max_delay_ms` is asked of a client only after this many of the server's packets to
    /// it were acknowledged with none lost (counted again from 0 after each loss). With
    /// independent losses at any rate, at most 1 / (e × this) of packets (0.07% at 500) are
    /// lost while the longer delay is in use, so a lossy path keeps the clients' own delay.
    pub ack_max_delay_after_packets: u64,
    /// Milliseconds after which a small message packet to a client that nothing followed and
    /// that is not yet acknowledged is sent again, once, while the path has lost a packet in
    /// the last 10 s (quinn-proto `tail_copy`, vendor patch 0008): a lost last message then
    /// costs this plus one one-way delay instead of a probe timeout and a round trip. No copies
    /// on a clean path. 0: off.
    pub tail_copy_ms: u64,
    /// With `tail_copy_ms`, copy every small message packet to a client once, not only the
    /// last one (quinn-proto `tail_copy_all`, vendor patch 0009): the copies of the packets sent
    /// within one `tail_copy_ms` go together in one packet (at most 1000 B of them). A loss that
    /// later packets follow then also costs `tail_copy_ms` plus one one-way delay, not a round
    /// trip and the loss detection's time threshold. Only on a path that lost a packet in the
    /// last 10 s.
    pub tail_copy_all: bool,
}

/// Bounds of each connection's outbound queue (all its streams together).
///
/// Past half of either bound, low-priority messages for that connection are dropped; past the
/// bound the connection is closed with `slow_consumer` and the client is expected to reconnect.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLimits {
    /// Queued bytes at most.
    pub max_bytes: usize,
    /// Queued frames at most.
    pub max_frames: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            certs_dir: PathBuf::from("certs"),
            cert: None,
            key: None,
            token_keys: Vec::new(),
            jwt_public_keys: Vec::new(),
            jwks_file: None,
            jwt_audience: None,
            jwt_issuer: None,
            limits: Limits::default(),
            transport: TransportLimits::default(),
            queue: QueueLimits::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            web_transport: true,
            web_listen: None,
            web_origins: Vec::new(),
            node_id: None,
            quic_secret_file: None,
            cluster: None,
        }
    }
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            idle_timeout_s: 60,
            keep_alive_s: 28,
            login_timeout_s: 5,
            frame_timeout_s: 10,
            handshake_timeout_s: 10,
            retry_above_handshakes_per_s: 200,
            max_connections: 200_000,
            max_connections_per_ip: 10_000,
            max_incoming: 1_024,
            send_window: 1024 * 1024,
            stream_receive_window: 128 * 1024,
            receive_window: 256 * 1024,
            socket_buffer_bytes: 4 * 1024 * 1024,
            single_event_stream: false,
            congestion: "cubic".into(),
            zero_rtt: true,
            tls_session_cache: 16_384,
            low_datagrams: true,
            ack_eliciting_threshold: 9,
            ack_loss_fallback_ms: 2000,
            ack_max_delay_ms: 200,
            ack_max_delay_after_packets: 500,
            tail_copy_ms: 20,
            tail_copy_all: true,
        }
    }
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { max_bytes: 8 * 1024 * 1024, max_frames: 16_384 }
    }
}

/// Bytes of datagrams quinn may hold per connection. Only one waits at a time (the outbox sends
/// one only when none is waiting); this is room for one of the largest.
pub const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;

/// What [`ServerConfig::to_toml_redacted`] prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// What one connection's QUIC and session state costs the server at most, beyond the byte
/// budgets below (measured at 30-50 KB per idle connection, BENCHMARKS.md; rounded up).
pub const CONNECTION_FIXED_BYTES: u64 = 64 * 1024;

impl ServerConfig {
    /// The most memory one connection can make the server hold, in bytes: its outbound queue
    /// (`queue.max_bytes`), the unacknowledged data QUIC keeps for retransmission
    /// (`send_window`), what the client may send ahead of the server reading
    /// (`receive_window`, which covers the control stream's window), one request frame being
    /// assembled ([`crate::wire::MAX_CLIENT_FRAME_LEN`]), and the fixed per-connection state
    /// ([`CONNECTION_FIXED_BYTES`]). SECURITY.md explains each term.
    pub fn connection_memory_ceiling(&self) -> u64 {
        self.queue.max_bytes as u64
            + self.transport.send_window
            + u64::from(self.transport.receive_window)
            + crate::wire::MAX_CLIENT_FRAME_LEN as u64
            + if self.transport.low_datagrams { DATAGRAM_SEND_BUFFER as u64 } else { 0 }
            + CONNECTION_FIXED_BYTES
    }

    /// The configuration as TOML that [`ServerConfig::from_file`] reads back, with every secret
    /// (token key secrets, the admin token) replaced by [`REDACTED`]: what `huddle serve
    /// --print-config` prints. Fails only for a path that is not UTF-8.
    pub fn to_toml_redacted(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        if let Some(keys) = value.get_mut("token_keys").and_then(toml::Value::as_array_mut) {
            for key in keys.iter_mut().filter_map(toml::Value::as_table_mut) {
                key.insert("secret_hex".into(), REDACTED.into());
            }
        }
        if self.admin.token.is_some() {
            if let Some(admin) = value.get_mut("admin").and_then(toml::Value::as_table_mut) {
                admin.insert("token".into(), REDACTED.into());
            }
        }
        toml::to_string_pretty(&value)
    }

    /// Reads a TOML file; unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|error: toml::de::Error| {
            let at = error.span().map_or(0, |s| s.start).min(text.len());
            let before = text.get(..at).unwrap_or(&text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            ConfigError::Parse { path: path.into(), line, column, error: Box::new(error) }
        })
    }
}

/// A configuration that cannot be read or that the server cannot run with. The file's own
/// errors are found when it is read ([`ServerConfig::from_file`]); the settings' values are
/// checked when a server is bound with them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("reading {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key or a bad value. The
    /// message is one line: `FILE:LINE:COLUMN: not a valid configuration: WHAT`.
    #[error("{}:{line}:{column}: not a valid configuration: {}", .path.display(), .error.message())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line of the error in the file, from 1.
        line: usize,
        /// The column of the error in its line, from 1.
        column: usize,
        /// What is wrong (its `Display` adds the offending line of the file).
        error: Box<toml::de::Error>,
    },
    /// `cert` without `key`, or `key` without `cert`.
    #[error("--cert and --key go together")]
    CertWithoutKey,
    /// A token key's secret is not hex.
    #[error("token key {id}: secret_hex is not hex")]
    TokenKeyNotHex {
        /// The key id.
        id: String,
        /// Why.
        source: hex::FromHexError,
    },
    /// A token key's secret is shorter than 16 bytes.
    #[error("token key {id}: a secret needs at least 16 bytes")]
    TokenKeyTooShort {
        /// The key id.
        id: String,
    },
    /// A token key id is not 1-32 of `[A-Za-z0-9_-]`.
    #[error("token key id {id:?} is not 1-32 of [A-Za-z0-9_-]")]
    TokenKeyId {
        /// The key id.
        id: String,
    },
    /// A JWT public key's `alg` is not `ES256` or `RS256`.
    #[error("jwt public key {kid}: alg {alg:?} is not ES256 or RS256")]
    JwtAlg {
        /// The key id.
        kid: String,
        /// The configured alg.
        alg: String,
    },
    /// A JWT key file (a public key's PEM file or the JWKS file) cannot be read or used.
    #[error("{}: {reason}", .path.display())]
    JwtKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `idle_timeout_s` is beyond what QUIC can carry.
    #[error("idle_timeout_s {secs} is too large")]
    IdleTimeout {
        /// The value.
        secs: u64,
        /// Why.
        source: quinn::VarIntBoundsExceeded,
    },
    /// `ack_max_delay_ms` is 2^14 ms or more (RFC 9000 18.2).
    #[error("ack_max_delay_ms {0} is not below 16384")]
    AckMaxDelay(u64),
    /// `congestion` names no congestion controller.
    #[error("unknown congestion controller {0:?}: cubic, loss-tolerant, bbr or newreno")]
    Congestion(String),
    /// `node_id` is above 1023 (10 bits).
    #[error("node_id {0} is above 1023")]
    NodeId(u16),
    /// The admin listener is configured without a good enough bearer token.
    #[error(
        "the admin listener needs a bearer token of at least {min_bytes} bytes: set [admin] \
         token in the config file or HUDDLE_ADMIN_TOKEN"
    )]
    AdminToken {
        /// The shortest token accepted.
        min_bytes: usize,
    },
}
