//! The adversarial suite (issue 6): every hostile input and fault of the list, each against a
//! real server, each asserting the exact error or close code, that the honest members of the
//! room keep hearing each other afterwards, and that memory stayed bounded
//! (`arena.rs`). Frame and stream attacks are here; logins and tokens in `login.rs`; floods, rate
//! limits and slow readers in `floods.rs`.

mod arena;
// The integration tests' shared server helpers live beside the test targets, not in this folder.
#[path = "../common/mod.rs"]
mod common;
mod floods;
mod login;

use std::time::Duration;

use arena::*;
use huddle::wire::{
    encode_body, encode_frame, ErrorCode, MessageBody, Priority, Reply, Request, RequestFrame,
    Response, MAX_CLIENT_FRAME_LEN,
};

fn body(request_id: u32, request: Request) -> Vec<u8> {
    encode_body(&RequestFrame { request_id, request })
}

fn online_count(id: u32) -> Vec<u8> {
    body(id, Request::QueryRoomOnlineCount { room_id: "r".into() })
}

/// The `QueryRoomOnlineCount` variant tag, read off a real encoding.
fn online_count_tag() -> u8 {
    let b = online_count(2);
    assert_eq!(b.len(), 4, "request id, tag, length 1, 'r'");
    assert_eq!(&b[2..], &[1, b'r']);
    b[1]
}

/// A raw attacker logged in as mallory and in room `r`.
async fn mallory(arena: &Arena) -> (Raw, Control) {
    let (raw, mut ctl) = arena.raw_logged_in("mallory").await;
    ctl.request(2, Request::JoinRoom { room_id: "r".into() }).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomEntered(_))));
    (raw, ctl)
}

/// Bytes that close their sender with `code` (and nobody else).
fn hostile_frames() -> Vec<(&'static str, Vec<u8>, ErrorCode)> {
    let huge = (1u64 << 40).to_le_bytes();
    let mut string_2_pow_40 = vec![3, online_count_tag(), 0xfd];
    string_2_pow_40.extend_from_slice(&huge);
    let by_id = body(3, Request::QueryRoomMembersById { room_id: "r".into(), user_ids: vec![] });
    assert_eq!(by_id.last(), Some(&0), "the empty list's length comes last");
    let mut list_2_pow_40 = by_id[..by_id.len() - 1].to_vec();
    list_2_pow_40.push(0xfd);
    list_2_pow_40.extend_from_slice(&huge);
    let mut trailing = online_count(3);
    trailing.push(0);
    let too_large = ErrorCode::FrameTooLarge;
    let malformed = ErrorCode::MalformedFrame;
    vec![
        ("a length prefix of u32::MAX", u32::MAX.to_le_bytes().to_vec(), too_large),
        ("a length prefix of the maximum + 1", frame_with_len(65_537, &[0; 16]), too_large),
        ("a string claiming 2^40 bytes", frame(&string_2_pow_40), malformed),
        ("a list claiming 2^40 elements", frame(&list_2_pow_40), malformed),
        ("a trailing byte after a valid request", frame(&trailing), malformed),
        ("an unknown request variant", frame(&[3, 200]), malformed),
        ("invalid UTF-8 in a string", frame(&[3, online_count_tag(), 2, 0xc3, 0x28]), malformed),
        ("an empty frame", frame(&[]), malformed),
        ("a varint wider than its u32", frame(&[0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 6]), malformed),
        ("an Option tag of 2", frame(&[3, 8, 1, b'r', 0, 0, 0, 2]), malformed),
    ]
}

#[tokio::test]
async fn hostile_frames_close_only_their_sender() {
    for (what, bytes, code) in hostile_frames() {
        eprintln!("hostile frame: {what}");
        let arena = Arena::start().await;
        let (raw, mut ctl) = mallory(&arena).await;
        ctl.write(&bytes).await;
        raw.assert_closed_with(code).await;
        arena.finish().await;
    }
}

#[tokio::test]
async fn a_frame_of_exactly_the_maximum_is_read_and_one_byte_more_is_refused() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = mallory(&arena).await;
    // A message whose frame body is exactly MAX_CLIENT_FRAME_LEN: read and answered (its body
    // is over the message limit), and the connection lives on.
    let at_max = (60_000..MAX_CLIENT_FRAME_LEN)
        .map(|n| {
            let body = MessageBody::Custom { sub_type: 1, data: vec![7; n] };
            body_of_message(3, body)
        })
        .find(|b| b.len() == MAX_CLIENT_FRAME_LEN)
        .expect("some payload size gives a body of exactly the maximum");
    ctl.write(&frame(&at_max)).await;
    assert_eq!(ctl.error_code().await, ErrorCode::MessageTooLarge.as_u16());
    ctl.write(&frame(&online_count(4))).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomOnlineCount { .. })));
    // One byte more is refused on the prefix alone.
    ctl.write(&((MAX_CLIENT_FRAME_LEN + 1) as u32).to_le_bytes()).await;
    raw.assert_closed_with(ErrorCode::FrameTooLarge).await;
    arena.finish().await;
}

fn body_of_message(id: u32, body: MessageBody) -> Vec<u8> {
    let request = Request::SendRoomMessage {
        room_id: "r".into(),
        body,
        priority: Priority::Medium,
        client_msg_id: None,
    };
    self::body(id, request)
}

#[tokio::test]
async fn a_truncated_frame_then_fin_is_malformed() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = mallory(&arena).await;
    let b = online_count(3);
    ctl.write(&frame_with_len(b.len() as u32 + 10, &b)).await;
    ctl.send.finish().unwrap();
    raw.assert_closed_with(ErrorCode::MalformedFrame).await;
    arena.finish().await;
}

#[tokio::test]
async fn a_reset_stream_mid_frame_is_a_protocol_violation() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = mallory(&arena).await;
    let b = online_count(3);
    ctl.write(&frame_with_len(b.len() as u32 + 10, &b)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctl.send.reset(7u32.into()).unwrap();
    raw.assert_closed_with(ErrorCode::ProtocolViolation).await;
    arena.finish().await;
}

#[tokio::test]
async fn a_valid_frame_split_at_every_byte_offset_is_answered_each_time() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = mallory(&arena).await;
    let f = encode_frame(&RequestFrame {
        request_id: 0,
        request: Request::QueryRoomMembersById {
            room_id: "r".into(),
            user_ids: vec!["alice".into(), "bob".into()],
        },
    });
    for cut in 1..f.len() {
        let mut bytes = f.to_vec();
        bytes[4] = 10 + cut as u8; // the request id (one varint byte)
        ctl.write(&bytes[..cut]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        ctl.write(&bytes[cut..]).await;
        let r = ctl.response().await;
        assert_eq!(r.request_id, 10 + cut as u32);
        match r.reply {
            Reply::Ok(Response::RoomMembersById { members, .. }) => assert_eq!(members.len(), 2),
            r => panic!("cut at {cut}: {r:?}"),
        }
    }
    raw.assert_open_after(0).await;
    arena.finish().await;
}

#[tokio::test]
async fn many_frames_in_one_write_are_all_answered_in_order() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = mallory(&arena).await;
    let n = 150u32;
    let bytes: Vec<u8> = (0..n).flat_map(|i| frame(&online_count(100 + i))).collect();
    ctl.write(&bytes).await;
    for i in 0..n {
        let r = ctl.response().await;
        assert_eq!(r.request_id, 100 + i);
        assert!(matches!(r.reply, Reply::Ok(Response::RoomOnlineCount { count: 3, .. })), "{r:?}");
    }
    raw.assert_open_after(0).await;
    arena.finish().await;
}

#[tokio::test]
async fn slowloris_dribbling_a_frame_is_cut_off_at_the_frame_deadline() {
    let arena = Arena::start_with(|c| c.transport.frame_timeout_s = 1).await;
    let (raw, mut ctl) = mallory(&arena).await;
    let f = frame(&online_count(3));
    let started = std::time::Instant::now();
    let dribble = async {
        for b in &f {
            ctl.write(&[*b]).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    tokio::select! {
        _ = dribble => panic!("the whole frame went through"),
        code = raw.closed_code(Duration::from_secs(5)) => {
            assert_eq!(code, u64::from(ErrorCode::FrameTimeout.as_u16()));
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the deadline");
    arena.finish().await;
}

#[tokio::test]
async fn streams_the_client_may_not_open_are_refused_by_the_stream_limits() {
    // With WebTransport on, HTTP/3 needs 3 unidirectional streams granted from the start
    // (docs/PROTOCOL.md section 1); off, a native client gets none.
    let arena = Arena::start_with(|c| c.web_transport = false).await;
    let (raw, mut ctl) = mallory(&arena).await;
    // The server grants no unidirectional stream and one bidirectional one (in use): the
    // opens wait for credit that never comes, and the control stream carries on.
    let uni = tokio::time::timeout(Duration::from_millis(300), raw.conn.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream opened");
    let bi = tokio::time::timeout(Duration::from_millis(300), raw.conn.open_bi()).await;
    assert!(bi.is_err(), "a second bidirectional stream opened");
    ctl.write(&frame(&online_count(3))).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomOnlineCount { .. })));
    arena.finish().await;
}

#[tokio::test]
async fn a_connection_that_opens_no_stream_or_never_writes_is_closed_at_the_login_deadline() {
    let arena = Arena::start_with(|c| c.transport.login_timeout_s = 1).await;
    let silent = arena.raw().await;
    let idle = arena.raw().await;
    let _ctl = idle.control().await;
    let started = std::time::Instant::now();
    silent.assert_closed_with(ErrorCode::LoginTimeout).await;
    idle.assert_closed_with(ErrorCode::LoginTimeout).await;
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the deadline");
    arena.finish().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_a_slow_consumer() {
    let arena = Arena::start_with(|c| c.queue.max_bytes = 1024 * 1024).await;
    let (raw, mut ctl) = arena.raw_stalled_in_room("mallory", 16_384).await;
    // A history of big messages, then pages of it asked for and never read.
    let big = MessageBody::Custom { sub_type: 1, data: vec![1; 8 * 1024] };
    let mut bytes = Vec::new();
    for i in 0..100 {
        bytes.extend(frame(&body_of_message(10 + i, big.clone())));
    }
    let page = Request::QueryHistory {
        room_id: "r".into(),
        anchor: huddle::wire::HistoryAnchor::Latest,
        count: 100,
    };
    for i in 0..150 {
        bytes.extend(frame(&body(200 + i, page.clone())));
    }
    let writer = tokio::spawn(async move {
        let _ = ctl.send.write_all(&bytes).await;
        ctl
    });
    let drained = drain_bob(&arena, 100);
    drained.await;
    raw.assert_closed_with(ErrorCode::SlowConsumer).await;
    writer.abort();
    arena.finish().await;
}

/// Reads bob's events until `n` more room messages have arrived.
async fn drain_bob(arena: &Arena, n: usize) {
    let mut seen = 0;
    while seen < n {
        if let huddle::wire::Event::RoomMessage(_) = next_event(&arena.bob).await {
            seen += 1;
        }
    }
}

/// SECURITY.md names every configurable limit with its default, every fixed bound with its
/// value, and the memory ceiling of a connection, so that it stays true when a default moves.
#[test]
fn security_md_names_every_limit_with_its_default() {
    use huddle::core::{MAX_QUERY_COUNT, MAX_QUERY_USER_IDS, MAX_ROOM_ID_BYTES, MAX_USER_ID_BYTES};
    use huddle::server::config::{ServerConfig, CONNECTION_FIXED_BYTES};
    use huddle::server::{INCOMING_BUFFER_BYTES, INCOMING_BUFFER_TOTAL_BYTES};
    use huddle::wire::{CLIENT_DECODE_LIMIT, MAX_FRAME_LEN};

    let doc = include_str!("../../SECURITY.md");
    let config = ServerConfig::default();
    let table = toml::Value::try_from(&config).unwrap();
    let mut missing = Vec::new();
    for section in ["limits", "transport", "queue"] {
        for (key, value) in table[section].as_table().unwrap() {
            missing.push(format!("| `{section}.{key}` | {value} |"));
        }
    }
    let constants: [(&str, u64); 13] = [
        ("MAX_CLIENT_FRAME_LEN", MAX_CLIENT_FRAME_LEN as u64),
        ("CLIENT_DECODE_LIMIT", CLIENT_DECODE_LIMIT as u64),
        ("MAX_FRAME_LEN", MAX_FRAME_LEN as u64),
        ("MAX_TOKEN_LEN", huddle::auth::MAX_TOKEN_LEN as u64),
        ("MAX_CLOCK_SKEW_S", huddle::auth::MAX_CLOCK_SKEW_S),
        ("MAX_USER_ID_BYTES", MAX_USER_ID_BYTES as u64),
        ("MAX_ROOM_ID_BYTES", MAX_ROOM_ID_BYTES as u64),
        ("MAX_QUERY_COUNT", u64::from(MAX_QUERY_COUNT)),
        ("MAX_QUERY_USER_IDS", MAX_QUERY_USER_IDS as u64),
        ("INCOMING_BUFFER_BYTES", INCOMING_BUFFER_BYTES),
        ("INCOMING_BUFFER_TOTAL_BYTES", INCOMING_BUFFER_TOTAL_BYTES),
        ("LOG_LINES_PER_WINDOW", u64::from(huddle::server::LOG_LINES_PER_WINDOW)),
        ("CONNECTION_FIXED_BYTES", CONNECTION_FIXED_BYTES),
    ];
    missing.extend(constants.iter().map(|(name, value)| format!("| `{name}` | {value} |")));
    missing.push(format!("= {} bytes", config.connection_memory_ceiling()));
    missing.retain(|row| !doc.contains(row.as_str()));
    assert!(missing.is_empty(), "SECURITY.md lacks (or has stale):\n{}", missing.join("\n"));
}
