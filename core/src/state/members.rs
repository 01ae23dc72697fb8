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
use crate::hlc::Timestamp;
use crate::id::{AuthorId, Hash, SpaceId};
use crate::identity;
use crate::op::{Op, Role, MAX_NAME};

/// An invite as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteFact {
    /// Where it was created.
    pub at: Stamp,
    /// The inviting member.
    pub by: AuthorId,
    /// The role it grants.
    pub role: Role,
    /// Expiry, Unix ms.
    pub expires_ms: u64,
    /// Revocations.
    pub revoked: BTreeSet<Stamp>,
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

/// A device and the member it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFact {
    /// The member.
    pub member: AuthorId,
    /// Where the device was joined or linked.
    pub at: Stamp,
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
    pub invites: BTreeMap<AuthorId, InviteFact>,
    /// Members by member id.
    pub members: BTreeMap<AuthorId, MemberFacts>,
    /// Devices by key.
    pub devices: BTreeMap<AuthorId, DeviceFact>,
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
        let dev = self.devices.get(device)?;
        if !past.contains(&dev.at) {
            return None;
        }
        let role = self.role_in(&dev.member, past)?;
        Some((dev.member, role))
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
        self.devices.get(device).map(|d| d.member)
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
                    .filter(|(_, d)| d.member == *id)
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
        // Concurrent links of one device: the earliest stamp wins everywhere.
        match self.devices.get(&device) {
            Some(existing) if existing.at <= at => {}
            _ => {
                self.devices.insert(device, DeviceFact { member, at });
            }
        }
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
                if ms.invites.get(key).is_some_and(|i| cx.past.contains(&i.at)) {
                    return Err(OpError::Invite("an invite with this key already exists"));
                }
                Ok(())
            }
            Op::RevokeInvite { key } => {
                let me = cx.require(Role::Coordinator)?;
                match ms.invites.get(key) {
                    Some(i) if cx.past.contains(&i.at) => {
                        if i.by != me && cx.role != Some(Role::Admin) {
                            return Err(OpError::Forbidden {
                                needed: Role::Admin,
                                had: cx.role.unwrap_or(Role::Viewer),
                            });
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
                check_text("name", name, MAX_NAME, true)?;
                if ms
                    .devices
                    .get(&cx.stamp.author)
                    .is_some_and(|d| cx.past.contains(&d.at))
                {
                    return Err(OpError::AlreadyMember {
                        device: cx.stamp.author,
                    });
                }
                let inv = match ms.invites.get(invite) {
                    Some(i) if cx.past.contains(&i.at) => i,
                    _ => return Err(OpError::Invite("unknown invite")),
                };
                if inv.revoked.iter().any(|r| cx.past.contains(r)) {
                    return Err(OpError::Invite("the invite was revoked"));
                }
                if cx.stamp.ts > Timestamp::from_millis(inv.expires_ms) {
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
                    .is_some_and(|d| cx.past.contains(&d.at))
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
                let fact = InviteFact {
                    at,
                    by: cx.member.unwrap_or(at.author),
                    role: *role,
                    expires_ms: *expires_ms,
                    revoked: BTreeSet::new(),
                };
                match ms.invites.get_mut(key) {
                    // Two concurrent invites with one key: the earliest wins,
                    // keeping revocations already recorded.
                    Some(existing) if existing.at > at => {
                        let revoked = std::mem::take(&mut existing.revoked);
                        *existing = InviteFact { revoked, ..fact };
                    }
                    Some(_) => {}
                    None => {
                        ms.invites.insert(*key, fact);
                    }
                }
            }
            Op::RevokeInvite { key } => {
                if let Some(i) = ms.invites.get_mut(key) {
                    i.revoked.insert(at);
                }
            }
            Op::Join { invite, name, .. } => {
                let role = ms.invites.get(invite).map_or(Role::Viewer, |i| i.role);
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
