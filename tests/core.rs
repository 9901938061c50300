//! The sans-IO room core driven directly, with explicit time: no sockets, no tasks.
//!
//! Every output is decoded the way the server would deliver it (a broadcast expands to each
//! listed connection but the excepted one), so each test checks what each connection gets.

use std::collections::{BTreeMap, HashMap};

use huddle::auth::KeySet;
use huddle::core::{
    AdminCreateRoom, AdminCustomBody, AdminMessage, ConnId, Core, Limits, Now, Output, RoomKey,
    SYSTEM_SENDER,
};
use huddle::wire::{
    decode_body, ErrorBody, ErrorCode, Event, HistoryAnchor, LeaveReason, Login, Member,
    MessageBody, Priority, Reply, Request, Response, ResponseFrame, RoomConfig, RoomInfo,
    RoomState, StreamHeader, PROTOCOL_VERSION,
};

const KID: &str = "k1";
const START_UNIX_MS: u64 = 1_700_000_000_000;

/// What one connection was handed, in order.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Reply(ResponseFrame),
    /// An event on a room stream (`Some`) or on the session stream (`None`).
    Event(Option<RoomKey>, Event),
    OpenStream(RoomKey, StreamHeader),
    CloseStream(RoomKey),
    Close(Option<ErrorCode>),
}

struct Harness {
    core: Core,
    keys: KeySet,
    mono_ms: u64,
    unix_ms: u64,
    next_request: u32,
    inbox: HashMap<ConnId, Vec<Got>>,
}

fn decode<T: bincode::Decode<()>>(frame: &[u8]) -> T {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "length prefix matches the body");
    decode_body(&frame[4..]).unwrap()
}

impl Harness {
    fn new(limits: Limits) -> Harness {
        let mut keys = KeySet::new();
        assert!(keys.insert(KID, b"core-test-secret-0123456789"));
        Harness {
            core: Core::new(limits, keys.clone(), 1 << 16),
            keys,
            mono_ms: 1_000,
            unix_ms: START_UNIX_MS,
            next_request: 1,
            inbox: HashMap::new(),
        }
    }

    fn plain() -> Harness {
        Harness::new(Limits::default())
    }

    fn now(&self) -> Now {
        Now { mono_ms: self.mono_ms, unix_ms: self.unix_ms }
    }

    /// Moves time forward without firing timers.
    fn advance(&mut self, ms: u64) {
        self.mono_ms += ms;
        self.unix_ms += ms;
    }

    /// Moves time forward and fires the timers that are due.
    fn tick(&mut self, ms: u64) {
        self.advance(ms);
        let now = self.now();
        self.core.handle_timeout(now);
        self.pump();
    }

    fn pump(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Reply { conn, frame } => {
                    self.push(conn, Got::Reply(decode(&frame)));
                }
                Output::OpenRoomStream { conn, room, header, .. } => {
                    self.push(conn, Got::OpenStream(room, decode(&header)));
                }
                Output::CloseRoomStream { conn, room } => self.push(conn, Got::CloseStream(room)),
                Output::Broadcast { to, except, room, frame, .. } => {
                    let event: Event = decode(&frame);
                    for conn in to.iter().copied().filter(|c| Some(*c) != except) {
                        self.push(conn, Got::Event(Some(room), event.clone()));
                    }
                }
                Output::Push { conn, room, frame } => {
                    self.push(conn, Got::Event(room, decode(&frame)));
                }
                Output::Close { conn, code } => self.push(conn, Got::Close(code)),
            }
        }
    }

    fn push(&mut self, conn: ConnId, got: Got) {
        self.inbox.entry(conn).or_default().push(got);
    }

    /// Everything the connection got since the last take.
    fn take(&mut self, conn: ConnId) -> Vec<Got> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// The events the connection got since the last take (stream bookkeeping dropped).
    fn events(&mut self, conn: ConnId) -> Vec<Event> {
        self.take(conn)
            .into_iter()
            .filter_map(|g| match g {
                Got::Event(_, e) => Some(e),
                Got::Reply(r) => panic!("unexpected reply {r:?}"),
                _ => None,
            })
            .collect()
    }

    fn token(&self, user: &str) -> String {
        let now_s = self.unix_ms / 1000;
        self.keys.mint(KID, user, now_s, now_s + 3600).unwrap()
    }

    fn login_request(&self, user: &str) -> Login {
        Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token: self.token(user),
        }
    }

    /// Runs a login; returns its reply and everything else the connection got.
    fn try_login(&mut self, conn: ConnId, login: Login) -> (bool, Reply, Vec<Got>) {
        let id = self.next_request;
        self.next_request += 1;
        let now = self.now();
        let ok = self.core.handle_login(now, conn, id, login, [7; 16]).logged_in();
        self.pump();
        let mut got = self.take(conn);
        let pos = got
            .iter()
            .position(|g| matches!(g, Got::Reply(r) if r.request_id == id))
            .expect("a login reply");
        let Got::Reply(r) = got.remove(pos) else { unreachable!() };
        (ok, r.reply, got)
    }

    fn login(&mut self, conn: ConnId, user: &str) {
        let login = self.login_request(user);
        let (ok, reply, rest) = self.try_login(conn, login);
        assert!(ok, "{reply:?}");
        assert!(matches!(reply, Reply::Ok(Response::LoggedIn { .. })), "{reply:?}");
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// Sends a request and returns its answer; the connection's other deliveries stay queued.
    fn call(&mut self, conn: ConnId, request: Request) -> Result<Response, ErrorBody> {
        let id = self.next_request;
        self.next_request += 1;
        let now = self.now();
        self.core.handle_request(now, conn, id, request);
        self.pump();
        let inbox = self.inbox.entry(conn).or_default();
        let pos = inbox
            .iter()
            .position(|g| matches!(g, Got::Reply(r) if r.request_id == id))
            .expect("a reply to the request");
        let Got::Reply(r) = inbox.remove(pos) else { unreachable!() };
        match r.reply {
            Reply::Ok(r) => Ok(r),
            Reply::Err(e) => Err(e),
        }
    }

    fn ok(&mut self, conn: ConnId, request: Request) -> Response {
        self.call(conn, request).unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    fn fail(&mut self, conn: ConnId, request: Request) -> ErrorCode {
        match self.call(conn, request) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => ErrorCode::from_u16(e.code).expect("a known code"),
        }
    }

    fn create(&mut self, conn: ConnId, room: &str, delay_s: u32) -> RoomState {
        match self.ok(conn, create(room, delay_s)) {
            Response::RoomEntered(s) => s,
            r => panic!("{r:?}"),
        }
    }

    fn join(&mut self, conn: ConnId, room: &str) -> RoomState {
        match self.ok(conn, join(room)) {
            Response::RoomEntered(s) => s,
            r => panic!("{r:?}"),
        }
    }

    fn send(&mut self, conn: ConnId, room: &str, text: &str) -> (u64, u64, bool) {
        self.send_with(conn, room, MessageBody::Text(text.into()), None)
    }

    /// Sends a message; returns (message_id, seq, duplicate).
    fn send_with(
        &mut self,
        conn: ConnId,
        room: &str,
        body: MessageBody,
        client_msg_id: Option<&str>,
    ) -> (u64, u64, bool) {
        let req = send_req(room, body, client_msg_id);
        match self.ok(conn, req) {
            Response::MessageSent { message_id, seq, duplicate, .. } => {
                (message_id, seq, duplicate)
            }
            r => panic!("{r:?}"),
        }
    }

    fn joined_rooms(&mut self, conn: ConnId) -> Vec<String> {
        match self.ok(conn, Request::QueryJoinedRooms) {
            Response::JoinedRooms { rooms } => rooms.into_iter().map(|r| r.room_id).collect(),
            r => panic!("{r:?}"),
        }
    }

    /// Users `first..first+n` log in on connections with the same numbers.
    fn login_many(&mut self, first: ConnId, n: u64) {
        for c in first..first + n {
            self.login(c, &format!("u{c}"));
        }
    }
}

fn info(id: &str) -> RoomInfo {
    RoomInfo { room_id: id.into(), room_name: format!("{id} name") }
}

fn delay(s: u32) -> RoomConfig {
    RoomConfig { destroy_delay_s: s, attributes: Vec::new() }
}

fn create(room: &str, delay_s: u32) -> Request {
    Request::CreateRoom { info: info(room), config: delay(delay_s) }
}

fn join(room: &str) -> Request {
    Request::JoinRoom { room_id: room.into() }
}

fn leave(room: &str) -> Request {
    Request::LeaveRoom { room_id: room.into() }
}

fn send_req(room: &str, body: MessageBody, client_msg_id: Option<&str>) -> Request {
    Request::SendRoomMessage {
        room_id: room.into(),
        body,
        priority: Priority::Medium,
        client_msg_id: client_msg_id.map(str::to_string),
    }
}

fn text(room: &str, t: &str) -> Request {
    send_req(room, MessageBody::Text(t.into()), None)
}

fn member(user: &str) -> Member {
    Member { user_id: user.into(), user_name: format!("{user} name") }
}

fn joined(room: &str, users: &[&str]) -> Event {
    Event::MembersJoined {
        room_id: room.into(),
        members: users.iter().map(|u| member(u)).collect(),
    }
}

fn left(room: &str, users: &[&str], reason: LeaveReason) -> Event {
    Event::MembersLeft {
        room_id: room.into(),
        members: users.iter().map(|u| member(u)).collect(),
        reason,
    }
}

fn message_seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match e {
            Event::RoomMessage(m) => m.seq,
            e => panic!("expected a room message, got {e:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Login

#[test]
fn login_success_gives_session_and_token_expiry() {
    let mut h = Harness::plain();
    let login = h.login_request("alice");
    let (ok, reply, rest) = h.try_login(1, login);
    assert!(ok);
    assert!(rest.is_empty(), "{rest:?}");
    match reply {
        Reply::Ok(Response::LoggedIn {
            session_id,
            resume_secret,
            server_time_ms,
            token_expires_at_s,
        }) => {
            assert!(session_id > 0);
            assert_eq!(resume_secret, [7; 16]);
            assert_eq!(server_time_ms, START_UNIX_MS);
            assert_eq!(token_expires_at_s, START_UNIX_MS / 1000 + 3600);
        }
        r => panic!("{r:?}"),
    }
    assert!(h.core.is_logged_in(1));
    assert_eq!(h.core.session_count(), 1);
    assert_eq!(h.core.token_expiry(1), Some(START_UNIX_MS / 1000 + 3600));
    // A second Login on the same connection is refused but the session stays.
    let login = h.login_request("alice");
    assert_eq!(h.fail(1, Request::Login(login)), ErrorCode::AlreadyLoggedIn);
    assert!(h.core.is_logged_in(1));
}

#[test]
fn every_login_failure_has_its_code_and_closes() {
    let mut h = Harness::plain();
    let now_s = START_UNIX_MS / 1000;
    let good = h.login_request("alice");
    let cases: Vec<(Login, ErrorCode)> = vec![
        (
            Login { protocol_version: PROTOCOL_VERSION + 1, ..good.clone() },
            ErrorCode::UnsupportedVersion,
        ),
        (Login { protocol_version: 0, ..good.clone() }, ErrorCode::UnsupportedVersion),
        (Login { user_id: String::new(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "a".repeat(33), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "al ice".into(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "al/ice".into(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_name: "n".repeat(257), ..good.clone() }, ErrorCode::UserNameTooLong),
        (Login { token: "garbage".into(), ..good.clone() }, ErrorCode::TokenMalformed),
        (Login { token: h.token("bob"), ..good.clone() }, ErrorCode::TokenInvalid),
        (
            Login {
                token: h.keys.mint(KID, "alice", now_s - 7200, now_s - 1).unwrap(),
                ..good.clone()
            },
            ErrorCode::TokenExpired,
        ),
        (
            Login {
                token: h.keys.mint(KID, "alice", now_s - 7200, now_s).unwrap(),
                ..good.clone()
            },
            ErrorCode::TokenExpired,
        ),
    ];
    for (i, (login, code)) in cases.into_iter().enumerate() {
        let conn = 100 + i as ConnId;
        let (ok, reply, rest) = h.try_login(conn, login.clone());
        assert!(!ok, "case {i}: {login:?}");
        match reply {
            Reply::Err(e) => assert_eq!(e.code, code.as_u16(), "case {i}: {login:?}: {e:?}"),
            r => panic!("case {i}: {r:?}"),
        }
        assert_eq!(rest, vec![Got::Close(Some(code))], "case {i}");
        assert!(!h.core.is_logged_in(conn));
    }
    assert_eq!(h.core.session_count(), 0);
    // Limits at the edges are accepted.
    let login = Login {
        user_id: "a".repeat(32),
        user_name: "n".repeat(256),
        ..h.login_request(&"a".repeat(32))
    };
    assert!(h.try_login(1, login).0);
    let login = h.login_request("A.b_c-d@e9");
    assert!(h.try_login(2, login).0);
}

#[test]
fn request_before_login_is_refused_and_closes() {
    let mut h = Harness::plain();
    assert_eq!(h.fail(1, join("r")), ErrorCode::NotLoggedIn);
    assert_eq!(h.take(1), vec![Got::Close(Some(ErrorCode::NotLoggedIn))]);
    assert!(!h.core.is_logged_in(1));
    assert_eq!(h.fail(2, Request::QueryJoinedRooms), ErrorCode::NotLoggedIn);
    assert_eq!(h.take(2), vec![Got::Close(Some(ErrorCode::NotLoggedIn))]);
}

#[test]
fn duplicate_login_kicks_the_older_session() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);

    let login = h.login_request("alice");
    let (ok, _, rest) = h.try_login(3, login);
    assert!(ok);
    assert!(rest.is_empty());
    let old = h.take(1);
    let kick_at = old
        .iter()
        .position(|g| matches!(g, Got::Event(None, Event::KickedOut { code: 2004, .. })))
        .unwrap_or_else(|| panic!("no KickedOut on the session stream: {old:?}"));
    let close_at = old
        .iter()
        .position(|g| *g == Got::Close(Some(ErrorCode::KickedOut)))
        .unwrap_or_else(|| panic!("no close: {old:?}"));
    assert!(kick_at < close_at, "the event goes before the close: {old:?}");
    assert!(!h.core.is_logged_in(1));
    assert!(h.core.is_logged_in(3));
    assert_eq!(h.core.session_count(), 2);

    // Bob hears about the kick after the batch window, not before.
    h.tick(49);
    assert_eq!(h.events(2), vec![]);
    h.tick(1);
    assert_eq!(h.events(2), vec![left("r", &["alice"], LeaveReason::Kicked)]);
    // The new session is in no room; the old one is gone.
    assert_eq!(h.joined_rooms(3), Vec::<String>::new());
    assert_eq!(h.joined_rooms(2), vec!["r".to_string()]);
    // A late disconnect of the kicked connection changes nothing.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    h.tick(100);
    assert_eq!(h.events(2), vec![]);
    assert!(h.core.is_logged_in(3));
}

// ---------------------------------------------------------------------------------------------
// Presence

#[test]
fn joins_within_the_window_make_one_event_and_joiners_hear_only_later_joiners() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "carol");
    h.login(4, "dave");
    let st = h.create(1, "r", 0);
    assert!(st.created);
    assert_eq!(st.member_count, 1);
    assert!(
        matches!(h.take(1).as_slice(), [Got::OpenStream(_, StreamHeader::Room { room_id })] if room_id == "r")
    );

    h.join(2, "r");
    h.advance(10);
    h.join(3, "r");
    h.advance(20);
    let st = h.join(4, "r");
    assert_eq!(st.member_count, 4);
    assert!(!st.created && !st.already_member);
    for c in 2..=4 {
        assert!(matches!(h.take(c).as_slice(), [Got::OpenStream(..)]));
    }
    // 49 ms after the first join: nothing yet.
    h.tick(19);
    for c in 1..=4 {
        assert_eq!(h.take(c), vec![], "conn {c} before the window ends");
    }
    h.tick(1);
    assert_eq!(h.events(1), vec![joined("r", &["bob", "carol", "dave"])]);
    assert_eq!(h.events(2), vec![joined("r", &["carol", "dave"])]);
    assert_eq!(h.events(3), vec![joined("r", &["dave"])]);
    assert_eq!(h.events(4), vec![]);
    // The window is over: nothing more.
    h.tick(1_000);
    for c in 1..=4 {
        assert_eq!(h.take(c), vec![]);
    }
    // A leave is batched the same way.
    h.ok(3, leave("r"));
    assert!(matches!(h.take(3).as_slice(), [Got::CloseStream(_)]));
    h.tick(49);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    let ev = left("r", &["carol"], LeaveReason::Left);
    assert_eq!(h.events(1), vec![ev.clone()]);
    assert_eq!(h.events(2), vec![ev.clone()]);
    assert_eq!(h.events(4), vec![ev]);
    assert_eq!(h.events(3), vec![]);
}

#[test]
fn joins_over_the_batch_max_split_into_events_of_at_most_100() {
    let mut h = Harness::new(Limits { members_per_room: 1_000, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.login_many(10, 250);
    for c in 10..260 {
        h.join(c, "r");
    }
    h.take(1);
    h.tick(50);
    let events = h.events(1);
    let sizes: Vec<usize> = events
        .iter()
        .map(|e| match e {
            Event::MembersJoined { members, .. } => members.len(),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let users: Vec<String> = events
        .iter()
        .flat_map(|e| match e {
            Event::MembersJoined { members, .. } => members.clone(),
            _ => unreachable!(),
        })
        .map(|m| m.user_id)
        .collect();
    let expected: Vec<String> = (10..260).map(|c| format!("u{c}")).collect();
    assert_eq!(users, expected, "every joiner once, in join order");
    // The first joiner of the batch hears about the 249 after it, split the same way.
    let sizes: Vec<usize> = h
        .events(10)
        .iter()
        .map(|e| match e {
            Event::MembersJoined { members, .. } => members.len(),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![100, 100, 49]);
    assert_eq!(h.events(259), vec![]);
}

#[test]
fn a_message_during_a_pending_batch_flushes_presence_first() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "carol");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.advance(5);
    h.join(3, "r");
    h.advance(5);
    h.take(1);
    h.take(2);
    h.take(3);
    let (_, seq, _) = h.send(3, "r", "hello");
    assert_eq!(seq, 1);
    let a = h.events(1);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], joined("r", &["bob", "carol"]));
    assert!(matches!(&a[1], Event::RoomMessage(m) if m.seq == 1 && m.sender == "carol"));
    let b = h.events(2);
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0], joined("r", &["carol"]));
    assert!(matches!(&b[1], Event::RoomMessage(m) if m.seq == 1));
    // The sender gets no copy and no event about itself.
    assert_eq!(h.events(3), vec![]);
    // The batch is not announced a second time when its timer fires.
    h.tick(100);
    for c in 1..=3 {
        assert_eq!(h.take(c), vec![]);
    }
}

#[test]
fn a_batch_started_after_an_early_flush_waits_its_full_window() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.advance(10);
    // The message flushes bob's join early.
    h.send(2, "r", "hi");
    assert_eq!(h.events(1)[0], joined("r", &["u2"]));
    h.advance(10);
    h.join(3, "r");
    // 30 ms into carol's batch (when bob's batch would have ended): nothing yet.
    h.tick(30);
    assert_eq!(h.events(1), vec![]);
    h.tick(19);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    assert_eq!(h.events(1), vec![joined("r", &["u3"])]);
    assert_eq!(h.events(2), vec![joined("r", &["u3"])]);
}

#[test]
fn rooms_over_the_threshold_get_member_count_updates() {
    let mut h = Harness::new(Limits { presence_count_threshold: 3, ..Limits::default() });
    h.login_many(1, 6);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.join(3, "r");
    h.tick(50);
    // Three members: at the threshold, member lists still.
    assert_eq!(h.events(1), vec![joined("r", &["u2", "u3"])]);
    h.take(2);
    h.take(3);
    h.join(4, "r");
    h.join(5, "r");
    h.tick(50);
    let update = Event::MemberCountUpdated { room_id: "r".into(), count: 5 };
    for c in 1..=5 {
        assert_eq!(h.events(c), vec![update.clone()], "conn {c}");
    }
    h.ok(5, leave("r"));
    h.take(5);
    h.tick(50);
    let update = Event::MemberCountUpdated { room_id: "r".into(), count: 4 };
    for c in 1..=4 {
        assert_eq!(h.events(c), vec![update.clone()], "conn {c}");
    }
    // A join and a leave in one window leave the count where it was: nothing to say.
    h.join(6, "r");
    h.ok(6, leave("r"));
    h.take(6);
    h.tick(50);
    for c in 1..=4 {
        assert_eq!(h.events(c), vec![], "conn {c}");
    }
}

// ---------------------------------------------------------------------------------------------
// Destroy

#[test]
fn delayed_destroy_keeps_the_room_until_the_delay_and_a_join_cancels_it() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 2);
    h.send(1, "r", "one");
    h.ok(1, leave("r"));
    assert_eq!(h.core.room_count(), 1);
    assert_eq!(h.core.poll_timeout(), Some(h.mono_ms + 2_000));
    // Waiting for its destroy, the room still exists.
    assert_eq!(h.fail(2, create("r", 0)), ErrorCode::RoomAlreadyExists);
    h.tick(1_000);
    let st = h.join(2, "r");
    assert!(!st.created);
    assert_eq!(st.member_count, 1);
    assert_eq!(st.last_seq, 1, "history survives a cancelled destroy");
    // The old deadline passes: the join cancelled the destroy.
    h.tick(1_500);
    assert_eq!(h.core.room_count(), 1);
    let st = h.join(1, "r");
    assert_eq!(st.member_count, 2);
}

#[test]
fn delayed_destroy_happens_at_the_deadline() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 2);
    h.send(1, "r", "one");
    h.ok(1, leave("r"));
    h.tick(1_999);
    assert_eq!(h.core.room_count(), 1);
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
    let later = h.now().mono_ms + 60_000;
    assert!(h.core.poll_timeout().is_none_or(|t| t > later), "only the token timers remain");
    assert_eq!(h.fail(2, join("r")), ErrorCode::RoomDoesNotExist);
    // The id is free again, and the new room starts from scratch.
    let st = h.create(2, "r", 0);
    assert!(st.created);
    assert_eq!(st.last_seq, 0);
}

#[test]
fn a_room_empties_twice_and_only_the_second_deadline_counts() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 2);
    h.ok(1, leave("r"));
    h.tick(1_000);
    h.join(1, "r");
    h.ok(1, leave("r"));
    // First deadline: ignored.
    h.tick(1_000);
    assert_eq!(h.core.room_count(), 1);
    h.tick(999);
    assert_eq!(h.core.room_count(), 1);
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
}

#[test]
fn immediate_destroy_with_delay_zero() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.ok(1, leave("r"));
    assert_eq!(h.core.room_count(), 1, "a member is still in it");
    h.ok(2, leave("r"));
    assert_eq!(h.core.room_count(), 0);
    assert_eq!(h.fail(1, join("r")), ErrorCode::RoomDoesNotExist);
    assert!(h.create(1, "r", 0).created);
    // A lost connection empties rooms too, once its offline grace is over.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.core.room_count(), 1, "held for the offline grace");
    h.tick(1);
    assert_eq!(h.core.room_count(), 0);
    assert_eq!(h.core.session_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Messages

#[test]
fn rate_limit_bursts_then_refuses_then_recovers() {
    let mut h =
        Harness::new(Limits { rate_limit_per_s: 10, rate_limit_burst: 20, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    for i in 0..20 {
        h.send(1, "r", &format!("m{i}"));
    }
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // The limit is per user: bob still has his burst.
    h.send(2, "r", "bob");
    // 99 ms later: still nothing; at 100 ms, one token.
    h.advance(99);
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    h.advance(1);
    let (_, seq, _) = h.send(1, "r", "refilled");
    assert_eq!(seq, 22);
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // A long pause refills up to the burst, no further.
    h.advance(60_000);
    for i in 0..20 {
        h.send(1, "r", &format!("again{i}"));
    }
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // Refused sends were not broadcast and took no seq.
    h.tick(50);
    let seqs = message_seqs(
        &h.events(2).into_iter().filter(|e| matches!(e, Event::RoomMessage(_))).collect::<Vec<_>>(),
    );
    let expected: Vec<u64> = (1..=42).filter(|s| *s != 21).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn rate_limit_zero_disables_it() {
    let mut h =
        Harness::new(Limits { rate_limit_per_s: 0, rate_limit_burst: 1, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    for i in 0..1_000 {
        h.send(1, "r", &format!("m{i}"));
    }
}

#[test]
fn client_msg_id_dedups_for_five_minutes() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let first = match h.ok(1, send_req("r", MessageBody::Text("hi".into()), Some("c1"))) {
        Response::MessageSent { message_id, seq, timestamp_ms, duplicate, .. } => {
            assert!(!duplicate);
            (message_id, seq, timestamp_ms)
        }
        r => panic!("{r:?}"),
    };
    assert_eq!(h.events(2).len(), 1);
    h.advance(1_000);
    match h.ok(1, send_req("r", MessageBody::Text("hi again".into()), Some("c1"))) {
        Response::MessageSent { message_id, seq, timestamp_ms, duplicate, room_id } => {
            assert!(duplicate);
            assert_eq!(room_id, "r");
            assert_eq!((message_id, seq, timestamp_ms), first, "the first ack");
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.events(2), vec![], "a retry is not broadcast again");
    // Another id, and the same id from another user, are new messages.
    assert_eq!(h.send_with(1, "r", MessageBody::Text("x".into()), Some("c2")).1, 2);
    assert_eq!(h.send_with(2, "r", MessageBody::Text("y".into()), Some("c1")).1, 3);
    // Still remembered just before five minutes.
    h.advance(300_000 - 1_000 - 1);
    let (_, seq, dup) = h.send_with(1, "r", MessageBody::Text("hi".into()), Some("c1"));
    assert_eq!((seq, dup), (1, true));
    // Forgotten at five minutes.
    h.advance(1);
    let (_, seq, dup) = h.send_with(1, "r", MessageBody::Text("hi".into()), Some("c1"));
    assert_eq!((seq, dup), (4, false));
    // Bad ids are refused.
    let long = "x".repeat(65);
    assert_eq!(
        h.fail(1, send_req("r", MessageBody::Text("z".into()), Some(&long))),
        ErrorCode::InvalidClientMsgId
    );
    assert_eq!(
        h.fail(1, send_req("r", MessageBody::Text("z".into()), Some(""))),
        ErrorCode::InvalidClientMsgId
    );
    assert_eq!(h.send_with(1, "r", MessageBody::Text("z".into()), Some(&"x".repeat(64))).1, 5);
}

#[test]
fn sender_gets_ack_others_get_one_copy_and_non_members_cannot_send() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let body = MessageBody::Custom { sub_type: 9, data: vec![1, 2, 3] };
    match h.ok(1, send_req("r", body.clone(), None)) {
        Response::MessageSent { seq, timestamp_ms, duplicate, .. } => {
            assert_eq!(seq, 1);
            assert_eq!(timestamp_ms, h.unix_ms);
            assert!(!duplicate);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.events(1), vec![]);
    match h.events(2).as_slice() {
        [Event::RoomMessage(m)] => {
            assert_eq!((m.seq, m.sender.as_str(), m.room_id.as_str()), (1, "u1", "r"));
            assert_eq!(m.body, body);
            assert_eq!(m.priority, Priority::Medium);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.fail(3, text("r", "x")), ErrorCode::NotInRoom);
    assert_eq!(h.fail(3, text("nope", "x")), ErrorCode::RoomDoesNotExist);
    assert_eq!(h.events(2), vec![]);
}

#[test]
fn history_is_bounded_by_count() {
    let mut h = Harness::new(Limits { history_max_messages: 5, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    for i in 1..=8 {
        h.send(1, "r", &format!("m{i}"));
    }
    let q = |anchor, count| Request::QueryHistory { room_id: "r".into(), anchor, count };
    match h.ok(1, q(HistoryAnchor::Latest, 100)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5, 6, 7, 8]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::Latest, 2)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![7, 8]);
            assert!(has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::AfterSeq(1), 3)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5, 6]);
            assert!(has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::BeforeSeq(6), 10)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.fail(1, q(HistoryAnchor::Latest, 0)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q(HistoryAnchor::Latest, 101)), ErrorCode::InvalidRequest);
}

fn wrap(messages: Vec<huddle::wire::RoomMessage>) -> Vec<Event> {
    messages.into_iter().map(Event::RoomMessage).collect()
}

#[test]
fn history_is_bounded_by_age() {
    let mut h = Harness::new(Limits { history_max_age_s: 10, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.send(1, "r", "old");
    h.advance(6_000);
    h.send(1, "r", "new");
    let latest =
        Request::QueryHistory { room_id: "r".into(), anchor: HistoryAnchor::Latest, count: 100 };
    h.advance(4_000);
    match h.ok(1, latest.clone()) {
        Response::History { messages, .. } => assert_eq!(messages.len(), 2),
        r => panic!("{r:?}"),
    }
    h.advance(1);
    match h.ok(1, latest.clone()) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![2]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    h.advance(6_000);
    match h.ok(1, latest) {
        Response::History { messages, has_more, .. } => {
            assert!(messages.is_empty());
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn message_size_limit_is_exact() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 0);
    let max = Limits::default().max_message_bytes;
    assert_eq!(max, 32 * 1024);
    h.send(1, "r", &"a".repeat(max));
    assert_eq!(h.fail(1, text("r", &"a".repeat(max + 1))), ErrorCode::MessageTooLarge);
    let custom = |n| MessageBody::Custom { sub_type: 1, data: vec![0; n] };
    h.send_with(1, "r", custom(max), None);
    assert_eq!(h.fail(1, send_req("r", custom(max + 1), None)), ErrorCode::MessageTooLarge);
}

// ---------------------------------------------------------------------------------------------
// Queries

#[test]
fn query_room_members_pages_through_250_members() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.login_many(10, 249);
    for c in 10..259 {
        h.join(c, "r");
    }
    let page = |h: &mut Harness, flag: &str, count| match h
        .ok(1, Request::QueryRoomMembers { room_id: "r".into(), next_flag: flag.into(), count })
    {
        Response::RoomMembers { members, next_flag, room_id } => {
            assert_eq!(room_id, "r");
            (members, next_flag)
        }
        r => panic!("{r:?}"),
    };
    let mut all = Vec::new();
    let mut flag = String::new();
    let mut sizes = Vec::new();
    loop {
        let (members, next) = page(&mut h, &flag, 100);
        sizes.push(members.len());
        all.extend(members);
        if next.is_empty() {
            break;
        }
        flag = next;
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    let mut expected = vec![member("alice")];
    expected.extend((10..259).map(|c| member(&format!("u{c}"))));
    assert_eq!(all, expected, "every member once, in join order");
    // A page that ends exactly at the last member says there is no more.
    let (members, next) = page(&mut h, "", 100);
    let (members2, next2) = page(&mut h, &next, 100);
    let (members3, next3) = page(&mut h, &next2, 50);
    assert_eq!((members.len(), members2.len(), members3.len()), (100, 100, 50));
    assert_eq!(next3, "");
    // Bad arguments.
    let q = |flag: &str, count| Request::QueryRoomMembers {
        room_id: "r".into(),
        next_flag: flag.into(),
        count,
    };
    assert_eq!(h.fail(1, q("", 0)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q("", 101)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q("not-a-number", 10)), ErrorCode::InvalidRequest);
    h.login(500, "outsider");
    assert_eq!(h.fail(500, q("", 10)), ErrorCode::NotInRoom);
    // Online count.
    match h.ok(1, Request::QueryRoomOnlineCount { room_id: "r".into() }) {
        Response::RoomOnlineCount { count, .. } => assert_eq!(count, 250),
        r => panic!("{r:?}"),
    }
}

#[test]
fn query_members_by_id_and_joined_rooms() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.create(1, "s", 0);
    h.join(2, "r");
    let by_id =
        |ids: Vec<String>| Request::QueryRoomMembersById { room_id: "r".into(), user_ids: ids };
    match h.ok(1, by_id(vec!["u2".into(), "u3".into(), "u1".into()])) {
        Response::RoomMembersById { members, not_found, .. } => {
            assert_eq!(members, vec![member("u2"), member("u1")]);
            assert_eq!(not_found, vec!["u3".to_string()]);
        }
        r => panic!("{r:?}"),
    }
    let ten: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    assert!(h.call(1, by_id(ten.clone())).is_ok());
    let mut eleven = ten;
    eleven.push("u1".into());
    assert_eq!(h.fail(1, by_id(eleven)), ErrorCode::TooManyUserIds);
    match h.ok(1, Request::QueryJoinedRooms) {
        Response::JoinedRooms { rooms } => {
            let got: Vec<(String, String, u32)> =
                rooms.into_iter().map(|r| (r.room_id, r.room_name, r.member_count)).collect();
            assert_eq!(
                got,
                vec![("r".into(), "r name".into(), 2), ("s".into(), "s name".into(), 1)]
            );
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.joined_rooms(3), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn rooms_per_user_limit() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(2, "other", 0);
    for i in 0..5 {
        h.create(1, &format!("r{i}"), 0);
    }
    assert_eq!(h.fail(1, create("r5", 0)), ErrorCode::RoomLimitReached);
    assert_eq!(h.fail(1, join("other")), ErrorCode::RoomLimitReached);
    let enter = Request::EnterRoom { info: info("r6"), config: delay(0) };
    assert_eq!(h.fail(1, enter), ErrorCode::RoomLimitReached);
    assert_eq!(h.core.room_count(), 6, "the refused create made no room");
    // Re-joining a room already joined is fine at the limit.
    assert!(h.join(1, "r0").already_member);
    h.ok(1, leave("r0"));
    h.join(1, "other");
}

#[test]
fn members_per_room_limit() {
    let mut h = Harness::new(Limits { members_per_room: 3, ..Limits::default() });
    h.login_many(1, 4);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.join(3, "r");
    assert_eq!(h.fail(4, join("r")), ErrorCode::RoomFull);
    let enter = Request::EnterRoom { info: info("r"), config: delay(0) };
    assert_eq!(h.fail(4, enter), ErrorCode::RoomFull);
    // A member re-joining a full room is fine.
    assert!(h.join(3, "r").already_member);
    h.ok(3, leave("r"));
    h.join(4, "r");
}

#[test]
fn rooms_per_server_limit() {
    let mut h = Harness::new(Limits { rooms_per_server: 2, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "a", 0);
    h.create(1, "b", 5);
    assert_eq!(h.fail(1, create("c", 0)), ErrorCode::ServerRoomLimit);
    // A room waiting for its delayed destroy still counts.
    h.ok(1, leave("b"));
    assert_eq!(h.fail(1, create("c", 0)), ErrorCode::ServerRoomLimit);
    h.tick(5_000);
    h.create(1, "c", 0);
}

#[test]
fn room_name_destroy_delay_and_room_id_limits() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    let named = |name: String| Request::CreateRoom {
        info: RoomInfo { room_id: "n".into(), room_name: name },
        config: delay(0),
    };
    assert_eq!(h.fail(1, named("x".repeat(257))), ErrorCode::RoomNameTooLong);
    h.ok(1, named("x".repeat(256)));
    assert_eq!(h.fail(1, create("d", 10_801)), ErrorCode::InvalidDestroyDelay);
    h.create(1, "d", 10_800);
    for bad in ["", &"a".repeat(129), "a b", "a/b", "caf\u{e9}", "a#b"] {
        assert_eq!(h.fail(1, create(bad, 0)), ErrorCode::InvalidRoomId, "{bad:?}");
        assert_eq!(h.fail(1, join(bad)), ErrorCode::InvalidRoomId, "{bad:?}");
        let enter = Request::EnterRoom { info: info(bad), config: delay(0) };
        assert_eq!(h.fail(1, enter), ErrorCode::InvalidRoomId, "{bad:?}");
    }
    h.create(1, &"a".repeat(128), 0);
    h.create(1, "A-z_0.9@x:y", 0);
    assert_eq!(h.core.room_count(), 4);
}

// ---------------------------------------------------------------------------------------------
// Room operations

#[test]
fn create_join_enter_and_leave_errors() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    assert_eq!(h.fail(2, create("r", 0)), ErrorCode::RoomAlreadyExists);
    assert_eq!(h.fail(2, join("missing")), ErrorCode::RoomDoesNotExist);
    assert_eq!(h.fail(2, leave("r")), ErrorCode::NotInRoom);
    assert_eq!(h.fail(2, leave("missing")), ErrorCode::RoomDoesNotExist);
    // enter creates with the caller's config, or joins and keeps the room's.
    let attrs = vec![("k".to_string(), "v".to_string())];
    let enter = |attrs: Vec<(String, String)>| Request::EnterRoom {
        info: info("e"),
        config: RoomConfig { destroy_delay_s: 0, attributes: attrs },
    };
    match h.ok(2, enter(attrs.clone())) {
        Response::RoomEntered(s) => assert!(s.created && s.attributes == attrs),
        r => panic!("{r:?}"),
    }
    match h.ok(3, enter(vec![("x".into(), "y".into())])) {
        Response::RoomEntered(s) => {
            assert!(!s.created && !s.already_member);
            assert_eq!(s.attributes, attrs);
            assert_eq!(s.member_count, 2);
        }
        r => panic!("{r:?}"),
    }
    // Re-joining is idempotent and tells nobody.
    h.tick(50);
    h.take(2);
    h.take(3);
    let st = h.join(3, "e");
    assert!(st.already_member);
    assert_eq!(st.member_count, 2);
    assert_eq!(h.take(3), vec![], "no second stream");
    h.tick(50);
    assert_eq!(h.take(2), vec![]);
}

#[test]
fn leave_all_rooms_leaves_every_room() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "a", 0);
    h.create(1, "b", 0);
    h.create(1, "c", 0);
    h.join(2, "b");
    h.tick(50);
    h.take(1);
    match h.ok(1, Request::LeaveAllRooms) {
        Response::RoomsLeft { mut room_ids } => {
            room_ids.sort();
            assert_eq!(room_ids, vec!["a", "b", "c"]);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.joined_rooms(1), Vec::<String>::new());
    assert_eq!(h.core.room_count(), 1);
    h.tick(50);
    assert_eq!(h.events(2), vec![left("b", &["alice"], LeaveReason::Left)]);
    match h.ok(1, Request::LeaveAllRooms) {
        Response::RoomsLeft { room_ids } => assert!(room_ids.is_empty()),
        r => panic!("{r:?}"),
    }
}

#[test]
fn switch_room_cases() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "a", 0);
    h.create(2, "b", 0);
    // Missing target without create: an error, and alice stays in a.
    let switch = |to: &str, create: bool| Request::SwitchRoom {
        from_room_id: "a".into(),
        to: info(to),
        create_if_missing: create,
        config: delay(0),
    };
    assert_eq!(h.fail(1, switch("missing", false)), ErrorCode::RoomDoesNotExist);
    assert_eq!(h.joined_rooms(1), vec!["a".to_string()]);
    assert_eq!(h.fail(1, switch("bad id", true)), ErrorCode::InvalidRoomId);
    assert_eq!(h.joined_rooms(1), vec!["a".to_string()]);
    // Bob is not in the from room (which exists).
    assert_eq!(h.fail(2, switch("b", true)), ErrorCode::NotInRoom);
    assert_eq!(h.joined_rooms(2), vec!["b".to_string()]);
    // Into an existing room: a is left (and destroyed), b joined.
    h.take(2);
    match h.ok(1, switch("b", false)) {
        Response::RoomSwitched { left_room_id, room } => {
            assert_eq!(left_room_id, "a");
            assert_eq!(room.room_id, "b");
            assert!(!room.created);
            assert_eq!(room.member_count, 2);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.joined_rooms(1), vec!["b".to_string()]);
    assert_eq!(h.core.room_count(), 1);
    h.tick(50);
    assert_eq!(h.events(2), vec![joined("b", &["alice"])]);
    // create_if_missing creates the target.
    let req = Request::SwitchRoom {
        from_room_id: "b".into(),
        to: info("c"),
        create_if_missing: true,
        config: delay(0),
    };
    match h.ok(1, req) {
        Response::RoomSwitched { left_room_id, room } => {
            assert_eq!(left_room_id, "b");
            assert_eq!(room.room_id, "c");
            assert!(room.created);
            assert_eq!(room.member_count, 1);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.joined_rooms(1), vec!["c".to_string()]);
    h.tick(50);
    assert_eq!(h.events(2), vec![left("b", &["alice"], LeaveReason::Left)]);
}

#[test]
fn switch_room_into_a_full_room_keeps_the_caller_where_it_was() {
    let mut h = Harness::new(Limits { members_per_room: 1, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "a", 0);
    h.create(2, "b", 0);
    let req = Request::SwitchRoom {
        from_room_id: "a".into(),
        to: info("b"),
        create_if_missing: false,
        config: delay(0),
    };
    assert_eq!(h.fail(1, req), ErrorCode::RoomFull);
    assert_eq!(h.joined_rooms(1), vec!["a".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Multi-device

#[test]
fn multi_device_sessions_share_messages_and_presence() {
    let mut h = Harness::new(Limits { allow_multi_device: true, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "alice");
    h.login(3, "bob");
    assert!(h.core.is_logged_in(1) && h.core.is_logged_in(2));
    assert_eq!(h.take(1), vec![], "no kick in multi-device mode");
    h.create(3, "r", 0);
    h.join(1, "r");
    h.tick(50);
    assert_eq!(h.events(3), vec![joined("r", &["alice"])]);
    // The second device joins: bob hears nothing, the member count stays 2.
    let st = h.join(2, "r");
    assert!(!st.already_member, "this session was not in the room");
    assert_eq!(st.member_count, 2);
    h.tick(50);
    assert_eq!(h.events(3), vec![]);
    h.take(1);
    h.take(2);
    // A message from one device reaches the other device and bob, not the sender.
    h.send(1, "r", "from phone");
    assert_eq!(h.events(1), vec![]);
    assert_eq!(message_seqs(&h.events(2)), vec![1]);
    assert_eq!(message_seqs(&h.events(3)), vec![1]);
    // The first device leaves: alice is still a member.
    h.ok(1, leave("r"));
    h.take(1);
    h.tick(50);
    assert_eq!(h.events(3), vec![]);
    h.send(3, "r", "still there?");
    assert_eq!(h.events(1), vec![]);
    assert_eq!(message_seqs(&h.events(2)), vec![2]);
    // The last device goes: now alice left.
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.events(3), vec![], "nobody sees a leave during the offline grace");
    h.tick(1);
    h.tick(50);
    assert_eq!(h.events(3), vec![left("r", &["alice"], LeaveReason::Offline)]);
}

// ---------------------------------------------------------------------------------------------
// Resumption (SPEC section 6), with explicit time.

impl Harness {
    /// Runs a Resume on `conn`; returns the reply and everything else the connection got.
    fn resume(
        &mut self,
        conn: ConnId,
        user: &str,
        session_id: u64,
        secret: [u8; 16],
        rooms: &[(&str, u64)],
    ) -> (bool, Reply, Vec<Got>) {
        let id = self.next_request;
        self.next_request += 1;
        let now = self.now();
        let resume = huddle::wire::Resume {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token: self.token(user),
            session_id,
            resume_secret: secret,
            rooms: rooms.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
        };
        let ok = self.core.handle_resume(now, conn, id, resume, [9; 16]).logged_in();
        self.pump();
        let mut got = self.take(conn);
        let pos = got
            .iter()
            .position(|g| matches!(g, Got::Reply(r) if r.request_id == id))
            .expect("a reply");
        let Got::Reply(r) = got.remove(pos) else { unreachable!() };
        (ok, r.reply, got)
    }

    fn session_of(&self, conn: ConnId) -> u64 {
        self.core.session_of(conn).expect("a session")
    }
}

fn replayed_seqs(got: &[Got]) -> Vec<u64> {
    got.iter()
        .filter_map(|g| match g {
            Got::Event(Some(_), Event::RoomMessage(m)) => Some(m.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn resume_within_the_grace_replays_in_order_and_nobody_sees_a_flap() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    h.send(1, "r", "seen");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for i in 0..3 {
        h.send(1, "r", &format!("missed {i}"));
    }
    h.tick(20_000);
    assert_eq!(h.events(1), vec![], "no leave during the grace");
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 1)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { session_id, session_resumed, rooms, .. }) => {
            assert_eq!((session_id, session_resumed), (sid, true));
            assert_eq!(rooms.len(), 1);
            assert!(rooms[0].rejoined && rooms[0].recovered);
            assert_eq!((rooms[0].replayed, rooms[0].last_seq), (3, 4));
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(got[0], Got::OpenStream(_, StreamHeader::Room { .. })), "{got:?}");
    assert_eq!(replayed_seqs(&got), vec![2, 3, 4]);
    // New messages follow the replay on the new connection; the grace timer no longer fires.
    h.send(1, "r", "live");
    assert_eq!(message_seqs(&h.events(3)), vec![5]);
    h.tick(20_000);
    assert_eq!(h.events(1), vec![]);
    assert_eq!(h.core.session_count(), 2);
}

#[test]
fn the_grace_ends_with_an_offline_leave_and_a_late_resume_is_a_new_session() {
    let mut h = Harness::new(Limits { history_max_messages: 2, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    h.tick(50);
    assert_eq!(h.events(1), vec![left("r", &["bob"], LeaveReason::Offline)]);
    for i in 0..5 {
        h.send(1, "r", &format!("while away {i}"));
    }
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0), ("gone", 0)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { session_id, session_resumed, rooms, .. }) => {
            assert_ne!(session_id, sid);
            assert!(!session_resumed);
            assert!(rooms[0].rejoined && !rooms[0].recovered, "{rooms:?}");
            assert_eq!(rooms[0].replayed, 2);
            assert!(!rooms[1].rejoined);
            assert_eq!(rooms[1].error_code, ErrorCode::RoomDoesNotExist.as_u16());
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(replayed_seqs(&got), vec![4, 5], "what the history still held");
    h.tick(50);
    assert!(matches!(&h.events(1)[..], [Event::MembersJoined { .. }]));
}

#[test]
fn resume_with_a_wrong_secret_is_refused_and_closed() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    let sid = h.session_of(1);
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    let (ok, reply, got) = h.resume(2, "alice", sid, [8; 16], &[]);
    assert!(!ok);
    assert!(matches!(reply, Reply::Err(e) if e.code == ErrorCode::SessionNotFound.as_u16()));
    assert_eq!(got, vec![Got::Close(Some(ErrorCode::SessionNotFound))]);
    // Another user cannot take the session either, even with the right secret.
    let (ok, _, _) = h.resume(3, "mallory", sid, [7; 16], &[]);
    assert!(!ok);
}

#[test]
fn resume_while_the_old_connection_lingers_closes_it() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    let sid = h.session_of(1);
    let (ok, _, _) = h.resume(2, "alice", sid, [7; 16], &[]);
    assert!(ok);
    assert_eq!(h.take(1), vec![Got::Close(Some(ErrorCode::SessionResumed))]);
    // The old connection's late disconnect changes nothing.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    assert_eq!(h.session_of(2), sid);
}

#[test]
fn a_replay_larger_than_its_budget_keeps_the_newest_and_says_so() {
    let mut h =
        Harness::new(Limits { max_replay_bytes: 1_000, rate_limit_per_s: 0, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for _ in 0..10 {
        h.send_with(1, "r", MessageBody::Text("x".repeat(300)), None);
    }
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    let seqs = replayed_seqs(&got);
    assert!(!seqs.is_empty() && seqs.len() < 10, "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), 10, "the newest are kept");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gaps: {seqs:?}");
    match reply {
        Reply::Ok(Response::Resumed { rooms, .. }) => {
            assert!(!rooms[0].recovered);
            assert_eq!(rooms[0].replayed as usize, seqs.len());
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn resumption_replays_medium_and_high_but_not_low() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for (i, prio) in
        [Priority::Low, Priority::Medium, Priority::Low, Priority::High].into_iter().enumerate()
    {
        let req = Request::SendRoomMessage {
            room_id: "r".into(),
            body: MessageBody::Text(i.to_string()),
            priority: prio,
            client_msg_id: None,
        };
        h.ok(1, req);
    }
    let (ok, _, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    assert_eq!(replayed_seqs(&got), vec![2, 4], "low is best effort and is not replayed");
}

#[test]
fn resumption_does_not_replay_the_sessions_own_messages() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.send(2, "r", "mine 1");
    h.send(2, "r", "mine 2");
    h.send(1, "r", "hers 3");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.send(1, "r", "hers 4");
    // Bob only ever received seq 3 live; from 0 he gets everything but his own.
    let (ok, _, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    assert_eq!(replayed_seqs(&got), vec![3, 4], "his own messages are not sent back to him");
}

#[test]
fn a_token_warns_before_expiry_and_renewal_extends_the_session() {
    let mut h = Harness::plain();
    let now_s = h.now().unix_ms / 1000;
    let short = h.keys.mint(KID, "alice", now_s, now_s + 60).unwrap();
    let login = Login { token: short, ..h.login_request("alice") };
    let (ok, _, _) = h.try_login(1, login);
    assert!(ok);
    h.tick(29_000);
    assert_eq!(h.events(1), vec![]);
    h.tick(2_000);
    assert_eq!(h.events(1), vec![Event::TokenWillExpire { expires_at_s: now_s + 60 }]);
    // Renewal: a token for another user is refused; a good one moves the expiry.
    let other = h.keys.mint(KID, "bob", now_s, now_s + 600).unwrap();
    assert_eq!(h.fail(1, Request::RenewToken { token: other }), ErrorCode::TokenInvalid);
    let fresh = h.keys.mint(KID, "alice", now_s, now_s + 600).unwrap();
    assert!(matches!(
        h.ok(1, Request::RenewToken { token: fresh }),
        Response::TokenRenewed { token_expires_at_s } if token_expires_at_s == now_s + 600
    ));
    h.tick(60_000);
    assert_eq!(h.take(1), vec![], "the old expiry no longer ends the session");
    assert_eq!(h.core.session_count(), 1);
}

#[test]
fn a_session_whose_token_expires_is_closed_with_token_expired() {
    let mut h = Harness::plain();
    h.login(2, "bob");
    let now_s = h.now().unix_ms / 1000;
    let short = h.keys.mint(KID, "alice", now_s, now_s + 40).unwrap();
    let (ok, _, _) = h.try_login(1, Login { token: short, ..h.login_request("alice") });
    assert!(ok);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    h.tick(40_000);
    let got = h.take(1);
    assert!(
        got.contains(&Got::Event(None, Event::TokenWillExpire { expires_at_s: now_s + 40 })),
        "{got:?}"
    );
    assert!(got.contains(&Got::Close(Some(ErrorCode::TokenExpired))), "{got:?}");
    h.tick(50);
    assert_eq!(h.events(2), vec![left("r", &["alice"], LeaveReason::Kicked)]);
    assert_eq!(h.core.session_count(), 1);
}

#[test]
fn operations_are_rate_limited_per_user() {
    let mut h = Harness::new(Limits { ops_rate_per_s: 10, ops_burst: 5, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    for _ in 0..4 {
        h.ok(1, Request::QueryJoinedRooms);
    }
    assert_eq!(h.fail(1, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
    assert_eq!(
        h.fail(1, Request::JoinRoom { room_id: "r".into() }),
        ErrorCode::OperationRateLimited
    );
    // Messages have their own limit, and another user his own bucket.
    h.send(1, "r", "still allowed");
    h.ok(2, Request::QueryJoinedRooms);
    // 100 ms refills one operation.
    h.advance(100);
    h.ok(1, Request::QueryJoinedRooms);
    assert_eq!(h.fail(1, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
    // Logout is never refused.
    assert!(matches!(h.ok(1, Request::Logout), Response::LoggedOut));
}

#[test]
fn logins_and_operations_are_rate_limited_per_address_and_the_bucket_outlives_the_connections() {
    let limits = Limits {
        address_ops_rate_per_s: 1,
        address_ops_burst: 3,
        ops_rate_per_s: 0,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    let now = h.now();
    // Connections 1-3 share an address, 4 has its own.
    for conn in 1..=3 {
        h.core.handle_connect(now, conn, 77);
    }
    h.core.handle_connect(now, 4, 88);
    h.login(1, "alice");
    h.login(2, "bob");
    h.ok(1, Request::QueryJoinedRooms);
    let (ok, reply, rest) = h.try_login(3, h.login_request("carol"));
    assert!(!ok);
    assert!(matches!(reply, Reply::Err(e) if e.code == ErrorCode::AddressRateLimited.as_u16()));
    assert_eq!(rest, vec![Got::Close(Some(ErrorCode::AddressRateLimited))]);
    assert_eq!(h.fail(2, Request::QueryJoinedRooms), ErrorCode::AddressRateLimited);
    h.login(4, "dave");
    // Hanging up and coming back does not refill the bucket...
    for conn in 1..=3 {
        let now = h.now();
        h.core.handle_disconnect(now, conn);
    }
    h.pump();
    h.take(1);
    h.take(2);
    assert_eq!(h.core.address_count(), 2);
    let now = h.now();
    h.core.handle_connect(now, 5, 77);
    let (ok, _, _) = h.try_login(5, h.login_request("carol"));
    assert!(!ok, "the address's bucket is still empty");
    let now = h.now();
    h.core.handle_protocol_close(now, 5);
    // ...but once it has refilled, an address with no connection is forgotten.
    h.tick(3_000);
    assert_eq!(h.core.address_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Operator actions (the admin API's core operations)

fn admin_message(text: &str) -> AdminMessage {
    AdminMessage { text: Some(text.into()), priority: Priority::Medium, ..AdminMessage::default() }
}

/// Alice (connection 1) created room `r`, Bob (2) joined it, and their inboxes are empty.
fn alice_and_bob_in_r() -> Harness {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    h
}

/// A member's unforced SetRoomAttributes of one key.
fn set_attr(room: &str, key: &str, value: &str) -> Request {
    Request::SetRoomAttributes {
        room_id: room.into(),
        attributes: vec![(key.into(), value.into())],
        is_force: false,
        is_update_owner: false,
        is_delete_after_owner_left: false,
    }
}

fn admin_code<T: std::fmt::Debug>(r: Result<T, ErrorBody>) -> ErrorCode {
    let e = r.expect_err("an error");
    ErrorCode::from_u16(e.code).expect("a known code")
}

fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn admin_creates_an_empty_room_that_members_join() {
    let mut h = Harness::plain();
    let now = h.now();
    let request = AdminCreateRoom {
        room_id: "lobby".into(),
        room_name: "Lobby".into(),
        destroy_delay_s: 60,
        attributes: attrs(&[("topic", "news")]),
    };
    let room = h.core.admin_create_room(now, request.clone()).unwrap();
    assert_eq!((room.member_count, room.destroy_delay_s), (0, 60));
    assert_eq!(room.attributes, attrs(&[("topic", "news")]));
    assert!(!room.destroy_pending);
    assert_eq!(admin_code(h.core.admin_create_room(now, request)), ErrorCode::RoomAlreadyExists);
    let bad = AdminCreateRoom { room_id: "no spaces".into(), ..AdminCreateRoom::default() };
    assert_eq!(admin_code(h.core.admin_create_room(now, bad)), ErrorCode::InvalidRoomId);
    let late =
        AdminCreateRoom { room_id: "x".into(), destroy_delay_s: 99_999, ..Default::default() };
    assert_eq!(admin_code(h.core.admin_create_room(now, late)), ErrorCode::InvalidDestroyDelay);
    // Nobody is in it, and it stays until someone has joined and left.
    h.tick(120_000);
    h.login(1, "alice");
    let state = h.join(1, "lobby");
    assert_eq!(state.attributes, vec![("topic".to_string(), "news".to_string())]);
    // The operator owns the initial keys and is never present: members may change them.
    let set = set_attr("lobby", "topic", "sports");
    assert!(
        matches!(h.ok(1, set), Response::RoomAttributesChanged { failed, .. } if failed.is_empty())
    );
    h.ok(1, leave("lobby"));
    assert!(h.core.admin_room("lobby").unwrap().destroy_pending);
    h.tick(60_000);
    assert_eq!(admin_code(h.core.admin_room("lobby")), ErrorCode::RoomDoesNotExist);
}

#[test]
fn admin_destroy_tells_every_member_and_ends_their_membership() {
    let mut h = alice_and_bob_in_r();
    h.send(1, "r", "hello");
    h.take(2);
    let done = h.core.admin_destroy_room("r").unwrap();
    assert_eq!((done.room_id.as_str(), done.members), ("r", 2));
    h.pump();
    for conn in [1, 2] {
        let got = h.take(conn);
        assert_eq!(got.len(), 2, "{got:?}");
        let destroyed = Event::RoomDestroyed { room_id: "r".into() };
        assert!(matches!(&got[0], Got::Event(Some(_), e) if *e == destroyed), "{got:?}");
        assert!(matches!(got[1], Got::CloseStream(_)), "{got:?}");
        assert!(h.joined_rooms(conn).is_empty());
    }
    assert_eq!(h.fail(2, join("r")), ErrorCode::RoomDoesNotExist);
    assert_eq!(h.core.room_count(), 0);
    // History went with it: a new room of the same id starts at seq 1.
    h.create(1, "r", 0);
    assert_eq!(h.send(1, "r", "again").1, 1);
    assert_eq!(admin_code(h.core.admin_destroy_room("nope")), ErrorCode::RoomDoesNotExist);
}

#[test]
fn admin_kick_removes_the_member_and_tells_the_others() {
    let mut h = alice_and_bob_in_r();
    let now = h.now();
    let done = h.core.admin_kick(now, "r", "bob").unwrap();
    assert_eq!((done.user_id.as_str(), done.sessions), ("bob", 1));
    h.pump();
    let got = h.take(2);
    let removed = Event::RemovedFromRoom { room_id: "r".into(), reason: LeaveReason::Kicked };
    assert!(
        matches!(&got[..], [Got::Event(Some(_), e), Got::CloseStream(_)] if *e == removed),
        "{got:?}"
    );
    h.tick(50);
    assert_eq!(h.events(1), vec![left("r", &["bob"], LeaveReason::Kicked)]);
    assert!(h.joined_rooms(2).is_empty());
    assert_eq!(admin_code(h.core.admin_kick(now, "r", "bob")), ErrorCode::NotInRoom);
    assert_eq!(admin_code(h.core.admin_kick(now, "nope", "bob")), ErrorCode::RoomDoesNotExist);
    // A kicked member may come back.
    h.join(2, "r");
}

#[test]
fn admin_messages_come_from_the_system_sender_to_every_member() {
    let mut h = alice_and_bob_in_r();
    h.send(1, "r", "first");
    h.take(2);
    let now = h.now();
    let sent = h.core.admin_send_message(now, "r", admin_message("maintenance at 5")).unwrap();
    assert_eq!((sent.seq, sent.duplicate), (2, false));
    h.pump();
    for conn in [1, 2] {
        match &h.events(conn)[..] {
            [Event::RoomMessage(m)] => {
                assert_eq!((m.sender.as_str(), m.seq), (SYSTEM_SENDER, 2));
                assert_eq!(m.body, MessageBody::Text("maintenance at 5".into()));
            }
            other => panic!("{other:?}"),
        }
    }
    // Idempotent with a client_msg_id, as for members.
    let with_id = AdminMessage { client_msg_id: Some("m1".into()), ..admin_message("once") };
    let first = h.core.admin_send_message(now, "r", with_id.clone()).unwrap();
    let again = h.core.admin_send_message(now, "r", with_id).unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    let custom = AdminMessage {
        custom: Some(AdminCustomBody { sub_type: 7, data: "zz".into() }),
        ..AdminMessage::default()
    };
    assert_eq!(admin_code(h.core.admin_send_message(now, "r", custom)), ErrorCode::InvalidRequest);
    assert_eq!(
        admin_code(h.core.admin_send_message(now, "r", AdminMessage::default())),
        ErrorCode::InvalidRequest
    );
    let big = admin_message(&"x".repeat(40_000));
    assert_eq!(admin_code(h.core.admin_send_message(now, "r", big)), ErrorCode::MessageTooLarge);
    assert_eq!(
        admin_code(h.core.admin_send_message(now, "gone", admin_message("x"))),
        ErrorCode::RoomDoesNotExist
    );
}

#[test]
fn admin_attributes_are_forced_and_announced() {
    let mut h = alice_and_bob_in_r();
    let set = set_attr("r", "mine", "a");
    h.ok(1, set);
    h.tick(50);
    h.take(1);
    h.take(2);
    let done = h.core.admin_set_attributes("r", attrs(&[("mine", "b"), ("motd", "hi")])).unwrap();
    assert_eq!(done.attributes, attrs(&[("mine", "b"), ("motd", "hi")]));
    h.pump();
    let updated = Event::RoomAttributesUpdated {
        room_id: "r".into(),
        set: vec![("mine".into(), "b".into()), ("motd".into(), "hi".into())],
        deleted: vec![],
    };
    assert_eq!(h.events(1), vec![updated.clone()]);
    assert_eq!(h.events(2), vec![updated]);
    // Alice still owns "mine": bob may not change it without is_force.
    let bob_set = set_attr("r", "mine", "c");
    let answer = h.ok(2, bob_set);
    assert!(matches!(answer, Response::RoomAttributesChanged { failed, .. } if failed.len() == 1));
    let done = h.core.admin_delete_attributes("r", vec!["mine".into(), "absent".into()]).unwrap();
    assert_eq!(done.attributes, attrs(&[("motd", "hi")]));
    let long = attrs(&[("a-key-longer-than-16", "v")]);
    assert_eq!(admin_code(h.core.admin_set_attributes("r", long)), ErrorCode::AttributeKeyTooLong);
    assert_eq!(
        admin_code(h.core.admin_delete_attributes("nope", vec![])),
        ErrorCode::RoomDoesNotExist
    );
}

#[test]
fn admin_disconnect_ends_every_session_of_the_user() {
    let mut h = Harness::new(Limits { allow_multi_device: true, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.join(3, "r");
    h.tick(50);
    h.take(1);
    let now = h.now();
    let done = h.core.admin_disconnect_user(now, "bob").unwrap();
    assert_eq!(done.sessions, 2);
    h.pump();
    for conn in [2, 3] {
        let got = h.take(conn);
        let kicked = Got::Event(
            None,
            Event::KickedOut { code: 2011, message: "disconnected by the operator".into() },
        );
        assert!(got.contains(&kicked), "{got:?}");
        assert!(got.contains(&Got::Close(Some(ErrorCode::DisconnectedByAdmin))), "{got:?}");
    }
    h.tick(50);
    assert_eq!(h.events(1), vec![left("r", &["bob"], LeaveReason::Kicked)]);
    assert_eq!(h.core.session_count(), 1);
    assert_eq!(h.core.admin_disconnect_user(now, "bob").unwrap().sessions, 0);
    assert_eq!(admin_code(h.core.admin_disconnect_user(now, "no way")), ErrorCode::InvalidUserId);
}

#[test]
fn admin_pages_through_rooms_and_members() {
    let mut h = Harness::plain();
    h.login_many(1, 5);
    for c in 1..=5u64 {
        h.create(c, &format!("room{c}"), 0);
    }
    for c in 2..=5u64 {
        h.join(c, "room1");
    }
    let mut ids = Vec::new();
    let mut flag = String::new();
    for _ in 0..10 {
        let page = h.core.admin_rooms(&flag, 2).unwrap();
        assert!(page.rooms.len() <= 2);
        ids.extend(page.rooms.iter().map(|r| r.room_id.clone()));
        flag = page.next_flag;
        if flag.is_empty() {
            break;
        }
    }
    assert_eq!(ids, ["room1", "room2", "room3", "room4", "room5"]);
    assert_eq!(h.core.admin_rooms("", 100).unwrap().rooms[0].member_count, 5);
    assert_eq!(admin_code(h.core.admin_rooms("", 0)), ErrorCode::InvalidRequest);
    assert_eq!(admin_code(h.core.admin_rooms("x", 10)), ErrorCode::InvalidRequest);
    let first = h.core.admin_members("room1", "", 3).unwrap();
    assert_eq!(
        first.members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(),
        ["u1", "u2", "u3"]
    );
    let rest = h.core.admin_members("room1", &first.next_flag, 3).unwrap();
    assert_eq!(rest.members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), ["u4", "u5"]);
    assert!(rest.next_flag.is_empty());
    assert_eq!(admin_code(h.core.admin_members("nope", "", 3)), ErrorCode::RoomDoesNotExist);
}
