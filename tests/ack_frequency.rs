//! The server asks clients for fewer ACKs (QUIC ACK frequency extension) on a clean path, and
//! for QUIC's usual ACK rate again while the path loses packets.
//!
//! Counted at the client with the real client library: ACK frames it sent against datagrams it
//! received while a burst of room messages arrives, one message per datagram.

mod common;

use std::time::{Duration, Instant};

use common::*;
use huddle::client::{Client, ClientEvent};
use huddle::netsim::Impairment;
use huddle::wire::{Event, MessageBody, Priority};

const ROOM: &str = "acks";
const BURST: u64 = 120;

/// Sends `n` messages one after another (each waits for the server's reply, so each reaches
/// the member in a datagram of its own) and waits until `member` has them all. Returns the
/// ACK frames the member sent and the datagrams it received meanwhile.
async fn burst(sender: &Client, member: &Client, n: u64, seed: u64) -> (u64, u64) {
    let before = member.connection().stats();
    for i in 0..n {
        let body = MessageBody::Text(format!("m{i}"));
        sender.send_message(ROOM, body, Priority::Medium, None).await.unwrap();
    }
    receive(member, n, seed).await;
    let after = member.connection().stats();
    (after.frame_tx.acks - before.frame_tx.acks, after.udp_rx.datagrams - before.udp_rx.datagrams)
}

/// Waits for `n` room messages at `c`.
async fn receive(c: &Client, n: u64, seed: u64) {
    let mut got = 0;
    while got < n {
        match client_event(c, Duration::from_secs(30)).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(_)))) => got += 1,
            Ok(Some(ClientEvent::Event(_))) => {}
            other => panic!("seed {seed:#x}: {got} of {n} messages, then {other:?}"),
        }
    }
}

/// A member behind a proxy that drops everything towards it during `blackhole` (start and
/// length in ms from the proxy's start, returned), in the room with a sender.
async fn behind_a_blackhole(
    server: &TestServer,
    blackhole: (u64, u64),
    seed: u64,
) -> (huddle::netsim::Proxy, Instant, Client, Client) {
    let down = Impairment { blackholes: vec![blackhole], ..Default::default() };
    let proxy = proxy_between(server, seed, Impairment::default(), down).await;
    let start = Instant::now();
    let member = server.client_via("member", &proxy).await;
    let sender = room(server, &member).await;
    (proxy, start, member, sender)
}

/// Sends a message every `gap` through the whole of `blackhole` (start and length in ms from
/// `start`), then waits until `member` has them all: the server declares some lost.
async fn into_the_blackhole(
    sender: &Client,
    member: &Client,
    start: Instant,
    blackhole: (u64, u64),
    gap: Duration,
    seed: u64,
) {
    tokio::time::sleep_until((start + Duration::from_millis(blackhole.0)).into()).await;
    let end = start + Duration::from_millis(blackhole.0 + blackhole.1);
    let mut sent = 0;
    while Instant::now() < end {
        let body = MessageBody::Text(format!("dark {sent}"));
        sender.send_message(ROOM, body, Priority::Medium, None).await.unwrap();
        sent += 1;
        tokio::time::sleep(gap).await;
    }
    receive(member, sent, seed).await;
}

async fn room(server: &TestServer, member: &Client) -> Client {
    let sender = server.client("sender").await;
    sender.create_room(info(ROOM), cfg()).await.unwrap();
    member.join_room(ROOM).await.unwrap();
    sender
}

#[tokio::test]
async fn a_clean_path_gets_one_ack_in_several_packets() {
    // The default configuration: clients acknowledge every 10th packet.
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let member = server.client("member").await;
    let sender = room(&server, &member).await;
    let (acks, datagrams) = burst(&sender, &member, BURST, 0).await;
    assert!(datagrams >= BURST, "{datagrams} datagrams for {BURST} messages");
    assert!(acks * 4 < datagrams, "{acks} ACKs for {datagrams} datagrams with the threshold");
    assert!(member.connection().stats().frame_rx.ack_frequency >= 1);

    // Without the extension the client acknowledges every other packet: the count above is
    // the server's doing.
    let plain = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.ack_eliciting_threshold = 0;
    })
    .await;
    let member = plain.client("member").await;
    let sender = room(&plain, &member).await;
    let (acks, datagrams) = burst(&sender, &member, BURST, 0).await;
    assert!(acks * 3 > datagrams, "{acks} ACKs for {datagrams} datagrams without the threshold");
    assert_eq!(member.connection().stats().frame_rx.ack_frequency, 0);
}

#[tokio::test]
async fn loss_brings_back_the_usual_ack_rate_until_the_path_is_clean_again() {
    const HOLD_MS: u64 = 1_500;
    const BLACKHOLE: (u64, u64) = (2_000, 300);
    let seed = 0xacc_f4e9;
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.ack_loss_fallback_ms = HOLD_MS;
    })
    .await;
    // Everything towards the member is dropped for 300 ms, 2 s after the proxy starts.
    let (proxy, start, member, sender) = behind_a_blackhole(&server, BLACKHOLE, seed).await;

    let (acks, datagrams) = burst(&sender, &member, BURST, seed).await;
    assert!(
        start.elapsed() < Duration::from_millis(BLACKHOLE.0),
        "seed {seed:#x}: setup took {:?}, past the blackhole's start",
        start.elapsed()
    );
    assert!(acks * 4 < datagrams, "seed {seed:#x}: clean: {acks} ACKs for {datagrams} datagrams");

    // Messages sent into the blackhole are lost and sent again once it ends.
    into_the_blackhole(&sender, &member, start, BLACKHOLE, Duration::from_millis(5), seed).await;
    let lost = member.connection().stats();
    assert!(lost.frame_rx.ack_frequency >= 2, "seed {seed:#x}: no new ACK frequency: {lost:?}");

    // Within the hold after the loss: every other packet again.
    let (acks, datagrams) = burst(&sender, &member, BURST, seed).await;
    assert!(
        acks * 3 > datagrams,
        "seed {seed:#x}: after the loss: {acks} ACKs for {datagrams} datagrams"
    );

    // A clean hold later, the server asks for the sparse rate again.
    tokio::time::sleep(Duration::from_millis(HOLD_MS + 300)).await;
    let (acks, datagrams) = burst(&sender, &member, BURST, seed).await;
    assert!(
        acks * 4 < datagrams,
        "seed {seed:#x}: clean again: {acks} ACKs for {datagrams} datagrams"
    );
    let stats = proxy.stop().await;
    assert!(stats.to_client.blackholed > 0, "seed {seed:#x}: {stats}");
}

/// Sends `n` messages `gap` apart (fewer than the threshold within the clients' usual 25 ms
/// ACK delay) and waits until `member` has them all. Returns the ACK frames the member sent
/// and the datagrams it received meanwhile.
async fn spaced(sender: &Client, member: &Client, n: u64, gap: Duration, seed: u64) -> (u64, u64) {
    let before = member.connection().stats();
    for i in 0..n {
        let body = MessageBody::Text(format!("s{i}"));
        sender.send_message(ROOM, body, Priority::Medium, None).await.unwrap();
        tokio::time::sleep(gap).await;
    }
    receive(member, n, seed).await;
    let after = member.connection().stats();
    (after.frame_tx.acks - before.frame_tx.acks, after.udp_rx.datagrams - before.udp_rx.datagrams)
}

#[tokio::test]
async fn a_longer_ack_delay_on_a_proven_clean_path_lets_slow_traffic_share_acks() {
    const N: u64 = 16;
    const GAP: Duration = Duration::from_millis(60);
    const HOLD_MS: u64 = 3_000;
    const BLACKHOLE: (u64, u64) = (3_500, 300);
    let seed = 0xde1a_7ac5;
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.ack_max_delay_ms = 400;
        c.transport.ack_max_delay_after_packets = 80;
        c.transport.ack_loss_fallback_ms = HOLD_MS;
    })
    .await;
    let (proxy, start, member, sender) = behind_a_blackhole(&server, BLACKHOLE, seed).await;

    // Fewer than 80 packets acknowledged so far: the clients' own 25 ms delay runs out between
    // two messages 60 ms apart, one ACK each.
    let (acks, datagrams) = spaced(&sender, &member, N, GAP, seed).await;
    assert!(acks * 4 >= N * 3, "seed {seed:#x}: new path: {acks} ACKs for {datagrams} datagrams");

    // 120 more without a loss, and the server asks for 400 ms: several messages to an ACK.
    burst(&sender, &member, BURST, seed).await;
    let (acks, datagrams) = spaced(&sender, &member, N, GAP, seed).await;
    assert!(
        start.elapsed() < Duration::from_millis(BLACKHOLE.0),
        "seed {seed:#x}: setup took {:?}, past the blackhole's start",
        start.elapsed()
    );
    assert!(acks * 3 <= N, "seed {seed:#x}: proven clean: {acks} ACKs for {datagrams} datagrams");

    // After a loss, within the hold, the clients' own delay again: one ACK a message.
    into_the_blackhole(&sender, &member, start, BLACKHOLE, Duration::from_millis(20), seed).await;
    let (acks, datagrams) = spaced(&sender, &member, N, GAP, seed).await;
    assert!(
        acks * 4 >= N * 3,
        "seed {seed:#x}: after the loss: {acks} ACKs for {datagrams} datagrams"
    );
    let stats = proxy.stop().await;
    assert!(stats.to_client.blackholed > 0, "seed {seed:#x}: {stats}");
}

#[test]
fn an_ack_delay_quic_cannot_carry_is_refused_at_start() {
    let mut config = huddle::server::config::ServerConfig::default();
    config.transport.ack_max_delay_ms = 16_383;
    assert!(huddle::server::transport_config(&config).is_ok());
    // RFC 9000 caps an ACK delay below 2^14 ms; refused whether or not the threshold is on.
    config.transport.ack_max_delay_ms = 16_384;
    let err = huddle::server::transport_config(&config).unwrap_err().to_string();
    assert!(err.contains("ack_max_delay_ms 16384"), "{err}");
    config.transport.ack_eliciting_threshold = 0;
    assert!(huddle::server::transport_config(&config).is_err());
}
