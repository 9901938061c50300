//! The load harness end to end: a short fan-out through the network simulator, the `huddle load`
//! command with a spawned server and its JSON summary, and a connections-only run.

mod common;

use std::process::Command;

use common::*;
use huddle::load::{run_with, LoadConfig, Trust};
use huddle::wire::Priority;

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.max_connections_per_ip = 0;
    })
    .await
}

fn config_for(server: &TestServer) -> LoadConfig {
    LoadConfig {
        server: Some(server.addr),
        trust: Some(Trust {
            ca: server.ca.clone(),
            keys: server.keys.clone(),
            key_id: KEY_ID.into(),
        }),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_5_percent_loss_is_exactly_once_in_order() {
    let server = server().await;
    let seed = 7;
    let cfg = LoadConfig {
        rooms: 2,
        members: 5,
        rate: 50.0,
        priority: Priority::Medium,
        warmup_s: 1.0,
        duration_s: 2.0,
        drain_s: 8.0,
        seed,
        netsim: Some("loss=0.05,delay-ms=5,jitter-ms=3".into()),
        ..config_for(&server)
    };
    let s = run_with(cfg).await.unwrap();
    let ctx = format!("seed {seed}:\n{}", s.table());
    assert_eq!(s.connections, 10, "{ctx}");
    assert_eq!(s.connect_failures, 0, "{ctx}");
    assert_eq!(s.sent, 300, "2 rooms x 50/s x 3 s: {ctx}");
    assert_eq!(s.acked, s.sent, "{ctx}");
    assert_eq!(s.expected_deliveries, s.acked * 4, "{ctx}");
    assert!(s.deliveries > 0, "{ctx}");
    assert_eq!(s.deliveries, s.expected_deliveries, "{ctx}");
    assert_eq!((s.lost, s.duplicates, s.out_of_order), (0, 0, 0), "{ctx}");
    assert_eq!(s.send_errors, 0, "{ctx}");
    assert_eq!(s.latency_us.count, s.measured_deliveries, "{ctx}");
    assert!(s.measured_deliveries > 0 && s.measured_deliveries < s.deliveries, "{ctx}");
    let net = s.netsim.as_ref().expect("netsim counters");
    assert!(net.to_client_dropped + net.to_server_dropped > 0, "the link lost nothing: {ctx}");
    assert!(s.problems.is_empty(), "{ctx}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_in_several_rooms_receive_each_room_exactly_once_in_order() {
    let server = server().await;
    let cfg = LoadConfig {
        rooms: 3,
        members: 3,
        rooms_per_member: 2,
        rate: 40.0,
        warmup_s: 0.5,
        duration_s: 1.0,
        drain_s: 5.0,
        ..config_for(&server)
    };
    let s = run_with(cfg).await.unwrap();
    let ctx = s.table();
    assert_eq!((s.connections, s.connect_failures), (9, 0), "{ctx}");
    assert_eq!(s.acked, s.sent, "{ctx}");
    // Each room: its 3 members and the 3 of the room before it, less the publisher.
    assert_eq!(s.expected_deliveries, s.acked * 5, "{ctx}");
    assert_eq!(s.deliveries, s.expected_deliveries, "{ctx}");
    assert_eq!((s.lost, s.duplicates, s.out_of_order, s.foreign_messages), (0, 0, 0, 0), "{ctx}");
    assert!(s.problems.is_empty(), "{ctx}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_members_are_closed_as_slow_consumers_and_left_out_of_the_others_counts() {
    // A small server queue and small client buffers: a stalled member is cut off within a
    // second or two at 100 msg/s.
    let server = TestServer::start_with(|c| {
        c.limits.rate_limit_per_s = 0;
        c.transport.max_connections_per_ip = 0;
        c.queue.max_frames = 64;
        c.queue.max_bytes = 64 * 1024;
    })
    .await;
    let cfg = LoadConfig {
        rooms: 2,
        members: 6,
        rate: 100.0,
        warmup_s: 0.5,
        duration_s: 2.0,
        drain_s: 3.0,
        stalled_members: 2.0,
        stalled_event_queue: Some(16),
        stalled_stream_window: Some(8 * 1024),
        ..config_for(&server)
    };
    // The last member of each room stalls.
    assert!(cfg.is_stalled(0, 5) && cfg.is_stalled(1, 5) && !cfg.is_stalled(0, 4));
    let s = run_with(cfg).await.unwrap();
    let ctx = s.table();
    assert_eq!((s.connections, s.connect_failures), (12, 0), "{ctx}");
    let st = s.stalled.as_ref().expect("the stalled members' summary");
    assert_eq!(st.members, 2, "{ctx}");
    assert!(st.deliveries_before_stop > 0, "{ctx}");
    assert_eq!(st.closed_slow_consumer, 2, "{ctx}");
    assert_eq!(st.close_reasons.get("7000: slow_consumer"), Some(&2), "{ctx}");
    // Each room's message reaches its 4 other readers; the stalled member is not expected.
    assert_eq!(s.acked, s.sent, "{ctx}");
    assert_eq!(s.expected_deliveries, s.acked * 4, "{ctx}");
    assert_eq!(s.deliveries, s.expected_deliveries, "{ctx}");
    assert_eq!((s.lost, s.duplicates, s.out_of_order, s.send_errors), (0, 0, 0, 0), "{ctx}");
    assert_eq!(s.latency_us.count, s.measured_deliveries, "{ctx}");
    assert_eq!((s.reconnects, s.disconnects), (0, 0), "the others' sessions: {ctx}");
    assert!(s.problems.is_empty(), "{ctx}");
    server.stop().await;
}

#[test]
fn stalled_members_are_taken_from_the_ends_of_the_rooms_never_publishers() {
    let cfg = LoadConfig {
        rooms: 3,
        members: 4,
        publishers_per_room: 2,
        stalled_members: 0.4,
        spawn_server: true,
        ..LoadConfig::default()
    };
    // 40% of 12 is 5 (rounded): the last member of each room, then the one before in rooms
    // 0 and 1.
    assert_eq!(cfg.stalled_count(), 5);
    let stalled: Vec<_> = (0..3)
        .flat_map(|r| (0..4).map(move |j| (r, j)))
        .filter(|&(r, j)| cfg.is_stalled(r, j))
        .collect();
    assert_eq!(stalled, [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]);
    cfg.validate().unwrap();
    // More than the 6 members that do not publish is refused.
    let too_many = LoadConfig { stalled_members: 7.0, ..cfg };
    assert!(too_many.validate().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_only_counts_connections_and_connect_time() {
    let server = server().await;
    let cfg = LoadConfig {
        rooms: 2,
        members: 4,
        duration_s: 0.5,
        connections_only: true,
        connections_per_endpoint: 3,
        // The server runs in this process, so this process's memory is the server's.
        server_pid: Some(std::process::id()),
        ..config_for(&server)
    };
    let s = run_with(cfg).await.unwrap();
    assert_eq!(s.mode, "connections_only");
    assert_eq!((s.connections, s.connect_failures, s.endpoints), (8, 0, 3), "{}", s.table());
    assert!(s.handshakes_per_s > 0.0);
    assert!(s.connect_us.count == 8 && s.connect_us.p99 > 0);
    assert!(s.server_rss_per_connection_bytes.is_some());
    assert_eq!(s.sent, 0);
    assert!(s.problems.is_empty(), "{}", s.table());
    server.stop().await;
}

#[test]
fn load_command_spawns_a_server_and_writes_every_summary_field() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let svg = dir.path().join("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["load", "--spawn-server", "--rooms", "1", "--members", "3", "--rate", "40"])
        .args(["--warmup", "0.5", "--duration", "1", "--drain", "5", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("deliveries") && stdout.contains("result             ok"), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in [
        "deliveries",
        "expected_deliveries",
        "lost",
        "duplicates",
        "out_of_order",
        "deliveries_per_s",
        "latency_us",
        "server_cpu_s",
        "server_rss_bytes",
        "server_cpu_us_per_delivery",
        "load_cpu_s",
        "reconnects",
        "disconnects",
        "resumed",
        "recovered_messages",
        "send_errors",
        "config",
        "timeline",
        "udp_rcvbuf_errors",
    ] {
        assert!(v.get(field).is_some(), "{field} missing from {v:#}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][p].is_u64(), "latency_us.{p} in {v:#}");
    }
    for c in [
        "rooms",
        "members",
        "publishers_per_room",
        "rate",
        "size",
        "priority",
        "warmup_s",
        "duration_s",
        "seed",
        "spawn_server",
    ] {
        assert!(v["config"].get(c).is_some(), "config.{c} missing from {v:#}");
    }
    // A spawned server's pid is known, so its cost is measured.
    assert!(v["server_pid"].is_u64(), "{v:#}");
    assert!(v["server_cpu_s"].is_f64(), "{v:#}");
    assert!(v["server_rss_bytes"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["server_cpu_us_per_delivery"].is_f64(), "{v:#}");
    assert_eq!(v["expected_deliveries"], 120, "1 room x 40/s x 1.5 s x 2 recipients: {v:#}");
    assert_eq!(v["deliveries"], v["expected_deliveries"]);
    assert_eq!(v["resumed"], 0);
    assert_eq!(v["config"]["priority"], "medium");

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("<svg") && plot.contains("Deliveries per second"), "{plot:.200}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_spread_over_several_servers_round_robin() {
    // Two servers with one certificate and one token key, as from one certs folder.
    let tls = huddle::certs::generate_in_memory().unwrap();
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for node in [1, 2] {
        let config = huddle::server::config::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            node_id: Some(node),
            ..Default::default()
        };
        let server = huddle::server::Server::bind_with(
            config,
            tls.chain.clone(),
            tls.key.clone_key(),
            keys(),
        )
        .unwrap();
        addrs.push(server.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        stops.push(stop);
    }
    let cfg = LoadConfig {
        rooms: 2,
        members: 3,
        connections_only: true,
        duration_s: 0.2,
        server: Some(addrs[0]),
        more_servers: vec![addrs[1]],
        trust: Some(Trust { ca: tls.ca.clone(), keys: keys(), key_id: KEY_ID.into() }),
        ..LoadConfig::default()
    };
    let s = run_with(cfg).await.unwrap();
    let ctx = s.table();
    assert_eq!((s.connections, s.connect_failures), (6, 0), "{ctx}");
    let per: Vec<(String, u64)> = s.members_per_server.clone().into_iter().collect();
    let mut want = vec![(addrs[0].to_string(), 3), (addrs[1].to_string(), 3)];
    want.sort();
    assert_eq!(per, want, "{ctx}");
    assert!(ctx.contains("members per server"), "{ctx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_members_log_in_in_zero_rtt_with_a_kept_ticket_and_not_without() {
    let server = server().await;
    for zero_rtt in [false, true] {
        let cfg = LoadConfig {
            startup: 3,
            zero_rtt,
            netsim: Some("delay-ms=10".into()),
            ..config_for(&server)
        };
        let s = run_with(cfg).await.unwrap();
        let ctx = format!("zero_rtt {zero_rtt}:\n{}", s.table());
        assert_eq!(s.mode, "startup", "{ctx}");
        let st = s.startup.as_ref().expect("a startup summary");
        assert!(st.failures.is_empty(), "{ctx}\n{:?}", st.failures);
        assert_eq!(st.first_delivery_us.count, 3, "every new member got a message: {ctx}");
        let early = if zero_rtt { 3 } else { 0 };
        assert_eq!(st.early_data, Some(early), "0-RTT logins the server took: {ctx}");
        // A login needs the handshake's round trip (20 ms here) at least, 0-RTT or not.
        assert!(st.login_us.p50 >= 20_000, "{ctx}");
        assert!(st.first_delivery_us.p50 >= st.in_room_us.p50, "{ctx}");
        assert!(s.problems.is_empty(), "{ctx}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_priority_flood_rides_beside_the_measured_messages_on_the_same_connections() {
    let server = server().await;
    let cfg = LoadConfig {
        rooms: 2,
        members: 3,
        rate: 20.0,
        low_flood: 50.0,
        low_flood_size: 500,
        warmup_s: 0.5,
        duration_s: 1.0,
        drain_s: 3.0,
        ..config_for(&server)
    };
    let s = run_with(cfg).await.unwrap();
    let ctx = s.table();
    assert_eq!(s.sent, 60, "only the stamped messages count as sent: {ctx}");
    assert_eq!((s.deliveries, s.lost), (s.expected_deliveries, 0), "{ctx}");
    // Each room's 2 other members get its publisher's flood (best effort): about 75 each.
    assert!(s.foreign_messages > 100, "the flood reached the receivers: {}", s.foreign_messages);
    assert!(s.problems.is_empty(), "{ctx}");
    server.stop().await;
}
