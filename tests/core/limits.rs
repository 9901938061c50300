//! Limits: rooms per user, members per room, rooms per server, names and ids.

use super::*;

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

#[test]
fn create_room_checks_in_the_documented_order() {
    // docs/PROTOCOL.md, CreateRoom: invalid_room_id, room_name_too_long, invalid_destroy_delay,
    // server_room_limit, the initial attributes, room_already_exists, room_limit_reached. A
    // request that breaks several rules gets the first; fixing it reveals the next.
    let mut h =
        Harness::new(Limits { rooms_per_user: 2, rooms_per_server: 3, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.create(1, "s", 0);
    h.create(2, "t", 0);
    let request = |id: &str, name_len: usize, delay_s: u32, key_len: usize| Request::CreateRoom {
        info: RoomInfo { room_id: id.into(), room_name: "n".repeat(name_len) },
        config: RoomConfig {
            destroy_delay_s: delay_s,
            attributes: vec![("k".repeat(key_len), "v".into())],
        },
    };
    let code = |e: ErrorBody| ErrorCode::from_u16(e.code).unwrap();
    let e = h.call(1, request("bad id", 257, 10_801, 17)).unwrap_err();
    assert_eq!(code(e.clone()), ErrorCode::InvalidRoomId);
    assert!(e.message.contains("1-128 bytes of [A-Za-z0-9_.@:-]"), "{e:?}");
    assert_eq!(h.fail(1, request("r", 257, 10_801, 17)), ErrorCode::RoomNameTooLong);
    assert_eq!(h.fail(1, request("r", 256, 10_801, 17)), ErrorCode::InvalidDestroyDelay);
    let e = h.call(1, request("r", 256, 10_800, 17)).unwrap_err();
    assert_eq!(code(e.clone()), ErrorCode::ServerRoomLimit);
    assert!(e.message.contains("3 rooms"), "{e:?}");
    h.ok(2, leave("t"));
    assert_eq!(h.fail(1, request("r", 256, 10_800, 17)), ErrorCode::AttributeKeyTooLong);
    assert_eq!(h.fail(1, request("r", 256, 10_800, 16)), ErrorCode::RoomAlreadyExists);
    let e = h.call(1, request("u", 256, 10_800, 16)).unwrap_err();
    assert_eq!(code(e.clone()), ErrorCode::RoomLimitReached);
    assert!(e.message.contains("at most 2"), "{e:?}");
    assert_eq!(h.core.room_count(), 2, "no refused create made a room");
}
