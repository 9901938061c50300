//! The sans-IO room core: sessions, rooms, membership, sequencing, history, rate limits,
//! presence batching and destroy timers.
//!
//! The core never touches a socket, a task or the clock. Each `handle_*` method takes an input
//! and the current time ([`Now`]); what must happen as a result (frames to send to whom, streams
//! to open or finish, connections to close) is queued as [`Output`]s for the caller to drain with
//! [`Core::poll_output`]. [`Core::poll_timeout`] says when [`Core::handle_timeout`] is next due.
//! Broadcast frames are encoded once here and shared as [`Bytes`] by every recipient.
//!
//! This file holds the core's state, its inputs and outputs, logins and the dispatch of
//! requests; each concern's work is in its own file (`membership.rs`, `messages.rs`,
//! `presence.rs`, `attributes.rs`, `resume.rs`, `admin.rs` ...), and a room's own state in
//! `room.rs`.

mod admin;
mod attributes;
mod attrs;
mod bus;
mod history;
mod invariants;
mod limits;
mod log;
mod membership;
mod messages;
mod oplimit;
mod presence;
mod ratelimit;
mod replica;
mod resume;
mod retention;
mod room;
mod token;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::KeySet;
use crate::wire::{
    encode_frame, ErrorBody, ErrorCode, Event, LeaveReason, Login, Member, Priority, Reply,
    Request, Response, ResponseFrame, RoomState, StreamHeader, PROTOCOL_VERSION,
};
pub use admin::{
    AdminAttributes, AdminCreateRoom, AdminCustomBody, AdminDestroyed, AdminDisconnected,
    AdminMemberPage, AdminMessage, AdminMessageSent, AdminRemoved, AdminRoom, AdminRoomPage,
    SYSTEM_SENDER,
};
pub use admin::{AdminConnection, AdminConnectionPage};
use bus::{Answer, Waiter};
pub use bus::{AppendError, Bus, BusEvent, BusOp, CreateError, LogRef};
pub use history::History;
pub use invariants::ReplicaState;
pub use limits::{
    valid_room_id, valid_user_id, Limits, MAX_QUERY_COUNT, MAX_QUERY_USER_IDS, MAX_RESUME_ROOMS,
    MAX_ROOM_ID_BYTES, MAX_USER_ID_BYTES, ROOM_ID_RULE, USER_ID_RULE,
};
pub use log::{LogEntry, LogError, NodeRef, Op, LOG_VERSION, MAX_ENTRY_LEN, MAX_OPS};
use ratelimit::Resting;
pub use ratelimit::TokenBucket;
pub use room::RoomKey;
use room::{PresenceChange, Room};

/// A map keyed by ids the server assigns itself (rooms, sessions, connections): a client cannot
/// choose them, so the fast Fx hash is safe there, where SipHash's collision resistance only cost
/// time on the message path. Keys a client chooses (room and user ids) keep `HashMap`'s default.
type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

/// A connection, as numbered by the caller.
pub type ConnId = u64;

/// A session id, as given to the client in its login answer.
pub type SessionId = u64;

/// The current time, given by the caller with every input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (any origin); drives timers, rate limits and expiry.
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch; used for timestamps and token expiry.
    pub unix_ms: u64,
}

/// Something the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write this response frame on the connection's control stream.
    Reply {
        /// The connection.
        conn: ConnId,
        /// A complete frame.
        frame: Bytes,
    },
    /// Open the connection's stream for a room and write `header` first. The room's
    /// low-priority stream, when the caller opens one, starts with `low_header`.
    OpenRoomStream {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: RoomKey,
        /// The `StreamHeader::Room` frame.
        header: Bytes,
        /// The `StreamHeader::RoomLow` frame.
        low_header: Bytes,
    },
    /// Finish the connection's stream for a room after what is queued on it.
    CloseRoomStream {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: RoomKey,
    },
    /// Queue the same frame on the room stream of every listed connection but `except`.
    Broadcast {
        /// Recipients (shared; the same allocation serves every message until membership changes).
        to: Arc<[ConnId]>,
        /// A connection to skip (the sender's).
        except: Option<ConnId>,
        /// The room whose stream carries it.
        room: RoomKey,
        /// A complete frame.
        frame: Bytes,
        /// Its priority (low may be dropped for a slow receiver).
        priority: Priority,
        /// True for a room message (a delivery, in metrics); false for a room event.
        message: bool,
    },
    /// Queue a frame for one connection: on a room stream, or on the session stream when `room`
    /// is `None`.
    Push {
        /// The connection.
        conn: ConnId,
        /// The room stream, or `None` for the session stream.
        room: Option<RoomKey>,
        /// A complete frame.
        frame: Bytes,
    },
    /// Close the connection after flushing its session stream; `None` is a normal close (0).
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: Option<ErrorCode>,
    },
    /// Carry this out on the room log (cluster mode, [`Bus::External`], only).
    Bus(BusOp),
}

impl Output {
    /// Opens the connection's streams for a room: both stream headers, encoded once here.
    fn open_room_stream(conn: ConnId, room: RoomKey, room_id: &str) -> Output {
        let room_id = room_id.to_string();
        let header = encode_frame(&StreamHeader::Room { room_id: room_id.clone() });
        let low_header = encode_frame(&StreamHeader::RoomLow { room_id });
        Output::OpenRoomStream { conn, room, header, low_header }
    }
}

/// What came of a connection's first request, a Login or a Resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The connection carries a new session: a Login, or a Resume whose session was gone.
    LoggedIn {
        /// The session.
        session: SessionId,
    },
    /// A Resume took its held session over.
    Resumed {
        /// The session.
        session: SessionId,
    },
    /// Refused: the error reply and an [`Output::Close`] with `code` are queued.
    Refused {
        /// The error, which is also the close code.
        code: ErrorCode,
    },
}

impl LoginOutcome {
    /// The session the connection now carries, if it was not refused.
    pub fn session(&self) -> Option<SessionId> {
        match *self {
            LoginOutcome::LoggedIn { session } | LoginOutcome::Resumed { session } => Some(session),
            LoginOutcome::Refused { .. } => None,
        }
    }

    /// Whether the connection is now logged in.
    pub fn logged_in(&self) -> bool {
        self.session().is_some()
    }
}

/// The end of the connection whose request the core handled, as the core decided it; the
/// matching [`Output::Close`] is queued too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    /// The close code; `None` is a normal close (0).
    pub code: Option<ErrorCode>,
}

#[derive(Debug)]
struct Session {
    user_id: Arc<str>,
    user_name: String,
    conn: Option<ConnId>,
    rooms: Vec<RoomKey>,
    resume_secret: [u8; 16],
    token_exp_s: u64,
    /// The warning and expiry timers armed for `token_exp_s`: a renewal replaces them and the
    /// session's end removes them, so that a session holds at most two token timers.
    token_timers: [(u64, Timer); 2],
    /// While the connection is lost: when the offline grace ends (monotonic ms).
    offline_until: Option<u64>,
    /// Joins (and creations) proposed and not yet applied (cluster mode): they count against
    /// the session's room limit.
    pending_joins: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    PresenceFlush(RoomKey),
    Destroy(RoomKey),
    Offline(SessionId),
    /// (session, the token expiry it was armed for)
    TokenWarning(SessionId, u64),
    TokenExpiry(SessionId, u64),
    /// A client address with no connection left may be forgotten (its bucket has refilled).
    OriginIdle(u64),
    /// A room's client_msg_ids out of the dedup window are forgotten.
    DedupSweep(RoomKey),
    /// Resting rate buckets may be full again and forgotten.
    RestingBuckets,
}

/// The room server's state machine. See the module documentation.
#[derive(Debug)]
pub struct Core {
    limits: Limits,
    keys: KeySet,
    sessions: IdMap<SessionId, Session>,
    by_conn: IdMap<ConnId, SessionId>,
    by_user: HashMap<Arc<str>, Vec<SessionId>>,
    rooms: IdMap<RoomKey, Room>,
    room_ids: HashMap<Arc<str>, RoomKey>,
    /// Every room's key in creation order, for the operator's paged listing.
    room_order: BTreeSet<RoomKey>,
    timers: BTreeSet<(u64, Timer)>,
    outputs: VecDeque<Output>,
    /// Operation buckets per user (while it has a session).
    user_ops: HashMap<Arc<str>, TokenBucket>,
    /// Operation buckets of users with no session left, until they have refilled.
    resting_ops: Resting<Arc<str>>,
    /// Message buckets per (room id, user) of users who left the room, until they have refilled.
    resting_messages: Resting<(Arc<str>, Arc<str>)>,
    /// Client addresses (opaque keys from the caller) with their operation buckets.
    origins: HashMap<u64, oplimit::Origin>,
    /// Open connections (from `handle_connect` to their close) in id order, with their address.
    conn_origin: BTreeMap<ConnId, u64>,
    /// Bytes held by every room's history (the sum of `History::bytes`).
    history_bytes: usize,
    /// The history total at which the next eviction runs (see `retention.rs`).
    next_eviction_at: usize,
    /// Per creator: its empty rooms awaiting a delayed destroy, by (deadline, room).
    delayed_by_creator: HashMap<Arc<str>, BTreeSet<(u64, RoomKey)>>,
    next_session: SessionId,
    next_room: u64,
    next_message_id: u64,
    /// Where room logs are carried.
    bus: Bus,
    /// The last proposal number given out (cluster mode).
    next_proposal: u64,
    /// Requests waiting for their proposal's entry, by proposal (ordered by op index).
    waiting: HashMap<u64, Vec<Waiter>>,
    /// Room creations waiting for the registry, by request number.
    creates: HashMap<u64, replica::PendingCreate>,
    /// The last registry request number given out.
    next_request: u64,
}

type OpResult = Result<Response, ErrorBody>;

fn err(code: ErrorCode) -> ErrorBody {
    ErrorBody::new(code)
}

impl Core {
    /// A core with these limits and token keys. `id_base` seeds message and session ids so that
    /// they differ across server runs (for example the start time in ms shifted left).
    pub fn new(limits: Limits, keys: KeySet, id_base: u64) -> Core {
        Core::with_bus(limits, keys, id_base, Bus::Local)
    }

    /// A core whose room logs are carried by `bus` (see the `bus` module's docs): [`Bus::Local`]
    /// is [`Core::new`]; [`Bus::External`] is one replica of a cluster, whose caller carries out
    /// [`Output::Bus`] and feeds [`Core::handle_bus`].
    pub fn with_bus(limits: Limits, keys: KeySet, id_base: u64, bus: Bus) -> Core {
        Core {
            limits,
            keys,
            sessions: IdMap::default(),
            by_conn: IdMap::default(),
            by_user: HashMap::new(),
            rooms: IdMap::default(),
            room_ids: HashMap::new(),
            room_order: BTreeSet::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            user_ops: HashMap::new(),
            resting_ops: Resting::new(),
            resting_messages: Resting::new(),
            origins: HashMap::new(),
            conn_origin: BTreeMap::new(),
            history_bytes: 0,
            next_eviction_at: 0,
            delayed_by_creator: HashMap::new(),
            next_session: id_base.max(1),
            next_room: 1,
            next_message_id: id_base.max(1),
            bus,
            next_proposal: 0,
            waiting: HashMap::new(),
            creates: HashMap::new(),
            next_request: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Core::handle_timeout`] is next due (monotonic ms), if a timer is armed.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Number of rooms held (including empty rooms waiting for a delayed destroy).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Number of room memberships: members (users) summed over the rooms.
    pub fn member_total(&self) -> usize {
        self.rooms.values().map(|r| r.member_count()).sum()
    }

    /// Number of sessions (held ones waiting for resumption included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a connection has logged in.
    pub fn is_logged_in(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    fn reply(&mut self, conn: ConnId, request_id: u32, reply: Reply) {
        let frame = encode_frame(&ResponseFrame { request_id, reply });
        self.outputs.push_back(Output::Reply { conn, frame });
    }

    fn respond(&mut self, conn: ConnId, request_id: u32, result: OpResult) {
        let reply = match result {
            Ok(r) => Reply::Ok(r),
            Err(e) => Reply::Err(e),
        };
        self.reply(conn, request_id, reply);
    }

    /// Handles the first request of a connection and says what came of it; when refused, the
    /// caller has been told to close the connection. `resume_secret` is fresh randomness from
    /// the caller.
    pub fn handle_login(
        &mut self,
        now: Now,
        conn: ConnId,
        request_id: u32,
        login: Login,
        resume_secret: [u8; 16],
    ) -> LoginOutcome {
        let admitted = self.admit_address(now, conn).map_err(err);
        match admitted.and_then(|()| self.login(now, conn, login, resume_secret)) {
            Ok(response) => {
                let session = match &response {
                    Response::LoggedIn { session_id, .. } => *session_id,
                    _ => self.by_conn.get(&conn).copied().unwrap_or_default(),
                };
                self.respond(conn, request_id, Ok(response));
                LoginOutcome::LoggedIn { session }
            }
            Err(e) => LoginOutcome::Refused { code: self.refuse_login(conn, request_id, e) },
        }
    }

    /// Answers a refused Login or Resume and closes its connection; returns the close code.
    fn refuse_login(&mut self, conn: ConnId, request_id: u32, e: ErrorBody) -> ErrorCode {
        let code = ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal);
        self.respond(conn, request_id, Err(e));
        self.outputs.push_back(Output::Close { conn, code: Some(code) });
        code
    }

    /// Handles a connection that has ended; `closed_for` is the code the server closed it
    /// with, if it did. The close policy: a connection the server closed with a code (a
    /// protocol error, a refusal, a kick, a shutdown) ends its session at once, since a broken
    /// client would only break again on resumption; one that was lost, closed normally, or
    /// closed as a slow consumer leaves its session waiting for resumption.
    pub fn handle_closed(&mut self, now: Now, conn: ConnId, closed_for: Option<ErrorCode>) {
        match closed_for {
            Some(code) if code != ErrorCode::SlowConsumer => self.handle_protocol_close(now, conn),
            _ => self.handle_disconnect(now, conn),
        }
    }

    fn login(&mut self, now: Now, conn: ConnId, login: Login, secret: [u8; 16]) -> OpResult {
        if self.by_conn.contains_key(&conn) {
            return Err(err(ErrorCode::AlreadyLoggedIn));
        }
        if login.protocol_version != PROTOCOL_VERSION {
            return Err(ErrorBody::with_message(
                ErrorCode::UnsupportedVersion,
                format!("server speaks protocol version {PROTOCOL_VERSION}"),
            ));
        }
        if !valid_user_id(&login.user_id) {
            return Err(limits::invalid_user_id());
        }
        if login.user_name.len() > self.limits.max_user_name_bytes {
            let max = self.limits.max_user_name_bytes;
            return Err(limits::over_limit(
                ErrorCode::UserNameTooLong,
                format!("at most {max} bytes"),
            ));
        }
        let claims =
            self.keys.verify(&login.token, &login.user_id, now.unix_ms / 1000).map_err(err)?;
        let user: Arc<str> = Arc::from(login.user_id.as_str());
        if !self.limits.allow_multi_device {
            let older: Vec<SessionId> = self.by_user.get(&user).cloned().unwrap_or_default();
            for sid in older {
                self.kick(now, sid, ErrorCode::KickedOut, "logged in elsewhere");
            }
        }
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                user_id: user.clone(),
                user_name: login.user_name,
                conn: Some(conn),
                rooms: Vec::new(),
                resume_secret: secret,
                token_exp_s: claims.exp,
                token_timers: [(0, Timer::TokenWarning(id, 0)), (0, Timer::TokenExpiry(id, 0))],
                offline_until: None,
                pending_joins: 0,
            },
        );
        self.by_conn.insert(conn, id);
        self.by_user.entry(user).or_default().push(id);
        self.arm_token_timers(now, id, claims.exp);
        Ok(Response::LoggedIn {
            session_id: id,
            resume_secret: secret,
            server_time_ms: now.unix_ms,
            token_expires_at_s: claims.exp,
        })
    }

    /// Ends a session from the server side: a KickedOut event on its session stream, its rooms
    /// left with reason `kicked`, and its connection closed with `code`.
    fn kick(&mut self, now: Now, sid: SessionId, code: ErrorCode, message: &str) {
        let conn = self.sessions.get(&sid).and_then(|s| s.conn);
        if let Some(conn) = conn {
            let frame =
                encode_frame(&Event::KickedOut { code: code.as_u16(), message: message.into() });
            self.outputs.push_back(Output::Push { conn, room: None, frame });
            self.outputs.push_back(Output::Close { conn, code: Some(code) });
        }
        self.end_session(now, sid, LeaveReason::Kicked);
    }

    fn end_session(&mut self, now: Now, sid: SessionId, reason: LeaveReason) {
        let rooms = self.sessions.get(&sid).map(|s| s.rooms.clone()).unwrap_or_default();
        for room in rooms {
            self.leave(now, sid, room, reason);
        }
        if let Some(s) = self.sessions.remove(&sid) {
            for timer in s.token_timers {
                self.timers.remove(&timer);
            }
            if let Some(at) = s.offline_until {
                self.timers.remove(&(at, Timer::Offline(sid)));
            }
            if let Some(conn) = s.conn {
                self.by_conn.remove(&conn);
            }
            if let Some(list) = self.by_user.get_mut(&s.user_id) {
                list.retain(|x| *x != sid);
                if list.is_empty() {
                    self.by_user.remove(&s.user_id);
                    if let Some(bucket) = self.user_ops.remove(&s.user_id) {
                        self.rest_ops_bucket(s.user_id.clone(), bucket);
                    }
                }
            }
        }
    }

    /// Handles a request after login. Before login, every request but Login is answered with
    /// `not_logged_in` and the connection is closed. Returns the connection's end when the
    /// request ended it (a logout, or a request before login).
    pub fn handle_request(
        &mut self,
        now: Now,
        conn: ConnId,
        request_id: u32,
        request: Request,
    ) -> Option<Close> {
        let Some(sid) = self.by_conn.get(&conn).copied() else {
            // Login goes through handle_login; anything else before it ends the connection.
            self.respond(conn, request_id, Err(err(ErrorCode::NotLoggedIn)));
            let close = Close { code: Some(ErrorCode::NotLoggedIn) };
            self.outputs.push_back(Output::Close { conn, code: close.code });
            return Some(close);
        };
        if oplimit::counts(&request) {
            if let Err(code) = self.admit_operation(now, conn, sid) {
                self.respond(conn, request_id, Err(err(code)));
                return None;
            }
        }
        let request = if self.external().is_some() {
            let w = Waiter { index: 0, conn, request_id, answer: Answer::Plain, joining: None };
            // A membership change is answered now or when its entry is applied (and ends no
            // connection: `None`); anything else is handled below as in single-node mode.
            self.handle_replicated(now, sid, w, request)?
        } else {
            request
        };
        let result = match request {
            Request::Login(_) | Request::Resume(_) => Err(err(ErrorCode::AlreadyLoggedIn)),
            Request::RenewToken { token } => self.renew_token(now, sid, &token),
            Request::Ping => Ok(Response::Pong),
            Request::Logout => {
                self.end_session(now, sid, LeaveReason::Left);
                self.respond(conn, request_id, Ok(Response::LoggedOut));
                let close = Close { code: None };
                self.outputs.push_back(Output::Close { conn, code: close.code });
                return Some(close);
            }
            Request::CreateRoom { info, config } => {
                self.create_room(now, sid, info, config).map(Response::RoomEntered)
            }
            Request::JoinRoom { room_id } => {
                self.join_room(now, sid, &room_id).map(Response::RoomEntered)
            }
            Request::EnterRoom { info, config } => {
                self.enter_room(now, sid, info, config).map(Response::RoomEntered)
            }
            Request::LeaveRoom { room_id } => self.leave_room(now, sid, &room_id),
            Request::LeaveAllRooms => {
                let rooms = self.sessions.get(&sid).map(|s| s.rooms.clone()).unwrap_or_default();
                let mut room_ids = Vec::with_capacity(rooms.len());
                for key in rooms {
                    if let Some(r) = self.rooms.get(&key) {
                        room_ids.push(r.id.to_string());
                    }
                    self.leave(now, sid, key, LeaveReason::Left);
                }
                Ok(Response::RoomsLeft { room_ids })
            }
            Request::SwitchRoom { from_room_id, to, create_if_missing, config } => {
                self.switch_room(now, sid, &from_room_id, to, create_if_missing, config)
            }
            Request::SendRoomMessage { room_id, body, priority, client_msg_id } => {
                let sent = (conn, request_id);
                match self.send_message(now, sid, sent, &room_id, body, priority, client_msg_id) {
                    Ok(Some(response)) => Ok(response),
                    Ok(None) => return None,
                    Err(e) => Err(e),
                }
            }
            Request::QueryRoomMembers { room_id, next_flag, count } => {
                self.query_members(sid, &room_id, &next_flag, count)
            }
            Request::QueryRoomOnlineCount { room_id } => {
                self.existing_room(&room_id).map(|r| Response::RoomOnlineCount {
                    room_id: r.id.to_string(),
                    count: r.member_count() as u32,
                })
            }
            Request::QueryRoomMembersById { room_id, user_ids } => {
                self.query_members_by_id(sid, &room_id, user_ids)
            }
            Request::QueryJoinedRooms => Ok(self.joined_rooms(sid)),
            r @ (Request::SetRoomAttributes { .. }
            | Request::DeleteRoomAttributes { .. }
            | Request::QueryRoomAttributes { .. }
            | Request::RoomAttributesBatch { .. }
            | Request::SetRoomMembersAttributes { .. }
            | Request::QueryRoomMembersAttributes { .. }
            | Request::QueryRoomMemberAttributesList { .. }) => self.handle_attributes(now, sid, r),
            Request::QueryHistory { room_id, anchor, count } => {
                self.query_history(now, sid, &room_id, anchor, count)
            }
        };
        self.respond(conn, request_id, result);
        None
    }

    fn session(&self, sid: SessionId) -> Result<&Session, ErrorBody> {
        self.sessions.get(&sid).ok_or_else(|| err(ErrorCode::NotLoggedIn))
    }

    /// Adds the session to the room (which passed the checks) and says what the caller sees.
    fn add_member(&mut self, now: Now, sid: SessionId, key: RoomKey, created: bool) -> RoomState {
        let (user, name) = match self.sessions.get(&sid) {
            Some(s) => (s.user_id.clone(), s.user_name.clone()),
            None => return self.room_state(key, created, false),
        };
        self.add_member_as(now, key, user, name, sid, created)
    }

    /// Adds a member session to the room (which passed the checks); a session of this core
    /// also lists the room and gets its streams.
    fn add_member_as(
        &mut self,
        now: Now,
        key: RoomKey,
        user: Arc<str>,
        name: String,
        sid: SessionId,
        created: bool,
    ) -> RoomState {
        let conn = self.sessions.get(&sid).filter(|s| s.user_id == user).and_then(|s| s.conn);
        let Some(room) = self.rooms.get_mut(&key) else {
            return self.room_state(key, created, false);
        };
        if room.has_session(&user, sid) {
            return self.room_state(key, created, true);
        }
        // A join during the destroy delay cancels the destroy; the stale timer is then ignored.
        if let Some(at) = room.destroy_deadline() {
            room.cancel_destroy();
            if let Some(creator) = &room.creator {
                retention::forget_delayed(&mut self.delayed_by_creator, creator, at, key);
            }
        }
        let new_user = room.add_session(&user, &name, sid);
        if new_user {
            if let Some(bucket) = self.resting_messages.take(&(room.id.clone(), user.clone())) {
                room.restore_message_bucket(&user, bucket);
            }
        }
        let room_id = room.id.to_string();
        if new_user && !created {
            room.queue_presence(PresenceChange::Joined(Member {
                user_id: user.to_string(),
                user_name: name,
            }));
            self.arm_presence_flush(now, key);
        }
        if let Some(s) = self.sessions.get_mut(&sid).filter(|s| s.user_id == user) {
            s.rooms.push(key);
        }
        if let Some(conn) = conn {
            self.outputs.push_back(Output::open_room_stream(conn, key, &room_id));
        }
        self.room_state(key, created, false)
    }

    /// Encodes a room event once and queues it for every listed connection of the room.
    fn broadcast_event(&mut self, key: RoomKey, to: Arc<[ConnId]>, event: &Event) {
        let frame = encode_frame(event);
        let priority = Priority::High;
        self.outputs.push_back(Output::Broadcast {
            to,
            except: None,
            room: key,
            frame,
            priority,
            message: false,
        });
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now.mono_ms {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::PresenceFlush(key) => self.flush_presence(key),
                Timer::Offline(sid) => self.offline_expired(now, sid, at),
                Timer::TokenWarning(sid, exp) => self.token_warning(sid, exp),
                Timer::TokenExpiry(sid, exp) => self.token_expired(now, sid, exp),
                Timer::OriginIdle(origin) => self.origin_idle(now, origin),
                Timer::DedupSweep(key) => self.sweep_dedup(now, key),
                Timer::RestingBuckets => self.sweep_resting(now),
                Timer::Destroy(key) => {
                    if self.rooms.get(&key).is_some_and(|r| r.destroy_due(now.mono_ms)) {
                        self.destroy_due(now, key);
                    }
                }
            }
        }
    }

    /// Token expiry of a connection's session, Unix seconds.
    pub fn token_expiry(&self, conn: ConnId) -> Option<u64> {
        let sid = self.by_conn.get(&conn)?;
        self.sessions.get(sid).map(|s| s.token_exp_s)
    }

    /// The session id of a logged-in connection.
    pub fn session_of(&self, conn: ConnId) -> Option<SessionId> {
        self.by_conn.get(&conn).copied()
    }
}
