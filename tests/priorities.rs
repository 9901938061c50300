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
