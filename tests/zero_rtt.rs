//! 0-RTT on reconnect: a returning client's Resume travels in its first flight, and a replayed
//! first flight applies nothing twice. Lossy parts run through the seeded netsim proxy; failures
//! print their seed.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use huddle::client::{client_endpoint, quic_client_config, Client, ClientEvent, TlsSessions};
use huddle::netsim::Impairment;
use huddle::wire::{
    Event, Login, MessageBody, Priority, Reply, Request, Response, PROTOCOL_VERSION,
};
use tokio::net::UdpSocket;

/// Bob behind a proxy that goes dark (both ways) from 1.0 s for 1.5 s; his idle timeout is
/// 0.8 s, so he reconnects during the outage and his first flight gets through after it.
/// Returns whether the resumption travelled in 0-RTT.
async fn outage_and_resume(
    server: &TestServer,
    seed: u64,
    before_outage: impl std::future::Future<Output = ()>,
) -> bool {
    let imp = Impairment { blackholes: vec![(1_000, 1_500)], ..Default::default() };
    let proxy = impaired_proxy(server, seed, imp).await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let mut bob_cfg = server.config_via("bob", &proxy);
    bob_cfg.idle_timeout = Duration::from_millis(800);
    bob_cfg.keep_alive = Duration::from_millis(200);
    let bob = Client::connect(bob_cfg).await.unwrap();
    bob.join_room("r").await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    before_outage.await;
    alice.send_text("r", "before", Priority::Medium).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for i in 0..10 {
        alice.send_text("r", &format!("missed {i}"), Priority::High).await.unwrap();
    }
    let mut seqs = Vec::new();
    let mut early = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seqs.len() < 11 || early.is_none() {
        match client_event_at(&bob, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) => seqs.push(m.seq),
            Ok(Some(ClientEvent::Resumed { session_resumed, rooms, early_data })) => {
                assert!(session_resumed, "seed {seed}");
                assert!(rooms[0].recovered, "seed {seed}: {rooms:?}");
                early = Some(early_data);
            }
            Ok(Some(ClientEvent::Reconnecting { .. })) => {}
            other => panic!("seed {seed}: {other:?} after seqs {seqs:?}"),
        }
    }
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "seed {seed}: exactly once, in order");
    no_event(&alice, 300).await;
    bob.send_text("r", "back", Priority::Medium).await.unwrap();
    assert!(matches!(next_event(&alice, 2).await, Event::RoomMessage(m) if m.seq == 12));
    early.unwrap()
}

#[tokio::test]
async fn a_reconnect_resumes_in_zero_rtt_exactly_once() {
    let server = TestServer::start_with(|c| c.transport.idle_timeout_s = 2).await;
    let early = outage_and_resume(&server, 404, async {}).await;
    assert!(early, "seed 404: the Resume should have travelled in 0-RTT");
}

#[tokio::test]
async fn refused_early_data_is_sent_again_after_the_handshake() {
    // A one-ticket server cache: carol's login evicts bob's tickets, so the server refuses the
    // early data of bob's reconnection and the client must say it all again in 1-RTT.
    let server = TestServer::start_with(|c| {
        c.transport.idle_timeout_s = 2;
        c.transport.tls_session_cache = 1;
    })
    .await;
    let early = outage_and_resume(&server, 405, async {
        let carol = server.client("carol").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        carol.shutdown().await;
    })
    .await;
    assert!(!early, "seed 405: bob's ticket was evicted; 0-RTT cannot have been accepted");
}

#[tokio::test]
async fn with_zero_rtt_off_the_client_resumes_after_a_full_handshake() {
    let server = TestServer::start_with(|c| c.transport.zero_rtt = false).await;
    let raw = RawClient::new(&server);
    // The server issues tickets without 0-RTT keys: a second connection cannot send early data.
    let first = raw.connect(server.addr).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let connecting = raw.endpoint.connect_with(raw.qc.clone(), server.addr, "localhost").unwrap();
    assert!(connecting.into_0rtt().is_err(), "no 0-RTT without the server's consent");
}

/// A raw QUIC client with one TLS configuration, so that its session tickets are reused.
struct RawClient {
    endpoint: quinn::Endpoint,
    qc: quinn::ClientConfig,
    login: Login,
}

impl RawClient {
    fn new(server: &TestServer) -> RawClient {
        let cfg = server.config("carol");
        RawClient {
            endpoint: client_endpoint(server.addr).unwrap(),
            qc: quic_client_config(&cfg).unwrap(),
            login: Login {
                protocol_version: PROTOCOL_VERSION,
                user_id: "carol".into(),
                user_name: String::new(),
                token: cfg.token,
            },
        }
    }

    /// A full handshake and a login; waits for the session ticket, then closes.
    async fn connect(&self, addr: SocketAddr) -> quinn::Connection {
        let conn =
            self.endpoint.connect_with(self.qc.clone(), addr, "localhost").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write_request(&mut send, 1, Request::Login(self.login.clone())).await;
        assert!(matches!(
            read_response(&mut recv).await.reply,
            Reply::Ok(Response::LoggedIn { .. })
        ));
        // The NewSessionTicket follows the handshake; give it a moment to arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn
    }
}

/// A UDP relay between one client and the server that records the client's datagrams up to the
/// server's first answer (its first flight), and can send them again from a new address, as an
/// attacker who captured them would.
struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The client's datagrams so far, and whether the server has answered (recording stops).
    flight: Arc<Mutex<(Vec<Vec<u8>>, bool)>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = Arc::new(back);
        let addr = front.local_addr().unwrap();
        let flight = Arc::new(Mutex::new((Vec::new(), false)));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let (f, b, c, rec) = (front.clone(), back.clone(), client.clone(), flight.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = f.recv_from(&mut buf).await {
                *c.lock().unwrap() = Some(from);
                {
                    let mut rec = rec.lock().unwrap();
                    if !rec.1 {
                        rec.0.push(buf[..n].to_vec());
                    }
                }
                let _ = b.send_to(&buf[..n], upstream).await;
            }
        });
        let rec = flight.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = back.recv(&mut buf).await {
                rec.lock().unwrap().1 = true;
                let to = *client.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        Relay { addr, upstream, flight }
    }

    /// Sends the recorded first flight to the server again, from a new UDP port.
    async fn replay(&self) -> usize {
        let datagrams = std::mem::take(&mut self.flight.lock().unwrap().0);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in &datagrams {
            sock.send_to(d, self.upstream).await.unwrap();
        }
        // Keep the socket a moment so that the server's answers have somewhere to go.
        tokio::time::sleep(Duration::from_millis(300)).await;
        datagrams.len()
    }
}

#[tokio::test]
async fn a_replayed_zero_rtt_flight_delivers_nothing_twice() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let raw = RawClient::new(&server);
    let first = raw.connect(server.addr).await;
    first.close(0u32.into(), b"bye");
    drop(first);

    // Second connection, through the recording relay, with everything in 0-RTT: login, join,
    // and a message.
    let relay = Relay::start(server.addr).await;
    let connecting = raw.endpoint.connect_with(raw.qc.clone(), relay.addr, "localhost").unwrap();
    let (conn, accepted) = connecting.into_0rtt().unwrap_or_else(|_| panic!("no session ticket"));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    write_request(&mut send, 1, Request::Login(raw.login.clone())).await;
    write_request(&mut send, 2, Request::JoinRoom { room_id: "r".into() }).await;
    let message = Request::SendRoomMessage {
        room_id: "r".into(),
        body: MessageBody::Text("sent in 0-RTT".into()),
        priority: Priority::High,
        client_msg_id: None,
    };
    write_request(&mut send, 3, message).await;
    assert!(accepted.await, "the server should accept 0-RTT");
    for id in 1..=3 {
        let r = read_response(&mut recv).await;
        assert_eq!(r.request_id, id);
        assert!(matches!(r.reply, Reply::Ok(_)), "{r:?}");
    }
    assert!(matches!(next_event(&alice, 2).await, Event::MembersJoined { .. }));
    match next_event(&alice, 2).await {
        Event::RoomMessage(m) => assert_eq!((m.seq, m.sender.as_str()), (1, "carol")),
        e => panic!("{e:?}"),
    }

    // The attacker replays the captured flight from another address: the ticket was used, so its
    // early data is refused, and its handshake cannot complete without carol's keys.
    let sent = relay.replay().await;
    assert!(sent > 0);
    no_event(&alice, 700).await;
    // Carol's real connection is untouched and keeps working.
    assert!(conn.close_reason().is_none(), "carol was not kicked by the replay");
    let again = Request::SendRoomMessage {
        room_id: "r".into(),
        body: MessageBody::Text("after".into()),
        priority: Priority::Medium,
        client_msg_id: None,
    };
    write_request(&mut send, 4, again).await;
    assert!(matches!(read_response(&mut recv).await.reply, Reply::Ok(_)));
    match next_event(&alice, 2).await {
        Event::RoomMessage(m) => assert_eq!(m.seq, 2, "nothing was applied twice"),
        e => panic!("{e:?}"),
    }
}

/// A UDP relay that passes the client's first flight and its 0-RTT packets to the server and
/// the server's answers back, but drops everything else the client sends after the server's
/// first answer: the client's half of the handshake never arrives.
async fn half_open_relay(upstream: SocketAddr) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = Arc::new(Mutex::new(None::<SocketAddr>));
    let (f, b, c, a) = (front.clone(), back.clone(), client.clone(), answered.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            // A long header (0x80) of type 0-RTT (0x10).
            let zero_rtt = buf[0] & 0xb0 == 0x90;
            if !a.load(std::sync::atomic::Ordering::Relaxed) || zero_rtt {
                let _ = b.send_to(&buf[..n], upstream).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            answered.store(true, std::sync::atomic::Ordering::Relaxed);
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_zero_rtt_connection_that_never_completes_its_handshake_times_out_as_a_handshake() {
    let server = TestServer::start_with(|c| c.transport.handshake_timeout_s = 2).await;
    let raw = RawClient::new(&server);
    let first = raw.connect(server.addr).await;
    first.close(0u32.into(), b"bye");
    drop(first);
    let timeouts = || server.guard.handshake_timeouts.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(timeouts(), 0);

    // A login in 0-RTT, through a relay that then keeps the client's handshake from the server.
    let relay = half_open_relay(server.addr).await;
    let started = std::time::Instant::now();
    let connecting = raw.endpoint.connect_with(raw.qc.clone(), relay, "localhost").unwrap();
    let (conn, _accepted) = connecting.into_0rtt().unwrap_or_else(|_| panic!("no session ticket"));
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    write_request(&mut send, 1, Request::Login(raw.login.clone())).await;

    // The handshake deadline (2 s) applies: the server gives up on it and counts a handshake
    // timeout (the login deadline is 5 s).
    while timeouts() == 0 && started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert_eq!(timeouts(), 1, "no handshake timeout after {took:?}");
    assert!(took >= Duration::from_millis(1_800), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_new_client_with_a_kept_ticket_logs_in_in_zero_rtt() {
    const TOKEN: &str = "zero-rtt-test-admin-token-0123";
    let server = TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(TOKEN.into());
    })
    .await;
    // The tickets a process keeps for the clients it makes.
    let sessions = TlsSessions::new();
    let launch = || {
        let mut cfg = server.config("carol");
        cfg.tls_sessions = Some(sessions.clone());
        Client::connect(cfg)
    };
    let first = launch().await.unwrap();
    assert!(!first.logged_in_early(), "no ticket yet: a full handshake");
    // The NewSessionTicket follows the handshake; give it a moment to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.shutdown().await;

    let second = launch().await.unwrap();
    assert!(second.logged_in_early(), "the client should say its Login went in 0-RTT");
    second.create_room(info("r"), cfg()).await.unwrap();

    // The server says so too: the connection's 0-RTT data was accepted.
    let conns = server.admin_connections(TOKEN, "").await;
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0]["session_id"], second.session().session_id, "{conns:?}");
    assert_eq!(conns[0]["zero_rtt"], true, "{conns:?}");

    // Without a shared store, a new client has no ticket: a full handshake, as before.
    let fresh = server.client("dave").await;
    assert!(!fresh.logged_in_early());
}
