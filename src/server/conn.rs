//! One client connection: handshake, login deadline, the control stream's request loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::guard::client_fault;
use super::outbox::{close_connection, Outbox};
use super::shared::Shared;
use super::web::{accept_session, Link, RecvStream, Refusal, SendStream, WEB_ALPN};
use crate::core::{ConnId, LoginOutcome};
use crate::framed::{read_frame, ReadError};
use crate::wire::{
    decode_request, ErrorCode, Request, RequestFrame, LENGTH_PREFIX_LEN, MAX_CLIENT_FRAME_LEN,
};

/// A connection past its handshake and login stage, whatever came of the login.
struct Established {
    conn: quinn::Connection,
    link: Link,
    outbox: Arc<Outbox>,
    recv: RecvStream,
    remote: std::net::SocketAddr,
    frame_timeout: Duration,
    logged_in: bool,
    /// The login or resumption was refused (and its one log line written).
    refused: bool,
    /// The connection proved it is the client's own (a 0-RTT flight could be a replay).
    proven: bool,
    user: String,
}

pub(crate) async fn run(shared: Arc<Shared>, conn_id: ConnId, incoming: Box<quinn::Incoming>) {
    // The handshake and the login run in a future of their own on the heap, freed when they are
    // done: the task that an idle connection keeps is only as large as what follows (the
    // request loop); see BENCHMARKS.md, idle connections.
    let establishing = Box::pin(establish(&shared, conn_id, *incoming));
    let Some(Established {
        conn,
        link,
        outbox,
        mut recv,
        remote,
        frame_timeout,
        logged_in,
        refused,
        proven,
        user,
    }) = establishing.await
    else {
        return;
    };
    if logged_in && proven {
        request_loop(&shared, conn_id, &outbox, &mut recv, frame_timeout).await;
    }
    // How the server closed this connection, if it did. Every close request lands in the
    // outbox (the core's, for this connection or from another's input; a slow consumer's; a
    // bad frame's; the shutdown's) and the first one counts; the core decides what becomes
    // of the session.
    let reason = outbox.close_code();
    shared.unregister(conn_id, reason.flatten());
    // The closing waits are boxed: they happen once, and unboxed they would take room in this
    // future for the whole life of the connection.
    if reason.is_some() {
        Box::pin(outbox.finish_close()).await;
    } else if conn.close_reason().is_none() {
        link.close(None);
    }
    if !logged_in {
        // Login-stage closes wait here too so that the error reply reaches the client.
        Box::pin(outbox.finish_close()).await;
    }
    // One line per connection; those about misbehaving clients go through the log limiter. A
    // refused login has had its line.
    match (reason, conn.close_reason()) {
        _ if refused => {}
        (Some(Some(code)), _) if client_fault(code) => {
            shared.log_misbehaviour(conn_id, remote, code.name())
        }
        (None, Some(quinn::ConnectionError::TransportError(e))) => {
            shared.log_misbehaviour(conn_id, remote, &e.to_string())
        }
        _ if !logged_in => {}
        (Some(Some(code)), _) => {
            tracing::info!(conn = conn_id, %remote, %user, reason = code.name(), "connection closed")
        }
        (Some(None), _) => {
            tracing::info!(conn = conn_id, %remote, %user, reason = "logout", "connection closed")
        }
        (None, Some(e)) => {
            tracing::info!(conn = conn_id, %remote, %user, reason = %e, "connection closed")
        }
        (None, None) => {
            tracing::info!(conn = conn_id, %remote, %user, reason = "closed", "connection closed")
        }
    }
    shared.metrics.ended_paths.add(&conn.stats());
}

/// The handshake, the control stream and the first request (a login or a resumption); `None`
/// when the connection ended before it had an outbox.
async fn establish(
    shared: &Arc<Shared>,
    conn_id: ConnId,
    incoming: quinn::Incoming,
) -> Option<Established> {
    let connected_at_ms = shared.clock.now().unix_ms;
    let t = &shared.config.transport;
    let handshake_deadline = Duration::from_secs(t.handshake_timeout_s.max(1));
    let handshake_ends = tokio::time::Instant::now() + handshake_deadline;
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.handshakes_failed.inc();
            tracing::debug!(error = %e, "handshake failed");
            return None;
        }
    };
    // With 0-RTT on, the connection is usable before the handshake completes, so that a
    // returning client's Login or Resume, sent in its first flight, is answered at once. Only
    // that first request is acted on early: the rest wait for the handshake (see below), which
    // still has the handshake deadline to complete.
    let attempt =
        if shared.config.transport.zero_rtt { connecting.into_0rtt() } else { Err(connecting) };
    let (conn, pending) = match attempt {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => {
            match handshake(shared, conn_id, remote, connecting, handshake_deadline).await {
                Some(conn) => (conn, None),
                None => return None,
            }
        }
    };
    let mut hs = Handshake { shared, conn: &conn, pending, deadline: handshake_ends };
    let remote = conn.remote_address();
    let frame_timeout = Duration::from_secs(t.frame_timeout_s.max(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(t.login_timeout_s.max(1));

    // A browser's connection (ALPN `h3`) first opens its WebTransport session: HTTP/3
    // SETTINGS, the CONNECT and the session's bidirectional stream stand in for the native
    // control stream, inside the same login deadline.
    let web = match alpn(&conn) {
        Some(p) => p == WEB_ALPN,
        // A 0-RTT connection whose ClientHello is not all in yet: wait for the handshake.
        None => match hs.finish().await {
            HandshakeEnd::Completed => alpn(&conn).is_some_and(|p| p == WEB_ALPN),
            HandshakeEnd::Failed => return None,
            HandshakeEnd::TimedOut => {
                handshake_timed_out(shared, &conn, conn_id, remote);
                return None;
            }
        },
    };
    // A browser's session does not start in 0-RTT, and stream limits raised before the client
    // has the transport parameters would reach it as a decrease (Chromium closes the
    // connection): its handshake completes first.
    if web {
        match hs.finish().await {
            HandshakeEnd::Completed => {}
            HandshakeEnd::Failed => return None,
            HandshakeEnd::TimedOut => {
                handshake_timed_out(shared, &conn, conn_id, remote);
                return None;
            }
        }
    }
    // The control stream and the login request, both inside the login deadline.
    let control = async {
        if web {
            let dev = shared.config.cert.is_none();
            accept_session(conn.clone(), &shared.config.web_origins, dev).await
        } else {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    Ok((Link::Quic(conn.clone()), SendStream::Quic(send), RecvStream::Quic(recv)))
                }
                Err(e) => Err(Refusal::Http3(e.to_string())),
            }
        }
    };
    let (link, send, mut recv) = match hs.race(tokio::time::timeout_at(deadline, control)).await {
        None => {
            handshake_timed_out(shared, &conn, conn_id, remote);
            return None;
        }
        Some(Ok(Ok(s))) => s,
        Some(Ok(Err(refusal))) => {
            refuse_session(shared, &conn, conn_id, remote, refusal).await;
            return None;
        }
        Some(Err(_)) => {
            close_connection(&conn, Some(ErrorCode::LoginTimeout));
            shared.log_misbehaviour(conn_id, remote, ErrorCode::LoginTimeout.name());
            return None;
        }
    };
    let early_control = recv.is_0rtt();
    let outbox = Outbox::new(
        link.clone(),
        send,
        shared.config.queue.clone(),
        shared.stats.clone(),
        t.single_event_stream,
        t.low_datagrams,
    );
    shared.register(conn_id, outbox.clone(), remote, connected_at_ms);
    let first = hs
        .race(tokio::time::timeout_at(
            deadline,
            read_frame(&mut recv, MAX_CLIENT_FRAME_LEN, frame_timeout),
        ))
        .await;
    let Some(first) = first else {
        handshake_timed_out(shared, &conn, conn_id, remote);
        // `refused`: its one log line is written.
        return Some(Established {
            conn,
            link,
            outbox,
            recv,
            remote,
            frame_timeout,
            logged_in: false,
            refused: true,
            proven: false,
            user: String::new(),
        });
    };
    if let Ok(Ok(Some(body))) = &first {
        shared.metrics.bytes_in.inc_by((body.len() + LENGTH_PREFIX_LEN) as u64);
    }
    let mut user = String::new();
    let mut refused = false;
    let logged_in = match first {
        Err(_) => {
            outbox.close(Some(ErrorCode::LoginTimeout));
            false
        }
        Ok(Ok(None)) => false,
        Ok(Err(e)) => {
            outbox.close_now(e.code());
            false
        }
        Ok(Ok(Some(body))) => match decode_request(&body) {
            Err(e) => {
                outbox.close_now(e.code());
                false
            }
            Ok(RequestFrame {
                request_id,
                request: first @ (Request::Login(_) | Request::Resume(_)),
            }) => {
                let secret: [u8; 16] = rand::random();
                // The session stream opens under the same lock as the login, so that a kick
                // right after it has a home.
                let op = first.op_name();
                let resume = matches!(first, Request::Resume(_));
                let (outcome, who) = shared.timed_core(op, |core, now| {
                    let (outcome, user) = match first {
                        Request::Login(login) => {
                            let user = login.user_id.clone();
                            (core.handle_login(now, conn_id, request_id, login, secret), user)
                        }
                        Request::Resume(resume) => {
                            let user = resume.user_id.clone();
                            (core.handle_resume(now, conn_id, request_id, resume, secret), user)
                        }
                        _ => unreachable!("matched above"),
                    };
                    if outcome.logged_in() {
                        outbox.open_session();
                    }
                    (outcome, user)
                });
                let result = match outcome {
                    LoginOutcome::LoggedIn { .. } if resume => "new_session",
                    LoginOutcome::LoggedIn { .. } => "ok",
                    LoginOutcome::Resumed { .. } => "resumed",
                    LoginOutcome::Refused { code } => code.name(),
                };
                shared.metrics.login(resume, result);
                if outcome.logged_in() {
                    let what = if resume { "resumed" } else { "logged in" };
                    tracing::info!(conn = conn_id, %remote, user = %who, result, "{what}");
                    user = who;
                } else {
                    shared.log_refused_login(conn_id, remote, &who, result, resume);
                    refused = true;
                }
                outcome.logged_in()
            }
            Ok(RequestFrame { request_id, request }) => {
                shared.timed_core(request.op_name(), |core, now| {
                    core.handle_request(now, conn_id, request_id, request)
                });
                false
            }
        },
    };

    // A replayed 0-RTT flight never completes its handshake: nothing after the first request
    // is applied until this connection has proved it is the client's own.
    // If it never does, the session is treated as on a lost connection (the offline grace).
    let proven = if logged_in {
        match hs.finish().await {
            HandshakeEnd::Completed => {
                if early_control {
                    shared.note_zero_rtt(conn_id);
                }
                true
            }
            HandshakeEnd::Failed => false,
            HandshakeEnd::TimedOut => {
                handshake_timed_out(shared, &conn, conn_id, remote);
                refused = true;
                false
            }
        }
    } else {
        // The server closes this connection; a handshake still under way ends with it.
        hs.abandon();
        true
    };
    Some(Established {
        conn,
        link,
        outbox,
        recv,
        remote,
        frame_timeout,
        logged_in,
        refused,
        proven,
        user,
    })
}

/// The ALPN the handshake chose, once the ClientHello is in.
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let data = conn.handshake_data()?;
    data.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?.protocol
}

/// Ends a connection whose control stream never came: a native one that ended first, or a
/// WebTransport session refused (its 403 or 404 answer gets a moment to reach the browser).
async fn refuse_session(
    shared: &Shared,
    conn: &quinn::Connection,
    conn_id: ConnId,
    remote: SocketAddr,
    refusal: Refusal,
) {
    match refusal {
        Refusal::Http3(e) => tracing::debug!(conn = conn_id, error = %e, "no control stream"),
        Refusal::Path => shared.log_misbehaviour(conn_id, remote, "webtransport_path"),
        Refusal::Origin(origin) => {
            tracing::debug!(conn = conn_id, %origin, "WebTransport Origin refused");
            shared.log_misbehaviour(conn_id, remote, "webtransport_origin");
        }
    }
    let _ = tokio::time::timeout(REFUSAL_LINGER, conn.closed()).await;
    conn.close(quinn::VarInt::from_u32(0), b"refused");
}

/// How long a refused WebTransport session's answer has to reach the client before the
/// connection closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Completes a handshake within `within`; a handshake that takes longer is abandoned.
async fn handshake(
    shared: &Shared,
    conn_id: ConnId,
    remote: SocketAddr,
    connecting: quinn::Connecting,
    within: Duration,
) -> Option<quinn::Connection> {
    match tokio::time::timeout(within, connecting).await {
        Ok(Ok(c)) => {
            shared.metrics.handshakes_ok.inc();
            Some(c)
        }
        Ok(Err(e)) => {
            shared.metrics.handshakes_failed.inc();
            tracing::debug!(error = %e, "handshake failed");
            None
        }
        Err(_) => {
            // Dropping the connecting future abandons the handshake.
            shared.metrics.handshakes_failed.inc();
            shared.guard.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            shared.log_misbehaviour(conn_id, remote, HANDSHAKE_TIMEOUT);
            None
        }
    }
}

/// The reason logged for a handshake that did not complete within the handshake deadline.
const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";

/// How a 0-RTT connection's handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandshakeEnd {
    Completed,
    Failed,
    TimedOut,
}

/// The handshake of a connection accepted with 0-RTT keys, while it is under way: it has until
/// `deadline` to complete, like any other, and is counted when it ends.
struct Handshake<'a> {
    shared: &'a Shared,
    conn: &'a quinn::Connection,
    /// `None` once it has ended (or for a connection that completed it before being used).
    pending: Option<quinn::ZeroRttAccepted>,
    deadline: tokio::time::Instant,
}

impl Handshake<'_> {
    /// Waits for the handshake to end (at the deadline at the latest) and counts the result.
    async fn finish(&mut self) -> HandshakeEnd {
        let Some(accepted) = self.pending.as_mut() else { return HandshakeEnd::Completed };
        let end = match tokio::time::timeout_at(self.deadline, accepted).await {
            // It resolves once the handshake completes, or when the connection fails first.
            Ok(_) if self.conn.close_reason().is_none() => HandshakeEnd::Completed,
            Ok(_) => HandshakeEnd::Failed,
            Err(_) => HandshakeEnd::TimedOut,
        };
        self.pending = None;
        match end {
            HandshakeEnd::Completed => {
                self.shared.metrics.handshakes_ok.inc();
            }
            HandshakeEnd::Failed => {
                self.shared.metrics.handshakes_failed.inc();
            }
            HandshakeEnd::TimedOut => {
                self.shared.metrics.handshakes_failed.inc();
                self.shared.guard.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        end
    }

    /// Runs `work` to its end, unless the handshake times out first (`None`).
    async fn race<F: Future>(&mut self, work: F) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        if self.pending.is_some() {
            tokio::select! {
                out = &mut work => return Some(out),
                end = self.finish() => {
                    if end == HandshakeEnd::TimedOut {
                        return None;
                    }
                }
            }
        }
        Some(work.await)
    }

    /// Counts a handshake that the server's close of the connection cuts short as failed.
    fn abandon(&mut self) {
        if self.pending.take().is_some() {
            self.shared.metrics.handshakes_failed.inc();
        }
    }
}

/// Closes a connection whose handshake did not complete in time, with its one log line.
fn handshake_timed_out(
    shared: &Shared,
    conn: &quinn::Connection,
    conn_id: ConnId,
    remote: SocketAddr,
) {
    conn.close(quinn::VarInt::from_u32(0), HANDSHAKE_TIMEOUT.as_bytes());
    shared.log_misbehaviour(conn_id, remote, HANDSHAKE_TIMEOUT);
}

async fn request_loop(
    shared: &Arc<Shared>,
    conn_id: ConnId,
    outbox: &Arc<Outbox>,
    recv: &mut RecvStream,
    frame_timeout: Duration,
) {
    loop {
        // A lost or closed connection ends the read (quinn wakes its readers), so there is no
        // separate wait for `conn.closed()`, which would take room in this task for its life.
        let frame = tokio::select! {
            f = read_frame(recv, MAX_CLIENT_FRAME_LEN, frame_timeout) => f,
            _ = outbox.close_requested.notified() => return,
        };
        match frame {
            Ok(Some(body)) => match decode_request(&body) {
                Ok(RequestFrame { request_id, request }) => {
                    shared.metrics.bytes_in.inc_by((body.len() + LENGTH_PREFIX_LEN) as u64);
                    if let Request::SendRoomMessage { priority, .. } = &request {
                        shared.metrics.message_in(*priority);
                    }
                    let close = shared.timed_core(request.op_name(), |core, now| {
                        core.handle_request(now, conn_id, request_id, request)
                    });
                    if close.is_some() {
                        // The core ended the connection (a logout); its close is queued.
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(conn = conn_id, error = %e, "bad frame");
                    outbox.close_now(e.code());
                    return;
                }
            },
            Ok(None) => {
                // The client finished its control stream: the connection closes with code 0
                // (`bye`) and the session waits for resumption, as after a lost connection.
                return;
            }
            // The connection is gone: a lost connection, not a protocol error.
            Err(ReadError::Stream(_)) => return,
            Err(e) => {
                tracing::debug!(conn = conn_id, error = %e, "bad frame");
                outbox.close_now(e.code());
                return;
            }
        }
        // Closed from elsewhere meanwhile (a kick, a slow consumer): read nothing more.
        if outbox.close_code().is_some() {
            return;
        }
    }
}
