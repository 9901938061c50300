//! Resumption (docs/PROTOCOL.md, section 4.6), with explicit time; also token expiry and the
//! operation rate limits.

use huddle::core::Output;
use huddle::fuzzing::harness::decode_frame;
use huddle::wire::{ResponseFrame, RoomRecovery};

use super::*;

fn replayed_seqs(got: &[Got]) -> Vec<u64> {
    got.iter()
        .filter_map(|g| match g {
            Got::Event(Some(_), Event::RoomMessage(m)) => Some(m.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn resume_within_the_grace_replays_in_order_and_nobody_sees_a_flap() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    h.send(1, "r", "seen");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for i in 0..3 {
        h.send(1, "r", &format!("missed {i}"));
    }
    h.tick(20_000);
    assert_eq!(h.events(1), vec![], "no leave during the grace");
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 1)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { session_id, session_resumed, rooms, .. }) => {
            assert_eq!((session_id, session_resumed), (sid, true));
            assert_eq!(rooms.len(), 1);
            assert!(rooms[0].rejoined && rooms[0].recovered);
            assert_eq!((rooms[0].replayed, rooms[0].last_seq), (3, 4));
        }
        r => panic!("{r:?}"),
    }
    assert!(matches!(got[0], Got::OpenStream(_, StreamHeader::Room { .. })), "{got:?}");
    assert_eq!(replayed_seqs(&got), vec![2, 3, 4]);
    // New messages follow the replay on the new connection; the grace timer no longer fires.
    h.send(1, "r", "live");
    assert_eq!(message_seqs(&h.events(3)), vec![5]);
    h.tick(20_000);
    assert_eq!(h.events(1), vec![]);
    assert_eq!(h.core.session_count(), 2);
}

#[test]
fn the_grace_ends_with_an_offline_leave_and_a_late_resume_is_a_new_session() {
    let mut h = Harness::new(Limits { history_max_messages: 2, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.tick(29_999);
    assert_eq!(h.events(1), vec![]);
    h.tick(1);
    h.tick(50);
    assert_eq!(h.events(1), vec![left("r", &["bob"], LeaveReason::Offline)]);
    for i in 0..5 {
        h.send(1, "r", &format!("while away {i}"));
    }
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0), ("gone", 0)]);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { session_id, session_resumed, rooms, .. }) => {
            assert_ne!(session_id, sid);
            assert!(!session_resumed);
            assert!(rooms[0].rejoined && !rooms[0].recovered, "{rooms:?}");
            assert_eq!(rooms[0].replayed, 2);
            assert!(!rooms[1].rejoined);
            assert_eq!(rooms[1].error_code, ErrorCode::RoomDoesNotExist.as_u16());
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(replayed_seqs(&got), vec![4, 5], "what the history still held");
    h.tick(50);
    assert!(matches!(&h.events(1)[..], [Event::MembersJoined { .. }]));
}

#[test]
fn resume_with_a_wrong_secret_is_refused_and_closed() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.create(1, "r", 0);
    let sid = h.session_of(1);
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    let (ok, reply, got) = h.resume(2, "alice", sid, [8; 16], &[]);
    assert!(!ok);
    assert!(matches!(reply, Reply::Err(e) if e.code == ErrorCode::SessionNotFound.as_u16()));
    assert_eq!(got, vec![Got::Close(Some(ErrorCode::SessionNotFound))]);
    // Another user cannot take the session either, even with the right secret.
    let (ok, _, _) = h.resume(3, "mallory", sid, [7; 16], &[]);
    assert!(!ok);
    // The held session is intact (docs/PROTOCOL.md 4.6): the right secret resumes it with its
    // room, and a listed room that never existed gets not_in_room.
    let (ok, reply, _) = h.resume(4, "alice", sid, [7; 16], &[("r", 0), ("never", 0)]);
    assert!(ok);
    match reply {
        Reply::Ok(Response::Resumed { session_id, session_resumed, rooms, .. }) => {
            assert_eq!((session_id, session_resumed), (sid, true));
            assert_eq!(rooms.len(), 2, "{rooms:?}");
            assert!(rooms[0].room_id == "r" && rooms[0].rejoined, "{rooms:?}");
            assert_eq!(rooms[1].room_id, "never");
            assert!(!rooms[1].rejoined);
            assert_eq!((rooms[1].error_code, rooms[1].last_seq), (3003, 0));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn resume_while_the_old_connection_lingers_closes_it() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    let sid = h.session_of(1);
    let (ok, _, _) = h.resume(2, "alice", sid, [7; 16], &[]);
    assert!(ok);
    assert_eq!(h.take(1), vec![Got::Close(Some(ErrorCode::SessionResumed))]);
    // The old connection's late disconnect changes nothing.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    assert_eq!(h.session_of(2), sid);
}

#[test]
fn a_replay_larger_than_its_budget_keeps_the_newest_and_says_so() {
    let mut h =
        Harness::new(Limits { max_replay_bytes: 1_000, rate_limit_per_s: 0, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for _ in 0..10 {
        h.send_with(1, "r", MessageBody::Text("x".repeat(300)), None);
    }
    let (ok, reply, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    let seqs = replayed_seqs(&got);
    assert!(!seqs.is_empty() && seqs.len() < 10, "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), 10, "the newest are kept");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gaps: {seqs:?}");
    match reply {
        Reply::Ok(Response::Resumed { rooms, .. }) => {
            assert!(!rooms[0].recovered);
            assert_eq!(rooms[0].replayed as usize, seqs.len());
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn resumption_replays_medium_and_high_but_not_low() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for (i, prio) in
        [Priority::Low, Priority::Medium, Priority::Low, Priority::High].into_iter().enumerate()
    {
        let req = Request::SendRoomMessage {
            room_id: "r".into(),
            body: MessageBody::Text(i.to_string()),
            priority: prio,
            client_msg_id: None,
        };
        h.ok(1, req);
    }
    let (ok, _, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    assert_eq!(replayed_seqs(&got), vec![2, 4], "low is best effort and is not replayed");
}

#[test]
fn resumption_does_not_replay_the_sessions_own_messages() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.send(2, "r", "mine 1");
    h.send(2, "r", "mine 2");
    h.send(1, "r", "hers 3");
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    h.send(1, "r", "hers 4");
    // Bob only ever received seq 3 live; from 0 he gets everything but his own.
    let (ok, _, got) = h.resume(3, "bob", sid, [7; 16], &[("r", 0)]);
    assert!(ok);
    assert_eq!(replayed_seqs(&got), vec![3, 4], "his own messages are not sent back to him");
}

#[test]
fn a_token_warns_before_expiry_and_renewal_extends_the_session() {
    let mut h = Harness::plain();
    let now_s = h.now().unix_ms / 1000;
    let short = h.mint("alice", now_s, now_s + 60).unwrap();
    let login = Login { token: short, ..h.login_request("alice") };
    let (ok, _, _) = h.try_login(1, login);
    assert!(ok);
    h.tick(29_000);
    assert_eq!(h.events(1), vec![]);
    h.tick(2_000);
    assert_eq!(h.events(1), vec![Event::TokenWillExpire { expires_at_s: now_s + 60 }]);
    // Renewal: a token for another user is refused; a good one moves the expiry.
    let other = h.mint("bob", now_s, now_s + 600).unwrap();
    assert_eq!(h.fail(1, Request::RenewToken { token: other }), ErrorCode::TokenInvalid);
    let fresh = h.mint("alice", now_s, now_s + 600).unwrap();
    assert!(matches!(
        h.ok(1, Request::RenewToken { token: fresh }),
        Response::TokenRenewed { token_expires_at_s } if token_expires_at_s == now_s + 600
    ));
    h.tick(60_000);
    assert_eq!(h.take(1), vec![], "the old expiry no longer ends the session");
    assert_eq!(h.core.session_count(), 1);
}

#[test]
fn a_session_whose_token_expires_is_closed_with_token_expired() {
    let mut h = Harness::plain();
    h.login(2, "bob");
    let now_s = h.now().unix_ms / 1000;
    let short = h.mint("alice", now_s, now_s + 40).unwrap();
    let (ok, _, _) = h.try_login(1, Login { token: short, ..h.login_request("alice") });
    assert!(ok);
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);
    h.tick(40_000);
    let got = h.take(1);
    assert!(
        got.contains(&Got::Event(None, Event::TokenWillExpire { expires_at_s: now_s + 40 })),
        "{got:?}"
    );
    assert!(got.contains(&Got::Close(Some(ErrorCode::TokenExpired))), "{got:?}");
    h.tick(50);
    assert_eq!(h.events(2), vec![left("r", &["alice"], LeaveReason::Kicked)]);
    assert_eq!(h.core.session_count(), 1);
}

#[test]
fn operations_are_rate_limited_per_user() {
    let mut h = Harness::new(Limits { ops_rate_per_s: 10, ops_burst: 5, ..Limits::default() });
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    for _ in 0..4 {
        h.ok(1, Request::QueryJoinedRooms);
    }
    assert_eq!(h.fail(1, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
    assert_eq!(
        h.fail(1, Request::JoinRoom { room_id: "r".into() }),
        ErrorCode::OperationRateLimited
    );
    // Messages have their own limit, and another user his own bucket.
    h.send(1, "r", "still allowed");
    h.ok(2, Request::QueryJoinedRooms);
    // 100 ms refills one operation.
    h.advance(100);
    h.ok(1, Request::QueryJoinedRooms);
    assert_eq!(h.fail(1, Request::QueryJoinedRooms), ErrorCode::OperationRateLimited);
    // Logout is never refused.
    assert!(matches!(h.ok(1, Request::Logout), Response::LoggedOut));
}

#[test]
fn logins_and_operations_are_rate_limited_per_address_and_the_bucket_outlives_the_connections() {
    let limits = Limits {
        address_ops_rate_per_s: 1,
        address_ops_burst: 3,
        ops_rate_per_s: 0,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    let now = h.now();
    // Connections 1-3 share an address, 4 has its own.
    for conn in 1..=3 {
        h.core.handle_connect(now, conn, 77);
    }
    h.core.handle_connect(now, 4, 88);
    h.login(1, "alice");
    h.login(2, "bob");
    h.ok(1, Request::QueryJoinedRooms);
    let (ok, reply, rest) = h.try_login(3, h.login_request("carol"));
    assert!(!ok);
    assert!(matches!(reply, Reply::Err(e) if e.code == ErrorCode::AddressRateLimited.as_u16()));
    assert_eq!(rest, vec![Got::Close(Some(ErrorCode::AddressRateLimited))]);
    assert_eq!(h.fail(2, Request::QueryJoinedRooms), ErrorCode::AddressRateLimited);
    h.login(4, "dave");
    // Hanging up and coming back does not refill the bucket...
    for conn in 1..=3 {
        let now = h.now();
        h.core.handle_disconnect(now, conn);
    }
    h.pump();
    h.take(1);
    h.take(2);
    assert_eq!(h.core.address_count(), 2);
    let now = h.now();
    h.core.handle_connect(now, 5, 77);
    let (ok, _, _) = h.try_login(5, h.login_request("carol"));
    assert!(!ok, "the address's bucket is still empty");
    let now = h.now();
    h.core.handle_protocol_close(now, 5);
    // ...but once it has refilled, an address with no connection is forgotten.
    h.tick(3_000);
    assert_eq!(h.core.address_count(), 1);
}

/// Alice and Bob in `rooms` rooms; Bob's connection is lost, then Alice sends each room
/// `per_room[i]` messages of `body` bytes. Returns Bob's held session.
fn missed_in_rooms(h: &mut Harness, per_room: &[usize], body: usize) -> u64 {
    h.login(1, "alice");
    h.login(2, "bob");
    for r in 0..per_room.len() {
        h.create(1, &format!("r{r}"), 0);
        h.join(2, &format!("r{r}"));
    }
    let sid = h.session_of(2);
    let now = h.now();
    h.core.handle_disconnect(now, 2);
    h.pump();
    for (r, n) in per_room.iter().enumerate() {
        for _ in 0..*n {
            h.send_with(1, &format!("r{r}"), MessageBody::Text("x".repeat(body)), None);
        }
    }
    h.take(1);
    sid
}

/// Runs a Resume on connection 3 and adds up what it queued for that connection: (bytes of
/// every frame, bytes of replayed messages, the answer's rooms, seqs replayed per room key).
fn resume_sized(
    h: &mut Harness,
    sid: u64,
    rooms: &[(&str, u64)],
) -> (usize, usize, Vec<RoomRecovery>, BTreeMap<u64, Vec<u64>>) {
    let now = h.now();
    let resume = h.resume_request("bob", sid, [7; 16], rooms);
    let ok = h.core.handle_resume(now, 3, 99, resume, [9; 16]).logged_in();
    assert!(ok);
    let (mut all, mut replay, mut answer, mut seqs) = (0, 0, None, BTreeMap::new());
    while let Some(out) = h.core.poll_output() {
        match out {
            Output::Push { conn: 3, room: Some(key), frame } => {
                all += frame.len();
                replay += frame.len();
                match decode_frame::<Event>(&frame) {
                    Event::RoomMessage(m) => seqs.entry(key.0).or_insert_with(Vec::new).push(m.seq),
                    e => panic!("{e:?}"),
                }
            }
            Output::Reply { conn: 3, frame } => {
                all += frame.len();
                let r: ResponseFrame = decode_frame(&frame);
                match r.reply {
                    Reply::Ok(Response::Resumed { rooms, .. }) => answer = Some(rooms),
                    r => panic!("{r:?}"),
                }
            }
            Output::OpenRoomStream { conn: 3, header, low_header, .. } => {
                all += header.len() + low_header.len()
            }
            _ => {}
        }
    }
    (all, replay, answer.expect("a Resumed answer"), seqs)
}

#[test]
fn five_busy_rooms_resume_with_one_replay_that_fits_the_queue() {
    // Five rooms with 2.4 MiB missed each: 12 MiB in all, over the 8 MiB outbound queue.
    let limits = Limits { rate_limit_per_s: 0, ..Limits::default() };
    // The server's default `[queue] max_bytes`, which the core is told in its limits.
    let (queue, budget) = (8 * 1024 * 1024, limits.max_replay_bytes);
    let mut h = Harness::new(limits);
    let sid = missed_in_rooms(&mut h, &[80; 5], 32_000);
    let listed: Vec<(String, u64)> = (0..5).map(|r| (format!("r{r}"), 0)).collect();
    let listed: Vec<(&str, u64)> = listed.iter().map(|(r, s)| (r.as_str(), *s)).collect();
    let (all, replay, rooms, seqs) = resume_sized(&mut h, sid, &listed);
    assert!(all <= queue / 2, "{all} bytes queued by one Resume, over half the {queue} queue");
    assert!(replay <= budget, "a replay of {replay} bytes, over the session's {budget}");
    assert_eq!(rooms.len(), 5);
    for (room, seqs) in rooms.iter().zip(seqs.values()) {
        assert!(room.rejoined && !room.recovered, "{room:?}");
        assert_eq!(room.replayed as usize, seqs.len());
        assert_eq!(*seqs.last().unwrap(), 80, "the newest are kept in {}", room.room_id);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gaps: {seqs:?}");
    }
    // Shared evenly: every room gets a fifth of the budget, give or take one message.
    let counts: Vec<usize> = seqs.values().map(Vec::len).collect();
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
}

#[test]
fn quiet_rooms_recover_whole_and_the_busy_room_gets_the_rest_of_the_budget() {
    let limits = Limits { rate_limit_per_s: 0, ..Limits::default() };
    let budget = limits.max_replay_bytes;
    let mut h = Harness::new(limits);
    let sid = missed_in_rooms(&mut h, &[3, 3, 200, 3, 3], 16_000);
    let listed = [("r0", 0), ("r1", 0), ("r2", 0), ("r3", 0), ("r4", 0)];
    let (_, replay, rooms, seqs) = resume_sized(&mut h, sid, &listed);
    let recovered: Vec<bool> = rooms.iter().map(|r| r.recovered).collect();
    assert_eq!(recovered, [true, true, false, true, true]);
    let counts: Vec<usize> = seqs.values().map(Vec::len).collect();
    assert_eq!((counts[0], counts[1], counts[3], counts[4]), (3, 3, 3, 3));
    // The busy room fills what the quiet ones left, up to one message short of the budget.
    assert!(replay <= budget && replay + 16_100 > budget, "{replay} of {budget}");
    assert_eq!(*seqs.values().nth(2).unwrap().last().unwrap(), 200);
}

#[test]
fn a_resume_listing_too_many_rooms_is_refused_and_duplicates_are_answered_once() {
    let mut h = Harness::plain();
    let sid = missed_in_rooms(&mut h, &[2], 10);
    let many: Vec<String> = (0..4_000).map(|i| format!("x{i:07}")).collect();
    let listed: Vec<(&str, u64)> = many.iter().map(|r| (r.as_str(), 0)).collect();
    let (ok, reply, _) = h.resume(3, "bob", sid, [7; 16], &listed);
    assert!(!ok);
    match reply {
        Reply::Err(e) => assert_eq!(e.code, ErrorCode::InvalidRequest.as_u16(), "{e:?}"),
        r => panic!("{r:?}"),
    }
    // The session is still held: a Resume within the bound, with duplicates, takes it over.
    let listed = [("r0", 0), ("gone", 0), ("r0", 2), ("gone", 5)];
    let (ok, reply, got) = h.resume(4, "bob", sid, [7; 16], &listed);
    assert!(ok, "{reply:?}");
    match reply {
        Reply::Ok(Response::Resumed { rooms, session_resumed: true, .. }) => {
            let ids: Vec<&str> = rooms.iter().map(|r| r.room_id.as_str()).collect();
            assert_eq!(ids, ["r0", "gone"]);
            assert_eq!(rooms[0].replayed, 2, "the first mention of a room counts");
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(replayed_seqs(&got), vec![1, 2]);
}
