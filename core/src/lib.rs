//! # CivicBase core
//!
//! The pure-Rust heart of CivicBase: identities, signed hash-chained
//! entries, conflict-free civic state (notices, decisions, needs & offers,
//! a time-bank ledger, members), authorization as a function of causal
//! history, and a sans-IO sync protocol. It performs no I/O and reads no
//! clock or randomness: wall time and key seeds are passed in.
//!
//! ```
//! use civicbase_core::{Keypair, NewSpace, Op, Replica, ReplicaConfig, SyncSession};
//!
//! let now = 1_700_000_000_000;
//! let alice = Keypair::from_seed([1; 32]);
//! let (mut a, genesis) = Replica::create(
//!     &alice,
//!     NewSpace { name: "Town hall".into(), founder_name: "Alice".into(), default_credit_limit: 10 },
//!     now,
//!     ReplicaConfig::default(),
//! ).unwrap();
//! a.author(&alice, vec![Op::PostNotice { title: "Water at the school".into(), body: "From 9:00".into() }], now + 1).unwrap();
//!
//! // A second device that knows only the genesis entry syncs with the first.
//! let mut b = Replica::from_genesis(genesis, now, ReplicaConfig::default()).unwrap();
//! let (mut sa, mut sb) = (SyncSession::new(a.space()), SyncSession::new(b.space()));
//! sa.start(&a);
//! sb.start(&b);
//! for _ in 0..4 {
//!     while let Some(frame) = sa.poll_transmit() { sb.handle_frame(&frame, &mut b, now).unwrap(); }
//!     while let Some(frame) = sb.poll_transmit() { sa.handle_frame(&frame, &mut a, now).unwrap(); }
//! }
//! assert_eq!(a.state_hash(), b.state_hash());
//! assert_eq!(b.state().notices.list()[0].1.title.value, "Water at the school");
//! ```

pub mod bundle;
pub mod codec;
pub mod entry;
pub mod hlc;
pub mod id;
pub mod identity;
pub mod op;
pub mod replica;
pub mod state;
pub mod store;
pub mod sync;
pub mod vv;
pub mod warm;

pub use codec::DecodeError;
pub use entry::{Entry, EntryError, Header};
pub use hlc::{Clock, Timestamp};
pub use id::{AuthorId, EntryId, Hash, RecordId, SpaceId};
pub use identity::Keypair;
pub use op::{Choice, NeedKind, Op, Role, Urgency};
pub use replica::{IngestError, Ingested, NewSpace, Replica, ReplicaConfig};
pub use state::SpaceState;
pub use sync::{SyncError, SyncSession};
pub use vv::VersionVector;
