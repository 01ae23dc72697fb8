//! A replica of one space: causal delivery, validation, authorization,
//! fork detection and materialised state.
//!
//! # Ingest pipeline
//!
//! 1. Stateless checks: the entry belongs to this space, its shape is sound,
//!    its payload matches the signed hash, its signature verifies strictly
//!    (in batches where possible), its timestamp is not too far ahead.
//! 2. Causal readiness: the backlink and every dependency must be applied.
//!    Otherwise the entry waits in a bounded pending set and is retried when
//!    what it waits for arrives.
//! 3. Fork check: a second, different entry at an author's seq is a fork. Both
//!    headers are kept as a proof, the author is flagged, and everything at or
//!    after the fork, and everything that depends on it, is left out of state.
//! 4. Admissibility: the operations are validated against the facts in the
//!    entry's causal past (its author's role there, the records it refers to,
//!    the sender's balance). An inadmissible entry is refused with a specific
//!    error and never stored or forwarded. Admissibility depends only on the
//!    causal past, so every peer decides alike.
//! 5. Effect: strong removal and demotion ([`authority`]). An entry by a
//!    removed member that is not in the causal past of the removal is kept
//!    in the log (other entries may depend on it) but has no effect, an
//!    entry by a demoted member acts with at most the new role, and nothing
//!    whose authority came only through an entry without effect has any.
//!    Concurrent removals are decided from the causal graph alone: seniority
//!    breaks a cycle, and what is left of one removes everyone in it.
//!
//! State is therefore a pure function of the set of stored entries and fork
//! proofs; [`Replica::state_hash`] is equal on every peer that has the same set.

mod authority;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{validate_backlink, Entry, EntryError, Header, MAX_DEPS};
use crate::hlc::{Clock, Timestamp};
use crate::id::{AuthorId, EntryId, Hash, SpaceId};
use crate::identity::{self, BatchItem, Keypair, SIGNATURE_LEN};
use crate::op::{decode_payload, encode_payload, Op};
use crate::op::{Role, MAX_CREDIT};
use crate::state::{CausalOrder, OpContext, OpError, Past, SpaceState, Stamp};

use crate::vv::VersionVector;
use authority::{AuthMeta, Resolution};

/// Tunable limits of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Most entries waiting for their causal dependencies.
    pub max_pending: usize,
    /// Most bytes of entries waiting for their causal dependencies.
    pub max_pending_bytes: usize,
    /// How far ahead of the local wall clock an entry's timestamp may be.
    pub max_skew_ms: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            max_pending: 20_000,
            max_pending_bytes: 64 * 1024 * 1024,
            max_skew_ms: 10 * 60 * 1000,
        }
    }
}

/// Why an entry was refused. Refused entries are not stored or forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IngestError {
    /// The entry itself is invalid (shape, payload hash, signature, space,
    /// backlink).
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The timestamp is too far ahead of this device's clock.
    #[error(
        "timestamp {ts:?} is more than {max_skew_ms} ms ahead of this device's clock ({now_ms})"
    )]
    FutureTimestamp {
        /// The entry's timestamp.
        ts: Timestamp,
        /// This device's wall clock.
        now_ms: u64,
        /// Allowed skew.
        max_skew_ms: u64,
    },
    /// The payload is not a list of operations.
    #[error("malformed payload: {0}")]
    Payload(#[source] DecodeError),
    /// The author's member was removed in the entry's own causal past.
    #[error("author {author:?} was removed from the space before writing this")]
    AuthorRemoved {
        /// The signing device.
        author: AuthorId,
    },
    /// An operation is not allowed.
    #[error("operation {index} refused: {source}")]
    Op {
        /// Index of the operation in the payload.
        index: usize,
        /// Why.
        #[source]
        source: OpError,
    },
    /// A dependency or the backlink is newer than the entry.
    #[error("timestamp is not after the timestamps of its dependencies")]
    TimestampBeforeDependency,
    /// The entry's author has forked and this entry continues a fork.
    #[error("author {author:?} forked at seq {seq}; this entry conflicts")]
    Forked {
        /// The forking author.
        author: AuthorId,
        /// The seq with two entries.
        seq: u64,
    },
}

/// What happened to an ingested entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored; the ids are this entry and any pending entries it released,
    /// in the order they were applied.
    Applied(Vec<EntryId>),
    /// Already stored.
    Duplicate,
    /// Waiting for a dependency.
    Pending,
    /// A fork was detected: this entry conflicts with a stored one.
    ForkDetected(AuthorId),
}

/// An entry header's canonical bytes and the author's signature over them.
pub type SignedHeader = (Vec<u8>, [u8; SIGNATURE_LEN]);

/// Proof that an author signed two different entries at one seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkProof {
    /// First signed header (the smaller id).
    pub a: SignedHeader,
    /// Second signed header.
    pub b: SignedHeader,
    /// The author.
    pub author: AuthorId,
    /// The seq.
    pub seq: u64,
}

/// Why a fork proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForkProofError {
    /// A header is malformed.
    #[error("malformed header in fork proof: {0}")]
    Decode(#[from] DecodeError),
    /// A signature does not verify.
    #[error("a fork proof signature does not verify")]
    Signature,
    /// The forking key is no device of a member of this space: a proof
    /// about it would be stored and forwarded for nothing.
    #[error("the forking key has no standing in this space")]
    NoStanding,
    /// The headers are not two different entries of one author at one seq in this space.
    #[error("the two headers do not prove a fork")]
    NotAFork,
}

impl ForkProof {
    /// Builds a proof from two entries' signed headers, checking nothing.
    fn new(
        x: (&[u8], &[u8; SIGNATURE_LEN]),
        y: (&[u8], &[u8; SIGNATURE_LEN]),
        author: AuthorId,
        seq: u64,
    ) -> Self {
        let (a, b) = if Hash::of(x.0) <= Hash::of(y.0) {
            (x, y)
        } else {
            (y, x)
        };
        ForkProof {
            a: (a.0.to_vec(), *a.1),
            b: (b.0.to_vec(), *b.1),
            author,
            seq,
        }
    }

    /// Verifies the proof for `space` and returns it with author and seq set
    /// from the headers.
    pub fn verify(
        space: &SpaceId,
        a: SignedHeader,
        b: SignedHeader,
    ) -> Result<ForkProof, ForkProofError> {
        let ha = Header::decode(&mut Reader::new(&a.0))?;
        let hb = Header::decode(&mut Reader::new(&b.0))?;
        let in_space = |h: &Header, bytes: &[u8]| {
            if h.is_genesis() {
                Hash::of(bytes) == *space
            } else {
                h.space == *space
            }
        };
        if ha.author != hb.author
            || ha.seq != hb.seq
            || a.0 == b.0
            || !in_space(&ha, &a.0)
            || !in_space(&hb, &b.0)
        {
            return Err(ForkProofError::NotAFork);
        }
        identity::verify(&ha.author, &a.0, &a.1).map_err(|_| ForkProofError::Signature)?;
        identity::verify(&hb.author, &b.0, &b.1).map_err(|_| ForkProofError::Signature)?;
        Ok(ForkProof::new(
            (&a.0, &a.1),
            (&b.0, &b.1),
            ha.author,
            ha.seq,
        ))
    }

    /// Canonical encoding: both signed headers, length-prefixed.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.a.0);
        w.raw(&self.a.1);
        w.bytes(&self.b.0);
        w.raw(&self.b.1);
    }

    /// Decodes the two signed headers (unverified).
    pub fn decode_parts(r: &mut Reader<'_>) -> Result<(SignedHeader, SignedHeader), DecodeError> {
        let ha = r
            .bytes("fork header", crate::entry::MAX_HEADER_LEN)?
            .to_vec();
        let sa = r.array()?;
        let hb = r
            .bytes("fork header", crate::entry::MAX_HEADER_LEN)?
            .to_vec();
        let sb = r.array()?;
        Ok(((ha, sa), (hb, sb)))
    }
}

/// Per-entry bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    /// Position in the log.
    pos: u32,
    aidx: u32,
    seq: u64,
    ts: Timestamp,
    /// Dense version-vector clock of the entry's causal past including itself,
    /// indexed by local author index.
    clock: Vec<u32>,
    /// Authority bookkeeping, for entries with membership operations.
    auth: Option<Box<AuthMeta>>,
}

impl Meta {
    /// Whether the entry at (`aidx`, `seq`) is in this entry's causal past
    /// or is this entry.
    fn covers(&self, aidx: u32, seq: u64) -> bool {
        self.clock
            .get(aidx as usize)
            .is_some_and(|&c| u64::from(c) > seq)
    }

    fn revokes(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| !a.revokes.is_empty())
    }
}

/// The causal order between stored entries, from their clocks.
struct Causality<'a> {
    index: &'a HashMap<AuthorId, u32>,
    chains: &'a [Chain],
    metas: &'a HashMap<EntryId, Meta>,
}

impl CausalOrder for Causality<'_> {
    fn precedes(&self, a: &Stamp, b: &Stamp) -> bool {
        if a.author == b.author {
            return a.seq < b.seq;
        }
        let (Some(&ai), Some(&bi)) = (self.index.get(&a.author), self.index.get(&b.author)) else {
            return false;
        };
        self.chains[bi as usize]
            .entries
            .get(b.seq as usize)
            .and_then(|id| self.metas.get(id))
            .is_some_and(|m| m.covers(ai, a.seq))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Chain {
    author: Option<AuthorId>,
    entries: Vec<EntryId>,
}

#[derive(Debug, Default)]
struct Pending {
    entries: HashMap<EntryId, Entry>,
    waiting: HashMap<EntryId, Vec<EntryId>>,
    /// Arrival order for eviction; may hold ids already released.
    order: VecDeque<EntryId>,
    bytes: usize,
    /// Waiting entries per author, so one author cannot crowd out the rest.
    per_author: HashMap<AuthorId, usize>,
}

impl Pending {
    fn insert(&mut self, entry: Entry, missing: EntryId) {
        let id = entry.id();
        self.bytes += entry.encoded_len();
        *self.per_author.entry(entry.header().author).or_default() += 1;
        self.entries.insert(id, entry);
        self.order.push_back(id);
        self.waiting.entry(missing).or_default().push(id);
    }

    /// Takes `id` out of the pending set; compacts the order queue when
    /// stale ids outnumber live ones.
    fn remove(&mut self, id: &EntryId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.encoded_len();
        let author = entry.header().author;
        if let Some(n) = self.per_author.get_mut(&author) {
            *n -= 1;
            if *n == 0 {
                self.per_author.remove(&author);
            }
        }
        if self.order.front() == Some(id) {
            self.order.pop_front();
        }
        if self.order.len() > 64 && self.order.len() > 2 * self.entries.len() {
            let entries = &self.entries;
            self.order.retain(|x| entries.contains_key(x));
        }
        Some(entry)
    }

    /// Evicts the oldest waiting entry; a later sync offers it again.
    fn evict_oldest(&mut self) {
        while let Some(old) = self.order.pop_front() {
            if self.remove(&old).is_some() {
                return;
            }
        }
    }
}

/// A conflict in the time-bank ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartConflicts {
    /// Members below their credit limit: (member, balance, limit).
    pub overdrawn: Vec<(AuthorId, i64, u64)>,
    /// Transfers by overdrawn members made without knowledge of each other.
    pub conflicting: Vec<Stamp>,
}

/// One space's replica: entries, indices and state. Pure and synchronous.
pub struct Replica {
    space: SpaceId,
    config: ReplicaConfig,
    chains: Vec<Chain>,
    author_index: HashMap<AuthorId, u32>,
    entries: HashMap<EntryId, Entry>,
    metas: HashMap<EntryId, Meta>,
    log: Vec<EntryId>,
    pending: Pending,
    forks: BTreeMap<AuthorId, ForkProof>,
    revocation_entries: Vec<EntryId>,
    resolution: Resolution,
    ineffective: HashSet<EntryId>,
    rejections: VecDeque<(EntryId, IngestError)>,
    plain: SpaceState,
    effective: Option<SpaceState>,
    clock: Clock,
}

impl core::fmt::Debug for Replica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("space", &self.space)
            .field("entries", &self.log.len())
            .field("pending", &self.pending.entries.len())
            .field("forks", &self.forks.len())
            .finish()
    }
}

/// Parameters of a new space.
#[derive(Debug, Clone)]
pub struct NewSpace {
    /// The space's name.
    pub name: String,
    /// The founder's display name.
    pub founder_name: String,
    /// Credit limit of members with none of their own.
    pub default_credit_limit: u64,
}

impl Replica {
    /// Creates a new space: signs its genesis entry with `keypair`.
    pub fn create(
        keypair: &Keypair,
        space: NewSpace,
        now_ms: u64,
        config: ReplicaConfig,
    ) -> Result<(Replica, Entry), IngestError> {
        let payload = encode_payload(&[Op::Genesis {
            name: space.name,
            founder_name: space.founder_name,
            default_credit_limit: space.default_credit_limit,
        }]);
        let genesis = Entry::sign(
            keypair,
            Hash::ZERO,
            0,
            None,
            Vec::new(),
            Timestamp::from_millis(now_ms),
            payload,
        );
        let replica = Replica::from_genesis(genesis.clone(), now_ms, config)?;
        Ok((replica, genesis))
    }

    /// A replica of the space whose genesis entry is `genesis`.
    pub fn from_genesis(
        genesis: Entry,
        now_ms: u64,
        config: ReplicaConfig,
    ) -> Result<Replica, IngestError> {
        let mut r = Replica::empty(genesis.id(), config);
        if !genesis.is_genesis() {
            return Err(IngestError::Entry(EntryError::SpaceShape));
        }
        r.ingest(genesis, now_ms)?;
        Ok(r)
    }

    /// An empty replica of `space`, waiting for its genesis entry.
    pub fn empty(space: SpaceId, config: ReplicaConfig) -> Replica {
        Replica {
            space,
            config,
            chains: Vec::new(),
            author_index: HashMap::new(),
            entries: HashMap::new(),
            metas: HashMap::new(),
            log: Vec::new(),
            pending: Pending::default(),
            forks: BTreeMap::new(),
            revocation_entries: Vec::new(),
            resolution: Resolution::default(),
            ineffective: HashSet::new(),
            rejections: VecDeque::new(),
            plain: SpaceState::default(),
            effective: None,
            clock: Clock::new(),
        }
    }

    /// The space id.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The materialised state (strong removal and forks applied).
    pub fn state(&self) -> &SpaceState {
        self.effective.as_ref().unwrap_or(&self.plain)
    }

    /// BLAKE3 over the state and the set of flagged (forked) authors.
    pub fn state_hash(&self) -> Hash {
        let mut w = Writer::default();
        w.raw(&self.state().to_bytes());
        w.varint(self.forks.len() as u64);
        for (a, p) in &self.forks {
            w.raw(a.as_bytes());
            w.varint(p.seq);
        }
        Hash::of(&w.finish())
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// Whether nothing is stored (not even the genesis entry).
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Number of entries waiting for dependencies.
    pub fn pending_len(&self) -> usize {
        self.pending.entries.len()
    }

    /// The stored entry with this id.
    pub fn get(&self, id: &EntryId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Whether an entry is stored.
    pub fn contains(&self, id: &EntryId) -> bool {
        self.entries.contains_key(id)
    }

    /// Stored entries in the order they were applied (a causal order).
    pub fn log(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.log.iter().filter_map(|id| self.entries.get(id))
    }

    /// Stored entries that have no effect on state (strong removal, forks,
    /// authority lost through them), for display.
    pub fn ineffective(&self) -> impl Iterator<Item = &EntryId> + '_ {
        self.ineffective.iter()
    }

    /// Authors flagged for forking, with the first forked seq.
    pub fn forks(&self) -> impl Iterator<Item = &ForkProof> + '_ {
        self.forks.values()
    }

    /// Takes the refusals of entries that had been waiting for a dependency
    /// and turned out invalid when it arrived (at most the last 256).
    pub fn take_rejections(&mut self) -> Vec<(EntryId, IngestError)> {
        self.rejections.drain(..).collect()
    }

    fn note_rejection(&mut self, id: EntryId, e: IngestError) {
        if self.rejections.len() == 256 {
            self.rejections.pop_front();
        }
        self.rejections.push_back((id, e));
    }

    /// The latest timestamp seen.
    pub fn last_timestamp(&self) -> Timestamp {
        self.clock.last()
    }

    /// The version vector of stored entries.
    pub fn version_vector(&self) -> VersionVector {
        self.chains
            .iter()
            .filter_map(|c| c.author.map(|a| (a, c.entries.len() as u64)))
            .collect()
    }

    /// Each author's entry count and latest entry id.
    pub fn heads(&self) -> Vec<(AuthorId, u64, EntryId)> {
        let mut v: Vec<_> = self
            .chains
            .iter()
            .filter_map(|c| Some((c.author?, c.entries.len() as u64, *c.entries.last()?)))
            .collect();
        v.sort_unstable_by_key(|h| h.0);
        v
    }

    /// The id of `author`'s entry at `seq`, if stored.
    pub fn entry_at(&self, author: &AuthorId, seq: u64) -> Option<EntryId> {
        let idx = *self.author_index.get(author)?;
        self.chains[idx as usize].entries.get(seq as usize).copied()
    }

    /// Stored entries that a peer with version vector `theirs` lacks, in
    /// causal order.
    pub fn missing_for(&self, theirs: &VersionVector) -> Vec<&Entry> {
        let mut picked: Vec<(usize, &Entry)> = Vec::new();
        for chain in &self.chains {
            let Some(author) = chain.author else { continue };
            let have = theirs.get(&author) as usize;
            for id in chain.entries.iter().skip(have) {
                if let (Some(e), Some(m)) = (self.entries.get(id), self.metas.get(id)) {
                    picked.push((m.pos as usize, e));
                }
            }
        }
        picked.sort_unstable_by_key(|(pos, _)| *pos);
        picked.into_iter().map(|(_, e)| e).collect()
    }

    // ------------------------------------------------------------------
    // Authoring
    // ------------------------------------------------------------------

    /// Signs a new entry carrying `ops` with `keypair` at wall time `now_ms`,
    /// validates and applies it. Nothing is stored if it is refused.
    pub fn author(
        &mut self,
        keypair: &Keypair,
        ops: Vec<Op>,
        now_ms: u64,
    ) -> Result<Entry, IngestError> {
        let author = keypair.author();
        let (seq, backlink, own_clock) = match self.author_index.get(&author) {
            Some(&i) => {
                let chain = &self.chains[i as usize];
                let last = chain.entries.last().copied();
                let clock = last
                    .and_then(|id| self.metas.get(&id))
                    .map(|m| m.clock.clone());
                (chain.entries.len() as u64, last, clock.unwrap_or_default())
            }
            None => (0, None, Vec::new()),
        };
        if let Some(p) = self.forks.get(&author) {
            return Err(IngestError::Forked { author, seq: p.seq });
        }
        // Depend on every other author's head not already in our own past.
        let mut deps: Vec<(Timestamp, EntryId)> = Vec::new();
        let mut floor = backlink
            .and_then(|b| self.metas.get(&b))
            .map_or(Timestamp::ZERO, |m| m.ts);
        for (i, chain) in self.chains.iter().enumerate() {
            if chain.author == Some(author) || chain.entries.is_empty() {
                continue;
            }
            // Build on nothing a flagged (forked) author wrote.
            if chain.author.is_some_and(|a| self.forks.contains_key(&a)) {
                continue;
            }
            let known = own_clock.get(i).copied().unwrap_or(0) as usize;
            if known < chain.entries.len() {
                if let Some(head) = chain.entries.last() {
                    let ts = self.metas.get(head).map_or(Timestamp::ZERO, |m| m.ts);
                    deps.push((ts, *head));
                }
            }
        }
        // Keep only heads not already in the causal past of a newer kept
        // head (a transitive reduction): the causal context is the same,
        // the header much smaller (one or two deps in a busy space instead
        // of one per author).
        deps.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        let mut covered = own_clock.clone();
        let mut kept = Vec::with_capacity(deps.len().min(MAX_DEPS));
        for (ts, id) in deps {
            let Some(m) = self.metas.get(&id) else {
                continue;
            };
            if covered.get(m.aidx as usize).copied().unwrap_or(0) as u64 > m.seq {
                continue;
            }
            if covered.len() < m.clock.len() {
                covered.resize(m.clock.len(), 0);
            }
            for (c, x) in covered.iter_mut().zip(&m.clock) {
                *c = (*c).max(*x);
            }
            kept.push((ts, id));
            if kept.len() == MAX_DEPS {
                break;
            }
        }
        let deps = kept;
        for (ts, _) in &deps {
            floor = floor.max(*ts);
        }
        let ts = self.clock.tick(now_ms, floor);
        let space = if self.log.is_empty() {
            Hash::ZERO
        } else {
            self.space
        };
        let entry = Entry::sign(
            keypair,
            space,
            seq,
            backlink,
            deps.into_iter().map(|(_, id)| id).collect(),
            ts,
            encode_payload(&ops),
        );
        match self.ingest_verified(entry.clone(), now_ms)? {
            Ingested::Applied(_) => Ok(entry),
            // An entry we just made on top of our own heads is always ready.
            other => unreachable!("own entry not applied: {other:?}"),
        }
    }

    // ------------------------------------------------------------------
    // Ingest
    // ------------------------------------------------------------------

    /// Validates and stores one entry received from elsewhere.
    pub fn ingest(&mut self, entry: Entry, now_ms: u64) -> Result<Ingested, IngestError> {
        self.precheck(&entry, now_ms)?;
        entry.validate().map_err(IngestError::Entry)?;
        self.ingest_verified(entry, now_ms)
    }

    /// Validates and stores many entries, verifying signatures in one batch.
    /// Returns one result per entry, in order.
    pub fn ingest_batch(
        &mut self,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> Vec<Result<Ingested, IngestError>> {
        let mut results: Vec<Option<Result<Ingested, IngestError>>> =
            Vec::with_capacity(entries.len());
        let mut to_verify = Vec::new();
        // The same entry twice in one batch (two peers sending the same
        // stream at once) is checked once: an identical second copy is a
        // duplicate of the first once that is applied, or refused for the
        // same reason. (Only identical bytes: another signature or payload
        // under the same header is checked on its own.)
        let mut first_copy: HashMap<EntryId, usize> = HashMap::with_capacity(entries.len());
        let mut copies: Vec<(usize, usize)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if self.entries.contains_key(&e.id()) {
                results.push(Some(Ok(Ingested::Duplicate)));
                continue;
            }
            match first_copy.get(&e.id()) {
                Some(&f)
                    if entries[f].signature() == e.signature()
                        && entries[f].payload() == e.payload() =>
                {
                    copies.push((i, f));
                    results.push(None);
                    continue;
                }
                Some(_) => {}
                None => {
                    first_copy.insert(e.id(), i);
                }
            }
            match self
                .precheck(e, now_ms)
                .and_then(|()| e.validate_shape().map_err(IngestError::Entry))
            {
                Ok(()) => {
                    to_verify.push(i);
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let items: Vec<BatchItem<'_>> = to_verify
            .iter()
            .map(|&i| BatchItem {
                author: &entries[i].header().author,
                message: entries[i].header_bytes(),
                signature: entries[i].signature(),
            })
            .collect();
        let verdicts = identity::verify_batch(&items);
        for (&i, v) in to_verify.iter().zip(verdicts) {
            if let Err(e) = v {
                results[i] = Some(Err(IngestError::Entry(EntryError::Signature(e))));
            }
        }
        for (copy, first) in copies {
            if let Some(Err(e)) = &results[first] {
                results[copy] = Some(Err(e.clone()));
            }
        }
        entries
            .into_iter()
            .zip(results)
            .map(|(e, r)| match r {
                Some(r) => r,
                None => self.ingest_verified(e, now_ms),
            })
            .collect()
    }

    /// Stores an entry whose signature was verified before, for example
    /// when it was first received and then persisted by this device. Every
    /// other check still runs. Never use this for bytes from elsewhere.
    pub fn ingest_trusted(&mut self, entry: Entry, now_ms: u64) -> Result<Ingested, IngestError> {
        self.ingest_verified(entry, now_ms)
    }

    fn precheck(&self, entry: &Entry, now_ms: u64) -> Result<(), IngestError> {
        entry.validate_space(&self.space)?;
        let ts = entry.header().timestamp;
        if ts.wall_ms() > now_ms.saturating_add(self.config.max_skew_ms) {
            return Err(IngestError::FutureTimestamp {
                ts,
                now_ms,
                max_skew_ms: self.config.max_skew_ms,
            });
        }
        Ok(())
    }

    /// Ingests an entry whose signature is known to be valid.
    fn ingest_verified(&mut self, entry: Entry, now_ms: u64) -> Result<Ingested, IngestError> {
        entry.validate_shape()?;
        self.precheck(&entry, now_ms)?;
        if self.entries.contains_key(&entry.id()) {
            return Ok(Ingested::Duplicate);
        }
        if let Some(forker) = self.check_fork(&entry) {
            return Ok(Ingested::ForkDetected(forker));
        }
        if let Some(missing) = self.first_missing(&entry) {
            self.park(entry, missing);
            return Ok(Ingested::Pending);
        }
        let id = self.apply_ready(entry)?;
        let mut applied = vec![id];
        self.release(id, now_ms, &mut applied);
        Ok(Ingested::Applied(applied))
    }

    /// A fork: another stored entry at the same (author, seq).
    fn check_fork(&mut self, entry: &Entry) -> Option<AuthorId> {
        let h = entry.header();
        let other = self.entry_at(&h.author, h.seq)?;
        if other == entry.id() {
            return None;
        }
        let stored = self.entries.get(&other)?;
        let proof = ForkProof::new(
            (stored.header_bytes(), stored.signature()),
            (entry.header_bytes(), entry.signature()),
            h.author,
            h.seq,
        );
        self.insert_fork(proof);
        Some(h.author)
    }

    /// Records a verified fork proof from elsewhere. Returns whether it
    /// changed anything. A proof about a key that is no device of a member
    /// here is refused: storing, forwarding and recomputing for it would
    /// cost everyone for nothing, and at most one proof per device is kept.
    pub fn add_fork(&mut self, proof: ForkProof) -> Result<bool, ForkProofError> {
        if !self.plain.members.devices.contains_key(&proof.author) {
            return Err(ForkProofError::NoStanding);
        }
        Ok(self.insert_fork(proof))
    }

    fn insert_fork(&mut self, proof: ForkProof) -> bool {
        let better = self
            .forks
            .get(&proof.author)
            .is_none_or(|p| proof.seq < p.seq);
        if better {
            self.forks.insert(proof.author, proof);
            self.recompute_effective();
        }
        better
    }

    fn first_missing(&self, entry: &Entry) -> Option<EntryId> {
        let h = entry.header();
        if let Some(b) = &h.backlink {
            if !self.entries.contains_key(b) {
                return Some(*b);
            }
        }
        if !h.is_genesis() && self.log.is_empty() {
            return Some(self.space);
        }
        h.deps
            .iter()
            .find(|d| !self.entries.contains_key(d))
            .copied()
    }

    fn park(&mut self, entry: Entry, missing: EntryId) {
        if self.pending.entries.contains_key(&entry.id()) {
            return;
        }
        // One author may fill at most a sixteenth of the pending set, so a
        // flood of entries with dependencies that never arrive cannot push
        // out everyone else's.
        let per_author_cap = (self.config.max_pending / 16).max(64);
        let author = entry.header().author;
        if self.pending.per_author.get(&author).copied().unwrap_or(0) >= per_author_cap {
            return;
        }
        let size = entry.encoded_len();
        while !self.pending.entries.is_empty()
            && (self.pending.entries.len() >= self.config.max_pending
                || self.pending.bytes + size > self.config.max_pending_bytes)
        {
            self.pending.evict_oldest();
        }
        self.pending.insert(entry, missing);
    }

    fn release(&mut self, arrived: EntryId, now_ms: u64, applied: &mut Vec<EntryId>) {
        let mut queue = VecDeque::from([arrived]);
        while let Some(dep) = queue.pop_front() {
            let Some(waiters) = self.pending.waiting.remove(&dep) else {
                continue;
            };
            for w in waiters {
                let Some(entry) = self.pending.remove(&w) else {
                    continue;
                };
                if self.entries.contains_key(&w) || self.check_fork(&entry).is_some() {
                    continue;
                }
                if let Some(missing) = self.first_missing(&entry) {
                    self.park(entry, missing);
                    continue;
                }
                let _ = now_ms;
                match self.apply_ready(entry) {
                    Ok(id) => {
                        applied.push(id);
                        queue.push_back(id);
                    }
                    Err(e) => self.note_rejection(w, e),
                }
            }
        }
    }

    /// Validates a causally ready entry and stores and applies it.
    fn apply_ready(&mut self, entry: Entry) -> Result<EntryId, IngestError> {
        let h = entry.header();
        let id = entry.id();
        let author = h.author;
        if let Some(b) = &h.backlink {
            let prev = self
                .entries
                .get(b)
                .ok_or(IngestError::Entry(EntryError::BacklinkMismatch))?;
            validate_backlink(h, b, prev.header())?;
        } else if self.entry_at(&author, 0).is_some() {
            // A second seq-0 entry is a fork, caught by check_fork; this is
            // unreachable for well-formed input but kept as a guard.
            return Err(IngestError::Forked { author, seq: 0 });
        }
        // Clock: pointwise max of the parents' clocks.
        let mut clock: Vec<u32> = Vec::new();
        for parent in h.backlink.iter().chain(h.deps.iter()) {
            if let Some(m) = self.metas.get(parent) {
                if m.ts >= h.timestamp {
                    return Err(IngestError::TimestampBeforeDependency);
                }
                if clock.len() < m.clock.len() {
                    clock.resize(m.clock.len(), 0);
                }
                for (c, p) in clock.iter_mut().zip(&m.clock) {
                    *c = (*c).max(*p);
                }
            }
        }
        let ops = decode_payload(entry.payload()).map_err(IngestError::Payload)?;
        let aidx = match self.author_index.get(&author) {
            Some(&i) => i,
            None => self.chains.len() as u32,
        };
        if clock.len() <= aidx as usize {
            clock.resize(aidx as usize + 1, 0);
        }
        clock[aidx as usize] = (h.seq + 1) as u32;
        let is_genesis = entry.is_genesis();

        // Admissibility against the plain (all stored facts) state, and the
        // authority bookkeeping of membership operations.
        let auth = {
            let order = Causality {
                index: &self.author_index,
                chains: &self.chains,
                metas: &self.metas,
            };
            let past = Past::new(&clock, &self.author_index, author, h.seq, &order);
            check_ops(
                &self.plain,
                &self.space,
                id,
                h,
                &ops,
                &past,
                is_genesis,
                Role::Admin,
            )?;
            self.auth_meta(id, &ops, &past).map(Box::new)
        };

        // Store.
        if aidx as usize == self.chains.len() {
            self.chains.push(Chain {
                author: Some(author),
                entries: Vec::new(),
            });
            self.author_index.insert(author, aidx);
        }
        self.chains[aidx as usize].entries.push(id);
        let meta = Meta {
            pos: self.log.len() as u32,
            aidx,
            seq: h.seq,
            ts: h.timestamp,
            clock,
            auth,
        };
        self.clock.observe(h.timestamp);
        let revokes = meta.revokes();
        // A join with an invite that now has more joins than uses may take
        // effect away from an earlier one: decided by a recompute too.
        let overuses = meta.auth.as_ref().and_then(|a| a.joins).is_some_and(|k| {
            self.plain
                .members
                .invites
                .get(&k)
                .is_some_and(|i| i.joins.len() >= i.uses() as usize)
        });
        // A second issuing of an invite key can lower its uses, and with
        // them which joins count: decided by a recompute too, so that the
        // outcome does not depend on the order the issuings arrived in.
        let reissues = ops.iter().any(|op| match op {
            Op::Invite { key, .. } => self.plain.members.invites.contains_key(key),
            _ => false,
        });
        let recompute = revokes || overuses || reissues;

        // Effect under the revocations in force, decided before the plain
        // state changes so that a first exclusion can start from a copy.
        let verdict = if recompute {
            None
        } else {
            let order = Causality {
                index: &self.author_index,
                chains: &self.chains,
                metas: &self.metas,
            };
            let past = Past::new(&meta.clock, &self.author_index, author, h.seq, &order);
            let member = match meta.auth.as_deref() {
                Some(a) => a.member,
                None => self
                    .plain
                    .members
                    .devices
                    .get(&author)
                    .and_then(|d| d.in_past(&past))
                    .map(|(_, m)| m),
            };
            let joins = meta.auth.as_ref().and_then(|a| a.joins);
            let st = self.standing(&id, &meta, member, joins);
            let eff = self.effective.as_ref().unwrap_or(&self.plain);
            Some(match st.excluded {
                Some(_) => None,
                None => check_ops(eff, &self.space, id, h, &ops, &past, is_genesis, st.cap)
                    .ok()
                    .map(|()| st.cap),
            })
        };
        if matches!(verdict, Some(None)) && self.effective.is_none() {
            self.effective = Some(self.plain.clone());
        }
        {
            let order = Causality {
                index: &self.author_index,
                chains: &self.chains,
                metas: &self.metas,
            };
            let past = Past::new(&meta.clock, &self.author_index, author, h.seq, &order);
            apply_ops(
                &mut self.plain,
                &self.space,
                id,
                h,
                &ops,
                &past,
                is_genesis,
                Role::Admin,
            );
            if let (Some(verdict), Some(eff)) = (verdict, self.effective.as_mut()) {
                match verdict {
                    Some(cap) => apply_ops(eff, &self.space, id, h, &ops, &past, is_genesis, cap),
                    None => {
                        self.ineffective.insert(id);
                    }
                }
            }
        }
        self.metas.insert(id, meta);
        self.entries.insert(id, entry);
        self.log.push(id);
        if revokes {
            self.revocation_entries.push(id);
        }
        if recompute {
            self.recompute_effective();
        }
        Ok(id)
    }

    fn causality(&self) -> Causality<'_> {
        Causality {
            index: &self.author_index,
            chains: &self.chains,
            metas: &self.metas,
        }
    }

    // ------------------------------------------------------------------
    // Views needing the causal structure
    // ------------------------------------------------------------------

    /// Time-bank conflicts: members below their credit limit, and their
    /// transfers that were made concurrently (without knowledge of each other).
    pub fn heart_conflicts(&self) -> HeartConflicts {
        let state = self.state();
        let hs = &state.hearts;
        let default = state.members.default_credit_limit;
        let mut overdrawn = Vec::new();
        let mut conflicting = Vec::new();
        for (member, &balance) in &hs.balances {
            let limit = hs.limit(member, default);
            // Limits are bounded at validation; the clamp keeps the sign flip
            // exact even for a value that was not.
            if balance >= -(limit.min(MAX_CREDIT) as i64) {
                continue;
            }
            overdrawn.push((*member, balance, limit));
            let outgoing: Vec<Stamp> = hs
                .by_member
                .get(member)
                .into_iter()
                .flatten()
                .filter(|s| hs.transfers.get(s).is_some_and(|t| t.from == *member))
                .copied()
                .collect();
            for (i, a) in outgoing.iter().enumerate() {
                let concurrent = outgoing.iter().enumerate().any(|(j, b)| {
                    i != j && !self.happened_before(a, b) && !self.happened_before(b, a)
                });
                if concurrent {
                    conflicting.push(*a);
                }
            }
        }
        HeartConflicts {
            overdrawn,
            conflicting,
        }
    }

    /// Whether the entry at `a` is in the causal past of the entry at `b`
    /// (or is the same entry).
    fn happened_before(&self, a: &Stamp, b: &Stamp) -> bool {
        (a.author == b.author && a.seq == b.seq) || self.causality().precedes(a, b)
    }

    // ------------------------------------------------------------------
    // Snapshots
    // ------------------------------------------------------------------

    /// A snapshot of everything but the entries themselves: indices, clocks
    /// and state. With the stored entries it restores the replica without
    /// verifying or re-applying any of them.
    pub fn snapshot(&self) -> Snapshot {
        let repr = SnapshotRepr {
            space: self.space,
            chains: self.chains.clone(),
            log: self.log.clone(),
            metas: self
                .log
                .iter()
                .filter_map(|id| self.metas.get(id).cloned())
                .collect(),
            forks: self
                .forks
                .values()
                .map(|p| SnapshotFork {
                    a: p.a.0.clone(),
                    sig_a: p.a.1.to_vec(),
                    b: p.b.0.clone(),
                    sig_b: p.b.1.to_vec(),
                })
                .collect(),
            revocation_entries: self.revocation_entries.clone(),
            in_force: self
                .resolution
                .in_force
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            overused: {
                let mut v: Vec<_> = self.resolution.overused.iter().copied().collect();
                v.sort_unstable();
                v
            },
            ineffective: {
                let mut v: Vec<_> = self.ineffective.iter().copied().collect();
                v.sort_unstable();
                v
            },
            plain: self.plain.clone(),
            effective: self.effective.clone(),
            clock: self.clock.last(),
        };
        let mut bytes = vec![SNAPSHOT_VERSION];
        bytes.extend(postcard::to_allocvec(&repr).unwrap_or_default());
        Snapshot {
            entries: self.log.len() as u64,
            bytes,
        }
    }

    /// Restores a replica from a snapshot and the entries it covers (in any
    /// order). Fails if the snapshot is unreadable or an entry is missing, in
    /// which case the caller rebuilds from the entries instead.
    pub fn restore(
        snapshot: &Snapshot,
        entries: impl IntoIterator<Item = Entry>,
        config: ReplicaConfig,
    ) -> Result<Replica, SnapshotError> {
        Self::restore_partial(snapshot, entries, config).map(|(r, _)| r)
    }

    /// Like [`Replica::restore`], but `entries` may hold more than the
    /// snapshot covers (for example a whole stored log, whose order can
    /// differ from the order this replica applied them in): the entries the
    /// snapshot does not cover are returned, in their input order, for the
    /// caller to ingest after it.
    pub fn restore_partial(
        snapshot: &Snapshot,
        entries: impl IntoIterator<Item = Entry>,
        config: ReplicaConfig,
    ) -> Result<(Replica, Vec<Entry>), SnapshotError> {
        let repr: SnapshotRepr = match snapshot.bytes.split_first() {
            Some((&SNAPSHOT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|_| SnapshotError::Corrupt)?
            }
            Some((&v, _)) => return Err(SnapshotError::Version(v)),
            None => return Err(SnapshotError::Corrupt),
        };
        if repr.metas.len() != repr.log.len() {
            return Err(SnapshotError::Corrupt);
        }
        let covered: HashSet<EntryId> = repr.log.iter().copied().collect();
        let mut by_id: HashMap<EntryId, Entry> = HashMap::with_capacity(covered.len());
        let mut rest = Vec::new();
        for e in entries {
            if covered.contains(&e.id()) {
                by_id.insert(e.id(), e);
            } else {
                rest.push(e);
            }
        }
        let mut r = Replica::empty(repr.space, config);
        for (id, meta) in repr.log.iter().zip(repr.metas) {
            let e = by_id.remove(id).ok_or(SnapshotError::MissingEntry(*id))?;
            r.entries.insert(*id, e);
            r.metas.insert(*id, meta);
        }
        for (i, c) in repr.chains.iter().enumerate() {
            if let Some(a) = c.author {
                r.author_index.insert(a, i as u32);
            }
        }
        r.chains = repr.chains;
        r.log = repr.log;
        for f in repr.forks {
            let (Ok(sa), Ok(sb)) = (<[u8; 64]>::try_from(f.sig_a), <[u8; 64]>::try_from(f.sig_b))
            else {
                return Err(SnapshotError::Corrupt);
            };
            let p = ForkProof::verify(&r.space, (f.a, sa), (f.b, sb))
                .map_err(|_| SnapshotError::Corrupt)?;
            r.forks.insert(p.author, p);
        }
        r.revocation_entries = repr.revocation_entries;
        r.resolution.in_force = repr.in_force.into_iter().collect();
        r.resolution.overused = repr.overused.into_iter().collect();
        r.reindex_resolution();
        r.ineffective = repr.ineffective.into_iter().collect();
        r.plain = repr.plain;
        r.effective = repr.effective;
        r.clock.observe(repr.clock);
        Ok((r, rest))
    }

    /// Rebuilds a replica from entries in a causal order (for example the
    /// order a store returns them in), verifying everything.
    pub fn rebuild(
        space: SpaceId,
        entries: impl IntoIterator<Item = Entry>,
        now_ms: u64,
        config: ReplicaConfig,
    ) -> (Replica, Vec<(EntryId, IngestError)>) {
        let mut r = Replica::empty(space, config);
        let mut rejected = Vec::new();
        let batch: Vec<Entry> = entries.into_iter().collect();
        let ids: Vec<EntryId> = batch.iter().map(Entry::id).collect();
        for (id, res) in ids.into_iter().zip(r.ingest_batch(batch, now_ms)) {
            if let Err(e) = res {
                rejected.push((id, e));
            }
        }
        (r, rejected)
    }
}

fn stamp_of(h: &Header, index: usize) -> Stamp {
    Stamp {
        ts: h.timestamp,
        author: h.author,
        seq: h.seq,
        op: index as u32,
    }
}

/// Resolves the author's membership in the entry's past and validates every
/// operation against `state` before any is applied.
// One argument per fact of the entry being checked; bundling them would
// only move the same list into a struct built at every call.
#[allow(clippy::too_many_arguments)]
fn check_ops(
    state: &SpaceState,
    space: &SpaceId,
    id: EntryId,
    h: &Header,
    ops: &[Op],
    past: &Past<'_>,
    is_genesis: bool,
    cap: Role,
) -> Result<(), IngestError> {
    let (member, role) = match state.members.resolve(&h.author, past) {
        Some((m, r)) => (Some(m), Some(r)),
        None => {
            let removed = state.members.removed_in(&h.author, past);
            if removed {
                return Err(IngestError::AuthorRemoved { author: h.author });
            }
            (None, None)
        }
    };
    for (index, op) in ops.iter().enumerate() {
        let cx = OpContext {
            space: *space,
            entry_id: id,
            stamp: stamp_of(h, index),
            ops,
            member,
            role,
            past,
            is_genesis,
            cap,
        };
        state
            .validate(op, &cx)
            .map_err(|source| IngestError::Op { index, source })?;
    }
    Ok(())
}

// One argument per fact of the entry being checked; bundling them would
// only move the same list into a struct built at every call.
#[allow(clippy::too_many_arguments)]
fn apply_ops(
    state: &mut SpaceState,
    space: &SpaceId,
    id: EntryId,
    h: &Header,
    ops: &[Op],
    past: &Past<'_>,
    is_genesis: bool,
    cap: Role,
) {
    let (member, role) = match state.members.resolve(&h.author, past) {
        Some((m, r)) => (Some(m), Some(r)),
        None => (None, None),
    };
    for (index, op) in ops.iter().enumerate() {
        let cx = OpContext {
            space: *space,
            entry_id: id,
            stamp: stamp_of(h, index),
            ops,
            member,
            role,
            past,
            is_genesis,
            cap,
        };
        state.apply(op, &cx);
    }
}

/// Snapshot format version.
pub const SNAPSHOT_VERSION: u8 = 2;

/// A persisted snapshot of a replica (without entry bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// How many log entries it covers (the first `entries` of the log).
    pub entries: u64,
    /// Encoded snapshot.
    pub bytes: Vec<u8>,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Unreadable bytes.
    #[error("the snapshot is corrupt")]
    Corrupt,
    /// Written by another version.
    #[error("snapshot version {0} is not supported")]
    Version(u8),
    /// An entry the snapshot covers is not in the store.
    #[error("entry {0:?} covered by the snapshot is missing")]
    MissingEntry(EntryId),
}

/// A fork proof in a snapshot (signatures as vectors: serde has no 64-byte arrays).
#[derive(Serialize, Deserialize)]
struct SnapshotFork {
    a: Vec<u8>,
    sig_a: Vec<u8>,
    b: Vec<u8>,
    sig_b: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotRepr {
    space: SpaceId,
    chains: Vec<Chain>,
    log: Vec<EntryId>,
    metas: Vec<Meta>,
    forks: Vec<SnapshotFork>,
    revocation_entries: Vec<EntryId>,
    in_force: Vec<(EntryId, u32)>,
    overused: Vec<EntryId>,
    ineffective: Vec<EntryId>,
    plain: SpaceState,
    effective: Option<SpaceState>,
    clock: Timestamp,
}
