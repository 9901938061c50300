//! Sessions that outlive their connection (docs/PROTOCOL.md, section 4.6): the offline grace
//! period and resumption with replay from history.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::limits::{invalid_user_id, MAX_RESUME_ROOMS};
use super::{
    err, valid_user_id, ConnId, Core, LoginOutcome, Now, OpResult, Output, RoomKey, SessionId,
    Timer,
};
use crate::wire::{
    encode_frame, ErrorBody, ErrorCode, Event, LeaveReason, Login, Priority, Reply, Response,
    Resume, RoomMessage, RoomRecovery, PROTOCOL_VERSION,
};

/// A room to replay on resumption: its stream, the last seq the client saw there, and the
/// place of its answer among the Resumed answer's rooms.
struct Gap {
    key: RoomKey,
    room_id: String,
    last_seen: u64,
    slot: usize,
}

/// The rooms a Resume lists, each once (the first mention counts), in order, with a lookup.
struct Listed<'a> {
    order: Vec<(&'a str, u64)>,
    last_seen: HashMap<&'a str, u64>,
}

impl<'a> Listed<'a> {
    fn new(rooms: &'a [(String, u64)]) -> Listed<'a> {
        let mut listed = Listed { order: Vec::new(), last_seen: HashMap::new() };
        for (room_id, seq) in rooms {
            if let Entry::Vacant(v) = listed.last_seen.entry(room_id.as_str()) {
                v.insert(*seq);
                listed.order.push((room_id, *seq));
            }
        }
        listed
    }
}

/// Splits a budget of (bytes, messages) among rooms that each ask for `demand`: a room that
/// asks for no more than an equal share gets what it asks, and what it leaves is shared by the
/// others, until the rest each get an equal share of what remains. Quadratic in the number of
/// rooms, which is at most `rooms_per_user`.
fn share(budget: (usize, usize), demand: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut quota = vec![(0, 0); demand.len()];
    let mut open: Vec<usize> = (0..demand.len()).collect();
    let (mut bytes, mut frames) = budget;
    while !open.is_empty() {
        let (n, before) = (open.len(), open.len());
        let (per_bytes, per_frames) = (bytes / n, frames / n);
        open.retain(|&i| {
            let (b, f) = demand[i];
            let fits = b <= per_bytes && f <= per_frames;
            if fits {
                quota[i] = (b, f);
                bytes -= b;
                frames -= f;
            }
            !fits
        });
        if open.len() == before {
            for &i in &open {
                quota[i] = (per_bytes, per_frames);
            }
            break;
        }
    }
    quota
}

/// The missed messages a resumption replays, with their frame lengths, in seq order: those
/// after `last_seen` but low ones (best effort) and the session's own (never sent it live).
fn eligible<'a>(
    room: &'a super::room::Room,
    last_seen: u64,
    me: Option<&'a str>,
) -> impl DoubleEndedIterator<Item = (&'a RoomMessage, usize)> {
    room.history()
        .after(last_seen)
        .filter(move |(m, _)| m.priority != Priority::Low && me.map_or(true, |me| me != m.sender))
}

fn same_secret(a: &[u8; 16], b: &[u8; 16]) -> bool {
    // Constant time: every byte is compared whatever the earlier ones were.
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Core {
    /// Handles a connection that is gone. With an offline grace period the session keeps its
    /// memberships (nobody is told) until the grace ends or it is resumed; without one it ends
    /// at once with reason `offline`.
    pub fn handle_disconnect(&mut self, now: Now, conn: ConnId) {
        self.forget_origin(now, conn);
        let Some(sid) = self.by_conn.remove(&conn) else { return };
        let grace_ms = self.limits.offline_grace_s * 1000;
        if grace_ms == 0 {
            self.end_session(now, sid, LeaveReason::Offline);
            return;
        }
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        s.conn = None;
        let until = now.mono_ms + grace_ms;
        s.offline_until = Some(until);
        let rooms = s.rooms.clone();
        self.timers.insert((until, Timer::Offline(sid)));
        for key in rooms {
            if let Some(r) = self.rooms.get_mut(&key) {
                r.forget_recipients();
            }
        }
    }

    /// Handles a connection the server closed for breaking the protocol: its session ends at
    /// once (reason `offline`), since a broken client would only break again on resumption.
    pub fn handle_protocol_close(&mut self, now: Now, conn: ConnId) {
        self.forget_origin(now, conn);
        if let Some(sid) = self.by_conn.get(&conn).copied() {
            self.end_session(now, sid, LeaveReason::Offline);
        }
    }

    /// The offline grace of a session ended: it leaves its rooms with reason `offline`.
    pub(crate) fn offline_expired(&mut self, now: Now, sid: SessionId, at: u64) {
        let due = self
            .sessions
            .get(&sid)
            .is_some_and(|s| s.conn.is_none() && s.offline_until == Some(at));
        if due {
            self.end_session(now, sid, LeaveReason::Offline);
        }
    }

    /// Handles a Resume as the first request of a connection and says what came of it: the
    /// held session taken over, a new session (the held one was gone), or a refusal, on which
    /// the caller has been told to close the connection. `fresh_secret` is used when a new
    /// session has to be made.
    pub fn handle_resume(
        &mut self,
        now: Now,
        conn: ConnId,
        request_id: u32,
        resume: Resume,
        fresh_secret: [u8; 16],
    ) -> LoginOutcome {
        let admitted = self.admit_address(now, conn).map_err(err);
        match admitted.and_then(|()| self.resume(now, conn, resume, fresh_secret)) {
            Ok(response) => {
                let outcome = match &response {
                    Response::Resumed { session_id, session_resumed: true, .. } => {
                        LoginOutcome::Resumed { session: *session_id }
                    }
                    Response::Resumed { session_id, .. } => {
                        LoginOutcome::LoggedIn { session: *session_id }
                    }
                    _ => LoginOutcome::LoggedIn {
                        session: self.by_conn.get(&conn).copied().unwrap_or_default(),
                    },
                };
                self.reply(conn, request_id, Reply::Ok(response));
                outcome
            }
            Err(e) => LoginOutcome::Refused { code: self.refuse_login(conn, request_id, e) },
        }
    }

    fn resume(&mut self, now: Now, conn: ConnId, r: Resume, fresh_secret: [u8; 16]) -> OpResult {
        if self.by_conn.contains_key(&conn) {
            return Err(err(ErrorCode::AlreadyLoggedIn));
        }
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(ErrorBody::with_message(
                ErrorCode::UnsupportedVersion,
                format!("server speaks protocol version {PROTOCOL_VERSION}"),
            ));
        }
        if !valid_user_id(&r.user_id) {
            return Err(invalid_user_id());
        }
        let max_rooms = self.limits.rooms_per_user.max(MAX_RESUME_ROOMS);
        if r.rooms.len() > max_rooms {
            return Err(ErrorBody::with_message(
                ErrorCode::InvalidRequest,
                format!("a Resume lists at most {max_rooms} rooms"),
            ));
        }
        let claims = self.keys.verify(&r.token, &r.user_id, now.unix_ms / 1000).map_err(err)?;
        let held = self.sessions.get(&r.session_id).map(|s| {
            (&*s.user_id == r.user_id.as_str(), same_secret(&s.resume_secret, &r.resume_secret))
        });
        match held {
            Some((true, true)) => self.continue_session(now, conn, r, claims.exp),
            Some(_) => Err(err(ErrorCode::SessionNotFound)),
            None => {
                // The grace is over (or the server restarted): a new session rejoins the rooms.
                let login = Login {
                    protocol_version: r.protocol_version,
                    user_id: r.user_id.clone(),
                    user_name: r.user_name.clone(),
                    token: r.token.clone(),
                };
                let (session_id, resume_secret) =
                    match self.login(now, conn, login, fresh_secret)? {
                        Response::LoggedIn { session_id, resume_secret, .. } => {
                            (session_id, resume_secret)
                        }
                        _ => return Err(err(ErrorCode::Internal)),
                    };
                let listed = Listed::new(&r.rooms);
                let mut rooms: Vec<RoomRecovery> = Vec::with_capacity(listed.order.len());
                let mut gaps = Vec::new();
                for &(room_id, last_seen) in &listed.order {
                    match self.rejoin(now, session_id, room_id) {
                        Ok(key) => {
                            let slot = rooms.len();
                            gaps.push(Gap { key, room_id: room_id.to_string(), last_seen, slot });
                            rooms.push(not_in_room(room_id, 0));
                        }
                        Err(failed) => rooms.push(failed),
                    }
                }
                self.replay(conn, &gaps, &mut rooms);
                Ok(Response::Resumed {
                    session_id,
                    resume_secret,
                    session_resumed: false,
                    token_expires_at_s: claims.exp,
                    rooms,
                })
            }
        }
    }

    /// Moves a held session to a new connection and replays what each room missed.
    fn continue_session(
        &mut self,
        now: Now,
        conn: ConnId,
        r: Resume,
        token_exp_s: u64,
    ) -> OpResult {
        let sid = r.session_id;
        // The caller found the session; a miss here would be a core bug, answered as such.
        let Some(s) = self.sessions.get_mut(&sid) else { return Err(err(ErrorCode::Internal)) };
        if let Some(old) = s.conn.replace(conn) {
            self.by_conn.remove(&old);
            self.outputs
                .push_back(Output::Close { conn: old, code: Some(ErrorCode::SessionResumed) });
        }
        if let Some(at) = s.offline_until.take() {
            self.timers.remove(&(at, Timer::Offline(sid)));
        }
        let renewed = s.token_exp_s != token_exp_s;
        s.token_exp_s = token_exp_s;
        let (secret, keys) = (s.resume_secret, s.rooms.clone());
        self.by_conn.insert(conn, sid);
        if renewed {
            self.arm_token_timers(now, sid, token_exp_s);
        }
        let listed = Listed::new(&r.rooms);
        let mut rooms = Vec::with_capacity(keys.len() + listed.order.len());
        let mut gaps = Vec::with_capacity(keys.len());
        let mut in_session = HashSet::with_capacity(keys.len());
        for key in keys {
            let Some(room) = self.rooms.get_mut(&key) else { continue };
            room.forget_recipients();
            let room_id = room.id.to_string();
            // A room the client did not list gets its stream and no replay.
            let last_seen =
                listed.last_seen.get(room_id.as_str()).copied().unwrap_or(room.last_seq);
            self.outputs.push_back(Output::open_room_stream(conn, key, &room_id));
            in_session.insert(room_id.clone());
            gaps.push(Gap { key, room_id: room_id.clone(), last_seen, slot: rooms.len() });
            rooms.push(not_in_room(&room_id, 0));
        }
        self.replay(conn, &gaps, &mut rooms);
        // Rooms the client named that the session is no longer in.
        for &(room_id, _) in &listed.order {
            if !in_session.contains(room_id) {
                let last_seq = self
                    .room_ids
                    .get(room_id)
                    .and_then(|k| self.rooms.get(k))
                    .map_or(0, |r| r.last_seq);
                rooms.push(not_in_room(room_id, last_seq));
            }
        }
        Ok(Response::Resumed {
            session_id: sid,
            resume_secret: secret,
            session_resumed: true,
            token_expires_at_s: token_exp_s,
            rooms,
        })
    }

    /// A new session of a returning user joins a room it was in; the room's key, or the answer
    /// for a room it could not join.
    fn rejoin(&mut self, now: Now, sid: SessionId, room_id: &str) -> Result<RoomKey, RoomRecovery> {
        let failed = |code: ErrorCode, last_seq: u64| RoomRecovery {
            room_id: room_id.to_string(),
            rejoined: false,
            recovered: false,
            replayed: 0,
            last_seq,
            error_code: code.as_u16(),
        };
        let key = match self.existing_room(room_id) {
            Ok(room) => room.key,
            Err(e) => {
                return Err(failed(ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal), 0))
            }
        };
        if self.external().is_some() {
            // A rejoin through the cluster log is not carried yet: the client joins again.
            let last = self.rooms.get(&key).map_or(0, |r| r.last_seq);
            return Err(failed(ErrorCode::ClusterUnavailable, last));
        }
        let check = self.check_can_join(sid, self.rooms.get(&key));
        if let Err(e) = check {
            let last = self.rooms.get(&key).map_or(0, |r| r.last_seq);
            return Err(failed(ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal), last));
        }
        self.add_member(now, sid, key, false);
        Ok(key)
    }

    /// Pushes each room's messages after its `last_seen` onto the connection's room stream
    /// (ahead of anything broadcast later) and writes each room's answer into its slot of
    /// `answers`. All the rooms share one budget ([`super::Limits::replay_budget`]): each room
    /// asks for its missed messages, sized from the lengths history keeps, without encoding
    /// anything; [`share`] splits the budget; a room gets the newest of its messages that fit
    /// its share, and is `recovered` only when that is every message it missed. Only what is
    /// kept is encoded. Work: two passes over each room's history, plus encoding at most the
    /// budget.
    fn replay(&mut self, conn: ConnId, gaps: &[Gap], answers: &mut [RoomRecovery]) {
        let budget = self.limits.replay_budget();
        let me = self.by_conn.get(&conn).and_then(|sid| self.sessions.get(sid));
        let me = me.map(|s| &*s.user_id);
        let demand: Vec<(usize, usize)> = gaps
            .iter()
            .map(|g| {
                let Some(room) = self.rooms.get(&g.key) else { return (0, 0) };
                let mut asked = (0, 0);
                for (_, len) in eligible(room, g.last_seen, me).rev() {
                    asked = (asked.0 + len, asked.1 + 1);
                    if asked.0 > budget.0 || asked.1 > budget.1 {
                        // More than the whole budget: never satisfied, so no need to go on.
                        return (usize::MAX, usize::MAX);
                    }
                }
                asked
            })
            .collect();
        let quota = share(budget, &demand);
        for ((g, asked), quota) in gaps.iter().zip(&demand).zip(&quota) {
            let Some(room) = self.rooms.get(&g.key) else {
                answers[g.slot] = RoomRecovery {
                    error_code: ErrorCode::RoomDoesNotExist.as_u16(),
                    ..not_in_room(&g.room_id, 0)
                };
                continue;
            };
            let mut used = (0, 0);
            let kept = eligible(room, g.last_seen, me)
                .rev()
                .take_while(|(_, len)| {
                    used = (used.0 + len, used.1 + 1);
                    used.0 <= quota.0 && used.1 <= quota.1
                })
                .count();
            let mut frames: Vec<_> = eligible(room, g.last_seen, me)
                .rev()
                .take(kept)
                .map(|(m, _)| encode_frame(&Event::RoomMessage(m.clone())))
                .collect();
            frames.reverse();
            let covered = g.last_seen >= room.last_seq
                || room.history().first_seq().is_some_and(|f| f <= g.last_seen.saturating_add(1));
            let whole = asked.0 <= quota.0 && asked.1 <= quota.1;
            answers[g.slot] = RoomRecovery {
                room_id: g.room_id.clone(),
                rejoined: true,
                recovered: covered && whole,
                replayed: kept as u32,
                last_seq: room.last_seq,
                error_code: 0,
            };
            for frame in frames {
                self.outputs.push_back(Output::Push { conn, room: Some(g.key), frame });
            }
        }
    }
}

/// The answer for a listed room the session is not in.
fn not_in_room(room_id: &str, last_seq: u64) -> RoomRecovery {
    RoomRecovery {
        room_id: room_id.to_string(),
        rejoined: false,
        recovered: false,
        replayed: 0,
        last_seq,
        error_code: ErrorCode::NotInRoom.as_u16(),
    }
}
