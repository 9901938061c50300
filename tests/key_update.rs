//! QUIC key updates (RFC 9001, section 6) with the patched quinn-proto, which makes the keys of
//! the next key phase when they are first needed instead of at the end of every handshake
//! (vendor/quinn-proto/README.md, change 5): a client's key update reaches a server that has
//! not made them yet, and messages keep flowing both ways.

mod common;

use std::time::Duration;

use common::*;
use huddle::client::{Client, ClientEvent};
use huddle::wire::{Event, MessageBody, Priority};

const ROOM: &str = "keys";

/// Sends `text` from `from` and waits until `to` has it.
async fn hears(from: &Client, to: &Client, text: &str) {
    let body = MessageBody::Text(text.to_string());
    from.send_message(ROOM, body.clone(), Priority::Medium, None).await.unwrap();
    loop {
        match client_event(to, Duration::from_secs(10)).await {
            Ok(Some(ClientEvent::Event(Event::RoomMessage(m)))) if m.body == body => return,
            Ok(Some(_)) => {}
            other => panic!("waiting for {text:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn messages_flow_across_key_updates() {
    let server = TestServer::start_with(|c| c.limits.rate_limit_per_s = 0).await;
    let member = server.client("member").await;
    let sender = server.client("sender").await;
    sender.create_room(info(ROOM), cfg()).await.unwrap();
    member.join_room(ROOM).await.unwrap();
    hears(&sender, &member, "before").await;

    // The member's first update: the server makes its next keys on the member's first packet
    // in the new key phase. Then the sender's first, then the member's second (by then the
    // server made the member's next keys when it followed the first update).
    for (round, who) in [&member, &sender, &member].into_iter().enumerate() {
        who.connection().force_key_update();
        hears(&member, &sender, &format!("up {round}")).await;
        hears(&sender, &member, &format!("down {round}")).await;
        assert!(who.connection().close_reason().is_none(), "round {round}");
        // An update is ignored while the keys before it are kept (3 probe timeouts).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    for c in [&member, &sender] {
        assert!(c.connection().close_reason().is_none());
    }
    assert_eq!(server.guard.misbehaving.load(std::sync::atomic::Ordering::Relaxed), 0);
}
