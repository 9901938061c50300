//! Shared helpers for integration tests: a real server on 127.0.0.1:0 with in-memory
//! certificates, and logged-in clients from the real client library.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use huddle::auth::KeySet;
use huddle::certs::generate_in_memory;
use huddle::client::{Client, ClientConfig, ClientEvent};
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use huddle::wire::{Event, RoomConfig, RoomInfo};
use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;

pub const KEY_ID: &str = "test";
pub const SECRET: &[u8] = b"integration-test-secret-0123456789";

/// A running test server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ca: CertificateDer<'static>,
    pub keys: KeySet,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub stats: std::sync::Arc<huddle::server::OutboxStats>,
    pub guard: std::sync::Arc<huddle::server::GuardStats>,
    /// The admin HTTP listener's address, when the configuration asked for one.
    pub admin: Option<SocketAddr>,
}

pub fn keys() -> KeySet {
    let mut k = KeySet::new();
    k.insert(KEY_ID, SECRET);
    k
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        tweak(&mut config);
        Self::start_config(config, keys()).await
    }

    /// A server with exactly this configuration and these token keys.
    pub async fn start_config(config: ServerConfig, keys: KeySet) -> TestServer {
        let tls = generate_in_memory().unwrap();
        let server = Server::bind_with(config, tls.chain, tls.key, keys.clone()).unwrap();
        let addr = server.local_addr().unwrap();
        let (stats, guard) = (server.stats(), server.guard_stats());
        let admin = server.admin_addr();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            ca: tls.ca,
            keys,
            stop: Some(stop),
            task: Some(task),
            stats,
            guard,
            admin,
        }
    }

    pub fn token(&self, user: &str) -> String {
        let now = now_s();
        self.keys.mint(KEY_ID, user, now, now + 3600).unwrap()
    }

    pub fn config(&self, user: &str) -> ClientConfig {
        let mut c = ClientConfig::new(self.addr, user, &self.token(user));
        c.user_name = format!("{user} name");
        c.roots = vec![self.ca.clone()];
        c
    }

    pub async fn client(&self, user: &str) -> Client {
        Client::connect(self.config(user)).await.unwrap()
    }

    /// [`TestServer::config`] for a client that reaches the server through `proxy`.
    pub fn config_via(&self, user: &str, proxy: &huddle::netsim::Proxy) -> ClientConfig {
        ClientConfig { server_addr: proxy.local_addr(), ..self.config(user) }
    }

    /// A client connected through `proxy`.
    pub async fn client_via(&self, user: &str, proxy: &huddle::netsim::Proxy) -> Client {
        Client::connect(self.config_via(user, proxy))
            .await
            .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
    }

    /// `GET /v1/connections?QUERY` on the admin listener with `token`: the listing's
    /// `connections` array (the configuration must have asked for an admin listener).
    pub async fn admin_connections(&self, token: &str, query: &str) -> Vec<serde_json::Value> {
        let admin = self.admin.expect("an admin listener");
        let url = format!("http://{admin}/v1/connections?{query}");
        let request = reqwest::Client::new().get(url).bearer_auth(token);
        let list: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        list["connections"].as_array().unwrap_or_else(|| panic!("{list}")).clone()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn info(id: &str) -> RoomInfo {
    RoomInfo { room_id: id.into(), room_name: format!("{id} name") }
}

pub fn cfg() -> RoomConfig {
    RoomConfig::default()
}

/// `c.next_event()` within `deadline`, past the client's own Connecting and Connected (the
/// first two events of every client).
pub async fn client_event_at(
    c: &Client,
    deadline: tokio::time::Instant,
) -> Result<Option<ClientEvent>, tokio::time::error::Elapsed> {
    loop {
        match tokio::time::timeout_at(deadline, c.next_event()).await {
            Ok(Some(ClientEvent::Connecting | ClientEvent::Connected { .. })) => {}
            other => return other,
        }
    }
}

/// [`client_event_at`] within `within` from now.
pub async fn client_event(
    c: &Client,
    within: Duration,
) -> Result<Option<ClientEvent>, tokio::time::error::Elapsed> {
    client_event_at(c, tokio::time::Instant::now() + within).await
}

/// The next server event within `secs` (past the client's own Connecting and Connected),
/// panicking on timeout or disconnect.
pub async fn next_event(c: &Client, secs: u64) -> Event {
    match client_event(c, Duration::from_secs(secs)).await {
        Ok(Some(ClientEvent::Event(e))) => e,
        Ok(other) => panic!("expected an event, got {other:?}"),
        Err(_) => panic!("no event within {secs} s"),
    }
}

/// Asserts that no server event arrives within `ms` (the client's Connecting and Connected
/// are passed over).
pub async fn no_event(c: &Client, ms: u64) {
    if let Ok(e) = client_event(c, Duration::from_millis(ms)).await {
        panic!("expected no event, got {e:?}");
    }
}

/// A seeded netsim proxy in front of `server`, impairing both directions alike.
pub async fn impaired_proxy(
    server: &TestServer,
    seed: u64,
    imp: huddle::netsim::Impairment,
) -> huddle::netsim::Proxy {
    proxy_between(server, seed, imp.clone(), imp).await
}

/// A seeded netsim proxy in front of `server`, each direction impaired as given.
pub async fn proxy_between(
    server: &TestServer,
    seed: u64,
    to_server: huddle::netsim::Impairment,
    to_client: huddle::netsim::Impairment,
) -> huddle::netsim::Proxy {
    huddle::netsim::Proxy::start(huddle::netsim::ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: server.addr,
        to_server,
        to_client,
        seed,
        rebind_at_ms: Vec::new(),
    })
    .await
    .unwrap()
}

/// A narrow downlink: 2 Mbit/s with a 32 KiB queue, so that a backlog waits at the server.
pub fn narrow_downlink() -> huddle::netsim::Impairment {
    huddle::netsim::Impairment { rate_kbps: 2_000, queue_bytes: 32 * 1024, ..Default::default() }
}

/// Writes one request frame on a raw control stream.
pub async fn write_request(
    send: &mut quinn::SendStream,
    request_id: u32,
    request: huddle::wire::Request,
) {
    let frame = huddle::wire::encode_frame(&huddle::wire::RequestFrame { request_id, request });
    send.write_all(&frame).await.unwrap();
}

/// Reads one response frame from a raw control stream (within 5 s).
pub async fn read_response(recv: &mut quinn::RecvStream) -> huddle::wire::ResponseFrame {
    let max = huddle::wire::MAX_FRAME_LEN;
    let body =
        huddle::framed::read_frame(recv, max, Duration::from_secs(5)).await.unwrap().unwrap();
    huddle::wire::decode_body(&body).unwrap()
}
