//! One QUIC connection carrying the session ([`Link`]): opening it, its control stream (a
//! writer task and a reader that resolves pending requests by id), and the tasks reading its
//! server streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::config::ClientConfig;
use super::error::{closed_error, ClientError};
use super::event::EventSink;
use super::lock::lock;
use super::streams::{accept_streams, Activity, Rooms};
use crate::framed::FrameReader;
use crate::wire::{
    decode_body, encode_frame, Reply, Request, RequestFrame, Response, ResponseFrame, MAX_FRAME_LEN,
};

/// What a request's waiter gets: the server's reply, or why none will come.
pub(super) type Answer = Result<Reply, ClientError>;

/// A request waiting for its answer.
pub(super) struct Waiter {
    /// The order requests were made in (the request id is its low 32 bits).
    order: u64,
    tx: oneshot::Sender<Answer>,
    /// The encoded request, kept when it may be sent again on the next connection.
    frame: Option<Bytes>,
}

impl Waiter {
    /// Answers the request with `error`.
    pub(super) fn fail(self, error: ClientError) {
        let _ = self.tx.send(Err(error));
    }
}

/// The requests of a control stream waiting for their answer, by request id.
#[derive(Default)]
struct Requests {
    /// False once the control stream has ended (or its connection was given up), so that a
    /// request made after that fails at once instead of waiting for an answer that can no longer
    /// come.
    open: bool,
    waiting: HashMap<u32, Waiter>,
}

type Pending = Arc<Mutex<Requests>>;

/// One QUIC connection carrying the session; replaced when the client resumes.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) conn: quinn::Connection,
    control: mpsc::UnboundedSender<Bytes>,
    pending: Pending,
    /// The task reading this connection's server streams; done once all their events are queued.
    pub(super) readers: Readers,
    /// Wakes the stall watchdog out of its idle wait when the readers read stream data.
    pub(super) activity: Arc<Activity>,
}

impl Link {
    /// Queues a request (the `order`-th this client made; its low 32 bits are the request id)
    /// on the control stream; the receiver gets its answer. A `repeatable` request is kept
    /// until answered: if the connection is lost first, [`Link::take_unanswered`] hands it to
    /// the next connection.
    pub(super) fn submit(
        &self,
        order: u64,
        request: Request,
        repeatable: bool,
    ) -> Result<oneshot::Receiver<Answer>, ClientError> {
        let request_id = order as u32;
        let frame = encode_frame(&RequestFrame { request_id, request });
        let (tx, rx) = oneshot::channel();
        let mut pending = lock(&self.pending);
        if !pending.open {
            return Err(closed_error(&self.conn));
        }
        let kept = repeatable.then(|| frame.clone());
        pending.waiting.insert(request_id, Waiter { order, tx, frame: kept });
        // A repeatable request the writer can no longer take is sent on the next connection.
        if self.control.send(frame).is_err() && !repeatable {
            pending.waiting.remove(&request_id);
            return Err(closed_error(&self.conn));
        }
        // An answer is now owed: the stall watchdog watches the link until it comes.
        self.activity.data();
        Ok(rx)
    }

    /// Whether a request on this link is waiting for its answer.
    pub(super) fn awaiting(&self) -> bool {
        !lock(&self.pending).waiting.is_empty()
    }

    /// Waits for the answer to a request submitted on this link (or carried from it to a later
    /// one).
    pub(super) async fn answer(
        &self,
        rx: oneshot::Receiver<Answer>,
    ) -> Result<Response, ClientError> {
        match rx.await {
            Ok(Ok(Reply::Ok(r))) => Ok(r),
            Ok(Ok(Reply::Err(e))) => Err(ClientError::Server { code: e.code, message: e.message }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(closed_error(&self.conn)),
        }
    }

    /// Closes the request table of a connection that is given up: requests made on it from now
    /// on fail at once, the unanswered ones that are not repeatable fail with its close reason,
    /// and the repeatable ones are returned in the order they were made, for
    /// [`Link::carry`] to send again on the next connection.
    pub(super) fn take_unanswered(&self) -> Vec<Waiter> {
        let waiting = {
            let mut pending = lock(&self.pending);
            pending.open = false;
            std::mem::take(&mut pending.waiting)
        };
        let mut kept: Vec<Waiter> =
            waiting.into_values().filter(|w| w.frame.is_some() && !w.tx.is_closed()).collect();
        kept.sort_by_key(|w| w.order);
        kept
    }

    /// Sends the requests a lost connection left unanswered again on this one, in their order,
    /// ahead of anything else.
    pub(super) fn carry(&self, waiters: Vec<Waiter>) {
        let mut pending = lock(&self.pending);
        for w in waiters {
            if let Some(frame) = w.frame.clone() {
                // A writer that is gone already leaves them to the next connection.
                let _ = self.control.send(frame);
            }
            pending.waiting.insert(w.order as u32, w);
        }
    }
}

/// The task reading a connection's server streams, until the supervisor takes it to wait for
/// it.
pub(super) type Readers = Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>;

/// Opens a connection to `server` and its control stream, and starts its reader tasks. With
/// `early` and a session ticket from an earlier connection, the connection is usable at once
/// (0-RTT) and the second value resolves to whether the server took the early data.
pub(super) async fn open_link(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    cfg: &ClientConfig,
    server: SocketAddr,
    events: &EventSink,
    rooms: &Rooms,
    early: bool,
) -> Result<(Link, Option<quinn::ZeroRttAccepted>), ClientError> {
    let connecting = endpoint
        .connect_with(quic.clone(), server, &cfg.server_name)
        .map_err(|e| ClientError::connection(e.to_string()))?;
    let attempt = if early { connecting.into_0rtt() } else { Err(connecting) };
    let (conn, accepted) = match attempt {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => (connecting.await?, None),
    };
    let activity = Arc::new(Activity::default());
    let readers =
        tokio::spawn(accept_streams(conn.clone(), events.clone(), rooms.clone(), activity.clone()));
    let readers = Arc::new(tokio::sync::Mutex::new(Some(readers)));
    let link = open_control(&conn, readers, activity).await?;
    Ok((link, accepted))
}

/// Opens the control stream of a connection whose stream readers already run.
pub(super) async fn open_control(
    conn: &quinn::Connection,
    readers: Readers,
    activity: Arc<Activity>,
) -> Result<Link, ClientError> {
    let (send, recv) = conn.open_bi().await?;
    let pending: Pending = Arc::new(Mutex::new(Requests { open: true, ..Requests::default() }));
    let (control, control_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_control(send, control_rx));
    tokio::spawn(read_control(recv, pending.clone(), activity.clone()));
    Ok(Link { conn: conn.clone(), control, pending, readers, activity })
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
        let waiter = lock(&pending).waiting.remove(&frame.request_id);
        if let Some(w) = waiter {
            let _ = w.tx.send(Ok(frame.reply));
        }
    }
    // Later requests fail at once; dropping the senders fails the waiting requests that are not
    // repeatable with a connection error. The repeatable ones wait for the supervisor, who
    // sends them again on the resumed connection or fails them when the session ends.
    let mut pending = lock(&pending);
    pending.open = false;
    pending.waiting.retain(|_, w| w.frame.is_some());
}
