//! The `huddle` command: server, certificates, tokens and the command-line client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};

use huddle::cli::TokenFormat;
use huddle::server::config::ServerConfig;

/// mimalloc, without transparent huge pages (which cost idle connections memory): about a tenth
/// less CPU per delivery than glibc's malloc (BENCHMARKS.md, "The allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "huddle",
    version = huddle::VERSION,
    about = "QUIC transport server for multi-person chat rooms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (dev certificates and token secret are made on first start).
    Serve(ServeArgs),
    /// Make the development CA, server certificate, token secret and QUIC secret if missing
    /// (a folder several servers can share with --certs-dir).
    Certs {
        /// Folder to write them to.
        #[arg(long, env = "HUDDLE_CERTS_DIR", default_value = "certs")]
        dir: PathBuf,
    },
    /// Print a login token minted from the token secret that `serve` or `certs` made.
    Token {
        /// User id the token is for.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// Folder holding token.secret (the server's certs folder).
        #[arg(long, env = "HUDDLE_CERTS_DIR", default_value = "certs")]
        dir: PathBuf,
        /// Print an HS256 JWT (kid `dev`) instead of an `hd1:` token.
        #[arg(long)]
        jwt: bool,
    },
    /// Interactive or JSON-lines client.
    Client(huddle::cli::ClientArgs),
    /// Send one message to a room and exit (medium priority unless --priority says otherwise).
    Pub(huddle::cli::pubsub::PubArgs),
    /// Print a room's messages, one line each, until Ctrl-C or --count messages.
    Sub(huddle::cli::pubsub::SubArgs),
    /// A UDP proxy that impairs traffic like a lossy mobile network (loss, delay, rebinding).
    Netsim(NetsimArgs),
    /// The same impairment on every IP packet between two network namespaces it makes (root):
    /// TCP and QUIC cross the same link. Run processes in them with `ip netns exec NAME`.
    #[cfg(target_os = "linux")]
    Ipsim(IpsimArgs),
    /// Open-loop load generator: rooms of members, latency, loss and server cost.
    Load(huddle::load::LoadArgs),
    /// Latency against load: p50/p99 against deliveries/s from `huddle load --json` summaries.
    LoadCurve(huddle::load::curve::CurveArgs),
    /// Print a shell completion script (e.g. `huddle completions bash > /etc/bash_completion.d/huddle`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct NetsimArgs {
    /// Address clients send to.
    #[arg(long)]
    listen: SocketAddr,
    /// The server's address.
    #[arg(long)]
    upstream: SocketAddr,
    #[command(flatten)]
    imp: ImpairArgs,
    /// Seconds after start at which the upstream source port changes (repeatable).
    #[arg(long)]
    rebind_at: Vec<f64>,
}

#[cfg(target_os = "linux")]
#[derive(clap::Args)]
struct IpsimArgs {
    /// Namespaces are PREFIX-s (server side, 10.77.0.1 and fd77:77::1) and PREFIX-c (client
    /// side, 10.77.0.2 and fd77:77::2); both must not exist yet [default: huddle-ipsim-PID].
    #[arg(long)]
    prefix: Option<String>,
    #[command(flatten)]
    imp: ImpairArgs,
    /// Seconds after start at which the client side moves to its next address, 10.77.0.3, ...
    /// (repeatable): TCP connections break, QUIC migrates.
    #[arg(long)]
    rebind_at: Vec<f64>,
    /// Write the link's start, blackholes and rebinds here, for `huddle load --ipsim-schedule`.
    #[arg(long)]
    schedule: Option<PathBuf>,
}

/// The impairment flags `huddle netsim` and `huddle ipsim` share.
#[derive(clap::Args)]
struct ImpairArgs {
    /// Uniform loss probability, both directions (per-direction flags override).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Uniform loss, client to server only.
    #[arg(long)]
    loss_up: Option<f64>,
    /// Uniform loss, server to client only.
    #[arg(long)]
    loss_down: Option<f64>,
    /// Bursty (Gilbert-Elliott) loss: long-run rate, bursts of 4 datagrams on average.
    #[arg(long)]
    burst_loss: Option<f64>,
    /// One-way delay in ms, each direction.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Uniform jitter in ms added to the delay.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability that a datagram is held back and overtaken.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Probability that a datagram is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Link rate in kbit/s, each direction (0: unlimited).
    #[arg(long, default_value_t = 0)]
    rate_kbps: u64,
    /// Bytes the rate limiter queues before tail drop.
    #[arg(long, default_value_t = 64 * 1024)]
    queue_bytes: u64,
    /// START:DURATION in seconds during which everything is dropped (repeatable).
    #[arg(long, value_parser = huddle::netsim::model::parse_window)]
    blackhole: Vec<(u64, u64)>,
    /// Seed of the random decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to run before stopping by itself; 0 runs until Ctrl-C (or SIGTERM).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
}

impl ImpairArgs {
    /// The (client to server, server to client) impairments.
    fn directions(&self) -> (huddle::netsim::Impairment, huddle::netsim::Impairment) {
        use huddle::netsim::{BurstLoss, Impairment};
        let base = Impairment {
            loss: self.loss,
            burst: self.burst_loss.map(|r| BurstLoss::with_rate(r, 4.0)),
            delay_ms: self.delay_ms,
            jitter_ms: self.jitter_ms,
            reorder: self.reorder,
            duplicate: self.duplicate,
            rate_kbps: self.rate_kbps,
            queue_bytes: self.queue_bytes,
            blackholes: self.blackhole.clone(),
        };
        (
            Impairment { loss: self.loss_up.unwrap_or(self.loss), ..base.clone() },
            Impairment { loss: self.loss_down.unwrap_or(self.loss), ..base },
        )
    }

    /// Waits for `--duration` (forever for 0), Ctrl-C or SIGTERM.
    async fn until_done(&self) {
        let run_out = async {
            if self.duration > 0.0 {
                tokio::time::sleep(std::time::Duration::from_secs_f64(self.duration)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        // Either way the link is stopped and its summary printed.
        tokio::select! {
            _ = run_out => {}
            _ = shutdown_signal() => {}
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// UDP address to listen on [default: 127.0.0.1:7443].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML configuration file (see README.md, "Configuration").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Server certificate chain (PEM); with --key, replaces the development certificate.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Folder of the development certificates and token secret [default: certs, or the
    /// config file's `certs_dir`].
    #[arg(long, env = "HUDDLE_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
    /// Idle timeout in seconds.
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Keep-alive interval in seconds.
    #[arg(long)]
    keep_alive_s: Option<u64>,
    /// Seconds a session keeps its rooms after its connection is lost, waiting to be resumed.
    #[arg(long)]
    offline_grace_s: Option<u64>,
    /// This node's id (0-1023) when several servers serve the same clients: keeps their
    /// session and message ids apart [default: the config file's `node_id`, else unset].
    #[arg(long)]
    node_id: Option<u16>,
    /// Cluster mode: share rooms with the other nodes through NATS JetStream at these URLs
    /// (comma-separated, e.g. nats://127.0.0.1:4222); the rest of the `[cluster]` table comes
    /// from the config file. Needs a build with the `cluster` feature.
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// TCP address of the admin HTTP listener (admin API, /metrics, /healthz, /readyz); needs
    /// a bearer token in HUDDLE_ADMIN_TOKEN or the config file.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// TCP address of the web listener: the browser demo page and /config.json (the
    /// WebTransport URL and development certificate hash); off unless set.
    #[arg(long)]
    web_listen: Option<SocketAddr>,
    /// Log format: text (the default) or json (one object per line).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Check the configuration (file, flags, certificate and key, token keys) without starting,
    /// then exit: 0 when the server would start with it, 1 with the reason otherwise.
    #[arg(long, conflicts_with = "print_config")]
    check_config: bool,
    /// Print the effective configuration (defaults, file and flags) as TOML, secrets redacted,
    /// then exit.
    #[arg(long)]
    print_config: bool,
}

/// Errors end the program with one line on stderr and exit code 1, never a backtrace: they are
/// the user's to fix (a port in use, a bad configuration), not the program's.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", user_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, with a hint where the cause is a common one.
fn user_message(e: &anyhow::Error) -> String {
    let mut line = format!("{e:#}");
    let in_use = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    });
    if in_use {
        line.push_str(" (another process listens there: stop it or choose another address)");
    }
    line
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Certs { dir } => {
            let made = huddle::certs::ensure_dev_certs(&dir)?;
            huddle::certs::ensure_token_secret(&dir)?;
            huddle::certs::ensure_quic_secret(&dir)?;
            println!(
                "{} {}",
                if made { "made development certificates in" } else { "certificates already in" },
                dir.display()
            );
            Ok(())
        }
        Command::Token { user, ttl, dir, jwt } => {
            let format = if jwt { TokenFormat::Jwt } else { TokenFormat::Hd1 };
            println!("{}", huddle::cli::token(&dir, &user, ttl, format)?);
            Ok(())
        }
        Command::Netsim(args) => netsim(args),
        #[cfg(target_os = "linux")]
        Command::Ipsim(args) => ipsim(args),
        Command::Client(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            let code = rt.block_on(huddle::cli::run(args))?;
            std::process::exit(code);
        }
        Command::Pub(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            std::process::exit(rt.block_on(huddle::cli::pubsub::publish(args)));
        }
        Command::Sub(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            std::process::exit(rt.block_on(huddle::cli::pubsub::subscribe(args)));
        }
        Command::Load(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            let code = rt.block_on(huddle::load::run(args))?;
            std::process::exit(code);
        }
        Command::LoadCurve(args) => huddle::load::curve::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "huddle", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn netsim(a: NetsimArgs) -> Result<()> {
    use huddle::netsim::{Proxy, ProxyConfig};
    let (to_server, to_client) = a.imp.directions();
    let cfg = ProxyConfig {
        listen: a.listen,
        upstream: a.upstream,
        to_server,
        to_client,
        seed: a.imp.seed,
        rebind_at_ms: a.rebind_at.iter().map(|s| (s * 1000.0) as u64).collect(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let proxy = Proxy::start(cfg).await?;
        println!(
            "netsim listening on {} -> {} (seed {})",
            proxy.local_addr(),
            a.upstream,
            a.imp.seed
        );
        a.imp.until_done().await;
        println!("{}", proxy.stop().await);
        Ok(())
    })
}

#[cfg(target_os = "linux")]
fn ipsim(a: IpsimArgs) -> Result<()> {
    use huddle::netsim::ip::{IpLink, IpLinkConfig, SERVER_ADDR, SERVER_ADDR6};
    let (to_server, to_client) = a.imp.directions();
    let cfg = IpLinkConfig {
        prefix: a.prefix.clone().unwrap_or_else(|| format!("huddle-ipsim-{}", std::process::id())),
        to_server,
        to_client,
        seed: a.imp.seed,
        rebind_at_ms: a.rebind_at.iter().map(|s| (s * 1000.0) as u64).collect(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let link = IpLink::start(cfg).await.context("setting up the namespaces (as root?)")?;
        if let Some(path) = &a.schedule {
            std::fs::write(path, link.schedule().to_text())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "ipsim up: server side {} ({SERVER_ADDR}, {SERVER_ADDR6}), client side {} ({}, {}), \
             seed {}",
            link.server_ns(),
            link.client_ns(),
            link.client_addr(),
            link.client_addr6(),
            a.imp.seed
        );
        a.imp.until_done().await;
        println!("{}", link.stop().await);
        Ok(())
    })
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.certs_dir {
        config.certs_dir = d;
    }
    if args.cert.is_some() {
        config.cert = args.cert;
        config.key = args.key;
    }
    if let Some(s) = args.idle_timeout_s {
        config.transport.idle_timeout_s = s;
    }
    if let Some(s) = args.keep_alive_s {
        config.transport.keep_alive_s = s;
    }
    if let Some(s) = args.offline_grace_s {
        config.limits.offline_grace_s = s;
    }
    if let Some(n) = args.node_id {
        config.node_id = Some(n);
    }
    if !args.cluster.is_empty() {
        let cluster = config.cluster.get_or_insert_with(Default::default);
        cluster.nats = args.cluster;
    }
    if let Some(a) = args.admin_listen {
        config.admin.listen = Some(a);
    }
    if let Some(a) = args.web_listen {
        config.web_listen = Some(a);
    }
    if let Ok(token) = std::env::var("HUDDLE_ADMIN_TOKEN") {
        config.admin.token = Some(token);
    }
    if args.print_config {
        print!("{}", config.to_toml_redacted().context("printing the configuration")?);
        return Ok(());
    }
    if args.check_config {
        log_filter(&config.log)?;
        let keys = huddle::server::Server::check(&config)?;
        println!("configuration ok");
        let secrets = keys.describe().iter().filter(|(_, what)| *what == "hd1+HS256").count();
        if config.token_keys.is_empty() && secrets == 0 {
            println!("token key dev: hd1+HS256 (its secret is made on first start)");
        }
        for (kid, what) in keys.describe() {
            println!("token key {kid}: {what}");
        }
        if let Some(aud) = &config.jwt_audience {
            println!("jwt audience: {aud}");
        }
        if let Some(iss) = &config.jwt_issuer {
            println!("jwt issuer: {iss}");
        }
        return Ok(());
    }
    init_logs(&config.log)?;
    huddle::server::raise_open_files_limit();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = bind(config).await?;
        let addr = server.local_addr()?;
        println!("huddle listening on {addr} (ALPN huddle/1)");
        if let Some(hash) = server.web_cert_hash() {
            println!("huddle WebTransport certificate sha256 {}", hex::encode(hash));
        }
        if let Some(admin) = server.admin_addr() {
            println!("huddle admin API on http://{admin}");
        }
        if let Some(web) = server.web_addr() {
            println!("huddle web page on http://{web}/");
        }
        tracing::info!(%addr, "huddle listening");
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Binds the server: a single node, or with `[cluster]` a node of a cluster over NATS.
#[cfg(not(feature = "cluster"))]
async fn bind(config: ServerConfig) -> Result<huddle::server::Server> {
    Ok(huddle::server::Server::bind(config)?)
}

/// Binds the server: a single node, or with `[cluster]` a node of a cluster over NATS, which
/// claims its node id (`node_id`, or else the lowest free one) and keeps it by heartbeats.
#[cfg(feature = "cluster")]
async fn bind(mut config: ServerConfig) -> Result<huddle::server::Server> {
    use huddle::cluster::{NatsBus, NatsOptions};
    use huddle::server::{Broker, NatsBroker, Server};

    let Some(cluster) = config.cluster.clone() else {
        return Ok(Server::bind(config)?);
    };
    let opts = NatsOptions {
        nats: cluster.nats,
        prefix: cluster.prefix,
        shards: cluster.shards,
        replicas: cluster.replicas,
        credentials: cluster.credentials,
        tls_ca: cluster.tls_ca,
        ..NatsOptions::default()
    };
    let bus = NatsBus::connect(opts).await.context("connecting to the cluster's NATS")?;
    let beat = bytes::Bytes::from(std::process::id().to_string());
    let claim = match config.node_id {
        Some(id) => bus.claim_node_id(id, beat.clone()).await.map_err(|e| match e {
            huddle::cluster::CasError::WrongRevision => {
                anyhow!("node id {id} is held by a live node of the cluster (or was, less than dead_after ago)")
            }
            e => anyhow!("claiming node id {id}: {e}"),
        })?,
        None => bus.claim_node(beat.clone()).await.context("claiming a node id")?,
    };
    tracing::info!(node_id = claim.id, "holding node id");
    config.node_id = Some(claim.id);
    tokio::spawn(heartbeats(bus.clone(), claim, beat));
    Ok(Server::bind_with_broker(config, Broker::Nats(NatsBroker::new(bus)))?)
}

/// Keeps a claimed node id alive; a fenced node (another process took its id) exits.
#[cfg(feature = "cluster")]
async fn heartbeats(
    bus: huddle::cluster::NatsBus,
    mut claim: huddle::cluster::NodeClaim,
    beat: bytes::Bytes,
) {
    let mut tick = tokio::time::interval(bus.options().dead_after() / 3);
    loop {
        tick.tick().await;
        match bus.heartbeat(&mut claim, beat.clone()).await {
            Ok(()) => {}
            Err(huddle::cluster::HeartbeatError::Fenced) => {
                tracing::error!(node_id = claim.id, "fenced: another process holds this node id");
                std::process::exit(1);
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Logs on stderr: the level from `RUST_LOG`, else the config; text or JSON lines.
fn init_logs(log: &huddle::server::config::LogConfig) -> Result<()> {
    let filter = log_filter(log)?;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match log.format.as_str() {
        "text" => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        "json" => builder.json().with_current_span(false).init(),
        other => return Err(anyhow!("unknown log format {other:?}: text or json")),
    }
    Ok(())
}

/// The log filter from `RUST_LOG`, else from the configuration; the configured format checked.
fn log_filter(log: &huddle::server::config::LogConfig) -> Result<tracing_subscriber::EnvFilter> {
    if !matches!(log.format.as_str(), "text" | "json") {
        return Err(anyhow!("unknown log format {:?}: text or json", log.format));
    }
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => Ok(f),
        Err(_) => tracing_subscriber::EnvFilter::try_new(&log.level)
            .with_context(|| format!("log level {:?}", log.level)),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
