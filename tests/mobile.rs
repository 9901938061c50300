//! Mobile life against a real server: `network_changed` (QUIC migration to a new socket, and the
//! reconnection when the new path does not answer), `suspend`/`resume` (background and back,
//! replaying what was missed exactly once with no member flap), and the mobile profile's
//! keep-alive interval, counted in virtual time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use huddle::client::{Client, ClientConfig, ClientEvent, ConnectionState, MOBILE_KEEP_ALIVE};
use huddle::netsim::{Impairment, Proxy, ProxyConfig};
use huddle::wire::{Event, Priority, RoomRecovery};

const ADMIN_TOKEN: &str = "mobile-test-admin-token-0123456789";

/// The mobile profile for `user`, reaching the server at `addr` (it or a proxy in front of it).
fn mobile(server: &TestServer, user: &str, addr: SocketAddr) -> ClientConfig {
    let mut c = ClientConfig::mobile(addr, user, &day_token(server, user));
    c.roots = vec![server.ca.clone()];
    c.user_name = format!("{user} name");
    c
}

/// A token valid for a day, for the runs that last an hour of virtual time.
fn day_token(server: &TestServer, user: &str) -> String {
    let now = now_s();
    server.keys.mint(KEY_ID, user, now, now + 86_400).unwrap()
}

/// The default profile for `user`, with a token valid for a day.
async fn default_client(server: &TestServer, user: &str) -> Client {
    let c = ClientConfig { token: day_token(server, user), ..server.config(user) };
    Client::connect(c).await.unwrap()
}

/// A server with its admin listener.
async fn server_with_admin() -> TestServer {
    TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(ADMIN_TOKEN.into());
    })
    .await
}

/// The address the server sees for `user`'s connection, from `GET /v1/connections`.
async fn server_sees(server: &TestServer, user: &str) -> SocketAddr {
    let conns = server.admin_connections(ADMIN_TOKEN, &format!("user={user}")).await;
    assert_eq!(conns.len(), 1, "{conns:?}");
    conns[0]["remote_addr"].as_str().unwrap().parse().unwrap()
}

/// The client's events until `n` room messages came (or `secs` passed), split into the
/// messages' seqs and every other event.
async fn collect(c: &Client, n: usize, secs: u64) -> (Vec<u64>, Vec<ClientEvent>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let (mut seqs, mut others) = (Vec::new(), Vec::new());
    while seqs.len() < n {
        match client_event_at(c, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => seqs.push(m.seq),
            Ok(Some(other)) => others.push(other),
            Ok(None) | Err(_) => break,
        }
    }
    (seqs, others)
}

/// Every event the client has within `ms` (past its own Connecting and Connected).
async fn drain(c: &Client, ms: u64) -> Vec<ClientEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut events = Vec::new();
    while let Ok(Some(e)) = client_event_at(c, deadline).await {
        events.push(e);
    }
    events
}

/// The `Resumed` event among `others`, or the next one the client has within 5 s: whether the
/// same session continued, and the rooms' recovery.
async fn resumed(c: &Client, others: &[ClientEvent]) -> (bool, Vec<RoomRecovery>) {
    let found = others.iter().find(|e| matches!(e, ClientEvent::Resumed { .. })).cloned();
    let event = match found {
        Some(e) => Ok(Some(e)),
        None => client_event(c, Duration::from_secs(5)).await,
    };
    match event {
        Ok(Some(ClientEvent::Resumed { session_resumed, rooms, .. })) => (session_resumed, rooms),
        other => panic!("expected Resumed after {others:?}, got {other:?}"),
    }
}

/// `network_changed` moves the connection to a new socket without a reconnection: the server's
/// `/v1/connections` shows the new port, the session and the QUIC connection stay the same, and
/// the messages sent before, during and after the move arrive exactly once, in order.
#[tokio::test]
async fn network_changed_migrates_without_a_reconnection() {
    let server = server_with_admin().await;
    let alice = server.client("alice").await;
    let bob = Client::connect(mobile(&server, "bob", server.addr)).await.unwrap();
    alice.create_room(info("m"), cfg()).await.unwrap();
    bob.join_room("m").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    let old_port = bob.endpoint().local_addr().unwrap().port();
    assert_eq!(server_sees(&server, "bob").await.port(), old_port);
    let (session, conn) = (bob.session().session_id, bob.connection().stable_id());

    let sender = tokio::spawn(async move {
        for i in 0..30 {
            alice.send_text("m", &format!("m{i}"), Priority::Medium).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        alice
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.network_changed().unwrap();
    let new_port = bob.endpoint().local_addr().unwrap().port();
    assert_ne!(new_port, old_port, "a new socket");
    let alice = sender.await.unwrap();

    let (seqs, others) = collect(&bob, 30, 10).await;
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "exactly once, in order; others {others:?}");
    assert!(
        matches!(others.as_slice(), [ClientEvent::Migrated { .. }]),
        "one Migrated and no reconnection: {others:?}"
    );
    assert_eq!(server_sees(&server, "bob").await.port(), new_port, "the server follows");
    assert_eq!((bob.session().session_id, bob.connection().stable_id()), (session, conn));
    assert_eq!(bob.state(), ConnectionState::Connected);
    // Both ways still work.
    bob.send_text("m", "after", Priority::Medium).await.unwrap();
    match next_event(&alice, 5).await {
        Event::RoomMessage(m) => assert_eq!((m.seq, m.sender.as_str()), (31, "bob")),
        other => panic!("{other:?}"),
    }
}

/// Through a proxy whose old path dies (a NAT rebinding, a Wi-Fi to cellular move), a
/// mobile-profile member of a quiet room that calls `network_changed` gets the next message at
/// once; without the call it would wait for its 25 s keep-alive to reveal the new path.
#[tokio::test]
async fn network_changed_finds_a_dead_path_at_once() {
    let server = TestServer::start().await;
    let proxy = impaired_proxy(&server, 1, Impairment::default()).await;
    let alice = server.client("alice").await;
    let bob = Client::connect(mobile(&server, "bob", proxy.local_addr())).await.unwrap();
    alice.create_room(info("q"), cfg()).await.unwrap();
    bob.join_room("q").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    // A quiet second: the stall watchdog has stopped watching.
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    proxy.rebind_now().await;
    let changed = tokio::time::Instant::now();
    bob.network_changed().unwrap();
    alice.send_text("q", "after the move", Priority::Medium).await.unwrap();
    let (seqs, others) = collect(&bob, 1, 5).await;
    let took = changed.elapsed();
    assert_eq!(seqs, vec![1], "{others:?}");
    assert!(took < Duration::from_secs(3), "delivered {} ms after the change", took.as_millis());
    // The probe's answer, which `Migrated` reports, may come just after the message.
    let mut others = others;
    if others.is_empty() {
        others.extend(client_event(&bob, Duration::from_secs(3)).await.ok().flatten());
    }
    assert!(matches!(others.as_slice(), [ClientEvent::Migrated { .. }]), "{others:?}");
}

/// When the new path does not answer, `network_changed` falls back to a reconnection with
/// resumption: the messages sent meanwhile are replayed exactly once, in order.
#[tokio::test]
async fn network_changed_reconnects_when_the_new_path_is_dead() {
    let server = TestServer::start().await;
    let proxy = impaired_proxy(&server, 2, Impairment::default()).await;
    let listen = proxy.local_addr();
    let alice = server.client("alice").await;
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.connect_timeout = Duration::from_millis(500);
    let bob = Client::connect(bob_cfg).await.unwrap();
    alice.create_room(info("d"), cfg()).await.unwrap();
    bob.join_room("d").await.unwrap();
    alice.send_text("d", "before", Priority::Medium).await.unwrap();
    assert_eq!(collect(&bob, 1, 5).await.0, vec![1]);

    // The new network reaches nothing for a while.
    proxy.stop().await;
    bob.network_changed().unwrap();
    for i in 0..5 {
        alice.send_text("d", &format!("missed {i}"), Priority::High).await.unwrap();
    }
    match client_event(&bob, Duration::from_secs(5)).await {
        Ok(Some(ClientEvent::Reconnecting { reason })) => {
            assert!(reason.contains("network changed"), "{reason}")
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    let _proxy = restart_proxy(&server, listen).await;
    let (seqs, others) = collect(&bob, 5, 15).await;
    assert_eq!(seqs, (2..=6).collect::<Vec<_>>(), "exactly once, in order; {others:?}");
    let (same, rooms) = resumed(&bob, &others).await;
    assert!(same && rooms[0].recovered, "{rooms:?}");
}

/// A proxy in front of `server` on `listen` again (its earlier one has just stopped).
async fn restart_proxy(server: &TestServer, listen: SocketAddr) -> Proxy {
    let config = ProxyConfig {
        listen,
        upstream: server.addr,
        to_server: Impairment::default(),
        to_client: Impairment::default(),
        seed: 3,
        rebind_at_ms: Vec::new(),
    };
    for _ in 0..50 {
        if let Ok(p) = Proxy::start(config.clone()).await {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{listen} stayed taken");
}

/// `suspend` closes the connection without a logout; `resume` resumes the same session: the
/// messages sent meanwhile arrive exactly once and in order, and the other members see no
/// member leave or join.
#[tokio::test]
async fn suspend_and_resume_replay_once_without_a_member_flap() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    alice.create_room(info("s"), cfg()).await.unwrap();
    bob.join_room("s").await.unwrap();
    carol.join_room("s").await.unwrap();
    // Alice hears both joins, Bob hears Carol's: then all is quiet.
    drain(&alice, 500).await;
    drain(&bob, 100).await;
    alice.send_text("s", "before", Priority::Medium).await.unwrap();
    assert_eq!(collect(&bob, 1, 5).await.0, vec![1]);
    assert_eq!(collect(&carol, 1, 5).await.0, vec![1]);
    let session = bob.session().session_id;

    bob.suspend();
    assert_eq!(client_event(&bob, Duration::from_secs(5)).await, Ok(Some(ClientEvent::Suspended)));
    assert_eq!(bob.state(), ConnectionState::Suspended);
    let refused = bob.send_text("s", "from the background", Priority::Medium).await;
    assert!(refused.is_err(), "{refused:?}");
    for i in 0..5 {
        let p = if i % 2 == 0 { Priority::Medium } else { Priority::High };
        alice.send_text("s", &format!("missed {i}"), p).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    bob.resume();
    let (seqs, others) = collect(&bob, 5, 10).await;
    assert_eq!(seqs, (2..=6).collect::<Vec<_>>(), "exactly once, in order; {others:?}");
    assert!(matches!(others.first(), Some(ClientEvent::Reconnecting { .. })), "{others:?}");
    let others: Vec<_> =
        others.into_iter().filter(|e| !matches!(e, ClientEvent::Resumed { .. })).collect();
    let (same, rooms) = resumed(&bob, &others).await;
    assert!(same && rooms[0].rejoined && rooms[0].recovered, "{rooms:?}");
    assert_eq!(bob.session().session_id, session);
    assert_eq!(bob.state(), ConnectionState::Connected);
    alice.send_text("s", "after", Priority::Medium).await.unwrap();
    let (seqs, others) = collect(&bob, 1, 5).await;
    assert_eq!((seqs, others), (vec![7], vec![]), "nothing replayed twice");

    // Carol saw the messages and nothing else: no member left or joined.
    let (seqs, others) = collect(&carol, 6, 5).await;
    assert_eq!(seqs, (2..=7).collect::<Vec<_>>());
    assert!(others.is_empty(), "{others:?}");
    no_event(&carol, 300).await;
    // Alice too (her own messages do not come back to her).
    no_event(&alice, 100).await;
}

/// A `resume` that comes before the client has even seen its `suspend` still resumes: the
/// suspension's close does not end the session.
#[tokio::test]
async fn resume_right_after_suspend_resumes() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await;
    bob.create_room(info("r"), cfg()).await.unwrap();
    bob.suspend();
    bob.resume();
    let events = drain(&bob, 3_000).await;
    assert!(
        matches!(
            events.as_slice(),
            [
                ClientEvent::Suspended,
                ClientEvent::Reconnecting { .. },
                ClientEvent::Resumed { session_resumed: true, .. }
            ]
        ),
        "{events:?}"
    );
    assert_eq!(bob.state(), ConnectionState::Connected);
    bob.send_text("r", "still here", Priority::Medium).await.unwrap();
}

/// Closing a suspended client ends it: Disconnected, and no reconnection.
#[tokio::test]
async fn close_while_suspended_ends_the_session() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await;
    bob.suspend();
    assert_eq!(client_event(&bob, Duration::from_secs(5)).await, Ok(Some(ClientEvent::Suspended)));
    bob.close();
    match client_event(&bob, Duration::from_secs(5)).await {
        Ok(Some(ClientEvent::Disconnected { .. })) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(bob.state(), ConnectionState::Disconnected);
}

/// Datagrams a client sent and received over `span` of (virtual) time.
async fn packets_over(c: &Client, span: Duration) -> (u64, u64) {
    let before = c.connection().stats().udp_tx.datagrams;
    let received = c.connection().stats().udp_rx.datagrams;
    tokio::time::sleep(span).await;
    let stats = c.connection().stats();
    (stats.udp_tx.datagrams - before, stats.udp_rx.datagrams - received)
}

/// An idle member of a quiet room, over ten minutes of virtual time: the mobile profile sends
/// a packet about every 25 s (its keep-alive, or the ACK of the server's), the default profile
/// every 5 s.
#[tokio::test(start_paused = true)]
async fn mobile_keep_alive_interval_in_virtual_time() {
    let server = TestServer::start().await;
    let phone = Client::connect(mobile(&server, "phone", server.addr)).await.unwrap();
    let desk = server.client("desk").await;
    phone.create_room(info("quiet"), cfg()).await.unwrap();
    desk.join_room("quiet").await.unwrap();
    assert!(matches!(next_event(&phone, 2).await, Event::MembersJoined { .. }));
    tokio::time::sleep(Duration::from_secs(5)).await;

    let span = Duration::from_secs(600);
    let (m, d) = tokio::join!(packets_over(&phone, span), packets_over(&desk, span));
    let per = |n: u64| span.as_secs_f64() / n.max(1) as f64;
    let expected = span.as_secs() / MOBILE_KEEP_ALIVE.as_secs();
    assert!(
        (expected - 2..=expected + 2).contains(&m.0),
        "mobile sent {} in {span:?} (one every {:.1} s), received {}",
        m.0,
        per(m.0),
        m.1
    );
    assert!((118..=124).contains(&d.0), "default sent {} (one every {:.1} s)", d.0, per(d.0));
}

/// Figures for README "Mobile apps" (run with `--ignored --nocapture`): from a rebinding of the
/// path (the proxy gives every client a new upstream port and drops the old one, as a NAT
/// rebinding or a Wi-Fi to cellular move does) to the delivery of the next message, sent at
/// once, to a member of a quiet room; with `call`, the member calls `network_changed` at the
/// rebinding. Each way through the proxy takes `delay_ms`. Prints one line per trial and the
/// median.
async fn measure_migration(mobile_profile: bool, call: bool, delay_ms: u64, trials: usize) {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    alice.create_room(info("q"), cfg()).await.unwrap();
    let mut took = Vec::new();
    for trial in 0..trials {
        let imp = Impairment { delay_ms, ..Default::default() };
        let proxy = impaired_proxy(&server, trial as u64, imp).await;
        let bob_cfg = if mobile_profile {
            mobile(&server, "bob", proxy.local_addr())
        } else {
            server.config_via("bob", &proxy)
        };
        let bob = Client::connect(bob_cfg).await.unwrap();
        bob.join_room("q").await.unwrap();
        drain(&alice, 300).await;
        // A quiet room: nothing for a few seconds, the stall watchdog no longer watching.
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.rebind_now().await;
        let changed = tokio::time::Instant::now();
        if call {
            bob.network_changed().unwrap();
        }
        alice.send_text("q", &format!("t{trial}"), Priority::Medium).await.unwrap();
        let (seqs, others) = collect(&bob, 1, 90).await;
        let ms = changed.elapsed().as_millis();
        let events: Vec<String> =
            others.iter().map(|e| format!("{e:?}").chars().take(40).collect()).collect();
        println!(
            "mobile={mobile_profile} network_changed={call} delay={delay_ms} trial {trial}: {ms} ms ({} message, {events:?})",
            seqs.len()
        );
        took.push(ms);
        bob.logout().await.unwrap();
        drain(&alice, 300).await;
    }
    took.sort_unstable();
    println!(
        "mobile={mobile_profile} network_changed={call} delay={delay_ms}: median {} ms of {took:?}",
        took[took.len() / 2]
    );
}

#[tokio::test]
#[ignore = "a measurement for the README; up to a minute"]
async fn measure_migration_default_profile() {
    measure_migration(false, true, 0, 3).await;
    measure_migration(false, false, 0, 3).await;
}

#[tokio::test]
#[ignore = "a measurement for the README; up to a minute"]
async fn measure_migration_mobile_profile_network_changed() {
    measure_migration(true, true, 0, 3).await;
}

#[tokio::test]
#[ignore = "a measurement for the README; up to a minute"]
async fn measure_migration_mobile_profile_nothing() {
    measure_migration(true, false, 0, 1).await;
}

#[tokio::test]
#[ignore = "a measurement for the README; up to a minute"]
async fn measure_migration_with_a_100_ms_round_trip() {
    measure_migration(true, true, 50, 3).await;
    measure_migration(false, true, 50, 3).await;
    measure_migration(false, false, 50, 2).await;
}

/// Figures for README "Mobile apps": the datagrams an idle member sends and receives in one
/// hour of virtual time (loopback, no loss: the packets the stacks choose to send), for both
/// profiles, in a quiet room and in one where another member says something every minute.
#[tokio::test(start_paused = true)]
#[ignore = "a measurement for the README; about a second"]
async fn measure_packets_per_hour() {
    for per_minute in [false, true] {
        let server = TestServer::start().await;
        let alice = default_client(&server, "alice").await;
        alice.create_room(info("r"), cfg()).await.unwrap();
        let desk = default_client(&server, "desk").await;
        let phone = Client::connect(mobile(&server, "phone", server.addr)).await.unwrap();
        desk.join_room("r").await.unwrap();
        phone.join_room("r").await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let talk = async {
            if per_minute {
                for i in 0..60 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    alice.send_text("r", &format!("minute {i}"), Priority::Medium).await.unwrap();
                }
            }
        };
        let hour = Duration::from_secs(3600);
        let (_, d, p) = tokio::join!(talk, packets_over(&desk, hour), packets_over(&phone, hour));
        let room = if per_minute { "1 message a minute" } else { "quiet room" };
        println!("{room}: default profile sent {} received {} per hour", d.0, d.1);
        println!("{room}: mobile profile sent {} received {} per hour", p.0, p.1);
    }
}

/// A cross-check of [`measure_packets_per_hour`] in real time: one minute of an idle member of
/// a quiet room, both profiles at once.
#[tokio::test]
#[ignore = "a measurement for the README; one minute"]
async fn measure_packets_per_minute_real_time() {
    let server = TestServer::start().await;
    let desk = server.client("desk").await;
    let phone = Client::connect(mobile(&server, "phone", server.addr)).await.unwrap();
    desk.create_room(info("r"), cfg()).await.unwrap();
    phone.join_room("r").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let minute = Duration::from_secs(60);
    let (d, p) = tokio::join!(packets_over(&desk, minute), packets_over(&phone, minute));
    println!("real minute, quiet room: default sent {} received {}", d.0, d.1);
    println!("real minute, quiet room: mobile sent {} received {}", p.0, p.1);
}
