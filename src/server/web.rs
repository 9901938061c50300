//! WebTransport beside the native protocol: a connection's link (raw QUIC or a WebTransport
//! session on it), its stream types, and the session's acceptance (HTTP/3 SETTINGS, the
//! extended CONNECT, its path and Origin). Everything after that is the native protocol's frames
//! on the session's streams, so the rest of the glue only sees [`Link`], [`SendStream`] and
//! [`RecvStream`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use web_transport_quinn as wtq;

use crate::wire::ErrorCode;

/// The ALPN a browser's WebTransport connection negotiates (HTTP/3).
pub const WEB_ALPN: &[u8] = b"h3";

/// The path of the extended CONNECT that opens a Huddle WebTransport session.
pub const WEB_PATH: &str = "/huddle";

/// Bidirectional streams a WebTransport client may have open: the CONNECT request and the
/// session's control stream.
pub(crate) const WEB_BIDI_STREAMS: u32 = 2;

/// Unidirectional streams a client may have open while WebTransport is on (the initial limit,
/// which browsers need before the ALPN is known to the server): HTTP/3's control stream and
/// QPACK's encoder and decoder streams.
pub(crate) const WEB_UNI_STREAMS: u32 = 3;

/// What a connection's streams run on.
#[derive(Clone)]
pub(crate) enum Link {
    /// The native protocol (ALPN `huddle/1`).
    Quic(quinn::Connection),
    /// A WebTransport session (ALPN `h3`); it derefs to its QUIC connection.
    Web(Box<wtq::Session>),
}

impl Link {
    /// The QUIC connection underneath, for its statistics and address.
    pub(crate) fn conn(&self) -> &quinn::Connection {
        match self {
            Link::Quic(c) => c,
            Link::Web(s) => s,
        }
    }

    /// Whether this is a WebTransport session.
    pub(crate) fn is_web(&self) -> bool {
        matches!(self, Link::Web(_))
    }

    /// Opens a server-initiated unidirectional stream (with WebTransport's stream header).
    pub(crate) async fn open_uni(&self) -> Option<SendStream> {
        match self {
            Link::Quic(c) => c.open_uni().await.ok().map(SendStream::Quic),
            Link::Web(s) => s.open_uni().await.ok().map(SendStream::Web),
        }
    }

    /// Closes with an application code (0 for a normal close) and the code's name: on QUIC
    /// as the connection's close code; on WebTransport as the session's
    /// `CLOSE_WEBTRANSPORT_SESSION` capsule, after which the connection closes.
    pub(crate) fn close(&self, code: Option<ErrorCode>) {
        let (n, reason): (u32, &[u8]) = match code {
            Some(c) => (u32::from(c.as_u16()), c.name().as_bytes()),
            None => (0, b"bye"),
        };
        match self {
            Link::Quic(c) => c.close(quinn::VarInt::from_u32(n), reason),
            Link::Web(s) => s.close(n, reason),
        }
    }
}

/// A stream the server writes: a QUIC stream or a WebTransport one.
pub(crate) enum SendStream {
    Quic(quinn::SendStream),
    Web(wtq::SendStream),
}

/// A stream write failed: the stream or the connection is gone.
#[derive(Debug)]
pub(crate) struct WriteFailed;

impl SendStream {
    pub(crate) fn set_priority(&self, prio: i32) {
        let _ = match self {
            SendStream::Quic(s) => s.set_priority(prio).map_err(|_| ()),
            SendStream::Web(s) => s.set_priority(prio).map_err(|_| ()),
        };
    }

    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> Result<(), WriteFailed> {
        match self {
            SendStream::Quic(s) => s.write_all(buf).await.map_err(|_| WriteFailed),
            SendStream::Web(s) => s.write_all(buf).await.map_err(|_| WriteFailed),
        }
    }

    pub(crate) fn finish(&mut self) {
        let _ = match self {
            SendStream::Quic(s) => s.finish().map_err(|_| ()),
            SendStream::Web(s) => s.finish().map_err(|_| ()),
        };
    }

    /// Waits until the peer has all of the stream's data, or stopped it, or the connection ended.
    pub(crate) async fn stopped(&self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.stopped().await;
            }
            SendStream::Web(s) => {
                let _ = s.stopped().await;
            }
        }
    }

    pub(crate) async fn write_all_chunks(&mut self, bufs: &mut [Bytes]) -> Result<(), WriteFailed> {
        match self {
            SendStream::Quic(s) => s.write_all_chunks(bufs).await.map_err(|_| WriteFailed),
            SendStream::Web(s) => s.write_all_chunks(bufs).await.map_err(|_| WriteFailed),
        }
    }
}

/// The control stream the server reads: a QUIC stream or a WebTransport one.
pub(crate) enum RecvStream {
    Quic(quinn::RecvStream),
    Web(wtq::RecvStream),
}

impl RecvStream {
    /// Whether the client opened it in 0-RTT data the server accepted (accepted before the
    /// handshake completed). quinn's `ZeroRttAccepted` always says `false` on the server side,
    /// so this is how the server tells. A WebTransport session never starts in 0-RTT.
    pub(crate) fn is_0rtt(&self) -> bool {
        match self {
            RecvStream::Quic(r) => r.is_0rtt(),
            RecvStream::Web(_) => false,
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RecvStream::Quic(s) => Pin::new(s).poll_read(cx, buf),
            RecvStream::Web(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// Why a WebTransport session was not opened.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The HTTP/3 handshake or the CONNECT failed (logged at debug: not a Huddle client).
    Http3(String),
    /// The CONNECT named another path: 404.
    Path,
    /// The Origin is not allowed: 403.
    Origin(String),
}

/// Runs the HTTP/3 SETTINGS exchange and the extended CONNECT; answers 404 for a path other
/// than [`WEB_PATH`], 403 for an Origin [`origin_allowed`] refuses, and 200 otherwise, with
/// the session's control stream (the first bidirectional stream the client opens).
pub(crate) async fn accept_session(
    conn: quinn::Connection,
    origins: &[String],
    dev: bool,
) -> Result<(Link, SendStream, RecvStream), Refusal> {
    conn.set_max_concurrent_bi_streams(WEB_BIDI_STREAMS.into());
    let request = wtq::Request::accept(conn).await.map_err(|e| Refusal::Http3(format!("{e:?}")))?;
    if request.url.path() != WEB_PATH {
        let _ = request.reject(wtq::http::StatusCode::NOT_FOUND).await;
        return Err(Refusal::Path);
    }
    let origin = request.headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if !origin_allowed(origin.as_deref(), origins, dev) {
        let _ = request.reject(wtq::http::StatusCode::FORBIDDEN).await;
        return Err(Refusal::Origin(origin.unwrap_or_default()));
    }
    let session = request.ok().await.map_err(|e| Refusal::Http3(e.to_string()))?;
    let (send, recv) = session.accept_bi().await.map_err(|e| Refusal::Http3(e.to_string()))?;
    Ok((Link::Web(Box::new(session)), SendStream::Web(send), RecvStream::Web(recv)))
}

/// Whether a CONNECT with this `Origin` header may open a session. With `web_origins` set, the
/// Origin must be one of them exactly (`*` allows any). Without, a development server (no
/// `--cert`) allows loopback origins (`http(s)://127.0.0.1`, `localhost`, `[::1]`, any port)
/// and a server with a real certificate allows none. A request without an Origin is not from a
/// browser page and is allowed: what a page's Origin protects against does not apply to it.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String], dev: bool) -> bool {
    let Some(origin) = origin else { return true };
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
    }
    if !dev {
        return false;
    }
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || port.starts_with(':') => h,
            _ => return false,
        },
        None => rest.split(':').next().unwrap_or(""),
    };
    if rest.contains('/') {
        return false;
    }
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn dev_mode_allows_loopback_origins_only() {
        for ok in ["http://127.0.0.1:8080", "http://localhost", "https://[::1]:9"] {
            assert!(origin_allowed(Some(ok), &[], true), "{ok}");
        }
        for bad in ["http://evil.example", "http://127.0.0.1.evil.example", "null", "http://[::2]"]
        {
            assert!(!origin_allowed(Some(bad), &[], true), "{bad}");
        }
        assert!(!origin_allowed(Some("http://localhost"), &[], false));
        assert!(origin_allowed(None, &[], false));
        let list = vec!["https://chat.example".to_string()];
        assert!(origin_allowed(Some("https://chat.example"), &list, false));
        assert!(!origin_allowed(Some("http://localhost"), &list, true));
    }
}
