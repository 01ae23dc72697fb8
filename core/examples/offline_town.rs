//! A town with no internet: two devices work apart, meet and sync, and a
//! third device receives everything from a bundle file on a USB stick.
//!
//! Run with `cargo run -p civicbase-core --example offline_town` (or
//! `cargo xtask run`). Optionally pass a directory for the bundle file.

use std::time::{SystemTime, UNIX_EPOCH};

use civicbase_core::bundle;
use civicbase_core::op::{Choice, NeedKind, Op, Role, Urgency};
use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
use civicbase_core::state::members::join_statement;
use civicbase_core::state::needs::NeedFilter;
use civicbase_core::sync::SyncSession;
use civicbase_core::{Keypair, VersionVector};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Key seeds come from the operating system in a real device; fixed here so
/// the demo prints the same ids every time.
fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn sync(a: &mut Replica, b: &mut Replica) -> (u64, u64) {
    let (mut sa, mut sb) = (SyncSession::new(a.space()), SyncSession::new(b.space()));
    sa.start(a);
    sb.start(b);
    loop {
        let mut moved = false;
        while let Some(f) = sa.poll_transmit() {
            moved = true;
            sb.handle_frame(&f, b, now()).expect("sync");
        }
        while let Some(f) = sb.poll_transmit() {
            moved = true;
            sa.handle_frame(&f, a, now()).expect("sync");
        }
        if !moved {
            let (x, y) = (sa.stats(), sb.stats());
            return (x.bytes_sent + y.bytes_sent, x.entries_sent + y.entries_sent);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, Into::into);
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let t = now();

    println!("Alice (town hall) creates the space \"Crisis staff\" on her laptop.");
    let (mut laptop, genesis) = Replica::create(
        &alice,
        NewSpace {
            name: "Crisis staff".into(),
            founder_name: "Alice".into(),
            default_credit_limit: 10,
        },
        t,
        ReplicaConfig::default(),
    )?;
    let invite = key(42);
    laptop.author(
        &alice,
        vec![Op::Invite {
            key: invite.author(),
            role: Role::Coordinator,
            expires_ms: t + 7 * 24 * 3_600_000,
            uses: 1,
        }],
        now(),
    )?;

    println!("Bob's phone gets the invite link and joins while they share the town-hall Wi-Fi.");
    let mut phone = Replica::from_genesis(genesis, now(), ReplicaConfig::default())?;
    sync(&mut laptop, &mut phone);
    let proof = invite.sign(join_statement(&phone.space(), &bob.author()).as_bytes());
    phone.author(
        &bob,
        vec![Op::Join {
            invite: invite.author(),
            proof,
            name: "Bob".into(),
        }],
        now(),
    )?;
    sync(&mut laptop, &mut phone);

    println!("The network goes down. Both keep working.");
    laptop.author(
        &alice,
        vec![Op::PostNotice {
            title: "Drinking water at the school".into(),
            body: "Bring containers. Open 08:00-20:00.".into(),
        }],
        now(),
    )?;
    laptop.author(
        &alice,
        vec![Op::Propose {
            title: "Open the sports hall as a shelter".into(),
            body: "Heating works; capacity 120.".into(),
            deadline_ms: now() + 3_600_000,
            quorum: 2,
        }],
        now(),
    )?;
    phone.author(
        &bob,
        vec![Op::CreateNeed {
            kind: NeedKind::Need,
            category: "transport".into(),
            urgency: Urgency::High,
            location: "Storgatan 12, entrance B".into(),
            title: "Ride to the health centre".into(),
            details: "Wheelchair user, needs a van.".into(),
        }],
        now(),
    )?;
    phone.author(
        &bob,
        vec![Op::Transfer {
            to: alice.author(),
            amount: 2,
            memo: "Two hours of radio duty".into(),
        }],
        now(),
    )?;

    println!("They meet again; one round trip brings both up to date.");
    let (bytes, entries) = sync(&mut laptop, &mut phone);
    println!("  {entries} entries, {bytes} bytes on the wire");
    let proposal = *laptop
        .state()
        .decisions
        .proposals
        .keys()
        .next()
        .ok_or("no proposal")?;
    laptop.author(
        &alice,
        vec![Op::Vote {
            proposal,
            choice: Choice::Yes,
        }],
        now(),
    )?;
    phone.author(
        &bob,
        vec![Op::Vote {
            proposal,
            choice: Choice::Yes,
        }],
        now(),
    )?;
    sync(&mut laptop, &mut phone);
    assert_eq!(laptop.state_hash(), phone.state_hash());

    let path = dir.join("crisis-staff.civicbase");
    std::fs::write(
        &path,
        bundle::export(&laptop, &alice, &VersionVector::new(), now()),
    )?;
    println!("Alice saves a signed bundle to {}.", path.display());

    println!("Carol, 20 km away with no network at all, imports the file.");
    let file = bundle::decode(&std::fs::read(&path)?)?;
    let mut carols = Replica::empty(file.space, ReplicaConfig::default());
    let report = bundle::import(&mut carols, &file, now())?;
    println!(
        "  added {} entries, {} refused",
        report.added.len(),
        report.rejected.len()
    );
    let _ = &carol;

    let s = carols.state();
    println!(
        "\nWhat Carol now sees in \"{}\":",
        s.members
            .space_name
            .as_ref()
            .map_or("", |n| n.value.as_str())
    );
    for m in s.members.list() {
        println!(
            "  member  {} ({}) {}",
            m.name,
            m.role.as_str(),
            m.id.fingerprint()
        );
    }
    for (_, n) in s.notices.list() {
        println!("  notice  {}: {}", n.title.value, n.body.value);
    }
    for p in s.decisions.proposals.values() {
        let t = p.tally();
        println!(
            "  vote    {}: yes {} no {} abstain {} ({:?})",
            p.title,
            t.yes,
            t.no,
            t.abstain,
            p.status(now())
        );
    }
    for (_, r) in s.needs.list(&NeedFilter::default()) {
        println!("  need    [{:?}] {} at {}", r.urgency, r.title, r.location);
    }
    for (m, b) in &s.hearts.balances {
        println!("  hearts  {}: {b}", s.members.name_of(m).unwrap_or("?"));
    }
    println!(
        "\nState hash on all three devices: {}",
        carols.state_hash().short()
    );
    assert_eq!(carols.state_hash(), laptop.state_hash());
    Ok(())
}
