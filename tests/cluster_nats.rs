//! Three real servers in one process, each with its own `NatsBroker` over one nats-server
//! (JetStream, R1), rerunning the cluster cases of tests/common/cluster.rs: fan-out, member
//! events, `room_already_exists` and `room_full` under concurrent requests from several nodes,
//! and a room destroyed everywhere whose id can be created again.
//!
//! Each test starts its own `nats-server -js` on a free loopback port with a temporary store
//! directory and kills it by its PID when done. Without `nats-server` on PATH the tests say so
//! and pass, unless `HUDDLE_REQUIRE_NATS=1`, which makes them fail (CI sets it).
#![cfg(feature = "cluster")]

mod common;

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/nats.rs"]
mod nats;

use cluster::Cluster;
use huddle::server::{Broker, NatsBroker, ServerConfig};
use nats::NatsServer;

/// A nats-server and three nodes over it, each with its own connection; `None` when skipped.
async fn start(tweak: impl Fn(&mut ServerConfig)) -> Option<(NatsServer, Cluster)> {
    let nats = NatsServer::start()?;
    let mut brokers = Vec::new();
    for _ in 0..3 {
        brokers.push(Broker::Nats(NatsBroker::new(nats.bus().await)));
    }
    let c = Cluster::start(brokers, tweak).await;
    Some((nats, c))
}

#[tokio::test]
async fn messages_from_every_node_reach_every_member_once_in_seq_order() {
    let Some((_nats, c)) = start(|_| {}).await else { return };
    cluster::fan_out(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn member_events_cross_nodes() {
    let Some((_nats, c)) = start(|_| {}).await else { return };
    cluster::member_events(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn room_already_exists_is_exact_under_concurrent_creates_on_two_nodes() {
    let Some((_nats, c)) = start(|cfg| cfg.limits.rooms_per_user = 32).await else { return };
    cluster::concurrent_creates(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn room_full_is_exact_under_concurrent_joins_from_three_nodes() {
    let Some((_nats, c)) = start(|cfg| cfg.limits.members_per_room = cluster::FULL_AT).await else {
        return;
    };
    cluster::concurrent_joins(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn a_destroyed_room_is_gone_everywhere_and_its_id_can_be_created_again() {
    let Some((_nats, c)) = start(|_| {}).await else { return };
    cluster::destroy_and_create_again(&c).await;
    c.stop().await;
}
