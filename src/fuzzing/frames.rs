//! `frame_decode`: arbitrary bytes through the length-prefix check, the stream frame reader and
//! every message decoder.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bincode::{Decode, Encode};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use crate::framed::{read_frame, ChunkSource, FrameReader, ReadError};
use crate::wire::{
    decode_body, decode_request, encode_body, encode_frame, split_frame, Event, RequestFrame,
    ResponseFrame, StreamHeader, WireError, LENGTH_PREFIX_LEN, MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN,
};

/// Fuzz body: the first byte picks how the rest is read, the rest is a byte stream.
///
/// Mode byte: bit 6 picks the maximum (set: [`MAX_FRAME_LEN`], as a client reads answers and
/// events; clear: [`MAX_CLIENT_FRAME_LEN`], as the server reads requests); bits 0-3 the size of
/// each read the stream reader is handed (0: everything at once, else 1-15 bytes); bit 7 ends
/// the stream with a RESET_STREAM (code [`RESET_CODE`], as quinn reports it) instead of a clean
/// finish.
///
/// Checks: [`split_frame`] over the whole buffer, and [`read_frame`] and [`FrameReader`] over
/// the same bytes in chunks, agree frame for frame and on how the stream ends; every frame body is tried as a
/// request (the server's [`decode_request`]), a response, an event and a stream header; a body
/// that decodes re-encodes to the same message, and to the very same bytes unless the input
/// used a longer-than-necessary varint (which PROTOCOL.md 3.1 accepts).
pub fn frame_decode(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else { return };
    let max = if mode & 0x40 != 0 { MAX_FRAME_LEN } else { MAX_CLIENT_FRAME_LEN };
    let chunk = match usize::from(mode & 0x0f) {
        0 => usize::MAX,
        n => n,
    };
    let reset = mode & 0x80 != 0;

    let (frames, end) = split_all(stream, max);
    for body in &frames {
        check_body(body);
    }
    let (read, read_end) = read_all(stream, max, chunk, reset);
    assert_eq!(read, frames, "the stream reader and split_frame disagree on the frames");
    let (chunked, chunked_end) = read_all_chunked(stream, max, chunk, reset);
    assert_eq!(chunked, frames, "the chunk frame reader and split_frame disagree on the frames");
    assert_eq!(
        format!("{read_end:?}"),
        format!("{chunked_end:?}"),
        "the two stream readers end differently"
    );
    match (end, read_end) {
        (Err(e), Err(ReadError::Wire(r))) => assert_eq!(e, r),
        (Ok(0), Ok(())) if !reset => {}
        (Ok(_), Err(ReadError::Reset(RESET_CODE))) if reset => {}
        (Ok(rest), Err(ReadError::Truncated)) if rest > 0 && !reset => {}
        (end, read_end) => {
            panic!("split_frame ended with {end:?}, the stream reader with {read_end:?}")
        }
    }
}

/// Splits every complete frame off `stream`; the end is the error, or the bytes left over.
fn split_all(stream: &[u8], max: usize) -> (Vec<Bytes>, Result<usize, WireError>) {
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match split_frame(&mut buf, max) {
            Ok(Some(body)) => frames.push(body),
            Ok(None) => return (frames, Ok(buf.len())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Reads frames with the real stream reader until it stops.
fn read_all(
    stream: &[u8],
    max: usize,
    chunk: usize,
    reset: bool,
) -> (Vec<Bytes>, Result<(), ReadError>) {
    let mut reader = Chunked { data: stream, chunk, reset };
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut frames = Vec::new();
            loop {
                // Every read is ready at once, so the deadline never fires here.
                match read_frame(&mut reader, max, Duration::from_secs(60)).await {
                    Ok(Some(body)) => frames.push(Bytes::from(body)),
                    Ok(None) => return (frames, Ok(())),
                    Err(e) => return (frames, Err(e)),
                }
            }
        })
    })
}

/// Reads frames with the client's chunk frame reader until it stops.
fn read_all_chunked(
    stream: &[u8],
    max: usize,
    chunk: usize,
    reset: bool,
) -> (Vec<Bytes>, Result<(), ReadError>) {
    let source = Chunked { data: stream, chunk, reset };
    let mut reader = FrameReader::new(source, max, Duration::from_secs(60));
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut frames = Vec::new();
            loop {
                match reader.next().await {
                    Ok(Some(body)) => frames.push(body),
                    Ok(None) => return (frames, Ok(())),
                    Err(e) => return (frames, Err(e)),
                }
            }
        })
    })
}

/// The application code of the fuzzed resets.
const RESET_CODE: u64 = 7;

/// In-memory bytes handed out at most `chunk` at a time, then a finish or a reset.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    reset: bool,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.data.is_empty() && this.reset {
            let reset = quinn::ReadError::Reset(quinn::VarInt::from_u32(RESET_CODE as u32));
            return Poll::Ready(Err(io::Error::from(reset)));
        }
        let n = this.chunk.min(this.data.len()).min(buf.remaining());
        let (head, tail) = this.data.split_at(n);
        buf.put_slice(head);
        this.data = tail;
        Poll::Ready(Ok(()))
    }
}

impl ChunkSource for Chunked<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ReadError> {
        if self.data.is_empty() {
            return match self.reset {
                true => Err(ReadError::Reset(RESET_CODE)),
                false => Ok(None),
            };
        }
        let n = self.chunk.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(Some(Bytes::copy_from_slice(head)))
    }
}

/// Tries a frame body as every message type.
fn check_body(body: &[u8]) {
    if let Ok(request) = decode_request(body) {
        assert!(body.len() <= MAX_CLIENT_FRAME_LEN);
        // The client limit only ever refuses more than the general one.
        assert_eq!(decode_body::<RequestFrame>(body).as_ref(), Ok(&request));
        round_trip(&request, body);
    } else if let Ok(request) = decode_body::<RequestFrame>(body) {
        round_trip(&request, body);
    }
    if let Ok(response) = decode_body::<ResponseFrame>(body) {
        round_trip(&response, body);
    }
    if let Ok(event) = decode_body::<Event>(body) {
        round_trip(&event, body);
    }
    if let Ok(header) = decode_body::<StreamHeader>(body) {
        round_trip(&header, body);
    }
}

/// A decoded message re-encodes to itself. The bytes are the input's exactly, unless the input
/// spelled a varint longer than necessary: then the re-encoding is the shortest form, strictly
/// shorter. Either way it is a fixed point.
fn round_trip<T>(msg: &T, body: &[u8])
where
    T: Encode + Decode<()> + PartialEq + std::fmt::Debug,
{
    let again = encode_body(msg);
    assert!(again.len() <= body.len(), "re-encoding of {msg:?} grew");
    if again.len() == body.len() {
        assert_eq!(again, body, "re-encoding of {msg:?} differs from its input");
    }
    assert_eq!(decode_body::<T>(&again).as_ref(), Ok(msg), "re-encoding does not decode back");
    let frame = encode_frame(msg);
    let prefix: [u8; LENGTH_PREFIX_LEN] = frame[..LENGTH_PREFIX_LEN].try_into().unwrap_or_default();
    assert_eq!(u32::from_le_bytes(prefix) as usize, again.len());
    assert_eq!(&frame[LENGTH_PREFIX_LEN..], &again[..]);
}
