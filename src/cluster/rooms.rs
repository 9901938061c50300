//! A watch of the registry: every room incarnation as it appears, for nodes that follow every
//! room (cluster phase 1).

use async_nats::jetstream::kv::{Operation, Watch};
use futures::StreamExt;

use super::bus::NatsBus;
use super::kv::CasError;
use super::naming;

/// The room incarnations of the registry: first those registered when the watch starts, then
/// each new one as it is created ([`NatsBus::watch_rooms`]).
pub struct RoomWatch {
    watch: Watch,
}

impl RoomWatch {
    /// The next incarnation registered: its room id and epoch. `None` once the watch has ended
    /// (the connection closed, or the watch's consumer was lost): start a new one.
    pub async fn next(&mut self) -> Option<(String, u64)> {
        loop {
            let entry = self.watch.next().await?.ok()?;
            if entry.operation != Operation::Put {
                continue;
            }
            let Some(room_id) = entry.key.strip_prefix("r.").and_then(naming::decode) else {
                continue;
            };
            return Some((room_id, entry.revision));
        }
    }
}

impl NatsBus {
    /// Watches the registry from its current records on. A record's revision is the epoch of the
    /// incarnation it created (the registry's records are created, then deleted, never replaced).
    pub async fn watch_rooms(&self) -> Result<RoomWatch, CasError> {
        let watch =
            self.inner.rooms.watch_with_history("r.*").await.map_err(|_| CasError::Unavailable)?;
        Ok(RoomWatch { watch })
    }
}
