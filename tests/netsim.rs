//! The network simulator's proxy really impairs what it is told to, and rebinding really
//! changes the source port the server sees.

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::*;
use huddle::netsim::{Impairment, Proxy, ProxyConfig};
use tokio::net::UdpSocket;

/// A UDP echo server; returns its address and the source addresses it has seen.
async fn echo() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<SocketAddr>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = tx.send(from);
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, rx)
}

fn config(upstream: SocketAddr, seed: u64) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        to_server: Impairment::default(),
        to_client: Impairment::default(),
        seed,
        rebind_at_ms: Vec::new(),
    }
}

#[tokio::test]
async fn proxy_drops_the_fraction_it_is_told() {
    let seed = 11;
    let (upstream, mut seen) = echo().await;
    let mut cfg = config(upstream, seed);
    cfg.to_server.loss = 0.2;
    let proxy = Proxy::start(cfg).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let n = 2_000;
    for i in 0..n {
        client.send_to(&(i as u32).to_le_bytes(), proxy.local_addr()).await.unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut arrived = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), seen.recv()).await {
        arrived += 1;
    }
    let stats = proxy.stop().await;
    assert_eq!(stats.to_server.offered, n, "seed {seed}");
    assert_eq!(stats.to_server.lost + stats.to_server.delivered, n, "seed {seed}");
    assert_eq!(
        arrived, stats.to_server.delivered,
        "seed {seed}: the upstream got what was delivered"
    );
    let rate = stats.to_server.lost as f64 / n as f64;
    assert!((0.16..0.24).contains(&rate), "seed {seed}: loss rate {rate}");
}

#[tokio::test]
async fn proxy_delays_and_duplicates() {
    let seed = 5;
    let (upstream, mut seen) = echo().await;
    let mut cfg = config(upstream, seed);
    cfg.to_server.delay_ms = 50;
    cfg.to_server.duplicate = 1.0;
    let proxy = Proxy::start(cfg).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let t0 = tokio::time::Instant::now();
    client.send_to(b"x", proxy.local_addr()).await.unwrap();
    seen.recv().await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(45),
        "seed {seed}: arrived after {:?}",
        t0.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(1), seen.recv()).await.expect("duplicate").unwrap();
    let stats = proxy.stop().await;
    assert_eq!((stats.to_server.duplicated, stats.to_server.delivered), (1, 2), "seed {seed}");
}

#[tokio::test]
async fn rebinding_changes_the_source_port() {
    let (upstream, mut seen) = echo().await;
    let proxy = Proxy::start(config(upstream, 1)).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"a", proxy.local_addr()).await.unwrap();
    let first = seen.recv().await.unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = client.recv_from(&mut buf).await.unwrap();
    assert_eq!(from, proxy.local_addr(), "replies come back through the proxy");
    proxy.rebind_now().await;
    client.send_to(b"b", proxy.local_addr()).await.unwrap();
    let second = seen.recv().await.unwrap();
    assert_ne!(first.port(), second.port(), "the server must see a new source port");
    assert_eq!(proxy.upstream_addr_of(client.local_addr().unwrap()), Some(second));
    // Replies to the new port still reach the client.
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"b");
    assert_eq!(proxy.stop().await.rebinds, 1);
}

/// A burst the server sends as GSO batches crosses a rate-limited proxy whole: a batch that
/// arrives as one buffer is split back into its datagrams (forwarded whole, it would be one
/// undecryptable datagram at the client, and the connection stalled for good).
#[tokio::test]
async fn a_burst_of_gso_batches_crosses_a_rate_limited_proxy() {
    let seed = 808;
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let proxy = proxy_between(&server, seed, Impairment::default(), narrow_downlink()).await;
    let alice = server.client("alice").await;
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.stall_timeout = Duration::ZERO;
    let bob = huddle::client::Client::connect(bob_cfg).await.unwrap();
    alice.create_room(info("a"), cfg()).await.unwrap();
    bob.join_room("a").await.unwrap();
    let body = "x".repeat(1_000);
    for _ in 0..300 {
        alice.send_text("a", &body, huddle::wire::Priority::Medium).await.unwrap();
    }
    // 300 KB at 2 Mbit/s is about 1.3 s; before the fix the connection stalled at the first burst.
    let mut seqs = Vec::new();
    while seqs.len() < 300 {
        if let huddle::wire::Event::RoomMessage(m) = next_event(&bob, 15).await {
            seqs.push(m.seq);
        }
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "seed {seed}");
}
