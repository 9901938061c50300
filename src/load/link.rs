//! A member's connection to the system under test, as the runner sees it: publish a body to a
//! room, and receive room messages. Huddle's client implements it here; the Redis and NATS
//! backends (`compare` feature) in [`super::compare`]. Everything else about a run (the
//! schedule, stamps, checks, histograms, CPU readings and the summary) is the same for all.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::report::Summary;
use super::stats::SUB_TYPE;
use crate::client::{Client, ClientEvent, ConnectionState, EventListener};
use crate::wire::{Event, MessageBody, Priority};

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
    /// Anything else the Huddle client reports (lost connection, resumption, other events).
    Session(ClientEvent),
    /// The connection is gone for good (Redis, NATS), with the reason.
    Lost(String),
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

impl Link for Client {
    type Inbox = HuddleInbox;

    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let (client, room) = (self.clone(), room.to_string());
        let body = MessageBody::Custom { sub_type: SUB_TYPE, data: body };
        async move {
            client
                .send_message(&room, body, priority, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    fn finish(&self, summary: &mut Summary) {
        let s = self.connection().stats();
        summary.client_lost_packets += s.path.lost_packets;
        summary.client_sent_packets += s.path.sent_packets;
        summary.client_max_rtt_us = summary.client_max_rtt_us.max(s.path.rtt.as_micros() as u64);
        self.close();
    }

    fn watch_stalled(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> impl Future<Output = StallOutcome> + Send + 'static {
        let client = self.clone();
        async move {
            let since = Instant::now();
            let mut out = StallOutcome::default();
            let mut state = client.state_changes();
            if *stop.borrow_and_update() {
                return out;
            }
            loop {
                let conn = client.connection();
                let error = tokio::select! {
                    e = conn.closed() => e,
                    _ = stop.changed() => return out,
                };
                let (code, reason) = match error {
                    quinn::ConnectionError::ApplicationClosed(c) => (
                        Some(c.error_code.into_inner()),
                        String::from_utf8_lossy(&c.reason).into_owned(),
                    ),
                    e => (None, e.to_string()),
                };
                out.closes.push((since.elapsed().as_secs_f64(), code, reason));
                // Back on a new connection (the library resumes the session), or over.
                loop {
                    let now = *state.borrow_and_update();
                    if now == ConnectionState::Disconnected {
                        return out;
                    }
                    if now == ConnectionState::Connected
                        && client.connection().stable_id() != conn.stable_id()
                    {
                        out.reconnected += 1;
                        break;
                    }
                    tokio::select! {
                        r = state.changed() => if r.is_err() { return out },
                        _ = stop.changed() => return out,
                    }
                }
            }
        }
    }
}

/// What a Huddle client event is to the runner.
fn delivery(e: ClientEvent) -> Delivery {
    match e {
        ClientEvent::Event(Event::RoomMessage(m)) => Delivery::Message {
            room: m.room_id,
            body: match m.body {
                MessageBody::Custom { sub_type, data } if sub_type == SUB_TYPE => Some(data),
                _ => None,
            },
        },
        e => Delivery::Session(e),
    }
}

/// A Huddle member's receiving half: the client's event queue ([`Client::next_event`]), or a
/// [`Tap`] its listener feeds ([`Client::connect_with_listener`]).
pub enum HuddleInbox {
    /// Read through [`Client::next_event`]: what members that stop reading need, so that the
    /// queue fills and QUIC flow control pushes back.
    Queue(Arc<Client>),
    /// Fed by the client's listener; can go [`Inbox::direct`].
    Tap(Arc<Tap>),
}

impl Inbox for HuddleInbox {
    async fn next(&mut self) -> Option<Delivery> {
        match self {
            HuddleInbox::Queue(client) => client.next_event().await.map(delivery),
            HuddleInbox::Tap(tap) => Some(tap.next().await),
        }
    }

    fn direct(self, f: DirectFn) -> Result<(), Self> {
        match self {
            HuddleInbox::Tap(tap) => {
                tap.direct(f);
                Ok(())
            }
            queue => Err(queue),
        }
    }
}

/// Takes a Huddle client's events from its listener: queued until the runner goes
/// [`Inbox::direct`], then handed straight to the runner's function from the client's reader
/// tasks.
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
    /// The listener to connect the client with.
    pub fn listener(self: &Arc<Self>) -> EventListener {
        let tap = self.clone();
        Arc::new(move |e| tap.push(delivery(e)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, d: Delivery) {
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

    async fn next(&self) -> Delivery {
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

    fn direct(&self, mut f: DirectFn) {
        let mut state = self.lock();
        if let TapState::Queued(q) = &mut *state {
            q.drain(..).for_each(&mut f);
        }
        *state = TapState::Direct(f);
    }
}
