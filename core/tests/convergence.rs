//! Convergence harness: N in-memory peers driven by seeded random actions
//! over every module, synced over lossy links (frames dropped, duplicated,
//! reordered), partitioned and healed. At the end every peer must hold the
//! same entries and byte-identical state, with nothing pending, equal to a
//! replica rebuilt from the full log in a shuffled order.
//!
//! `CIVICBASE_SCHEDULES` sets how many schedules run (CI runs 2,000);
//! `CIVICBASE_SEED` replays one schedule. A failure prints its seed.

use std::collections::VecDeque;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use civicbase_core::op::{Choice, NeedKind, Op, Role, Urgency};
use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
use civicbase_core::state::members::join_statement;
use civicbase_core::sync::SyncSession;
use civicbase_core::{Entry, Keypair};

/// SplitMix64: small, seedable, identical on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len() as u64) as usize])
        }
    }
}

const PEERS: usize = 5;
const T0: u64 = 1_760_000_000_000;

struct Peer {
    key: Keypair,
    replica: Replica,
    skew_ms: i64,
}

/// A lossy link: two sessions and the frames in flight each way.
struct Link {
    a: usize,
    b: usize,
    sa: SyncSession,
    sb: SyncSession,
    to_b: VecDeque<Vec<u8>>,
    to_a: VecDeque<Vec<u8>>,
}

/// What a schedule exercised, summed over all schedules for the report.
#[derive(Default, Clone, Copy)]
struct Tally {
    entries: u64,
    refused: u64,
    ineffective: u64,
    removals: u64,
    dropped: u64,
    duplicated: u64,
    reordered: u64,
    broken: u64,
    partitions: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.entries += o.entries;
        self.refused += o.refused;
        self.ineffective += o.ineffective;
        self.removals += o.removals;
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.broken += o.broken;
        self.partitions += o.partitions;
    }
}

struct World {
    tally: Tally,
    rng: Rng,
    peers: Vec<Peer>,
    links: Vec<Link>,
    now: u64,
    group: Vec<u8>,
    log: Vec<String>,
}

impl World {
    fn wall(&self, p: usize) -> u64 {
        (self.now as i64 + self.peers[p].skew_ms) as u64
    }

    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let keys: Vec<Keypair> = (0..PEERS)
            .map(|_| {
                let mut s = [0u8; 32];
                for chunk in s.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next().to_le_bytes());
                }
                Keypair::from_seed(s)
            })
            .collect();
        let (founder_replica, genesis) = Replica::create(
            &keys[0],
            NewSpace {
                name: "Harness".into(),
                founder_name: "peer0".into(),
                default_credit_limit: 3 + rng.below(5),
            },
            T0,
            ReplicaConfig::default(),
        )
        .expect("genesis");
        let mut peers = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let replica = if i == 0 {
                Replica::from_genesis(genesis.clone(), T0, ReplicaConfig::default()).expect("copy")
            } else {
                Replica::from_genesis(genesis.clone(), T0, ReplicaConfig::default())
                    .expect("genesis")
            };
            peers.push(Peer {
                key,
                replica,
                skew_ms: rng.below(4000) as i64 - 2000,
            });
        }
        peers[0].replica = founder_replica;
        let mut w = World {
            tally: Tally::default(),
            rng,
            peers,
            links: Vec::new(),
            now: T0 + 10_000,
            group: vec![0; PEERS],
            log: Vec::new(),
        };
        // Invites for everyone, then joins, each delivered reliably.
        for i in 1..PEERS {
            let invite = Keypair::from_seed([i as u8; 32]);
            let role = *w
                .rng
                .pick(&[
                    Role::Viewer,
                    Role::Member,
                    Role::Member,
                    Role::Coordinator,
                    Role::Admin,
                ])
                .expect("non-empty");
            let now = w.wall(0);
            let p0 = &mut w.peers[0];
            p0.replica
                .author(
                    &p0.key,
                    vec![Op::Invite {
                        key: invite.author(),
                        role,
                        expires_ms: now + 3_600_000,
                        uses: 1,
                    }],
                    now,
                )
                .expect("invite");
            w.full_sync(0, i);
            let now = w.wall(i);
            let p = &mut w.peers[i];
            let statement = join_statement(&p.replica.space(), &p.key.author());
            p.replica
                .author(
                    &p.key,
                    vec![Op::Join {
                        invite: invite.author(),
                        proof: invite.sign(statement.as_bytes()),
                        name: format!("peer{i}"),
                    }],
                    now,
                )
                .expect("join");
            w.full_sync(i, 0);
            w.now += 100;
        }
        w
    }

    /// A fault-free exchange between two peers until both are quiet.
    fn full_sync(&mut self, a: usize, b: usize) {
        let mut sa = SyncSession::new(self.peers[a].replica.space());
        let mut sb = SyncSession::new(self.peers[b].replica.space());
        sa.start(&self.peers[a].replica);
        sb.start(&self.peers[b].replica);
        for _ in 0..100 {
            let mut moved = false;
            while let Some(f) = sa.poll_transmit() {
                moved = true;
                let now = self.wall(b);
                sb.handle_frame(&f, &mut self.peers[b].replica, now)
                    .expect("reliable sync");
            }
            while let Some(f) = sb.poll_transmit() {
                moved = true;
                let now = self.wall(a);
                sa.handle_frame(&f, &mut self.peers[a].replica, now)
                    .expect("reliable sync");
            }
            if !moved {
                return;
            }
        }
        panic!("full sync between {a} and {b} did not settle");
    }

    fn random_op(&mut self, p: usize) -> Vec<Op> {
        let state = self.peers[p].replica.state();
        let notices: Vec<_> = state.notices.notices.keys().copied().collect();
        let proposals: Vec<_> = state.decisions.proposals.keys().copied().collect();
        let needs: Vec<_> = state.needs.records.keys().copied().collect();
        let members: Vec<_> = state.members.members.keys().copied().collect();
        let now = self.wall(p);
        let r = &mut self.rng;
        let n = r.below(100);
        let op = match n {
            0..=12 => Op::PostNotice {
                title: format!("notice {}", r.below(1000)),
                body: "text".into(),
            },
            13..=19 => match r.pick(&notices) {
                Some(id) => Op::EditNotice {
                    notice: *id,
                    title: r.chance(50).then(|| format!("edited {}", r.below(1000))),
                    body: Some(format!("body {}", r.below(1000))),
                },
                None => return vec![],
            },
            20..=24 => match r.pick(&notices) {
                Some(id) => Op::PinNotice {
                    notice: *id,
                    pinned: r.chance(70),
                },
                None => return vec![],
            },
            25..=27 => match r.pick(&notices) {
                Some(id) => Op::DeleteNotice { notice: *id },
                None => return vec![],
            },
            28..=33 => Op::Propose {
                title: format!("proposal {}", r.below(1000)),
                body: String::new(),
                deadline_ms: now + 1_000 + r.below(15_000),
                quorum: r.below(4) as u32,
            },
            34..=47 => match r.pick(&proposals) {
                Some(id) => Op::Vote {
                    proposal: *id,
                    choice: *r
                        .pick(&[Choice::Yes, Choice::No, Choice::Abstain])
                        .expect("choice"),
                },
                None => return vec![],
            },
            48..=51 => match r.pick(&proposals) {
                Some(id) => Op::Comment {
                    proposal: *id,
                    body: format!("comment {}", r.below(100)),
                },
                None => return vec![],
            },
            52..=59 => Op::CreateNeed {
                kind: if r.chance(50) {
                    NeedKind::Need
                } else {
                    NeedKind::Offer
                },
                category: r
                    .pick(&["water", "transport", "medicine"])
                    .expect("cat")
                    .to_string(),
                urgency: *r
                    .pick(&[
                        Urgency::Low,
                        Urgency::Normal,
                        Urgency::High,
                        Urgency::Critical,
                    ])
                    .expect("urgency"),
                location: "school".into(),
                title: format!("need {}", r.below(1000)),
                details: String::new(),
            },
            60..=65 => match r.pick(&needs) {
                Some(id) => Op::ClaimNeed { need: *id },
                None => return vec![],
            },
            66..=69 => match r.pick(&needs) {
                Some(id) => Op::CompleteNeed { need: *id },
                None => return vec![],
            },
            70..=71 => match r.pick(&needs) {
                Some(id) => Op::ReopenNeed { need: *id },
                None => return vec![],
            },
            72..=86 => match r.pick(&members) {
                Some(to) => Op::Transfer {
                    to: *to,
                    amount: 1 + r.below(4),
                    memo: "help".into(),
                },
                None => return vec![],
            },
            87..=90 => match r.pick(&members) {
                Some(m) => Op::SetCreditLimit {
                    member: *m,
                    limit: r.below(10),
                },
                None => return vec![],
            },
            91..=93 => match r.pick(&members) {
                Some(m) => Op::SetRole {
                    member: *m,
                    role: *r
                        .pick(&[Role::Viewer, Role::Member, Role::Coordinator, Role::Admin])
                        .expect("role"),
                },
                None => return vec![],
            },
            94..=96 => Op::SetProfile {
                name: format!("name {}", r.below(100)),
            },
            _ => match r.pick(&members) {
                // Removals are rare but exercise strong removal.
                Some(m) if r.chance(40) => Op::Remove { member: *m },
                _ => return vec![],
            },
        };
        vec![op]
    }

    fn link_index(&mut self, a: usize, b: usize) -> usize {
        if let Some(i) = self.links.iter().position(|l| l.a == a && l.b == b) {
            return i;
        }
        let mut sa = SyncSession::new(self.peers[a].replica.space());
        let mut sb = SyncSession::new(self.peers[b].replica.space());
        sa.start(&self.peers[a].replica);
        sb.start(&self.peers[b].replica);
        self.links.push(Link {
            a,
            b,
            sa,
            sb,
            to_b: VecDeque::new(),
            to_a: VecDeque::new(),
        });
        self.links.len() - 1
    }

    /// Moves up to a few frames each way over a link with faults.
    fn step_link(&mut self, i: usize) {
        let (a, b) = (self.links[i].a, self.links[i].b);
        {
            let l = &mut self.links[i];
            l.sa.push_local(&self.peers[a].replica);
            l.sb.push_local(&self.peers[b].replica);
            while let Some(f) = l.sa.poll_transmit() {
                l.to_b.push_back(f);
            }
            while let Some(f) = l.sb.poll_transmit() {
                l.to_a.push_back(f);
            }
        }
        let budget = 1 + self.rng.below(4);
        let mut broken = false;
        for _ in 0..budget {
            for dir in 0..2 {
                let frame = {
                    let rng = &mut self.rng;
                    let l = &mut self.links[i];
                    let q = if dir == 0 { &mut l.to_b } else { &mut l.to_a };
                    if q.len() > 1 && rng.chance(10) {
                        let j = 1 + rng.below(q.len() as u64 - 1) as usize;
                        q.swap(0, j);
                        self.tally.reordered += 1;
                    }
                    let Some(f) = q.pop_front() else { continue };
                    if rng.chance(5) {
                        self.tally.dropped += 1;
                        continue;
                    }
                    if rng.chance(5) {
                        self.tally.duplicated += 1;
                        q.push_front(f.clone());
                    }
                    f
                };
                let (to, now) = if dir == 0 {
                    (b, self.wall(b))
                } else {
                    (a, self.wall(a))
                };
                let l = &mut self.links[i];
                let session = if dir == 0 { &mut l.sb } else { &mut l.sa };
                if session
                    .handle_frame(&frame, &mut self.peers[to].replica, now)
                    .is_err()
                {
                    broken = true;
                    self.tally.broken += 1;
                }
            }
        }
        if broken || self.rng.chance(3) {
            // The transport closes; a later step reconnects from scratch.
            self.links.swap_remove(i);
        }
    }

    fn step(&mut self, n: usize) {
        self.now += self.rng.below(1500);
        let roll = self.rng.below(100);
        if roll < 45 {
            let p = self.rng.below(PEERS as u64) as usize;
            let ops = self.random_op(p);
            if ops.is_empty() {
                return;
            }
            let now = self.wall(p);
            let peer = &mut self.peers[p];
            let res = peer.replica.author(&peer.key, ops.clone(), now);
            if res.is_err() {
                self.tally.refused += 1;
            }
            if res.is_ok() && matches!(ops[0], Op::Remove { .. }) {
                self.tally.removals += 1;
            }
            self.log.push(format!(
                "{n}: peer{p} {:?} -> {}",
                ops[0],
                if res.is_ok() { "ok" } else { "refused" }
            ));
        } else if roll < 90 {
            let a = self.rng.below(PEERS as u64) as usize;
            let b = self.rng.below(PEERS as u64) as usize;
            if a == b || self.group[a] != self.group[b] {
                return;
            }
            let (a, b) = (a.min(b), a.max(b));
            let i = self.link_index(a, b);
            self.step_link(i);
        } else if roll < 95 {
            for g in self.group.iter_mut() {
                *g = (self.rng.next() % 2) as u8;
            }
            let group = self.group.clone();
            self.links.retain(|l| group[l.a] == group[l.b]);
            self.log.push(format!("{n}: partition {group:?}"));
            self.tally.partitions += 1;
        } else {
            self.group = vec![0; PEERS];
            self.log.push(format!("{n}: heal"));
        }
    }

    fn converge(&mut self) {
        self.links.clear();
        self.group = vec![0; PEERS];
        // Skip past every deadline skew window so no peer's clock refuses
        // another's entries.
        self.now += 60_000;
        for _round in 0..4 {
            for a in 0..PEERS {
                for b in 0..PEERS {
                    if a != b {
                        self.full_sync(a, b);
                    }
                }
            }
        }
    }
}

fn run_schedule(seed: u64, steps: usize) -> Result<Tally, String> {
    let mut w = World::new(seed);
    for n in 0..steps {
        w.step(n);
    }
    w.converge();
    let reference = &w.peers[0].replica;
    let hash = reference.state_hash();
    let vv = reference.version_vector();
    for (i, p) in w.peers.iter().enumerate() {
        let r = &p.replica;
        if r.pending_len() != 0 {
            return Err(format!("peer{i} has {} pending entries", r.pending_len()));
        }
        if r.version_vector() != vv {
            return Err(format!("peer{i} version vector differs"));
        }
        if r.state_hash() != hash {
            let mine = format!("{:#?}", r.state());
            let theirs = format!("{:#?}", reference.state());
            let at = mine
                .lines()
                .zip(theirs.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let context = |s: &str| {
                s.lines()
                    .skip(at.saturating_sub(25))
                    .take(35)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return Err(format!(
                "peer{i} state differs at line {at}:\n{}\n--- vs peer0 ---\n{}\nineffective: {} vs {}",
                context(&mine),
                context(&theirs),
                r.ineffective().count(),
                reference.ineffective().count()
            ));
        }
    }
    // A replica rebuilt from the full log, delivered in a shuffled order
    // (pending entries resolve as their dependencies arrive).
    let mut entries: Vec<Entry> = reference.log().cloned().collect();
    let mut rng = Rng(seed ^ 0xdead_beef);
    for i in (1..entries.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        entries.swap(i, j);
    }
    let mut rebuilt = Replica::empty(reference.space(), ReplicaConfig::default());
    let now = w.now + 60_000;
    for e in entries {
        let _ = rebuilt.ingest(e, now);
    }
    if rebuilt.pending_len() != 0 || rebuilt.version_vector() != vv {
        return Err(format!(
            "rebuilt replica: {} pending, {} of {} entries",
            rebuilt.pending_len(),
            rebuilt.len(),
            reference.len()
        ));
    }
    if rebuilt.state_hash() != hash {
        return Err("rebuilt replica state differs".into());
    }
    // And a snapshot restores to the same state.
    let restored = Replica::restore(
        &reference.snapshot(),
        reference.log().cloned(),
        ReplicaConfig::default(),
    )
    .map_err(|e| format!("restore failed: {e}"))?;
    if restored.state_hash() != hash {
        return Err("restored replica state differs".into());
    }
    let mut tally = w.tally;
    tally.entries = reference.len() as u64;
    tally.ineffective = reference.ineffective().count() as u64;
    Ok(tally)
}

fn schedules() -> u64 {
    std::env::var("CIVICBASE_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[test]
fn seeded_schedules_converge() {
    const STEPS: usize = 120;
    if let Some(seed) = std::env::var("CIVICBASE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = run_schedule(seed, STEPS) {
            let w = {
                let mut w = World::new(seed);
                for n in 0..STEPS {
                    w.step(n);
                }
                w
            };
            panic!("seed {seed} failed: {e}\nschedule:\n{}", w.log.join("\n"));
        }
        return;
    }
    let total = schedules();
    let (failures, t, ran) = run_many(total, STEPS);
    println!("convergence: {ran} schedules of {STEPS} steps over {PEERS} peers");
    println!(
        "  {} entries converged; {} actions refused as unauthorised or invalid; {} removals, {} entries left without effect",
        t.entries, t.refused, t.removals, t.ineffective
    );
    println!(
        "  frames dropped {}, duplicated {}, reordered {}; sessions broken {}; partitions {}",
        t.dropped, t.duplicated, t.reordered, t.broken, t.partitions
    );
    assert!(
        t.entries > ran * 20 && t.dropped > 0 && t.removals > 0,
        "the schedules must exercise faults: {} entries, {} drops, {} removals",
        t.entries,
        t.dropped,
        t.removals
    );
    if let Some((seed, e)) = failures.first() {
        let short: String = e.chars().take(3000).collect();
        panic!("schedule with seed {seed} did not converge: {short}\nreplay with CIVICBASE_SEED={seed}");
    }
}

/// Runs schedules `0..total`, in parallel where threads exist.
#[cfg(not(target_arch = "wasm32"))]
fn run_many(total: u64, steps: usize) -> (Vec<(u64, String)>, Tally, u64) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut fails = Vec::new();
                    let mut tally = Tally::default();
                    let mut seed = t;
                    while seed < total {
                        match run_schedule(seed, steps) {
                            Ok(t) => tally.add(&t),
                            Err(e) => {
                                fails.push((seed, e));
                                break;
                            }
                        }
                        seed += threads;
                    }
                    (fails, tally)
                })
            })
            .collect();
        let mut fails = Vec::new();
        let mut tally = Tally::default();
        for h in handles {
            let (f, t) = h.join().expect("worker");
            fails.extend(f);
            tally.add(&t);
        }
        (fails, tally, total)
    })
}

/// Runs schedules `0..total` one after the other (wasm32 has no threads).
#[cfg(target_arch = "wasm32")]
fn run_many(total: u64, steps: usize) -> (Vec<(u64, String)>, Tally, u64) {
    // No threads and a slower machine: a smaller sample of the same seeds.
    let ran = total.min(40);
    let mut tally = Tally::default();
    for seed in 0..ran {
        match run_schedule(seed, steps) {
            Ok(t) => tally.add(&t),
            Err(e) => return (vec![(seed, e)], tally, ran),
        }
    }
    (Vec::new(), tally, ran)
}
