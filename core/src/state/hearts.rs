//! Hearts: a time-bank ledger of signed transfers between members.
//!
//! A transfer is checked against the sender's balance and credit limit in the
//! entry's causal past, so an honest device never overdraws on its own. Two
//! devices of one member spending while partitioned can together overdraw:
//! such transfers are kept (never dropped or merged), counted in the balances,
//! and reported by [`crate::replica::Replica::heart_conflicts`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_text, Module, OpContext, OpError, SpaceState, Stamp};
use crate::id::AuthorId;
use crate::op::{Op, Role, MAX_SHORT};

/// Largest single transfer.
pub const MAX_TRANSFER: u64 = 1_000_000;

/// One transfer, immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// Sending member.
    pub from: AuthorId,
    /// Receiving member.
    pub to: AuthorId,
    /// Amount.
    pub amount: u64,
    /// What for.
    pub memo: String,
}

/// State of the Hearts module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartsState {
    /// All transfers in stamp order.
    pub transfers: BTreeMap<Stamp, TransferRecord>,
    /// Current balances.
    pub balances: BTreeMap<AuthorId, i64>,
    /// Credit-limit writes per member, in stamp order.
    pub limits: BTreeMap<AuthorId, BTreeMap<Stamp, u64>>,
    /// Transfers involving each member (as sender or receiver).
    pub by_member: BTreeMap<AuthorId, BTreeSet<Stamp>>,
}

impl HeartsState {
    /// A member's current balance.
    pub fn balance(&self, member: &AuthorId) -> i64 {
        self.balances.get(member).copied().unwrap_or(0)
    }

    /// A member's current credit limit.
    pub fn limit(&self, member: &AuthorId, default: u64) -> u64 {
        self.limits
            .get(member)
            .and_then(|m| m.values().next_back().copied())
            .unwrap_or(default)
    }

    /// Transfers involving `member`, newest first.
    pub fn history(&self, member: &AuthorId) -> Vec<(Stamp, &TransferRecord)> {
        let mut v: Vec<_> = self
            .by_member
            .get(member)
            .into_iter()
            .flatten()
            .filter_map(|s| self.transfers.get(s).map(|t| (*s, t)))
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.0));
        v
    }
}

/// The Hearts module.
pub struct Hearts;

impl Module for Hearts {
    const NAME: &'static str = "hearts";

    fn handles(op: &Op) -> bool {
        matches!(op, Op::Transfer { .. } | Op::SetCreditLimit { .. })
    }

    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError> {
        let hs = &state.hearts;
        match op {
            Op::Transfer { to, amount, memo } => {
                let me = cx.require(Role::Member)?;
                if *amount == 0 || *amount > MAX_TRANSFER {
                    return Err(OpError::InvalidAmount { max: MAX_TRANSFER });
                }
                check_text("memo", memo, MAX_SHORT, false)?;
                if *to == me {
                    return Err(OpError::Invalid("a member cannot transfer to themselves"));
                }
                if !state.members.is_member_in(to, cx.past) {
                    return Err(OpError::Invalid("the recipient is not a member"));
                }
                let mut balance: i64 = 0;
                for s in hs.by_member.get(&me).into_iter().flatten() {
                    if !cx.past.contains(s) {
                        continue;
                    }
                    if let Some(t) = hs.transfers.get(s) {
                        if t.from == me {
                            balance -= t.amount as i64;
                        }
                        if t.to == me {
                            balance += t.amount as i64;
                        }
                    }
                }
                // Earlier transfers in the same entry count too.
                let own_index = cx.stamp.op as usize;
                let earlier: u64 = cx.ops[..own_index.min(cx.ops.len())]
                    .iter()
                    .filter_map(|o| match o {
                        Op::Transfer { amount, .. } => Some(*amount),
                        _ => None,
                    })
                    .sum();
                balance -= earlier as i64;
                let limit = hs
                    .limits
                    .get(&me)
                    .and_then(|m| m.iter().rev().find(|(s, _)| cx.past.contains(s)))
                    .map_or(state.members.default_credit_limit, |(_, l)| *l);
                if i128::from(balance) - i128::from(*amount) < -i128::from(limit) {
                    return Err(OpError::InsufficientCredit {
                        balance,
                        amount: *amount,
                        limit,
                    });
                }
                Ok(())
            }
            Op::SetCreditLimit { member, limit } => {
                cx.require(Role::Admin)?;
                if !state.members.is_member_in(member, cx.past) {
                    return Err(OpError::Invalid("no such member"));
                }
                if *limit > MAX_TRANSFER * 1000 {
                    return Err(OpError::InvalidAmount {
                        max: MAX_TRANSFER * 1000,
                    });
                }
                Ok(())
            }
            _ => Err(OpError::Invalid("not a hearts operation")),
        }
    }

    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState) {
        let at = cx.stamp;
        let hs = &mut state.hearts;
        match op {
            Op::Transfer { to, amount, memo } => {
                let from = cx.member.unwrap_or(at.author);
                hs.transfers.insert(
                    at,
                    TransferRecord {
                        from,
                        to: *to,
                        amount: *amount,
                        memo: memo.clone(),
                    },
                );
                *hs.balances.entry(from).or_insert(0) -= *amount as i64;
                *hs.balances.entry(*to).or_insert(0) += *amount as i64;
                hs.by_member.entry(from).or_default().insert(at);
                hs.by_member.entry(*to).or_default().insert(at);
            }
            Op::SetCreditLimit { member, limit } => {
                hs.limits.entry(*member).or_default().insert(at, *limit);
            }
            _ => {}
        }
    }
}
