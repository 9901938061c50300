//! TLS and QUIC settings: the rustls and quinn server configurations built from a
//! [`ServerConfig`], chosen deliberately (see ARCHITECTURE.md).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{ConfigError, ServerConfig, DATAGRAM_SEND_BUFFER};
use super::error::ServerError;
use super::web::{WEB_ALPN, WEB_UNI_STREAMS};
use super::webcert::{ByAlpn, WebCert};
use crate::congestion::LossTolerantConfig;
use crate::wire::ALPN;

/// Bytes quinn buffers for one connection attempt before the server has accepted it (0-RTT is
/// off, so little more than the client's Initial packets arrive in that time).
pub const INCOMING_BUFFER_BYTES: u64 = 64 * 1024;

/// Bytes quinn buffers for all connection attempts not yet accepted, together.
pub const INCOMING_BUFFER_TOTAL_BYTES: u64 = 16 * 1024 * 1024;

/// How long after a declared loss a path still gets tail copies (`tail_copy_ms`), server and
/// client alike: a clean path gets none.
pub const TAIL_COPY_LOSS_HOLD: Duration = Duration::from_secs(10);

/// The QUIC transport settings the server uses, chosen deliberately (see ARCHITECTURE.md).
pub fn transport_config(config: &ServerConfig) -> Result<quinn::TransportConfig, ConfigError> {
    let t = &config.transport;
    let mut tc = quinn::TransportConfig::default();
    // Clients open exactly one bidirectional stream and no unidirectional ones; quinn allocates
    // state for every stream a peer may open, so these stay as small as the protocol allows.
    tc.max_concurrent_bidi_streams(1u32.into());
    // With WebTransport on, 3: HTTP/3 clients open their control and QPACK streams at once
    // and Chromium treats a smaller initial limit as a protocol violation. The server never
    // reads a native client's unidirectional streams; their bytes count against the
    // connection's receive window like any other.
    let uni = if config.web_transport { WEB_UNI_STREAMS } else { 0 };
    tc.max_concurrent_uni_streams(uni.into());
    tc.stream_receive_window(t.stream_receive_window.into());
    tc.receive_window(t.receive_window.into());
    tc.send_window(t.send_window);
    let idle = Duration::from_secs(t.idle_timeout_s.max(1));
    let idle_timeout = quinn::IdleTimeout::try_from(idle)
        .map_err(|source| ConfigError::IdleTimeout { secs: t.idle_timeout_s, source })?;
    tc.max_idle_timeout(Some(idle_timeout));
    if t.keep_alive_s > 0 {
        // A keep-alive at or past the idle timeout would not keep anything alive: clamp it to
        // half the idle timeout (a lost PING is sent again after a probe timeout, well within
        // the other half). The server's pings keep both ends' idle timers running.
        let keep = Duration::from_secs(t.keep_alive_s).min(idle / 2);
        tc.keep_alive_interval(Some(keep));
    }
    if t.low_datagrams {
        // quinn sends DATAGRAM frames only while it also accepts them. One byte advertises a
        // maximum DATAGRAM frame size no datagram fits: a client that sends one anyway has its
        // connection closed with PROTOCOL_VIOLATION, as with datagrams off.
        tc.datagram_receive_buffer_size(Some(1));
        tc.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    } else if config.web_transport {
        // Browsers refuse an HTTP/3 server whose SETTINGS_H3_DATAGRAM comes without this
        // transport parameter (RFC 9297); one byte admits no datagram, as above.
        tc.datagram_receive_buffer_size(Some(1));
    } else {
        tc.datagram_receive_buffer_size(None);
    }
    if t.ack_max_delay_ms >= 1 << 14 {
        // RFC 9000 18.2: an ACK delay of 2^14 ms or more is invalid. Refused even while the
        // threshold is off, so that a bad value does not wait to surface until it is turned on.
        return Err(ConfigError::AckMaxDelay(t.ack_max_delay_ms));
    }
    if t.ack_eliciting_threshold > 0 {
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(t.ack_eliciting_threshold.into());
        if t.ack_loss_fallback_ms > 0 {
            ack.loss_fallback(Some(Duration::from_millis(t.ack_loss_fallback_ms)));
        }
        if t.ack_max_delay_ms > 0 {
            ack.max_ack_delay(Some(Duration::from_millis(t.ack_max_delay_ms)));
            ack.max_ack_delay_above_rtt_after(Some(t.ack_max_delay_after_packets));
        }
        tc.ack_frequency_config(Some(ack));
    }
    if t.tail_copy_ms > 0 {
        tc.tail_copy(Some(Duration::from_millis(t.tail_copy_ms)));
        tc.tail_copy_after_loss(Some(TAIL_COPY_LOSS_HOLD));
        tc.tail_copy_all(t.tail_copy_all);
    }
    match t.congestion.as_str() {
        "cubic" => {}
        "bbr" => {
            tc.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        "newreno" => {
            tc.congestion_controller_factory(Arc::new(quinn::congestion::NewRenoConfig::default()));
        }
        "loss-tolerant" => {
            tc.congestion_controller_factory(Arc::new(LossTolerantConfig::default()));
        }
        other => return Err(ConfigError::Congestion(other.to_string())),
    }
    Ok(tc)
}

/// The quinn server configuration: TLS 1.3 with this identity, the huddle ALPN (and `h3` for
/// WebTransport unless `web_transport` is off; with `web`, the browsers' certificate for
/// connections that offer only `h3`), 0-RTT as configured, the transport settings and the
/// limits on connection attempts.
pub(super) fn server_config(
    config: &ServerConfig,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    web: Option<Arc<WebCert>>,
) -> Result<quinn::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let main =
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(ServerError::Tls)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ServerError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByAlpn { main: Arc::new(main), web }));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    if config.web_transport {
        tls.alpn_protocols.push(WEB_ALPN.to_vec());
    }
    // QUIC allows only 0 or u32::MAX here; the amount of 0-RTT data is bounded by the
    // transport's flow-control windows. Tickets live in a bounded server-side cache and each
    // is taken out on use, so a replayed first flight cannot have its early data accepted.
    tls.max_early_data_size = if config.transport.zero_rtt { u32::MAX } else { 0 };
    tls.session_storage =
        rustls::server::ServerSessionMemoryCache::new(config.transport.tls_session_cache.max(1));
    let crypto = QuicServerConfig::try_from(tls).map_err(ServerError::Quic)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(Arc::new(transport_config(config)?));
    sc.max_incoming(config.transport.max_incoming.max(1));
    sc.incoming_buffer_size(INCOMING_BUFFER_BYTES);
    sc.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_BYTES);
    sc.migration(true);
    Ok(sc)
}
