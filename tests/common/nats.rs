//! A nats-server with JetStream for the cluster tests (tests/nats_bus.rs, tests/cluster_nats.rs):
//! started on a free loopback port with a temporary store directory, killed by its PID. Without
//! `nats-server` on PATH a test says so and passes, unless `HUDDLE_REQUIRE_NATS=1`, which makes
//! it fail (CI sets it).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use huddle::cluster::{NatsBus, NatsOptions};
use tempfile::TempDir;

/// A nats-server with JetStream on 127.0.0.1, killed (SIGKILL) when dropped.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl NatsServer {
    /// Starts one, or returns `None` (after saying why) if `nats-server` is not installed and
    /// `HUDDLE_REQUIRE_NATS` is not `1`.
    pub fn start() -> Option<NatsServer> {
        let found = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var("HUDDLE_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("nats-server is not on PATH and HUDDLE_REQUIRE_NATS=1");
            }
            eprintln!("SKIPPED: nats-server is not on PATH (apt-get install -y nats-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = NatsServer { child: None, port, dir: TempDir::new().unwrap() };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_accepting(self.port);
    }

    /// `kill -9`, then a new process on the same port and store directory.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success());
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn options(&self) -> NatsOptions {
        NatsOptions { nats: vec![self.url()], ..NatsOptions::default() }
    }

    pub async fn bus(&self) -> NatsBus {
        NatsBus::connect(self.options()).await.expect("connect")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
        }
        self.kill();
    }
}

fn wait_accepting(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
