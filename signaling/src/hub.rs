//! The topic registry: which connections receive what is published to a topic.
//!
//! Delivery never waits: a publish pushes into every receiver's bounded [`Outbox`], and a
//! receiver whose queue is full is disconnected rather than slowing the publisher down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbox::Outbox;

/// Identifies a connection within one server.
pub(crate) type ConnId = u64;

/// How to reach one connection: its outbound queue.
pub(crate) type Peer = Arc<Outbox>;

/// Topic name → subscribed connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    topics: RwLock<HashMap<Arc<str>, HashMap<ConnId, Peer>>>,
    next_id: AtomicU64,
}

impl Hub {
    /// A fresh connection id.
    pub(crate) fn next_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `id` to `topic`; returns the shared topic name to keep in the connection's own list.
    pub(crate) fn subscribe(&self, topic: &str, id: ConnId, peer: &Peer) -> Arc<str> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = topics
            .get_key_value(topic)
            .map(|(name, _)| Arc::clone(name))
        {
            if let Some(subscribers) = topics.get_mut(topic) {
                subscribers.insert(id, peer.clone());
            }
            return name;
        }
        let name: Arc<str> = Arc::from(topic);
        topics.insert(Arc::clone(&name), HashMap::from([(id, Arc::clone(peer))]));
        name
    }

    /// Removes `id` from each of `names`, dropping topics left without subscribers.
    pub(crate) fn unsubscribe<'a>(&self, names: impl IntoIterator<Item = &'a str>, id: ConnId) {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        for name in names {
            if let Some(subscribers) = topics.get_mut(name) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    topics.remove(name);
                }
            }
        }
    }

    /// Delivers to every subscriber of `topic` the text `encode(receivers)` returns; returns how
    /// many queued it. `encode` runs once, only when the topic has subscribers.
    pub(crate) fn publish(&self, topic: &str, encode: impl FnOnce(usize) -> String) -> usize {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        let Some(subscribers) = topics.get(topic) else {
            return 0;
        };
        let text = Utf8Bytes::from(encode(subscribers.len()));
        subscribers
            .values()
            .filter(|peer| peer.push(text.clone()))
            .count()
    }

    /// The number of topics with at least one subscriber.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::outbox::Pop;

    fn peer(capacity: usize) -> Peer {
        Arc::new(Outbox::new(capacity))
    }

    fn popped(peer: &Peer) -> String {
        match peer.pop() {
            Pop::Message(text) => text.to_string(),
            other => panic!("expected a message, found {other:?}"),
        }
    }

    #[test]
    fn publish_reaches_every_subscriber_with_the_receiver_count() {
        let hub = Hub::default();
        let a = peer(4);
        let b = peer(4);
        hub.subscribe("t", 1, &a);
        hub.subscribe("t", 2, &b);
        hub.subscribe("other", 2, &b);
        assert_eq!(hub.topic_count(), 2);
        assert_eq!(hub.publish("t", |n| format!("{n}")), 2);
        assert_eq!(popped(&a), "2");
        assert_eq!(popped(&b), "2");
        assert_eq!(hub.publish("nobody", |_| unreachable!("not encoded")), 0);
    }

    #[test]
    fn unsubscribing_the_last_subscriber_drops_the_topic() {
        let hub = Hub::default();
        let a = peer(1);
        let name = hub.subscribe("t", 1, &a);
        assert_eq!(&*name, "t");
        assert!(Arc::ptr_eq(&name, &hub.subscribe("t", 1, &a)));
        hub.unsubscribe(["t", "never-subscribed"], 1);
        assert_eq!(hub.topic_count(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_reports_overflow_instead_of_waiting() {
        let hub = Hub::default();
        let slow = peer(1);
        let fast = peer(8);
        hub.subscribe("t", 1, &slow);
        hub.subscribe("t", 2, &fast);
        assert_eq!(hub.publish("t", |_| "one".into()), 2);
        assert_eq!(hub.publish("t", |_| "two".into()), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), slow.overflowed())
            .await
            .expect("overflow reported");
        assert_eq!(popped(&fast), "one");
        assert_eq!(popped(&fast), "two");
    }
}
