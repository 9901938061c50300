//! `huddle load --web-members`: members that connect as a browser's WebTransport stack does
//! (the native frames on a WebTransport session) in the same room as the client library's, in
//! process and through the `huddle load` command with a spawned server.

mod common;

use std::process::Command;

use common::*;
use huddle::load::{run_with, LoadConfig, Trust};
use huddle::server::config::ServerConfig;
use huddle::server::Server;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_native_members_share_a_room_exactly_once_in_order() {
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let tls = huddle::certs::generate_in_memory().unwrap();
    let server = Server::bind_with(config, tls.chain, tls.key, keys()).unwrap();
    let addr = server.local_addr().unwrap();
    let hash = server.web_cert_hash().expect("the development certificate for browsers");
    let (_stop, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let cfg = LoadConfig {
        server: Some(addr),
        trust: Some(Trust { ca: tls.ca.clone(), keys: keys(), key_id: KEY_ID.into() }),
        rooms: 1,
        members: 6,
        // Members 0..4 publish; 3, 4 and 5 are WebTransport sessions: both kinds send and read.
        publishers_per_room: 4,
        web_members: 3,
        web_cert_hash: Some(hex::encode(hash)),
        rate: 40.0,
        warmup_s: 0.5,
        duration_s: 1.5,
        drain_s: 5.0,
        ..LoadConfig::default()
    };
    assert!(!cfg.is_web(2) && cfg.is_web(3) && cfg.is_web(5));
    let s = run_with(cfg).await.unwrap();
    let ctx = s.table();
    assert_eq!((s.connections, s.connect_failures), (6, 0), "{ctx}");
    assert_eq!(s.sent, 80, "40/s x 2 s: {ctx}");
    assert_eq!(s.acked, s.sent, "{ctx}");
    assert_eq!(s.expected_deliveries, s.acked * 5, "{ctx}");
    assert_eq!(s.deliveries, s.expected_deliveries, "{ctx}");
    assert_eq!((s.lost, s.duplicates, s.out_of_order, s.send_errors), (0, 0, 0, 0), "{ctx}");
    assert!(s.problems.is_empty(), "{ctx}");
}

#[test]
fn huddle_load_with_all_members_on_webtransport_against_a_spawned_server() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("web.json");
    let out = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["load", "--spawn-server", "--rooms", "1", "--members", "4", "--rate", "40"])
        .args(["--web-members", "4", "--warmup", "0.5", "--duration", "1", "--drain", "5"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["config"]["web_members"], 4, "{v}");
    assert_eq!(v["connections"], 4, "{v}");
    assert_eq!(v["sent"], 60, "{v}");
    assert_eq!(v["deliveries"], v["expected_deliveries"], "{v}");
    assert_eq!(v["expected_deliveries"], 180, "{v}");
    assert!(v["server_cpu_us_per_delivery"].as_f64().unwrap() > 0.0, "{v}");
}
