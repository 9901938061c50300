//! User-space network impairment: the kernel here has no netem, and mobile networks must be
//! tested anyway. [`model`] is the pure, seeded impairment model; [`proxy`] runs it as a UDP
//! proxy between QUIC clients and a server, usable in process (tests, `huddle load --netsim`)
//! and as `huddle netsim`; [`ip`] runs it on every IP packet between two network namespaces, for
//! TCP and QUIC alike, as `huddle ipsim`.

#[cfg(target_os = "linux")]
pub mod ip;
pub mod model;
pub mod proxy;

pub use model::{parse_spec, BurstLoss, Impairment, Link, LinkStats};
pub use proxy::{Proxy, ProxyConfig, ProxyStats};
