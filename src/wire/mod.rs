//! The wire format: length-prefixed bincode frames.
//!
//! Every frame is a 4-byte little-endian length followed by that many bytes of a bincode 2.0.1
//! body in the [`CONFIG`] encoding (little-endian, variable-length integers). The length is
//! checked against the direction's maximum before any byte of the body is buffered, and the body
//! is decoded from exactly that slice: trailing bytes are an error.
//!
//! This module is pure: it never touches a socket. Only the connection modules read and write
//! stream bytes, with the length checks defined here ([`split_frame`], [`whole_frame_len`]).

mod codes;
mod event;
mod request;
mod response;
mod types;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};
use bytes::{BufMut, Bytes, BytesMut};

pub use codes::ErrorCode;
pub use event::{Event, StreamHeader};
pub use request::{Login, Request, RequestFrame, Resume};
pub use response::{ErrorBody, Reply, Response, ResponseFrame};
pub use types::{
    AttributeFailure, AttributeOp, HistoryAnchor, LeaveReason, Member, MemberAttributes,
    MessageBody, Priority, RoomConfig, RoomInfo, RoomMessage, RoomRecovery, RoomState, RoomSummary,
};

/// The protocol version a client sends in its login.
pub const PROTOCOL_VERSION: u16 = 1;

/// The ALPN protocol id.
pub const ALPN: &[u8] = b"huddle/1";

/// Bytes in a frame's length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The largest frame body anyone sends: server answers (a page of history) can be this big.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// The largest frame body a client may send to the server.
pub const MAX_CLIENT_FRAME_LEN: usize = 64 * 1024;

/// The one bincode configuration: standard (little-endian varints) with a byte limit equal to
/// the maximum frame size, so that no decode can allocate more than a frame's worth.
pub const CONFIG: Configuration<LittleEndian, Varint, Limit<MAX_FRAME_LEN>> =
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>();

/// The byte budget of decoding one request: twice the largest client frame. bincode counts
/// every integer at its in-memory size (a one-byte varint claims 8 bytes for a u64), so a
/// valid frame of exactly [`MAX_CLIENT_FRAME_LEN`] bytes needs a little more than its length;
/// twice is ample, and still bounds what one hostile frame can make the server allocate.
pub const CLIENT_DECODE_LIMIT: usize = 2 * MAX_CLIENT_FRAME_LEN;

/// The same configuration with the request budget [`CLIENT_DECODE_LIMIT`]: the server decodes
/// requests with it, so that a small hostile frame claiming a long string cannot make the
/// server allocate more than about a client frame's worth before the decode fails.
pub const CLIENT_CONFIG: Configuration<LittleEndian, Varint, Limit<CLIENT_DECODE_LIMIT>> =
    bincode::config::standard().with_limit::<CLIENT_DECODE_LIMIT>();

/// Why bytes could not be turned into a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix is over the allowed maximum.
    #[error("frame of {len} bytes is over the maximum of {max}")]
    TooLarge {
        /// The claimed length.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// The body did not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The body decoded but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

impl WireError {
    /// The error code a peer is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::Malformed(_) | WireError::TrailingBytes(_) => ErrorCode::MalformedFrame,
        }
    }
}

/// Encodes a message as a complete frame (length prefix and body) into shared bytes.
pub fn encode_frame<T: Encode>(msg: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32_le(0);
    let mut writer = BytesMutWriter(&mut buf);
    // Encoding into memory cannot fail except by exceeding the configured limit, which would be
    // a server bug (every message is bounded well below it); fall back to an empty frame then.
    if bincode::encode_into_writer(msg, &mut writer, CONFIG).is_err() {
        buf.truncate(LENGTH_PREFIX_LEN);
    }
    let body_len = (buf.len() - LENGTH_PREFIX_LEN) as u32;
    buf[..LENGTH_PREFIX_LEN].copy_from_slice(&body_len.to_le_bytes());
    buf.freeze()
}

/// Encodes a message body without its length prefix.
pub fn encode_body<T: Encode>(msg: &T) -> Vec<u8> {
    bincode::encode_to_vec(msg, CONFIG).unwrap_or_default()
}

/// Reads a length prefix and checks it against `max` before any body byte is buffered.
pub fn check_length(prefix: [u8; LENGTH_PREFIX_LEN], max: usize) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes a body from exactly `body`: a decode error or any trailing byte is an error.
pub fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len: body.len(), max: MAX_FRAME_LEN });
    }
    let (msg, used) = bincode::decode_from_slice::<T, _>(body, CONFIG)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::TrailingBytes(body.len() - used));
    }
    Ok(msg)
}

/// Decodes a request frame body the way the server does: exact slice, [`CLIENT_CONFIG`].
pub fn decode_request(body: &[u8]) -> Result<RequestFrame, WireError> {
    if body.len() > MAX_CLIENT_FRAME_LEN {
        return Err(WireError::TooLarge { len: body.len(), max: MAX_CLIENT_FRAME_LEN });
    }
    let (msg, used) = bincode::decode_from_slice::<RequestFrame, _>(body, CLIENT_CONFIG)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::TrailingBytes(body.len() - used));
    }
    Ok(msg)
}

/// The body of a buffer that holds exactly one frame (a DATAGRAM): a short buffer, a length over
/// `max` or bytes after the frame are errors.
pub fn single_frame_body(buf: &[u8], max: usize) -> Result<&[u8], WireError> {
    let (prefix, body) = buf
        .split_first_chunk::<LENGTH_PREFIX_LEN>()
        .ok_or_else(|| WireError::Malformed("shorter than a length prefix".into()))?;
    let len = check_length(*prefix, max)?;
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(WireError::Malformed("frame cut short".into())),
        std::cmp::Ordering::Greater => Err(WireError::TrailingBytes(body.len() - len)),
        std::cmp::Ordering::Equal => Ok(body),
    }
}

/// The length (prefix included) of the frame at the front of `buf` once all of it is there;
/// `Ok(None)` while more bytes are needed. The length is checked against `max` as soon as the
/// prefix is in.
pub fn whole_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_LEN>() else { return Ok(None) };
    let len = LENGTH_PREFIX_LEN + check_length(*prefix, max)?;
    Ok((buf.len() >= len).then_some(len))
}

/// Splits complete frames off the front of a byte buffer: for callers that hold bytes already
/// (fuzzing, tests, datagrams). Returns `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, WireError> {
    let Some(len) = whole_frame_len(buf, max)? else { return Ok(None) };
    let mut frame = buf.split_to(len);
    Ok(Some(frame.split_off(LENGTH_PREFIX_LEN).freeze()))
}

struct BytesMutWriter<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for BytesMutWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_frame_body_takes_exactly_one_frame() {
        let frame = encode_frame(&StreamHeader::Session);
        assert_eq!(single_frame_body(&frame, MAX_FRAME_LEN).unwrap(), &frame[LENGTH_PREFIX_LEN..]);
        let mut longer = frame.to_vec();
        longer.push(0);
        assert!(matches!(
            single_frame_body(&longer, MAX_FRAME_LEN),
            Err(WireError::TrailingBytes(1))
        ));
        assert!(single_frame_body(&frame[..frame.len() - 1], MAX_FRAME_LEN).is_err());
        assert!(single_frame_body(&frame[..3], MAX_FRAME_LEN).is_err());
        assert!(matches!(single_frame_body(&frame, 0), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn frame_round_trip() {
        let frame = encode_frame(&RequestFrame { request_id: 7, request: Request::LeaveAllRooms });
        let len = check_length(frame[..4].try_into().unwrap(), MAX_CLIENT_FRAME_LEN).unwrap();
        assert_eq!(len, frame.len() - 4);
        let back: RequestFrame = decode_body(&frame[4..]).unwrap();
        assert_eq!(back.request_id, 7);
    }

    #[test]
    fn huge_claimed_string_is_refused_not_allocated() {
        // request_id 0, Request::Login (0), protocol_version 1, then a user_id string that claims
        // 2^40 bytes (varint tag 253 = u64 follows).
        let mut body = vec![0u8, 0, 1, 253];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(decode_body::<RequestFrame>(&body), Err(WireError::Malformed(_))));
    }

    #[test]
    fn requests_are_decoded_with_the_client_limit() {
        // A Login whose user_id claims 1 MiB: within the 4 MiB limit, over the 128 KiB one.
        let mut body = vec![0u8, 0, 1, 252];
        body.extend_from_slice(&(1u32 << 20).to_le_bytes());
        assert!(
            matches!(decode_request(&body), Err(WireError::Malformed(m)) if m.contains("Limit"))
        );
        let ok = encode_frame(&RequestFrame { request_id: 3, request: Request::QueryJoinedRooms });
        assert_eq!(decode_request(&ok[4..]).unwrap().request_id, 3);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut body = encode_body(&RequestFrame { request_id: 1, request: Request::Logout });
        body.push(0);
        assert_eq!(decode_body::<RequestFrame>(&body), Err(WireError::TrailingBytes(1)));
    }
}
