//! Operation rate limits (docs/PROTOCOL.md, section 9): per user and per client address, on
//! every request but messages (which have their own per-room limit) and logout.
//!
//! The address is an opaque key chosen by the caller (the server keys an IPv4 address, or an
//! IPv6 /64); the core only counts. An address with no connection left is remembered until its
//! bucket has refilled, so that hanging up and reconnecting does not refill it.
//!
//! The same holds for users: a user's operation bucket outlives its last session, and a
//! member's message bucket (per user per room, `messages.rs`) outlives its membership, resting
//! until it has refilled, so that logging out and in, or leaving and rejoining, does not refill
//! it either. Resting buckets are forgotten by a sweep when they are full again.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ConnId, Core, Now, SessionId, Timer, TokenBucket};
use crate::wire::{ErrorCode, Request};

/// Resting buckets forgotten per timer at most, so that one sweep holds the core briefly.
const SWEEP_BATCH: usize = 4096;

/// One client address: its live connections and its bucket.
#[derive(Debug)]
pub(crate) struct Origin {
    conns: usize,
    bucket: TokenBucket,
}

/// Whether a request counts toward the operation rate limits.
pub(crate) fn counts(request: &Request) -> bool {
    !matches!(request, Request::SendRoomMessage { .. } | Request::Logout)
}

impl Core {
    /// A connection from the client address `origin` (an opaque key) opened its control
    /// stream. Its logins and operations count toward that address's rate limit from now on.
    pub fn handle_connect(&mut self, now: Now, conn: ConnId, origin: u64) {
        let burst = self.limits.address_ops_burst;
        let o = self
            .origins
            .entry(origin)
            .or_insert_with(|| Origin { conns: 0, bucket: TokenBucket::new(burst, now.mono_ms) });
        o.conns += 1;
        self.conn_origin.insert(conn, origin);
    }

    /// Number of client addresses remembered (for tests and metrics).
    pub fn address_count(&self) -> usize {
        self.origins.len()
    }

    /// Forgets a finished connection's address.
    pub(crate) fn forget_origin(&mut self, now: Now, conn: ConnId) {
        let Some(origin) = self.conn_origin.remove(&conn) else { return };
        let Some(o) = self.origins.get_mut(&origin) else { return };
        o.conns = o.conns.saturating_sub(1);
        self.origin_idle(now, origin);
    }

    /// Drops an address with no connection once its bucket is full again (re-arming a timer
    /// until then).
    pub(crate) fn origin_idle(&mut self, now: Now, origin: u64) {
        let (rate, burst) = (self.limits.address_ops_rate_per_s, self.limits.address_ops_burst);
        let Some(o) = self.origins.get(&origin) else { return };
        if o.conns > 0 {
            return;
        }
        let wait = o.bucket.ms_until_full(rate, burst, now.mono_ms);
        if wait == 0 {
            self.origins.remove(&origin);
        } else {
            self.timers.insert((now.mono_ms + wait, Timer::OriginIdle(origin)));
        }
    }

    /// Every open connection's address counts it once, and an address without connections
    /// waits on its idle timer (part of [`Core::check_invariants`]).
    pub(crate) fn check_origins(&self) -> Result<(), String> {
        let mut open: HashMap<u64, usize> = HashMap::new();
        for origin in self.conn_origin.values() {
            *open.entry(*origin).or_default() += 1;
        }
        for (key, o) in &self.origins {
            let live = open.remove(key).unwrap_or(0);
            if o.conns != live {
                return Err(format!("address {key}: {} connections counted, {live} open", o.conns));
            }
            if live == 0 && !self.timers.iter().any(|(_, t)| *t == Timer::OriginIdle(*key)) {
                return Err(format!("address {key} has no connection and no idle timer"));
            }
        }
        match open.keys().next() {
            Some(key) => Err(format!("connections from address {key}, which is not counted")),
            None => Ok(()),
        }
    }

    /// Takes one operation from the connection's address bucket (a login or resume).
    pub(crate) fn admit_address(&mut self, now: Now, conn: ConnId) -> Result<(), ErrorCode> {
        let (rate, burst) = (self.limits.address_ops_rate_per_s, self.limits.address_ops_burst);
        if rate == 0 {
            return Ok(());
        }
        let Some(o) = self.conn_origin.get(&conn).and_then(|k| self.origins.get_mut(k)) else {
            return Ok(());
        };
        if o.bucket.try_take(rate, burst, now.mono_ms) {
            Ok(())
        } else {
            Err(ErrorCode::AddressRateLimited)
        }
    }

    /// Takes one operation from the user's bucket, then from its address's.
    pub(crate) fn admit_operation(
        &mut self,
        now: Now,
        conn: ConnId,
        sid: SessionId,
    ) -> Result<(), ErrorCode> {
        let (rate, burst) = (self.limits.ops_rate_per_s, self.limits.ops_burst);
        if rate > 0 {
            if let Some(s) = self.sessions.get(&sid) {
                let bucket = match self.user_ops.get_mut(&*s.user_id) {
                    Some(b) => b,
                    None => {
                        let b = self
                            .resting_ops
                            .take(&s.user_id)
                            .unwrap_or_else(|| TokenBucket::new(burst, now.mono_ms));
                        self.user_ops.entry(s.user_id.clone()).or_insert(b)
                    }
                };
                if !bucket.try_take(rate, burst, now.mono_ms) {
                    return Err(ErrorCode::OperationRateLimited);
                }
            }
        }
        self.admit_address(now, conn)
    }

    /// Puts the operation bucket of a user with no session left to rest until it has refilled.
    pub(crate) fn rest_ops_bucket(&mut self, user: Arc<str>, bucket: TokenBucket) {
        let (rate, burst) = (self.limits.ops_rate_per_s, self.limits.ops_burst);
        if let Some(at) = self.resting_ops.park(user, bucket, rate, burst) {
            self.timers.insert((at, Timer::RestingBuckets));
        }
    }

    /// Puts the message bucket of a user who left a room to rest until it has refilled.
    pub(crate) fn rest_message_bucket(
        &mut self,
        room_id: Arc<str>,
        user: Arc<str>,
        bucket: TokenBucket,
    ) {
        let (rate, burst) = (self.limits.rate_limit_per_s, self.limits.rate_limit_burst);
        if let Some(at) = self.resting_messages.park((room_id, user), bucket, rate, burst) {
            self.timers.insert((at, Timer::RestingBuckets));
        }
    }

    /// Forgets resting buckets that are full again, a batch at a time.
    pub(crate) fn sweep_resting(&mut self, now: Now) {
        let more_ops = self.resting_ops.sweep(now.mono_ms, SWEEP_BATCH);
        let more_messages = self.resting_messages.sweep(now.mono_ms, SWEEP_BATCH);
        if more_ops || more_messages {
            self.timers.insert((now.mono_ms + 1, Timer::RestingBuckets));
        }
    }

    /// Number of resting rate buckets (users' operation buckets and members' message buckets
    /// kept after their session or membership ended, until they have refilled).
    pub fn resting_bucket_count(&self) -> usize {
        self.resting_ops.len() + self.resting_messages.len()
    }

    /// A resting bucket belongs to nobody who could use it (no session of its user, no
    /// membership of its user in its room), and a sweep is armed while any rests (part of
    /// [`Core::check_invariants`]).
    pub(crate) fn check_resting(&self) -> Result<(), String> {
        self.resting_ops.check()?;
        self.resting_messages.check()?;
        if let Some((user, _)) =
            self.resting_ops.iter().find(|(u, _)| self.user_ops.contains_key(*u))
        {
            return Err(format!("user {user} has an operation bucket in use and one resting"));
        }
        for ((room_id, user), _) in self.resting_messages.iter() {
            let room = self.room_ids.get(room_id).and_then(|k| self.rooms.get(k));
            if room.is_some_and(|r| r.entry(user).is_some()) {
                return Err(format!("{user} is in room {room_id} and its message bucket rests"));
            }
        }
        let armed = self.timers.iter().any(|(_, t)| *t == Timer::RestingBuckets);
        if self.resting_bucket_count() > 0 && !armed {
            return Err("buckets rest and no sweep is armed".into());
        }
        Ok(())
    }
}
