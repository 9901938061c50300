//! Huddle's client library for Swift, Kotlin and Python, through UniFFI (bindings/README.md).
//!
//! [`connect`] logs in and returns a [`HuddleClient`], whose methods are the client library's
//! operations; events come from [`HuddleClient::next_event`] or, with
//! [`connect_with_listener`], to an [`EventListener`] the application implements. Every
//! operation runs on a Tokio runtime that this library owns, so the foreign side needs none:
//! its own async machinery (Python's asyncio, Kotlin coroutines, Swift concurrency) awaits the
//! result. A panic inside an operation becomes [`HuddleError::Internal`].
//!
//! Robustness the foreign side relies on: a listener that throws is counted
//! ([`HuddleClient::listener_failures`]) and logged, and the next events still come; a cancelled
//! [`HuddleClient::next_event`] takes no event (the next call gets it); and closing the client,
//! or dropping its last reference, ends a pending `next_event` with nothing and releases the
//! connection.

mod error;
mod types;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use huddle::client::{Client, ClientConfig, ClientEvent};
use huddle::wire::{MessageBody, RoomInfo};
use tokio::runtime::Runtime;
use tokio::sync::watch;

pub use error::{Ended, HuddleError};
pub use types::*;

uniffi::setup_scaffolding!();

/// The runtime every operation and the clients' own tasks run on.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("huddle-ffi")
            .enable_all()
            .build()
            .expect("the bindings' Tokio runtime starts")
    })
}

/// Runs `work` on the bindings' runtime; the returned future may be polled by any executor.
async fn run<T, F>(work: F) -> Result<T, HuddleError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, HuddleError>> + Send + 'static,
{
    match runtime().spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(HuddleError::Internal { detail: panic_text(e) }),
        Err(e) => Err(HuddleError::Internal { detail: e.to_string() }),
    }
}

/// The message of a panicked task.
fn panic_text(e: tokio::task::JoinError) -> String {
    format!("panic: {}", panic_message(e.into_panic()))
}

/// The message a panic carried.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// The client's next event, or nothing once `closed` turns true or its sender (the
/// [`HuddleClient`]) is gone. Cancel-safe: dropped while waiting, it has taken no event.
async fn next_or_closed(client: &Client, mut closed: watch::Receiver<bool>) -> Option<ClientEvent> {
    tokio::select! {
        biased;
        _ = closed.wait_for(|c| *c) => None,
        event = client.next_event() => event,
    }
}

/// How to reach and log in to a server.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ConnectOptions {
    /// The server's UDP address, `host:port` (a name is resolved; the first address is used).
    pub server: String,
    /// User id.
    pub user_id: String,
    /// Login token (from the application's back end; `huddle token` for development).
    pub token: String,
    /// The CA certificates to trust, PEM (for a development server, its `certs/ca.pem`).
    pub ca_pem: String,
    /// Display name.
    #[uniffi(default = None)]
    pub display_name: Option<String>,
    /// How long to keep trying to reconnect and resume after the connection is lost, in
    /// milliseconds (0: never reconnect); the library's default (60 s) when absent.
    #[uniffi(default = None)]
    pub reconnect_window_ms: Option<u64>,
    /// The name the server certificate is checked against; the host of `server` when it is a
    /// name, `localhost` when it is an IP address (the development certificate's name).
    #[uniffi(default = None)]
    pub server_name: Option<String>,
    /// The mobile profile (README, "Mobile apps"): an idle keep-alive every 25 s instead of
    /// every 5 s, a 60 s idle timeout and a patient stall watchdog; the app calls
    /// `network_changed` from the platform's connectivity callback.
    #[uniffi(default = false)]
    pub mobile: bool,
    /// The idle keep-alive interval in milliseconds, overriding the profile's (5 s, or 25 s
    /// with `mobile`): about what the carrier's NAT keeps an idle UDP binding for.
    #[uniffi(default = None)]
    pub keep_alive_ms: Option<u64>,
}

/// The client configuration for `options`.
async fn client_config(options: ConnectOptions) -> Result<ClientConfig, HuddleError> {
    let addr = tokio::net::lookup_host(options.server.as_str())
        .await
        .map_err(|e| HuddleError::invalid(format!("server {:?}: {e}", options.server)))?
        .next()
        .ok_or_else(|| HuddleError::invalid(format!("server {:?}: no address", options.server)))?;
    let mut cfg = if options.mobile {
        ClientConfig::mobile(addr, &options.user_id, &options.token)
    } else {
        ClientConfig::new(addr, &options.user_id, &options.token)
    };
    if let Some(ms) = options.keep_alive_ms {
        cfg.keep_alive = Duration::from_millis(ms.max(1));
    }
    cfg.server_name = match options.server_name {
        Some(name) => name,
        None => {
            let host = options.server.rsplit_once(':').map_or("", |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<std::net::IpAddr>() {
                Ok(_) => "localhost".into(),
                Err(_) => host.into(),
            }
        }
    };
    cfg.trust_pem(options.ca_pem.as_bytes())
        .map_err(|e| HuddleError::invalid(format!("ca_pem: {e:?}")))?;
    if let Some(name) = options.display_name {
        cfg.user_name = name;
    }
    if let Some(ms) = options.reconnect_window_ms {
        cfg.reconnect_for = Duration::from_millis(ms);
    }
    Ok(cfg)
}

/// Connects and logs in; events are read with [`HuddleClient::next_event`].
#[uniffi::export]
pub async fn connect(options: ConnectOptions) -> Result<Arc<HuddleClient>, HuddleError> {
    let client =
        run(async move { Ok(Client::connect(client_config(options).await?).await?) }).await?;
    Ok(Arc::new(HuddleClient::new(Arc::new(client), false)))
}

/// What an application implements to hear a client's events (instead of calling
/// [`HuddleClient::next_event`]).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event. Called in order, one call at a time, on a thread of the library's own
    /// that holds none of the client's locks; while it runs, the next events wait (and then
    /// the server's), so it should return soon. If it throws, the failure is logged and
    /// counted ([`HuddleClient::listener_failures`]) and the next events still come.
    fn on_event(&self, event: HuddleEvent);
}

/// Connects and logs in, and calls `listener` with every event (the first two, `Connecting`
/// and `Connected`, included); [`HuddleClient::next_event`] then returns nothing. The calls
/// stop when the client is closed or dropped.
#[uniffi::export]
pub async fn connect_with_listener(
    options: ConnectOptions,
    listener: Arc<dyn EventListener>,
) -> Result<Arc<HuddleClient>, HuddleError> {
    let client =
        run(async move { Ok(Client::connect(client_config(options).await?).await?) }).await?;
    let handle = HuddleClient::new(Arc::new(client), true);
    let reader = handle.client.clone();
    let closed = handle.closed.subscribe();
    let failures = handle.listener_failures.clone();
    std::thread::Builder::new()
        .name("huddle-listener".into())
        .spawn(move || {
            while let Some(event) = runtime().block_on(next_or_closed(&reader, closed.clone())) {
                let event = HuddleEvent::from(event);
                // A foreign exception arrives as a panic ("Callback interface failure").
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| listener.on_event(event))) {
                    let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                    let why = panic_message(panic);
                    tracing::warn!(failures = n, "the event listener failed: {why}");
                }
            }
        })
        .map_err(|e| HuddleError::Internal { detail: format!("listener thread: {e}") })?;
    Ok(Arc::new(handle))
}

/// A logged-in session. Dropping it (from any thread) closes its connection.
#[derive(uniffi::Object)]
pub struct HuddleClient {
    client: Arc<Client>,
    /// Whether a listener takes the events.
    listening: bool,
    /// True once closed; its receivers (pending `next_event` calls, the listener thread) also
    /// end when this is dropped.
    closed: watch::Sender<bool>,
    /// How many listener calls failed.
    listener_failures: Arc<AtomicU64>,
}

impl Drop for HuddleClient {
    fn drop(&mut self) {
        self.closed.send_replace(true);
        self.client.close();
    }
}

impl HuddleClient {
    /// The handle of a connected client.
    fn new(client: Arc<Client>, listening: bool) -> HuddleClient {
        let (closed, _) = watch::channel(false);
        HuddleClient { client, listening, closed, listener_failures: Arc::default() }
    }

    /// Runs `op` with the client on the bindings' runtime.
    async fn with<T, F, Fut>(&self, op: F) -> Result<T, HuddleError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, huddle::client::ClientError>> + Send + 'static,
    {
        let client = self.client.clone();
        run(async move { Ok(op(client).await?) }).await
    }
}

#[uniffi::export]
impl HuddleClient {
    /// The user id this client logged in as.
    pub fn user_id(&self) -> String {
        self.client.user_id().to_string()
    }

    /// The current session's id.
    pub fn session_id(&self) -> u64 {
        self.client.session().session_id
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.client.state().into()
    }

    /// The next event; nothing once the connection is over and every event has been read,
    /// once the client is closed (a pending call then returns nothing), and always for a
    /// client with a listener. Cancelling the call takes no event: the next call gets it. A
    /// pending call does not keep the client alive: dropping its last reference closes it.
    pub async fn next_event(self: Arc<Self>) -> Option<HuddleEvent> {
        if self.listening {
            return None;
        }
        let client = self.client.clone();
        let closed = self.closed.subscribe();
        // Polled by the foreign side's executor, not spawned: dropped on cancellation before
        // it takes an event, and holding no reference to this handle while it waits.
        drop(self);
        next_or_closed(&client, closed).await.map(HuddleEvent::from)
    }

    /// How many calls of the [`EventListener`] failed (threw); each was logged, and the next
    /// events still came.
    pub fn listener_failures(&self) -> u64 {
        self.listener_failures.load(Ordering::Relaxed)
    }

    /// Creates a room and joins it.
    pub async fn create_room(
        &self,
        room_id: String,
        room_name: String,
        config: RoomConfig,
    ) -> Result<RoomState, HuddleError> {
        let info = RoomInfo { room_id, room_name };
        let state = self.with(|c| async move { c.create_room(info, config.into()).await }).await?;
        Ok(state.into())
    }

    /// Joins an existing room.
    pub async fn join_room(&self, room_id: String) -> Result<RoomState, HuddleError> {
        Ok(self.with(|c| async move { c.join_room(&room_id).await }).await?.into())
    }

    /// Creates the room (with `config`) or joins it.
    pub async fn enter_room(
        &self,
        room_id: String,
        room_name: String,
        config: RoomConfig,
    ) -> Result<RoomState, HuddleError> {
        let info = RoomInfo { room_id, room_name };
        let state = self.with(|c| async move { c.enter_room(info, config.into()).await }).await?;
        Ok(state.into())
    }

    /// Leaves a room.
    pub async fn leave_room(&self, room_id: String) -> Result<(), HuddleError> {
        self.with(|c| async move { c.leave_room(&room_id).await }).await
    }

    /// Leaves every room; returns their ids.
    pub async fn leave_all_rooms(&self) -> Result<Vec<String>, HuddleError> {
        self.with(|c| async move { c.leave_all_rooms().await }).await
    }

    /// Leaves `from_room_id` and enters `to_room_id` in one request (creating it with
    /// `config` when `create_if_missing`).
    pub async fn switch_room(
        &self,
        from_room_id: String,
        to_room_id: String,
        to_room_name: String,
        create_if_missing: bool,
        config: RoomConfig,
    ) -> Result<RoomState, HuddleError> {
        let to = RoomInfo { room_id: to_room_id, room_name: to_room_name };
        let state = self
            .with(move |c| async move {
                c.switch_room(&from_room_id, to, create_if_missing, config.into()).await
            })
            .await?;
        Ok(state.into())
    }

    /// Sends a text message. Without a `client_msg_id` the library makes one, so that a send
    /// survives a lost connection and still counts once.
    pub async fn send_text(
        &self,
        room_id: String,
        text: String,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, HuddleError> {
        self.send(room_id, MessageBody::Text(text), priority, client_msg_id).await
    }

    /// Sends an application-defined message.
    pub async fn send_custom(
        &self,
        room_id: String,
        sub_type: u32,
        data: Vec<u8>,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, HuddleError> {
        let body = MessageBody::Custom { sub_type, data };
        self.send(room_id, body, priority, client_msg_id).await
    }

    /// A `client_msg_id` no other send of this client has.
    pub fn next_client_msg_id(&self) -> String {
        self.client.next_client_msg_id()
    }

    /// One page of a room's members (`next_flag` empty for the first page).
    pub async fn query_room_members(
        &self,
        room_id: String,
        next_flag: String,
        count: u32,
    ) -> Result<MemberPage, HuddleError> {
        let page = self
            .with(move |c| async move { c.query_room_members(&room_id, &next_flag, count).await })
            .await?;
        Ok(MemberPage { members: members(page.members), next_flag: page.next_flag })
    }

    /// Members in a room.
    pub async fn query_room_online_count(&self, room_id: String) -> Result<u32, HuddleError> {
        self.with(|c| async move { c.query_room_online_count(&room_id).await }).await
    }

    /// Those of `user_ids` (at most 10) that are members, and those that are not.
    pub async fn query_room_members_by_id(
        &self,
        room_id: String,
        user_ids: Vec<String>,
    ) -> Result<MembersById, HuddleError> {
        let (found, not_found) = self
            .with(|c| async move { c.query_room_members_by_id(&room_id, user_ids).await })
            .await?;
        Ok(MembersById { members: members(found), not_found })
    }

    /// The rooms this session is in.
    pub async fn query_joined_rooms(&self) -> Result<Vec<RoomSummary>, HuddleError> {
        let rooms = self.with(|c| async move { c.query_joined_rooms().await }).await?;
        Ok(rooms.into_iter().map(RoomSummary::from).collect())
    }

    /// One page of a room's history (`count` 1-100).
    pub async fn query_history(
        &self,
        room_id: String,
        anchor: HistoryAnchor,
        count: u32,
    ) -> Result<HistoryPage, HuddleError> {
        let page = self
            .with(move |c| async move { c.query_history(&room_id, anchor.into(), count).await })
            .await?;
        Ok(page.into())
    }

    /// Sets room attributes; returns the keys that failed while the others were applied.
    pub async fn set_room_attributes(
        &self,
        room_id: String,
        attributes: Vec<Attribute>,
        is_force: bool,
        is_update_owner: bool,
        is_delete_after_owner_left: bool,
    ) -> Result<Vec<AttributeFailure>, HuddleError> {
        let failed = self
            .with(move |c| async move {
                c.set_room_attributes(
                    &room_id,
                    pairs(attributes),
                    is_force,
                    is_update_owner,
                    is_delete_after_owner_left,
                )
                .await
            })
            .await?;
        Ok(failures(failed))
    }

    /// Deletes room attributes; returns the keys that failed.
    pub async fn delete_room_attributes(
        &self,
        room_id: String,
        keys: Vec<String>,
        is_force: bool,
    ) -> Result<Vec<AttributeFailure>, HuddleError> {
        let failed = self
            .with(move |c| async move { c.delete_room_attributes(&room_id, keys, is_force).await })
            .await?;
        Ok(failures(failed))
    }

    /// A room's attributes, sorted by key.
    pub async fn query_room_attributes(
        &self,
        room_id: String,
    ) -> Result<Vec<Attribute>, HuddleError> {
        let pairs = self.with(|c| async move { c.query_room_attributes(&room_id).await }).await?;
        Ok(attributes(pairs))
    }

    /// Applies room-attribute changes all or none, announced as one event.
    pub async fn batch_room_attributes(
        &self,
        room_id: String,
        ops: Vec<AttributeOp>,
    ) -> Result<(), HuddleError> {
        self.with(move |c| async move {
            let mut batch = c.begin_room_attributes_batch(&room_id);
            for op in ops {
                match op {
                    AttributeOp::Set {
                        attributes,
                        is_force,
                        is_update_owner,
                        is_delete_after_owner_left,
                    } => batch.set(
                        pairs(attributes),
                        is_force,
                        is_update_owner,
                        is_delete_after_owner_left,
                    ),
                    AttributeOp::Delete { keys, is_force } => batch.delete(keys, is_force),
                };
            }
            batch.end().await
        })
        .await
    }

    /// Sets attributes of members (merged into theirs).
    pub async fn set_room_members_attributes(
        &self,
        room_id: String,
        user_ids: Vec<String>,
        attributes: Vec<Attribute>,
    ) -> Result<MembersAttributesSet, HuddleError> {
        let (changed, failed_user_ids) = self
            .with(move |c| async move {
                c.set_room_members_attributes(&room_id, user_ids, pairs(attributes)).await
            })
            .await?;
        Ok(MembersAttributesSet { members: member_attributes(changed), failed_user_ids })
    }

    /// Attributes of some members.
    pub async fn query_room_members_attributes(
        &self,
        room_id: String,
        user_ids: Vec<String>,
    ) -> Result<Vec<MemberAttributes>, HuddleError> {
        let found = self
            .with(|c| async move { c.query_room_members_attributes(&room_id, user_ids).await })
            .await?;
        Ok(member_attributes(found))
    }

    /// One page of the members that have attributes (`next_flag` empty for the first page).
    pub async fn query_room_member_attributes_list(
        &self,
        room_id: String,
        next_flag: String,
        count: u32,
    ) -> Result<MemberAttributesPage, HuddleError> {
        let (found, next_flag) = self
            .with(move |c| async move {
                c.query_room_member_attributes_list(&room_id, &next_flag, count).await
            })
            .await?;
        Ok(MemberAttributesPage { members: member_attributes(found), next_flag })
    }

    /// Replaces the session's token (answer to a `TokenWillExpire` event); returns the new
    /// expiry, Unix seconds.
    pub async fn renew_token(&self, token: String) -> Result<u64, HuddleError> {
        self.with(|c| async move { c.renew_token(&token).await }).await
    }

    /// Leaves every room, ends the session and closes the connection.
    pub async fn logout(&self) -> Result<(), HuddleError> {
        self.with(|c| async move { c.logout().await }).await
    }

    /// Call from the platform's connectivity callback (Android's
    /// `ConnectivityManager.NetworkCallback`, iOS's `NWPathMonitor`) when the network changed:
    /// the client moves to a new UDP socket and probes the server from it at once. A `Migrated`
    /// event follows when the connection survived the move, or `Reconnecting` and `Resumed`
    /// when it had to be replaced (the session, rooms and missed messages are kept either way).
    pub async fn network_changed(&self) -> Result<(), HuddleError> {
        self.with(|c| async move { c.network_changed() }).await
    }

    /// Call when the app goes to the background: closes the connection without logging out
    /// (nothing is sent, the radio can sleep); the server keeps the session for its offline
    /// grace (30 s by default). A `Suspended` event follows; requests fail until `resume`.
    pub async fn suspend(&self) {
        let client = self.client.clone();
        let _ = run(async move {
            client.suspend();
            Ok(())
        })
        .await;
    }

    /// Call when the app comes back: reconnects (in 0-RTT when possible) and resumes the
    /// session; `Reconnecting` then `Resumed` follow, and the messages missed meanwhile arrive
    /// exactly once, in order.
    pub async fn resume(&self) {
        let client = self.client.clone();
        let _ = run(async move {
            client.resume();
            Ok(())
        })
        .await;
    }

    /// Closes the connection without a logout (the server holds the session for its offline
    /// grace period; this client does not reconnect) and waits, bounded, for it to finish.
    /// A pending [`HuddleClient::next_event`] returns nothing, as do later ones, and the
    /// listener gets no more events.
    pub async fn close(&self) {
        self.closed.send_replace(true);
        let client = self.client.clone();
        let _ = run(async move {
            client.shutdown().await;
            Ok(())
        })
        .await;
    }
}

impl HuddleClient {
    /// Sends a message body.
    async fn send(
        &self,
        room_id: String,
        body: MessageBody,
        priority: Priority,
        client_msg_id: Option<String>,
    ) -> Result<SendAck, HuddleError> {
        let ack = self
            .with(move |c| async move {
                c.send_message(&room_id, body, priority.into(), client_msg_id).await
            })
            .await?;
        Ok(ack.into())
    }
}
