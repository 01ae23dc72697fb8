//! temp
use civicbase_core::identity::{self, BatchItem, Keypair};
use std::time::Instant;
fn main() {
    let keys: Vec<Keypair> = (0..50u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let msgs: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let mut m = vec![7u8; 367];
            m[..4].copy_from_slice(&i.to_le_bytes());
            m
        })
        .collect();
    let authors: Vec<_> = (0..10_000).map(|i| keys[i % 50].author()).collect();
    let sigs: Vec<[u8; 64]> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 50].sign(m))
        .collect();
    for _ in 0..2 {
        let t = Instant::now();
        for a in &authors {
            std::hint::black_box(identity::verifying_key(a).ok());
        }
        println!(
            "verifying_key: {:.2} us",
            t.elapsed().as_secs_f64() * 1e6 / 1e4
        );
        let t = Instant::now();
        for i in 0..10_000 {
            assert!(identity::verify(&authors[i], &msgs[i], &sigs[i]).is_ok());
        }
        println!("verify: {:.2} us", t.elapsed().as_secs_f64() * 1e6 / 1e4);
        for bs in [64usize, 100, 256, 1024] {
            let t = Instant::now();
            for c in (0..10_000).collect::<Vec<_>>().chunks(bs) {
                let items: Vec<BatchItem<'_>> = c
                    .iter()
                    .map(|&i| BatchItem {
                        author: &authors[i],
                        message: &msgs[i],
                        signature: &sigs[i],
                    })
                    .collect();
                assert!(identity::verify_batch(&items).iter().all(|r| r.is_ok()));
            }
            println!(
                "verify_batch({bs}): {:.2} us/sig",
                t.elapsed().as_secs_f64() * 1e6 / 1e4
            );
        }
        let t = Instant::now();
        for m in &msgs {
            std::hint::black_box(civicbase_core::Hash::of(m));
        }
        println!(
            "blake3 367B: {:.2} us",
            t.elapsed().as_secs_f64() * 1e6 / 1e4
        );
    }
}
