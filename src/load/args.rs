//! The flags of `huddle load` and the resolved configuration of a run.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::auth::KeySet;
use crate::wire::Priority;

/// `huddle load`: an open-loop load generator for a Huddle server.
///
/// Every member is its own QUIC connection. Publishers send at fixed intended times whatever
/// happened before, and latency is measured from the intended time carried in each message, so
/// a stalled server shows up as latency instead of as a lower send rate.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Members per room; each member is its own QUIC connection.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Members of each room that publish (the first ones).
    #[arg(long, default_value_t = 1)]
    pub publishers_per_room: usize,
    /// Rooms each member's connection is in: member j of room i also joins rooms
    /// i+1 .. i+K-1 (mod rooms) and receives their messages (it publishes only to room i).
    /// At most --rooms; the server's `rooms_per_user` limit must allow K (a spawned server's
    /// is raised to K).
    #[arg(long, default_value_t = 1)]
    pub rooms_per_member: usize,
    /// Messages per second per room, split evenly across its publishers.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Message body size in bytes (at least 20: the intended time, publisher and number).
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Message priority: low, medium or high.
    #[arg(long, default_value = "medium", value_parser = parse_priority)]
    pub priority: Priority,
    /// Low-priority messages per second each publisher sends besides its own (at
    /// --priority), from the start of sending to its end: a flood beside the measured traffic,
    /// on the same connections. They carry no stamp of this run: receivers count them as
    /// `foreign_messages`, and the latency figures are the measured traffic's alone.
    #[arg(long, default_value_t = 0.0)]
    pub low_flood: f64,
    /// Body size of the --low-flood messages, bytes.
    #[arg(long, default_value_t = 1000)]
    pub low_flood_size: usize,
    /// Seconds of sending before the measured window (counted for loss, not for latency).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds of the measured window (with --connections-only: seconds to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last send for acks and deliveries before counting.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Address of a running server.
    /// Several, comma-separated (A,B,C): members are spread over them round-robin (member i
    /// starts on server i mod N, then tries the others in order).
    #[arg(long, conflicts_with = "spawn_server", value_delimiter = ',', num_args = 1)]
    pub server: Vec<SocketAddr>,
    /// Start `huddle serve` (this executable) on 127.0.0.1:0 with a temporary configuration and
    /// certificates, and kill it at the end.
    #[arg(long)]
    pub spawn_server: bool,
    /// A server TOML configuration the spawned server starts from (listen address,
    /// certificates, rate limit off and room for every member are still set on top), e.g. one
    /// with `[transport] single_event_stream = true` for the single-stream baseline.
    #[arg(long, requires = "spawn_server")]
    pub server_config: Option<PathBuf>,
    /// Run the spawned server under `taskset -c CPUS`.
    #[arg(long, requires = "spawn_server")]
    pub server_taskset: Option<String>,
    /// The `huddle` executable the spawned server runs (default: this one): to compare two
    /// builds of the server under the same load generator, or two load generators against the
    /// same server.
    #[arg(long, requires = "spawn_server")]
    pub server_exe: Option<PathBuf>,
    /// Process id of an external server, for its CPU time and memory.
    #[arg(long, conflicts_with = "spawn_server")]
    pub server_pid: Option<u32>,
    /// Folder with ca.pem (trusted) and token.secret (tokens are minted with key id `dev`).
    #[arg(long, default_value = "certs")]
    pub certs_dir: PathBuf,
    /// Seed of the send phases and of the network simulator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a JSON summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw latency percentiles and deliveries per second over time as an SVG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Impair the link with an in-process proxy, e.g. "loss=0.05,delay-ms=20,jitter-ms=5".
    /// Keys as `huddle netsim`, plus rebind-at=SECS (after the start of sending; repeatable),
    /// and loss-to-server / loss-to-client, which replace `loss` on one direction.
    /// Blackhole windows count from the proxy's start, before connecting.
    #[arg(long)]
    pub netsim: Option<String>,
    /// The schedule `huddle ipsim --schedule FILE` wrote, when this run crosses its link (any
    /// backend): its blackholes are measured (catch-up) and at each address change the
    /// members are told the network changed (Redis and NATS reconnect at once, as a mobile
    /// client told by its OS would; QUIC migrates) and the time to their first delivery after
    /// it is measured.
    #[arg(long)]
    pub ipsim_schedule: Option<PathBuf>,
    /// Only open rooms x members idle logged-in connections and measure their cost.
    #[arg(long)]
    pub connections_only: bool,
    /// Instead of the fan-out, time N new members one after another from their start (a new
    /// socket and connection, as an app that starts) to logged in, in the room and the first
    /// message received, while a member already in the room publishes every 10 ms. Any
    /// backend; across `--netsim` or `huddle ipsim` for a real round trip.
    #[arg(long, default_value_t = 0)]
    pub startup: usize,
    /// With --startup, Huddle: each new member first connects and logs in once, closes, and
    /// keeps the session ticket (`ClientConfig::tls_sessions`), so that its timed login
    /// travels in 0-RTT.
    #[arg(long, requires = "startup")]
    pub zero_rtt: bool,
    /// Clients use BBR congestion control instead of CUBIC (pair with a server config of
    /// `[transport] congestion = "bbr"`).
    #[arg(long)]
    pub client_bbr: bool,
    /// The client library's stall watchdog: a connection that stops receiving is probed and,
    /// with no answer within this many milliseconds, abandoned for a resumed one (0: off).
    #[arg(long, default_value_t = 2_000)]
    pub client_stall_timeout_ms: u64,
    /// The client library's tail copy (`ClientConfig::tail_copy`) in milliseconds (0: off).
    #[arg(long, default_value_t = 20)]
    pub client_tail_copy_ms: u64,
    /// The client library's `ClientConfig::tail_copy_all`: copy every small packet, not only
    /// the last one.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub client_tail_copy_all: bool,
    /// Clients send their Resume in 0-RTT when they can (`false`: always a full handshake).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub client_zero_rtt: bool,
    /// Connections per client UDP endpoint (each endpoint is its own socket).
    #[arg(long, default_value_t = 128)]
    pub connections_per_endpoint: usize,
    /// Send and receive buffer size of each client socket, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub socket_buffer_bytes: usize,
    /// Connection handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// The system under test: huddle, or (built with the `compare` feature) redis (pub/sub,
    /// room = channel) or nats (core NATS, room = subject), each member its own TCP
    /// connection to `--server`. See benches/compare/start.sh.
    #[arg(long, default_value = "huddle", value_parser = parse_backend)]
    pub backend: Backend,
    /// Redis and NATS only: connect without TLS (their best case). By default they connect
    /// with TLS, trusting `--certs-dir`/ca.pem, as Huddle always does.
    #[arg(long)]
    pub plaintext: bool,
    /// Members that stop reading their events at the end of the warm-up (a phone app that
    /// hangs): a fraction of all members below 1 (0.01: 1%), a count from 1. Never publishers;
    /// taken from the last members of each room in turn. They are left out of the others'
    /// deliveries, loss and latency and reported on their own (`stalled` in the JSON): how many
    /// the server closed as slow consumers (7000), and how many came back. Huddle only.
    #[arg(long, default_value_t = 0.0)]
    pub stalled_members: f64,
    /// Events the stalled members' client library queues for the application (default: the
    /// library's 4096). With `--stalled-stream-window`, how much a stalled member holds before
    /// the server's queue for it starts to grow.
    #[arg(long)]
    pub stalled_event_queue: Option<usize>,
    /// The stalled members' QUIC stream receive window in bytes (default: the library's 1 MiB).
    #[arg(long)]
    pub stalled_stream_window: Option<u32>,
    /// Members of each room that connect as a browser does, over WebTransport (ALPN `h3`, a
    /// CONNECT to `/huddle`, the native frames on the session's streams) instead of the client
    /// library: the last N of each room (all of it: the publishers too). Huddle only.
    #[arg(long, default_value_t = 0)]
    pub web_members: usize,
    /// The SHA-256 (hex) of the certificate the server presents to WebTransport clients, for
    /// `--web-members` against an external server (its log and `/config.json` give it); a
    /// spawned server prints it.
    #[arg(long)]
    pub web_cert_hash: Option<String>,
}

/// The system a run drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A Huddle server, through the client library (QUIC).
    #[default]
    Huddle,
    /// Redis 7 pub/sub over RESP3 (needs the `compare` feature).
    Redis,
    /// NATS 2.9 core publish/subscribe (needs the `compare` feature).
    Nats,
}

impl Backend {
    /// The name used on the command line and in the JSON summary.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Huddle => "huddle",
            Backend::Redis => "redis",
            Backend::Nats => "nats",
        }
    }
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "huddle" => Ok(Backend::Huddle),
        "redis" => Ok(Backend::Redis),
        "nats" => Ok(Backend::Nats),
        _ => Err(format!("{s:?}: expected huddle, redis or nats")),
    }
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::from_name(s).ok_or_else(|| format!("{s:?}: expected low, medium or high"))
}

/// Trust material for a server started in the same process (tests): the CA to trust and the
/// keys to mint tokens with, instead of reading them from `certs_dir`.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The CA certificate the server's certificate chains to.
    pub ca: CertificateDer<'static>,
    /// Token keys the server accepts.
    pub keys: KeySet,
    /// Which of `keys` to mint with.
    pub key_id: String,
}

/// Everything a run needs. [`LoadArgs`] converts into it; tests build it directly.
#[derive(Clone, Debug, Serialize)]
pub struct LoadConfig {
    /// Rooms.
    pub rooms: usize,
    /// Members per room.
    pub members: usize,
    /// Publishers per room.
    pub publishers_per_room: usize,
    /// Rooms each member is in (its own and the next K-1).
    pub rooms_per_member: usize,
    /// Messages per second per room.
    pub rate: f64,
    /// Body size in bytes.
    pub size: usize,
    /// Message priority.
    pub priority: Priority,
    /// Low-priority flood messages per second per publisher (0: none).
    pub low_flood: f64,
    /// Their body size in bytes.
    pub low_flood_size: usize,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds (hold seconds with `connections_only`).
    pub duration_s: f64,
    /// Drain seconds at most.
    pub drain_s: f64,
    /// A running server's address.
    pub server: Option<SocketAddr>,
    /// Further running servers: members are spread over `server` and these round-robin.
    pub more_servers: Vec<SocketAddr>,
    /// Whether to spawn the server.
    pub spawn_server: bool,
    /// The executable to spawn as the server (default: this one).
    pub server_exe: Option<PathBuf>,
    /// Base TOML configuration of the spawned server.
    pub server_config: Option<PathBuf>,
    /// CPU list for `taskset -c` of the spawned server.
    pub server_taskset: Option<String>,
    /// An external server's pid.
    pub server_pid: Option<u32>,
    /// Folder with ca.pem and token.secret.
    pub certs_dir: PathBuf,
    /// Seed.
    pub seed: u64,
    /// JSON summary path.
    pub json: Option<PathBuf>,
    /// SVG plot path.
    pub plot: Option<PathBuf>,
    /// Network simulator spec.
    pub netsim: Option<String>,
    /// `huddle ipsim`'s schedule file.
    pub ipsim_schedule: Option<PathBuf>,
    /// Idle connections only.
    pub connections_only: bool,
    /// New members to time from their start (0: the fan-out instead).
    pub startup: usize,
    /// With `startup`: each new member keeps a session ticket from a first connection.
    pub zero_rtt: bool,
    /// Clients use BBR.
    pub client_bbr: bool,
    /// Client stall watchdog timeout in milliseconds (0: off).
    pub client_stall_timeout_ms: u64,
    /// Client tail copy in milliseconds (0: off).
    pub client_tail_copy_ms: u64,
    /// Clients copy every small packet, not only the last one.
    pub client_tail_copy_all: bool,
    /// Clients resume in 0-RTT when they can.
    pub client_zero_rtt: bool,
    /// Connections per client endpoint.
    pub connections_per_endpoint: usize,
    /// Client socket buffer bytes.
    pub socket_buffer_bytes: usize,
    /// Handshakes in progress at once.
    pub connect_concurrency: usize,
    /// The system under test.
    pub backend: Backend,
    /// Redis and NATS: without TLS.
    pub plaintext: bool,
    /// Members that stop reading after the warm-up: a fraction below 1, a count from 1.
    pub stalled_members: f64,
    /// The stalled members' client event queue (None: the library's default).
    pub stalled_event_queue: Option<usize>,
    /// The stalled members' stream receive window in bytes (None: the library's default).
    pub stalled_stream_window: Option<u32>,
    /// Members of each room that connect over WebTransport: the last N.
    pub web_members: usize,
    /// The SHA-256 (hex) of the server's WebTransport certificate.
    pub web_cert_hash: Option<String>,
    /// Whether to draw a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Trust material for an in-process server; overrides `certs_dir`.
    #[serde(skip)]
    pub trust: Option<Trust>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            rooms: 1,
            members: 10,
            publishers_per_room: 1,
            rooms_per_member: 1,
            rate: 10.0,
            size: 200,
            priority: Priority::Medium,
            low_flood: 0.0,
            low_flood_size: 1000,
            warmup_s: 2.0,
            duration_s: 10.0,
            drain_s: 2.0,
            server: None,
            more_servers: Vec::new(),
            spawn_server: false,
            server_exe: None,
            server_config: None,
            server_taskset: None,
            server_pid: None,
            certs_dir: PathBuf::from("certs"),
            seed: 1,
            json: None,
            plot: None,
            netsim: None,
            ipsim_schedule: None,
            connections_only: false,
            startup: 0,
            zero_rtt: false,
            client_bbr: false,
            client_stall_timeout_ms: 2_000,
            client_tail_copy_ms: 20,
            client_tail_copy_all: true,
            client_zero_rtt: true,
            connections_per_endpoint: 128,
            socket_buffer_bytes: 8 * 1024 * 1024,
            connect_concurrency: 64,
            backend: Backend::Huddle,
            plaintext: false,
            stalled_members: 0.0,
            stalled_event_queue: None,
            stalled_stream_window: None,
            web_members: 0,
            web_cert_hash: None,
            progress: false,
            trust: None,
        }
    }
}

impl From<LoadArgs> for LoadConfig {
    fn from(a: LoadArgs) -> Self {
        LoadConfig {
            rooms: a.rooms,
            members: a.members,
            publishers_per_room: a.publishers_per_room,
            rooms_per_member: a.rooms_per_member,
            rate: a.rate,
            size: a.size,
            priority: a.priority,
            low_flood: a.low_flood,
            low_flood_size: a.low_flood_size,
            warmup_s: a.warmup,
            duration_s: a.duration,
            drain_s: a.drain,
            server: a.server.first().copied(),
            more_servers: a.server.get(1..).unwrap_or_default().to_vec(),
            spawn_server: a.spawn_server,
            server_exe: a.server_exe,
            server_config: a.server_config,
            server_taskset: a.server_taskset,
            server_pid: a.server_pid,
            certs_dir: a.certs_dir,
            seed: a.seed,
            json: a.json,
            plot: a.plot,
            netsim: a.netsim,
            ipsim_schedule: a.ipsim_schedule,
            connections_only: a.connections_only,
            startup: a.startup,
            zero_rtt: a.zero_rtt,
            client_bbr: a.client_bbr,
            client_stall_timeout_ms: a.client_stall_timeout_ms,
            client_tail_copy_ms: a.client_tail_copy_ms,
            client_tail_copy_all: a.client_tail_copy_all,
            client_zero_rtt: a.client_zero_rtt,
            connections_per_endpoint: a.connections_per_endpoint,
            socket_buffer_bytes: a.socket_buffer_bytes,
            connect_concurrency: a.connect_concurrency,
            backend: a.backend,
            plaintext: a.plaintext,
            stalled_members: a.stalled_members,
            stalled_event_queue: a.stalled_event_queue,
            stalled_stream_window: a.stalled_stream_window,
            web_members: a.web_members,
            web_cert_hash: a.web_cert_hash,
            progress: true,
            trust: None,
        }
    }
}

/// Most connections one run opens.
pub const MAX_CONNECTIONS: usize = 200_000;
/// Longest run, warm-up, measured window and drain together, in seconds.
pub const MAX_RUN_S: f64 = 3_600.0;
/// Most new members `--startup` times.
pub const MAX_STARTUP: usize = 1_000;
/// Most messages one run may send in total.
pub const MAX_MESSAGES: f64 = 100_000_000.0;

impl LoadConfig {
    /// Total connections.
    pub fn connections(&self) -> usize {
        self.rooms.saturating_mul(self.members)
    }

    /// Checks that the run is bounded and makes sense.
    pub fn validate(&self) -> Result<()> {
        let n = self.connections();
        if self.rooms == 0 || self.members == 0 {
            return Err(anyhow!("--rooms and --members must be at least 1"));
        }
        if n > MAX_CONNECTIONS {
            return Err(anyhow!("{n} connections is over the limit of {MAX_CONNECTIONS}"));
        }
        if self.server.is_none() && !self.spawn_server {
            return Err(anyhow!("give --server ADDR or --spawn-server"));
        }
        if !self.more_servers.is_empty()
            && (self.netsim.is_some() || self.backend != Backend::Huddle)
        {
            return Err(anyhow!(
                "several --server addresses need the huddle backend without --netsim"
            ));
        }
        for (name, v) in
            [("warmup", self.warmup_s), ("duration", self.duration_s), ("drain", self.drain_s)]
        {
            if !v.is_finite() || v < 0.0 {
                return Err(anyhow!("--{name} must be a number of seconds >= 0"));
            }
        }
        if self.warmup_s + self.duration_s + self.drain_s > MAX_RUN_S {
            return Err(anyhow!("warm-up, duration and drain together are over {MAX_RUN_S} s"));
        }
        if self.connect_concurrency == 0 || self.connections_per_endpoint == 0 {
            return Err(anyhow!(
                "--connect-concurrency and --connections-per-endpoint must be > 0"
            ));
        }
        if self.backend != Backend::Huddle {
            if !cfg!(feature = "compare") {
                return Err(anyhow!(
                    "--backend {}: this huddle was built without the `compare` feature \
                     (cargo build --release --features compare)",
                    self.backend.name()
                ));
            }
            if self.spawn_server || self.server.is_none() {
                return Err(anyhow!(
                    "--backend {} needs --server ADDR (benches/compare/start.sh starts one)",
                    self.backend.name()
                ));
            }
            if self.netsim.is_some() || self.connections_only || self.stalled_members != 0.0 {
                return Err(anyhow!(
                    "--netsim, --connections-only and --stalled-members are Huddle-only"
                ));
            }
        } else if self.plaintext {
            return Err(anyhow!("--plaintext is for --backend redis or nats (Huddle is QUIC)"));
        }
        if self.web_members > 0 {
            if self.backend != Backend::Huddle || self.web_members > self.members {
                return Err(anyhow!("--web-members must be 0..=members, with Huddle"));
            }
            if self.netsim.is_some() || self.ipsim_schedule.is_some() || self.stalled_members > 0.0
            {
                return Err(anyhow!(
                    "--web-members goes without --netsim, --ipsim-schedule and --stalled-members"
                ));
            }
        }
        if self.startup > 0 {
            if self.startup > MAX_STARTUP {
                return Err(anyhow!("--startup is at most {MAX_STARTUP}"));
            }
            if self.connections_only || self.web_members > 0 || self.stalled_members > 0.0 {
                return Err(anyhow!(
                    "--startup goes without --connections-only, --web-members and \
                     --stalled-members"
                ));
            }
            if self.zero_rtt && (self.backend != Backend::Huddle || !self.client_zero_rtt) {
                return Err(anyhow!("--zero-rtt is Huddle's, with --client-zero-rtt true"));
            }
            return Ok(());
        } else if self.zero_rtt {
            return Err(anyhow!("--zero-rtt goes with --startup"));
        }
        if self.connections_only {
            return Ok(());
        }
        if self.members < 2 {
            return Err(anyhow!("a room needs at least 2 members for anyone to receive"));
        }
        if self.rooms_per_member == 0 || self.rooms_per_member > self.rooms {
            return Err(anyhow!("--rooms-per-member must be 1..=rooms"));
        }
        if self.publishers_per_room == 0 || self.publishers_per_room > self.members {
            return Err(anyhow!("--publishers-per-room must be 1..=members"));
        }
        if !self.rate.is_finite() || self.rate <= 0.0 {
            return Err(anyhow!("--rate must be > 0"));
        }
        if !self.low_flood.is_finite() || self.low_flood < 0.0 || self.low_flood > 10_000.0 {
            return Err(anyhow!("--low-flood must be 0..=10000 messages/s"));
        }
        if !self.stalled_members.is_finite() || self.stalled_members < 0.0 {
            return Err(anyhow!("--stalled-members must be a fraction below 1 or a count"));
        }
        let listeners = self.rooms * (self.members - self.publishers_per_room);
        if self.stalled_count() > listeners {
            return Err(anyhow!(
                "--stalled-members: {} is more than the {listeners} members that do not publish",
                self.stalled_count()
            ));
        }
        if self.stalled_event_queue == Some(0) || self.stalled_stream_window == Some(0) {
            return Err(anyhow!("--stalled-event-queue and --stalled-stream-window must be > 0"));
        }
        let messages = self.rate * self.rooms as f64 * (self.warmup_s + self.duration_s);
        if messages > MAX_MESSAGES {
            return Err(anyhow!("{messages:.0} messages is over the limit of {MAX_MESSAGES:.0}"));
        }
        Ok(())
    }

    /// How many members stall (`stalled_members` as a fraction of all members, rounded, or as
    /// a count).
    pub fn stalled_count(&self) -> usize {
        let s = self.stalled_members;
        if s <= 0.0 {
            0
        } else if s < 1.0 {
            ((s * self.connections() as f64).round() as usize).max(1)
        } else {
            s as usize
        }
    }

    /// Whether member `j` of room `r` is one of the stalled ones: the last members of each
    /// room in turn (the last of every room, then the one before, ...), never a publisher.
    pub fn is_stalled(&self, r: usize, j: usize) -> bool {
        let n = self.stalled_count();
        if j < self.publishers_per_room || j >= self.members {
            return false;
        }
        // Its place in the order: rank by distance from the end of the room, then by room.
        let from_end = self.members - 1 - j;
        from_end * self.rooms + r < n
    }

    /// Whether member `j` of a room connects over WebTransport: one of the last `web_members`
    /// of its room.
    pub fn is_web(&self, j: usize) -> bool {
        j + self.web_members >= self.members && j < self.members
    }

    /// The body size actually sent (the header needs 20 bytes).
    pub fn body_size(&self) -> usize {
        self.size.max(super::stats::HEADER_LEN)
    }
}
