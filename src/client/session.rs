//! What a client's tasks share ([`Inner`]): the current link, the session the server granted,
//! the joined rooms, where events go and the connection state; and sending a request on a link
//! that is usable, waiting for a resumed one while the client reconnects.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::config::ClientConfig;
use super::error::ClientError;
use super::event::{ClientEvent, ConnectionState, EventSink};
use super::link::Link;
use super::lock::lock;
use super::streams::Rooms;
use crate::wire::{Reply, Request, Response};

/// What the server said at login.
#[derive(Clone, Debug)]
pub struct Session {
    /// Session id.
    pub session_id: u64,
    /// Resume secret.
    pub resume_secret: [u8; 16],
    /// Server time at login, ms since the Unix epoch.
    pub server_time_ms: u64,
    /// Token expiry, Unix seconds.
    pub token_expires_at_s: u64,
}

/// What a client's tasks (the application's calls, the supervisor) share; the stream readers
/// get only the joined-rooms table and the event sink.
pub(super) struct Inner {
    pub(super) cfg: ClientConfig,
    pub(super) endpoint: quinn::Endpoint,
    /// Built once and reused by every reconnection: it holds the TLS session tickets that make
    /// 0-RTT possible.
    pub(super) quic: quinn::ClientConfig,
    pub(super) link: Mutex<Link>,
    next_id: AtomicU32,
    pub(super) session: Mutex<Session>,
    pub(super) rooms: Rooms,
    /// Where events go; dropped after the final Disconnected so that `next_event` ends.
    pub(super) events: Mutex<Option<EventSink>>,
    /// Set by logout and close: a lost connection is then not reconnected.
    pub(super) closing: AtomicBool,
    /// Whose turn it is to queue a request (see `Client::request`).
    pub(super) send_turn: tokio::sync::Mutex<()>,
    /// The token resumption presents (replaced by `Client::renew_token`).
    pub(super) token: Mutex<String>,
    /// The connection state, for `Client::state_changes`.
    pub(super) state: tokio::sync::watch::Sender<ConnectionState>,
}

impl Inner {
    /// The shared state of a client connected on `link`, before its login.
    pub(super) fn new(
        cfg: ClientConfig,
        endpoint: quinn::Endpoint,
        quic: quinn::ClientConfig,
        link: Link,
        rooms: Rooms,
        sink: EventSink,
    ) -> Inner {
        let token = cfg.token.clone();
        Inner {
            cfg,
            endpoint,
            quic,
            link: Mutex::new(link),
            next_id: AtomicU32::new(1),
            session: Mutex::new(Session {
                session_id: 0,
                resume_secret: [0; 16],
                server_time_ms: 0,
                token_expires_at_s: 0,
            }),
            rooms,
            events: Mutex::new(Some(sink)),
            closing: AtomicBool::new(false),
            send_turn: tokio::sync::Mutex::new(()),
            token: Mutex::new(token),
            state: tokio::sync::watch::Sender::new(ConnectionState::Connecting),
        }
    }

    /// True unless the session is over or ending (logout, close, given up).
    pub(super) fn resuming(&self) -> bool {
        !self.closing.load(Ordering::SeqCst)
            && *self.state.borrow() != ConnectionState::Disconnected
    }

    /// The connection to send on: the current one while connected; while the client is
    /// reconnecting, the resumed one. With `failed` (a connection that lost a request), waits
    /// for a connection other than it. Bounded by the reconnection time; when the session is
    /// over, or the bound passes, the current one (requests on it then fail).
    pub(super) async fn usable_link(&self, failed: Option<&Link>) -> Link {
        let usable = |state: ConnectionState| {
            let current = lock(&self.link).clone();
            let replaced = failed.map_or(true, |f| f.conn.stable_id() != current.conn.stable_id());
            let ok = match state {
                ConnectionState::Connected => replaced && current.conn.close_reason().is_none(),
                ConnectionState::Disconnected => true,
                ConnectionState::Connecting | ConnectionState::Reconnecting => false,
            };
            (ok || !self.resuming()).then_some(current)
        };
        if let Some(link) = usable(*self.state.borrow()) {
            return link;
        }
        let mut state = self.state.subscribe();
        let wait = async {
            loop {
                if let Some(link) = usable(*state.borrow_and_update()) {
                    return link;
                }
                // Woken by the supervisor's next state change; the short tick covers a link
                // that died while the state still says connected (the supervisor has not
                // noticed yet).
                let _ = tokio::time::timeout(Duration::from_millis(50), state.changed()).await;
            }
        };
        let bound = self.cfg.reconnect_for + self.cfg.connect_timeout;
        match tokio::time::timeout(bound, wait).await {
            Ok(link) => link,
            Err(_) => lock(&self.link).clone(),
        }
    }

    /// Sends a request on `link` and waits for its answer.
    pub(super) async fn request_on(
        &self,
        link: &Link,
        request: Request,
    ) -> Result<Response, ClientError> {
        let answer = self.submit(link, request)?;
        link.answer(answer).await
    }

    /// Queues a request on `link`'s control stream; the receiver gets its answer.
    pub(super) fn submit(
        &self,
        link: &Link,
        request: Request,
    ) -> Result<oneshot::Receiver<Reply>, ClientError> {
        link.submit(self.next_id.fetch_add(1, Ordering::Relaxed), request)
    }

    /// Keeps the joined-rooms table true from the answers that change membership.
    pub(super) fn track(&self, response: &Response) {
        let mut rooms = lock(&self.rooms);
        match response {
            Response::RoomEntered(s) => {
                rooms.entry(s.room_id.clone()).or_insert(None).get_or_insert(s.last_seq);
            }
            Response::RoomSwitched { left_room_id, room } => {
                rooms.remove(left_room_id);
                rooms.entry(room.room_id.clone()).or_insert(None).get_or_insert(room.last_seq);
            }
            Response::RoomLeft { room_id } => {
                rooms.remove(room_id);
            }
            Response::RoomsLeft { room_ids } => {
                for id in room_ids {
                    rooms.remove(id);
                }
            }
            _ => {}
        }
    }

    /// Hands `event` to the application, unless the event stream has ended.
    pub(super) async fn send(&self, event: ClientEvent) {
        let tx = lock(&self.events).clone();
        if let Some(tx) = tx {
            tx.send(event).await;
        }
    }
}
