//! Rate limits that follow the user (docs/PROTOCOL.md, section 9): leaving and rejoining a room,
//! logging out and in, or losing the session and resuming does not refill a bucket; a bucket
//! is forgotten only once it has refilled.

use super::*;

/// Virtual milliseconds each attack runs.
const ATTACK_MS: u64 = 3_000;

/// Mallory sends to `r` as fast as the core lets her for [`ATTACK_MS`], leaving and rejoining
/// whenever she is told `rate_limited`; returns (accepted, refused) messages.
fn leave_join_flood(h: &mut Harness) -> (u64, u64) {
    let (mut accepted, mut refused) = (0, 0);
    let mut in_room = true;
    let start = h.now().mono_ms;
    while h.now().mono_ms - start < ATTACK_MS {
        h.tick(10);
        for _ in 0..50 {
            if !in_room {
                in_room = h.call(3, join("r")).is_ok();
                if !in_room {
                    break;
                }
            }
            match h.call(3, text("r", "spam")) {
                Ok(_) => accepted += 1,
                Err(e) if e.code == ErrorCode::RateLimited.as_u16() => {
                    refused += 1;
                    in_room = h.call(3, leave("r")).is_err();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        h.take(1);
        h.take(2);
        h.take(3);
        h.core.check_invariants().unwrap();
    }
    (accepted, refused)
}

/// The most messages the documented limit allows over [`ATTACK_MS`]: the burst plus the rate.
fn message_bound(l: &Limits) -> u64 {
    u64::from(l.rate_limit_burst) + u64::from(l.rate_limit_per_s) * ATTACK_MS / 1000
}

#[test]
fn leaving_and_rejoining_does_not_refill_the_message_bucket() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.login(3, "mallory");
    h.create(1, "r", 60);
    h.join(2, "r");
    h.join(3, "r");
    let (accepted, refused) = leave_join_flood(&mut h);
    let bound = message_bound(h.core.limits());
    eprintln!("leave+join flood: {accepted} accepted, {refused} rate_limited (bound {bound})");
    assert!(refused > 0, "the flood reached the limit");
    assert!(accepted <= bound, "{accepted} messages accepted in 3 s, the limit allows {bound}");
    assert!(accepted >= u64::from(h.core.limits().rate_limit_burst), "{accepted}: the burst went");
}

#[test]
fn a_destroyed_and_recreated_room_keeps_the_message_bucket() {
    let l = Limits { rate_limit_per_s: 10, rate_limit_burst: 20, ..Limits::default() };
    let mut h = Harness::new(l);
    h.login(3, "mallory");
    h.create(3, "r", 0);
    for _ in 0..20 {
        h.send(3, "r", "burst");
    }
    h.ok(3, leave("r"));
    assert_eq!(h.core.room_count(), 0);
    h.create(3, "r", 0);
    assert_eq!(h.fail(3, text("r", "over")), ErrorCode::RateLimited);
}

#[test]
fn logging_out_and_in_does_not_refill_the_operation_bucket() {
    let mut h = Harness::plain();
    let l = h.core.limits().clone();
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut conn = 10;
    h.login(conn, "mallory");
    let start = h.now().mono_ms;
    while h.now().mono_ms - start < ATTACK_MS {
        h.tick(10);
        for _ in 0..50 {
            match h.call(conn, Request::QueryJoinedRooms) {
                Ok(_) => accepted += 1,
                Err(e) if e.code == ErrorCode::OperationRateLimited.as_u16() => {
                    refused += 1;
                    assert!(matches!(h.ok(conn, Request::Logout), Response::LoggedOut));
                    let now = h.now();
                    h.core.handle_closed(now, conn, None);
                    h.take(conn);
                    conn += 1;
                    h.login(conn, "mallory");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        h.core.check_invariants().unwrap();
    }
    let bound = u64::from(l.ops_burst) + u64::from(l.ops_rate_per_s) * ATTACK_MS / 1000;
    eprintln!(
        "logout+login flood: {accepted} operations accepted, {refused} refused (bound {bound})"
    );
    assert!(refused > 0, "the flood reached the limit");
    assert!(accepted <= bound, "{accepted} operations accepted in 3 s, the limit allows {bound}");
}

#[test]
fn a_new_login_that_kicks_the_old_session_keeps_the_operation_bucket() {
    let mut h = Harness::new(Limits { ops_rate_per_s: 10, ops_burst: 5, ..Limits::default() });
    h.login(1, "mallory");
    for _ in 0..5 {
        h.ok(1, Request::QueryJoinedRooms);
    }
    h.login(2, "mallory");
    assert_eq!(h.fail(2, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
}

#[test]
fn a_resumption_keeps_both_buckets_even_as_a_new_session() {
    let limits = Limits {
        offline_grace_s: 0,
        rate_limit_per_s: 10,
        rate_limit_burst: 20,
        ops_rate_per_s: 10,
        ops_burst: 5,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.login(3, "mallory");
    h.create(1, "r", 60);
    h.join(3, "r");
    for _ in 0..20 {
        h.send(3, "r", "burst");
    }
    for _ in 0..4 {
        h.ok(3, Request::QueryJoinedRooms);
    }
    let sid = h.session_of(3);
    let now = h.now();
    // Without a grace the session ends at once; the resume makes a new one that rejoins.
    h.core.handle_disconnect(now, 3);
    h.pump();
    let (ok, reply, _) = h.resume(4, "mallory", sid, [7; 16], &[("r", 20)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { session_resumed, rooms, .. }) => {
            assert!(!session_resumed);
            assert!(rooms[0].rejoined);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.fail(4, text("r", "over")), ErrorCode::RateLimited);
    assert_eq!(h.fail(4, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
    h.core.check_invariants().unwrap();
}

#[test]
fn a_resting_bucket_is_forgotten_once_it_has_refilled() {
    let limits = Limits {
        rate_limit_per_s: 10,
        rate_limit_burst: 20,
        ops_rate_per_s: 10,
        ops_burst: 40,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.login(3, "mallory");
    h.create(1, "r", 60);
    h.join(3, "r");
    h.send(3, "r", "one");
    h.ok(3, leave("r"));
    // One message taken: the message bucket rests for 100 ms.
    assert_eq!(h.core.resting_bucket_count(), 1);
    assert!(matches!(h.ok(3, Request::Logout), Response::LoggedOut));
    // Two operations taken (the join and the leave): the user's rests for 200 ms.
    assert_eq!(h.core.resting_bucket_count(), 2);
    h.core.check_invariants().unwrap();
    h.tick(99);
    assert_eq!(h.core.resting_bucket_count(), 2);
    h.tick(1);
    assert_eq!(h.core.resting_bucket_count(), 1, "the message bucket is full again");
    h.core.check_invariants().unwrap();
    h.tick(100);
    assert_eq!(h.core.resting_bucket_count(), 0, "so is the operation bucket");
    h.core.check_invariants().unwrap();
}

#[test]
fn many_users_leave_many_buckets_that_all_go() {
    let limits = Limits { rate_limit_per_s: 10, rate_limit_burst: 20, ..Limits::default() };
    let mut h = Harness::new(limits);
    h.login(1, "alice");
    h.create(1, "r", 60);
    h.login_many(100, 200);
    for c in 100..300 {
        h.join(c, "r");
        h.send(c, "r", "hello");
        h.ok(c, Request::Logout);
    }
    assert_eq!(h.core.resting_bucket_count(), 400, "200 message buckets, 200 operation buckets");
    h.core.check_invariants().unwrap();
    h.tick(10_000);
    assert_eq!(h.core.resting_bucket_count(), 0);
    h.core.check_invariants().unwrap();
}
