//! Behaviours that docs/PROTOCOL.md states for a client written from it alone, against a real
//! server, at the level of raw QUIC where the client library would hide them.

mod common;

use std::time::Duration;

use common::{cfg, info, read_response, write_request, TestServer};
use huddle::wire::{Reply, Request};

/// Section 4.2: a client that finishes its control stream between frames has its connection
/// closed with application code 0, reason `bye`, and its session is held like a lost one's
/// (4.5): the other members see no leave.
#[tokio::test]
async fn finishing_the_control_stream_closes_with_bye_and_holds_the_session() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await;
    bob.create_room(info("r"), cfg()).await.unwrap();

    let qc = huddle::client::quic_client_config(&server.config("alice")).unwrap();
    let endpoint = huddle::client::client_endpoint(server.addr).unwrap();
    let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let login = huddle::wire::Login {
        protocol_version: huddle::wire::PROTOCOL_VERSION,
        user_id: "alice".into(),
        user_name: String::new(),
        token: server.token("alice"),
    };
    write_request(&mut send, 1, Request::Login(login)).await;
    assert!(matches!(read_response(&mut recv).await.reply, Reply::Ok(_)));
    write_request(&mut send, 2, Request::JoinRoom { room_id: "r".into() }).await;
    assert!(matches!(read_response(&mut recv).await.reply, Reply::Ok(_)));
    send.finish().unwrap();

    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0);
            assert_eq!(&close.reason[..], b"bye");
        }
        e => panic!("expected an application close, got {e:?}"),
    }
    // Held, not logged out: alice is still a member during the offline grace.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page = bob.query_room_members("r", "", 10).await.unwrap();
    let members: Vec<_> = page.members.iter().map(|m| m.user_id.as_str()).collect();
    assert!(members.contains(&"alice"), "{members:?}");
    server.stop().await;
}
