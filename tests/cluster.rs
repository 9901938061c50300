//! Three real servers in one process sharing rooms over one in-memory room log
//! (`MemoryBroker`), with clients of the real client library on different nodes: fan-out,
//! member events, `room_already_exists` and `room_full` under concurrent requests from several
//! nodes, and a room destroyed everywhere whose id can be created again.

mod common;

#[path = "common/cluster.rs"]
mod cluster;

use cluster::Cluster;
use huddle::server::{Broker, MemoryBroker};

async fn start(tweak: impl Fn(&mut huddle::server::ServerConfig)) -> Cluster {
    let broker = Broker::Memory(MemoryBroker::new());
    Cluster::start(vec![broker.clone(), broker.clone(), broker], tweak).await
}

#[tokio::test]
async fn messages_from_every_node_reach_every_member_once_in_seq_order() {
    let c = start(|_| {}).await;
    cluster::fan_out(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn member_events_cross_nodes() {
    let c = start(|_| {}).await;
    cluster::member_events(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn room_already_exists_is_exact_under_concurrent_creates_on_two_nodes() {
    let c = start(|cfg| cfg.limits.rooms_per_user = 32).await;
    cluster::concurrent_creates(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn room_full_is_exact_under_concurrent_joins_from_three_nodes() {
    let c = start(|cfg| cfg.limits.members_per_room = cluster::FULL_AT).await;
    cluster::concurrent_joins(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn a_destroyed_room_is_gone_everywhere_and_its_id_can_be_created_again() {
    let broker = MemoryBroker::new();
    let nodes = vec![Broker::Memory(broker.clone()); 3];
    let c = Cluster::start(nodes, |_| {}).await;
    cluster::destroy_and_create_again(&c).await;
    assert_eq!(broker.log_count(), 1, "the destroyed incarnation's log is dropped");
    c.stop().await;
}
