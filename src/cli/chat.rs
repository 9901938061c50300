//! Interactive mode: a line-based chat on a terminal.
//!
//! Text goes to the current room at medium priority (a person typing expects delivery; low, the
//! JSON-lines default, may be dropped); commands start with `/`. Events print as they arrive,
//! as lines like `[r1] bob joined` and `[r1] alice: hello`.
//!
//! Typed lines run one after another, while events keep printing: a line typed while an
//! earlier one waits (for instance for a reconnection) is kept and runs after it. Each text
//! carries a `client_msg_id`, so a send cut off by a lost connection is sent again once the
//! session resumes, and the server's deduplication keeps it to one copy. When the server lost
//! a room (it restarted), the chat says so and enters the room again as `/enter` would, and
//! a text cut off that way is sent again in the room entered anew.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::json::Failure;
use crate::client::{Client, ClientError, ClientEvent};
use crate::wire::{
    ErrorCode, Event, HistoryAnchor, Member, MessageBody, Priority, RoomConfig, RoomInfo,
    RoomMessage, RoomRecovery,
};

const HELP: &str = "\
commands:
  /enter ROOM [\"NAME\"]  enter (create or join) a room; it becomes the current room
                      (room ids have no spaces; quote a name: /enter r1 \"Team room\")
  /leave              leave the current room
  /members            list the current room's members
  /history            show the current room's last messages
  /rooms              list the rooms you are in
  /quit               log out and exit (end of input does the same)
anything else is sent to the current room at medium priority (delivered, not dropped under
load; a message sent without a priority, as in JSON-lines mode, is low and may be dropped)";

/// What the loop does next: a typed line, or entering again a room the server lost.
enum Job {
    Line(String),
    Reenter(String),
}

/// A running job: what it changes in the chat's state once done.
type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// How a job changes the chat's state.
enum Done {
    Nothing,
    /// The room became the current one.
    Entered(String),
    /// The room was left.
    Left(String),
}

/// Runs the chat on a logged-in client; returns the exit code: 0 after a logout, 2 when the
/// session ended otherwise.
pub async fn run(client: Client, server: String) -> anyhow::Result<i32> {
    println!(
        "connected to {server} as {} (session {}); /help for commands",
        client.user_id(),
        client.session().session_id
    );
    let mut chat = Chat {
        client: Arc::new(client),
        room: None,
        names: HashMap::new(),
        msg_ids: Arc::new(MsgIds { prefix: rand::random(), next: AtomicU64::new(0) }),
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    let mut jobs: VecDeque<Job> = VecDeque::new();
    let mut running: Option<Running> = None;
    loop {
        if running.is_none() {
            match jobs.pop_front() {
                Some(job) => {
                    match chat.start(job) {
                        Some(Some(job)) => running = Some(job),
                        Some(None) => {}
                        None => break,
                    }
                    continue;
                }
                None if !input_open => break,
                None => {}
            }
        }
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) => jobs.push_back(Job::Line(line)),
                Ok(None) | Err(_) => input_open = false,
            },
            done = finished(&mut running) => {
                running = None;
                chat.finish(done);
            }
            event = chat.client.next_event() => match event {
                Some(ClientEvent::Event(e)) => chat.event(&e),
                // Printed at start-up already; the CLI neither migrates nor suspends.
                Some(
                    ClientEvent::Connecting
                    | ClientEvent::Connected { .. }
                    | ClientEvent::Migrated { .. }
                    | ClientEvent::Suspended,
                ) => {}
                Some(ClientEvent::Reconnecting { reason }) => {
                    println!("*** connection lost ({reason}), reconnecting...")
                }
                Some(ClientEvent::Resumed { session_resumed, rooms, early_data }) => {
                    for r in &rooms {
                        println!("[{}] {}", r.room_id, recovery(r, session_resumed));
                        if gone(r) {
                            jobs.push_front(Job::Reenter(r.room_id.clone()));
                        }
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
                    let unsent = jobs.iter().filter(|j| matches!(j, Job::Line(_))).count();
                    if unsent > 0 {
                        println!("*** {unsent} typed line(s) not sent");
                    }
                    return Ok(2);
                }
                None => return Ok(2),
            },
        }
    }
    let logged_out = chat.client.logout().await;
    chat.client.shutdown().await;
    match logged_out {
        Ok(()) => Ok(0),
        Err(e) => {
            println!("*** the session had ended: {}", Failure::from(&e));
            Ok(2)
        }
    }
}

/// The running job's outcome; never resolves when none runs.
async fn finished(running: &mut Option<Running>) -> Done {
    match running {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}

/// What the chat says about a room after a reconnection.
fn recovery(r: &RoomRecovery, session_resumed: bool) -> String {
    match (r.rejoined, r.recovered) {
        (true, true) => format!("caught up, {} missed messages", r.replayed),
        (true, false) => "some messages were missed for good".to_string(),
        (false, _) => {
            let why = ErrorCode::from_u16(r.error_code)
                .map_or_else(|| format!("error {}", r.error_code), |c| c.name().to_string());
            if gone(r) {
                let cause = if session_resumed {
                    "it was destroyed meanwhile"
                } else {
                    "the server restarted and lost it"
                };
                format!("could not rejoin: the room no longer exists ({why}: {cause}); entering it again")
            } else {
                format!("could not rejoin ({why})")
            }
        }
    }
}

/// Whether a room was not rejoined because the server no longer has it.
fn gone(r: &RoomRecovery) -> bool {
    !r.rejoined && r.error_code == ErrorCode::RoomDoesNotExist.as_u16()
}

/// The `client_msg_id`s of this chat's texts: unique to this process.
struct MsgIds {
    prefix: u64,
    next: AtomicU64,
}

impl MsgIds {
    fn next(&self) -> String {
        format!("chat-{:016x}-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

struct Chat {
    client: Arc<Client>,
    /// The room text lines go to.
    room: Option<String>,
    /// The name each room was entered with, to enter it again the same way.
    names: HashMap<String, String>,
    msg_ids: Arc<MsgIds>,
}

impl Chat {
    /// Starts a job: `None` when the user wants to quit, `Some(None)` when it is done already.
    fn start(&mut self, job: Job) -> Option<Option<Running>> {
        let line = match job {
            Job::Line(line) => line,
            Job::Reenter(room) => {
                let name = self.names.get(&room).cloned().unwrap_or_default();
                let client = self.client.clone();
                // Entered again, the room stays the current one or not, as it was.
                let entered = async move { enter(&client, room, name, true).await };
                return Some(Some(Box::pin(async move {
                    report(entered.await.map(|_| Done::Nothing))
                })));
            }
        };
        let line = line.trim();
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        let client = self.client.clone();
        let job: Running = match cmd {
            "" => return Some(None),
            "/quit" | "/exit" => return None,
            "/help" => {
                println!("{HELP}");
                return Some(None);
            }
            "/enter" => {
                let (room, name) = match parse_enter(rest) {
                    Ok(args) => args,
                    Err(msg) => {
                        println!("{msg}");
                        return Some(None);
                    }
                };
                self.names.insert(room.clone(), name.clone());
                Box::pin(async move { report(enter(&client, room, name, false).await) })
            }
            "/rooms" => {
                let current = self.room.clone();
                Box::pin(
                    async move { report(rooms(&client, current).await.map(|()| Done::Nothing)) },
                )
            }
            c if c.starts_with('/') => {
                if !matches!(c, "/leave" | "/members" | "/history") {
                    println!("unknown command {c}; /help lists them");
                    return Some(None);
                }
                let Some(room) = self.current() else { return Some(None) };
                match c {
                    "/leave" => Box::pin(async move {
                        report(client.leave_room(&room).await.map(|()| {
                            println!("[{room}] left");
                            Done::Left(room)
                        }))
                    }),
                    "/members" => Box::pin(async move {
                        report(members(&client, &room).await.map(|()| Done::Nothing))
                    }),
                    _ => Box::pin(async move {
                        report(history(&client, &room).await.map(|()| Done::Nothing))
                    }),
                }
            }
            _ => {
                let Some(room) = self.current() else { return Some(None) };
                let text = line.to_string();
                let name = self.names.get(&room).cloned().unwrap_or_default();
                let msg_id = self.msg_ids.next();
                Box::pin(async move {
                    report(send(&client, room, name, text, msg_id).await.map(|()| Done::Nothing))
                })
            }
        };
        Some(Some(job))
    }

    fn finish(&mut self, done: Done) {
        match done {
            Done::Nothing => {}
            Done::Entered(room) => self.room = Some(room),
            Done::Left(room) => {
                if self.room.as_deref() == Some(room.as_str()) {
                    self.room = None;
                }
            }
        }
    }

    /// Prints a server event; a room the user was removed from stops being the current one.
    fn event(&mut self, e: &Event) {
        println!("{}", describe(e));
        if let Event::RemovedFromRoom { room_id, .. } | Event::RoomDestroyed { room_id } = e {
            if self.room.as_deref() == Some(room_id.as_str()) {
                self.room = None;
                println!("you are in no room now: /enter ROOM");
            }
        }
    }

    /// The current room, or None after telling the user there is none.
    fn current(&self) -> Option<String> {
        if self.room.is_none() {
            println!("you are in no room: /enter ROOM first");
        }
        self.room.clone()
    }
}

/// Prints a failed job's error.
fn report(result: Result<Done, ClientError>) -> Done {
    result.unwrap_or_else(|e| {
        println!("error: {}", Failure::from(&e));
        Done::Nothing
    })
}

/// `/enter`'s arguments: a room id and an optional name in double quotes. Anything else after
/// the room id is refused rather than guessed at (`/enter has space` is not room `has` named
/// `space`).
fn parse_enter(args: &str) -> Result<(String, String), String> {
    const USAGE: &str = "usage: /enter ROOM [\"NAME\"] (room ids have no spaces; quote a name)";
    let (room, rest) = match args.split_once(char::is_whitespace) {
        Some((id, rest)) => (id, rest.trim()),
        None => (args, ""),
    };
    if room.is_empty() || room.starts_with('"') {
        return Err(USAGE.into());
    }
    if rest.is_empty() {
        return Ok((room.into(), String::new()));
    }
    match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(name) if rest.len() >= 2 && !name.contains('"') => Ok((room.into(), name.into())),
        _ => Err(format!("{USAGE}: did you mean /enter {room} \"{rest}\"?")),
    }
}

/// Enters a room and prints how; `again` for a room the server lost, which says nothing when
/// the room was entered again already.
async fn enter(
    client: &Client,
    room_id: String,
    room_name: String,
    again: bool,
) -> Result<Done, ClientError> {
    let info = RoomInfo { room_id, room_name };
    let st = client.enter_room(info, RoomConfig::default()).await?;
    let how = if st.created {
        "created"
    } else if st.already_member {
        "already in"
    } else {
        "joined"
    };
    let members = count(st.member_count);
    match again {
        false => println!("[{}] {how}; {members}; now talking here", st.room_id),
        true if st.already_member => {}
        true => println!("[{}] {how} again; {members}", st.room_id),
    }
    Ok(Done::Entered(st.room_id))
}

async fn members(client: &Client, room: &str) -> Result<(), ClientError> {
    let page = client.query_room_members(room, "", 100).await?;
    let names: Vec<String> = page.members.iter().map(who).collect();
    let more = if page.next_flag.is_empty() { "" } else { ", ..." };
    println!("[{room}] members: {}{more}", names.join(", "));
    Ok(())
}

async fn history(client: &Client, room: &str) -> Result<(), ClientError> {
    let page = client.query_history(room, HistoryAnchor::Latest, 20).await?;
    if page.messages.is_empty() {
        println!("[{room}] no messages yet");
    }
    for m in &page.messages {
        println!("{}", message_line(m));
    }
    Ok(())
}

async fn rooms(client: &Client, current: Option<String>) -> Result<(), ClientError> {
    let rooms = client.query_joined_rooms().await?;
    if rooms.is_empty() {
        println!("you are in no room");
    }
    for r in rooms {
        let mark = if current.as_deref() == Some(r.room_id.as_str()) { "*" } else { " " };
        let name = if r.room_name.is_empty() { String::new() } else { format!(" {}", r.room_name) };
        println!("{mark} {}{name} ({})", r.room_id, count(r.member_count));
    }
    Ok(())
}

/// Sends a text at medium priority. When the session was replaced while it was on its way
/// (the server restarted) and the room is gone with it, enters the room again and sends the
/// text there once more, with the same `client_msg_id`.
async fn send(
    client: &Client,
    room: String,
    name: String,
    text: String,
    msg_id: String,
) -> Result<(), ClientError> {
    let session = client.session().session_id;
    let body = || MessageBody::Text(text.clone());
    let sent = client.send_message(&room, body(), Priority::Medium, Some(msg_id.clone())).await;
    let lost_room = matches!(
        sent.as_ref().map_err(ClientError::code),
        Err(Some(ErrorCode::RoomDoesNotExist | ErrorCode::NotInRoom))
    );
    if lost_room && client.session().session_id != session {
        enter(client, room.clone(), name, true).await?;
        client.send_message(&room, body(), Priority::Medium, Some(msg_id)).await?;
    } else {
        sent?;
    }
    // The sender gets no copy of its own message: print it as the others see it.
    println!("[{room}] {}: {text}", client.user_id());
    Ok(())
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

/// One readable line for a room message (also `huddle sub`'s output).
pub(super) fn message_line(m: &RoomMessage) -> String {
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

    #[test]
    fn enter_takes_a_room_and_a_quoted_name_only() {
        let ok = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        assert_eq!(parse_enter("r1"), ok("r1", ""));
        assert_eq!(parse_enter("r1   \"Team room\""), ok("r1", "Team room"));
        let err = parse_enter("has space").unwrap_err();
        assert!(err.starts_with("usage: /enter ROOM"), "{err}");
        assert!(err.ends_with("did you mean /enter has \"space\"?"), "{err}");
        for bad in ["", "\"r1\"", "r1 \"open", "r1 \"", "r1 \"a\" b\""] {
            assert!(parse_enter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_room_the_server_lost_says_why_and_is_entered_again() {
        let lost = RoomRecovery {
            room_id: "lobby".into(),
            rejoined: false,
            recovered: false,
            replayed: 0,
            last_seq: 0,
            error_code: ErrorCode::RoomDoesNotExist.as_u16(),
        };
        assert!(gone(&lost));
        assert_eq!(
            recovery(&lost, false),
            "could not rejoin: the room no longer exists (room_does_not_exist: the server \
             restarted and lost it); entering it again"
        );
        let full = RoomRecovery { error_code: ErrorCode::RoomFull.as_u16(), ..lost };
        assert!(!gone(&full));
        assert_eq!(recovery(&full, true), "could not rejoin (room_full)");
    }
}
