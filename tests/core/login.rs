//! Login: success, every failure with its code, requests before login, duplicate logins.

use super::*;

#[test]
fn login_success_gives_session_and_token_expiry() {
    let mut h = Harness::plain();
    let login = h.login_request("alice");
    let (ok, reply, rest) = h.try_login(1, login);
    assert!(ok);
    assert!(rest.is_empty(), "{rest:?}");
    match reply {
        Reply::Ok(Response::LoggedIn {
            session_id,
            resume_secret,
            server_time_ms,
            token_expires_at_s,
        }) => {
            assert!(session_id > 0);
            assert_eq!(resume_secret, [7; 16]);
            assert_eq!(server_time_ms, START_UNIX_MS);
            assert_eq!(token_expires_at_s, START_UNIX_MS / 1000 + 3600);
        }
        r => panic!("{r:?}"),
    }
    assert!(h.core.is_logged_in(1));
    assert_eq!(h.core.session_count(), 1);
    assert_eq!(h.core.token_expiry(1), Some(START_UNIX_MS / 1000 + 3600));
    // A second Login on the same connection is refused but the session stays.
    let login = h.login_request("alice");
    assert_eq!(h.fail(1, Request::Login(login)), ErrorCode::AlreadyLoggedIn);
    assert!(h.core.is_logged_in(1));
}

#[test]
fn every_login_failure_has_its_code_and_closes() {
    let mut h = Harness::plain();
    let now_s = START_UNIX_MS / 1000;
    let good = h.login_request("alice");
    let cases: Vec<(Login, ErrorCode)> = vec![
        (
            Login { protocol_version: PROTOCOL_VERSION + 1, ..good.clone() },
            ErrorCode::UnsupportedVersion,
        ),
        (Login { protocol_version: 0, ..good.clone() }, ErrorCode::UnsupportedVersion),
        (Login { user_id: String::new(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "a".repeat(33), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "al ice".into(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_id: "al/ice".into(), ..good.clone() }, ErrorCode::InvalidUserId),
        (Login { user_name: "n".repeat(257), ..good.clone() }, ErrorCode::UserNameTooLong),
        (Login { token: "garbage".into(), ..good.clone() }, ErrorCode::TokenMalformed),
        (Login { token: h.token("bob"), ..good.clone() }, ErrorCode::TokenInvalid),
        (
            Login { token: h.mint("alice", now_s - 7200, now_s - 1).unwrap(), ..good.clone() },
            ErrorCode::TokenExpired,
        ),
        (
            Login { token: h.mint("alice", now_s - 7200, now_s).unwrap(), ..good.clone() },
            ErrorCode::TokenExpired,
        ),
    ];
    for (i, (login, code)) in cases.into_iter().enumerate() {
        let conn = 100 + i as ConnId;
        let (ok, reply, rest) = h.try_login(conn, login.clone());
        assert!(!ok, "case {i}: {login:?}");
        match reply {
            Reply::Err(e) => assert_eq!(e.code, code.as_u16(), "case {i}: {login:?}: {e:?}"),
            r => panic!("case {i}: {r:?}"),
        }
        assert_eq!(rest, vec![Got::Close(Some(code))], "case {i}");
        assert!(!h.core.is_logged_in(conn));
    }
    assert_eq!(h.core.session_count(), 0);
    // Limits at the edges are accepted.
    let login = Login {
        user_id: "a".repeat(32),
        user_name: "n".repeat(256),
        ..h.login_request(&"a".repeat(32))
    };
    assert!(h.try_login(1, login).0);
    let login = h.login_request("A.b_c-d@e9");
    assert!(h.try_login(2, login).0);
}

#[test]
fn request_before_login_is_refused_and_closes() {
    let mut h = Harness::plain();
    assert_eq!(h.fail(1, join("r")), ErrorCode::NotLoggedIn);
    assert_eq!(h.take(1), vec![Got::Close(Some(ErrorCode::NotLoggedIn))]);
    assert!(!h.core.is_logged_in(1));
    assert_eq!(h.fail(2, Request::QueryJoinedRooms), ErrorCode::NotLoggedIn);
    assert_eq!(h.take(2), vec![Got::Close(Some(ErrorCode::NotLoggedIn))]);
}

#[test]
fn duplicate_login_kicks_the_older_session() {
    let mut h = Harness::plain();
    h.login(1, "alice");
    h.login(2, "bob");
    h.create(1, "r", 0);
    h.join(2, "r");
    h.tick(50);
    h.take(1);
    h.take(2);

    let login = h.login_request("alice");
    let (ok, _, rest) = h.try_login(3, login);
    assert!(ok);
    assert!(rest.is_empty());
    let old = h.take(1);
    let kick_at = old
        .iter()
        .position(|g| matches!(g, Got::Event(None, Event::KickedOut { code: 2004, .. })))
        .unwrap_or_else(|| panic!("no KickedOut on the session stream: {old:?}"));
    let close_at = old
        .iter()
        .position(|g| *g == Got::Close(Some(ErrorCode::KickedOut)))
        .unwrap_or_else(|| panic!("no close: {old:?}"));
    assert!(kick_at < close_at, "the event goes before the close: {old:?}");
    assert!(!h.core.is_logged_in(1));
    assert!(h.core.is_logged_in(3));
    assert_eq!(h.core.session_count(), 2);

    // Bob hears about the kick after the batch window, not before.
    h.tick(49);
    assert_eq!(h.events(2), vec![]);
    h.tick(1);
    assert_eq!(h.events(2), vec![left("r", &["alice"], LeaveReason::Kicked)]);
    // The new session is in no room; the old one is gone.
    assert_eq!(h.joined_rooms(3), Vec::<String>::new());
    assert_eq!(h.joined_rooms(2), vec!["r".to_string()]);
    // A late disconnect of the kicked connection changes nothing.
    let now = h.now();
    h.core.handle_disconnect(now, 1);
    h.pump();
    h.tick(100);
    assert_eq!(h.events(2), vec![]);
    assert!(h.core.is_logged_in(3));
}
