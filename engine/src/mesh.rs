//! Links: the sync sessions of several spaces carried over one reliable,
//! ordered byte channel to a peer (a WebRTC data channel), and the topic
//! under which the peers of a space meet at the signaling server.
//!
//! The browser's worker and the native anchor both drive their engine
//! through [`Links`]; only how the bytes travel differs.
//!
//! # Link messages
//!
//! ```text
//! version:u8 (=1) kind:u8 space:[32] piece…
//! kind 1 last piece of a sync frame (or the whole frame)
//! kind 2 a piece, more of the same frame follows
//! ```
//!
//! Sync frames (up to [`civicbase_core::sync::MAX_FRAME`] bytes) are cut into
//! pieces of at most [`LINK_PIECE`] bytes, a size every WebRTC stack carries
//! in one data-channel message. The first frame of each space's session on a
//! link is its Hello: a receiver that has the space and no session for it on
//! that link opens one on the first frame. A frame for a space the receiver
//! does not have is ignored. Any protocol error ends the whole link: the
//! driver closes the channel and both sides start afresh on the next
//! connection, resuming from version vectors.

use std::collections::BTreeMap;

use civicbase_core::store::Store;
use civicbase_core::sync::{SyncError, MAX_FRAME};
use civicbase_core::{Hash, SpaceId};
use thiserror::Error;

use crate::{Engine, Env, PipeId, StorageError};

/// Version byte leading every link message.
pub const LINK_VERSION: u8 = 1;
/// Largest piece of a sync frame in one link message.
pub const LINK_PIECE: usize = 16 * 1024;
/// Bytes before the piece.
pub const LINK_HEADER: usize = 34;

const KIND_LAST: u8 = 1;
const KIND_MORE: u8 = 2;

/// Prefix of every CivicBase signaling topic.
pub const TOPIC_PREFIX: &str = "civicbase1-";

/// The signaling topic of a space: a keyed hash of its id, so the signaling
/// server never learns space ids.
pub fn topic(space: &SpaceId) -> String {
    let h = blake3::derive_key("civicbase 2026 signaling topic v1", space.as_bytes());
    format!("{TOPIC_PREFIX}{}", Hash(h).to_hex())
}

/// One link to a peer, chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// Why a link must be closed.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The message is not a link message of this version.
    #[error("malformed link message: {0}")]
    Malformed(&'static str),
    /// A frame grew past the largest sync frame.
    #[error("a sync frame on the link is larger than {MAX_FRAME} bytes ({buffered} buffered, {piece} more)")]
    TooLarge {
        /// Bytes of the frame received so far.
        buffered: usize,
        /// Bytes of the piece that would exceed the limit.
        piece: usize,
    },
    /// The sync session failed.
    #[error("sync failed: {0}")]
    Sync(#[from] SyncError),
    /// The link is not known (never up, or already down).
    #[error("unknown link")]
    UnknownLink,
    /// The space could not be loaded from the store; the peer retries on
    /// its next connection.
    #[error("cannot load the space: {0}")]
    Storage(String),
}

struct LinkState {
    label: String,
    via: String,
    /// Sessions by space.
    pipes: BTreeMap<SpaceId, PipeId>,
    /// Pieces of a frame being received, by space.
    partial: BTreeMap<SpaceId, Vec<u8>>,
}

/// The sessions of every link of one engine.
#[derive(Default)]
pub struct Links {
    links: BTreeMap<LinkId, LinkState>,
}

/// Cuts a sync frame into link messages.
pub fn encode_frame(space: &SpaceId, frame: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(frame.len() / LINK_PIECE + 1);
    let mut pieces = frame.chunks(LINK_PIECE).peekable();
    if pieces.peek().is_none() {
        out.push(message(KIND_LAST, space, &[]));
    }
    while let Some(piece) = pieces.next() {
        let kind = if pieces.peek().is_some() {
            KIND_MORE
        } else {
            KIND_LAST
        };
        out.push(message(kind, space, piece));
    }
    out
}

fn message(kind: u8, space: &SpaceId, piece: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(LINK_HEADER + piece.len());
    m.push(LINK_VERSION);
    m.push(kind);
    m.extend_from_slice(space.as_bytes());
    m.extend_from_slice(piece);
    m
}

impl Links {
    /// No links.
    pub fn new() -> Self {
        Self::default()
    }

    /// A channel to a peer is open. `label` names the peer, `via` says how
    /// it is connected (both shown in the sync status).
    pub fn link_up(&mut self, link: LinkId, label: String, via: String) {
        self.links.entry(link).or_insert(LinkState {
            label,
            via,
            pipes: BTreeMap::new(),
            partial: BTreeMap::new(),
        });
    }

    /// Links that are up.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.keys().copied()
    }

    /// Starts a session for `space` on `link`. Returns whether one is open
    /// (false: unknown link, or the space is not on this device).
    pub fn open<S: Store>(&mut self, engine: &mut Engine<S>, link: LinkId, space: SpaceId) -> bool
    where
        S::Error: StorageError,
    {
        let Some(state) = self.links.get_mut(&link) else {
            return false;
        };
        if state.pipes.contains_key(&space) {
            return true;
        }
        match engine.open_pipe(space, state.label.clone(), state.via.clone()) {
            Some(pipe) => {
                state.pipes.insert(space, pipe);
                true
            }
            None => false,
        }
    }

    /// Starts a session on `link` for the space whose signaling topic is
    /// `topic`, if that space is in memory (a bounded engine's driver calls
    /// [`Engine::wake_topic`] first).
    pub fn open_topic<S: Store>(
        &mut self,
        engine: &mut Engine<S>,
        link: LinkId,
        topic_: &str,
    ) -> bool
    where
        S::Error: StorageError,
    {
        match engine.space_ids().into_iter().find(|s| topic(s) == topic_) {
            Some(space) => self.open(engine, link, space),
            None => false,
        }
    }

    /// Starts a session for `space` on every link (a space was just created
    /// or joined).
    pub fn open_everywhere<S: Store>(&mut self, engine: &mut Engine<S>, space: SpaceId)
    where
        S::Error: StorageError,
    {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.open(engine, link, space);
        }
    }

    /// Handles one message that arrived on `link`. Returns the number of
    /// entries applied. On an error the driver must close the link's
    /// channel and call [`Links::link_down`].
    pub async fn receive<S: Store>(
        &mut self,
        engine: &mut Engine<S>,
        link: LinkId,
        msg: &[u8],
        env: &dyn Env,
    ) -> Result<usize, LinkError>
    where
        S::Error: StorageError,
    {
        if msg.len() < LINK_HEADER {
            return Err(LinkError::Malformed("shorter than its header"));
        }
        if msg[0] != LINK_VERSION {
            return Err(LinkError::Malformed("unknown link version"));
        }
        let kind = msg[1];
        if kind != KIND_LAST && kind != KIND_MORE {
            return Err(LinkError::Malformed("unknown message kind"));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&msg[2..LINK_HEADER]);
        let space = Hash(id);
        let piece = &msg[LINK_HEADER..];
        let state = self.links.get_mut(&link).ok_or(LinkError::UnknownLink)?;
        let buffered = state.partial.get(&space).map_or(0, Vec::len);
        if buffered + piece.len() > MAX_FRAME {
            state.partial.remove(&space);
            return Err(LinkError::TooLarge {
                buffered,
                piece: piece.len(),
            });
        }
        if kind == KIND_MORE {
            state
                .partial
                .entry(space)
                .or_default()
                .extend_from_slice(piece);
            return Ok(0);
        }
        let frame = match state.partial.remove(&space) {
            Some(mut buf) => {
                buf.extend_from_slice(piece);
                buf
            }
            None => piece.to_vec(),
        };
        if !self
            .links
            .get(&link)
            .is_some_and(|s| s.pipes.contains_key(&space))
        {
            // A bounded engine may hold the space on disk only.
            engine
                .wake(&space, env)
                .await
                .map_err(|e| LinkError::Storage(e.message))?;
        }
        if !self.open(engine, link, space) {
            // Not a space of this device: nothing to say.
            return Ok(0);
        }
        let Some(pipe) = self
            .links
            .get(&link)
            .and_then(|s| s.pipes.get(&space))
            .copied()
        else {
            return Ok(0);
        };
        match engine.pipe_input(pipe, &frame, env).await {
            Ok(n) => Ok(n),
            Err(e) => {
                if let Some(state) = self.links.get_mut(&link) {
                    state.pipes.remove(&space);
                }
                Err(e.into())
            }
        }
    }

    /// The channel of `link` closed: ends its sessions.
    pub fn link_down<S: Store>(&mut self, engine: &mut Engine<S>, link: LinkId)
    where
        S::Error: StorageError,
    {
        if let Some(state) = self.links.remove(&link) {
            for pipe in state.pipes.into_values() {
                engine.close_pipe(pipe);
            }
        }
    }

    /// Link messages waiting to be sent, in order per link.
    pub fn take_output<S: Store>(&mut self, engine: &mut Engine<S>) -> Vec<(LinkId, Vec<u8>)>
    where
        S::Error: StorageError,
    {
        let waiting = engine.pipes_with_output();
        let mut out = Vec::new();
        if waiting.is_empty() {
            return out;
        }
        for (link, state) in &self.links {
            for (space, pipe) in &state.pipes {
                if !waiting.contains(pipe) {
                    continue;
                }
                for frame in engine.pipe_output(*pipe) {
                    out.extend(encode_frame(space, &frame).into_iter().map(|m| (*link, m)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedEnv;
    use civicbase_core::store::{conformance::block_on, MemoryStore};
    use civicbase_proto::{Request, RequestBody, ResponseBody};

    fn engine_with_space(env: &FixedEnv) -> (Engine<MemoryStore>, SpaceId) {
        let mut e = block_on(Engine::open(MemoryStore::new(), env)).expect("open");
        let body = RequestBody::CreateIdentity { name: "A".into() };
        block_on(e.handle(Request { id: 1, body }, env));
        let body = RequestBody::CreateSpace {
            name: "Town".into(),
            default_credit_limit: 10,
        };
        let reply = block_on(e.handle(Request { id: 2, body }, env));
        let civicbase_proto::Event::Response {
            result: Ok(ResponseBody::Space(s)),
            ..
        } = reply
        else {
            panic!("no space: {reply:?}");
        };
        (e, Hash(s.id))
    }

    #[test]
    fn topics_hide_the_space_id_and_are_stable() {
        let s = Hash([7; 32]);
        let t = topic(&s);
        assert!(t.starts_with(TOPIC_PREFIX));
        assert_eq!(t, topic(&s));
        assert!(!t.contains(&s.to_hex()));
        assert_ne!(t, topic(&Hash([8; 32])));
    }

    #[test]
    fn frames_are_cut_into_pieces_and_joined_again() {
        let env = FixedEnv::new(1_700_000_000_000, 1);
        let (mut a, space) = engine_with_space(&env);
        let mut links = Links::new();
        links.link_up(LinkId(1), "peer".into(), "test".into());
        let frame = vec![0xabu8; MAX_FRAME - 75];
        let msgs = encode_frame(&space, &frame);
        assert_eq!(msgs.len(), 4);
        assert!(msgs.iter().all(|m| m.len() <= LINK_HEADER + LINK_PIECE));
        // The joined frame reaches the sync session, which refuses it as
        // malformed: proof that it was reassembled and handed on.
        let mut result = Ok(0);
        for m in &msgs {
            result = block_on(links.receive(&mut a, LinkId(1), m, &env));
        }
        assert!(matches!(result, Err(LinkError::Sync(_))), "{result:?}");
    }

    #[test]
    fn bad_messages_end_the_link() {
        let env = FixedEnv::new(1_700_000_000_000, 1);
        let (mut a, space) = engine_with_space(&env);
        let mut links = Links::new();
        links.link_up(LinkId(1), "peer".into(), "test".into());
        let short = block_on(links.receive(&mut a, LinkId(1), &[1, 1], &env));
        assert!(matches!(short, Err(LinkError::Malformed(_))));
        let mut wrong_version = message(KIND_LAST, &space, b"x");
        wrong_version[0] = 9;
        let r = block_on(links.receive(&mut a, LinkId(1), &wrong_version, &env));
        assert!(matches!(r, Err(LinkError::Malformed(_))));
        let big = message(KIND_MORE, &space, &vec![0; LINK_PIECE]);
        let mut r = Ok(0);
        for _ in 0..(MAX_FRAME / LINK_PIECE + 1) {
            r = block_on(links.receive(&mut a, LinkId(1), &big, &env));
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(r, Err(LinkError::TooLarge { .. })), "{r:?}");
        let unknown =
            block_on(links.receive(&mut a, LinkId(9), &message(KIND_LAST, &space, b""), &env));
        assert!(matches!(unknown, Err(LinkError::UnknownLink)));
        // A frame for a space this device does not have is ignored.
        let other = message(KIND_LAST, &Hash([3; 32]), b"anything");
        assert!(matches!(
            block_on(links.receive(&mut a, LinkId(1), &other, &env)),
            Ok(0)
        ));
    }

    #[test]
    fn a_large_space_syncs_over_links() {
        let env = FixedEnv::new(1_700_000_000_000, 1);
        let (mut a, space) = engine_with_space(&env);
        for i in 0..3_000u32 {
            let op = civicbase_core::op::Op::PostNotice {
                title: format!("Notice {i}"),
                body: "x".repeat(200 + (i as usize * 7) % 300),
            };
            let payload = civicbase_core::op::encode_payload(&[op]);
            let body = RequestBody::Act {
                space: space.0,
                payload,
            };
            block_on(a.handle(Request { id: 9, body }, &env));
        }
        let env_b = FixedEnv::new(1_700_000_000_000, 2);
        let mut b = block_on(Engine::open(MemoryStore::new(), &env_b)).expect("open");
        assert_eq!(block_on(b.replicate(space)), Ok(true));
        let (mut la, mut lb) = (Links::new(), Links::new());
        la.link_up(LinkId(1), "b".into(), "test".into());
        lb.link_up(LinkId(1), "a".into(), "test".into());
        assert!(la.open(&mut a, LinkId(1), space));
        assert!(lb.open(&mut b, LinkId(1), space));
        for _ in 0..20 {
            for (_, m) in la.take_output(&mut a) {
                assert!(m.len() <= LINK_HEADER + LINK_PIECE);
                block_on(lb.receive(&mut b, LinkId(1), &m, &env_b)).expect("b receives");
            }
            for (_, m) in lb.take_output(&mut b) {
                block_on(la.receive(&mut a, LinkId(1), &m, &env)).expect("a receives");
            }
        }
        let (ra, rb) = (a.replica(&space).expect("a"), b.replica(&space).expect("b"));
        assert_eq!(rb.len(), ra.len());
    }

    #[test]
    fn two_engines_sync_over_links() {
        let env = FixedEnv::new(1_700_000_000_000, 1);
        let (mut a, space) = engine_with_space(&env);
        let env_b = FixedEnv::new(1_700_000_000_000, 2);
        let mut b = block_on(Engine::open(MemoryStore::new(), &env_b)).expect("open");
        assert_eq!(block_on(b.replicate(space)), Ok(true));
        let (mut la, mut lb) = (Links::new(), Links::new());
        la.link_up(LinkId(1), "b".into(), "test".into());
        lb.link_up(LinkId(1), "a".into(), "test".into());
        assert!(la.open_topic(&mut a, LinkId(1), &topic(&space)));
        assert!(lb.open(&mut b, LinkId(1), space));
        for _ in 0..10 {
            for (_, m) in la.take_output(&mut a) {
                block_on(lb.receive(&mut b, LinkId(1), &m, &env_b)).expect("b receives");
            }
            for (_, m) in lb.take_output(&mut b) {
                block_on(la.receive(&mut a, LinkId(1), &m, &env)).expect("a receives");
            }
        }
        let (ra, rb) = (a.replica(&space).expect("a"), b.replica(&space).expect("b"));
        assert!(!rb.is_empty());
        assert_eq!(ra.version_vector(), rb.version_vector());
        la.link_down(&mut a, LinkId(1));
        assert_eq!(la.links().count(), 0);
    }
}
