//! The engine end to end on in-memory stores: identity, spaces, actions,
//! persistence across restarts, two devices over pipes, two tabs on one
//! store, a full quota, and bundles.

use std::cell::Cell;
use std::rc::Rc;

use civicbase_core::op::{encode_payload, Op};
use civicbase_core::store::conformance::block_on;
use civicbase_core::store::{MemoryStore, MemoryStoreError, Store};
use civicbase_core::{Entry, Replica, SpaceId, VersionVector};
use civicbase_engine::{Engine, FixedEnv, PipeId, StorageError};
use civicbase_proto::{ErrorCode, Event, Request, RequestBody, ResponseBody, ViewData, ViewQuery};

const T: u64 = 1_760_000_000_000;

fn ask<S: Store>(
    e: &mut Engine<S>,
    env: &FixedEnv,
    body: RequestBody,
) -> Result<ResponseBody, civicbase_proto::ErrorInfo>
where
    S::Error: StorageError,
{
    match block_on(e.handle(Request { id: 1, body }, env)) {
        Event::Response { result, .. } => result,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn ok<S: Store>(e: &mut Engine<S>, env: &FixedEnv, body: RequestBody) -> ResponseBody
where
    S::Error: StorageError,
{
    ask(e, env, body).expect("request succeeds")
}

fn device<S: Store>(store: S, env: &FixedEnv, name: &str) -> Engine<S>
where
    S::Error: StorageError,
{
    let mut e = block_on(Engine::open(store, env)).expect("open");
    ok(
        &mut e,
        env,
        RequestBody::CreateIdentity { name: name.into() },
    );
    e
}

fn new_space<S: Store>(e: &mut Engine<S>, env: &FixedEnv) -> [u8; 32]
where
    S::Error: StorageError,
{
    match ok(
        e,
        env,
        RequestBody::CreateSpace {
            name: "Crisis staff".into(),
            default_credit_limit: 5,
        },
    ) {
        ResponseBody::Space(s) => s.id,
        other => panic!("{other:?}"),
    }
}

fn post<S: Store>(
    e: &mut Engine<S>,
    env: &FixedEnv,
    space: [u8; 32],
    title: &str,
) -> Result<ResponseBody, civicbase_proto::ErrorInfo>
where
    S::Error: StorageError,
{
    env.advance(10);
    ask(
        e,
        env,
        RequestBody::Act {
            space,
            payload: encode_payload(&[Op::PostNotice {
                title: title.into(),
                body: String::new(),
            }]),
        },
    )
}

fn notice_titles<S: Store>(e: &mut Engine<S>, env: &FixedEnv, space: [u8; 32]) -> Vec<String>
where
    S::Error: StorageError,
{
    match ok(
        e,
        env,
        RequestBody::View {
            space,
            query: ViewQuery::Notices {
                offset: 0,
                limit: 100,
            },
        },
    ) {
        ResponseBody::View(ViewData::Notices(p)) => {
            let mut t: Vec<String> = p.items.into_iter().map(|n| n.title).collect();
            t.sort();
            t
        }
        other => panic!("{other:?}"),
    }
}

/// Moves frames between two engines' pipes until both are quiet.
fn pump<A: Store, B: Store>(
    a: &mut Engine<A>,
    pa: PipeId,
    b: &mut Engine<B>,
    pb: PipeId,
    env: &FixedEnv,
) where
    A::Error: StorageError,
    B::Error: StorageError,
{
    for _ in 0..50 {
        let to_b = a.pipe_output(pa);
        let to_a = b.pipe_output(pb);
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        for f in to_b {
            block_on(b.pipe_input(pb, &f, env)).expect("frame");
        }
        for f in to_a {
            block_on(a.pipe_input(pa, &f, env)).expect("frame");
        }
    }
    panic!("pipes did not settle");
}

#[test]
fn actions_persist_across_a_restart_and_identity_survives() {
    let env = FixedEnv::new(T, 1);
    let store = Rc::new(MemoryStore::new());
    let mut e = device(store.clone(), &env, "Alice");
    let space = new_space(&mut e, &env);
    post(&mut e, &env, space, "Water at the school").expect("post");
    let backup = match ok(&mut e, &env, RequestBody::ExportIdentity) {
        ResponseBody::Backup(b) => b,
        other => panic!("{other:?}"),
    };
    drop(e);
    let mut again = block_on(Engine::open(store, &env)).expect("reopen");
    assert_eq!(
        notice_titles(&mut again, &env, space),
        ["Water at the school"]
    );
    match ok(&mut again, &env, RequestBody::Init) {
        ResponseBody::Ready {
            identity, spaces, ..
        } => {
            assert_eq!(identity.expect("identity").name, "Alice");
            assert_eq!(spaces.len(), 1);
            assert_eq!(spaces[0].role, Some(3), "the founder is admin");
        }
        other => panic!("{other:?}"),
    }
    // The backup restores the same device key elsewhere.
    let mut other = block_on(Engine::open(MemoryStore::new(), &env)).expect("open");
    match ok(
        &mut other,
        &env,
        RequestBody::RestoreIdentity {
            backup: backup.clone(),
        },
    ) {
        ResponseBody::Identity(i) => {
            assert_eq!(Some(civicbase_core::AuthorId(i.device)), again.device())
        }
        other => panic!("{other:?}"),
    }
    let mut typo = backup.clone();
    typo.replace_range(20..21, if &backup[20..21] == "a" { "b" } else { "a" });
    let mut third = block_on(Engine::open(MemoryStore::new(), &env)).expect("open");
    let e = ask(
        &mut third,
        &env,
        RequestBody::RestoreIdentity { backup: typo },
    )
    .expect_err("typo");
    assert_eq!(e.code, ErrorCode::BadFile);
}

#[test]
fn a_second_device_joins_by_invite_link_and_syncs_over_a_pipe() {
    let env = FixedEnv::new(T, 2);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let mut b = device(MemoryStore::new(), &env, "Bob");
    let space = new_space(&mut a, &env);
    post(&mut a, &env, space, "Shelter open").expect("post");
    let fragment = match ok(
        &mut a,
        &env,
        RequestBody::CreateInvite {
            space,
            role: 1,
            valid_hours: 24,
            uses: 1,
        },
    ) {
        ResponseBody::Invite { fragment } => fragment,
        other => panic!("{other:?}"),
    };
    // Bob has nothing of the space yet: the join waits for its data.
    assert_eq!(
        ok(&mut b, &env, RequestBody::JoinSpace { fragment }),
        ResponseBody::JoinPending { space }
    );
    let pa = a
        .open_pipe(
            SpaceId::from(civicbase_core::Hash(space)),
            "bob".into(),
            "test".into(),
        )
        .expect("pipe");
    let pb = b
        .open_pipe(civicbase_core::Hash(space), "alice".into(), "test".into())
        .expect("pipe");
    pump(&mut a, pa, &mut b, pb, &env);
    // Bob's join was made as soon as the invite arrived, and went back.
    assert_eq!(notice_titles(&mut b, &env, space), ["Shelter open"]);
    post(&mut b, &env, space, "Bob can drive").expect("bob is a member");
    pump(&mut a, pa, &mut b, pb, &env);
    assert_eq!(
        notice_titles(&mut a, &env, space),
        ["Bob can drive", "Shelter open"]
    );
    let members = match ok(
        &mut a,
        &env,
        RequestBody::View {
            space,
            query: ViewQuery::Members,
        },
    ) {
        ResponseBody::View(ViewData::Members(m)) => m.members,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .len(),
        2
    );
    assert_eq!(
        a.replica(&civicbase_core::Hash(space))
            .map(|r| r.state_hash()),
        b.replica(&civicbase_core::Hash(space))
            .map(|r| r.state_hash())
    );
}

#[test]
fn two_tabs_on_one_store_never_fork_their_shared_device() {
    let env = FixedEnv::new(T, 3);
    let store = Rc::new(MemoryStore::new());
    let mut tab1 = device(store.clone(), &env, "Alice");
    let space = new_space(&mut tab1, &env);
    let mut tab2 = block_on(Engine::open(store.clone(), &env)).expect("second tab");
    // Interleaved writes by the same device key from both tabs.
    for i in 0..5 {
        post(&mut tab1, &env, space, &format!("from tab 1 #{i}")).expect("tab 1");
        post(&mut tab2, &env, space, &format!("from tab 2 #{i}")).expect("tab 2");
    }
    block_on(tab1.catch_up(&civicbase_core::Hash(space), &env)).expect("catch up");
    let r1 = tab1.replica(&civicbase_core::Hash(space)).expect("space");
    let r2 = tab2.replica(&civicbase_core::Hash(space)).expect("space");
    assert_eq!(r1.forks().count(), 0, "no fork");
    assert_eq!(r1.state_hash(), r2.state_hash());
    assert_eq!(notice_titles(&mut tab1, &env, space).len(), 10);
    let stored = block_on(store.log_len(&civicbase_core::Hash(space))).expect("len");
    assert_eq!(stored, 11, "genesis and ten notices, each stored once");
}

/// A store whose appends fail with a full quota while `full` is set, and
/// which counts the appends that reach it.
struct TinyStore {
    inner: MemoryStore,
    full: Cell<bool>,
    appends: Cell<u32>,
}

impl TinyStore {
    fn new() -> Self {
        TinyStore {
            inner: MemoryStore::new(),
            full: Cell::new(false),
            appends: Cell::new(0),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TinyError {
    #[error("QuotaExceededError")]
    Quota,
    #[error(transparent)]
    Inner(#[from] MemoryStoreError),
}

impl StorageError for TinyError {
    fn is_quota_exceeded(&self) -> bool {
        matches!(self, TinyError::Quota)
    }
}

impl Store for &TinyStore {
    type Error = TinyError;
    async fn spaces(&self) -> Result<Vec<SpaceId>, TinyError> {
        Ok(self.inner.spaces().await?)
    }
    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), TinyError> {
        if self.full.get() {
            return Err(TinyError::Quota);
        }
        self.appends.set(self.appends.get() + 1);
        Ok(self.inner.append(space, entries).await?)
    }
    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, TinyError> {
        Ok(self.inner.entries_from(space, from).await?)
    }
    async fn log_len(&self, space: &SpaceId) -> Result<u64, TinyError> {
        Ok(self.inner.log_len(space).await?)
    }
    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, TinyError> {
        Ok(self.inner.version_vector(space).await?)
    }
    async fn put_snapshot(
        &self,
        space: &SpaceId,
        s: &civicbase_core::replica::Snapshot,
    ) -> Result<(), TinyError> {
        Ok(self.inner.put_snapshot(space, s).await?)
    }
    async fn snapshot(
        &self,
        space: &SpaceId,
    ) -> Result<Option<civicbase_core::replica::Snapshot>, TinyError> {
        Ok(self.inner.snapshot(space).await?)
    }
    async fn put_fork_proof(&self, space: &SpaceId, p: &[u8]) -> Result<(), TinyError> {
        Ok(self.inner.put_fork_proof(space, p).await?)
    }
    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, TinyError> {
        Ok(self.inner.fork_proofs(space).await?)
    }
    async fn put_secret(&self, name: &str, v: &[u8]) -> Result<(), TinyError> {
        Ok(self.inner.put_secret(name, v).await?)
    }
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, TinyError> {
        Ok(self.inner.secret(name).await?)
    }
}

#[test]
fn a_full_quota_is_reported_and_loses_nothing() {
    let env = FixedEnv::new(T, 4);
    let store = TinyStore::new();
    let mut e = device(&store, &env, "Alice");
    let space = new_space(&mut e, &env);
    e.take_events();
    store.full.set(true);
    post(&mut e, &env, space, "Written while full").expect("the action itself succeeds");
    let alerts: Vec<_> = e
        .take_events()
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].code, ErrorCode::QuotaExceeded);
    assert!(alerts[0].message.contains("Nothing you did is lost"));
    assert_eq!(e.unsaved(&civicbase_core::Hash(space)), 1);
    assert_eq!(notice_titles(&mut e, &env, space), ["Written while full"]);
    // Room again: the next write stores everything, in order.
    store.full.set(false);
    post(&mut e, &env, space, "After freeing space").expect("post");
    assert_eq!(e.unsaved(&civicbase_core::Hash(space)), 0);
    drop(e);
    let mut again = block_on(Engine::open(&store, &env)).expect("reopen");
    assert_eq!(
        notice_titles(&mut again, &env, space),
        ["After freeing space", "Written while full"]
    );
}

#[test]
fn frames_fed_in_one_batch_are_stored_once_at_its_end() {
    let env = FixedEnv::new(T, 6);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let space = new_space(&mut a, &env);
    for i in 0..600 {
        post(
            &mut a,
            &env,
            space,
            &format!("notice {i} with a longer title"),
        )
        .expect("post");
    }
    let id = civicbase_core::Hash(space);
    let store = TinyStore::new();
    let mut b = block_on(Engine::open(&store, &env)).expect("open");
    block_on(b.replicate(id)).expect("replicate");
    let pa = a.open_pipe(id, "b".into(), "test".into()).expect("pipe");
    let pb = b.open_pipe(id, "a".into(), "test".into()).expect("pipe");
    b.begin_batch();
    let mut frames_to_b = 0;
    for _ in 0..50 {
        let to_b = a.pipe_output(pa);
        let to_a = b.pipe_output(pb);
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        frames_to_b += to_b.len();
        for f in to_b {
            block_on(b.pipe_input(pb, &f, &env)).expect("frame");
        }
        for f in to_a {
            block_on(a.pipe_input(pa, &f, &env)).expect("frame");
        }
    }
    assert!(frames_to_b > 2, "the space takes several frames");
    assert_eq!(store.appends.get(), 0, "nothing is stored inside the batch");
    assert_eq!(
        b.replica(&id).map(Replica::len),
        Some(0),
        "entries are verified and applied together at the end"
    );
    assert!(
        !b.take_events()
            .iter()
            .any(|e| matches!(e, Event::Changed { .. })),
        "changes are reported at the end"
    );
    block_on(b.end_batch(&env));
    assert_eq!(store.appends.get(), 1, "one write for the whole batch");
    assert_eq!(b.replica(&id).map(Replica::len), Some(601));
    assert_eq!(b.unsaved(&id), 0);
    assert_eq!(block_on(store.inner.log_len(&id)).expect("len"), 601);
    assert!(b
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::Changed { .. })));
    assert_eq!(
        a.replica(&id).map(|r| r.state_hash()),
        b.replica(&id).map(|r| r.state_hash())
    );
    // Once the stream has been quiet for a second, housekeeping writes a
    // snapshot, and a restart restores it.
    env.advance(1_000);
    block_on(b.maintain(&env)).expect("maintain");
    assert!(block_on(store.inner.snapshot(&id))
        .expect("snapshot")
        .is_some());
    drop(b);
    let again = block_on(Engine::open(&store, &env)).expect("reopen");
    assert_eq!(
        again.replica(&id).map(|r| r.state_hash()),
        a.replica(&id).map(|r| r.state_hash())
    );
}

#[test]
fn a_pipe_closed_inside_a_batch_keeps_what_it_received() {
    let env = FixedEnv::new(T, 8);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let space = new_space(&mut a, &env);
    for i in 0..300 {
        post(
            &mut a,
            &env,
            space,
            &format!("notice {i} with a longer title"),
        )
        .expect("post");
    }
    let id = civicbase_core::Hash(space);
    let store = Rc::new(MemoryStore::new());
    let mut b = block_on(Engine::open(Rc::clone(&store), &env)).expect("open");
    block_on(b.replicate(id)).expect("replicate");
    let pa = a.open_pipe(id, "b".into(), "test".into()).expect("pipe");
    let pb = b.open_pipe(id, "a".into(), "test".into()).expect("pipe");
    for f in b.pipe_output(pb) {
        block_on(a.pipe_input(pa, &f, &env)).expect("hello to a");
    }
    b.begin_batch();
    let frames = a.pipe_output(pa);
    assert!(frames.len() > 2);
    for f in &frames {
        block_on(b.pipe_input(pb, f, &env)).expect("frame");
    }
    // The connection drops before the batch ends.
    b.close_pipe(pb);
    block_on(b.end_batch(&env));
    assert_eq!(b.replica(&id).map(Replica::len), Some(301));
    assert_eq!(
        block_on(store.log_len(&id)).expect("len"),
        301,
        "and stored"
    );
}

/// A space's state hash on an engine, if it is in memory there.
fn state<S: Store>(e: &Engine<S>, id: &SpaceId) -> Option<civicbase_core::Hash>
where
    S::Error: StorageError,
{
    e.replica(id).map(|r| r.state_hash())
}

#[test]
fn a_bounded_engine_keeps_few_spaces_in_memory_and_still_serves_them_all() {
    let env = FixedEnv::new(T, 7);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let spaces: Vec<SpaceId> = (0..5)
        .map(|i| {
            let s = new_space(&mut a, &env);
            post(&mut a, &env, s, &format!("notice {i}")).expect("post");
            civicbase_core::Hash(s)
        })
        .collect();
    let store = Rc::new(MemoryStore::new());
    let mut b = block_on(Engine::open_bounded(store.clone(), &env, 2)).expect("open");
    // B takes each space from A in turn.
    for id in &spaces {
        block_on(b.replicate(*id)).expect("replicate");
        let pa = a.open_pipe(*id, "b".into(), "test".into()).expect("pipe");
        let pb = b.open_pipe(*id, "a".into(), "test".into()).expect("pipe");
        pump(&mut a, pa, &mut b, pb, &env);
        assert_eq!(state(&b, id), state(&a, id));
        a.close_pipe(pa);
        b.close_pipe(pb);
        block_on(b.maintain(&env)).expect("maintain");
        assert!(b.resident() <= 2, "{} spaces in memory", b.resident());
    }
    assert_eq!(b.space_ids(), {
        let mut all = spaces.clone();
        all.sort_unstable();
        all
    });
    // A new device gets every space from B alone, B loading each on demand.
    let mut c = block_on(Engine::open(MemoryStore::new(), &env)).expect("open");
    for id in &spaces {
        assert!(block_on(b.wake(id, &env)).expect("wake"));
        block_on(c.replicate(*id)).expect("replicate");
        let pb = b.open_pipe(*id, "c".into(), "test".into()).expect("woken");
        let pc = c.open_pipe(*id, "b".into(), "test".into()).expect("pipe");
        pump(&mut b, pb, &mut c, pc, &env);
        assert_eq!(state(&c, id), state(&a, id));
        b.close_pipe(pb);
        block_on(b.maintain(&env)).expect("maintain");
        assert!(b.resident() <= 2, "{} spaces in memory", b.resident());
    }
    // A space with an open session is never unloaded, even over the limit.
    let open: Vec<PipeId> = spaces
        .iter()
        .map(|id| {
            block_on(b.wake(id, &env)).expect("wake");
            b.open_pipe(*id, "x".into(), "test".into()).expect("pipe")
        })
        .collect();
    block_on(b.maintain(&env)).expect("maintain");
    assert_eq!(b.resident(), 5);
    for p in open {
        b.close_pipe(p);
    }
    block_on(b.maintain(&env)).expect("maintain");
    assert_eq!(b.resident(), 2);
    // After a restart nothing is loaded until asked for, and nothing is lost.
    drop(b);
    let mut b = block_on(Engine::open_bounded(store, &env, 2)).expect("reopen");
    assert_eq!(b.resident(), 0);
    assert_eq!(b.space_ids().len(), 5);
    for id in &spaces {
        assert_eq!(
            block_on(b.version_vector(id)).expect("vv"),
            a.replica(id).expect("space").version_vector()
        );
        assert!(block_on(b.wake(id, &env)).expect("wake"));
        assert_eq!(state(&b, id), state(&a, id));
    }
}

#[test]
fn bundles_carry_a_space_and_a_damaged_one_changes_nothing() {
    let env = FixedEnv::new(T, 5);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let space = new_space(&mut a, &env);
    post(&mut a, &env, space, "Sandbags at the harbour").expect("post");
    let bytes = match ok(&mut a, &env, RequestBody::ExportBundle { space }) {
        ResponseBody::Bundle { bytes, file_name } => {
            assert_eq!(file_name, "crisis-staff.civicbase");
            bytes
        }
        other => panic!("{other:?}"),
    };
    let mut c = device(MemoryStore::new(), &env, "Carol");
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let e = ask(&mut c, &env, RequestBody::ImportBundle { bytes: damaged }).expect_err("damaged");
    assert_eq!(e.code, ErrorCode::BadFile);
    assert!(c.space_ids().is_empty(), "nothing stored");
    match ok(&mut c, &env, RequestBody::ImportBundle { bytes }) {
        ResponseBody::Imported(s) => {
            assert_eq!(s.added, 2);
            assert!(s.rejected.is_empty());
            assert_eq!(s.space_name, "Crisis staff");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        notice_titles(&mut c, &env, space),
        ["Sandbags at the harbour"]
    );
    // Carol is not a member: her actions are refused with a reason.
    let e = post(&mut c, &env, space, "Let me in").expect_err("not a member");
    assert_eq!(e.code, ErrorCode::Refused);
}

/// Moves one round of frames between two engines' pipes. Returns the bytes
/// that went from `x` to `y`, and whether anything moved.
fn exchange<A: Store, B: Store>(
    x: &mut Engine<A>,
    xp: PipeId,
    y: &mut Engine<B>,
    yp: PipeId,
    env: &FixedEnv,
) -> (usize, bool)
where
    A::Error: StorageError,
    B::Error: StorageError,
{
    let to_y = x.pipe_output(xp);
    let to_x = y.pipe_output(yp);
    let moved = !to_y.is_empty() || !to_x.is_empty();
    let bytes = to_y.iter().map(Vec::len).sum();
    for f in to_y {
        let _ = block_on(y.pipe_input(yp, &f, env));
    }
    for f in to_x {
        let _ = block_on(x.pipe_input(xp, &f, env));
    }
    (bytes, moved)
}

/// Alice with a 300-notice space, Bob with a full copy of it, and Carol, a
/// new device that joined it and holds nothing yet.
fn three_devices(
    env: &FixedEnv,
) -> (
    Engine<MemoryStore>,
    Engine<MemoryStore>,
    Engine<MemoryStore>,
    SpaceId,
) {
    let mut a = device(MemoryStore::new(), env, "Alice");
    let space = new_space(&mut a, env);
    for i in 0..300 {
        post(
            &mut a,
            env,
            space,
            &format!("notice {i} with a longer title"),
        )
        .expect("post");
    }
    let id = civicbase_core::Hash(space);
    let mut b = block_on(Engine::open(MemoryStore::new(), env)).expect("open");
    block_on(b.replicate(id)).expect("replicate");
    let ab = a.open_pipe(id, "b".into(), "test".into()).expect("pipe");
    let ba = b.open_pipe(id, "a".into(), "test".into()).expect("pipe");
    pump(&mut a, ab, &mut b, ba, env);
    a.close_pipe(ab);
    b.close_pipe(ba);
    assert_eq!(b.replica(&id).map(Replica::len), Some(301));
    let mut c = block_on(Engine::open(MemoryStore::new(), env)).expect("open");
    block_on(c.replicate(id)).expect("replicate");
    (a, b, c, id)
}

#[test]
fn a_new_device_downloads_a_space_once_however_many_peers_it_meets() {
    let env = FixedEnv::new(T, 9);
    let (mut a, mut b, mut c, id) = three_devices(&env);
    let ca = c.open_pipe(id, "a".into(), "test".into()).expect("pipe");
    let ac = a.open_pipe(id, "c".into(), "test".into()).expect("pipe");
    let cb = c.open_pipe(id, "b".into(), "test".into()).expect("pipe");
    let bc = b.open_pipe(id, "c".into(), "test".into()).expect("pipe");
    assert!(!c.pipe_waiting(ca), "the first peer is greeted at once");
    assert!(c.pipe_waiting(cb), "the second waits");
    let (mut from_a, mut from_b) = (0, 0);
    for _ in 0..50 {
        let (na, moved_a) = exchange(&mut a, ac, &mut c, ca, &env);
        let (nb, moved_b) = exchange(&mut b, bc, &mut c, cb, &env);
        from_a += na;
        from_b += nb;
        if !moved_a && !moved_b {
            break;
        }
    }
    assert_eq!(c.replica(&id).map(Replica::len), Some(301));
    assert!(!c.pipe_waiting(cb), "greeted once Alice's stream was in");
    assert!(
        from_a > 50_000,
        "the space came from Alice ({from_a} bytes)"
    );
    assert!(
        from_b < 2_000,
        "Bob sent little more than his Hello ({from_b} bytes)"
    );
    // Both sessions stay live: a new notice by Alice reaches Carol, and
    // Bob through Carol.
    post(&mut a, &env, id.0, "after the initial sync").expect("post");
    for _ in 0..10 {
        let (_, moved_a) = exchange(&mut a, ac, &mut c, ca, &env);
        let (_, moved_b) = exchange(&mut b, bc, &mut c, cb, &env);
        if !moved_a && !moved_b {
            break;
        }
    }
    assert_eq!(c.replica(&id).map(Replica::len), Some(302));
    assert_eq!(b.replica(&id).map(Replica::len), Some(302));
}

#[test]
fn a_waiting_pipe_is_greeted_when_the_first_peer_leaves_or_stalls() {
    for stall in [false, true] {
        let env = FixedEnv::new(T, 10);
        let (mut a, mut b, mut c, id) = three_devices(&env);
        let ca = c.open_pipe(id, "a".into(), "test".into()).expect("pipe");
        let ac = a.open_pipe(id, "c".into(), "test".into()).expect("pipe");
        let cb = c.open_pipe(id, "b".into(), "test".into()).expect("pipe");
        let bc = b.open_pipe(id, "c".into(), "test".into()).expect("pipe");
        // Carol's Hello reaches Alice, Bob's reaches Carol; Alice's answer
        // (the space) never arrives.
        for f in c.pipe_output(ca) {
            block_on(a.pipe_input(ac, &f, &env)).expect("hello to a");
        }
        for f in b.pipe_output(bc) {
            block_on(c.pipe_input(cb, &f, &env)).expect("hello to c");
        }
        assert!(c.pipe_waiting(cb));
        if stall {
            // Alice is still connected but sends nothing for a while.
            env.advance(5_000);
        } else {
            c.close_pipe(ca);
        }
        block_on(c.maintain(&env)).expect("maintain");
        assert!(!c.pipe_waiting(cb), "stall: {stall}");
        for _ in 0..50 {
            if !exchange(&mut b, bc, &mut c, cb, &env).1 {
                break;
            }
        }
        assert_eq!(
            c.replica(&id).map(Replica::len),
            Some(301),
            "stall: {stall}"
        );
    }
}

/// The decisions view of a space.
fn proposals<S: Store>(
    e: &mut Engine<S>,
    env: &FixedEnv,
    space: [u8; 32],
) -> Vec<civicbase_proto::ProposalView>
where
    S::Error: StorageError,
{
    match ok(
        e,
        env,
        RequestBody::View {
            space,
            query: ViewQuery::Decisions {
                offset: 0,
                limit: 100,
            },
        },
    ) {
        ResponseBody::View(ViewData::Decisions(p)) => p.items,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_proposers_device_closes_a_proposal_after_its_deadline_and_the_tally_becomes_final() {
    let env = FixedEnv::new(T, 7);
    let mut a = device(MemoryStore::new(), &env, "Alice");
    let space = new_space(&mut a, &env);
    let deadline = T + 60_000;
    ok(
        &mut a,
        &env,
        RequestBody::Act {
            space,
            payload: encode_payload(&[Op::Propose {
                title: "Open the school as a shelter".into(),
                body: String::new(),
                deadline_ms: deadline,
                quorum: 1,
            }]),
        },
    );
    let id = proposals(&mut a, &env, space)[0].id;
    env.advance(10);
    ok(
        &mut a,
        &env,
        RequestBody::Act {
            space,
            payload: encode_payload(&[Op::Vote {
                proposal: civicbase_core::Hash(id),
                choice: civicbase_core::Choice::Yes,
            }]),
        },
    );
    // Before the deadline nothing is closed.
    assert!(block_on(a.close_due(&env)).is_empty());
    let p = &proposals(&mut a, &env, space)[0];
    assert!(!p.is_final, "provisional while open");
    env.advance(60_000);
    assert!(
        block_on(a.close_due(&env)).is_empty(),
        "the close is accepted"
    );
    let p = &proposals(&mut a, &env, space)[0];
    assert!(p.is_final, "final once closed");
    assert_eq!((p.yes, p.status), (1, 1));
    // Closing twice is not attempted.
    assert!(block_on(a.close_due(&env)).is_empty());
}
