//! What the application hears: [`ClientEvent`], the [`ConnectionState`], and [`EventSink`],
//! the one place where queueing events for `next_event` and calling a listener differ.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::wire::{Event, RoomRecovery};

/// What the application hears from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The first event of every client: [`Client::connect`] started connecting.
    ///
    /// [`Client::connect`]: super::Client::connect
    Connecting,
    /// The second: the connection is up and logged in (`Client::connect` has returned).
    Connected {
        /// The new session's id.
        session_id: u64,
    },
    /// An event pushed by the server (room message, member change, kicked out).
    Event(Event),
    /// The connection was lost; the client is reconnecting (with jittered backoff) to resume.
    /// Requests wait for [`ClientEvent::Resumed`] (see [`Client::request`]).
    ///
    /// [`Client::request`]: super::Client::request
    Reconnecting {
        /// Why the connection was lost.
        reason: String,
    },
    /// The client reconnected. Messages missed meanwhile are delivered as ordinary room
    /// message events (before or after this one), exactly once and in seq order.
    Resumed {
        /// True when the same session continued (nobody saw this member leave); false when the
        /// server had ended it and a new session rejoined the rooms.
        session_resumed: bool,
        /// Per room: rejoined or not, and whether every missed message was recovered.
        rooms: Vec<RoomRecovery>,
        /// True when the resumption travelled in 0-RTT and the server took it (one round trip
        /// sooner); false after a full handshake.
        early_data: bool,
    },
    /// The connection ended for good; `code` is the server's close code when it closed it.
    Disconnected {
        /// The application close code, if the server closed the connection with one.
        code: Option<u16>,
        /// A description.
        reason: String,
    },
    /// After [`Client::network_changed`]: the connection moved to the new socket and the server
    /// answered on the new path (QUIC migration; no reconnection, nothing replayed). When the
    /// new path does not answer in time, the client reconnects instead
    /// ([`ClientEvent::Reconnecting`] with a reason saying so).
    ///
    /// [`Client::network_changed`]: super::Client::network_changed
    Migrated {
        /// How long the probe on the new path took to be answered, in milliseconds.
        probe_ms: u64,
    },
    /// After [`Client::suspend`]: the connection is closed and nothing is sent until
    /// [`Client::resume`]; the server keeps the session for its offline grace.
    ///
    /// [`Client::suspend`]: super::Client::suspend
    /// [`Client::resume`]: super::Client::resume
    Suspended,
}

/// Where a client's connection stands (see [`Client::state_changes`]). It moves
/// `Connecting` → `Connected`, then `Reconnecting` → `Connected` for every lost connection that
/// is resumed (or `Suspended` → `Reconnecting` → `Connected` for a suspension), and ends at
/// `Disconnected`; each change also comes as a [`ClientEvent`].
///
/// [`Client::state_changes`]: super::Client::state_changes
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting and logging in for the first time.
    Connecting,
    /// Logged in on a live connection.
    Connected,
    /// The connection was lost; reconnecting to resume.
    Reconnecting,
    /// Ended for good (see [`ClientEvent::Disconnected`] for why).
    Disconnected,
    /// Suspended by the application ([`ClientEvent::Suspended`]); `Client::resume` moves it to
    /// `Reconnecting`.
    Suspended,
}

/// A function the client calls with each event, in place of queueing it for
/// [`Client::next_event`] (see [`Client::connect_with_listener`]).
///
/// [`Client::next_event`]: super::Client::next_event
/// [`Client::connect_with_listener`]: super::Client::connect_with_listener
pub type EventListener = Arc<dyn Fn(ClientEvent) + Send + Sync>;

/// Where a client's events go: the queue [`Client::next_event`] reads, or a listener. The one
/// place where the two differ: the readers and the supervisor hand every event to this.
///
/// [`Client::next_event`]: super::Client::next_event
#[derive(Clone)]
pub(super) enum EventSink {
    Queue(mpsc::Sender<ClientEvent>),
    Listener(EventListener),
}

impl EventSink {
    /// Hands `event` on, waiting for room in the queue; false once the queue's reader is gone.
    pub(super) async fn send(&self, event: ClientEvent) -> bool {
        match self {
            EventSink::Queue(tx) => tx.send(event).await.is_ok(),
            EventSink::Listener(f) => {
                f(event);
                true
            }
        }
    }

    /// Hands `event` on if the queue has room; drops it otherwise.
    pub(super) fn try_send(&self, event: ClientEvent) {
        match self {
            EventSink::Queue(tx) => {
                let _ = tx.try_send(event);
            }
            EventSink::Listener(f) => f(event),
        }
    }
}
