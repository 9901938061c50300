//! Priorities: low messages travel on their own lower-priority stream per room and never
//! disturb the exactly-once, in-order delivery of medium and high ones.

mod common;

use common::*;
use huddle::wire::{Event, Priority};

#[tokio::test]
async fn low_and_reliable_messages_travel_side_by_side() {
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = server.client("bob").await;
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
    while (low.len() + reliable.len()) < n as usize {
        match next_event(&bob, 10).await {
            Event::RoomMessage(m) if m.priority == Priority::Low => low.push(m.seq),
            Event::RoomMessage(m) => reliable.push(m.seq),
            e => panic!("{e:?}"),
        }
    }
    let expect = |r: u64| (1..=n).filter(|s| (s - 1) % 3 == r).collect::<Vec<_>>();
    assert_eq!(low, expect(0), "low messages in order among themselves");
    let mut want = expect(1);
    want.extend(expect(2));
    want.sort();
    assert_eq!(reliable, want, "medium and high exactly once, in seq order");
    no_event(&bob, 200).await;
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
