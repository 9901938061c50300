//! The web listener (`huddle serve --web-listen ADDR`): the demo page and its client library,
//! embedded at build time from `clients/web/`, and `GET /config.json`, which tells the page
//! where the WebTransport endpoint is and the SHA-256 of the development certificate it
//! presents. HTTP/1 over TCP, static and read-only, with connection caps and a header timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Serialize;

use super::admission::{HttpCaps, HttpTask};
use super::error::ServerError;
use super::web::WEB_PATH;
use super::webcert::WebCert;

/// Open connections the web listener serves at once, and from one address.
const MAX_CONNECTIONS: usize = 256;
const MAX_PER_ADDRESS: usize = 32;
/// A request header has this long to arrive (also between kept-alive requests).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of `clients/web/`, as built into the binary: (path, content type, body).
const FILES: [(&str, &str, &str); 3] = [
    ("/index.html", "text/html; charset=utf-8", include_str!("../../clients/web/index.html")),
    ("/demo.js", "text/javascript; charset=utf-8", include_str!("../../clients/web/demo.js")),
    ("/huddle.js", "text/javascript; charset=utf-8", include_str!("../../clients/web/huddle.js")),
];

/// What `GET /config.json` answers.
#[derive(Debug, Serialize)]
pub struct WebConfig {
    /// The WebTransport URL: `https://HOST:PORT/huddle` on the server's UDP port.
    pub webtransport_url: String,
    /// The SHA-256 of the development certificate, in hex (for `serverCertificateHashes`);
    /// empty with a configured certificate (`--cert`), which browsers verify as usual.
    pub cert_hashes: Vec<String>,
    /// The same hashes in standard base64.
    pub cert_hashes_base64: Vec<String>,
}

/// What the listener's routes read.
struct Site {
    quic: SocketAddr,
    cert: Option<Arc<WebCert>>,
}

impl Site {
    fn config(&self) -> WebConfig {
        let mut host = self.quic;
        if host.ip().is_unspecified() {
            host.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let hashes: Vec<[u8; 32]> = self.cert.iter().map(|c| c.hash()).collect();
        WebConfig {
            webtransport_url: format!("https://{host}{WEB_PATH}"),
            cert_hashes: hashes.iter().map(hex::encode).collect(),
            cert_hashes_base64: hashes
                .iter()
                .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                .collect(),
        }
    }
}

/// Binds the web listener.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServerError::WebBind { addr, source })?;
    Ok(listener)
}

/// Starts serving the page and `/config.json` for the WebTransport endpoint at `quic`.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    quic: SocketAddr,
    cert: Option<Arc<WebCert>>,
) -> Result<HttpTask, ServerError> {
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(ServerError::AdminListener)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "web listening (demo page)");
    }
    let mut app = Router::new()
        .route("/", get(|| async { file("/index.html") }))
        .route("/config.json", get(config));
    for (path, _, _) in FILES {
        app = app.route(path, get(move || async move { file(path) }));
    }
    let app = app.with_state(Arc::new(Site { quic, cert }));
    let caps = HttpCaps {
        max_connections: MAX_CONNECTIONS,
        max_per_address: MAX_PER_ADDRESS,
        header_timeout: HEADER_TIMEOUT,
    };
    Ok(HttpTask::spawn(listener, app, caps, "web"))
}

async fn config(State(site): State<Arc<Site>>) -> Json<WebConfig> {
    Json(site.config())
}

fn file(path: &str) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
