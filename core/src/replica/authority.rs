//! Authority: which removals, demotions and invite revocations are in
//! force, and the effective state that follows from them.
//!
//! Every rule here reads only the causal graph and the signed operations;
//! no timestamp and no other value an author picks freely decides a
//! conflict of authority (docs/PROTOCOL.md, "Authorization").
//!
//! 1. *Revocations* are the entries that take authority away: `Remove`,
//!    `SetRole` (it caps the member's role) and `RevokeInvite`.
//! 2. Each entry that authority flows through records where its own
//!    authority came from (`AuthMeta::parents`): its device's link, its
//!    member's join and the role changes that set its role, and for a join
//!    the invite. The closure of that relation is the entry's *chain*.
//! 3. A revocation `b` *undermines* a concurrent revocation `a` when `b`
//!    takes away something `a`'s chain rests on and does not know of: an
//!    entry of the member `b` removes, an entry of the member `b` demotes
//!    that needed more than the new role, or a join with the invite `b`
//!    revokes.
//! 4. Conflicts are decided like an argument graph. Inside a cycle of
//!    revocations undermining each other, a revocation cannot undermine one
//!    by a *senior* member (one whose role was granted in the causal past
//!    of the other's grant: the founder is senior to everyone, an inviter
//!    to the people it appointed). What still forms a cycle is a *mutual*
//!    removal: all of its revocations take effect. Then, in the causal
//!    order of the remaining graph, a revocation is in force unless one in
//!    force outside its cycle undermines it.
//! 5. The effective state is a fold over the log in causal order: an entry
//!    of a removed member that the removal does not know of has no effect,
//!    one of a demoted member acts with at most the new role, a join the
//!    revocation of its invite does not know of has no effect, and every
//!    other entry is validated against the effective facts in its past, so
//!    whatever came only through an entry without effect has none either.
//!    Invites admit at most their uses: when more joins with one invite
//!    are known than it admits, a join with more than the allowed number
//!    of joins in its past or concurrent with it (itself included) has no
//!    effect.
//! 6. A revocation in force whose chain holds an entry without effect for
//!    another reason (a fork, an invite used too often) is dropped and the
//!    resolution runs again; each round drops at least one, so it ends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::id::{AuthorId, EntryId};
use crate::op::{decode_payload, Op, Role};
use crate::state::members::needed_role;
use crate::state::{Past, SpaceState};

use super::{apply_ops, check_ops, Meta, Replica};

/// What a revocation takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Revocation {
    /// A member's membership.
    Remove(AuthorId),
    /// Any role of a member above this one.
    Cap(AuthorId, Role),
    /// An invite (every join with it).
    Invite(AuthorId),
}

/// Bookkeeping for an entry that authority flows through (a membership
/// operation): where its own authority came from, and what it revokes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct AuthMeta {
    /// The member its author's device spoke for (the joiner itself for a join).
    pub member: Option<AuthorId>,
    /// The highest role its operations needed.
    pub needed: Option<Role>,
    /// The entries its authority came through.
    pub parents: Vec<EntryId>,
    /// The entries that gave its member the role it acted with.
    pub grant: Vec<EntryId>,
    /// What it revokes.
    pub revokes: Vec<Revocation>,
    /// The invite key it joins with.
    pub joins: Option<AuthorId>,
}

/// Why an entry is without effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Cause {
    /// A revocation in force that does not know of it takes its authority.
    Revoked(EntryId),
    /// Anything else: a fork, an invite used too often, a defeated
    /// revocation, or authority that came through an entry without effect.
    Invalid,
}

/// The decision: which revocations are in force, and indexes over them.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolution {
    /// Revocations in force, each with the id of its cycle (revocations of
    /// one mutual removal share it).
    pub in_force: BTreeMap<EntryId, u32>,
    /// Removals (`None`) and role caps (`Some`) in force, by member.
    pub by_member: HashMap<AuthorId, Vec<(EntryId, Option<Role>)>>,
    /// Revocations in force, by invite key.
    pub by_invite: HashMap<AuthorId, Vec<EntryId>>,
    /// Joins without effect because their invite admitted fewer people.
    pub overused: HashSet<EntryId>,
}

impl Resolution {
    fn index(&mut self, r: &Replica) {
        self.by_member.clear();
        self.by_invite.clear();
        for id in self.in_force.keys() {
            for rev in r.revocations_of(id) {
                match rev {
                    Revocation::Remove(m) => self.by_member.entry(m).or_default().push((*id, None)),
                    Revocation::Cap(m, role) => {
                        self.by_member.entry(m).or_default().push((*id, Some(role)))
                    }
                    Revocation::Invite(k) => self.by_invite.entry(k).or_default().push(*id),
                }
            }
        }
    }
}

/// How one entry stands against the revocations in force.
pub(super) struct Standing {
    /// The revocation that leaves it without effect, if any.
    pub excluded: Option<Cause>,
    /// The highest role it may act with.
    pub cap: Role,
    /// The revocation that set that cap.
    pub cap_by: Option<EntryId>,
}

impl Replica {
    /// Rebuilds the resolution's indexes (after a snapshot restored it).
    pub(super) fn reindex_resolution(&mut self) {
        let mut res = std::mem::take(&mut self.resolution);
        res.index(self);
        self.resolution = res;
    }

    /// Whether the entry `a` is in the causal past of the entry `b`.
    pub(super) fn precedes_id(&self, a: &EntryId, b: &EntryId) -> bool {
        let (Some(ma), Some(mb)) = (self.metas.get(a), self.metas.get(b)) else {
            return false;
        };
        a != b && mb.covers(ma.aidx, ma.seq)
    }

    fn concurrent(&self, a: &EntryId, b: &EntryId) -> bool {
        a != b && !self.precedes_id(a, b) && !self.precedes_id(b, a)
    }

    fn auth(&self, id: &EntryId) -> Option<&AuthMeta> {
        self.metas.get(id).and_then(|m| m.auth.as_deref())
    }

    fn revocations_of(&self, id: &EntryId) -> Vec<Revocation> {
        self.auth(id).map(|a| a.revokes.clone()).unwrap_or_default()
    }

    /// The entry and every entry its authority came through.
    fn chain(&self, id: &EntryId) -> BTreeSet<EntryId> {
        let mut seen = BTreeSet::from([*id]);
        let mut todo = vec![*id];
        while let Some(x) = todo.pop() {
            for p in self.auth(&x).map(|a| a.parents.as_slice()).unwrap_or(&[]) {
                if seen.insert(*p) {
                    todo.push(*p);
                }
            }
        }
        seen
    }

    /// Whether revocation `b` takes away something in `a_chain` (the chain
    /// of a revocation concurrent with it) that it does not know of.
    fn undermines(&self, b: &EntryId, a_chain: &BTreeSet<EntryId>) -> bool {
        let revs = self.revocations_of(b);
        a_chain.iter().any(|c| {
            if c == b || self.precedes_id(c, b) {
                return false;
            }
            let Some(ca) = self.auth(c) else { return false };
            revs.iter().any(|rev| match *rev {
                Revocation::Remove(m) => ca.member == Some(m),
                Revocation::Cap(m, role) => {
                    ca.member == Some(m) && ca.needed.is_some_and(|n| n > role)
                }
                Revocation::Invite(k) => ca.joins == Some(k),
            })
        })
    }

    /// Whether the author of `a` is senior to the author of `b`: every
    /// grant `a` acted on is in the causal past of every grant `b` did.
    fn senior(&self, a: &EntryId, b: &EntryId) -> bool {
        let (Some(ga), Some(gb)) = (self.auth(a), self.auth(b)) else {
            return false;
        };
        !ga.grant.is_empty()
            && !gb.grant.is_empty()
            && ga
                .grant
                .iter()
                .all(|x| gb.grant.iter().all(|y| self.precedes_id(x, y)))
    }

    fn forked_at(&self, id: &EntryId) -> bool {
        let Some(m) = self.metas.get(id) else {
            return true;
        };
        self.chains[m.aidx as usize]
            .author
            .and_then(|a| self.forks.get(&a))
            .is_some_and(|p| m.seq >= p.seq)
    }

    /// Decides which revocations are in force, leaving out `dropped`.
    fn resolve(&self, dropped: &BTreeSet<EntryId>) -> Resolution {
        let nodes: Vec<EntryId> = {
            let mut v: Vec<EntryId> = self
                .revocation_entries
                .iter()
                .filter(|id| !dropped.contains(id) && !self.forked_at(id))
                .copied()
                .collect();
            // Sorted by id: nothing below may depend on arrival order.
            v.sort_unstable();
            v
        };
        let n = nodes.len();
        let chains: Vec<BTreeSet<EntryId>> = nodes.iter().map(|id| self.chain(id)).collect();
        // edges[a] = the revocations that undermine a.
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        for a in 0..n {
            for b in 0..n {
                if a != b
                    && self.concurrent(&nodes[a], &nodes[b])
                    && self.undermines(&nodes[b], &chains[a])
                {
                    edges[a].push(b);
                }
            }
        }
        // Inside a cycle, a junior cannot undermine a senior.
        let scc = components(&edges);
        for a in 0..n {
            let a_id = nodes[a];
            edges[a].retain(|&b| scc[a] != scc[b] || !self.senior(&a_id, &nodes[b]));
        }
        let scc = components(&edges);
        // Decide in the causal order of the condensed graph: a revocation
        // is defeated by an undermining one in force outside its cycle.
        let mut decided: Vec<Option<bool>> = vec![None; n];
        loop {
            let mut progress = false;
            for a in 0..n {
                if decided[a].is_some() {
                    continue;
                }
                let outside: Vec<usize> = edges[a]
                    .iter()
                    .copied()
                    .filter(|&b| scc[b] != scc[a])
                    .collect();
                if outside.iter().any(|&b| decided[b] == Some(true)) {
                    decided[a] = Some(false);
                    progress = true;
                } else if outside.iter().all(|&b| decided[b] == Some(false)) {
                    decided[a] = Some(true);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        let mut res = Resolution::default();
        for (a, d) in decided.iter().enumerate() {
            // Every node is decided: the condensed graph has no cycle.
            if *d != Some(false) {
                res.in_force.insert(nodes[a], scc[a] as u32);
            }
        }
        res.index(self);
        res.overused = self.overused_joins(&res);
        res
    }

    /// Joins beyond their invite's uses (see the module documentation).
    fn overused_joins(&self, res: &Resolution) -> HashSet<EntryId> {
        let mut out = HashSet::new();
        for (key, invite) in &self.plain.members.invites {
            let uses = invite.uses() as usize;
            if invite.joins.len() <= uses {
                continue;
            }
            let revoked = res.by_invite.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let joins: Vec<EntryId> = invite
                .joins
                .iter()
                .filter_map(|s| self.entry_at(&s.author, s.seq))
                .filter(|j| !revoked.iter().any(|r| !self.precedes_id(j, r)))
                .collect();
            for j in &joins {
                let rivals = joins.iter().filter(|x| !self.precedes_id(j, x)).count();
                if rivals > uses {
                    out.insert(*j);
                }
            }
        }
        out
    }

    /// How the entry `id` (by `member`'s device, joining with `joins`)
    /// stands against the resolution in force.
    pub(super) fn standing(
        &self,
        id: &EntryId,
        meta: &Meta,
        member: Option<AuthorId>,
        joins: Option<AuthorId>,
    ) -> Standing {
        let mut st = Standing {
            excluded: None,
            cap: Role::Admin,
            cap_by: None,
        };
        let author = self.chains.get(meta.aidx as usize).and_then(|c| c.author);
        if author
            .and_then(|a| self.forks.get(&a))
            .is_some_and(|p| meta.seq >= p.seq)
            || self.resolution.overused.contains(id)
        {
            st.excluded = Some(Cause::Invalid);
            return st;
        }
        // Whether the revocation `r` knows of this entry.
        let knows = |r: &EntryId| {
            self.metas
                .get(r)
                .is_some_and(|rm| rm.covers(meta.aidx, meta.seq))
        };
        if let Some(k) = joins {
            for r in self.resolution.by_invite.get(&k).into_iter().flatten() {
                if !knows(r) {
                    st.excluded = Some(Cause::Revoked(*r));
                    return st;
                }
            }
        }
        // Whether this entry knows of the revocation `r` (then its own past
        // decides the role it acts with, not a cap).
        let known = |r: &EntryId| {
            self.metas
                .get(r)
                .is_some_and(|rm| meta.covers(rm.aidx, rm.seq))
        };
        if let Some(m) = member {
            for (r, cap) in self.resolution.by_member.get(&m).into_iter().flatten() {
                if r == id || knows(r) || known(r) {
                    continue;
                }
                match cap {
                    None => {
                        st.excluded = Some(Cause::Revoked(*r));
                        return st;
                    }
                    Some(role) if *role < st.cap => {
                        st.cap = *role;
                        st.cap_by = Some(*r);
                    }
                    Some(_) => {}
                }
            }
        }
        st
    }

    /// The member the author of a stored entry spoke for, as the stored
    /// facts in the entry's past say.
    fn member_in_past(&self, meta: &Meta, past: &Past<'_>) -> Option<AuthorId> {
        if let Some(a) = meta.auth.as_deref() {
            return a.member;
        }
        let author = self.chains.get(meta.aidx as usize)?.author?;
        self.plain
            .members
            .devices
            .get(&author)
            .and_then(|d| d.in_past(past))
            .map(|(_, m)| m)
    }

    /// Decides the revocations in force and rebuilds the effective state.
    pub(super) fn recompute_effective(&mut self) {
        let mut dropped = BTreeSet::new();
        loop {
            self.resolution = self.resolve(&dropped);
            let (state, ineffective) = self.fold();
            // A revocation whose chain lost an entry for a reason other
            // than a revocation of its own cycle is not in force.
            let bad: Vec<EntryId> = self
                .resolution
                .in_force
                .iter()
                .filter(|(r, cycle)| {
                    self.chain(r).iter().any(|c| {
                        c != *r
                            && match ineffective.get(c) {
                                None => false,
                                Some(Cause::Revoked(by)) => {
                                    self.resolution.in_force.get(by) != Some(cycle)
                                }
                                Some(Cause::Invalid) => true,
                            }
                    })
                })
                .map(|(r, _)| *r)
                .collect();
            if bad.is_empty() {
                self.ineffective = ineffective.into_keys().collect();
                self.effective = if self.ineffective.is_empty() && self.forks.is_empty() {
                    None
                } else {
                    Some(state)
                };
                return;
            }
            dropped.extend(bad);
        }
    }

    /// Folds every stored entry in log order into a fresh state under the
    /// current resolution; returns it and the entries without effect.
    fn fold(&self) -> (SpaceState, HashMap<EntryId, Cause>) {
        let mut state = SpaceState::default();
        let mut ineffective = HashMap::new();
        let order = self.causality();
        for id in &self.log {
            let (Some(entry), Some(meta)) = (self.entries.get(id), self.metas.get(id)) else {
                continue;
            };
            let h = entry.header();
            let Ok(ops) = decode_payload(entry.payload()) else {
                continue;
            };
            let past = Past::new(&meta.clock, &self.author_index, h.author, h.seq, &order);
            let is_genesis = entry.is_genesis();
            let verdict = if self.resolution.in_force.contains_key(id) {
                Ok(Role::Admin)
            } else if meta.auth.as_ref().is_some_and(|a| !a.revokes.is_empty()) {
                Err(Cause::Invalid)
            } else {
                let member = self.member_in_past(meta, &past);
                let joins = meta.auth.as_ref().and_then(|a| a.joins);
                let st = self.standing(id, meta, member, joins);
                match st.excluded {
                    Some(cause) => Err(cause),
                    None => check_ops(&state, &self.space, *id, h, &ops, &past, is_genesis, st.cap)
                        .map(|()| st.cap)
                        .map_err(|_| st.cap_by.map_or(Cause::Invalid, Cause::Revoked)),
                }
            };
            match verdict {
                Ok(cap) => apply_ops(
                    &mut state,
                    &self.space,
                    *id,
                    h,
                    &ops,
                    &past,
                    is_genesis,
                    cap,
                ),
                Err(cause) => {
                    ineffective.insert(*id, cause);
                }
            }
        }
        (state, ineffective)
    }

    /// The authority bookkeeping of a causally ready entry carrying `ops`,
    /// from the stored facts in its past; `None` when no operation of it is
    /// one authority flows through.
    pub(super) fn auth_meta(&self, id: EntryId, ops: &[Op], past: &Past<'_>) -> Option<AuthMeta> {
        if !ops.iter().any(Op::moves_authority) {
            return None;
        }
        let ms = &self.plain.members;
        let author = past.author();
        let to_id = |s: &crate::state::Stamp| self.entry_at(&s.author, s.seq);
        let mut meta = AuthMeta::default();
        let joining = ops.iter().find_map(|op| match op {
            Op::Join { invite, .. } => Some(*invite),
            _ => None,
        });
        if ops.iter().any(|op| matches!(op, Op::Genesis { .. })) || joining.is_some() {
            meta.member = Some(author);
            meta.grant = vec![id];
            if let Some(k) = joining {
                meta.joins = Some(k);
                if let Some(inv) = ms.invites.get(&k) {
                    meta.parents.extend(inv.issuings_in(past).filter_map(to_id));
                }
            }
        } else if let Some((link, member)) = ms.devices.get(&author).and_then(|d| d.in_past(past)) {
            meta.member = Some(member);
            meta.parents.extend(to_id(&link));
            if let Some(m) = ms.members.get(&member) {
                let joined = to_id(&m.joined);
                meta.parents.extend(joined);
                let sources: Vec<EntryId> = ms
                    .role_sources(&member, past)
                    .iter()
                    .filter_map(to_id)
                    .collect();
                meta.parents.extend(sources.iter().copied());
                meta.grant = if sources.is_empty() {
                    joined.into_iter().collect()
                } else {
                    sources
                };
            }
        }
        meta.parents.sort_unstable();
        meta.parents.dedup();
        meta.needed = ops
            .iter()
            .filter_map(|op| needed_role(op, ms, meta.member, past))
            .max();
        for op in ops {
            match op {
                Op::Remove { member } => meta.revokes.push(Revocation::Remove(*member)),
                Op::SetRole { member, role } => meta.revokes.push(Revocation::Cap(*member, *role)),
                Op::RevokeInvite { key } => meta.revokes.push(Revocation::Invite(*key)),
                _ => {}
            }
        }
        Some(meta)
    }
}

/// Strongly connected components of a small graph given as adjacency
/// lists: `out[i]` names the component of node `i` (the smallest node in it).
fn components(edges: &[Vec<usize>]) -> Vec<usize> {
    let n = edges.len();
    let reach: Vec<Vec<bool>> = (0..n)
        .map(|s| {
            let mut seen = vec![false; n];
            let mut todo = vec![s];
            seen[s] = true;
            while let Some(x) = todo.pop() {
                for &y in &edges[x] {
                    if !seen[y] {
                        seen[y] = true;
                        todo.push(y);
                    }
                }
            }
            seen
        })
        .collect();
    (0..n)
        .map(|a| (0..n).find(|&b| reach[a][b] && reach[b][a]).unwrap_or(a))
        .collect()
}
