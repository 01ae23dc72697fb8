//! # CivicBase anchor
//!
//! An always-on native peer that keeps a full replica of every space it
//! serves, so that data is never stranded when no other device is online.
//! It finds peers through the signaling server like a browser does, syncs
//! over WebRTC data channels (webrtc-rs) with the same link and sync
//! protocols, and persists to an embedded database ([`store::RedbStore`]).

pub mod store;
