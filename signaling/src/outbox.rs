//! A connection's bounded outbound queue.
//!
//! Publishers push without waiting; the connection's writer pops. A push that finds the queue
//! full marks it overflowed and notifies [`Outbox::overflowed`], and the connection closes as a
//! slow consumer: one client that does not read never holds up the others.
//!
//! An idle connection's queue holds no allocation (the deque is released whenever it drains),
//! which matters with tens of thousands of mostly idle connections.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The outbound queue of one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the connection when a message arrives in an empty queue, and on overflow.
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Utf8Bytes>,
    overflowed: bool,
    closed: bool,
}

/// What [`Outbox::pop`] found.
#[derive(Debug)]
pub(crate) enum Pop {
    /// The oldest queued message.
    Message(Utf8Bytes),
    /// Nothing queued.
    Empty,
    /// The queue overflowed: the connection must close.
    Overflowed,
}

impl Outbox {
    /// An empty queue holding at most `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::default(),
            capacity,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `text`; false if it was not queued (full, overflowed before, or closed).
    pub(crate) fn push(&self, text: Utf8Bytes) -> bool {
        let mut state = self.lock();
        if state.closed || state.overflowed {
            return false;
        }
        if state.queue.len() >= self.capacity {
            state.overflowed = true;
            state.queue = VecDeque::new();
            drop(state);
            self.ready.notify_one();
            return false;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(text);
        drop(state);
        // The connection waits only after finding the queue empty; `notify_one` keeps a permit
        // if it is not waiting yet, so this wake-up cannot be lost.
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Takes the oldest message.
    pub(crate) fn pop(&self) -> Pop {
        let mut state = self.lock();
        if state.overflowed {
            return Pop::Overflowed;
        }
        match state.queue.pop_front() {
            Some(text) => {
                if state.queue.is_empty() {
                    // Most connections are idle most of the time: hold no buffer between bursts.
                    state.queue = VecDeque::new();
                }
                Pop::Message(text)
            }
            None => Pop::Empty,
        }
    }

    /// Resolves after a push into an empty queue or an overflow (possibly one that happened
    /// before the call).
    pub(crate) fn ready(&self) -> Notified<'_> {
        self.ready.notified()
    }

    /// Resolves once the queue has overflowed. Meant to run alongside a write that drains the
    /// queue until it finds it empty: a wake-up this takes for a new message is harmless, since
    /// that write will find the message.
    pub(crate) async fn overflowed(&self) {
        loop {
            let notified = self.ready.notified();
            if self.lock().overflowed {
                return;
            }
            notified.await;
        }
    }

    /// Refuses further messages and drops the queued ones.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn messages_come_out_in_order() {
        let outbox = Outbox::new(4);
        assert!(outbox.push("a".into()));
        assert!(outbox.push("b".into()));
        assert!(matches!(outbox.pop(), Pop::Message(t) if t.as_str() == "a"));
        assert!(matches!(outbox.pop(), Pop::Message(t) if t.as_str() == "b"));
        assert!(matches!(outbox.pop(), Pop::Empty));
    }

    #[tokio::test]
    async fn overflow_is_reported_and_refuses_more() {
        let outbox = Outbox::new(2);
        assert!(outbox.push("1".into()));
        assert!(outbox.push("2".into()));
        // Consume the wake-up of the first push.
        outbox.ready().await;
        assert!(!outbox.push("3".into()));
        tokio::time::timeout(Duration::from_secs(1), outbox.ready())
            .await
            .expect("the connection is woken on overflow");
        assert!(!outbox.push("4".into()));
        assert!(matches!(outbox.pop(), Pop::Overflowed));
        tokio::time::timeout(Duration::from_secs(1), outbox.overflowed())
            .await
            .expect("overflow reported");
    }

    #[tokio::test]
    async fn a_push_before_waiting_still_wakes_the_writer() {
        let outbox = Outbox::new(2);
        assert!(outbox.push("x".into()));
        tokio::time::timeout(Duration::from_secs(1), outbox.ready())
            .await
            .expect("woken");
    }

    #[test]
    fn a_closed_outbox_refuses_messages() {
        let outbox = Outbox::new(2);
        outbox.push("x".into());
        outbox.close();
        assert!(!outbox.push("y".into()));
        assert!(matches!(outbox.pop(), Pop::Empty));
    }

    #[test]
    fn a_drained_queue_releases_its_buffer() {
        let outbox = Outbox::new(1000);
        for i in 0..100 {
            outbox.push(i.to_string().into());
        }
        while let Pop::Message(_) = outbox.pop() {}
        assert_eq!(outbox.lock().queue.capacity(), 0);
    }
}
