//! One harness for the sans-IO [`Core`], shared by `tests/core`, `tests/attributes` and the
//! `request_handler` fuzz target: a core with a token key, a virtual clock, logins and requests
//! routed as the server routes them, and every output decoded and handed to the connections the
//! server would hand it to (a broadcast to each listed connection but the excepted one).
//!
//! Nothing here closes or forgets a connection on its own: a test or fuzz target that wants the
//! server's reaction to a close calls the core's disconnect inputs itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::KeySet;
use crate::core::{BusOp, ConnId, Core, Limits, Now, Output, RoomKey};
use crate::wire::{
    decode_body, ErrorBody, ErrorCode, Event, Login, MessageBody, Priority, Reply, Request,
    Response, ResponseFrame, Resume, RoomConfig, RoomInfo, RoomState, StreamHeader,
    LENGTH_PREFIX_LEN, PROTOCOL_VERSION,
};

/// The token key id of [`Harness::new`].
pub const KID: &str = "k1";
/// Monotonic time at the start of a run, ms.
pub const START_MONO_MS: u64 = 1_000;
/// Wall-clock time at the start of a run, ms since the Unix epoch.
pub const START_UNIX_MS: u64 = 1_700_000_000_000;

/// What one connection was handed, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Got {
    /// A response on the control stream.
    Reply(ResponseFrame),
    /// An event on a room stream (`Some`) or on the session stream (`None`).
    Event(Option<RoomKey>, Event),
    /// A room stream opened, with its header.
    OpenStream(RoomKey, StreamHeader),
    /// A room stream finished.
    CloseStream(RoomKey),
    /// The connection closed, with its code (`None` for a normal close).
    Close(Option<ErrorCode>),
}

/// An [`Output`] with its frame decoded.
#[derive(Clone, Debug)]
pub enum Decoded {
    /// A response for one connection.
    Reply {
        /// The connection.
        conn: ConnId,
        /// The response.
        frame: ResponseFrame,
    },
    /// A room stream to open.
    OpenRoomStream {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: RoomKey,
        /// The stream's header.
        header: StreamHeader,
    },
    /// A room stream to finish.
    CloseRoomStream {
        /// The connection.
        conn: ConnId,
        /// The room.
        room: RoomKey,
    },
    /// One event for every listed connection but `except`.
    Broadcast {
        /// The listed connections.
        to: Arc<[ConnId]>,
        /// The connection that gets no copy.
        except: Option<ConnId>,
        /// The room stream that carries it.
        room: RoomKey,
        /// The event.
        event: Event,
    },
    /// An event for one connection, on a room stream or the session stream (`None`).
    Push {
        /// The connection.
        conn: ConnId,
        /// The room stream, or `None`.
        room: Option<RoomKey>,
        /// The event.
        event: Event,
    },
    /// A connection to close.
    Close {
        /// The connection.
        conn: ConnId,
        /// The close code.
        code: Option<ErrorCode>,
    },
    /// A request to the room log (cluster mode only).
    Bus(BusOp),
}

impl Decoded {
    /// Decodes an output's frame; panics when the core produced a frame that does not decode.
    pub fn new(output: Output) -> Decoded {
        match output {
            Output::Reply { conn, frame } => Decoded::Reply { conn, frame: decode_frame(&frame) },
            Output::OpenRoomStream { conn, room, header, .. } => {
                Decoded::OpenRoomStream { conn, room, header: decode_frame(&header) }
            }
            Output::CloseRoomStream { conn, room } => Decoded::CloseRoomStream { conn, room },
            Output::Broadcast { to, except, room, frame, .. } => {
                Decoded::Broadcast { to, except, room, event: decode_frame(&frame) }
            }
            Output::Push { conn, room, frame } => {
                Decoded::Push { conn, room, event: decode_frame(&frame) }
            }
            Output::Close { conn, code } => Decoded::Close { conn, code },
            Output::Bus(op) => Decoded::Bus(op),
        }
    }

    /// The connections it goes to (a broadcast's recipients without the excepted one).
    pub fn recipients(&self) -> Vec<ConnId> {
        match self {
            Decoded::Broadcast { to, except, .. } => {
                to.iter().copied().filter(|c| Some(*c) != *except).collect()
            }
            Decoded::Reply { conn, .. }
            | Decoded::OpenRoomStream { conn, .. }
            | Decoded::CloseRoomStream { conn, .. }
            | Decoded::Push { conn, .. }
            | Decoded::Close { conn, .. } => vec![*conn],
            Decoded::Bus(_) => Vec::new(),
        }
    }

    /// What each recipient gets.
    fn deliveries(self) -> Vec<(ConnId, Got)> {
        match self {
            Decoded::Reply { conn, frame } => vec![(conn, Got::Reply(frame))],
            Decoded::OpenRoomStream { conn, room, header } => {
                vec![(conn, Got::OpenStream(room, header))]
            }
            Decoded::CloseRoomStream { conn, room } => vec![(conn, Got::CloseStream(room))],
            Decoded::Broadcast { ref to, except, room, ref event } => to
                .iter()
                .copied()
                .filter(|c| Some(*c) != except)
                .map(|c| (c, Got::Event(Some(room), event.clone())))
                .collect(),
            Decoded::Push { conn, room, event } => vec![(conn, Got::Event(room, event))],
            Decoded::Close { conn, code } => vec![(conn, Got::Close(code))],
            Decoded::Bus(_) => Vec::new(),
        }
    }
}

/// A length-prefixed frame's body, decoded; panics on a wrong prefix or a body that does not
/// decode (the core produced a broken frame).
pub fn decode_frame<T: bincode::Decode<()>>(frame: &[u8]) -> T {
    let prefix: [u8; LENGTH_PREFIX_LEN] = frame[..LENGTH_PREFIX_LEN].try_into().unwrap_or_default();
    assert_eq!(u32::from_le_bytes(prefix) as usize, frame.len() - LENGTH_PREFIX_LEN);
    match decode_body(&frame[LENGTH_PREFIX_LEN..]) {
        Ok(msg) => msg,
        Err(e) => panic!("the core produced a frame that does not decode: {e}"),
    }
}

/// A [`Core`] on a virtual clock, with what each connection got so far.
#[derive(Debug)]
pub struct Harness {
    /// The core, for inputs and queries the harness has no shortcut for.
    pub core: Core,
    keys: KeySet,
    kid: &'static str,
    now: Now,
    next_request: u32,
    inbox: HashMap<ConnId, Vec<Got>>,
}

impl Harness {
    /// A core with these limits, key [`KID`] and id base 2^16, at the start time.
    pub fn new(limits: Limits) -> Harness {
        Harness::with_key(limits, KID, b"core-test-secret-0123456789", 1 << 16)
    }

    /// A core with the default limits.
    pub fn plain() -> Harness {
        Harness::new(Limits::default())
    }

    /// A core with these limits, token key and id base, at the start time.
    pub fn with_key(limits: Limits, kid: &'static str, secret: &[u8], id_base: u64) -> Harness {
        let mut keys = KeySet::new();
        assert!(keys.insert(kid, secret), "a valid test key");
        Harness {
            core: Core::new(limits, keys.clone(), id_base),
            keys,
            kid,
            now: Now { mono_ms: START_MONO_MS, unix_ms: START_UNIX_MS },
            next_request: 1,
            inbox: HashMap::new(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Now {
        self.now
    }

    /// Moves time forward without firing timers.
    pub fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_ms += ms;
    }

    /// Moves time forward, fires the timers that are due and delivers what they produce.
    pub fn tick(&mut self, ms: u64) {
        self.advance(ms);
        let now = self.now;
        self.core.handle_timeout(now);
        self.pump();
    }

    /// Takes every output of the core, decoded, without delivering it.
    pub fn drain(&mut self) -> Vec<Decoded> {
        std::iter::from_fn(|| self.core.poll_output()).map(Decoded::new).collect()
    }

    /// Takes every output of the core and delivers it to the connections' inboxes.
    pub fn pump(&mut self) {
        for decoded in self.drain() {
            for (conn, got) in decoded.deliveries() {
                self.inbox.entry(conn).or_default().push(got);
            }
        }
    }

    /// Everything the connection got since the last take.
    pub fn take(&mut self, conn: ConnId) -> Vec<Got> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// The events the connection got since the last take (stream bookkeeping dropped); panics
    /// on a reply nobody asked for.
    pub fn events(&mut self, conn: ConnId) -> Vec<Event> {
        self.take(conn)
            .into_iter()
            .filter_map(|g| match g {
                Got::Event(_, e) => Some(e),
                Got::Reply(r) => panic!("unexpected reply {r:?}"),
                _ => None,
            })
            .collect()
    }

    /// A token for `user` issued at `iat_s` and expiring at `exp_s` (Unix seconds).
    pub fn mint(&self, user: &str, iat_s: u64, exp_s: u64) -> Option<String> {
        self.keys.mint(self.kid, user, iat_s, exp_s)
    }

    /// A token for `user`, valid for an hour from now.
    pub fn token(&self, user: &str) -> String {
        let now_s = self.now.unix_ms / 1000;
        self.mint(user, now_s, now_s + 3600).unwrap_or_default()
    }

    /// A valid Login for `user` (named "`user` name").
    pub fn login_request(&self, user: &str) -> Login {
        Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token: self.token(user),
        }
    }

    /// A Resume of `user`'s session with a valid token, naming `rooms` with their last seqs.
    pub fn resume_request(
        &self,
        user: &str,
        session_id: u64,
        secret: [u8; 16],
        rooms: &[(&str, u64)],
    ) -> Resume {
        Resume {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token: self.token(user),
            session_id,
            resume_secret: secret,
            rooms: rooms.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
        }
    }

    /// A fresh request id (1, 2, 3 ...).
    pub fn next_request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Hands a request to the core as the server routes it: a Login or Resume that is the
    /// connection's `first` request goes to the login inputs (with `secret` as the fresh
    /// resume secret), anything else to `handle_request`. Outputs stay in the core.
    pub fn route(
        &mut self,
        conn: ConnId,
        request_id: u32,
        request: Request,
        first: bool,
        secret: [u8; 16],
    ) {
        let now = self.now;
        match request {
            Request::Login(login) if first => {
                self.core.handle_login(now, conn, request_id, login, secret);
            }
            Request::Resume(resume) if first => {
                self.core.handle_resume(now, conn, request_id, resume, secret);
            }
            request => {
                self.core.handle_request(now, conn, request_id, request);
            }
        }
    }

    /// Runs a login; returns whether the core logged the connection in, its reply, and
    /// everything else the connection got.
    pub fn try_login(&mut self, conn: ConnId, login: Login) -> (bool, Reply, Vec<Got>) {
        let id = self.next_request_id();
        let now = self.now;
        let ok = self.core.handle_login(now, conn, id, login, [7; 16]).logged_in();
        let (reply, rest) = self.first_answer(conn, id);
        (ok, reply, rest)
    }

    /// Logs `user` in on `conn`, which must succeed with nothing else delivered.
    pub fn login(&mut self, conn: ConnId, user: &str) {
        let login = self.login_request(user);
        let (ok, reply, rest) = self.try_login(conn, login);
        assert!(ok, "{reply:?}");
        assert!(matches!(reply, Reply::Ok(Response::LoggedIn { .. })), "{reply:?}");
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// Users `u<first>..u<first+n>` log in on connections with the same numbers.
    pub fn login_many(&mut self, first: ConnId, n: u64) {
        for c in first..first + n {
            self.login(c, &format!("u{c}"));
        }
    }

    /// Runs a Resume on `conn`; returns whether the connection now carries a session, the
    /// reply, and everything else the connection got.
    pub fn resume(
        &mut self,
        conn: ConnId,
        user: &str,
        session_id: u64,
        secret: [u8; 16],
        rooms: &[(&str, u64)],
    ) -> (bool, Reply, Vec<Got>) {
        let id = self.next_request_id();
        let now = self.now;
        let resume = self.resume_request(user, session_id, secret, rooms);
        let ok = self.core.handle_resume(now, conn, id, resume, [9; 16]).logged_in();
        let (reply, rest) = self.first_answer(conn, id);
        (ok, reply, rest)
    }

    /// Delivers the outputs and takes the connection's whole inbox, its reply to `id` apart.
    fn first_answer(&mut self, conn: ConnId, id: u32) -> (Reply, Vec<Got>) {
        self.pump();
        let mut got = self.take(conn);
        let pos = got
            .iter()
            .position(|g| matches!(g, Got::Reply(r) if r.request_id == id))
            .expect("a reply to the login");
        match got.remove(pos) {
            Got::Reply(r) => (r.reply, got),
            _ => unreachable!("the position of a reply"),
        }
    }

    /// The session of a logged-in connection.
    pub fn session_of(&self, conn: ConnId) -> u64 {
        self.core.session_of(conn).expect("a session")
    }

    /// Sends a request and returns its answer; the connection's other deliveries stay in its
    /// inbox.
    pub fn call(&mut self, conn: ConnId, request: Request) -> Result<Response, ErrorBody> {
        let id = self.next_request_id();
        let now = self.now;
        self.core.handle_request(now, conn, id, request);
        self.pump();
        let inbox = self.inbox.entry(conn).or_default();
        let pos = inbox
            .iter()
            .position(|g| matches!(g, Got::Reply(r) if r.request_id == id))
            .expect("a reply to the request");
        match inbox.remove(pos) {
            Got::Reply(ResponseFrame { reply: Reply::Ok(r), .. }) => Ok(r),
            Got::Reply(ResponseFrame { reply: Reply::Err(e), .. }) => Err(e),
            _ => unreachable!("the position of a reply"),
        }
    }

    /// Sends a request that must succeed.
    pub fn ok(&mut self, conn: ConnId, request: Request) -> Response {
        self.call(conn, request).unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    /// Sends a request that must fail; returns its code.
    pub fn fail(&mut self, conn: ConnId, request: Request) -> ErrorCode {
        match self.call(conn, request) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => ErrorCode::from_u16(e.code).expect("a known code"),
        }
    }

    /// Creates room `room` (named "`room` name") with this destroy delay.
    pub fn create(&mut self, conn: ConnId, room: &str, delay_s: u32) -> RoomState {
        let info = RoomInfo { room_id: room.into(), room_name: format!("{room} name") };
        let config = RoomConfig { destroy_delay_s: delay_s, attributes: Vec::new() };
        match self.ok(conn, Request::CreateRoom { info, config }) {
            Response::RoomEntered(s) => s,
            r => panic!("{r:?}"),
        }
    }

    /// Joins room `room`.
    pub fn join(&mut self, conn: ConnId, room: &str) -> RoomState {
        match self.ok(conn, Request::JoinRoom { room_id: room.into() }) {
            Response::RoomEntered(s) => s,
            r => panic!("{r:?}"),
        }
    }

    /// Sends a text message (medium priority); returns (message_id, seq, duplicate).
    pub fn send(&mut self, conn: ConnId, room: &str, text: &str) -> (u64, u64, bool) {
        self.send_with(conn, room, MessageBody::Text(text.into()), None)
    }

    /// Sends a message (medium priority); returns (message_id, seq, duplicate).
    pub fn send_with(
        &mut self,
        conn: ConnId,
        room: &str,
        body: MessageBody,
        client_msg_id: Option<&str>,
    ) -> (u64, u64, bool) {
        let request = Request::SendRoomMessage {
            room_id: room.into(),
            body,
            priority: Priority::Medium,
            client_msg_id: client_msg_id.map(str::to_string),
        };
        match self.ok(conn, request) {
            Response::MessageSent { message_id, seq, duplicate, .. } => {
                (message_id, seq, duplicate)
            }
            r => panic!("{r:?}"),
        }
    }

    /// The ids of the rooms the connection's session is in.
    pub fn joined_rooms(&mut self, conn: ConnId) -> Vec<String> {
        match self.ok(conn, Request::QueryJoinedRooms) {
            Response::JoinedRooms { rooms } => rooms.into_iter().map(|r| r.room_id).collect(),
            r => panic!("{r:?}"),
        }
    }
}
