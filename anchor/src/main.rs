//! `civicbase-anchor`: the always-on peer. `--help` lists every option.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use civicbase_anchor::node::{Node, NodeConfig, SystemEnv};
use civicbase_anchor::rtc::{IceServer, RtcConfig};
use civicbase_anchor::store::RedbStore;
use civicbase_anchor::{invite_space, DB_FILE};
use civicbase_engine::mesh::topic;
use civicbase_engine::Engine;
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// The CivicBase anchor: an always-on peer that keeps a full replica of the
/// spaces it serves, so their data is never stranded when no other device is
/// online. It meets browsers through the signaling server and syncs with
/// them over WebRTC. Every option can also be set through the environment
/// variable named in its help. Logs go to standard error; RUST_LOG sets the
/// filter (default: `info`, with only errors from the WebRTC stack).
#[derive(Debug, Parser)]
#[command(name = "civicbase-anchor", version)]
struct Args {
    /// Directory of the anchor's database (`anchor.redb`); created if
    /// missing.
    #[arg(
        long,
        env = "CIVICBASE_ANCHOR_DATA_DIR",
        default_value = "civicbase-data/anchor",
        global = true
    )]
    data_dir: PathBuf,

    /// WebSocket URL of the signaling server's `/signal` endpoint (`ws://`
    /// or `wss://`).
    #[arg(
        long,
        env = "CIVICBASE_ANCHOR_SIGNALING",
        default_value = "ws://127.0.0.1:8080/signal"
    )]
    signaling: String,

    /// Serve the space of this invite link (the whole link, or the part
    /// after `#`). Repeatable; remembered, so later starts need no flag. The
    /// anchor only reads the space from the link: it does not join, and
    /// appears in no member list. Environment: comma-separated.
    #[arg(
        long = "join",
        value_name = "INVITE",
        env = "CIVICBASE_ANCHOR_JOIN",
        value_delimiter = ','
    )]
    join: Vec<String>,

    /// A STUN or TURN server: `stun:HOST[:PORT]`,
    /// `turn:[USER:PASSWORD@]HOST[:PORT][?transport=udp|tcp]` or `turns:…`.
    /// Repeatable; none by default (a LAN needs none). Environment:
    /// comma-separated.
    #[arg(
        long = "ice-server",
        value_name = "URL",
        env = "CIVICBASE_ANCHOR_ICE_SERVERS",
        value_delimiter = ','
    )]
    ice_servers: Vec<String>,

    /// Name shown to peers (in the Sync view of the app).
    #[arg(long, env = "CIVICBASE_ANCHOR_NAME", default_value = "Anchor")]
    name: String,

    /// Use only UDP ports MIN-MAX for WebRTC (for a firewall), such as
    /// 50000-50999. Every connection takes one port per network interface
    /// and address family. Any free port by default.
    #[arg(long, value_name = "MIN-MAX", env = "CIVICBASE_ANCHOR_UDP_PORTS")]
    udp_ports: Option<String>,

    /// Offer only loopback addresses (127.0.0.1, ::1) to peers: for trying
    /// the anchor and a browser on one machine, and for tests.
    #[arg(long, env = "CIVICBASE_ANCHOR_LOOPBACK_ONLY")]
    loopback_only: bool,

    /// Most spaces kept in memory. The others stay on disk until a peer
    /// connects for them; a space with a connection is always in memory,
    /// so this bounds memory when many spaces are served but few are busy.
    #[arg(
        long,
        value_name = "N",
        env = "CIVICBASE_ANCHOR_RESIDENT_SPACES",
        default_value_t = 64
    )]
    resident_spaces: usize,

    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a consistent copy of the database to FILE (which must not
    /// exist) and exit. Safe while the anchor runs.
    Backup {
        /// Where to write the copy.
        file: PathBuf,
    },
    /// List the spaces in the database with their entry counts and exit.
    /// Safe while the anchor runs.
    Spaces,
}

/// Log filter without `RUST_LOG`: the anchor's own events, and only errors
/// from webrtc-rs, which warns about routine things (closing connections).
const DEFAULT_LOG: &str = "info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,\
    webrtc_sctp=error,webrtc_srtp=error,webrtc_data=error,webrtc_mdns=error,webrtc_util=error,\
    interceptor=error,turn=error,stun=error";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let db = args.data_dir.join(DB_FILE);
    if args.command.is_some() && !db.is_file() {
        bail!(
            "there is no anchor database at {} (has the anchor run with this --data-dir?)",
            db.display()
        );
    }
    match &args.command {
        Some(Cmd::Backup { file }) => return backup(&db, file),
        Some(Cmd::Spaces) => return list_spaces(&db),
        None => {}
    }

    let mut ice_servers = Vec::new();
    for s in &args.ice_servers {
        ice_servers.push(IceServer::parse(s)?);
    }
    let udp_ports = args
        .udp_ports
        .as_deref()
        .map(civicbase_anchor::rtc::parse_port_range)
        .transpose()?;
    if !(args.signaling.starts_with("ws://") || args.signaling.starts_with("wss://")) {
        bail!(
            "--signaling {:?}: expected a ws:// or wss:// URL, such as ws://127.0.0.1:8080/signal",
            args.signaling
        );
    }
    let mut joins = Vec::new();
    for link in &args.join {
        match invite_space(link) {
            Some(space) => joins.push(space),
            None => bail!(
                "--join {link:?} is not an invite link: copy the whole link (or the part after #) \
                 from the app's invite dialog"
            ),
        }
    }

    create_data_dir(&args.data_dir)?;
    let store = RedbStore::open(&db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let env = SystemEnv;
        let mut engine = Engine::open_bounded(store, &env, args.resident_spaces)
            .await
            .with_context(|| format!("cannot load {}", db.display()))?;
        for space in joins {
            match engine.replicate(space).await {
                Ok(true) => info!(space = %space.short(), "added a space to serve"),
                Ok(false) => info!(space = %space.short(), "already serving this space"),
                Err(e) => bail!("cannot remember the space to serve: {}", e.message),
            }
        }
        let config = NodeConfig {
            signaling_url: args.signaling.clone(),
            name: args.name.clone(),
            rtc: RtcConfig {
                ice_servers,
                loopback_only: args.loopback_only,
                udp_ports,
            },
            peer_id: None,
        };
        let (node, _handle) = Node::new(engine, config)?;
        let engine = node.run(shutdown_signal()).await;
        drop(engine);
        Ok(())
    })?;
    // webrtc-rs leaves background tasks behind; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Creates the data directory, readable only by its owner.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the permissions of {}", dir.display()))?;
    }
    Ok(())
}

fn backup(db: &Path, file: &Path) -> anyhow::Result<()> {
    let store = RedbStore::open_read_only(db)?;
    let report = store.backup(file)?;
    println!(
        "backed up {} spaces, {} entries to {}",
        report.spaces,
        report.entries,
        file.display()
    );
    Ok(())
}

fn list_spaces(db: &Path) -> anyhow::Result<()> {
    let store = RedbStore::open_read_only(db)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Counts come from the stored version vectors: nothing is loaded.
        let engine = Engine::open_bounded(store, &SystemEnv, 1)
            .await
            .with_context(|| format!("cannot load {}", db.display()))?;
        let spaces = engine.space_ids();
        if spaces.is_empty() {
            println!("no spaces yet: start the anchor with --join <invite link>");
        }
        for space in spaces {
            let vv = engine
                .version_vector(&space)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {}: {}", db.display(), e.message))?;
            let (entries, authors) = (vv.total(), vv.len());
            println!(
                "{}  {entries} entries by {authors} authors  topic {}",
                space.to_hex(),
                topic(&space)
            );
        }
        Ok::<_, anyhow::Error>(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}
