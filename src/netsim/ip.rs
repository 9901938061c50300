//! The impairment model at the IP level, for TCP and QUIC alike (Linux, as root).
//!
//! [`IpLink::start`] makes two network namespaces, a server side and a client side, each with
//! one TUN device (`hip0`) with an address on 10.77.0.0/24 ([`SERVER_ADDR`], [`CLIENT_ADDR`])
//! and one on the unique local IPv6 prefix fd77:77::/64 ([`SERVER_ADDR6`], [`CLIENT_ADDR6`]).
//! Nothing joins the two but this process: every IPv4 packet and every IPv6 packet to the
//! fd77:77::/64 prefix one side sends is read from its TUN, offered to that direction's
//! [`Link`] and written into the other side's TUN at the time the model decides (or not at
//! all): one model, whichever the IP version. The links are seeded as the UDP proxy seeds its
//! first client's (`seed` towards the server, `seed + 1` towards the client), so the same seed
//! drops the same packets of a direction, in order, whatever the protocol above. Other IPv6
//! packets (the kernel's own link-local and multicast ones: router solicitations, MLD) are not
//! forwarded and use no random decision.
//!
//! Processes join a side with `ip netns exec NAME ...`. A rebind ([`IpLink::rebind_now`], or
//! `rebind_at_ms`) moves the client side to the next addresses (10.77.0.3 and fd77:77::3, then
//! .4 and ::4, ...): a TCP connection bound to an old address breaks, a QUIC connection
//! migrates.
//!
//! Both namespaces are made with names no one else holds (`ip netns add` fails otherwise) and
//! deleted by [`IpLink::stop`] or on drop; the TUN devices go with the descriptors this process
//! holds. Nothing else on the machine is touched.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::model::{Impairment, Link, LinkStats};

/// The server side's address.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The client side's address until the first rebind.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The server side's IPv6 address (a unique local address, RFC 4193).
pub const SERVER_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, 1);
/// The client side's IPv6 address until the first rebind.
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x77, 0, 0, 0, 0, 0, 2);
/// Prefix length of the link's IPv6 subnet.
const PREFIX_LEN6: u8 = 64;
/// The TUN device's name in both namespaces.
pub const TUN_NAME: &str = "hip0";
/// Prefix length of the link's subnet.
const PREFIX_LEN: u8 = 24;
/// Largest packet read from a TUN (its MTU is 1500; a larger read costs nothing).
const MAX_PACKET: usize = 65_535;
/// Bytes a direction may hold in its delay queue; packets beyond it are dropped (and counted
/// as `queue_dropped`). At 25 ms of delay this is over 10 Gbit/s, far above what passes here.
const MAX_HELD_BYTES: usize = 32 * 1024 * 1024;
/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to impair and how.
#[derive(Clone, Debug)]
pub struct IpLinkConfig {
    /// Namespaces are `{prefix}-s` (server side) and `{prefix}-c` (client side).
    pub prefix: String,
    /// Impairments on packets from the client side to the server side.
    pub to_server: Impairment,
    /// Impairments on packets from the server side to the client side.
    pub to_client: Impairment,
    /// Seed of the random decisions.
    pub seed: u64,
    /// Times (ms from start) at which the client side moves to its next address.
    pub rebind_at_ms: Vec<u64>,
}

impl IpLinkConfig {
    /// A configuration with this prefix and no impairment.
    pub fn new(prefix: impl Into<String>) -> IpLinkConfig {
        IpLinkConfig {
            prefix: prefix.into(),
            to_server: Impairment::default(),
            to_client: Impairment::default(),
            seed: 1,
            rebind_at_ms: Vec::new(),
        }
    }
}

/// Counters of an [`IpLink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpLinkStats {
    /// Client side to server side.
    pub to_server: LinkStats,
    /// Server side to client side.
    pub to_client: LinkStats,
    /// Address changes of the client side done.
    pub rebinds: u64,
}

impl std::fmt::Display for IpLinkStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, s) in [("client->server", &self.to_server), ("server->client", &self.to_client)]
        {
            writeln!(
                f,
                "{name}: packets offered {} delivered {} lost {} blackholed {} queue-dropped {} duplicated {} reordered {} delayed {}",
                s.offered, s.delivered, s.lost, s.blackholed, s.queue_dropped, s.duplicated, s.reordered, s.delayed
            )?;
        }
        write!(f, "rebinds {}", self.rebinds)
    }
}

/// A link's timeline: its start and the blackholes and address changes it does, in
/// milliseconds from the start. `huddle ipsim --schedule FILE` writes it for `huddle load
/// --ipsim-schedule FILE`, which runs in another process: the start travels as a
/// `CLOCK_MONOTONIC` reading, the clock `Instant` uses, which every process on the host shares
/// (network namespaces have no clock of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The link's start.
    pub start: Instant,
    /// Blackholes (start ms, length ms), either direction, sorted.
    pub blackholes: Vec<(u64, u64)>,
    /// Address changes of the client side (ms), sorted.
    pub rebind_at_ms: Vec<u64>,
}

impl Schedule {
    /// The text form: `start_monotonic_ns N`, then one `blackhole START_MS LENGTH_MS` or
    /// `rebind AT_MS` line each.
    pub fn to_text(&self) -> String {
        let ago = self.start.elapsed().as_nanos() as u64;
        let mut t = format!("start_monotonic_ns {}\n", monotonic_ns().saturating_sub(ago));
        for (s, d) in &self.blackholes {
            t.push_str(&format!("blackhole {s} {d}\n"));
        }
        for r in &self.rebind_at_ms {
            t.push_str(&format!("rebind {r}\n"));
        }
        t
    }

    /// Parses [`Schedule::to_text`]'s form, written by this or another process of this host.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut start_ns = None;
        let (mut blackholes, mut rebind_at_ms) = (Vec::new(), Vec::new());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| -> Result<u64, String> {
                words.get(i).and_then(|w| w.parse().ok()).ok_or(format!("bad line {line:?}"))
            };
            match words[0] {
                "start_monotonic_ns" => start_ns = Some(num(1)?),
                "blackhole" => blackholes.push((num(1)?, num(2)?)),
                "rebind" => rebind_at_ms.push(num(1)?),
                _ => return Err(format!("unknown line {line:?}")),
            }
        }
        let start_ns = start_ns.ok_or("no start_monotonic_ns line")?;
        let ago = Duration::from_nanos(monotonic_ns().saturating_sub(start_ns));
        let now = Instant::now();
        let start = now.checked_sub(ago).unwrap_or(now);
        blackholes.sort_unstable();
        rebind_at_ms.sort_unstable();
        Ok(Schedule { start, blackholes, rebind_at_ms })
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `Instant` on Linux.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The IPv4 addresses of the interfaces in this thread's network namespace, sorted: what a
/// client on the client side watches to see its address change.
pub fn local_ipv4_addrs() -> io::Result<Vec<Ipv4Addr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list this function frees below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not freed yet; an AF_INET
        // ifa_addr points to a sockaddr_in.
        unsafe {
            let a = (*at).ifa_addr;
            if !a.is_null() && i32::from((*a).sa_family) == libc::AF_INET {
                let sin = &*(a as *const libc::sockaddr_in);
                addrs.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            at = (*at).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addrs.sort_unstable();
    Ok(addrs)
}

/// A network namespace this process made; deleted on drop.
struct Netns(String);

impl Netns {
    fn add(name: String) -> io::Result<Netns> {
        ip(&["netns", "add", &name])?;
        Ok(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

struct Shared {
    stats: Mutex<IpLinkStats>,
    /// The client side's addresses now.
    client_addr: Mutex<(Ipv4Addr, Ipv6Addr)>,
    client_ns: String,
}

/// A running IP-level impairment between two namespaces. Stops on [`IpLink::stop`] or drop.
pub struct IpLink {
    shared: Arc<Shared>,
    server_ns: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The start of the link's clock and what happens on it.
    schedule: Schedule,
    /// Deleted on drop, after the forwarders have closed the TUN devices.
    _namespaces: Vec<Netns>,
}

impl IpLink {
    /// Makes the namespaces and their TUN devices, sets their addresses and starts forwarding.
    /// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), /dev/net/tun and iproute2's `ip`; on any
    /// failure whatever was made is removed again.
    pub async fn start(cfg: IpLinkConfig) -> io::Result<IpLink> {
        let server = Netns::add(format!("{}-s", cfg.prefix))?;
        let client = Netns::add(format!("{}-c", cfg.prefix))?;
        let server_tun = open_tun_in(&server.0)?;
        let client_tun = open_tun_in(&client.0)?;
        for (ns, addr, addr6) in
            [(&server.0, SERVER_ADDR, SERVER_ADDR6), (&client.0, CLIENT_ADDR, CLIENT_ADDR6)]
        {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/{PREFIX_LEN}"), "dev", TUN_NAME])?;
            add_addr6(ns, addr6)?;
            ip(&["-n", ns, "link", "set", TUN_NAME, "up"])?;
        }
        let server_tun = Arc::new(register(server_tun)?);
        let client_tun = Arc::new(register(client_tun)?);
        let shared = Arc::new(Shared {
            stats: Mutex::new(IpLinkStats::default()),
            client_addr: Mutex::new((CLIENT_ADDR, CLIENT_ADDR6)),
            client_ns: client.0.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let start = Instant::now();
        let mut blackholes = cfg.to_server.blackholes.clone();
        blackholes.extend(cfg.to_client.blackholes.iter().copied());
        blackholes.sort_unstable();
        blackholes.dedup();
        let mut rebind_at_ms = cfg.rebind_at_ms.clone();
        rebind_at_ms.sort_unstable();
        let schedule = Schedule { start, blackholes, rebind_at_ms };
        let up = Link::new(cfg.to_server, cfg.seed);
        let down = Link::new(cfg.to_client, cfg.seed.wrapping_add(1));
        let mut tasks = vec![
            tokio::spawn(forward(
                client_tun.clone(),
                server_tun.clone(),
                up,
                start,
                shared.clone(),
                true,
                stop_rx.clone(),
            )),
            tokio::spawn(forward(server_tun, client_tun, down, start, shared.clone(), false, {
                stop_rx.clone()
            })),
        ];
        if !cfg.rebind_at_ms.is_empty() {
            let (me, mut stop_rx) = (shared.clone(), stop_rx);
            let mut at = cfg.rebind_at_ms;
            at.sort_unstable();
            tasks.push(tokio::spawn(async move {
                for ms in at {
                    tokio::select! {
                        _ = tokio::time::sleep_until(start + Duration::from_millis(ms)) => {}
                        _ = stop_rx.changed() => return,
                    }
                    if let Err(e) = me.rebind() {
                        tracing::warn!("ipsim rebind: {e}");
                    }
                }
            }));
        }
        Ok(IpLink {
            shared,
            server_ns: server.0.clone(),
            stop,
            tasks,
            schedule,
            _namespaces: vec![server, client],
        })
    }

    /// The server side's namespace (address [`SERVER_ADDR`]).
    pub fn server_ns(&self) -> &str {
        &self.server_ns
    }

    /// The client side's namespace.
    pub fn client_ns(&self) -> &str {
        &self.shared.client_ns
    }

    /// The client side's current address.
    pub fn client_addr(&self) -> Ipv4Addr {
        lock(&self.shared.client_addr).0
    }

    /// The client side's current IPv6 address.
    pub fn client_addr6(&self) -> Ipv6Addr {
        lock(&self.shared.client_addr).1
    }

    /// When the link started and its blackholes and rebinds.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Counters so far.
    pub fn stats(&self) -> IpLinkStats {
        *lock(&self.shared.stats)
    }

    /// Moves the client side to its next addresses now and returns the IPv4 one.
    pub fn rebind_now(&self) -> io::Result<Ipv4Addr> {
        self.shared.rebind()
    }

    /// Stops forwarding, removes the TUN devices and namespaces and returns the counters.
    pub async fn stop(mut self) -> IpLinkStats {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.stats()
        // Drop deletes the namespaces.
    }
}

impl Drop for IpLink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Shared {
    fn rebind(&self) -> io::Result<Ipv4Addr> {
        let mut addrs = lock(&self.client_addr);
        let (addr, addr6) = *addrs;
        let [a, b, c, d] = addr.octets();
        let d = if d >= 254 { 2 } else { d + 1 };
        let next = Ipv4Addr::new(a, b, c, d);
        let mut seg = addr6.segments();
        seg[7] = u16::from(d);
        let next6 = Ipv6Addr::from(seg);
        let ns = &self.client_ns;
        // IPv6 first, so that once the IPv4 address (which `huddle load` watches) has changed,
        // both have.
        ip(&["-n", ns, "-6", "addr", "del", &format!("{addr6}/{PREFIX_LEN6}"), "dev", TUN_NAME])?;
        add_addr6(ns, next6)?;
        // The old address goes first: deleting a primary address would take secondaries along.
        ip(&["-n", ns, "addr", "del", &format!("{addr}/{PREFIX_LEN}"), "dev", TUN_NAME])?;
        ip(&["-n", ns, "addr", "add", &format!("{next}/{PREFIX_LEN}"), "dev", TUN_NAME])?;
        *addrs = (next, next6);
        lock(&self.stats).rebinds += 1;
        Ok(next)
    }
}

/// Adds IPv6 address `addr` to the TUN device of namespace `ns`, usable at once (`nodad`: no
/// duplicate address detection, which would hold it back for a second or more).
fn add_addr6(ns: &str, addr: Ipv6Addr) -> io::Result<()> {
    let with_prefix = format!("{addr}/{PREFIX_LEN6}");
    ip(&["-n", ns, "-6", "addr", "add", &with_prefix, "dev", TUN_NAME, "nodad"])
}

/// Reads packets from `from`, runs each through `link` and writes the copies into `to` when
/// due, until `stop` changes.
async fn forward(
    from: Arc<AsyncFd<File>>,
    to: Arc<AsyncFd<File>>,
    mut link: Link,
    start: Instant,
    shared: Arc<Shared>,
    to_server: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    // (due ms, arrival order, packet): the order keeps equal due times first in, first out.
    let mut held: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>> = BinaryHeap::new();
    let (mut held_bytes, mut seq) = (0usize, 0u64);
    loop {
        let next_due = held.peek().map(|Reverse((at, _, _))| start + Duration::from_millis(*at));
        tokio::select! {
            _ = stop.changed() => return,
            r = read_packet(&from, &mut buf) => {
                let Ok(n) = r else { return };
                if !forwarded(&buf[..n]) {
                    continue;
                }
                let now_ms = start.elapsed().as_millis() as u64;
                let mut fates = link.offer(now_ms, n);
                if held_bytes + n * fates.len() > MAX_HELD_BYTES && fates.iter().any(|&at| at > now_ms) {
                    link.stats.delivered = link.stats.delivered.saturating_sub(fates.len() as u64);
                    link.stats.queue_dropped += 1;
                    fates.clear();
                }
                for at in fates {
                    if at <= now_ms {
                        write_packet(&to, &buf[..n]);
                    } else {
                        seq += 1;
                        held_bytes += n;
                        held.push(Reverse((at, seq, buf[..n].to_vec())));
                    }
                }
                let mut st = lock(&shared.stats);
                *if to_server { &mut st.to_server } else { &mut st.to_client } = link.stats;
            }
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)).await }, if next_due.is_some() => {
                let now_ms = start.elapsed().as_millis() as u64;
                while held.peek().is_some_and(|Reverse((at, _, _))| *at <= now_ms) {
                    if let Some(Reverse((_, _, packet))) = held.pop() {
                        held_bytes -= packet.len();
                        write_packet(&to, &packet);
                    }
                }
            }
        }
    }
}

/// Whether a packet crosses the link: IPv4 (the version is the first byte's high nibble), or
/// IPv6 to the link's prefix (the destination is bytes 24..40), not the kernel's link-local and
/// multicast packets.
fn forwarded(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => true,
        Some(6) => {
            let prefix = &SERVER_ADDR6.octets()[..usize::from(PREFIX_LEN6 / 8)];
            packet.get(24..24 + prefix.len()) == Some(prefix)
        }
        _ => false,
    }
}

/// Registers a TUN descriptor with the reactor for reading (writes never wait).
fn register(tun: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: the AsyncFd owns the File, whose descriptor stays open and the same until the
    // AsyncFd is dropped: it is only read and written through `get_ref`.
    Ok(unsafe { AsyncFd::register_with_interest(tun, tokio::io::Interest::READABLE) }?)
}

async fn read_packet(fd: &AsyncFd<File>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|f| f.get_ref().read(buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Writes one packet into a TUN device. A write injects the packet into the namespace's stack
/// and does not block; a failure (the device going down at teardown) drops the packet, as a
/// link would.
fn write_packet(fd: &AsyncFd<File>, packet: &[u8]) {
    let _ = fd.get_ref().write(packet);
}

/// Opens a TUN device named [`TUN_NAME`] inside namespace `ns`: a short-lived thread enters
/// the namespace (only that thread), opens /dev/net/tun and attaches a new device, which
/// belongs to the namespace it was made in for the rest of its life. The device exists while
/// the returned descriptor is open.
fn open_tun_in(ns: &str) -> io::Result<File> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> io::Result<File> {
        let netns = File::open(&path)?;
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..TUN_NAME.len()].copy_from_slice(TUN_NAME.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes: a 16-byte name, then
        // a union whose first member, the flags, is a short); `IfReq` has that layout and lives
        // for the call; `tun` is an open descriptor of /dev/net/tun.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {TUN_NAME}: {e}")));
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| io::Error::other("the thread opening the TUN device panicked"))?
}

/// `struct ifreq` as TUNSETIFF uses it.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Runs `ip ARGS`, bounded by [`IP_TIMEOUT`]; its stderr becomes the error.
fn ip(args: &[&str]) -> io::Result<()> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("ip (iproute2): {e}")))?;
    let deadline = std::time::Instant::now() + IP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(io::Error::other(format!("ip {}: {}", args.join(" "), err.trim())));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("ip {}: timed out", args.join(" "))));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_back_with_the_same_start() {
        let start = Instant::now() - Duration::from_millis(1500);
        let s = Schedule { start, blackholes: vec![(2000, 3000)], rebind_at_ms: vec![4000] };
        let back = Schedule::parse(&s.to_text()).unwrap();
        assert_eq!((&back.blackholes, &back.rebind_at_ms), (&s.blackholes, &s.rebind_at_ms));
        let skew = back.start.max(start) - back.start.min(start);
        assert!(skew < Duration::from_millis(5), "start moved by {skew:?}");
        assert!(Schedule::parse("blackhole 1 2").is_err());
    }

    #[test]
    fn ipv4_and_the_links_ipv6_prefix_are_forwarded_not_link_local() {
        let mut v4 = vec![0u8; 40];
        v4[0] = 0x45;
        assert!(forwarded(&v4));
        let v6_to = |dst: Ipv6Addr| {
            let mut p = vec![0u8; 60];
            p[0] = 0x60;
            p[24..40].copy_from_slice(&dst.octets());
            p
        };
        assert!(forwarded(&v6_to(SERVER_ADDR6)));
        assert!(forwarded(&v6_to(CLIENT_ADDR6)));
        // A router solicitation (to ff02::2) and a link-local peer.
        assert!(!forwarded(&v6_to(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2))));
        assert!(!forwarded(&v6_to(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))));
        assert!(!forwarded(&[]));
        assert!(!forwarded(&[0x60, 0, 0]));
    }
}
