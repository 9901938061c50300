//! [`NatsBus`]: the connection, and what every part of the layer shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderName;
use async_nats::jetstream::{self, kv::Store, stream::Stream};
use async_nats::{Client, ConnectOptions, Event, HeaderMap};
use tokio::sync::watch;

use super::naming::LogRef;
use super::options::{check_version, validate, ConnectError, NatsOptions};
use super::setup;

/// A node's connection to the cluster's NATS: room logs and feeds, the registry, snapshots,
/// users, node liveness and control requests. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct NatsBus {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) opts: NatsOptions,
    /// The room-log streams, indexed by shard.
    pub(super) streams: Vec<Stream>,
    pub(super) rooms: Store,
    pub(super) snaps: Store,
    pub(super) users: Store,
    pub(super) nodes: Store,
    /// Entries feeds read from the stream, after their first catch-up, because their live
    /// copies were lost.
    pub(super) repaired: AtomicU64,
    /// Counts connections (re)established and slow-consumer events: each one makes every feed
    /// check its room's tail, because core NATS may have dropped entries meanwhile.
    pub(super) resync: watch::Receiver<u64>,
}

impl NatsBus {
    /// Connects, checks the server version against `replicas`, creates (idempotently) the
    /// room-log streams and the KV buckets, and stores or checks the cluster constants.
    pub async fn connect(opts: NatsOptions) -> Result<NatsBus, ConnectError> {
        validate(&opts)?;
        let (resync_tx, resync) = watch::channel(0u64);
        let resync_tx = Arc::new(resync_tx);
        let mut connect = ConnectOptions::new()
            .request_timeout(Some(opts.request_timeout()))
            .subscription_capacity(opts.subscription_capacity.max(1))
            .event_callback(move |event| {
                let resync_tx = resync_tx.clone();
                async move {
                    match event {
                        Event::Connected | Event::SlowConsumer(_) => {
                            resync_tx.send_modify(|n| *n += 1)
                        }
                        Event::Disconnected => tracing::warn!("NATS connection lost"),
                        _ => {}
                    }
                }
            });
        if let Some(path) = &opts.credentials {
            connect = connect
                .credentials_file(path)
                .await
                .map_err(|e| ConnectError::Options(format!("{}: {e}", path.display())))?;
        }
        if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &opts.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = connect
            .connect(opts.nats.join(","))
            .await
            .map_err(|e| ConnectError::Connect(e.to_string()))?;
        let version = client.server_info().version;
        check_version(&version, opts.replicas)?;
        let js =
            jetstream::ContextBuilder::new().timeout(opts.request_timeout()).build(client.clone());
        let mut streams = Vec::with_capacity(opts.shards as usize);
        for shard in 0..opts.shards {
            streams.push(setup::ensure_stream(&js, &opts, shard).await?);
        }
        let p = &opts.prefix;
        let dead_after = opts.dead_after().max(Duration::from_secs(30));
        let rooms = setup::ensure_bucket(&js, &opts, &format!("{p}_rooms"), None).await?;
        let snaps = setup::ensure_bucket(&js, &opts, &format!("{p}_snap"), None).await?;
        let day = Duration::from_secs(24 * 3600);
        let users = setup::ensure_bucket(&js, &opts, &format!("{p}_users"), Some(day)).await?;
        let nodes =
            setup::ensure_bucket(&js, &opts, &format!("{p}_nodes"), Some(dead_after)).await?;
        let cluster = setup::ensure_bucket(&js, &opts, &format!("{p}_cluster"), None).await?;
        setup::check_constants(&cluster, opts.shards).await?;
        Ok(NatsBus {
            inner: Arc::new(Inner {
                client,
                opts,
                streams,
                rooms,
                snaps,
                users,
                nodes,
                repaired: AtomicU64::new(0),
                resync,
            }),
        })
    }

    /// The options this bus was connected with.
    pub fn options(&self) -> &NatsOptions {
        &self.inner.opts
    }

    /// The version string of the NATS server this bus is connected to.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// How many entries this bus's feeds have read from the streams because core NATS lost their
    /// live copies, found by `Nats-Last-Sequence` or by the tail check after a reconnect or
    /// slow-consumer event (a metric: `huddle_bus_gap_repairs_total`).
    pub fn gap_repairs(&self) -> u64 {
        self.inner.repaired.load(Ordering::Relaxed)
    }

    /// The log of incarnation `epoch` of room `room_id`.
    pub fn log(&self, room_id: &str, epoch: u64) -> LogRef {
        LogRef::new(room_id, epoch, self.inner.opts.shards)
    }
}

/// The value of header `name`. The name is parsed, not passed as a `&str`: async-nats keeps the
/// headers it knows (`Nats-Sequence`, ...) as standard names, which a `&str` never equals.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name.parse::<HeaderName>().ok()?).map(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use async_nats::header::NATS_MESSAGE_ID;

    use super::*;

    #[test]
    fn headers_are_found_by_their_text() {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, "a:1");
        headers.insert("Nats-Last-Sequence".parse::<HeaderName>().unwrap(), "41");
        headers.insert("Huddle-Custom", "x");
        assert_eq!(header(&headers, "Nats-Msg-Id"), Some("a:1"));
        assert_eq!(header(&headers, "Nats-Last-Sequence"), Some("41"));
        assert_eq!(header(&headers, "Huddle-Custom"), Some("x"));
        assert_eq!(header(&headers, "Nats-Sequence"), None);
    }
}
