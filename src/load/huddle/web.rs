//! Members that connect as a browser's WebTransport stack does (`--web-members`): a
//! web-transport-quinn session (ALPN `h3`, an extended CONNECT to `/huddle`, the server's
//! certificate accepted by its SHA-256), the native frames on it: requests and their responses
//! on the session's bidirectional stream, events on the streams the server opens. Login, entering
//! rooms and sending are all a member needs here; no resumption. [`Mixed`] puts them in one run
//! with the client library's members.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::future::Either;
use futures::stream::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use web_transport_quinn as wtq;

use super::link::{message_delivery, HuddleInbox};
use super::{Names, CONNECT_ATTEMPTS, CONNECT_TIMEOUT, TOKEN_TTL_S};
use crate::client::Client;
use crate::framed::read_frame;
use crate::load::args::{LoadConfig, Trust};
use crate::load::link::{Delivery, DirectFn, Inbox, Link, Session, Tap};
use crate::load::report::Summary;
use crate::load::runner::Member;
use crate::load::stats::SUB_TYPE;
use crate::server::WEB_PATH;
use crate::wire::{
    decode_body, encode_frame, Event, Login, MessageBody, Priority, Reply, Request, RequestFrame,
    Response, ResponseFrame, RoomConfig, RoomInfo, StreamHeader, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

/// How long the rest of a frame may take once its first byte has arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests waiting for their response, by request id.
type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Reply>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One member's WebTransport session speaking the native frames.
pub struct WebMember {
    session: wtq::Session,
    /// Frames for the control stream's writer task, in order.
    out: mpsc::UnboundedSender<bytes::Bytes>,
    pending: Pending,
    next_id: AtomicU32,
}

impl WebMember {
    /// Opens a session to `url` and its control stream, and starts its readers; events go to
    /// `tap`.
    async fn open(client: &wtq::Client, url: &url::Url, tap: Arc<Tap>) -> Result<WebMember> {
        let session = client.connect(url.clone()).await?;
        let (mut send, mut recv) = session.open_bi().await?;
        let (out, mut queued) = mpsc::unbounded_channel::<bytes::Bytes>();
        tokio::spawn(async move {
            while let Some(frame) = queued.recv().await {
                if send.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let replies = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(body)) = read_frame(&mut recv, MAX_FRAME_LEN, FRAME_TIMEOUT).await {
                let Ok(frame) = decode_body::<ResponseFrame>(&body) else { break };
                if let Some(tx) = lock(&replies).remove(&frame.request_id) {
                    let _ = tx.send(frame.reply);
                }
            }
            lock(&replies).clear();
        });
        tokio::spawn(read_events(session.clone(), tap));
        Ok(WebMember { session, out, pending, next_id: AtomicU32::new(1) })
    }

    /// Queues `request` on the control stream at once; the future resolves with its reply.
    fn request(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Reply, String>> + Send + 'static {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        let queued = self.out.send(encode_frame(&RequestFrame { request_id, request })).is_ok();
        async move {
            match queued {
                true => rx.await.map_err(|_| "the session is closed".to_string()),
                false => Err("the session is closed".to_string()),
            }
        }
    }

    /// A request that must succeed with `what` (login, entering a room).
    async fn expect(&self, request: Request, what: &str) -> Result<Response> {
        match self.request(request).await.map_err(|e| anyhow!(e))? {
            Reply::Ok(r) => Ok(r),
            Reply::Err(e) => Err(anyhow!("{what}: {} ({})", e.message, e.code)),
        }
    }
}

/// Reads every stream the server opens: its header, then events, each to `tap`.
async fn read_events(session: wtq::Session, tap: Arc<Tap>) {
    while let Ok(mut recv) = session.accept_uni().await {
        let tap = tap.clone();
        tokio::spawn(async move {
            let Ok(Some(head)) = read_frame(&mut recv, MAX_FRAME_LEN, FRAME_TIMEOUT).await else {
                return;
            };
            if decode_body::<StreamHeader>(&head).is_err() {
                return;
            }
            while let Ok(Some(body)) = read_frame(&mut recv, MAX_FRAME_LEN, FRAME_TIMEOUT).await {
                match decode_body::<Event>(&body) {
                    Ok(e) => tap.push(delivery(e)),
                    Err(_) => return,
                }
            }
        });
    }
}

/// What an event is to the runner.
fn delivery(e: Event) -> Delivery {
    match e {
        Event::RoomMessage(m) => message_delivery(m),
        _ => Delivery::Session(Session::Other),
    }
}

impl Link for WebMember {
    type Inbox = WebInbox;

    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let reply = self.request(Request::SendRoomMessage {
            room_id: room.to_string(),
            body: MessageBody::Custom { sub_type: SUB_TYPE, data: body },
            priority,
            client_msg_id: None,
        });
        async move {
            match reply.await? {
                Reply::Ok(_) => Ok(()),
                Reply::Err(e) => Err(format!("{} ({})", e.message, e.code)),
            }
        }
    }

    fn finish(&self, summary: &mut Summary) {
        let s = quinn::Connection::stats(&self.session);
        summary.client_lost_packets += s.path.lost_packets;
        summary.client_sent_packets += s.path.sent_packets;
        summary.client_congestion_events += s.path.congestion_events;
        summary.client_tail_copies += s.path.tail_copies;
        summary.client_max_rtt_us = summary.client_max_rtt_us.max(s.path.rtt.as_micros() as u64);
        self.session.close(0, b"bye");
    }
}

/// A web member's receiving half, fed by its stream readers.
pub struct WebInbox(Arc<Tap>);

impl Inbox for WebInbox {
    async fn next(&mut self) -> Option<Delivery> {
        Some(self.0.next().await)
    }

    fn direct(self, f: DirectFn) -> Result<(), Self> {
        self.0.direct(f);
        Ok(())
    }
}

/// Connects, logs in and enters the rooms of every member `cfg.is_web` picks, over
/// `cfg.connections_per_endpoint` sessions per client endpoint. Returns the members that are in
/// their own room (with how long each took), and what failed.
pub(super) async fn connect(
    cfg: &LoadConfig,
    trust: &Trust,
    server: SocketAddr,
    names: &Names,
) -> Result<(Vec<Member<WebMember>>, Vec<Duration>, Vec<String>)> {
    let hash = cfg.web_cert_hash.as_deref().ok_or_else(|| {
        anyhow!("--web-members needs --web-cert-hash (a spawned server prints it)")
    })?;
    let hash = hex::decode(hash.trim()).context("--web-cert-hash: not hex")?;
    let url: url::Url = format!("https://{server}{WEB_PATH}").parse()?;
    let which: Vec<(usize, usize)> = (0..cfg.rooms)
        .flat_map(|r| (0..cfg.members).filter(|&j| cfg.is_web(j)).map(move |j| (r, j)))
        .collect();
    let endpoints = which.len().div_ceil(cfg.connections_per_endpoint.max(1));
    let clients = (0..endpoints)
        .map(|_| wtq::ClientBuilder::new().with_server_certificate_hashes(vec![hash.clone()]))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dials = futures::stream::iter(which.into_iter().enumerate())
        .map(|(i, (r, j))| {
            let (client, url) = (&clients[i % clients.len()], &url);
            async move {
                let started = Instant::now();
                (r, j, dial(cfg, trust, client, url, names, r, j).await, started.elapsed())
            }
        })
        .buffer_unordered(cfg.connect_concurrency);
    let (mut members, mut took, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    while let Some((r, j, res, elapsed)) = dials.next().await {
        match res {
            Ok((link, tap, rooms)) => {
                took.push(elapsed);
                members.push(Member {
                    link: Arc::new(link),
                    inbox: Some(WebInbox(tap)),
                    room: r,
                    room_id: names.room_id(r),
                    index: j,
                    rooms,
                })
            }
            Err(e) => failures.push(format!("web member {r}/{j}: {e:#}")),
        }
    }
    Ok((members, took, failures))
}

/// Member `j` of room `r` over WebTransport: its session, logged in and in its rooms (its own,
/// then the next `rooms_per_member - 1`), retrying.
async fn dial(
    cfg: &LoadConfig,
    trust: &Trust,
    client: &wtq::Client,
    url: &url::Url,
    names: &Names,
    r: usize,
    j: usize,
) -> Result<(WebMember, Arc<Tap>, Vec<usize>)> {
    let user = names.user(r, j);
    let now_s = names.now_s;
    let token = trust
        .keys
        .mint(&trust.key_id, &user, now_s.saturating_sub(60), now_s + TOKEN_TTL_S)
        .unwrap_or_default();
    let rooms: Vec<usize> = (0..cfg.rooms_per_member).map(|d| (r + d) % cfg.rooms).collect();
    let once = || async {
        let tap = Arc::new(Tap::default());
        let member = WebMember::open(client, url, tap.clone()).await?;
        let login = Login {
            protocol_version: PROTOCOL_VERSION,
            user_id: user.clone(),
            user_name: user.clone(),
            token: token.clone(),
        };
        member.expect(Request::Login(login), "login").await?;
        for &q in &rooms {
            let info = RoomInfo { room_id: names.room_id(q), room_name: format!("load room {q}") };
            let enter = Request::EnterRoom { info, config: RoomConfig::default() };
            member.expect(enter, &format!("entering room {q}")).await?;
        }
        anyhow::Ok((member, tap))
    };
    let mut last = anyhow!("no attempt");
    for _ in 0..CONNECT_ATTEMPTS {
        match tokio::time::timeout(CONNECT_TIMEOUT, once()).await {
            Ok(Ok((member, tap))) => return Ok((member, tap, rooms)),
            Ok(Err(e)) => last = e,
            Err(_) => last = anyhow!("timed out"),
        }
    }
    Err(last)
}

/// A member of a run with both kinds: the client library's, or a WebTransport session.
pub enum Mixed {
    /// A native member (the client library, ALPN `huddle/1`).
    Native(Arc<Client>),
    /// A WebTransport member.
    Web(Arc<WebMember>),
}

/// A [`Mixed`] member's receiving half.
pub enum MixedInbox {
    /// A native member's.
    Native(HuddleInbox),
    /// A WebTransport member's.
    Web(WebInbox),
}

impl Link for Mixed {
    type Inbox = MixedInbox;

    fn publish(
        self: &Arc<Self>,
        room: &str,
        body: Vec<u8>,
        priority: Priority,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        match &**self {
            Mixed::Native(c) => Either::Left(c.publish(room, body, priority)),
            Mixed::Web(w) => Either::Right(w.publish(room, body, priority)),
        }
    }

    fn finish(&self, summary: &mut Summary) {
        match self {
            Mixed::Native(c) => c.finish(summary),
            Mixed::Web(w) => w.finish(summary),
        }
    }
}

impl Inbox for MixedInbox {
    async fn next(&mut self) -> Option<Delivery> {
        match self {
            MixedInbox::Native(i) => i.next().await,
            MixedInbox::Web(i) => i.next().await,
        }
    }

    fn direct(self, f: DirectFn) -> Result<(), Self> {
        match self {
            MixedInbox::Native(i) => i.direct(f).map_err(MixedInbox::Native),
            MixedInbox::Web(i) => i.direct(f).map_err(MixedInbox::Web),
        }
    }
}

/// Both kinds of members as one run's, in room order.
pub(super) fn mix(native: Vec<Member<Client>>, web: Vec<Member<WebMember>>) -> Vec<Member<Mixed>> {
    let native = native.into_iter().map(|m| Member {
        link: Arc::new(Mixed::Native(m.link)),
        inbox: m.inbox.map(MixedInbox::Native),
        room: m.room,
        room_id: m.room_id,
        index: m.index,
        rooms: m.rooms,
    });
    let web = web.into_iter().map(|m| Member {
        link: Arc::new(Mixed::Web(m.link)),
        inbox: m.inbox.map(MixedInbox::Web),
        room: m.room,
        room_id: m.room_id,
        index: m.index,
        rooms: m.rooms,
    });
    let mut all: Vec<Member<Mixed>> = native.chain(web).collect();
    all.sort_by_key(|m| (m.room, m.index));
    all
}
