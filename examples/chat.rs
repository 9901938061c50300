//! The client library in a few lines: log in, enter a room, say something, print what happens.
//!
//! Start a server (`cargo run -- serve`), then, in two terminals:
//!
//! ```text
//! cargo run --example chat -- --server 127.0.0.1:7443 --user alice
//! cargo run --example chat -- --server 127.0.0.1:7443 --user bob --text "hi alice"
//! ```
//!
//! The token is minted from `certs/token.secret` and the server is trusted through
//! `certs/ca.pem`, both made by the server on its first start (`--certs-dir` if elsewhere).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::Parser;

use huddle::auth::KeySet;
use huddle::certs::{load_certs, read_token_secret, CA_FILE, DEV_KEY_ID, TOKEN_SECRET_FILE};
use huddle::client::{Client, ClientConfig, ClientEvent};
use huddle::wire::{Event, MessageBody, Priority, RoomConfig, RoomInfo};

#[derive(Parser)]
#[command(about = "Enter a Huddle room, send one message and print events for a while")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7443")]
    server: SocketAddr,
    /// User id.
    #[arg(long)]
    user: String,
    /// Room to enter (created when missing).
    #[arg(long, default_value = "lobby")]
    room: String,
    /// Message to send once in the room.
    #[arg(long, default_value = "hello from the chat example")]
    text: String,
    /// How long to print events before logging out.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Folder holding ca.pem and token.secret.
    #[arg(long, default_value = "certs")]
    certs_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    // A 1-hour token signed with the development key, as `huddle token` would print.
    let secret = read_token_secret(&args.certs_dir.join(TOKEN_SECRET_FILE))?;
    let mut keys = KeySet::new();
    keys.insert(DEV_KEY_ID, &secret);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let token = keys.mint(DEV_KEY_ID, &args.user, now, now + 3600).ok_or(anyhow!("no key"))?;

    let mut config = ClientConfig::new(args.server, &args.user, &token);
    config.roots = load_certs(&args.certs_dir.join(CA_FILE))?;
    let client = Client::connect(config).await.context("connecting")?;
    println!("logged in as {} (session {})", client.user_id(), client.session().session_id);

    let info = RoomInfo { room_id: args.room.clone(), room_name: String::new() };
    let room = client.enter_room(info, RoomConfig::default()).await?;
    println!(
        "entered {} ({}, {} members, last seq {})",
        room.room_id,
        if room.created { "created" } else { "joined" },
        room.member_count,
        room.last_seq
    );
    let ack = client.send_text(&args.room, &args.text, Priority::Medium).await?;
    println!("sent seq {} (message id {})", ack.seq, ack.message_id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        match event {
            ClientEvent::Event(Event::RoomMessage(m)) => match m.body {
                MessageBody::Text(t) => println!("[{}] #{} {}: {t}", m.room_id, m.seq, m.sender),
                MessageBody::Custom { sub_type, data } => {
                    println!(
                        "[{}] #{} {}: custom {sub_type}, {} bytes",
                        m.room_id,
                        m.seq,
                        m.sender,
                        data.len()
                    )
                }
            },
            ClientEvent::Event(e) => println!("{e:?}"),
            ClientEvent::Connecting => println!("connecting"),
            ClientEvent::Connected { session_id } => println!("connected (session {session_id})"),
            ClientEvent::Reconnecting { reason } => {
                println!("connection lost ({reason}), reconnecting")
            }
            ClientEvent::Resumed { session_resumed, rooms, .. } => {
                println!("reconnected (same session: {session_resumed}): {rooms:?}")
            }
            ClientEvent::Migrated { probe_ms } => {
                println!("moved to the new network ({probe_ms} ms)")
            }
            ClientEvent::Suspended => println!("suspended"),
            ClientEvent::Disconnected { code, reason } => {
                println!("disconnected: {reason} (code {code:?})");
                return Ok(());
            }
        }
    }
    client.logout().await?;
    client.shutdown().await;
    println!("logged out");
    Ok(())
}
