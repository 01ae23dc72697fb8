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
//! version:u8 (=2) kind:u8 space:[32] piece…
//! kind 1 last piece of a sync frame (or the whole frame)
//! kind 2 a piece, more of the same frame follows
//! ```
//!
//! Each direction of a link is one compressed stream: every sync frame (up
//! to [`civicbase_core::sync::MAX_FRAME`] bytes) is compressed with raw
//! DEFLATE (RFC 1951) in that stream and ended with a sync flush, so that
//! the receiver can inflate all of it at once, while it may refer back to
//! what the link carried before (stored entries share authors, spaces and
//! wording: the stream carries less than half their bytes). The compressed bytes
//! are cut into pieces of at most [`LINK_PIECE`] bytes, a size every WebRTC
//! stack carries in one data-channel message, sent one frame after the
//! other; the receiver inflates each message in the order it arrives,
//! holds at most one partial frame, and stops at
//! [`civicbase_core::sync::MAX_FRAME`] bytes per frame ([`LinkEncoder`],
//! [`LinkDecoder`]). The first frame of each space's session on a
//! link is its Hello: a receiver that has the space and no session for it on
//! that link opens one on the first frame. A frame for a space the receiver
//! does not have is ignored. Any protocol error ends the whole link: the
//! driver closes the channel and both sides start afresh on the next
//! connection, resuming from version vectors.

use std::collections::BTreeMap;

use civicbase_core::store::Store;
use civicbase_core::sync::{SyncError, MAX_FRAME};
use civicbase_core::{Hash, SpaceId};
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use thiserror::Error;

use crate::{Engine, Env, PipeId, StorageError};

/// Version byte leading every link message (2: compressed frames).
pub const LINK_VERSION: u8 = 2;
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
    /// The peer speaks another version of the link protocol (an older or
    /// newer CivicBase): nothing can be exchanged until both are updated.
    #[error("the peer uses link protocol version {found}, this device version {LINK_VERSION}: update CivicBase on both")]
    Version {
        /// The version byte the peer sent.
        found: u8,
    },
    /// The compressed stream is corrupt.
    #[error("corrupt compressed data on the link")]
    Corrupt,
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
    encoder: LinkEncoder,
    decoder: LinkDecoder,
}

/// The sessions of every link of one engine.
#[derive(Default)]
pub struct Links {
    links: BTreeMap<LinkId, LinkState>,
}

/// Compression level of the link stream: DEFLATE's fastest, which already
/// takes stored entries to about 39% of their size.
const LINK_LEVEL: u8 = 1;

/// The sending half of a link: compresses sync frames into one stream and
/// cuts them into link messages. Messages must be sent in the order they
/// are made.
pub struct LinkEncoder {
    /// Made at the first frame (it holds about 300 KiB of tables).
    deflate: Option<Box<CompressorOxide>>,
}

impl Default for LinkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkEncoder {
    /// The start of a stream.
    pub fn new() -> Self {
        Self { deflate: None }
    }

    /// The link messages that carry `frame` for `space`.
    pub fn encode(&mut self, space: &SpaceId, frame: &[u8]) -> Vec<Vec<u8>> {
        let packed = self.compress(frame);
        let mut out = Vec::with_capacity(packed.len() / LINK_PIECE + 1);
        let mut pieces = packed.chunks(LINK_PIECE).peekable();
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

    /// `frame` compressed in the stream, up to and including a sync flush.
    fn compress(&mut self, frame: &[u8]) -> Vec<u8> {
        let deflate = self.deflate.get_or_insert_with(|| {
            let mut c = Box::<CompressorOxide>::default();
            c.set_format_and_level(DataFormat::Raw, LINK_LEVEL);
            c
        });
        // Incompressible input grows by a few bytes per block; a full
        // output buffer only means another round.
        let mut out = vec![0u8; frame.len() + frame.len() / 64 + 64];
        let (mut read, mut written) = (0, 0);
        loop {
            let r = miniz_oxide::deflate::stream::deflate(
                deflate,
                &frame[read..],
                &mut out[written..],
                MZFlush::Sync,
            );
            read += r.bytes_consumed;
            written += r.bytes_written;
            let done = read == frame.len() && written < out.len();
            let stuck = r.status.is_err() && r.bytes_consumed == 0 && r.bytes_written == 0;
            if done || stuck {
                break;
            }
            let grown = out.len() * 2;
            out.resize(grown, 0);
        }
        out.truncate(written);
        out
    }
}

/// The receiving half of a link: inflates link messages in the order they
/// arrive and joins the pieces of each space's frames.
pub struct LinkDecoder {
    inflate: Box<InflateState>,
    /// The frame being received: a sender sends the pieces of one frame
    /// one after the other, so there is at most one.
    partial: Option<(SpaceId, Vec<u8>)>,
    /// Room for inflating one message.
    scratch: Vec<u8>,
}

impl Default for LinkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkDecoder {
    /// The start of a stream.
    pub fn new() -> Self {
        Self {
            inflate: InflateState::new_boxed(DataFormat::Raw),
            partial: None,
            scratch: Vec::new(),
        }
    }

    /// Takes the next message of the link. Returns a space's sync frame
    /// when this message completed it. After an error the stream is
    /// unusable: the link must be closed.
    pub fn decode(&mut self, msg: &[u8]) -> Result<Option<(SpaceId, Vec<u8>)>, LinkError> {
        let Some(&version) = msg.first() else {
            return Err(LinkError::Malformed("empty message"));
        };
        if version != LINK_VERSION {
            return Err(LinkError::Version { found: version });
        }
        if msg.len() < LINK_HEADER {
            return Err(LinkError::Malformed("shorter than its header"));
        }
        let kind = msg[1];
        if kind != KIND_LAST && kind != KIND_MORE {
            return Err(LinkError::Malformed("unknown message kind"));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&msg[2..LINK_HEADER]);
        let space = Hash(id);
        let (partial_space, frame) = self.partial.get_or_insert_with(|| (space, Vec::new()));
        if *partial_space != space {
            return Err(LinkError::Malformed(
                "a piece of another frame before the last piece of a frame",
            ));
        }
        if self.scratch.is_empty() {
            self.scratch = vec![0; LINK_PIECE];
        }
        inflate_into(
            &mut self.inflate,
            &msg[LINK_HEADER..],
            frame,
            &mut self.scratch,
        )?;
        if kind == KIND_MORE {
            return Ok(None);
        }
        Ok(self.partial.take())
    }
}

/// Inflates `input` onto `frame`, refusing to let it grow past
/// [`MAX_FRAME`] (so that a small message cannot expand without bound).
fn inflate_into(
    state: &mut InflateState,
    mut input: &[u8],
    frame: &mut Vec<u8>,
    buf: &mut [u8],
) -> Result<(), LinkError> {
    loop {
        let r = miniz_oxide::inflate::stream::inflate(state, input, buf, MZFlush::None);
        input = &input[r.bytes_consumed..];
        if frame.len() + r.bytes_written > MAX_FRAME {
            return Err(LinkError::TooLarge {
                buffered: frame.len(),
                piece: r.bytes_written,
            });
        }
        frame.extend_from_slice(&buf[..r.bytes_written]);
        match r.status {
            // Everything given was taken, and everything it held given out.
            Err(MZError::Buf) if input.is_empty() => return Ok(()),
            Ok(MZStatus::Ok) if input.is_empty() && r.bytes_written == 0 => return Ok(()),
            Ok(MZStatus::Ok) if r.bytes_consumed > 0 || r.bytes_written > 0 => {}
            // The stream's end, a dictionary request, no progress, bad data:
            // none of them happen in a stream this protocol makes.
            _ => return Err(LinkError::Corrupt),
        }
    }
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
            encoder: LinkEncoder::new(),
            decoder: LinkDecoder::new(),
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
        let state = self.links.get_mut(&link).ok_or(LinkError::UnknownLink)?;
        let Some((space, frame)) = state.decoder.decode(msg)? else {
            return Ok(0);
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
        for (link, state) in &mut self.links {
            for (space, pipe) in &state.pipes {
                if !waiting.contains(pipe) {
                    continue;
                }
                for frame in engine.pipe_output(*pipe) {
                    let msgs = state.encoder.encode(space, &frame);
                    out.extend(msgs.into_iter().map(|m| (*link, m)));
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

    /// Bytes that do not compress.
    fn noise(len: usize, seed: u8) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&[seed])
            .finalize_xof()
            .fill(&mut out);
        out
    }

    #[test]
    fn frames_are_compressed_cut_into_pieces_and_joined_again() {
        let (s1, s2) = (Hash([1; 32]), Hash([2; 32]));
        let mut enc = LinkEncoder::new();
        let mut dec = LinkDecoder::new();
        // Incompressible: the largest frame still fits in four pieces.
        let big = noise(MAX_FRAME - 75, 1);
        let msgs = enc.encode(&s1, &big);
        assert_eq!(msgs.len(), 4);
        assert!(msgs.iter().all(|m| m.len() <= LINK_HEADER + LINK_PIECE));
        let mut got = Vec::new();
        for m in &msgs {
            got.extend(dec.decode(m).expect("decodes"));
        }
        assert_eq!(got, vec![(s1, big)]);
        // Repetitive frames of two spaces, one stream: each comes back whole,
        // in order, far smaller on the wire than in memory.
        let text: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("need {} blankets at Storgatan {};", i % 7, i % 13).into_bytes())
            .take(60_000)
            .collect();
        let frames = [
            (s2, text.clone()),
            (s1, Vec::new()),
            (s2, text[..999].to_vec()),
            (s1, noise(10, 2)),
        ];
        let mut wire = 0;
        let mut got = Vec::new();
        for (space, frame) in &frames {
            for m in enc.encode(space, frame) {
                wire += m.len();
                got.extend(dec.decode(&m).expect("decodes"));
            }
        }
        assert_eq!(got, frames.to_vec());
        let plain: usize = frames.iter().map(|(_, f)| f.len()).sum();
        assert!(wire * 10 < plain, "{wire} bytes on the wire for {plain}");
    }

    #[test]
    fn a_joined_frame_reaches_the_sync_session() {
        let env = FixedEnv::new(1_700_000_000_000, 1);
        let (mut a, space) = engine_with_space(&env);
        let mut links = Links::new();
        links.link_up(LinkId(1), "peer".into(), "test".into());
        let msgs = LinkEncoder::new().encode(&space, &noise(MAX_FRAME - 75, 3));
        // The sync session refuses the frame as malformed: proof that it was
        // inflated, joined and handed on.
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
        let mut receive = |msg: &[u8]| {
            let mut links = Links::new();
            links.link_up(LinkId(1), "peer".into(), "test".into());
            block_on(links.receive(&mut a, LinkId(1), msg, &env))
        };
        assert!(matches!(receive(&[]), Err(LinkError::Malformed(_))));
        assert!(matches!(
            receive(&[LINK_VERSION, 1]),
            Err(LinkError::Malformed(_))
        ));
        // An older peer: its messages carry version 1.
        let mut old = LinkEncoder::new().encode(&space, b"hello").remove(0);
        old[0] = 1;
        assert!(matches!(
            receive(&old),
            Err(LinkError::Version { found: 1 })
        ));
        let mut kind = LinkEncoder::new().encode(&space, b"hello").remove(0);
        kind[1] = 9;
        assert!(matches!(receive(&kind), Err(LinkError::Malformed(_))));
        // Not DEFLATE: block type 3 does not exist.
        assert!(matches!(
            receive(&message(KIND_LAST, &space, &[0xff; 40])),
            Err(LinkError::Corrupt)
        ));
        // A few hundred bytes that would inflate to 192 KiB stop at 64 KiB.
        let bomb = LinkEncoder::new().encode(&space, &vec![0; 3 * MAX_FRAME]);
        assert_eq!(bomb.len(), 1, "zeros compress into one message");
        assert!(bomb[0].len() < 1024);
        assert!(matches!(receive(&bomb[0]), Err(LinkError::TooLarge { .. })));
        // Pieces that add up past the largest frame.
        let more: Vec<Vec<u8>> = (0..5u8).map(|i| noise(LINK_PIECE - 100, 10 + i)).collect();
        let mut enc = LinkEncoder::new();
        let mut links = Links::new();
        links.link_up(LinkId(1), "peer".into(), "test".into());
        let mut r = Ok(0);
        for piece in &more {
            let mut m = enc.encode(&space, piece).remove(0);
            m[1] = KIND_MORE;
            r = block_on(links.receive(&mut a, LinkId(1), &m, &env));
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(r, Err(LinkError::TooLarge { .. })), "{r:?}");
        // The pieces of two frames interleaved.
        let mut enc = LinkEncoder::new();
        let mut first = enc.encode(&space, &noise(100, 20)).remove(0);
        first[1] = KIND_MORE;
        let second = enc.encode(&Hash([4; 32]), &noise(100, 21)).remove(0);
        let mut dec = LinkDecoder::new();
        assert!(matches!(dec.decode(&first), Ok(None)));
        assert!(matches!(dec.decode(&second), Err(LinkError::Malformed(_))));
        let hello = LinkEncoder::new().encode(&space, b"");
        let unknown = block_on(links.receive(&mut a, LinkId(9), &hello[0], &env));
        assert!(matches!(unknown, Err(LinkError::UnknownLink)));
        // A frame for a space this device does not have is ignored.
        let mut links = Links::new();
        links.link_up(LinkId(1), "peer".into(), "test".into());
        let other = LinkEncoder::new().encode(&Hash([3; 32]), b"anything");
        assert!(matches!(
            block_on(links.receive(&mut a, LinkId(1), &other[0], &env)),
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
