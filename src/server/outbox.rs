//! A connection's outbound side: one writer task per stream, fed by an unbounded queue (a
//! [`Tx`]); all of a connection's queues together are bounded by explicit byte and frame
//! counters.
//!
//! Pushing never blocks, so the core lock is never held across a write. What a slow consumer
//! experiences: while its queue is over half of either bound, low-priority messages for it are
//! dropped; when the queue reaches the bound, its connection is closed with `slow_consumer` and
//! nothing more is queued for it. Other connections are unaffected either way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::config::QueueLimits;
use super::probe::FanoutProbe;
use super::web::{Link, SendStream};
use crate::core::RoomKey;
use crate::wire::{encode_frame, ErrorCode, Priority, StreamHeader};

/// Frames written per write call at most (they coalesce into as few packets as possible).
const WRITE_BATCH: usize = 64;

/// How long a closing connection waits for its control and session streams to be delivered.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// A queued frame.
struct Item {
    frame: Bytes,
    /// A high-priority room message: a batch holding one raises its stream's QUIC priority above
    /// the other rooms' until a batch without one follows.
    urgent: bool,
    /// Held until the frame is handed to QUIC when its fan-out is being timed.
    probe: Option<Arc<FanoutProbe>>,
}

/// The fan-out probes of one write: released once it is done.
type Probes = SmallVec<[Arc<FanoutProbe>; 1]>;

/// The frames of one write. A connection that is not busy writes one frame at a time, and two
/// fit inline: no allocation per delivery, and none held by an idle writer. A burst's batch
/// spills to the heap, which the writer gives back after that write.
type Chunks = SmallVec<[Bytes; 2]>;

/// The queue between the pushers of one stream and its writer task.
///
/// Not a tokio channel: an unbounded mpsc channel allocates a 32-slot block (1.3 KB here) up front
/// and keeps it, and an idle connection has three of them. This queue holds no allocation while
/// it is empty (see BENCHMARKS.md, idle connections).
struct Lane {
    queue: Mutex<LaneQueue>,
    /// Wakes the writer: a frame arrived in an empty queue, or the last [`Tx`] was dropped.
    ready: Notify,
}

struct LaneQueue {
    frames: VecDeque<Item>,
    /// Live [`Tx`] handles. At zero the writer finishes its stream once the queue is empty.
    senders: usize,
    /// The writer is gone: nothing more is queued.
    closed: bool,
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves up to `max` queued frames into `chunks` (and their fan-out probes into `probes`),
    /// waiting for one if none is queued, and says whether one of them is urgent. `None` once
    /// every [`Tx`] is gone and the queue is empty.
    async fn recv_many(
        &self,
        chunks: &mut Chunks,
        probes: &mut Probes,
        max: usize,
    ) -> Option<bool> {
        loop {
            {
                let mut q = self.lock();
                let n = q.frames.len().min(max);
                if n > 0 {
                    let mut urgent = false;
                    chunks.extend(q.frames.drain(..n).map(|item| {
                        urgent |= item.urgent;
                        probes.extend(item.probe);
                        item.frame
                    }));
                    if q.frames.is_empty() {
                        // Drained: hold no memory while idle.
                        q.frames = VecDeque::new();
                    }
                    return Some(urgent);
                }
                if q.senders == 0 {
                    return None;
                }
            }
            // A push into the empty queue between the unlock and this await stores a permit.
            self.ready.notified().await;
        }
    }

    /// Returns once every [`Tx`] is gone: nobody will queue more, and no stream is needed for
    /// what might still be queued (the room was left before its stream could be opened).
    async fn abandoned(&self) {
        loop {
            if self.lock().senders == 0 {
                return;
            }
            // Wakes for pushes too; `recv_many` looks at the queue before it waits, so a permit
            // taken here is never missed there.
            self.ready.notified().await;
        }
    }

    /// Refuses further frames and hands back those still queued.
    fn close(&self) -> VecDeque<Item> {
        let mut q = self.lock();
        q.closed = true;
        std::mem::take(&mut q.frames)
    }
}

/// A handle that queues frames for one stream's writer. Clones share the stream; once the last
/// one is dropped, the writer finishes the stream after writing what is queued.
struct Tx(Arc<Lane>);

impl Tx {
    fn new() -> Tx {
        let queue = LaneQueue { frames: VecDeque::new(), senders: 1, closed: false };
        Tx(Arc::new(Lane { queue: Mutex::new(queue), ready: Notify::new() }))
    }

    /// Queues a frame; false when the writer is gone.
    fn send(&self, item: Item) -> bool {
        let mut q = self.0.lock();
        if q.closed {
            return false;
        }
        let was_empty = q.frames.is_empty();
        q.frames.push_back(item);
        drop(q);
        // A writer with frames in hand comes back for more without waiting.
        if was_empty {
            self.0.ready.notify_one();
        }
        true
    }
}

impl Clone for Tx {
    fn clone(&self) -> Tx {
        self.0.lock().senders += 1;
        Tx(self.0.clone())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let last = {
            let mut q = self.0.lock();
            q.senders -= 1;
            q.senders == 0
        };
        if last {
            self.0.ready.notify_one();
        }
    }
}

/// Counters shared by every connection (for logs, metrics and tests).
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Low-priority frames dropped because a receiver was slow.
    pub dropped_low: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_consumers: AtomicU64,
    /// The most bytes any one connection has had queued (never above `[queue] max_bytes`).
    pub peak_queued_bytes: AtomicUsize,
    /// Frames refused because they would have taken a queue past its bound (the connection is
    /// then closed as a slow consumer).
    pub dropped_slow: AtomicU64,
    /// Frames for a connection or stream that is closing or gone.
    pub dropped_closing: AtomicU64,
    /// Frame bytes written to streams.
    pub bytes_sent: AtomicU64,
    /// Low-priority messages sent as QUIC datagrams (their bytes are not in `bytes_sent`).
    pub datagrams_sent: AtomicU64,
    /// Writers waiting for the client to allow one more unidirectional stream, on every
    /// connection (at most two per room and one for the session, per connection).
    pub waiting_for_stream: AtomicUsize,
}

/// A connection's streams must have been idle at least this long (and two round trips) before a
/// low message goes to it as a datagram.
const DATAGRAM_QUIET: Duration = Duration::from_millis(20);

/// A room's streams on one connection: medium and high messages (and member and attribute
/// events) in seq order on one stream; low-priority messages on a second stream of lower QUIC
/// priority, opened on first use, so that they never delay the others.
struct RoomLanes {
    key: RoomKey,
    main: Tx,
    low: Option<Tx>,
    low_header: Bytes,
}

/// Stream priorities (higher is sent first).
const SESSION_PRIORITY: i32 = 10;
const ROOM_PRIORITY: i32 = 0;
const LOW_PRIORITY: i32 = -10;
/// A room stream while it carries a high-priority message: ahead of the other rooms' medium
/// traffic under congestion (within the room, seq order still holds: it is one stream).
const URGENT_ROOM_PRIORITY: i32 = 5;

#[derive(Default)]
struct Inner {
    control: Option<Tx>,
    session: Option<Tx>,
    rooms: Vec<RoomLanes>,
    close: Option<Option<ErrorCode>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

/// One connection's outbound queues. See the module documentation.
pub struct Outbox {
    /// Benchmark baseline: every room's events on one ordered stream (as over TCP).
    single_stream: bool,
    /// Low messages may travel as datagrams (`[transport] low_datagrams`).
    low_datagrams: bool,
    /// quinn's free datagram buffer space with no datagram waiting (it reserves some itself).
    datagram_idle_space: usize,
    /// The counters the writers keep with the outbox.
    counters: Arc<Counters>,
    link: Link,
    inner: Mutex<Inner>,
    limits: QueueLimits,
    /// Signalled once when the connection should close.
    pub close_requested: Notify,
}

impl Outbox {
    /// An outbox whose control replies go to `control`. A WebTransport session sends no
    /// datagrams (docs/PROTOCOL.md, "WebTransport").
    pub(crate) fn new(
        link: Link,
        control: SendStream,
        limits: QueueLimits,
        stats: Arc<OutboxStats>,
        single_stream: bool,
        low_datagrams: bool,
    ) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            single_stream,
            low_datagrams: low_datagrams && !single_stream && !link.is_web(),
            datagram_idle_space: link.conn().datagram_send_buffer_space(),
            counters: Arc::new(Counters {
                born: Instant::now(),
                last_stream_write_us: AtomicU64::new(0),
                queued_bytes: AtomicUsize::new(0),
                queued_frames: AtomicUsize::new(0),
                stats,
            }),
            link,
            inner: Mutex::new(Inner::default()),
            limits,
            close_requested: Notify::new(),
        });
        let tx = outbox.spawn_writer(StreamTarget::Existing(control), None, 0);
        outbox.lock().control = Some(tx);
        outbox
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock would be a bug in this module; recover the data anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the session stream (after a successful login).
    pub fn open_session(self: &Arc<Self>) {
        let header = encode_frame(&StreamHeader::Session);
        let tx = self.spawn_writer(StreamTarget::OpenUni, Some(header), SESSION_PRIORITY);
        self.lock().session = Some(tx);
    }

    /// Opens the stream of a room, writing `header` first; `low_header` starts the room's
    /// low-priority stream when that is opened.
    pub fn open_room(self: &Arc<Self>, room: RoomKey, header: Bytes, low_header: Bytes) {
        if self.lock().close.is_some() {
            return;
        }
        let shared = if self.single_stream {
            let inner = self.lock();
            inner.rooms.first().map(|l| l.main.clone())
        } else {
            None
        };
        let single = shared.is_some() || self.single_stream;
        let main = match shared {
            Some(tx) => tx,
            None => self.spawn_writer(StreamTarget::OpenUni, Some(header), ROOM_PRIORITY),
        };
        let mut inner = self.lock();
        if single {
            // One stream for everything: a leave must not finish it while other rooms use it,
            // so the lanes stay registered (their events simply stop) and low shares it too.
            inner.rooms.retain(|l| l.key != room);
            inner.rooms.push(RoomLanes {
                key: room,
                main: main.clone(),
                low: Some(main),
                low_header,
            });
            return;
        }
        inner.rooms.retain(|l| l.key != room);
        inner.rooms.push(RoomLanes { key: room, main, low: None, low_header });
    }

    /// Finishes the stream of a room once what is queued on it has been written.
    pub fn close_room(&self, room: RoomKey) {
        self.lock().rooms.retain(|l| l.key != room);
    }

    /// Queues a control-stream reply (never dropped; counts toward the bound).
    pub fn push_control(&self, frame: Bytes) {
        let tx = self.lock().control.clone();
        self.enqueue(tx.as_ref(), frame, Priority::High, false, None);
    }

    /// Queues a frame on a room stream (`Some`) or the session stream (`None`); true when it
    /// was queued (false: dropped, and counted in [`OutboxStats`]).
    /// `urgent`: a high-priority room message (see [`Item`]); `probe`: held until the frame is
    /// handed to QUIC (or dropped), when its fan-out is being timed.
    pub(crate) fn push(
        self: &Arc<Self>,
        room: Option<RoomKey>,
        frame: Bytes,
        priority: Priority,
        urgent: bool,
        probe: Option<Arc<FanoutProbe>>,
    ) -> bool {
        let tx = match room {
            None => self.lock().session.clone(),
            Some(key) if priority == Priority::Low => {
                if self.try_datagram(key, &frame) {
                    return true;
                }
                self.low_lane(key)
            }
            Some(key) => self.lock().rooms.iter().find(|l| l.key == key).map(|l| l.main.clone()),
        };
        self.enqueue(tx.as_ref(), frame, priority, urgent, probe)
    }

    /// Bytes and frames queued now, across all the connection's streams.
    pub fn queued(&self) -> (usize, usize) {
        let c = &self.counters;
        (c.queued_bytes.load(Ordering::Relaxed), c.queued_frames.load(Ordering::Relaxed))
    }

    /// The QUIC connection's statistics (path RTT, losses, UDP bytes).
    pub fn connection_stats(&self) -> quinn::ConnectionStats {
        self.link.conn().stats()
    }

    /// The client's address now (it changes when the client migrates).
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.link.conn().remote_address()
    }

    /// Sends a low-priority room message as a QUIC datagram, if the client accepts datagrams,
    /// it fits one, and the connection is quiet: nothing of ours queued for it, no stream data
    /// handed to quinn within the last two round trips (at least [`DATAGRAM_QUIET`]), and no
    /// earlier datagram still waiting in quinn. quinn puts DATAGRAM frames ahead of stream data
    /// in a packet; on a quiet connection there is no stream data left to delay, and a datagram
    /// cannot overtake low messages still on their way on the low stream (the client drops a
    /// low message older than one it has passed on). Datagrams thus serve sparse low traffic
    /// (typing, presence); a busy connection's low messages take the low stream, whose QUIC
    /// priority is below every other stream's. The datagram is the same frame bytes the low
    /// stream would carry (one length-prefixed event), shared by every recipient.
    fn try_datagram(&self, key: RoomKey, frame: &Bytes) -> bool {
        let c = &self.counters;
        if !self.low_datagrams || c.queued_bytes.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let last_write = Duration::from_micros(c.last_stream_write_us.load(Ordering::Relaxed));
        let quiet_for = c.born.elapsed().saturating_sub(last_write);
        if last_write > Duration::ZERO
            && quiet_for < (self.link.conn().rtt() * 2).max(DATAGRAM_QUIET)
        {
            return false;
        }
        if !self.link.conn().max_datagram_size().is_some_and(|max| frame.len() <= max)
            || self.link.conn().datagram_send_buffer_space() < self.datagram_idle_space
        {
            return false;
        }
        // Same rule as the streams: only while this connection is in the room and open.
        {
            let inner = self.lock();
            if inner.close.is_some() || !inner.rooms.iter().any(|l| l.key == key) {
                return false;
            }
        }
        if self.link.conn().send_datagram(frame.clone()).is_err() {
            return false;
        }
        c.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The low-priority stream of a room, opened on first use.
    fn low_lane(self: &Arc<Self>, key: RoomKey) -> Option<Tx> {
        let header = {
            let inner = self.lock();
            let lanes = inner.rooms.iter().find(|l| l.key == key)?;
            if let Some(tx) = &lanes.low {
                return Some(tx.clone());
            }
            lanes.low_header.clone()
        };
        let tx = self.spawn_writer(StreamTarget::OpenUni, Some(header), LOW_PRIORITY);
        let mut inner = self.lock();
        let lanes = inner.rooms.iter_mut().find(|l| l.key == key)?;
        Some(lanes.low.get_or_insert(tx).clone())
    }

    fn enqueue(
        &self,
        tx: Option<&Tx>,
        frame: Bytes,
        priority: Priority,
        urgent: bool,
        probe: Option<Arc<FanoutProbe>>,
    ) -> bool {
        let c = &self.counters;
        let Some(tx) = tx else {
            c.stats.dropped_closing.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let bytes = c.queued_bytes.load(Ordering::Relaxed);
        let frames = c.queued_frames.load(Ordering::Relaxed);
        let (max_bytes, max_frames) = (self.limits.max_bytes, self.limits.max_frames);
        if priority == Priority::Low && (bytes >= max_bytes / 2 || frames >= max_frames / 2) {
            c.stats.dropped_low.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if bytes + frame.len() > max_bytes || frames + 1 > max_frames {
            c.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            c.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
            self.close_now(ErrorCode::SlowConsumer);
            return false;
        }
        let queued = c.queued_bytes.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        // Shared by every connection: read first, so that the common case (no new peak) does not
        // write a contended cache line on every queued frame.
        if queued > c.stats.peak_queued_bytes.load(Ordering::Relaxed) {
            c.stats.peak_queued_bytes.fetch_max(queued, Ordering::Relaxed);
        }
        c.queued_frames.fetch_add(1, Ordering::Relaxed);
        // A failed send means the writer is gone (its stream failed); the connection task will
        // notice the close.
        let len = frame.len();
        if tx.send(Item { frame, urgent, probe }) {
            return true;
        }
        c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        c.queued_frames.fetch_sub(1, Ordering::Relaxed);
        c.stats.dropped_closing.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Asks for the connection to close after its control and session streams are delivered
    /// (bounded by [`CLOSE_FLUSH`]). `None` is a normal close (code 0).
    pub fn close(&self, code: Option<ErrorCode>) {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return;
        }
        inner.close = Some(code);
        inner.control = None;
        inner.session = None;
        inner.rooms.clear();
        drop(inner);
        self.close_requested.notify_one();
    }

    /// Closes the connection at once, abandoning whatever is queued.
    pub fn close_now(&self, code: ErrorCode) {
        {
            let mut inner = self.lock();
            if inner.close.is_some() {
                return;
            }
            inner.close = Some(Some(code));
            inner.control = None;
            inner.session = None;
            inner.rooms.clear();
        }
        self.link.close(Some(code));
        self.close_requested.notify_one();
    }

    /// The close code asked for, if a close was asked for.
    pub fn close_code(&self) -> Option<Option<ErrorCode>> {
        self.lock().close
    }

    /// Waits (bounded) for the writers to deliver what they hold, then closes the connection.
    pub async fn finish_close(&self) {
        let (code, writers) = {
            let mut inner = self.lock();
            (inner.close.unwrap_or(None), std::mem::take(&mut inner.writers))
        };
        let flush = async {
            for w in writers {
                let _ = w.await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_FLUSH, flush).await;
        self.link.close(code);
    }

    fn spawn_writer(
        self: &Arc<Self>,
        target: StreamTarget,
        header: Option<Bytes>,
        prio: i32,
    ) -> Tx {
        let tx = Tx::new();
        // However the writer ends, what is still queued leaves the counters. The writer reaches
        // its lane and counters through this guard only.
        let w = CloseOnExit { lane: tx.0.clone(), counters: self.counters.clone() };
        // Boxed, and freed once the stream is open: a task keeps room for the largest of its
        // futures for as long as it lives, and a writer lives as long as its stream (idle
        // connections, BENCHMARKS.md).
        let start = Box::pin(open_stream(target, self.link.clone(), header, prio));
        let waiting = WaitingForStream::new(self.counters.clone());
        let handle = tokio::spawn(async move {
            // A client that grants few streams keeps a writer waiting here; once its room is
            // left (every Tx dropped) the writer gives up, with what it held, instead of waiting
            // for ever: a join/leave loop leaves no writers behind.
            let opened = tokio::select! {
                biased;
                stream = start => stream,
                () = w.lane.abandoned() => None,
            };
            drop(waiting);
            let Some(mut stream) = opened else {
                return;
            };
            let mut chunks = Chunks::new();
            let mut probes = Probes::new();
            let mut current = prio;
            while let Some(urgent) = w.lane.recv_many(&mut chunks, &mut probes, WRITE_BATCH).await {
                let n = chunks.len();
                let len: usize = chunks.iter().map(Bytes::len).sum();
                let want = if urgent { prio.max(URGENT_ROOM_PRIORITY) } else { prio };
                if want != current {
                    stream.set_priority(want);
                    current = want;
                }
                let res = stream.write_all_chunks(&mut chunks).await;
                let c = &w.counters;
                if res.is_ok() {
                    c.stats.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
                    // At least 1: zero means "never written".
                    let us = (c.born.elapsed().as_micros() as u64).max(1);
                    c.last_stream_write_us.store(us, Ordering::Relaxed);
                }
                c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                c.queued_frames.fetch_sub(n, Ordering::Relaxed);
                // Handed to QUIC (or failed): the fan-outs being timed are done with this copy.
                empty(&mut probes);
                empty(&mut chunks);
                if res.is_err() {
                    // `w` takes what is left out of the counters as the task ends.
                    return;
                }
            }
            stream.finish();
            // Boxed for the reason `start` is: only a finishing writer needs this state.
            Box::pin(stream.stopped()).await;
        });
        let mut inner = self.lock();
        inner.writers.retain(|h| !h.is_finished());
        inner.writers.push(handle);
        tx
    }
}

/// What a connection's writers share with its outbox.
struct Counters {
    /// When the outbox was made, and when a writer last handed stream data to quinn
    /// (microseconds after `born`): datagrams go only to connections whose streams are idle.
    born: Instant,
    last_stream_write_us: AtomicU64,
    /// Bytes and frames queued across all the connection's streams (the bounds' counters).
    queued_bytes: AtomicUsize,
    queued_frames: AtomicUsize,
    stats: Arc<OutboxStats>,
}

/// A writer's stream, opened if need be, with its priority set and its header written; `None`
/// when that failed (the connection is gone).
async fn open_stream(
    target: StreamTarget,
    link: Link,
    header: Option<Bytes>,
    prio: i32,
) -> Option<SendStream> {
    let mut stream = match target {
        StreamTarget::Existing(s) => s,
        StreamTarget::OpenUni => link.open_uni().await?,
    };
    stream.set_priority(prio);
    if let Some(h) = header {
        stream.write_all(&h).await.ok()?;
    }
    Some(stream)
}

/// Empties a writer's batch buffer. One that spilled to the heap for a burst is given back: an
/// idle writer holds none (BENCHMARKS.md, idle connections).
fn empty<A: smallvec::Array>(v: &mut SmallVec<A>) {
    if v.spilled() {
        *v = SmallVec::new();
    } else {
        v.clear();
    }
}

/// Counts a writer in [`OutboxStats::waiting_for_stream`] until its stream is open or it gives
/// up.
struct WaitingForStream(Arc<Counters>);

impl WaitingForStream {
    fn new(counters: Arc<Counters>) -> WaitingForStream {
        counters.stats.waiting_for_stream.fetch_add(1, Ordering::Relaxed);
        WaitingForStream(counters)
    }
}

impl Drop for WaitingForStream {
    fn drop(&mut self) {
        self.0.stats.waiting_for_stream.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Closes a writer's lane when the writer ends and takes what was still queued out of the
/// connection's counters.
struct CloseOnExit {
    lane: Arc<Lane>,
    counters: Arc<Counters>,
}

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        let left = self.lane.close();
        let len: usize = left.iter().map(|item| item.frame.len()).sum();
        self.counters.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        self.counters.queued_frames.fetch_sub(left.len(), Ordering::Relaxed);
    }
}

enum StreamTarget {
    Existing(SendStream),
    OpenUni,
}

/// Closes a connection with an application code (0 for a normal close) and the code's name.
pub fn close_connection(conn: &quinn::Connection, code: Option<ErrorCode>) {
    match code {
        Some(c) => conn.close(quinn::VarInt::from_u32(u32::from(c.as_u16())), c.name().as_bytes()),
        None => conn.close(quinn::VarInt::from_u32(0), b"bye"),
    }
}
