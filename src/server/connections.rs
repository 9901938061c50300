//! The operator's connection listing (`GET /v1/connections`, like NATS `/connz` or Redis
//! `CLIENT LIST`): the core's view of each connection (user, session, rooms) joined with what
//! only the transport knows (address, RTT, bytes and packets, the outbox's queue).
//!
//! [`Shared`](super::shared::Shared) copies a page's [`Handles`] out together with the core's
//! answer, under the core lock; the figures are read here afterwards, because each read takes
//! quinn's lock of that connection.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::outbox::Outbox;
use crate::core::{AdminConnection, AdminConnectionPage};

/// What the server notes about a registered connection for the listing, beside its outbox.
pub(super) struct Link {
    /// When the connection was accepted, ms since the Unix epoch.
    pub(super) connected_at_ms: u64,
    /// The client's 0-RTT data was accepted (a returning client's Login or Resume in its first
    /// flight).
    pub(super) zero_rtt: bool,
}

/// A connection's transport, copied out of the outbox table under the core lock.
pub(super) struct Handles {
    pub(super) outbox: Arc<Outbox>,
    pub(super) connected_at_ms: u64,
    pub(super) zero_rtt: bool,
}

/// One open connection: the core's view and the transport's figures.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ConnectionInfo {
    /// Connection id, user, session and rooms.
    #[serde(flatten)]
    pub core: AdminConnection,
    /// The client's address now (it changes when the client migrates).
    pub remote_addr: SocketAddr,
    /// When the connection was accepted, ms since the Unix epoch.
    pub connected_at_ms: u64,
    /// The client's 0-RTT data was accepted.
    pub zero_rtt: bool,
    /// quinn's smoothed round-trip time, ms.
    pub rtt_ms: f64,
    /// UDP payload bytes sent to the client.
    pub bytes_sent: u64,
    /// UDP payload bytes received from it.
    pub bytes_received: u64,
    /// UDP datagrams sent.
    pub packets_sent: u64,
    /// UDP datagrams received.
    pub packets_received: u64,
    /// QUIC packets declared lost.
    pub packets_lost: u64,
    /// Frame bytes queued in the connection's outbox, not yet handed to QUIC.
    pub queued_bytes: u64,
    /// Frames queued in the outbox.
    pub queued_frames: u64,
}

/// A page of the connection listing, in connection id order.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ConnectionPage {
    /// The connections of this page.
    pub connections: Vec<ConnectionInfo>,
    /// Connections that match the filter, on every page together.
    pub total: u64,
    /// The flag of the next page; empty after the last one.
    pub next_flag: String,
}

impl ConnectionInfo {
    /// Reads the transport's figures (outside the core lock).
    pub(super) fn read(core: AdminConnection, handles: &Handles) -> ConnectionInfo {
        let outbox = &handles.outbox;
        let stats = outbox.connection_stats();
        let (queued_bytes, queued_frames) = outbox.queued();
        ConnectionInfo {
            core,
            remote_addr: outbox.remote_address(),
            connected_at_ms: handles.connected_at_ms,
            zero_rtt: handles.zero_rtt,
            // Microsecond resolution: a loopback RTT is well under a millisecond.
            rtt_ms: stats.path.rtt.as_micros() as f64 / 1000.0,
            bytes_sent: stats.udp_tx.bytes,
            bytes_received: stats.udp_rx.bytes,
            packets_sent: stats.udp_tx.datagrams,
            packets_received: stats.udp_rx.datagrams,
            packets_lost: stats.path.lost_packets,
            queued_bytes: queued_bytes as u64,
            queued_frames: queued_frames as u64,
        }
    }
}

impl ConnectionPage {
    /// Joins the core's page with its connections' handles (`None`: the connection has no
    /// outbox, and is left out), reading the figures outside the core lock.
    pub(super) fn read(page: AdminConnectionPage, handles: Vec<Option<Handles>>) -> ConnectionPage {
        let connections = page
            .connections
            .into_iter()
            .zip(handles)
            .filter_map(|(core, h)| Some(ConnectionInfo::read(core, h.as_ref()?)))
            .collect();
        ConnectionPage { connections, total: page.total, next_flag: page.next_flag }
    }
}
