//! What a client's tasks share ([`Inner`]): the current link, the session the server granted,
//! the joined rooms, where events go and the connection state; and sending a request on a link
//! that is usable, waiting for a resumed one while the client reconnects.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::config::ClientConfig;
use super::error::{ClientError, ConnectionClosed, Ended};
use super::event::{ClientEvent, ConnectionState, EventSink};
use super::link::{Answer, Link};
use super::lock::lock;
use super::streams::Rooms;
use crate::wire::{Request, Response};

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
    /// The index in `cfg.servers()` of the server `link` is connected to.
    pub(super) server: AtomicUsize,
    /// The order of the next request (its low 32 bits are its request id).
    next_id: AtomicU64,
    pub(super) session: Mutex<Session>,
    pub(super) rooms: Rooms,
    /// Where events go; dropped after the final Disconnected so that `next_event` ends.
    pub(super) events: Mutex<Option<EventSink>>,
    /// Set by logout and close: a lost connection is then not reconnected.
    pub(super) closing: AtomicBool,
    /// Set by `Client::suspend`, cleared by `Client::resume`: the supervisor closes the
    /// connection and waits instead of reconnecting.
    pub(super) suspended: AtomicBool,
    /// Set by `Client::suspend` when it closes the connection, taken by the supervisor: that
    /// close does not end the session, even when `resume` came before the supervisor saw it.
    pub(super) suspend_closed: AtomicBool,
    /// Wakes a suspended supervisor (resume, close, logout).
    pub(super) wake: tokio::sync::Notify,
    /// `Client::network_changed` rebound the socket: the supervisor probes the new path at once
    /// (or, while reconnecting, tries again without waiting out its backoff).
    pub(super) network: tokio::sync::Notify,
    /// Whose turn it is to queue a request (see `Client::request`).
    pub(super) send_turn: tokio::sync::Mutex<()>,
    /// The token resumption presents (replaced by `Client::renew_token`).
    pub(super) token: Mutex<String>,
    /// Whether the first connection's Login travelled in 0-RTT and the server took it.
    pub(super) logged_in_early: AtomicBool,
    /// The connection state, for `Client::state_changes`.
    pub(super) state: tokio::sync::watch::Sender<ConnectionState>,
    /// Why the session ended, set by the supervisor before the state turns `Disconnected`:
    /// what requests fail with from then on.
    ended: Mutex<Option<ConnectionClosed>>,
}

impl Inner {
    /// The shared state of a client connected on `link`, before its login.
    pub(super) fn new(
        cfg: ClientConfig,
        endpoint: quinn::Endpoint,
        quic: quinn::ClientConfig,
        link: Link,
        server: usize,
        rooms: Rooms,
        sink: EventSink,
    ) -> Inner {
        let token = cfg.token.clone();
        Inner {
            cfg,
            endpoint,
            quic,
            link: Mutex::new(link),
            server: AtomicUsize::new(server),
            next_id: AtomicU64::new(1),
            session: Mutex::new(Session {
                session_id: 0,
                resume_secret: [0; 16],
                server_time_ms: 0,
                token_expires_at_s: 0,
            }),
            rooms,
            events: Mutex::new(Some(sink)),
            closing: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            suspend_closed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            network: tokio::sync::Notify::new(),
            send_turn: tokio::sync::Mutex::new(()),
            token: Mutex::new(token),
            logged_in_early: AtomicBool::new(false),
            state: tokio::sync::watch::Sender::new(ConnectionState::Connecting),
            ended: Mutex::new(None),
        }
    }

    /// True unless the session is over or ending (logout, close, given up).
    pub(super) fn resuming(&self) -> bool {
        !self.closing.load(Ordering::SeqCst)
            && *self.state.borrow() != ConnectionState::Disconnected
    }

    /// Records why the session ended (the first reason wins).
    pub(super) fn end(&self, why: ConnectionClosed) {
        lock(&self.ended).get_or_insert(why);
    }

    /// What a request fails with once the session is over (or ending, with `link` dead).
    pub(super) fn end_error(&self, link: &Link) -> ClientError {
        let why = lock(&self.ended).clone().unwrap_or_else(|| {
            let closed = link.conn.close_reason();
            let why = closed.map_or_else(|| ConnectionClosed::new("closed"), |e| (&e).into());
            why.ending(Ended::Session)
        });
        ClientError::Connection(why)
    }

    /// The connection to send on: the current one while connected; while the client is
    /// reconnecting, the resumed one. With `failed` (a connection a request could not be sent
    /// on), waits for a connection other than it. Fails once the session is over (with why), or
    /// when no connection was resumed within the reconnection time.
    pub(super) async fn usable_link(&self, failed: Option<&Link>) -> Result<Link, ClientError> {
        let usable = |state: ConnectionState| {
            let current = lock(&self.link).clone();
            let replaced = failed.map_or(true, |f| f.conn.stable_id() != current.conn.stable_id());
            let live = replaced && current.conn.close_reason().is_none();
            match state {
                ConnectionState::Connected if live => Some(Ok(current)),
                ConnectionState::Disconnected => Some(Err(self.end_error(&current))),
                // Nothing is sent while suspended: the application resumes first.
                ConnectionState::Suspended => Some(Err(ClientError::connection(
                    "suspended: call resume() before making requests",
                ))),
                // Logging out or closed: the current connection while it lasts.
                _ if !self.resuming() => {
                    Some(if live { Ok(current) } else { Err(self.end_error(&current)) })
                }
                _ => None,
            }
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
        // The supervisor ends the wait first (resumed or given up); this bound is for a
        // supervisor held up by an application that does not take its events.
        let bound = self.cfg.reconnect_for + self.cfg.connect_timeout * 2;
        match tokio::time::timeout(bound, wait).await {
            Ok(link) => link,
            Err(_) => {
                let why = ConnectionClosed::new(format!(
                    "no connection resumed within {} ms",
                    bound.as_millis()
                ));
                Err(ClientError::Connection(why.ending(Ended::ReconnectWindow)))
            }
        }
    }

    /// Sends a request on `link` and waits for its answer.
    pub(super) async fn request_on(
        &self,
        link: &Link,
        request: Request,
    ) -> Result<Response, ClientError> {
        let answer = self.submit(link, request, false)?;
        link.answer(answer).await
    }

    /// Queues a request on `link`'s control stream; the receiver gets its answer. A
    /// `repeatable` one that the connection leaves unanswered is sent again on the next.
    pub(super) fn submit(
        &self,
        link: &Link,
        request: Request,
        repeatable: bool,
    ) -> Result<oneshot::Receiver<Answer>, ClientError> {
        link.submit(self.next_id.fetch_add(1, Ordering::Relaxed), request, repeatable)
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
