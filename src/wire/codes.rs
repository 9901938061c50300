//! The one table of stable numeric error codes.
//!
//! Codes are grouped by area in blocks of a thousand (protocol 1xxx, auth 2xxx, room 3xxx,
//! member 4xxx, message 5xxx, attribute 6xxx, limit and connection 7xxx, server 9xxx). The same
//! numbers are used in error responses, in stream resets and as QUIC application close codes.
//! A number is never reused and never renumbered; new codes are appended to their block.

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal, $name:literal, $text:literal; )*) => {
        /// A stable protocol error code. See docs/PROTOCOL.md for the table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant = $num, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The code for a number, if the number is in the table.
            pub fn from_u16(n: u16) -> Option<ErrorCode> {
                match n {
                    $( $num => Some(ErrorCode::$variant), )*
                    _ => None,
                }
            }

            /// The stable snake_case name used in JSON output (for example `room_full`).
            pub fn name(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// A short English description.
            pub fn text(self) -> &'static str {
                match self { $( ErrorCode::$variant => $text, )* }
            }
        }
    };
}

error_codes! {
    /// The request could not be understood or has an invalid field.
    InvalidRequest = 1000, "invalid_request", "invalid request";
    /// A frame's length prefix is over the maximum frame size.
    FrameTooLarge = 1001, "frame_too_large", "frame too large";
    /// A frame's body does not decode (bad tag, bad UTF-8, truncated, trailing bytes).
    MalformedFrame = 1002, "malformed_frame", "malformed frame";
    /// The client speaks a protocol version the server does not.
    UnsupportedVersion = 1003, "unsupported_version", "unsupported protocol version";
    /// The client broke the stream discipline (wrong stream, second control stream).
    ProtocolViolation = 1004, "protocol_violation", "protocol violation";
    /// A frame took too long to arrive.
    FrameTimeout = 1005, "frame_timeout", "frame read timed out";

    /// A request other than login arrived before a successful login.
    NotLoggedIn = 2000, "not_logged_in", "not logged in";
    /// The token is forged, for another user, or signed by an unknown key.
    TokenInvalid = 2001, "token_invalid", "token invalid";
    /// The token's expiry has passed.
    TokenExpired = 2002, "token_expired", "token expired";
    /// The client did not log in within the login deadline.
    LoginTimeout = 2003, "login_timeout", "login timed out";
    /// Another login with the same user id replaced this session.
    KickedOut = 2004, "kicked_out", "kicked out by another login";
    /// A second login on a connection that is already logged in.
    AlreadyLoggedIn = 2005, "already_logged_in", "already logged in";
    /// The token is longer than the server accepts.
    TokenTooLong = 2006, "token_too_long", "token too long";
    /// Resume named a session of another user or gave the wrong resume secret. (A session the
    /// server no longer holds is not an error: Resume then makes a new session.)
    SessionNotFound = 2007, "session_not_found", "session not found";
    /// The session was resumed on another connection; this one is closed.
    SessionResumed = 2008, "session_resumed", "session resumed on another connection";
    /// The token's issued-at is further in the future than the allowed clock skew.
    TokenNotYetValid = 2009, "token_not_yet_valid", "token not yet valid";
    /// The token does not have the token's shape (truncated, bad signature encoding, bad parts).
    TokenMalformed = 2010, "token_malformed", "token malformed";
    /// The server's operator ended the session (admin API); do not reconnect automatically.
    DisconnectedByAdmin = 2011, "disconnected_by_admin", "disconnected by the server operator";

    /// The room id is empty, too long or has characters outside `[A-Za-z0-9_.@:-]`.
    InvalidRoomId = 3000, "invalid_room_id", "invalid room id";
    /// create_room on an id that exists (also while it waits for a delayed destroy).
    RoomAlreadyExists = 3001, "room_already_exists", "room already exists";
    /// The room does not exist.
    RoomDoesNotExist = 3002, "room_does_not_exist", "room does not exist";
    /// The caller is not a member of the room.
    NotInRoom = 3003, "not_in_room", "not in room";
    /// The room has reached its member limit.
    RoomFull = 3004, "room_full", "room full";
    /// The room name is longer than 256 bytes.
    RoomNameTooLong = 3005, "room_name_too_long", "room name too long";
    /// destroy_delay_s is over its maximum.
    InvalidDestroyDelay = 3006, "invalid_destroy_delay", "invalid destroy delay";
    /// The server holds as many rooms as it is configured for.
    ServerRoomLimit = 3007, "server_room_limit", "server room limit reached";

    /// The user id is empty, too long or has characters outside `[A-Za-z0-9_.@-]`.
    InvalidUserId = 4000, "invalid_user_id", "invalid user id";
    /// The user is already in as many rooms as allowed.
    RoomLimitReached = 4001, "room_limit_reached", "user is in too many rooms";
    /// The user name is longer than 256 bytes.
    UserNameTooLong = 4002, "user_name_too_long", "user name too long";
    /// A member query asked for too many members at once.
    TooManyUserIds = 4003, "too_many_user_ids", "too many user ids";

    /// The message body is over the maximum message size.
    MessageTooLarge = 5000, "message_too_large", "message too large";
    /// The user sends faster than the rate limit allows.
    RateLimited = 5001, "rate_limited", "rate limited";
    /// client_msg_id is longer than 64 bytes.
    InvalidClientMsgId = 5002, "invalid_client_msg_id", "invalid client message id";

    /// A room would have more attribute keys than allowed (or a member more member-attribute
    /// keys).
    AttributeCountExceeded = 6000, "attribute_count_exceeded", "too many attribute keys";
    /// An attribute key is longer than allowed.
    AttributeKeyTooLong = 6001, "attribute_key_too_long", "attribute key too long";
    /// An attribute value is longer than allowed.
    AttributeValueTooLong = 6002, "attribute_value_too_long", "attribute value too long";
    /// A room's attributes would be larger in total than allowed.
    AttributesTooLarge = 6003, "attributes_too_large", "attributes too large in total";
    /// The key is owned by another member still in the room; use is_force.
    AttributeNotOwned = 6004, "attribute_not_owned", "attribute owned by another member";
    /// The room already has as many members with attributes as allowed.
    MemberAttributesMembersExceeded = 6005, "member_attributes_members_exceeded",
        "too many members with attributes";

    /// The connection could not keep up with its outbound queue; reconnect and resume.
    SlowConsumer = 7000, "slow_consumer", "slow consumer, reconnect";
    /// The server refused the connection: too many connections.
    ConnectionLimit = 7001, "connection_limit", "too many connections";
    /// The user sends requests other than messages faster than its operation rate limit allows.
    OperationRateLimited = 7002, "operation_rate_limited", "too many operations, slow down";
    /// Requests from this client address (an IPv4 address or an IPv6 /64) arrive faster than
    /// the address's operation rate limit allows.
    AddressRateLimited = 7003, "address_rate_limited", "too many operations from this address";

    /// The server is shutting down.
    ServerShutdown = 9000, "server_shutdown", "server shutting down";
    /// An internal server error.
    Internal = 9001, "internal", "internal error";
    /// The cluster's room log or registry could not be reached in time; the request was not
    /// carried out (retry it, with the same client_msg_id for a message).
    ClusterUnavailable = 9002, "cluster_unavailable", "cluster unavailable";
}

impl ErrorCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_round_trip() {
        let mut nums = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(nums.insert(code.as_u16()), "duplicate number {}", code.as_u16());
            assert!(names.insert(code.name()), "duplicate name {}", code.name());
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(1), None);
    }
}
