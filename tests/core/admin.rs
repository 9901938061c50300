//! Operator actions (the admin API's core operations).

use super::*;

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

/// The ids, users and rooms of a connection page.
fn listed(page: &AdminConnectionPage) -> Vec<(ConnId, Option<&str>, Vec<&str>)> {
    page.connections
        .iter()
        .map(|c| {
            let rooms = c.rooms.iter().map(String::as_str).collect();
            (c.conn_id, c.user_id.as_deref(), rooms)
        })
        .collect()
}

#[test]
fn admin_lists_open_connections_with_their_sessions_and_rooms() {
    let mut h = Harness::new(Limits { allow_multi_device: true, ..Limits::default() });
    let now = h.now();
    // Connection 3 has not logged in (yet); 7 is Alice's second device.
    for (conn, origin) in [(7, 1), (1, 1), (2, 2), (3, 3)] {
        h.core.handle_connect(now, conn, origin);
    }
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(7, "alice");
    h.create(1, "r", 0);
    h.create(1, "s", 0);
    h.join(2, "r");
    let all = h.core.admin_connections(None, None, "", 100).unwrap();
    assert_eq!(
        listed(&all),
        [
            (1, Some("alice"), vec!["r", "s"]),
            (2, Some("bob"), vec!["r"]),
            (3, None, vec![]),
            (7, Some("alice"), vec![])
        ]
    );
    assert_eq!((all.total, all.next_flag.as_str()), (4, ""));
    assert_eq!(all.connections[0].session_id, Some(h.session_of(1)));
    assert_eq!(all.connections[2].session_id, None);

    // Pages in id order.
    let first = h.core.admin_connections(None, None, "", 3).unwrap();
    assert_eq!(first.connections.iter().map(|c| c.conn_id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!((first.total, first.next_flag.as_str()), (4, "7"));
    let rest = h.core.admin_connections(None, None, &first.next_flag, 3).unwrap();
    assert_eq!(rest.connections.iter().map(|c| c.conn_id).collect::<Vec<_>>(), [7]);
    assert_eq!((rest.total, rest.next_flag.as_str()), (4, ""));

    // Filters: a user's connections, a room's, both.
    let ids = |page: AdminConnectionPage| -> (Vec<ConnId>, u64) {
        (page.connections.iter().map(|c| c.conn_id).collect(), page.total)
    };
    let alice = h.core.admin_connections(Some("alice"), None, "", 1).unwrap();
    assert_eq!(alice.next_flag, "7");
    assert_eq!(ids(alice), (vec![1], 2));
    let more = h.core.admin_connections(Some("alice"), None, "7", 1).unwrap();
    assert_eq!(ids(more), (vec![7], 2));
    assert_eq!(ids(h.core.admin_connections(None, Some("r"), "", 100).unwrap()), (vec![1, 2], 2));
    assert_eq!(ids(h.core.admin_connections(None, Some("s"), "", 100).unwrap()), (vec![1], 1));
    let both = h.core.admin_connections(Some("bob"), Some("s"), "", 100).unwrap();
    assert_eq!(ids(both), (vec![], 0));
    let nobody = h.core.admin_connections(Some("carol"), None, "", 100).unwrap();
    assert_eq!(ids(nobody), (vec![], 0));
    let bad_user = h.core.admin_connections(Some("no spaces"), None, "", 100);
    assert_eq!(admin_code(bad_user), ErrorCode::InvalidUserId);
    let no_room = h.core.admin_connections(None, Some("nope"), "", 100);
    assert_eq!(admin_code(no_room), ErrorCode::RoomDoesNotExist);
    assert_eq!(admin_code(h.core.admin_connections(None, None, "", 0)), ErrorCode::InvalidRequest);
    assert_eq!(admin_code(h.core.admin_connections(None, None, "x", 5)), ErrorCode::InvalidRequest);

    // One connection; a closed one is gone (its session waits for resumption elsewhere).
    let one = h.core.admin_connection(2).expect("connection 2 is open");
    assert_eq!(
        (one.user_id.as_deref(), one.rooms.as_slice()),
        (Some("bob"), &["r".to_string()][..])
    );
    assert_eq!(h.core.admin_connection(3).map(|c| c.user_id), Some(None));
    assert_eq!(h.core.admin_connection(9), None);
    h.core.handle_closed(now, 2, None);
    assert_eq!(h.core.admin_connection(2), None);
    assert_eq!(ids(h.core.admin_connections(None, Some("r"), "", 100).unwrap()), (vec![1], 1));
    assert_eq!(h.core.admin_connections(None, None, "", 100).unwrap().total, 3);
}
