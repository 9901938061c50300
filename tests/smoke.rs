mod common;

use common::*;
use huddle::wire::{Event, Priority};

#[tokio::test]
async fn two_members_exchange_a_message() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let st = alice.create_room(info("r1"), cfg()).await.unwrap();
    assert!(st.created);
    let st = bob.join_room("r1").await.unwrap();
    assert_eq!(st.member_count, 2);
    match next_event(&alice, 2).await {
        Event::MembersJoined { room_id, members } => {
            assert_eq!(room_id, "r1");
            assert_eq!(members[0].user_id, "bob");
        }
        e => panic!("{e:?}"),
    }
    let ack = alice.send_text("r1", "hi", Priority::Medium).await.unwrap();
    assert_eq!(ack.seq, 1);
    match next_event(&bob, 2).await {
        Event::RoomMessage(m) => assert_eq!((m.seq, m.sender.as_str()), (1, "alice")),
        e => panic!("{e:?}"),
    }
    no_event(&alice, 100).await;
    server.stop().await;
}

/// A client application trusts the CA that `huddle serve` wrote (`certs/ca.pem`) from its PEM
/// through the client library alone, exactly as the server's own loader reads it.
#[test]
fn a_client_trusts_the_dev_ca_from_its_pem_file() {
    let dir = tempfile::tempdir().unwrap();
    huddle::certs::ensure_dev_certs(dir.path()).unwrap();
    let path = dir.path().join(huddle::certs::CA_FILE);
    let mut config =
        huddle::client::ClientConfig::new("127.0.0.1:9".parse().unwrap(), "alice", "token");
    assert_eq!(config.trust_pem(&std::fs::read(&path).unwrap()).unwrap(), 1);
    assert_eq!(config.roots, huddle::certs::load_certs(&path).unwrap());
    assert!(matches!(
        config.trust_pem(b"not a certificate"),
        Err(rustls::pki_types::pem::Error::NoItemsFound)
    ));
    assert_eq!(config.roots.len(), 1, "a failed call adds nothing");
}
