//! A warm-up of the code that receiving entries runs.
//!
//! WebAssembly engines first run code with a quick baseline compiler and
//! compile the hot functions again, optimised, in the background while they
//! run. The first large sync after a page opens would run its signature
//! checks in baseline code, several times slower, while the optimising
//! compiler competes for the same cores. A device calls [`warm_up`] once
//! when it is idle, so that the optimised code is ready before the first
//! sync needs it.

use crate::identity::Keypair;
use crate::op::{NeedKind, Op, Urgency};
use crate::replica::{NewSpace, Replica, ReplicaConfig};
use crate::Entry;

/// Signs, encodes, decodes, verifies (in one batch) and applies `entries`
/// made-up entries in a throwaway space, then drops everything. Returns how
/// many were applied (all of them, unless something is badly wrong).
/// Touches no storage and no network.
pub fn warm_up(entries: u64) -> usize {
    const T0: u64 = 1_700_000_000_000;
    let key = Keypair::from_seed([7; 32]);
    let Ok((mut source, _)) = Replica::create(
        &key,
        NewSpace {
            name: "warm-up".into(),
            founder_name: "warm-up".into(),
            default_credit_limit: 0,
        },
        T0,
        ReplicaConfig::default(),
    ) else {
        return 0;
    };
    for i in 0..entries {
        let op = Op::CreateNeed {
            kind: NeedKind::Offer,
            category: "warm-up".into(),
            urgency: Urgency::Normal,
            location: String::new(),
            title: format!("warm-up {i}"),
            details: String::new(),
        };
        if source.author(&key, vec![op], T0 + 1 + i).is_err() {
            return 0;
        }
    }
    let wire: Vec<Vec<u8>> = source
        .missing_for(&crate::VersionVector::new())
        .iter()
        .map(|e| e.encode())
        .collect();
    let decoded: Vec<Entry> = wire.iter().filter_map(|b| Entry::decode(b).ok()).collect();
    let mut sink = Replica::empty(source.space(), ReplicaConfig::default());
    sink.ingest_batch(decoded, T0 + entries + 1)
        .iter()
        .filter(|r| r.is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_made_up_entry_is_applied() {
        // The genesis entry and the 20 others.
        assert_eq!(super::warm_up(20), 21);
    }
}
