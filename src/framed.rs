//! Reading frames from a QUIC receive stream, bounded in size and time.
//!
//! This and the connection modules that call it are the only code that reads stream bytes.
//! [`read_frame`] takes any [`AsyncRead`] (a `quinn::RecvStream` in the server and client) so
//! that the fuzz targets can drive the very same reader over in-memory bytes.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::wire::{check_length, ErrorCode, WireError, LENGTH_PREFIX_LEN};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The frame's length prefix or body is bad.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer finished the stream in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The rest of a frame did not arrive in time.
    #[error("frame read timed out")]
    Timeout,
    /// The peer reset the stream (RESET_STREAM) with this application code.
    #[error("stream reset by the peer with code {0}")]
    Reset(u64),
    /// The stream or connection failed.
    #[error("stream error: {0}")]
    Stream(String),
}

impl ReadError {
    /// The code the peer is closed with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReadError::Wire(e) => e.code(),
            ReadError::Truncated => ErrorCode::MalformedFrame,
            ReadError::Timeout => ErrorCode::FrameTimeout,
            ReadError::Reset(_) | ReadError::Stream(_) => ErrorCode::ProtocolViolation,
        }
    }
}

/// A read error from the stream. quinn's `AsyncRead` wraps its own error in an `io::Error`:
/// a RESET_STREAM keeps its application code.
fn stream_error(e: io::Error) -> ReadError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<quinn::ReadError>()) {
        Some(quinn::ReadError::Reset(code)) => ReadError::Reset(code.into_inner()),
        _ => ReadError::Stream(e.to_string()),
    }
}

async fn read_exact<R: AsyncRead + Unpin>(recv: &mut R, buf: &mut [u8]) -> Result<(), ReadError> {
    match recv.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Truncated),
        Err(e) => Err(stream_error(e)),
    }
}

/// Reads one frame body. `Ok(None)` is a clean end of stream between frames.
///
/// The first byte may take as long as it likes (an idle client is fine); once it has arrived,
/// the rest of the frame must arrive within `frame_timeout` (a client dribbling bytes is cut
/// off). The length is checked against `max` before the body is buffered.
pub async fn read_frame<R: AsyncRead + Unpin>(
    recv: &mut R,
    max: usize,
    frame_timeout: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    match recv.read(&mut prefix[..1]).await {
        Ok(1) => {}
        Ok(_) => return Ok(None),
        Err(e) => return Err(stream_error(e)),
    }
    let rest = async {
        read_exact(recv, &mut prefix[1..]).await?;
        let len = check_length(prefix, max)?;
        let mut body = vec![0u8; len];
        read_exact(recv, &mut body).await?;
        Ok(body)
    };
    match tokio::time::timeout(frame_timeout, rest).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(ReadError::Timeout),
    }
}
