//! The sync protocol: a sans-IO state machine per space per connection.
//!
//! The session takes frames in ([`SyncSession::handle_frame`]) and hands
//! frames out ([`SyncSession::poll_transmit`]); the caller moves the bytes
//! over whatever it has (a data channel, a BroadcastChannel, a WebSocket, a
//! file) and passes the wall clock in. Nothing here blocks or does I/O.
//!
//! # Flow
//!
//! 1. Both sides send [`Message::Hello`] at once: protocol version, space,
//!    and for every author the number of entries held and an 8-byte prefix
//!    of the latest entry's id, plus the authors known to have forked.
//! 2. On a Hello, each side sends exactly the entries the other lacks, in
//!    causal order, packed into frames of at most 64 KiB, and fork proofs the
//!    other lacks. When both are honest, sync is complete after one round
//!    trip. If the peer's latest entry for an author differs from ours at the
//!    same seq, we send ours: the peer detects the fork and returns a proof.
//! 3. Then live: [`SyncSession::push_local`] sends entries as they are made
//!    or received from elsewhere; [`SyncSession::send_have`] acknowledges.
//!
//! A reconnect is a new session: the Hello exchange resumes from the version
//! vectors, so nothing the peer holds is sent again.
//!
//! # Frames
//!
//! ```text
//! frame   = version:u8 (=1) kind:u8 body          (at most 64 KiB)
//! Hello   kind 1: protocol:varint space:[32]
//!                 n:varint (author:[32] count:varint head_prefix:[8])*
//!                 m:varint (author:[32] seq:varint)*
//! Entries kind 2: n:varint (len:varint entry)*
//! Have    kind 3: version vector (n:varint (author:[32] count:varint)*)
//! Fork    kind 4: len:varint header sig:[64] len:varint header sig:[64]
//! Chunk   kind 5: id:varint index:varint total:varint len:varint data
//!                 (the concatenated data of chunks 0..total is one
//!                  message, kind byte first, without the version byte)
//! Close   kind 6: len:varint reason (UTF-8)
//! ```

use std::collections::{BTreeSet, VecDeque};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{Entry, MAX_PAYLOAD_LEN};
use crate::id::{AuthorId, EntryId, Hash, SpaceId};
use crate::replica::{ForkProof, ForkProofError, IngestError, Ingested, Replica, SignedHeader};
use crate::vv::{VersionVector, MAX_AUTHORS};

/// Frame format version (the leading byte of every frame).
pub const FRAME_VERSION: u8 = 1;
/// Sync protocol version carried in Hello.
/// Version 2 goes with payload version 2, the space format of the
/// authorization rules in docs/PROTOCOL.md: a version 1 peer would read the
/// same entries under other rules, so the two refuse each other.
pub const PROTOCOL_VERSION: u64 = 2;
/// Largest frame, in bytes. Data channels close above 256 KiB.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest message reassembled from chunks.
pub const MAX_MESSAGE: usize = MAX_PAYLOAD_LEN + 64 * 1024;
/// Most entries in one Entries message.
pub const MAX_ENTRIES_PER_FRAME: usize = 4096;
/// Most received entries a session holds back (see
/// [`SyncSession::defer_entries`]) before it ingests them anyway.
pub const MAX_HELD_ENTRIES: usize = 4096;
const CHUNK_DATA: usize = MAX_FRAME - 32;

mod kind {
    pub const HELLO: u8 = 1;
    pub const ENTRIES: u8 = 2;
    pub const HAVE: u8 = 3;
    pub const FORK: u8 = 4;
    pub const CHUNK: u8 = 5;
    pub const CLOSE: u8 = 6;
}

/// One author's line in a Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    /// The author.
    pub author: AuthorId,
    /// Entries held.
    pub count: u64,
    /// First 8 bytes of the latest entry's id.
    pub head_prefix: [u8; 8],
}

/// The opening message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Sync protocol version.
    pub protocol: u64,
    /// The space.
    pub space: SpaceId,
    /// What the sender holds, by author (ascending).
    pub heads: Vec<HeadInfo>,
    /// Authors the sender knows forked, with the forked seq.
    pub forks: Vec<(AuthorId, u64)>,
}

impl Hello {
    /// The version vector the heads describe.
    pub fn version_vector(&self) -> VersionVector {
        self.heads.iter().map(|h| (h.author, h.count)).collect()
    }
}

/// A sync message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Opening: what the sender holds.
    Hello(Hello),
    /// Entries, each as its wire bytes (decoded one by one on receipt, so
    /// one malformed entry does not spoil the rest).
    Entries(Vec<Vec<u8>>),
    /// Acknowledgement: what the sender holds now.
    Have(VersionVector),
    /// Two signed headers proving a fork.
    Fork {
        /// First signed header.
        a: SignedHeader,
        /// Second signed header.
        b: SignedHeader,
    },
    /// A piece of a message larger than a frame.
    Chunk {
        /// Message id, per sender.
        id: u32,
        /// Index of this piece.
        index: u32,
        /// Number of pieces.
        total: u32,
        /// The piece.
        data: Vec<u8>,
    },
    /// The sender is closing the session, with a reason.
    Close(String),
}

impl Message {
    fn encode_body(&self, w: &mut Writer) {
        match self {
            Message::Hello(h) => {
                w.u8(kind::HELLO);
                w.varint(h.protocol);
                w.raw(h.space.as_bytes());
                w.varint(h.heads.len() as u64);
                for head in &h.heads {
                    w.raw(head.author.as_bytes());
                    w.varint(head.count);
                    w.raw(&head.head_prefix);
                }
                w.varint(h.forks.len() as u64);
                for (a, seq) in &h.forks {
                    w.raw(a.as_bytes());
                    w.varint(*seq);
                }
            }
            Message::Entries(entries) => {
                w.u8(kind::ENTRIES);
                w.varint(entries.len() as u64);
                for e in entries {
                    w.bytes(e);
                }
            }
            Message::Have(vv) => {
                w.u8(kind::HAVE);
                vv.encode(w);
            }
            Message::Fork { a, b } => {
                w.u8(kind::FORK);
                w.bytes(&a.0);
                w.raw(&a.1);
                w.bytes(&b.0);
                w.raw(&b.1);
            }
            Message::Chunk {
                id,
                index,
                total,
                data,
            } => {
                w.u8(kind::CHUNK);
                w.varint(u64::from(*id));
                w.varint(u64::from(*index));
                w.varint(u64::from(*total));
                w.bytes(data);
            }
            Message::Close(reason) => {
                w.u8(kind::CLOSE);
                w.str(reason);
            }
        }
    }

    /// The message without the version byte (as carried inside chunks).
    pub fn encode_inner(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_body(&mut w);
        w.finish()
    }

    /// The frame bytes: version byte, then the message. May exceed
    /// [`MAX_FRAME`]; [`SyncSession`] chunks such messages.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FRAME_VERSION);
        self.encode_body(&mut w);
        w.finish()
    }

    /// Decodes a frame (at most [`MAX_FRAME`] bytes).
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        if frame.len() > MAX_FRAME {
            return Err(DecodeError::TooLarge {
                what: "frame",
                len: frame.len() as u64,
                max: MAX_FRAME as u64,
            });
        }
        let mut r = Reader::new(frame);
        let v = r.u8()?;
        if v != FRAME_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "frame",
                found: v,
                supported: FRAME_VERSION,
            });
        }
        let m = Self::decode_body(&mut r, MAX_FRAME)?;
        r.finish()?;
        Ok(m)
    }

    /// Decodes a message without version byte, as reassembled from chunks.
    pub fn decode_inner(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = Self::decode_body(&mut r, MAX_MESSAGE)?;
        r.finish()?;
        if matches!(m, Message::Chunk { .. }) {
            return Err(DecodeError::NonCanonical {
                what: "chunk inside a chunk",
            });
        }
        Ok(m)
    }

    fn decode_body(r: &mut Reader<'_>, max: usize) -> Result<Message, DecodeError> {
        let k = r.u8()?;
        Ok(match k {
            kind::HELLO => {
                let protocol = r.varint()?;
                let space = Hash(r.array()?);
                let n = r.count("hello heads", MAX_AUTHORS, 41)?;
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    let author = AuthorId(r.array()?);
                    if heads.last().is_some_and(|h: &HeadInfo| h.author >= author) {
                        return Err(DecodeError::NonCanonical {
                            what: "hello author order",
                        });
                    }
                    heads.push(HeadInfo {
                        author,
                        count: r.varint()?,
                        head_prefix: r.array()?,
                    });
                }
                let m = r.count("hello forks", MAX_AUTHORS, 33)?;
                let mut forks = Vec::with_capacity(m);
                for _ in 0..m {
                    forks.push((AuthorId(r.array()?), r.varint()?));
                }
                Message::Hello(Hello {
                    protocol,
                    space,
                    heads,
                    forks,
                })
            }
            kind::ENTRIES => {
                let n = r.count("entries per frame", MAX_ENTRIES_PER_FRAME, 1)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(r.bytes("entry", max)?.to_vec());
                }
                Message::Entries(entries)
            }
            kind::HAVE => Message::Have(VersionVector::decode(r)?),
            kind::FORK => {
                let (a, b) = ForkProof::decode_parts(r)?;
                Message::Fork { a, b }
            }
            kind::CHUNK => {
                let id = r.varint_max("chunk id", u64::from(u32::MAX))? as u32;
                let total = MAX_MESSAGE.div_ceil(CHUNK_DATA) as u64;
                let index = r.varint_max("chunk index", total)? as u32;
                let total = r.varint_max("chunk total", total)? as u32;
                if index >= total {
                    return Err(DecodeError::NonCanonical {
                        what: "chunk index beyond total",
                    });
                }
                let data = r.bytes("chunk data", CHUNK_DATA)?.to_vec();
                Message::Chunk {
                    id,
                    index,
                    total,
                    data,
                }
            }
            kind::CLOSE => Message::Close(r.str("close reason", 1024)?.to_owned()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "message kind",
                    tag: u64::from(tag),
                })
            }
        })
    }
}

/// A fatal protocol error: the connection should be closed. The replica is
/// unaffected; everything already applied stays.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    /// A frame could not be decoded.
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    /// The peer speaks another protocol version.
    #[error("the peer speaks sync protocol {found}, this device {PROTOCOL_VERSION}: update CivicBase on both devices")]
    Protocol {
        /// The peer's version.
        found: u64,
    },
    /// The peer is syncing another space.
    #[error("peer is syncing space {found:?}, not {expected:?}")]
    WrongSpace {
        /// This session's space.
        expected: SpaceId,
        /// The peer's space.
        found: SpaceId,
    },
    /// Chunks arrived out of order or inconsistent.
    #[error("chunk sequence broken: {0}")]
    Chunk(&'static str),
    /// A message came before the Hello.
    #[error("{0} before hello")]
    BeforeHello(&'static str),
    /// The session was closed.
    #[error("the session is closed")]
    Closed,
}

/// Why one received entry was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryRejection {
    /// The bytes are not an entry.
    #[error("malformed entry: {0}")]
    Malformed(#[source] DecodeError),
    /// The entry was refused.
    #[error("entry {id:?} refused: {source}")]
    Refused {
        /// The entry's id.
        id: EntryId,
        /// Why.
        #[source]
        source: IngestError,
    },
    /// A fork proof did not verify.
    #[error("bad fork proof: {0}")]
    BadForkProof(#[source] ForkProofError),
}

/// What one call to [`SyncSession::handle_frame`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncEvents {
    /// Entries now stored (including released pending ones), in order.
    pub applied: Vec<EntryId>,
    /// Entries or proofs that were refused, with reasons.
    pub rejected: Vec<EntryRejection>,
    /// Entries now waiting for dependencies.
    pub pending: usize,
    /// Authors newly flagged for forking.
    pub forks: Vec<AuthorId>,
    /// The peer's Hello arrived.
    pub hello: bool,
    /// The peer closed the session, with its reason.
    pub closed: Option<String>,
}

/// Byte and message counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Frames sent.
    pub frames_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Entries sent.
    pub entries_sent: u64,
    /// Entries received.
    pub entries_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    HelloSent,
    Live,
    Closed,
}

#[derive(Debug)]
struct Reassembly {
    id: u32,
    total: u32,
    next: u32,
    buf: Vec<u8>,
}

/// One sync session with one peer for one space.
#[derive(Debug)]
pub struct SyncSession {
    space: SpaceId,
    phase: Phase,
    peer_known: VersionVector,
    peer_forks: BTreeSet<AuthorId>,
    outbox: VecDeque<Vec<u8>>,
    reassembly: Option<Reassembly>,
    next_chunk_id: u32,
    stats: SyncStats,
    /// Whether received entries are held back until [`SyncSession::flush`].
    defer: bool,
    /// Received entries not yet ingested.
    held: Vec<Entry>,
}

impl SyncSession {
    /// A session for `space`; call [`SyncSession::start`] to send the Hello.
    pub fn new(space: SpaceId) -> Self {
        Self {
            space,
            phase: Phase::New,
            peer_known: VersionVector::new(),
            peer_forks: BTreeSet::new(),
            outbox: VecDeque::new(),
            reassembly: None,
            next_chunk_id: 0,
            stats: SyncStats::default(),
            defer: false,
            held: Vec::new(),
        }
    }

    /// Holds received entries back instead of ingesting each message's at
    /// once, until [`SyncSession::flush`] (or until [`MAX_HELD_ENTRIES`] are
    /// held, or a message of another kind arrives, which ingest them first).
    /// A driver with several frames waiting defers while it feeds them, so
    /// that their signatures are verified in one large batch, which costs
    /// much less per entry than many small ones.
    pub fn defer_entries(&mut self, on: bool) {
        self.defer = on;
    }

    /// Whether received entries are held, waiting for [`SyncSession::flush`].
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Ingests the entries held back (see [`SyncSession::defer_entries`]).
    /// Call it after a batch of frames, and after [`SyncSession::handle_frame`]
    /// returned an error, so that nothing received before the error is lost.
    pub fn flush(&mut self, replica: &mut Replica, now_ms: u64) -> SyncEvents {
        let mut events = SyncEvents::default();
        self.ingest_held(replica, now_ms, &mut events);
        events.pending = replica.pending_len();
        events
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// Counters.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// Whether the Hello exchange is done and the session is live.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// What the peer is believed to hold.
    pub fn peer_version_vector(&self) -> &VersionVector {
        &self.peer_known
    }

    /// Queues the Hello. Idempotent.
    pub fn start(&mut self, replica: &Replica) {
        if self.phase != Phase::New {
            return;
        }
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            space: self.space,
            heads: replica
                .heads()
                .into_iter()
                .map(|(author, count, head)| {
                    let mut head_prefix = [0u8; 8];
                    head_prefix.copy_from_slice(&head.as_bytes()[..8]);
                    HeadInfo {
                        author,
                        count,
                        head_prefix,
                    }
                })
                .collect(),
            forks: replica.forks().map(|p| (p.author, p.seq)).collect(),
        };
        self.queue(&Message::Hello(hello));
        self.phase = Phase::HelloSent;
    }

    /// Queues a Close and ends the session.
    pub fn close(&mut self, reason: &str) {
        if self.phase != Phase::Closed {
            let mut end = reason.len().min(1024);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let reason = reason[..end].to_owned();
            self.queue(&Message::Close(reason));
            self.phase = Phase::Closed;
        }
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let f = self.outbox.pop_front()?;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += f.len() as u64;
        Some(f)
    }

    /// Whether frames are waiting to be sent.
    pub fn has_transmit(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Sends everything the replica has that the peer is not known to have
    /// (live push), and fork proofs it lacks. Call after local authoring or
    /// after entries arrived through another session.
    pub fn push_local(&mut self, replica: &Replica) {
        if self.phase != Phase::Live {
            return;
        }
        self.send_missing(replica);
    }

    /// Queues a Have acknowledgement of what the replica holds.
    pub fn send_have(&mut self, replica: &Replica) {
        if self.phase == Phase::Live {
            self.queue(&Message::Have(replica.version_vector()));
        }
    }

    /// Handles one received frame. A returned error is fatal for the session
    /// (close the connection); per-entry problems are reported in the events.
    pub fn handle_frame(
        &mut self,
        frame: &[u8],
        replica: &mut Replica,
        now_ms: u64,
    ) -> Result<SyncEvents, SyncError> {
        if self.phase == Phase::Closed {
            return Err(SyncError::Closed);
        }
        self.stats.frames_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let msg = Message::decode(frame)?;
        let mut events = SyncEvents::default();
        let msg = match msg {
            Message::Chunk {
                id,
                index,
                total,
                data,
            } => match self.reassemble(id, index, total, data)? {
                Some(bytes) => Message::decode_inner(&bytes)?,
                None => return Ok(events),
            },
            other => other,
        };
        self.handle_message(msg, replica, now_ms, &mut events)?;
        events.pending = replica.pending_len();
        Ok(events)
    }

    fn reassemble(
        &mut self,
        id: u32,
        index: u32,
        total: u32,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, SyncError> {
        if index == 0 {
            if self.reassembly.is_some() {
                return Err(SyncError::Chunk(
                    "a new message began before the last ended",
                ));
            }
            self.reassembly = Some(Reassembly {
                id,
                total,
                next: 0,
                buf: Vec::new(),
            });
        }
        let Some(r) = self.reassembly.as_mut() else {
            return Err(SyncError::Chunk("a chunk arrived without its first piece"));
        };
        if r.id != id || r.total != total || r.next != index {
            self.reassembly = None;
            return Err(SyncError::Chunk("chunks out of order"));
        }
        if r.buf.len() + data.len() > MAX_MESSAGE {
            self.reassembly = None;
            return Err(SyncError::Chunk("reassembled message too large"));
        }
        r.buf.extend_from_slice(&data);
        r.next += 1;
        if r.next == r.total {
            let done = self.reassembly.take().map(|r| r.buf);
            return Ok(done);
        }
        Ok(None)
    }

    fn handle_message(
        &mut self,
        msg: Message,
        replica: &mut Replica,
        now_ms: u64,
        events: &mut SyncEvents,
    ) -> Result<(), SyncError> {
        if !matches!(msg, Message::Entries(_)) {
            // Keep the order of effects: entries received earlier first.
            self.ingest_held(replica, now_ms, events);
        }
        match msg {
            Message::Hello(h) => {
                if h.protocol != PROTOCOL_VERSION {
                    self.close(&format!(
                        "sync protocol {} here, {} there: update CivicBase on both devices",
                        PROTOCOL_VERSION, h.protocol
                    ));
                    return Err(SyncError::Protocol { found: h.protocol });
                }
                if h.space != self.space {
                    self.close("wrong space");
                    return Err(SyncError::WrongSpace {
                        expected: self.space,
                        found: h.space,
                    });
                }
                self.start(replica);
                events.hello = true;
                self.peer_known = h.version_vector();
                self.peer_forks = h.forks.iter().map(|(a, _)| *a).collect();
                // Heads that differ from ours at the same seq: send ours so
                // the peer can detect the fork.
                let mut conflicting = Vec::new();
                for head in &h.heads {
                    if head.count == 0 {
                        continue;
                    }
                    if let Some(mine) = replica.entry_at(&head.author, head.count - 1) {
                        if mine.as_bytes()[..8] != head.head_prefix {
                            if let Some(e) = replica.get(&mine) {
                                conflicting.push(e.encode());
                            }
                        }
                    }
                }
                self.phase = Phase::Live;
                self.send_missing(replica);
                if !conflicting.is_empty() {
                    self.queue_entries(conflicting);
                }
            }
            Message::Entries(raw) => {
                if self.phase != Phase::Live {
                    return Err(SyncError::BeforeHello("entries"));
                }
                self.stats.entries_received += raw.len() as u64;
                for bytes in raw {
                    match Entry::decode(&bytes) {
                        Ok(e) => self.held.push(e),
                        Err(e) => events.rejected.push(EntryRejection::Malformed(e)),
                    }
                }
                if !self.defer || self.held.len() >= MAX_HELD_ENTRIES {
                    self.ingest_held(replica, now_ms, events);
                }
            }
            Message::Have(vv) => {
                if self.phase != Phase::Live {
                    return Err(SyncError::BeforeHello("have"));
                }
                self.peer_known.merge(&vv);
            }
            Message::Fork { a, b } => {
                if self.phase != Phase::Live {
                    return Err(SyncError::BeforeHello("fork proof"));
                }
                match ForkProof::verify(&self.space, a, b).and_then(|p| {
                    let author = p.author;
                    replica.add_fork(p).map(|changed| (author, changed))
                }) {
                    Ok((author, changed)) => {
                        self.peer_forks.insert(author);
                        if changed {
                            events.forks.push(author);
                        }
                    }
                    Err(e) => events.rejected.push(EntryRejection::BadForkProof(e)),
                }
            }
            Message::Chunk { .. } => return Err(SyncError::Chunk("nested chunk")),
            Message::Close(reason) => {
                self.phase = Phase::Closed;
                events.closed = Some(reason);
            }
        }
        Ok(())
    }

    /// Ingests the held entries in one batch and records the outcome.
    fn ingest_held(&mut self, replica: &mut Replica, now_ms: u64, events: &mut SyncEvents) {
        if self.held.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.held);
        let ids: Vec<(EntryId, AuthorId, u64)> = entries
            .iter()
            .map(|e| (e.id(), e.header().author, e.header().seq))
            .collect();
        let forks_before = events.forks.len();
        for ((id, author, seq), res) in ids.into_iter().zip(replica.ingest_batch(entries, now_ms)) {
            match res {
                Ok(Ingested::Applied(applied)) => {
                    self.peer_known.raise(author, seq + 1);
                    events.applied.extend(applied);
                }
                Ok(Ingested::Duplicate) => self.peer_known.raise(author, seq + 1),
                Ok(Ingested::Pending) => {}
                Ok(Ingested::ForkDetected(a)) => events.forks.push(a),
                Err(source) => events.rejected.push(EntryRejection::Refused { id, source }),
            }
        }
        for (id, source) in replica.take_rejections() {
            events.rejected.push(EntryRejection::Refused { id, source });
        }
        if events.forks.len() > forks_before {
            self.send_forks(replica, true);
        }
    }

    fn send_missing(&mut self, replica: &Replica) {
        let missing = replica.missing_for(&self.peer_known);
        if !missing.is_empty() {
            for e in &missing {
                let h = e.header();
                self.peer_known.raise(h.author, h.seq + 1);
            }
            let raw: Vec<Vec<u8>> = missing.iter().map(|e| e.encode()).collect();
            self.queue_entries(raw);
        }
        self.send_forks(replica, false);
    }

    fn send_forks(&mut self, replica: &Replica, all: bool) {
        let proofs: Vec<ForkProof> = replica
            .forks()
            .filter(|p| all || !self.peer_forks.contains(&p.author))
            .cloned()
            .collect();
        for p in proofs {
            self.peer_forks.insert(p.author);
            self.queue(&Message::Fork { a: p.a, b: p.b });
        }
    }

    /// Packs entries into as few frames as fit, chunking oversized ones.
    fn queue_entries(&mut self, raw: Vec<Vec<u8>>) {
        self.stats.entries_sent += raw.len() as u64;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 2 + 3; // version, kind, count
        for e in raw {
            let cost = e.len() + varint_len(e.len());
            if size + cost > MAX_FRAME || batch.len() == MAX_ENTRIES_PER_FRAME {
                if !batch.is_empty() {
                    self.queue(&Message::Entries(std::mem::take(&mut batch)));
                }
                size = 5;
            }
            if size + cost > MAX_FRAME {
                self.queue(&Message::Entries(vec![e]));
                continue;
            }
            size += cost;
            batch.push(e);
        }
        if !batch.is_empty() {
            self.queue(&Message::Entries(batch));
        }
    }

    fn queue(&mut self, msg: &Message) {
        let frame = msg.encode();
        if frame.len() <= MAX_FRAME {
            self.outbox.push_back(frame);
            return;
        }
        let inner = msg.encode_inner();
        let total = inner.len().div_ceil(CHUNK_DATA) as u32;
        let id = self.next_chunk_id;
        self.next_chunk_id = self.next_chunk_id.wrapping_add(1);
        for (index, data) in inner.chunks(CHUNK_DATA).enumerate() {
            let chunk = Message::Chunk {
                id,
                index: index as u32,
                total,
                data: data.to_vec(),
            };
            self.outbox.push_back(chunk.encode());
        }
    }
}

fn varint_len(n: usize) -> usize {
    let mut w = Writer::default();
    w.varint(n as u64);
    w.len()
}
