//! The anchor's peer: one task that owns the engine and drives it from
//! everything that happens around it.
//!
//! # Flow
//!
//! ```text
//!  signaling client task ──SignalingEvent──┐
//!  webrtc-rs callbacks ──candidates, state─┤ (unbounded channel)
//!  data channel callbacks ──ChannelEvent───┤ (bounded: back-pressure)
//!  NodeHandle (requests, status) ──────────┤
//!                                          ▼
//!                     node task: Engine + mesh::Links + peers
//!                                          │ link messages
//!                                          ▼
//!                       one writer task per data channel
//! ```
//!
//! The engine's futures are not `Send`, so the node runs on one thread
//! (inside a [`tokio::task::LocalSet`]); webrtc-rs and the signaling client
//! run on the runtime's other tasks and talk to it through channels.
//!
//! # Peers
//!
//! Following docs/PROTOCOL.md ("Finding peers"): the node subscribes to the
//! topic of every space it holds and announces itself on each every 15 s.
//! When it hears a peer's announce on one of its topics it connects — it
//! offers if its own id is the smaller one, otherwise it announces back
//! (at most once a second per topic) so that the other side offers. An offer
//! from a known peer replaces that peer's connection (it restarted). When a
//! connection's data channel opens, the node brings the link up in
//! [`Links`] and starts a sync session for every topic it heard the peer on.
//! A connection whose channel closes, whose ICE fails, that breaks the link
//! protocol, or that is not up within 30 s is dropped; the next announce
//! sets it up again, and its sessions resume from version vectors. At most
//! 32 connections are set up at once and 1024 kept in all, so that a flood
//! of offers cannot exhaust sockets or CPU.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use civicbase_core::store::Store;
use civicbase_core::{SpaceId, VersionVector};
use civicbase_engine::mesh::{topic, LinkId, Links};
use civicbase_engine::{Engine, Env, StorageError};
use civicbase_proto::{ErrorCode, ErrorInfo, Event, Request, RequestBody};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use webrtc::api::API;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

use crate::rtc::{self, ChannelEvent, RtcConfig, CHANNEL_LABEL};
use crate::signaling::{self, PeerMessage, Signal, SignalingClient, SignalingEvent, ROLE_ANCHOR};

/// How often the node announces itself on every topic.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(15);
/// A connection whose channel is not open this long after it was started is
/// dropped (the next announce starts another).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Setting up one side of a connection (offer or answer) may take this long.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Announces that answer a peer's go out at most this often per topic.
const REPLY_EVERY: Duration = Duration::from_secs(1);
/// Housekeeping: retry unsaved entries, snapshots.
const MAINTAIN_EVERY: Duration = Duration::from_secs(5);
/// Data channel events queued for the node before the channels wait.
const CHANNEL_QUEUE: usize = 256;
/// Connections being set up at once; more offers and announces wait.
const MAX_PENDING: usize = 32;
/// Connections in total.
const MAX_PEERS: usize = 1024;
/// ICE candidates kept for a connection before its remote description.
const MAX_EARLY_CANDIDATES: usize = 64;
/// The signaling server's default `max_topics_per_connection`.
const DEFAULT_SERVER_TOPIC_LIMIT: usize = 64;
/// Shutdown waits this long for the signaling server and the peers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Wall clock and the operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn random_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        // Without a working random source no key can be made safely; this
        // is a broken host, not bad input.
        getrandom::fill(&mut seed).expect("the operating system's random source failed");
        seed
    }
}

/// A fresh random peer id: 64 bits as 16 lowercase hex digits.
pub fn random_peer_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Only uniqueness matters here, not secrecy.
        b = SystemEnv.now_ms().to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// WebSocket URL of the signaling server (`ws://…/signal` or `wss://…`).
    pub signaling_url: String,
    /// Name shown to peers.
    pub name: String,
    /// ICE servers and candidate gathering.
    pub rtc: RtcConfig,
    /// This peer's id; a random one when `None` (tests fix it to decide
    /// which side offers).
    pub peer_id: Option<String>,
}

/// What [`NodeHandle::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This peer's id at the signaling server.
    pub peer_id: String,
    /// Whether the signaling server is connected.
    pub signaling: bool,
    /// Version vector of every space held.
    pub spaces: BTreeMap<SpaceId, VersionVector>,
    /// Peers whose data channel is open.
    pub links: usize,
    /// Entries received but not yet accepted by the store.
    pub unsaved: usize,
    /// Spaces in memory (the others are on disk until a peer asks).
    pub resident: usize,
}

enum Command {
    Request(RequestBody, oneshot::Sender<Event>),
    Replicate(SpaceId, oneshot::Sender<Result<bool, ErrorInfo>>),
    Status(oneshot::Sender<NodeStatus>),
    Shutdown,
}

/// Talks to a running node from any thread.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Request(..) => "Request",
            Command::Replicate(..) => "Replicate",
            Command::Status(_) => "Status",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl NodeHandle {
    /// Runs an engine request (as the UI would send it). `None` once the
    /// node has stopped.
    pub async fn request(&self, body: RequestBody) -> Option<Event> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Request(body, tx)).ok()?;
        rx.await.ok()
    }

    /// Keeps a replica of `space` from now on (see [`Engine::replicate`]).
    pub async fn replicate(&self, space: SpaceId) -> Option<Result<bool, ErrorInfo>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Replicate(space, tx)).ok()?;
        rx.await.ok()
    }

    /// The node's status.
    pub async fn status(&self) -> Option<NodeStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// Asks the node to stop (as on SIGTERM).
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

struct Peer {
    /// Connection number, also the link id.
    conn: u64,
    pc: Arc<RTCPeerConnection>,
    name: String,
    role: String,
    /// Topics the peer was heard on.
    topics: BTreeSet<String>,
    /// Where its signals go.
    signal_topic: String,
    /// Media id that trickled candidates name.
    mid: Option<String>,
    up: bool,
    remote_set: bool,
    early_candidates: Vec<RTCIceCandidateInit>,
    outbox: mpsc::UnboundedSender<Bytes>,
    started: Instant,
}

enum Ctl {
    Candidate(u64, RTCIceCandidateInit),
    State(u64, RTCPeerConnectionState),
}

/// The node: see the module docs. Build it with [`Node::new`], then
/// [`Node::run`] it inside a [`tokio::task::LocalSet`].
pub struct Node<S: Store> {
    engine: Engine<S>,
    links: Links,
    env: SystemEnv,
    me: String,
    name: String,
    signaling_url: String,
    rtc: RtcConfig,
    api: API,
    topics: BTreeSet<String>,
    signaling_up: bool,
    peers: HashMap<String, Peer>,
    by_conn: HashMap<u64, String>,
    next_conn: u64,
    last_reply: HashMap<String, Instant>,
    deferred_replies: BTreeSet<String>,
    commands: mpsc::UnboundedReceiver<Command>,
    ctl_tx: mpsc::UnboundedSender<Ctl>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    chan_tx: mpsc::Sender<(u64, ChannelEvent)>,
    chan_rx: mpsc::Receiver<(u64, ChannelEvent)>,
}

impl<S: Store> Node<S>
where
    S::Error: StorageError,
{
    /// A node on `engine`, and a handle to it. Fails only on an unusable
    /// UDP port range.
    pub fn new(
        engine: Engine<S>,
        config: NodeConfig,
    ) -> Result<(Self, NodeHandle), rtc::PortRangeError> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (chan_tx, chan_rx) = mpsc::channel(CHANNEL_QUEUE);
        let node = Node {
            engine,
            links: Links::new(),
            env: SystemEnv,
            me: config.peer_id.unwrap_or_else(random_peer_id),
            name: config.name,
            signaling_url: config.signaling_url,
            api: rtc::api(&config.rtc)?,
            rtc: config.rtc,
            topics: BTreeSet::new(),
            signaling_up: false,
            peers: HashMap::new(),
            by_conn: HashMap::new(),
            next_conn: 1,
            last_reply: HashMap::new(),
            deferred_replies: BTreeSet::new(),
            commands: cmd_rx,
            ctl_tx,
            ctl_rx,
            chan_tx,
            chan_rx,
        };
        Ok((node, NodeHandle { commands: cmd_tx }))
    }

    /// Runs until `shutdown` resolves or [`NodeHandle::shutdown`] is called,
    /// then stops gracefully: writes what is unsaved, tells peers it leaves
    /// and closes every connection. Returns the engine.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Engine<S> {
        self.topics = self.space_topics();
        info!(
            peer = %self.me,
            signaling = %self.signaling_url,
            spaces = self.topics.len(),
            "anchor running"
        );
        for space in self.engine.space_ids() {
            let entries = self.engine.replica(&space).map_or(0, |r| r.len());
            info!(space = %space.short(), topic = %topic(&space), entries, "serving space");
        }
        if self.topics.is_empty() {
            warn!("no spaces to serve yet: start with --join <invite link>");
        }
        self.warn_topic_limit();
        let (sig_tx, mut sig_rx) = mpsc::unbounded_channel();
        let signaling = signaling::spawn(self.signaling_url.clone(), self.topics.clone(), sig_tx);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_announce = Instant::now();
        let mut last_maintain = Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(ev) = sig_rx.recv() => self.on_signaling(ev, &signaling).await,
                Some(ctl) = self.ctl_rx.recv() => self.on_ctl(ctl, &signaling).await,
                Some((conn, ev)) = self.chan_rx.recv() => self.on_channel(conn, ev).await,
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd, &signaling).await,
                },
                _ = tick.tick() => {
                    if last_announce.elapsed() >= ANNOUNCE_EVERY {
                        last_announce = Instant::now();
                        self.announce_all(&signaling);
                    }
                    self.deferred_announces(&signaling);
                    self.drop_stalled();
                    if last_maintain.elapsed() >= MAINTAIN_EVERY {
                        last_maintain = Instant::now();
                        self.maintain().await;
                    }
                }
            }
            self.pump();
        }
        self.stop(&signaling).await;
        self.engine
    }

    fn space_topics(&self) -> BTreeSet<String> {
        self.engine.space_ids().iter().map(topic).collect()
    }

    async fn maintain(&mut self) {
        let unsaved: usize = self.engine.unsaved_total();
        if unsaved > 0 {
            match self.engine.retry_unsaved().await {
                Ok(()) => info!(entries = unsaved, "stored the entries kept in memory"),
                Err(e) => warn!(
                    entries = unsaved,
                    error = %e.message,
                    "entries are still kept in memory only"
                ),
            }
        }
        if let Err(e) = self.engine.maintain(&self.env).await {
            warn!(error = %e.message, "cannot write a snapshot");
        }
        self.drain_engine_events();
    }

    /// Sends what the sessions have to say, and logs the engine's alerts.
    fn pump(&mut self) {
        for (link, msg) in self.links.take_output(&mut self.engine) {
            let Some(peer) = self.by_conn.get(&link.0).and_then(|id| self.peers.get(id)) else {
                continue;
            };
            let _ = peer.outbox.send(Bytes::from(msg));
        }
        self.drain_engine_events();
    }

    fn drain_engine_events(&mut self) {
        for event in self.engine.take_events() {
            match event {
                // The engine words this for a browser user; say it for an
                // operator.
                Event::Alert(e) if e.code == ErrorCode::QuotaExceeded => error!(
                    "the disk is full: received entries are kept in memory and passed on to \
                     peers, and stored as soon as there is space; free space on the disk of \
                     the data directory"
                ),
                Event::Alert(e) => error!(code = ?e.code, "{}", e.message),
                _ => {}
            }
        }
    }

    fn announce(&self, signaling: &SignalingClient, t: &str) {
        signaling.publish(
            t,
            PeerMessage::Announce {
                from: self.me.clone(),
                name: self.name.clone(),
                role: ROLE_ANCHOR.into(),
            },
        );
    }

    fn announce_all(&self, signaling: &SignalingClient) {
        if !self.signaling_up {
            return;
        }
        for t in &self.topics {
            self.announce(signaling, t);
        }
    }

    fn signal(&self, signaling: &SignalingClient, topic_: &str, to: &str, signal: Signal) {
        signaling.publish(
            topic_,
            PeerMessage::Signal {
                from: self.me.clone(),
                to: to.to_owned(),
                name: self.name.clone(),
                role: ROLE_ANCHOR.into(),
                signal,
            },
        );
    }

    async fn on_command(&mut self, cmd: Command, signaling: &SignalingClient) {
        match cmd {
            Command::Request(body, reply) => {
                let event = self.engine.handle(Request { id: 0, body }, &self.env).await;
                let _ = reply.send(event);
                self.refresh_topics(signaling);
            }
            Command::Replicate(space, reply) => {
                let r = self.engine.replicate(space).await;
                if let Ok(true) = r {
                    info!(space = %space.short(), topic = %topic(&space), "serving space");
                }
                let _ = reply.send(r);
                self.refresh_topics(signaling);
            }
            Command::Status(reply) => {
                let mut spaces = BTreeMap::new();
                for s in self.engine.space_ids() {
                    if let Ok(vv) = self.engine.version_vector(&s).await {
                        spaces.insert(s, vv);
                    }
                }
                let unsaved = self.engine.unsaved_total();
                let _ = reply.send(NodeStatus {
                    peer_id: self.me.clone(),
                    signaling: self.signaling_up,
                    spaces,
                    links: self.links.links().count(),
                    unsaved,
                    resident: self.engine.resident(),
                });
            }
            Command::Shutdown => {}
        }
    }

    /// The signaling server closes a connection that subscribes to more
    /// topics than its limit (64 by default).
    fn warn_topic_limit(&self) {
        if self.topics.len() > DEFAULT_SERVER_TOPIC_LIMIT {
            warn!(
                spaces = self.topics.len(),
                "serving more than {DEFAULT_SERVER_TOPIC_LIMIT} spaces: raise the signaling \
                 server's max_topics_per_connection to at least this many"
            );
        }
    }

    /// Subscribes to the topics of spaces that appeared.
    fn refresh_topics(&mut self, signaling: &SignalingClient) {
        let now = self.space_topics();
        if now == self.topics {
            return;
        }
        let added: Vec<String> = now.difference(&self.topics).cloned().collect();
        self.topics = now;
        self.warn_topic_limit();
        signaling.set_topics(self.topics.clone());
        if self.signaling_up {
            for t in &added {
                self.announce(signaling, t);
            }
        }
    }

    async fn on_signaling(&mut self, ev: SignalingEvent, signaling: &SignalingClient) {
        match ev {
            SignalingEvent::Connected => {
                self.signaling_up = true;
                self.announce_all(signaling);
            }
            SignalingEvent::Disconnected => {
                self.signaling_up = false;
                info!("signaling server lost; open connections go on");
            }
            SignalingEvent::Message { topic: t, msg } => {
                if msg.from() == self.me || !self.topics.contains(&t) {
                    return;
                }
                match msg {
                    PeerMessage::Announce { from, name, role } => {
                        self.on_announce(signaling, &t, from, name, role).await
                    }
                    PeerMessage::Signal {
                        from,
                        to,
                        name,
                        role,
                        signal,
                    } if to == self.me => match signal {
                        Signal::Offer { sdp } => {
                            self.on_offer(signaling, &t, from, name, role, sdp).await
                        }
                        Signal::Answer { sdp } => self.on_answer(&from, sdp).await,
                        Signal::Candidate {
                            candidate,
                            sdp_mid,
                            sdp_mline_index,
                        } => {
                            let init = RTCIceCandidateInit {
                                candidate,
                                sdp_mid,
                                sdp_mline_index,
                                username_fragment: None,
                            };
                            self.on_candidate(&from, init).await
                        }
                    },
                    PeerMessage::Signal { .. } => {}
                    PeerMessage::Leave { from } => {
                        if self.peers.contains_key(&from) {
                            info!(peer = %from, "peer left");
                            self.drop_peer(&from);
                        }
                    }
                }
            }
        }
    }

    async fn on_announce(
        &mut self,
        signaling: &SignalingClient,
        t: &str,
        from: String,
        name: String,
        role: String,
    ) {
        if let Some(p) = self.peers.get_mut(&from) {
            if p.up || p.started.elapsed() < CONNECT_TIMEOUT {
                if p.topics.insert(t.to_owned()) && p.up {
                    let link = LinkId(p.conn);
                    self.open_topic(link, t).await;
                }
                return;
            }
            // Never came up: start over.
            self.drop_peer(&from);
        }
        if self.me < from {
            self.start_peer(signaling, t, from, name, role, None).await;
        } else {
            // The other side offers; make sure it has heard of us.
            self.reply_announce(signaling, t);
        }
    }

    /// Announces on `t` so that a peer with a smaller id offers: at once if
    /// the last reply on `t` was a second ago or more, otherwise a second
    /// after it (a reply is never dropped, or the peer would wait for the
    /// next periodic announce).
    fn reply_announce(&mut self, signaling: &SignalingClient, t: &str) {
        let now = Instant::now();
        let due = self
            .last_reply
            .get(t)
            .is_none_or(|last| now.duration_since(*last) >= REPLY_EVERY);
        if due {
            self.last_reply.insert(t.to_owned(), now);
            self.deferred_replies.remove(t);
            self.announce(signaling, t);
        } else {
            self.deferred_replies.insert(t.to_owned());
        }
    }

    /// Sends the replies that were held back.
    fn deferred_announces(&mut self, signaling: &SignalingClient) {
        let topics: Vec<String> = self.deferred_replies.iter().cloned().collect();
        for t in topics {
            self.reply_announce(signaling, &t);
        }
    }

    async fn on_offer(
        &mut self,
        signaling: &SignalingClient,
        t: &str,
        from: String,
        name: String,
        role: String,
        sdp: String,
    ) {
        // An offer from a known peer means it started over.
        if self.peers.contains_key(&from) {
            self.drop_peer(&from);
        }
        self.start_peer(signaling, t, from, name, role, Some(sdp))
            .await;
    }

    async fn on_answer(&mut self, from: &str, sdp: String) {
        let Some(p) = self.peers.get(from) else {
            return;
        };
        if p.remote_set {
            return;
        }
        let pc = Arc::clone(&p.pc);
        let result = match RTCSessionDescription::answer(sdp) {
            Ok(desc) => tokio::time::timeout(SETUP_TIMEOUT, pc.set_remote_description(desc))
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            warn!(peer = %from, %error, "the peer's answer was refused");
            self.drop_peer(from);
            return;
        }
        self.remote_set(from).await;
    }

    async fn on_candidate(&mut self, from: &str, init: RTCIceCandidateInit) {
        let Some(p) = self.peers.get_mut(from) else {
            return;
        };
        if init.candidate.trim().is_empty() {
            // End of candidates: nothing to do.
            return;
        }
        if !p.remote_set {
            if p.early_candidates.len() < MAX_EARLY_CANDIDATES {
                p.early_candidates.push(init);
            }
            return;
        }
        let pc = Arc::clone(&p.pc);
        if let Err(error) = pc.add_ice_candidate(init).await {
            // One unusable candidate (an unresolvable mDNS name, say) does
            // not end the connection; others, or peer-reflexive ones, may
            // work.
            debug!(peer = %from, %error, "ignored an ICE candidate");
        }
    }

    /// The remote description is in place: candidates that came early go in.
    async fn remote_set(&mut self, from: &str) {
        let Some(p) = self.peers.get_mut(from) else {
            return;
        };
        p.remote_set = true;
        let early = std::mem::take(&mut p.early_candidates);
        let pc = Arc::clone(&p.pc);
        for c in early {
            if let Err(error) = pc.add_ice_candidate(c).await {
                debug!(peer = %from, %error, "ignored an ICE candidate");
            }
        }
    }

    async fn start_peer(
        &mut self,
        signaling: &SignalingClient,
        t: &str,
        id: String,
        name: String,
        role: String,
        offer: Option<String>,
    ) {
        let pending = self.peers.values().filter(|p| !p.up).count();
        if pending >= MAX_PENDING || self.peers.len() >= MAX_PEERS {
            // Each connection costs sockets and a key; a flood of offers
            // must not exhaust them. Those that are real come back with the
            // next announce.
            debug!(peer = %id, pending, peers = self.peers.len(), "too many connections; not now");
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let initiator = offer.is_none();
        debug!(peer = %id, conn, initiator, "connecting");
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let setup = tokio::time::timeout(SETUP_TIMEOUT, self.setup(conn, offer, outbox_rx)).await;
        let (pc, sdp) = match setup {
            Ok(Ok(x)) => x,
            Ok(Err((pc, error))) => {
                warn!(peer = %id, %error, "cannot set up a connection");
                if let Some(pc) = pc {
                    close_later(pc);
                }
                return;
            }
            Err(_) => {
                warn!(peer = %id, "setting up a connection timed out");
                return;
            }
        };
        let mid = rtc::first_mid(&sdp);
        let signal = if initiator {
            Signal::Offer { sdp }
        } else {
            Signal::Answer { sdp }
        };
        self.signal(signaling, t, &id, signal);
        self.by_conn.insert(conn, id.clone());
        self.peers.insert(
            id,
            Peer {
                conn,
                pc,
                name,
                role,
                topics: BTreeSet::from([t.to_owned()]),
                signal_topic: t.to_owned(),
                mid,
                up: false,
                // The answering side set the offer as its remote description.
                remote_set: !initiator,
                early_candidates: Vec::new(),
                outbox,
                started: Instant::now(),
            },
        );
    }

    /// Makes the peer connection and the local description: an offer with
    /// the `civicbase` channel, or the answer to `offer`.
    async fn setup(
        &self,
        conn: u64,
        offer: Option<String>,
        outbox_rx: mpsc::UnboundedReceiver<Bytes>,
    ) -> Result<(Arc<RTCPeerConnection>, String), (Option<Arc<RTCPeerConnection>>, String)> {
        let pc = self
            .api
            .new_peer_connection(rtc::peer_configuration(&self.rtc))
            .await
            .map(Arc::new)
            .map_err(|e| (None, e.to_string()))?;
        let fail = |e: webrtc::Error| (Some(Arc::clone(&pc)), e.to_string());
        let ctl = self.ctl_tx.clone();
        pc.on_ice_candidate(Box::new(move |c| {
            if let Some(init) = c.and_then(|c| c.to_json().ok()) {
                let _ = ctl.send(Ctl::Candidate(conn, init));
            }
            Box::pin(async {})
        }));
        let ctl = self.ctl_tx.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = ctl.send(Ctl::State(conn, s));
            Box::pin(async {})
        }));
        let sdp = match offer {
            None => {
                let init = RTCDataChannelInit {
                    ordered: Some(true),
                    ..Default::default()
                };
                let dc = pc
                    .create_data_channel(CHANNEL_LABEL, Some(init))
                    .await
                    .map_err(fail)?;
                rtc::forward_channel(&dc, conn, self.chan_tx.clone());
                tokio::spawn(rtc::write_channel(dc, outbox_rx));
                let offer = pc.create_offer(None).await.map_err(fail)?;
                let sdp = offer.sdp.clone();
                pc.set_local_description(offer).await.map_err(fail)?;
                sdp
            }
            Some(remote) => {
                let events = self.chan_tx.clone();
                let outbox_rx = std::sync::Mutex::new(Some(outbox_rx));
                pc.on_data_channel(Box::new(move |dc| {
                    let rx = if dc.label() == CHANNEL_LABEL {
                        outbox_rx.lock().ok().and_then(|mut r| r.take())
                    } else {
                        None
                    };
                    let accepted = rx.is_some();
                    if let Some(rx) = rx {
                        rtc::forward_channel(&dc, conn, events.clone());
                        tokio::spawn(rtc::write_channel(Arc::clone(&dc), rx));
                    }
                    Box::pin(async move {
                        if !accepted {
                            // Not ours, or a second one: refuse it.
                            let _ = dc.close().await;
                        }
                    })
                }));
                let desc = RTCSessionDescription::offer(remote).map_err(fail)?;
                pc.set_remote_description(desc).await.map_err(fail)?;
                let answer = pc.create_answer(None).await.map_err(fail)?;
                let sdp = answer.sdp.clone();
                pc.set_local_description(answer).await.map_err(fail)?;
                sdp
            }
        };
        Ok((pc, sdp))
    }

    async fn on_ctl(&mut self, ctl: Ctl, signaling: &SignalingClient) {
        match ctl {
            Ctl::Candidate(conn, init) => {
                let Some(id) = self.by_conn.get(&conn) else {
                    return;
                };
                let Some(p) = self.peers.get(id) else {
                    return;
                };
                let signal = Signal::Candidate {
                    candidate: init.candidate,
                    sdp_mid: Some(p.mid.clone().unwrap_or_else(|| "0".into())),
                    sdp_mline_index: Some(0),
                };
                self.signal(signaling, &p.signal_topic, id, signal);
            }
            Ctl::State(conn, state) => {
                debug!(conn, %state, "connection state");
                if matches!(
                    state,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                ) {
                    if let Some(id) = self.by_conn.get(&conn).cloned() {
                        info!(peer = %id, %state, "connection lost");
                        self.drop_peer(&id);
                    }
                }
            }
        }
    }

    async fn on_channel(&mut self, conn: u64, ev: ChannelEvent) {
        let Some(id) = self.by_conn.get(&conn).cloned() else {
            return;
        };
        match ev {
            ChannelEvent::Open => self.bring_up(&id).await,
            ChannelEvent::Closed => {
                info!(peer = %id, "data channel closed");
                self.drop_peer(&id);
            }
            ChannelEvent::Message { data, text } => {
                // A message can overtake the channel's open notification.
                self.bring_up(&id).await;
                let link = LinkId(conn);
                let result = if text {
                    Err("a text message on the data channel".to_owned())
                } else {
                    self.links
                        .receive(&mut self.engine, link, &data, &self.env)
                        .await
                        .map_err(|e| e.to_string())
                };
                match result {
                    Ok(0) => {}
                    Ok(applied) => debug!(peer = %id, applied, "entries received"),
                    Err(error) => {
                        warn!(peer = %id, %error, "closing the connection: the peer broke the protocol");
                        self.drop_peer(&id);
                    }
                }
            }
        }
    }

    /// The peer's channel is open: the link goes up with a session for every
    /// topic the peer was heard on.
    async fn bring_up(&mut self, id: &str) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if p.up {
            return;
        }
        p.up = true;
        let link = LinkId(p.conn);
        let label = if p.name.is_empty() {
            format!("peer {}", &id[..id.len().min(6)])
        } else {
            p.name.clone()
        };
        let via = if p.role == ROLE_ANCHOR {
            "anchor"
        } else {
            "direct"
        };
        info!(peer = %id, name = %p.name, role = %p.role, "peer connected");
        self.links.link_up(link, label, via.into());
        let topics: Vec<String> = p.topics.iter().cloned().collect();
        for t in topics {
            self.open_topic(link, &t).await;
        }
    }

    /// Starts the session of a topic's space on a link, loading the space
    /// from the store first if it is not in memory.
    async fn open_topic(&mut self, link: LinkId, t: &str) {
        if let Err(e) = self.engine.wake_topic(t, &self.env).await {
            warn!(topic = %t, error = %e.message, "cannot load a space a peer asked for");
            return;
        }
        self.links.open_topic(&mut self.engine, link, t);
    }

    fn drop_peer(&mut self, id: &str) {
        let Some(p) = self.peers.remove(id) else {
            return;
        };
        self.by_conn.remove(&p.conn);
        if p.up {
            self.links.link_down(&mut self.engine, LinkId(p.conn));
        }
        // Closing waits on webrtc-rs's tasks, which may be waiting for this
        // one to take their events: never await it here.
        close_later(p.pc);
    }

    fn drop_stalled(&mut self) {
        let stalled: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.up && p.started.elapsed() >= CONNECT_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stalled {
            info!(peer = %id, "connection did not open in time");
            self.drop_peer(&id);
        }
    }

    async fn stop(&mut self, signaling: &SignalingClient) {
        info!("stopping");
        let unsaved: usize = self.engine.unsaved_total();
        if unsaved > 0 {
            if let Err(e) = self.engine.retry_unsaved().await {
                error!(
                    entries = unsaved,
                    error = %e.message,
                    "entries that could not be stored are dropped; peers that sent them still have them"
                );
            }
        }
        if let Err(e) = self.engine.maintain(&self.env).await {
            warn!(error = %e.message, "cannot write a snapshot");
        }
        for t in &self.topics {
            signaling.publish(
                t,
                PeerMessage::Leave {
                    from: self.me.clone(),
                },
            );
        }
        signaling.close(SHUTDOWN_GRACE).await;
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        let mut closing = Vec::new();
        for id in ids {
            if let Some(p) = self.peers.remove(&id) {
                if p.up {
                    self.links.link_down(&mut self.engine, LinkId(p.conn));
                }
                let pc = p.pc;
                closing.push(tokio::spawn(async move {
                    let _ = pc.close().await;
                }));
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            for c in closing {
                let _ = c.await;
            }
        })
        .await;
        self.drain_engine_events();
        info!("stopped");
    }
}

fn close_later(pc: Arc<RTCPeerConnection>) {
    tokio::spawn(async move {
        let _ = pc.close().await;
    });
}
