//! The bindings' robustness against a real server on 127.0.0.1: a listener that panics (as a
//! foreign exception arrives) keeps getting events, a cancelled `next_event` loses no event,
//! and closing or dropping a client ends a pending `next_event` and releases the connection.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use huddle::auth::KeySet;
use huddle::certs::{dev_paths, ensure_dev_certs, load_certs, load_key};
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use huddle_ffi::{
    connect, connect_with_listener, ConnectOptions, EventListener, HuddleClient, HuddleEvent,
    Priority, RoomConfig,
};
use tokio::sync::oneshot;

/// A server on 127.0.0.1:0 with a fresh development CA; it stops when dropped.
struct TestServer {
    addr: String,
    ca_pem: String,
    keys: KeySet,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// Starts one with an offline grace of `grace_s` seconds.
    async fn start(grace_s: u64) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        ensure_dev_certs(dir.path()).unwrap();
        let (cert, key) = dev_paths(dir.path());
        let mut config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        config.limits.offline_grace_s = grace_s;
        let mut keys = KeySet::new();
        keys.insert("test", b"bindings-robustness-secret-0123456789");
        let server = Server::bind_with(
            config,
            load_certs(&cert).unwrap(),
            load_key(&key).unwrap(),
            keys.clone(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let (stop, rx) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        TestServer { addr, ca_pem, keys, _dir: dir, _stop: stop }
    }

    fn options(&self, user: &str) -> ConnectOptions {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        ConnectOptions {
            server: self.addr.clone(),
            user_id: user.into(),
            token: self.keys.mint("test", user, now, now + 3600).unwrap(),
            ca_pem: self.ca_pem.clone(),
            display_name: None,
            reconnect_window_ms: None,
            server_name: None,
            mobile: false,
            keep_alive_ms: None,
        }
    }

    async fn client(&self, user: &str) -> Arc<HuddleClient> {
        connect(self.options(user)).await.unwrap()
    }
}

fn room() -> RoomConfig {
    RoomConfig { destroy_delay_s: 0, attributes: vec![] }
}

/// Events of `c` until `pred` matches one (which is returned), within 5 s.
async fn until(c: &Arc<HuddleClient>, pred: impl Fn(&HuddleEvent) -> bool) -> HuddleEvent {
    let wait = async {
        loop {
            let ev = next(c).await.expect("events ended");
            if pred(&ev) {
                return ev;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.expect("no such event in 5 s")
}

/// Reads `c`'s events until none comes for 300 ms.
async fn drain(c: &Arc<HuddleClient>) {
    while tokio::time::timeout(Duration::from_millis(300), next(c)).await.is_ok() {}
}

/// `c.next_event()`, owning a reference to `c` as a foreign call does.
async fn next(c: &Arc<HuddleClient>) -> Option<HuddleEvent> {
    let c = c.clone();
    c.next_event().await
}

fn is_message(ev: &HuddleEvent) -> bool {
    matches!(ev, HuddleEvent::RoomMessage { .. })
}

/// A listener that panics on the connection events (as UniFFI's scaffolding does when the
/// foreign `on_event` throws) and hands the others on.
struct Faulty(std::sync::Mutex<mpsc::Sender<HuddleEvent>>);

impl EventListener for Faulty {
    fn on_event(&self, event: HuddleEvent) {
        if matches!(event, HuddleEvent::Connecting | HuddleEvent::Connected { .. }) {
            panic!("Callback interface failure: a faulty listener");
        }
        let _ = self.0.lock().unwrap().send(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_throws_still_gets_the_next_events() {
    let server = TestServer::start(30).await;
    let (tx, rx) = mpsc::channel();
    let listener = Arc::new(Faulty(std::sync::Mutex::new(tx)));
    let carol = connect_with_listener(server.options("carol"), listener).await.unwrap();
    let dave = server.client("dave").await;
    carol.enter_room("r1".into(), String::new(), room()).await.unwrap();
    dave.enter_room("r1".into(), String::new(), room()).await.unwrap();
    for i in 0..3 {
        let text = format!("m{i}");
        dave.send_text("r1".into(), text, Priority::Medium, None).await.unwrap();
    }
    let texts = tokio::task::spawn_blocking(move || {
        let mut texts = vec![];
        let deadline = Instant::now() + Duration::from_secs(5);
        while texts.len() < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(HuddleEvent::RoomMessage { text, .. }) => texts.push(text.unwrap()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        texts
    })
    .await
    .unwrap();
    assert_eq!(texts, ["m0", "m1", "m2"], "messages heard after the listener threw");
    assert_eq!(carol.listener_failures(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_next_event_leaves_the_event_for_the_next_call() {
    let server = TestServer::start(30).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.enter_room("r1".into(), String::new(), room()).await.unwrap();
    bob.enter_room("r1".into(), String::new(), room()).await.unwrap();
    drain(&alice).await;
    for i in 0..5 {
        // Cancelled while waiting; the message sent after it must reach the next call.
        let waited = tokio::time::timeout(Duration::from_millis(50), next(&alice)).await;
        assert!(waited.is_err(), "no event was pending");
        let text = format!("m{i}");
        let ack = bob.send_text("r1".into(), text.clone(), Priority::Medium, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        match until(&alice, is_message).await {
            HuddleEvent::RoomMessage { seq, text: got, .. } => {
                assert_eq!((seq, got.as_deref()), (ack.seq, Some(text.as_str())));
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_a_pending_next_event() {
    let server = TestServer::start(30).await;
    let alice = server.client("alice").await;
    assert_eq!(next(&alice).await, Some(HuddleEvent::Connecting));
    assert!(matches!(next(&alice).await, Some(HuddleEvent::Connected { .. })));
    // As a foreign call does: the pending call owns a reference to the handle.
    let handle = alice.clone();
    let pending = tokio::spawn(async move { handle.next_event().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(3), pending).await;
    let ev = ended.expect("the pending next_event still waits 3 s after close").unwrap();
    assert_eq!(ev, None);
    assert_eq!(next(&alice).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_reference_with_a_pending_next_event_releases_the_connection() {
    // With a 1 s offline grace, bob sees alice leave (offline) once her connection is gone.
    let server = TestServer::start(1).await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.enter_room("r1".into(), String::new(), room()).await.unwrap();
    bob.enter_room("r1".into(), String::new(), room()).await.unwrap();
    drain(&alice).await;
    drain(&bob).await;
    // As a foreign call does: the pending call owns a reference to the handle.
    let handle = alice.clone();
    let pending = tokio::spawn(async move { handle.next_event().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(alice);
    let ended = tokio::time::timeout(Duration::from_secs(3), pending).await;
    let ev = ended.expect("the pending next_event still waits 3 s after the drop").unwrap();
    assert_eq!(ev, None);
    let left = until(&bob, |ev| matches!(ev, HuddleEvent::MembersLeft { .. })).await;
    let HuddleEvent::MembersLeft { members, .. } = left else { unreachable!() };
    assert_eq!(members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), ["alice"]);
}
