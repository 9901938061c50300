//! Defences of the QUIC glue that are not about one connection: address validation under a
//! handshake flood, the client-address key shared by the connection caps and the core's
//! address rate limit, and log lines about misbehaving clients that cannot flood the log.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::core::{valid_user_id, ConnId};
use crate::wire::ErrorCode;

/// Lines about misbehaving clients written per [`LOG_WINDOW`] at most; the rest are counted
/// and the count is reported with the next line written.
pub const LOG_LINES_PER_WINDOW: u32 = 10;

/// See [`LOG_LINES_PER_WINDOW`].
pub const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Counters of the server's defences (for logs, metrics and tests).
#[derive(Debug, Default)]
pub struct GuardStats {
    /// New connections answered with a QUIC Retry (address validation under a handshake flood).
    pub retries: AtomicU64,
    /// New connections refused because a connection cap (total or per address) was reached.
    pub refused: AtomicU64,
    /// Handshakes that did not complete within the handshake deadline.
    pub handshake_timeouts: AtomicU64,
    /// Connections the server closed because of what the client did (bad frames, failed or
    /// missing logins, a transport error, a full outbound queue).
    pub misbehaving: AtomicU64,
    /// Log lines written about those; at most [`LOG_LINES_PER_WINDOW`] per [`LOG_WINDOW`].
    pub misbehaving_logged: AtomicU64,
}

/// The client address the connection caps and address rate limits count by: the IPv4 address,
/// or the /64 prefix of an IPv6 address (one subscriber usually holds a whole /64, so counting
/// single IPv6 addresses would let one client have 2^64 of them). An IPv4-mapped IPv6 address
/// counts as its IPv4 address.
pub fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// New connection attempts per second, counted over fixed one-second windows.
#[derive(Debug)]
pub(crate) struct HandshakeMeter {
    window_start: Instant,
    count: u32,
}

impl HandshakeMeter {
    pub(crate) fn new(now: Instant) -> HandshakeMeter {
        HandshakeMeter { window_start: now, count: 0 }
    }

    /// Counts one attempt at `now`; returns the attempts in the current window, this one
    /// included.
    pub(crate) fn tick(&mut self, now: Instant) -> u32 {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// Rate-limits the log lines about misbehaving clients (see [`LOG_LINES_PER_WINDOW`]).
#[derive(Debug)]
pub(crate) struct LogLimiter {
    window_start: Instant,
    lines: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(now: Instant) -> LogLimiter {
        LogLimiter { window_start: now, lines: 0, suppressed: 0 }
    }

    /// Whether a line may be written at `now`; `Some(n)`: yes, and `n` lines were suppressed
    /// since the last one written.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window_start) >= LOG_WINDOW {
            self.window_start = now;
            self.lines = 0;
        }
        if self.lines >= LOG_LINES_PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Whether the server closing a connection with `code` was the client's doing (as opposed to a
/// replaced or resumed session, an expired token, the operator's disconnect, or a shutdown).
pub(crate) fn client_fault(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::KickedOut
            | ErrorCode::SessionResumed
            | ErrorCode::TokenExpired
            | ErrorCode::DisconnectedByAdmin
            | ErrorCode::ServerShutdown
    )
}

/// The longest user id a log line repeats from a refused login (a valid one is at most 32
/// bytes; an invalid one could be a whole frame).
const LOGGED_USER_CHARS: usize = 40;

/// Writes the one line about a refused login or resumption, at INFO (a wrong or expired token
/// is an ordinary failure), with the user id it named; counted with the misbehaving clients
/// and limited like their lines, since a flood of bad logins costs nothing to send.
pub(crate) fn log_refused_login(
    stats: &GuardStats,
    limiter: &std::sync::Mutex<LogLimiter>,
    conn: ConnId,
    remote: SocketAddr,
    user: &str,
    result: &str,
    resume: bool,
) {
    stats.misbehaving.fetch_add(1, Ordering::Relaxed);
    let allowed = limiter.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now());
    let Some(suppressed) = allowed else { return };
    stats.misbehaving_logged.fetch_add(1, Ordering::Relaxed);
    let what = if resume { "resume refused" } else { "login refused" };
    let user: String = if valid_user_id(user) {
        user.to_string()
    } else {
        // Escaped, so that an invalid id cannot forge log lines.
        let mut shown: String = user.chars().take(LOGGED_USER_CHARS).collect();
        if shown.len() < user.len() {
            shown.push_str("...");
        }
        format!("{shown:?}")
    };
    if suppressed > 0 {
        tracing::info!(conn, %remote, %user, result, suppressed, "{what} (and {suppressed} more not logged)");
    } else {
        tracing::info!(conn, %remote, %user, result, "{what}");
    }
}

/// Writes the one line about a misbehaving client, unless the log limiter says no.
pub(crate) fn log_misbehaviour(
    stats: &GuardStats,
    limiter: &std::sync::Mutex<LogLimiter>,
    conn: ConnId,
    remote: SocketAddr,
    why: &str,
) {
    stats.misbehaving.fetch_add(1, Ordering::Relaxed);
    let allowed = limiter.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now());
    if let Some(suppressed) = allowed {
        stats.misbehaving_logged.fetch_add(1, Ordering::Relaxed);
        if suppressed > 0 {
            tracing::warn!(conn, %remote, reason = why, suppressed, "closed a misbehaving client (and {suppressed} more not logged)");
        } else {
            tracing::warn!(conn, %remote, reason = why, "closed a misbehaving client");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_address(a), client_address(b));
        assert_ne!(client_address(a), client_address(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_address(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn log_limiter_writes_a_bounded_number_of_lines_and_reports_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(t0);
        let allowed = (0..100).filter(|_| l.allow(t0).is_some()).count();
        assert_eq!(allowed, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(l.allow(t0 + LOG_WINDOW), Some(100 - u64::from(LOG_LINES_PER_WINDOW)));
        assert_eq!(l.allow(t0 + LOG_WINDOW), Some(0));
    }

    #[test]
    fn handshake_meter_counts_per_second() {
        let t0 = Instant::now();
        let mut m = HandshakeMeter::new(t0);
        assert_eq!(m.tick(t0), 1);
        assert_eq!(m.tick(t0 + Duration::from_millis(999)), 2);
        assert_eq!(m.tick(t0 + Duration::from_secs(1)), 1);
    }
}
