//! Prints what receiving a bundle's entries costs, step by step: decoding,
//! verifying signatures in batches of several sizes, and applying them
//! without verification.
//!
//! `cargo run --release -p civicbase-core --example verify_cost -- FILE`
//! (a bundle from `gen_bundle`). The same program built for
//! `wasm32-wasip1` runs under any WASI host, which shows the cost in
//! WebAssembly; the figures are in docs/PERFORMANCE.md.

use std::time::Instant;

use civicbase_core::bundle;
use civicbase_core::identity::{self, BatchItem};
use civicbase_core::{Entry, Replica, ReplicaConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: verify_cost BUNDLE_FILE")?;
    let bytes = std::fs::read(&path)?;
    let b = bundle::decode(&bytes)?;
    let t = Instant::now();
    let entries = b
        .entries
        .iter()
        .map(|raw| Entry::decode(raw))
        .collect::<Result<Vec<Entry>, _>>()?;
    println!(
        "{} entries; decoding them: {:.1} ms",
        entries.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("| signatures per batch | ms for all | µs per signature |");
    println!("|---:|---:|---:|");
    for size in [1usize, 16, 64, 150, 400, 1000, 10_000] {
        let t = Instant::now();
        for chunk in entries.chunks(size) {
            let items: Vec<BatchItem<'_>> = chunk
                .iter()
                .map(|e| BatchItem {
                    author: &e.header().author,
                    message: e.header_bytes(),
                    signature: e.signature(),
                })
                .collect();
            if identity::verify_batch(&items).iter().any(Result::is_err) {
                return Err("a signature in the bundle does not verify".into());
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {size} | {ms:.1} | {:.1} |",
            ms * 1e3 / entries.len() as f64
        );
    }
    let mut r = Replica::empty(b.space, ReplicaConfig::default());
    let t = Instant::now();
    for e in entries {
        r.ingest_trusted(e, u64::MAX / 2)?;
    }
    println!(
        "applying them without verification: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
