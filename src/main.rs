//! The `huddle` command: server, certificates, tokens and the command-line client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};

use huddle::config::ServerConfig;

#[derive(Parser)]
#[command(name = "huddle", version, about = "QUIC transport server for multi-person chat rooms")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (dev certificates and token secret are made on first start).
    Serve(ServeArgs),
    /// Make the development CA, server certificate and token secret if missing.
    Certs {
        /// Folder to write them to.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Print a login token minted from the local token secret.
    Token {
        /// User id the token is for.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        /// Folder holding token.secret.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Interactive or JSON-lines client.
    Client(huddle::cli::ClientArgs),
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
    /// Folder of the development certificates and token secret [default: certs].
    #[arg(long)]
    certs_dir: Option<PathBuf>,
    /// Idle timeout in seconds.
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Keep-alive interval in seconds.
    #[arg(long)]
    keep_alive_s: Option<u64>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Certs { dir } => {
            let made = huddle::certs::ensure_dev_certs(&dir)?;
            huddle::certs::ensure_token_secret(&dir)?;
            println!(
                "{} {}",
                if made { "made development certificates in" } else { "certificates already in" },
                dir.display()
            );
            Ok(())
        }
        Command::Token { user, ttl, dir } => {
            let secret = huddle::certs::ensure_token_secret(&dir)?;
            let mut keys = huddle::auth::KeySet::new();
            keys.insert(huddle::certs::DEV_KEY_ID, &secret);
            if !huddle::core::valid_user_id(&user) {
                return Err(anyhow!("invalid user id {user:?}: 1-32 of [A-Za-z0-9_.@-]"));
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let token = keys
                .mint(huddle::certs::DEV_KEY_ID, &user, now, now + ttl)
                .context("minting token")?;
            println!("{token}");
            Ok(())
        }
        Command::Client(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            let code = rt.block_on(huddle::cli::run(args))?;
            std::process::exit(code);
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = huddle::server::Server::bind(config)?;
        let addr = server.local_addr()?;
        println!("huddle listening on {addr} (ALPN huddle/1)");
        tracing::info!(%addr, "huddle listening");
        server.run(shutdown_signal()).await
    })
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
