//! Prints how long a removal takes to take effect in a space of N entries
//! (default 10,000), against the cost of applying an ordinary entry in the
//! same replica, measured in the same run.
//!
//! `cargo run --release -p civicbase-core --example removal_cost -- [N]`
//!
//! The space has 20 members posting in turn. A removal, and a removal that
//! races a concurrent one (the removed admin's own, made without knowing of
//! it), each make the replica decide the revocations in force again and
//! fold the whole log; an ordinary post is applied incrementally.

use std::time::Instant;

use civicbase_core::state::members::join_statement;
use civicbase_core::{Keypair, NewSpace, Op, Replica, ReplicaConfig, Role};

const T: u64 = 1_760_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 10_000,
    };
    let founder = Keypair::from_seed([1; 32]);
    let (mut r, _) = Replica::create(
        &founder,
        NewSpace {
            name: "Town".into(),
            founder_name: "Founder".into(),
            default_credit_limit: 10,
        },
        T,
        ReplicaConfig::default(),
    )?;
    let members: Vec<Keypair> = (2..22u8).map(|i| Keypair::from_seed([i; 32])).collect();
    for (i, m) in members.iter().enumerate() {
        let invite = Keypair::from_seed([100 + i as u8; 32]);
        let role = if i == 0 { Role::Admin } else { Role::Member };
        r.author(
            &founder,
            vec![Op::Invite {
                key: invite.author(),
                role,
                expires_ms: T + 86_400_000,
                uses: 1,
            }],
            T,
        )?;
        let proof = invite.sign(join_statement(&r.space(), &m.author()).as_bytes());
        r.author(
            m,
            vec![Op::Join {
                invite: invite.author(),
                proof,
                name: format!("Member {i}"),
            }],
            T,
        )?;
    }
    let mut t = T;
    while r.len() < n {
        let m = &members[r.len() % members.len()];
        t += 1;
        r.author(
            m,
            vec![Op::PostNotice {
                title: format!("Notice {}", r.len()),
                body: "Water at the school from nine".into(),
            }],
            t,
        )?;
    }
    let post = |r: &mut Replica, t: u64| -> Result<f64, Box<dyn std::error::Error>> {
        let start = Instant::now();
        r.author(
            &members[5],
            vec![Op::PostNotice {
                title: "One more".into(),
                body: String::new(),
            }],
            t,
        )?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let baseline = post(&mut r, t + 1)?;
    // The second admin, about to be removed, removes a member on a replica
    // that has not seen its removal.
    let mut stale =
        Replica::rebuild(r.space(), r.log().cloned(), t + 2, ReplicaConfig::default()).0;
    let rogue = stale.author(
        &members[0],
        vec![Op::Remove {
            member: members[7].author(),
        }],
        t + 3,
    )?;
    let start = Instant::now();
    r.author(
        &founder,
        vec![Op::Remove {
            member: members[0].author(),
        }],
        t + 2,
    )?;
    let removal = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    r.ingest(rogue, t + 4)?;
    let racing = start.elapsed().as_secs_f64() * 1e3;
    let after = post(&mut r, t + 5)?;
    println!("{} entries, 21 members", r.len());
    println!("| what | ms |");
    println!("|---|---:|");
    println!("| an ordinary post (baseline, incremental) | {baseline:.3} |");
    println!("| a removal takes effect (resolution and full fold) | {removal:.1} |");
    println!("| the removed admin's concurrent removal arrives | {racing:.1} |");
    println!("| an ordinary post afterwards | {after:.3} |");
    println!(
        "removal / post: {:.0}x; the racing removal has no effect: {}",
        removal / baseline.max(1e-6),
        r.ineffective().count() > 0
    );
    Ok(())
}
