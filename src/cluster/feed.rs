//! Feeds: a room log's entries, in order and without gaps, as they are stored.
//!
//! A feed subscribes to the room's RePublish subject *first*, then reads the entries already
//! stored after its starting point, then takes the live copies, dropping those it already has.
//! Core NATS may drop a copy (a slow consumer, a reconnect); each copy carries
//! `Nats-Last-Sequence`, the stream sequence of the previous entry on the same subject, so a copy
//! whose predecessor is not the last entry delivered reveals the gap, which is then read from the
//! stream before the copy is delivered. The stream leader answers those reads, but an entry it
//! has just republished can in principle be not readable yet, so a short gap read is retried a
//! few times before the feed reports the entries as missing. A dropped copy of the *last* entry
//! has no successor to reveal it: after every reconnect and slow-consumer event each feed reads
//! its log's tail again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::bus::{header, NatsBus};
use super::naming::LogRef;

/// Records a feed buffers for its reader. A reader that falls behind makes the feed task wait;
/// core NATS then buffers (65,536 messages per subscription) and finally drops, which the feed
/// repairs from the stream: a slow reader costs reads, never order or completeness.
const FEED_BUFFER: usize = 1024;
/// How often a gap that the stream does not (yet) show is read again before it is reported.
const GAP_TRIES: u32 = 5;
const RETRY_FIRST: Duration = Duration::from_millis(1);
const RETRY_MAX: Duration = Duration::from_millis(200);

/// One entry of a room log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its stream sequence.
    pub stream_seq: u64,
    /// The stream sequence of the record delivered before it on the same feed or read (the
    /// starting point for the first): the entries of a room log chain without gaps.
    pub prev_stream_seq: u64,
    /// The entry's bytes, as appended.
    pub entry: Bytes,
}

/// Why a feed could not start or deliver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The subscription could not be made.
    #[error("cannot subscribe to the room feed")]
    Unavailable,
    /// Entries after `after` up to `upto` were announced but are not in the stream (purged, or
    /// removed by the stream's limits): the reader must rebuild from a snapshot. The feed goes on
    /// after `upto`.
    #[error("room log entries {after}..={upto} are gone")]
    Missing {
        /// The last entry delivered before the hole.
        after: u64,
        /// The last entry of the hole.
        upto: u64,
    },
}

/// A live, ordered, gap-free feed of one room log ([`NatsBus::follow`]). Dropping it, or
/// [`NatsBus::unfollow`], ends the subscription.
pub struct Feed {
    log: LogRef,
    drop_live: Arc<AtomicU32>,
    records: mpsc::Receiver<Result<Record, FeedError>>,
    task: JoinHandle<()>,
}

impl Feed {
    /// The log this feed follows.
    pub fn log(&self) -> &LogRef {
        &self.log
    }

    /// Fault injection for tests: the feed ignores the next `n` live copies it receives, as if
    /// core NATS had lost them.
    #[doc(hidden)]
    pub fn drop_live_copies(&self, n: u32) {
        self.drop_live.fetch_add(n, Ordering::Relaxed);
    }

    /// The next record, waiting for it; `None` once the feed has ended (the connection closed
    /// for good).
    pub async fn next(&mut self) -> Option<Result<Record, FeedError>> {
        self.records.recv().await
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NatsBus {
    /// Follows `log` from stream sequence `from` (exclusive; 0 for the whole log): the stored
    /// entries after it, then live entries, each once and in order.
    pub async fn follow(&self, log: &LogRef, from: u64) -> Result<Feed, FeedError> {
        let subject = log.feed_subject(&self.inner.opts.prefix);
        let subscription =
            self.inner.client.subscribe(subject).await.map_err(|_| FeedError::Unavailable)?;
        let (tx, records) = mpsc::channel(FEED_BUFFER);
        let drop_live = Arc::new(AtomicU32::new(0));
        let follower = Follower {
            bus: self.clone(),
            log: log.clone(),
            last: from,
            live: false,
            drop_live: drop_live.clone(),
            tx,
        };
        let task = tokio::spawn(follower.run(subscription));
        Ok(Feed { log: log.clone(), drop_live, records, task })
    }

    /// Ends `feed`'s subscription (as dropping it does).
    pub fn unfollow(&self, feed: Feed) {
        drop(feed);
    }
}

struct Follower {
    bus: NatsBus,
    log: LogRef,
    /// The last stream sequence delivered.
    last: u64,
    /// The first catch-up is done: entries read from the stream now are repairs.
    live: bool,
    drop_live: Arc<AtomicU32>,
    tx: mpsc::Sender<Result<Record, FeedError>>,
}

/// The reader went away.
struct Closed;

impl Follower {
    async fn run(mut self, mut subscription: Subscriber) {
        let mut resync = self.bus.inner.resync.clone();
        resync.mark_unchanged();
        if self.catch_up(None).await.is_err() {
            return;
        }
        self.live = true;
        loop {
            let step = tokio::select! {
                message = subscription.next() => match message {
                    Some(message) => self.live(message).await,
                    None => return,
                },
                changed = resync.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.catch_up(None).await
                }
                () = self.tx.closed() => return,
            };
            if step.is_err() {
                let _ = subscription.unsubscribe().await;
                return;
            }
        }
    }

    async fn live(&mut self, message: async_nats::Message) -> Result<(), Closed> {
        let dropping =
            self.drop_live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if dropping.is_ok() {
            return Ok(());
        }
        let headers = message.headers.unwrap_or_default();
        let seq = header(&headers, "Nats-Sequence").and_then(|v| v.parse::<u64>().ok());
        let prev = header(&headers, "Nats-Last-Sequence").and_then(|v| v.parse::<u64>().ok());
        let Some(seq) = seq else {
            tracing::warn!(log = ?self.log, "feed copy without Nats-Sequence; reading the tail");
            return self.catch_up(None).await;
        };
        if seq <= self.last {
            return Ok(());
        }
        if prev.unwrap_or(0) > self.last {
            self.catch_up(prev).await?;
            if seq <= self.last {
                return Ok(());
            }
        }
        self.deliver(seq, message.payload).await
    }

    /// Reads the stored entries after `last` up to `upto`, or up to the log's last entry as of
    /// now (later ones come live), which keeps a catch-up from chasing a log that grows as fast
    /// as it is read. The entries up to `upto` are known to exist: if the stream does not show
    /// them after a few tries they are reported missing.
    async fn catch_up(&mut self, upto: Option<u64>) -> Result<(), Closed> {
        let mut retry = RETRY_FIRST;
        let upto = match upto {
            Some(upto) => upto,
            None => loop {
                match self.bus.last_message(&self.log).await {
                    Ok(Some(message)) => break message.sequence,
                    Ok(None) => return Ok(()),
                    Err(_) => self.pause(&mut retry).await?,
                }
            },
        };
        let mut gap_tries = 0;
        while self.last < upto {
            match self.bus.next_message(&self.log, self.last + 1).await {
                Ok(Some(message)) => {
                    retry = RETRY_FIRST;
                    if self.live {
                        self.bus.inner.repaired.fetch_add(1, Ordering::Relaxed);
                    }
                    self.deliver(message.sequence, message.payload).await?;
                }
                Ok(None) => {
                    gap_tries += 1;
                    if gap_tries >= GAP_TRIES {
                        let missing = FeedError::Missing { after: self.last, upto };
                        self.tx.send(Err(missing)).await.map_err(|_| Closed)?;
                        self.last = upto;
                        return Ok(());
                    }
                    self.pause(&mut retry).await?;
                }
                Err(_) => self.pause(&mut retry).await?,
            }
        }
        Ok(())
    }

    /// Waits before a read is tried again, unless the reader has gone.
    async fn pause(&self, retry: &mut Duration) -> Result<(), Closed> {
        if self.tx.is_closed() {
            return Err(Closed);
        }
        tokio::time::sleep(*retry).await;
        *retry = (*retry * 2).min(RETRY_MAX);
        Ok(())
    }

    async fn deliver(&mut self, seq: u64, entry: Bytes) -> Result<(), Closed> {
        let record = Record { stream_seq: seq, prev_stream_seq: self.last, entry };
        self.tx.send(Ok(record)).await.map_err(|_| Closed)?;
        self.last = seq;
        Ok(())
    }
}
