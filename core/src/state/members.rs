//! Members: the founder, invites, joins, devices, roles and removals.
//!
//! A member is identified by the key of the device that joined (or founded
//! the space); further devices are linked to it, each with its own signed
//! consent. Every question about a member is asked relative to an entry's
//! causal past: a device speaks for a member once the link (or join) is in
//! its past, and stops being able to once a removal is in its past. When
//! several role changes of one member are in a past and none knows of the
//! others, the lowest role counts; no timestamp decides. Strong removal and
//! demotion of concurrent entries are enforced by the replica
//! (`replica::authority`), which leaves them out of the state altogether.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_text, Lww, Module, OpContext, OpError, Past, SpaceState, Stamp};
use crate::id::{AuthorId, Hash, SpaceId};
use crate::identity;
use crate::op::{Op, Role, MAX_CREDIT, MAX_INVITE_USES, MAX_NAME};

/// One issuing of an invite key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteGrant {
    /// The inviting member.
    pub by: AuthorId,
    /// The role it grants.
    pub role: Role,
    /// Expiry, Unix ms (a join is valid through this millisecond).
    pub expires_ms: u64,
    /// How many people it may admit.
    pub uses: u32,
}

/// Everything known about one invite key. A key is issued once; issuings
/// of one key made without knowledge of each other are all kept, and a
/// join that has several in its past gets the least of them (lowest role,
/// earliest expiry, fewest uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Issuings by stamp.
    pub issued: BTreeMap<Stamp, InviteGrant>,
    /// Revocations.
    pub revoked: BTreeSet<Stamp>,
    /// Joins made with it.
    pub joins: BTreeSet<Stamp>,
}

impl Invite {
    /// What the issuings in `past` grant together (the least of each), or
    /// `None` when none is in `past`.
    pub fn in_past(&self, past: &Past<'_>) -> Option<InviteGrant> {
        self.issued
            .iter()
            .filter(|(at, _)| past.contains(at))
            .map(|(_, g)| g.clone())
            .reduce(|a, b| InviteGrant {
                by: a.by.min(b.by),
                role: a.role.min(b.role),
                expires_ms: a.expires_ms.min(b.expires_ms),
                uses: a.uses.min(b.uses),
            })
    }

    /// The stamps of the issuings in `past`.
    pub fn issuings_in<'s>(&'s self, past: &'s Past<'_>) -> impl Iterator<Item = &'s Stamp> + 's {
        self.issued.keys().filter(move |at| past.contains(at))
    }

    /// Whether `member` issued it in `past`.
    pub fn issued_by_in(&self, member: &AuthorId, past: &Past<'_>) -> bool {
        self.issued
            .iter()
            .any(|(at, g)| g.by == *member && past.contains(at))
    }

    /// Fewest uses of any issuing known.
    pub fn uses(&self) -> u32 {
        self.issued.values().map(|g| g.uses).min().unwrap_or(1)
    }

    /// The earliest issuing known.
    pub fn grant(&self) -> Option<&InviteGrant> {
        self.issued.values().next()
    }

    /// Whether a revocation is known.
    pub fn is_revoked(&self) -> bool {
        !self.revoked.is_empty()
    }
}

/// Facts about one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFacts {
    /// Where the member joined (or founded the space).
    pub joined: Stamp,
    /// The role granted on joining.
    pub initial_role: Role,
    /// Display name.
    pub name: Lww<String>,
    /// Role changes, in stamp order.
    pub roles: BTreeMap<Stamp, Role>,
    /// The role changes no other one knows of (the latest, several when
    /// concurrent); the current role is the lowest of them.
    pub role_frontier: BTreeSet<Stamp>,
    /// Removals.
    pub removals: BTreeSet<Stamp>,
}

impl MemberFacts {
    /// The role with every known fact: the lowest of the latest role
    /// changes, or the role granted on joining.
    pub fn current_role(&self) -> Role {
        self.role_frontier
            .iter()
            .filter_map(|s| self.roles.get(s))
            .min()
            .copied()
            .unwrap_or(self.initial_role)
    }
}

/// The links of one device key to a member. A device has one; two links
/// made without knowledge of each other (each needs the device's own
/// consent, so only the device's holder can cause this) leave the device
/// speaking for nobody wherever both are known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// Links by stamp: where the device was joined or linked, to which member.
    pub links: BTreeMap<Stamp, AuthorId>,
}

impl DeviceFacts {
    /// The link in `past`, if exactly one is there.
    pub fn in_past(&self, past: &Past<'_>) -> Option<(Stamp, AuthorId)> {
        let mut found = self.links.iter().filter(|(at, _)| past.contains(at));
        match (found.next(), found.next()) {
            (Some((at, m)), None) => Some((*at, *m)),
            _ => None,
        }
    }

    /// Whether any link is in `past`.
    pub fn any_in(&self, past: &Past<'_>) -> bool {
        self.links.keys().any(|at| past.contains(at))
    }

    /// The member, if exactly one link is known.
    pub fn member(&self) -> Option<AuthorId> {
        match self.links.len() {
            1 => self.links.values().next().copied(),
            _ => None,
        }
    }
}

/// State of the Members module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersState {
    /// The space's name.
    pub space_name: Option<Lww<String>>,
    /// The founder (first admin).
    pub founder: Option<AuthorId>,
    /// Credit limit of members with none of their own.
    pub default_credit_limit: u64,
    /// Invites by public key.
    pub invites: BTreeMap<AuthorId, Invite>,
    /// Members by member id.
    pub members: BTreeMap<AuthorId, MemberFacts>,
    /// Devices by key.
    pub devices: BTreeMap<AuthorId, DeviceFacts>,
}

/// A member as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Member id.
    pub id: AuthorId,
    /// Display name.
    pub name: String,
    /// Current role.
    pub role: Role,
    /// Whether removed.
    pub removed: bool,
    /// The member's devices.
    pub devices: Vec<AuthorId>,
}

/// The statement a device signs to consent to being linked to `member` in
/// `space` (its `LinkDevice` carries the signature). Bound to the space, so
/// a consent given in one space means nothing in another.
pub fn link_statement(space: &SpaceId, member: &AuthorId, device: &AuthorId) -> Hash {
    Hash::derive(
        "civicbase 2026 device link",
        &[space.as_bytes(), member.as_bytes(), device.as_bytes()],
    )
}

/// The statement a joiner's invite proof signs.
pub fn join_statement(space: &SpaceId, joiner: &AuthorId) -> Hash {
    Hash::derive(
        "civicbase 2026 join statement",
        &[space.as_bytes(), joiner.as_bytes()],
    )
}

impl MembersState {
    /// The member and role of `device` as seen in `past`.
    pub fn resolve(&self, device: &AuthorId, past: &Past<'_>) -> Option<(AuthorId, Role)> {
        let (_, member) = self.devices.get(device)?.in_past(past)?;
        let role = self.role_in(&member, past)?;
        Some((member, role))
    }

    /// The role of `member` as seen in `past`; `None` if not (or no longer) a member.
    pub fn role_in(&self, member: &AuthorId, past: &Past<'_>) -> Option<Role> {
        let m = self.members.get(member)?;
        if !past.contains(&m.joined) || m.removals.iter().any(|r| past.contains(r)) {
            return None;
        }
        Some(
            self.role_sources(member, past)
                .iter()
                .filter_map(|s| m.roles.get(s))
                .min()
                .copied()
                .unwrap_or(m.initial_role),
        )
    }

    /// The role changes of `member` that decide its role in `past` (the
    /// latest ones there); empty when the role is the one it joined with.
    pub fn role_sources(&self, member: &AuthorId, past: &Past<'_>) -> Vec<Stamp> {
        self.members
            .get(member)
            .map(|m| past.frontier(m.roles.keys()))
            .unwrap_or_default()
    }

    /// The current role of `member` (`None` if unknown or removed).
    pub fn current_role(&self, member: &AuthorId) -> Option<Role> {
        let m = self.members.get(member)?;
        if !m.removals.is_empty() {
            return None;
        }
        Some(m.current_role())
    }

    /// The member a device belongs to now.
    pub fn member_of(&self, device: &AuthorId) -> Option<AuthorId> {
        self.devices.get(device).and_then(DeviceFacts::member)
    }

    /// Whether `device` belongs to a member who was removed, as seen in `past`.
    pub fn removed_in(&self, device: &AuthorId, past: &Past<'_>) -> bool {
        let Some((_, member)) = self.devices.get(device).and_then(|d| d.in_past(past)) else {
            return false;
        };
        self.members
            .get(&member)
            .is_some_and(|m| m.removals.iter().any(|r| past.contains(r)))
    }

    /// All members, sorted by id.
    pub fn list(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                id: *id,
                name: m.name.value.clone(),
                role: m.current_role(),
                removed: !m.removals.is_empty(),
                devices: self
                    .devices
                    .iter()
                    .filter(|(_, d)| d.member() == Some(*id))
                    .map(|(k, _)| *k)
                    .collect(),
            })
            .collect()
    }

    /// The display name of a member (or of the member a device belongs to).
    pub fn name_of(&self, id: &AuthorId) -> Option<&str> {
        let member = self.member_of(id).unwrap_or(*id);
        self.members.get(&member).map(|m| m.name.value.as_str())
    }

    /// Whether `member` joined in `past` and is not removed there.
    pub fn is_member_in(&self, member: &AuthorId, past: &Past<'_>) -> bool {
        self.role_in(member, past).is_some()
    }

    fn add_device(&mut self, device: AuthorId, member: AuthorId, at: Stamp) {
        self.devices
            .entry(device)
            .or_default()
            .links
            .insert(at, member);
    }
}

/// The role `op` needs its author's member to hold, as `validate` checks it
/// (`None`: no role, as for a join or the genesis). The replica records it
/// for the entries authority flows through, so that it can tell which
/// concurrent demotions take that authority away.
pub fn needed_role(
    op: &Op,
    ms: &MembersState,
    member: Option<AuthorId>,
    past: &Past<'_>,
) -> Option<Role> {
    Some(match op {
        Op::Genesis { .. } | Op::Join { .. } => return None,
        Op::RenameSpace { .. } | Op::SetRole { .. } | Op::SetCreditLimit { .. } => Role::Admin,
        Op::Invite { role, .. } if *role >= Role::Coordinator => Role::Admin,
        Op::Invite { .. } | Op::PinNotice { .. } => Role::Coordinator,
        Op::RevokeInvite { key } => {
            let own = member.is_some_and(|m| {
                ms.invites
                    .get(key)
                    .is_some_and(|i| i.issued_by_in(&m, past))
            });
            if own {
                Role::Coordinator
            } else {
                Role::Admin
            }
        }
        Op::Remove { member: target } => match ms.role_in(target, past) {
            Some(r) if r >= Role::Coordinator => Role::Admin,
            _ => Role::Coordinator,
        },
        Op::LinkDevice { .. } | Op::SetProfile { .. } => Role::Viewer,
        _ => Role::Member,
    })
}

/// The Members module.
pub struct Members;

impl Module for Members {
    const NAME: &'static str = "members";

    fn handles(op: &Op) -> bool {
        op.is_membership()
    }

    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError> {
        let ms = &state.members;
        match op {
            Op::Genesis {
                name,
                founder_name,
                default_credit_limit,
            } => {
                if cx.ops.len() != 1 {
                    return Err(OpError::MisplacedGenesis);
                }
                if *default_credit_limit > MAX_CREDIT {
                    return Err(OpError::InvalidAmount { max: MAX_CREDIT });
                }
                check_text("space name", name, MAX_NAME, true)?;
                check_text("name", founder_name, MAX_NAME, true)
            }
            Op::RenameSpace { name } => {
                cx.require(Role::Admin)?;
                check_text("space name", name, MAX_NAME, true)
            }
            Op::Invite {
                key, role, uses, ..
            } => {
                let needed = if *role >= Role::Coordinator {
                    Role::Admin
                } else {
                    Role::Coordinator
                };
                cx.require(needed)?;
                if *uses == 0 || *uses > MAX_INVITE_USES {
                    return Err(OpError::Invite("an invite admits 1 to 1000 people"));
                }
                if *uses > 1 && *role > Role::Member {
                    return Err(OpError::Invite(
                        "a link for several people grants at most the member role",
                    ));
                }
                if identity::verifying_key(key).is_err() {
                    return Err(OpError::Invite("the invite key is not a valid key"));
                }
                if ms
                    .invites
                    .get(key)
                    .and_then(|i| i.in_past(cx.past))
                    .is_some()
                {
                    return Err(OpError::Invite("an invite with this key already exists"));
                }
                Ok(())
            }
            Op::RevokeInvite { key } => {
                let me = cx.require(Role::Coordinator)?;
                match ms.invites.get(key) {
                    Some(i) if i.revoked.iter().any(|r| cx.past.contains(r)) => {
                        // A second revocation would change nothing and only
                        // add to what every peer must resolve.
                        Err(OpError::Invite("the invite is already revoked"))
                    }
                    Some(i) if i.in_past(cx.past).is_some() => {
                        if !i.issued_by_in(&me, cx.past) {
                            cx.require(Role::Admin)?;
                        }
                        Ok(())
                    }
                    _ => Err(OpError::Invite("unknown invite")),
                }
            }
            Op::Join {
                invite,
                proof,
                name,
            } => {
                // One join per entry, alone: each op of an entry is checked
                // against the same past, so several joins in one entry
                // would each pass the use count.
                if cx.ops.len() != 1 {
                    return Err(OpError::Invite(
                        "a join must be the only operation of its entry",
                    ));
                }
                check_text("name", name, MAX_NAME, true)?;
                if ms
                    .devices
                    .get(&cx.stamp.author)
                    .is_some_and(|d| d.any_in(cx.past))
                {
                    return Err(OpError::AlreadyMember {
                        device: cx.stamp.author,
                    });
                }
                let inv = ms.invites.get(invite);
                let (Some(inv), Some(grant)) = (inv, inv.and_then(|i| i.in_past(cx.past))) else {
                    return Err(OpError::Invite("unknown invite"));
                };
                if inv.revoked.iter().any(|r| cx.past.contains(r)) {
                    return Err(OpError::Invite("the invite was revoked"));
                }
                if cx.stamp.ts.wall_ms() > grant.expires_ms {
                    return Err(OpError::Invite("the invite has expired"));
                }
                let used = inv.joins.iter().filter(|j| cx.past.contains(j)).count();
                if used >= grant.uses as usize {
                    return Err(OpError::Invite("the invite has been used"));
                }
                // The inviter must still be a member where the invite was made;
                // that was checked when the invite was applied.
                let statement = join_statement(&cx.space, &cx.stamp.author);
                identity::verify(invite, statement.as_bytes(), proof)
                    .map_err(|_| OpError::Invite("wrong invite secret"))
            }
            Op::LinkDevice { device, consent } => {
                let member = cx.require(Role::Viewer)?;
                if identity::verifying_key(device).is_err() {
                    return Err(OpError::Invalid("the device key is not a valid key"));
                }
                if ms.devices.get(device).is_some_and(|d| d.any_in(cx.past)) {
                    return Err(OpError::AlreadyMember { device: *device });
                }
                let statement = link_statement(&cx.space, &member, device);
                identity::verify(device, statement.as_bytes(), consent)
                    .map_err(|_| OpError::Invalid("the device did not consent to this link"))
            }
            Op::SetRole { member, role } => {
                cx.require(Role::Admin)?;
                match ms.role_in(member, cx.past) {
                    None => Err(OpError::Invalid("no such member")),
                    // A change to the role already held would change nothing
                    // but could stand as a newer grant (seniority).
                    Some(r) if r == *role => {
                        Err(OpError::Invalid("the member already has this role"))
                    }
                    Some(_) => Ok(()),
                }
            }
            Op::Remove { member } => {
                let target = ms
                    .role_in(member, cx.past)
                    .ok_or(OpError::Invalid("no such member"))?;
                let needed = if target >= Role::Coordinator {
                    Role::Admin
                } else {
                    Role::Coordinator
                };
                cx.require(needed)?;
                Ok(())
            }
            Op::SetProfile { name } => {
                cx.require(Role::Viewer)?;
                check_text("name", name, MAX_NAME, true)
            }
            _ => Err(OpError::Invalid("not a members operation")),
        }
    }

    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState) {
        let ms = &mut state.members;
        let at = cx.stamp;
        match op {
            Op::Genesis {
                name,
                founder_name,
                default_credit_limit,
            } => {
                let founder = at.author;
                ms.space_name = Some(Lww::new(name.clone(), at));
                ms.founder = Some(founder);
                ms.default_credit_limit = *default_credit_limit;
                ms.members.insert(
                    founder,
                    MemberFacts {
                        joined: at,
                        initial_role: Role::Admin,
                        name: Lww::new(founder_name.clone(), at),
                        roles: BTreeMap::new(),
                        role_frontier: BTreeSet::new(),
                        removals: BTreeSet::new(),
                    },
                );
                ms.add_device(founder, founder, at);
            }
            Op::RenameSpace { name } => match &mut ms.space_name {
                Some(reg) => reg.set(name.clone(), at),
                None => ms.space_name = Some(Lww::new(name.clone(), at)),
            },
            Op::Invite {
                key,
                role,
                expires_ms,
                uses,
            } => {
                let invite = ms.invites.entry(*key).or_insert_with(|| Invite {
                    issued: BTreeMap::new(),
                    revoked: BTreeSet::new(),
                    joins: BTreeSet::new(),
                });
                invite.issued.insert(
                    at,
                    InviteGrant {
                        by: cx.member.unwrap_or(at.author),
                        role: *role,
                        expires_ms: *expires_ms,
                        uses: *uses,
                    },
                );
            }
            Op::RevokeInvite { key } => {
                if let Some(i) = ms.invites.get_mut(key) {
                    i.revoked.insert(at);
                }
            }
            Op::Join { invite, name, .. } => {
                let role = match ms.invites.get_mut(invite) {
                    Some(i) => {
                        i.joins.insert(at);
                        i.in_past(cx.past).map_or(Role::Viewer, |g| g.role)
                    }
                    None => Role::Viewer,
                };
                let member = at.author;
                let facts = ms.members.entry(member).or_insert_with(|| MemberFacts {
                    joined: at,
                    initial_role: role,
                    name: Lww::new(name.clone(), at),
                    roles: BTreeMap::new(),
                    role_frontier: BTreeSet::new(),
                    removals: BTreeSet::new(),
                });
                if at < facts.joined {
                    facts.joined = at;
                    facts.initial_role = role;
                }
                facts.name.set(name.clone(), at);
                ms.add_device(member, member, at);
            }
            Op::LinkDevice { device, .. } => {
                if let Some(member) = cx.member {
                    ms.add_device(*device, member, at);
                }
            }
            Op::SetRole { member, role } => {
                if let Some(m) = ms.members.get_mut(member) {
                    // Entries are applied in a causal order, so a change
                    // in this one's past is never applied after it.
                    m.role_frontier.retain(|s| !cx.past.contains(s));
                    m.role_frontier.insert(at);
                    m.roles.insert(at, *role);
                }
            }
            Op::Remove { member } => {
                if let Some(m) = ms.members.get_mut(member) {
                    m.removals.insert(at);
                }
            }
            Op::SetProfile { name } => {
                if let Some(m) = cx.member.and_then(|id| ms.members.get_mut(&id)) {
                    m.name.set(name.clone(), at);
                }
            }
            _ => {}
        }
    }
}
