//! A UDP proxy that applies the impairment model in both directions.
//!
//! Each client address seen on the listening socket gets its own upstream socket (as a NAT
//! would), so several QUIC connections can share one proxy. A rebind replaces every client's
//! upstream socket with a fresh one on a new port: to the server this looks exactly like a NAT
//! rebinding or a Wi-Fi to cellular move, and QUIC migrates the connection.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::model::{Impairment, Link, LinkStats};

/// Largest datagram the proxy carries.
const MAX_DATAGRAM: usize = 65_535;

/// What to proxy and how to impair it.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where clients send.
    pub listen: SocketAddr,
    /// The server.
    pub upstream: SocketAddr,
    /// Impairments on datagrams from clients to the server.
    pub to_server: Impairment,
    /// Impairments on datagrams from the server to clients.
    pub to_client: Impairment,
    /// Seed of the random decisions.
    pub seed: u64,
    /// Times (ms from start) at which every client's upstream port changes.
    pub rebind_at_ms: Vec<u64>,
}

/// Counters of a proxy run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client to server.
    pub to_server: LinkStats,
    /// Server to client.
    pub to_client: LinkStats,
    /// Distinct client addresses seen.
    pub clients: u64,
    /// Upstream rebinds done (per client).
    pub rebinds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

struct Client {
    upstream: Arc<UdpSocket>,
    reader: tokio::task::JoinHandle<()>,
    to_server: Link,
    to_client: Link,
}

struct State {
    clients: HashMap<SocketAddr, Client>,
    stats: ProxyStats,
}

struct Shared {
    cfg: ProxyConfig,
    listen: Arc<UdpSocket>,
    state: Mutex<State>,
    start: Instant,
    delayed: mpsc::UnboundedSender<(Instant, Dir, SocketAddr, Vec<u8>)>,
}

/// A running proxy. Stops when [`Proxy::stop`] is called or it is dropped.
pub struct Proxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Runs a datagram through its client's link and sends or schedules the copies.
    async fn forward(self: &Arc<Self>, dir: Dir, client: SocketAddr, data: Vec<u8>) {
        let now_ms = self.now_ms();
        let fates = {
            let mut st = self.lock();
            let Some(c) = st.clients.get_mut(&client) else { return };
            match dir {
                Dir::ToServer => c.to_server.offer(now_ms, data.len()),
                Dir::ToClient => c.to_client.offer(now_ms, data.len()),
            }
        };
        for at in fates {
            if at <= now_ms {
                self.send(dir, client, &data).await;
            } else {
                let when = self.start + Duration::from_millis(at);
                let _ = self.delayed.send((when, dir, client, data.clone()));
            }
        }
    }

    async fn send(&self, dir: Dir, client: SocketAddr, data: &[u8]) {
        match dir {
            Dir::ToClient => {
                let _ = self.listen.send_to(data, client).await;
            }
            Dir::ToServer => {
                let upstream = self.lock().clients.get(&client).map(|c| c.upstream.clone());
                if let Some(u) = upstream {
                    let _ = u.send_to(data, self.cfg.upstream).await;
                }
            }
        }
    }

    async fn new_upstream(
        self: &Arc<Self>,
        client: SocketAddr,
    ) -> io::Result<(Arc<UdpSocket>, tokio::task::JoinHandle<()>)> {
        let bind: SocketAddr = if self.cfg.upstream.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }
            .parse()
            .map_err(|_| io::Error::other("bad bind address"))?;
        let sock = Arc::new(bind_udp(bind)?);
        let (me, s) = (self.clone(), sock.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let Ok(state) = UdpSocketState::new((&*s).into()) else { return };
            while let Ok(datagrams) = recv_datagrams(&s, &state, &mut buf).await {
                for (_, data) in datagrams {
                    me.forward(Dir::ToClient, client, data).await;
                }
            }
        });
        Ok((sock, reader))
    }

    async fn rebind_all(self: &Arc<Self>) {
        let clients: Vec<SocketAddr> = self.lock().clients.keys().copied().collect();
        for addr in clients {
            let Ok((sock, reader)) = self.new_upstream(addr).await else { continue };
            let mut st = self.lock();
            if let Some(c) = st.clients.get_mut(&addr) {
                c.reader.abort();
                c.upstream = sock;
                c.reader = reader;
                st.stats.rebinds += 1;
            }
        }
    }
}

impl Proxy {
    /// Binds the listening socket and starts proxying.
    pub async fn start(cfg: ProxyConfig) -> io::Result<Proxy> {
        let listen = Arc::new(bind_udp(cfg.listen)?);
        let local_addr = listen.local_addr()?;
        let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            cfg,
            listen,
            state: Mutex::new(State { clients: HashMap::new(), stats: ProxyStats::default() }),
            start: Instant::now(),
            delayed: delayed_tx,
        });
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let me = shared.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let Ok(listen_state) = UdpSocketState::new((&*me.listen).into()) else { return };
            let mut heap: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
            let mut parked: HashMap<u64, (Dir, SocketAddr, Vec<u8>)> = HashMap::new();
            let mut seq = 0u64;
            let mut rebinds: Vec<u64> = me.cfg.rebind_at_ms.clone();
            rebinds.sort_unstable();
            rebinds.reverse();
            loop {
                let next_due = heap.peek().map(|Reverse((t, _, _))| *t);
                let next_rebind = rebinds.last().map(|ms| me.start + Duration::from_millis(*ms));
                tokio::select! {
                    _ = &mut stop_rx => break,
                    r = recv_datagrams(&me.listen, &listen_state, &mut buf) => {
                        let Ok(datagrams) = r else { continue };
                        for (from, data) in datagrams {
                            let known = me.lock().clients.contains_key(&from);
                            if !known {
                                let Ok((sock, reader)) = me.new_upstream(from).await else { continue };
                                let mut st = me.lock();
                                let idx = st.stats.clients;
                                st.stats.clients += 1;
                                let seed = me.cfg.seed.wrapping_add(idx.wrapping_mul(2));
                                st.clients.insert(from, Client {
                                    upstream: sock,
                                    reader,
                                    to_server: Link::new(me.cfg.to_server.clone(), seed),
                                    to_client: Link::new(me.cfg.to_client.clone(), seed.wrapping_add(1)),
                                });
                            }
                            me.forward(Dir::ToServer, from, data).await;
                        }
                    }
                    Some((when, dir, client, data)) = delayed_rx.recv() => {
                        seq += 1;
                        parked.insert(seq, (dir, client, data));
                        heap.push(Reverse((when, seq, 0)));
                    }
                    _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)).await }, if next_due.is_some() => {
                        let now = Instant::now();
                        while let Some(Reverse((t, s, _))) = heap.peek().copied() {
                            if t > now { break; }
                            heap.pop();
                            if let Some((dir, client, data)) = parked.remove(&s) {
                                me.send(dir, client, &data).await;
                            }
                        }
                    }
                    _ = async { tokio::time::sleep_until(next_rebind.unwrap_or_else(Instant::now)).await }, if next_rebind.is_some() => {
                        rebinds.pop();
                        me.rebind_all().await;
                    }
                }
            }
            let mut st = me.lock();
            for (_, c) in st.clients.drain() {
                c.reader.abort();
            }
        });
        Ok(Proxy { local_addr, shared, stop: Some(stop), task: Some(task) })
    }

    /// The address clients should send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        let st = self.shared.lock();
        let mut stats = st.stats;
        stats.to_server = LinkStats::default();
        stats.to_client = LinkStats::default();
        for c in st.clients.values() {
            add(&mut stats.to_server, &c.to_server.stats);
            add(&mut stats.to_client, &c.to_client.stats);
        }
        stats
    }

    /// Moves every client to a new upstream port now.
    pub async fn rebind_now(&self) {
        self.shared.rebind_all().await;
    }

    /// The upstream (server-facing) address currently used for a client, if it has been seen.
    pub fn upstream_addr_of(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.shared.lock().clients.get(&client).and_then(|c| c.upstream.local_addr().ok())
    }

    /// Stops the proxy and returns its counters.
    pub async fn stop(mut self) -> ProxyStats {
        let stats = self.stats();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Socket buffer size of the proxy's sockets: large, so that the only losses are the model's.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds a UDP socket with large buffers (the kernel's default drops bursts at high rates).
/// Receives what is waiting on `sock`, split into the datagrams their sender sent. A QUIC
/// endpoint sends bursts as one GSO batch, and on loopback such a batch can arrive as one buffer;
/// forwarded whole it would reach the peer as one datagram it cannot decrypt (short-header
/// packets are not delimited), so a burst would look like loss. The socket state asks for GRO and
/// reports each buffer's segment size (its `stride`).
async fn recv_datagrams(
    sock: &UdpSocket,
    state: &UdpSocketState,
    buf: &mut [u8],
) -> io::Result<Vec<(SocketAddr, Vec<u8>)>> {
    loop {
        sock.readable().await?;
        let mut meta = [RecvMeta::default()];
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut bufs = [std::io::IoSliceMut::new(&mut buf[..])];
            state.recv(sock.into(), &mut bufs, &mut meta)
        });
        match got {
            Ok(n) => {
                let mut out = Vec::new();
                for m in &meta[..n] {
                    for segment in buf[..m.len].chunks(m.stride.max(1)) {
                        out.push((m.addr, segment.to_vec()));
                    }
                }
                return Ok(out);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let std = std::net::UdpSocket::bind(addr)?;
    crate::udp::set_socket_buffers(&std, SOCKET_BUFFER_BYTES);
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

fn add(total: &mut LinkStats, s: &LinkStats) {
    total.offered += s.offered;
    total.delivered += s.delivered;
    total.lost += s.lost;
    total.blackholed += s.blackholed;
    total.queue_dropped += s.queue_dropped;
    total.duplicated += s.duplicated;
    total.reordered += s.reordered;
    total.delayed += s.delayed;
}

impl std::fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, s) in [("client->server", &self.to_server), ("server->client", &self.to_client)]
        {
            writeln!(
                f,
                "{name}: offered {} delivered {} lost {} blackholed {} queue-dropped {} duplicated {} reordered {} delayed {}",
                s.offered, s.delivered, s.lost, s.blackholed, s.queue_dropped, s.duplicated, s.reordered, s.delayed
            )?;
        }
        write!(f, "clients {} rebinds {}", self.clients, self.rebinds)
    }
}
