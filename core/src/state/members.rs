//! Members: the founder, invites, joins, devices, roles and removals.
//!
//! A member is identified by the key of the device that joined (or founded
//! the space); further devices are linked to it. Every question about a
//! member is asked relative to an entry's causal past: a device speaks for a
//! member once the link (or join) is in its past, and stops being able to once
//! a removal is in its past. Strong removal of concurrent entries is enforced
//! by the replica, which leaves them out of the state altogether.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_text, Lww, Module, OpContext, OpError, Past, SpaceState, Stamp};
use crate::id::{AuthorId, Hash, SpaceId};
use crate::identity;
use crate::op::{Op, Role, MAX_NAME};

/// One issuing of an invite key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteGrant {
    /// The inviting member.
    pub by: AuthorId,
    /// The role it grants.
    pub role: Role,
    /// Expiry, Unix ms (a join is valid through this millisecond).
    pub expires_ms: u64,
}

/// Everything known about one invite key. A key is normally issued once;
/// concurrent issuings of one key are all kept so that every question asked
/// relative to a causal past sees exactly the facts in that past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Issuings by stamp.
    pub issued: BTreeMap<Stamp, InviteGrant>,
    /// Revocations.
    pub revoked: BTreeSet<Stamp>,
}

impl Invite {
    /// The earliest issuing in `past`.
    pub fn in_past(&self, past: &Past<'_>) -> Option<&InviteGrant> {
        self.issued
            .iter()
            .find(|(at, _)| past.contains(at))
            .map(|(_, g)| g)
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
    /// Removals.
    pub removals: BTreeSet<Stamp>,
}

/// The links of one device key to a member. A device normally has one;
/// concurrent links are all kept and the earliest in a causal past counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// Links by stamp: where the device was joined or linked, to which member.
    pub links: BTreeMap<Stamp, AuthorId>,
}

impl DeviceFacts {
    /// The earliest link in `past`.
    pub fn in_past(&self, past: &Past<'_>) -> Option<(Stamp, AuthorId)> {
        self.links
            .iter()
            .find(|(at, _)| past.contains(at))
            .map(|(at, m)| (*at, *m))
    }

    /// The earliest link known.
    pub fn member(&self) -> Option<AuthorId> {
        self.links.values().next().copied()
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
        let role = m
            .roles
            .iter()
            .rev()
            .find(|(at, _)| past.contains(at))
            .map_or(m.initial_role, |(_, r)| *r);
        Some(role)
    }

    /// The current role of `member` (`None` if unknown or removed).
    pub fn current_role(&self, member: &AuthorId) -> Option<Role> {
        let m = self.members.get(member)?;
        if !m.removals.is_empty() {
            return None;
        }
        Some(
            m.roles
                .values()
                .next_back()
                .copied()
                .unwrap_or(m.initial_role),
        )
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
                role: m
                    .roles
                    .values()
                    .next_back()
                    .copied()
                    .unwrap_or(m.initial_role),
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
                name, founder_name, ..
            } => {
                if cx.ops.len() != 1 {
                    return Err(OpError::MisplacedGenesis);
                }
                check_text("space name", name, MAX_NAME, true)?;
                check_text("name", founder_name, MAX_NAME, true)
            }
            Op::RenameSpace { name } => {
                cx.require(Role::Admin)?;
                check_text("space name", name, MAX_NAME, true)
            }
            Op::Invite { key, role, .. } => {
                let needed = if *role >= Role::Coordinator {
                    Role::Admin
                } else {
                    Role::Coordinator
                };
                cx.require(needed)?;
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
                match ms.invites.get(key).and_then(|i| i.in_past(cx.past)) {
                    Some(grant) => {
                        if grant.by != me && cx.role != Some(Role::Admin) {
                            return Err(OpError::Forbidden {
                                needed: Role::Admin,
                                had: cx.role.unwrap_or(Role::Viewer),
                            });
                        }
                        Ok(())
                    }
                    None => Err(OpError::Invite("unknown invite")),
                }
            }
            Op::Join {
                invite,
                proof,
                name,
            } => {
                check_text("name", name, MAX_NAME, true)?;
                if ms
                    .devices
                    .get(&cx.stamp.author)
                    .and_then(|d| d.in_past(cx.past))
                    .is_some()
                {
                    return Err(OpError::AlreadyMember {
                        device: cx.stamp.author,
                    });
                }
                let inv = ms.invites.get(invite);
                let Some(grant) = inv.and_then(|i| i.in_past(cx.past)) else {
                    return Err(OpError::Invite("unknown invite"));
                };
                if inv.is_some_and(|i| i.revoked.iter().any(|r| cx.past.contains(r))) {
                    return Err(OpError::Invite("the invite was revoked"));
                }
                if cx.stamp.ts.wall_ms() > grant.expires_ms {
                    return Err(OpError::Invite("the invite has expired"));
                }
                // The inviter must still be a member where the invite was made;
                // that was checked when the invite was applied.
                let statement = join_statement(&cx.space, &cx.stamp.author);
                identity::verify(invite, statement.as_bytes(), proof)
                    .map_err(|_| OpError::Invite("wrong invite secret"))
            }
            Op::LinkDevice { device } => {
                cx.require(Role::Viewer)?;
                if identity::verifying_key(device).is_err() {
                    return Err(OpError::Invalid("the device key is not a valid key"));
                }
                if ms
                    .devices
                    .get(device)
                    .and_then(|d| d.in_past(cx.past))
                    .is_some()
                {
                    return Err(OpError::AlreadyMember { device: *device });
                }
                Ok(())
            }
            Op::SetRole { member, .. } => {
                cx.require(Role::Admin)?;
                if !ms.is_member_in(member, cx.past) {
                    return Err(OpError::Invalid("no such member"));
                }
                Ok(())
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
            } => {
                let invite = ms.invites.entry(*key).or_insert_with(|| Invite {
                    issued: BTreeMap::new(),
                    revoked: BTreeSet::new(),
                });
                invite.issued.insert(
                    at,
                    InviteGrant {
                        by: cx.member.unwrap_or(at.author),
                        role: *role,
                        expires_ms: *expires_ms,
                    },
                );
            }
            Op::RevokeInvite { key } => {
                if let Some(i) = ms.invites.get_mut(key) {
                    i.revoked.insert(at);
                }
            }
            Op::Join { invite, name, .. } => {
                let role = ms
                    .invites
                    .get(invite)
                    .and_then(|i| i.in_past(cx.past))
                    .map_or(Role::Viewer, |g| g.role);
                let member = at.author;
                let facts = ms.members.entry(member).or_insert_with(|| MemberFacts {
                    joined: at,
                    initial_role: role,
                    name: Lww::new(name.clone(), at),
                    roles: BTreeMap::new(),
                    removals: BTreeSet::new(),
                });
                if at < facts.joined {
                    facts.joined = at;
                    facts.initial_role = role;
                }
                facts.name.set(name.clone(), at);
                ms.add_device(member, member, at);
            }
            Op::LinkDevice { device } => {
                if let Some(member) = cx.member {
                    ms.add_device(*device, member, at);
                }
            }
            Op::SetRole { member, role } => {
                if let Some(m) = ms.members.get_mut(member) {
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
