//! Huddle's client as a [`Link`]: publishing is `send_message` with the load body, and its
//! events reach the runner through its queue or, connected with a listener, a [`Tap`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Client, ClientEvent, ConnectionState, EventListener};
use crate::load::link::{Delivery, DirectFn, Inbox, Link, Session, StallOutcome, Tap};
use crate::load::report::Summary;
use crate::load::stats::SUB_TYPE;
use crate::wire::{Event, MessageBody, Priority, RoomMessage};

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

    /// Moves each endpoint the members share to a new socket once, as an app told of a network
    /// change does ([`Client::network_changed`]): every connection on it then probes the path
    /// from the new address at once (QUIC migration) instead of staying silent until the server
    /// hears from it.
    fn networks_changed(links: &[Arc<Self>]) {
        let mut moved = HashSet::new();
        for client in links {
            let Ok(before) = client.endpoint().local_addr() else { continue };
            if !moved.insert(before) {
                continue;
            }
            if Client::network_changed(client).is_ok() {
                if let Ok(after) = client.endpoint().local_addr() {
                    moved.insert(after);
                }
            }
        }
    }

    fn finish(&self, summary: &mut Summary) {
        let s = self.connection().stats();
        summary.client_lost_packets += s.path.lost_packets;
        summary.client_sent_packets += s.path.sent_packets;
        summary.client_congestion_events += s.path.congestion_events;
        summary.client_tail_copies += s.path.tail_copies;
        summary.client_max_rtt_us = summary.client_max_rtt_us.max(s.path.rtt.as_micros() as u64);
        self.close();
    }

    fn watch_stalled(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = StallOutcome> + Send + 'static {
        watch_stalled(self.clone(), stop)
    }
}

/// Watches a member that stopped reading until `stop` changes: each close of its connection,
/// and whether the library resumed it on a new one.
async fn watch_stalled(client: Arc<Client>, mut stop: watch::Receiver<bool>) -> StallOutcome {
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
            quinn::ConnectionError::ApplicationClosed(c) => {
                (Some(c.error_code.into_inner()), String::from_utf8_lossy(&c.reason).into_owned())
            }
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

/// A room message as the runner counts it: its room, and its body when it is a load message.
pub(super) fn message_delivery(m: RoomMessage) -> Delivery {
    Delivery::Message {
        room: m.room_id,
        body: match m.body {
            MessageBody::Custom { sub_type, data } if sub_type == SUB_TYPE => Some(data),
            _ => None,
        },
    }
}

/// What a Huddle client event is to the runner.
fn delivery(e: ClientEvent) -> Delivery {
    match e {
        ClientEvent::Event(Event::RoomMessage(m)) => message_delivery(m),
        ClientEvent::Reconnecting { reason } => Delivery::Session(Session::Reconnecting { reason }),
        ClientEvent::Resumed { rooms, .. } => Delivery::Session(Session::Resumed {
            replayed: rooms.iter().map(|r| u64::from(r.replayed)).sum(),
        }),
        ClientEvent::Disconnected { code, reason } => {
            Delivery::Session(Session::Disconnected { code, reason })
        }
        _ => Delivery::Session(Session::Other),
    }
}

/// The listener to connect a client with, feeding `tap`.
pub(super) fn listener(tap: &Arc<Tap>) -> EventListener {
    let tap = tap.clone();
    Arc::new(move |e| tap.push(delivery(e)))
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
