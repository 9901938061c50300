//! The command-line client (`huddle client`): JSON lines on pipes, a chat prompt on a terminal.
//!
//! Both modes are thin drivers over [`crate::client::Client`]: [`json`] translates between JSON
//! objects and wire types (input lines in `json/parse.rs`, output lines in `json/render.rs`),
//! `lines` runs the pipelined JSON-lines loop and `chat` the line-based chat for people.

mod chat;
pub mod json;
mod lines;
pub mod pubsub;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};

use crate::auth::KeySet;
use crate::certs::{load_certs, read_token_secret, CA_FILE, DEV_KEY_ID, TOKEN_SECRET_FILE};
use crate::client::{Client, ClientConfig, ClientError};
use crate::core::valid_user_id;
use json::{Failure, J};

/// What a connection that got no answer suggests.
const NO_SERVER_HINT: &str = "is huddle serve running there?";

/// Lifetime of a token the client mints for itself.
const MINTED_TOKEN_TTL_S: u64 = 24 * 3600;

const JSON_HELP: &str = "\
JSON-LINES MODE (default when stdin is not a terminal, or with --json)

Each stdin line is one request object {\"op\": OP, ...parameters}; an optional \"id\" (any JSON
value) is echoed in its response. Requests are sent in input order without waiting for earlier
answers; each stdout line is one JSON object, written when it happens (a request's response before the
events the server sent after answering it).

  create_room        room_id, room_name?, destroy_delay_s?, attributes? {key: value}
  enter_room         room_id, room_name?, destroy_delay_s?, attributes?
  join_room          room_id
  leave_room         room_id
  leave_all_rooms
  switch_room        from_room_id, to_room_id, to_room_name?, create_if_missing? (false),
                     destroy_delay_s?, attributes?
  send_room_message  room_id, text | custom {sub_type, data}, priority? (low|medium|high),
                     client_msg_id?
                     WITHOUT a priority a message is LOW: it may be dropped under load
                     and is not replayed after a reconnection; pass \"priority\":\"medium\"
                     for delivery (the interactive mode sends medium)
                     a text whose request would not fit a frame (64 KiB) is refused here
                     with message_too_large and the session goes on
                     custom data is HEX in both directions (\"data\":\"00ff\" is two bytes)
  query_room_members room_id, next_flag? (\"\"), count? (100)
  query_room_online_count   room_id
  query_room_members_by_id  room_id, user_ids [..]
  query_joined_rooms
  query_history      room_id, before_seq? | after_seq?, count? (20)
  set_room_attributes       room_id, attributes {key: value}, is_force? (false),
                            is_update_owner? (false), is_delete_after_owner_left? (false)
  delete_room_attributes    room_id, keys [..], is_force? (false)
  query_room_attributes     room_id
  begin_room_attributes_batch  room_id: until the matching end, this room's
                            set_room_attributes and delete_room_attributes are collected
                            locally and answered at once with \"batched\":true
  end_room_attributes_batch room_id: sends the collected steps as one batch, applied all or
                            nothing and announced as one event (invalid_request without a begin)
  set_room_members_attributes    room_id, user_ids [..], attributes {key: value}
  query_room_members_attributes  room_id, user_ids [..]
  query_room_member_attributes_list  room_id, next_flag? (\"\"), count? (100)
  renew_token        token: a new token for this session before the old one expires
  ping               answered with pong (the connection is alive)
  logout

Output lines:
  {\"type\":\"ready\",\"user_id\":..,\"session_id\":..}                    after login
  {\"type\":\"error\",\"error\":{\"code\":N|null,\"name\":..,\"message\":..}}   login failed (exit 1)
  {\"type\":\"response\",\"op\":..,\"id\":..,\"ok\":true,...result}
  {\"type\":\"response\",\"op\":..,\"ok\":false,\"error\":{\"code\":N,\"name\":..,\"message\":..}}
  {\"type\":\"event\",\"event\":\"members_joined\"|\"members_left\"|\"room_message\"|
    \"kicked_out\"|\"member_count_updated\"|\"room_attributes_updated\"|
    \"room_member_attributes_updated\"|\"token_will_expire\"|\"room_destroyed\"|
    \"removed_from_room\"|\"disconnected\",...}
  Attributes are JSON objects {key: value}; room_attributes_updated has \"set\" (an object) and
  \"deleted\" (a list of keys); attribute answers list keys not changed in \"failed_keys\"
  [{key, code, name}] (for example attribute_not_owned: use is_force).

A line that is not a valid request gets an error response with name \"invalid_request\".
On end of input the client waits for every answer, logs out and exits 0; it exits 2 whenever
the session ended other than by its logout (a kick, a close by the server), also when the
input ends after that, and 1 when connecting or login fails.

INTERACTIVE MODE (stdin is a terminal): type text to send it to the current room at medium
priority; /enter ROOM [\"NAME\"], /leave, /members, /history, /rooms, /help, /quit.

The certs folder (CA and token secret) is --certs-dir, else $HUDDLE_CERTS_DIR, else ./certs.";

/// Flags of `huddle client`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Run with --help for the JSON-lines protocol.",
    after_long_help = JSON_HELP
)]
pub struct ClientArgs {
    /// Server address; several, comma-separated (A,B,C), are tried in order, at the first
    /// connection and when reconnecting after the server in use stopped answering.
    #[arg(long, default_value = "127.0.0.1:7443", value_delimiter = ',', num_args = 1)]
    pub server: Vec<SocketAddr>,
    /// User id.
    #[arg(long)]
    pub user: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Login token (default: minted from token.secret in --certs-dir when readable).
    #[arg(long)]
    pub token: Option<String>,
    /// CA certificate to trust (default: ca.pem in --certs-dir when present).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Server name to check the certificate against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Seconds the connection and login may take before the client gives up.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout_s: u64,
    /// JSON-lines mode even on a terminal.
    #[arg(long)]
    pub json: bool,
    /// Interactive mode even when stdin is not a terminal (behind rlwrap, in a test).
    #[arg(long, conflicts_with = "json")]
    pub interactive: bool,
    /// Folder of the development CA and token secret (the server's certs folder).
    #[arg(long, env = "HUDDLE_CERTS_DIR", default_value = "certs")]
    pub certs_dir: PathBuf,
}

/// Runs the client; returns the process exit code: 0 after a logout (asked for, or at the end
/// of input), 1 when setup or login fails, 2 when the session ended otherwise.
pub async fn run(args: ClientArgs) -> anyhow::Result<i32> {
    let json = args.json || !(args.interactive || std::io::stdin().is_terminal());
    // At once, so that a wait for a server that is not there is never silent (stderr in
    // JSON-lines mode, whose stdout carries only JSON).
    let connecting = || {
        let line = format!("connecting to {} ...", servers(&args));
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let client = match connect(&args, connecting).await {
        Ok(c) => c,
        Err(failure) => {
            report_setup_error(json, &failure);
            return Ok(1);
        }
    };
    if json {
        lines::run(client).await
    } else {
        chat::run(client, servers(&args)).await
    }
}

/// The connection configuration from the flags: token and CA from the certs folder when not
/// given.
pub fn client_config(args: &ClientArgs) -> anyhow::Result<ClientConfig> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => mint_token(&args.certs_dir, &args.user).with_context(|| {
            format!(
                "no --token given and none could be minted from {}",
                args.certs_dir.join(TOKEN_SECRET_FILE).display()
            )
        })?,
    };
    let mut config = ClientConfig::with_servers(&args.server, &args.user, &token)
        .ok_or_else(|| anyhow::anyhow!("--server names no address"))?;
    config.user_name = args.name.clone();
    config.server_name = args.server_name.clone();
    let ca = match &args.ca {
        Some(path) => Some(path.clone()),
        None => Some(args.certs_dir.join(CA_FILE)).filter(|p| p.exists()),
    };
    if let Some(path) = ca {
        config.roots = load_certs(&path)?;
    }
    Ok(config)
}

/// Mints a 24-hour token with the development key in `certs_dir`.
pub fn mint_token(certs_dir: &Path, user: &str) -> anyhow::Result<String> {
    mint(certs_dir, user, MINTED_TOKEN_TTL_S, TokenFormat::Hd1)
}

/// The format `huddle token` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFormat {
    /// `hd1:{kid}:{user_id}:{iat}:{exp}:{sig}`.
    Hd1,
    /// An HS256 JWT with kid `dev` and the claims `sub`, `iat`, `exp`.
    Jwt,
}

/// `huddle token`: a token for `user` valid for `ttl_s` seconds, minted with the token secret
/// in `certs_dir`, as an `hd1:` token or a JWT. It never makes a secret (only `huddle serve` and
/// `huddle certs` do): a token minted from a secret the server does not have would only be
/// refused at login.
pub fn token(
    certs_dir: &Path,
    user: &str,
    ttl_s: u64,
    format: TokenFormat,
) -> anyhow::Result<String> {
    if !valid_user_id(user) {
        return Err(anyhow!("invalid user id {user:?}: 1-32 of [A-Za-z0-9_.@-]"));
    }
    let path = certs_dir.join(TOKEN_SECRET_FILE);
    if !path.exists() {
        return Err(anyhow!(
            "no token secret at {}: run huddle serve or huddle certs first, or pass --dir \
             (or set HUDDLE_CERTS_DIR) to the server's certs folder",
            path.display()
        ));
    }
    mint(certs_dir, user, ttl_s, format)
}

fn mint(certs_dir: &Path, user: &str, ttl_s: u64, format: TokenFormat) -> anyhow::Result<String> {
    let secret = read_token_secret(&certs_dir.join(TOKEN_SECRET_FILE))?;
    let mut keys = KeySet::new();
    keys.insert(DEV_KEY_ID, &secret);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let exp = now.saturating_add(ttl_s);
    match format {
        TokenFormat::Hd1 => keys.mint(DEV_KEY_ID, user, now, exp),
        TokenFormat::Jwt => keys.mint_jwt(DEV_KEY_ID, user, now, exp),
    }
    .ok_or_else(|| anyhow!("the development key could not be loaded"))
}

/// The `--server` addresses as given: `A,B,C`.
fn servers(args: &ClientArgs) -> String {
    args.server.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

/// Builds the configuration, calls `connecting` and connects and logs in within
/// `--connect-timeout-s`; the failure says what to check (the CA, whether a server listens
/// there).
pub(crate) async fn connect(
    args: &ClientArgs,
    connecting: impl FnOnce(),
) -> Result<Client, Failure> {
    let config = client_config(args).map_err(|e| Failure::local("config", format!("{e:#}")))?;
    connecting();
    let timeout = Duration::from_secs(args.connect_timeout_s);
    match tokio::time::timeout(timeout, Client::connect(config)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(login_failure(&e, args)),
        Err(_) => {
            let msg =
                format!("no answer from {} within {timeout:?} ({NO_SERVER_HINT})", servers(args));
            Err(Failure::local("connection", msg))
        }
    }
}

/// What a failed login reports, with a hint on a connection failure when no CA was configured
/// (the usual cause).
fn login_failure(e: &ClientError, args: &ClientArgs) -> Failure {
    let mut failure = Failure::from(e);
    let ClientError::Connection(closed) = e else { return failure };
    if args.ca.is_none() && !args.certs_dir.join(CA_FILE).exists() {
        failure.message = format!(
            "{} (no CA certificate: pass --ca or --certs-dir holding {CA_FILE}, or set \
             HUDDLE_CERTS_DIR)",
            failure.message
        );
    } else if closed.code.is_none() {
        failure.message = format!("{} ({NO_SERVER_HINT})", failure.message);
    }
    failure
}

fn report_setup_error(json: bool, failure: &Failure) {
    if json {
        println!("{}", J::obj().with("type", "error").with("error", failure.to_json()).to_line());
    } else {
        eprintln!("huddle client: {failure}");
    }
}
