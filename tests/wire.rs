//! Pins the exact bytes of every wire message (as mini-redis asserts `b"$-1\r\n"`), so that an
//! accidental format change fails here, and checks the decoder's handling of hostile input.
//!
//! Expected frames are written as hex with spaces between fields (the spaces are ignored): the
//! 4-byte little-endian length prefix first, then the body field by field. docs/PROTOCOL.md
//! explains the encoding; its worked example uses the same values as the `*_example` samples
//! here, and `protocol_md_*` tests check that the document and this file agree.

use std::fmt::Debug;

use bincode::{Decode, Encode};
use bytes::BytesMut;
use huddle::wire::{
    check_length, decode_body, encode_body, encode_frame, split_frame, AttributeFailure,
    AttributeOp, ErrorBody, ErrorCode, Event, HistoryAnchor, LeaveReason, Login, Member,
    MemberAttributes, MessageBody, Priority, Reply, Request, RequestFrame, Response, ResponseFrame,
    Resume, RoomConfig, RoomInfo, RoomMessage, RoomRecovery, RoomState, RoomSummary, StreamHeader,
    WireError, ALPN, LENGTH_PREFIX_LEN, MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

const PROTOCOL_MD: &str = include_str!("../docs/PROTOCOL.md");

/// The made-up signature of the example token (64 lowercase hex characters).
const EXAMPLE_SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Helpers

fn unhex(spaced: &str) -> Vec<u8> {
    let compact: String = spaced.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(compact).expect("test hex is valid")
}

/// Encodes `value` as a frame, compares it with `expected` and decodes it back.
fn pin<T>(name: &str, value: &T, expected: &str)
where
    T: Encode + Decode<()> + PartialEq + Debug,
{
    let frame = encode_frame(value);
    assert_eq!(hex::encode(&frame), hex::encode(unhex(expected)), "bytes of {name}");
    let prefix: [u8; LENGTH_PREFIX_LEN] = frame[..LENGTH_PREFIX_LEN].try_into().unwrap();
    let len = check_length(prefix, MAX_FRAME_LEN).unwrap();
    assert_eq!(len, frame.len() - LENGTH_PREFIX_LEN, "length prefix of {name}");
    assert_eq!(encode_body(value), &frame[LENGTH_PREFIX_LEN..], "encode_body of {name}");
    let back: T = decode_body(&frame[LENGTH_PREFIX_LEN..]).unwrap();
    assert_eq!(&back, value, "round trip of {name}");
}

fn s(x: &str) -> String {
    x.to_string()
}

fn req(request_id: u32, request: Request) -> RequestFrame {
    RequestFrame { request_id, request }
}

fn ok(request_id: u32, response: Response) -> ResponseFrame {
    ResponseFrame { request_id, reply: Reply::Ok(response) }
}

fn info(room_id: &str, room_name: &str) -> RoomInfo {
    RoomInfo { room_id: s(room_id), room_name: s(room_name) }
}

fn member(user_id: &str, user_name: &str) -> Member {
    Member { user_id: s(user_id), user_name: s(user_name) }
}

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter().map(|(k, v)| (s(k), s(v))).collect()
}

fn member_attrs(user_id: &str, kv: &[(&str, &str)]) -> MemberAttributes {
    MemberAttributes { user_id: s(user_id), attributes: pairs(kv) }
}

fn example_token() -> String {
    format!("hd1:dev:alice:1700000000:1700003600:{EXAMPLE_SIG}")
}

fn created_room_state() -> RoomState {
    RoomState {
        room_id: s("r1"),
        room_name: s("Room 1"),
        created: true,
        already_member: false,
        member_count: 1,
        last_seq: 0,
        created_at_ms: 1_700_000_000_000,
        attributes: vec![(s("topic"), s("rust"))],
    }
}

fn example_room_message() -> RoomMessage {
    RoomMessage {
        room_id: s("r1"),
        seq: 1,
        message_id: 42,
        sender: s("alice"),
        timestamp_ms: 1_700_000_000_456,
        priority: Priority::Medium,
        body: MessageBody::Text(s("hi")),
    }
}

// ---------------------------------------------------------------------------------------------
// The worked example of docs/PROTOCOL.md

fn login_example() -> RequestFrame {
    req(
        1,
        Request::Login(Login {
            protocol_version: 1,
            user_id: s("alice"),
            user_name: s("Alice"),
            token: example_token(),
        }),
    )
}

fn logged_in_example() -> ResponseFrame {
    ok(
        1,
        Response::LoggedIn {
            session_id: 300,
            resume_secret: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            server_time_ms: 1_700_000_000_123,
            token_expires_at_s: 1_700_003_600,
        },
    )
}

fn send_example() -> RequestFrame {
    req(
        2,
        Request::SendRoomMessage {
            room_id: s("r1"),
            body: MessageBody::Text(s("hi")),
            priority: Priority::Medium,
            client_msg_id: Some(s("m1")),
        },
    )
}

fn message_sent_example() -> ResponseFrame {
    ok(
        2,
        Response::MessageSent {
            room_id: s("r1"),
            message_id: 42,
            seq: 1,
            timestamp_ms: 1_700_000_000_456,
            duplicate: false,
        },
    )
}

fn room_message_example() -> Event {
    Event::RoomMessage(example_room_message())
}

const LOGIN_EXAMPLE_HEX: &str = concat!(
    "74000000",       // body length 116
    " 01",            // request_id 1
    " 00",            // Request::Login
    " 01",            // protocol_version 1
    " 05 616c696365", // user_id "alice"
    " 05 416c696365", // user_name "Alice"
    " 64",            // token length 100, then "hd1:dev:alice:1700000000:1700003600:"
    " 6864313a6465763a616c6963653a",
    " 313730303030303030303a313730303030333630303a",
    // the 64 signature characters, "0123456789abcdef" four times
    " 30313233343536373839616263646566 30313233343536373839616263646566",
    " 30313233343536373839616263646566 30313233343536373839616263646566",
);

const LOGGED_IN_EXAMPLE_HEX: &str = concat!(
    "24000000",                          // body length 36
    " 01",                               // request_id 1
    " 00",                               // Reply::Ok
    " 00",                               // Response::LoggedIn
    " fb 2c01",                          // session_id 300
    " 000102030405060708090a0b0c0d0e0f", // resume_secret, 16 raw bytes
    " fd 7b68e5cf8b010000",              // server_time_ms 1700000000123
    " fc 10ff5365",                      // token_expires_at_s 1700003600
);

const SEND_EXAMPLE_HEX: &str = concat!(
    "0e000000",    // body length 14
    " 02",         // request_id 2
    " 08",         // Request::SendRoomMessage
    " 02 7231",    // room_id "r1"
    " 00 02 6869", // body: MessageBody::Text("hi")
    " 01",         // priority Medium
    " 01 02 6d31", // client_msg_id Some("m1")
);

const MESSAGE_SENT_EXAMPLE_HEX: &str = concat!(
    "12000000",             // body length 18
    " 02",                  // request_id 2
    " 00",                  // Reply::Ok
    " 06",                  // Response::MessageSent
    " 02 7231",             // room_id "r1"
    " 2a",                  // message_id 42
    " 01",                  // seq 1
    " fd c869e5cf8b010000", // timestamp_ms 1700000000456
    " 00",                  // duplicate false
);

const ROOM_MESSAGE_EXAMPLE_HEX: &str = concat!(
    "1a000000",             // body length 26
    " 02",                  // Event::RoomMessage
    " 02 7231",             // room_id "r1"
    " 01",                  // seq 1
    " 2a",                  // message_id 42
    " 05 616c696365",       // sender "alice"
    " fd c869e5cf8b010000", // timestamp_ms 1700000000456
    " 01",                  // priority Medium
    " 00 02 6869",          // body: MessageBody::Text("hi")
);

#[test]
fn pins_login_example() {
    assert_eq!(example_token().len(), 100);
    pin("login example", &login_example(), LOGIN_EXAMPLE_HEX);
}

#[test]
fn pins_logged_in_example() {
    pin("logged_in example", &logged_in_example(), LOGGED_IN_EXAMPLE_HEX);
}

#[test]
fn pins_send_room_message_example() {
    pin("send_room_message example", &send_example(), SEND_EXAMPLE_HEX);
}

#[test]
fn pins_message_sent_example() {
    pin("message_sent example", &message_sent_example(), MESSAGE_SENT_EXAMPLE_HEX);
}

#[test]
fn pins_room_message_event_example() {
    pin("room_message example", &room_message_example(), ROOM_MESSAGE_EXAMPLE_HEX);
}

#[test]
fn protocol_md_shows_the_worked_example_frames() {
    let doc: String = PROTOCOL_MD.chars().filter(|c| !c.is_whitespace()).collect();
    for (name, frame) in [
        ("login", encode_frame(&login_example())),
        ("logged_in", encode_frame(&logged_in_example())),
        ("send_room_message", encode_frame(&send_example())),
        ("message_sent", encode_frame(&message_sent_example())),
        ("room_message", encode_frame(&room_message_example())),
        ("session header", encode_frame(&StreamHeader::Session)),
        ("room header", encode_frame(&StreamHeader::Room { room_id: s("r1") })),
        (
            "error reply",
            encode_frame(&ResponseFrame {
                request_id: 5,
                reply: Reply::Err(ErrorBody::new(ErrorCode::RoomDoesNotExist)),
            }),
        ),
    ] {
        assert!(
            doc.contains(&hex::encode(&frame)),
            "docs/PROTOCOL.md does not show the {name} frame {}",
            hex::encode(&frame)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The room-attributes example of docs/PROTOCOL.md (section 6.5): Alice sets two keys, one of which
// Bob owns; then she takes that key over in an atomic batch that also deletes the other.

fn set_room_attributes_example() -> RequestFrame {
    req(
        15,
        Request::SetRoomAttributes {
            room_id: s("r1"),
            attributes: pairs(&[("mood", "calm"), ("topic", "go")]),
            is_force: false,
            is_update_owner: true,
            is_delete_after_owner_left: true,
        },
    )
}

fn room_attributes_changed_example() -> ResponseFrame {
    ok(
        15,
        Response::RoomAttributesChanged {
            room_id: s("r1"),
            failed: vec![AttributeFailure {
                key: s("topic"),
                code: ErrorCode::AttributeNotOwned.as_u16(),
            }],
        },
    )
}

fn room_attributes_batch_example() -> RequestFrame {
    req(
        18,
        Request::RoomAttributesBatch {
            room_id: s("r1"),
            ops: vec![
                AttributeOp::Set {
                    attributes: pairs(&[("topic", "go")]),
                    is_force: true,
                    is_update_owner: true,
                    is_delete_after_owner_left: false,
                },
                AttributeOp::Delete { keys: vec![s("mood")], is_force: false },
            ],
        },
    )
}

fn room_attributes_batch_done_example() -> ResponseFrame {
    ok(18, Response::RoomAttributesChanged { room_id: s("r1"), failed: vec![] })
}

fn room_attributes_updated_example() -> Event {
    Event::RoomAttributesUpdated {
        room_id: s("r1"),
        set: pairs(&[("topic", "go")]),
        deleted: vec![s("mood")],
    }
}

const SET_ROOM_ATTRIBUTES_EXAMPLE_HEX: &str = concat!(
    "1c000000",                 // body length 28
    " 0f",                      // request_id 15
    " 0e",                      // Request::SetRoomAttributes
    " 02 7231",                 // room_id "r1"
    " 02",                      // attributes: 2 pairs
    " 04 6d6f6f64 04 63616c6d", // ("mood", "calm")
    " 05 746f706963 02 676f",   // ("topic", "go")
    " 00",                      // is_force false
    " 01",                      // is_update_owner true
    " 01",                      // is_delete_after_owner_left true
);
const ROOM_ATTRIBUTES_CHANGED_EXAMPLE_HEX: &str = concat!(
    "10000000",       // body length 16
    " 0f",            // request_id 15
    " 00",            // Reply::Ok
    " 0c",            // Response::RoomAttributesChanged
    " 02 7231",       // room_id "r1"
    " 01",            // failed: 1 AttributeFailure
    " 05 746f706963", // key "topic"
    " fb 7417",       // code 6004 (attribute_not_owned)
);
const ROOM_ATTRIBUTES_BATCH_EXAMPLE_HEX: &str = concat!(
    "1c000000",                  // body length 28
    " 12",                       // request_id 18
    " 11",                       // Request::RoomAttributesBatch
    " 02 7231",                  // room_id "r1"
    " 02",                       // ops: 2 AttributeOps
    " 00",                       // AttributeOp::Set
    " 01 05 746f706963 02 676f", // attributes [("topic", "go")]
    " 01 01 00", // is_force true, is_update_owner true, is_delete_after_owner_left false
    " 01",       // AttributeOp::Delete
    " 01 04 6d6f6f64", // keys ["mood"]
    " 00",       // is_force false
);
const ROOM_ATTRIBUTES_BATCH_DONE_EXAMPLE_HEX: &str = concat!(
    "07000000", // body length 7
    " 12",      // request_id 18
    " 00",      // Reply::Ok
    " 0c",      // Response::RoomAttributesChanged
    " 02 7231", // room_id "r1"
    " 00",      // failed: empty
);
const ROOM_ATTRIBUTES_UPDATED_EXAMPLE_HEX: &str = concat!(
    "14000000",                  // body length 20
    " 05",                       // Event::RoomAttributesUpdated
    " 02 7231",                  // room_id "r1"
    " 01 05 746f706963 02 676f", // set [("topic", "go")]
    " 01 04 6d6f6f64",           // deleted ["mood"]
);

#[test]
fn protocol_md_shows_the_room_attributes_example_frames() {
    let doc: String = PROTOCOL_MD.chars().filter(|c| !c.is_whitespace()).collect();
    for (name, frame) in [
        ("set_room_attributes", encode_frame(&set_room_attributes_example())),
        ("room_attributes_changed", encode_frame(&room_attributes_changed_example())),
        ("room_attributes_batch", encode_frame(&room_attributes_batch_example())),
        ("batch answer", encode_frame(&room_attributes_batch_done_example())),
        ("room_attributes_updated", encode_frame(&room_attributes_updated_example())),
    ] {
        assert!(
            doc.contains(&hex::encode(&frame)),
            "docs/PROTOCOL.md does not show the {name} frame {}",
            hex::encode(&frame)
        );
    }
}

#[test]
fn attribute_types_are_pinned() {
    // AttributeOp: #0 Set { attributes, is_force, is_update_owner, is_delete_after_owner_left },
    // #1 Delete { keys, is_force }. Both also appear in the batch sample.
    let ops = [
        (
            AttributeOp::Set {
                attributes: pairs(&[("k", "v")]),
                is_force: false,
                is_update_owner: true,
                is_delete_after_owner_left: false,
            },
            "00 01 01 6b 01 76 00 01 00",
        ),
        (AttributeOp::Delete { keys: vec![s("k")], is_force: true }, "01 01 01 6b 01"),
    ];
    for (op, hex) in ops {
        assert_eq!(encode_body(&op), unhex(hex), "{op:?}");
        assert_eq!(decode_body::<AttributeOp>(&unhex(hex)), Ok(op));
    }
    // AttributeFailure { key, code: u16 }: every 6xxx code needs the fb (u16) form.
    let failure = AttributeFailure { key: s("k"), code: ErrorCode::AttributeNotOwned.as_u16() };
    assert_eq!(encode_body(&failure), unhex("01 6b fb 7417"));
    assert_eq!(decode_body::<AttributeFailure>(&unhex("01 6b fb 7417")), Ok(failure));
    // MemberAttributes { user_id, attributes }: a member without attributes.
    assert_eq!(encode_body(&member_attrs("bob", &[])), unhex("03 626f62 00"));
    // There is no AttributeOp #2.
    assert!(decode_body::<AttributeOp>(&unhex("02 00 00")).is_err());
}

// ---------------------------------------------------------------------------------------------
// Every Request variant

/// The position of each variant: bincode encodes a variant by its position, so this match is the
/// append-only contract. It is exhaustive, so a new variant does not compile until it is listed
/// here, and then `every_request_variant_is_pinned` fails until it has a sample.
fn request_index(r: &Request) -> u8 {
    match r {
        Request::Login(_) => 0,
        Request::Logout => 1,
        Request::CreateRoom { .. } => 2,
        Request::JoinRoom { .. } => 3,
        Request::EnterRoom { .. } => 4,
        Request::LeaveRoom { .. } => 5,
        Request::LeaveAllRooms => 6,
        Request::SwitchRoom { .. } => 7,
        Request::SendRoomMessage { .. } => 8,
        Request::QueryRoomMembers { .. } => 9,
        Request::QueryRoomOnlineCount { .. } => 10,
        Request::QueryRoomMembersById { .. } => 11,
        Request::QueryJoinedRooms => 12,
        Request::QueryHistory { .. } => 13,
        Request::SetRoomAttributes { .. } => 14,
        Request::DeleteRoomAttributes { .. } => 15,
        Request::QueryRoomAttributes { .. } => 16,
        Request::RoomAttributesBatch { .. } => 17,
        Request::SetRoomMembersAttributes { .. } => 18,
        Request::QueryRoomMembersAttributes { .. } => 19,
        Request::QueryRoomMemberAttributesList { .. } => 20,
        Request::Resume(_) => 21,
        Request::RenewToken { .. } => 22,
        Request::Ping => 23,
    }
}
const REQUEST_VARIANTS: u8 = 24;

fn request_samples() -> Vec<(RequestFrame, &'static str)> {
    vec![
        (login_example(), LOGIN_EXAMPLE_HEX),
        (req(3, Request::Logout), "02000000 03 01"),
        (
            req(
                4,
                Request::CreateRoom {
                    info: info("r1", "Room 1"),
                    config: RoomConfig {
                        destroy_delay_s: 300,
                        attributes: vec![(s("topic"), s("rust"))],
                    },
                },
            ),
            // info { "r1", "Room 1" },
            // config { destroy_delay_s 300, attributes [("topic", "rust")] }
            "1b000000 04 02 02 7231 06 526f6f6d2031 fb 2c01 01 05 746f706963 04 72757374",
        ),
        (req(5, Request::JoinRoom { room_id: s("r1") }), "05000000 05 03 02 7231"),
        (
            req(6, Request::EnterRoom { info: info("r2", ""), config: RoomConfig::default() }),
            "08000000 06 04 02 7232 00 00 00",
        ),
        (req(7, Request::LeaveRoom { room_id: s("r1") }), "05000000 07 05 02 7231"),
        (req(8, Request::LeaveAllRooms), "02000000 08 06"),
        (
            req(
                9,
                Request::SwitchRoom {
                    from_room_id: s("r1"),
                    to: info("r2", "Room 2"),
                    create_if_missing: true,
                    config: RoomConfig { destroy_delay_s: 10800, attributes: vec![] },
                },
            ),
            "14000000 09 07 02 7231 02 7232 06 526f6f6d2032 01 fb 302a 00",
        ),
        (send_example(), SEND_EXAMPLE_HEX),
        (
            req(
                10,
                Request::SendRoomMessage {
                    room_id: s("r1"),
                    body: MessageBody::Custom { sub_type: 7, data: vec![0xde, 0xad, 0xbe, 0xef] },
                    priority: Priority::Low,
                    client_msg_id: None,
                },
            ),
            // Custom { sub_type 7, data [de ad be ef] }, Low, None
            "0e000000 0a 08 02 7231 01 07 04 deadbeef 00 00",
        ),
        (
            req(11, Request::QueryRoomMembers { room_id: s("r1"), next_flag: s(""), count: 100 }),
            "07000000 0b 09 02 7231 00 64",
        ),
        (req(12, Request::QueryRoomOnlineCount { room_id: s("r1") }), "05000000 0c 0a 02 7231"),
        (
            req(
                13,
                Request::QueryRoomMembersById {
                    room_id: s("r1"),
                    user_ids: vec![s("bob"), s("carol")],
                },
            ),
            "10000000 0d 0b 02 7231 02 03 626f62 05 6361726f6c",
        ),
        (req(14, Request::QueryJoinedRooms), "02000000 0e 0c"),
        (
            req(
                70000,
                Request::QueryHistory {
                    room_id: s("r1"),
                    anchor: HistoryAnchor::BeforeSeq(70000),
                    count: 50,
                },
            ),
            // request_id 70000 (fc + u32), BeforeSeq(70000), count 50
            "10000000 fc 70110100 0d 02 7231 01 fc 70110100 32",
        ),
        (set_room_attributes_example(), SET_ROOM_ATTRIBUTES_EXAMPLE_HEX),
        (
            req(
                16,
                Request::DeleteRoomAttributes {
                    room_id: s("r1"),
                    keys: vec![s("topic"), s("mood")],
                    is_force: true,
                },
            ),
            // keys ["topic", "mood"], is_force true
            "12000000 10 0f 02 7231 02 05 746f706963 04 6d6f6f64 01",
        ),
        (req(17, Request::QueryRoomAttributes { room_id: s("r1") }), "05000000 11 10 02 7231"),
        (room_attributes_batch_example(), ROOM_ATTRIBUTES_BATCH_EXAMPLE_HEX),
        (
            req(
                19,
                Request::SetRoomMembersAttributes {
                    room_id: s("r1"),
                    user_ids: vec![s("bob"), s("carol")],
                    attributes: pairs(&[("seat", "3")]),
                },
            ),
            // user_ids ["bob", "carol"], attributes [("seat", "3")]
            "18000000 13 12 02 7231 02 03 626f62 05 6361726f6c 01 04 73656174 01 33",
        ),
        (
            req(
                20,
                Request::QueryRoomMembersAttributes { room_id: s("r1"), user_ids: vec![s("bob")] },
            ),
            "0a000000 14 13 02 7231 01 03 626f62",
        ),
        (
            req(
                21,
                Request::QueryRoomMemberAttributesList {
                    room_id: s("r1"),
                    next_flag: s("7"),
                    count: 100,
                },
            ),
            // next_flag "7", count 100
            "08000000 15 14 02 7231 01 37 64",
        ),
        (
            req(
                22,
                Request::Resume(Resume {
                    protocol_version: 1,
                    user_id: s("alice"),
                    user_name: s("Alice"),
                    token: s("t"),
                    session_id: 300,
                    resume_secret: [7; 16],
                    rooms: vec![(s("r1"), 41)],
                }),
            ),
            "29000000 16 15 01 05 616c696365 05 416c696365 01 74 fb2c01 07070707070707070707070707070707 01 02 7231 29",
        ),
        (req(23, Request::RenewToken { token: s("t2") }), "05000000 17 16 02 7432"),
        (req(24, Request::Ping), "02000000 18 17"),
    ]
}

#[test]
fn every_request_variant_is_pinned() {
    let samples = request_samples();
    let mut seen = vec![false; REQUEST_VARIANTS as usize];
    for (frame, hex) in &samples {
        let name = frame.request.op_name();
        pin(name, frame, hex);
        let index = request_index(&frame.request);
        seen[index as usize] = true;
        // The variant index follows the request_id varint.
        let body = encode_body(frame);
        let id_len = varint_len(body[0]);
        assert_eq!(body[id_len], index, "variant index of {name}");
    }
    assert!(seen.iter().all(|&s| s), "a Request variant has no pinned sample: {seen:?}");
}

fn varint_len(first: u8) -> usize {
    match first {
        0..=250 => 1,
        251 => 3,
        252 => 5,
        253 => 9,
        _ => 17,
    }
}

// ---------------------------------------------------------------------------------------------
// Every Response variant, and an error reply

fn response_index(r: &Response) -> u8 {
    match r {
        Response::LoggedIn { .. } => 0,
        Response::LoggedOut => 1,
        Response::RoomEntered(_) => 2,
        Response::RoomLeft { .. } => 3,
        Response::RoomsLeft { .. } => 4,
        Response::RoomSwitched { .. } => 5,
        Response::MessageSent { .. } => 6,
        Response::RoomMembers { .. } => 7,
        Response::RoomOnlineCount { .. } => 8,
        Response::RoomMembersById { .. } => 9,
        Response::JoinedRooms { .. } => 10,
        Response::History { .. } => 11,
        Response::RoomAttributesChanged { .. } => 12,
        Response::RoomAttributes { .. } => 13,
        Response::RoomMembersAttributesSet { .. } => 14,
        Response::RoomMembersAttributes { .. } => 15,
        Response::RoomMemberAttributesList { .. } => 16,
        Response::Resumed { .. } => 17,
        Response::TokenRenewed { .. } => 18,
        Response::Pong => 19,
    }
}
const RESPONSE_VARIANTS: u8 = 20;

fn response_samples() -> Vec<(ResponseFrame, &'static str)> {
    vec![
        (logged_in_example(), LOGGED_IN_EXAMPLE_HEX),
        (ok(3, Response::LoggedOut), "03000000 03 00 01"),
        (
            ok(4, Response::RoomEntered(created_room_state())),
            // room_id, room_name, created true, already_member false, member_count 1, last_seq 0,
            // created_at_ms 1700000000000, attributes [("topic", "rust")]
            "26000000 04 00 02 02 7231 06 526f6f6d2031 01 00 01 00 fd 0068e5cf8b010000 \
             01 05 746f706963 04 72757374",
        ),
        (ok(7, Response::RoomLeft { room_id: s("r1") }), "06000000 07 00 03 02 7231"),
        (
            ok(8, Response::RoomsLeft { room_ids: vec![s("r1"), s("r2")] }),
            "0a000000 08 00 04 02 02 7231 02 7232",
        ),
        (
            ok(
                9,
                Response::RoomSwitched {
                    left_room_id: s("r1"),
                    room: RoomState {
                        room_id: s("r2"),
                        room_name: s("Room 2"),
                        created: false,
                        already_member: false,
                        member_count: 3,
                        last_seq: 251,
                        created_at_ms: 1_700_000_000_000,
                        attributes: vec![],
                    },
                },
            ),
            // last_seq 251 is the first value that needs the fb (u16) form.
            "20000000 09 00 05 02 7231 02 7232 06 526f6f6d2032 00 00 03 fb fb00 \
             fd 0068e5cf8b010000 00",
        ),
        (message_sent_example(), MESSAGE_SENT_EXAMPLE_HEX),
        (
            ok(
                11,
                Response::RoomMembers {
                    room_id: s("r1"),
                    members: vec![member("alice", "Alice"), member("bob", "")],
                    next_flag: s("2"),
                },
            ),
            "1a000000 0b 00 07 02 7231 02 05 616c696365 05 416c696365 03 626f62 00 01 32",
        ),
        (
            ok(12, Response::RoomOnlineCount { room_id: s("r1"), count: 2 }),
            "07000000 0c 00 08 02 7231 02",
        ),
        (
            ok(
                13,
                Response::RoomMembersById {
                    room_id: s("r1"),
                    members: vec![member("bob", "")],
                    not_found: vec![s("carol")],
                },
            ),
            "13000000 0d 00 09 02 7231 01 03 626f62 00 01 05 6361726f6c",
        ),
        (
            ok(
                14,
                Response::JoinedRooms {
                    rooms: vec![RoomSummary {
                        room_id: s("r1"),
                        room_name: s("Room 1"),
                        member_count: 2,
                    }],
                },
            ),
            "0f000000 0e 00 0a 01 02 7231 06 526f6f6d2031 02",
        ),
        (
            ok(
                70000,
                Response::History {
                    room_id: s("r1"),
                    messages: vec![example_room_message()],
                    has_more: false,
                },
            ),
            "25000000 fc 70110100 00 0b 02 7231 \
             01 02 7231 01 2a 05 616c696365 fd c869e5cf8b010000 01 00 02 6869 \
             00",
        ),
        (room_attributes_changed_example(), ROOM_ATTRIBUTES_CHANGED_EXAMPLE_HEX),
        (room_attributes_batch_done_example(), ROOM_ATTRIBUTES_BATCH_DONE_EXAMPLE_HEX),
        (
            ok(
                17,
                Response::RoomAttributes {
                    room_id: s("r1"),
                    attributes: pairs(&[("mood", "calm"), ("topic", "rust")]),
                },
            ),
            "1c000000 11 00 0d 02 7231 02 04 6d6f6f64 04 63616c6d 05 746f706963 04 72757374",
        ),
        (
            ok(
                19,
                Response::RoomMembersAttributesSet {
                    room_id: s("r1"),
                    members: vec![member_attrs("bob", &[("seat", "3")])],
                    failed_user_ids: vec![s("carol")],
                },
            ),
            // members [{ "bob", [("seat", "3")] }], failed_user_ids ["carol"]
            "1a000000 13 00 0e 02 7231 01 03 626f62 01 04 73656174 01 33 01 05 6361726f6c",
        ),
        (
            ok(
                20,
                Response::RoomMembersAttributes {
                    room_id: s("r1"),
                    members: vec![
                        member_attrs("bob", &[("mic", "on"), ("seat", "3")]),
                        member_attrs("carol", &[]),
                    ],
                },
            ),
            // carol is a member without attributes: an empty list
            "21000000 14 00 0f 02 7231 02 03 626f62 02 03 6d6963 02 6f6e 04 73656174 01 33 \
             05 6361726f6c 00",
        ),
        (
            ok(
                21,
                Response::RoomMemberAttributesList {
                    room_id: s("r1"),
                    members: vec![member_attrs("bob", &[("seat", "3")])],
                    next_flag: s(""),
                },
            ),
            "14000000 15 00 10 02 7231 01 03 626f62 01 04 73656174 01 33 00",
        ),
        (
            ok(
                22,
                Response::Resumed {
                    session_id: 300,
                    resume_secret: [7; 16],
                    session_resumed: true,
                    token_expires_at_s: 1_700_003_600,
                    rooms: vec![RoomRecovery {
                        room_id: s("r1"),
                        rejoined: true,
                        recovered: true,
                        replayed: 2,
                        last_seq: 43,
                        error_code: 0,
                    }],
                },
            ),
            "25000000 16 00 11 fb2c01 07070707070707070707070707070707 01 fc10ff5365 01 02 7231 01 01 02 2b 00",
        ),
        (ok(23, Response::TokenRenewed { token_expires_at_s: 1_700_003_600 }), "08000000 17 00 12 fc10ff5365"),
        (ok(24, Response::Pong), "03000000 18 00 13"),
    ]
}

#[test]
fn every_response_variant_is_pinned() {
    let mut seen = vec![false; RESPONSE_VARIANTS as usize];
    for (frame, hex) in &response_samples() {
        let Reply::Ok(response) = &frame.reply else { unreachable!("samples are Ok replies") };
        let index = response_index(response);
        pin(&format!("response {index}"), frame, hex);
        seen[index as usize] = true;
        let body = encode_body(frame);
        let id_len = varint_len(body[0]);
        assert_eq!(body[id_len], 0, "Reply::Ok tag of response {index}");
        assert_eq!(body[id_len + 1], index, "variant index of response {index}");
    }
    assert!(seen.iter().all(|&s| s), "a Response variant has no pinned sample: {seen:?}");
}

#[test]
fn error_reply_is_pinned() {
    let frame = ResponseFrame {
        request_id: 5,
        reply: Reply::Err(ErrorBody::new(ErrorCode::RoomDoesNotExist)),
    };
    // request_id 5, Reply::Err, code 3002 (fb + u16), message "room does not exist"
    pin("error reply", &frame, "19000000 05 01 fb ba0b 13 726f6f6d20646f6573206e6f74206578697374");
    let frame = ResponseFrame {
        request_id: 1,
        reply: Reply::Err(ErrorBody::with_message(ErrorCode::TokenExpired, "")),
    };
    pin("error reply, empty message", &frame, "06000000 01 01 fb d207 00");
}

// ---------------------------------------------------------------------------------------------
// Every Event and StreamHeader variant

fn event_index(e: &Event) -> u8 {
    match e {
        Event::MembersJoined { .. } => 0,
        Event::MembersLeft { .. } => 1,
        Event::RoomMessage(_) => 2,
        Event::KickedOut { .. } => 3,
        Event::MemberCountUpdated { .. } => 4,
        Event::RoomAttributesUpdated { .. } => 5,
        Event::RoomMemberAttributesUpdated { .. } => 6,
        Event::TokenWillExpire { .. } => 7,
        Event::RoomDestroyed { .. } => 8,
        Event::RemovedFromRoom { .. } => 9,
    }
}
const EVENT_VARIANTS: u8 = 10;

fn event_samples() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::MembersJoined { room_id: s("r1"), members: vec![member("bob", "Bob")] },
            "0d000000 00 02 7231 01 03 626f62 03 426f62",
        ),
        (
            Event::MembersLeft {
                room_id: s("r1"),
                members: vec![member("bob", "Bob")],
                reason: LeaveReason::Offline,
            },
            "0e000000 01 02 7231 01 03 626f62 03 426f62 01",
        ),
        (room_message_example(), ROOM_MESSAGE_EXAMPLE_HEX),
        (
            Event::KickedOut { code: 2004, message: s("kicked out by another login") },
            "20000000 03 fb d407 1b 6b69636b6564206f757420627920616e6f74686572206c6f67696e",
        ),
        (
            Event::MemberCountUpdated { room_id: s("big"), count: 12345 },
            "08000000 04 03 626967 fb 3930",
        ),
        (room_attributes_updated_example(), ROOM_ATTRIBUTES_UPDATED_EXAMPLE_HEX),
        (
            Event::RoomMemberAttributesUpdated {
                room_id: s("r1"),
                members: vec![member_attrs("bob", &[("seat", "3")])],
                operated_by: s("alice"),
            },
            "17000000 06 02 7231 01 03 626f62 01 04 73656174 01 33 05 616c696365",
        ),
        (Event::TokenWillExpire { expires_at_s: 1_700_003_600 }, "06000000 07 fc10ff5365"),
        (Event::RoomDestroyed { room_id: s("r1") }, ROOM_DESTROYED_HEX),
        (
            Event::RemovedFromRoom { room_id: s("r1"), reason: LeaveReason::Kicked },
            REMOVED_FROM_ROOM_HEX,
        ),
    ]
}

/// `Event::RoomDestroyed{room_id: "r1"}`, as docs/PROTOCOL.md shows it.
const ROOM_DESTROYED_HEX: &str = "04000000 08 02 7231";
/// `Event::RemovedFromRoom{room_id: "r1", reason: Kicked}`, as docs/PROTOCOL.md shows it.
const REMOVED_FROM_ROOM_HEX: &str = "05000000 09 02 7231 02";

#[test]
fn protocol_md_lists_every_event_with_its_index() {
    for (event, _) in &event_samples() {
        let debug = format!("{event:?}");
        let variant = debug.split(|c: char| !c.is_alphanumeric()).next().unwrap();
        let row = format!("| {} | `{variant}` |", event_index(event));
        assert!(PROTOCOL_MD.contains(&row), "docs/PROTOCOL.md lacks the event row `{row}`");
    }
    let doc: String = PROTOCOL_MD.chars().filter(|c| !c.is_whitespace()).collect();
    for hex in [ROOM_DESTROYED_HEX, REMOVED_FROM_ROOM_HEX] {
        let spaced: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(doc.contains(&spaced), "docs/PROTOCOL.md does not show the frame {hex}");
    }
}

#[test]
fn every_event_variant_is_pinned() {
    let mut seen = vec![false; EVENT_VARIANTS as usize];
    for (event, hex) in &event_samples() {
        let index = event_index(event);
        pin(event.name(), event, hex);
        seen[index as usize] = true;
        assert_eq!(encode_body(event)[0], index, "variant index of {}", event.name());
    }
    assert!(seen.iter().all(|&s| s), "an Event variant has no pinned sample: {seen:?}");
}

#[test]
fn every_leave_reason_and_priority_is_pinned() {
    for (reason, tag) in
        [(LeaveReason::Left, 0u8), (LeaveReason::Offline, 1), (LeaveReason::Kicked, 2)]
    {
        assert_eq!(encode_body(&reason), [tag], "{reason:?}");
    }
    for (priority, tag) in [(Priority::Low, 0u8), (Priority::Medium, 1), (Priority::High, 2)] {
        assert_eq!(encode_body(&priority), [tag], "{priority:?}");
    }
    assert_eq!(Priority::default(), Priority::Low);
    assert_eq!(encode_body(&HistoryAnchor::Latest), [0]);
    assert_eq!(encode_body(&HistoryAnchor::BeforeSeq(5)), [1, 5]);
    assert_eq!(encode_body(&HistoryAnchor::AfterSeq(5)), [2, 5]);
}

#[test]
fn every_stream_header_is_pinned() {
    fn header_index(h: &StreamHeader) -> u8 {
        match h {
            StreamHeader::Session => 0,
            StreamHeader::Room { .. } => 1,
            StreamHeader::RoomLow { .. } => 2,
        }
    }
    let samples = [
        (StreamHeader::Session, "01000000 00"),
        (StreamHeader::Room { room_id: s("r1") }, "04000000 01 02 7231"),
        (StreamHeader::RoomLow { room_id: s("r1") }, "04000000 02 02 7231"),
    ];
    for (header, hex) in &samples {
        pin(&format!("{header:?}"), header, hex);
        assert_eq!(encode_body(header)[0], header_index(header));
    }
}

// ---------------------------------------------------------------------------------------------
// Integer encoding, as documented for foreign implementations

#[test]
fn varint_boundaries() {
    // u64 fields, through HistoryAnchor::AfterSeq (tag 02).
    let u64_cases: [(u64, &str); 10] = [
        (0, "00"),
        (250, "fa"),
        (251, "fb fb00"),
        (255, "fb ff00"),
        (256, "fb 0001"),
        (65535, "fb ffff"),
        (65536, "fc 00000100"),
        (u32::MAX as u64, "fc ffffffff"),
        (1 << 32, "fd 0000000001000000"),
        (u64::MAX, "fd ffffffffffffffff"),
    ];
    for (value, hex) in u64_cases {
        let mut expected = vec![2u8];
        expected.extend(unhex(hex));
        assert_eq!(encode_body(&HistoryAnchor::AfterSeq(value)), expected, "u64 {value}");
        assert_eq!(decode_body::<HistoryAnchor>(&expected), Ok(HistoryAnchor::AfterSeq(value)));
    }
    // u32: request_id of RequestFrame (then Logout, tag 01).
    for (value, hex) in
        [(250u32, "fa"), (251, "fb fb00"), (65536, "fc 00000100"), (u32::MAX, "fc ffffffff")]
    {
        let mut expected = unhex(hex);
        expected.push(1);
        let frame = req(value, Request::Logout);
        assert_eq!(encode_body(&frame), expected, "u32 {value}");
        assert_eq!(decode_body::<RequestFrame>(&expected), Ok(frame));
    }
    // u16: ErrorBody::code (then an empty message).
    for (value, hex) in [(0u16, "00"), (250, "fa"), (251, "fb fb00"), (u16::MAX, "fb ffff")] {
        let mut expected = unhex(hex);
        expected.push(0);
        let body = ErrorBody { code: value, message: String::new() };
        assert_eq!(encode_body(&body), expected, "u16 {value}");
        assert_eq!(decode_body::<ErrorBody>(&expected), Ok(body));
    }
}

#[test]
fn decoder_accepts_non_minimal_varints() {
    // Encoders always write the shortest form, but the decoder takes a longer one: 5 as fb 0500,
    // fc 05000000 and fd 0500000000000000. Foreign encoders should still write the shortest form.
    for hex in ["02 fb 0500", "02 fc 05000000", "02 fd 0500000000000000"] {
        assert_eq!(decode_body::<HistoryAnchor>(&unhex(hex)), Ok(HistoryAnchor::AfterSeq(5)));
    }
}

#[test]
fn decoder_rejects_a_varint_wider_than_its_type() {
    // A u16 (ErrorBody::code) written with the u32 tag, a u32 (request_id) with the u64 tag, a u64
    // with the u128 tag, and the reserved tag ff.
    assert!(decode_body::<ErrorBody>(&unhex("fc 05000000 00")).is_err());
    assert!(decode_body::<RequestFrame>(&unhex("fd 0500000000000000 01")).is_err());
    let u128_tag = unhex("02 fe 05000000000000000000000000000000");
    assert!(decode_body::<HistoryAnchor>(&u128_tag).is_err());
    assert!(decode_body::<HistoryAnchor>(&unhex("02 ff")).is_err());
}

#[test]
fn decoder_rejects_bad_bool_and_option_tags() {
    // SwitchRoom with create_if_missing = 2.
    let mut body = encode_body(&req(
        9,
        Request::SwitchRoom {
            from_room_id: s("a"),
            to: info("b", ""),
            create_if_missing: true,
            config: RoomConfig::default(),
        },
    ));
    let at = body.len() - 3; // ... 01 (bool) 00 (delay) 00 (attributes)
    assert_eq!(body[at], 1);
    body[at] = 2;
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));

    // DeleteRoomAttributes with is_force = 2, and each bool of an AttributeOp::Set.
    let mut body = encode_body(&req(
        1,
        Request::DeleteRoomAttributes { room_id: s("r1"), keys: vec![], is_force: true },
    ));
    let at = body.len() - 1;
    assert_eq!(body[at], 1);
    body[at] = 2;
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    for at in 2..5 {
        let mut body = unhex("00 00 01 01 01"); // Set { [], true, true, true }
        assert!(decode_body::<AttributeOp>(&body).is_ok());
        body[at] = 2;
        assert!(decode_body::<AttributeOp>(&body).is_err(), "bool at byte {at}");
    }

    // SendRoomMessage with an Option tag of 2.
    let mut body = encode_body(&send_example());
    let at = body.len() - 4; // ... 01 (Some) 02 6d31
    assert_eq!(body[at], 1);
    body[at] = 2;
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies

#[test]
fn trailing_bytes_are_rejected() {
    for (frame, _) in request_samples() {
        let mut body = encode_body(&frame);
        body.push(0);
        assert_eq!(decode_body::<RequestFrame>(&body), Err(WireError::TrailingBytes(1)));
        body.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_body::<RequestFrame>(&body), Err(WireError::TrailingBytes(4)));
    }
    let mut body = encode_body(&StreamHeader::Session);
    body.push(0);
    assert_eq!(decode_body::<StreamHeader>(&body), Err(WireError::TrailingBytes(1)));
}

#[test]
fn invalid_enum_tags_are_rejected() {
    // An unknown index is refused as such, not merely because the body ends after it: the error
    // names the variant. (Until the attribute variants were added, 14, 12 and 5 were the first
    // unused Request, Response and Event indexes; now they decode, see the samples.)
    fn unknown_variant<T: Decode<()> + Debug>(hex: &str) {
        match decode_body::<T>(&unhex(hex)) {
            Err(WireError::Malformed(m)) => assert!(m.contains("Variant"), "{hex}: {m}"),
            other => panic!("{hex}: {other:?}"),
        }
    }
    // request_id 1, then Request variant 200 (one byte c8), the first unused one, and 251 (fb).
    let first_unused = format!("01 {REQUEST_VARIANTS:02x}");
    for hex in ["01 c8", first_unused.as_str(), "01 fb fb00"] {
        unknown_variant::<RequestFrame>(hex);
    }
    // Reply tag 2, the first unused Response and Event variants, StreamHeader variant 3,
    // MessageBody 2, Priority 3, LeaveReason 3, HistoryAnchor 3, AttributeOp 2.
    unknown_variant::<ResponseFrame>("01 02");
    unknown_variant::<ResponseFrame>(&format!("01 00 {RESPONSE_VARIANTS:02x}"));
    unknown_variant::<Event>(&format!("{EVENT_VARIANTS:02x}"));
    unknown_variant::<StreamHeader>("03");
    unknown_variant::<MessageBody>("02");
    unknown_variant::<Priority>("03");
    unknown_variant::<LeaveReason>("03");
    unknown_variant::<HistoryAnchor>("03");
    unknown_variant::<AttributeOp>("02");
}

#[test]
fn invalid_utf8_is_rejected() {
    // JoinRoom { room_id: [ff fe] }
    let body = unhex("01 03 02 fffe");
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    // A Text body with a lone continuation byte and a truncated 2-byte sequence.
    for text in ["01 80", "02 61c3"] {
        let body = unhex(&format!("01 08 02 7231 00 {text} 00 00"));
        assert!(
            matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))),
            "{text}"
        );
    }
    // The same bytes as Custom data are fine: data is not text.
    let body = unhex("01 08 02 7231 01 00 02 fffe 00 00");
    assert!(decode_body::<RequestFrame>(&body).is_ok());
}

#[test]
fn every_truncation_is_rejected() {
    let samples: Vec<Vec<u8>> = request_samples().iter().map(|(f, _)| encode_body(f)).collect();
    for body in &samples {
        for cut in 0..body.len() {
            assert!(
                matches!(decode_body::<RequestFrame>(&body[..cut]), Err(WireError::Malformed(_))),
                "{} cut at {cut}",
                hex::encode(body)
            );
        }
    }
    for (frame, _) in response_samples() {
        let body = encode_body(&frame);
        for cut in 0..body.len() {
            assert!(decode_body::<ResponseFrame>(&body[..cut]).is_err());
        }
    }
    for (event, _) in event_samples() {
        let body = encode_body(&event);
        for cut in 0..body.len() {
            assert!(decode_body::<Event>(&body[..cut]).is_err());
        }
    }
}

#[test]
fn huge_claimed_lengths_are_errors_not_allocations() {
    // JoinRoom whose room_id claims 2^40 bytes, then u64::MAX bytes.
    for claim in [1u64 << 40, u64::MAX] {
        let mut body = unhex("01 03 fd");
        body.extend_from_slice(&claim.to_le_bytes());
        assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    }
    // QueryRoomMembersById whose user_ids claims 2^40 strings.
    let mut body = unhex("01 0b 02 7231 fd");
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    // Custom data claiming one byte more than the largest frame.
    let mut body = unhex("01 08 02 7231 01 00 fc");
    body.extend_from_slice(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
    assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    // RoomAttributesBatch whose ops claims 2^40 steps, and SetRoomMembersAttributes whose
    // user_ids claims u64::MAX strings.
    for (hex, claim) in [("01 11 02 7231 fd", 1u64 << 40), ("01 12 02 7231 fd", u64::MAX)] {
        let mut body = unhex(hex);
        body.extend_from_slice(&claim.to_le_bytes());
        assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    }
    // A history page claiming 2^40 messages.
    let mut body = unhex("01 00 0b 02 7231 fd");
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(decode_body::<ResponseFrame>(&body), Err(WireError::Malformed(_))));
}

#[test]
fn empty_and_oversized_bodies_are_rejected() {
    assert!(matches!(decode_body::<RequestFrame>(&[]), Err(WireError::Malformed(_))));
    assert!(matches!(decode_body::<StreamHeader>(&[]), Err(WireError::Malformed(_))));
    let big = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        decode_body::<RequestFrame>(&big),
        Err(WireError::TooLarge { len: MAX_FRAME_LEN + 1, max: MAX_FRAME_LEN })
    );
}

// ---------------------------------------------------------------------------------------------
// Length prefixes and frame splitting

#[test]
fn check_length_limits() {
    let max = u32::MAX.to_le_bytes();
    assert_eq!(
        check_length(max, MAX_CLIENT_FRAME_LEN),
        Err(WireError::TooLarge { len: u32::MAX as usize, max: MAX_CLIENT_FRAME_LEN })
    );
    assert_eq!(
        check_length(max, MAX_FRAME_LEN),
        Err(WireError::TooLarge { len: u32::MAX as usize, max: MAX_FRAME_LEN })
    );
    let at = (MAX_CLIENT_FRAME_LEN as u32).to_le_bytes();
    assert_eq!(at, [0x00, 0x00, 0x01, 0x00]);
    assert_eq!(check_length(at, MAX_CLIENT_FRAME_LEN), Ok(MAX_CLIENT_FRAME_LEN));
    let over = (MAX_CLIENT_FRAME_LEN as u32 + 1).to_le_bytes();
    assert_eq!(
        check_length(over, MAX_CLIENT_FRAME_LEN),
        Err(WireError::TooLarge { len: MAX_CLIENT_FRAME_LEN + 1, max: MAX_CLIENT_FRAME_LEN })
    );
    assert_eq!(check_length(over, MAX_FRAME_LEN), Ok(MAX_CLIENT_FRAME_LEN + 1));
    assert_eq!(
        check_length((MAX_FRAME_LEN as u32).to_le_bytes(), MAX_FRAME_LEN),
        Ok(MAX_FRAME_LEN)
    );
    assert!(check_length((MAX_FRAME_LEN as u32 + 1).to_le_bytes(), MAX_FRAME_LEN).is_err());
    assert_eq!(check_length([0; 4], MAX_CLIENT_FRAME_LEN), Ok(0));
    assert_eq!(WireError::TooLarge { len: 1, max: 0 }.code(), ErrorCode::FrameTooLarge);
    assert_eq!(WireError::Malformed(String::new()).code(), ErrorCode::MalformedFrame);
    assert_eq!(WireError::TrailingBytes(1).code(), ErrorCode::MalformedFrame);
}

#[test]
fn split_frame_at_every_offset() {
    let frame = encode_frame(&login_example());
    let body = &frame[LENGTH_PREFIX_LEN..];
    for cut in 0..=frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        if cut < frame.len() {
            assert_eq!(split_frame(&mut buf, MAX_CLIENT_FRAME_LEN), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
            buf.extend_from_slice(&frame[cut..]);
        }
        let got = split_frame(&mut buf, MAX_CLIENT_FRAME_LEN).unwrap().expect("a whole frame");
        assert_eq!(&got[..], body, "cut at {cut}");
        assert!(buf.is_empty());
        assert_eq!(decode_body::<RequestFrame>(&got), Ok(login_example()));
    }
}

#[test]
fn split_frame_on_a_stream_of_frames() {
    let frames = [
        encode_frame(&StreamHeader::Room { room_id: s("r1") }),
        encode_frame(&room_message_example()),
        encode_frame(&Event::MemberCountUpdated { room_id: s("r1"), count: 3 }),
    ];
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    // Feed the bytes one at a time and collect frames as they complete.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &stream {
        buf.extend_from_slice(&[b]);
        while let Some(body) = split_frame(&mut buf, MAX_FRAME_LEN).unwrap() {
            got.push(body);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(got.len(), 3);
    assert_eq!(decode_body::<StreamHeader>(&got[0]), Ok(StreamHeader::Room { room_id: s("r1") }));
    assert_eq!(decode_body::<Event>(&got[1]), Ok(room_message_example()));
    assert!(decode_body::<Event>(&got[2]).is_ok());
}

#[test]
fn split_frame_refuses_an_oversized_prefix_before_the_body_arrives() {
    let mut buf = BytesMut::from(&(MAX_CLIENT_FRAME_LEN as u32 + 1).to_le_bytes()[..]);
    assert_eq!(
        split_frame(&mut buf, MAX_CLIENT_FRAME_LEN),
        Err(WireError::TooLarge { len: MAX_CLIENT_FRAME_LEN + 1, max: MAX_CLIENT_FRAME_LEN })
    );
    let mut short = BytesMut::from(&[0xff, 0xff, 0xff][..]);
    assert_eq!(split_frame(&mut short, MAX_CLIENT_FRAME_LEN), Ok(None));
}

// ---------------------------------------------------------------------------------------------
// Constants and the error table, as documented

#[test]
fn documented_constants() {
    assert_eq!(ALPN, b"huddle/1");
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(LENGTH_PREFIX_LEN, 4);
    assert_eq!(MAX_CLIENT_FRAME_LEN, 65_536);
    assert_eq!(MAX_FRAME_LEN, 4_194_304);
}

#[test]
fn protocol_md_lists_every_error_code() {
    for &code in ErrorCode::ALL {
        let row = format!("| {} | `{}` |", code.as_u16(), code.name());
        assert!(PROTOCOL_MD.contains(&row), "docs/PROTOCOL.md lacks the row `{row}`");
    }
}

#[test]
fn protocol_md_lists_the_attribute_limits() {
    fn thousands(n: usize) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
    let l = huddle::core::Limits::default();
    for (name, value, shown) in [
        ("room_attributes_max_keys", l.room_attributes_max_keys, "{}"),
        ("room_attribute_key_max_bytes", l.room_attribute_key_max_bytes, "1–{} bytes"),
        ("room_attribute_value_max_bytes", l.room_attribute_value_max_bytes, "at most {} bytes"),
        ("room_attributes_max_total_bytes", l.room_attributes_max_total_bytes, "{} bytes"),
        ("member_attributes_max_members", l.member_attributes_max_members, "{}"),
        ("member_attributes_max_keys", l.member_attributes_max_keys, "{}"),
        ("member_attribute_key_max_bytes", l.member_attribute_key_max_bytes, "1–{} bytes"),
        (
            "member_attribute_value_max_bytes",
            l.member_attribute_value_max_bytes,
            "at most {} bytes",
        ),
    ] {
        let cell = format!("(`{name}`) | {}", shown.replace("{}", &thousands(value)));
        assert!(PROTOCOL_MD.contains(&cell), "docs/PROTOCOL.md lacks the limit `{cell}`");
    }
}

#[test]
fn protocol_md_token_test_vector() {
    let key: Vec<u8> = (0u8..32).collect();
    let mut keys = huddle::auth::KeySet::new();
    assert!(keys.insert("dev", &key));
    let token = keys.mint("dev", "alice", 1_700_000_000, 1_700_003_600).unwrap();
    assert_eq!(
        token,
        "hd1:dev:alice:1700000000:1700003600:\
         ea61037bd5702e686d9cca8f37b359bdb715b601ba804072b499d5f465376ae4"
    );
    assert!(PROTOCOL_MD.contains(&token), "docs/PROTOCOL.md lacks the token test vector");
    assert!(keys.verify(&token, "alice", 1_700_000_001).is_ok());
    assert_eq!(keys.verify(&token, "alice", 1_700_003_600), Err(ErrorCode::TokenExpired));
    assert_eq!(keys.verify(&token, "bob", 1_700_000_001), Err(ErrorCode::TokenInvalid));
    assert_eq!(keys.verify(&example_token(), "alice", 1_700_000_001), Err(ErrorCode::TokenInvalid));
}
