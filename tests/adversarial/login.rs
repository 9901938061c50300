//! Logins and tokens: requests before login, unknown versions, the wrong ALPN, oversize ids,
//! every bad token, key rotation, expiry without renewal and in-band renewal.

use std::sync::Arc;
use std::time::Duration;

use huddle::auth::KeySet;
use huddle::client::{client_endpoint, Client, ClientEvent};
use huddle::wire::{ErrorCode, Event, Login, Reply, Request, Response, PROTOCOL_VERSION};

use super::arena::*;

/// Sends `login` as the first request of a raw connection; asserts the error reply and the
/// close both carry `code`.
async fn refused(arena: &Arena, login: Login, code: ErrorCode) {
    let raw = arena.raw().await;
    let mut ctl = raw.control().await;
    ctl.request(1, Request::Login(login)).await;
    assert_eq!(ctl.error_code().await, code.as_u16(), "reply");
    raw.assert_closed_with(code).await;
}

fn login_with_token(user: &str, token: String) -> Login {
    Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: user.into(),
        user_name: String::new(),
        token,
    }
}

#[tokio::test]
async fn a_request_before_login_is_not_logged_in_and_closes() {
    let arena = Arena::start().await;
    let raw = arena.raw().await;
    let mut ctl = raw.control().await;
    ctl.request(1, Request::JoinRoom { room_id: "r".into() }).await;
    assert_eq!(ctl.error_code().await, ErrorCode::NotLoggedIn.as_u16());
    raw.assert_closed_with(ErrorCode::NotLoggedIn).await;
    arena.finish().await;
}

#[tokio::test]
async fn an_unknown_protocol_version_is_refused_and_closed() {
    let arena = Arena::start().await;
    let mut login = arena.login("mallory");
    login.protocol_version = PROTOCOL_VERSION + 41;
    refused(&arena, login, ErrorCode::UnsupportedVersion).await;
    arena.finish().await;
}

#[tokio::test]
async fn the_wrong_alpn_fails_the_handshake() {
    let arena = Arena::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(arena.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"huddle/0".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = client_endpoint(arena.addr).unwrap();
    let qc = quinn::ClientConfig::new(Arc::new(crypto));
    let r = endpoint.connect_with(qc, arena.addr, "localhost").unwrap().await;
    match r {
        // TLS alert 120, no_application_protocol, as a QUIC CRYPTO_ERROR.
        Err(quinn::ConnectionError::ConnectionClosed(c)) => {
            assert_eq!(c.error_code, quinn::TransportErrorCode::crypto(120), "{c:?}")
        }
        other => panic!("{other:?}"),
    }
    arena.finish().await;
}

#[tokio::test]
async fn an_oversize_user_id_is_refused_and_an_oversize_room_id_is_answered() {
    let arena = Arena::start().await;
    let long_user = "u".repeat(33);
    let login = login_with_token(&long_user, arena.token("mallory"));
    refused(&arena, login, ErrorCode::InvalidUserId).await;
    let (raw, mut ctl) = arena.raw_logged_in("mallory").await;
    let long_room = "r".repeat(129);
    ctl.request(2, Request::JoinRoom { room_id: long_room.clone() }).await;
    assert_eq!(ctl.error_code().await, ErrorCode::InvalidRoomId.as_u16());
    let info = huddle::wire::RoomInfo { room_id: long_room, room_name: String::new() };
    ctl.request(3, Request::CreateRoom { info, config: Default::default() }).await;
    assert_eq!(ctl.error_code().await, ErrorCode::InvalidRoomId.as_u16());
    raw.assert_open_after(0).await;
    arena.finish().await;
}

#[tokio::test]
async fn every_bad_token_has_its_code() {
    let arena = Arena::start().await;
    let now = now_s();
    let good = arena.token("mallory");
    let mut bad_sig = good.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == '0' { '1' } else { '0' });
    let mut strangers = KeySet::new();
    strangers.insert("k2027-01", b"a-key-the-server-does-not-have");
    let cases = [
        ("bad signature", bad_sig, ErrorCode::TokenInvalid),
        (
            "expired",
            arena.keys.mint(KEY_ID, "mallory", now - 7200, now - 3600).unwrap(),
            ErrorCode::TokenExpired,
        ),
        (
            "not yet valid",
            arena.keys.mint(KEY_ID, "mallory", now + 3600, now + 7200).unwrap(),
            ErrorCode::TokenNotYetValid,
        ),
        ("another user's", arena.token("alice"), ErrorCode::TokenInvalid),
        ("truncated", good[..good.len() - 10].to_string(), ErrorCode::TokenMalformed),
        (
            "oversized",
            format!("{good}{}", "0".repeat(huddle::auth::MAX_TOKEN_LEN)),
            ErrorCode::TokenTooLong,
        ),
        (
            "unknown key id",
            strangers.mint("k2027-01", "mallory", now, now + 3600).unwrap(),
            ErrorCode::TokenInvalid,
        ),
        ("empty", String::new(), ErrorCode::TokenMalformed),
    ];
    for (what, token, code) in cases {
        eprintln!("token case: {what}");
        refused(&arena, login_with_token("mallory", token), code).await;
    }
    arena.finish().await;
}

#[tokio::test]
async fn tokens_of_every_active_key_are_accepted_during_a_rotation() {
    let arena = Arena::start().await;
    let now = now_s();
    for kid in [OLD_KEY_ID, KEY_ID] {
        let token = arena.keys.mint(kid, "mallory", now, now + 3600).unwrap();
        let raw = arena.raw().await;
        let mut ctl = raw.control().await;
        ctl.request(1, Request::Login(login_with_token("mallory", token))).await;
        assert!(
            matches!(ctl.response().await.reply, Reply::Ok(Response::LoggedIn { .. })),
            "key {kid}"
        );
        ctl.request(2, Request::Logout).await;
        assert!(matches!(ctl.response().await.reply, Reply::Ok(Response::LoggedOut)));
    }
    arena.finish().await;
}

#[tokio::test]
async fn a_token_that_expires_without_renewal_ends_the_session_and_a_renewed_one_lives_on() {
    let arena = Arena::start().await;
    let now = now_s();
    let short = |user: &str| {
        let mut c = arena.client_config(user);
        c.token = arena.keys.mint(KEY_ID, user, now, now + 2).unwrap();
        c
    };
    let lapsing = Client::connect(short("mallory")).await.unwrap();
    let renewing = Client::connect(short("carol")).await.unwrap();
    lapsing.join_room("r").await.unwrap();
    // Both are warned at once (less than 30 s are left); carol renews in band.
    for c in [&lapsing, &renewing] {
        match next_event(c).await {
            Event::TokenWillExpire { expires_at_s } => assert_eq!(expires_at_s, now + 2),
            e => panic!("{e:?}"),
        }
    }
    let fresh = arena.keys.mint(KEY_ID, "carol", now, now + 3600).unwrap();
    assert_eq!(renewing.renew_token(&fresh).await.unwrap(), now + 3600);
    // Mallory is closed with token_expired; the room hears it leave.
    let code = loop {
        match crate::common::client_event(&lapsing, Duration::from_secs(5)).await {
            Ok(Some(ClientEvent::Disconnected { code, .. })) => break code,
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(ErrorCode::TokenExpired.as_u16()));
    assert!(now_s() >= now + 2);
    assert_eq!(renewing.query_joined_rooms().await.unwrap().len(), 0, "carol lives on");
    arena.finish().await;
}
