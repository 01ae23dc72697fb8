//! Replays the committed fuzz inputs as an ordinary test.
//!
//! `fuzz/crashers/<target>/` holds, for each cargo-fuzz target in `fuzz/`,
//! every input that once crashed it plus hand-made hostile seeds (empty
//! input, truncated valid encodings, forged counts and lengths). Each file is
//! fed to the same check the fuzz target runs (`support/decoders.rs`), so a
//! fixed crash stays fixed without nightly or libFuzzer.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/decoders.rs"]
mod decoders;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn crashers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/crashers")
}

/// The entries of `dir`, sorted so that failures are reported in a stable order.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    paths
}

#[test]
fn committed_crashers_decode_without_panicking() {
    let root = crashers_dir();
    let mut replayed = 0;
    let mut failures = Vec::new();
    for dir in sorted_entries(&root).into_iter().filter(|p| p.is_dir()) {
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let check = decoders::by_name(&target)
            .unwrap_or_else(|| panic!("fuzz/crashers/{target}/ matches no fuzz target"));
        for file in sorted_entries(&dir).into_iter().filter(|p| p.is_file()) {
            let bytes =
                fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            if panic::catch_unwind(|| check(&bytes)).is_err() {
                failures.push(format!(
                    "{target}/{}",
                    file.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "crashers that still fail: {failures:?}"
    );
    assert!(replayed > 0, "no crashers found under {}", root.display());
}

#[test]
fn every_fuzz_target_has_committed_seeds() {
    for (target, _) in decoders::TARGETS {
        let dir = crashers_dir().join(target);
        assert!(
            dir.is_dir() && sorted_entries(&dir).iter().any(|p| p.is_file()),
            "fuzz target `{target}` has no inputs in {}",
            dir.display()
        );
    }
}

#[test]
fn every_fuzz_target_is_replayed() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut found: Vec<String> = sorted_entries(&targets)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    found.sort();
    let mut known: Vec<String> = decoders::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    known.sort();
    assert_eq!(
        found, known,
        "fuzz/fuzz_targets/ and support/decoders.rs TARGETS differ"
    );
}
