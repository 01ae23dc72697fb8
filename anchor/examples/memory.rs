//! How much memory an anchor needs when it serves many spaces: prints the
//! peak resident set of an engine that keeps every space in memory against
//! one bounded with `Engine::open_bounded`, on the same redb database, in
//! the same run.
//!
//! ```sh
//! cargo run -p civicbase-anchor --example memory -- [SPACES] [ENTRIES] [RESIDENT]
//! ```
//!
//! It writes SPACES spaces (default 200) of ENTRIES notices each (default
//! 500) into a fresh database, then runs itself twice as a child process —
//! memory freed inside one process is not reliably returned to the system,
//! so each engine is measured in its own — and each child visits every
//! space in turn, as peers coming and going would (load it, read its
//! version vector, run housekeeping), and reports its peak resident set
//! (`VmHWM` from `/proc/self/status`, Linux only).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use civicbase_anchor::node::SystemEnv;
use civicbase_anchor::store::RedbStore;
use civicbase_core::op::Op;
use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
use civicbase_core::store::conformance::block_on;
use civicbase_core::store::Store;
use civicbase_core::{Entry, Keypair};
use civicbase_engine::Engine;

const NOW: u64 = 1_760_000_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (Some(db), Some(mode)) = (args.get(2), args.get(3)) else {
            bail!("usage: memory --child DB all|RESIDENT");
        };
        return child(Path::new(db), mode);
    }
    let number = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i)
            .map_or(Ok(default), |s| s.parse())
            .with_context(|| format!("argument {i} must be a number"))
    };
    let (spaces, entries, resident) = (number(1, 200)?, number(2, 500)?, number(3, 8)?);
    let dir = std::env::temp_dir().join(format!("civicbase-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("anchor.redb");
    let bytes = write_database(&db, spaces, entries)?;
    println!(
        "database: {spaces} spaces x {entries} notices, {:.1} MiB of entries",
        bytes as f64 / 1048576.0
    );
    let all = measure(&db, "all")?;
    let bounded = measure(&db, &resident.to_string())?;
    println!();
    println!("| engine | peak resident set | vs every space in memory |");
    println!("|---|---:|---:|");
    println!(
        "| every space in memory (`Engine::open`) | {:.1} MiB | 1.00x |",
        mib(all)
    );
    println!(
        "| at most {resident} idle spaces in memory (`Engine::open_bounded`) | {:.1} MiB | {:.2}x |",
        mib(bounded),
        bounded as f64 / all as f64
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Writes the spaces; returns the bytes of all entries.
fn write_database(db: &PathBuf, spaces: usize, entries: usize) -> anyhow::Result<usize> {
    let store = RedbStore::open(db)?;
    let mut bytes = 0;
    for s in 0..spaces {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(s as u64).to_le_bytes());
        let key = Keypair::from_seed(seed);
        let (mut replica, _) = Replica::create(
            &key,
            NewSpace {
                name: format!("Space {s}"),
                founder_name: "Coordinator".into(),
                default_credit_limit: 5,
            },
            NOW,
            ReplicaConfig::default(),
        )
        .map_err(|e| anyhow::anyhow!("create: {e}"))?;
        for i in 0..entries {
            replica
                .author(
                    &key,
                    vec![Op::PostNotice {
                        title: format!("Notice {i} of space {s}"),
                        body: "Water distribution at the school gym from 9 to 17, \
                               bring your own containers."
                            .into(),
                    }],
                    NOW + 1 + i as u64,
                )
                .map_err(|e| anyhow::anyhow!("author: {e}"))?;
        }
        let log: Vec<Entry> = replica.log().cloned().collect();
        bytes += log.iter().map(Entry::encoded_len).sum::<usize>();
        block_on(store.append(&replica.space(), &log))?;
    }
    Ok(bytes)
}

/// Runs a child that measures one engine; returns its peak RSS in KiB.
fn measure(db: &Path, mode: &str) -> anyhow::Result<u64> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--child", &db.to_string_lossy(), mode])
        .output()?;
    if !out.status.success() {
        bail!(
            "the {mode} child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("the {mode} child printed {text:?}"))
}

fn child(db: &Path, mode: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let store = RedbStore::open(db)?;
        let env = SystemEnv;
        let mut engine = match mode {
            "all" => Engine::open(store, &env).await?,
            n => Engine::open_bounded(store, &env, n.parse()?).await?,
        };
        let mut total = 0u64;
        for space in engine.space_ids() {
            if !engine
                .wake(&space, &env)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?
            {
                bail!("space {} is missing", space.short());
            }
            total += engine
                .version_vector(&space)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?
                .total();
            engine
                .maintain(&env)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
        if total == 0 {
            bail!("no entries were loaded");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!("{}", peak_rss_kib()?);
    Ok(())
}

fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
