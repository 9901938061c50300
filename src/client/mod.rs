//! The client library: a logged-in Huddle session over QUIC, with typed operations and events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), huddle::client::ClientError> {
//! use huddle::client::{Client, ClientConfig, ClientEvent};
//! use huddle::wire::{Priority, RoomConfig, RoomInfo};
//!
//! let config = ClientConfig::new("127.0.0.1:7443".parse().unwrap(), "alice", "token...");
//! let client = Client::connect(config).await?;
//! client.enter_room(RoomInfo { room_id: "lobby".into(), room_name: "Lobby".into() }, RoomConfig::default()).await?;
//! client.send_text("lobby", "hello", Priority::Medium).await?;
//! while let Some(event) = client.next_event().await {
//!     if let ClientEvent::Event(e) = event { println!("{e:?}"); }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot};

use crate::framed::{FrameReader, ReadError};
use crate::wire::{
    decode_body, encode_frame, single_frame_body, AttributeFailure, AttributeOp, ErrorCode, Event,
    HistoryAnchor, Login, Member, MemberAttributes, MessageBody, Priority, Reply, Request,
    RequestFrame, Response, ResponseFrame, Resume, RoomConfig, RoomInfo, RoomMessage, RoomRecovery,
    RoomState, RoomSummary, StreamHeader, ALPN, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

/// Events queued for the application at most by default ([`ClientConfig::event_queue`]); past
/// this, the client stops reading from the server (QUIC flow control then pushes back, and a
/// server may close a session that never reads).
pub const EVENT_QUEUE: usize = 4096;

/// Bytes the server may send ahead on one stream by default
/// ([`ClientConfig::stream_receive_window`]).
pub const STREAM_RECEIVE_WINDOW: u32 = 1024 * 1024;

/// How to reach and log in to a server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's UDP address.
    pub server_addr: SocketAddr,
    /// The name the server certificate is checked against.
    pub server_name: String,
    /// Trusted CA certificates. Empty: the platform's are not used; add the server's CA.
    pub roots: Vec<CertificateDer<'static>>,
    /// User id.
    pub user_id: String,
    /// Display name.
    pub user_name: String,
    /// Login token.
    pub token: String,
    /// Keep-alive interval (keeps mobile NAT bindings open).
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// How long to keep trying to reconnect and resume after the connection is lost
    /// (`Duration::ZERO`: never reconnect).
    pub reconnect_for: Duration,
    /// Use BBR congestion control instead of CUBIC (experimental in quinn; see BENCHMARKS.md).
    pub bbr: bool,
    /// Send the resumption request in 0-RTT when reconnecting to a server that issued a session
    /// ticket, saving a round trip (the server acts on nothing else before the handshake
    /// completes, so a replay of that flight cannot repeat anything).
    pub zero_rtt: bool,
    /// A connection that was receiving and then gets no data for a second is probed with a
    /// Ping; when neither the answer nor any other data arrives within this long, the client
    /// abandons it and resumes on a new connection (QUIC's own probe timer backs off to seconds
    /// during an outage, so an old connection can stay silent long after the link is back).
    /// Each wait is jittered by ±20%, and stalls within a minute of the last one double it (up
    /// to 8x), so that the clients of an overloaded server do not all come back at once.
    /// `Duration::ZERO` turns the watchdog off.
    pub stall_timeout: Duration,
    /// How long one reconnection attempt (handshake and Resume answer) may take before a fresh
    /// one starts.
    pub connect_timeout: Duration,
    /// Accept low-priority messages as QUIC datagrams (the server then sends a low message that
    /// fits one datagram that way while the connection is otherwise quiet). Either way low
    /// messages reach the application at most once and in increasing seq order per room, with
    /// gaps where one was dropped.
    pub low_datagrams: bool,
    /// Events queued for the application at most (at least 1). An application that stops
    /// calling [`Client::next_event`] fills this queue, then the stream receive windows, and
    /// then the server's queue for it, which closes the connection as a slow consumer. The
    /// library reconnects once the application has taken the events queued before the close
    /// (its `Reconnecting` event waits its turn in this queue), so an application that hangs
    /// for longer than the server's offline grace comes back as a new session.
    pub event_queue: usize,
    /// Bytes the server may send ahead on each stream it opens to this client (QUIC stream flow
    /// control): with [`ClientConfig::event_queue`], what a client that stops reading holds
    /// before the server's queue for it starts to grow.
    pub stream_receive_window: u32,
}

impl ClientConfig {
    /// A configuration with defaults: server name `localhost`, no roots yet.
    pub fn new(server_addr: SocketAddr, user_id: &str, token: &str) -> ClientConfig {
        ClientConfig {
            server_addr,
            server_name: "localhost".into(),
            roots: Vec::new(),
            user_id: user_id.into(),
            user_name: String::new(),
            token: token.into(),
            // Short enough that a member who only listens tells the server its new address soon
            // after a NAT rebinding, and well under the ~30 s UDP NAT timeouts of mobile networks.
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reconnect_for: Duration::from_secs(60),
            bbr: false,
            zero_rtt: true,
            stall_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            low_datagrams: true,
            event_queue: EVENT_QUEUE,
            stream_receive_window: STREAM_RECEIVE_WINDOW,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code.
    #[error("server error {code}: {message}")]
    Server {
        /// The numeric code (see [`ErrorCode`]).
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(String),
    /// The server answered with something this client did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The error code, when the server sent one this library knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }
}

/// What the application hears from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The first event of every client: [`Client::connect`] started connecting.
    Connecting,
    /// The second: the connection is up and logged in (`Client::connect` has returned).
    Connected {
        /// The new session's id.
        session_id: u64,
    },
    /// An event pushed by the server (room message, member change, kicked out).
    Event(Event),
    /// The connection was lost; the client is reconnecting (with jittered backoff) to resume.
    /// Requests fail until [`ClientEvent::Resumed`].
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
}

/// Where a client's connection stands (see [`Client::state_changes`]). It moves
/// `Connecting` → `Connected`, then `Reconnecting` → `Connected` for every lost connection that
/// is resumed, and ends at `Disconnected`; each change also comes as a [`ClientEvent`].
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
}

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

/// The answer to a message send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendAck {
    /// Server-wide message id.
    pub message_id: u64,
    /// The message's seq in the room.
    pub seq: u64,
    /// Server time of acceptance, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this is the first ack of an earlier send with the same client_msg_id.
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

/// Requests waiting for their answer, by request id; `None` once the control stream has ended,
/// so that a request made after that fails at once instead of waiting for an answer that can no
/// longer come.
type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Reply>>>>>;

/// Rooms this session is in, with the last seq of a medium or high message delivered to the
/// application (`None` until known). Drives resumption and drops replayed duplicates.
type Rooms = Arc<Mutex<HashMap<String, Option<u64>>>>;

/// One QUIC connection carrying the session; replaced when the client resumes.
#[derive(Clone)]
struct Link {
    conn: quinn::Connection,
    control: mpsc::UnboundedSender<Bytes>,
    pending: Pending,
    /// The task reading this connection's server streams; done once all their events are queued.
    readers: Readers,
    /// Wakes the stall watchdog out of its idle wait when the readers read stream data.
    activity: Arc<Activity>,
}

/// How a link's readers tell its stall watchdog that stream data came in. The watchdog polls
/// quinn's counters only while data flows; on a quiet link it sleeps until a reader calls
/// [`Activity::data`], so an idle connection costs no timer wake-ups (a phone's battery, a load
/// generator holding 100,000 connections).
/// The readers also report a stream that broke while the connection lives on (a frame that does
/// not decode or never completes, a stream the server reset): the link can no longer deliver
/// everything in order, so the supervisor resumes on a new connection, as after a stall.
#[derive(Default)]
struct Activity {
    idle: AtomicBool,
    wake: tokio::sync::Notify,
    /// Why a stream broke: the first reason reported.
    broken: std::sync::OnceLock<String>,
    broke: tokio::sync::Notify,
}

impl Activity {
    fn data(&self) {
        if self.idle.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// A reader's stream ended in a way that loses what the server sent on it. An error of the
    /// connection itself is not reported: the supervisor sees the connection close.
    fn stream_broke(&self, what: &str, error: &ReadError) {
        if matches!(error, ReadError::Stream(_)) {
            return;
        }
        if self.broken.set(format!("{what}: {error}")).is_ok() {
            self.broke.notify_one();
        }
    }

    /// Resolves with the reason once a reader reported a broken stream.
    async fn broken(&self) -> String {
        loop {
            if let Some(why) = self.broken.get() {
                return why.clone();
            }
            self.broke.notified().await;
        }
    }
}

type Readers = Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>;

/// A function the client calls with each event, in place of queueing it for
/// [`Client::next_event`] (see [`Client::connect_with_listener`]).
pub type EventListener = Arc<dyn Fn(ClientEvent) + Send + Sync>;

/// Where a client's events go: the queue [`Client::next_event`] reads, or a listener.
#[derive(Clone)]
enum EventSink {
    Queue(mpsc::Sender<ClientEvent>),
    Listener(EventListener),
}

impl EventSink {
    /// Hands `event` on, waiting for room in the queue; false once the queue's reader is gone.
    async fn send(&self, event: ClientEvent) -> bool {
        match self {
            EventSink::Queue(tx) => tx.send(event).await.is_ok(),
            EventSink::Listener(f) => {
                f(event);
                true
            }
        }
    }

    /// Hands `event` on if the queue has room; drops it otherwise.
    fn try_send(&self, event: ClientEvent) {
        match self {
            EventSink::Queue(tx) => {
                let _ = tx.try_send(event);
            }
            EventSink::Listener(f) => f(event),
        }
    }
}

struct Inner {
    cfg: ClientConfig,
    endpoint: quinn::Endpoint,
    /// Built once and reused by every reconnection: it holds the TLS session tickets that make
    /// 0-RTT possible.
    quic: quinn::ClientConfig,
    link: Mutex<Link>,
    next_id: AtomicU32,
    session: Mutex<Session>,
    rooms: Rooms,
    /// Where events go; dropped after the final Disconnected so that `next_event` ends.
    events: Mutex<Option<EventSink>>,
    /// Set by logout and close: a lost connection is then not reconnected.
    closing: AtomicBool,
    /// Whose turn it is to queue a request (see [`Client::request`]).
    send_turn: tokio::sync::Mutex<()>,
    /// The token resumption presents (replaced by [`Client::renew_token`]).
    token: Mutex<String>,
    /// The connection state, for [`Client::state_changes`].
    state: tokio::sync::watch::Sender<ConnectionState>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A logged-in session. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// When the connection is lost (network loss, idle timeout, a slow-consumer close), the client
/// reconnects by itself with jittered backoff for [`ClientConfig::reconnect_for`], resumes its
/// session and replays what it missed; it reports [`ClientEvent::Reconnecting`] and
/// [`ClientEvent::Resumed`], or [`ClientEvent::Disconnected`] when it gives up or the server
/// ended the session (kicked out, shutdown, bad token).
pub struct Client {
    inner: Arc<Inner>,
    events: tokio::sync::Mutex<mpsc::Receiver<ClientEvent>>,
}

/// The QUIC client configuration Huddle clients use.
pub fn quic_client_config(cfg: &ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cfg.roots {
        roots.add(ca.clone()).map_err(|e| ClientError::Connection(format!("bad CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Connection(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = cfg.zero_rtt;
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| ClientError::Connection(e.to_string()))?;
    let mut qc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut tc = quinn::TransportConfig::default();
    // The server opens one stream per room plus a session stream; allow a few spares for
    // streams that are finishing. The client never accepts bidirectional streams.
    tc.max_concurrent_uni_streams(32u32.into());
    tc.max_concurrent_bidi_streams(0u32.into());
    tc.stream_receive_window(cfg.stream_receive_window.into());
    tc.receive_window((8u32 * 1024 * 1024).into());
    tc.send_window(1024 * 1024);
    tc.keep_alive_interval(Some(cfg.keep_alive));
    tc.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(cfg.idle_timeout)
            .map_err(|e| ClientError::Connection(e.to_string()))?,
    ));
    // Datagrams waiting for the application at most (older ones are dropped first).
    tc.datagram_receive_buffer_size(cfg.low_datagrams.then_some(256 * 1024));
    if cfg.bbr {
        tc.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    qc.transport_config(Arc::new(tc));
    Ok(qc)
}

/// A client endpoint bound to an ephemeral port of the right address family.
pub fn client_endpoint(server: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    let bind: SocketAddr = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .map_err(|_| ClientError::Connection("bad bind address".into()))?;
    quinn::Endpoint::client(bind).map_err(|e| ClientError::Connection(e.to_string()))
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

    async fn start(
        endpoint: quinn::Endpoint,
        cfg: ClientConfig,
        sink: EventSink,
        queue: mpsc::Receiver<ClientEvent>,
    ) -> Result<Client, ClientError> {
        // The queue is empty: this cannot fail.
        sink.try_send(ClientEvent::Connecting);
        let cfg_token = cfg.token.clone();
        let rooms: Rooms = Arc::new(Mutex::new(HashMap::new()));
        let quic = quic_client_config(&cfg)?;
        let (link, _) = open_link(&endpoint, &quic, &cfg, &sink, &rooms, false).await?;
        let inner = Arc::new(Inner {
            cfg,
            endpoint,
            quic,
            link: Mutex::new(link.clone()),
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
            token: Mutex::new(cfg_token),
            state: tokio::sync::watch::Sender::new(ConnectionState::Connecting),
        });
        let login = Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: inner.cfg.user_id.clone(),
            user_name: inner.cfg.user_name.clone(),
            token: inner.cfg.token.clone(),
        };
        match inner.request_on(&link, Request::Login(login)).await {
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
        Ok(Client { inner, events: tokio::sync::Mutex::new(queue) })
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
    /// resumed connection (at most [`ClientConfig::reconnect_for`] and a connection attempt)
    /// and fails with [`ClientError::Connection`] if the session ends instead. Requests that
    /// wait go out in the order they were made, from whatever tasks. A request that
    /// was in flight when its connection was lost fails with [`ClientError::Connection`] (the
    /// server may or may not have applied it), except reads and messages with a
    /// `client_msg_id`: those are sent again on the resumed connection, where the server
    /// answers a repeated `client_msg_id` with the first ack, so nothing arrives twice.
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        let inner = &self.inner;
        // Requests go out in the order they were made, also when they wait for a resumed
        // connection: each holds this first-in, first-out turn until it is queued on a
        // connection (uncontended while connected, so the first poll still queues it).
        let mut turn = Some(inner.send_turn.lock().await);
        let mut link = inner.usable_link(None).await;
        let mut tries = 0;
        let response = loop {
            let (error, sent) = match inner.submit(&link, request.clone()) {
                Ok(answer) => {
                    turn = None;
                    match Inner::answer(&link, answer).await {
                        Err(ClientError::Connection(e)) => (ClientError::Connection(e), true),
                        other => break other?,
                    }
                }
                Err(e) => (e, false),
            };
            // Not sent at all, or safe to repeat: once more on the next connection.
            if tries == 3 || (sent && !repeatable(&request)) || !inner.resuming() {
                return Err(error);
            }
            tries += 1;
            // A repeat goes behind the requests already waiting for the resumed connection.
            if turn.is_none() {
                turn = Some(inner.send_turn.lock().await);
            }
            link = inner.usable_link(Some(&link)).await;
        };
        drop(turn);
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

    /// Sends a message.
    pub async fn send_message(
        &self,
        room_id: &str,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, ClientError> {
        let req =
            Request::SendRoomMessage { room_id: room_id.into(), body, priority, client_msg_id };
        match self.request(req).await? {
            Response::MessageSent { message_id, seq, timestamp_ms, duplicate, .. } => {
                Ok(SendAck { message_id, seq, timestamp_ms, duplicate })
            }
            other => Err(unexpected(other)),
        }
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
        let r = self.request(Request::Logout).await;
        self.connection().close(0u32.into(), b"logout");
        match r? {
            Response::LoggedOut => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the connection without a logout. The server treats it as a lost connection and
    /// holds the session for its offline grace period; this client does not reconnect.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
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

fn unexpected(r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response {r:?}"))
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

impl Inner {
    /// True unless the session is over or ending (logout, close, given up).
    fn resuming(&self) -> bool {
        !self.closing.load(Ordering::SeqCst)
            && *self.state.borrow() != ConnectionState::Disconnected
    }

    /// The connection to send on: the current one while connected; while the client is
    /// reconnecting, the resumed one. With `failed` (a connection that lost a request), waits
    /// for a connection other than it. Bounded by the reconnection time; when the session is
    /// over, or the bound passes, the current one (requests on it then fail).
    async fn usable_link(&self, failed: Option<&Link>) -> Link {
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

    async fn request_on(&self, link: &Link, request: Request) -> Result<Response, ClientError> {
        let answer = self.submit(link, request)?;
        Self::answer(link, answer).await
    }

    /// Queues a request on the control stream; the receiver gets its answer.
    fn submit(
        &self,
        link: &Link,
        request: Request,
    ) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&link.pending);
            let Some(pending) = pending.as_mut() else { return Err(closed_error(&link.conn)) };
            pending.insert(request_id, tx);
        }
        let frame = encode_frame(&RequestFrame { request_id, request });
        if link.control.send(frame).is_err() {
            return Err(closed_error(&link.conn));
        }
        Ok(rx)
    }

    async fn answer(link: &Link, rx: oneshot::Receiver<Reply>) -> Result<Response, ClientError> {
        match rx.await {
            Ok(Reply::Ok(r)) => Ok(r),
            Ok(Reply::Err(e)) => Err(ClientError::Server { code: e.code, message: e.message }),
            Err(_) => Err(closed_error(&link.conn)),
        }
    }

    /// Keeps the joined-rooms table true from the answers that change membership.
    fn track(&self, response: &Response) {
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

    async fn send(&self, event: ClientEvent) {
        let tx = lock(&self.events).clone();
        if let Some(tx) = tx {
            tx.send(event).await;
        }
    }
}

fn closed_error(conn: &quinn::Connection) -> ClientError {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            let code = c.error_code.into_inner();
            ClientError::Connection(format!(
                "closed by server with code {code} ({})",
                String::from_utf8_lossy(&c.reason)
            ))
        }
        Some(e) => ClientError::Connection(e.to_string()),
        None => ClientError::Connection("control stream ended".into()),
    }
}

/// Opens a connection and its control stream, and starts its reader tasks. With `early` and a
/// session ticket from an earlier connection, the connection is usable at once (0-RTT) and the
/// second value resolves to whether the server took the early data.
async fn open_link(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    cfg: &ClientConfig,
    events: &EventSink,
    rooms: &Rooms,
    early: bool,
) -> Result<(Link, Option<quinn::ZeroRttAccepted>), ClientError> {
    let connecting = endpoint
        .connect_with(quic.clone(), cfg.server_addr, &cfg.server_name)
        .map_err(|e| ClientError::Connection(e.to_string()))?;
    let attempt = if early { connecting.into_0rtt() } else { Err(connecting) };
    let (conn, accepted) = match attempt {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => {
            (connecting.await.map_err(|e| ClientError::Connection(e.to_string()))?, None)
        }
    };
    let activity = Arc::new(Activity::default());
    let readers =
        tokio::spawn(accept_streams(conn.clone(), events.clone(), rooms.clone(), activity.clone()));
    let readers = Arc::new(tokio::sync::Mutex::new(Some(readers)));
    let link = open_control(&conn, readers, activity).await?;
    Ok((link, accepted))
}

/// Opens the control stream of a connection whose stream readers already run.
async fn open_control(
    conn: &quinn::Connection,
    readers: Readers,
    activity: Arc<Activity>,
) -> Result<Link, ClientError> {
    let (send, recv) = conn.open_bi().await.map_err(|e| ClientError::Connection(e.to_string()))?;
    let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
    let (control, control_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_control(send, control_rx));
    tokio::spawn(read_control(recv, pending.clone(), activity.clone()));
    Ok(Link { conn: conn.clone(), control, pending, readers, activity })
}

/// Close codes after which reconnecting cannot help.
fn terminal(code: u16) -> bool {
    let known = ErrorCode::from_u16(code);
    matches!(
        known,
        Some(
            ErrorCode::KickedOut
                | ErrorCode::DisconnectedByAdmin
                | ErrorCode::SessionResumed
                | ErrorCode::ServerShutdown
                | ErrorCode::TokenInvalid
                | ErrorCode::TokenExpired
                | ErrorCode::TokenTooLong
                | ErrorCode::TokenNotYetValid
                | ErrorCode::TokenMalformed
                | ErrorCode::UnsupportedVersion
                | ErrorCode::NotLoggedIn
        )
    ) || (1000..2000).contains(&code)
}

/// Why the supervisor stopped using a connection.
enum Lost {
    /// The connection closed (by either side, or timed out).
    Closed(quinn::ConnectionError),
    /// The stall watchdog gave up on it.
    Stalled(String),
    /// One of its streams broke while it lived on.
    Broke(String),
}

/// Watches the connection; when it is lost, reconnects and resumes, or reports the end.
async fn supervise(inner: Arc<Inner>) {
    // Stalls soon after one another double the watchdog's patience (up to 8x): when a busy
    // server, not the network, is what stalls, its clients must not all come back at once.
    let mut patience = 1u32;
    let mut last_stall: Option<tokio::time::Instant> = None;
    loop {
        let link = lock(&inner.link).clone();
        // Jittered, so that the clients of one outage do not all give up in the same tick.
        let stall = inner
            .cfg
            .stall_timeout
            .mul_f64(f64::from(patience) * (0.8 + 0.4 * rand::random::<f64>()));
        let lost = tokio::select! {
            error = link.conn.closed() => Lost::Closed(error),
            why = watch_stall(&link, stall, &inner) => Lost::Stalled(why),
            // A stream that broke because the connection closed is the connection's story.
            why = link.activity.broken() => match link.conn.close_reason() {
                Some(error) => Lost::Closed(error),
                None => Lost::Broke(why),
            },
        };
        if let Lost::Stalled(_) = lost {
            let now = tokio::time::Instant::now();
            let recent = last_stall.is_some_and(|t| now - t < Duration::from_secs(60));
            patience = if recent { (patience * 2).min(8) } else { 1 };
            last_stall = Some(now);
        }
        // The client abandons a stalled or broken connection itself, keeping the session.
        let abandoned: Option<(&[u8], &str)> = match &lost {
            Lost::Stalled(why) => Some((b"stalled", why)),
            Lost::Broke(why) => Some((b"stream broke", why)),
            Lost::Closed(_) => None,
        };
        if let Some((reason, why)) = abandoned {
            link.conn.close(0u32.into(), reason);
            tracing::debug!(user = %inner.cfg.user_id, "{why}");
        }
        // Let the readers queue what they had before reporting anything.
        if let Some(readers) = link.readers.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), readers).await;
        }
        let (code, reason, locally_closed) = match &lost {
            Lost::Stalled(why) | Lost::Broke(why) => (None, why.clone(), false),
            Lost::Closed(quinn::ConnectionError::ApplicationClosed(c)) => (
                Some(c.error_code.into_inner() as u16),
                String::from_utf8_lossy(&c.reason).into_owned(),
                false,
            ),
            Lost::Closed(other) => {
                (None, other.to_string(), matches!(other, quinn::ConnectionError::LocallyClosed))
            }
        };
        let give_up = inner.closing.load(Ordering::SeqCst)
            || locally_closed
            || code.is_some_and(|c| c == 0 || terminal(c))
            || inner.cfg.reconnect_for.is_zero();
        if give_up {
            inner.state.send_replace(ConnectionState::Disconnected);
            inner.send(ClientEvent::Disconnected { code, reason }).await;
            lock(&inner.events).take();
            return;
        }
        inner.state.send_replace(ConnectionState::Reconnecting);
        inner.send(ClientEvent::Reconnecting { reason: reason.clone() }).await;
        match reconnect(&inner).await {
            Ok(event) => {
                inner.state.send_replace(ConnectionState::Connected);
                inner.send(event).await
            }
            Err(e) => {
                let reason = format!("{reason}; {e}");
                inner.state.send_replace(ConnectionState::Disconnected);
                inner.send(ClientEvent::Disconnected { code, reason }).await;
                lock(&inner.events).take();
                return;
            }
        }
    }
}

/// Resolves (with a description) once `link` looks stalled: stream data was arriving, then
/// none for a second, a Ping went out, and no stream data at all (not even the Pong) came back
/// within the stall timeout. Stream data, not packets: after an outage the server's ACKs flow at
/// once while its data can stay stuck behind QUIC's backed-off probe timer for seconds. A Pong
/// that came back slowly keeps the watch on for the next quiet second; a prompt one ends it
/// until data flows again, so a quiet room is never probed and a dead link there is found by
/// the idle timeout as before. Never resolves when the watchdog is off. Between bursts it does
/// not tick at all: it sleeps until a reader reports data ([`Activity`]).
async fn watch_stall(link: &Link, stall: Duration, inner: &Inner) -> String {
    if stall.is_zero() {
        return std::future::pending().await;
    }
    let quiet = Duration::from_secs(1).min(stall);
    let tick = (stall / 8).clamp(Duration::from_millis(50), Duration::from_millis(250));
    let data = || link.conn.stats().frame_rx.stream;
    let mut received = data();
    let mut heard = tokio::time::Instant::now();
    // Data was arriving less than `quiet` apart, or the last Pong was slow: worth watching.
    let mut watching = false;
    let mut probe: Option<tokio::time::Instant> = None;
    loop {
        if !watching && probe.is_none() && heard.elapsed() >= quiet {
            // Nothing to watch until data flows again, and whenever it comes it will not be
            // watched (it follows a quiet second): wait for the readers instead of ticking.
            link.activity.idle.store(true, Ordering::SeqCst);
            if data() == received {
                link.activity.wake.notified().await;
            }
            link.activity.idle.store(false, Ordering::SeqCst);
            (received, heard) = (data(), tokio::time::Instant::now());
            continue;
        }
        tokio::time::sleep(tick).await;
        let now = tokio::time::Instant::now();
        let rx = data();
        if rx != received {
            watching = match probe.take() {
                Some(sent) => now - sent >= quiet,
                None => now - heard < quiet,
            };
            (received, heard) = (rx, now);
            continue;
        }
        match probe {
            Some(sent) if now - sent >= stall => {
                return format!("stalled: no data for {} ms", (now - heard).as_millis());
            }
            Some(_) => {}
            None if watching && now - heard >= quiet => {
                if inner.submit(link, Request::Ping).is_err() {
                    return std::future::pending().await;
                }
                probe = Some(now);
            }
            None => {}
        }
    }
}

/// Reconnects with jittered exponential backoff and resumes the session.
async fn reconnect(inner: &Arc<Inner>) -> Result<ClientEvent, ClientError> {
    let deadline = tokio::time::Instant::now() + inner.cfg.reconnect_for;
    let mut delay = Duration::from_millis(100);
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return Err(ClientError::Connection("closed".into()));
        }
        let attempt = try_resume(inner).await;
        match attempt {
            Ok(event) => return Ok(event),
            // The server refused the session for good: no point in trying again.
            Err(e @ ClientError::Server { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(user = %inner.cfg.user_id, error = %e, "reconnection attempt failed");
                let jitter = 0.5 + rand::random::<f64>();
                let wait = delay.mul_f64(jitter);
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn try_resume(inner: &Arc<Inner>) -> Result<ClientEvent, ClientError> {
    let events =
        lock(&inner.events).clone().ok_or_else(|| ClientError::Connection("closed".into()))?;
    // Bounded as a whole by `connect_timeout`; an attempt that runs out is closed, not just
    // dropped: its tasks would keep it alive, and a Resume it delivered after the outage would
    // take the session from the attempt that replaced it (closing that one with 2008).
    let deadline = tokio::time::Instant::now() + inner.cfg.connect_timeout;
    let opened = tokio::time::timeout_at(
        deadline,
        open_link(
            &inner.endpoint,
            &inner.quic,
            &inner.cfg,
            &events,
            &inner.rooms,
            inner.cfg.zero_rtt,
        ),
    )
    .await;
    let (mut link, early) = match opened {
        Ok(r) => r?,
        Err(_) => return Err(ClientError::Connection("reconnection attempt timed out".into())),
    };
    let session = lock(&inner.session).clone();
    let rooms: Vec<(String, u64)> =
        lock(&inner.rooms).iter().filter_map(|(id, seen)| seen.map(|s| (id.clone(), s))).collect();
    let resume = Resume {
        protocol_version: PROTOCOL_VERSION,
        user_id: inner.cfg.user_id.clone(),
        user_name: inner.cfg.user_name.clone(),
        token: lock(&inner.token).clone(),
        session_id: session.session_id,
        resume_secret: session.resume_secret,
        rooms,
    };
    let mut early_data = false;
    let answer = tokio::time::timeout_at(deadline, async {
        let Some(accepted) = early else {
            return inner.request_on(&link, Request::Resume(resume)).await;
        };
        // Written now, the Resume leaves in the first flight (0-RTT).
        let first = inner.submit(&link, Request::Resume(resume.clone()))?;
        if accepted.await {
            early_data = true;
            return Inner::answer(&link, first).await;
        }
        // The server refused the early data (no ticket left, 0-RTT off, or the connection
        // failed): the control stream and the Resume never reached it. Say it again, in 1-RTT.
        if link.conn.close_reason().is_some() {
            return Err(closed_error(&link.conn));
        }
        link = open_control(&link.conn, link.readers.clone(), link.activity.clone()).await?;
        inner.request_on(&link, Request::Resume(resume)).await
    })
    .await;
    match answer {
        Ok(Ok(Response::Resumed {
            session_id,
            resume_secret,
            session_resumed,
            token_expires_at_s,
            rooms,
        })) => {
            {
                let mut s = lock(&inner.session);
                s.session_id = session_id;
                s.resume_secret = resume_secret;
                s.token_expires_at_s = token_expires_at_s;
            }
            {
                let mut table = lock(&inner.rooms);
                for r in &rooms {
                    if !r.rejoined {
                        table.remove(&r.room_id);
                    }
                }
            }
            *lock(&inner.link) = link;
            Ok(ClientEvent::Resumed { session_resumed, rooms, early_data })
        }
        Ok(Ok(other)) => {
            link.conn.close(0u32.into(), b"resume failed");
            Err(unexpected(other))
        }
        Ok(Err(e)) => {
            link.conn.close(0u32.into(), b"resume failed");
            Err(e)
        }
        Err(_) => {
            link.conn.close(0u32.into(), b"resume timed out");
            Err(ClientError::Connection("resume timed out".into()))
        }
    }
}

async fn write_control(mut send: quinn::SendStream, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = Vec::with_capacity(32);
    while rx.recv_many(&mut batch, 32).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    // A control stream opened in refused 0-RTT shares its id with the one that replaced it, and
    // quinn's `finish` does not check for that: finishing it would end the new control stream.
    if matches!(send.write(&[]).await, Err(quinn::WriteError::ZeroRttRejected)) {
        return;
    }
    let _ = send.finish();
}

async fn read_control(recv: quinn::RecvStream, pending: Pending, activity: Arc<Activity>) {
    // Server frames may be large (a page of history) but always arrive promptly once started.
    let mut frames = FrameReader::new(recv, MAX_FRAME_LEN, Duration::from_secs(30));
    loop {
        let body = match frames.next().await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                activity.stream_broke("control stream", &e);
                break;
            }
        };
        activity.data();
        let frame = match decode_body::<ResponseFrame>(&body) {
            Ok(frame) => frame,
            Err(e) => {
                activity.stream_broke("control stream", &e.into());
                break;
            }
        };
        let tx = lock(&pending).as_mut().and_then(|p| p.remove(&frame.request_id));
        if let Some(tx) = tx {
            let _ = tx.send(frame.reply);
        }
    }
    // Dropping the senders fails every waiting request with a connection error, and later
    // requests fail at once.
    *lock(&pending) = None;
}

/// Per room, the seq of the last low-priority message given to the application: low messages
/// travel on a stream or as datagrams, and one that arrives after a later one is dropped.
type LowSeen = Arc<Mutex<HashMap<String, Option<u64>>>>;

/// True when `seq` is above the last seq recorded for `room` in `table` (and records it). The
/// room's id is copied only the first time the room is seen, not for every message.
fn advance(table: &mut HashMap<String, Option<u64>>, room: &str, seq: u64) -> bool {
    match table.get_mut(room) {
        Some(Some(last)) if seq <= *last => false,
        Some(last) => {
            *last = Some(seq);
            true
        }
        None => {
            table.insert(room.to_string(), Some(seq));
            true
        }
    }
}

/// True when `m` is the newest low message of its room so far (and records it).
fn fresh_low(low: &LowSeen, m: &RoomMessage) -> bool {
    advance(&mut lock(low), &m.room_id, m.seq)
}

async fn accept_streams(
    conn: quinn::Connection,
    events: EventSink,
    rooms: Rooms,
    activity: Arc<Activity>,
) {
    let low = LowSeen::default();
    let mut readers = tokio::task::JoinSet::new();
    readers.spawn(read_datagrams(conn.clone(), events.clone(), low.clone()));
    while let Ok(recv) = conn.accept_uni().await {
        let activity = activity.clone();
        readers.spawn(read_events(recv, events.clone(), rooms.clone(), low.clone(), activity));
    }
    // Deliver what the stream readers still hold before the connection is reported lost.
    while readers.join_next().await.is_some() {}
}

/// Low-priority room messages the server sent as datagrams: each is one event frame. Best
/// effort all the way: one that does not decode, or that finds the event queue full, is dropped.
async fn read_datagrams(conn: quinn::Connection, events: EventSink, low: LowSeen) {
    while let Ok(datagram) = conn.read_datagram().await {
        let Ok(body) = single_frame_body(&datagram, MAX_FRAME_LEN) else { continue };
        let Ok(Event::RoomMessage(m)) = decode_body::<Event>(body) else { continue };
        if m.priority != Priority::Low || !fresh_low(&low, &m) {
            continue;
        }
        events.try_send(ClientEvent::Event(Event::RoomMessage(m)));
    }
}

async fn read_events(
    recv: quinn::RecvStream,
    events: EventSink,
    rooms: Rooms,
    low: LowSeen,
    activity: Arc<Activity>,
) {
    let mut frames = FrameReader::new(recv, MAX_FRAME_LEN, Duration::from_secs(30));
    // Whatever cuts an event stream short loses the events after it: the link is broken.
    let next = async |frames: &mut FrameReader<quinn::RecvStream>| match frames.next().await {
        Ok(body) => body,
        Err(e) => {
            activity.stream_broke("event stream", &e);
            None
        }
    };
    let Some(body) = next(&mut frames).await else { return };
    activity.data();
    match decode_body::<StreamHeader>(&body) {
        Ok(StreamHeader::Room { room_id }) => {
            lock(&rooms).entry(room_id).or_insert(None);
        }
        Ok(StreamHeader::Session) | Ok(StreamHeader::RoomLow { .. }) => {}
        Err(e) => return activity.stream_broke("event stream header", &e.into()),
    }
    while let Some(body) = next(&mut frames).await {
        activity.data();
        let event = match decode_body::<Event>(&body) {
            Ok(event) => event,
            Err(e) => return activity.stream_broke("event", &e.into()),
        };
        match &event {
            Event::RoomMessage(m) => {
                // Exactly once, in order: a medium or high message at or below the last
                // delivered reliable seq of its room is a replay of one the application already
                // has. Low messages travel on their own stream, are never replayed and are not
                // counted there; a datagram may have overtaken one.
                let fresh = if m.priority == Priority::Low {
                    fresh_low(&low, m)
                } else {
                    advance(&mut lock(&rooms), &m.room_id, m.seq)
                };
                if !fresh {
                    continue;
                }
            }
            // The session is no longer in the room: a resume must not ask for it back.
            Event::RoomDestroyed { room_id } | Event::RemovedFromRoom { room_id, .. } => {
                lock(&rooms).remove(room_id);
            }
            _ => {}
        }
        if !events.send(ClientEvent::Event(event)).await {
            return;
        }
    }
}
