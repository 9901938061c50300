//! [`Client`]: the application's handle, with one method per operation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::{client_endpoint, fresh_socket, quic_client_config, ClientConfig};
use super::error::{closed_error, unexpected, ClientError};
use super::event::{ClientEvent, ConnectionState, EventListener, EventSink};
use super::link::{open_control, open_link, Link};
use super::lock::lock;
use super::session::{Inner, Session};
use super::streams::Rooms;
use super::supervisor::supervise;
use crate::wire::{encode_frame, RequestFrame, LENGTH_PREFIX_LEN};
use crate::wire::{
    AttributeFailure, AttributeOp, ErrorCode, HistoryAnchor, Login, Member, MemberAttributes,
    MessageBody, Priority, Request, Response, RoomConfig, RoomInfo, RoomMessage, RoomState,
    RoomSummary, MAX_CLIENT_FRAME_LEN, PROTOCOL_VERSION,
};

/// The answer to a message send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendAck {
    /// Server-wide message id.
    pub message_id: u64,
    /// The message's seq in the room.
    pub seq: u64,
    /// Server time of acceptance, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this is the first ack of an earlier send with the same client_msg_id (also
    /// when the library sent the message again after a lost connection and the server had
    /// already taken it).
    pub duplicate: bool,
}

/// A page of members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// Members, in join order.
    pub members: Vec<Member>,
    /// Pass to the next call; empty when this was the last page.
    pub next_flag: String,
}

/// A page of history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages in ascending seq order.
    pub messages: Vec<RoomMessage>,
    /// Whether there are more in the direction asked.
    pub has_more: bool,
}

/// A logged-in session. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// When the connection is lost (network loss, idle timeout, a slow-consumer close), the client
/// reconnects by itself with jittered backoff for [`ClientConfig::reconnect_for`], resumes its
/// session and replays what it missed; it reports [`ClientEvent::Reconnecting`] and
/// [`ClientEvent::Resumed`], or [`ClientEvent::Disconnected`] when it gives up or the server
/// ended the session (kicked out, shutdown, bad token).
///
/// A send is never lost to an outage the client survives: every message carries a
/// `client_msg_id` (the library makes one when the caller gives none), and one whose answer the
/// lost connection did not bring is sent again on the resumed connection, where the server's
/// deduplication makes it count once. It fails only when the session ends or cannot be resumed
/// in time ([`ClientError::ended`] says which).
pub struct Client {
    inner: Arc<Inner>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
    /// The `client_msg_id`s this client makes: a random prefix of its own and a counter.
    msg_ids: (String, AtomicU64),
}

impl Client {
    /// Connects and logs in on a new endpoint of its own.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let endpoint = client_endpoint(cfg.server_addr)?;
        Client::connect_on(endpoint, cfg).await
    }

    /// Connects and logs in using an existing endpoint (many clients may share one).
    pub async fn connect_on(
        endpoint: quinn::Endpoint,
        cfg: ClientConfig,
    ) -> Result<Client, ClientError> {
        let (events_tx, events_rx) = mpsc::channel(cfg.event_queue.max(1));
        Client::start(endpoint, cfg, EventSink::Queue(events_tx), events_rx).await
    }

    /// Connects and logs in using an existing endpoint, and calls `listener` with every event
    /// instead of queueing it for [`Client::next_event`] (which then returns `None`).
    ///
    /// The listener runs on the client's own tasks, as each event is read: it saves the hand-over
    /// to the application's task, which is most of the library's cost per message on a busy
    /// receiver (a load generator, a bridge). It must return quickly and never block: while it
    /// runs, the stream it was called from is not read (QUIC flow control then pushes back on
    /// the server, as a full [`ClientConfig::event_queue`] would). It may be called from several
    /// tasks at once: events of one server stream come in order, one call at a time, as
    /// [`Client::next_event`] would return them, but events of different streams (rooms,
    /// priorities) and session events may be interleaved differently. The exactly-once,
    /// in-order guarantees per room are the same.
    pub async fn connect_with_listener(
        endpoint: quinn::Endpoint,
        cfg: ClientConfig,
        listener: EventListener,
    ) -> Result<Client, ClientError> {
        // A queue nothing is ever sent to: `next_event` ends at once.
        let (_, events_rx) = mpsc::channel(1);
        Client::start(endpoint, cfg, EventSink::Listener(listener), events_rx).await
    }

    /// Connects, logs in and starts the supervisor; events go to `sink`, and `queue` is what
    /// [`Client::next_event`] reads.
    async fn start(
        endpoint: quinn::Endpoint,
        cfg: ClientConfig,
        sink: EventSink,
        queue: mpsc::Receiver<ClientEvent>,
    ) -> Result<Client, ClientError> {
        // The queue is empty: this cannot fail.
        sink.try_send(ClientEvent::Connecting);
        let rooms: Rooms = Arc::new(Mutex::new(HashMap::new()));
        let quic = quic_client_config(&cfg)?;
        let (link, server, early) = first_link(&endpoint, &quic, &cfg, &sink, &rooms).await?;
        let inner = Arc::new(Inner::new(cfg, endpoint, quic, link.clone(), server, rooms, sink));
        let login = Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: inner.cfg.user_id.clone(),
            user_name: inner.cfg.user_name.clone(),
            token: inner.cfg.token.clone(),
        };
        let (link, answer) = login_on(&inner, link, early, login).await;
        match answer {
            Ok(Response::LoggedIn {
                session_id,
                resume_secret,
                server_time_ms,
                token_expires_at_s,
            }) => {
                *lock(&inner.session) =
                    Session { session_id, resume_secret, server_time_ms, token_expires_at_s };
                // Ahead of any server event: the server opens no stream before this answer.
                inner.send(ClientEvent::Connected { session_id }).await;
                inner.state.send_replace(ConnectionState::Connected);
            }
            Ok(other) => return Err(unexpected(other)),
            Err(e) => {
                link.conn.close(0u32.into(), b"login failed");
                return Err(e);
            }
        }
        tokio::spawn(supervise(inner.clone()));
        let prefix = format!("{:016x}", rand::random::<u64>());
        let msg_ids = (prefix, AtomicU64::new(1));
        Ok(Client { inner, events: tokio::sync::Mutex::new(queue), msg_ids })
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        *self.inner.state.borrow()
    }

    /// Watches the connection state (the same changes the event stream reports, without the
    /// server events in between).
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// What the server said at login (or at the last resumption).
    pub fn session(&self) -> Session {
        lock(&self.inner.session).clone()
    }

    /// The logged-in user id.
    pub fn user_id(&self) -> &str {
        &self.inner.cfg.user_id
    }

    /// Whether this client's Login travelled in 0-RTT and the server accepted it: possible only
    /// with a session ticket from an earlier connection to the same server in
    /// [`ClientConfig::tls_sessions`] (a resumption's 0-RTT is reported by
    /// [`ClientEvent::Resumed`] instead).
    pub fn logged_in_early(&self) -> bool {
        self.inner.logged_in_early.load(Ordering::Relaxed)
    }

    /// The current QUIC connection (for statistics; do not open streams on it).
    pub fn connection(&self) -> quinn::Connection {
        lock(&self.inner.link).conn.clone()
    }

    /// The endpoint this client uses.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.inner.endpoint
    }

    /// Sends any request and waits for its answer.
    ///
    /// The request is queued for sending when the returned future is first polled, so requests
    /// polled in order go out in order (pipelined: no request waits for an earlier answer).
    ///
    /// Across a lost connection: a request made while the client is reconnecting waits for the
    /// resumed connection, and requests that wait go out in the order they were made, from
    /// whatever tasks. Reads and messages with a `client_msg_id` whose answer the lost
    /// connection did not bring are sent again on the resumed connection, in the order they
    /// were made and ahead of the waiting ones (the server answers a repeated `client_msg_id`
    /// with the first ack, so nothing arrives twice). These fail only when the session ends
    /// ([`Ended::Session`]: logout, close, kicked out, server shutdown, resumption refused) or
    /// is not resumed within [`ClientConfig::reconnect_for`] ([`Ended::ReconnectWindow`]), with
    /// [`ClientError::Connection`]. Any other request that was in flight when its connection was
    /// lost fails with [`Ended::Connection`]: the server may or may not have applied it.
    ///
    /// [`Ended::Session`]: super::Ended::Session
    /// [`Ended::ReconnectWindow`]: super::Ended::ReconnectWindow
    /// [`Ended::Connection`]: super::Ended::Connection
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        check_message_size(&request)?;
        let inner = &self.inner;
        let again = repeatable(&request);
        // Requests go out in the order they were made, also when they wait for a resumed
        // connection: each holds this first-in, first-out turn until it is queued on a
        // connection (uncontended while connected, so the first poll still queues it).
        let turn = inner.send_turn.lock().await;
        let mut link = inner.usable_link(None).await?;
        let answer = loop {
            match inner.submit(&link, request.clone(), again) {
                Ok(answer) => break answer,
                // Not sent (the connection is gone): on the next one.
                Err(_) => link = inner.usable_link(Some(&link)).await?,
            }
        };
        drop(turn);
        let response = link.answer(answer).await?;
        inner.track(&response);
        Ok(response)
    }

    /// The next event; `None` once the connection is over and every event has been read.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.lock().await.recv().await
    }

    /// Creates a room and joins it.
    pub async fn create_room(
        &self,
        info: RoomInfo,
        config: RoomConfig,
    ) -> Result<RoomState, ClientError> {
        room_state(self.request(Request::CreateRoom { info, config }).await?)
    }

    /// Joins an existing room.
    pub async fn join_room(&self, room_id: &str) -> Result<RoomState, ClientError> {
        room_state(self.request(Request::JoinRoom { room_id: room_id.into() }).await?)
    }

    /// Creates the room (with `config`) or joins it.
    pub async fn enter_room(
        &self,
        info: RoomInfo,
        config: RoomConfig,
    ) -> Result<RoomState, ClientError> {
        room_state(self.request(Request::EnterRoom { info, config }).await?)
    }

    /// Leaves a room.
    pub async fn leave_room(&self, room_id: &str) -> Result<(), ClientError> {
        match self.request(Request::LeaveRoom { room_id: room_id.into() }).await? {
            Response::RoomLeft { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Leaves every room; returns their ids.
    pub async fn leave_all_rooms(&self) -> Result<Vec<String>, ClientError> {
        match self.request(Request::LeaveAllRooms).await? {
            Response::RoomsLeft { room_ids } => Ok(room_ids),
            other => Err(unexpected(other)),
        }
    }

    /// Leaves `from` and enters `to` in one request.
    pub async fn switch_room(
        &self,
        from_room_id: &str,
        to: RoomInfo,
        create_if_missing: bool,
        config: RoomConfig,
    ) -> Result<RoomState, ClientError> {
        let req = Request::SwitchRoom {
            from_room_id: from_room_id.into(),
            to,
            create_if_missing,
            config,
        };
        match self.request(req).await? {
            Response::RoomSwitched { room, .. } => Ok(room),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a message. Without a `client_msg_id` the library makes one (unique to this client),
    /// so that the message can be sent again after a lost connection and still count once.
    ///
    /// A body too large to fit a request frame is refused here with `message_too_large`
    /// without being sent (the server would end the session for such a frame); a smaller one
    /// over the server's `max_message_bytes` is refused by the server with the same code. The
    /// session goes on either way.
    pub async fn send_message(
        &self,
        room_id: &str,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, ClientError> {
        let client_msg_id = Some(client_msg_id.unwrap_or_else(|| self.next_client_msg_id()));
        let req =
            Request::SendRoomMessage { room_id: room_id.into(), body, priority, client_msg_id };
        match self.request(req).await? {
            Response::MessageSent { message_id, seq, timestamp_ms, duplicate, .. } => {
                Ok(SendAck { message_id, seq, timestamp_ms, duplicate })
            }
            other => Err(unexpected(other)),
        }
    }

    /// A `client_msg_id` no other send of this client has: its random prefix and a counter
    /// (at most 37 bytes).
    pub fn next_client_msg_id(&self) -> String {
        let (prefix, next) = &self.msg_ids;
        format!("{prefix}-{}", next.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a text message.
    pub async fn send_text(
        &self,
        room_id: &str,
        text: &str,
        priority: Priority,
    ) -> Result<SendAck, ClientError> {
        self.send_message(room_id, MessageBody::Text(text.into()), priority, None).await
    }

    /// One page of a room's members.
    pub async fn query_room_members(
        &self,
        room_id: &str,
        next_flag: &str,
        count: u32,
    ) -> Result<MemberPage, ClientError> {
        let req = Request::QueryRoomMembers {
            room_id: room_id.into(),
            next_flag: next_flag.into(),
            count,
        };
        match self.request(req).await? {
            Response::RoomMembers { members, next_flag, .. } => {
                Ok(MemberPage { members, next_flag })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Members in a room.
    pub async fn query_room_online_count(&self, room_id: &str) -> Result<u32, ClientError> {
        match self.request(Request::QueryRoomOnlineCount { room_id: room_id.into() }).await? {
            Response::RoomOnlineCount { count, .. } => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    /// Those of `user_ids` (at most 10) that are members, and those that are not.
    pub async fn query_room_members_by_id(
        &self,
        room_id: &str,
        user_ids: Vec<String>,
    ) -> Result<(Vec<Member>, Vec<String>), ClientError> {
        match self
            .request(Request::QueryRoomMembersById { room_id: room_id.into(), user_ids })
            .await?
        {
            Response::RoomMembersById { members, not_found, .. } => Ok((members, not_found)),
            other => Err(unexpected(other)),
        }
    }

    /// The rooms this session is in.
    pub async fn query_joined_rooms(&self) -> Result<Vec<RoomSummary>, ClientError> {
        match self.request(Request::QueryJoinedRooms).await? {
            Response::JoinedRooms { rooms } => Ok(rooms),
            other => Err(unexpected(other)),
        }
    }

    /// One page of a room's history.
    pub async fn query_history(
        &self,
        room_id: &str,
        anchor: HistoryAnchor,
        count: u32,
    ) -> Result<HistoryPage, ClientError> {
        match self.request(Request::QueryHistory { room_id: room_id.into(), anchor, count }).await?
        {
            Response::History { messages, has_more, .. } => Ok(HistoryPage { messages, has_more }),
            other => Err(unexpected(other)),
        }
    }

    /// Sets room attributes; returns the keys that failed (owned by other members still in
    /// the room, unless `is_force`) while the others were applied.
    pub async fn set_room_attributes(
        &self,
        room_id: &str,
        attributes: Vec<(String, String)>,
        is_force: bool,
        is_update_owner: bool,
        is_delete_after_owner_left: bool,
    ) -> Result<Vec<AttributeFailure>, ClientError> {
        let req = Request::SetRoomAttributes {
            room_id: room_id.into(),
            attributes,
            is_force,
            is_update_owner,
            is_delete_after_owner_left,
        };
        attributes_changed(self.request(req).await?)
    }

    /// Deletes room attributes; returns the keys that failed.
    pub async fn delete_room_attributes(
        &self,
        room_id: &str,
        keys: Vec<String>,
        is_force: bool,
    ) -> Result<Vec<AttributeFailure>, ClientError> {
        let req = Request::DeleteRoomAttributes { room_id: room_id.into(), keys, is_force };
        attributes_changed(self.request(req).await?)
    }

    /// A room's attributes, sorted by key.
    pub async fn query_room_attributes(
        &self,
        room_id: &str,
    ) -> Result<Vec<(String, String)>, ClientError> {
        match self.request(Request::QueryRoomAttributes { room_id: room_id.into() }).await? {
            Response::RoomAttributes { attributes, .. } => Ok(attributes),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a batch of room-attribute changes; nothing is sent until
    /// [`AttributesBatch::end`], which applies them all or none and announces one event.
    pub fn begin_room_attributes_batch(&self, room_id: &str) -> AttributesBatch<'_> {
        AttributesBatch { client: self, room_id: room_id.into(), ops: Vec::new() }
    }

    /// Sets attributes of members (merged into theirs); returns the changed members and the
    /// ids that are not members.
    pub async fn set_room_members_attributes(
        &self,
        room_id: &str,
        user_ids: Vec<String>,
        attributes: Vec<(String, String)>,
    ) -> Result<(Vec<MemberAttributes>, Vec<String>), ClientError> {
        let req =
            Request::SetRoomMembersAttributes { room_id: room_id.into(), user_ids, attributes };
        match self.request(req).await? {
            Response::RoomMembersAttributesSet { members, failed_user_ids, .. } => {
                Ok((members, failed_user_ids))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Attributes of some members.
    pub async fn query_room_members_attributes(
        &self,
        room_id: &str,
        user_ids: Vec<String>,
    ) -> Result<Vec<MemberAttributes>, ClientError> {
        match self
            .request(Request::QueryRoomMembersAttributes { room_id: room_id.into(), user_ids })
            .await?
        {
            Response::RoomMembersAttributes { members, .. } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the members that have attributes; the string is the next flag.
    pub async fn query_room_member_attributes_list(
        &self,
        room_id: &str,
        next_flag: &str,
        count: u32,
    ) -> Result<(Vec<MemberAttributes>, String), ClientError> {
        let req = Request::QueryRoomMemberAttributesList {
            room_id: room_id.into(),
            next_flag: next_flag.into(),
            count,
        };
        match self.request(req).await? {
            Response::RoomMemberAttributesList { members, next_flag, .. } => {
                Ok((members, next_flag))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the session's token with a fresh one (answer to a `TokenWillExpire` event);
    /// returns the new expiry. Later resumptions present the new token.
    pub async fn renew_token(&self, token: &str) -> Result<u64, ClientError> {
        match self.request(Request::RenewToken { token: token.into() }).await? {
            Response::TokenRenewed { token_expires_at_s } => {
                *lock(&self.inner.token) = token.to_string();
                lock(&self.inner.session).token_expires_at_s = token_expires_at_s;
                Ok(token_expires_at_s)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Leaves every room, ends the session and closes the connection.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        let r = self.request(Request::Logout).await;
        self.connection().close(0u32.into(), b"logout");
        match r? {
            Response::LoggedOut => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Tells the client that the device's network changed (call it from the platform's
    /// connectivity callback: Android's `ConnectivityManager.NetworkCallback`, iOS's
    /// `NWPathMonitor`). The client moves its UDP socket to a new ephemeral port (quinn's
    /// `Endpoint::rebind`: QUIC active migration, with a fresh connection id) and at once
    /// sends a Ping on the control stream from it, instead of waiting for a keep-alive or the
    /// stall watchdog to reveal the change. When the server answers on the new path within
    /// [`ClientConfig::connect_timeout`], [`ClientEvent::Migrated`] follows and nothing else
    /// changes (rooms, session, order); otherwise the client reconnects and resumes, as after
    /// any lost connection. While reconnecting, it cuts the backoff short: the next attempt
    /// starts at once, from the new socket. Call it within the Tokio runtime; it returns once
    /// the socket is rebound. A client sharing its endpoint ([`Client::connect_on`]) moves every
    /// connection of that endpoint.
    ///
    /// [`ClientConfig::connect_timeout`]: super::ClientConfig::connect_timeout
    pub fn network_changed(&self) -> Result<(), ClientError> {
        let socket = fresh_socket(self.inner.cfg.server_addr)?;
        self.inner
            .endpoint
            .rebind(socket)
            .map_err(|e| ClientError::connection(format!("rebind: {e}")))?;
        if matches!(self.state(), ConnectionState::Connected | ConnectionState::Reconnecting) {
            self.inner.network.notify_one();
        }
        Ok(())
    }

    /// Suspends the client for an app going to the background: closes the connection (the
    /// radio can sleep; no keep-alive is sent) without logging out, so the server keeps the
    /// session, its rooms and its place in them for its offline grace (`offline_grace_s`, 30 s
    /// by default), during which the other members see no change. The state turns
    /// [`ConnectionState::Suspended`] with a [`ClientEvent::Suspended`] event; requests made
    /// meanwhile fail at once, while sends already in flight wait for [`Client::resume`].
    /// Does nothing once the session is over.
    pub fn suspend(&self) {
        if !self.inner.resuming() {
            return;
        }
        self.inner.suspended.store(true, Ordering::SeqCst);
        self.inner.suspend_closed.store(true, Ordering::SeqCst);
        self.connection().close(0u32.into(), b"suspend");
        self.inner.wake.notify_one();
    }

    /// Resumes a suspended client: reconnects (in 0-RTT when the server's session ticket
    /// allows) and resumes the session, as after a lost connection: [`ClientEvent::Reconnecting`]
    /// then [`ClientEvent::Resumed`], and the medium and high messages missed meanwhile are
    /// delivered exactly once and in order. Back within the server's offline grace, the same
    /// session continues and nobody saw this member leave; later, a new session rejoins the
    /// rooms (`session_resumed: false`). Does nothing unless suspended.
    pub fn resume(&self) {
        if self.inner.suspended.swap(false, Ordering::SeqCst) {
            self.inner.wake.notify_one();
        }
    }

    /// Closes the connection without a logout. The server treats it as a lost connection and
    /// holds the session for its offline grace period; this client does not reconnect.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        self.connection().close(0u32.into(), b"close");
    }

    /// Closes the connection and waits (bounded) for the endpoint to finish.
    pub async fn shutdown(&self) {
        self.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

/// Room-attribute changes collected on the client and applied atomically by [`AttributesBatch::end`].
pub struct AttributesBatch<'a> {
    client: &'a Client,
    room_id: String,
    ops: Vec<AttributeOp>,
}

impl AttributesBatch<'_> {
    /// Adds a set step.
    pub fn set(
        &mut self,
        attributes: Vec<(String, String)>,
        is_force: bool,
        is_update_owner: bool,
        is_delete_after_owner_left: bool,
    ) -> &mut Self {
        self.ops.push(AttributeOp::Set {
            attributes,
            is_force,
            is_update_owner,
            is_delete_after_owner_left,
        });
        self
    }

    /// Adds a delete step.
    pub fn delete(&mut self, keys: Vec<String>, is_force: bool) -> &mut Self {
        self.ops.push(AttributeOp::Delete { keys, is_force });
        self
    }

    /// Sends the batch: every step applies, or (on any error) none does. The batch is empty
    /// afterwards. Works at the end of a chain:
    /// `client.begin_room_attributes_batch("r").set(..).delete(..).end().await`.
    pub async fn end(&mut self) -> Result<(), ClientError> {
        let ops = std::mem::take(&mut self.ops);
        let req = Request::RoomAttributesBatch { room_id: self.room_id.clone(), ops };
        attributes_changed(self.client.request(req).await?).map(|_| ())
    }
}

fn attributes_changed(r: Response) -> Result<Vec<AttributeFailure>, ClientError> {
    match r {
        Response::RoomAttributesChanged { failed, .. } => Ok(failed),
        other => Err(unexpected(other)),
    }
}

fn room_state(r: Response) -> Result<RoomState, ClientError> {
    match r {
        Response::RoomEntered(s) => Ok(s),
        other => Err(unexpected(other)),
    }
}

/// Requests that may be sent again after their connection was lost without an answer: reads,
/// and messages with a `client_msg_id` (the server answers a repeat with the first ack).
fn repeatable(request: &Request) -> bool {
    matches!(
        request,
        Request::SendRoomMessage { client_msg_id: Some(_), .. }
            | Request::QueryRoomMembers { .. }
            | Request::QueryRoomOnlineCount { .. }
            | Request::QueryRoomMembersById { .. }
            | Request::QueryJoinedRooms
            | Request::QueryHistory { .. }
            | Request::QueryRoomAttributes { .. }
            | Request::QueryRoomMembersAttributes { .. }
            | Request::QueryRoomMemberAttributesList { .. }
            | Request::Ping
    )
}

/// Refuses a message whose request frame would be over [`MAX_CLIENT_FRAME_LEN`]: the server
/// closes the connection on such a frame (`frame_too_large`), ending the session, where it
/// answers a smaller over-limit body with `message_too_large` and goes on. Only a body of more
/// than half the limit is measured, by encoding the frame as the link will (with the longest
/// request id); smaller ones cannot be over it.
fn check_message_size(request: &Request) -> Result<(), ClientError> {
    let Request::SendRoomMessage { body, .. } = request else { return Ok(()) };
    if body.len() <= MAX_CLIENT_FRAME_LEN / 2 {
        return Ok(());
    }
    let frame = encode_frame(&RequestFrame { request_id: u32::MAX, request: request.clone() });
    if frame.len() - LENGTH_PREFIX_LEN <= MAX_CLIENT_FRAME_LEN {
        return Ok(());
    }
    Err(ClientError::Server {
        code: ErrorCode::MessageTooLarge.as_u16(),
        message: format!("body of {} bytes is over the message size limit; not sent", body.len()),
    })
}

/// The first connection: to each server in turn until one answers (each but the last within
/// [`ClientConfig::connect_timeout`]); with its index in [`ClientConfig::servers`], or the last
/// server's error.
async fn first_link(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    cfg: &ClientConfig,
    sink: &EventSink,
    rooms: &Rooms,
) -> Result<(Link, usize, Option<quinn::ZeroRttAccepted>), ClientError> {
    let servers = cfg.servers();
    // `servers()` starts with `server_addr`: never empty.
    let last = servers.len() - 1;
    // Servers with one after them wait for their handshake (a connection in 0-RTT is usable at
    // once, so an unreachable server would not be passed over in time).
    for (i, &server) in servers[..last].iter().enumerate() {
        let attempt = open_link(endpoint, quic, cfg, server, sink, rooms, false);
        match tokio::time::timeout(cfg.connect_timeout, attempt).await {
            Ok(Ok((link, _))) => return Ok((link, i, None)),
            Ok(Err(e)) => tracing::debug!(%server, error = %e, "no connection; trying the next"),
            Err(_) => tracing::debug!(%server, "no answer in time; trying the next server"),
        }
    }
    let (link, early) =
        open_link(endpoint, quic, cfg, servers[last], sink, rooms, cfg.zero_rtt).await?;
    Ok((link, last, early))
}

/// Logs in on the first connection: in its first flight when it is in 0-RTT, and again after
/// the handshake on a new control stream when the server refused the early data. Returns the
/// link the answer came on.
async fn login_on(
    inner: &Inner,
    link: Link,
    early: Option<quinn::ZeroRttAccepted>,
    login: Login,
) -> (Link, Result<Response, ClientError>) {
    let Some(accepted) = early else {
        let answer = inner.request_on(&link, Request::Login(login)).await;
        return (link, answer);
    };
    let first = match inner.submit(&link, Request::Login(login.clone()), false) {
        Ok(first) => first,
        Err(e) => return (link, Err(e)),
    };
    if accepted.await {
        inner.logged_in_early.store(true, Ordering::Relaxed);
        let answer = link.answer(first).await;
        return (link, answer);
    }
    // Refused (no ticket the server still holds, 0-RTT off there): neither the control stream
    // nor the Login reached it. Say it again, in 1-RTT.
    if link.conn.close_reason().is_some() {
        let e = closed_error(&link.conn);
        return (link, Err(e));
    }
    let link = match open_control(&link.conn, link.readers.clone(), link.activity.clone()).await {
        Ok(l) => l,
        Err(e) => return (link, Err(e)),
    };
    *lock(&inner.link) = link.clone();
    let answer = inner.request_on(&link, Request::Login(login)).await;
    (link, answer)
}
