//! The stage every attack runs on: a real server on 127.0.0.1:0, two honest members of room
//! `r` on the real client library (alice talks, bob listens), and raw QUIC connections for the
//! attacker, which speak the wire format byte by byte.
//!
//! Attacks take turns (one arena at a time), so that the memory each one makes the process
//! hold can be measured: the peak resident set size is reset when the arena is ready, and
//! [`Arena::finish`] checks how far above the starting point it went, as well as the server's
//! own account of the largest outbound queue.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use huddle::auth::KeySet;
use huddle::client::{client_endpoint, quic_client_config, Client, ClientConfig, ClientEvent};
use huddle::framed::read_frame;
use huddle::server::config::ServerConfig;
use huddle::server::{GuardStats, OutboxStats};
use huddle::wire::{
    decode_body, encode_frame, ErrorCode, Event, Login, Priority, Reply, Request, RequestFrame,
    Response, ResponseFrame, RoomConfig, RoomInfo, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use rustls::pki_types::CertificateDer;
use tokio::sync::{Mutex, MutexGuard};

use crate::common::TestServer;

/// The key tokens are normally signed with, and the older key still accepted (rotation).
pub const KEY_ID: &str = "k2026-11";
pub const OLD_KEY_ID: &str = "k2026-10";
const SECRET: &[u8] = b"adversarial-test-secret-0123456789";
const OLD_SECRET: &[u8] = b"adversarial-old-secret-9876543210";

/// How much the process's resident set may grow during one attack (server, honest clients and
/// attacker together). The attacks that push data push several times this much.
pub const MEMORY_BOUND: u64 = 64 * 1024 * 1024;

/// One attack at a time (see the module documentation).
static TURN: Mutex<()> = Mutex::const_new(());

pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn keys() -> KeySet {
    let mut k = KeySet::new();
    assert!(k.insert(OLD_KEY_ID, OLD_SECRET));
    assert!(k.insert(KEY_ID, SECRET));
    k
}

/// A client library configuration for `user` (no reconnecting: every close is final).
pub fn client_config(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    keys: &KeySet,
    user: &str,
) -> ClientConfig {
    let now = now_s();
    let mut c = ClientConfig::new(addr, user, &keys.mint(KEY_ID, user, now, now + 3600).unwrap());
    c.roots = vec![ca.clone()];
    c.reconnect_for = Duration::ZERO;
    c
}

/// Resident set size now, in bytes.
fn rss_now() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Peak resident set size since the last reset, in bytes (the current size where the kernel
/// cannot say).
fn rss_peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(rss_now)
}

/// Resets the peak resident set size to the current one (Linux `clear_refs`); false when the
/// kernel refused (the peak then covers earlier attacks too, and only the current size is
/// meaningful).
fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub struct Arena {
    pub addr: SocketAddr,
    pub ca: CertificateDer<'static>,
    pub keys: KeySet,
    pub stats: Arc<OutboxStats>,
    pub guard: Arc<GuardStats>,
    pub config: ServerConfig,
    pub alice: Arc<Client>,
    pub bob: Arc<Client>,
    server: Option<TestServer>,
    rss_start: u64,
    peak_was_reset: bool,
    _turn: MutexGuard<'static, ()>,
}

impl Arena {
    pub async fn start() -> Arena {
        Arena::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Arena {
        let turn = TURN.lock().await;
        let mut config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        tweak(&mut config);
        let server = TestServer::start_config(config.clone(), keys()).await;
        let (addr, keys) = (server.addr, server.keys.clone());
        let cfg = |user: &str| client_config(addr, &server.ca, &keys, user);
        let alice = Arc::new(Client::connect(cfg("alice")).await.unwrap());
        let bob = Arc::new(Client::connect(cfg("bob")).await.unwrap());
        let info = RoomInfo { room_id: "r".into(), room_name: "the room".into() };
        alice.create_room(info, RoomConfig::default()).await.unwrap();
        bob.join_room("r").await.unwrap();
        match next_event(&alice).await {
            Event::MembersJoined { members, .. } => assert_eq!(members[0].user_id, "bob"),
            e => panic!("{e:?}"),
        }
        let mut arena = Arena {
            addr,
            ca: server.ca.clone(),
            keys,
            stats: server.stats.clone(),
            guard: server.guard.clone(),
            config,
            alice,
            bob,
            server: Some(server),
            rss_start: 0,
            peak_was_reset: false,
            _turn: turn,
        };
        arena.alive().await;
        arena.rss_start = rss_now();
        arena.peak_was_reset = reset_rss_peak();
        arena
    }

    /// A token for `user` signed with the current key, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        let now = now_s();
        self.keys.mint(KEY_ID, user, now, now + 3600).unwrap()
    }

    pub fn client_config(&self, user: &str) -> ClientConfig {
        client_config(self.addr, &self.ca, &self.keys, user)
    }

    pub fn login(&self, user: &str) -> Login {
        Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: String::new(),
            token: self.token(user),
        }
    }

    /// A raw QUIC connection (handshake done, no stream yet).
    pub async fn raw(&self) -> Raw {
        self.raw_with(|_| {}).await
    }

    /// A raw connection with its transport settings tweaked.
    pub async fn raw_with(&self, tweak: impl FnOnce(&mut quinn::TransportConfig)) -> Raw {
        let mut qc = quic_client_config(&self.client_config("raw")).unwrap();
        let mut tc = quinn::TransportConfig::default();
        tc.max_concurrent_uni_streams(16u32.into());
        tweak(&mut tc);
        qc.transport_config(Arc::new(tc));
        let endpoint = client_endpoint(self.addr).unwrap();
        let conn = endpoint.connect_with(qc, self.addr, "localhost").unwrap().await.unwrap();
        Raw { _endpoint: endpoint, conn }
    }

    /// A raw connection with small receive windows, logged in as `user` and in room `r`,
    /// whose replies are left unread.
    pub async fn raw_stalled_in_room(&self, user: &str, stream_window: u32) -> (Raw, Control) {
        let raw = self
            .raw_with(|tc| {
                tc.stream_receive_window(stream_window.into());
                tc.receive_window((2 * stream_window).into());
            })
            .await;
        let mut ctl = raw.control().await;
        ctl.request(1, Request::Login(self.login(user))).await;
        ctl.request(2, Request::JoinRoom { room_id: "r".into() }).await;
        (raw, ctl)
    }

    /// A raw connection logged in as `user`, with its control stream.
    pub async fn raw_logged_in(&self, user: &str) -> (Raw, Control) {
        let raw = self.raw().await;
        let mut ctl = raw.control().await;
        ctl.request(1, Request::Login(self.login(user))).await;
        match ctl.response().await {
            ResponseFrame { request_id: 1, reply: Reply::Ok(Response::LoggedIn { .. }) } => {}
            r => panic!("{r:?}"),
        }
        (raw, ctl)
    }

    /// Alice says something in `r`, and bob hears it: the room survived.
    pub async fn alive(&self) {
        let ack = self.alice.send_text("r", "still here", Priority::Medium).await.unwrap();
        loop {
            match next_event(&self.bob).await {
                Event::RoomMessage(m) if m.seq == ack.seq => return,
                Event::RoomMessage(m) => assert!(m.seq < ack.seq, "{m:?}"),
                Event::MembersJoined { .. } | Event::MembersLeft { .. } => {}
                e => panic!("{e:?}"),
            }
        }
    }

    /// Asserts the memory bounds: the peak resident set stayed within [`MEMORY_BOUND`] of the
    /// start, and no connection's outbound queue passed its bound.
    pub fn assert_memory(&self) {
        let rss = if self.peak_was_reset { rss_peak() } else { rss_now() };
        let grew = rss.saturating_sub(self.rss_start);
        eprintln!("memory: peak resident set {} KiB above the start", grew >> 10);
        assert!(grew <= MEMORY_BOUND, "resident set grew by {} MiB", grew >> 20);
        let peak = self.stats.peak_queued_bytes.load(Ordering::Relaxed);
        assert!(peak <= self.config.queue.max_bytes, "a queue held {peak} bytes");
    }

    /// The end of every attack: the room still carries messages, memory stayed bounded.
    pub async fn finish(mut self) {
        self.alive().await;
        self.assert_memory();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server.stop()).await;
        }
    }
}

/// A QUIC connection that the test drives by hand.
pub struct Raw {
    /// Kept so that the endpoint outlives the connection.
    pub _endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl Raw {
    /// Opens the control stream.
    pub async fn control(&self) -> Control {
        let (send, recv) = self.conn.open_bi().await.unwrap();
        Control { send, recv }
    }

    /// The application code the server closed the connection with.
    pub async fn closed_code(&self, within: Duration) -> u64 {
        match tokio::time::timeout(within, self.conn.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner(),
            Ok(e) => panic!("closed without an application code: {e}"),
            Err(_) => panic!("not closed within {within:?}"),
        }
    }

    /// Asserts the server closes the connection with `code` within 5 s.
    pub async fn assert_closed_with(&self, code: ErrorCode) {
        assert_eq!(self.closed_code(Duration::from_secs(5)).await, u64::from(code.as_u16()));
    }

    /// Asserts the connection is still open after `ms`.
    pub async fn assert_open_after(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        assert!(self.conn.close_reason().is_none(), "closed: {:?}", self.conn.close_reason());
    }
}

/// A raw control stream.
pub struct Control {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl Control {
    pub async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }

    pub async fn request(&mut self, request_id: u32, request: Request) {
        self.write(&encode_frame(&RequestFrame { request_id, request })).await;
    }

    pub async fn response(&mut self) -> ResponseFrame {
        response_on(&mut self.recv).await
    }

    /// The error code of the next response, which must be an error.
    pub async fn error_code(&mut self) -> u16 {
        match self.response().await.reply {
            Reply::Err(e) => e.code,
            r => panic!("expected an error, got {r:?}"),
        }
    }
}

/// The next response on a control stream's receive side, within 5 s.
pub async fn response_on(recv: &mut quinn::RecvStream) -> ResponseFrame {
    let body = read_frame(recv, MAX_FRAME_LEN, Duration::from_secs(5));
    let body = tokio::time::timeout(Duration::from_secs(5), body).await;
    let body = body.expect("a response within 5 s").unwrap().expect("a frame, not the end");
    decode_body(&body).unwrap()
}

/// The next event of a client within 5 s.
pub async fn next_event(c: &Client) -> Event {
    match crate::common::client_event(c, Duration::from_secs(5)).await {
        Ok(Some(ClientEvent::Event(e))) => e,
        Ok(other) => panic!("expected an event, got {other:?}"),
        Err(_) => panic!("no event within 5 s"),
    }
}

/// A frame: the length prefix `len` (whatever the body's real length) and the body.
pub fn frame_with_len(len: u32, body: &[u8]) -> Vec<u8> {
    let mut f = len.to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A frame whose prefix tells the body's true length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    frame_with_len(body.len() as u32, body)
}
