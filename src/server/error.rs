//! Why a server could not start or run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// The certificate and key files do not make a usable TLS identity (most often: the key
    /// is not the certificate's).
    #[error("{}", identity_message(.cert, .key, .reason))]
    Identity {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What rustls found wrong (part of the message).
        reason: rustls::Error,
    },
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
    /// The web listener's TCP socket could not be bound.
    #[error("binding the web listener to {addr}")]
    WebBind {
        /// The web listen address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The WebTransport development certificate could not be made.
    #[error(transparent)]
    WebCert(#[from] super::webcert::WebCertError),
    /// The bound admin listener could not be set up for serving.
    #[error("starting the admin listener")]
    AdminListener(#[source] std::io::Error),
    /// A node of a cluster was started without a node id.
    #[error("a cluster node needs a node id (node_id in the configuration, or --node-id)")]
    ClusterNodeId,
    /// The configuration asks for cluster mode (`[cluster]`, `--cluster`), which this build
    /// cannot run, or of [`Server::bind`](super::Server::bind), which binds a single node.
    #[error("{0}")]
    ClusterUnsupported(&'static str),
    /// The listening address could not be read.
    #[error("reading the listening address")]
    LocalAddr(#[source] std::io::Error),
}

fn identity_message(cert: &Path, key: &Path, reason: &rustls::Error) -> String {
    let (cert, key) = (cert.display(), key.display());
    match reason {
        rustls::Error::InconsistentKeys(_) => {
            format!("the private key {key} does not match the certificate {cert}")
        }
        _ => format!("the certificate {cert} and the private key {key}: {reason}"),
    }
}
