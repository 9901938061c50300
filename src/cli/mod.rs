//! The command-line client (`huddle client`): JSON lines on pipes, a chat prompt on a terminal.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `huddle client`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub server: SocketAddr,
    /// User id.
    #[arg(long)]
    pub user: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Login token (default: minted from certs/token.secret when readable).
    #[arg(long)]
    pub token: Option<String>,
    /// CA certificate to trust (default: certs/ca.pem when present).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Server name to check the certificate against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// JSON-lines mode even on a terminal.
    #[arg(long)]
    pub json: bool,
}

/// Runs the client; returns the process exit code.
pub async fn run(_args: ClientArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
