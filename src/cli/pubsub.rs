//! One-shot commands for scripts, like `nats pub` and `nats sub`: `huddle pub ROOM TEXT` enters
//! a room, sends one message and logs out; `huddle sub ROOM` enters a room and prints its
//! messages, one line each, until Ctrl-C or `--count` messages.

use super::chat::message_line;
use super::json;
use super::{connect, ClientArgs};
use crate::client::{Client, ClientEvent};
use crate::wire::{Event, Priority, RoomConfig, RoomInfo};

/// `huddle pub ROOM TEXT`.
#[derive(clap::Args)]
pub struct PubArgs {
    /// The room (entered, and created if it does not exist).
    pub room: String,
    /// The message text.
    pub text: String,
    /// low (may be dropped), medium or high.
    #[arg(long, default_value = "medium", value_parser = parse_priority)]
    pub priority: Priority,
    /// How to reach and log in to the server (as `huddle client`).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `huddle sub ROOM`.
#[derive(clap::Args)]
pub struct SubArgs {
    /// The room (entered, and created if it does not exist).
    pub room: String,
    /// Exit after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// How to reach and log in to the server (as `huddle client`; with --json each message is
    /// the JSON line `huddle client` prints for it).
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_priority(name: &str) -> Result<Priority, String> {
    Priority::from_name(name).ok_or_else(|| format!("{name:?}: expected low, medium or high"))
}

/// Connects and enters the room; the error is the one line to print.
async fn enter(args: &ClientArgs, room: &str) -> Result<Client, String> {
    let client = connect(args, || {}).await.map_err(|f| f.to_string())?;
    let info = RoomInfo { room_id: room.to_string(), room_name: String::new() };
    client.enter_room(info, RoomConfig::default()).await.map_err(|e| format!("{room}: {e}"))?;
    Ok(client)
}

/// Runs `huddle pub`; returns the exit code (0 once the message is acknowledged).
pub async fn publish(args: PubArgs) -> i32 {
    let client = match enter(&args.client, &args.room).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let sent = client.send_text(&args.room, &args.text, args.priority).await;
    let _ = client.logout().await;
    match sent {
        Ok(ack) => {
            println!("published to {} as seq {}", args.room, ack.seq);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Runs `huddle sub`; returns the exit code (0 after `--count` messages or Ctrl-C, 2 when the
/// session ended otherwise).
pub async fn subscribe(args: SubArgs) -> i32 {
    let client = match enter(&args.client, &args.room).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    // On stderr, so that stdout carries only messages: a script can wait for this line.
    eprintln!("subscribed to {} (Ctrl-C to stop)", args.room);
    let mut seen = 0;
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            let _ = client.logout().await;
            return 0;
        }
        let event = tokio::select! {
            e = client.next_event() => e,
            _ = tokio::signal::ctrl_c() => {
                let _ = client.logout().await;
                return 0;
            }
        };
        match event {
            Some(ClientEvent::Event(Event::RoomMessage(m))) if m.room_id == args.room => {
                if args.client.json {
                    println!("{}", json::event(&Event::RoomMessage(m)).to_line());
                } else {
                    println!("{}", message_line(&m));
                }
                seen += 1;
            }
            Some(ClientEvent::Disconnected { .. }) | None => {
                eprintln!("error: the session ended");
                return 2;
            }
            Some(_) => {}
        }
    }
}
