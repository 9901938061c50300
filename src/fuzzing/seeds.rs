//! The seed corpus: small, meaningful inputs for each target, committed under
//! `fuzz/corpus/<target>/seed-<name>` and checked to be up to date by `tests/fuzz_corpus.rs`.

use crate::wire::{
    encode_body, encode_frame, AttributeFailure, AttributeOp, ErrorBody, ErrorCode, Event,
    HistoryAnchor, LeaveReason, Login, Member, MemberAttributes, MessageBody, Priority, Reply,
    Request, RequestFrame, Response, ResponseFrame, Resume, RoomConfig, RoomInfo, RoomMessage,
    RoomRecovery, RoomState, RoomSummary, StreamHeader, MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};

/// One seed: its target, its name (the file is `seed-<name>`) and its bytes.
pub struct Seed {
    /// The target, as in [`super::TARGETS`].
    pub target: &'static str,
    /// A short name saying what the seed is.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = frame_seeds();
    out.extend(handler_seeds());
    out
}

fn info(room_id: &str) -> RoomInfo {
    RoomInfo { room_id: room_id.into(), room_name: format!("{room_id} name") }
}

fn config() -> RoomConfig {
    RoomConfig { destroy_delay_s: 5, attributes: vec![("topic".into(), "hi".into())] }
}

/// One request of every kind, in variant order. An empty token stands for a valid one in the
/// `request_handler` target.
pub fn sample_requests() -> Vec<Request> {
    let pairs = vec![("k1".to_string(), "v1".to_string())];
    vec![
        Request::Login(Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: "ann".into(),
            user_name: "Ann".into(),
            token: String::new(),
        }),
        Request::Logout,
        Request::CreateRoom { info: info("r0"), config: config() },
        Request::JoinRoom { room_id: "r0".into() },
        Request::EnterRoom { info: info("r1"), config: RoomConfig::default() },
        Request::LeaveRoom { room_id: "r1".into() },
        Request::LeaveAllRooms,
        Request::SwitchRoom {
            from_room_id: "r0".into(),
            to: info("r2"),
            create_if_missing: true,
            config: config(),
        },
        Request::SendRoomMessage {
            room_id: "r0".into(),
            body: MessageBody::Text("hello".into()),
            priority: Priority::Medium,
            client_msg_id: Some("c1".into()),
        },
        Request::QueryRoomMembers { room_id: "r0".into(), next_flag: String::new(), count: 10 },
        Request::QueryRoomOnlineCount { room_id: "r0".into() },
        Request::QueryRoomMembersById {
            room_id: "r0".into(),
            user_ids: vec!["ann".into(), "bob".into()],
        },
        Request::QueryJoinedRooms,
        Request::QueryHistory { room_id: "r0".into(), anchor: HistoryAnchor::Latest, count: 20 },
        Request::SetRoomAttributes {
            room_id: "r0".into(),
            attributes: pairs.clone(),
            is_force: false,
            is_update_owner: true,
            is_delete_after_owner_left: true,
        },
        Request::DeleteRoomAttributes {
            room_id: "r0".into(),
            keys: vec!["k1".into()],
            is_force: false,
        },
        Request::QueryRoomAttributes { room_id: "r0".into() },
        Request::RoomAttributesBatch {
            room_id: "r0".into(),
            ops: vec![
                AttributeOp::Set {
                    attributes: pairs.clone(),
                    is_force: true,
                    is_update_owner: false,
                    is_delete_after_owner_left: false,
                },
                AttributeOp::Delete { keys: vec!["topic".into()], is_force: true },
            ],
        },
        Request::SetRoomMembersAttributes {
            room_id: "r0".into(),
            user_ids: vec!["ann".into()],
            attributes: vec![("mic".into(), "on".into())],
        },
        Request::QueryRoomMembersAttributes { room_id: "r0".into(), user_ids: vec!["ann".into()] },
        Request::QueryRoomMemberAttributesList {
            room_id: "r0".into(),
            next_flag: String::new(),
            count: 5,
        },
        Request::Resume(Resume {
            protocol_version: PROTOCOL_VERSION,
            user_id: "ann".into(),
            user_name: "Ann".into(),
            token: String::new(),
            session_id: 1 << 20,
            resume_secret: [1; 16],
            rooms: vec![("r0".into(), 1)],
        }),
        Request::RenewToken { token: String::new() },
        Request::Ping,
    ]
}

fn state() -> RoomState {
    RoomState {
        room_id: "r0".into(),
        room_name: "r0 name".into(),
        created: true,
        already_member: false,
        member_count: 2,
        last_seq: 300,
        created_at_ms: 1_700_000_000_123,
        attributes: vec![("topic".into(), "hi".into())],
    }
}

fn member(user: &str) -> Member {
    Member { user_id: user.into(), user_name: format!("{user} name") }
}

fn message() -> RoomMessage {
    RoomMessage {
        room_id: "r0".into(),
        seq: 7,
        message_id: 1 << 33,
        sender: "bob".into(),
        timestamp_ms: 1_700_000_000_123,
        priority: Priority::High,
        body: MessageBody::Custom { sub_type: 70_000, data: vec![0, 1, 2, 255] },
    }
}

fn member_attributes() -> MemberAttributes {
    MemberAttributes { user_id: "ann".into(), attributes: vec![("mic".into(), "on".into())] }
}

/// One response of every kind, in variant order.
pub fn sample_responses() -> Vec<Response> {
    vec![
        Response::LoggedIn {
            session_id: 1 << 20,
            resume_secret: [9; 16],
            server_time_ms: 1_700_000_000_123,
            token_expires_at_s: 1_700_003_600,
        },
        Response::LoggedOut,
        Response::RoomEntered(state()),
        Response::RoomLeft { room_id: "r0".into() },
        Response::RoomsLeft { room_ids: vec!["r0".into(), "r1".into()] },
        Response::RoomSwitched { left_room_id: "r0".into(), room: state() },
        Response::MessageSent {
            room_id: "r0".into(),
            message_id: 1 << 33,
            seq: 251,
            timestamp_ms: 1_700_000_000_123,
            duplicate: true,
        },
        Response::RoomMembers {
            room_id: "r0".into(),
            members: vec![member("ann"), member("bob")],
            next_flag: "2".into(),
        },
        Response::RoomOnlineCount { room_id: "r0".into(), count: 65_536 },
        Response::RoomMembersById {
            room_id: "r0".into(),
            members: vec![member("ann")],
            not_found: vec!["zed".into()],
        },
        Response::JoinedRooms {
            rooms: vec![RoomSummary {
                room_id: "r0".into(),
                room_name: "r0 name".into(),
                member_count: 2,
            }],
        },
        Response::History { room_id: "r0".into(), messages: vec![message()], has_more: true },
        Response::RoomAttributesChanged {
            room_id: "r0".into(),
            failed: vec![AttributeFailure {
                key: "k1".into(),
                code: ErrorCode::AttributeNotOwned.as_u16(),
            }],
        },
        Response::RoomAttributes {
            room_id: "r0".into(),
            attributes: vec![("k1".into(), "v1".into())],
        },
        Response::RoomMembersAttributesSet {
            room_id: "r0".into(),
            members: vec![member_attributes()],
            failed_user_ids: vec!["zed".into()],
        },
        Response::RoomMembersAttributes {
            room_id: "r0".into(),
            members: vec![member_attributes()],
        },
        Response::RoomMemberAttributesList {
            room_id: "r0".into(),
            members: vec![member_attributes()],
            next_flag: String::new(),
        },
        Response::Resumed {
            session_id: 1 << 20,
            resume_secret: [9; 16],
            session_resumed: false,
            token_expires_at_s: 1_700_003_600,
            rooms: vec![RoomRecovery {
                room_id: "r0".into(),
                rejoined: true,
                recovered: false,
                replayed: 3,
                last_seq: 9,
                error_code: 0,
            }],
        },
        Response::TokenRenewed { token_expires_at_s: 1_700_007_200 },
        Response::Pong,
    ]
}

/// One event of every kind, in variant order.
pub fn sample_events() -> Vec<Event> {
    vec![
        Event::MembersJoined { room_id: "r0".into(), members: vec![member("bob")] },
        Event::MembersLeft {
            room_id: "r0".into(),
            members: vec![member("bob")],
            reason: LeaveReason::Offline,
        },
        Event::RoomMessage(message()),
        Event::KickedOut { code: ErrorCode::KickedOut.as_u16(), message: "elsewhere".into() },
        Event::MemberCountUpdated { room_id: "r0".into(), count: 501 },
        Event::RoomAttributesUpdated {
            room_id: "r0".into(),
            set: vec![("k1".into(), "v1".into())],
            deleted: vec!["topic".into()],
        },
        Event::RoomMemberAttributesUpdated {
            room_id: "r0".into(),
            members: vec![member_attributes()],
            operated_by: "ann".into(),
        },
        Event::TokenWillExpire { expires_at_s: 1_700_003_600 },
    ]
}

/// Stream headers of every kind, in variant order.
pub fn sample_headers() -> Vec<StreamHeader> {
    vec![
        StreamHeader::Session,
        StreamHeader::Room { room_id: "r0".into() },
        StreamHeader::RoomLow { room_id: "r0".into() },
    ]
}

/// Mode bytes of `frame_decode` (see [`super::frame_decode`]).
const WHOLE: u8 = 0x00;
const BYTE_BY_BYTE: u8 = 0x01;
const CHUNKS_OF_3: u8 = 0x03;
const CLIENT_SIDE: u8 = 0x40;
const RESET: u8 = 0x80;

fn frame_seed(name: impl Into<String>, mode: u8, stream: &[u8]) -> Seed {
    let mut data = vec![mode];
    data.extend_from_slice(stream);
    Seed { target: "frame_decode", name: name.into(), data }
}

fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn frame_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut all_requests = Vec::new();
    for (i, request) in sample_requests().into_iter().enumerate() {
        let name = format!("request-{}", request.op_name());
        let frame = encode_frame(&RequestFrame { request_id: i as u32 + 1, request });
        out.push(frame_seed(name, WHOLE, &frame));
        all_requests.extend_from_slice(&frame);
    }
    out.push(frame_seed("requests-all-in-one-write", WHOLE, &all_requests));
    out.push(frame_seed("requests-all-chunks-of-3", CHUNKS_OF_3, &all_requests));
    for (i, response) in sample_responses().into_iter().enumerate() {
        let name = format!("response-{i:02}");
        let frame =
            encode_frame(&ResponseFrame { request_id: 300 + i as u32, reply: Reply::Ok(response) });
        out.push(frame_seed(name, CLIENT_SIDE, &frame));
    }
    let error = ResponseFrame {
        request_id: 70_000,
        reply: Reply::Err(ErrorBody::new(ErrorCode::RateLimited)),
    };
    out.push(frame_seed("response-error", CLIENT_SIDE, &encode_frame(&error)));
    for event in sample_events() {
        out.push(frame_seed(format!("event-{}", event.name()), CLIENT_SIDE, &encode_frame(&event)));
    }
    let mut stream = Vec::new();
    for header in sample_headers() {
        stream.extend_from_slice(&encode_frame(&header));
    }
    stream.extend_from_slice(&encode_frame(&Event::RoomMessage(message())));
    out.push(frame_seed("headers-then-event-byte-by-byte", CLIENT_SIDE | BYTE_BY_BYTE, &stream));

    // Hostile input.
    let logout = encode_frame(&RequestFrame { request_id: 1, request: Request::Logout });
    out.push(frame_seed("length-u32-max", WHOLE, &u32::MAX.to_le_bytes()));
    let at_max = (MAX_CLIENT_FRAME_LEN as u32).to_le_bytes();
    out.push(frame_seed("length-at-client-max-then-fin", WHOLE, &at_max));
    let over_max = (MAX_CLIENT_FRAME_LEN as u32 + 1).to_le_bytes();
    out.push(frame_seed("length-over-client-max", WHOLE, &over_max));
    let over_frame_max = (MAX_FRAME_LEN as u32 + 1).to_le_bytes();
    out.push(frame_seed("length-over-frame-max", CLIENT_SIDE, &over_frame_max));
    // request_id 0, Login (variant 0), protocol_version 1, a user_id claiming 2^40 bytes.
    let mut huge = vec![0u8, 0, 1, 253];
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    out.push(frame_seed("string-claiming-2-pow-40", WHOLE, &prefixed(&huge)));
    // The same claiming 1 MiB: within the general limit, over the client one.
    let mut mib = vec![0u8, 0, 1, 252];
    mib.extend_from_slice(&(1u32 << 20).to_le_bytes());
    out.push(frame_seed("string-claiming-1-mib", WHOLE, &prefixed(&mib)));
    out.push(frame_seed("truncated-then-fin", WHOLE, &logout[..logout.len() - 1]));
    out.push(frame_seed("truncated-prefix-then-fin", WHOLE, &logout[..2]));
    out.push(frame_seed("truncated-then-reset", RESET | BYTE_BY_BYTE, &logout[..5]));
    out.push(frame_seed("reset-between-frames", RESET, &logout));
    let mut trailing = encode_body(&RequestFrame { request_id: 2, request: Request::Logout });
    trailing.push(0);
    out.push(frame_seed("trailing-byte", WHOLE, &prefixed(&trailing)));
    // request_id 3, variant index 250 (no such request).
    out.push(frame_seed("invalid-enum-tag", WHOLE, &prefixed(&[3, 250])));
    // JoinRoom (variant 3) with a room id that is not UTF-8.
    out.push(frame_seed("invalid-utf8", WHOLE, &prefixed(&[4, 3, 2, 0xc3, 0x28])));
    // request_id 5 spelled as a u16 varint: accepted, re-encodes shorter.
    out.push(frame_seed("long-form-varint", WHOLE, &prefixed(&[251, 5, 0, 1])));
    // SendRoomMessage with an Option tag of 2.
    let send = &sample_requests()[8];
    let mut bad_option = encode_body(&RequestFrame { request_id: 6, request: send.clone() });
    let tag = bad_option.len() - 4; // Some, then the 2-byte string "c1" (length 2, 'c', '1').
    bad_option[tag] = 2;
    out.push(frame_seed("invalid-option-tag", WHOLE, &prefixed(&bad_option)));
    out.push(frame_seed("empty-body", WHOLE, &prefixed(&[])));
    out.push(frame_seed("empty-stream", WHOLE, &[]));
    out
}

/// Builds `request_handler` inputs: a config byte, then commands (see
/// [`super::request_handler`]).
struct Script(Vec<u8>);

impl Script {
    fn new(config: u8) -> Script {
        Script(vec![config])
    }

    fn op(&mut self, slot: u8, op: u8, args: &[u8]) -> &mut Script {
        self.0.push(slot << 4 | op);
        self.0.extend_from_slice(args);
        self
    }

    fn login(&mut self, slot: u8, user: u8) -> &mut Script {
        self.op(slot, 0, &[user, 7])
    }

    fn login_token(&mut self, slot: u8, user: u8, kind: u8) -> &mut Script {
        self.op(slot, 0, &[user, kind])
    }

    fn resume(&mut self, slot: u8, which: u8, how: u8) -> &mut Script {
        self.op(slot, 1, &[which, how])
    }

    fn frame(&mut self, slot: u8, request_id: u32, request: Request) -> &mut Script {
        let body = encode_body(&RequestFrame { request_id, request });
        self.raw(slot, &body)
    }

    fn raw(&mut self, slot: u8, body: &[u8]) -> &mut Script {
        let len = (body.len() as u16).to_le_bytes();
        self.op(slot, 2, &len);
        self.0.extend_from_slice(body);
        self
    }

    /// Advances by `units` × 7 ms.
    fn tick(&mut self, units: u8) -> &mut Script {
        self.op(0, 3, &[units])
    }

    /// Advances by `root`² seconds.
    fn wait(&mut self, root: u8) -> &mut Script {
        self.op(0, 4, &[root])
    }

    fn lost(&mut self, slot: u8) -> &mut Script {
        self.op(slot, 5, &[])
    }

    fn broken(&mut self, slot: u8) -> &mut Script {
        self.op(slot, 6, &[])
    }

    fn audit(&mut self, slot: u8) -> &mut Script {
        self.op(slot, 7, &[])
    }

    /// A well-formed request (`kind` picks it, `arg` its details: see `quick_request`).
    fn quick(&mut self, slot: u8, kind: u8, arg: u8) -> &mut Script {
        self.op(slot, 8, &[kind, arg])
    }

    fn seed(&self, name: &str) -> Seed {
        Seed { target: "request_handler", name: name.into(), data: self.0.clone() }
    }
}

/// Quick request kinds (`kind % 25` in `quick_request`, `kind / 25` the priority); the room
/// is `arg % 4`.
const CREATE: u8 = 0;
const JOIN: u8 = 1;
const ENTER: u8 = 2;
const LEAVE: u8 = 4;
const SWITCH: u8 = 6;
const SEND: u8 = 7;
const SEND_HIGH: u8 = 7 + 50;
const MEMBERS: u8 = 11;
const HISTORY: u8 = 15;
const SET_ATTRS: u8 = 16;
const BATCH: u8 = 19;
const MEMBER_ATTRS: u8 = 20;
const PING: u8 = 23;
const LOGOUT: u8 = 24;

fn handler_seeds() -> Vec<Seed> {
    let mut out = Vec::new();

    let mut s = Script::new(0);
    s.login(0, 0).login(1, 1).login(2, 2);
    s.quick(0, CREATE, 0).quick(1, JOIN, 0).quick(2, ENTER, 0).tick(10);
    s.quick(0, SEND, 1 << 2).quick(1, SEND_HIGH, 0x80).quick(1, SEND_HIGH, 0x80);
    s.quick(2, MEMBERS, 0x10).quick(2, HISTORY, 0x10).quick(2, PING, 0).audit(0).audit(1);
    s.quick(1, LEAVE, 0).tick(10).quick(0, SWITCH, 1 << 2 | 0x80).audit(0);
    out.push(s.seed("three-users-one-room"));

    let mut s = Script::new(0);
    s.login(0, 0);
    let mut id = 10;
    for request in sample_requests().into_iter().skip(1) {
        if matches!(request, Request::Logout | Request::Resume(_)) {
            continue;
        }
        s.frame(0, id, request);
        id += 1;
    }
    s.audit(0).frame(0, id, Request::Logout);
    out.push(s.seed("every-request-as-a-frame"));

    let mut s = Script::new(0);
    s.frame(0, 1, sample_requests()[0].clone()).frame(
        0,
        2,
        Request::JoinRoom { room_id: "r0".into() },
    );
    s.frame(1, 1, Request::QueryJoinedRooms).raw(2, &[1, 250]).login(3, 1);
    s.frame(3, 2, sample_requests()[0].clone());
    out.push(s.seed("requests-before-login-and-bad-frames"));

    let mut s = Script::new(0);
    s.login(0, 0).login(1, 1).quick(0, CREATE, 1).quick(1, JOIN, 1);
    s.quick(0, SEND_HIGH, 1).quick(0, SEND, 1).lost(0).quick(1, SEND_HIGH, 1);
    s.quick(1, SEND_HIGH, 1).wait(3).resume(2, 0, 0).audit(2).lost(2).wait(6);
    s.resume(3, 0, 3).audit(3).resume(0, 1, 1).resume(1, 0, 2);
    out.push(s.seed("lost-connection-then-resume"));

    let mut s = Script::new(0);
    s.login(0, 0).login(1, 0).quick(1, ENTER, 2).login(2, 0).audit(2);
    out.push(s.seed("second-login-kicks-the-first"));

    let mut s = Script::new(2);
    s.login(0, 0).login(1, 0).quick(0, ENTER, 2).quick(1, ENTER, 2).audit(0).audit(1);
    s.quick(0, LOGOUT, 0x80).audit(1);
    out.push(s.seed("multi-device"));

    let mut s = Script::new(0);
    s.login_token(0, 0, 0).login_token(1, 1, 1).login_token(2, 2, 2).login_token(3, 0, 3);
    s.quick(1, ENTER, 0).tick(200).wait(3).quick(1, LOGOUT, 0).wait(6).wait(7);
    s.login_token(2, 1, 4).login_token(3, 1, 5).login_token(0, 1, 0xff);
    out.push(s.seed("token-expiry-and-bad-tokens"));

    let mut s = Script::new(1);
    for slot in 0..4 {
        s.login(slot, slot % 3);
    }
    for room in 0..4 {
        s.quick(room, ENTER, room).quick((room + 1) % 4, JOIN, room);
    }
    for slot in 0..4 {
        s.quick(slot, SEND_HIGH, slot).quick(slot, SEND_HIGH, slot).quick(slot, SEND, slot);
        s.quick(slot, SET_ATTRS, slot | 0x20).quick(slot, BATCH, slot | 0x80);
        s.quick(slot, MEMBER_ATTRS, slot);
    }
    s.tick(20).lost(1).wait(2).resume(1, 1, 0).audit(0).audit(1).broken(2).wait(20);
    out.push(s.seed("small-limits-everything"));

    let mut s = Script::new(8);
    s.login(0, 0).login(2, 1).quick(0, ENTER, 0).quick(2, ENTER, 0);
    for _ in 0..4 {
        s.quick(0, MEMBERS, 0x10).quick(2, PING, 0);
    }
    s.lost(0).login(0, 2).tick(150).quick(2, MEMBERS, 0x10).wait(2).audit(0).audit(2);
    out.push(s.seed("operation-rate-limits"));

    let mut s = Script::new(4);
    s.login(0, 0).login(1, 1).quick(0, CREATE, 0x40).quick(1, JOIN, 0).lost(0).tick(20);
    s.lost(1).wait(1).quick(2, JOIN, 0).login(2, 2).quick(2, JOIN, 0).wait(2).quick(2, JOIN, 0);
    out.push(s.seed("no-offline-grace-delayed-destroy"));

    out
}
