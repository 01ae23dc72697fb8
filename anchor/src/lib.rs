//! # CivicBase anchor
//!
//! An always-on native peer that keeps a full replica of every space it
//! serves, so that data is never stranded when no other device is online.
//! It finds peers through the signaling server as a browser does, syncs over
//! WebRTC data channels (webrtc-rs) with the same link and sync protocols
//! (`civicbase_engine::mesh`), and persists to an embedded database.
//!
//! - [`store`] — [`store::RedbStore`], the engine's store on redb;
//! - [`signaling`] — the signaling client (topics, announces, offers);
//! - [`rtc`] — webrtc-rs settings and data-channel plumbing;
//! - [`node`] — the peer itself: one task owning the engine, fed through
//!   channels.
//!
//! The binary (`civicbase-anchor --help`) wires these together. Embedding
//! the node looks like this (the engine's futures are not `Send`, so the
//! node runs inside a [`tokio::task::LocalSet`]):
//!
//! ```no_run
//! use civicbase_anchor::node::{Node, NodeConfig, SystemEnv};
//! use civicbase_anchor::store::RedbStore;
//! use civicbase_engine::Engine;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! let local = tokio::task::LocalSet::new();
//! local.block_on(&runtime, async {
//!     let store = RedbStore::open("anchor.redb")?;
//!     let mut engine = Engine::open(store, &SystemEnv).await?;
//!     let space = civicbase_anchor::invite_space("https://town.example/#join1-…")
//!         .ok_or("not an invite link")?;
//!     engine.replicate(space).await.map_err(|e| e.message)?;
//!     let config = NodeConfig {
//!         signaling_url: "ws://127.0.0.1:8080/signal".into(),
//!         name: "Anchor".into(),
//!         rtc: Default::default(),
//!         peer_id: None,
//!     };
//!     let (node, handle) = Node::new(engine, config)?;
//!     node.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```

use civicbase_core::SpaceId;

pub mod node;
pub mod rtc;
pub mod signaling;
pub mod store;

/// The database file in the data directory.
pub const DB_FILE: &str = "anchor.redb";

/// The space an invite link is for. Takes the whole link (the part after
/// the last `#` is the invite) or just that part. `None` if it is not an
/// invite.
pub fn invite_space(link: &str) -> Option<SpaceId> {
    let link = link.trim();
    let fragment = link.rsplit_once('#').map_or(link, |(_, f)| f);
    civicbase_engine::parse_invite(fragment).map(|(space, _secret)| space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use civicbase_core::Hash;

    #[test]
    fn invites_are_read_from_links_and_fragments() {
        let space = Hash([9; 32]);
        let fragment = civicbase_engine::invite_fragment(&space, &[4; 32]);
        assert_eq!(invite_space(&fragment), Some(space));
        assert_eq!(invite_space(&format!("#{fragment}")), Some(space));
        assert_eq!(
            invite_space(&format!("https://town.example/app/#{fragment}")),
            Some(space)
        );
        assert_eq!(
            invite_space(&format!("  http://10.0.0.2:8080/#join={fragment}\n")),
            Some(space)
        );
        assert_eq!(invite_space("https://town.example/"), None);
        assert_eq!(invite_space("join1-nonsense"), None);
        assert_eq!(invite_space(""), None);
    }
}
