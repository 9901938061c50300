//! Room logs: the streams, appends with their retry rules, reads and purge.
//!
//! **Outcomes of an append.** JetStream answers a publish with a PubAck (stored, or a duplicate of
//! an entry with the same `Nats-Msg-Id` stored within the stream's 2-minute window) or an error:
//! 10071 "wrong last sequence: N" is a real conflict on `Nats-Expected-Last-Subject-Sequence` and
//! carries the log's actual last sequence; 10164 (another CAS in flight on the subject) and 10163
//! (per-subject sequence unknown after a leader change) mean "try again". No answer at all (a
//! timeout, no responders, a lost connection) leaves the outcome unknown, so the subject's last
//! entry is read through the stream leader (`STREAM.MSG.GET`, never Direct Get, which a lagging
//! follower may answer) and, if it carries our message id, the append happened. Otherwise the
//! same bytes go again with the same message id, after a jittered backoff from 1 ms doubling to
//! 200 ms, until the append timeout; JetStream's duplicate window makes a late second copy a
//! `duplicate` answer rather than a second entry.

use std::time::Duration;

use async_nats::client::{Request, RequestErrorKind};
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;
use tokio::time::Instant;

use super::bus::{header, NatsBus};
use super::feed::Record;
use super::naming::LogRef;

/// Each try of an append waits this long for its PubAck, or less if the timeout is nearer.
const TRY_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// JetStream's "wrong last sequence: N".
const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream's "expected last sequence per subject temporarily unavailable" (leader change).
const ERR_LAST_SEQUENCE_UNAVAILABLE: u64 = 10163;
/// JetStream's "wrong last sequence" without a number: another CAS in flight on the subject.
const ERR_CAS_IN_FLIGHT: u64 = 10164;

/// A stored append: where the entry is in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The entry's stream sequence.
    pub stream_seq: u64,
    /// The entry had already been stored by an earlier try with the same message id (this call's
    /// or an earlier call's); it is in the log once, at `stream_seq`.
    pub duplicate: bool,
}

/// Why an append was not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The log's last entry is not the expected one (10071).
    #[error("the room log moved on: its last entry is {actual_last}")]
    Conflict {
        /// The stream sequence of the log's last entry (0 for an empty log).
        actual_last: u64,
    },
    /// JetStream kept answering "try again" (10164, 10163) until the append timeout.
    #[error("the room log stayed busy until the append timeout")]
    Busy,
    /// No answer until the append timeout: NATS down, no stream leader, or no stream.
    #[error("the room log was unreachable until the append timeout")]
    Unavailable,
    /// JetStream refused the entry for good (too large, stream sealed, ...).
    #[error("JetStream refused the entry: {code} {description}")]
    Rejected {
        /// JetStream's error code.
        code: u64,
        /// JetStream's text.
        description: String,
    },
}

#[derive(Deserialize)]
struct PubAckJson {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

enum Try {
    Done(Result<Appended, AppendError>),
    Busy,
    Unknown,
}

impl NatsBus {
    /// Appends `entry` to `log` under message id `msg_id` (unique per entry and stable across
    /// retries, for example `<node>:<incarnation>:<proposal>`), if `expected_last` is `None` or
    /// the log's last entry is `expected_last` (0: the log is empty). Retries as the module docs
    /// say until [`NatsOptions::append_timeout`](super::NatsOptions::append_timeout).
    pub async fn append(
        &self,
        log: &LogRef,
        entry: Bytes,
        msg_id: &str,
        expected_last: Option<u64>,
    ) -> Result<Appended, AppendError> {
        let subject = log.subject(&self.inner.opts.prefix);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id);
        if let Some(last) = expected_last {
            headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last.to_string().as_str());
        }
        let deadline = Instant::now() + self.inner.opts.append_timeout();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let request = Request::new()
                .payload(entry.clone())
                .headers(headers.clone())
                .timeout(Some(left.min(TRY_TIMEOUT).max(Duration::from_millis(1))));
            let outcome = match self.inner.client.send_request(subject.clone(), request).await {
                Ok(reply) => judge(&reply.payload),
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
                    ) {
                        tracing::debug!(error = %e, "append request failed");
                    }
                    Try::Unknown
                }
            };
            let busy = match outcome {
                Try::Done(result) => return result,
                Try::Busy => true,
                Try::Unknown => {
                    if let Ok(Some(last)) = self.last_message(log).await {
                        if header(&last.headers, "Nats-Msg-Id") == Some(msg_id) {
                            return Ok(Appended { stream_seq: last.sequence, duplicate: true });
                        }
                    }
                    false
                }
            };
            if Instant::now() + backoff >= deadline {
                return Err(if busy { AppendError::Busy } else { AppendError::Unavailable });
            }
            let jittered = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
            tokio::time::sleep(jittered).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Up to `max` entries of `log` after stream sequence `from`, oldest first, read through the
    /// stream leader. Each record's `prev_stream_seq` is the one before it in the answer (`from`
    /// for the first).
    pub async fn read(
        &self,
        log: &LogRef,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, AppendError> {
        let mut out = Vec::new();
        let mut last = from;
        while out.len() < max {
            match self.next_message(log, last + 1).await? {
                Some(message) => {
                    out.push(Record {
                        stream_seq: message.sequence,
                        prev_stream_seq: last,
                        entry: message.payload,
                    });
                    last = message.sequence;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// The last entry of `log` (its stream sequence and bytes), read through the stream leader;
    /// `None` if the log is empty.
    pub async fn last(&self, log: &LogRef) -> Result<Option<(u64, Bytes)>, AppendError> {
        Ok(self.last_message(log).await?.map(|m| (m.sequence, m.payload)))
    }

    /// Drops every entry of `log` (destroying a room drops its history).
    pub async fn purge(&self, log: &LogRef) -> Result<u64, AppendError> {
        let stream = &self.inner.streams[log.shard as usize];
        stream
            .purge()
            .filter(log.subject(&self.inner.opts.prefix))
            .await
            .map(|r| r.purged)
            .map_err(|_| AppendError::Unavailable)
    }

    pub(super) async fn last_message(
        &self,
        log: &LogRef,
    ) -> Result<Option<StreamMessage>, AppendError> {
        let stream = &self.inner.streams[log.shard as usize];
        let subject = log.subject(&self.inner.opts.prefix);
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(_) => Err(AppendError::Unavailable),
        }
    }

    /// The first entry of `log` at or after stream sequence `seq`, through the stream leader.
    pub(super) async fn next_message(
        &self,
        log: &LogRef,
        seq: u64,
    ) -> Result<Option<StreamMessage>, AppendError> {
        let stream = &self.inner.streams[log.shard as usize];
        let subject = log.subject(&self.inner.opts.prefix);
        match stream.raw_message_builder().sequence(seq).next_by_subject(subject).send().await {
            Ok(message) => Ok(Some(message)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(_) => Err(AppendError::Unavailable),
        }
    }
}

/// Reads a PubAck or JetStream error.
fn judge(payload: &[u8]) -> Try {
    let Ok(ack) = serde_json::from_slice::<PubAckJson>(payload) else {
        return Try::Unknown;
    };
    let Some(error) = ack.error else {
        return Try::Done(Ok(Appended { stream_seq: ack.seq, duplicate: ack.duplicate }));
    };
    match error.err_code {
        ERR_WRONG_LAST_SEQUENCE => match wrong_last_sequence(&error.description) {
            Some(actual_last) => Try::Done(Err(AppendError::Conflict { actual_last })),
            None => Try::Busy,
        },
        ERR_CAS_IN_FLIGHT | ERR_LAST_SEQUENCE_UNAVAILABLE => Try::Busy,
        code => Try::Done(Err(AppendError::Rejected { code, description: error.description })),
    }
}

/// The N of "wrong last sequence: N".
fn wrong_last_sequence(description: &str) -> Option<u64> {
    description.rsplit(':').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_answers_are_judged() {
        let ok = br#"{"stream":"HUDDLE_ROOMS_0","seq":7,"duplicate":true}"#;
        assert!(matches!(judge(ok), Try::Done(Ok(Appended { stream_seq: 7, duplicate: true }))));
        let conflict =
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 42"}}"#;
        assert!(matches!(
            judge(conflict),
            Try::Done(Err(AppendError::Conflict { actual_last: 42 }))
        ));
        let busy =
            br#"{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"}}"#;
        assert!(matches!(judge(busy), Try::Busy));
        let leader = br#"{"error":{"code":503,"err_code":10163,"description":"expected last sequence per subject temporarily unavailable"}}"#;
        assert!(matches!(judge(leader), Try::Busy));
        let big = br#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#;
        assert!(matches!(judge(big), Try::Done(Err(AppendError::Rejected { code: 10054, .. }))));
        assert!(matches!(judge(b"garbage"), Try::Unknown));
    }
}
