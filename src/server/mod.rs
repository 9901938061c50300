//! The QUIC glue around the sans-IO core: endpoint, connections, timers and shutdown.
//!
//! - `endpoint`: [`Server`], the accept loop, the core's timers and shutdown.
//! - `shared`: the state every connection task shares and the one lock around the core; the
//!   core's outputs are dispatched to connection outboxes under it.
//! - `conn`: one connection's handshake, login and request loop; `outbox`: its outbound
//!   queues and stream writers.
//! - `transport` and `identity`: the TLS and QUIC settings, the certificate and the token
//!   keys; [`config`]: everything `huddle serve` can be told; `error`: [`ServerError`].
//! - `admin`, `metrics`, `guard`: the admin HTTP listener, Prometheus metrics, and the
//!   defences against misbehaving clients; `connections`: the listener's connection listing
//!   (the core's view of each connection with its transport's figures).
//! - `broker`: the carrier of the room logs in cluster mode ([`Broker`]: [`MemoryBroker`] in
//!   process, NATS JetStream with the `cluster` feature), fed from the core's outputs under
//!   the lock and feeding its events back from the bus task.
//! - [`ids`]: where session and message ids start (node ids); `secrets`: the QUIC reset and
//!   Retry keys several servers can share.

mod admin;
mod admission;
mod broker;
pub mod config;
mod conn;
mod connections;
mod endpoint;
mod error;
mod fdlimit;
mod guard;
mod identity;
pub mod ids;
mod metrics;
#[cfg(feature = "cluster")]
mod nats_broker;
mod outbox;
mod probe;
mod secrets;
mod shared;
mod transport;
mod web;
mod webcert;
mod weblisten;

pub use admin::{admin_routes, AdminRoute};
pub use broker::{Broker, MemoryBroker};
pub use config::{ConfigError, ServerConfig, DATAGRAM_SEND_BUFFER};
pub use endpoint::{run, Server};
pub use error::ServerError;
pub use fdlimit::raise_open_files_limit;
pub use guard::{client_address, GuardStats, LOG_LINES_PER_WINDOW, LOG_WINDOW};
pub use identity::{load_keys, load_tls};
#[cfg(feature = "cluster")]
pub use nats_broker::NatsBroker;
pub use outbox::{close_connection, OutboxStats};
pub use transport::{transport_config, INCOMING_BUFFER_BYTES, INCOMING_BUFFER_TOTAL_BYTES};
pub use web::{origin_allowed, WEB_ALPN, WEB_PATH};
pub use webcert::{WebCert, WebCertError, WEB_CERT_ROTATE_AFTER, WEB_CERT_VALIDITY};
