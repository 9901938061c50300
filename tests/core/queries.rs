//! Queries: member pages, members by id, joined rooms.

use super::*;

#[test]
fn query_room_members_pages_through_250_members() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.login_many(10, 249);
    for c in 10..259 {
        h.join(c, "r");
    }
    let page = |h: &mut Harness, flag: &str, count| match h
        .ok(1, Request::QueryRoomMembers { room_id: "r".into(), next_flag: flag.into(), count })
    {
        Response::RoomMembers { members, next_flag, room_id } => {
            assert_eq!(room_id, "r");
            (members, next_flag)
        }
        r => panic!("{r:?}"),
    };
    let mut all = Vec::new();
    let mut flag = String::new();
    let mut sizes = Vec::new();
    loop {
        let (members, next) = page(&mut h, &flag, 100);
        sizes.push(members.len());
        all.extend(members);
        if next.is_empty() {
            break;
        }
        flag = next;
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    let mut expected = vec![member("alice")];
    expected.extend((10..259).map(|c| member(&format!("u{c}"))));
    assert_eq!(all, expected, "every member once, in join order");
    // A page that ends exactly at the last member says there is no more.
    let (members, next) = page(&mut h, "", 100);
    let (members2, next2) = page(&mut h, &next, 100);
    let (members3, next3) = page(&mut h, &next2, 50);
    assert_eq!((members.len(), members2.len(), members3.len()), (100, 100, 50));
    assert_eq!(next3, "");
    // Bad arguments.
    let q = |flag: &str, count| Request::QueryRoomMembers {
        room_id: "r".into(),
        next_flag: flag.into(),
        count,
    };
    assert_eq!(h.fail(1, q("", 0)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q("", 101)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q("not-a-number", 10)), ErrorCode::InvalidRequest);
    h.login(500, "outsider");
    assert_eq!(h.fail(500, q("", 10)), ErrorCode::NotInRoom);
    // Online count.
    match h.ok(1, Request::QueryRoomOnlineCount { room_id: "r".into() }) {
        Response::RoomOnlineCount { count, .. } => assert_eq!(count, 250),
        r => panic!("{r:?}"),
    }
}

#[test]
fn query_members_by_id_and_joined_rooms() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.create(1, "s", 0);
    h.join(2, "r");
    let by_id =
        |ids: Vec<String>| Request::QueryRoomMembersById { room_id: "r".into(), user_ids: ids };
    match h.ok(1, by_id(vec!["u2".into(), "u3".into(), "u1".into()])) {
        Response::RoomMembersById { members, not_found, .. } => {
            assert_eq!(members, vec![member("u2"), member("u1")]);
            assert_eq!(not_found, vec!["u3".to_string()]);
        }
        r => panic!("{r:?}"),
    }
    let ten: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    assert!(h.call(1, by_id(ten.clone())).is_ok());
    let mut eleven = ten;
    eleven.push("u1".into());
    assert_eq!(h.fail(1, by_id(eleven)), ErrorCode::TooManyUserIds);
    match h.ok(1, Request::QueryJoinedRooms) {
        Response::JoinedRooms { rooms } => {
            let got: Vec<(String, String, u32)> =
                rooms.into_iter().map(|r| (r.room_id, r.room_name, r.member_count)).collect();
            assert_eq!(
                got,
                vec![("r".into(), "r name".into(), 2), ("s".into(), "s name".into(), 1)]
            );
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.joined_rooms(3), Vec::<String>::new());
}
