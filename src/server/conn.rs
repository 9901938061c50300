//! One client connection: handshake, login deadline, the control stream's request loop.

use std::sync::Arc;
use std::time::Duration;

use super::outbox::{close_connection, Outbox};
use super::Shared;
use crate::core::ConnId;
use crate::framed::{read_frame, ReadError};
use crate::wire::{decode_request, ErrorCode, Request, RequestFrame, MAX_CLIENT_FRAME_LEN};

pub(crate) async fn run(shared: Arc<Shared>, conn_id: ConnId, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let remote = conn.remote_address();
    let t = &shared.config.transport;
    let frame_timeout = Duration::from_secs(t.frame_timeout_s.max(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(t.login_timeout_s.max(1));

    // The control stream and the login request, both inside the login deadline.
    let (send, mut recv) = match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return,
        Err(_) => {
            close_connection(&conn, Some(ErrorCode::LoginTimeout));
            return;
        }
    };
    let outbox = Outbox::new(
        conn.clone(),
        send,
        shared.config.queue.clone(),
        shared.stats.clone(),
        t.single_event_stream,
    );
    shared.register(conn_id, outbox.clone());
    let first = tokio::time::timeout_at(
        deadline,
        read_frame(&mut recv, MAX_CLIENT_FRAME_LEN, frame_timeout),
    )
    .await;
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
                let (ok, user, how) = shared.with_core(|core, now| {
                    let (ok, user, how) = match first {
                        Request::Login(login) => {
                            let user = login.user_id.clone();
                            (
                                core.handle_login(now, conn_id, request_id, login, secret),
                                user,
                                "logged in",
                            )
                        }
                        Request::Resume(resume) => {
                            let user = resume.user_id.clone();
                            (
                                core.handle_resume(now, conn_id, request_id, resume, secret),
                                user,
                                "resumed",
                            )
                        }
                        _ => unreachable!("matched above"),
                    };
                    if ok {
                        outbox.open_session();
                    }
                    (ok, user, how)
                });
                if ok {
                    tracing::info!(conn = conn_id, %remote, %user, "{how}");
                }
                ok
            }
            Ok(RequestFrame { request_id, request }) => {
                shared
                    .with_core(|core, now| core.handle_request(now, conn_id, request_id, request));
                false
            }
        },
    };

    if logged_in {
        request_loop(&shared, conn_id, &conn, &outbox, &mut recv, frame_timeout).await;
    }
    let reason = outbox.close_code();
    shared.unregister(conn_id, reason.flatten());
    if reason.is_some() {
        outbox.finish_close().await;
    } else if conn.close_reason().is_none() {
        close_connection(&conn, None);
    }
    if logged_in {
        let why = match (reason, conn.close_reason()) {
            (Some(Some(code)), _) => code.name().to_string(),
            (Some(None), _) => "logout".to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "closed".to_string(),
        };
        tracing::info!(conn = conn_id, %remote, reason = %why, "connection closed");
    } else {
        // Login-stage closes wait here too so that the error reply reaches the client.
        outbox.finish_close().await;
    }
}

async fn request_loop(
    shared: &Arc<Shared>,
    conn_id: ConnId,
    conn: &quinn::Connection,
    outbox: &Arc<Outbox>,
    recv: &mut quinn::RecvStream,
    frame_timeout: Duration,
) {
    loop {
        let frame = tokio::select! {
            f = read_frame(recv, MAX_CLIENT_FRAME_LEN, frame_timeout) => f,
            _ = outbox.close_requested.notified() => return,
            _ = conn.closed() => return,
        };
        match frame {
            Ok(Some(body)) => match decode_request(&body) {
                Ok(RequestFrame { request_id, request }) => {
                    shared.with_core(|core, now| {
                        core.handle_request(now, conn_id, request_id, request)
                    });
                }
                Err(e) => {
                    tracing::debug!(conn = conn_id, error = %e, "bad frame");
                    outbox.close_now(e.code());
                    return;
                }
            },
            Ok(None) => {
                // The client finished its control stream: treat as a logout without reply.
                return;
            }
            Err(ReadError::Stream(_)) => return,
            Err(e) => {
                tracing::debug!(conn = conn_id, error = %e, "bad frame");
                outbox.close_now(e.code());
                return;
            }
        }
        if outbox.close_code().is_some() {
            return;
        }
    }
}
