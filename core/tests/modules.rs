//! Module behaviour: roles, decisions, hearts, needs and invites, each
//! refusal checked for its specific error and for leaving no trace (see
//! `common::refuse`).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use civicbase_core::replica::{HeartConflicts, IngestError};
use civicbase_core::state::needs::NeedStatus;
use civicbase_core::state::{OpError, ProposalStatus, Stamp, Tally};
use civicbase_core::{Choice, Entry, Keypair, NeedKind, Op, RecordId, Replica, Role, Urgency};

use common::*;

/// The error for the first operation of an entry.
fn first_op(source: OpError) -> IngestError {
    IngestError::Op { index: 0, source }
}

/// Authors `ops` as `kp` on `r` at time `T`, expecting success.
fn write(r: &mut Replica, kp: &Keypair, ops: Vec<Op>) -> Entry {
    r.author(kp, ops, T).expect("authored")
}

/// The record id created by the first operation of `e`.
fn created(e: &Entry) -> RecordId {
    civicbase_core::id::record_id(&e.id(), 0)
}

/// The stamp of the first operation of `e`.
fn stamp(e: &Entry) -> Stamp {
    let h = e.header();
    Stamp {
        ts: h.timestamp,
        author: h.author,
        seq: h.seq,
        op: 0,
    }
}

fn forbidden(needed: Role, had: Role) -> IngestError {
    first_op(OpError::Forbidden { needed, had })
}

// ----------------------------------------------------------------------
// Roles
// ----------------------------------------------------------------------

#[test]
fn viewer_cannot_post_member_cannot_pin_coordinator_can() {
    let mut t = town();
    let by_viewer = sign_next(&t.r, &t.viewer, &[post("from a viewer")], T);
    assert_eq!(
        refuse(&mut t.r, &by_viewer, T),
        forbidden(Role::Member, Role::Viewer)
    );

    let notice = created(&write(&mut t.r, &t.alice, vec![post("alice's notice")]));
    let pin = Op::PinNotice {
        notice,
        pinned: true,
    };
    let by_member = sign_next(&t.r, &t.alice, std::slice::from_ref(&pin), T);
    assert_eq!(
        refuse(&mut t.r, &by_member, T),
        forbidden(Role::Coordinator, Role::Member)
    );
    assert!(!t.r.state().notices.notices[&notice].pinned.value);

    write(&mut t.r, &t.coord, vec![pin]);
    assert!(t.r.state().notices.notices[&notice].pinned.value);
}

#[test]
fn only_an_admin_sets_credit_limits_and_roles() {
    let mut t = town();
    let alice = t.alice.author();
    let limit = Op::SetCreditLimit {
        member: alice,
        limit: 50,
    };
    let role = Op::SetRole {
        member: alice,
        role: Role::Coordinator,
    };
    for op in [&limit, &role] {
        let by_coord = sign_next(&t.r, &t.coord, std::slice::from_ref(op), T);
        assert_eq!(
            refuse(&mut t.r, &by_coord, T),
            forbidden(Role::Admin, Role::Coordinator)
        );
        let by_member = sign_next(&t.r, &t.bob, std::slice::from_ref(op), T);
        assert_eq!(
            refuse(&mut t.r, &by_member, T),
            forbidden(Role::Admin, Role::Member)
        );
    }
    assert_eq!(
        t.r.state().hearts.limit(&alice, DEFAULT_LIMIT),
        DEFAULT_LIMIT
    );
    assert_eq!(t.r.state().members.current_role(&alice), Some(Role::Member));

    write(&mut t.r, &t.admin, vec![limit, role]);
    assert_eq!(t.r.state().hearts.limit(&alice, DEFAULT_LIMIT), 50);
    assert_eq!(
        t.r.state().members.current_role(&alice),
        Some(Role::Coordinator)
    );
}

#[test]
fn coordinator_invites_members_but_not_coordinators_or_admins() {
    let mut t = town();
    for role in [Role::Admin, Role::Coordinator] {
        let invite = sign_next(&t.r, &t.coord, &[invite_op(&key(40), role)], T);
        assert_eq!(
            refuse(&mut t.r, &invite, T),
            forbidden(Role::Admin, Role::Coordinator)
        );
    }
    let by_member = sign_next(&t.r, &t.alice, &[invite_op(&key(40), Role::Viewer)], T);
    assert_eq!(
        refuse(&mut t.r, &by_member, T),
        forbidden(Role::Coordinator, Role::Member)
    );
    write(&mut t.r, &t.coord, vec![invite_op(&key(40), Role::Member)]);
    write(&mut t.r, &t.admin, vec![invite_op(&key(41), Role::Admin)]);
    assert_eq!(
        t.r.state().members.invites[&key(41).author()]
            .grant()
            .expect("issued")
            .role,
        Role::Admin
    );
}

// ----------------------------------------------------------------------
// Decisions
// ----------------------------------------------------------------------

const DEADLINE: u64 = T + 100_000;

fn propose(r: &mut Replica, kp: &Keypair, title: &str, quorum: u32) -> RecordId {
    let op = Op::Propose {
        title: title.into(),
        body: String::new(),
        deadline_ms: DEADLINE,
        quorum,
    };
    created(&write(r, kp, vec![op]))
}

fn vote(r: &mut Replica, kp: &Keypair, proposal: RecordId, choice: Choice) {
    write(r, kp, vec![Op::Vote { proposal, choice }]);
}

#[test]
fn tally_counts_one_vote_per_member_and_a_changed_vote_replaces_the_old() {
    let mut t = town();
    // Alice votes from two devices; they are one member.
    let laptop = key(13);
    let link = link_op(&t.r, &t.alice, &laptop);
    write(&mut t.r, &t.alice, vec![link]);
    let p = propose(&mut t.r, &t.alice, "Buy a pump", 3);
    vote(&mut t.r, &t.alice, p, Choice::Yes);
    vote(&mut t.r, &t.bob, p, Choice::No);
    vote(&mut t.r, &t.coord, p, Choice::Abstain);
    vote(&mut t.r, &t.admin, p, Choice::No);
    vote(&mut t.r, &t.bob, p, Choice::Yes); // Bob changes his mind.
    vote(&mut t.r, &laptop, p, Choice::No); // Alice, from her laptop.
    let proposal = &t.r.state().decisions.proposals[&p];
    assert_eq!(proposal.votes.len(), 4, "one register per member");
    assert_eq!(proposal.votes[&t.alice.author()].value, Choice::No);
    assert_eq!(proposal.votes[&t.bob.author()].value, Choice::Yes);
    assert_eq!(
        proposal.tally(),
        Tally {
            yes: 1,
            no: 2,
            abstain: 1
        }
    );
    // A viewer's vote is refused.
    let by_viewer = sign_next(
        &t.r,
        &t.viewer,
        &[Op::Vote {
            proposal: p,
            choice: Choice::Yes,
        }],
        T,
    );
    assert_eq!(
        refuse(&mut t.r, &by_viewer, T),
        forbidden(Role::Member, Role::Viewer)
    );
}

#[test]
fn proposal_is_open_until_its_deadline_then_passed_rejected_or_without_quorum() {
    let mut t = town();
    let passed = propose(&mut t.r, &t.alice, "passes", 3);
    let rejected = propose(&mut t.r, &t.alice, "is rejected", 2);
    let no_quorum = propose(&mut t.r, &t.alice, "lacks quorum", 4);
    for (voter, choice) in [
        (&t.alice, Choice::Yes),
        (&t.bob, Choice::Yes),
        (&t.coord, Choice::No),
    ] {
        vote(&mut t.r, voter, passed, choice);
    }
    vote(&mut t.r, &t.alice, rejected, Choice::Yes);
    vote(&mut t.r, &t.bob, rejected, Choice::No);
    vote(&mut t.r, &t.alice, no_quorum, Choice::Yes);
    vote(&mut t.r, &t.bob, no_quorum, Choice::Abstain);
    vote(&mut t.r, &t.coord, no_quorum, Choice::Yes);
    let status = |id: RecordId, now: u64| t.r.state().decisions.proposals[&id].status(now);
    for id in [passed, rejected, no_quorum] {
        assert_eq!(status(id, T), ProposalStatus::Open);
        assert_eq!(
            status(id, DEADLINE),
            ProposalStatus::Open,
            "open at the deadline itself"
        );
    }
    assert_eq!(status(passed, DEADLINE + 1), ProposalStatus::Passed);
    assert_eq!(
        status(rejected, DEADLINE + 1),
        ProposalStatus::Rejected,
        "a tie is not a majority"
    );
    assert_eq!(
        status(no_quorum, DEADLINE + 1),
        ProposalStatus::NoQuorum,
        "3 votes of 4 needed"
    );
}

// ----------------------------------------------------------------------
// Hearts
// ----------------------------------------------------------------------

fn transfer(to: &Keypair, amount: u64) -> Op {
    Op::Transfer {
        to: to.author(),
        amount,
        memo: "help".into(),
    }
}

#[test]
fn transfer_beyond_the_credit_limit_in_its_causal_past_is_refused() {
    let mut t = town();
    write(&mut t.r, &t.alice, vec![transfer(&t.bob, 8)]);
    let mut alice_phone = peer_of(&mut t.r, T);
    // Bob pays Alice back, but Alice's phone has not seen it.
    write(&mut t.r, &t.bob, vec![transfer(&t.alice, 5)]);
    let overdraft = sign_next(&alice_phone, &t.alice, &[transfer(&t.coord, 3)], T);
    assert_eq!(
        refuse(&mut t.r, &overdraft, T),
        first_op(OpError::InsufficientCredit {
            balance: -8,
            amount: 3,
            limit: DEFAULT_LIMIT
        }),
        "judged by the balance in the entry's causal past, not the receiver's"
    );
    // Once Alice has seen Bob's transfer, the same payment is fine.
    pump(&mut alice_phone, &mut t.r, T);
    let paid_back = sign_next(&alice_phone, &t.alice, &[transfer(&t.coord, 3)], T);
    accepted_by_copy(&mut t.r, &paid_back, T);
    // Two transfers in one entry count together.
    let both = sign_next(
        &t.r,
        &t.alice,
        &[transfer(&t.coord, 6), transfer(&t.coord, 2)],
        T,
    );
    assert_eq!(
        refuse(&mut t.r, &both, T),
        IngestError::Op {
            index: 1,
            source: OpError::InsufficientCredit {
                balance: -9,
                amount: 2,
                limit: DEFAULT_LIMIT
            }
        }
    );
}

#[test]
fn two_devices_overdrawing_while_partitioned_are_both_kept_and_reported_alike() {
    let mut t = town();
    let laptop = key(13);
    let link = link_op(&t.r, &t.alice, &laptop);
    write(&mut t.r, &t.alice, vec![link]);
    let mut phone_side = peer_of(&mut t.r, T);
    let mut laptop_side = peer_of(&mut t.r, T);
    let from_phone = write(&mut phone_side, &t.alice, vec![transfer(&t.bob, 7)]);
    let from_laptop = write(&mut laptop_side, &laptop, vec![transfer(&t.coord, 7)]);
    pump(&mut phone_side, &mut laptop_side, T);
    assert_converged(&[&phone_side, &laptop_side]);

    let alice = t.alice.author();
    let mut both = vec![stamp(&from_phone), stamp(&from_laptop)];
    both.sort();
    for r in [&phone_side, &laptop_side] {
        let hearts = &r.state().hearts;
        assert_eq!(
            hearts.transfers.keys().copied().collect::<Vec<_>>(),
            both,
            "both transfers are kept"
        );
        assert!(
            hearts.transfers.values().all(|tr| tr.from == alice),
            "both are Alice's"
        );
        assert_eq!(hearts.balance(&alice), -14);
        assert_eq!(
            (
                hearts.balance(&t.bob.author()),
                hearts.balance(&t.coord.author())
            ),
            (7, 7)
        );
        assert_eq!(
            r.heart_conflicts(),
            HeartConflicts {
                overdrawn: vec![(alice, -14, DEFAULT_LIMIT)],
                conflicting: both.clone(),
            }
        );
    }
    // Alice can spend nothing more.
    let more = sign_next(&phone_side, &t.alice, &[transfer(&t.bob, 1)], T);
    assert_eq!(
        refuse(&mut phone_side, &more, T),
        first_op(OpError::InsufficientCredit {
            balance: -14,
            amount: 1,
            limit: DEFAULT_LIMIT
        })
    );
}

// ----------------------------------------------------------------------
// Needs & offers
// ----------------------------------------------------------------------

#[test]
fn need_is_claimed_completed_by_its_claimer_and_reopened_by_its_creator() {
    let mut t = town();
    let carol = key(6);
    invite_and_join(&mut t.r, &t.coord, &carol, Role::Member, "Carol");
    let need = created(&write(
        &mut t.r,
        &t.alice,
        vec![Op::CreateNeed {
            kind: NeedKind::Need,
            category: "water".into(),
            urgency: Urgency::High,
            location: "school".into(),
            title: "20 litres".into(),
            details: String::new(),
        }],
    ));
    let record = |r: &Replica| r.state().needs.records[&need].clone();
    assert_eq!(
        (record(&t.r).status(), record(&t.r).claimer()),
        (NeedStatus::Open, None)
    );

    write(&mut t.r, &t.bob, vec![Op::ClaimNeed { need }]);
    assert_eq!(
        (record(&t.r).status(), record(&t.r).claimer()),
        (NeedStatus::Claimed, Some(t.bob.author()))
    );

    // Carol neither created nor claimed it.
    let by_carol = sign_next(&t.r, &carol, &[Op::CompleteNeed { need }], T);
    assert_eq!(
        refuse(&mut t.r, &by_carol, T),
        forbidden(Role::Coordinator, Role::Member)
    );
    // The claimer may complete but not reopen.
    write(&mut t.r, &t.bob, vec![Op::CompleteNeed { need }]);
    assert_eq!(record(&t.r).status(), NeedStatus::Done);
    let by_bob = sign_next(&t.r, &t.bob, &[Op::ReopenNeed { need }], T);
    assert_eq!(
        refuse(&mut t.r, &by_bob, T),
        forbidden(Role::Coordinator, Role::Member)
    );

    write(&mut t.r, &t.alice, vec![Op::ReopenNeed { need }]);
    assert_eq!(
        (record(&t.r).status(), record(&t.r).claimer()),
        (NeedStatus::Open, None)
    );
}

// ----------------------------------------------------------------------
// Invites
// ----------------------------------------------------------------------

/// The town with an admin's invite for `invite`, expiring at `expires_ms`.
fn town_with_invite(invite: &Keypair, expires_ms: u64) -> Town {
    let mut t = town();
    let op = Op::Invite {
        key: invite.author(),
        role: Role::Member,
        expires_ms,
        uses: 1,
    };
    write(&mut t.r, &t.admin, vec![op]);
    t
}

#[test]
fn join_with_an_expired_invite_is_refused() {
    let (invite, carol) = (key(50), key(6));
    let expires = T + 1_000;
    let mut t = town_with_invite(&invite, expires);
    let join = join_op(&t.r, &invite, &carol, "Carol");
    let late = sign_next(&t.r, &carol, std::slice::from_ref(&join), expires + 1);
    assert_eq!(
        refuse(&mut t.r, &late, expires + 1),
        first_op(OpError::Invite("the invite has expired"))
    );
    let in_time = sign_next(&t.r, &carol, &[join], expires);
    accepted_by_copy(&mut t.r, &in_time, expires);
}

#[test]
fn join_with_a_revoked_invite_is_refused() {
    let (invite, carol) = (key(50), key(6));
    let mut t = town_with_invite(&invite, T + 3_600_000);
    let join = join_op(&t.r, &invite, &carol, "Carol");
    let honest = sign_next(&t.r, &carol, std::slice::from_ref(&join), T);
    write(
        &mut t.r,
        &t.admin,
        vec![Op::RevokeInvite {
            key: invite.author(),
        }],
    );
    let after = sign_next(&t.r, &carol, &[join], T);
    assert_eq!(
        refuse(&mut t.r, &after, T),
        first_op(OpError::Invite("the invite was revoked"))
    );
    // A join that had not seen the revocation is judged by its own past.
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn join_with_a_proof_not_made_by_the_invite_secret_is_refused() {
    let (invite, carol, eve) = (key(50), key(6), key(7));
    let mut t = town_with_invite(&invite, T + 3_600_000);
    // Signed by another key.
    let wrong_key = join_op(&t.r, &key(51), &carol, "Carol");
    let Op::Join { proof, .. } = wrong_key else {
        unreachable!()
    };
    let forged = Op::Join {
        invite: invite.author(),
        proof,
        name: "Carol".into(),
    };
    let bad = sign_next(&t.r, &carol, &[forged], T);
    assert_eq!(
        refuse(&mut t.r, &bad, T),
        first_op(OpError::Invite("wrong invite secret"))
    );
    // Carol's genuine proof copied into Eve's join: it names Carol, not Eve.
    let carols = join_op(&t.r, &invite, &carol, "Carol");
    let Op::Join { proof, .. } = carols.clone() else {
        unreachable!()
    };
    let stolen = Op::Join {
        invite: invite.author(),
        proof,
        name: "Eve".into(),
    };
    let bad = sign_next(&t.r, &eve, &[stolen], T);
    assert_eq!(
        refuse(&mut t.r, &bad, T),
        first_op(OpError::Invite("wrong invite secret"))
    );
    let honest = sign_next(&t.r, &carol, &[carols], T);
    accepted_by_copy(&mut t.r, &honest, T);
}
