//! Names of room logs, keys and subjects.
//!
//! A room id or user name may hold `.`, `@`, `:` or spaces, none of which is usable in a subject
//! token or a KV key, so it is written as base64url without padding (`room64`, `user64`): only
//! `[A-Za-z0-9_-]`, reversible, 171 characters for a 128-byte id. An empty id (the wire never
//! sends one) is written `-`, which no non-empty id encodes to.
//!
//! A room's shard is the 64-bit FNV-1a hash of its id modulo the shard count K: stable across
//! builds, platforms and releases, which matters because K and this hash decide where a room's
//! log lives for as long as the cluster exists.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The largest shard count: message ids keep 4 bits for the shard.
pub const MAX_SHARDS: u32 = 16;

/// One incarnation of one room: the subject its log lives on and its feed subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogRef {
    /// The room's shard: its log is in stream `P_ROOMS_<shard>`.
    pub shard: u32,
    /// The room id, base64url without padding.
    pub room64: String,
    /// The incarnation: the registry revision that created it.
    pub epoch: u64,
}

impl LogRef {
    /// The log of incarnation `epoch` of `room_id` in a cluster of `shards` shards.
    pub fn new(room_id: &str, epoch: u64, shards: u32) -> LogRef {
        LogRef { shard: shard(room_id, shards), room64: encode(room_id), epoch }
    }

    /// The subject the entries are stored on: `<prefix>.h.<k>.<room64>.<epoch>`.
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.h.{}.{}.{}", self.shard, self.room64, self.epoch)
    }

    /// The core subject the stream RePublishes each stored entry on:
    /// `<prefix>.hl.<k>.<room64>.<epoch>`.
    pub fn feed_subject(&self, prefix: &str) -> String {
        format!("{prefix}.hl.{}.{}.{}", self.shard, self.room64, self.epoch)
    }
}

/// `id` as a subject token and KV key fragment: base64url without padding, `-` if empty.
pub fn encode(id: &str) -> String {
    if id.is_empty() {
        return "-".into();
    }
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The id [`encode`] made `token` from, if it is one.
pub fn decode(token: &str) -> Option<String> {
    if token == "-" {
        return Some(String::new());
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

/// The shard of `room_id` among `shards`: FNV-1a 64 modulo `shards`.
pub fn shard(room_id: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

/// The stream holding shard `shard`'s room logs: `P_ROOMS_<shard>`, `P` the prefix upper-cased.
pub fn stream_name(prefix: &str, shard: u32) -> String {
    format!("{}_ROOMS_{shard}", prefix.to_ascii_uppercase())
}

/// The registry key of `room_id`: `r.<room64>`.
pub fn room_key(room_id: &str) -> String {
    format!("r.{}", encode(room_id))
}

/// The snapshot key of a room incarnation: `s.<room64>.<epoch>`.
pub fn snapshot_key(log: &LogRef) -> String {
    format!("s.{}.{}", log.room64, log.epoch)
}

/// The users-bucket key of `user`: `u.<user64>`.
pub fn user_key(user: &str) -> String {
    format!("u.{}", encode(user))
}

/// The nodes-bucket key of node id `n`: `id.<n>`.
pub fn node_key(n: u16) -> String {
    format!("id.{n}")
}

/// The control subject of node `node`: `<prefix>.ctl.<node>`.
pub fn ctl_subject(prefix: &str, node: u16) -> String {
    format!("{prefix}.ctl.{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stay_in_the_subject_alphabet() {
        for id in ["", "a", "room.with.dots", "user@example.org:5", "ünï cödé", &"x".repeat(128)]
        {
            let token = encode(id);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(decode(&token).as_deref(), Some(id));
        }
        assert_eq!(encode(&"x".repeat(128)).len(), 171);
    }

    #[test]
    fn shards_are_stable() {
        // Pinned: a change would move every existing room to another stream.
        assert_eq!(shard("general", 16), 11); // FNV-1a 64 of "general" is 0x9e275796a0d9a90b
        assert_eq!(shard("anything", 1), 0);
        let log = LogRef::new("general", 7, 1);
        assert_eq!(log.subject("huddle"), "huddle.h.0.Z2VuZXJhbA.7");
        assert_eq!(log.feed_subject("huddle"), "huddle.hl.0.Z2VuZXJhbA.7");
        assert_eq!(stream_name("huddle", 3), "HUDDLE_ROOMS_3");
    }
}
