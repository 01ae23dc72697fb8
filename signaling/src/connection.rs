//! One WebSocket connection: a reader that enforces the limits and applies messages to the hub,
//! and a writer that drains the connection's bounded [`Outbox`] and sends pings.
//!
//! Both halves run concurrently inside one task. Whichever ends first decides why the
//! connection closes ([`CloseReason`]); the other is dropped, the connection leaves every topic,
//! and the server sends a close frame with a code and a reason, then waits briefly for the
//! client's reply so that the frame is not lost to a TCP reset.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, trace};

use crate::hub::{ConnId, Peer};
use crate::limits::{at_least_1ms, Ticket, TokenBucket};
use crate::metrics::CloseReason;
use crate::outbox::{Outbox, Pop};
use crate::protocol::{self, ClientMessage, PONG};
use crate::{Config, Shared};

/// How long sending the close frame may take.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the client's close frame after sending ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;
/// Most scheduler budget units one publish uses up (see [`Session::read`]).
const MAX_FAN_OUT_BUDGET: usize = 128;

/// The sending half of a connection.
pub(crate) type Sink = SplitSink<WebSocket, Message>;
/// The receiving half of a connection.
pub(crate) type Stream = SplitStream<WebSocket>;

/// Runs a connection until it closes. `ticket` holds its admission slot until then.
///
/// The socket comes already split: the halves are small handles to one heap allocation, and
/// every byte of this future's state is held for as long as the connection is open.
pub(crate) async fn run(
    mut sink: Sink,
    mut stream: Stream,
    shared: Arc<Shared>,
    ticket: Ticket,
    addr: SocketAddr,
) {
    let id = shared.hub.next_id();
    let metrics = &shared.metrics;
    metrics.connections_current.fetch_add(1, Ordering::Relaxed);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    debug!(conn = id, %addr, "connection opened");

    let reason = converse(&mut sink, &mut stream, &shared, id).await;
    metrics.count_close(reason);
    // Boxed, so that its state is allocated when a connection closes rather than carried by
    // every open one.
    Box::pin(close(reason, &mut sink, &mut stream, &shared)).await;

    metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
    if reason.is_rejected_frame() || reason == CloseReason::SlowConsumer {
        debug!(conn = id, %addr, reason = reason.label(), "connection closed by the server");
    } else {
        trace!(conn = id, %addr, reason = reason.label(), "connection closed");
    }
    drop(ticket);
}

/// Relays until something ends the connection, then leaves every topic.
async fn converse(
    sink: &mut Sink,
    stream: &mut Stream,
    shared: &Arc<Shared>,
    id: ConnId,
) -> CloseReason {
    let outbox: Peer = Arc::new(Outbox::new(shared.config.outbound_queue));
    let mut session = Session {
        id,
        peer: Arc::clone(&outbox),
        topics: HashSet::new(),
        bucket: TokenBucket::new(
            shared.config.rate_limit_per_sec,
            shared.config.rate_limit_burst,
            std::time::Instant::now(),
        ),
        shared: Arc::clone(shared),
    };
    let liveness = Liveness::new();
    let reason = tokio::select! {
        reason = session.read(stream, &liveness) => reason,
        reason = write(sink, &outbox, &liveness, &shared.config) => reason,
        () = outbox.overflowed() => CloseReason::SlowConsumer,
        () = shared.stop.triggered() => CloseReason::Shutdown,
    };
    session.leave_all();
    outbox.close();
    reason
}

/// Sends the close frame for `reason`, if any, and waits briefly for the client's reply.
async fn close(reason: CloseReason, sink: &mut Sink, stream: &mut Stream, shared: &Shared) {
    match close_frame(reason, shared) {
        Some(frame) => {
            let sent =
                tokio::time::timeout(CLOSE_SEND_TIMEOUT, sink.send(Message::Close(Some(frame))))
                    .await;
            // After a framing error the rest of the input is not a frame boundary; do not read on.
            let readable = !matches!(reason, CloseReason::TooLarge | CloseReason::ProtocolError);
            if matches!(sent, Ok(Ok(()))) && readable {
                let _ = tokio::time::timeout(CLOSE_LINGER, async {
                    while let Some(Ok(message)) = stream.next().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        None => {
            // Flushes the automatic reply to the client's close frame, if any.
            let _ = tokio::time::timeout(CLOSE_SEND_TIMEOUT, sink.close()).await;
        }
    }
}

/// The close frame the server sends for `reason`, if any.
fn close_frame(reason: CloseReason, shared: &Shared) -> Option<CloseFrame> {
    let config = &shared.config;
    let (code, text): (u16, String) = match reason {
        CloseReason::Client | CloseReason::TransportError => return None,
        CloseReason::Malformed => (1007, "malformed message".into()),
        CloseReason::Binary => (1003, "binary frames are not accepted".into()),
        CloseReason::TooLarge => (
            1009,
            format!("frame larger than {} bytes", config.max_frame_bytes),
        ),
        CloseReason::RateLimited => (1008, "rate limit exceeded".into()),
        CloseReason::TooManyTopics => (
            1008,
            format!("more than {} topics", config.max_topics_per_connection),
        ),
        CloseReason::TopicTooLong => (
            1008,
            format!("topic longer than {} bytes", config.max_topic_bytes),
        ),
        CloseReason::ProtocolError => (1002, "protocol error".into()),
        CloseReason::Idle => (1001, "idle timeout".into()),
        CloseReason::SlowConsumer => (1008, "slow consumer".into()),
        CloseReason::Shutdown => (1001, "going away".into()),
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(text),
    })
}

/// The reader's state.
struct Session {
    id: ConnId,
    peer: Peer,
    topics: HashSet<Arc<str>>,
    bucket: TokenBucket,
    shared: Arc<Shared>,
}

impl Session {
    /// Reads frames until one of them or the client ends the connection.
    async fn read(&mut self, stream: &mut Stream, liveness: &Liveness) -> CloseReason {
        loop {
            let message = match stream.next().await {
                None => return CloseReason::Client,
                Some(Err(error)) => return classify(error),
                Some(Ok(message)) => message,
            };
            let now = std::time::Instant::now();
            liveness.received(now);
            if !self.bucket.take(now) {
                return CloseReason::RateLimited;
            }
            match message {
                Message::Text(text) => match self.handle(text.as_str()) {
                    Err(reason) => return reason,
                    Ok(delivered) => {
                        // A publish queues a message for every subscriber. Charging the
                        // scheduler budget for each makes a busy publisher yield before it has
                        // queued more than the subscribers' writers can take in one turn, so
                        // that bursts do not overflow healthy subscribers' queues.
                        for _ in 0..delivered.min(MAX_FAN_OUT_BUDGET) {
                            tokio::task::consume_budget().await;
                        }
                    }
                },
                Message::Binary(_) => return CloseReason::Binary,
                // Pongs answer our pings; tungstenite answers the client's pings itself.
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Close(_) => return CloseReason::Client,
            }
        }
    }

    /// Applies one text frame; returns how many messages it queued for subscribers.
    fn handle(&mut self, text: &str) -> Result<usize, CloseReason> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let message = protocol::parse(text).map_err(|error| {
            debug!(conn = self.id, %error, "malformed message");
            CloseReason::Malformed
        })?;
        match message {
            ClientMessage::Subscribe { topics } => {
                for topic in topics {
                    if topic.len() > config.max_topic_bytes {
                        return Err(CloseReason::TopicTooLong);
                    }
                    if self.topics.contains(topic.as_ref()) {
                        continue;
                    }
                    if self.topics.len() >= config.max_topics_per_connection {
                        return Err(CloseReason::TooManyTopics);
                    }
                    let name = shared.hub.subscribe(&topic, self.id, &self.peer);
                    self.topics.insert(name);
                }
            }
            ClientMessage::Unsubscribe { topics } => {
                let left: Vec<Arc<str>> = topics
                    .iter()
                    .filter_map(|topic| self.topics.take(topic.as_ref()))
                    .collect();
                shared
                    .hub
                    .unsubscribe(left.iter().map(|t| t.as_ref()), self.id);
            }
            ClientMessage::Publish(publish) => {
                if publish.topic.len() > config.max_topic_bytes {
                    return Err(CloseReason::TopicTooLong);
                }
                shared.metrics.publish_total.fetch_add(1, Ordering::Relaxed);
                // y-webrtc's server ignores a publish whose topic is empty.
                if !publish.topic.is_empty() {
                    let delivered = shared
                        .hub
                        .publish(&publish.topic, |clients| publish.encode(clients));
                    shared
                        .metrics
                        .messages_relayed_total
                        .fetch_add(delivered as u64, Ordering::Relaxed);
                    return Ok(delivered);
                }
            }
            ClientMessage::Ping => {
                // A full queue marks the outbox overflowed, which closes the connection.
                self.peer.push(Utf8Bytes::from_static(PONG));
            }
            ClientMessage::Unknown { kind } => {
                shared
                    .metrics
                    .unknown_messages_total
                    .fetch_add(1, Ordering::Relaxed);
                trace!(conn = self.id, kind = %kind, "ignored message of unknown type");
            }
        }
        Ok(0)
    }

    /// Leaves every topic.
    fn leave_all(&mut self) {
        self.shared
            .hub
            .unsubscribe(self.topics.iter().map(|t| t.as_ref()), self.id);
        self.topics.clear();
    }
}

/// When the connection last received anything. One timer per connection (the writer's ping
/// interval) checks it, rather than a timer reset on every frame.
struct Liveness {
    start: std::time::Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Liveness {
    fn new() -> Liveness {
        Liveness {
            start: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn millis(&self, now: std::time::Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    fn received(&self, now: std::time::Instant) {
        self.last.store(self.millis(now), Ordering::Relaxed);
    }

    fn silent_for(&self, now: std::time::Instant) -> Duration {
        Duration::from_millis(
            self.millis(now)
                .saturating_sub(self.last.load(Ordering::Relaxed)),
        )
    }
}

/// Sends queued messages (flushing after each batch) and, every `ping_interval`, either a ping
/// or, if nothing arrived for `idle_timeout`, ends the connection.
async fn write(
    sink: &mut Sink,
    outbox: &Outbox,
    liveness: &Liveness,
    config: &Config,
) -> CloseReason {
    let period = at_least_1ms(config.ping_interval);
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut unflushed = 0;
    loop {
        match outbox.pop() {
            Pop::Message(text) => {
                if sink.feed(Message::Text(text)).await.is_err() {
                    return CloseReason::TransportError;
                }
                unflushed += 1;
                if unflushed < WRITE_BATCH {
                    continue;
                }
            }
            // The connection's select notices the overflow as well; either way it closes.
            Pop::Overflowed => return CloseReason::SlowConsumer,
            Pop::Empty => {}
        }
        if unflushed > 0 {
            if sink.flush().await.is_err() {
                return CloseReason::TransportError;
            }
            unflushed = 0;
            continue;
        }
        tokio::select! {
            () = outbox.ready() => {}
            _ = ping.tick() => {
                if liveness.silent_for(std::time::Instant::now()) >= config.idle_timeout {
                    return CloseReason::Idle;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return CloseReason::TransportError;
                }
            }
        }
    }
}

/// Maps a read error to the reason the connection closes.
fn classify(error: axum::Error) -> CloseReason {
    use tungstenite::error::ProtocolError as Violation;
    use tungstenite::Error;
    match error.into_inner().downcast::<Error>() {
        Ok(error) => match *error {
            Error::Capacity(_) => CloseReason::TooLarge,
            Error::Utf8(_) => CloseReason::Malformed,
            Error::Protocol(Violation::ResetWithoutClosingHandshake)
            | Error::ConnectionClosed
            | Error::AlreadyClosed => CloseReason::Client,
            Error::Io(_) => CloseReason::TransportError,
            _ => CloseReason::ProtocolError,
        },
        Err(_) => CloseReason::ProtocolError,
    }
}
