//! [`HuddleError`]: why an operation failed, with the protocol's numeric code and name.

use huddle::client::{ClientError, Ended as ClientEnded};

use crate::types::code_name;

/// What a connection failure ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Ended {
    /// Only this connection; the session goes on (a request in flight that could not be sent
    /// again).
    Connection,
    /// The session is over (logged out, closed, kicked out, server shut down).
    Session,
    /// The connection was lost and could not be resumed within the reconnect window.
    ReconnectWindow,
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum HuddleError {
    /// The server answered with an error code of the protocol's table.
    #[error("{name} ({code}): {detail}")]
    Server {
        /// The numeric code (for example 5000).
        code: u16,
        /// Its stable name (for example `message_too_large`).
        name: String,
        /// The server's message (`detail`: in Kotlin, `message` is the exception's own text).
        detail: String,
    },
    /// The connection failed or was closed.
    #[error("connection: {detail}")]
    Connection {
        /// The server's close code, when it closed the connection with one.
        code: Option<u16>,
        /// The close code's name, when there is a code.
        name: Option<String>,
        /// What happened.
        detail: String,
        /// Whether only the connection ended, or the session.
        ended: Ended,
    },
    /// The server answered with something this client did not expect.
    #[error("protocol: {detail}")]
    Protocol {
        /// What came.
        detail: String,
    },
    /// An argument the bindings could not use (a server address that does not resolve, a CA
    /// document without a certificate).
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// Which, and why.
        detail: String,
    },
    /// A fault inside the library (a panic, caught at the boundary).
    #[error("internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl From<ClientError> for HuddleError {
    fn from(e: ClientError) -> HuddleError {
        match e {
            ClientError::Server { code, message } => {
                HuddleError::Server { code, name: code_name(code), detail: message }
            }
            ClientError::Connection(c) => HuddleError::Connection {
                code: c.code,
                name: c.name().map(str::to_string),
                detail: c.to_string(),
                ended: match c.ended {
                    ClientEnded::Connection => Ended::Connection,
                    ClientEnded::Session => Ended::Session,
                    ClientEnded::ReconnectWindow => Ended::ReconnectWindow,
                },
            },
            ClientError::Protocol(message) => HuddleError::Protocol { detail: message },
        }
    }
}

impl HuddleError {
    /// An argument the bindings could not use.
    pub(crate) fn invalid(message: impl Into<String>) -> HuddleError {
        HuddleError::InvalidArgument { detail: message.into() }
    }
}
