//! Sessions that outlive their connection (docs/PROTOCOL.md, section 4.6): the offline grace
//! period and resumption with replay from history.

use super::limits::invalid_user_id;
use super::{
    err, valid_user_id, ConnId, Core, LoginOutcome, Now, OpResult, Output, SessionId, Timer,
};
use crate::wire::{
    encode_frame, ErrorBody, ErrorCode, Event, LeaveReason, Login, Priority, Reply, Response,
    Resume, RoomRecovery, PROTOCOL_VERSION,
};

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
                let mut rooms: Vec<RoomRecovery> = Vec::with_capacity(r.rooms.len());
                for (room_id, last_seq) in &r.rooms {
                    if !rooms.iter().any(|x| &x.room_id == room_id) {
                        rooms.push(self.rejoin(now, session_id, conn, room_id, *last_seq));
                    }
                }
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
        let mut rooms = Vec::with_capacity(r.rooms.len());
        for key in keys {
            let Some(room) = self.rooms.get_mut(&key) else { continue };
            room.forget_recipients();
            let room_id = room.id.to_string();
            let last_seen = r.rooms.iter().find(|(id, _)| *id == room_id).map(|(_, seq)| *seq);
            self.outputs.push_back(Output::open_room_stream(conn, key, &room_id));
            let from = last_seen.unwrap_or(room.last_seq);
            rooms.push(self.replay(conn, key, &room_id, from));
        }
        // Rooms the client named that the session is no longer in.
        for (room_id, _) in &r.rooms {
            if !rooms.iter().any(|x: &RoomRecovery| &x.room_id == room_id) {
                rooms.push(RoomRecovery {
                    room_id: room_id.clone(),
                    rejoined: false,
                    recovered: false,
                    replayed: 0,
                    last_seq: self
                        .room_ids
                        .get(room_id.as_str())
                        .and_then(|k| self.rooms.get(k))
                        .map_or(0, |r| r.last_seq),
                    error_code: ErrorCode::NotInRoom.as_u16(),
                });
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

    /// A new session of a returning user joins a room it was in and gets what it missed.
    fn rejoin(
        &mut self,
        now: Now,
        sid: SessionId,
        conn: ConnId,
        room_id: &str,
        last_seq: u64,
    ) -> RoomRecovery {
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
            Err(e) => return failed(ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal), 0),
        };
        let check = self.check_can_join(sid, self.rooms.get(&key));
        if let Err(e) = check {
            let last = self.rooms.get(&key).map_or(0, |r| r.last_seq);
            return failed(ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::Internal), last);
        }
        self.add_member(now, sid, key, false);
        self.replay(conn, key, room_id, last_seq)
    }

    /// Pushes the room's messages after `last_seen` onto the connection's room stream (ahead of
    /// anything broadcast later) and says whether that covered the whole gap.
    fn replay(
        &mut self,
        conn: ConnId,
        key: super::RoomKey,
        room_id: &str,
        last_seen: u64,
    ) -> RoomRecovery {
        let Some(room) = self.rooms.get(&key) else {
            return RoomRecovery {
                room_id: room_id.to_string(),
                rejoined: false,
                recovered: false,
                replayed: 0,
                last_seq: 0,
                error_code: ErrorCode::RoomDoesNotExist.as_u16(),
            };
        };
        let mut recovered = last_seen >= room.last_seq
            || room.history().first_seq().is_some_and(|first| first <= last_seen.saturating_add(1));
        // The session's own messages never reach it live either.
        let me = self.by_conn.get(&conn).and_then(|sid| self.sessions.get(sid)).map(|s| &s.user_id);
        let mut frames: Vec<_> = room
            .history()
            .after(last_seen)
            // Low priority is best effort: only medium and high messages are replayed.
            .filter(|m| m.priority != Priority::Low)
            .filter(|m| me.map_or(true, |me| **me != *m.sender))
            .map(|m| encode_frame(&Event::RoomMessage(m.clone())))
            .collect();
        // A replay must fit the connection's queue, or it would be cut off as a slow consumer
        // and replay the same again on its next resumption: keep the newest that fit, and say
        // the recovery is incomplete (the rest is in history).
        let budget = self.limits.max_replay_bytes;
        let mut total = 0;
        let keep_from = frames
            .iter()
            .rposition(|f| {
                total += f.len();
                total > budget
            })
            .map_or(0, |i| i + 1)
            .max(frames.len().saturating_sub(self.limits.max_replay_messages));
        if keep_from > 0 {
            frames.drain(..keep_from);
            recovered = false;
        }
        let replayed = frames.len() as u32;
        let last_seq = room.last_seq;
        for frame in frames {
            self.outputs.push_back(Output::Push { conn, room: Some(key), frame });
        }
        RoomRecovery {
            room_id: room_id.to_string(),
            rejoined: true,
            recovered,
            replayed,
            last_seq,
            error_code: 0,
        }
    }
}
