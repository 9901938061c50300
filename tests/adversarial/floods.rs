//! Floods: connections over the caps, handshakes past the Retry threshold, 10,000 joins, the
//! operation rate limits, a subscriber that never reads, and a crowd of misbehaving clients
//! against the log limiter.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::join_all;
use huddle::client::{client_endpoint, quic_client_config, Client};
use huddle::server::LOG_LINES_PER_WINDOW;
use huddle::wire::{
    encode_frame, ErrorCode, Event, MessageBody, Priority, Reply, Request, RequestFrame, Response,
    RoomConfig, RoomInfo,
};

use super::arena::*;

/// Opens `n` raw connections at once; returns how many were refused by the server (QUIC
/// CONNECTION_REFUSED) and the connections that were accepted.
async fn connect_many(arena: &Arena, n: usize) -> (usize, Vec<quinn::Connection>) {
    let qc = quic_client_config(&arena.client_config("flood")).unwrap();
    let endpoint = client_endpoint(arena.addr).unwrap();
    let attempts = (0..n).map(|_| {
        let connecting = endpoint.connect_with(qc.clone(), arena.addr, "localhost").unwrap();
        tokio::time::timeout(Duration::from_secs(5), connecting)
    });
    let mut refused = 0;
    let mut accepted = Vec::new();
    for r in join_all(attempts).await {
        match r.expect("every attempt is answered within 5 s") {
            Ok(c) => accepted.push(c),
            Err(quinn::ConnectionError::ConnectionClosed(c))
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                refused += 1
            }
            Err(e) => panic!("{e}"),
        }
    }
    (refused, accepted)
}

#[tokio::test]
async fn a_connection_flood_over_the_per_address_cap_is_refused_quickly() {
    let arena = Arena::start_with(|c| c.transport.max_connections_per_ip = 6).await;
    // Alice and bob hold two of the address's six.
    let started = Instant::now();
    let (refused, accepted) = connect_many(&arena, 20).await;
    assert_eq!((refused, accepted.len()), (16, 4));
    assert!(started.elapsed() < Duration::from_secs(3), "refused quickly");
    assert_eq!(arena.guard.refused.load(Ordering::Relaxed), 16);
    arena.alive().await;
    // Room again once they are gone.
    for c in &accepted {
        c.close(0u32.into(), b"bye");
    }
    drop(accepted);
    let mut ok = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, more) = connect_many(&arena, 1).await;
        if more.len() == 1 {
            ok += 1;
            break;
        }
    }
    assert_eq!(ok, 1, "a slot frees up when a connection ends");
    arena.finish().await;
}

#[tokio::test]
async fn a_connection_flood_over_the_total_cap_is_refused_and_handshakes_count() {
    let arena = Arena::start_with(|c| {
        c.transport.max_connections = 5;
        c.transport.max_connections_per_ip = 0;
    })
    .await;
    let (refused, accepted) = connect_many(&arena, 12).await;
    assert_eq!((refused, accepted.len()), (9, 3));
    arena.finish().await;
}

#[tokio::test]
async fn a_handshake_flood_past_the_threshold_is_made_to_validate_its_address() {
    let arena = Arena::start_with(|c| c.transport.retry_above_handshakes_per_s = 3).await;
    let (refused, accepted) = connect_many(&arena, 24).await;
    // Every honest client follows the Retry and gets in; most were asked to.
    assert_eq!((refused, accepted.len()), (0, 24));
    let retries = arena.guard.retries.load(Ordering::Relaxed);
    assert!((21 - 3..=24).contains(&retries), "{retries} retries");
    // A client of the library gets in the same way, and the room carries on.
    let carol = huddle::client::Client::connect(arena.client_config("carol")).await.unwrap();
    carol.join_room("r").await.unwrap();
    arena.finish().await;
}

#[tokio::test]
async fn joining_10000_rooms_gets_five_and_then_limit_and_rate_codes() {
    let arena = Arena::start().await;
    let (raw, mut ctl) = arena.raw_logged_in("mallory").await;
    let n = 10_000u32;
    let mut bytes = Vec::new();
    for i in 0..n {
        let info = RoomInfo { room_id: format!("flood-{i}"), room_name: String::new() };
        let request = Request::EnterRoom { info, config: RoomConfig::default() };
        bytes.extend_from_slice(&encode_frame(&RequestFrame { request_id: 10 + i, request }));
    }
    let Control { send, recv } = &mut ctl;
    let write = async { send.write_all(&bytes).await.unwrap() };
    let read = async {
        let (mut ok, mut full, mut limited) = (0, 0, 0);
        for i in 0..n {
            let r = response_on(recv).await;
            assert_eq!(r.request_id, 10 + i);
            match r.reply {
                Reply::Ok(Response::RoomEntered(s)) => {
                    assert!(s.created);
                    ok += 1;
                }
                Reply::Err(e) if e.code == ErrorCode::RoomLimitReached.as_u16() => full += 1,
                Reply::Err(e) if e.code == ErrorCode::OperationRateLimited.as_u16() => limited += 1,
                r => panic!("{r:?}"),
            }
        }
        (ok, full, limited)
    };
    let ((), (ok, full, limited)) = tokio::join!(write, read);
    assert_eq!(ok, 5, "rooms_per_user");
    assert!(full >= 150, "{full} room_limit_reached");
    assert!(limited >= 9_000, "{limited} operation_rate_limited");
    // Messages are not operations: mallory may still talk in a room of its own.
    let msg = Request::SendRoomMessage {
        room_id: "flood-0".into(),
        body: MessageBody::Text("hi".into()),
        priority: Priority::Medium,
        client_msg_id: None,
    };
    ctl.request(3, msg).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::MessageSent { .. })));
    raw.assert_open_after(0).await;
    arena.finish().await;
}

#[tokio::test]
async fn operations_from_one_address_are_rate_limited_logins_included() {
    let arena = Arena::start_with(|c| {
        c.limits.address_ops_rate_per_s = 1;
        c.limits.address_ops_burst = 40;
    })
    .await;
    // Alice and bob used four (two logins, a create, a join); mallory's login a fifth.
    let (raw, mut ctl) = arena.raw_logged_in("mallory").await;
    let mut codes = Vec::new();
    for i in 0..50 {
        ctl.request(10 + i, Request::QueryJoinedRooms).await;
        codes.push(match ctl.response().await.reply {
            Reply::Ok(_) => 0,
            Reply::Err(e) => e.code,
        });
    }
    let ok = codes.iter().filter(|&&c| c == 0).count();
    assert!((35..=37).contains(&ok), "{ok} answered");
    assert!(codes[ok..].iter().all(|&c| c == ErrorCode::AddressRateLimited.as_u16()), "{codes:?}");
    raw.assert_open_after(0).await;
    // A new login from the address is refused too, and closed.
    let late = arena.raw().await;
    let mut late_ctl = late.control().await;
    late_ctl.request(1, Request::Login(arena.login("trudy"))).await;
    assert_eq!(late_ctl.error_code().await, ErrorCode::AddressRateLimited.as_u16());
    late.assert_closed_with(ErrorCode::AddressRateLimited).await;
    // Messages are not counted: the room carries on.
    arena.finish().await;
}

#[tokio::test]
async fn leaving_and_rejoining_does_not_refill_the_message_rate_limit() {
    let (rate, burst) = (20u32, 40u32);
    let arena = Arena::start_with(|c| {
        c.limits.rate_limit_per_s = rate;
        c.limits.rate_limit_burst = burst;
    })
    .await;
    let mallory = Client::connect(arena.client_config("mallory")).await.unwrap();
    mallory.join_room("r").await.unwrap();
    let start = Instant::now();
    let (mut accepted, mut refused, mut cycles) = (0u64, 0u64, 0u64);
    let mut in_room = true;
    while start.elapsed() < Duration::from_millis(1_500) {
        if !in_room {
            match mallory.join_room("r").await {
                Ok(_) => in_room = true,
                Err(e) if e.code() == Some(ErrorCode::OperationRateLimited) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Err(e) => panic!("{e}"),
            }
        }
        match mallory.send_text("r", "spam", Priority::Low).await {
            Ok(_) => accepted += 1,
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => {
                refused += 1;
                match mallory.leave_room("r").await {
                    Ok(()) => {
                        in_room = false;
                        cycles += 1;
                    }
                    Err(e) if e.code() == Some(ErrorCode::OperationRateLimited) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bound = f64::from(burst) + f64::from(rate) * secs;
    eprintln!(
        "leave+join cycling for {secs:.2} s: {accepted} messages accepted, {refused} rate_limited, \
         {cycles} cycles (the limit allows {bound:.0})"
    );
    assert!(cycles > 0 && refused > 0, "the attack reached the limit");
    assert!(accepted as f64 <= bound, "{accepted} messages accepted, the limit allows {bound:.0}");
    mallory.shutdown().await;
    arena.finish().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_off_and_memory_stays_bounded() {
    let queue = 2 * 1024 * 1024;
    let arena = Arena::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.queue.max_bytes = queue;
    })
    .await;
    let (raw, _ctl) = arena.raw_stalled_in_room("mallory", 32_768).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Published: more than the memory bound, so that a server queueing it all would fail.
    let (n, size) = (3_200u64, 32 * 1024);
    assert!(n * size as u64 > MEMORY_BOUND * 3 / 2);
    let alice = arena.alice.clone();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let body = MessageBody::Custom { sub_type: 1, data: vec![i as u8; size] };
            alice.send_message("r", body, Priority::Medium, None).await.unwrap();
        }
    });
    let mut next = None;
    let mut got = 0;
    while got < n {
        match next_event(&arena.bob).await {
            Event::RoomMessage(m) => {
                assert!(next.is_none_or(|s| m.seq == s), "in order, no gaps");
                next = Some(m.seq + 1);
                got += 1;
            }
            Event::MembersJoined { .. } | Event::MembersLeft { .. } => {}
            e => panic!("{e:?}"),
        }
    }
    sender.await.unwrap();
    raw.assert_closed_with(ErrorCode::SlowConsumer).await;
    assert_eq!(arena.stats.slow_consumers.load(Ordering::Relaxed), 1);
    arena.finish().await;
}

#[tokio::test]
async fn a_crowd_of_misbehaving_clients_is_closed_and_logged_a_bounded_number_of_times() {
    let arena = Arena::start().await;
    let before = arena.guard.misbehaving.load(Ordering::Relaxed);
    let logged_before = arena.guard.misbehaving_logged.load(Ordering::Relaxed);
    let started = Instant::now();
    let n = 60;
    let attackers = (0..n).map(|_| async {
        let raw = arena.raw().await;
        let mut ctl = raw.control().await;
        ctl.write(&frame(&[0xff, 0xff])).await;
        raw.assert_closed_with(ErrorCode::MalformedFrame).await;
        raw
    });
    let raws = join_all(attackers).await;
    let windows = started.elapsed().as_secs() + 2;
    // Closed counters settle as each connection task ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while arena.guard.misbehaving.load(Ordering::Relaxed) < before + n && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(arena.guard.misbehaving.load(Ordering::Relaxed), before + n);
    let logged = arena.guard.misbehaving_logged.load(Ordering::Relaxed) - logged_before;
    assert!(logged >= 1, "at least one line");
    assert!(logged <= u64::from(LOG_LINES_PER_WINDOW) * windows, "{logged} lines");
    assert!(logged < n, "{logged} lines for {n} clients");
    drop(raws);
    arena.finish().await;
}

/// A client that allows the server a single unidirectional stream (its session stream) and
/// joins and leaves a room over and over: each join starts a writer that waits for a stream the
/// client never grants. Once the room is left, that writer gives up: the cycles leave nothing
/// behind (before: one stuck writer per cycle, 2.4 KB each, without bound).
#[tokio::test]
async fn join_leave_cycles_without_stream_credit_leave_no_writers_behind() {
    let arena = Arena::start().await;
    let waiting = || arena.stats.waiting_for_stream.load(Ordering::Relaxed);
    let before = waiting();
    let raw = arena
        .raw_with(|tc| {
            tc.max_concurrent_uni_streams(1u32.into());
        })
        .await;
    let mut ctl = raw.control().await;
    ctl.request(1, Request::Login(arena.login("mallory"))).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::LoggedIn { .. })));
    const CYCLES: u32 = 60;
    for i in 0..CYCLES {
        ctl.request(10 + 2 * i, Request::JoinRoom { room_id: "r".into() }).await;
        assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomEntered(_))));
        ctl.request(11 + 2 * i, Request::LeaveRoom { room_id: "r".into() }).await;
        assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomLeft { .. })));
    }
    // The last leave's writer gives up as soon as it is scheduled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while waiting() > before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = waiting() - before;
    eprintln!("writers still waiting for a stream after {CYCLES} join/leave cycles: {left}");
    assert_eq!(left, 0, "writers left waiting after {CYCLES} join/leave cycles");
    // Joined again, the room's writer waits (the client still grants no stream), and only it.
    ctl.request(500, Request::JoinRoom { room_id: "r".into() }).await;
    assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::RoomEntered(_))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(waiting() - before, 1);
    drop(ctl);
    raw.conn.close(0u32.into(), b"");
    arena.finish().await;
}
