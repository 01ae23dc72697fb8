//! # CivicBase engine
//!
//! The engine owns a device's data: its identity, its spaces (one
//! [`Replica`] each), their persistence in a [`Store`], and sync sessions
//! over byte pipes. It answers the UI's [`civicbase_proto`] requests and
//! reports changes as events. It is generic over the store and performs no
//! I/O of its own beyond the store's futures: the browser runs it in a Web
//! Worker on IndexedDB, a native peer on its own store, tests on the
//! in-memory store.
//!
//! ## Transport seam
//!
//! A *pipe* is anything that carries bytes both ways for one space: a
//! BroadcastChannel between tabs, a WebRTC data channel, a file. The driver
//! opens a pipe ([`Engine::open_pipe`]), feeds it what arrives
//! ([`Engine::pipe_input`]), sends what [`Engine::pipe_output`] returns, and
//! closes it when the transport goes away ([`Engine::close_pipe`]). Each pipe
//! runs one [`SyncSession`]; entries that arrive on one pipe are persisted
//! and pushed to every other pipe of the space.
//!
//! ## Losing nothing
//!
//! Every entry applied in memory is appended to the store. If the store
//! refuses (a full quota), the entry stays in memory, is retried before every
//! later write, and the user is told what happened and what to do; the entry
//! still syncs to peers meanwhile.
//!
//! ```
//! use civicbase_core::store::{conformance::block_on, MemoryStore};
//! use civicbase_engine::{Engine, FixedEnv};
//! use civicbase_proto::{Request, RequestBody, ResponseBody, Event};
//!
//! let env = FixedEnv::new(1_700_000_000_000, 7);
//! let mut engine = block_on(Engine::open(MemoryStore::new(), &env)).unwrap();
//! let reply = block_on(engine.handle(Request { id: 1, body: RequestBody::CreateIdentity { name: "Alice".into() } }, &env));
//! assert!(matches!(reply, Event::Response { id: 1, result: Ok(ResponseBody::Identity(_)) }));
//! ```

pub mod mesh;
mod views;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use civicbase_core::bundle;
use civicbase_core::id::{base32_decode, base32_encode, Hash};
use civicbase_core::op::{decode_payload, Op, Role};
use civicbase_core::replica::{IngestError, NewSpace, Replica, ReplicaConfig};
use civicbase_core::state::members::join_statement;
use civicbase_core::store::{load_replica, LoadError, Store};
use civicbase_core::sync::{SyncError, SyncEvents, SyncSession};
use civicbase_core::{AuthorId, Entry, EntryId, Keypair, SpaceId, VersionVector};
use civicbase_proto::{
    ErrorCode, ErrorInfo, Event, IdentityInfo, ImportSummary, Request, RequestBody, ResponseBody,
    SpaceSummary, StatusInfo,
};

/// Where the engine gets time and randomness (core reads neither).
pub trait Env {
    /// Wall-clock time, Unix ms.
    fn now_ms(&self) -> u64;
    /// 32 bytes from a cryptographically secure random source.
    fn random_seed(&self) -> [u8; 32];
}

/// An [`Env`] with a settable clock and a seeded, deterministic "random"
/// source, for tests and examples. Never use it for real keys.
#[derive(Debug)]
pub struct FixedEnv {
    now: Cell<u64>,
    counter: Cell<u64>,
    seed: u64,
}

impl FixedEnv {
    /// A clock at `now_ms` and a source seeded with `seed`.
    pub fn new(now_ms: u64, seed: u64) -> Self {
        Self {
            now: Cell::new(now_ms),
            counter: Cell::new(0),
            seed,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
}

impl Env for FixedEnv {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn random_seed(&self) -> [u8; 32] {
        let n = self.counter.get();
        self.counter.set(n + 1);
        *Hash::derive(
            "civicbase test env",
            &[&self.seed.to_le_bytes(), &n.to_le_bytes()],
        )
        .as_bytes()
    }
}

/// Store errors the engine can explain to the user.
pub trait StorageError: std::error::Error + 'static {
    /// Whether the error is a full storage quota.
    fn is_quota_exceeded(&self) -> bool {
        false
    }
}

impl StorageError for civicbase_core::store::MemoryStoreError {}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError<E: std::error::Error + 'static> {
    /// The store failed.
    #[error("storage failed: {0}")]
    Store(#[source] E),
    /// The stored identity is unreadable.
    #[error("the stored identity is damaged")]
    CorruptIdentity,
}

/// A pipe's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipeId(pub u64);

struct Pipe {
    space: SpaceId,
    session: SyncSession,
    label: String,
    via: String,
    last_sync_ms: Option<u64>,
    /// Set while the pipe waits to say Hello (see [`Engine::open_pipe`]).
    waiting: Option<Waiting>,
}

/// A pipe that has not said Hello yet, and what its peer sent meanwhile.
#[derive(Default)]
struct Waiting {
    frames: Vec<Vec<u8>>,
    bytes: usize,
    /// When the engine first saw it waiting (ms).
    since_ms: Option<u64>,
}

/// Longest a pipe waits for another pipe's initial sync before it says
/// Hello anyway (a peer that stalls must not keep the others out).
const WAIT_MAX_MS: u64 = 5_000;
/// Most a waiting pipe keeps of what its peer sends; more and it says Hello.
const WAIT_MAX_FRAMES: usize = 16;
const WAIT_MAX_BYTES: usize = 1 << 20;

struct Slot {
    replica: Replica,
    /// Entries applied in memory that the store has not accepted yet.
    unsaved: Vec<Entry>,
    /// Entries persisted since the last snapshot.
    since_snapshot: u64,
    /// How many of the store's log entries this engine has read.
    store_pos: u64,
    /// When a pipe last delivered entries (ms), to tell a stream in
    /// progress from a quiet space.
    last_received_ms: u64,
    /// When the space was last used, on the engine's use counter (for
    /// choosing which space to unload).
    last_used: u64,
}

impl Slot {
    /// A slot holding `replica`, all of whose entries are already stored
    /// (`store_pos` of them read from the store).
    fn new(replica: Replica, store_pos: u64) -> Self {
        Slot {
            replica,
            unsaved: Vec::new(),
            since_snapshot: 0,
            store_pos,
            last_received_ms: 0,
            last_used: 0,
        }
    }

    /// A slot for a space whose data has not arrived yet.
    fn waiting(space: SpaceId, config: ReplicaConfig) -> Self {
        Slot::new(Replica::empty(space, config), 0)
    }
}

const IDENTITY_KEY: &str = "identity";
const PENDING_JOIN_PREFIX: &str = "pending-join:";
/// Spaces kept as replicas without membership (an anchor peer): ids, 32
/// bytes each.
const REPLICATED_KEY: &str = "replicated-spaces";
const SNAPSHOT_EVERY: u64 = 500;
/// Entries stored since the last snapshot before a space that is still
/// receiving a stream gets one.
const STREAMING_SNAPSHOT_EVERY: u64 = 20_000;
/// A space that received nothing for this long is not streaming.
const QUIET_MS: u64 = 1_000;
const INVITE_PREFIX: &str = "join1";
/// How long after a proposal's deadline a coordinator's or admin's device
/// closes it when its proposer has not.
pub const CLOSE_GRACE_MS: u64 = 15 * 60 * 1000;

/// This device's identity.
pub struct Identity {
    key: Keypair,
    name: String,
}

/// The engine. See the crate docs.
pub struct Engine<S: Store> {
    store: S,
    config: ReplicaConfig,
    identity: Option<Identity>,
    spaces: BTreeMap<SpaceId, Slot>,
    pending_joins: BTreeMap<SpaceId, [u8; 32]>,
    pipes: BTreeMap<PipeId, Pipe>,
    next_pipe: u64,
    events: Vec<Event>,
    status: StatusInfo,
    /// Inside a batch (see [`Engine::begin_batch`]).
    batching: bool,
    /// Pipes whose sessions hold received entries until the batch ends.
    held: std::collections::BTreeSet<PipeId>,
    /// Pipes closed during a batch while they held entries.
    closed_held: BTreeMap<PipeId, Pipe>,
    /// Spaces whose pipe input in this batch is not yet stored.
    dirty: std::collections::BTreeSet<SpaceId>,
    /// Spaces stored on this device but not in memory (see
    /// [`Engine::open_bounded`]).
    dormant: std::collections::BTreeSet<SpaceId>,
    /// Most spaces kept in memory, if bounded.
    resident_limit: Option<usize>,
    /// Counts uses of spaces, for [`Slot::last_used`].
    uses: u64,
}

type Reply = Result<ResponseBody, ErrorInfo>;

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo {
        code,
        message: message.into(),
    }
}

fn storage_err<E: StorageError>(e: &E) -> ErrorInfo {
    if e.is_quota_exceeded() {
        err(
            ErrorCode::QuotaExceeded,
            "This device's storage is full. Nothing you did is lost: it is kept in this tab and \
             sent to other devices when they connect. Free space (export a bundle and remove \
             other sites' data) or keep this tab open until another device has synced.",
        )
    } else {
        err(ErrorCode::Storage, format!("Storage failed: {e}"))
    }
}

fn refused(e: &IngestError) -> ErrorInfo {
    err(ErrorCode::Refused, e.to_string())
}

/// Encodes an identity backup: `civicbase-key1-` + base32(seed ‖ name).
pub fn encode_backup(seed: &[u8; 32], name: &str) -> String {
    let mut raw = seed.to_vec();
    raw.extend_from_slice(name.as_bytes());
    let check = Hash::derive("civicbase 2026 backup", &[&raw]);
    raw.extend_from_slice(&check.as_bytes()[..4]);
    format!("civicbase-key1-{}", base32_encode(&raw))
}

/// Decodes [`encode_backup`]'s output.
pub fn decode_backup(text: &str) -> Option<([u8; 32], String)> {
    let body = text.trim().strip_prefix("civicbase-key1-")?;
    let raw = base32_decode(&body.to_ascii_lowercase())?;
    if raw.len() < 36 {
        return None;
    }
    let (data, check) = raw.split_at(raw.len() - 4);
    if Hash::derive("civicbase 2026 backup", &[data]).as_bytes()[..4] != *check {
        return None;
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&data[..32]);
    let name = String::from_utf8(data[32..].to_vec()).ok()?;
    Some((seed, name))
}

/// The invite link fragment for `space` and an invite secret seed.
pub fn invite_fragment(space: &SpaceId, secret: &[u8; 32]) -> String {
    format!(
        "{INVITE_PREFIX}-{}-{}",
        base32_encode(space.as_bytes()),
        base32_encode(secret)
    )
}

/// Parses [`invite_fragment`]'s output.
pub fn parse_invite(fragment: &str) -> Option<(SpaceId, [u8; 32])> {
    let f = fragment.trim().trim_start_matches('#');
    let f = f.strip_prefix("join=").unwrap_or(f);
    let mut parts = f.strip_prefix(INVITE_PREFIX)?.strip_prefix('-')?.split('-');
    let space = base32_decode(parts.next()?)?;
    let secret = base32_decode(parts.next()?)?;
    if parts.next().is_some() || space.len() != 32 || secret.len() != 32 {
        return None;
    }
    let mut s = [0u8; 32];
    s.copy_from_slice(&space);
    let mut k = [0u8; 32];
    k.copy_from_slice(&secret);
    Some((Hash(s), k))
}

impl<S: Store> Engine<S>
where
    S::Error: StorageError,
{
    /// Opens the engine on `store`: loads the identity and every space.
    pub async fn open(store: S, env: &dyn Env) -> Result<Self, OpenError<S::Error>> {
        Self::open_with(store, env, None).await
    }

    /// Opens the engine keeping at most `resident` spaces in memory, for a
    /// peer that serves many spaces (the anchor). No space is loaded at
    /// open: each is loaded when a peer or a request needs it
    /// ([`Engine::wake`]; the links do it on their own), and
    /// [`Engine::maintain`] writes a snapshot of the least recently used
    /// spaces without connections and unloads them while more than
    /// `resident` are in memory. Spaces with open sessions are never
    /// unloaded, so memory is bounded by the spaces in use at once, not by
    /// all the spaces served. [`Engine::space_ids`] lists every space,
    /// loaded or not.
    pub async fn open_bounded(
        store: S,
        env: &dyn Env,
        resident: usize,
    ) -> Result<Self, OpenError<S::Error>> {
        Self::open_with(store, env, Some(resident.max(1))).await
    }

    async fn open_with(
        store: S,
        env: &dyn Env,
        resident_limit: Option<usize>,
    ) -> Result<Self, OpenError<S::Error>> {
        let mut engine = Engine {
            store,
            config: ReplicaConfig::default(),
            identity: None,
            spaces: BTreeMap::new(),
            pending_joins: BTreeMap::new(),
            pipes: BTreeMap::new(),
            next_pipe: 0,
            events: Vec::new(),
            status: StatusInfo::default(),
            batching: false,
            held: std::collections::BTreeSet::new(),
            closed_held: BTreeMap::new(),
            dirty: std::collections::BTreeSet::new(),
            dormant: std::collections::BTreeSet::new(),
            resident_limit: None,
            uses: 0,
        };
        if let Some(bytes) = engine
            .store
            .secret(IDENTITY_KEY)
            .await
            .map_err(OpenError::Store)?
        {
            if bytes.len() < 32 {
                return Err(OpenError::CorruptIdentity);
            }
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&bytes[..32]);
            let name =
                String::from_utf8(bytes[32..].to_vec()).map_err(|_| OpenError::CorruptIdentity)?;
            engine.identity = Some(Identity {
                key: Keypair::from_seed(seed),
                name,
            });
        }
        engine.resident_limit = resident_limit;
        for space in engine.store.spaces().await.map_err(OpenError::Store)? {
            if resident_limit.is_some() {
                engine.dormant.insert(space);
            } else {
                engine
                    .load_space(space, env)
                    .await
                    .map_err(OpenError::Store)?;
            }
        }
        for space in engine.replicated().await.map_err(OpenError::Store)? {
            if engine.dormant.contains(&space) {
                continue;
            }
            let config = engine.config;
            engine
                .spaces
                .entry(space)
                .or_insert_with(|| Slot::waiting(space, config));
        }
        Ok(engine)
    }

    /// Loads a space that is stored but not in memory. Returns whether the
    /// space is on this device (loaded now or before). Unloads others if
    /// that puts more than the resident limit in memory.
    pub async fn wake(&mut self, space: &SpaceId, env: &dyn Env) -> Result<bool, ErrorInfo> {
        if !self.dormant.contains(space) {
            self.touch(space);
            return Ok(self.spaces.contains_key(space));
        }
        self.load_space(*space, env)
            .await
            .map_err(|e| storage_err(&e))?;
        self.dormant.remove(space);
        let config = self.config;
        self.spaces
            .entry(*space)
            .or_insert_with(|| Slot::waiting(*space, config));
        self.touch(space);
        self.evict(Some(space)).await?;
        Ok(true)
    }

    /// Loads the space whose signaling topic is `topic_`, if it is on this
    /// device. Returns it.
    pub async fn wake_topic(
        &mut self,
        topic_: &str,
        env: &dyn Env,
    ) -> Result<Option<SpaceId>, ErrorInfo> {
        let Some(space) = self
            .space_ids()
            .into_iter()
            .find(|s| mesh::topic(s) == topic_)
        else {
            return Ok(None);
        };
        Ok(self.wake(&space, env).await?.then_some(space))
    }

    /// Spaces in memory.
    pub fn resident(&self) -> usize {
        self.spaces.len()
    }

    fn touch(&mut self, space: &SpaceId) {
        self.uses += 1;
        let uses = self.uses;
        if let Some(slot) = self.spaces.get_mut(space) {
            slot.last_used = uses;
        }
    }

    /// Unloads the least recently used spaces without sessions, unsaved
    /// entries or a pending join (and other than `keep`) while more than the
    /// resident limit are in memory, each after a snapshot so that loading
    /// it again is quick.
    async fn evict(&mut self, keep: Option<&SpaceId>) -> Result<(), ErrorInfo> {
        let Some(limit) = self.resident_limit else {
            return Ok(());
        };
        while self.spaces.len() > limit {
            let busy: std::collections::BTreeSet<SpaceId> =
                self.pipes.values().map(|p| p.space).collect();
            let Some(victim) = self
                .spaces
                .iter()
                .filter(|(id, slot)| {
                    Some(*id) != keep
                        && !busy.contains(id)
                        && slot.unsaved.is_empty()
                        && !self.pending_joins.contains_key(id)
                        && !self.dirty.contains(id)
                })
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(id, _)| *id)
            else {
                return Ok(());
            };
            let slot = &self.spaces[&victim];
            if slot.since_snapshot > 0 && !slot.replica.is_empty() {
                let snap = slot.replica.snapshot();
                self.store
                    .put_snapshot(&victim, &snap)
                    .await
                    .map_err(|e| storage_err(&e))?;
            }
            self.spaces.remove(&victim);
            self.dormant.insert(victim);
        }
        Ok(())
    }

    async fn replicated(&self) -> Result<Vec<SpaceId>, S::Error> {
        let bytes = self.store.secret(REPLICATED_KEY).await?.unwrap_or_default();
        Ok(bytes
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(Hash))
            .collect())
    }

    /// Housekeeping (the driver calls it every few seconds): writes a
    /// snapshot of every space with at least 500 entries stored since its
    /// last one, so the next start replays a short tail. Every snapshot
    /// rewrites the whole state, so while entries are still streaming in
    /// (some arrived in the last second) a space gets one only once its
    /// tail reaches 20,000 entries (replaying that many stored entries,
    /// which are not verified again, takes a fraction of a second): a first
    /// sync writes its snapshot when it is over, not while it competes with
    /// the transfer.
    pub async fn maintain(&mut self, env: &dyn Env) -> Result<(), ErrorInfo> {
        self.release_all_waiting(env).await;
        self.evict(None).await?;
        let now = env.now_ms();
        let due: Vec<SpaceId> = self
            .spaces
            .iter()
            .filter(|(_, slot)| {
                let quiet = now.saturating_sub(slot.last_received_ms) >= QUIET_MS;
                slot.since_snapshot >= SNAPSHOT_EVERY
                    && slot.unsaved.is_empty()
                    && (quiet || slot.since_snapshot >= STREAMING_SNAPSHOT_EVERY)
            })
            .map(|(id, _)| *id)
            .collect();
        for space in due {
            let Some(slot) = self.spaces.get_mut(&space) else {
                continue;
            };
            let snap = slot.replica.snapshot();
            slot.since_snapshot = 0;
            self.store
                .put_snapshot(&space, &snap)
                .await
                .map_err(|e| storage_err(&e))?;
        }
        Ok(())
    }

    /// Closes the proposals whose deadline has passed and that this device
    /// may close, so that their tally becomes final: the proposer's device
    /// as soon as the deadline is past, a coordinator's or an admin's once
    /// [`CLOSE_GRACE_MS`] more have passed without a close (the proposer may
    /// be offline). Spaces not in memory are left until they are loaded.
    /// Call it where writes are serialised (the worker holds its write lock).
    /// Returns the errors of closes that were refused.
    pub async fn close_due(&mut self, env: &dyn Env) -> Vec<ErrorInfo> {
        let Some(device) = self.device() else {
            return Vec::new();
        };
        let now = env.now_ms();
        let mut due: Vec<(SpaceId, civicbase_core::RecordId)> = Vec::new();
        for (space, slot) in &self.spaces {
            let state = slot.replica.state();
            let Some(me) = state.members.member_of(&device) else {
                continue;
            };
            let Some(role) = state.members.current_role(&me) else {
                continue;
            };
            for (id, p) in &state.decisions.proposals {
                if p.is_final() || now <= p.deadline_ms {
                    continue;
                }
                let mine = p.author == me && role >= Role::Member;
                let late =
                    role >= Role::Coordinator && now > p.deadline_ms.saturating_add(CLOSE_GRACE_MS);
                if mine || late {
                    due.push((*space, *id));
                }
            }
        }
        let mut errors = Vec::new();
        for (space, proposal) in due {
            if let Err(e) = self
                .act(space, vec![Op::CloseProposal { proposal }], env)
                .await
            {
                errors.push(e);
            }
        }
        errors
    }

    /// Loads the spaces another engine on the same store (another tab of
    /// this device) added since this one opened. Returns them.
    pub async fn load_new_spaces(&mut self, env: &dyn Env) -> Result<Vec<SpaceId>, ErrorInfo> {
        let stored = self.store.spaces().await.map_err(|e| storage_err(&e))?;
        let mut new = Vec::new();
        for space in stored {
            if self.spaces.contains_key(&space) || self.dormant.contains(&space) {
                continue;
            }
            self.load_space(space, env)
                .await
                .map_err(|e| storage_err(&e))?;
            if self.spaces.contains_key(&space) {
                new.push(space);
            }
        }
        Ok(new)
    }

    /// Keeps a replica of `space` without joining it: its entries are
    /// stored and synced as they arrive from peers (an always-on anchor
    /// peer does this for the spaces it serves). Remembered across restarts.
    /// Returns whether the space was new to this device.
    pub async fn replicate(&mut self, space: SpaceId) -> Result<bool, ErrorInfo> {
        let mut list = self.replicated().await.map_err(|e| storage_err(&e))?;
        if !list.contains(&space) {
            list.push(space);
            let bytes: Vec<u8> = list.iter().flat_map(|s| s.0).collect();
            self.store
                .put_secret(REPLICATED_KEY, &bytes)
                .await
                .map_err(|e| storage_err(&e))?;
        }
        let config = self.config;
        let new = !self.spaces.contains_key(&space) && !self.dormant.contains(&space);
        if !self.dormant.contains(&space) {
            self.spaces
                .entry(space)
                .or_insert_with(|| Slot::waiting(space, config));
        }
        Ok(new)
    }

    async fn load_space(&mut self, space: SpaceId, env: &dyn Env) -> Result<(), S::Error> {
        match load_replica(&self.store, &space, env.now_ms(), self.config).await {
            Ok((replica, _report)) => {
                let store_pos = self.store.log_len(&space).await?;
                self.spaces.insert(space, Slot::new(replica, store_pos));
            }
            Err(LoadError::Empty) => {}
            Err(LoadError::Store(e)) => return Err(e),
        }
        let key = format!("{PENDING_JOIN_PREFIX}{}", space.to_hex());
        if let Some(secret) = self.store.secret(&key).await? {
            if let Ok(s) = <[u8; 32]>::try_from(secret.as_slice()) {
                if !secret.iter().all(|b| *b == 0) {
                    self.pending_joins.insert(space, s);
                    self.spaces
                        .entry(space)
                        .or_insert_with(|| Slot::waiting(space, self.config));
                }
            }
        }
        Ok(())
    }

    /// Events produced since the last call (changes, alerts).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The replica of a space, if on this device.
    pub fn replica(&self, space: &SpaceId) -> Option<&Replica> {
        self.spaces.get(space).map(|s| &s.replica)
    }

    /// Spaces on this device, in memory or not.
    pub fn space_ids(&self) -> Vec<SpaceId> {
        let mut ids: Vec<SpaceId> = self.spaces.keys().copied().collect();
        ids.extend(self.dormant.iter().copied());
        ids.sort_unstable();
        ids
    }

    /// The version vector of a space, read from the store if the space is
    /// not in memory.
    pub async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, ErrorInfo> {
        match self.spaces.get(space) {
            Some(slot) => Ok(slot.replica.version_vector()),
            None => self
                .store
                .version_vector(space)
                .await
                .map_err(|e| storage_err(&e)),
        }
    }

    /// This device's author id.
    pub fn device(&self) -> Option<AuthorId> {
        self.identity.as_ref().map(|i| i.key.author())
    }

    /// Updates the parts of the status the driver knows (storage estimate,
    /// persistence, tabs, leadership) and reports it.
    pub fn set_platform_status(&mut self, update: impl FnOnce(&mut StatusInfo)) {
        update(&mut self.status);
        let status = self.status();
        self.events.push(Event::Status(status));
    }

    /// Current status.
    pub fn status(&self) -> StatusInfo {
        let mut s = self.status.clone();
        s.pending = self
            .spaces
            .values()
            .map(|slot| slot.replica.pending_len() as u64 + slot.unsaved.len() as u64)
            .sum();
        s.peers = self
            .pipes
            .values()
            .map(|p| civicbase_proto::PeerInfo {
                label: p.label.clone(),
                via: p.via.clone(),
                last_sync_ms: p.last_sync_ms,
                unsent: self.spaces.get(&p.space).map_or(0, |slot| {
                    let theirs = p.session.peer_version_vector();
                    slot.replica
                        .version_vector()
                        .iter()
                        .map(|(a, n)| n.saturating_sub(theirs.get(a)))
                        .sum()
                }),
            })
            .collect();
        s
    }

    /// Handles one request from the UI.
    pub async fn handle(&mut self, req: Request, env: &dyn Env) -> Event {
        let result = self.dispatch(req.body, env).await;
        Event::Response { id: req.id, result }
    }

    async fn dispatch(&mut self, body: RequestBody, env: &dyn Env) -> Reply {
        if let RequestBody::CreateInvite { space, .. }
        | RequestBody::Act { space, .. }
        | RequestBody::View { space, .. }
        | RequestBody::ExportBundle { space } = &body
        {
            self.wake(&Hash(*space), env).await?;
        }
        match body {
            RequestBody::Init => Ok(ResponseBody::Ready {
                identity: self.identity_info(),
                spaces: self.summaries(),
                status: self.status(),
            }),
            RequestBody::CreateIdentity { name } => {
                let seed = env.random_seed();
                self.set_identity(seed, name).await
            }
            RequestBody::RestoreIdentity { backup } => {
                let (seed, name) = decode_backup(&backup).ok_or_else(|| {
                    err(
                        ErrorCode::BadFile,
                        "This is not a CivicBase identity backup, or it was mistyped.",
                    )
                })?;
                self.set_identity(seed, name).await
            }
            RequestBody::ExportIdentity => {
                let id = self.identity()?;
                Ok(ResponseBody::Backup(encode_backup(
                    &id.key.seed(),
                    &id.name,
                )))
            }
            RequestBody::CreateSpace {
                name,
                default_credit_limit,
            } => self.create_space(name, default_credit_limit, env).await,
            RequestBody::CreateInvite {
                space,
                role,
                valid_hours,
                uses,
            } => {
                let role = role_from(role)?;
                let secret = env.random_seed();
                let invite = Keypair::from_seed(secret);
                let expires_ms =
                    env.now_ms() + u64::from(valid_hours.clamp(1, 24 * 365)) * 3_600_000;
                self.act(
                    Hash(space),
                    vec![Op::Invite {
                        key: invite.author(),
                        role,
                        expires_ms,
                        uses,
                    }],
                    env,
                )
                .await?;
                Ok(ResponseBody::Invite {
                    fragment: invite_fragment(&Hash(space), &secret),
                })
            }
            RequestBody::JoinSpace { fragment } => self.join(&fragment, env).await,
            RequestBody::Act { space, payload } => {
                let ops = decode_payload(&payload)
                    .map_err(|e| err(ErrorCode::InvalidInput, format!("Malformed action: {e}")))?;
                let id = self.act(Hash(space), ops, env).await?;
                Ok(ResponseBody::Done { entry: id.0 })
            }
            RequestBody::View { space, query } => {
                let slot = self.spaces.get(&Hash(space)).ok_or_else(unknown_space)?;
                let device = self.device();
                Ok(ResponseBody::View(views::view(
                    &slot.replica,
                    device,
                    &query,
                    env.now_ms(),
                )))
            }
            RequestBody::ExportBundle { space } => {
                let id = self.identity()?;
                let slot = self.spaces.get(&Hash(space)).ok_or_else(unknown_space)?;
                let bytes =
                    bundle::export(&slot.replica, &id.key, &VersionVector::new(), env.now_ms());
                let name = views::space_name(&slot.replica);
                Ok(ResponseBody::Bundle {
                    file_name: format!("{}.civicbase", file_stem(&name)),
                    bytes,
                })
            }
            RequestBody::ImportBundle { bytes } => self.import(&bytes, env).await,
            RequestBody::Status => Ok(ResponseBody::Status(self.status())),
            RequestBody::LinkUp { .. }
            | RequestBody::LinkTopic { .. }
            | RequestBody::LinkData { .. }
            | RequestBody::LinkDown { .. } => Err(err(
                ErrorCode::InvalidInput,
                "Link messages go to the driver's links, not to requests.",
            )),
        }
    }

    fn identity(&self) -> Result<&Identity, ErrorInfo> {
        self.identity.as_ref().ok_or_else(|| {
            err(
                ErrorCode::NoIdentity,
                "Create or restore your identity first.",
            )
        })
    }

    fn identity_info(&self) -> Option<IdentityInfo> {
        self.identity.as_ref().map(|i| {
            let a = i.key.author();
            IdentityInfo {
                device: a.0,
                device_text: a.to_string(),
                fingerprint: a.fingerprint(),
                name: i.name.clone(),
            }
        })
    }

    fn summaries(&self) -> Vec<SpaceSummary> {
        let device = self.device();
        self.spaces
            .iter()
            .map(|(id, slot)| views::summary(id, &slot.replica, device))
            .collect()
    }

    async fn set_identity(&mut self, seed: [u8; 32], name: String) -> Reply {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > civicbase_core::op::MAX_NAME {
            return Err(err(
                ErrorCode::InvalidInput,
                "Enter a name of 1 to 120 characters.",
            ));
        }
        if self.identity.is_some() {
            return Err(err(
                ErrorCode::InvalidInput,
                "This device already has an identity.",
            ));
        }
        let mut secret = seed.to_vec();
        secret.extend_from_slice(name.as_bytes());
        self.store
            .put_secret(IDENTITY_KEY, &secret)
            .await
            .map_err(|e| storage_err(&e))?;
        self.identity = Some(Identity {
            key: Keypair::from_seed(seed),
            name,
        });
        self.identity_info()
            .map(ResponseBody::Identity)
            .ok_or_else(|| err(ErrorCode::Internal, "identity missing"))
    }

    async fn create_space(&mut self, name: String, limit: u64, env: &dyn Env) -> Reply {
        let id = self.identity()?;
        let (replica, genesis) = Replica::create(
            &id.key,
            NewSpace {
                name: name.trim().to_owned(),
                founder_name: id.name.clone(),
                default_credit_limit: limit,
            },
            env.now_ms(),
            self.config,
        )
        .map_err(|e| err(ErrorCode::InvalidInput, e.to_string()))?;
        let space = replica.space();
        let mut slot = Slot::new(replica, 0);
        slot.unsaved.push(genesis);
        self.spaces.insert(space, slot);
        self.flush(&space).await?;
        self.events.push(Event::Changed { space: space.0 });
        let device = self.device();
        let slot = self.spaces.get(&space).ok_or_else(unknown_space)?;
        Ok(ResponseBody::Space(views::summary(
            &space,
            &slot.replica,
            device,
        )))
    }

    /// Signs `ops` as this device in `space`, persists and pushes them.
    pub async fn act(
        &mut self,
        space: SpaceId,
        ops: Vec<Op>,
        env: &dyn Env,
    ) -> Result<EntryId, ErrorInfo> {
        self.catch_up(&space, env).await?;
        let key = &self
            .identity
            .as_ref()
            .ok_or_else(|| {
                err(
                    ErrorCode::NoIdentity,
                    "Create or restore your identity first.",
                )
            })?
            .key;
        let slot = self.spaces.get_mut(&space).ok_or_else(unknown_space)?;
        if slot.replica.is_empty() {
            return Err(err(
                ErrorCode::UnknownSpace,
                "This space's data has not arrived on this device yet.",
            ));
        }
        let entry = slot
            .replica
            .author(key, ops, env.now_ms())
            .map_err(|e| refused(&e))?;
        let id = entry.id();
        slot.unsaved.push(entry);
        self.after_change(&space, env).await;
        Ok(id)
    }

    /// Reads entries other tabs appended to the shared store since this
    /// engine last looked, so that this device's next entry builds on them
    /// (two tabs of one device must never write the same seq).
    pub async fn catch_up(&mut self, space: &SpaceId, env: &dyn Env) -> Result<usize, ErrorInfo> {
        let Some(slot) = self.spaces.get(space) else {
            return Ok(0);
        };
        let from = slot.store_pos;
        let fresh = self
            .store
            .entries_from(space, from)
            .await
            .map_err(|e| storage_err(&e))?;
        let Some(slot) = self.spaces.get_mut(space) else {
            return Ok(0);
        };
        slot.store_pos = from + fresh.len() as u64;
        let mut applied = 0;
        for e in fresh {
            // These were verified by the tab that stored them.
            if let Ok(civicbase_core::Ingested::Applied(ids)) =
                slot.replica.ingest_trusted(e, env.now_ms())
            {
                applied += ids.len();
            }
        }
        if applied > 0 {
            self.events.push(Event::Changed { space: space.0 });
            self.push_all(space);
            self.try_pending_join(space, env).await;
        }
        Ok(applied)
    }

    /// Persists what is unsaved, pushes to pipes, reports the change.
    async fn after_change(&mut self, space: &SpaceId, env: &dyn Env) {
        if let Err(e) = self.flush(space).await {
            self.events.push(Event::Alert(e));
        }
        self.push_all(space);
        self.events.push(Event::Changed { space: space.0 });
        self.try_pending_join(space, env).await;
    }

    /// Writes unsaved entries of `space` to the store (snapshots are
    /// [`Engine::maintain`]'s).
    async fn flush(&mut self, space: &SpaceId) -> Result<(), ErrorInfo> {
        let Some(slot) = self.spaces.get_mut(space) else {
            return Ok(());
        };
        if slot.unsaved.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut slot.unsaved);
        match self.store.append(space, &batch).await {
            Ok(()) => {
                let n = batch.len() as u64;
                // Advance the read position only if nobody else (another tab)
                // appended meanwhile and none of ours was a duplicate;
                // otherwise the next catch-up reads the difference.
                let len = self.store.log_len(space).await.ok();
                let slot = self.spaces.get_mut(space).ok_or_else(unknown_space)?;
                slot.since_snapshot += n;
                if len == Some(slot.store_pos + n) {
                    slot.store_pos += n;
                }
                for p in self.spaces[space].replica.forks() {
                    let bytes = civicbase_core::store::encode_fork_proof(p);
                    if let Err(e) = self.store.put_fork_proof(space, &bytes).await {
                        return Err(storage_err(&e));
                    }
                }
                Ok(())
            }
            Err(e) => {
                if let Some(slot) = self.spaces.get_mut(space) {
                    let mut kept = batch;
                    kept.append(&mut slot.unsaved);
                    slot.unsaved = kept;
                }
                Err(storage_err(&e))
            }
        }
    }

    /// Entries applied in memory but not yet accepted by the store.
    pub fn unsaved(&self, space: &SpaceId) -> usize {
        self.spaces.get(space).map_or(0, |s| s.unsaved.len())
    }

    /// Entries applied in memory but not yet accepted by the store, over
    /// every space.
    pub fn unsaved_total(&self) -> usize {
        self.spaces.values().map(|s| s.unsaved.len()).sum()
    }

    /// Retries writing everything unsaved (call when storage may have room).
    pub async fn retry_unsaved(&mut self) -> Result<(), ErrorInfo> {
        let spaces: Vec<SpaceId> = self.spaces.keys().copied().collect();
        for s in spaces {
            self.flush(&s).await?;
        }
        Ok(())
    }

    async fn join(&mut self, fragment: &str, env: &dyn Env) -> Reply {
        self.identity()?;
        let (space, secret) = parse_invite(fragment).ok_or_else(|| {
            err(
                ErrorCode::InvalidInput,
                "This invite link is damaged or incomplete. Ask for a new one.",
            )
        })?;
        self.wake(&space, env).await?;
        if let Some(slot) = self.spaces.get(&space) {
            let device = self.device();
            if let Some(d) = device {
                if slot.replica.state().members.member_of(&d).is_some() {
                    return Ok(ResponseBody::Space(views::summary(
                        &space,
                        &slot.replica,
                        device,
                    )));
                }
            }
        }
        self.store
            .put_secret(&format!("{PENDING_JOIN_PREFIX}{}", space.to_hex()), &secret)
            .await
            .map_err(|e| storage_err(&e))?;
        self.pending_joins.insert(space, secret);
        let config = self.config;
        self.spaces
            .entry(space)
            .or_insert_with(|| Slot::waiting(space, config));
        match self.try_join_now(&space, env).await? {
            true => {
                let device = self.device();
                let slot = self.spaces.get(&space).ok_or_else(unknown_space)?;
                Ok(ResponseBody::Space(views::summary(
                    &space,
                    &slot.replica,
                    device,
                )))
            }
            false => Ok(ResponseBody::JoinPending { space: space.0 }),
        }
    }

    async fn try_pending_join(&mut self, space: &SpaceId, env: &dyn Env) {
        if self.pending_joins.contains_key(space) {
            if let Err(e) = self.try_join_now(space, env).await {
                self.events.push(Event::Alert(e));
            }
        }
    }

    /// Authors the Join if the invite has arrived. Returns whether joined.
    async fn try_join_now(&mut self, space: &SpaceId, env: &dyn Env) -> Result<bool, ErrorInfo> {
        let Some(secret) = self.pending_joins.get(space).copied() else {
            return Ok(false);
        };
        let id = self.identity()?;
        let device = id.key.author();
        let name = id.name.clone();
        let invite = Keypair::from_seed(secret);
        let Some(slot) = self.spaces.get(space) else {
            return Ok(false);
        };
        let members = &slot.replica.state().members;
        if members.member_of(&device).is_some() {
            self.pending_joins.remove(space);
            return Ok(true);
        }
        if !members.invites.contains_key(&invite.author()) {
            return Ok(false);
        }
        let proof = invite.sign(join_statement(space, &device).as_bytes());
        let op = Op::Join {
            invite: invite.author(),
            proof,
            name,
        };
        // Clear the pending join before acting so a refusal is not retried
        // forever; the error tells the user why.
        self.pending_joins.remove(space);
        let key = format!("{PENDING_JOIN_PREFIX}{}", space.to_hex());
        let _ = self.store.put_secret(&key, &[0u8; 32]).await;
        Box::pin(self.act(*space, vec![op], env)).await?;
        Ok(true)
    }

    async fn import(&mut self, bytes: &[u8], env: &dyn Env) -> Reply {
        let file = bundle::decode(bytes).map_err(|e| err(ErrorCode::BadFile, e.to_string()))?;
        let space = file.space;
        self.wake(&space, env).await?;
        let config = self.config;
        let slot = self
            .spaces
            .entry(space)
            .or_insert_with(|| Slot::waiting(space, config));
        let report = bundle::import(&mut slot.replica, &file, env.now_ms())
            .map_err(|e| err(ErrorCode::BadFile, e.to_string()))?;
        for id in &report.added {
            if let Some(e) = slot.replica.get(id) {
                slot.unsaved.push(e.clone());
            }
        }
        let summary = ImportSummary {
            space: space.0,
            space_name: views::space_name(&slot.replica),
            added: report.added.len() as u64,
            duplicates: report.duplicates as u64,
            pending: report.pending as u64,
            rejected: report
                .rejected
                .iter()
                .map(|(id, why)| match id {
                    Some(id) => format!("{}: {why}", id.short()),
                    None => why.clone(),
                })
                .collect(),
        };
        if slot.replica.is_empty() && !self.pending_joins.contains_key(&space) {
            self.spaces.remove(&space);
        } else {
            self.after_change(&space, env).await;
        }
        Ok(ResponseBody::Imported(summary))
    }

    // ------------------------------------------------------------------
    // Pipes
    // ------------------------------------------------------------------

    /// Opens a sync session for `space` over a new pipe. `None` if the space
    /// is not in memory (not on this device, or, for a bounded engine, not
    /// woken: see [`Engine::wake`]).
    ///
    /// A device that has none of a space's entries yet (it just joined)
    /// says Hello on one pipe at a time: every peer answers a Hello with
    /// everything the device lacks, so greeting three peers at once would
    /// download the space three times. The other pipes wait until the first
    /// peer has sent everything it had, until no greeted pipe is left, or
    /// for at most a few seconds; then they say Hello and receive only
    /// what is still missing.
    pub fn open_pipe(&mut self, space: SpaceId, label: String, via: String) -> Option<PipeId> {
        self.touch(&space);
        let slot = self.spaces.get(&space)?;
        let mut session = SyncSession::new(space);
        let busy = slot.replica.is_empty()
            && self
                .pipes
                .values()
                .any(|p| p.space == space && p.waiting.is_none());
        let waiting = if busy {
            Some(Waiting::default())
        } else {
            session.start(&slot.replica);
            None
        };
        let id = PipeId(self.next_pipe);
        self.next_pipe += 1;
        self.pipes.insert(
            id,
            Pipe {
                space,
                session,
                label,
                via,
                last_sync_ms: None,
                waiting,
            },
        );
        Some(id)
    }

    /// Whether the pipe waits to say Hello (see [`Engine::open_pipe`]).
    pub fn pipe_waiting(&self, pipe: PipeId) -> bool {
        self.pipes.get(&pipe).is_some_and(|p| p.waiting.is_some())
    }

    /// Lets the waiting pipes of `space` say Hello once nothing is gained by
    /// waiting any more, and feeds them what their peers sent meanwhile.
    async fn release_waiting(&mut self, space: SpaceId, env: &dyn Env) {
        // Runs after every frame: nothing to do (and no version vector to
        // build) unless a pipe of this space waits.
        if !self
            .pipes
            .values()
            .any(|p| p.space == space && p.waiting.is_some())
        {
            return;
        }
        let now = env.now_ms();
        let Some(slot) = self.spaces.get(&space) else {
            return;
        };
        let have = slot.replica.version_vector();
        // Nothing to wait for once every greeted peer has answered and
        // everything it had is here (or no greeted pipe is left).
        let streams_done = self
            .pipes
            .values()
            .filter(|p| p.space == space && p.waiting.is_none())
            .all(|p| p.session.is_live() && have.dominates(p.session.peer_version_vector()));
        let mut due = Vec::new();
        for (id, p) in self.pipes.iter_mut().filter(|(_, p)| p.space == space) {
            let Some(w) = p.waiting.as_mut() else {
                continue;
            };
            let since = *w.since_ms.get_or_insert(now);
            if streams_done
                || now.saturating_sub(since) >= WAIT_MAX_MS
                || w.frames.len() > WAIT_MAX_FRAMES
                || w.bytes > WAIT_MAX_BYTES
            {
                due.push(*id);
            }
        }
        for id in due {
            let Some(p) = self.pipes.get_mut(&id) else {
                continue;
            };
            let frames = p.waiting.take().map(|w| w.frames).unwrap_or_default();
            if let Some(slot) = self.spaces.get(&space) {
                p.session.start(&slot.replica);
            }
            for frame in frames {
                if self.feed(id, &frame, env).await.is_err() {
                    break;
                }
            }
        }
    }

    /// Lets waiting pipes of every space say Hello when they may (see
    /// [`Engine::open_pipe`]); [`Engine::maintain`] does this too.
    pub async fn release_all_waiting(&mut self, env: &dyn Env) {
        let spaces: std::collections::BTreeSet<SpaceId> = self
            .pipes
            .values()
            .filter(|p| p.waiting.is_some())
            .map(|p| p.space)
            .collect();
        for space in spaces {
            self.release_waiting(space, env).await;
        }
    }

    /// Feeds bytes that arrived on a pipe. On a fatal protocol error the pipe
    /// is closed and the error returned; nothing applied is lost. Returns the
    /// number of entries applied (inside a batch, entries are applied at
    /// [`Engine::end_batch`], and counted there).
    pub async fn pipe_input(
        &mut self,
        pipe: PipeId,
        frame: &[u8],
        env: &dyn Env,
    ) -> Result<usize, SyncError> {
        let Some(p) = self.pipes.get_mut(&pipe) else {
            return Err(SyncError::Closed);
        };
        let space = p.space;
        let result = match p.waiting.as_mut() {
            Some(w) => {
                // Kept until the pipe says Hello.
                w.bytes += frame.len();
                w.frames.push(frame.to_vec());
                Ok(0)
            }
            None => self.feed(pipe, frame, env).await,
        };
        if !self.batching {
            self.release_waiting(space, env).await;
        }
        result
    }

    /// Hands a frame to a pipe's session and takes what it reports.
    async fn feed(
        &mut self,
        pipe: PipeId,
        frame: &[u8],
        env: &dyn Env,
    ) -> Result<usize, SyncError> {
        let Some(p) = self.pipes.get_mut(&pipe) else {
            return Err(SyncError::Closed);
        };
        let space = p.space;
        let Some(slot) = self.spaces.get_mut(&space) else {
            self.pipes.remove(&pipe);
            return Err(SyncError::Closed);
        };
        p.session.defer_entries(self.batching);
        let now = env.now_ms();
        let (events, failure) = match p.session.handle_frame(frame, &mut slot.replica, now) {
            Ok(ev) => (ev, None),
            // Entries held back before the error are still taken.
            Err(e) => (p.session.flush(&mut slot.replica, now), Some(e)),
        };
        if self.batching && p.session.has_held() {
            self.held.insert(pipe);
        }
        p.last_sync_ms = Some(now);
        let label = p.label.clone();
        let applied = self.absorb(space, &label, events, env).await;
        match failure {
            Some(e) => {
                self.pipes.remove(&pipe);
                self.held.remove(&pipe);
                Err(e)
            }
            None => Ok(applied),
        }
    }

    /// Takes what a session reported: keeps applied entries to store,
    /// raises refusals, starts the space's other pipes when these were its
    /// first entries, and stores and pushes on (at once, or at the end of a
    /// batch). Returns the number of entries applied.
    async fn absorb(
        &mut self,
        space: SpaceId,
        label: &str,
        events: SyncEvents,
        env: &dyn Env,
    ) -> usize {
        let now = env.now_ms();
        let Some(slot) = self.spaces.get_mut(&space) else {
            return 0;
        };
        if !events.applied.is_empty() {
            slot.last_received_ms = now;
        }
        for id in &events.applied {
            if let Some(e) = slot.replica.get(id) {
                slot.unsaved.push(e.clone());
            }
        }
        if !events.rejected.is_empty() {
            self.events.push(Event::Alert(err(
                ErrorCode::Refused,
                format!(
                    "{} entries from {label} were refused: {}",
                    events.rejected.len(),
                    events.rejected[0]
                ),
            )));
        }
        let applied = events.applied.len();
        if applied > 0 || !events.forks.is_empty() {
            if self.batching {
                self.dirty.insert(space);
            } else {
                self.after_change(&space, env).await;
            }
        }
        applied
    }

    /// Starts a batch of pipe input: until [`Engine::end_batch`], what
    /// [`Engine::pipe_input`] applies is kept in memory (and synced back on
    /// its own pipe as usual) but stored, pushed to the other pipes and
    /// reported only at the end of the batch. A driver with several frames
    /// waiting feeds them in one batch, so that they cost one store write
    /// instead of one each. Requests ([`Engine::handle`]) store everything
    /// unsaved of their space as usual, batch or not.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Whether a batch is open.
    pub fn in_batch(&self) -> bool {
        self.batching
    }

    /// Ends a batch: stores, pushes on and reports what its pipe input
    /// applied. A storage failure is reported as an alert, and the entries
    /// stay in memory to be retried, as for any write.
    pub async fn end_batch(&mut self, env: &dyn Env) {
        // Entries the sessions held back during the batch are verified and
        // applied now, one large batch per pipe.
        let now = env.now_ms();
        for pipe in std::mem::take(&mut self.held) {
            let (space, label, events) = match self.pipes.get_mut(&pipe) {
                Some(p) => {
                    p.session.defer_entries(false);
                    let Some(slot) = self.spaces.get_mut(&p.space) else {
                        continue;
                    };
                    let events = p.session.flush(&mut slot.replica, now);
                    (p.space, p.label.clone(), events)
                }
                // Closed during the batch: what it held is still taken.
                None => match self.closed_held.remove(&pipe) {
                    Some(mut p) => {
                        let Some(slot) = self.spaces.get_mut(&p.space) else {
                            continue;
                        };
                        let events = p.session.flush(&mut slot.replica, now);
                        (p.space, p.label, events)
                    }
                    None => continue,
                },
            };
            self.absorb(space, &label, events, env).await;
        }
        self.batching = false;
        for space in std::mem::take(&mut self.dirty) {
            self.after_change(&space, env).await;
        }
        self.release_all_waiting(env).await;
    }

    /// Frames to send on a pipe.
    pub fn pipe_output(&mut self, pipe: PipeId) -> Vec<Vec<u8>> {
        match self.pipes.get_mut(&pipe) {
            Some(p) => std::iter::from_fn(|| p.session.poll_transmit()).collect(),
            None => Vec::new(),
        }
    }

    /// Pipes with frames waiting.
    pub fn pipes_with_output(&self) -> Vec<PipeId> {
        self.pipes
            .iter()
            .filter(|(_, p)| p.session.has_transmit())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Closes a pipe (its transport went away). Entries it received and
    /// held back during a batch are still taken when the batch ends.
    pub fn close_pipe(&mut self, pipe: PipeId) {
        if let Some(p) = self.pipes.remove(&pipe) {
            if self.held.contains(&pipe) {
                self.closed_held.insert(pipe, p);
            }
        }
    }

    fn push_all(&mut self, space: &SpaceId) {
        let Some(slot) = self.spaces.get(space) else {
            return;
        };
        for p in self.pipes.values_mut().filter(|p| p.space == *space) {
            p.session.push_local(&slot.replica);
        }
    }
}

fn unknown_space() -> ErrorInfo {
    err(ErrorCode::UnknownSpace, "This space is not on this device.")
}

fn role_from(v: u8) -> Result<Role, ErrorInfo> {
    Ok(match v {
        0 => Role::Viewer,
        1 => Role::Member,
        2 => Role::Coordinator,
        3 => Role::Admin,
        _ => return Err(err(ErrorCode::InvalidInput, "Unknown role.")),
    })
}

fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() {
        "space".into()
    } else {
        s
    }
}

/// Hex of a 32-byte id, for logs and storage keys.
pub fn hex_id(id: &[u8; 32]) -> String {
    Hash(*id).to_hex()
}

/// Entries by id, for drivers that need them.
pub type EntryMap = HashMap<EntryId, Entry>;
