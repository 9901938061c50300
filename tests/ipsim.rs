//! `huddle::netsim::ip` for real: two network namespaces joined only through the forwarder,
//! with 25 ms each way and 5% loss. `huddle serve` runs in the server side, `huddle load` in the
//! client side, and a TCP connection from the client side reaches the server's admin listener.
//! Needs root and /dev/net/tun (CI runs as root); without them the test fails and says why.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use huddle::netsim::ip::{IpLink, IpLinkConfig, SERVER_ADDR};
use huddle::netsim::Impairment;

/// One-way delay of each direction.
const DELAY_MS: u64 = 25;

/// A child process killed (and reaped) on drop, before the namespaces go.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn huddle_in(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_huddle")]).stdin(Stdio::null());
    c
}

/// Waits for `child` to exit within `limit`; kills it otherwise.
fn wait_bounded(child: &mut Kill, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to `addr` from inside namespace `ns` (a thread of this process that enters it),
/// sends an HTTP request and returns the connect time and the response's first line.
fn http_from(ns: &str, addr: SocketAddr) -> (Duration, String) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        let connect = t.elapsed();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: huddle\r\n\r\n").unwrap();
        let mut response = Vec::new();
        let _ = s.take(64 * 1024).read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        (connect, text.lines().next().unwrap_or("").to_string())
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_quic_cross_the_ip_impairment_with_its_delay_and_loss() {
    assert!(
        Path::new("/dev/net/tun").exists(),
        "this test needs /dev/net/tun (the tun module) and root: it makes network namespaces"
    );
    let imp = Impairment { loss: 0.05, delay_ms: DELAY_MS, ..Default::default() };
    let mut cfg = IpLinkConfig::new(format!("hdl-test-{}", std::process::id()));
    cfg.to_server = imp.clone();
    cfg.to_client = imp;
    cfg.seed = 7;
    let link = IpLink::start(cfg).await.unwrap_or_else(|e| {
        panic!("cannot make the namespaces and TUN devices (this test must run as root): {e}")
    });
    let (server_ns, client_ns) = (link.server_ns().to_string(), link.client_ns().to_string());

    let certs = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["certs", "--dir"])
        .arg(certs.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let quic = SocketAddr::from((SERVER_ADDR, 7443));
    let admin = SocketAddr::from((SERVER_ADDR, 9090));
    let server_log = certs.path().join("serve.log");
    let mut server = Kill(
        huddle_in(&server_ns)
            .args(["serve", "--listen", &quic.to_string(), "--admin-listen", &admin.to_string()])
            .arg("--certs-dir")
            .arg(certs.path())
            .env("HUDDLE_ADMIN_TOKEN", "ipsim-test-admin-token")
            .stdout(Stdio::piped())
            .stderr(File::create(&server_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = server.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(&server_log).unwrap_or_default();
        panic!("no listening line from the server ({e}):\n{log}")
    });
    assert!(first.starts_with("huddle listening on "), "{first}");

    // TCP: the handshake's SYN and SYN-ACK each wait the one-way delay.
    let (connect, status) = http_from(&client_ns, admin);
    assert!(connect >= Duration::from_millis(2 * DELAY_MS), "TCP connect took {connect:?}");
    assert!(status.starts_with("HTTP/1."), "the admin listener answered {status:?}");

    // QUIC: a short fan-out, every message delivered exactly once despite the loss.
    let json = certs.path().join("load.json");
    let mut load = Kill(
        huddle_in(&client_ns)
            .args(["load", "--server", &quic.to_string(), "--rooms", "1", "--members", "4"])
            .args(["--rate", "20", "--warmup", "1", "--duration", "3", "--drain", "5"])
            .arg("--certs-dir")
            .arg(certs.path())
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_bounded(&mut load, Duration::from_secs(15));
    let stats = link.stats();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("no summary from huddle load ({status}): {e}"));
    assert!(status.success(), "huddle load exited {status}: {v:#}");
    assert!(v["expected_deliveries"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(v["deliveries"], v["expected_deliveries"], "{v:#}");
    assert_eq!((v["lost"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(0)), "{v:#}");
    // Publisher to server to receiver: two one-way delays at least.
    let p50_us = v["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50_us >= 2 * DELAY_MS * 1000, "latency p50 {p50_us} us: {v:#}");
    for s in [stats.to_server, stats.to_client] {
        assert!(s.offered > 100 && s.lost > 0 && s.delayed > 0, "{stats}");
    }

    drop(load);
    drop(server);
    link.stop().await;
    assert!(!Path::new(&format!("/run/netns/{server_ns}")).exists(), "{server_ns} left behind");
    assert!(!Path::new(&format!("/run/netns/{client_ns}")).exists(), "{client_ns} left behind");
}
