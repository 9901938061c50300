//! The readers of a connection's server streams and datagrams: they decode events, drop
//! replayed and overtaken messages, hand the rest to the [`EventSink`], and tell the
//! supervisor through [`Activity`] that data came in or that a stream broke.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{ClientEvent, EventSink};
use super::lock::lock;
use crate::framed::{FrameReader, ReadError};
use crate::wire::{
    decode_body, single_frame_body, Event, Priority, RoomMessage, StreamHeader, MAX_FRAME_LEN,
};

/// Rooms this session is in, with the last seq of a medium or high message delivered to the
/// application (`None` until known). Drives resumption and drops replayed duplicates.
pub(super) type Rooms = Arc<Mutex<HashMap<String, Option<u64>>>>;

/// How a link's readers tell its stall watchdog that stream data came in. The watchdog polls
/// quinn's counters only while data flows; on a quiet link it sleeps until a reader calls
/// [`Activity::data`], so an idle connection costs no timer wake-ups (a phone's battery, a load
/// generator holding 100,000 connections).
/// The readers also report a stream that broke while the connection lives on (a frame that does
/// not decode or never completes, a stream the server reset): the link can no longer deliver
/// everything in order, so the supervisor resumes on a new connection, as after a stall.
#[derive(Default)]
pub(super) struct Activity {
    /// Set while the watchdog sleeps until data comes in.
    pub(super) idle: AtomicBool,
    /// Wakes the sleeping watchdog.
    pub(super) wake: tokio::sync::Notify,
    /// Why a stream broke: the first reason reported.
    broken: std::sync::OnceLock<String>,
    broke: tokio::sync::Notify,
}

impl Activity {
    /// A reader read stream data: wakes the watchdog if it sleeps.
    pub(super) fn data(&self) {
        if self.idle.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// A reader's stream ended in a way that loses what the server sent on it. An error of the
    /// connection itself is not reported: the supervisor sees the connection close.
    pub(super) fn stream_broke(&self, what: &str, error: &ReadError) {
        if matches!(error, ReadError::Stream(_)) {
            return;
        }
        if self.broken.set(format!("{what}: {error}")).is_ok() {
            self.broke.notify_one();
        }
    }

    /// Resolves with the reason once a reader reported a broken stream.
    pub(super) async fn broken(&self) -> String {
        loop {
            if let Some(why) = self.broken.get() {
                return why.clone();
            }
            self.broke.notified().await;
        }
    }
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

pub(super) async fn accept_streams(
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
