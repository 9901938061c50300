//! A member's connection to the system under test, as the runner sees it: publish a body to a
//! room, and receive room messages. Huddle's client implements it in [`super::huddle`]; the
//! Redis and NATS backends (`compare` feature) in `super::compare`. Everything else about a run
//! (the schedule, stamps, checks, histograms, CPU readings and the summary) is the same for all.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use super::report::Summary;
use crate::wire::Priority;

/// What a member's connection hands its receiver.
#[derive(Debug)]
pub enum Delivery {
    /// A room message: the room it came in (a Redis channel, a NATS subject) and its body, or
    /// `None` when it is not a load message.
    Message {
        /// The room's id.
        room: String,
        /// The load body (stamp and padding).
        body: Option<Vec<u8>>,
    },
    /// What a backend that resumes sessions (Huddle) reports besides messages.
    Session(Session),
    /// The connection is gone for good (Redis, NATS), with the reason.
    Lost(String),
}

/// A session event, for the runner to count: lost connections, resumptions, replayed messages.
#[derive(Debug)]
pub enum Session {
    /// The connection was lost; the backend is reconnecting to resume the session.
    Reconnecting {
        /// Why the connection was lost.
        reason: String,
    },
    /// The session is back on a new connection.
    Resumed {
        /// Messages missed meanwhile and replayed, over all its rooms.
        replayed: u64,
    },
    /// The connection ended for good.
    Disconnected {
        /// The server's close code, when it closed the connection with one.
        code: Option<u16>,
        /// A description.
        reason: String,
    },
    /// Anything else (presence and other events): not counted.
    Other,
}

/// One member's connection: the runner publishes through it from one task and takes its
/// [`Inbox`] to another.
pub trait Link: Send + Sync + 'static {
    /// The receiving half.
    type Inbox: Inbox;

    /// Publishes `body` to `room`. The first poll of the returned future must queue the
    /// message (so that sends leave in order); it resolves when the system accepted it: a
    /// Huddle ack, Redis's `PUBLISH` reply, NATS's hand-over to its connection (core NATS has
    /// no ack).
    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static;

    /// The network changed under the connection (the client side's address moved), as a
    /// mobile OS tells its apps: a TCP client reconnects at once (its connection is bound to
    /// the old address); QUIC migrates by itself (the default: nothing to do).
    fn network_changed(self: &Arc<Self>) {}

    /// Tells every member's connection that the network changed ([`Link::network_changed`]
    /// on each, unless connections share something that must be told once).
    fn networks_changed(links: &[Arc<Self>])
    where
        Self: Sized,
    {
        links.iter().for_each(|l| l.network_changed());
    }

    /// Ends the connection once counting is done, adding any transport counters to `summary`.
    fn finish(&self, summary: &mut Summary);

    /// Watches the connection of a member that stopped reading (`--stalled-members`) until
    /// `stop` changes: when the server closes it, and whether it comes back.
    fn watch_stalled(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = StallOutcome> + Send + 'static {
        let _ = stop;
        async { StallOutcome::default() }
    }
}

/// What happened to a member's connection after it stopped reading.
#[derive(Debug, Default)]
pub struct StallOutcome {
    /// Each close of its connection: seconds after it stopped reading, the application close
    /// code (None: not an application close) and the reason.
    pub closes: Vec<(f64, Option<u64>, String)>,
    /// Times it was back on a new connection after a close.
    pub reconnected: u64,
}

/// What [`Inbox::direct`] calls with each delivery.
pub type DirectFn = Box<dyn FnMut(Delivery) + Send>;

/// The receiving half of a [`Link`].
pub trait Inbox: Send + Sized + 'static {
    /// The next delivery, or `None` when there will be no more.
    fn next(&mut self) -> impl Future<Output = Option<Delivery>> + Send;

    /// Has the connection's own tasks call `f` with every delivery from now on (and with any
    /// queued so far, first), instead of a receiver task taking them through
    /// [`Inbox::next`]: one task hand-over less per delivery. Backends that cannot give the
    /// inbox back (the default).
    fn direct(self, f: DirectFn) -> Result<(), Self> {
        let _ = f;
        Err(self)
    }
}

/// Takes the deliveries a connection calls back with (Huddle's client listener): queued until
/// the runner goes [`Inbox::direct`], then handed straight to the runner's function from the
/// connection's own tasks.
#[derive(Default)]
pub struct Tap {
    state: Mutex<TapState>,
    queued: Notify,
}

enum TapState {
    Queued(VecDeque<Delivery>),
    Direct(DirectFn),
}

impl Default for TapState {
    fn default() -> TapState {
        TapState::Queued(VecDeque::new())
    }
}

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `d`, or hands it to the runner's function once there is one.
    pub fn push(&self, d: Delivery) {
        let mut state = self.lock();
        match &mut *state {
            TapState::Queued(q) => {
                q.push_back(d);
                drop(state);
                self.queued.notify_one();
            }
            TapState::Direct(f) => f(d),
        }
    }

    /// The next queued delivery (waiting for one), while not [`Tap::direct`].
    pub async fn next(&self) -> Delivery {
        loop {
            if let TapState::Queued(q) = &mut *self.lock() {
                if let Some(d) = q.pop_front() {
                    return d;
                }
            }
            // A push between the check and here leaves a permit: no wake-up is lost.
            self.queued.notified().await;
        }
    }

    /// Calls `f` with the deliveries queued so far, then with every later one as it is pushed.
    pub fn direct(&self, mut f: DirectFn) {
        let mut state = self.lock();
        if let TapState::Queued(q) = &mut *state {
            q.drain(..).for_each(&mut f);
        }
        *state = TapState::Direct(f);
    }
}
