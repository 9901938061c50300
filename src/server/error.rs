//! Why a server could not start or run.

use std::net::SocketAddr;

use super::config::ConfigError;
use crate::certs::CertError;

/// Why [`Server::bind`](super::Server::bind), [`Server::bind_with`](super::Server::bind_with)
/// or [`Server::run`](super::Server::run) failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration has a value the server cannot run with.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificates or the token secret could not be made or loaded.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// rustls refused the TLS configuration (for example a key that does not fit the
    /// certificate).
    #[error("setting up TLS")]
    Tls(#[source] rustls::Error),
    /// The TLS configuration has no cipher suite QUIC can start with.
    #[error("setting up QUIC's TLS")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The UDP socket could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The QUIC endpoint could not be made on the bound socket.
    #[error("starting the QUIC endpoint")]
    Endpoint(#[source] std::io::Error),
    /// The admin listener's TCP socket could not be bound.
    #[error("binding the admin listener to {addr}")]
    AdminBind {
        /// The admin listen address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound admin listener could not be set up for serving.
    #[error("starting the admin listener")]
    AdminListener(#[source] std::io::Error),
    /// The listening address could not be read.
    #[error("reading the listening address")]
    LocalAddr(#[source] std::io::Error),
}
