//! `request_handler`: sequences of requests from several connections, logins, resumptions,
//! lost connections and the passing of time, driven through the sans-IO [`Core`] the way the
//! server drives it, with the core's invariants checked after every step.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::harness::{Decoded, Harness};
use crate::core::{ConnId, Limits, RoomKey};
use crate::wire::{
    decode_request, AttributeOp, ErrorCode, Event, HistoryAnchor, Login, MessageBody, Priority,
    Reply, Request, RequestFrame, Response, ResponseFrame, Resume, RoomConfig, RoomInfo,
    StreamHeader, PROTOCOL_VERSION,
};

const KID: &str = "fuzz";
const SLOTS: usize = 4;
const USERS: [&str; 3] = ["ann", "bob", "cy"];
const ROOMS: [&str; 4] = ["r0", "r1", "r2", "lobby"];
/// Request ids the harness's own audit queries use (fuzzed requests may use any id).
const AUDIT_ID: u32 = u32::MAX;

/// Fuzz body. The first byte picks the limits; the rest is a list of commands, each a tag byte
/// (high nibble: which of 4 client slots, low nibble: the operation) and its argument bytes:
///
/// | op | what | arguments |
/// | --- | --- | --- |
/// | 0 | log in with a minted token (as the connection's first request, as the server routes it) | user, token kind |
/// | 1 | resume one of the sessions seen so far | which, how |
/// | 2 | a raw request frame, decoded like the server does (an empty token is replaced by a valid one) | u16 length, body |
/// | 3 | advance time by up to 1.8 s, firing due timers | amount |
/// | 4 | advance time by up to ~18 h, firing due timers | amount |
/// | 5 | the connection is lost (the slot gets a new connection) | |
/// | 6 | the server closes the connection for a protocol error | |
/// | 7 | audit: the slot's view of its rooms is self-consistent | |
/// | 8-15 | a well-formed request on the slot's connection | kind, argument |
///
/// Checks after every step: [`Core::check_invariants`]; every output decodes and goes to a
/// connection the server still has; each request gets exactly one reply, with its id; room
/// message seqs go up by one per room and message ids only go up; a sent message is broadcast
/// with the seq and id its sender was told. An audit also checks that a room's member count,
/// its member pages and the joined-rooms list agree.
pub fn request_handler(data: &[u8]) {
    let Some((&config, commands)) = data.split_first() else { return };
    let mut h = Run::new(config);
    let mut input = Input(commands);
    while let Some(tag) = input.byte() {
        let slot = usize::from(tag >> 4) % SLOTS;
        match tag & 0x0f {
            0 => {
                let (user, kind) = (input.byte_or(0), input.byte_or(0));
                h.login(slot, usize::from(user) % USERS.len(), kind);
            }
            1 => {
                let (which, how) = (input.byte_or(0), input.byte_or(0));
                h.resume(slot, which, how);
            }
            2 => {
                let len = usize::from(u16::from_le_bytes([input.byte_or(0), input.byte_or(0)]));
                let body = input.take(len);
                h.raw_frame(slot, body);
            }
            3 => h.advance(u64::from(input.byte_or(0)) * 7),
            4 => h.advance(u64::from(input.byte_or(0)).pow(2) * 1000),
            5 => h.connection_lost(slot),
            6 => h.protocol_close(slot),
            7 => h.audit(slot),
            _ => {
                let (kind, arg) = (input.byte_or(0), input.byte_or(0));
                let request = h.quick_request(slot, kind, arg);
                let id = h.next_request_id();
                h.send(slot, id, request);
            }
        }
    }
    for slot in 0..SLOTS {
        h.audit(slot);
    }
}

/// The limits a run uses: the defaults, or small ones that every path hits quickly (bit 0:
/// rooms, members, messages, history, attributes; bit 3: operation rate limits).
fn limits(config: u8) -> Limits {
    let mut l = Limits::default();
    if config & 1 != 0 {
        l.rooms_per_user = 2;
        l.members_per_room = 3;
        l.rooms_per_server = 3;
        l.max_message_bytes = 64;
        l.dedup_window_s = 2;
        l.history_max_messages = 5;
        l.history_max_age_s = 60;
        l.rate_limit_per_s = 1;
        l.rate_limit_burst = 2;
        l.presence_batch_max = 2;
        l.presence_count_threshold = 2;
        l.max_replay_bytes = 200;
        l.max_replay_messages = 2;
        l.room_attributes_max_keys = 3;
        l.room_attributes_max_total_bytes = 40;
        l.member_attributes_max_members = 2;
        l.member_attributes_max_keys = 2;
    }
    if config & 8 != 0 {
        l.ops_rate_per_s = 1;
        l.ops_burst = 4;
        l.address_ops_rate_per_s = 2;
        l.address_ops_burst = 6;
    }
    l.allow_multi_device = config & 2 != 0;
    if config & 4 != 0 {
        l.offline_grace_s = 0;
    }
    l
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn byte_or(&mut self, default: u8) -> u8 {
        self.byte().unwrap_or(default)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// One client connection slot; a lost or closed connection is replaced by a new one.
#[derive(Debug)]
struct Slot {
    conn: ConnId,
    /// Whether the connection sent its first request (the only one the server reads as a login).
    started: bool,
}

/// A session the harness saw logged in, to resume later.
#[derive(Debug, Clone)]
struct Known {
    user: String,
    session_id: u64,
    secret: [u8; 16],
    /// Last seq seen per room.
    seen: BTreeMap<String, u64>,
}

/// What one step sent back.
#[derive(Default)]
struct Step {
    replies: Vec<(ConnId, ResponseFrame)>,
    /// (message id, seq) of each room message broadcast.
    broadcast: Vec<(u64, u64)>,
}

/// A run: the shared core harness, the client slots and what the checks remember.
struct Run {
    h: Harness,
    slots: Vec<Slot>,
    next_conn: ConnId,
    next_request: u32,
    next_secret: u8,
    /// Connections the server has forgotten: nothing may be addressed to them any more.
    gone: HashSet<ConnId>,
    last_seq: HashMap<RoomKey, u64>,
    last_message_id: u64,
    known: Vec<Known>,
}

impl Run {
    fn new(config: u8) -> Run {
        let h = Harness::with_key(limits(config), KID, b"fuzz-secret-0123456789abcdef", 1 << 20);
        let slots = (0..SLOTS as u64).map(|conn| Slot { conn, started: false }).collect();
        let mut run = Run {
            h,
            slots,
            next_conn: SLOTS as u64,
            next_request: 1,
            next_secret: 0,
            gone: HashSet::new(),
            last_seq: HashMap::new(),
            last_message_id: 0,
            known: Vec::new(),
        };
        for slot in 0..SLOTS {
            run.connect(slot);
        }
        run
    }

    /// The slot's connection opened its control stream: the server tells the core its client
    /// address. Slots 0 and 2 share one address, 1 and 3 another.
    fn connect(&mut self, slot: usize) {
        let conn = self.slots[slot].conn;
        let now = self.h.now();
        self.h.core.handle_connect(now, conn, (slot % 2) as u64);
    }

    fn next_request_id(&mut self) -> u32 {
        self.next_request = self.next_request.wrapping_add(1) % AUDIT_ID;
        self.next_request
    }

    fn fresh_secret(&mut self) -> [u8; 16] {
        self.next_secret = self.next_secret.wrapping_add(1);
        [self.next_secret; 16]
    }

    fn token(&self, user: &str, kind: u8) -> String {
        let now_s = self.h.now().unix_ms / 1000;
        let (who, iat, exp) = match kind % 8 {
            0 => (user, now_s, now_s + 1),
            1 => (user, now_s, now_s + 40),
            2 => (user, now_s - 10, now_s),
            3 => (user, now_s + 3600, now_s + 7200),
            4 => (USERS[0], now_s, now_s + 3600),
            5 => return "hk1:fuzz:nope".into(),
            _ => (user, now_s, now_s + 3600),
        };
        self.h.mint(who, iat, exp).unwrap_or_default()
    }

    /// Runs one input through the core and checks what comes out, as the server would deliver
    /// it. Connections the core closes are then forgotten the way the server forgets them.
    fn step(&mut self, f: impl FnOnce(&mut Harness)) -> Step {
        let mut step = Step::default();
        f(&mut self.h);
        let closed = self.drain(&mut step);
        for (conn, code) in closed {
            let Some(slot) = self.slots.iter().position(|s| s.conn == conn) else { continue };
            // As Shared::unregister: the core's close policy decides what the close means.
            let now = self.h.now();
            self.h.core.handle_closed(now, conn, code);
            self.drain(&mut step);
            self.forget(slot);
        }
        if let Err(e) = self.h.core.check_invariants() {
            panic!("core invariant broken: {e}");
        }
        step
    }

    /// Takes every output; returns the connections told to close.
    fn drain(&mut self, step: &mut Step) -> Vec<(ConnId, Option<ErrorCode>)> {
        let mut closed = Vec::new();
        for out in self.h.drain() {
            for conn in out.recipients() {
                self.live(conn);
            }
            match out {
                Decoded::Reply { conn, frame } => step.replies.push((conn, frame)),
                Decoded::OpenRoomStream { header, .. } => {
                    assert!(matches!(header, StreamHeader::Room { .. }), "{header:?}");
                }
                Decoded::CloseRoomStream { .. } => {}
                Decoded::Broadcast { to, except, room, event } => {
                    if let Event::RoomMessage(m) = &event {
                        let last = self.last_seq.insert(room, m.seq).unwrap_or(0);
                        assert_eq!(m.seq, last + 1, "room {} seq after {last}", m.room_id);
                        assert!(m.message_id > self.last_message_id, "message id went back");
                        self.last_message_id = m.message_id;
                        step.broadcast.push((m.message_id, m.seq));
                        for conn in to.iter().filter(|c| Some(**c) != except) {
                            self.saw(*conn, &m.room_id, m.seq);
                        }
                    }
                }
                Decoded::Push { conn, event, .. } => {
                    if let Event::RoomMessage(m) = event {
                        self.saw(conn, &m.room_id, m.seq);
                    }
                }
                Decoded::Close { conn, code } => closed.push((conn, code)),
                Decoded::Bus(op) => panic!("a single-node core asked for the room log: {op:?}"),
            }
        }
        closed
    }

    fn live(&self, conn: ConnId) {
        assert!(!self.gone.contains(&conn), "output for connection {conn}, which is gone");
    }

    fn saw(&mut self, conn: ConnId, room_id: &str, seq: u64) {
        let Some(sid) = self.h.core.session_of(conn) else { return };
        if let Some(k) = self.known.iter_mut().find(|k| k.session_id == sid) {
            let last = k.seen.entry(room_id.to_string()).or_default();
            *last = (*last).max(seq);
        }
    }

    /// The server forgets the slot's connection; the slot gets a new one.
    fn forget(&mut self, slot: usize) {
        self.gone.insert(self.slots[slot].conn);
        self.slots[slot] = Slot { conn: self.next_conn, started: false };
        self.next_conn += 1;
        self.connect(slot);
    }

    /// A request on the slot's connection, routed as the server routes it: a Login or Resume
    /// as the first request is a login, anything else goes to handle_request. Exactly one reply
    /// with the request's id must come back, to that connection.
    fn send(&mut self, slot: usize, request_id: u32, request: Request) -> Reply {
        let conn = self.slots[slot].conn;
        let first = !std::mem::replace(&mut self.slots[slot].started, true);
        let secret = self.fresh_secret();
        let user = match &request {
            Request::Login(Login { user_id, .. }) | Request::Resume(Resume { user_id, .. }) => {
                user_id.clone()
            }
            _ => String::new(),
        };
        let step = self.step(|h| h.route(conn, request_id, request, first, secret));
        if trace() {
            for (to, frame) in &step.replies {
                eprintln!("slot {slot} conn {to}: {:?}", frame.reply);
            }
        }
        let [(to, frame)] = &step.replies[..] else {
            panic!("{} replies to one request", step.replies.len());
        };
        assert_eq!((*to, frame.request_id), (conn, request_id), "reply to the wrong request");
        match &frame.reply {
            Reply::Ok(Response::LoggedIn { session_id, resume_secret, .. }) => {
                self.learn(conn, user, *session_id, *resume_secret, BTreeMap::new());
            }
            Reply::Ok(Response::Resumed { session_id, resume_secret, rooms, .. }) => {
                let seen = rooms.iter().map(|r| (r.room_id.clone(), r.last_seq)).collect();
                self.learn(conn, user, *session_id, *resume_secret, seen);
            }
            Reply::Ok(Response::MessageSent { room_id, message_id, seq, duplicate, .. }) => {
                if !duplicate {
                    assert_eq!(step.broadcast, [(*message_id, *seq)], "sent but not broadcast");
                }
                self.saw(conn, room_id, *seq);
            }
            Reply::Ok(Response::RoomEntered(state)) => {
                self.saw(conn, &state.room_id, state.last_seq)
            }
            Reply::Ok(_) | Reply::Err(_) => {}
        }
        frame.reply.clone()
    }

    /// Remembers a session that just logged in or resumed, for later resumptions.
    fn learn(
        &mut self,
        conn: ConnId,
        user: String,
        session_id: u64,
        secret: [u8; 16],
        seen: BTreeMap<String, u64>,
    ) {
        assert_eq!(self.h.core.session_of(conn), Some(session_id), "answer names another session");
        self.known.retain(|k| k.session_id != session_id);
        self.known.push(Known { user, session_id, secret, seen });
        if self.known.len() > 8 {
            self.known.remove(0);
        }
    }

    fn login(&mut self, slot: usize, user: usize, kind: u8) {
        let user_id = USERS[user];
        let login = Login {
            protocol_version: if kind == 0xff { 0 } else { PROTOCOL_VERSION },
            user_id: user_id.into(),
            user_name: format!("{user_id} name"),
            token: self.token(user_id, kind),
        };
        let id = self.next_request_id();
        self.send(slot, id, Request::Login(login));
    }

    fn resume(&mut self, slot: usize, which: u8, how: u8) {
        let known = match self.known.len() {
            0 => Known {
                user: USERS[usize::from(which) % USERS.len()].into(),
                session_id: 1,
                secret: [0; 16],
                seen: BTreeMap::new(),
            },
            n => self.known[usize::from(which) % n].clone(),
        };
        let user = known.user;
        let mut resume = Resume {
            protocol_version: PROTOCOL_VERSION,
            token: self.token(&user, 7),
            user_id: user.clone(),
            user_name: format!("{user} name"),
            session_id: known.session_id,
            resume_secret: known.secret,
            rooms: known.seen.into_iter().collect(),
        };
        match how % 8 {
            1 => resume.resume_secret[0] ^= 1,
            2 => resume.session_id = resume.session_id.wrapping_add(1000),
            3 => resume.rooms = ROOMS.iter().map(|r| (r.to_string(), u64::from(how))).collect(),
            4 => resume.token = self.token(&user, how >> 3),
            5 => resume.rooms.clear(),
            _ => {}
        }
        let id = self.next_request_id();
        self.send(slot, id, Request::Resume(resume));
    }

    /// A frame body from the fuzzer, decoded as the server decodes requests; one that does not
    /// decode gets the connection closed for a protocol error.
    fn raw_frame(&mut self, slot: usize, body: &[u8]) {
        match decode_request(body) {
            Ok(RequestFrame { request_id, mut request }) => {
                // The fuzzer cannot sign tokens: an empty one stands for a valid one.
                match &mut request {
                    Request::Login(Login { user_id, token, .. })
                    | Request::Resume(Resume { user_id, token, .. })
                        if token.is_empty() =>
                    {
                        *token = self.token(user_id, 7);
                    }
                    Request::RenewToken { token } if token.is_empty() => {
                        let user = self.user_of(slot);
                        *token = self.token(&user, 7);
                    }
                    _ => {}
                }
                self.send(slot, request_id, request);
            }
            Err(_) => self.protocol_close(slot),
        }
    }

    fn user_of(&self, slot: usize) -> String {
        let sid = self.h.core.session_of(self.slots[slot].conn);
        self.known
            .iter()
            .find(|k| Some(k.session_id) == sid)
            .map(|k| k.user.clone())
            .unwrap_or_default()
    }

    fn advance(&mut self, ms: u64) {
        self.h.advance(ms);
        self.step(|h| {
            let now = h.now();
            h.core.handle_timeout(now);
        });
    }

    fn connection_lost(&mut self, slot: usize) {
        let conn = self.slots[slot].conn;
        self.step(|h| {
            let now = h.now();
            h.core.handle_disconnect(now, conn);
        });
        self.forget(slot);
    }

    fn protocol_close(&mut self, slot: usize) {
        let conn = self.slots[slot].conn;
        self.step(|h| {
            let now = h.now();
            h.core.handle_protocol_close(now, conn);
        });
        self.forget(slot);
    }

    /// A well-formed request of any kind, on the harness's few rooms and users: `kind % 25`
    /// picks the request (and `kind / 25` a message's priority and body), `arg` its details.
    fn quick_request(&mut self, slot: usize, kind: u8, arg: u8) -> Request {
        let room = ROOMS[usize::from(arg) % ROOMS.len()].to_string();
        let other = ROOMS[usize::from(arg >> 2) % ROOMS.len()].to_string();
        let user = USERS[usize::from(arg >> 4) % USERS.len()].to_string();
        let flag = arg & 0x80 != 0;
        let info = |room_id: String| RoomInfo { room_id, room_name: format!("{arg}") };
        let config = RoomConfig {
            destroy_delay_s: u32::from(arg >> 6) * 2,
            attributes: if flag { vec![("k".into(), "v".into())] } else { Vec::new() },
        };
        let pairs = vec![(format!("k{}", arg % 5), "v".repeat(usize::from(arg >> 3)))];
        match kind % 25 {
            0 => Request::CreateRoom { info: info(room), config },
            1 => Request::JoinRoom { room_id: room },
            2 | 3 => Request::EnterRoom { info: info(room), config },
            4 => Request::LeaveRoom { room_id: room },
            5 => Request::LeaveAllRooms,
            6 => Request::SwitchRoom {
                from_room_id: room,
                to: info(other),
                create_if_missing: flag,
                config,
            },
            7..=10 => Request::SendRoomMessage {
                room_id: room,
                body: if kind >= 75 {
                    let data = vec![arg; usize::from(arg)];
                    MessageBody::Custom { sub_type: u32::from(arg), data }
                } else {
                    MessageBody::Text("m".repeat(usize::from(arg >> 2)))
                },
                priority: match kind / 25 % 3 {
                    0 => Priority::Low,
                    1 => Priority::Medium,
                    _ => Priority::High,
                },
                client_msg_id: flag.then(|| format!("c{}", arg & 3)),
            },
            11 => Request::QueryRoomMembers {
                room_id: room,
                next_flag: if flag { format!("{}", arg & 7) } else { String::new() },
                count: u32::from(arg >> 4),
            },
            12 => Request::QueryRoomOnlineCount { room_id: room },
            13 => {
                Request::QueryRoomMembersById { room_id: room, user_ids: vec![user, "zed".into()] }
            }
            14 => Request::QueryJoinedRooms,
            15 => Request::QueryHistory {
                room_id: room,
                anchor: match arg >> 6 {
                    0 => HistoryAnchor::Latest,
                    1 => HistoryAnchor::BeforeSeq(u64::from(arg & 0x0f)),
                    2 => HistoryAnchor::AfterSeq(u64::from(arg & 0x0f)),
                    _ => HistoryAnchor::AfterSeq(u64::MAX),
                },
                count: u32::from(arg >> 2 & 0x0f),
            },
            16 => Request::SetRoomAttributes {
                room_id: room,
                attributes: pairs,
                is_force: flag,
                is_update_owner: arg & 0x40 != 0,
                is_delete_after_owner_left: arg & 0x20 != 0,
            },
            17 => Request::DeleteRoomAttributes {
                room_id: room,
                keys: vec![format!("k{}", arg % 5)],
                is_force: flag,
            },
            18 => Request::QueryRoomAttributes { room_id: room },
            19 => Request::RoomAttributesBatch {
                room_id: room,
                ops: vec![
                    AttributeOp::Set {
                        attributes: pairs,
                        is_force: flag,
                        is_update_owner: false,
                        is_delete_after_owner_left: arg & 0x20 != 0,
                    },
                    AttributeOp::Delete { keys: vec![format!("k{}", arg % 3)], is_force: flag },
                ],
            },
            20 => Request::SetRoomMembersAttributes {
                room_id: room,
                user_ids: vec![user, self.user_of(slot)],
                attributes: vec![(format!("a{}", arg % 3), format!("{arg}"))],
            },
            21 => Request::QueryRoomMembersAttributes { room_id: room, user_ids: vec![user] },
            22 => Request::QueryRoomMemberAttributesList {
                room_id: room,
                next_flag: String::new(),
                count: u32::from(arg % 4),
            },
            23 => Request::Ping,
            _ if flag => Request::Logout,
            _ => {
                let user = self.user_of(slot);
                Request::RenewToken { token: self.token(&user, arg) }
            }
        }
    }

    /// The slot's view of its rooms agrees with itself: each joined room's count is the number
    /// of members its pages list, and the caller is among them.
    fn audit(&mut self, slot: usize) {
        let conn = self.slots[slot].conn;
        if !self.h.core.is_logged_in(conn) {
            return;
        }
        let me = self.user_of(slot);
        let Reply::Ok(Response::JoinedRooms { rooms }) =
            self.send(slot, AUDIT_ID, Request::QueryJoinedRooms)
        else {
            return;
        };
        for summary in rooms {
            let room_id = summary.room_id.clone();
            let count = self.send(slot, AUDIT_ID, Request::QueryRoomOnlineCount { room_id });
            if let Reply::Ok(Response::RoomOnlineCount { count, .. }) = count {
                assert_eq!(count, summary.member_count, "online count vs joined rooms");
            }
            let mut members = Vec::new();
            let mut next_flag = String::new();
            loop {
                let room_id = summary.room_id.clone();
                let page = Request::QueryRoomMembers { room_id, next_flag, count: 100 };
                match self.send(slot, AUDIT_ID, page) {
                    Reply::Ok(Response::RoomMembers { members: m, next_flag: n, .. }) => {
                        members.extend(m.into_iter().map(|m| m.user_id));
                        if n.is_empty() {
                            break;
                        }
                        next_flag = n;
                    }
                    // A query refused (a rate limit, say) proves nothing either way.
                    _ => return,
                }
            }
            assert_eq!(members.len(), summary.member_count as usize, "member pages vs count");
            let unique: HashSet<&String> = members.iter().collect();
            assert_eq!(unique.len(), members.len(), "a member listed twice");
            if !me.is_empty() {
                assert!(members.contains(&me), "{me} is not among the members of its room");
            }
        }
    }
}

/// Whether to print every reply (`HUDDLE_FUZZ_TRACE=1`), to read what an input does.
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("HUDDLE_FUZZ_TRACE").is_some())
}
