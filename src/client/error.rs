//! Why an operation failed: [`ClientError`], and [`ConnectionClosed`] for a connection that
//! could not be used.

use std::fmt;

use crate::wire::{ErrorCode, Response};

/// Why an operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error code.
    #[error("server error {code}: {message}")]
    Server {
        /// The numeric code (see [`ErrorCode`]).
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The connection failed or was closed; [`ConnectionClosed::ended`] says whether the session
    /// goes on (a request in flight that could not be sent again), is over, or could not be
    /// resumed within [`ClientConfig::reconnect_for`].
    ///
    /// [`ClientConfig::reconnect_for`]: super::config::ClientConfig::reconnect_for
    #[error("connection: {0}")]
    Connection(ConnectionClosed),
    /// The server answered with something this client did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// A connection failure without a close code.
    pub(crate) fn connection(reason: impl Into<String>) -> ClientError {
        ClientError::Connection(ConnectionClosed::new(reason))
    }

    /// The error code, when the server answered with one this library knows (an error
    /// response; the code a server closed the connection with is in
    /// [`ConnectionClosed::error_code`]).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }

    /// What ended, for a connection failure.
    pub fn ended(&self) -> Option<Ended> {
        match self {
            ClientError::Connection(c) => Some(c.ended),
            _ => None,
        }
    }
}

/// What a connection failure ended, and so why a request failed with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ended {
    /// Only this connection: the client resumes the session on a new one. A request fails with
    /// this only when it was in flight and is not safe to send again (the server may or may not
    /// have applied it); sends and reads are sent again on the resumed connection instead.
    #[default]
    Connection,
    /// The session is over: logged out, closed, kicked out, the server shut down or refused to
    /// resume it. Nothing waiting for a resumed connection will be sent.
    Session,
    /// The connection was lost and the client could not resume the session within
    /// [`ClientConfig::reconnect_for`] (or never tries: `reconnect_for` is zero).
    ///
    /// [`ClientConfig::reconnect_for`]: super::config::ClientConfig::reconnect_for
    ReconnectWindow,
}

/// Why a connection could not be used: the server closed it with an application close code
/// (from the error table: `kicked_out`, `slow_consumer`, `server_shutdown`, ...), or it failed
/// without one (timed out, reset, closed by this client, no handshake, version mismatch, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionClosed {
    /// The application close code, when the server closed the connection with one.
    pub code: Option<u16>,
    /// The server's close reason when it closed with a code; otherwise what happened.
    pub reason: String,
    /// Whether only the connection ended, or the session (see [`Ended`]).
    pub ended: Ended,
}

impl ConnectionClosed {
    /// A failure without a close code.
    pub(crate) fn new(reason: impl Into<String>) -> ConnectionClosed {
        ConnectionClosed { code: None, reason: reason.into(), ended: Ended::Connection }
    }

    /// The same failure, as the end of `ended`.
    pub(crate) fn ending(self, ended: Ended) -> ConnectionClosed {
        ConnectionClosed { ended, ..self }
    }

    /// The close code, when it is one this library knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.and_then(ErrorCode::from_u16)
    }

    /// The close code's stable name (for example `slow_consumer`), when it is one this library
    /// knows.
    pub fn name(&self) -> Option<&'static str> {
        self.error_code().map(ErrorCode::name)
    }
}

impl fmt::Display for ConnectionClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ended {
            Ended::Connection => {}
            Ended::Session => f.write_str("session ended: ")?,
            Ended::ReconnectWindow => f.write_str("reconnect window ran out: ")?,
        }
        match self.code {
            Some(code) => write!(f, "closed by server with code {code} ({})", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl From<&quinn::ConnectionError> for ConnectionClosed {
    fn from(error: &quinn::ConnectionError) -> ConnectionClosed {
        let quinn::ConnectionError::ApplicationClosed(close) = error else {
            return ConnectionClosed::new(error.to_string());
        };
        let reason = String::from_utf8_lossy(&close.reason).into_owned();
        let code = close.error_code.into_inner();
        match u16::try_from(code) {
            Ok(code) => ConnectionClosed { code: Some(code), reason, ended: Ended::Connection },
            // Not a Huddle server: no code of the table.
            Err(_) => {
                ConnectionClosed::new(format!("closed by server with code {code} ({reason})"))
            }
        }
    }
}

impl From<quinn::ConnectionError> for ClientError {
    fn from(error: quinn::ConnectionError) -> ClientError {
        ClientError::Connection((&error).into())
    }
}

/// The error of a request that can get no answer on `conn`: why it closed, or (still open) that
/// its control stream ended.
pub(super) fn closed_error(conn: &quinn::Connection) -> ClientError {
    match conn.close_reason() {
        Some(e) => e.into(),
        None => ClientError::connection("control stream ended"),
    }
}

/// The error for an answer of the wrong kind.
pub(super) fn unexpected(r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_by_server(code: u64, reason: &str) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u64(code).unwrap(),
            reason: reason.as_bytes().to_vec().into(),
        })
    }

    #[test]
    fn a_close_code_is_kept_with_its_name() {
        let closed = ConnectionClosed::from(&closed_by_server(7000, "slow_consumer"));
        assert_eq!((closed.code, closed.name()), (Some(7000), Some("slow_consumer")));
        assert_eq!(closed.error_code(), Some(ErrorCode::SlowConsumer));
        let error = ClientError::Connection(closed);
        assert_eq!(
            error.to_string(),
            "connection: closed by server with code 7000 (slow_consumer)"
        );
        assert_eq!(error.code(), None, "code() is for error responses");
    }

    #[test]
    fn other_ends_have_no_code() {
        let closed = ConnectionClosed::from(&quinn::ConnectionError::TimedOut);
        assert_eq!((closed.code, closed.name()), (None, None));
        assert_eq!(ClientError::Connection(closed).to_string(), "connection: timed out");
        let unknown = ConnectionClosed::from(&closed_by_server(1 << 20, "bye"));
        assert_eq!(unknown.code, None);
        assert_eq!(unknown.to_string(), "closed by server with code 1048576 (bye)");
        let local = ClientError::connection("resume timed out");
        assert_eq!(local.to_string(), "connection: resume timed out");
        assert_eq!(local.ended(), Some(Ended::Connection));
    }

    #[test]
    fn the_end_of_a_session_names_itself() {
        let kicked = ConnectionClosed::from(&closed_by_server(2004, "kicked_out"));
        let error = ClientError::Connection(kicked.ending(Ended::Session));
        assert_eq!(
            error.to_string(),
            "connection: session ended: closed by server with code 2004 (kicked_out)"
        );
        let gave_up = ConnectionClosed::new("timed out").ending(Ended::ReconnectWindow);
        assert_eq!(gave_up.to_string(), "reconnect window ran out: timed out");
        assert_eq!(ClientError::Connection(gave_up).ended(), Some(Ended::ReconnectWindow));
    }
}
