//! Prints what the link stream costs and saves on a bundle's entries:
//! packing them into sync frames as a session does, compressing the frames
//! into link messages, and inflating those again.
//!
//! `cargo run --release -p civicbase-engine --example link_cost -- FILE`
//! (a bundle from `gen_bundle`). Built for `wasm32-wasip1`, the same
//! program shows the cost in WebAssembly; the figures are in
//! docs/PERFORMANCE.md.

use std::time::Instant;

use civicbase_core::bundle;
use civicbase_core::sync::{Message, MAX_FRAME};
use civicbase_core::Hash;
use civicbase_engine::mesh::{LinkDecoder, LinkEncoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: link_cost BUNDLE_FILE")?;
    let b = bundle::decode(&std::fs::read(&path)?)?;
    // Frames as a sync session packs them: as many entries as fit.
    let mut frames = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut size = 5;
    for e in &b.entries {
        if size + e.len() + 3 > MAX_FRAME && !batch.is_empty() {
            frames.push(Message::Entries(std::mem::take(&mut batch)).encode());
            size = 5;
        }
        size += e.len() + 3;
        batch.push(e.clone());
    }
    if !batch.is_empty() {
        frames.push(Message::Entries(batch).encode());
    }
    let plain: usize = frames.iter().map(Vec::len).sum();
    let space = Hash([0; 32]);
    let runs = 5;
    let (mut best_enc, mut best_dec) = (f64::MAX, f64::MAX);
    let mut wire = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let mut enc = LinkEncoder::new();
        let msgs: Vec<Vec<u8>> = frames.iter().flat_map(|f| enc.encode(&space, f)).collect();
        best_enc = best_enc.min(t.elapsed().as_secs_f64() * 1e3);
        wire = msgs.iter().map(Vec::len).sum();
        let t = Instant::now();
        let mut dec = LinkDecoder::new();
        let mut back = 0;
        for m in &msgs {
            if let Some((_, f)) = dec.decode(m)? {
                back += f.len();
            }
        }
        best_dec = best_dec.min(t.elapsed().as_secs_f64() * 1e3);
        if back != plain {
            return Err("the frames did not come back whole".into());
        }
    }
    println!(
        "{} entries in {} frames: {plain} bytes, {wire} on the link ({:.1}%)",
        b.entries.len(),
        frames.len(),
        wire as f64 * 100.0 / plain as f64
    );
    println!(
        "compress {best_enc:.1} ms ({:.0} MB/s), inflate {best_dec:.1} ms ({:.0} MB/s), best of {runs}",
        plain as f64 / best_enc / 1e3,
        plain as f64 / best_dec / 1e3
    );
    Ok(())
}
