//! Several servers: a client given a list connects to the first that answers and, when the
//! server it is on dies, resumes on the next one; servers started from one certs folder share
//! the certificate, the token secret and the QUIC reset and Retry keys; node ids keep their
//! ids apart.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use huddle::auth::KeySet;
use huddle::certs;
use huddle::client::{Client, ClientConfig, ClientEvent};
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use huddle::wire::{Event, MessageBody, Priority};
use rustls::pki_types::CertificateDer;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// A UDP relay for one client in front of a server: `kill` makes it drop everything (a server
/// that died without a word), `retarget` sends the client's packets to another server.
struct Relay {
    addr: SocketAddr,
    dead: Arc<AtomicBool>,
    upstream: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let upstream = Arc::new(Mutex::new(upstream));
        let (d, u) = (dead.clone(), upstream.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        let to = *u.lock().unwrap();
                        if !d.load(Ordering::SeqCst) {
                            let _ = back.send_to(&a[..n], to).await;
                        }
                    }
                    Ok((n, _)) = back.recv_from(&mut b) => {
                        if let (Some(c), false) = (client, d.load(Ordering::SeqCst)) {
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        Relay { addr, dead, upstream, task }
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    fn retarget(&self, to: SocketAddr) {
        *self.upstream.lock().unwrap() = to;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two independent servers with node ids 1 and 2 (without them, two servers started in the
/// same millisecond hand out the same session ids, and a Resume on the second names a session
/// that it holds for someone else).
async fn two_nodes() -> (TestServer, TestServer) {
    let a = TestServer::start_with(|c| c.node_id = Some(1)).await;
    let b = TestServer::start_with(|c| c.node_id = Some(2)).await;
    (a, b)
}

/// Waits (at most `secs`) for `c`'s `Resumed` event and returns it.
async fn until_resumed(c: &Client, secs: u64) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match client_event_at(c, deadline).await {
            Ok(Some(e @ ClientEvent::Resumed { .. })) => return e,
            Ok(Some(e)) => eprintln!("{e:?}"),
            other => panic!("no Resumed: {other:?}"),
        }
    }
}

/// Waits (at most `secs`) for a room message from `sender` with `text`, skipping other events.
async fn until_text(c: &Client, sender: &str, text: &str, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match client_event_at(c, deadline).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m))))
                if m.sender == sender && m.body == MessageBody::Text(text.into()) =>
            {
                return
            }
            Ok(Some(_)) => {}
            other => panic!("no {text:?} from {sender}: {other:?}"),
        }
    }
}

/// Alice's configuration for servers `a` then `b`, trusting both servers' CAs, with short
/// timeouts so that a dead server is given up on quickly.
fn alice_config(a: &TestServer, b: &TestServer, first: SocketAddr) -> ClientConfig {
    let mut cfg = ClientConfig::with_servers(&[first, b.addr], "alice", &a.token("alice")).unwrap();
    cfg.roots = vec![a.ca.clone(), b.ca.clone()];
    cfg.connect_timeout = Duration::from_millis(800);
    cfg.stall_timeout = Duration::from_millis(500);
    cfg.keep_alive = Duration::from_millis(200);
    cfg.idle_timeout = Duration::from_secs(2);
    cfg
}

#[tokio::test]
async fn a_client_whose_server_dies_resumes_on_the_next_one_and_rejoins_its_rooms() {
    let (a, b) = two_nodes().await;
    let relay = Relay::start(a.addr).await;
    let alice = Client::connect(alice_config(&a, &b, relay.addr)).await.unwrap();
    alice.create_room(info("r"), cfg()).await.unwrap();
    // The same room on the other (independent) server, with Bob in it.
    let bob = b.client("bob").await;
    bob.create_room(info("r"), cfg()).await.unwrap();

    relay.kill();
    // A request finds the dead server within the stall timeout.
    let send = alice.send_text("r", "after", Priority::Medium);
    let (sent, resumed) = tokio::join!(send, until_resumed(&alice, 10));
    let ClientEvent::Resumed { session_resumed, rooms, .. } = resumed else { unreachable!() };
    assert!(!session_resumed, "a new server cannot know the session");
    assert_eq!(rooms.len(), 1);
    assert!(rooms[0].rejoined, "room r on the second server: {rooms:?}");
    sent.unwrap();
    until_text(&bob, "alice", "after", 5).await;
    bob.send_text("r", "hello", Priority::Medium).await.unwrap();
    until_text(&alice, "bob", "hello", 5).await;
}

#[tokio::test]
async fn a_client_connects_to_the_first_server_that_answers() {
    let (a, b) = two_nodes().await;
    let relay = Relay::start(a.addr).await;
    relay.kill();
    let alice = Client::connect(alice_config(&a, &b, relay.addr)).await.unwrap();
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = b.client("bob").await;
    bob.join_room("r").await.unwrap();
}

#[tokio::test]
async fn a_server_shutting_down_sends_a_client_with_a_list_to_the_next_one() {
    let (a, b) = two_nodes().await;
    let alice = Client::connect(alice_config(&a, &b, a.addr)).await.unwrap();
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = b.client("bob").await;
    bob.create_room(info("r"), cfg()).await.unwrap();
    a.stop().await;
    let ClientEvent::Resumed { session_resumed, rooms, .. } = until_resumed(&alice, 10).await
    else {
        unreachable!()
    };
    assert!(!session_resumed);
    assert!(rooms[0].rejoined, "{rooms:?}");
    alice.send_text("r", "moved", Priority::Medium).await.unwrap();
    until_text(&bob, "alice", "moved", 5).await;
}

#[tokio::test]
async fn session_and_message_ids_carry_the_node_id() {
    let (a, b) = two_nodes().await;
    for (server, node) in [(&a, 1u64), (&b, 2)] {
        let c = server.client("carol").await;
        assert_eq!(c.session().session_id >> 43, node);
        c.create_room(info("r"), cfg()).await.unwrap();
        let sent = c.send_text("r", "x", Priority::Medium).await.unwrap();
        assert_eq!(sent.message_id >> 43, node);
        assert!(sent.message_id < 1 << 53);
    }
}

/// A server bound from the certs folder `dir` (as `huddle serve --certs-dir`), with its own QUIC
/// secret file when `quic_secret` is set; stops when the sender is dropped.
fn serve_from(
    dir: &std::path::Path,
    quic_secret: Option<std::path::PathBuf>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs_dir: dir.to_path_buf(),
        quic_secret_file: quic_secret,
        ..Default::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (addr, stop)
}

/// A configuration for `user` at `addr` trusting only the folder's CA, with a token minted from
/// the folder's token secret.
fn dir_config(dir: &std::path::Path, addr: SocketAddr, user: &str) -> ClientConfig {
    let secret = certs::read_token_secret(&dir.join(certs::TOKEN_SECRET_FILE)).unwrap();
    let mut keys = KeySet::new();
    keys.insert(certs::DEV_KEY_ID, &secret);
    let token = keys.mint(certs::DEV_KEY_ID, user, now_s(), now_s() + 600).unwrap();
    let mut cfg = ClientConfig::new(addr, user, &token);
    cfg.roots = certs::load_certs(&dir.join(certs::CA_FILE)).unwrap();
    cfg
}

fn peer_chain(c: &Client) -> Vec<CertificateDer<'static>> {
    let identity = c.connection().peer_identity().unwrap();
    *identity.downcast::<Vec<CertificateDer<'static>>>().unwrap()
}

#[tokio::test]
async fn servers_from_one_certs_folder_present_one_certificate_and_accept_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _stop_a) = serve_from(dir.path(), None);
    let (b, _stop_b) = serve_from(dir.path(), None);
    let on_a = Client::connect(dir_config(dir.path(), a, "alice")).await.unwrap();
    let on_b = Client::connect(dir_config(dir.path(), b, "alice")).await.unwrap();
    assert_eq!(peer_chain(&on_a), peer_chain(&on_b));
    assert!(dir.path().join(certs::QUIC_SECRET_FILE).exists());
}

/// Whether a client connected to server A through a relay sees its connection reset at once
/// when the relay starts sending its packets to server B instead (A and B from one certs
/// folder; B with its own QUIC secret file when `b_secret` is set).
async fn reset_by_the_other_server(b_secret: Option<&[u8]>) -> Option<quinn::ConnectionError> {
    let dir = tempfile::tempdir().unwrap();
    let (a, _stop_a) = serve_from(dir.path(), None);
    let b_file = b_secret.map(|s| {
        let path = dir.path().join("other.secret");
        std::fs::write(&path, hex::encode(s)).unwrap();
        path
    });
    let (b, _stop_b) = serve_from(dir.path(), b_file);
    let relay = Relay::start(a).await;
    let mut cfg = dir_config(dir.path(), relay.addr, "alice");
    cfg.keep_alive = Duration::from_millis(100);
    cfg.idle_timeout = Duration::from_secs(10);
    cfg.stall_timeout = Duration::ZERO;
    let alice = Client::connect(cfg).await.unwrap();
    let conn = alice.connection();
    relay.retarget(b);
    tokio::time::timeout(Duration::from_millis(1500), conn.closed()).await.ok()
}

#[tokio::test]
async fn a_stateless_reset_from_a_server_sharing_the_quic_secret_ends_the_connection_at_once() {
    let shared = reset_by_the_other_server(None).await;
    assert!(matches!(shared, Some(quinn::ConnectionError::Reset)), "{shared:?}");
    // The control: another secret's reset is not recognised (the idle timeout would end it).
    let other = reset_by_the_other_server(Some(&[9; 64])).await;
    assert!(other.is_none(), "{other:?}");
}
