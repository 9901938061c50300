//! Lossy mobile networks: blackholes shorter and longer than the idle timeout, outages longer
//! than the offline grace, through the seeded netsim proxy. Failures print their seed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use huddle::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, Ended, EventListener,
};
use huddle::netsim::{Impairment, Proxy};
use huddle::wire::{Event, LeaveReason, MessageBody, Priority};

async fn proxy(server: &TestServer, seed: u64, blackhole: (u64, u64)) -> Proxy {
    let imp = Impairment { blackholes: vec![blackhole], ..Default::default() };
    impaired_proxy(server, seed, imp).await
}

/// A client through the proxy with a short idle timeout, so that a blackhole kills it quickly.
async fn mobile(server: &TestServer, proxy: &Proxy, user: &str, idle_ms: u64) -> Client {
    let mut cfg = server.config_via(user, proxy);
    cfg.idle_timeout = Duration::from_millis(idle_ms);
    cfg.keep_alive = Duration::from_millis(idle_ms / 4);
    Client::connect(cfg).await.unwrap()
}

/// Every event until `n` room messages have arrived (or the deadline passes).
async fn collect(c: &Client, n: usize, secs: u64, seed: u64) -> (Vec<u64>, Vec<ClientEvent>) {
    let mut seqs = Vec::new();
    let mut others = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while seqs.len() < n {
        match client_event_at(c, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => seqs.push(m.seq),
            Ok(Some(e)) => others.push(e),
            Ok(None) => break,
            Err(_) => {
                panic!("seed {seed}: only {} of {n} messages; other events {others:?}", seqs.len())
            }
        }
    }
    (seqs, others)
}

/// Alice sends `n` medium messages to room "r", 50 ms apart: traffic for a watchdog to miss.
fn keep_busy(alice: Arc<Client>, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            alice.send_text("r", &format!("a{i}"), Priority::Medium).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Waits (at most 8 s) for `c` to report that it is reconnecting.
async fn until_reconnecting(c: &Client, seed: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        match client_event_at(c, deadline).await {
            Ok(Some(ClientEvent::Reconnecting { .. })) => return,
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: no reconnect: {other:?}"),
        }
    }
}

/// The texts of `sender`'s room messages that reach `c` until it has been quiet for 500 ms.
async fn texts_from(c: &Client, sender: &str) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(Some(e)) = client_event(c, Duration::from_millis(500)).await {
        if let ClientEvent::Event(Event::RoomMessage(m)) = e {
            if let (true, MessageBody::Text(t)) = (m.sender == sender, m.body) {
                texts.push(t);
            }
        }
    }
    texts
}

#[tokio::test]
async fn a_blackhole_shorter_than_the_idle_timeout_is_survived() {
    let seed = 101;
    let server = TestServer::start().await;
    // Blackhole from 1.0 s to 1.6 s; the client's idle timeout is 3 s.
    let proxy = proxy(&server, seed, (1_000, 600)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = mobile(&server, &proxy, "bob", 3_000).await;
    bob.join_room("r").await.unwrap();
    let conn = bob.connection().stable_id();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..10 {
        alice.send_text("r", &format!("in the dark {i}"), Priority::Medium).await.unwrap();
    }
    let (seqs, others) = collect(&bob, 10, 10, seed).await;
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "seed {seed}");
    assert!(others.is_empty(), "seed {seed}: no reconnect expected, got {others:?}");
    assert_eq!(bob.connection().stable_id(), conn, "seed {seed}: the same connection");
    assert!(proxy.stats().to_client.blackholed > 0, "seed {seed}: the blackhole dropped nothing");
}

#[tokio::test]
async fn a_long_blackhole_resumes_with_complete_recovery_and_no_flap() {
    let seed = 202;
    let server = TestServer::start_with(|c| c.transport.idle_timeout_s = 2).await;
    // Blackhole from 1 s for 2.5 s; the client's idle timeout is 1 s, the server's 2 s.
    let proxy = proxy(&server, seed, (1_000, 2_500)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = mobile(&server, &proxy, "bob", 1_000).await;
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    let before = bob.session().session_id;
    alice.send_text("r", "before", Priority::Medium).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for i in 0..20 {
        let prio = if i % 2 == 0 { Priority::High } else { Priority::Medium };
        alice.send_text("r", &format!("missed {i}"), prio).await.unwrap();
    }
    let (seqs, others) = collect(&bob, 21, 20, seed).await;
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "seed {seed}: exactly once, in order");
    assert!(
        others.iter().any(|e| matches!(e, ClientEvent::Reconnecting { .. })),
        "seed {seed}: {others:?}"
    );
    let resumed = others.iter().find_map(|e| match e {
        ClientEvent::Resumed { session_resumed, rooms, .. } => {
            Some((*session_resumed, rooms.clone()))
        }
        _ => None,
    });
    let (same, rooms) = match resumed {
        Some(r) => r,
        None => match client_event(&bob, Duration::from_secs(5)).await {
            Ok(Some(ClientEvent::Resumed { session_resumed, rooms, .. })) => {
                (session_resumed, rooms)
            }
            other => panic!("seed {seed}: expected Resumed, got {other:?} after {others:?}"),
        },
    };
    assert!(same, "seed {seed}: the same session continues");
    assert_eq!(rooms.len(), 1, "seed {seed}");
    assert!(rooms[0].rejoined && rooms[0].recovered, "seed {seed}: {rooms:?}");
    assert_eq!(bob.session().session_id, before, "seed {seed}");
    // Nobody saw bob leave or come back.
    no_event(&alice, 300).await;
    assert_eq!(alice.query_room_online_count("r").await.unwrap(), 2);
    // And the resumed connection carries new traffic both ways.
    bob.send_text("r", "back", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::RoomMessage(m) if m.seq == 22));
}

#[tokio::test]
async fn a_listener_gets_every_event_once_and_in_order_across_a_resumption() {
    let seed = 212;
    let server = TestServer::start_with(|c| c.transport.idle_timeout_s = 2).await;
    // As above: a blackhole from 1 s for 2.5 s kills the connection; the client resumes.
    let proxy = proxy(&server, seed, (1_000, 2_500)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener: EventListener = Arc::new(move |e| {
        let _ = tx.send(e);
    });
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.idle_timeout = Duration::from_millis(1_000);
    bob_cfg.keep_alive = Duration::from_millis(250);
    let endpoint = huddle::client::client_endpoint(bob_cfg.server_addr).unwrap();
    let bob = Client::connect_with_listener(endpoint, bob_cfg, listener).await.unwrap();
    // The events go to the listener, none to the queue.
    assert!(bob.next_event().await.is_none(), "seed {seed}");
    bob.join_room("r").await.unwrap();
    alice.send_text("r", "before", Priority::Medium).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for i in 0..20 {
        let prio = if i % 2 == 0 { Priority::High } else { Priority::Medium };
        alice.send_text("r", &format!("missed {i}"), prio).await.unwrap();
    }
    let mut seqs = Vec::new();
    let mut others = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seqs.len() < 21 || !others.iter().any(|e| matches!(e, ClientEvent::Resumed { .. })) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => seqs.push(m.seq),
            Ok(Some(e)) => others.push(e),
            _ => panic!("seed {seed}: messages {seqs:?}, other events {others:?}"),
        }
    }
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "seed {seed}: exactly once, in order");
    assert!(matches!(others[..2], [ClientEvent::Connecting, ClientEvent::Connected { .. }]));
    let reconnecting =
        others.iter().position(|e| matches!(e, ClientEvent::Reconnecting { .. })).unwrap();
    let resumed = others.iter().position(|e| matches!(e, ClientEvent::Resumed { .. })).unwrap();
    assert!(reconnecting < resumed, "seed {seed}: {others:?}");
    match &others[resumed] {
        ClientEvent::Resumed { session_resumed, rooms, .. } => {
            assert!(session_resumed, "seed {seed}");
            assert!(rooms[0].rejoined && rooms[0].recovered, "seed {seed}: {rooms:?}");
        }
        _ => unreachable!(),
    }
    // Still delivered straight to the listener on the resumed connection.
    alice.send_text("r", "after", Priority::Medium).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => {
                assert_eq!(m.seq, 22, "seed {seed}");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: no message after the resumption: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_outage_longer_than_the_grace_leaves_offline_and_returns_unrecovered() {
    let seed = 303;
    let server = TestServer::start_with(|c| {
        c.transport.idle_timeout_s = 1;
        c.limits.offline_grace_s = 1;
        c.limits.history_max_messages = 5;
    })
    .await;
    // Blackhole from 0.8 s for 3.5 s: the client's idle timeout (0.8 s), the server's (1 s)
    // and the offline grace (1 s) all pass inside it.
    let proxy = proxy(&server, seed, (800, 3_500)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = mobile(&server, &proxy, "bob", 800).await;
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    let first = bob.session().session_id;
    // Bob leaves with reason offline once the grace is over.
    match next_event(&alice, 6).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!(
                (members[0].user_id.as_str(), reason),
                ("bob", LeaveReason::Offline),
                "seed {seed}"
            );
        }
        e => panic!("seed {seed}: {e:?}"),
    }
    // Ten messages while bob is away: the history keeps only five.
    for i in 0..10 {
        alice.send_text("r", &format!("gone {i}"), Priority::Medium).await.unwrap();
    }
    // Bob comes back as a new session that rejoins the room; alice sees him join.
    match next_event(&alice, 10).await {
        Event::MembersJoined { members, .. } => {
            assert_eq!(members[0].user_id, "bob", "seed {seed}")
        }
        e => panic!("seed {seed}: {e:?}"),
    }
    let (seqs, others) = collect(&bob, 5, 10, seed).await;
    assert_eq!(seqs, vec![6, 7, 8, 9, 10], "seed {seed}: what the history still had");
    let resumed = match others.iter().find(|e| matches!(e, ClientEvent::Resumed { .. })) {
        Some(e) => e.clone(),
        None => client_event(&bob, Duration::from_secs(5)).await.unwrap().unwrap(),
    };
    match resumed {
        ClientEvent::Resumed { session_resumed, rooms, .. } => {
            assert!(!session_resumed, "seed {seed}: the old session had ended");
            assert!(rooms[0].rejoined && !rooms[0].recovered, "seed {seed}: {rooms:?}");
            assert_eq!(rooms[0].replayed, 5, "seed {seed}");
        }
        e => panic!("seed {seed}: expected Resumed, got {e:?}"),
    }
    assert_ne!(bob.session().session_id, first, "seed {seed}: a new session");
    bob.send_text("r", "I'm back", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::RoomMessage(m) if m.seq == 11));
}

#[tokio::test]
async fn a_stalled_connection_is_abandoned_and_resumed_long_before_the_idle_timeout() {
    let seed = 505;
    // Idle timeouts stay at 30 s: only the client's stall watchdog can act on this 5 s outage.
    let server = TestServer::start().await;
    let proxy = proxy(&server, seed, (1_000, 5_000)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut bob_cfg = server.config_via("bob", &proxy);
    // A 2 s stall timeout (about 3 s to notice with the quiet second before the Ping).
    bob_cfg.stall_timeout = Duration::from_secs(2);
    let bob = Client::connect(bob_cfg).await.unwrap();
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    // Traffic flows before the outage (so the watchdog knows the link was busy), and on
    // through it.
    let alice = Arc::new(alice);
    let sender = keep_busy(alice.clone(), 100);
    // Everything arrives well within the 30 s idle timeout: exactly once and in order.
    let (seqs, others) = collect(&bob, 100, 20, seed).await;
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "seed {seed}: exactly once, in order");
    let reason = others.iter().find_map(|e| match e {
        ClientEvent::Reconnecting { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.as_deref().is_some_and(|r| r.starts_with("stalled")), "seed {seed}: {others:?}");
    sender.await.unwrap();
    no_event(&alice, 300).await;
}

/// The connection state comes as events and as a watch: Connecting and Connected first, then
/// Reconnecting and Connected again around a lost connection, and Disconnected at the end.
#[tokio::test]
async fn connection_state_is_reported_as_events_and_as_a_watch() {
    let seed = 303;
    let server = TestServer::start_with(|c| c.transport.idle_timeout_s = 2).await;
    let proxy = proxy(&server, seed, (1_000, 2_500)).await;
    let bob = mobile(&server, &proxy, "bob", 1_000).await;
    let first = |e: Option<ClientEvent>| format!("{e:?}");
    assert!(matches!(bob.next_event().await, Some(ClientEvent::Connecting)));
    match bob.next_event().await {
        Some(ClientEvent::Connected { session_id }) => {
            assert_eq!(session_id, bob.session().session_id)
        }
        other => panic!("expected Connected, got {}", first(other)),
    }
    assert_eq!(bob.state(), ConnectionState::Connected);
    let mut watch = bob.state_changes();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while watch.changed().await.is_ok() {
            let now = *watch.borrow_and_update();
            seen.push(now);
            if now == ConnectionState::Disconnected {
                break;
            }
        }
        seen
    });
    // Through the blackhole (1 s to 3.5 s) the connection dies and is resumed.
    let mut events = Vec::new();
    loop {
        match client_event(&bob, Duration::from_secs(20)).await {
            Ok(Some(ClientEvent::Resumed { .. })) => break,
            Ok(Some(e)) => events.push(e),
            other => panic!("seed {seed}: expected Resumed, got {other:?} after {events:?}"),
        }
    }
    assert!(events.iter().any(|e| matches!(e, ClientEvent::Reconnecting { .. })), "seed {seed}");
    assert_eq!(bob.state(), ConnectionState::Connected);
    bob.logout().await.unwrap();
    loop {
        match client_event(&bob, Duration::from_secs(5)).await {
            Ok(Some(ClientEvent::Disconnected { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: expected Disconnected, got {other:?}"),
        }
    }
    let seen = tokio::time::timeout(Duration::from_secs(5), seen).await.unwrap().unwrap();
    use ConnectionState::*;
    assert_eq!(seen, [Reconnecting, Connected, Disconnected], "seed {seed}");
}

/// Across a reconnection: a send made while the client is reconnecting waits for the resumed
/// connection; a send in flight on the lost connection is sent again (and arrives once), with
/// the caller's client_msg_id or, when it gave none, with the one the library made.
#[tokio::test]
async fn sends_wait_out_a_reconnection_and_a_retried_send_arrives_once() {
    let seed = 606;
    let server = TestServer::start().await;
    // 5 s of blackhole from 1 s: the watchdog abandons the connection inside it.
    let proxy = proxy(&server, seed, (1_000, 5_000)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = Arc::new(server.client_via("bob", &proxy).await);
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    // Alice keeps the room busy through the outage, so bob's watchdog has data to miss.
    let alice = Arc::new(alice);
    let traffic = keep_busy(alice.clone(), 140);
    // Inside the blackhole, on the connection that will be abandoned.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let b = bob.clone();
    let in_flight = tokio::spawn(async move {
        let body = MessageBody::Text("in flight".into());
        b.send_message("r", body, Priority::High, Some("bob-1".into())).await
    });
    let b = bob.clone();
    let unmarked = tokio::spawn(async move {
        let body = MessageBody::Text("unmarked".into());
        b.send_message("r", body, Priority::High, None).await
    });
    until_reconnecting(&bob, seed).await;
    assert_eq!(bob.state(), ConnectionState::Reconnecting, "seed {seed}");
    let waited = bob.send_text("r", "while reconnecting", Priority::Medium).await;
    assert!(waited.is_ok(), "seed {seed}: {waited:?}");
    let retried = in_flight.await.unwrap();
    assert!(retried.is_ok(), "seed {seed}: {retried:?}");
    let unmarked = unmarked.await.unwrap();
    assert!(unmarked.is_ok(), "seed {seed}: {unmarked:?}");
    traffic.await.unwrap();
    // Alice got each of bob's messages exactly once.
    let mut from_bob = texts_from(&alice, "bob").await;
    from_bob.sort();
    assert_eq!(from_bob, ["in flight", "unmarked", "while reconnecting"], "seed {seed}");
}

#[tokio::test]
async fn sends_made_during_a_reconnection_go_out_in_the_order_they_were_made() {
    let seed = 707;
    let server = TestServer::start().await;
    // 3 s of blackhole from 1 s: the watchdog abandons the connection inside it.
    let proxy = proxy(&server, seed, (1_000, 3_000)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.stall_timeout = Duration::from_millis(500);
    let bob = Client::connect(bob_cfg).await.unwrap();
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    // Traffic for bob's watchdog to miss once the blackhole starts.
    let alice = Arc::new(alice);
    let traffic = keep_busy(alice.clone(), 40);
    until_reconnecting(&bob, seed).await;
    // Thirty sends made one after the other while the client reconnects, each on a task of its
    // own and none awaited before the next is made (a chat app sending what its user types).
    let bob = Arc::new(bob);
    let texts: Vec<String> = (0..30).map(|i| format!("b{i:02}")).collect();
    let mut sends = Vec::new();
    for t in &texts {
        let (b, t) = (bob.clone(), t.clone());
        sends.push(tokio::spawn(async move { b.send_text("r", &t, Priority::Medium).await }));
        // The send is made (first polled) before the next one.
        tokio::task::yield_now().await;
    }
    for s in sends {
        let ack = s.await.unwrap();
        assert!(ack.is_ok(), "seed {seed}: {ack:?}");
    }
    traffic.await.unwrap();
    let from_bob = texts_from(&alice, "bob").await;
    assert_eq!(from_bob, texts, "seed {seed}: in the order made, each once");
}

/// Issue 22: a member that keeps sending (pipelined, without client_msg_ids, as an application
/// would) through a blackhole longer than its idle and stall timeouts, on a lossy link: every
/// send is acked exactly once, and the other member gets every message once, in the order sent.
#[tokio::test]
async fn every_send_made_through_an_outage_is_acked_and_delivered_once_in_order() {
    let seed = 2222;
    let server = TestServer::start().await;
    let imp = Impairment { loss: 0.05, blackholes: vec![(1_500, 3_000)], ..Default::default() };
    let proxy = impaired_proxy(&server, seed, imp).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.idle_timeout = Duration::from_millis(1_200);
    bob_cfg.keep_alive = Duration::from_millis(300);
    bob_cfg.stall_timeout = Duration::from_millis(500);
    let bob = Arc::new(Client::connect(bob_cfg).await.unwrap());
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }), "seed {seed}");
    // 6 s at 20 msg/s: before, through and after the outage, none awaited before the next.
    let texts: Vec<String> = (0..120).map(|i| format!("b{i:03}")).collect();
    let mut sends = Vec::new();
    for t in &texts {
        let (b, t) = (bob.clone(), t.clone());
        sends.push(tokio::spawn(async move { b.send_text("r", &t, Priority::Medium).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seqs = Vec::new();
    for (t, s) in texts.iter().zip(sends) {
        match s.await.unwrap() {
            Ok(ack) => seqs.push(ack.seq),
            Err(e) => panic!("seed {seed}: {t} failed: {e}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seed {seed}: acks {seqs:?}");
    let from_bob = texts_from(&alice, "bob").await;
    assert_eq!(from_bob, texts, "seed {seed}: each once, in the order sent");
    let mut reconnected = false;
    while let Ok(Some(e)) = client_event(&bob, Duration::from_millis(100)).await {
        reconnected |= matches!(e, ClientEvent::Resumed { .. });
    }
    assert!(reconnected, "seed {seed}: the outage was not noticed");
}

/// A send waiting for a resumed connection fails, saying so, once the reconnect window runs
/// out; so do sends made afterwards.
#[tokio::test]
async fn a_send_fails_when_the_reconnect_window_runs_out() {
    let seed = 2223;
    let server = TestServer::start().await;
    // The server never comes back.
    let proxy = proxy(&server, seed, (1_000, 600_000)).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.idle_timeout = Duration::from_millis(800);
    bob_cfg.keep_alive = Duration::from_millis(200);
    bob_cfg.reconnect_for = Duration::from_millis(1_500);
    bob_cfg.connect_timeout = Duration::from_millis(500);
    let bob = Client::connect(bob_cfg).await.unwrap();
    bob.join_room("r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), bob.send_text("r", "x", Priority::High))
        .await
        .expect("the send ends with the window");
    let waited = started.elapsed();
    match r {
        Err(e @ ClientError::Connection(_)) => {
            assert_eq!(e.ended(), Some(Ended::ReconnectWindow), "seed {seed}: {e}");
            assert!(e.to_string().contains("reconnect window ran out"), "seed {seed}: {e}");
        }
        other => panic!("seed {seed}: {other:?}"),
    }
    assert!(waited >= Duration::from_millis(1_500), "seed {seed}: failed after {waited:?}");
    assert_eq!(bob.state(), ConnectionState::Disconnected, "seed {seed}");
    let after = bob.send_text("r", "y", Priority::High).await.unwrap_err();
    assert_eq!(after.ended(), Some(Ended::ReconnectWindow), "seed {seed}: {after}");
}

/// A send after the session ended (kicked out by a second login, logged out, closed) fails at
/// once, saying that the session ended.
#[tokio::test]
async fn a_send_fails_with_session_ended_after_a_kick_a_logout_or_a_close() {
    let server = TestServer::start().await;
    let old = server.client("alice").await;
    old.create_room(info("r"), cfg()).await.unwrap();
    let _new = server.client("alice").await;
    let kicked = loop {
        match next_client_event_within(&old).await {
            ClientEvent::Disconnected { code, .. } => break code,
            _ => continue,
        }
    };
    assert_eq!(kicked, Some(2004));
    let e = old.send_text("r", "x", Priority::High).await.unwrap_err();
    assert_eq!(e.ended(), Some(Ended::Session), "{e}");
    assert_eq!(
        e.to_string(),
        "connection: session ended: closed by server with code 2004 (kicked_out)"
    );

    let bob = server.client("bob").await;
    bob.logout().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), bob.send_text("r", "x", Priority::High))
        .await
        .expect("at once")
        .unwrap_err();
    assert_eq!(e.ended(), Some(Ended::Session), "{e}");

    let carol = server.client("carol").await;
    carol.close();
    let e = tokio::time::timeout(Duration::from_secs(2), carol.send_text("r", "x", Priority::High))
        .await
        .expect("at once")
        .unwrap_err();
    assert_eq!(e.ended(), Some(Ended::Session), "{e}");
    server.stop().await;
}

/// The next client event within 5 s.
async fn next_client_event_within(c: &Client) -> ClientEvent {
    client_event(c, Duration::from_secs(5)).await.expect("in time").expect("an event")
}

/// A scripted server (plain quinn and the wire types, no Huddle server) whose first connection
/// logs the client in and then sends an event frame that does not decode; the client must
/// leave that connection and resume on a new one instead of going deaf on a live link.
#[tokio::test]
async fn an_event_stream_that_breaks_on_a_live_connection_is_resumed() {
    use huddle::wire::{encode_frame, Reply, Request, Response, ResponseFrame, StreamHeader};
    let tls = huddle::certs::generate_in_memory().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())
        .unwrap();
    crypto.alpn_protocols = vec![huddle::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();

    // Accepts one connection and returns it with its control stream and first request.
    let accept = |endpoint: quinn::Endpoint| async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let (send, mut recv) = conn.accept_bi().await.unwrap();
        let max = huddle::wire::MAX_FRAME_LEN;
        let body = huddle::framed::read_frame(&mut recv, max, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let first = huddle::wire::decode_request(&body).unwrap();
        (conn, send, recv, first)
    };
    let server = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            let (conn, mut send, _recv, login) = accept(endpoint.clone()).await;
            assert!(matches!(login.request, Request::Login(_)), "{login:?}");
            let logged_in = Response::LoggedIn {
                session_id: 41,
                resume_secret: [7; 16],
                server_time_ms: 0,
                token_expires_at_s: u64::MAX,
            };
            let answer =
                ResponseFrame { request_id: login.request_id, reply: Reply::Ok(logged_in) };
            send.write_all(&encode_frame(&answer)).await.unwrap();
            let mut events = conn.open_uni().await.unwrap();
            events.write_all(&encode_frame(&StreamHeader::Session)).await.unwrap();
            // A whole frame whose body is no event (variant 200 of a one-byte enum tag).
            events.write_all(&[1, 0, 0, 0, 200]).await.unwrap();
            // The first connection stays open: only the client can end this.
            let (_conn2, _send2, _recv2, resume) = accept(endpoint).await;
            (conn, resume)
        }
    });
    let mut cfg = ClientConfig::new(addr, "alice", "token");
    cfg.roots = vec![tls.ca.clone()];
    let alice = Client::connect(cfg).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    match client_event_at(&alice, deadline).await {
        Ok(Some(ClientEvent::Reconnecting { reason })) => {
            assert!(reason.contains("event"), "{reason}")
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    let (first, resume) =
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    match resume.request {
        Request::Resume(r) => assert_eq!((r.session_id, r.resume_secret), (41, [7; 16])),
        other => panic!("the second connection began with {other:?}"),
    }
    // The client left the broken connection itself.
    let closed = tokio::time::timeout(Duration::from_secs(5), first.closed()).await.unwrap();
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed:?}");
}

#[tokio::test]
async fn a_session_in_five_busy_rooms_resumes_and_gets_the_newest_messages() {
    let seed = 808;
    let server = TestServer::start_with(|c| c.transport.idle_timeout_s = 2).await;
    // Blackhole from 1 s for 2.5 s; the client's idle timeout is 1 s, the server's 2 s.
    let proxy = proxy(&server, seed, (1_000, 2_500)).await;
    let alice = server.client("alice").await;
    let bob = mobile(&server, &proxy, "bob", 1_000).await;
    let rooms: Vec<String> = (0..5).map(|r| format!("r{r}")).collect();
    for r in &rooms {
        alice.create_room(info(r), cfg()).await.unwrap();
        bob.join_room(r).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // 80 messages of 32,000 bytes to each room: 12.8 MB missed, over the 8 MiB outbound queue.
    let body = "x".repeat(32_000);
    for r in &rooms {
        for _ in 0..80 {
            alice.send_text(r, &body, Priority::Medium).await.unwrap();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut newest = std::collections::BTreeMap::new();
    let mut resumed = None;
    while resumed.is_none() || newest.len() < 5 || newest.values().any(|s| *s < 80) {
        match client_event_at(&bob, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => {
                newest.insert(m.room_id, m.seq);
            }
            Ok(Some(ClientEvent::Resumed { session_resumed, rooms, .. })) => {
                resumed = Some((session_resumed, rooms));
            }
            Ok(Some(_)) => {}
            other => panic!(
                "seed {seed}: resumed {resumed:?}, newest seqs {newest:?}, then {other:?}; \
                 server closed {} slow consumers",
                server.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed)
            ),
        }
    }
    let (same, recoveries) = resumed.unwrap();
    assert!(same, "seed {seed}: the same session continues");
    assert_eq!(recoveries.len(), 5, "seed {seed}");
    assert!(recoveries.iter().all(|r| r.rejoined && !r.recovered), "seed {seed}: {recoveries:?}");
    // The resumed connection stays up and carries new traffic.
    alice.send_text("r0", "live", Priority::Medium).await.unwrap();
    loop {
        match client_event_at(&bob, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) if m.seq == 81 => break,
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: no live message after the resumption: {other:?}"),
        }
    }
}
