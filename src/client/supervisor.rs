//! The supervisor task: watches a client's connection (close, stall watchdog, broken
//! streams); when it is lost for a reason reconnecting can help with, reconnects with jittered
//! backoff and resumes the session on a new link, or reports the end.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::error::{closed_error, unexpected, ClientError, ConnectionClosed, Ended};
use super::event::{ClientEvent, ConnectionState};
use super::link::{open_control, open_link, Link, Waiter};
use super::lock::lock;
use super::session::Inner;
use crate::wire::{ErrorCode, Request, Response, Resume, PROTOCOL_VERSION};

/// Watches the connection; when it is lost, reconnects and resumes, or reports the end.
pub(super) async fn supervise(inner: Arc<Inner>) {
    // Stalls soon after one another double the watchdog's patience (up to 8x): when a busy
    // server, not the network, is what stalls, its clients must not all come back at once.
    let mut patience = 1u32;
    let mut last_stall: Option<tokio::time::Instant> = None;
    loop {
        let link = lock(&inner.link).clone();
        // Suspended while reconnecting: the resumed connection is closed at once.
        if inner.suspended.load(Ordering::SeqCst) {
            link.conn.close(0u32.into(), b"suspend");
        }
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
            () = inner.network.notified() => match probe(&inner, &link).await {
                Ok(probe_ms) => {
                    inner.send(ClientEvent::Migrated { probe_ms }).await;
                    continue;
                }
                Err(why) => match link.conn.close_reason() {
                    Some(error) => Lost::Closed(error),
                    None => Lost::Stalled(why),
                },
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
        // Sends and reads left unanswered: sent again on the resumed connection, ahead of
        // anything made meanwhile, or failed with why the session ended.
        let mut unanswered = link.take_unanswered();
        // Closed by `suspend` (or here, for a suspended client): not the session's end, even when
        // `resume` has already come.
        let suspended = inner.suspend_closed.swap(false, Ordering::SeqCst)
            || inner.suspended.load(Ordering::SeqCst);
        let session_over = inner.closing.load(Ordering::SeqCst)
            || (locally_closed && !suspended)
            || code.is_some_and(|c| c == 0 || terminal(c, !inner.cfg.fallback_servers.is_empty()));
        if session_over || (inner.cfg.reconnect_for.is_zero() && !suspended) {
            let ended = if session_over { Ended::Session } else { Ended::ReconnectWindow };
            finish(&inner, ConnectionClosed { code, reason, ended }, unanswered).await;
            return;
        }
        let reason = if suspended {
            inner.state.send_replace(ConnectionState::Suspended);
            inner.send(ClientEvent::Suspended).await;
            if !until_resumed(&inner).await {
                let why =
                    ConnectionClosed { code: None, reason: "closed".into(), ended: Ended::Session };
                finish(&inner, why, unanswered).await;
                return;
            }
            "resumed by the application".to_string()
        } else {
            reason
        };
        inner.state.send_replace(ConnectionState::Reconnecting);
        inner.send(ClientEvent::Reconnecting { reason: reason.clone() }).await;
        // A server that shut down is not tried first: it will not answer.
        let shut_down = code == Some(ErrorCode::ServerShutdown as u16);
        match reconnect(&inner, &mut unanswered, shut_down).await {
            Ok(event) => {
                inner.state.send_replace(ConnectionState::Connected);
                inner.send(event).await
            }
            // Suspended while reconnecting: the requests wait on the dead link (whose table
            // `take_unanswered` reads again) and the loop's next round waits for the resume.
            Err(_) if suspend_requested(&inner) && !inner.closing.load(Ordering::SeqCst) => {
                link.carry(unanswered);
            }
            Err(e) => {
                // Refused by the server, or closed meanwhile: over. Otherwise time ran out.
                let refused = matches!(e, ClientError::Server { .. });
                let ended = if refused || inner.closing.load(Ordering::SeqCst) {
                    Ended::Session
                } else {
                    Ended::ReconnectWindow
                };
                let reason = format!("{reason}; {e}");
                finish(&inner, ConnectionClosed { code, reason, ended }, unanswered).await;
                return;
            }
        }
    }
}

/// Ends the session: records why, fails the requests waiting for a resumed connection with it,
/// and reports the end.
async fn finish(inner: &Inner, why: ConnectionClosed, unanswered: Vec<Waiter>) {
    inner.end(why.clone());
    for w in unanswered {
        w.fail(ClientError::Connection(why.clone()));
    }
    inner.state.send_replace(ConnectionState::Disconnected);
    let ConnectionClosed { code, reason, .. } = why;
    inner.send(ClientEvent::Disconnected { code, reason }).await;
    lock(&inner.events).take();
}

/// Whether the application suspended the client since the supervisor last looked (even if it
/// has resumed it since).
fn suspend_requested(inner: &Inner) -> bool {
    inner.suspended.load(Ordering::SeqCst) || inner.suspend_closed.load(Ordering::SeqCst)
}

/// Waits while the application keeps the client suspended: true once it resumes, false when it
/// closes the client instead.
async fn until_resumed(inner: &Inner) -> bool {
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return false;
        }
        if !inner.suspended.load(Ordering::SeqCst) {
            return true;
        }
        inner.wake.notified().await;
    }
}

/// After `Client::network_changed` rebound the socket: a Ping on the control stream, which QUIC
/// sends from the new address; resolves with how long the answer took, or (with a description)
/// when none came within the connection timeout, the path being unusable.
async fn probe(inner: &Inner, link: &Link) -> Result<u64, String> {
    let sent = tokio::time::Instant::now();
    let answer = inner.submit(link, Request::Ping, false).map_err(|e| e.to_string())?;
    match tokio::time::timeout(inner.cfg.connect_timeout, link.answer(answer)).await {
        Ok(Ok(_)) => Ok(sent.elapsed().as_millis() as u64),
        Ok(Err(e)) => Err(format!("network changed; probe failed: {e}")),
        Err(_) => Err(format!(
            "network changed; no answer on the new path within {} ms",
            inner.cfg.connect_timeout.as_millis()
        )),
    }
}

/// Close codes after which reconnecting cannot help. A server shutting down is not one while
/// there are `other_servers` to resume on.
fn terminal(code: u16, other_servers: bool) -> bool {
    let known = ErrorCode::from_u16(code);
    if other_servers && known == Some(ErrorCode::ServerShutdown) {
        return false;
    }
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

/// Resolves (with a description) once `link` looks stalled: stream data was arriving, then
/// none for a second, a Ping went out, and no stream data at all (not even the Pong) came back
/// within the stall timeout. Stream data, not packets: after an outage the server's ACKs flow at
/// once while its data can stay stuck behind QUIC's backed-off probe timer for seconds. A Pong
/// that came back slowly keeps the watch on for the next quiet second; a prompt one ends it
/// until data flows again, so a quiet room is never probed and a dead link there is found by
/// the idle timeout as before, unless a request is waiting for its answer: then a quiet second
/// is probed too, so that a server that died while the client was idle is found within a few
/// seconds of the next request rather than by the idle timeout. Never resolves when the
/// watchdog is off. Between bursts it does not tick at all: it sleeps until a reader reports
/// data or a request is sent ([`Activity`]).
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
        if !watching && probe.is_none() && heard.elapsed() >= quiet && !link.awaiting() {
            // Nothing to watch until data flows again, and whenever it comes it will not be
            // watched (it follows a quiet second): wait for the readers instead of ticking.
            link.activity.idle.store(true, Ordering::SeqCst);
            // A request sent before `idle` was set did not wake us: look at it here.
            if data() == received && !link.awaiting() {
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
            None if (watching || link.awaiting()) && now - heard >= quiet => {
                if inner.submit(link, Request::Ping, false).is_err() {
                    return std::future::pending().await;
                }
                probe = Some(now);
            }
            None => {}
        }
    }
}

/// Reconnects with jittered exponential backoff and resumes the session; the resumed connection
/// takes the `unanswered` requests.
async fn reconnect(
    inner: &Arc<Inner>,
    unanswered: &mut Vec<Waiter>,
    skip_current: bool,
) -> Result<ClientEvent, ClientError> {
    let deadline = tokio::time::Instant::now() + inner.cfg.reconnect_for;
    let mut delay = Duration::from_millis(100);
    // The server the session is on first (a brief outage keeps the session) unless it shut
    // down; after each failed attempt, the next one in the list.
    let servers = inner.cfg.servers();
    let mut at = (inner.server.load(Ordering::SeqCst) + usize::from(skip_current)) % servers.len();
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return Err(ClientError::connection("closed"));
        }
        if suspend_requested(inner) {
            return Err(ClientError::connection("suspended"));
        }
        let attempt = try_resume(inner, servers[at], unanswered).await;
        match attempt {
            Ok(event) => {
                inner.server.store(at, Ordering::SeqCst);
                return Ok(event);
            }
            // The server refused the session for good: no point in trying again.
            Err(e @ ClientError::Server { .. }) => return Err(e),
            Err(e) => {
                let server = servers[at];
                let user = &inner.cfg.user_id;
                tracing::debug!(%user, %server, error = %e, "reconnection attempt failed");
                at = (at + 1) % servers.len();
                let jitter = 0.5 + rand::random::<f64>();
                let wait = delay.mul_f64(jitter);
                if tokio::time::Instant::now() + wait >= deadline {
                    return Err(e);
                }
                // A new network (or a suspension) ends the wait: the next attempt may succeed.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = inner.network.notified() => {}
                    () = inner.wake.notified() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One reconnection attempt, to `server`; when it resumes the session, the new connection takes
/// the `unanswered` requests before anything else can be sent on it.
async fn try_resume(
    inner: &Arc<Inner>,
    server: SocketAddr,
    unanswered: &mut Vec<Waiter>,
) -> Result<ClientEvent, ClientError> {
    let events = lock(&inner.events).clone().ok_or_else(|| ClientError::connection("closed"))?;
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
            server,
            &events,
            &inner.rooms,
            inner.cfg.zero_rtt,
        ),
    )
    .await;
    let (mut link, early) = match opened {
        Ok(r) => r?,
        Err(_) => return Err(ClientError::connection("reconnection attempt timed out")),
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
        let first = inner.submit(&link, Request::Resume(resume.clone()), false)?;
        if accepted.await {
            early_data = true;
            return link.answer(first).await;
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
            link.carry(std::mem::take(unanswered));
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
            Err(ClientError::connection("resume timed out"))
        }
    }
}
