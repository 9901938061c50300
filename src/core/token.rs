//! Token lifetime within a session: a warning before expiry, in-band renewal, and the end of a
//! session whose token expired (docs/PROTOCOL.md, sections 5 and 8.4).

use super::{err, Core, Now, OpResult, Output, SessionId, Timer};
use crate::wire::{encode_frame, ErrorCode, Event, Response};

impl Core {
    /// Arms the warning and expiry timers of a session whose token expires at `exp_s`, in place
    /// of those armed for its previous token.
    pub(crate) fn arm_token_timers(&mut self, now: Now, sid: SessionId, exp_s: u64) {
        let exp_ms = exp_s.saturating_mul(1000);
        let left_ms = exp_ms.saturating_sub(now.unix_ms);
        let warn_ms = left_ms.saturating_sub(self.limits.token_expiry_warning_s * 1000);
        let armed = [
            (now.mono_ms + warn_ms, Timer::TokenWarning(sid, exp_s)),
            (now.mono_ms + left_ms, Timer::TokenExpiry(sid, exp_s)),
        ];
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        for old in std::mem::replace(&mut s.token_timers, armed) {
            self.timers.remove(&old);
        }
        self.timers.extend(armed);
    }

    /// The warning time of a token came: tell the session (if its token was not renewed since).
    pub(crate) fn token_warning(&mut self, sid: SessionId, exp_s: u64) {
        let Some(s) = self.sessions.get(&sid) else { return };
        if s.token_exp_s != exp_s {
            return;
        }
        if let Some(conn) = s.conn {
            let frame = encode_frame(&Event::TokenWillExpire { expires_at_s: exp_s });
            self.outputs.push_back(Output::Push { conn, room: None, frame });
        }
    }

    /// A token expired: unless it was renewed, the session ends with `token_expired`.
    pub(crate) fn token_expired(&mut self, now: Now, sid: SessionId, exp_s: u64) {
        let due = self.sessions.get(&sid).is_some_and(|s| s.token_exp_s == exp_s);
        if due {
            self.kick(now, sid, ErrorCode::TokenExpired, "token expired; log in again");
        }
    }

    /// RenewToken: a fresh token for the same user extends the session.
    pub(crate) fn renew_token(&mut self, now: Now, sid: SessionId, token: &str) -> OpResult {
        let user = self.session(sid)?.user_id.clone();
        let claims = self.keys.verify(token, &user, now.unix_ms / 1000).map_err(err)?;
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.token_exp_s = claims.exp;
        }
        self.arm_token_timers(now, sid, claims.exp);
        Ok(Response::TokenRenewed { token_expires_at_s: claims.exp })
    }
}
