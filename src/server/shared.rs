//! The seam between the connection tasks and the sans-IO core: the state every task shares,
//! the one lock around the core, and the dispatch of the core's outputs to connection outboxes.
//!
//! The core sits behind one `std::sync::Mutex` together with the table of connection outboxes.
//! Every input is handled under that lock and its outputs are dispatched to outboxes before the
//! lock is released; dispatch only pushes into queues, so the lock is never held across an
//! `.await` and a slow connection never slows the others.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::broker::Carrier;
use super::config::ServerConfig;
use super::connections::{ConnectionInfo, ConnectionPage, Handles, Link};
use super::guard::{self, client_address, GuardStats, HandshakeMeter, LogLimiter};
use super::metrics::{ConnSample, CoreCounts, Metrics, ScrapeSource};
use super::outbox::{Outbox, OutboxStats};
use super::probe::FanoutProbe;
use crate::core::{AdminConnection, AdminConnectionPage, ConnId, Core, Now, Output};
use crate::wire::{ErrorBody, ErrorCode, Priority};

/// Monotonic and wall-clock time for the core.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock whose monotonic time starts now.
    pub(super) fn new() -> Clock {
        Clock { start: tokio::time::Instant::now() }
    }

    pub(super) fn now(&self) -> Now {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64);
        Now { mono_ms: self.start.elapsed().as_millis() as u64, unix_ms: unix_ms.unwrap_or(0) }
    }

    pub(super) fn instant(&self, mono_ms: u64) -> tokio::time::Instant {
        self.start + Duration::from_millis(mono_ms)
    }
}

/// What the lock guards: the core and the outboxes its outputs go to.
pub(super) struct State {
    pub(super) core: Core,
    pub(super) outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// What the operator's connection listing shows of each registered connection beside its
    /// outbox (the same keys).
    links: HashMap<ConnId, Link>,
}

impl State {
    /// A registered connection's transport, for the connection listing.
    fn handles(&self, conn: ConnId) -> Option<Handles> {
        let link = self.links.get(&conn)?;
        Some(Handles {
            outbox: self.outboxes.get(&conn)?.clone(),
            connected_at_ms: link.connected_at_ms,
            zero_rtt: link.zero_rtt,
        })
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(super) clock: Clock,
    pub(super) timer_changed: Notify,
    pub(super) config: ServerConfig,
    pub(super) next_conn: AtomicU64,
    pub(super) conns: Mutex<ConnCounts>,
    pub(super) stats: Arc<OutboxStats>,
    pub(super) guard: Arc<GuardStats>,
    pub(super) handshakes: Mutex<HandshakeMeter>,
    log_limiter: Mutex<LogLimiter>,
    /// Keys client addresses for the core's address rate limit (seeded per run, so that
    /// nobody can aim for a collision).
    address_keys: RandomState,
    pub(super) metrics: Metrics,
    /// True while the endpoint accepts connections (false before `run` and once shutting down).
    pub(super) accepting: AtomicBool,
    /// What carries the room logs (cluster mode); none on a single node.
    carrier: Option<Arc<dyn Carrier>>,
}

/// Connections from accept to end (handshakes in progress included), in total and per client
/// address ([`client_address`]).
#[derive(Default)]
pub(super) struct ConnCounts {
    pub(super) total: usize,
    pub(super) per_address: HashMap<IpAddr, usize>,
}

impl Shared {
    /// The shared state of a server around `core`.
    pub(super) fn new(
        core: Core,
        config: ServerConfig,
        carrier: Option<Arc<dyn Carrier>>,
    ) -> Arc<Shared> {
        Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            state: Mutex::new(State { core, outboxes: HashMap::new(), links: HashMap::new() }),
            clock: Clock::new(),
            timer_changed: Notify::new(),
            config,
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(ConnCounts::default()),
            stats: Arc::new(OutboxStats::default()),
            guard: Arc::new(GuardStats::default()),
            handshakes: Mutex::new(HandshakeMeter::new(tokio::time::Instant::now())),
            log_limiter: Mutex::new(LogLimiter::new(tokio::time::Instant::now())),
            address_keys: RandomState::new(),
            metrics: Metrics::new(weak.clone() as Weak<dyn ScrapeSource>),
            accepting: AtomicBool::new(false),
            carrier,
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The core never panics on peer input; if it ever did, keep serving the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one input through the core and dispatches what it asks for, under the lock.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.core.poll_timeout();
        let r = f(&mut state.core, now);
        let state = &mut *state;
        while let Some(out) = state.core.poll_output() {
            dispatch(&state.outboxes, out, &self.metrics, self.carrier.as_deref());
        }
        if state.core.poll_timeout() != before {
            self.timer_changed.notify_one();
        }
        r
    }

    /// [`Shared::with_core`], timed into the latency histogram of `op`.
    pub(crate) fn timed_core<R>(&self, op: &'static str, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let start = Instant::now();
        let r = self.with_core(f);
        self.metrics.observe(op, start.elapsed());
        r
    }

    /// The operator's connection listing: `query` reads a page from the core under the lock,
    /// the transport handles of its connections are copied out with it, and their figures
    /// (each read takes quinn's lock of that connection) are read once the core lock is
    /// released. Timed into the latency histogram of `op`.
    pub(crate) fn timed_connections(
        &self,
        op: &'static str,
        query: impl FnOnce(&Core) -> Result<AdminConnectionPage, ErrorBody>,
    ) -> Result<ConnectionPage, ErrorBody> {
        let start = Instant::now();
        let found = {
            let state = self.lock();
            query(&state.core).map(|page| {
                let handles = page.connections.iter().map(|c| state.handles(c.conn_id)).collect();
                (page, handles)
            })
        };
        let page = found.map(|(page, handles)| ConnectionPage::read(page, handles));
        self.metrics.observe(op, start.elapsed());
        page
    }

    /// One connection of the listing, as [`Shared::timed_connections`] reads a page.
    pub(crate) fn timed_connection(
        &self,
        op: &'static str,
        query: impl FnOnce(&Core) -> Option<AdminConnection>,
    ) -> Option<ConnectionInfo> {
        let start = Instant::now();
        let found = {
            let state = self.lock();
            query(&state.core).and_then(|c| Some((state.handles(c.conn_id)?, c)))
        };
        let info = found.map(|(handles, core)| ConnectionInfo::read(core, &handles));
        self.metrics.observe(op, start.elapsed());
        info
    }

    /// Registers a connection's outbox; from now on the core counts its operations toward the
    /// rate limit of its client address. `connected_at_ms`: when it was accepted (Unix ms).
    pub(super) fn register(
        &self,
        conn: ConnId,
        outbox: Arc<Outbox>,
        remote: SocketAddr,
        connected_at_ms: u64,
    ) {
        let key = self.address_keys.hash_one(client_address(remote.ip()));
        {
            let mut state = self.lock();
            state.outboxes.insert(conn, outbox);
            state.links.insert(conn, Link { connected_at_ms, zero_rtt: false });
        }
        self.with_core(|core, now| core.handle_connect(now, conn, key));
    }

    /// The one log line about a client the server closed for misbehaving (rate-limited).
    pub(super) fn log_misbehaviour(&self, conn: ConnId, remote: SocketAddr, why: &str) {
        guard::log_misbehaviour(&self.guard, &self.log_limiter, conn, remote, why);
    }

    /// The one log line about a refused login or resumption (rate-limited).
    pub(super) fn log_refused_login(
        &self,
        conn: ConnId,
        remote: SocketAddr,
        user: &str,
        result: &str,
        resume: bool,
    ) {
        guard::log_refused_login(
            &self.guard,
            &self.log_limiter,
            conn,
            remote,
            user,
            result,
            resume,
        );
    }

    /// Forgets a finished connection; `closed_for` is the code the server closed it with, if it
    /// did. What becomes of its session is the core's decision ([`Core::handle_closed`]).
    pub(super) fn unregister(&self, conn: ConnId, closed_for: Option<ErrorCode>) {
        self.with_core(|core, now| core.handle_closed(now, conn, closed_for));
        let mut state = self.lock();
        state.outboxes.remove(&conn);
        state.links.remove(&conn);
    }

    /// Notes that the connection's 0-RTT data was accepted (for the connection listing).
    pub(super) fn note_zero_rtt(&self, conn: ConnId) {
        if let Some(link) = self.lock().links.get_mut(&conn) {
            link.zero_rtt = true;
        }
    }
}

impl ScrapeSource for Shared {
    fn core_counts(&self) -> CoreCounts {
        let state = self.lock();
        CoreCounts {
            rooms: state.core.room_count(),
            members: state.core.member_total(),
            sessions: state.core.session_count(),
            history_bytes: state.core.history_bytes(),
        }
    }

    fn connections(&self) -> Vec<ConnSample> {
        // The outboxes are sampled outside the lock: their statistics take locks of their own.
        let outboxes: Vec<Arc<Outbox>> = self.lock().outboxes.values().cloned().collect();
        outboxes
            .iter()
            .map(|o| {
                let (queued_bytes, queued_frames) = o.queued();
                ConnSample { queued_bytes, queued_frames, path: o.connection_stats() }
            })
            .collect()
    }

    fn guard(&self) -> &GuardStats {
        &self.guard
    }

    fn outbox_stats(&self) -> &OutboxStats {
        &self.stats
    }
}

/// Hands one output of the core to the outboxes it is for.
fn dispatch(
    outboxes: &HashMap<ConnId, Arc<Outbox>>,
    out: Output,
    metrics: &Metrics,
    carrier: Option<&dyn Carrier>,
) {
    match out {
        Output::Reply { conn, frame } => {
            if let Some(o) = outboxes.get(&conn) {
                o.push_control(frame);
            }
        }
        Output::OpenRoomStream { conn, room, header, low_header } => {
            if let Some(o) = outboxes.get(&conn) {
                o.open_room(room, header, low_header);
            }
        }
        Output::CloseRoomStream { conn, room } => {
            if let Some(o) = outboxes.get(&conn) {
                o.close_room(room);
            }
        }
        Output::Broadcast { to, except, room, frame, priority, message } => {
            // Counted once per broadcast: one atomic add, not one per recipient.
            let mut queued = 0;
            let probe = if message { metrics.fanout_probe() } else { None };
            let urgent = message && priority == Priority::High;
            for conn in to.iter() {
                if Some(*conn) == except {
                    continue;
                }
                if let Some(o) = outboxes.get(conn) {
                    let probe = probe.clone();
                    queued += u64::from(o.push(Some(room), frame.clone(), priority, urgent, probe));
                }
            }
            if message {
                metrics.deliveries(priority, queued);
                if let (Some(probe), 0) = (probe, queued) {
                    FanoutProbe::discard(probe);
                }
            } else {
                metrics.events_out.inc_by(queued);
            }
        }
        Output::Push { conn, room, frame } => {
            if let Some(o) = outboxes.get(&conn) {
                if o.push(room, frame, Priority::High, false, None) {
                    metrics.events_out.inc();
                }
            }
        }
        Output::Close { conn, code } => {
            if let Some(o) = outboxes.get(&conn) {
                o.close(code);
            }
        }
        // Only a core in cluster mode (`Bus::External`) asks for the room log, and only a
        // clustered server has a carrier; the broker keeps the order it is handed ops in.
        Output::Bus(op) => {
            if let Some(c) = carrier {
                c.carry(op);
            }
        }
    }
}
