//! The endpoint driver's channel to each connection's driver
//!
//! Quinn used a tokio unbounded channel here before, which allocates its first block of
//! 32 slots when it is created and keeps it for the connection's life: about 7 KB per
//! connection, most of an idle connection's cost. This queue holds nothing while empty beyond
//! its shared state, keeps at most four slots once drained, and has the same interface as the
//! part of tokio's channel quinn used: one sender, one receiver, `send` fails once the receiver
//! is gone, and `poll_recv` gives `None` once the sender is gone and the queue is empty.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Slots a drained queue keeps: a connection that receives a packet at a time does not
/// allocate for each one, and a burst's larger buffer is freed when the burst is over.
const KEEP: usize = 4;

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

type Shared<T> = Arc<Mutex<State<T>>>;

pub(crate) fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        waker: None,
        sender_alive: true,
        receiver_alive: true,
    }));
    (UnboundedSender(shared.clone()), UnboundedReceiver(shared))
}

pub(crate) struct UnboundedSender<T>(Shared<T>);

/// The receiver is gone; the value comes back.
pub(crate) struct SendError<T>(pub(crate) T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> UnboundedSender<T> {
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        let waker = {
            let mut state = self.0.lock().unwrap();
            if !state.receiver_alive {
                return Err(SendError(value));
            }
            state.queue.push_back(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for UnboundedSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock().unwrap();
            state.sender_alive = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnboundedSender")
    }
}

pub(crate) struct UnboundedReceiver<T>(Shared<T>);

impl<T> UnboundedReceiver<T> {
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock().unwrap();
        if let Some(value) = state.queue.pop_front() {
            return Poll::Ready(Some(value));
        }
        if state.queue.capacity() > KEEP {
            state.queue = VecDeque::new();
        }
        if !state.sender_alive {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for UnboundedReceiver<T> {
    fn drop(&mut self) {
        let queue = {
            let mut state = self.0.lock().unwrap();
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // The events are dropped outside the lock.
        drop(queue);
    }
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnboundedReceiver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn order_wakeups_and_ends() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = unbounded_channel::<u32>();
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken once for the first send"
        );
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        for i in 0..100 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert!(
            rx.0.lock().unwrap().queue.capacity() <= KEEP,
            "a burst's buffer is freed"
        );
        // The receiver was draining (no Pending in between): the burst woke nobody.
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "one wake-up for the send and the end"
        );
        assert_eq!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(7)),
            "queued before the end"
        );
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_the_end() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = unbounded_channel::<u32>();
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = unbounded_channel::<u32>();
        drop(rx);
        assert_eq!(tx.send(1).unwrap_err().0, 1);
    }
}
