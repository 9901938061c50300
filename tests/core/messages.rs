//! Messages: rate limits, client_msg_id dedup, delivery, history bounds, size limit.

use super::*;

#[test]
fn rate_limit_bursts_then_refuses_then_recovers() {
    let mut h =
        Harness::new(Limits { rate_limit_per_s: 10, rate_limit_burst: 20, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    for i in 0..20 {
        h.send(1, "r", &format!("m{i}"));
    }
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // The limit is per user: bob still has his burst.
    h.send(2, "r", "bob");
    // 99 ms later: still nothing; at 100 ms, one token.
    h.advance(99);
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    h.advance(1);
    let (_, seq, _) = h.send(1, "r", "refilled");
    assert_eq!(seq, 22);
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // A long pause refills up to the burst, no further.
    h.advance(60_000);
    for i in 0..20 {
        h.send(1, "r", &format!("again{i}"));
    }
    assert_eq!(h.fail(1, text("r", "over")), ErrorCode::RateLimited);
    // Refused sends were not broadcast and took no seq.
    h.tick(50);
    let seqs = message_seqs(
        &h.events(2).into_iter().filter(|e| matches!(e, Event::RoomMessage(_))).collect::<Vec<_>>(),
    );
    let expected: Vec<u64> = (1..=42).filter(|s| *s != 21).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn rate_limit_zero_disables_it() {
    let mut h =
        Harness::new(Limits { rate_limit_per_s: 0, rate_limit_burst: 1, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    for i in 0..1_000 {
        h.send(1, "r", &format!("m{i}"));
    }
}

#[test]
fn client_msg_id_dedups_for_five_minutes() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let first = match h.ok(1, send_req("r", MessageBody::Text("hi".into()), Some("c1"))) {
        Response::MessageSent { message_id, seq, timestamp_ms, duplicate, .. } => {
            assert!(!duplicate);
            (message_id, seq, timestamp_ms)
        }
        r => panic!("{r:?}"),
    };
    assert_eq!(h.events(2).len(), 1);
    h.advance(1_000);
    match h.ok(1, send_req("r", MessageBody::Text("hi again".into()), Some("c1"))) {
        Response::MessageSent { message_id, seq, timestamp_ms, duplicate, room_id } => {
            assert!(duplicate);
            assert_eq!(room_id, "r");
            assert_eq!((message_id, seq, timestamp_ms), first, "the first ack");
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.events(2), vec![], "a retry is not broadcast again");
    // Another id, and the same id from another user, are new messages.
    assert_eq!(h.send_with(1, "r", MessageBody::Text("x".into()), Some("c2")).1, 2);
    assert_eq!(h.send_with(2, "r", MessageBody::Text("y".into()), Some("c1")).1, 3);
    // Still remembered just before five minutes.
    h.advance(300_000 - 1_000 - 1);
    let (_, seq, dup) = h.send_with(1, "r", MessageBody::Text("hi".into()), Some("c1"));
    assert_eq!((seq, dup), (1, true));
    // Forgotten at five minutes.
    h.advance(1);
    let (_, seq, dup) = h.send_with(1, "r", MessageBody::Text("hi".into()), Some("c1"));
    assert_eq!((seq, dup), (4, false));
    // Bad ids are refused.
    let long = "x".repeat(65);
    assert_eq!(
        h.fail(1, send_req("r", MessageBody::Text("z".into()), Some(&long))),
        ErrorCode::InvalidClientMsgId
    );
    assert_eq!(
        h.fail(1, send_req("r", MessageBody::Text("z".into()), Some(""))),
        ErrorCode::InvalidClientMsgId
    );
    assert_eq!(h.send_with(1, "r", MessageBody::Text("z".into()), Some(&"x".repeat(64))).1, 5);
}

#[test]
fn sender_gets_ack_others_get_one_copy_and_non_members_cannot_send() {
    let mut h = Harness::plain();
    h.login_many(1, 3);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let body = MessageBody::Custom { sub_type: 9, data: vec![1, 2, 3] };
    match h.ok(1, send_req("r", body.clone(), None)) {
        Response::MessageSent { seq, timestamp_ms, duplicate, .. } => {
            assert_eq!(seq, 1);
            assert_eq!(timestamp_ms, h.now().unix_ms);
            assert!(!duplicate);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.events(1), vec![]);
    match h.events(2).as_slice() {
        [Event::RoomMessage(m)] => {
            assert_eq!((m.seq, m.sender.as_str(), m.room_id.as_str()), (1, "u1", "r"));
            assert_eq!(m.body, body);
            assert_eq!(m.priority, Priority::Medium);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.fail(3, text("r", "x")), ErrorCode::NotInRoom);
    // To a non-member a missing room looks like any room it is not in.
    assert_eq!(h.fail(3, text("nope", "x")), ErrorCode::NotInRoom);
    assert_eq!(h.events(2), vec![]);
}

#[test]
fn history_is_bounded_by_count() {
    let mut h = Harness::new(Limits { history_max_messages: 5, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    for i in 1..=8 {
        h.send(1, "r", &format!("m{i}"));
    }
    let q = |anchor, count| Request::QueryHistory { room_id: "r".into(), anchor, count };
    match h.ok(1, q(HistoryAnchor::Latest, 100)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5, 6, 7, 8]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::Latest, 2)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![7, 8]);
            assert!(has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::AfterSeq(1), 3)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5, 6]);
            assert!(has_more);
        }
        r => panic!("{r:?}"),
    }
    match h.ok(1, q(HistoryAnchor::BeforeSeq(6), 10)) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![4, 5]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.fail(1, q(HistoryAnchor::Latest, 0)), ErrorCode::InvalidRequest);
    assert_eq!(h.fail(1, q(HistoryAnchor::Latest, 101)), ErrorCode::InvalidRequest);
}

fn wrap(messages: Vec<huddle::wire::RoomMessage>) -> Vec<Event> {
    messages.into_iter().map(Event::RoomMessage).collect()
}

#[test]
fn history_is_bounded_by_age() {
    let mut h = Harness::new(Limits { history_max_age_s: 10, ..Limits::default() });
    h.login(1, "alice");
    h.create(1, "r", 0);
    h.send(1, "r", "old");
    h.advance(6_000);
    h.send(1, "r", "new");
    let latest =
        Request::QueryHistory { room_id: "r".into(), anchor: HistoryAnchor::Latest, count: 100 };
    h.advance(4_000);
    match h.ok(1, latest.clone()) {
        Response::History { messages, .. } => assert_eq!(messages.len(), 2),
        r => panic!("{r:?}"),
    }
    h.advance(1);
    match h.ok(1, latest.clone()) {
        Response::History { messages, has_more, .. } => {
            assert_eq!(message_seqs(&wrap(messages)), vec![2]);
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
    h.advance(6_000);
    match h.ok(1, latest) {
        Response::History { messages, has_more, .. } => {
            assert!(messages.is_empty());
            assert!(!has_more);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn message_size_limit_is_exact() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 0);
    let max = Limits::default().max_message_bytes;
    assert_eq!(max, 32 * 1024);
    h.send(1, "r", &"a".repeat(max));
    assert_eq!(h.fail(1, text("r", &"a".repeat(max + 1))), ErrorCode::MessageTooLarge);
    let custom = |n| MessageBody::Custom { sub_type: 1, data: vec![0; n] };
    h.send_with(1, "r", custom(max), None);
    assert_eq!(h.fail(1, send_req("r", custom(max + 1), None)), ErrorCode::MessageTooLarge);
}

/// A sender's client_msg_ids are forgotten once out of the window even when nobody posts again
/// (a timer sweeps them), at once when it leaves the room, and past the last
/// `dedup_max_per_member` (before: kept until the next post in the room, without a count bound).
#[test]
fn remembered_client_msg_ids_are_bounded_swept_and_forgotten_on_leave() {
    let limits = Limits { dedup_max_per_member: 10, ..Limits::default() };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    let timers = h.core.timer_count();
    for i in 0..25 {
        h.send_with(1, "r", MessageBody::Text("a".into()), Some(&format!("a{i}")));
    }
    assert_eq!(h.core.remembered_client_msg_ids(), 10, "the last 10 of alice's");
    let (_, _, dup) = h.send_with(1, "r", MessageBody::Text("a".into()), Some("a24"));
    assert!(dup, "the newest is remembered");
    let (_, _, dup) = h.send_with(1, "r", MessageBody::Text("a".into()), Some("a0"));
    assert!(!dup, "the oldest was forgotten past the cap");
    // Bob's ids go when he leaves the room.
    for i in 0..5 {
        h.send_with(2, "r", MessageBody::Text("b".into()), Some(&format!("b{i}")));
    }
    assert_eq!(h.core.remembered_client_msg_ids(), 15);
    h.ok(2, leave("r"));
    assert_eq!(h.core.remembered_client_msg_ids(), 10);
    // Nobody posts again: the window's end forgets alice's too.
    h.tick(300_000 + 30_001);
    assert_eq!(h.core.remembered_client_msg_ids(), 0, "swept without another post");
    assert_eq!(h.core.timer_count(), timers, "no sweep armed once nothing is remembered");
}

/// Renewing a token replaces the session's token timers instead of adding two per renewal, and
/// a session's end takes its timers with it (before: 128 B per renewal until the old expiry).
#[test]
fn token_renewals_and_ended_sessions_leave_no_timers_behind() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    let base = h.core.timer_count();
    let now_s = START_UNIX_MS / 1000;
    for i in 0..50 {
        let token = h.mint("alice", now_s, now_s + 3_600 + i).unwrap();
        h.ok(1, Request::RenewToken { token });
    }
    assert_eq!(h.core.timer_count(), base, "50 renewals, the same two timers");
    h.ok(1, Request::Logout);
    // Its two token timers went with it; the one left sweeps its resting rate bucket.
    assert_eq!(h.core.timer_count(), base - 1, "the session's timers went with it");
}
