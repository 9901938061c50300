//! Login, sessions, protocol abuse and shutdown against a real server. Where the client library
//! cannot misbehave on purpose, a raw QUIC connection speaks the wire format directly.

mod common;

use std::time::Duration;

use common::*;
use huddle::client::{client_endpoint, quic_client_config, Client, ClientError, ClientEvent};
use huddle::wire::{
    encode_frame, ErrorCode, Event, LeaveReason, Login, Priority, Reply, Request, RequestFrame,
    Response, PROTOCOL_VERSION,
};

/// A QUIC connection to the test server that has not opened any stream yet.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let qc = quic_client_config(&server.config("raw")).unwrap();
        let endpoint = client_endpoint(server.addr).unwrap();
        let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
        Raw { _endpoint: endpoint, conn }
    }

    /// Opens the control stream.
    async fn control(&self) -> (quinn::SendStream, quinn::RecvStream) {
        self.conn.open_bi().await.unwrap()
    }

    /// The application close code the server closed the connection with.
    async fn closed_code(&self, within: Duration) -> u64 {
        match tokio::time::timeout(within, self.conn.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner(),
            Ok(e) => panic!("closed without an application code: {e}"),
            Err(_) => panic!("not closed within {within:?}"),
        }
    }
}

fn login(server: &TestServer, user: &str) -> Login {
    Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: user.into(),
        user_name: String::new(),
        token: server.token(user),
    }
}

/// Logs a raw connection in; returns its control stream.
async fn raw_login(
    server: &TestServer,
    raw: &Raw,
    user: &str,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, mut recv) = raw.control().await;
    write_request(&mut send, 1, Request::Login(login(server, user))).await;
    let r = read_response(&mut recv).await;
    assert_eq!(r.request_id, 1);
    assert!(matches!(r.reply, Reply::Ok(Response::LoggedIn { .. })), "{r:?}");
    (send, recv)
}

fn login_code(r: Result<Client, ClientError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("login succeeded"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// The next thing the client reports, events or disconnect.
async fn next_client_event(c: &Client) -> ClientEvent {
    match client_event(c, Duration::from_secs(5)).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("event stream ended"),
        Err(_) => panic!("nothing within 5 s"),
    }
}

/// Skips events until the disconnect; returns its code.
async fn disconnect_code(c: &Client) -> Option<u16> {
    loop {
        if let ClientEvent::Disconnected { code, .. } = next_client_event(c).await {
            return code;
        }
    }
}

#[tokio::test]
async fn bad_logins_have_their_codes() {
    let server = TestServer::start().await;
    let mut cfg = server.config("alice");
    cfg.token = "hd1:test:alice:1:2:00".into();
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::TokenMalformed);

    let mut cfg = server.config("alice");
    cfg.token = "not a token".into();
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::TokenMalformed);

    let mut cfg = server.config("alice");
    let now = now_s();
    cfg.token = server.keys.mint(KEY_ID, "alice", now - 7200, now - 3600).unwrap();
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::TokenExpired);

    let mut cfg = server.config("alice");
    cfg.token = server.token("bob");
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::TokenInvalid);

    let mut other_keys = huddle::auth::KeySet::new();
    other_keys.insert(KEY_ID, b"some-other-secret-0123456789");
    let mut cfg = server.config("alice");
    cfg.token = other_keys.mint(KEY_ID, "alice", now, now + 3600).unwrap();
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::TokenInvalid);

    let mut cfg = server.config("bad user");
    cfg.token = server.token("bad user");
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::InvalidUserId);

    let mut cfg = server.config("alice");
    cfg.user_name = "n".repeat(257);
    assert_eq!(login_code(Client::connect(cfg).await), ErrorCode::UserNameTooLong);

    // None of that got in the way of a good login.
    let alice = server.client("alice").await;
    assert!(alice.session().session_id > 0);
    assert!(alice.session().token_expires_at_s > now_s());
    server.stop().await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_and_closed() {
    let server = TestServer::start().await;
    let raw = Raw::connect(&server).await;
    let (mut send, mut recv) = raw.control().await;
    let mut l = login(&server, "alice");
    l.protocol_version = PROTOCOL_VERSION + 1;
    write_request(&mut send, 5, Request::Login(l)).await;
    let r = read_response(&mut recv).await;
    assert_eq!(r.request_id, 5);
    match r.reply {
        Reply::Err(e) => assert_eq!(e.code, ErrorCode::UnsupportedVersion.as_u16()),
        r => panic!("{r:?}"),
    }
    assert_eq!(raw.closed_code(Duration::from_secs(5)).await, 1003);
    server.stop().await;
}

#[tokio::test]
async fn a_request_before_login_is_not_logged_in_and_closes() {
    let server = TestServer::start().await;
    let raw = Raw::connect(&server).await;
    let (mut send, mut recv) = raw.control().await;
    write_request(&mut send, 9, Request::JoinRoom { room_id: "r".into() }).await;
    let r = read_response(&mut recv).await;
    assert_eq!(r.request_id, 9);
    match r.reply {
        Reply::Err(e) => assert_eq!(e.code, 2000),
        r => panic!("{r:?}"),
    }
    assert_eq!(raw.closed_code(Duration::from_secs(5)).await, 2000);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_is_closed() {
    let server = TestServer::start_with(|c| c.transport.login_timeout_s = 1).await;
    // One opens no stream at all; one starts a frame and never finishes it.
    let silent = Raw::connect(&server).await;
    let dribbler = Raw::connect(&server).await;
    let (mut send, _recv) = dribbler.control().await;
    send.write_all(&[10, 0]).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(silent.closed_code(Duration::from_secs(4)).await, 2003);
    assert_eq!(dribbler.closed_code(Duration::from_secs(4)).await, 2003);
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the deadline");
    // The server still serves others.
    server.client("alice").await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_only_the_sender() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    next_event(&alice, 2).await;

    // A length prefix far over the limit: frame_too_large.
    let huge = Raw::connect(&server).await;
    let (mut send, mut recv) = raw_login(&server, &huge, "mallory").await;
    write_request(&mut send, 2, Request::JoinRoom { room_id: "r".into() }).await;
    assert!(matches!(read_response(&mut recv).await.reply, Reply::Ok(Response::RoomEntered(_))));
    send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    assert_eq!(huge.closed_code(Duration::from_secs(5)).await, 1001);

    // A body that does not decode: malformed_frame.
    let garbage = Raw::connect(&server).await;
    let (mut send, _recv) = raw_login(&server, &garbage, "trudy").await;
    send.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).await.unwrap();
    assert_eq!(garbage.closed_code(Duration::from_secs(5)).await, 1002);

    // A valid request with a trailing byte: malformed_frame too.
    let trailing = Raw::connect(&server).await;
    let (mut send, _recv) = raw_login(&server, &trailing, "oscar").await;
    let frame = encode_frame(&RequestFrame { request_id: 2, request: Request::QueryJoinedRooms });
    let mut bytes = frame.to_vec();
    bytes[..4].copy_from_slice(&((frame.len() - 4 + 1) as u32).to_le_bytes());
    bytes.push(0);
    send.write_all(&bytes).await.unwrap();
    assert_eq!(trailing.closed_code(Duration::from_secs(5)).await, 1002);

    // The room carries on: the others hear mallory come and go, and keep talking.
    let mut saw = Vec::new();
    while saw.len() < 2 {
        match next_event(&bob, 2).await {
            Event::MembersJoined { members, .. } if members[0].user_id == "mallory" => {
                saw.push("joined")
            }
            Event::MembersLeft { members, reason, .. } if members[0].user_id == "mallory" => {
                assert_eq!(reason, LeaveReason::Offline);
                saw.push("left")
            }
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(saw, vec!["joined", "left"]);
    for i in 1..=3 {
        alice.send_text("r", &format!("still here {i}"), Priority::Medium).await.unwrap();
    }
    for i in 1..=3 {
        match next_event(&bob, 2).await {
            Event::RoomMessage(m) => assert_eq!(m.seq, i),
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(bob.query_room_online_count("r").await.unwrap(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_second_login_kicks_the_first() {
    let server = TestServer::start().await;
    let old = server.client("alice").await;
    let bob = server.client("bob").await;
    old.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    next_event(&old, 2).await;

    let new = server.client("alice").await;
    match next_client_event(&old).await {
        ClientEvent::Event(Event::KickedOut { code, .. }) => assert_eq!(code, 2004),
        e => panic!("{e:?}"),
    }
    match next_client_event(&old).await {
        ClientEvent::Disconnected { code, .. } => assert_eq!(code, Some(2004)),
        e => panic!("{e:?}"),
    }
    // The old session is over: requests on it fail (promptly, not by hanging).
    let r = tokio::time::timeout(Duration::from_secs(2), old.join_room("r")).await;
    match r {
        Ok(Err(ClientError::Connection(closed))) => {
            assert_eq!((closed.code, closed.name()), (Some(2004), Some("kicked_out")));
        }
        other => panic!("{other:?}"),
    }
    let r = tokio::time::timeout(Duration::from_secs(2), old.query_joined_rooms()).await;
    assert!(matches!(r, Ok(Err(ClientError::Connection(_)))), "{r:?}");

    match next_event(&bob, 2).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!(members[0].user_id, "alice");
            assert_eq!(reason, LeaveReason::Kicked);
        }
        e => panic!("{e:?}"),
    }
    // The new session starts in no room and works.
    assert!(new.query_joined_rooms().await.unwrap().is_empty());
    assert_eq!(new.join_room("r").await.unwrap().member_count, 2);
    no_event(&new, 100).await;
    server.stop().await;
}

#[tokio::test]
async fn logout_leaves_rooms_and_closes() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    next_event(&alice, 2).await;
    bob.logout().await.unwrap();
    match next_event(&alice, 2).await {
        Event::MembersLeft { members, reason, .. } => {
            assert_eq!(members[0].user_id, "bob");
            assert_eq!(reason, LeaveReason::Left);
        }
        e => panic!("{e:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_tells_every_client() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    bob.join_room("r").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), server.stop()).await.expect("stops promptly");
    assert_eq!(disconnect_code(&alice).await, Some(9000));
    assert_eq!(disconnect_code(&bob).await, Some(9000));
    // Requests after the end fail at once rather than wait forever.
    let r = tokio::time::timeout(Duration::from_secs(2), alice.query_joined_rooms()).await;
    match r {
        Ok(Err(ClientError::Connection(closed))) => {
            assert_eq!(closed.error_code(), Some(huddle::wire::ErrorCode::ServerShutdown));
        }
        other => panic!("{other:?}"),
    }
}
