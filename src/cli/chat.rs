//! Interactive mode: a line-based chat on a terminal.
//!
//! Text goes to the current room at medium priority; commands start with `/`. Events print as
//! they arrive, as lines like `[r1] bob joined` and `[r1] alice: hello`.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::json::Failure;
use crate::client::{Client, ClientError, ClientEvent};
use crate::wire::{
    ErrorCode, Event, HistoryAnchor, Member, MessageBody, Priority, RoomConfig, RoomInfo,
    RoomMessage,
};

const HELP: &str = "\
commands:
  /enter ROOM [NAME]  enter (create or join) a room; it becomes the current room
  /leave              leave the current room
  /members            list the current room's members
  /history            show the current room's last messages
  /rooms              list the rooms you are in
  /quit               log out and exit (end of input does the same)
anything else is sent to the current room";

/// Runs the chat on a logged-in client; returns the exit code.
pub async fn run(client: Client, server: SocketAddr) -> anyhow::Result<i32> {
    println!(
        "connected to {server} as {} (session {}); /help for commands",
        client.user_id(),
        client.session().session_id
    );
    let mut chat = Chat { client, room: None };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if !chat.command(line.trim()).await {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            },
            event = chat.client.next_event() => match event {
                Some(ClientEvent::Event(e)) => println!("{}", describe(&e)),
                // Printed at start-up already.
                Some(ClientEvent::Connecting | ClientEvent::Connected { .. }) => {}
                Some(ClientEvent::Reconnecting { reason }) => {
                    println!("*** connection lost ({reason}), reconnecting...")
                }
                Some(ClientEvent::Resumed { session_resumed, rooms, early_data }) => {
                    for r in &rooms {
                        let how = match (r.rejoined, r.recovered) {
                            (true, true) => format!("caught up, {} missed messages", r.replayed),
                            (true, false) => "some messages were missed for good".to_string(),
                            (false, _) => "could not rejoin".to_string(),
                        };
                        println!("[{}] {how}", r.room_id);
                    }
                    let what = if session_resumed { "session resumed" } else { "new session" };
                    let rtt = if early_data { ", 0-RTT" } else { "" };
                    println!("*** reconnected ({what}{rtt})");
                }
                Some(ClientEvent::Disconnected { code, reason }) => {
                    match code {
                        Some(code) => println!("*** disconnected by the server: {reason} ({code})"),
                        None => println!("*** disconnected: {reason}"),
                    }
                    return Ok(2);
                }
                None => return Ok(2),
            },
        }
    }
    let _ = chat.client.logout().await;
    chat.client.shutdown().await;
    Ok(0)
}

struct Chat {
    client: Client,
    /// The room text lines go to.
    room: Option<String>,
}

impl Chat {
    /// Runs one input line; false when the user wants to quit.
    async fn command(&mut self, line: &str) -> bool {
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        let result = match cmd {
            "" => Ok(()),
            "/quit" | "/exit" => return false,
            "/help" => {
                println!("{HELP}");
                Ok(())
            }
            "/enter" => self.enter(rest).await,
            "/leave" => self.leave().await,
            "/members" => self.members().await,
            "/history" => self.history().await,
            "/rooms" => self.rooms().await,
            c if c.starts_with('/') => {
                println!("unknown command {c}; /help lists them");
                Ok(())
            }
            _ => self.send(line).await,
        };
        if let Err(e) = result {
            println!("error: {}", Failure::from(&e));
        }
        true
    }

    /// The current room, or None after telling the user there is none.
    fn current(&self) -> Option<&str> {
        if self.room.is_none() {
            println!("you are in no room: /enter ROOM first");
        }
        self.room.as_deref()
    }

    async fn enter(&mut self, args: &str) -> Result<(), ClientError> {
        let (room_id, room_name) = match args.split_once(char::is_whitespace) {
            Some((id, name)) => (id, name.trim()),
            None => (args, ""),
        };
        if room_id.is_empty() {
            println!("usage: /enter ROOM [NAME]");
            return Ok(());
        }
        let info = RoomInfo { room_id: room_id.into(), room_name: room_name.into() };
        let st = self.client.enter_room(info, RoomConfig::default()).await?;
        let how = if st.created {
            "created"
        } else if st.already_member {
            "already in"
        } else {
            "joined"
        };
        println!("[{}] {how}; {}; now talking here", st.room_id, count(st.member_count));
        self.room = Some(st.room_id);
        Ok(())
    }

    async fn leave(&mut self) -> Result<(), ClientError> {
        let Some(room) = self.current().map(str::to_string) else { return Ok(()) };
        self.client.leave_room(&room).await?;
        println!("[{room}] left");
        self.room = None;
        Ok(())
    }

    async fn members(&self) -> Result<(), ClientError> {
        let Some(room) = self.current() else { return Ok(()) };
        let page = self.client.query_room_members(room, "", 100).await?;
        let names: Vec<String> = page.members.iter().map(who).collect();
        let more = if page.next_flag.is_empty() { "" } else { ", ..." };
        println!("[{room}] members: {}{more}", names.join(", "));
        Ok(())
    }

    async fn history(&self) -> Result<(), ClientError> {
        let Some(room) = self.current() else { return Ok(()) };
        let page = self.client.query_history(room, HistoryAnchor::Latest, 20).await?;
        if page.messages.is_empty() {
            println!("[{room}] no messages yet");
        }
        for m in &page.messages {
            println!("{}", message_line(m));
        }
        Ok(())
    }

    async fn rooms(&self) -> Result<(), ClientError> {
        let rooms = self.client.query_joined_rooms().await?;
        if rooms.is_empty() {
            println!("you are in no room");
        }
        for r in rooms {
            let mark = if self.room.as_deref() == Some(r.room_id.as_str()) { "*" } else { " " };
            let name =
                if r.room_name.is_empty() { String::new() } else { format!(" {}", r.room_name) };
            println!("{mark} {}{name} ({})", r.room_id, count(r.member_count));
        }
        Ok(())
    }

    async fn send(&self, text: &str) -> Result<(), ClientError> {
        let Some(room) = self.current() else { return Ok(()) };
        self.client.send_text(room, text, Priority::Medium).await?;
        // The sender gets no copy of its own message: print it as the others see it.
        println!("[{room}] {}: {text}", self.client.user_id());
        Ok(())
    }
}

fn who(m: &Member) -> String {
    if m.user_name.is_empty() || m.user_name == m.user_id {
        m.user_id.clone()
    } else {
        format!("{} ({})", m.user_name, m.user_id)
    }
}

fn count(n: u32) -> String {
    if n == 1 {
        "1 member".into()
    } else {
        format!("{n} members")
    }
}

fn names(ms: &[Member]) -> String {
    ms.iter().map(who).collect::<Vec<_>>().join(", ")
}

fn message_line(m: &RoomMessage) -> String {
    match &m.body {
        MessageBody::Text(t) => format!("[{}] {}: {t}", m.room_id, m.sender),
        MessageBody::Custom { sub_type, data } => format!(
            "[{}] {}: <custom message, sub type {sub_type}, {} bytes>",
            m.room_id,
            m.sender,
            data.len()
        ),
    }
}

/// One readable line for an event.
fn describe(e: &Event) -> String {
    match e {
        Event::MembersJoined { room_id, members } => {
            format!("[{room_id}] {} joined", names(members))
        }
        Event::MembersLeft { room_id, members, reason } => {
            let why = match reason {
                crate::wire::LeaveReason::Left => String::new(),
                other => format!(" ({})", other.name()),
            };
            format!("[{room_id}] {} left{why}", names(members))
        }
        Event::RoomMessage(m) => message_line(m),
        Event::KickedOut { code, message } => {
            let name = ErrorCode::from_u16(*code).map_or("unknown", ErrorCode::name);
            format!("*** kicked out: {name} ({code}): {message}")
        }
        Event::MemberCountUpdated { room_id, count: n } => format!("[{room_id}] {}", count(*n)),
        Event::RoomAttributesUpdated { room_id, set, deleted } => {
            let set: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "[{room_id}] attributes set {{{}}} deleted [{}]",
                set.join(", "),
                deleted.join(", ")
            )
        }
        Event::TokenWillExpire { expires_at_s } => {
            format!("*** the login token expires at {expires_at_s} (Unix seconds)")
        }
        Event::RoomMemberAttributesUpdated { room_id, members, operated_by } => {
            let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
            format!("[{room_id}] {operated_by} changed member attributes of {}", ids.join(", "))
        }
        Event::RoomDestroyed { room_id } => format!("[{room_id}] *** the room was destroyed"),
        Event::RemovedFromRoom { room_id, reason } => {
            format!("[{room_id}] *** you were removed from the room ({})", reason.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str) -> Member {
        Member { user_id: id.into(), user_name: name.into() }
    }

    #[test]
    fn events_read_like_chat() {
        let joined = Event::MembersJoined {
            room_id: "r1".into(),
            members: vec![member("bob", ""), member("carol", "Carol")],
        };
        assert_eq!(describe(&joined), "[r1] bob, Carol (carol) joined");
        let left = Event::MembersLeft {
            room_id: "r1".into(),
            members: vec![member("bob", "")],
            reason: crate::wire::LeaveReason::Offline,
        };
        assert_eq!(describe(&left), "[r1] bob left (offline)");
        let msg = Event::RoomMessage(RoomMessage {
            room_id: "r1".into(),
            seq: 1,
            message_id: 9,
            sender: "alice".into(),
            timestamp_ms: 0,
            priority: Priority::Medium,
            body: MessageBody::Text("hello".into()),
        });
        assert_eq!(describe(&msg), "[r1] alice: hello");
        let destroyed = Event::RoomDestroyed { room_id: "r1".into() };
        assert_eq!(describe(&destroyed), "[r1] *** the room was destroyed");
        let removed = Event::RemovedFromRoom {
            room_id: "r1".into(),
            reason: crate::wire::LeaveReason::Kicked,
        };
        assert_eq!(describe(&removed), "[r1] *** you were removed from the room (kicked)");
    }
}
