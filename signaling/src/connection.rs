//! One WebSocket connection: a reader that enforces the limits and applies messages to the hub,
//! and a writer that drains the connection's bounded outbound queue and sends pings.
//!
//! Both halves run concurrently inside one task. Whichever ends first decides why the
//! connection closes ([`CloseReason`]); the other is dropped, the connection leaves every topic,
//! and the server sends a close frame with a code and a reason, then waits briefly for the
//! client's reply so that the frame is not lost to a TCP reset.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, trace};

use crate::hub::{ConnId, Peer};
use crate::limits::{at_least_1ms, Ticket, TokenBucket};
use crate::metrics::CloseReason;
use crate::protocol::{self, ClientMessage, PONG};
use crate::Shared;

/// How long sending the close frame may take.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the client's close frame after sending ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// Runs a connection until it closes. `ticket` holds its admission slot until then.
pub(crate) async fn run(socket: WebSocket, shared: Arc<Shared>, ticket: Ticket, addr: SocketAddr) {
    let id = shared.hub.next_id();
    let metrics = &shared.metrics;
    metrics.connections_current.fetch_add(1, Ordering::Relaxed);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    debug!(conn = id, %addr, "connection opened");

    let (tx, mut rx) = mpsc::channel(shared.config.outbound_queue);
    let kill = Arc::new(Notify::new());
    let mut session = Session {
        id,
        peer: Peer {
            tx,
            kill: Arc::clone(&kill),
        },
        topics: HashSet::new(),
        bucket: TokenBucket::new(
            shared.config.rate_limit_per_sec,
            shared.config.rate_limit_burst,
            std::time::Instant::now(),
        ),
        shared: Arc::clone(&shared),
    };
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = shared.shutdown.clone();

    let reason = {
        let reader = session.read(&mut stream);
        let writer = write(&mut sink, &mut rx, shared.config.ping_interval);
        tokio::select! {
            reason = reader => reason,
            reason = writer => reason,
            () = kill.notified() => CloseReason::SlowConsumer,
            _ = shutdown.wait_for(|&stop| stop) => CloseReason::Shutdown,
        }
    };
    session.leave_all();
    drop(rx);
    metrics.count_close(reason);

    match close_frame(reason, &shared) {
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

    metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
    if reason.is_rejected_frame() || reason == CloseReason::SlowConsumer {
        debug!(conn = id, %addr, reason = reason.label(), "connection closed by the server");
    } else {
        trace!(conn = id, %addr, reason = reason.label(), "connection closed");
    }
    drop(ticket);
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
    /// Reads frames until one of them, the idle timeout or the client ends the connection.
    async fn read(&mut self, stream: &mut SplitStream<WebSocket>) -> CloseReason {
        let idle = self.shared.config.idle_timeout;
        let deadline = tokio::time::sleep(idle);
        tokio::pin!(deadline);
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = &mut deadline => return CloseReason::Idle,
            };
            let message = match frame {
                None => return CloseReason::Client,
                Some(Err(error)) => return classify(error),
                Some(Ok(message)) => message,
            };
            let now = Instant::now();
            deadline.as_mut().reset(now + idle);
            if !self.bucket.take(now.into_std()) {
                return CloseReason::RateLimited;
            }
            match message {
                Message::Text(text) => {
                    if let Err(reason) = self.handle(text.as_str()) {
                        return reason;
                    }
                }
                Message::Binary(_) => return CloseReason::Binary,
                // Pongs answer our pings; tungstenite answers the client's pings itself.
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Close(_) => return CloseReason::Client,
            }
        }
    }

    /// Applies one text frame.
    fn handle(&mut self, text: &str) -> Result<(), CloseReason> {
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
                }
            }
            ClientMessage::Ping => {
                // A full queue notifies `kill`, which closes the connection.
                self.peer.deliver(Utf8Bytes::from_static(PONG));
            }
            ClientMessage::Unknown { kind } => {
                shared
                    .metrics
                    .unknown_messages_total
                    .fetch_add(1, Ordering::Relaxed);
                trace!(conn = self.id, kind = %kind, "ignored message of unknown type");
            }
        }
        Ok(())
    }

    /// Leaves every topic.
    fn leave_all(&mut self) {
        self.shared
            .hub
            .unsubscribe(self.topics.iter().map(|t| t.as_ref()), self.id);
        self.topics.clear();
    }
}

/// Sends queued messages (batched, one flush per batch) and a ping every `ping_every`.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    ping_every: Duration,
) -> CloseReason {
    let period = at_least_1ms(ping_every);
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = rx.recv() => {
                // The session holds a sender for as long as this runs.
                let Some(text) = next else { return CloseReason::Client };
                if sink.feed(Message::Text(text)).await.is_err() {
                    return CloseReason::TransportError;
                }
                for _ in 1..WRITE_BATCH {
                    let Ok(text) = rx.try_recv() else { break };
                    if sink.feed(Message::Text(text)).await.is_err() {
                        return CloseReason::TransportError;
                    }
                }
                if sink.flush().await.is_err() {
                    return CloseReason::TransportError;
                }
            }
            _ = ping.tick() => {
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
