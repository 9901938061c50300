//! `huddle::netsim::ip` for real: two network namespaces joined only through the forwarder.
//! `huddle serve` runs in the server side, `huddle load` in the client side, and TCP
//! connections from the client side reach the server's admin listener across the same link.
//! Needs root and /dev/net/tun (CI runs as root); without them the tests fail and say why.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use huddle::netsim::ip::{IpLink, IpLinkConfig, SERVER_ADDR, SERVER_ADDR6};
use huddle::netsim::Impairment;

/// The admin listener's bearer token.
const ADMIN_TOKEN: &str = "ipsim-test-admin-token";

/// A child process killed (and reaped) on drop, before the namespaces go.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A link between two fresh namespaces (`tag` keeps concurrent tests apart), certificates, and
/// `huddle serve` in the server side with its QUIC and admin addresses.
struct Lab {
    server: Kill,
    certs: tempfile::TempDir,
    quic: SocketAddr,
    admin: SocketAddr,
    // Last: the namespaces go after the server has been killed.
    link: IpLink,
}

impl Lab {
    async fn start(tag: &str, imp: Impairment) -> Lab {
        Lab::start_on(tag, imp, SERVER_ADDR.into()).await
    }

    /// [`Lab::start`] with the server listening on `server` (the side's IPv4 or IPv6 address).
    async fn start_on(tag: &str, imp: Impairment, server: IpAddr) -> Lab {
        assert!(
            Path::new("/dev/net/tun").exists(),
            "this test needs /dev/net/tun (the tun module) and root: it makes network namespaces"
        );
        let mut cfg = IpLinkConfig::new(format!("hdl-test-{}-{tag}", std::process::id()));
        cfg.to_server = imp.clone();
        cfg.to_client = imp;
        cfg.seed = 7;
        let link = IpLink::start(cfg).await.unwrap_or_else(|e| {
            panic!("cannot make the namespaces and TUN devices (this test must run as root): {e}")
        });
        let certs = tempfile::tempdir().unwrap();
        let made = Command::new(env!("CARGO_BIN_EXE_huddle"))
            .args(["certs", "--dir"])
            .arg(certs.path())
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let quic = SocketAddr::from((server, 7443));
        let admin = SocketAddr::from((server, 9090));
        let log = certs.path().join("serve.log");
        let mut server = Kill(
            huddle_in(link.server_ns())
                .args(["serve", "--listen", &quic.to_string()])
                .args(["--admin-listen", &admin.to_string()])
                .arg("--certs-dir")
                .arg(certs.path())
                .env("HUDDLE_ADMIN_TOKEN", ADMIN_TOKEN)
                .stdout(Stdio::piped())
                .stderr(File::create(&log).unwrap())
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
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("no listening line from the server ({e}):\n{log}")
        });
        assert!(first.starts_with("huddle listening on "), "{first}");
        Lab { server, certs, quic, admin, link }
    }

    /// `huddle load` in the client side: 1 room of 4, 20 msg/s, 1 s warm-up and 3 s measured.
    fn load(&self) -> (Kill, PathBuf) {
        let json = self.certs.path().join("load.json");
        let child = huddle_in(self.link.client_ns())
            .args(["load", "--server", &self.quic.to_string(), "--rooms", "1", "--members", "4"])
            .args(["--rate", "20", "--warmup", "1", "--duration", "3", "--drain", "5"])
            .arg("--certs-dir")
            .arg(self.certs.path())
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (Kill(child), json)
    }

    /// Stops the server, then the link, and checks that both namespaces are gone.
    async fn stop(self) {
        let Lab { server, certs, link, .. } = self;
        let names = [link.server_ns().to_string(), link.client_ns().to_string()];
        drop(server);
        link.stop().await;
        drop(certs);
        for ns in names {
            assert!(!Path::new(&format!("/run/netns/{ns}")).exists(), "{ns} left behind");
        }
    }
}

fn huddle_in(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_huddle")]).stdin(Stdio::null());
    c
}

/// Waits for `child` to exit within `limit` and returns its summary.
fn summary(mut child: Kill, json: &Path, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "huddle load still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("no summary from huddle load ({status}): {e}"));
    assert!(status.success(), "huddle load exited {status}: {v:#}");
    v
}

/// Runs `f` on a thread of this process that has entered namespace `ns` (only that thread).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// An HTTP/1.0 GET of `path` (the server closes after answering): the connect time and the
/// whole response.
fn http_get(addr: SocketAddr, path: &str) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    let connect = t.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: huddle\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut response);
    (connect, String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_quic_cross_the_ip_impairment_with_its_delay_and_loss() {
    cross_with_delay_and_loss("loss", SERVER_ADDR.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_quic_cross_the_same_impairment_over_ipv6() {
    cross_with_delay_and_loss("v6", SERVER_ADDR6.into()).await;
}

/// TCP to the admin listener and a short QUIC fan-out across 25 ms each way and 5% loss, to
/// the server side's address `server`.
async fn cross_with_delay_and_loss(tag: &str, server: IpAddr) {
    const DELAY_MS: u64 = 25;
    let imp = Impairment { loss: 0.05, delay_ms: DELAY_MS, ..Default::default() };
    let lab = Lab::start_on(tag, imp, server).await;

    // TCP: the handshake's SYN and SYN-ACK each wait the one-way delay.
    let admin = lab.admin;
    let (connect, response) = in_ns(lab.link.client_ns(), move || http_get(admin, "/healthz"));
    assert!(connect >= Duration::from_millis(2 * DELAY_MS), "TCP connect took {connect:?}");
    assert!(response.starts_with("HTTP/1."), "the admin listener answered {response:?}");

    // QUIC: a short fan-out, every message delivered exactly once despite the loss.
    let (load, json) = lab.load();
    let v = summary(load, &json, Duration::from_secs(15));
    let stats = lab.link.stats();
    assert!(v["expected_deliveries"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(v["deliveries"], v["expected_deliveries"], "{v:#}");
    assert_eq!((v["lost"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(0)), "{v:#}");
    // Publisher to server to receiver: two one-way delays at least.
    let p50_us = v["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50_us >= 2 * DELAY_MS * 1000, "latency p50 {p50_us} us: {v:#}");
    for s in [stats.to_server, stats.to_client] {
        assert!(s.offered > 100 && s.lost > 0 && s.delayed > 0, "{stats}");
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_change_breaks_tcp_and_quic_migrates() {
    let lab = Lab::start("rebind", Impairment { delay_ms: 5, ..Default::default() }).await;
    let admin = lab.admin;

    // A keep-alive TCP connection that answers before the address change.
    let (go, wait) = mpsc::channel::<()>();
    let ns = lab.link.client_ns().to_string();
    let tcp = std::thread::spawn(move || {
        in_ns(&ns, move || {
            let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let ask = |s: &mut TcpStream| {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: huddle\r\n\r\n")?;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf)?;
                Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
            };
            let before = ask(&mut s);
            let _ = wait.recv_timeout(Duration::from_secs(20));
            (before, ask(&mut s))
        })
    });

    let (load, json) = lab.load();
    // Mid-way through the measured window.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let moved_to = lab.link.rebind_now().unwrap();
    assert_eq!(lab.link.client_addr(), moved_to);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The server sees the QUIC connections at the new address (a new TCP connection from it).
    let (_, listed) = in_ns(lab.link.client_ns(), move || http_get(admin, "/v1/connections"));
    let _ = go.send(());

    let v = summary(load, &json, Duration::from_secs(15));
    assert_eq!(v["deliveries"], v["expected_deliveries"], "{v:#}");
    assert_eq!((v["lost"].as_u64(), v["reconnects"].as_u64()), (Some(0), Some(0)), "{v:#}");
    assert!(listed.contains(&format!("\"{moved_to}:")), "connections after the move: {listed}");

    let (before, after) = tcp.join().unwrap();
    let before = before.expect("the TCP connection answered before the move");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(after.is_err(), "the TCP connection still answers after the move: {after:?}");
    assert_eq!(lab.link.stats().rebinds, 1);
    lab.stop().await;
}

/// A server process in the server side, killed on drop.
#[cfg(feature = "compare")]
fn server_in(ns: &str, exe: &str, args: &[&str], log: &Path) -> Kill {
    assert!(
        Path::new(exe).exists(),
        "{exe} is missing: this test runs Redis and NATS (apt-get install -y redis-server nats-server)"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", ns, exe])
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Kill(child)
}

/// Waits until a TCP connection from the client side to `addr` succeeds.
#[cfg(feature = "compare")]
fn wait_for_tcp(ns: &str, addr: SocketAddr) {
    let up = in_ns(ns, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(up, "nothing listening on {addr}");
}

/// Huddle, Redis and NATS at once across one link with a 1 s blackhole and an address change
/// of the client side (plaintext Redis and NATS: the smoke test checks the measurements, not
/// TLS). `huddle load --ipsim-schedule` measures both; Huddle loses nothing and never
/// reconnects, the TCP members all reconnect (told the network changed) and receive again.
#[cfg(feature = "compare")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_reports_catch_up_and_the_address_change() {
    let imp = Impairment { delay_ms: 10, blackholes: vec![(3_500, 1_000)], ..Default::default() };
    let mut cfg = IpLinkConfig::new(format!("hdl-test-{}-all", std::process::id()));
    cfg.to_server = imp.clone();
    cfg.to_client = imp;
    cfg.rebind_at_ms = vec![6_500];
    assert!(Path::new("/dev/net/tun").exists(), "this test needs /dev/net/tun and root");
    let link = IpLink::start(cfg).await.expect("namespaces and TUN devices (as root)");
    let dir = tempfile::tempdir().unwrap();
    let schedule = dir.path().join("schedule");
    std::fs::write(&schedule, link.schedule().to_text()).unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(["certs", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let ns = link.server_ns().to_string();
    let log = |name: &str| dir.path().join(name);
    let quic = SocketAddr::from((SERVER_ADDR, 7443));
    let redis = SocketAddr::from((SERVER_ADDR, 16379));
    let nats = SocketAddr::from((SERVER_ADDR, 14222));
    let mut servers = vec![Kill(
        huddle_in(&ns)
            .args(["serve", "--listen", &quic.to_string(), "--certs-dir"])
            .arg(dir.path())
            .stdout(File::create(log("huddle.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )];
    let bind = SERVER_ADDR.to_string();
    servers.push(server_in(
        &ns,
        "/usr/bin/redis-server",
        &["--bind", &bind, "--port", "16379", "--protected-mode", "no", "--save", ""],
        &log("redis.log"),
    ));
    servers.push(server_in(
        &ns,
        "/usr/sbin/nats-server",
        &["-a", &bind, "-p", "14222"],
        &log("nats.log"),
    ));
    wait_for_tcp(link.client_ns(), redis);
    wait_for_tcp(link.client_ns(), nats);

    let mut loads = Vec::new();
    for (name, target) in [
        ("huddle", vec!["--server".to_string(), quic.to_string()]),
        (
            "redis",
            vec![
                "--backend".into(),
                "redis".into(),
                "--plaintext".into(),
                "--server".into(),
                redis.to_string(),
            ],
        ),
        (
            "nats",
            vec![
                "--backend".into(),
                "nats".into(),
                "--plaintext".into(),
                "--server".into(),
                nats.to_string(),
            ],
        ),
    ] {
        let json = log(&format!("{name}.json"));
        let child = huddle_in(link.client_ns())
            .arg("load")
            .args(&target)
            .args(["--rooms", "1", "--members", "4", "--rate", "20"])
            .args(["--warmup", "1", "--duration", "6", "--drain", "4"])
            .arg("--certs-dir")
            .arg(dir.path())
            .arg("--ipsim-schedule")
            .arg(&schedule)
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loads.push((name, Kill(child), json));
    }
    let mut got = std::collections::BTreeMap::new();
    for (name, mut child, json) in loads {
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "huddle load --backend {name} still running");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&json).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("no summary from huddle load --backend {name}: {e}"));
        got.insert(name, v);
    }
    drop(servers);
    link.stop().await;

    for (name, v) in &got {
        eprintln!(
            "{name}: delivered {} of {}, reconnects {}, send errors {}, caught up {} ms, first new delivery after the change p50 {} max {} ms",
            v["deliveries"], v["expected_deliveries"], v["reconnects"], v["send_errors"],
            v["outages"][0]["caught_up_after_end_ms"],
            v["address_changes"][0]["first_delivery_p50_ms"],
            v["address_changes"][0]["first_delivery_max_ms"]
        );
    }
    for (name, v) in &got {
        let outages = v["outages"].as_array().unwrap();
        assert_eq!(outages.len(), 1, "{name}: {v:#}");
        let caught = outages[0]["caught_up_after_end_ms"].as_f64();
        assert!(caught.is_some_and(|ms| ms < 5_000.0), "{name} caught up after {caught:?}: {v:#}");
        let changes = v["address_changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{name}: {v:#}");
        // Every member that expects messages got new ones after the change.
        assert_eq!(changes[0]["members_without"], 0, "{name}: {v:#}");
        assert_eq!(changes[0]["members_delivered"], 3, "{name}: {v:#}");
        assert!(changes[0]["first_delivery_max_ms"].as_f64().is_some(), "{name}: {v:#}");
        let (delivered, expected) =
            (v["deliveries"].as_u64().unwrap(), v["expected_deliveries"].as_u64().unwrap());
        assert!(delivered > 0 && delivered <= expected, "{name}: {v:#}");
    }
    let h = &got["huddle"];
    assert_eq!(h["deliveries"], h["expected_deliveries"], "{h:#}");
    assert_eq!((h["lost"].as_u64(), h["reconnects"].as_u64()), (Some(0), Some(0)), "{h:#}");
    for name in ["redis", "nats"] {
        let v = &got[name];
        // Each of the 4 members' connections broke with the address and was replaced.
        let reconnects = v["reconnects"].as_u64().unwrap();
        assert!(reconnects >= 4, "{name}: {reconnects} reconnects: {v:#}");
        assert_eq!(v["resumed"], v["reconnects"], "{name}: {v:#}");
    }
}
