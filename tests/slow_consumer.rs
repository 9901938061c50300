//! A member that stops reading is cut off at its queue bound; the room and the others carry on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use huddle::client::{client_endpoint, quic_client_config};
use huddle::wire::{
    encode_frame, ErrorCode, Event, Login, MessageBody, Priority, Request, RequestFrame,
    PROTOCOL_VERSION,
};

#[tokio::test]
async fn a_member_that_never_reads_is_cut_off_and_the_others_carry_on() {
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.queue.max_frames = 200;
        c.queue.max_bytes = 512 * 1024;
    })
    .await;
    let alice = server.client("alice").await;
    alice.create_room(info("r"), cfg()).await.unwrap();
    let bob = server.client("bob").await;
    bob.join_room("r").await.unwrap();

    // Mallory logs in and joins on a raw connection with small windows, then reads nothing.
    let mut qc = quic_client_config(&server.config("mallory")).unwrap();
    let mut tc = quinn::TransportConfig::default();
    tc.stream_receive_window(32_768u32.into());
    tc.receive_window(65_536u32.into());
    tc.max_concurrent_uni_streams(8u32.into());
    qc.transport_config(Arc::new(tc));
    let endpoint = client_endpoint(server.addr).unwrap();
    let conn = endpoint.connect_with(qc, server.addr, "localhost").unwrap().await.unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let login = Login {
        protocol_version: PROTOCOL_VERSION,
        user_id: "mallory".into(),
        user_name: String::new(),
        token: server.token("mallory"),
    };
    for (id, request) in
        [(1, Request::Login(login)), (2, Request::JoinRoom { room_id: "r".into() })]
    {
        send.write_all(&encode_frame(&RequestFrame { request_id: id, request })).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let n = 2_000u64;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let body = MessageBody::Custom { sub_type: 1, data: vec![i as u8; 1024] };
            alice.send_message("r", body, Priority::Medium, None).await.unwrap();
        }
        alice
    });
    // Bob reads everything, in order, while mallory is cut off.
    let mut next = 1;
    while next <= n {
        match next_event(&bob, 20).await {
            Event::RoomMessage(m) => {
                assert_eq!(m.seq, next);
                next += 1;
            }
            Event::MembersJoined { .. } | Event::MembersLeft { .. } => {}
            e => panic!("{e:?}"),
        }
    }
    let _alice = sender.await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code.into_inner(), u64::from(ErrorCode::SlowConsumer.as_u16()));
        }
        other => panic!("mallory should be closed as a slow consumer, got {other:?}"),
    }
    assert_eq!(server.stats.slow_consumers.load(std::sync::atomic::Ordering::Relaxed), 1);
}
