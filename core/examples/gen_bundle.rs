//! Writes a bundle file with a generated civic dataset, for load tests and
//! browser benchmarks: `cargo run --release -p civicbase-core --example
//! gen_bundle -- OUT.civicbase [RECORDS] [AUTHORS]` (defaults 10000 and 50).
//!
//! The space is founded by the device with seed `[1; 32]`; its identity
//! backup is printed so a browser profile can restore it and act as admin.

use civicbase_core::bundle;
use civicbase_core::op::{NeedKind, Op, Role, Urgency};
use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
use civicbase_core::state::members::join_statement;
use civicbase_core::{Keypair, VersionVector};

const T0: u64 = 1_760_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: gen_bundle OUT [RECORDS] [AUTHORS]")?;
    let records: u64 = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let authors: u8 = args.next().map_or(Ok(50), |s| s.parse())?;
    let founder = Keypair::from_seed([1; 32]);
    let (mut r, _) = Replica::create(
        &founder,
        NewSpace {
            name: "Load test".into(),
            founder_name: "Founder".into(),
            default_credit_limit: 10,
        },
        T0,
        ReplicaConfig::default(),
    )?;
    let mut members = vec![founder];
    let mut t = T0 + 1;
    for i in 1..authors {
        let key = Keypair::from_seed([i.wrapping_add(1); 32]);
        let invite = Keypair::from_seed([i.wrapping_add(101); 32]);
        r.author(
            &members[0],
            vec![Op::Invite {
                key: invite.author(),
                role: Role::Member,
                expires_ms: T0 + 86_400_000,
                uses: 1,
            }],
            t,
        )?;
        let proof = invite.sign(join_statement(&r.space(), &key.author()).as_bytes());
        r.author(
            &key,
            vec![Op::Join {
                invite: invite.author(),
                proof,
                name: format!("Member {i}"),
            }],
            t + 1,
        )?;
        members.push(key);
        t += 2;
    }
    const CATEGORIES: [&str; 6] = ["water", "food", "transport", "medicine", "shelter", "power"];
    for n in 0..records {
        let who = &members[(n % members.len() as u64) as usize];
        r.author(
            who,
            vec![Op::CreateNeed {
                kind: if n % 3 == 0 { NeedKind::Offer } else { NeedKind::Need },
                category: CATEGORIES[(n % 6) as usize].into(),
                urgency: [Urgency::Low, Urgency::Normal, Urgency::High, Urgency::Critical][(n % 4) as usize],
                location: format!("Storgatan {}, entrance {}", n % 90 + 1, (b'A' + (n % 4) as u8) as char),
                title: format!("Request number {n} for the district"),
                details: "Generated record with a realistic amount of text describing what is needed, where and when, and who to contact.".into(),
            }],
            t,
        )?;
        t += 1;
    }
    let bytes = bundle::export(&r, &members[0], &VersionVector::new(), t);
    std::fs::write(&out, &bytes)?;
    // A link that names the space with a secret no invite matches: a device
    // opening it waits for the space and replicates it without joining.
    let fragment = format!(
        "join1-{}-{}",
        civicbase_core::id::base32_encode(r.space().as_bytes()),
        civicbase_core::id::base32_encode(&[0xee; 32])
    );
    std::fs::write(format!("{out}.link"), &fragment)?;
    println!(
        "wrote {out}: {} entries, {} bytes; founder backup seed [1; 32]",
        r.len(),
        bytes.len()
    );
    Ok(())
}
