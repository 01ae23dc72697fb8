//! CivicBase benchmark: ingest throughput and sync cost, and the same civic
//! dataset synced with automerge and yrs for comparison.
//!
//! Run with `cargo bench -p civicbase-bench` (or `cargo xtask bench`). It is a
//! plain `main` (no harness) that prints tables; see docs/PERFORMANCE.md.
//!
//! Dataset: 10,000 needs/offers records (one `Op::CreateNeed` per entry) by
//! 50 members of one space, generated from a seeded SplitMix64. Two replicas
//! share 9,900 of them; replica A has 50 more by members 0..25, replica B 50
//! others by members 25..50 (1% divergence).

use std::hint::black_box;
use std::time::{Duration, Instant};

use civicbase_core::state::members::join_statement;
use civicbase_core::{
    Entry, Ingested, Keypair, NeedKind, NewSpace, Op, Replica, ReplicaConfig, Role, SyncSession,
    Urgency,
};

/// Wall time of the first entry.
const T0: u64 = 1_750_000_000_000;
/// Members, including the founder.
const AUTHORS: usize = 50;
/// Records both diverged replicas share.
const COMMON: usize = 9_900;
/// Records only one side has, per side.
const EXTRA: usize = 50;
/// Entries per `ingest_batch` call in the ingest benchmark.
const BATCH: usize = 256;
/// Measured repetitions (after one warm-up); the median is reported.
const REPS: usize = 5;

// ---------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded PRNG.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const CATEGORIES: &[&str] = &[
    "water",
    "food",
    "medicine",
    "transport",
    "shelter",
    "power",
    "childcare",
    "tools",
    "clothing",
    "information",
];
const STREETS: &[&str] = &[
    "Storgatan",
    "Kungsgatan",
    "Skolvägen",
    "Kyrkogatan",
    "Ringvägen",
    "Parkgatan",
    "Hamngatan",
    "Björkvägen",
    "Stationsgatan",
    "Ängsvägen",
    "Lärkgatan",
    "Torggatan",
];
const ITEMS: &[&str] = &[
    "drinking water",
    "baby formula",
    "a ride to the clinic",
    "dry firewood",
    "an insulin cooler",
    "phone charging",
    "warm blankets",
    "a generator",
    "dog food",
    "a wheelbarrow",
    "bread and milk",
    "a spare room",
    "help with shopping",
    "a camping stove",
    "torch batteries",
    "nappies, size 4",
];
const QUALIFIERS: &[&str] = &[
    "for 2 adults",
    "this evening",
    "near the school",
    "for a week",
    "by Friday",
    "for an elderly couple",
    "today",
    "for 4 people",
    "tomorrow morning",
];
const SENTENCES: &[&str] = &[
    "Ring the bell twice, the intercom is broken.",
    "We have a car and can pick things up within town.",
    "Please bring your own containers if you can.",
    "Available after 17:00 on weekdays, all day at weekends.",
    "Ask for Maria at the front desk of the community hall.",
    "There is a ramp at the back entrance for wheelchairs.",
    "Text first so we know you are coming.",
    "Enough for several households, no need to ask twice.",
    "The stairwell lights are out, bring a torch.",
    "Can also help carry it up to the third floor.",
    "Our neighbour has a trailer if more is needed.",
    "Medicine must stay below 8 degrees.",
];

/// One needs/offers record, as every system under test stores it.
#[derive(Clone)]
struct Record {
    /// Key in the automerge/yrs maps (CivicBase derives record ids itself).
    key: String,
    author: usize,
    kind: NeedKind,
    category: &'static str,
    urgency: Urgency,
    location: String,
    title: String,
    details: String,
}

impl Record {
    fn generate(rng: &mut SplitMix64, author: usize) -> Record {
        let kind = if rng.below(3) == 0 {
            NeedKind::Offer
        } else {
            NeedKind::Need
        };
        let urgency = match rng.below(10) {
            0..=2 => Urgency::Low,
            3..=6 => Urgency::Normal,
            7..=8 => Urgency::High,
            _ => Urgency::Critical,
        };
        let verb = match kind {
            NeedKind::Need => "Need",
            NeedKind::Offer => "Offer:",
        };
        let title = format!("{verb} {} {}", rng.pick(ITEMS), rng.pick(QUALIFIERS));
        let mut details = String::new();
        while details.len() < 95 {
            if !details.is_empty() {
                details.push(' ');
            }
            details.push_str(rng.pick(SENTENCES));
        }
        Record {
            key: format!("{:016x}", rng.next_u64()),
            author,
            kind,
            category: rng.pick(CATEGORIES),
            urgency,
            location: format!(
                "{} {}, entrance {}",
                rng.pick(STREETS),
                1 + rng.below(80),
                ["A", "B", "C", "D"][rng.below(4) as usize]
            ),
            title,
            details,
        }
    }

    fn op(&self) -> Op {
        Op::CreateNeed {
            kind: self.kind,
            category: self.category.to_owned(),
            urgency: self.urgency,
            location: self.location.clone(),
            title: self.title.clone(),
            details: self.details.clone(),
        }
    }
}

/// Records in authoring sessions: a random member writes 1 to 6 records in a
/// row (having seen everything written before), then another member.
fn sessions(rng: &mut SplitMix64, n: usize, authors: std::ops::Range<usize>) -> Vec<Record> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let author = authors.start + rng.below(authors.len() as u64) as usize;
        let burst = 1 + rng.below(6) as usize;
        for _ in 0..burst.min(n - out.len()) {
            out.push(Record::generate(rng, author));
        }
    }
    out
}

/// The generated space and records.
struct Dataset {
    /// Genesis, invites and joins: what a new device gets first.
    membership: Vec<Entry>,
    /// Entries of `common`, then `a_extra`, then `b_extra` (10,000).
    needs: Vec<Entry>,
    common: Vec<Record>,
    a_extra: Vec<Record>,
    b_extra: Vec<Record>,
    /// Wall clock after the last entry.
    now: u64,
}

impl Dataset {
    fn common_entries(&self) -> &[Entry] {
        &self.needs[..COMMON]
    }
    fn a_entries(&self) -> &[Entry] {
        &self.needs[COMMON..COMMON + EXTRA]
    }
    fn b_entries(&self) -> &[Entry] {
        &self.needs[COMMON + EXTRA..]
    }
}

fn keypair(i: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(0xC1B1_C0DE_0000_0000 + i as u64).to_le_bytes());
    Keypair::from_seed(seed)
}

fn generate() -> Dataset {
    let mut rng = SplitMix64(0x5EED_C1C1_BA5E_2026);
    let keys: Vec<Keypair> = (0..AUTHORS).map(keypair).collect();
    let mut now = T0;
    let (mut base, genesis) = Replica::create(
        &keys[0],
        NewSpace {
            name: "Storgatan neighbourhood".into(),
            founder_name: "member 0".into(),
            default_credit_limit: 10,
        },
        now,
        ReplicaConfig::default(),
    )
    .expect("genesis");
    let mut membership = vec![genesis];
    for (i, key) in keys.iter().enumerate().skip(1) {
        now += 1000;
        let invite = keypair(1000 + i);
        membership.push(
            base.author(
                &keys[0],
                vec![Op::Invite {
                    key: invite.author(),
                    role: Role::Member,
                    expires_ms: now + 86_400_000,
                    uses: 1,
                }],
                now,
            )
            .expect("invite"),
        );
        now += 1000;
        let statement = join_statement(&base.space(), &key.author());
        membership.push(
            base.author(
                key,
                vec![Op::Join {
                    invite: invite.author(),
                    proof: invite.sign(statement.as_bytes()),
                    name: format!("member {i}"),
                }],
                now,
            )
            .expect("join"),
        );
    }
    let common = sessions(&mut rng, COMMON, 0..AUTHORS);
    let a_extra = sessions(&mut rng, EXTRA, 0..AUTHORS / 2);
    let b_extra = sessions(&mut rng, EXTRA, AUTHORS / 2..AUTHORS);

    let mut needs = Vec::with_capacity(COMMON + 2 * EXTRA);
    for r in &common {
        now += 1000;
        needs.push(
            base.author(&keys[r.author], vec![r.op()], now)
                .expect("need"),
        );
    }
    // B starts as a copy of the common state; A is `base` itself.
    let mut b = replica_from(&membership, &needs, now);
    let mut a = base;
    let t = now;
    for r in &a_extra {
        now += 1000;
        needs.push(
            a.author(&keys[r.author], vec![r.op()], now)
                .expect("need on A"),
        );
    }
    now = t;
    for r in &b_extra {
        now += 1000;
        needs.push(
            b.author(&keys[r.author], vec![r.op()], now)
                .expect("need on B"),
        );
    }
    Dataset {
        membership,
        needs,
        common,
        a_extra,
        b_extra,
        now: now + 60_000,
    }
}

/// A replica holding `membership` and then `rest` (applied without
/// verification: this is set-up, not measured).
fn replica_from(membership: &[Entry], rest: &[Entry], now: u64) -> Replica {
    let mut r = Replica::from_genesis(membership[0].clone(), now, ReplicaConfig::default())
        .expect("genesis");
    for e in membership[1..].iter().chain(rest) {
        match r.ingest_trusted(e.clone(), now) {
            Ok(Ingested::Applied(_)) => {}
            other => panic!("set-up ingest: {other:?}"),
        }
    }
    r
}

fn encoded_bytes(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.encoded_len() as u64).sum()
}

// ---------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------

/// What one sync run cost.
#[derive(Debug, Clone, Copy, Default)]
struct SyncCost {
    time: Duration,
    /// Bytes on the wire, both directions.
    bytes: u64,
    /// Round trips (two half-rounds each).
    round_trips: f64,
}

/// Runs `f` once to warm up, then `REPS` times, and returns the median run
/// (by time). `f` does its own set-up and returns the cost of its measured
/// part only.
fn median_of<F: FnMut() -> SyncCost>(mut f: F) -> SyncCost {
    black_box(f());
    let mut runs: Vec<SyncCost> = (0..REPS).map(|_| f()).collect();
    runs.sort_by_key(|c| c.time);
    runs[REPS / 2]
}

/// This thread's time on a CPU and time spent waiting for one (runnable but
/// not running), from `/proc/thread-self/schedstat` (Linux). The kernel
/// updates these at scheduler ticks, so they suit whole sections, not
/// single short runs.
fn sched() -> Option<(Duration, Duration)> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((
        Duration::from_nanos(it.next()??),
        Duration::from_nanos(it.next()??),
    ))
}

/// Times a section and says how much of it the benchmark thread spent
/// waiting for a CPU that other processes held (0% on an idle machine).
struct Section {
    wall: Instant,
    sched: Option<(Duration, Duration)>,
}

impl Section {
    fn start() -> Self {
        Section {
            wall: Instant::now(),
            sched: sched(),
        }
    }

    fn report(self) -> String {
        let wall = self.wall.elapsed();
        match (self.sched, sched()) {
            (Some((_, w0)), Some((_, w1))) => format!(
                "   (section took {:.1} s; runqueue wait {:.0}% of it, i.e. time other processes held the CPU; load {})",
                wall.as_secs_f64(),
                100.0 * (w1 - w0).as_secs_f64() / wall.as_secs_f64(),
                load_average()
            ),
            _ => format!("   (section took {:.1} s)", wall.as_secs_f64()),
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn kib(b: u64) -> f64 {
    b as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// CivicBase
// ---------------------------------------------------------------------------

/// Ingests `entries` into a fresh replica that already holds the membership,
/// `mode` 0 = one-by-one `ingest`, 1 = `ingest_batch` of `BATCH`, 2 =
/// `ingest_trusted`. Returns the measured time.
fn ingest_run(ds: &Dataset, mode: u8) -> SyncCost {
    let mut r = replica_from(&ds.membership, &[], ds.now);
    let entries: Vec<Entry> = ds.needs.clone();
    let n = entries.len();
    let start = Instant::now();
    let mut applied = 0usize;
    match mode {
        0 => {
            for e in entries {
                if matches!(r.ingest(e, ds.now), Ok(Ingested::Applied(_))) {
                    applied += 1;
                }
            }
        }
        1 => {
            let mut it = entries.into_iter().peekable();
            while it.peek().is_some() {
                let batch: Vec<Entry> = it.by_ref().take(BATCH).collect();
                applied += r
                    .ingest_batch(batch, ds.now)
                    .iter()
                    .filter(|x| matches!(x, Ok(Ingested::Applied(_))))
                    .count();
            }
        }
        _ => {
            for e in entries {
                if matches!(r.ingest_trusted(e, ds.now), Ok(Ingested::Applied(_))) {
                    applied += 1;
                }
            }
        }
    }
    let time = start.elapsed();
    assert_eq!(applied, n, "every entry applies in order");
    black_box(&r);
    SyncCost {
        time,
        ..SyncCost::default()
    }
}

/// Runs two sync sessions over a perfect in-memory link until nothing is in
/// flight. Counts bytes of every frame in both directions and half-rounds.
fn civicbase_sync(a: &mut Replica, b: &mut Replica, now: u64) -> SyncCost {
    let start = Instant::now();
    let (mut sa, mut sb) = (SyncSession::new(a.space()), SyncSession::new(b.space()));
    sa.start(a);
    sb.start(b);
    let mut halves = 0u32;
    let mut bytes = 0u64;
    loop {
        // Both sides send what they have ...
        let from_a: Vec<Vec<u8>> = std::iter::from_fn(|| sa.poll_transmit()).collect();
        let from_b: Vec<Vec<u8>> = std::iter::from_fn(|| sb.poll_transmit()).collect();
        if from_a.is_empty() && from_b.is_empty() {
            break;
        }
        // ... and everything in flight is delivered: one half-round.
        halves += 1;
        for f in &from_a {
            bytes += f.len() as u64;
            let ev = sb.handle_frame(f, b, now).expect("frame");
            assert!(ev.rejected.is_empty(), "rejected: {:?}", ev.rejected);
        }
        for f in &from_b {
            bytes += f.len() as u64;
            let ev = sa.handle_frame(f, a, now).expect("frame");
            assert!(ev.rejected.is_empty(), "rejected: {:?}", ev.rejected);
        }
        assert!(halves < 100, "sync does not settle");
    }
    let time = start.elapsed();
    SyncCost {
        time,
        bytes,
        round_trips: f64::from(halves) / 2.0,
    }
}

fn civicbase_catch_up(ds: &Dataset) -> SyncCost {
    let mut a = replica_from(&ds.membership, &ds.needs[..COMMON + EXTRA], ds.now);
    let b_entries: Vec<Entry> = ds
        .common_entries()
        .iter()
        .chain(ds.b_entries())
        .cloned()
        .collect();
    let mut b = replica_from(&ds.membership, &b_entries, ds.now);
    let cost = civicbase_sync(&mut a, &mut b, ds.now);
    assert_eq!(a.state_hash(), b.state_hash(), "catch-up converges");
    assert_eq!(a.state().needs.records.len(), COMMON + 2 * EXTRA);
    cost
}

fn civicbase_initial(ds: &Dataset) -> SyncCost {
    let mut full = replica_from(&ds.membership, &ds.needs, ds.now);
    let mut fresh = replica_from(&ds.membership, &[], ds.now);
    let cost = civicbase_sync(&mut fresh, &mut full, ds.now);
    assert_eq!(
        fresh.state_hash(),
        full.state_hash(),
        "initial sync converges"
    );
    cost
}

// ---------------------------------------------------------------------------
// automerge
// ---------------------------------------------------------------------------

mod am {
    use std::time::Instant;

    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ObjId, ObjType, ReadDoc, ROOT};

    use super::{keypair, Dataset, Record, SyncCost};

    /// The three documents of the comparison.
    pub struct Docs {
        /// 9,900 common + A's 50.
        pub a: AutoCommit,
        /// 9,900 common + B's 50.
        pub b: AutoCommit,
        /// All 10,000.
        pub full: AutoCommit,
    }

    fn actor(i: usize) -> ActorId {
        ActorId::from(&keypair(i).author().as_bytes()[..16])
    }

    fn records_obj(doc: &AutoCommit) -> ObjId {
        match doc.get(ROOT, "records").expect("get records") {
            Some((_, id)) => id,
            None => panic!("no records map"),
        }
    }

    /// One change per record, by the record's author's actor.
    fn add(doc: &mut AutoCommit, recs: &[Record]) {
        let records = records_obj(doc);
        for r in recs {
            doc.set_actor(actor(r.author));
            let obj = doc
                .put_object(&records, r.key.as_str(), ObjType::Map)
                .expect("put record");
            doc.put(&obj, "kind", r.kind as u64).expect("put");
            doc.put(&obj, "category", r.category).expect("put");
            doc.put(&obj, "urgency", r.urgency as u64).expect("put");
            doc.put(&obj, "location", r.location.as_str()).expect("put");
            doc.put(&obj, "title", r.title.as_str()).expect("put");
            doc.put(&obj, "details", r.details.as_str()).expect("put");
            doc.commit();
        }
    }

    pub fn build(ds: &Dataset) -> Docs {
        let mut base = AutoCommit::new().with_actor(actor(0));
        base.put_object(ROOT, "records", ObjType::Map)
            .expect("records");
        base.commit();
        add(&mut base, &ds.common);
        let mut a = base.fork();
        add(&mut a, &ds.a_extra);
        let mut b = base.fork();
        add(&mut b, &ds.b_extra);
        let mut full = a.clone();
        full.merge(&mut b.clone()).expect("merge");
        assert_eq!(full.length(records_obj(&full)), ds.needs.len());
        Docs { a, b, full }
    }

    /// The sync protocol loop with encoded messages, half-rounds as for
    /// CivicBase: both generate, then both receive.
    pub fn sync(a: &mut AutoCommit, b: &mut AutoCommit) -> SyncCost {
        let start = Instant::now();
        let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
        let mut halves = 0u32;
        let mut bytes = 0u64;
        loop {
            let from_a: Vec<Vec<u8>> = std::iter::from_fn(|| {
                a.sync()
                    .generate_sync_message(&mut sa)
                    .map(sync::Message::encode)
            })
            .collect();
            let from_b: Vec<Vec<u8>> = std::iter::from_fn(|| {
                b.sync()
                    .generate_sync_message(&mut sb)
                    .map(sync::Message::encode)
            })
            .collect();
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            halves += 1;
            for m in from_a {
                bytes += m.len() as u64;
                let m = sync::Message::decode(&m).expect("decode");
                b.sync().receive_sync_message(&mut sb, m).expect("receive");
            }
            for m in from_b {
                bytes += m.len() as u64;
                let m = sync::Message::decode(&m).expect("decode");
                a.sync().receive_sync_message(&mut sa, m).expect("receive");
            }
            assert!(halves < 100, "automerge sync does not settle");
        }
        let time = start.elapsed();
        SyncCost {
            time,
            bytes,
            round_trips: f64::from(halves) / 2.0,
        }
    }

    pub fn catch_up(docs: &Docs, n: usize) -> SyncCost {
        let (mut a, mut b) = (docs.a.clone(), docs.b.clone());
        let cost = sync(&mut a, &mut b);
        check(&mut a, &mut b, n);
        cost
    }

    pub fn initial(docs: &Docs, n: usize) -> SyncCost {
        let (mut full, mut empty) = (docs.full.clone(), AutoCommit::new());
        let cost = sync(&mut empty, &mut full);
        check(&mut empty, &mut full, n);
        cost
    }

    fn check(a: &mut AutoCommit, b: &mut AutoCommit, n: usize) {
        let (mut ha, mut hb) = (a.get_heads(), b.get_heads());
        ha.sort();
        hb.sort();
        assert_eq!(ha, hb, "automerge sync converges");
        assert_eq!(a.length(records_obj(a)), n);
    }

    /// Size of the saved (compressed) full document.
    pub fn saved_len(docs: &Docs) -> usize {
        docs.full.clone().save().len()
    }
}

// ---------------------------------------------------------------------------
// yrs
// ---------------------------------------------------------------------------

mod y {
    use std::time::Instant;

    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{Any, Doc, In, Map, MapPrelim, ReadTxn, StateVector, Transact, Update};

    use super::{Dataset, Record, SyncCost};

    /// Full updates of the three documents (copies are made by applying them).
    pub struct Docs {
        pub a: Vec<u8>,
        pub b: Vec<u8>,
        pub full: Vec<u8>,
    }

    /// One transaction per record: a nested map of the six fields.
    fn add(doc: &Doc, recs: &[Record]) {
        let records = doc.get_or_insert_map("records");
        for r in recs {
            let mut txn = doc.transact_mut();
            let fields: [(&str, In); 6] = [
                ("kind", In::from(Any::from(r.kind as i64))),
                ("category", In::from(Any::from(r.category))),
                ("urgency", In::from(Any::from(r.urgency as i64))),
                ("location", In::from(Any::from(r.location.as_str()))),
                ("title", In::from(Any::from(r.title.as_str()))),
                ("details", In::from(Any::from(r.details.as_str()))),
            ];
            records.insert(&mut txn, r.key.as_str(), MapPrelim::from(fields));
        }
    }

    fn full_update(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn load(client: u64, update: &[u8]) -> Doc {
        let doc = Doc::with_client_id(client);
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).expect("decode"))
            .expect("apply");
        doc
    }

    pub fn build(ds: &Dataset) -> Docs {
        let base = Doc::with_client_id(1);
        add(&base, &ds.common);
        let base_update = full_update(&base);
        let a = load(2, &base_update);
        add(&a, &ds.a_extra);
        let b = load(3, &base_update);
        add(&b, &ds.b_extra);
        let full = load(4, &full_update(&a));
        full.transact_mut()
            .apply_update(Update::decode_v1(&full_update(&b)).expect("decode"))
            .expect("apply");
        assert_eq!(len(&full), ds.needs.len());
        Docs {
            a: full_update(&a),
            b: full_update(&b),
            full: full_update(&full),
        }
    }

    fn len(doc: &Doc) -> usize {
        let records = doc.get_or_insert_map("records");
        records.len(&doc.transact()) as usize
    }

    /// State vectors both ways (one half-round), then the diffs both ways,
    /// decoded and applied (the second).
    pub fn sync(a: &Doc, b: &Doc) -> SyncCost {
        let start = Instant::now();
        let sv_a = a.transact().state_vector().encode_v1();
        let sv_b = b.transact().state_vector().encode_v1();
        let diff_for_b = a
            .transact()
            .encode_state_as_update_v1(&StateVector::decode_v1(&sv_b).expect("sv"));
        let diff_for_a = b
            .transact()
            .encode_state_as_update_v1(&StateVector::decode_v1(&sv_a).expect("sv"));
        b.transact_mut()
            .apply_update(Update::decode_v1(&diff_for_b).expect("decode"))
            .expect("apply");
        a.transact_mut()
            .apply_update(Update::decode_v1(&diff_for_a).expect("decode"))
            .expect("apply");
        let time = start.elapsed();
        SyncCost {
            time,
            bytes: (sv_a.len() + sv_b.len() + diff_for_a.len() + diff_for_b.len()) as u64,
            round_trips: 1.0,
        }
    }

    fn check(a: &Doc, b: &Doc, n: usize) {
        assert_eq!(
            a.transact().state_vector(),
            b.transact().state_vector(),
            "yrs sync converges"
        );
        assert_eq!(len(a), n);
        assert_eq!(len(b), n);
    }

    pub fn catch_up(docs: &Docs, n: usize) -> SyncCost {
        let (a, b) = (load(2, &docs.a), load(3, &docs.b));
        let cost = sync(&a, &b);
        check(&a, &b, n);
        cost
    }

    pub fn initial(docs: &Docs, n: usize) -> SyncCost {
        let (full, empty) = (load(4, &docs.full), Doc::with_client_id(5));
        let cost = sync(&empty, &full);
        check(&empty, &full, n);
        cost
    }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

fn main() {
    let total = Instant::now();
    let t = Instant::now();
    let ds = generate();
    let gen_time = t.elapsed();
    let n = ds.needs.len();

    // Dataset summary.
    let recs: Vec<&Record> = ds
        .common
        .iter()
        .chain(&ds.a_extra)
        .chain(&ds.b_extra)
        .collect();
    let avg = |f: &dyn Fn(&Record) -> usize| {
        recs.iter().map(|r| f(r)).sum::<usize>() as f64 / recs.len() as f64
    };
    let deps: usize = ds.needs.iter().map(|e| e.header().deps.len()).sum();
    let payload: usize = ds.needs.iter().map(|e| e.payload().len()).sum();
    let header: usize = ds.needs.iter().map(|e| e.header_bytes().len()).sum();
    println!(
        "CivicBase sync benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!();
    println!(
        "Dataset (generated in {:.0} ms, SplitMix64 seed 0x5EEDC1C1BA5E2026):",
        ms(gen_time)
    );
    println!(
        "  {} authors, {} membership entries (genesis, invites, joins), {} needs/offers entries",
        AUTHORS,
        ds.membership.len(),
        n
    );
    println!(
        "  text per record: title {:.1} chars, details {:.1}, location {:.1}, category {:.1}",
        avg(&|r| r.title.chars().count()),
        avg(&|r| r.details.chars().count()),
        avg(&|r| r.location.chars().count()),
        avg(&|r| r.category.len()),
    );
    println!(
        "  per entry: {:.1} B encoded = header {:.1} B ({:.2} deps) + signature 64 B + payload {:.1} B",
        encoded_bytes(&ds.needs) as f64 / n as f64,
        header as f64 / n as f64,
        deps as f64 / n as f64,
        payload as f64 / n as f64,
    );
    println!(
        "  divergence: both replicas share {COMMON}; A adds {EXTRA} (members 0..25), B adds {EXTRA} (members 25..50)"
    );
    println!();

    // 1. Ingest.
    let section = Section::start();
    let single = median_of(|| ingest_run(&ds, 0));
    let batch = median_of(|| ingest_run(&ds, 1));
    let trusted = median_of(|| ingest_run(&ds, 2));
    let rate = |c: SyncCost| n as f64 / c.time.as_secs_f64();
    println!("1. Ingest of {n} signed needs entries into a fresh replica (membership pre-loaded), single thread,");
    println!("   median of {REPS} after a warm-up");
    println!(
        "   {:<44} {:>10} {:>14} {:>12}",
        "mode", "time ms", "entries/s", "vs ingest"
    );
    for (name, c) in [
        ("ingest (verify one by one)", single),
        ("ingest_batch (batch verify, 256 per call)", batch),
        ("ingest_trusted (no signature check)", trusted),
    ] {
        println!(
            "   {:<44} {:>10.1} {:>14.0} {:>12}",
            name,
            ms(c.time),
            rate(c),
            ratio(rate(c), rate(single))
        );
    }
    println!(
        "   target: >= 30,000 entries/s with batch verification: {} ({:.0}/s)",
        met(rate(batch) >= 30_000.0),
        rate(batch)
    );
    println!("{}", section.report());
    println!();

    // 2. CivicBase sync.
    let section = Section::start();
    let cb_catch = median_of(|| civicbase_catch_up(&ds));
    let cb_init = median_of(|| civicbase_initial(&ds));
    let catch_missing = encoded_bytes(ds.a_entries()) + encoded_bytes(ds.b_entries());
    let init_missing = encoded_bytes(&ds.needs);
    println!("2. CivicBase sync (in-memory link, Hello exchange + ingest_batch with signature verification),");
    println!("   median of {REPS} after a warm-up");
    println!(
        "   {:<34} {:>9} {:>12} {:>15} {:>12} {:>12}",
        "scenario", "time ms", "wire KiB", "missing KiB", "wire/missing", "round trips"
    );
    for (name, c, missing) in [
        ("catch-up (1% diverged, 50+50)", cb_catch, catch_missing),
        ("initial (membership only -> full)", cb_init, init_missing),
    ] {
        println!(
            "   {:<34} {:>9.2} {:>12.1} {:>15.1} {:>12} {:>12}",
            name,
            ms(c.time),
            kib(c.bytes),
            kib(missing),
            ratio(c.bytes as f64, missing as f64),
            c.round_trips
        );
    }
    let catch_ratio = cb_catch.bytes as f64 / catch_missing as f64;
    println!(
        "   target: catch-up in 1 round trip: {} ({} round trips)",
        met(cb_catch.round_trips <= 1.0),
        cb_catch.round_trips
    );
    println!(
        "   target: catch-up wire bytes <= 1.2x missing-entry bytes: {} ({catch_ratio:.3}x)",
        met(catch_ratio <= 1.2)
    );
    println!("{}", section.report());
    println!();

    // 3. automerge and yrs.
    let section = Section::start();
    let t = Instant::now();
    let am_docs = am::build(&ds);
    let am_build = t.elapsed();
    let am_catch = median_of(|| am::catch_up(&am_docs, n));
    let am_init = median_of(|| am::initial(&am_docs, n));
    let t = Instant::now();
    let y_docs = y::build(&ds);
    let y_build = t.elapsed();
    let y_catch = median_of(|| y::catch_up(&y_docs, n));
    let y_init = median_of(|| y::initial(&y_docs, n));
    println!(
        "3. Same dataset in automerge 0.7 (one change per record, 50 actors, sync::State protocol)"
    );
    println!(
        "   and yrs 0.28 (one transaction per record, one client per replica, state vector + diff both ways)."
    );
    println!(
        "   Built in {:.0} ms (automerge, saved doc {:.1} KiB) and {:.0} ms (yrs, full update {:.1} KiB);",
        ms(am_build),
        kib(am::saved_len(&am_docs) as u64),
        ms(y_build),
        kib(y_docs.full.len() as u64)
    );
    println!(
        "   CivicBase entries total {:.1} KiB. Median of {REPS} after a warm-up.",
        kib(init_missing)
    );
    println!(
        "   {:<22} {:<10} {:>9} {:>10} {:>6} {:>10} {:>10}",
        "scenario", "system", "time ms", "wire KiB", "RTs", "CB/x time", "CB/x bytes"
    );
    for (scenario, cb, others) in [
        (
            "catch-up (1%)",
            cb_catch,
            [("automerge", am_catch), ("yrs", y_catch)],
        ),
        (
            "initial sync",
            cb_init,
            [("automerge", am_init), ("yrs", y_init)],
        ),
    ] {
        println!(
            "   {:<22} {:<10} {:>9.2} {:>10.1} {:>6} {:>10} {:>10}",
            scenario,
            "CivicBase",
            ms(cb.time),
            kib(cb.bytes),
            cb.round_trips,
            "",
            ""
        );
        for (name, c) in others {
            println!(
                "   {:<22} {:<10} {:>9.2} {:>10.1} {:>6} {:>10} {:>10}",
                "",
                name,
                ms(c.time),
                kib(c.bytes),
                c.round_trips,
                ratio(ms(cb.time), ms(c.time)),
                ratio(cb.bytes as f64, c.bytes as f64)
            );
        }
    }
    println!(
        "   target: CivicBase catch-up time below automerge's: {} ({:.2} ms vs {:.2} ms)",
        met(cb_catch.time < am_catch.time),
        ms(cb_catch.time),
        ms(am_catch.time)
    );
    println!("{}", section.report());
    println!();
    println!(
        "Total benchmark time {:.1} s",
        total.elapsed().as_secs_f64()
    );
}
