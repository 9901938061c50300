//! Room operations: create, join, enter, leave, leave-all and switch.

use super::*;

#[test]
fn create_join_enter_and_leave_errors() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    assert_eq!(h.fail(2, create("r", 0)), ErrorCode::RoomAlreadyExists);
    assert_eq!(h.fail(2, join("missing")), ErrorCode::RoomDoesNotExist);
    assert_eq!(h.fail(2, leave("r")), ErrorCode::NotInRoom);
    assert_eq!(h.fail(2, leave("missing")), ErrorCode::NotInRoom);
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
