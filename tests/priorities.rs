//! Priorities: low messages travel on their own lower-priority stream per room and never
//! disturb the exactly-once, in-order delivery of medium and high ones.

mod common;

use common::*;
use huddle::wire::{Event, Priority};

/// Without datagrams every low message takes the room's low stream: all of them arrive, in
/// order, beside the medium and high ones. With datagrams (the default) a low message can take
/// either path, so the client passes on only those newer than the last it passed on: strictly
/// increasing seqs, never a duplicate; medium and high are unaffected either way.
#[tokio::test]
async fn low_and_reliable_messages_travel_side_by_side() {
    for datagrams in [false, true] {
        let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
        let alice = server.client("alice").await;
        alice.create_room(info("r"), cfg()).await.unwrap();
        let mut bob_cfg = server.config("bob");
        bob_cfg.low_datagrams = datagrams;
        let bob = huddle::client::Client::connect(bob_cfg).await.unwrap();
        bob.join_room("r").await.unwrap();
        let n = 300u64;
        for i in 0..n {
            let prio = match i % 3 {
                0 => Priority::Low,
                1 => Priority::Medium,
                _ => Priority::High,
            };
            alice.send_text("r", &i.to_string(), prio).await.unwrap();
        }
        let (mut low, mut reliable) = (Vec::new(), Vec::new());
        let last_low = n - 2; // seq of the last low message (i = 297)
        while reliable.len() < 200 || low.last() != Some(&last_low) {
            let event = if datagrams && reliable.len() == 200 {
                // The last low message may itself have been dropped as overtaken: stop at quiet.
                match client_event(&bob, std::time::Duration::from_millis(500)).await {
                    Ok(Some(huddle::client::ClientEvent::Event(e))) => e,
                    _ => break,
                }
            } else {
                next_event(&bob, 10).await
            };
            match event {
                Event::RoomMessage(m) if m.priority == Priority::Low => low.push(m.seq),
                Event::RoomMessage(m) => reliable.push(m.seq),
                e => panic!("{e:?}"),
            }
        }
        let expect = |r: u64| (1..=n).filter(|s| (s - 1) % 3 == r).collect::<Vec<_>>();
        if datagrams {
            assert!(low.windows(2).all(|w| w[0] < w[1]), "low seqs strictly increase: {low:?}");
            assert!(low.iter().all(|s| expect(0).contains(s)), "only low seqs: {low:?}");
            assert!(!low.is_empty());
        } else {
            assert_eq!(low, expect(0), "low messages in order among themselves");
            let sent = server.stats.datagrams_sent.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(sent, 0, "a client that does not accept datagrams gets none");
        }
        let mut want = expect(1);
        want.extend(expect(2));
        want.sort();
        assert_eq!(reliable, want, "medium and high exactly once, in seq order");
        no_event(&bob, 200).await;
    }
}

/// A low message to a member whose connection has nothing else waiting travels as a QUIC
/// datagram (one event frame); with `[transport] low_datagrams = false` it takes the stream.
#[tokio::test]
async fn a_low_message_on_a_quiet_connection_travels_as_a_datagram() {
    use std::sync::atomic::Ordering::Relaxed;
    for server_datagrams in [true, false] {
        let server = TestServer::start_with(|c| {
            c.limits.rate_limit_per_s = 0;
            c.transport.low_datagrams = server_datagrams;
        })
        .await;
        let alice = server.client("alice").await;
        alice.create_room(info("r"), cfg()).await.unwrap();
        let bob = server.client("bob").await;
        bob.join_room("r").await.unwrap();
        let _ = next_event(&alice, 5).await; // bob joined
                                             // Quiet: bob's streams have carried nothing for a while (his join's answer was last).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        for i in 0..5 {
            alice.send_text("r", &format!("typing {i}"), Priority::Low).await.unwrap();
            match next_event(&bob, 5).await {
                Event::RoomMessage(m) => {
                    assert_eq!(m.priority, Priority::Low);
                    assert_eq!(m.body, huddle::wire::MessageBody::Text(format!("typing {i}")));
                }
                e => panic!("{e:?}"),
            }
        }
        let sent = server.stats.datagrams_sent.load(Relaxed);
        if server_datagrams {
            assert_eq!(sent, 5, "each low message on the quiet connection went as a datagram");
        } else {
            assert_eq!(sent, 0);
        }
        // A message too large for one datagram takes the low stream.
        let before = server.stats.datagrams_sent.load(Relaxed);
        alice.send_text("r", &"x".repeat(4_000), Priority::Low).await.unwrap();
        match next_event(&bob, 5).await {
            Event::RoomMessage(m) => assert_eq!((m.seq, m.priority), (6, Priority::Low)),
            e => panic!("{e:?}"),
        }
        assert_eq!(server.stats.datagrams_sent.load(Relaxed), before);
        no_event(&bob, 200).await;
    }
}

/// Low messages never hold up medium ones under congestion, datagrams or not: behind a
/// 2 Mbit/s downlink, 20 medium messages sent after a 300 KB flood of low ones (more than a
/// second of the link) arrive ahead of most of the flood.
#[tokio::test]
async fn a_low_flood_does_not_hold_up_medium_messages_under_congestion() {
    let seed = 708;
    for datagrams in [true, false] {
        let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
        let proxy = proxy_between(&server, seed, Default::default(), narrow_downlink()).await;
        let alice = server.client("alice").await;
        alice.create_room(info("r"), cfg()).await.unwrap();
        let mut bob_cfg = server.config_via("bob", &proxy);
        bob_cfg.low_datagrams = datagrams;
        let bob = huddle::client::Client::connect(bob_cfg).await.unwrap();
        bob.join_room("r").await.unwrap();
        let body = "x".repeat(1_000);
        for _ in 0..300 {
            alice.send_text("r", &body, Priority::Low).await.unwrap();
        }
        for _ in 0..20 {
            alice.send_text("r", &body, Priority::Medium).await.unwrap();
        }
        let (mut low_first, mut medium) = (0, 0);
        while medium < 20 {
            match next_event(&bob, 20).await {
                Event::RoomMessage(m) if m.priority == Priority::Low => low_first += 1,
                Event::RoomMessage(_) => medium += 1,
                _ => {}
            }
        }
        // The link holds about 32 messages and the congestion window some more; in seq order
        // (low first) all 300 would come first.
        assert!(
            low_first < 60,
            "seed {seed}, datagrams {datagrams}: {low_first} low messages came before the medium ones"
        );
    }
}

/// The benchmark baseline (`single_event_stream`) still delivers every room's events in order,
/// and leaving one room does not cut the others off.
#[tokio::test]
async fn the_single_stream_baseline_delivers_every_room() {
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.single_event_stream = true;
    })
    .await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    for room in ["a", "b"] {
        alice.create_room(info(room), cfg()).await.unwrap();
        bob.join_room(room).await.unwrap();
    }
    for i in 0..20 {
        let room = if i % 2 == 0 { "a" } else { "b" };
        let prio = if i % 4 < 2 { Priority::Medium } else { Priority::Low };
        alice.send_text(room, &i.to_string(), prio).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        if let Event::RoomMessage(m) = next_event(&bob, 5).await {
            got.push((m.room_id, m.seq));
        }
    }
    for room in ["a", "b"] {
        let seqs: Vec<u64> = got.iter().filter(|(r, _)| r == room).map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "room {room}: one ordered stream");
    }
    bob.leave_room("a").await.unwrap();
    alice.send_text("b", "still here", Priority::Medium).await.unwrap();
    loop {
        match next_event(&bob, 5).await {
            Event::RoomMessage(m) => {
                assert_eq!((m.room_id.as_str(), m.seq), ("b", 11));
                break;
            }
            _ => continue,
        }
    }
}

/// Under congestion a high message goes ahead of other rooms' medium backlog: its room's stream
/// is raised above theirs while it carries one (within the room, seq order still holds).
#[tokio::test]
async fn a_high_message_overtakes_other_rooms_backlog_under_congestion() {
    let seed = 707;
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    // Bob's downlink: 2 Mbit/s with a short queue, so that the backlog waits at the server,
    // where stream priorities decide what goes next.
    let proxy = proxy_between(&server, seed, Default::default(), narrow_downlink()).await;
    let alice = server.client("alice").await;
    let bob = server.client_via("bob", &proxy).await;
    for room in ["a", "b"] {
        alice.create_room(info(room), cfg()).await.unwrap();
        bob.join_room(room).await.unwrap();
    }
    let body = "x".repeat(1_000);
    for _ in 0..200 {
        alice.send_text("a", &body, Priority::Medium).await.unwrap();
    }
    for _ in 0..100 {
        alice.send_text("b", &body, Priority::Medium).await.unwrap();
    }
    alice.send_text("b", "urgent", Priority::High).await.unwrap();
    // How much of room a's backlog reached bob before b's high message.
    let (mut a_before, mut b_seqs) = (0, Vec::new());
    loop {
        match next_event(&bob, 20).await {
            Event::RoomMessage(m) if m.room_id == "a" => a_before += 1,
            Event::RoomMessage(m) => {
                b_seqs.push(m.seq);
                if m.priority == Priority::High {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(b_seqs, (1..=101).collect::<Vec<_>>(), "seed {seed}: room b in seq order");
    // Sharing the link evenly, room a would have had about 100 more of its messages through
    // while b's 101 went; raised, b's stream goes first.
    assert!(a_before < 80, "seed {seed}: {a_before} of room a's 200 arrived first");
}

/// Sparse low messages (a typing indicator's rate) through 10% loss both ways travel as
/// datagrams: the ones that arrive arrive once and in order, and the losses are not retransmitted.
#[tokio::test]
async fn sparse_low_messages_under_loss_arrive_at_most_once_in_order() {
    use std::sync::atomic::Ordering::Relaxed;
    let seed = 709;
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let lossy = huddle::netsim::Impairment { loss: 0.10, ..Default::default() };
    let proxy = impaired_proxy(&server, seed, lossy).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = server.client_via("bob", &proxy).await;
    bob.join_room("r").await.unwrap();
    let _ = next_event(&alice, 5).await; // bob joined
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let n = 60u64;
    for i in 0..n {
        alice.send_text("r", &i.to_string(), Priority::Low).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    let mut seqs = Vec::new();
    while let Ok(Some(huddle::client::ClientEvent::Event(Event::RoomMessage(m)))) =
        client_event(&bob, std::time::Duration::from_millis(500)).await
    {
        seqs.push(m.seq);
    }
    let sent = server.stats.datagrams_sent.load(Relaxed);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seed {seed}: in order, once: {seqs:?}");
    assert!(seqs.iter().all(|s| (1..=n).contains(s)), "seed {seed}: {seqs:?}");
    assert!(sent >= n * 3 / 4, "seed {seed}: only {sent} of {n} went as datagrams");
    // About 10% are lost for good (datagrams are not retransmitted), and most get through.
    let got = seqs.len() as u64;
    assert!(got < n && got >= n / 2, "seed {seed}: {got} of {n} arrived");
}
