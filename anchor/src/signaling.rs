//! The signaling client: how the anchor meets peers at the signaling server
//! (docs/PROTOCOL.md, "Finding peers: signaling (mesh version 1)").
//!
//! The server speaks the y-webrtc signaling protocol: JSON text frames
//! `subscribe`, `unsubscribe`, `publish` and `ping`/`pong` over a WebSocket
//! at `/signal`. Peers publish [`PeerMessage`]s as the `data` of a publish on
//! a space's topic ([`civicbase_engine::mesh::topic`]); the server relays
//! each to every subscriber of the topic, the sender included.
//!
//! [`spawn`] runs the connection in its own task: it connects, subscribes to
//! the topics it was given, reports [`SignalingEvent`]s, and when the server
//! goes away reconnects with exponential backoff (1 s doubling to 30 s, with
//! ±25 % jitter) and subscribes again. What to publish and when is the
//! caller's business; publishes while disconnected are dropped, since they
//! would be stale by the time a connection is back (announces are repeated,
//! and an unfinished connection setup times out and starts over).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

/// First reconnection delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection from which nothing arrived for this long is given up and
/// opened again (the server pings every 30 s by default, and our own
/// announces come back every 15 s).
const READ_TIMEOUT: Duration = Duration::from_secs(90);
/// Connecting (TCP, TLS and the WebSocket handshake) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lasted at least this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Largest frame accepted from the server (its own limit is 64 KiB).
const MAX_FRAME: usize = 256 * 1024;
/// Longest peer id or name accepted from a peer.
const MAX_ID: usize = 64;
const MAX_NAME: usize = 120;

/// A peer's role, as announced.
pub const ROLE_ANCHOR: &str = "anchor";

/// A message peers publish on a topic (the `data` of a `publish`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PeerMessage {
    /// "I am here."
    Announce {
        /// The sender's peer id.
        from: String,
        /// Display name.
        #[serde(default)]
        name: String,
        /// `browser` or `anchor`.
        #[serde(default)]
        role: String,
    },
    /// Connection setup for one peer.
    Signal {
        /// The sender's peer id.
        from: String,
        /// The receiver's peer id.
        to: String,
        /// The sender's display name.
        #[serde(default)]
        name: String,
        /// The sender's role.
        #[serde(default)]
        role: String,
        /// The offer, answer or ICE candidate.
        signal: Signal,
    },
    /// "I am going away."
    Leave {
        /// The sender's peer id.
        from: String,
    },
}

impl PeerMessage {
    /// The sender's peer id.
    pub fn from(&self) -> &str {
        match self {
            PeerMessage::Announce { from, .. }
            | PeerMessage::Signal { from, .. }
            | PeerMessage::Leave { from } => from,
        }
    }

    /// Checks the fields a peer controls: ids of 1 to 64 characters,
    /// names of at most 120 characters (longer ones are cut).
    fn validated(mut self) -> Option<Self> {
        let ok_id = |id: &str| !id.is_empty() && id.len() <= MAX_ID;
        let cut = |name: &mut String| {
            if name.chars().count() > MAX_NAME {
                *name = name.chars().take(MAX_NAME).collect();
            }
        };
        match &mut self {
            PeerMessage::Announce { from, name, .. } => {
                cut(name);
                ok_id(from).then_some(self)
            }
            PeerMessage::Signal { from, to, name, .. } => {
                cut(name);
                (ok_id(from) && ok_id(to)).then_some(self)
            }
            PeerMessage::Leave { from } => ok_id(from).then_some(self),
        }
    }
}

/// The `signal` of a [`PeerMessage::Signal`]: the fields of the browser's
/// `RTCSessionDescriptionInit` and `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Signal {
    /// An SDP offer.
    Offer {
        /// The session description.
        sdp: String,
    },
    /// An SDP answer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The candidate line (`candidate:…`).
        candidate: String,
        /// The media stream id it belongs to.
        #[serde(rename = "sdpMid", default)]
        sdp_mid: Option<String>,
        /// The index of the media line it belongs to.
        #[serde(rename = "sdpMLineIndex", default)]
        sdp_mline_index: Option<u16>,
    },
}

/// A frame the client sends to the server.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame<'a> {
    Subscribe {
        topics: &'a [String],
    },
    Unsubscribe {
        topics: &'a [String],
    },
    Publish {
        topic: &'a str,
        data: &'a PeerMessage,
    },
}

/// A frame from the server; only publishes matter to a peer.
#[derive(Deserialize)]
struct ServerFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// Decodes a text frame from the server into the peer message it carries.
/// `None` for anything else (pongs, unknown types, malformed frames).
pub fn decode_frame(text: &str) -> Option<(String, PeerMessage)> {
    let frame: ServerFrame = serde_json::from_str(text).ok()?;
    if frame.kind != "publish" {
        return None;
    }
    let topic = frame.topic?;
    let msg: PeerMessage = serde_json::from_value(frame.data?).ok()?;
    Some((topic, msg.validated()?))
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalingEvent {
    /// Connected and subscribed to every topic.
    Connected,
    /// The connection was lost (a new one is being set up).
    Disconnected,
    /// A peer message arrived on a topic.
    Message {
        /// The topic.
        topic: String,
        /// The message.
        msg: PeerMessage,
    },
}

enum Command {
    Topics(BTreeSet<String>),
    Publish { topic: String, msg: PeerMessage },
    Close(oneshot::Sender<()>),
}

/// The caller's side of a running client.
#[derive(Debug, Clone)]
pub struct SignalingClient {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Topics(t) => write!(f, "Topics({})", t.len()),
            Command::Publish { topic, .. } => write!(f, "Publish({topic})"),
            Command::Close(_) => write!(f, "Close"),
        }
    }
}

impl SignalingClient {
    /// Subscribes to exactly these topics (now, and after every reconnect).
    pub fn set_topics(&self, topics: BTreeSet<String>) {
        let _ = self.commands.send(Command::Topics(topics));
    }

    /// Publishes `msg` on `topic` if connected; dropped otherwise.
    pub fn publish(&self, topic: &str, msg: PeerMessage) {
        let _ = self.commands.send(Command::Publish {
            topic: topic.to_owned(),
            msg,
        });
    }

    /// Sends what is queued (a `leave`, say), closes the connection and ends
    /// the client. Resolves when done, or after `timeout`.
    pub async fn close(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

/// Starts a client for the signaling server at `url` (`ws://` or `wss://`),
/// reporting to `events`. It runs until [`SignalingClient::close`] or until
/// every [`SignalingClient`] handle is dropped.
pub fn spawn(
    url: String,
    topics: BTreeSet<String>,
    events: mpsc::UnboundedSender<SignalingEvent>,
) -> SignalingClient {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(url, topics, rx, events));
    SignalingClient { commands: tx }
}

/// A random factor in 0.75..1.25.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    0.75 + 0.5 * (u32::from_le_bytes(b) as f64 / u32::MAX as f64)
}

enum SessionEnd {
    /// The connection broke; reconnect.
    Lost,
    /// Asked to close (or every handle dropped).
    Closed(Option<oneshot::Sender<()>>),
}

async fn run(
    url: String,
    mut topics: BTreeSet<String>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SignalingEvent>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
        );
        let connected = tokio::select! {
            r = attempt => Some(r),
            cmd = commands.recv() => {
                match cmd {
                    None => return,
                    Some(Command::Close(done)) => { let _ = done.send(()); return; }
                    Some(Command::Topics(t)) => topics = t,
                    Some(Command::Publish { .. }) => {}
                }
                None
            }
        };
        let Some(result) = connected else {
            // A command arrived while connecting: start the attempt again.
            continue;
        };
        match result {
            Ok(Ok((ws, _))) => {
                info!(%url, "connected to the signaling server");
                let started = Instant::now();
                let end = session(ws, &mut topics, &mut commands, &events).await;
                match end {
                    SessionEnd::Closed(done) => {
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    SessionEnd::Lost => {
                        let _ = events.send(SignalingEvent::Disconnected);
                        if started.elapsed() >= STABLE_AFTER {
                            backoff = BACKOFF_MIN;
                        }
                    }
                }
            }
            Ok(Err(error)) => warn!(%url, %error, "cannot connect to the signaling server"),
            Err(_) => warn!(%url, "connecting to the signaling server timed out"),
        }
        let delay = backoff.mul_f64(jitter());
        backoff = (backoff * 2).min(BACKOFF_MAX);
        info!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting to the signaling server later"
        );
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Close(done)) => { let _ = done.send(()); return; }
                    Some(Command::Topics(t)) => topics = t,
                    // Stale by the time we are back.
                    Some(Command::Publish { .. }) => {}
                },
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn text(frame: &ClientFrame<'_>) -> Option<Message> {
    serde_json::to_string(frame).ok().map(Message::text)
}

async fn session(
    mut ws: Ws,
    topics: &mut BTreeSet<String>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<SignalingEvent>,
) -> SessionEnd {
    let all: Vec<String> = topics.iter().cloned().collect();
    if !all.is_empty() {
        if let Some(m) = text(&ClientFrame::Subscribe { topics: &all }) {
            if ws.send(m).await.is_err() {
                return SessionEnd::Lost;
            }
        }
    }
    let _ = events.send(SignalingEvent::Connected);
    loop {
        tokio::select! {
            incoming = tokio::time::timeout(READ_TIMEOUT, ws.next()) => {
                let msg = match incoming {
                    Err(_) => {
                        warn!("nothing from the signaling server for {} s; reconnecting", READ_TIMEOUT.as_secs());
                        return SessionEnd::Lost;
                    }
                    Ok(None) => {
                        info!("the signaling server closed the connection");
                        return SessionEnd::Lost;
                    }
                    Ok(Some(Err(error))) => {
                        warn!(%error, "signaling connection failed");
                        return SessionEnd::Lost;
                    }
                    Ok(Some(Ok(msg))) => msg,
                };
                match msg {
                    Message::Text(t) => match decode_frame(t.as_str()) {
                        Some((topic, msg)) => {
                            let _ = events.send(SignalingEvent::Message { topic, msg });
                        }
                        None => debug!("ignored a signaling frame"),
                    },
                    Message::Close(frame) => {
                        info!(?frame, "the signaling server is closing the connection");
                    }
                    // Pings are answered by the WebSocket layer.
                    _ => {}
                }
            }
            cmd = commands.recv() => match cmd {
                None => {
                    let _ = ws.close(None).await;
                    return SessionEnd::Closed(None);
                }
                Some(Command::Close(done)) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    return SessionEnd::Closed(Some(done));
                }
                Some(Command::Topics(new)) => {
                    let removed: Vec<String> = topics.difference(&new).cloned().collect();
                    let added: Vec<String> = new.difference(topics).cloned().collect();
                    *topics = new;
                    for frame in [
                        (!removed.is_empty()).then_some(ClientFrame::Unsubscribe { topics: &removed }),
                        (!added.is_empty()).then_some(ClientFrame::Subscribe { topics: &added }),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if let Some(m) = text(&frame) {
                            if ws.send(m).await.is_err() {
                                return SessionEnd::Lost;
                            }
                        }
                    }
                }
                Some(Command::Publish { topic, msg }) => {
                    if let Some(m) = text(&ClientFrame::Publish { topic: &topic, data: &msg }) {
                        if ws.send(m).await.is_err() {
                            return SessionEnd::Lost;
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_messages_match_the_protocol_document() {
        let a = PeerMessage::Announce {
            from: "00112233aabbccdd".into(),
            name: "Anchor".into(),
            role: ROLE_ANCHOR.into(),
        };
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            r#"{"type":"announce","from":"00112233aabbccdd","name":"Anchor","role":"anchor"}"#
        );
        let c = PeerMessage::Signal {
            from: "a".into(),
            to: "b".into(),
            name: "N".into(),
            role: "anchor".into(),
            signal: Signal::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
        };
        assert_eq!(
            serde_json::to_string(&c).expect("json"),
            r#"{"type":"signal","from":"a","to":"b","name":"N","role":"anchor","signal":{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
        );
        let frame = text(&ClientFrame::Publish {
            topic: "t",
            data: &PeerMessage::Leave { from: "a".into() },
        })
        .expect("frame");
        assert_eq!(
            frame.to_text().expect("text"),
            r#"{"type":"publish","topic":"t","data":{"type":"leave","from":"a"}}"#
        );
    }

    #[test]
    fn frames_from_browsers_decode_and_bad_ones_are_ignored() {
        // As a browser sends it, relayed with the server's `clients` field;
        // unknown fields are ignored, a null sdpMid is allowed.
        let offer = r#"{"type":"publish","topic":"civicbase1-ab","clients":3,
            "data":{"type":"signal","from":"ff","to":"00","name":"Ann","role":"browser",
            "signal":{"type":"offer","sdp":"v=0\r\n"},"extra":1}}"#;
        let (topic, msg) = decode_frame(offer).expect("offer");
        assert_eq!(topic, "civicbase1-ab");
        assert!(matches!(
            msg,
            PeerMessage::Signal {
                signal: Signal::Offer { .. },
                ..
            }
        ));
        let cand = r#"{"type":"publish","topic":"t","data":{"type":"signal","from":"ff","to":"00",
            "signal":{"type":"candidate","candidate":"candidate:x","sdpMid":null,"sdpMLineIndex":0}}}"#;
        assert!(decode_frame(cand).is_some());
        for bad in [
            "not json",
            r#"{"type":"pong"}"#,
            r#"{"type":"publish","topic":"t"}"#,
            r#"{"type":"publish","topic":"t","data":{"type":"dance","from":"a"}}"#,
            r#"{"type":"publish","topic":"t","data":{"type":"leave","from":""}}"#,
            r#"{"type":"publish","topic":"t","data":{"type":"signal","from":"a","to":"b","signal":{"type":"offer"}}}"#,
            r#"{"type":"publish","data":{"type":"leave","from":"a"}}"#,
        ] {
            assert!(decode_frame(bad).is_none(), "{bad}");
        }
        let long = format!(
            r#"{{"type":"publish","topic":"t","data":{{"type":"announce","from":"a","name":"{}"}}}}"#,
            "x".repeat(500)
        );
        match decode_frame(&long) {
            Some((_, PeerMessage::Announce { name, .. })) => assert_eq!(name.len(), MAX_NAME),
            other => panic!("{other:?}"),
        }
    }
}
