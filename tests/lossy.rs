//! Rooms keep flowing through a lossy, reordering link and across an address change.
//! Every run is seeded; a failure prints its seed.

mod common;

use std::time::Duration;

use common::*;
use huddle::client::Client;
use huddle::netsim::{BurstLoss, Impairment, Proxy, ProxyConfig};
use huddle::wire::{Event, MessageBody, Priority};

/// Collects `n` room messages at a client, checking exactly-once, in-order delivery.
async fn expect_messages(c: &Client, n: u64, seed: u64) {
    let mut next = 1;
    while next <= n {
        // Generous: at 30% loss both ways QUIC's probe timeouts back off for seconds at a time.
        match client_event(c, Duration::from_secs(60)).await {
            Ok(Some(huddle::client::ClientEvent::Event(Event::RoomMessage(m)))) => {
                assert_eq!(
                    m.seq,
                    next,
                    "seed {seed}: {} got seq {} expecting {next}",
                    c.user_id(),
                    m.seq
                );
                next += 1;
            }
            Ok(Some(huddle::client::ClientEvent::Event(Event::MembersJoined { .. }))) => {}
            // At heavy loss QUIC can go seconds without delivering anything; the client's stall
            // watchdog may then resume on a fresh connection. Delivery must stay exactly once
            // and in order across it, and the session must be the same one.
            Ok(Some(huddle::client::ClientEvent::Reconnecting { .. })) => {}
            Ok(Some(huddle::client::ClientEvent::Resumed { session_resumed, .. })) => {
                assert!(session_resumed, "seed {seed}: {} lost its session", c.user_id());
            }
            other => {
                panic!("seed {seed}: {} got {other:?} after {} messages", c.user_id(), next - 1)
            }
        }
    }
}

async fn run_lossy(imp: Impairment, seed: u64, messages: u64) {
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let proxy = impaired_proxy(&server, seed, imp).await;
    let sender = server.client("sender").await;
    sender.create_room(info("lossy"), cfg_room()).await.unwrap();
    let mut members = Vec::new();
    for i in 0..3 {
        let c = server.client_via(&format!("m{i}"), &proxy).await;
        c.join_room("lossy").await.unwrap();
        members.push(c);
    }
    for i in 0..messages {
        let body = MessageBody::Text(format!("message {i}"));
        let prio = if i % 2 == 0 { Priority::Medium } else { Priority::High };
        sender.send_message("lossy", body, prio, None).await.unwrap();
    }
    for m in &members {
        expect_messages(m, messages, seed).await;
    }
    let stats = proxy.stop().await;
    assert!(stats.to_client.lost > 0, "seed {seed}: the link lost nothing: {stats}");
}

fn cfg_room() -> huddle::wire::RoomConfig {
    huddle::wire::RoomConfig::default()
}

#[tokio::test]
async fn exactly_once_in_order_at_5_percent_loss() {
    let imp =
        Impairment { loss: 0.05, delay_ms: 5, jitter_ms: 3, reorder: 0.02, ..Default::default() };
    run_lossy(imp, 0x5eed_0005, 300).await;
}

#[tokio::test]
async fn exactly_once_in_order_at_1_percent_loss() {
    let imp = Impairment { loss: 0.01, delay_ms: 5, jitter_ms: 2, ..Default::default() };
    run_lossy(imp, 0x5eed_0001, 300).await;
}

#[tokio::test]
async fn exactly_once_in_order_at_10_percent_loss() {
    let imp =
        Impairment { loss: 0.10, delay_ms: 5, jitter_ms: 3, reorder: 0.02, ..Default::default() };
    run_lossy(imp, 0x5eed_0010, 200).await;
}

#[tokio::test]
async fn exactly_once_in_order_at_30_percent_uniform_loss() {
    let imp = Impairment { loss: 0.30, delay_ms: 2, ..Default::default() };
    run_lossy(imp, 0x5eed_0031, 60).await;
}

#[tokio::test]
async fn exactly_once_in_order_at_30_percent_bursty_loss() {
    let imp = Impairment {
        burst: Some(BurstLoss::with_rate(0.3, 4.0)),
        delay_ms: 2,
        ..Default::default()
    };
    run_lossy(imp, 0x5eed_0030, 100).await;
}

#[tokio::test]
async fn address_change_keeps_the_connection_and_rooms() {
    let seed = 77;
    let server = TestServer::start().await;
    let cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: server.addr,
        to_server: Impairment::default(),
        to_client: Impairment::default(),
        seed,
        rebind_at_ms: Vec::new(),
    };
    let proxy = Proxy::start(cfg).await.unwrap();
    let alice = server.client("alice").await;
    alice.create_room(info("mig"), cfg_room()).await.unwrap();
    let bob = server.client_via("bob", &proxy).await;
    bob.join_room("mig").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    let session = bob.session().session_id;
    alice.send_text("mig", "before", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&bob, 2).await, Event::RoomMessage(m) if m.seq == 1));
    proxy.rebind_now().await;
    // Bob speaks first from the new address (as a phone does after a move), then hears alice.
    bob.send_text("mig", "moved", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&alice, 5).await, Event::RoomMessage(m) if m.seq == 2));
    alice.send_text("mig", "after", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&bob, 5).await, Event::RoomMessage(m) if m.seq == 3));
    assert_eq!(bob.session().session_id, session, "seed {seed}: same session, no re-login");
    assert_eq!(alice.query_room_online_count("mig").await.unwrap(), 2);
    no_event(&alice, 300).await;
    assert_eq!(proxy.stop().await.rebinds, 1);
}
