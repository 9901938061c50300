//! The options of [`NatsBus::connect`](super::NatsBus::connect) and why it can fail.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How to reach the NATS servers and lay the cluster out on them (the `[cluster]` table of the
/// server configuration). Every field but `nats` has a default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsOptions {
    /// Seed URLs, for example `nats://127.0.0.1:4222`.
    pub nats: Vec<String>,
    /// Prefix of every stream, bucket and subject, so that several clusters can share one NATS:
    /// `[A-Za-z0-9_-]+`.
    pub prefix: String,
    /// Room-log streams (K); stored in the cluster constants at the first start and checked
    /// afterwards.
    pub shards: u32,
    /// JetStream replicas of every stream (R): 1 for one nats-server, 3 in production. Refused
    /// above 1 on nats-server older than 2.9.21.
    pub replicas: usize,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// A PEM file of CA certificates to verify the NATS servers with; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// How long [`NatsBus::append`](super::NatsBus::append) retries before it gives up, in milliseconds.
    pub append_timeout_ms: u64,
    /// A node whose heartbeat is older than this is dead, in milliseconds.
    pub dead_after_ms: u64,
    /// Timeout of one JetStream API request or KV operation, in milliseconds.
    pub request_timeout_ms: u64,
    /// Messages async-nats buffers per subscription (a feed or the control listener) before it
    /// drops and reports a slow consumer; feeds repair what it drops.
    pub subscription_capacity: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            nats: vec!["nats://127.0.0.1:4222".into()],
            prefix: "huddle".into(),
            shards: 1,
            replicas: 1,
            credentials: None,
            user: None,
            password: None,
            tls_ca: None,
            append_timeout_ms: 10_000,
            dead_after_ms: 5_000,
            request_timeout_ms: 2_000,
            subscription_capacity: 65_536,
        }
    }
}

impl NatsOptions {
    /// [`NatsOptions::append_timeout_ms`] as a duration.
    pub fn append_timeout(&self) -> Duration {
        Duration::from_millis(self.append_timeout_ms)
    }

    /// [`NatsOptions::dead_after_ms`] as a duration.
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }

    pub(super) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// Why [`NatsBus::connect`](super::NatsBus::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The options are unusable.
    #[error("invalid cluster options: {0}")]
    Options(String),
    /// No NATS server could be reached, or it refused us.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The server is too old for the requested replication.
    #[error(
        "nats-server {version} cannot keep per-subject compare-and-set exact with replicas > 1; \
         use 2.9.21 or later (2.11 or later recommended), or replicas = 1"
    )]
    Version {
        /// The version the server reported.
        version: String,
    },
    /// JetStream refused to create or open a stream or bucket.
    #[error("cannot set up JetStream {what}: {reason}")]
    Setup {
        /// The stream or bucket.
        what: String,
        /// JetStream's answer.
        reason: String,
    },
    /// The cluster constants stored by the first node differ from ours.
    #[error("this node has {ours} but the cluster was created with {stored}")]
    Mismatch {
        /// What the cluster stored.
        stored: String,
        /// What this node was configured with.
        ours: String,
    },
}

pub(super) fn validate(opts: &NatsOptions) -> Result<(), ConnectError> {
    let bad = |what: &str| Err(ConnectError::Options(what.into()));
    if opts.nats.is_empty() {
        return bad("`nats` lists no server");
    }
    if opts.prefix.is_empty()
        || !opts.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("`prefix` must match [A-Za-z0-9_-]+");
    }
    if opts.shards == 0 || opts.shards > super::naming::MAX_SHARDS {
        return bad("`shards` must be 1 to 16");
    }
    if opts.replicas == 0 || opts.replicas > 5 {
        return bad("`replicas` must be 1 to 5");
    }
    if opts.user.is_some() != opts.password.is_some() {
        return bad("`user` and `password` go together");
    }
    Ok(())
}

/// Refuses `replicas > 1` below 2.9.21, whose clustered streams check
/// `Nats-Expected-Last-Subject-Sequence` outside Raft (nats-server#4320), and warns below 2.11.
pub(super) fn check_version(version: &str, replicas: usize) -> Result<(), ConnectError> {
    let parsed = parse_version(version);
    if replicas > 1 {
        if parsed.map_or(true, |v| v < (2, 9, 21)) {
            return Err(ConnectError::Version { version: version.into() });
        }
        if parsed.is_some_and(|v| v < (2, 11, 0)) {
            tracing::warn!(
                version,
                "nats-server before 2.11 can desynchronise per-subject sequences after a leader \
                 change; 2.11 or later is recommended for replicas > 1"
            );
        }
    }
    Ok(())
}

fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let core = version.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_2_9_21_refuse_replicas() {
        assert!(check_version("2.9.10", 1).is_ok());
        assert!(matches!(check_version("2.9.10", 3), Err(ConnectError::Version { .. })));
        assert!(check_version("2.9.21", 3).is_ok());
        assert!(check_version("2.15.1", 3).is_ok());
        assert!(check_version("v2.11.0-beta.1", 3).is_ok());
        assert!(check_version("garbage", 3).is_err());
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
    }
}
