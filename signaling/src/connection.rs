//! One WebSocket connection, from the HTTP upgrade to the close handshake.
//!
//! A single loop waits for whichever comes first: a frame from the client (checked against the
//! limits and applied to the hub), messages in the connection's [`Outbox`] (written out in
//! batches), or the server's heartbeat (time to ping and check the idle timeout, or shutdown).
//! While a write waits for a slow client, the loop still notices an overflowing outbox or
//! shutdown.
//!
//! When the loop ends, the connection leaves every topic and the server sends a close frame
//! with a code and a reason, then waits briefly for the client's reply so that the frame is not
//! lost to a TCP reset.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError as Violation;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, trace};

use crate::hub::{ConnId, Peer};
use crate::limits::{Ticket, TokenBucket};
use crate::metrics::CloseReason;
use crate::outbox::{Outbox, Pop};
use crate::protocol::{self, ClientMessage, PONG};
use crate::Shared;

/// How long sending the close frame may take.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the client's close frame after sending ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;
/// Most scheduler budget units one publish uses up (see [`converse`]).
const MAX_FAN_OUT_BUDGET: usize = 128;
/// Capacity of the buffer tungstenite reads into, which is also the most it reads from the
/// socket at once. Each connection holds one, filled, for its lifetime, and most connections
/// are idle: small wins over fewer reads per large frame (a frame beyond it grows the buffer
/// as needed, up to `max_frame_bytes`).
const READ_BUFFER_BYTES: usize = 256;
/// Outgoing frames are gathered up to this many bytes before they are written.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Completes the upgrade and runs the connection until it closes. `ticket` holds its admission
/// slot until then.
///
/// Every byte of this future's state is held for as long as the connection is open, so it is
/// kept small: what is needed only briefly (setting up, writing, closing) is boxed, and this is
/// an `async move` block rather than an `async fn`, whose arguments would be stored twice.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(
    upgrade: OnUpgrade,
    shared: Arc<Shared>,
    ticket: Ticket,
) -> impl Future<Output = ()> + Send {
    async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                debug!(ip = %ticket.ip(), %error, "upgrade failed");
                return;
            }
        };
        let max = shared.config.max_frame_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let mut ws = Box::pin(WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(config),
        ))
        .await;

        let id = shared.hub.next_id();
        let metrics = &shared.metrics;
        metrics.connections_current.fetch_add(1, Ordering::Relaxed);
        metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        debug!(conn = id, ip = %ticket.ip(), "connection opened");

        let reason = converse(&mut ws, &shared, id).await;
        metrics.count_close(reason);
        Box::pin(close(reason, &mut ws, &shared)).await;

        metrics.connections_current.fetch_sub(1, Ordering::Relaxed);
        let (ip, label) = (ticket.ip(), reason.label());
        if reason.is_rejected_frame() || reason == CloseReason::SlowConsumer {
            debug!(conn = id, %ip, reason = label, "connection closed by the server");
        } else {
            trace!(conn = id, %ip, reason = label, "connection closed");
        }
        drop(ticket);
    }
}

/// What woke the connection loop.
enum Event {
    Frame(Option<Result<Message, Error>>),
    Outbound,
    Beat,
}

/// Relays until something ends the connection, then leaves every topic.
async fn converse(ws: &mut Ws, shared: &Arc<Shared>, id: ConnId) -> CloseReason {
    let config = &shared.config;
    let outbox: Peer = Arc::new(Outbox::new(config.outbound_queue));
    let mut session = Session {
        id,
        peer: Arc::clone(&outbox),
        topics: Vec::new(),
        bucket: TokenBucket::new(
            config.rate_limit_per_sec,
            config.rate_limit_burst,
            std::time::Instant::now(),
        ),
        shared: Arc::clone(shared),
    };
    let heartbeat = &shared.heartbeat;
    let mut last_received = Instant::now();

    let reason = loop {
        let beat = heartbeat.next();
        if heartbeat.is_stopping() {
            break CloseReason::Shutdown;
        }
        let event = tokio::select! {
            frame = ws.next() => Event::Frame(frame),
            () = outbox.ready() => Event::Outbound,
            () = beat => Event::Beat,
        };
        match event {
            Event::Frame(frame) => {
                let now = Instant::now();
                last_received = now;
                match session.receive(frame, now.into_std()) {
                    Err(reason) => break reason,
                    Ok(delivered) => {
                        // A publish queues a message for every subscriber. Charging the
                        // scheduler budget for each makes a busy publisher yield before it has
                        // queued more than the subscribers' connections can write in one turn,
                        // so that bursts do not overflow healthy subscribers' queues.
                        for _ in 0..delivered.min(MAX_FAN_OUT_BUDGET) {
                            tokio::task::consume_budget().await;
                        }
                    }
                }
            }
            Event::Outbound => {
                // Boxed, like the ping below: the write's state exists only while it runs,
                // instead of enlarging every idle connection.
                let write = Box::pin(guarded(write_queued(ws, &outbox), &outbox, shared));
                if let Err(reason) = write.await {
                    break reason;
                }
            }
            Event::Beat => {
                if heartbeat.is_stopping() {
                    break CloseReason::Shutdown;
                }
                if last_received.elapsed() >= config.idle_timeout {
                    break CloseReason::Idle;
                }
                let ping = async {
                    ws.send(Message::Ping(Bytes::new()))
                        .await
                        .map_err(|_| CloseReason::TransportError)?;
                    // The guard may have taken the wake-up of a message queued meanwhile.
                    write_queued(ws, &outbox).await
                };
                if let Err(reason) = Box::pin(guarded(ping, &outbox, shared)).await {
                    break reason;
                }
            }
        }
    };
    session.leave_all();
    outbox.close();
    reason
}

/// Runs a write, giving up if the outbox overflows or the server shuts down meanwhile: a
/// client that does not read must not hold its connection open. The write must end by draining
/// the outbox (see [`Outbox::overflowed`]).
async fn guarded(
    write: impl Future<Output = Result<(), CloseReason>>,
    outbox: &Outbox,
    shared: &Shared,
) -> Result<(), CloseReason> {
    tokio::select! {
        result = write => result,
        () = outbox.overflowed() => Err(CloseReason::SlowConsumer),
        () = shared.heartbeat.stopping() => Err(CloseReason::Shutdown),
    }
}

/// Writes everything queued, flushing after each batch.
async fn write_queued(ws: &mut Ws, outbox: &Outbox) -> Result<(), CloseReason> {
    loop {
        let mut batch = 0;
        while batch < WRITE_BATCH {
            match outbox.pop() {
                Pop::Message(text) => {
                    ws.feed(Message::Text(text))
                        .await
                        .map_err(|_| CloseReason::TransportError)?;
                    batch += 1;
                }
                Pop::Empty => break,
                Pop::Overflowed => return Err(CloseReason::SlowConsumer),
            }
        }
        if batch == 0 {
            return Ok(());
        }
        ws.flush().await.map_err(|_| CloseReason::TransportError)?;
    }
}

/// Sends the close frame for `reason`, if any, and waits briefly for the client's reply.
async fn close(reason: CloseReason, ws: &mut Ws, shared: &Shared) {
    match close_frame(reason, shared) {
        Some(frame) => {
            let sent = tokio::time::timeout(CLOSE_SEND_TIMEOUT, ws.close(Some(frame))).await;
            // After a framing error the rest of the input is not a frame boundary; do not read on.
            let readable = !matches!(reason, CloseReason::TooLarge | CloseReason::ProtocolError);
            if matches!(sent, Ok(Ok(()))) && readable {
                let _ = tokio::time::timeout(CLOSE_LINGER, async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
        }
        None => {
            // Flushes the automatic reply to the client's close frame, if any.
            let _ = tokio::time::timeout(CLOSE_SEND_TIMEOUT, ws.close(None)).await;
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
        code: code.into(),
        reason: Utf8Bytes::from(text),
    })
}

/// The state of one connection's subscriptions and limits.
struct Session {
    id: ConnId,
    peer: Peer,
    /// Topics subscribed to; at most `max_topics_per_connection`, so a list is enough.
    topics: Vec<Arc<str>>,
    bucket: TokenBucket,
    shared: Arc<Shared>,
}

impl Session {
    /// Applies one received frame; returns how many messages it queued for subscribers.
    fn receive(
        &mut self,
        frame: Option<Result<Message, Error>>,
        now: std::time::Instant,
    ) -> Result<usize, CloseReason> {
        let message = match frame {
            None => return Err(CloseReason::Client),
            Some(Err(error)) => return Err(classify(error)),
            Some(Ok(message)) => message,
        };
        if !self.bucket.take(now) {
            return Err(CloseReason::RateLimited);
        }
        match message {
            Message::Text(text) => self.handle(text.as_str()),
            Message::Binary(_) => Err(CloseReason::Binary),
            // Pongs answer our pings; tungstenite answers the client's pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(0),
            Message::Close(_) => Err(CloseReason::Client),
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
                    if self.topics.iter().any(|t| **t == *topic) {
                        continue;
                    }
                    if self.topics.len() >= config.max_topics_per_connection {
                        return Err(CloseReason::TooManyTopics);
                    }
                    let name = shared.hub.subscribe(&topic, self.id, &self.peer);
                    // Exact growth: most connections hold one or two topics for their lifetime.
                    self.topics.reserve_exact(1);
                    self.topics.push(name);
                }
            }
            ClientMessage::Unsubscribe { topics } => {
                let mut left = Vec::new();
                self.topics.retain(|t| {
                    let leaving = topics.iter().any(|topic| **t == **topic);
                    if leaving {
                        left.push(Arc::clone(t));
                    }
                    !leaving
                });
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
        self.topics = Vec::new();
    }
}

/// Maps a read error to the reason the connection closes.
fn classify(error: Error) -> CloseReason {
    match error {
        Error::Capacity(_) => CloseReason::TooLarge,
        Error::Utf8(_) => CloseReason::Malformed,
        Error::Protocol(Violation::ResetWithoutClosingHandshake)
        | Error::ConnectionClosed
        | Error::AlreadyClosed => CloseReason::Client,
        Error::Io(_) => CloseReason::TransportError,
        _ => CloseReason::ProtocolError,
    }
}
