//! Room messages against a real server, through the real client library.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use common::*;
use huddle::client::{Client, ClientError};
use huddle::wire::{ErrorCode, Event, HistoryAnchor, MessageBody, Priority, RoomMessage};

fn code<T: Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// The next room message, skipping member events.
async fn next_message(c: &Client) -> RoomMessage {
    loop {
        match next_event(c, 5).await {
            Event::RoomMessage(m) => return m,
            Event::MembersJoined { .. } | Event::MembersLeft { .. } => {}
            e => panic!("{e:?}"),
        }
    }
}

/// A room "r" made by alice, with the other users joined; member events already consumed.
async fn room_with(server: &TestServer, users: &[&str]) -> Vec<Client> {
    let mut clients = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let c = server.client(u).await;
        if i == 0 {
            c.create_room(info("r"), cfg()).await.unwrap();
        } else {
            c.join_room("r").await.unwrap();
        }
        clients.push(c);
    }
    // Everyone who was there before the last join hears about it; then the room is quiet.
    for c in &clients[..clients.len() - 1] {
        loop {
            match next_event(c, 2).await {
                Event::MembersJoined { members, .. }
                    if members.iter().any(|m| m.user_id == users[users.len() - 1]) =>
                {
                    break
                }
                Event::MembersJoined { .. } => {}
                e => panic!("{e:?}"),
            }
        }
    }
    clients
}

#[tokio::test]
async fn sender_gets_an_ack_and_no_copy() {
    let server = TestServer::start().await;
    let c = room_with(&server, &["alice", "bob", "carol"]).await;
    let ack = c[0].send_text("r", "hello", Priority::Medium).await.unwrap();
    assert_eq!(ack.seq, 1);
    assert!(!ack.duplicate);
    let ack2 = c[1]
        .send_message(
            "r",
            MessageBody::Custom { sub_type: 7, data: vec![1, 2] },
            Priority::High,
            None,
        )
        .await
        .unwrap();
    assert_eq!(ack2.seq, 2);
    assert_ne!(ack.message_id, ack2.message_id);
    let m = next_message(&c[1]).await;
    assert_eq!((m.seq, m.sender.as_str(), m.room_id.as_str()), (1, "alice", "r"));
    assert_eq!(m.body, MessageBody::Text("hello".into()));
    assert_eq!((m.message_id, m.timestamp_ms), (ack.message_id, ack.timestamp_ms));
    assert_eq!(m.priority, Priority::Medium);
    let m = next_message(&c[0]).await;
    assert_eq!((m.seq, m.sender.as_str()), (2, "bob"));
    assert_eq!(m.body, MessageBody::Custom { sub_type: 7, data: vec![1, 2] });
    let seqs = [next_message(&c[2]).await.seq, next_message(&c[2]).await.seq];
    assert_eq!(seqs, [1, 2]);
    no_event(&c[0], 200).await;
    no_event(&c[1], 0).await;
    no_event(&c[2], 0).await;
    // A non-member cannot send, and cannot tell a missing room from one it is not in.
    let dave = server.client("dave").await;
    assert_eq!(code(dave.send_text("r", "x", Priority::Medium).await), ErrorCode::NotInRoom);
    assert_eq!(code(dave.send_text("nope", "x", Priority::Medium).await), ErrorCode::NotInRoom);
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_messages_arrive_once_in_order() {
    const N: u64 = 1_000;
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let clients = room_with(&server, &["alice", "bob", "carol", "dave"]).await;
    let mut clients = clients.into_iter();
    let alice = clients.next().unwrap();
    let receivers: Vec<_> = clients
        .map(|c| {
            tokio::spawn(async move {
                let mut seqs = Vec::with_capacity(N as usize);
                while seqs.len() < N as usize {
                    let m = next_message(&c).await;
                    assert_eq!(m.sender, "alice");
                    assert_eq!(m.body, MessageBody::Text(format!("m{}", m.seq)));
                    seqs.push(m.seq);
                }
                no_event(&c, 200).await;
                // Handed back so that the connection outlives the task.
                (seqs, c)
            })
        })
        .collect();
    let mut acks = Vec::new();
    // Bodies carry their seq, so sends are sequential (each awaits its ack).
    for i in 1..=N {
        let ack = alice.send_text("r", &format!("m{i}"), Priority::Medium).await.unwrap();
        acks.push(ack.seq);
    }
    assert_eq!(acks, (1..=N).collect::<Vec<_>>());
    let mut kept = Vec::new();
    for r in receivers {
        let (seqs, client) =
            tokio::time::timeout(Duration::from_secs(20), r).await.unwrap().unwrap();
        kept.push(client);
        assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "every message once, in order, no gap");
    }
    no_event(&alice, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn history_after_sending() {
    let server = TestServer::start().await;
    let c = room_with(&server, &["alice", "bob"]).await;
    for i in 1..=5 {
        c[0].send_text("r", &format!("m{i}"), Priority::Low).await.unwrap();
    }
    let seqs =
        |p: &huddle::client::HistoryPage| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let p = c[1].query_history("r", HistoryAnchor::Latest, 2).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![4, 5], true));
    assert_eq!(p.messages[1].body, MessageBody::Text("m5".into()));
    assert_eq!(p.messages[1].sender, "alice");
    let p = c[1].query_history("r", HistoryAnchor::BeforeSeq(4), 2).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![2, 3], true));
    let p = c[1].query_history("r", HistoryAnchor::BeforeSeq(2), 10).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![1], false));
    let p = c[1].query_history("r", HistoryAnchor::AfterSeq(3), 10).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![4, 5], false));
    let p = c[1].query_history("r", HistoryAnchor::AfterSeq(0), 3).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![1, 2, 3], true));
    let p = c[1].query_history("r", HistoryAnchor::Latest, 100).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![1, 2, 3, 4, 5], false));
    assert_eq!(
        code(c[1].query_history("r", HistoryAnchor::Latest, 0).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(c[1].query_history("r", HistoryAnchor::Latest, 101).await),
        ErrorCode::InvalidRequest
    );
    let eve = server.client("eve").await;
    assert_eq!(code(eve.query_history("r", HistoryAnchor::Latest, 10).await), ErrorCode::NotInRoom);
    // A late joiner reads what was said before it came.
    let st = eve.join_room("r").await.unwrap();
    assert_eq!(st.last_seq, 5);
    let p = eve.query_history("r", HistoryAnchor::Latest, 100).await.unwrap();
    assert_eq!(seqs(&p), vec![1, 2, 3, 4, 5]);
    server.stop().await;
}

#[tokio::test]
async fn message_size_limit() {
    let server = TestServer::start().await;
    let c = room_with(&server, &["alice", "bob"]).await;
    let max = 32 * 1024;
    let big = "a".repeat(max);
    let ack = c[0].send_text("r", &big, Priority::Medium).await.unwrap();
    assert_eq!(ack.seq, 1);
    assert_eq!(
        code(c[0].send_text("r", &"a".repeat(max + 1), Priority::Medium).await),
        ErrorCode::MessageTooLarge
    );
    let data = MessageBody::Custom { sub_type: 1, data: vec![9; max + 1] };
    assert_eq!(
        code(c[0].send_message("r", data, Priority::Medium, None).await),
        ErrorCode::MessageTooLarge
    );
    let m = next_message(&c[1]).await;
    assert_eq!(m.body, MessageBody::Text(big));
    no_event(&c[1], 200).await;
    // The connection is fine after the refusals.
    assert_eq!(c[0].send_text("r", "small", Priority::Medium).await.unwrap().seq, 2);
    server.stop().await;
}

#[tokio::test]
async fn rate_limit() {
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 2;
        c.limits.rate_limit_burst = 3;
    })
    .await;
    let c = room_with(&server, &["alice", "bob"]).await;
    for _ in 0..3 {
        c[0].send_text("r", "x", Priority::Medium).await.unwrap();
    }
    assert_eq!(code(c[0].send_text("r", "x", Priority::Medium).await), ErrorCode::RateLimited);
    // Per user: bob has his own budget.
    c[1].send_text("r", "y", Priority::Medium).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c[0].send_text("r", "x", Priority::Medium).await.unwrap().seq, 5);
    // Bob got alice's three plus the one after the pause: nothing refused leaked.
    let seqs: Vec<u64> = [
        next_message(&c[1]).await.seq,
        next_message(&c[1]).await.seq,
        next_message(&c[1]).await.seq,
        next_message(&c[1]).await.seq,
    ]
    .into();
    assert_eq!(seqs, vec![1, 2, 3, 5]);
    no_event(&c[1], 100).await;
    server.stop().await;
}

#[tokio::test]
async fn client_msg_id_makes_a_retry_idempotent() {
    let server = TestServer::start().await;
    let c = room_with(&server, &["alice", "bob"]).await;
    let body = || MessageBody::Text("once".into());
    let first =
        c[0].send_message("r", body(), Priority::Medium, Some("id-1".into())).await.unwrap();
    assert!(!first.duplicate);
    let again =
        c[0].send_message("r", body(), Priority::Medium, Some("id-1".into())).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.message_id, again.seq, again.timestamp_ms),
        (first.message_id, first.seq, first.timestamp_ms)
    );
    let other =
        c[0].send_message("r", body(), Priority::Medium, Some("id-2".into())).await.unwrap();
    assert_eq!((other.seq, other.duplicate), (2, false));
    assert_eq!(next_message(&c[1]).await.seq, 1);
    assert_eq!(next_message(&c[1]).await.seq, 2);
    no_event(&c[1], 200).await;
    let p = c[1].query_history("r", HistoryAnchor::Latest, 100).await.unwrap();
    assert_eq!(p.messages.len(), 2, "the retry is not stored twice");
    assert_eq!(
        code(c[0].send_message("r", body(), Priority::Medium, Some("x".repeat(65))).await),
        ErrorCode::InvalidClientMsgId
    );
    server.stop().await;
}
