//! What rooms nobody uses may keep: history bounded in bytes per room and in total, and the
//! empty delayed rooms a user may leave behind.

use super::*;

fn big(n: usize) -> MessageBody {
    MessageBody::Custom { sub_type: 1, data: vec![7; n] }
}

fn history_seqs(h: &mut Harness, conn: ConnId, room: &str) -> Vec<u64> {
    let q =
        Request::QueryHistory { room_id: room.into(), anchor: HistoryAnchor::Latest, count: 100 };
    match h.ok(conn, q) {
        Response::History { messages, .. } => messages.iter().map(|m| m.seq).collect(),
        r => panic!("{r:?}"),
    }
}

/// A room keeps at most `history_max_bytes` of history, newest first (before: only the count
/// bound, 1,000 x 32 KB = 32 MB a room).
#[test]
fn a_rooms_history_is_bounded_in_bytes() {
    let limits =
        Limits { history_max_bytes: 100_000, max_message_bytes: 200_000, ..Limits::default() };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.create(1, "r", 0);
    for _ in 0..50 {
        h.send_with(1, "r", big(10_000), None);
    }
    let held = h.core.history_bytes();
    eprintln!("history of 50 x 10 KB messages under a 100 KB bound: {held} bytes");
    assert!(held <= 100_000, "{held} bytes held");
    let seqs = history_seqs(&mut h, 1, "r");
    assert_eq!(seqs, (42..=50).collect::<Vec<_>>(), "the newest nine of about 10 KB each");
    // A message over the bound by itself is kept alone: the newest is never dropped.
    h.send_with(1, "r", big(150_000), None);
    assert_eq!(history_seqs(&mut h, 1, "r"), vec![51]);
}

/// Creating rooms with a destroy delay and leaving them cannot fill the room table: a user's
/// empty delayed rooms are capped, across logins, and past the cap the one due first goes
/// (before: 30 rooms held for 3 h, and then everyone got `server_room_limit`).
#[test]
fn a_users_empty_delayed_rooms_are_capped_and_cannot_fill_the_server() {
    let limits = Limits { rooms_per_server: 30, ..Limits::default() };
    let cap = limits.delayed_rooms_per_user;
    let mut h = Harness::new(limits);
    h.login(1, "mallory");
    for i in 0..20 {
        let room = format!("m{i}");
        h.create(1, &room, 10_800);
        h.ok(1, leave(&room));
    }
    h.ok(1, Request::Logout);
    h.login(2, "mallory");
    for i in 20..30 {
        let room = format!("m{i}");
        h.create(2, &room, 10_800);
        h.ok(2, leave(&room));
    }
    eprintln!("rooms held after 30 create/leave cycles: {}", h.core.room_count());
    assert_eq!(h.core.room_count(), cap, "only the newest {cap} wait");
    assert_eq!(h.fail(2, join("m0")), ErrorCode::RoomDoesNotExist, "the first went first");
    h.join(2, "m29");
    // Another user still creates rooms.
    h.login(3, "alice");
    h.create(3, "lobby", 0);
    // A join takes a room off the waiting list: the creator may leave one more behind.
    h.ok(2, leave("m29"));
    assert_eq!(h.core.room_count(), cap + 1, "lobby and mallory's {cap}");
}

/// Over the server-wide budget the oldest history goes, that of empty rooms first, but never
/// what a member whose connection was lost may need to resume (before: no total bound).
#[test]
fn the_history_budget_drops_the_oldest_first_and_keeps_what_a_member_may_resume() {
    let limits =
        Limits { history_max_total_bytes: 200_000, offline_grace_s: 30, ..Limits::default() };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "carol");
    h.create(1, "old", 3_600);
    for _ in 0..9 {
        h.send_with(1, "old", big(10_000), None);
    }
    h.ok(1, leave("old"));
    h.create(2, "live", 0);
    h.join(3, "live");
    for _ in 0..9 {
        h.send_with(2, "live", big(10_000), None);
    }
    h.tick(120_000);
    let carol = h.session_of(3);
    let now = h.now();
    h.core.handle_disconnect(now, 3);
    h.pump();
    for _ in 0..5 {
        h.send_with(2, "live", big(10_000), None);
    }
    assert!(h.core.history_bytes() <= 200_000, "{}", h.core.history_bytes());
    assert_eq!(
        history_seqs(&mut h, 2, "live"),
        (1..=14).collect::<Vec<_>>(),
        "the empty room's went first"
    );
    // More: the live room's old messages go, never those sent since carol was lost.
    for _ in 0..20 {
        h.send_with(2, "live", big(10_000), None);
    }
    let seqs = history_seqs(&mut h, 2, "live");
    eprintln!("live room keeps seqs {:?}..={:?}", seqs.first(), seqs.last());
    assert_eq!(seqs.first(), Some(&10), "every message since carol's connection was lost");
    assert_eq!(seqs.last(), Some(&34));
    assert!(h.core.history_bytes() > 200_000, "protected messages may exceed the budget");
    h.login(4, "alice");
    h.join(4, "old");
    assert_eq!(history_seqs(&mut h, 4, "old"), Vec::<u64>::new(), "the empty room's went first");
    // Carol resumes and gets every message she missed.
    let (ok, reply, _) = h.resume(5, "carol", carol, [7; 16], &[("live", 9)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { rooms, .. }) => assert!(rooms[0].recovered, "{rooms:?}"),
        r => panic!("{r:?}"),
    }
}
