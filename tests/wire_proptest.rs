//! Property tests of the wire format: every message survives encode_frame then decode_body
//! unchanged, frames survive arbitrary chunking, and no input makes the decoder panic.

use bytes::BytesMut;
use huddle::wire::{
    check_length, decode_body, encode_body, encode_frame, split_frame, AttributeFailure,
    AttributeOp, ErrorBody, Event, HistoryAnchor, LeaveReason, Login, Member, MemberAttributes,
    MessageBody, Priority, Reply, Request, RequestFrame, Response, ResponseFrame, RoomConfig,
    RoomInfo, RoomMessage, RoomState, RoomSummary, StreamHeader, LENGTH_PREFIX_LEN,
    MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies

/// Any Unicode string, including empty, multi-byte and control characters.
fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

/// Strings long enough to need the 251 (u16) length form now and then.
fn long_text() -> impl Strategy<Value = String> {
    prop_oneof![text(), ".{240,300}"]
}

fn member() -> impl Strategy<Value = Member> {
    (text(), text()).prop_map(|(user_id, user_name)| Member { user_id, user_name })
}

fn room_info() -> impl Strategy<Value = RoomInfo> {
    (text(), text()).prop_map(|(room_id, room_name)| RoomInfo { room_id, room_name })
}

fn attributes() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

fn member_attributes() -> impl Strategy<Value = MemberAttributes> {
    (text(), attributes())
        .prop_map(|(user_id, attributes)| MemberAttributes { user_id, attributes })
}

/// Any u16 code, with the 6xxx attribute codes (which need the fb form) weighted in.
fn attribute_failure() -> impl Strategy<Value = AttributeFailure> {
    (text(), prop_oneof![6000u16..=6005, any::<u16>()])
        .prop_map(|(key, code)| AttributeFailure { key, code })
}

fn attribute_op() -> impl Strategy<Value = AttributeOp> {
    prop_oneof![
        (attributes(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(attributes, is_force, is_update_owner, is_delete_after_owner_left)| {
                AttributeOp::Set {
                    attributes,
                    is_force,
                    is_update_owner,
                    is_delete_after_owner_left,
                }
            }
        ),
        (vec(text(), 0..4), any::<bool>())
            .prop_map(|(keys, is_force)| AttributeOp::Delete { keys, is_force }),
    ]
}

fn room_config() -> impl Strategy<Value = RoomConfig> {
    (any::<u32>(), attributes())
        .prop_map(|(destroy_delay_s, attributes)| RoomConfig { destroy_delay_s, attributes })
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![Just(Priority::Low), Just(Priority::Medium), Just(Priority::High)]
}

fn message_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        long_text().prop_map(MessageBody::Text),
        (any::<u32>(), vec(any::<u8>(), 0..300))
            .prop_map(|(sub_type, data)| MessageBody::Custom { sub_type, data }),
    ]
}

fn anchor() -> impl Strategy<Value = HistoryAnchor> {
    prop_oneof![
        Just(HistoryAnchor::Latest),
        any::<u64>().prop_map(HistoryAnchor::BeforeSeq),
        any::<u64>().prop_map(HistoryAnchor::AfterSeq),
    ]
}

fn room_message() -> impl Strategy<Value = RoomMessage> {
    (text(), any::<u64>(), any::<u64>(), text(), any::<u64>(), priority(), message_body()).prop_map(
        |(room_id, seq, message_id, sender, timestamp_ms, priority, body)| RoomMessage {
            room_id,
            seq,
            message_id,
            sender,
            timestamp_ms,
            priority,
            body,
        },
    )
}

fn room_state() -> impl Strategy<Value = RoomState> {
    (
        text(),
        text(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        attributes(),
    )
        .prop_map(
            |(
                room_id,
                room_name,
                created,
                already_member,
                member_count,
                last_seq,
                created_at_ms,
                attributes,
            )| RoomState {
                room_id,
                room_name,
                created,
                already_member,
                member_count,
                last_seq,
                created_at_ms,
                attributes,
            },
        )
}

fn leave_reason() -> impl Strategy<Value = LeaveReason> {
    prop_oneof![Just(LeaveReason::Left), Just(LeaveReason::Offline), Just(LeaveReason::Kicked)]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), text(), text(), long_text()).prop_map(
            |(protocol_version, user_id, user_name, token)| Request::Login(Login {
                protocol_version,
                user_id,
                user_name,
                token,
            })
        ),
        Just(Request::Logout),
        (room_info(), room_config())
            .prop_map(|(info, config)| Request::CreateRoom { info, config }),
        text().prop_map(|room_id| Request::JoinRoom { room_id }),
        (room_info(), room_config()).prop_map(|(info, config)| Request::EnterRoom { info, config }),
        text().prop_map(|room_id| Request::LeaveRoom { room_id }),
        Just(Request::LeaveAllRooms),
        (text(), room_info(), any::<bool>(), room_config()).prop_map(
            |(from_room_id, to, create_if_missing, config)| Request::SwitchRoom {
                from_room_id,
                to,
                create_if_missing,
                config,
            }
        ),
        (text(), message_body(), priority(), proptest::option::of(text())).prop_map(
            |(room_id, body, priority, client_msg_id)| Request::SendRoomMessage {
                room_id,
                body,
                priority,
                client_msg_id,
            }
        ),
        (text(), text(), any::<u32>()).prop_map(|(room_id, next_flag, count)| {
            Request::QueryRoomMembers { room_id, next_flag, count }
        }),
        text().prop_map(|room_id| Request::QueryRoomOnlineCount { room_id }),
        (text(), vec(text(), 0..12))
            .prop_map(|(room_id, user_ids)| Request::QueryRoomMembersById { room_id, user_ids }),
        Just(Request::QueryJoinedRooms),
        (text(), anchor(), any::<u32>())
            .prop_map(|(room_id, anchor, count)| Request::QueryHistory { room_id, anchor, count }),
        (text(), attributes(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(room_id, attributes, is_force, is_update_owner, is_delete_after_owner_left)| {
                Request::SetRoomAttributes {
                    room_id,
                    attributes,
                    is_force,
                    is_update_owner,
                    is_delete_after_owner_left,
                }
            }
        ),
        (text(), vec(text(), 0..6), any::<bool>()).prop_map(|(room_id, keys, is_force)| {
            Request::DeleteRoomAttributes { room_id, keys, is_force }
        }),
        text().prop_map(|room_id| Request::QueryRoomAttributes { room_id }),
        (text(), vec(attribute_op(), 0..5))
            .prop_map(|(room_id, ops)| Request::RoomAttributesBatch { room_id, ops }),
        (text(), vec(text(), 0..8), attributes()).prop_map(|(room_id, user_ids, attributes)| {
            Request::SetRoomMembersAttributes { room_id, user_ids, attributes }
        }),
        (text(), vec(text(), 0..8)).prop_map(|(room_id, user_ids)| {
            Request::QueryRoomMembersAttributes { room_id, user_ids }
        }),
        (text(), text(), any::<u32>()).prop_map(|(room_id, next_flag, count)| {
            Request::QueryRoomMemberAttributesList { room_id, next_flag, count }
        }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u64>(), any::<[u8; 16]>(), any::<u64>(), any::<u64>()).prop_map(
            |(session_id, resume_secret, server_time_ms, token_expires_at_s)| Response::LoggedIn {
                session_id,
                resume_secret,
                server_time_ms,
                token_expires_at_s,
            }
        ),
        Just(Response::LoggedOut),
        room_state().prop_map(Response::RoomEntered),
        text().prop_map(|room_id| Response::RoomLeft { room_id }),
        vec(text(), 0..6).prop_map(|room_ids| Response::RoomsLeft { room_ids }),
        (text(), room_state())
            .prop_map(|(left_room_id, room)| Response::RoomSwitched { left_room_id, room }),
        (text(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(room_id, message_id, seq, timestamp_ms, duplicate)| Response::MessageSent {
                room_id,
                message_id,
                seq,
                timestamp_ms,
                duplicate,
            }
        ),
        (text(), vec(member(), 0..8), text()).prop_map(|(room_id, members, next_flag)| {
            Response::RoomMembers { room_id, members, next_flag }
        }),
        (text(), any::<u32>())
            .prop_map(|(room_id, count)| Response::RoomOnlineCount { room_id, count }),
        (text(), vec(member(), 0..8), vec(text(), 0..8)).prop_map(
            |(room_id, members, not_found)| Response::RoomMembersById {
                room_id,
                members,
                not_found
            }
        ),
        vec(
            (text(), text(), any::<u32>()).prop_map(|(room_id, room_name, member_count)| {
                RoomSummary { room_id, room_name, member_count }
            }),
            0..6
        )
        .prop_map(|rooms| Response::JoinedRooms { rooms }),
        (text(), vec(room_message(), 0..4), any::<bool>()).prop_map(
            |(room_id, messages, has_more)| Response::History { room_id, messages, has_more }
        ),
        (text(), vec(attribute_failure(), 0..4))
            .prop_map(|(room_id, failed)| Response::RoomAttributesChanged { room_id, failed }),
        (text(), attributes())
            .prop_map(|(room_id, attributes)| Response::RoomAttributes { room_id, attributes }),
        (text(), vec(member_attributes(), 0..4), vec(text(), 0..4)).prop_map(
            |(room_id, members, failed_user_ids)| Response::RoomMembersAttributesSet {
                room_id,
                members,
                failed_user_ids,
            }
        ),
        (text(), vec(member_attributes(), 0..4))
            .prop_map(|(room_id, members)| Response::RoomMembersAttributes { room_id, members }),
        (text(), vec(member_attributes(), 0..4), text()).prop_map(
            |(room_id, members, next_flag)| Response::RoomMemberAttributesList {
                room_id,
                members,
                next_flag,
            }
        ),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        response().prop_map(Reply::Ok),
        (any::<u16>(), text()).prop_map(|(code, message)| Reply::Err(ErrorBody { code, message })),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), vec(member(), 0..8))
            .prop_map(|(room_id, members)| Event::MembersJoined { room_id, members }),
        (text(), vec(member(), 0..8), leave_reason()).prop_map(|(room_id, members, reason)| {
            Event::MembersLeft { room_id, members, reason }
        }),
        room_message().prop_map(Event::RoomMessage),
        (any::<u16>(), text()).prop_map(|(code, message)| Event::KickedOut { code, message }),
        (text(), any::<u32>())
            .prop_map(|(room_id, count)| Event::MemberCountUpdated { room_id, count }),
        (text(), attributes(), vec(text(), 0..4)).prop_map(|(room_id, set, deleted)| {
            Event::RoomAttributesUpdated { room_id, set, deleted }
        }),
        (text(), vec(member_attributes(), 0..4), text()).prop_map(
            |(room_id, members, operated_by)| Event::RoomMemberAttributesUpdated {
                room_id,
                members,
                operated_by,
            }
        ),
    ]
}

fn request_frame() -> impl Strategy<Value = RequestFrame> {
    (any::<u32>(), request()).prop_map(|(request_id, request)| RequestFrame { request_id, request })
}

fn response_frame() -> impl Strategy<Value = ResponseFrame> {
    (any::<u32>(), reply()).prop_map(|(request_id, reply)| ResponseFrame { request_id, reply })
}

fn stream_header() -> impl Strategy<Value = StreamHeader> {
    prop_oneof![
        Just(StreamHeader::Session),
        text().prop_map(|room_id| StreamHeader::Room { room_id })
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Encodes a frame and checks its prefix; returns the body.
fn body_of<T: bincode::Encode>(msg: &T, max: usize) -> Result<Vec<u8>, TestCaseError> {
    let frame = encode_frame(msg);
    let prefix: [u8; LENGTH_PREFIX_LEN] = frame[..LENGTH_PREFIX_LEN].try_into().unwrap();
    let len = check_length(prefix, max).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(len, frame.len() - LENGTH_PREFIX_LEN);
    let body = frame[LENGTH_PREFIX_LEN..].to_vec();
    prop_assert_eq!(&encode_body(msg), &body);
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn request_frames_round_trip(frame in request_frame()) {
        let body = body_of(&frame, MAX_CLIENT_FRAME_LEN)?;
        prop_assert_eq!(decode_body::<RequestFrame>(&body), Ok(frame));
    }

    #[test]
    fn response_frames_round_trip(frame in response_frame()) {
        let body = body_of(&frame, MAX_FRAME_LEN)?;
        prop_assert_eq!(decode_body::<ResponseFrame>(&body), Ok(frame));
    }

    #[test]
    fn events_round_trip(event in event()) {
        let body = body_of(&event, MAX_FRAME_LEN)?;
        prop_assert_eq!(decode_body::<Event>(&body), Ok(event));
    }

    #[test]
    fn stream_headers_round_trip(header in stream_header()) {
        let body = body_of(&header, MAX_FRAME_LEN)?;
        prop_assert_eq!(decode_body::<StreamHeader>(&body), Ok(header));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = decode_body::<RequestFrame>(&bytes);
        let _ = decode_body::<ResponseFrame>(&bytes);
        let _ = decode_body::<Event>(&bytes);
        let _ = decode_body::<StreamHeader>(&bytes);
    }

    /// Random bytes rarely get past the first tag; mutating a valid body reaches deep fields.
    /// Whatever decodes must re-encode to something that decodes to the same value.
    #[test]
    fn mutated_requests_never_panic(
        frame in request_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut body = encode_body(&frame);
        for (at, byte, kind) in edits {
            match kind {
                0 if !body.is_empty() => { let i = at.index(body.len()); body[i] = byte; }
                1 => { let i = at.index(body.len() + 1); body.insert(i, byte); }
                _ if !body.is_empty() => { let i = at.index(body.len()); body.truncate(i); }
                _ => {}
            }
        }
        if let Ok(decoded) = decode_body::<RequestFrame>(&body) {
            let again = encode_body(&decoded);
            prop_assert_eq!(decode_body::<RequestFrame>(&again), Ok(decoded));
        }
    }

    #[test]
    fn frames_survive_arbitrary_chunking(
        events in vec(event(), 1..5),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let stream: Vec<u8> = events.iter().flat_map(|e| encode_frame(e).to_vec()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for pair in points.windows(2) {
            buf.extend_from_slice(&stream[pair[0]..pair[1]]);
            while let Some(body) = split_frame(&mut buf, MAX_FRAME_LEN).unwrap() {
                got.push(decode_body::<Event>(&body).unwrap());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, events);
    }
}
