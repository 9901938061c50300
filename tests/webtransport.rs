//! WebTransport beside the native protocol, against a real server: a WebTransport client
//! (web-transport-quinn's, as a browser would connect: ALPN `h3`, extended CONNECT to
//! `/huddle`, the certificate accepted by the hash `/config.json` gives) speaking the native
//! frames on the session's streams, in the same rooms as a native client of the client library.

mod common;

use std::time::Duration;

use huddle::framed::read_frame;
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use huddle::wire::{
    decode_body, encode_frame, ErrorCode, Event, Login, Priority, Reply, Request, RequestFrame,
    Response, ResponseFrame, StreamHeader, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot};
use web_transport_quinn as wtq;

use common::{cfg, info, keys, next_event, KEY_ID};

/// A server with a web listener, and what `/config.json` says about it.
struct WebServer {
    addr: std::net::SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    keys: huddle::auth::KeySet,
    config: serde_json::Value,
    presented_hash: [u8; 32],
    _stop: oneshot::Sender<()>,
}

async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> WebServer {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        web_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    tweak(&mut config);
    let tls = huddle::certs::generate_in_memory().unwrap();
    let server = Server::bind_with(config, tls.chain, tls.key, keys()).unwrap();
    let addr = server.local_addr().unwrap();
    let web = server.web_addr().expect("a web listener");
    let presented_hash = server.web_cert_hash().expect("a development certificate for browsers");
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let config: serde_json::Value =
        reqwest::get(format!("http://{web}/config.json")).await.unwrap().json().await.unwrap();
    WebServer { addr, ca: tls.ca, keys: keys(), config, presented_hash, _stop: stop }
}

impl WebServer {
    fn token(&self, user: &str) -> String {
        let now = common::now_s();
        self.keys.mint(KEY_ID, user, now, now + 3600).unwrap()
    }

    async fn native(&self, user: &str) -> huddle::client::Client {
        let mut c = huddle::client::ClientConfig::new(self.addr, user, &self.token(user));
        c.roots = vec![self.ca.clone()];
        huddle::client::Client::connect(c).await.unwrap()
    }

    fn hash(&self) -> Vec<u8> {
        hex::decode(self.config["cert_hashes"][0].as_str().unwrap()).unwrap()
    }

    async fn session(&self, origin: &str) -> Result<wtq::Session, wtq::ClientError> {
        let client = wtq::ClientBuilder::new().with_server_certificate_hashes(vec![self.hash()])?;
        let url: url::Url = self.config["webtransport_url"].as_str().unwrap().parse().unwrap();
        let request = wtq::proto::ConnectRequest::new(url)
            .with_header(wtq::http::header::ORIGIN, origin.parse().unwrap());
        client.connect(request).await
    }

    /// A logged-in WebTransport client.
    async fn web(&self, user: &str) -> Web {
        let session = self.session("http://127.0.0.1:8080").await.unwrap();
        let (send, recv) = session.open_bi().await.unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_event_streams(session.clone(), tx));
        let mut web = Web { session, send, recv, next_id: 1, events };
        let login = Request::Login(Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.into(),
            user_name: format!("{user} name"),
            token: self.token(user),
        });
        match web.request(login).await {
            Reply::Ok(Response::LoggedIn { .. }) => {}
            other => panic!("login: {other:?}"),
        }
        web
    }
}

/// A WebTransport client speaking the native frames: requests on the session's bidirectional
/// stream, events from the server's unidirectional streams (stream header, then events).
struct Web {
    #[allow(dead_code)]
    session: wtq::Session,
    send: wtq::SendStream,
    recv: wtq::RecvStream,
    next_id: u32,
    /// (the stream's header, an event on it)
    events: mpsc::UnboundedReceiver<(StreamHeader, Event)>,
}

impl Web {
    async fn request(&mut self, request: Request) -> Reply {
        let request_id = self.next_id;
        self.next_id += 1;
        self.send.write_all(&encode_frame(&RequestFrame { request_id, request })).await.unwrap();
        let body = tokio::time::timeout(
            Duration::from_secs(5),
            read_frame(&mut self.recv, MAX_FRAME_LEN, Duration::from_secs(5)),
        )
        .await
        .expect("a response in time")
        .unwrap()
        .expect("the control stream is open");
        let frame: ResponseFrame = decode_body(&body).unwrap();
        assert_eq!(frame.request_id, request_id);
        frame.reply
    }

    async fn enter(&mut self, room: &str) {
        match self.request(Request::EnterRoom { info: info(room), config: cfg() }).await {
            Reply::Ok(Response::RoomEntered(_)) => {}
            other => panic!("enter {room}: {other:?}"),
        }
    }

    async fn say(&mut self, room: &str, text: &str) -> Reply {
        self.request(Request::SendRoomMessage {
            room_id: room.into(),
            body: huddle::wire::MessageBody::Text(text.into()),
            priority: Priority::Medium,
            client_msg_id: None,
        })
        .await
    }

    async fn event(&mut self) -> (StreamHeader, Event) {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("an event in time")
            .expect("the session is open")
    }
}

async fn read_event_streams(
    session: wtq::Session,
    tx: mpsc::UnboundedSender<(StreamHeader, Event)>,
) {
    while let Ok(mut recv) = session.accept_uni().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let limit = Duration::from_secs(5);
            let Ok(Some(head)) = read_frame(&mut recv, MAX_FRAME_LEN, limit).await else { return };
            let header: StreamHeader = decode_body(&head).unwrap();
            while let Ok(Some(body)) = read_frame(&mut recv, MAX_FRAME_LEN, limit).await {
                let _ = tx.send((header.clone(), decode_body(&body).unwrap()));
            }
        });
    }
}

fn room_of(header: &StreamHeader) -> &str {
    match header {
        StreamHeader::Room { room_id } | StreamHeader::RoomLow { room_id } => room_id,
        StreamHeader::Session => "",
    }
}

#[tokio::test]
async fn a_browser_and_a_native_client_talk_both_ways_in_order_with_member_events() {
    let server = start(|_| {}).await;
    let native = server.native("nat").await;
    native.enter_room(info("r1"), cfg()).await.unwrap();
    let mut web = server.web("web").await;
    web.enter("r1").await;
    match next_event(&native, 5).await {
        Event::MembersJoined { room_id, members } => {
            assert_eq!(room_id, "r1");
            assert_eq!(members[0].user_id, "web");
        }
        other => panic!("expected web's join, got {other:?}"),
    }
    for i in 0..5 {
        assert!(matches!(web.say("r1", &format!("w{i}")).await, Reply::Ok(_)));
    }
    for i in 0..5 {
        match next_event(&native, 5).await {
            Event::RoomMessage(m) => {
                assert_eq!((m.sender.as_str(), m.seq), ("web", i + 1));
                assert_eq!(m.body, huddle::wire::MessageBody::Text(format!("w{i}")));
            }
            other => panic!("expected web's message {i}, got {other:?}"),
        }
    }
    for i in 0..5 {
        native.send_text("r1", &format!("n{i}"), Priority::Medium).await.unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (header, event) = web.event().await;
        if let Event::RoomMessage(m) = event {
            assert_eq!(room_of(&header), "r1");
            if m.sender == "nat" {
                seen.push((m.seq, m.body));
            }
        }
    }
    let expected: Vec<_> =
        (0..5).map(|i| (6 + i, huddle::wire::MessageBody::Text(format!("n{i}")))).collect();
    assert_eq!(seen, expected);
    native.leave_room("r1").await.unwrap();
    loop {
        match web.event().await {
            (_, Event::MembersLeft { room_id, members, .. }) => {
                assert_eq!((room_id.as_str(), members[0].user_id.as_str()), ("r1", "nat"));
                break;
            }
            (_, Event::RoomMessage(m)) if m.sender == "web" => {}
            other => panic!("expected nat's leave, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_browser_in_two_rooms_gets_each_room_on_its_own_stream() {
    let server = start(|_| {}).await;
    let native = server.native("nat").await;
    native.enter_room(info("a"), cfg()).await.unwrap();
    native.enter_room(info("b"), cfg()).await.unwrap();
    let mut web = server.web("web").await;
    web.enter("a").await;
    web.enter("b").await;
    for i in 0..4 {
        let room = if i % 2 == 0 { "a" } else { "b" };
        native.send_text(room, &format!("{room}{i}"), Priority::Medium).await.unwrap();
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() + b.len() < 4 {
        let (header, event) = web.event().await;
        if let Event::RoomMessage(m) = event {
            assert_eq!(room_of(&header), m.room_id, "a message on another room's stream");
            let text = match m.body {
                huddle::wire::MessageBody::Text(t) => t,
                other => panic!("{other:?}"),
            };
            if m.room_id == "a" {
                a.push(text)
            } else {
                b.push(text)
            }
        }
    }
    assert_eq!((a, b), (vec!["a0".to_string(), "a2".into()], vec!["b1".to_string(), "b3".into()]));
    assert!(matches!(web.say("b", "from the browser").await, Reply::Ok(_)));
    loop {
        match next_event(&native, 5).await {
            Event::RoomMessage(m) if m.sender == "web" => {
                assert_eq!(m.room_id, "b");
                break;
            }
            Event::MembersJoined { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_with_message_too_large() {
    let server = start(|_| {}).await;
    let mut web = server.web("web").await;
    web.enter("r").await;
    let big = "x".repeat(40 * 1024);
    match web.say("r", &big).await {
        Reply::Err(e) => assert_eq!(e.code, ErrorCode::MessageTooLarge.as_u16()),
        other => panic!("expected message_too_large, got {other:?}"),
    }
    // The session is still usable.
    assert!(matches!(web.say("r", "small").await, Reply::Ok(_)));
}

#[tokio::test]
async fn an_origin_the_server_does_not_allow_is_refused() {
    let server = start(|_| {}).await;
    assert!(server.session("http://evil.example").await.is_err(), "a foreign origin in dev mode");
    assert!(server.session("http://localhost:3000").await.is_ok(), "a loopback origin");

    let listed = start(|c| c.web_origins = vec!["https://chat.example".into()]).await;
    assert!(listed.session("http://localhost:3000").await.is_err(), "not on the list");
    assert!(listed.session("https://chat.example").await.is_ok(), "on the list");
}

#[tokio::test]
async fn config_json_gives_the_url_and_the_hash_of_the_certificate_presented() {
    let server = start(|_| {}).await;
    let url = server.config["webtransport_url"].as_str().unwrap();
    assert_eq!(url, format!("https://127.0.0.1:{}/huddle", server.addr.port()));
    assert_eq!(server.hash(), server.presented_hash.to_vec());
    let session = server.session("http://127.0.0.1:8080").await.unwrap();
    let chain = session
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    let presented = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
    assert_eq!(presented.as_ref(), server.hash().as_slice());
    // Native clients still get the configured certificate (verified against its CA).
    let native = server.native("nat").await;
    native.enter_room(info("r"), cfg()).await.unwrap();
}
