//! Attacks on authority by members with bad intent, through the public API.
//!
//! Each attacker signs from a replica that has not received what it races
//! (a removal, a demotion, a revocation, another join), so its entries are
//! concurrent with it, and picks its timestamps: just before the event it
//! races and just after. The entries of both sides are then delivered to
//! fresh replicas in every order, one by one forwards and backwards (so
//! that some wait in the pending set) and over real sync sessions. On every
//! replica the attacker's action must have no effect, the outcome must be
//! the same whichever timestamp it picked, and all replicas must agree.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use civicbase_core::replica::{ForkProof, ForkProofError, IngestError, SignedHeader};
use civicbase_core::state::members::link_statement;
use civicbase_core::state::{OpError, ProposalStatus};
use civicbase_core::sync::{EntryRejection, Message};
use civicbase_core::{
    Choice, Entry, Keypair, NewSpace, Op, RecordId, Replica, ReplicaConfig, Role, SyncSession,
};

use common::*;

/// Wall time by which every side has made its entries.
const NOW: u64 = T + 3_600_000;

/// The entries `side` holds beyond `base`, in the order `side` applied them.
fn beyond(base: &Replica, side: &Replica) -> Vec<Entry> {
    side.log()
        .filter(|e| !base.contains(&e.id()))
        .cloned()
        .collect()
}

/// Fresh copies of `base` that received the entries of `sides` in every
/// order of the sides, each both forwards and backwards (an entry before
/// the one it depends on waits), plus one that got every side over sync
/// sessions; all converged.
fn merged_every_way(base: &mut Replica, sides: &mut [Replica]) -> Vec<Replica> {
    let extra: Vec<Vec<Entry>> = sides.iter().map(|s| beyond(base, s)).collect();
    let mut orders: Vec<Vec<usize>> = vec![(0..sides.len()).collect()];
    if sides.len() == 2 {
        orders.push(vec![1, 0]);
    } else if sides.len() == 3 {
        orders.extend([
            vec![0, 2, 1],
            vec![1, 0, 2],
            vec![1, 2, 0],
            vec![2, 0, 1],
            vec![2, 1, 0],
        ]);
    }
    let mut out = Vec::new();
    for order in &orders {
        let all: Vec<Entry> = order.iter().flat_map(|&i| extra[i].clone()).collect();
        for backwards in [false, true] {
            let mut r = peer_of(base, NOW);
            let mut list = all.clone();
            if backwards {
                list.reverse();
            }
            for e in list {
                // Refusals are allowed (an attacker's entry may be refused
                // outright); what is stored is checked below.
                let _ = r.ingest(e, NOW);
            }
            out.push(r);
        }
    }
    let mut synced = peer_of(base, NOW);
    for s in sides.iter_mut() {
        pump(&mut synced, s, NOW);
    }
    for s in sides.iter_mut() {
        pump(&mut synced, s, NOW);
    }
    out.push(synced);
    for r in out.iter_mut() {
        assert_eq!(r.pending_len(), 0, "nothing stays pending");
    }
    assert_converged(&out.iter().collect::<Vec<_>>());
    out
}

/// `r`'s member entry for `k`.
fn member(r: &Replica, k: &Keypair) -> Option<civicbase_core::state::MemberView> {
    r.state()
        .members
        .list()
        .into_iter()
        .find(|m| m.id == k.author())
}

fn is_removed(r: &Replica, k: &Keypair) -> bool {
    member(r, k).expect("a member").removed
}

fn is_ineffective(r: &Replica, e: &Entry) -> bool {
    r.ineffective().any(|id| *id == e.id())
}

fn remove(m: &Keypair) -> Op {
    Op::Remove { member: m.author() }
}

fn set_role(m: &Keypair, role: Role) -> Op {
    Op::SetRole {
        member: m.author(),
        role,
    }
}

/// The town with the coordinator promoted to admin by the founder.
fn town_with_two_admins() -> Town {
    let mut t = town();
    t.r.author(&t.admin, vec![set_role(&t.coord, Role::Admin)], T)
        .expect("promote");
    t
}

/// The two timestamps an attacker tries: just before and just after the
/// event at `at_ms` it races.
fn around(at_ms: u64) -> [u64; 2] {
    [at_ms - 1, at_ms + 1]
}

// ----------------------------------------------------------------------
// 1. A removed admin removes a member
// ----------------------------------------------------------------------

#[test]
fn a_removed_admin_cannot_remove_a_member_whatever_it_dates_its_removal() {
    let removal_ms = T + 10_000;
    for attack_ms in around(removal_ms) {
        let mut t = town_with_two_admins();
        let mut founder = peer_of(&mut t.r, NOW);
        let mut rogue = peer_of(&mut t.r, NOW);
        founder
            .author(&t.admin, vec![remove(&t.coord)], removal_ms)
            .expect("remove the rogue admin");
        let attack = rogue
            .author(&t.coord, vec![remove(&t.alice)], attack_ms)
            .expect("the rogue's replica has not seen its removal");
        for r in merged_every_way(&mut t.r, &mut [founder, rogue]) {
            assert!(is_removed(&r, &t.coord), "the rogue is removed");
            assert!(
                !is_removed(&r, &t.alice),
                "its removal of Alice has no effect"
            );
            assert!(is_ineffective(&r, &attack));
        }
    }
}

// ----------------------------------------------------------------------
// 2. A removed admin's puppet
// ----------------------------------------------------------------------

#[test]
fn a_puppet_admin_invited_by_a_removed_admin_has_no_authority() {
    let removal_ms = T + 10_000;
    for attack_ms in around(removal_ms) {
        let mut t = town_with_two_admins();
        let puppet = key(40);
        let mut founder = peer_of(&mut t.r, NOW);
        let mut rogue = peer_of(&mut t.r, NOW);
        founder
            .author(&t.admin, vec![remove(&t.coord)], removal_ms)
            .expect("remove the rogue admin");
        // The rogue invites a puppet as admin; the puppet joins and removes
        // both Bob and the founder.
        let invite = invite_key_for(&puppet);
        rogue
            .author(&t.coord, vec![invite_op(&invite, Role::Admin)], attack_ms)
            .expect("invite");
        let join = join_op(&rogue, &invite, &puppet, "Puppet");
        rogue.author(&puppet, vec![join], attack_ms).expect("join");
        let attack = rogue
            .author(&puppet, vec![remove(&t.bob), remove(&t.admin)], attack_ms)
            .expect("the puppet's removals");
        for r in merged_every_way(&mut t.r, &mut [founder, rogue]) {
            assert!(is_removed(&r, &t.coord));
            assert!(
                !is_removed(&r, &t.bob),
                "the puppet's removal of Bob has no effect"
            );
            assert!(!is_removed(&r, &t.admin), "nor of the founder");
            assert!(is_ineffective(&r, &attack));
            let puppet_role = r.state().members.current_role(&puppet.author());
            assert!(
                puppet_role.is_none()
                    || is_ineffective(
                        &r,
                        r.get(&r.entry_at(&puppet.author(), 0).expect("join"))
                            .expect("join")
                    ),
                "the puppet's join has no effect"
            );
            assert_eq!(titles(&r), Vec::<String>::new());
        }
    }
}

// ----------------------------------------------------------------------
// 3. A revoked invite
// ----------------------------------------------------------------------

#[test]
fn a_join_that_does_not_know_of_the_revocation_of_its_invite_has_no_effect() {
    let revoke_ms = T + 10_000;
    for attack_ms in around(revoke_ms) {
        let mut t = town();
        let eve = key(41);
        let invite = invite_key_for(&eve);
        t.r.author(&t.admin, vec![invite_op(&invite, Role::Member)], T)
            .expect("invite");
        let mut admin_side = peer_of(&mut t.r, NOW);
        let mut eve_side = fresh(&t.r);
        // Eve's replica holds the space only up to the invite: her join
        // cites nothing the admin did after it.
        pump(&mut eve_side, &mut peer_of(&mut t.r, NOW), NOW);
        admin_side
            .author(
                &t.admin,
                vec![Op::RevokeInvite {
                    key: invite.author(),
                }],
                revoke_ms,
            )
            .expect("revoke");
        let join = join_op(&eve_side, &invite, &eve, "Eve");
        let joined = eve_side.author(&eve, vec![join], attack_ms).expect("join");
        let post_by_eve = eve_side
            .author(&eve, vec![post("eve was here")], attack_ms + 1)
            .expect("post");
        for r in merged_every_way(&mut t.r, &mut [admin_side, eve_side]) {
            assert!(is_ineffective(&r, &joined), "the join has no effect");
            assert!(
                is_ineffective(&r, &post_by_eve),
                "nor what Eve does with it"
            );
            assert!(titles(&r).is_empty());
        }
    }
}

#[test]
fn a_join_that_knows_of_the_revocation_is_refused() {
    let mut t = town();
    let eve = key(41);
    let invite = invite_key_for(&eve);
    t.r.author(&t.admin, vec![invite_op(&invite, Role::Member)], T)
        .expect("invite");
    t.r.author(
        &t.admin,
        vec![Op::RevokeInvite {
            key: invite.author(),
        }],
        T,
    )
    .expect("revoke");
    let join = sign_next(&t.r, &eve, &[join_op(&t.r, &invite, &eve, "Eve")], T);
    assert_eq!(
        refuse(&mut t.r, &join, NOW),
        IngestError::Op {
            index: 0,
            source: OpError::Invite("the invite was revoked")
        }
    );
}

// ----------------------------------------------------------------------
// 4. One invite, many people
// ----------------------------------------------------------------------

#[test]
fn a_used_invite_refuses_a_second_person() {
    let mut t = town();
    let (eve, mallory) = (key(41), key(42));
    let invite = invite_key_for(&eve);
    t.r.author(&t.admin, vec![invite_op(&invite, Role::Member)], T)
        .expect("invite");
    let join = join_op(&t.r, &invite, &eve, "Eve");
    t.r.author(&eve, vec![join], T).expect("Eve joins");
    let second = sign_next(
        &t.r,
        &mallory,
        &[join_op(&t.r, &invite, &mallory, "Mallory")],
        T,
    );
    assert_eq!(
        refuse(&mut t.r, &second, NOW),
        IngestError::Op {
            index: 0,
            source: OpError::Invite("the invite has been used")
        }
    );
}

#[test]
fn two_people_joining_with_one_single_use_invite_at_once_are_both_left_out() {
    // Whoever leaked the link gains nothing, whichever timestamps the two
    // joins carry: neither is admitted (the inviter sends a new invite).
    for (eve_ms, mallory_ms) in [(T + 5, T + 9), (T + 9, T + 5), (T + 5, T + 5)] {
        let mut t = town();
        let (eve, mallory) = (key(41), key(42));
        let invite = invite_key_for(&eve);
        t.r.author(&t.admin, vec![invite_op(&invite, Role::Member)], T)
            .expect("invite");
        let mut eve_side = peer_of(&mut t.r, NOW);
        let mut mallory_side = peer_of(&mut t.r, NOW);
        let j1 = join_op(&eve_side, &invite, &eve, "Eve");
        let e = eve_side.author(&eve, vec![j1], eve_ms).expect("Eve joins");
        let j2 = join_op(&mallory_side, &invite, &mallory, "Mallory");
        let m = mallory_side
            .author(&mallory, vec![j2], mallory_ms)
            .expect("Mallory joins");
        for r in merged_every_way(&mut t.r, &mut [eve_side, mallory_side]) {
            assert!(is_ineffective(&r, &e) && is_ineffective(&r, &m));
        }
    }
}

#[test]
fn a_group_link_admits_at_most_its_uses() {
    let mut t = town();
    let link = key(50);
    t.r.author(
        &t.coord,
        vec![Op::Invite {
            key: link.author(),
            role: Role::Member,
            expires_ms: T + 3_600_000,
            uses: 2,
        }],
        T,
    )
    .expect("a link for two");
    let people = [key(51), key(52), key(53)];
    // The first two join one after the other; the third without knowing
    // of either.
    let mut late = peer_of(&mut t.r, NOW);
    let j0 = join_op(&t.r, &link, &people[0], "P0");
    let first = t.r.author(&people[0], vec![j0], T).expect("first");
    let j1 = join_op(&t.r, &link, &people[1], "P1");
    let second = t.r.author(&people[1], vec![j1], T).expect("second");
    let j2 = join_op(&late, &link, &people[2], "P2");
    let third = late.author(&people[2], vec![j2], T).expect("third");
    let base = &mut fresh(&t.r);
    pump(base, &mut peer_of(&mut t.r, NOW), NOW);
    let mut sides = [peer_of(&mut t.r, NOW), late];
    for r in merged_every_way(base, &mut sides) {
        let admitted = [&first, &second, &third]
            .iter()
            .filter(|e| !is_ineffective(&r, e))
            .count();
        assert!(admitted <= 2, "at most two people");
        assert!(
            !is_ineffective(&r, &first),
            "the join no other knows of stays"
        );
        assert!(is_ineffective(&r, &second) && is_ineffective(&r, &third));
    }
    // A link for several people grants at most the member role.
    let bad = sign_next(
        &t.r,
        &t.admin,
        &[Op::Invite {
            key: key(54).author(),
            role: Role::Coordinator,
            expires_ms: T + 3_600_000,
            uses: 5,
        }],
        T,
    );
    assert!(matches!(
        refuse(&mut t.r, &bad, NOW),
        IngestError::Op {
            source: OpError::Invite(_),
            ..
        }
    ));
}

// ----------------------------------------------------------------------
// 5. Device links without the device's consent
// ----------------------------------------------------------------------

#[test]
fn linking_a_key_without_its_consent_is_refused() {
    let mut t = town();
    // Bob's key, and a key that has not joined yet (Dave's), claimed by
    // Alice with a consent she signed herself.
    let dave = key(43);
    let why = [
        OpError::AlreadyMember {
            device: t.bob.author(),
        },
        OpError::Invalid("the device did not consent to this link"),
    ];
    for (victim, why) in [&t.bob, &dave].into_iter().zip(why) {
        let statement = link_statement(&t.r.space(), &t.alice.author(), &victim.author());
        let forged = Op::LinkDevice {
            device: victim.author(),
            consent: t.alice.sign(statement.as_bytes()),
        };
        let e = sign_next(&t.r, &t.alice, &[forged], T);
        assert_eq!(
            refuse(&mut t.r, &e, NOW),
            IngestError::Op {
                index: 0,
                source: why
            }
        );
    }
    // Dave can still join.
    invite_and_join(&mut t.r, &t.admin, &dave, Role::Member, "Dave");
    assert_eq!(
        t.r.state().members.current_role(&dave.author()),
        Some(Role::Member)
    );
}

#[test]
fn a_consent_given_in_one_space_links_nothing_in_another() {
    let mut t = town();
    let mut other = found(&t.admin, "Other town");
    invite_and_join(&mut other, &t.admin, &t.alice, Role::Member, "Alice");
    let phone = key(44);
    // Alice's phone consents in the town; the same signature is replayed
    // in the other space to claim the phone there.
    let consent = match link_op(&t.r, &t.alice, &phone) {
        Op::LinkDevice { consent, .. } => consent,
        _ => unreachable!(),
    };
    let replayed = sign_next(
        &other,
        &t.alice,
        &[Op::LinkDevice {
            device: phone.author(),
            consent,
        }],
        T,
    );
    assert!(matches!(
        refuse(&mut other, &replayed, NOW),
        IngestError::Op {
            source: OpError::Invalid(_),
            ..
        }
    ));
    // The phone can still join the other space on its own.
    invite_and_join(&mut other, &t.admin, &phone, Role::Member, "Phone");
    let link = link_op(&t.r, &t.alice, &phone);
    t.r.author(&t.alice, vec![link], T)
        .expect("linked in the town");
}

#[test]
fn one_key_belongs_to_at_most_one_member() {
    // The device consents to two members at once: its entries then speak
    // for nobody wherever both links are known.
    let mut t = town();
    let device = key(45);
    let mut alice_side = peer_of(&mut t.r, NOW);
    let mut bob_side = peer_of(&mut t.r, NOW);
    let la = link_op(&alice_side, &t.alice, &device);
    alice_side
        .author(&t.alice, vec![la], T)
        .expect("link to Alice");
    let lb = link_op(&bob_side, &t.bob, &device);
    bob_side.author(&t.bob, vec![lb], T).expect("link to Bob");
    let mut rs = merged_every_way(&mut t.r, &mut [alice_side, bob_side]);
    let r = &mut rs[0];
    for m in r.state().members.list() {
        assert!(
            !m.devices.contains(&device.author()),
            "{} owns no such device",
            m.name
        );
    }
    let e = sign_next(r, &device, &[post("whose?")], T);
    assert!(matches!(
        refuse(r, &e, NOW),
        IngestError::Op {
            source: OpError::NotAMember { .. },
            ..
        }
    ));
}

// ----------------------------------------------------------------------
// 6. Demotion
// ----------------------------------------------------------------------

#[test]
fn a_demoted_coordinators_concurrent_invite_admits_nobody() {
    let demote_ms = T + 10_000;
    for attack_ms in around(demote_ms) {
        let mut t = town();
        let dave = key(46);
        let mut admin_side = peer_of(&mut t.r, NOW);
        let mut coord_side = peer_of(&mut t.r, NOW);
        admin_side
            .author(&t.admin, vec![set_role(&t.coord, Role::Member)], demote_ms)
            .expect("demote");
        let invite = invite_key_for(&dave);
        let inv = coord_side
            .author(&t.coord, vec![invite_op(&invite, Role::Member)], attack_ms)
            .expect("invite");
        let join = join_op(&coord_side, &invite, &dave, "Dave");
        let joined = coord_side
            .author(&dave, vec![join], attack_ms)
            .expect("join");
        // What the coordinator may still do as a member counts.
        let kept = coord_side
            .author(&t.coord, vec![post("still a member")], attack_ms + 1)
            .expect("post");
        for r in merged_every_way(&mut t.r, &mut [admin_side, coord_side]) {
            assert!(is_ineffective(&r, &inv) && is_ineffective(&r, &joined));
            assert!(!is_ineffective(&r, &kept));
            assert_eq!(titles(&r), vec!["still a member"]);
            assert_eq!(
                r.state().members.current_role(&t.coord.author()),
                Some(Role::Member)
            );
        }
    }
}

#[test]
fn a_demoted_admin_cannot_get_its_rights_back_through_a_friend_with_a_later_timestamp() {
    let demote_ms = T + 10_000;
    for attack_ms in around(demote_ms) {
        let mut t = town_with_two_admins();
        let mut founder = peer_of(&mut t.r, NOW);
        let mut rogue = peer_of(&mut t.r, NOW);
        founder
            .author(&t.admin, vec![set_role(&t.coord, Role::Member)], demote_ms)
            .expect("demote");
        // It cannot name itself admin again (it is one in its own past, so
        // that is refused as a change to nothing); it promotes Alice, who
        // promotes it back after the demotion's date.
        let own = sign_next(
            &rogue,
            &t.coord,
            &[set_role(&t.coord, Role::Admin)],
            attack_ms,
        );
        assert!(rogue.ingest(own, attack_ms).is_err());
        let friend = rogue
            .author(&t.coord, vec![set_role(&t.alice, Role::Admin)], attack_ms)
            .expect("promote a friend");
        let back = rogue
            .author(
                &t.alice,
                vec![set_role(&t.coord, Role::Member)],
                attack_ms + 1,
            )
            .and_then(|_| {
                rogue.author(
                    &t.alice,
                    vec![set_role(&t.coord, Role::Admin)],
                    demote_ms + 5,
                )
            })
            .expect("the friend promotes it back");
        let rename = rogue
            .author(
                &t.coord,
                vec![Op::RenameSpace {
                    name: "Mine".into(),
                }],
                attack_ms + 1,
            )
            .expect("rename");
        for r in merged_every_way(&mut t.r, &mut [founder, rogue]) {
            assert_eq!(
                r.state().members.current_role(&t.coord.author()),
                Some(Role::Member)
            );
            assert!(is_ineffective(&r, &friend) && is_ineffective(&r, &back));
            assert!(is_ineffective(&r, &rename));
            assert_eq!(
                r.state().members.current_role(&t.alice.author()),
                Some(Role::Member)
            );
            assert_eq!(
                r.state()
                    .members
                    .space_name
                    .as_ref()
                    .map(|n| n.value.as_str()),
                Some("Town")
            );
        }
    }
}

#[test]
fn concurrent_admins_of_equal_standing_removing_each_other_are_both_removed() {
    // Two admins promote Alice and Bob without either knowing of the
    // other's promotion; neither is senior. When they remove each other,
    // both removals take effect, whatever their timestamps.
    for (a_ms, b_ms) in [(T + 20, T + 30), (T + 30, T + 20)] {
        let mut t = town_with_two_admins();
        let mut left = peer_of(&mut t.r, NOW);
        let mut right = peer_of(&mut t.r, NOW);
        left.author(&t.admin, vec![set_role(&t.alice, Role::Admin)], T + 1)
            .expect("promote Alice");
        right
            .author(&t.coord, vec![set_role(&t.bob, Role::Admin)], T + 1)
            .expect("promote Bob");
        let mut base = peer_of(&mut t.r, NOW);
        pump(&mut base, &mut left, NOW);
        pump(&mut base, &mut right, NOW);
        let mut a_side = peer_of(&mut base, NOW);
        let mut b_side = peer_of(&mut base, NOW);
        a_side
            .author(&t.alice, vec![remove(&t.bob)], a_ms)
            .expect("Alice removes Bob");
        b_side
            .author(&t.bob, vec![remove(&t.alice)], b_ms)
            .expect("Bob removes Alice");
        for r in merged_every_way(&mut base, &mut [a_side, b_side]) {
            assert!(is_removed(&r, &t.alice) && is_removed(&r, &t.bob));
            assert!(!is_removed(&r, &t.admin), "the founder stays");
        }
    }
}

// ----------------------------------------------------------------------
// 7. Fork proofs
// ----------------------------------------------------------------------

/// A fork by `kp` in `r`'s space: two different signed headers at seq 0.
fn fork_of(r: &Replica, kp: &Keypair) -> (SignedHeader, SignedHeader) {
    let a = sign_next(r, kp, &[post("one")], T);
    let b = sign_next(r, kp, &[post("two")], T);
    (
        (a.header_bytes().to_vec(), *a.signature()),
        (b.header_bytes().to_vec(), *b.signature()),
    )
}

#[test]
fn fork_proofs_about_keys_without_standing_are_refused_and_cost_nothing() {
    let mut t = town();
    let before = t.r.state_hash();
    // Many fresh keys, each with a valid proof that it forked.
    for n in 100..140u8 {
        let (a, b) = fork_of(&t.r, &key(n));
        let proof = ForkProof::verify(&t.r.space(), a.clone(), b.clone()).expect("a real fork");
        assert_eq!(t.r.add_fork(proof), Err(ForkProofError::NoStanding));
        // Over sync too: reported, not stored, not listed in a Hello.
        let mut peer = SyncSession::new(t.r.space());
        peer.start(&t.r);
        let hello = peer.poll_transmit().expect("hello");
        let mut session = SyncSession::new(t.r.space());
        session.start(&t.r);
        session.handle_frame(&hello, &mut t.r, NOW).expect("hello");
        let frame = Message::Fork { a, b }.encode();
        let events = session.handle_frame(&frame, &mut t.r, NOW).expect("frame");
        assert_eq!(
            events.rejected,
            vec![EntryRejection::BadForkProof(ForkProofError::NoStanding)]
        );
    }
    assert_eq!(t.r.forks().count(), 0);
    assert_eq!(t.r.state_hash(), before);
    let mut s = SyncSession::new(t.r.space());
    s.start(&t.r);
    match Message::decode(&s.poll_transmit().expect("hello")) {
        Ok(Message::Hello(h)) => assert!(h.forks.is_empty()),
        other => panic!("{other:?}"),
    }
    // A member's fork is still taken.
    let (a, b) = fork_of(&t.r, &t.alice);
    let proof = ForkProof::verify(&t.r.space(), a, b).expect("fork");
    assert_eq!(t.r.add_fork(proof), Ok(true));
}

// ----------------------------------------------------------------------
// Decisions become final
// ----------------------------------------------------------------------

fn proposal_in(r: &mut Replica, kp: &Keypair, deadline_ms: u64) -> RecordId {
    let e = r
        .author(
            kp,
            vec![Op::Propose {
                title: "Open the shelter".into(),
                body: String::new(),
                deadline_ms,
                quorum: 1,
            }],
            T,
        )
        .expect("propose");
    civicbase_core::id::record_id(&e.id(), 0)
}

#[test]
fn a_vote_arriving_after_the_close_changes_nothing_whatever_its_date() {
    let deadline = T + 60_000;
    let mut t = town();
    let p = proposal_in(&mut t.r, &t.alice, deadline);
    t.r.author(
        &t.alice,
        vec![Op::Vote {
            proposal: p,
            choice: Choice::Yes,
        }],
        T + 10,
    )
    .expect("Alice votes yes");
    let mut late = peer_of(&mut t.r, NOW);
    let mut closer = peer_of(&mut t.r, NOW);
    // Bob votes no, dated before the deadline, but nobody sees it before
    // the coordinator closes the proposal.
    let vote = late
        .author(
            &t.bob,
            vec![Op::Vote {
                proposal: p,
                choice: Choice::No,
            }],
            deadline - 1,
        )
        .expect("vote");
    let close = closer
        .author(
            &t.coord,
            vec![Op::CloseProposal { proposal: p }],
            deadline + 1,
        )
        .expect("close");
    for r in merged_every_way(&mut t.r, &mut [closer, late]) {
        let prop = &r.state().decisions.proposals[&p];
        assert!(prop.is_final());
        assert_eq!(
            (prop.tally().yes, prop.tally().no),
            (1, 0),
            "Bob's late vote does not count"
        );
        assert_eq!(prop.status(NOW), ProposalStatus::Passed);
        assert!(r.contains(&vote.id()) && r.contains(&close.id()));
    }
    // A vote that knows of the close is refused.
    let mut r = peer_of(&mut t.r, NOW);
    let mut closer = peer_of(&mut t.r, NOW);
    closer
        .author(
            &t.coord,
            vec![Op::CloseProposal { proposal: p }],
            deadline + 1,
        )
        .expect("close");
    pump(&mut r, &mut closer, NOW);
    let after = sign_next(
        &r,
        &t.bob,
        &[Op::Vote {
            proposal: p,
            choice: Choice::No,
        }],
        deadline - 1,
    );
    assert!(matches!(
        refuse(&mut r, &after, NOW),
        IngestError::Op {
            source: OpError::ProposalClosed | OpError::VoteAfterDeadline,
            ..
        }
    ));
}

#[test]
fn only_the_proposer_or_a_coordinator_closes_and_only_after_the_deadline() {
    let deadline = T + 60_000;
    let mut t = town();
    let p = proposal_in(&mut t.r, &t.alice, deadline);
    let early = sign_next(
        &t.r,
        &t.alice,
        &[Op::CloseProposal { proposal: p }],
        deadline,
    );
    assert_eq!(
        refuse(&mut t.r, &early, NOW),
        IngestError::Op {
            index: 0,
            source: OpError::DeadlineNotPassed
        }
    );
    let by_bob = sign_next(
        &t.r,
        &t.bob,
        &[Op::CloseProposal { proposal: p }],
        deadline + 1,
    );
    assert!(matches!(
        refuse(&mut t.r, &by_bob, NOW),
        IngestError::Op {
            source: OpError::Forbidden { .. },
            ..
        }
    ));
    let prop = &t.r.state().decisions.proposals[&p];
    assert!(!prop.is_final(), "still provisional");
    t.r.author(
        &t.alice,
        vec![Op::CloseProposal { proposal: p }],
        deadline + 1,
    )
    .expect("the proposer closes");
    assert!(t.r.state().decisions.proposals[&p].is_final());
}

// ----------------------------------------------------------------------
// Arithmetic on outside values
// ----------------------------------------------------------------------

#[test]
fn a_credit_limit_near_u64_max_is_refused_at_validation() {
    let founder = key(60);
    let err = Replica::create(
        &founder,
        NewSpace {
            name: "Overflow".into(),
            founder_name: "F".into(),
            default_credit_limit: u64::MAX,
        },
        T,
        ReplicaConfig::default(),
    )
    .expect_err("refused");
    assert!(matches!(
        err,
        IngestError::Op {
            source: OpError::InvalidAmount { .. },
            ..
        }
    ));
    let mut t = town();
    let huge = sign_next(
        &t.r,
        &t.admin,
        &[Op::SetCreditLimit {
            member: t.alice.author(),
            limit: u64::MAX,
        }],
        T,
    );
    assert!(matches!(
        refuse(&mut t.r, &huge, NOW),
        IngestError::Op {
            source: OpError::InvalidAmount { .. },
            ..
        }
    ));
}

// ----------------------------------------------------------------------
// Found in review
// ----------------------------------------------------------------------

#[test]
fn a_promotion_after_a_demotion_takes_effect() {
    // A role change caps only the entries that do not know of it: once
    // promoted again, the member acts with the new role.
    let mut t = town();
    t.r.author(&t.admin, vec![set_role(&t.alice, Role::Coordinator)], T)
        .expect("coordinator");
    t.r.author(&t.admin, vec![set_role(&t.alice, Role::Admin)], T)
        .expect("admin");
    let rename =
        t.r.author(
            &t.alice,
            vec![Op::RenameSpace {
                name: "Renamed".into(),
            }],
            T,
        )
        .expect("rename");
    let mut other = fresh(&t.r);
    pump(&mut other, &mut t.r, NOW);
    for r in [&t.r, &other] {
        assert!(!is_ineffective(r, &rename));
        assert_eq!(
            r.state()
                .members
                .space_name
                .as_ref()
                .map(|n| n.value.as_str()),
            Some("Renamed")
        );
    }
}

#[test]
fn an_entry_with_several_joins_and_repeated_revocations_are_refused() {
    let mut t = town();
    let (eve, mallory) = (key(41), key(42));
    let invite = invite_key_for(&eve);
    t.r.author(&t.admin, vec![invite_op(&invite, Role::Member)], T)
        .expect("invite");
    // Several joins in one entry would each pass the use count.
    let twice = sign_next(
        &t.r,
        &mallory,
        &[
            join_op(&t.r, &invite, &mallory, "Mallory"),
            join_op(&t.r, &invite, &mallory, "Mallory again"),
        ],
        T,
    );
    assert!(matches!(
        refuse(&mut t.r, &twice, NOW),
        IngestError::Op {
            source: OpError::Invite(_),
            ..
        }
    ));
    t.r.author(
        &t.admin,
        vec![Op::RevokeInvite {
            key: invite.author(),
        }],
        T,
    )
    .expect("revoke");
    let again = sign_next(
        &t.r,
        &t.admin,
        &[Op::RevokeInvite {
            key: invite.author(),
        }],
        T,
    );
    assert_eq!(
        refuse(&mut t.r, &again, NOW),
        IngestError::Op {
            index: 0,
            source: OpError::Invite("the invite is already revoked")
        }
    );
}

#[test]
fn concurrent_issuings_of_one_key_with_other_uses_converge_in_every_order() {
    let mut t = town();
    let link = key(55);
    let mut group = peer_of(&mut t.r, NOW);
    let mut single = peer_of(&mut t.r, NOW);
    group
        .author(
            &t.coord,
            vec![Op::Invite {
                key: link.author(),
                role: Role::Member,
                expires_ms: T + 3_600_000,
                uses: 2,
            }],
            T,
        )
        .expect("a link for two");
    single
        .author(
            &t.admin,
            vec![Op::Invite {
                key: link.author(),
                role: Role::Member,
                expires_ms: T + 3_600_000,
                uses: 1,
            }],
            T,
        )
        .expect("the same key for one");
    for (i, n) in [56u8, 57].into_iter().enumerate() {
        let j = join_op(&group, &link, &key(n), "P");
        group.author(&key(n), vec![j], T + i as u64).expect("join");
    }
    // merged_every_way asserts that every order gives the same state.
    merged_every_way(&mut t.r, &mut [group, single]);
}
