//! Reading frames from a QUIC receive stream, bounded in size and time.
//!
//! This and the connection modules that call it are the only code that reads stream bytes.
//! [`read_frame`] takes any [`AsyncRead`] (a `quinn::RecvStream` in the server) and
//! [`FrameReader`] any [`ChunkSource`] (a `quinn::RecvStream` in the client), so that the fuzz
//! targets can drive the very same readers over in-memory bytes.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::wire::{
    check_length, split_frame, whole_frame_len, ErrorCode, WireError, LENGTH_PREFIX_LEN,
};

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
    // Boxed: a caller mostly waits here, at a frame's first byte (a server's control stream, for
    // a connection's whole idle life), and a future keeps room for its largest state (the timer
    // and the reads after the first byte) while it waits. One allocation per frame.
    match Box::pin(tokio::time::timeout(frame_timeout, rest)).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(ReadError::Timeout),
    }
}

/// A stream that hands over the bytes it holds a chunk at a time, without copying them: what
/// [`FrameReader`] reads.
pub trait ChunkSource {
    /// The next bytes of the stream (never empty), or `None` at its clean end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, ReadError>> + Send;
}

impl ChunkSource for quinn::RecvStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            match self.read_chunk(usize::MAX, true).await {
                Ok(Some(c)) if c.bytes.is_empty() => {}
                Ok(c) => return Ok(c.map(|c| c.bytes)),
                Err(quinn::ReadError::Reset(code)) => {
                    return Err(ReadError::Reset(code.into_inner()))
                }
                Err(e) => return Err(ReadError::Stream(e.to_string())),
            }
        }
    }
}

/// Reads frames as [`read_frame`] does, with the same limits and results, but a chunk of the
/// stream at a time: one read of the stream for all the frames a packet carries (instead of
/// three per frame), and frame bodies sliced out of quinn's own buffer when a chunk holds them
/// whole. For the client's streams, where every event frame counts.
pub struct FrameReader<S> {
    source: S,
    /// The rest of the last chunk: whole frames are sliced from it without copying.
    chunk: Bytes,
    /// A frame split across chunks, gathered here.
    partial: BytesMut,
    max: usize,
    frame_timeout: Duration,
    /// When the frame begun in `partial` must be complete.
    deadline: Option<Instant>,
}

impl<S: ChunkSource> FrameReader<S> {
    /// A reader of frames of at most `max` bytes, each complete within `frame_timeout` of its
    /// first byte.
    pub fn new(source: S, max: usize, frame_timeout: Duration) -> FrameReader<S> {
        FrameReader {
            source,
            chunk: Bytes::new(),
            partial: BytesMut::new(),
            max,
            frame_timeout,
            deadline: None,
        }
    }

    /// The next frame body; `Ok(None)` is a clean end of stream between frames.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if self.partial.is_empty() {
                if let Some(body) = self.whole_frame_in_chunk()? {
                    return Ok(Some(body));
                }
                // What is left of the chunk begins a frame: gather it.
                if !self.chunk.is_empty() {
                    self.partial.extend_from_slice(&self.chunk);
                    self.chunk = Bytes::new();
                }
            } else if let Some(body) = split_frame(&mut self.partial, self.max)? {
                self.deadline = None;
                return Ok(Some(body));
            }
            let next = if self.partial.is_empty() {
                self.deadline = None;
                self.source.next_chunk().await?
            } else {
                let deadline =
                    *self.deadline.get_or_insert_with(|| Instant::now() + self.frame_timeout);
                match tokio::time::timeout_at(deadline, self.source.next_chunk()).await {
                    Ok(next) => next?,
                    Err(_) => return Err(ReadError::Timeout),
                }
            };
            match next {
                None if self.partial.is_empty() => return Ok(None),
                None => return Err(ReadError::Truncated),
                Some(bytes) if self.partial.is_empty() => self.chunk = bytes,
                Some(bytes) => self.partial.extend_from_slice(&bytes),
            }
        }
    }

    /// Slices the first frame off the current chunk when the chunk holds all of it.
    fn whole_frame_in_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        let Some(len) = whole_frame_len(&self.chunk, self.max)? else { return Ok(None) };
        let body = self.chunk.slice(LENGTH_PREFIX_LEN..len);
        self.chunk.advance(len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Chunks handed out one per read; then silence for ever (`pending`), or the end.
    struct Script {
        chunks: VecDeque<&'static [u8]>,
        pending: bool,
    }

    impl ChunkSource for Script {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
            match self.chunks.pop_front() {
                Some(c) => Ok(Some(Bytes::from_static(c))),
                None if self.pending => std::future::pending().await,
                None => Ok(None),
            }
        }
    }

    fn reader(chunks: &[&'static [u8]], pending: bool) -> FrameReader<Script> {
        let script = Script { chunks: chunks.iter().copied().collect(), pending };
        FrameReader::new(script, 16, Duration::from_secs(30))
    }

    #[tokio::test]
    async fn frames_are_cut_from_chunks_whatever_their_boundaries() {
        // "ab", "" and "cde" split across chunks anywhere, then a clean end.
        let mut r = reader(&[b"\x02\0\0\0ab\0", b"\0\0\0\x03", b"\0\0", b"\0cd", b"e"], false);
        let mut frames = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            frames.push(f);
        }
        assert_eq!(frames, [&b"ab"[..], b"", b"cde"]);
    }

    #[tokio::test]
    async fn an_oversized_or_cut_short_frame_is_an_error() {
        let mut r = reader(&[b"\x11\0\0\0"], false);
        assert!(matches!(r.next().await, Err(ReadError::Wire(WireError::TooLarge { .. }))));
        let mut r = reader(&[b"\x03\0\0\0ab"], false);
        assert!(matches!(r.next().await, Err(ReadError::Truncated)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_waits_but_a_started_frame_must_finish_in_time() {
        let mut idle = reader(&[], true);
        let waited = tokio::time::timeout(Duration::from_secs(3600), idle.next()).await;
        assert!(waited.is_err(), "no frame begun: no deadline");
        let start = Instant::now();
        let mut r = reader(&[b"\x03\0", b"\0\0a"], true);
        assert!(matches!(r.next().await, Err(ReadError::Timeout)));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
