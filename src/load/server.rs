//! The server under test when the harness starts it, and what /proc says about processes and
//! the host's UDP stack.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};

use super::args::LoadConfig;
use crate::server::config::ServerConfig;

/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ is 100 on every
/// architecture Linux supports today).
pub const CLOCK_TICKS_PER_S: f64 = 100.0;

/// How long the spawned server has to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `huddle serve` child process with a temporary configuration and certificates folder.
/// Dropping it kills the process (by its pid) and removes the folder.
pub struct SpawnedServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// The temporary folder (config.toml, server.log and certs/).
    pub dir: PathBuf,
    /// The SHA-256 (hex) of the certificate it presents to WebTransport clients, once it has
    /// printed it (the line after the address).
    web_cert_hash: Arc<Mutex<Option<String>>>,
}

impl SpawnedServer {
    /// Writes a configuration for load (no rate limit, no per-IP cap, room for every member and
    /// for its rooms) on top of `cfg.server_config` (or the defaults), starts the server and
    /// waits for "huddle listening on ADDR" on its stdout.
    pub fn start(cfg: &LoadConfig) -> Result<SpawnedServer> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("huddle-load-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let certs = dir.join("certs");
        let base = match &cfg.server_config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        let mut sc = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("constant address parses"),
            certs_dir: certs.clone(),
            ..base
        };
        // The harness trusts the CA and mints tokens with the key the server makes in `certs`.
        sc.cert = None;
        sc.key = None;
        sc.token_keys = Vec::new();
        let n = cfg.connections();
        sc.limits.rate_limit_per_s = 0;
        // Every connection comes from 127.0.0.1 in a burst: the abuse limits would only get in
        // the way of measuring.
        sc.limits.ops_rate_per_s = 0;
        sc.limits.address_ops_rate_per_s = 0;
        sc.transport.retry_above_handshakes_per_s = u32::MAX;
        sc.limits.members_per_room =
            sc.limits.members_per_room.max(cfg.members * cfg.rooms_per_member);
        sc.limits.rooms_per_server = sc.limits.rooms_per_server.max(cfg.rooms);
        sc.limits.rooms_per_user = sc.limits.rooms_per_user.max(cfg.rooms_per_member);
        sc.transport.max_connections = sc.transport.max_connections.max(n + 1024);
        sc.transport.max_connections_per_ip = 0;
        sc.transport.max_incoming = sc.transport.max_incoming.max(cfg.connect_concurrency * 2);
        let toml = toml::to_string(&sc).context("writing the server configuration")?;
        let config_path = dir.join("config.toml");
        fs::write(&config_path, toml)?;
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path)?;

        let exe = match &cfg.server_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("finding this executable")?,
        };
        let mut cmd = match &cfg.server_taskset {
            Some(cpus) => {
                // taskset execs the server, so the child's pid is the server's.
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(&config_path)
            .arg("--certs-dir")
            .arg(&certs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout of the server"))?;
        let (tx, rx) = mpsc::channel();
        let web_cert_hash = Arc::new(Mutex::new(None));
        let hash = web_cert_hash.clone();
        // Reads the address line, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if let Some(h) = line.split("huddle WebTransport certificate sha256 ").nth(1) {
                    *hash.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.trim().to_string());
                }
                if !sent {
                    if let Some(addr) = parse_listening(&line) {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let mut server =
            SpawnedServer { child, addr: "0.0.0.0:0".parse()?, pid, dir, web_cert_hash };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                return Err(anyhow!(
                    "the server did not print its address within {START_TIMEOUT:?} (exit: {status:?}); its log:\n{}",
                    tail(&log_path, 2000)
                ));
            }
        }
        Ok(server)
    }

    /// The SHA-256 (hex) of the certificate the server presents to WebTransport clients, waiting
    /// a little for the line that gives it; `None` when it has none (WebTransport off).
    pub fn web_cert_hash(&self) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let hash = self.web_cert_hash.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if hash.is_some() || std::time::Instant::now() > deadline {
                return hash;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The certificates folder the server made.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("server.log"), 2000)
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The address in a "huddle listening on ADDR ..." line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("huddle listening on ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn tail(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(max);
    let start = (start..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_string()
}

/// CPU time (user + system) of a process (`None`: this one) in clock ticks.
pub fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after it start at field 3 (state).
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of /proc/PID/status, in bytes.
fn status_bytes(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of a process, bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Peak resident memory of a process, bytes.
pub fn rss_peak_bytes(pid: Option<u32>) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Datagrams each local UDP port's socket dropped (full receive buffer and other causes), from
/// /proc/net/udp and /proc/net/udp6: a drop counter per socket, so it tells whose buffer
/// overflowed.
pub fn udp_socket_drops() -> HashMap<u16, u64> {
    let mut drops = HashMap::new();
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = fs::read_to_string(path) {
            for (port, n) in parse_socket_drops(&text) {
                *drops.entry(port).or_default() += n;
            }
        }
    }
    drops
}

fn parse_socket_drops(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            Some((port, f.last()?.parse().ok()?))
        })
        .collect()
}

/// The host's UDP counters (this network namespace), from /proc/net/snmp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams received.
    pub in_datagrams: u64,
    /// Datagrams that could not be received (all causes).
    pub in_errors: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Datagrams not sent because a socket's send buffer was full.
    pub sndbuf_errors: u64,
}

/// Reads the UDP counters.
pub fn udp_counters() -> Option<UdpCounters> {
    parse_snmp(&fs::read_to_string("/proc/net/snmp").ok()?)
}

fn parse_snmp(text: &str) -> Option<UdpCounters> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> =
        udp.next()?.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let get = |n: &str| names.iter().position(|x| *x == n).and_then(|i| values.get(i).copied());
    Some(UdpCounters {
        in_datagrams: get("InDatagrams").unwrap_or(0),
        in_errors: get("InErrors").unwrap_or(0),
        rcvbuf_errors: get("RcvbufErrors").unwrap_or(0),
        sndbuf_errors: get("SndbufErrors").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(
            parse_listening("huddle listening on 127.0.0.1:4567 (ALPN huddle/1)\n"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(parse_listening("something else"), None);
    }

    #[test]
    fn parses_socket_drops() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:D3B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123 2 0000000000000000 17\n";
        assert_eq!(parse_socket_drops(text), vec![(0xD3B5, 17)]);
    }

    #[test]
    fn reads_proc() {
        assert!(cpu_ticks(None).is_some());
        assert!(rss_bytes(None).unwrap() > 0);
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 10 0 3 9 2 1\n";
        assert_eq!(
            parse_snmp(snmp),
            Some(UdpCounters {
                in_datagrams: 10,
                in_errors: 3,
                rcvbuf_errors: 2,
                sndbuf_errors: 1
            })
        );
    }
}
