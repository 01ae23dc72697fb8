//! # CivicBase app ↔ engine protocol
//!
//! The UI (main thread) and the engine (a Web Worker) talk only through the
//! messages in this crate, posted as byte arrays. Every message starts with
//! [`PROTOCOL_VERSION`]; a side that receives another version answers with an
//! error instead of guessing. The types here are wire types made for this
//! boundary — the core's internal types never cross it. Operations a user
//! performs travel as the core's own versioned payload encoding
//! (`civicbase_core::op::encode_payload`).
//!
//! ```
//! use civicbase_proto::{Request, RequestBody, decode_request, encode_request};
//!
//! let req = Request { id: 7, body: RequestBody::Init };
//! let bytes = encode_request(&req);
//! assert_eq!(bytes[0], civicbase_proto::PROTOCOL_VERSION);
//! assert_eq!(decode_request(&bytes).unwrap(), req);
//! ```

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// Version byte leading every message.
pub const PROTOCOL_VERSION: u8 = 2;

/// Largest message accepted (a bundle import can be large).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// A 32-byte id (space, entry, record, member) as raw bytes.
pub type Id = [u8; 32];

/// A request from the UI, answered by exactly one [`Event::Response`] with
/// the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the UI; echoed in the response.
    pub id: u32,
    /// What is asked.
    pub body: RequestBody,
}

/// What the UI asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// First message: answered with [`ResponseBody::Ready`].
    Init,
    /// Creates this device's identity with a display name.
    CreateIdentity {
        /// Display name.
        name: String,
    },
    /// Restores an identity from a backup text.
    RestoreIdentity {
        /// The backup text as exported.
        backup: String,
    },
    /// Exports the identity as a backup text.
    ExportIdentity,
    /// Creates a space; this device's member becomes its admin.
    CreateSpace {
        /// Space name.
        name: String,
        /// Credit limit of members with no limit of their own.
        default_credit_limit: u64,
    },
    /// Creates an invite; answered with the link fragment.
    CreateInvite {
        /// The space.
        space: Id,
        /// Role granted (0 viewer, 1 member, 2 coordinator, 3 admin).
        role: u8,
        /// Validity from now, in hours.
        valid_hours: u32,
        /// How many people it admits: 1 for one person; more only for a
        /// group link whose role is at most member.
        uses: u32,
    },
    /// Joins a space from an invite link's fragment. If the space's data is
    /// not on this device yet, the join waits until it arrives (by sync or a
    /// bundle file).
    JoinSpace {
        /// The fragment of the invite link (after `#`).
        fragment: String,
    },
    /// Performs operations in a space: a payload in the core's encoding.
    Act {
        /// The space.
        space: Id,
        /// `civicbase_core::op::encode_payload` output.
        #[serde(with = "bytes")]
        payload: Vec<u8>,
    },
    /// Reads a view of a space.
    View {
        /// The space.
        space: Id,
        /// Which view.
        query: ViewQuery,
    },
    /// Exports a signed bundle of the whole space.
    ExportBundle {
        /// The space.
        space: Id,
    },
    /// Imports a bundle file.
    ImportBundle {
        /// The file's bytes.
        #[serde(with = "bytes")]
        bytes: Vec<u8>,
    },
    /// Reports sync and storage status.
    Status,
    /// A data channel to a peer opened. Link messages come from the tab
    /// holding the network role, which owns the WebRTC connections; they
    /// are not answered.
    LinkUp {
        /// Chosen by the tab; unique while the tab lives.
        link: u32,
        /// The peer's name.
        label: String,
        /// How it is connected ("direct", "anchor").
        via: String,
    },
    /// The peer on `link` was heard on a signaling topic: start the sync
    /// session of that topic's space on the link (not answered).
    LinkTopic {
        /// The link.
        link: u32,
        /// The topic (see `civicbase_engine::mesh::topic`).
        topic: String,
    },
    /// A message arrived on a link (not answered).
    LinkData {
        /// The link.
        link: u32,
        /// The message.
        #[serde(with = "bytes")]
        bytes: Vec<u8>,
    },
    /// A link's channel closed (not answered).
    LinkDown {
        /// The link.
        link: u32,
    },
}

impl RequestBody {
    /// Whether this is a link message, which is not answered.
    pub fn is_link(&self) -> bool {
        matches!(
            self,
            RequestBody::LinkUp { .. }
                | RequestBody::LinkTopic { .. }
                | RequestBody::LinkData { .. }
                | RequestBody::LinkDown { .. }
        )
    }
}

/// Which view to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewQuery {
    /// Name, role, counts.
    Overview,
    /// Notices, pinned first, newest first.
    Notices {
        /// Skip this many.
        offset: u32,
        /// At most this many.
        limit: u32,
    },
    /// Proposals with tallies and comments.
    Decisions {
        /// Skip this many.
        offset: u32,
        /// At most this many.
        limit: u32,
    },
    /// Needs and offers matching a filter.
    Needs {
        /// The filter.
        filter: NeedFilter,
        /// Skip this many.
        offset: u32,
        /// At most this many.
        limit: u32,
    },
    /// Balances, this member's history, conflicts.
    Hearts {
        /// Skip this many history rows.
        offset: u32,
        /// At most this many history rows.
        limit: u32,
    },
    /// Members and invites.
    Members,
}

/// A needs-and-offers filter; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedFilter {
    /// 0 need, 1 offer.
    pub kind: Option<u8>,
    /// Exact category.
    pub category: Option<String>,
    /// Minimum urgency 0..=3.
    pub min_urgency: Option<u8>,
    /// 0 open, 1 claimed, 2 done.
    pub status: Option<u8>,
}

/// A message from the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The answer to a request.
    Response {
        /// The request's id.
        id: u32,
        /// The answer or what went wrong.
        result: Result<ResponseBody, ErrorInfo>,
    },
    /// A space's data changed (here or in another tab or device): views
    /// showing it should be read again.
    Changed {
        /// The space.
        space: Id,
    },
    /// Sync and storage status changed.
    Status(StatusInfo),
    /// A problem the user must know about that no request caused (storage
    /// full, a bundle's entries refused on arrival).
    Alert(ErrorInfo),
    /// The signaling topics of this device's spaces (at start and whenever
    /// the set of spaces changes).
    Topics(Vec<String>),
    /// Messages to send on a link, in order.
    LinkSend {
        /// The link.
        link: u32,
        /// The messages.
        #[serde(with = "byte_vecs")]
        messages: Vec<Vec<u8>>,
    },
    /// The link broke the protocol: close its connection.
    LinkClose {
        /// The link.
        link: u32,
        /// Why, for the log.
        reason: String,
    },
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The engine is ready.
    Ready {
        /// This device's identity, if created.
        identity: Option<IdentityInfo>,
        /// Spaces on this device.
        spaces: Vec<SpaceSummary>,
        /// Storage and sync status.
        status: StatusInfo,
    },
    /// An identity was created or restored.
    Identity(IdentityInfo),
    /// An identity backup text.
    Backup(String),
    /// A space was created or joined.
    Space(SpaceSummary),
    /// An invite was created: the link fragment to put after `#`.
    Invite {
        /// The fragment.
        fragment: String,
    },
    /// A join is waiting for the space's data to arrive.
    JoinPending {
        /// The space.
        space: Id,
    },
    /// Operations were stored; the id of the entry carrying them.
    Done {
        /// The entry id.
        entry: Id,
    },
    /// A view.
    View(ViewData),
    /// A bundle file.
    Bundle {
        /// Suggested file name.
        file_name: String,
        /// The bytes.
        #[serde(with = "bytes")]
        bytes: Vec<u8>,
    },
    /// What an import did.
    Imported(ImportSummary),
    /// Status.
    Status(StatusInfo),
}

/// Why a request failed, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The kind of failure.
    pub code: ErrorCode,
    /// A sentence for the user, saying what happened and what to do.
    pub message: String,
}

/// Kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request was malformed or a field is invalid.
    InvalidInput,
    /// The action is not allowed (role, deadline, credit limit …).
    Refused,
    /// No identity yet.
    NoIdentity,
    /// No such space on this device.
    UnknownSpace,
    /// The device's storage is full; nothing was lost.
    QuotaExceeded,
    /// Storage failed.
    Storage,
    /// A file was not a valid bundle or backup.
    BadFile,
    /// The message speaks another protocol version.
    Version,
    /// A bug.
    Internal,
}

/// This device's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// Device public key.
    pub device: Id,
    /// Text form of the device id.
    pub device_text: String,
    /// Short fingerprint.
    pub fingerprint: String,
    /// Display name.
    pub name: String,
}

/// A space in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSummary {
    /// Space id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// This member's role (None: not a member yet, or removed).
    pub role: Option<u8>,
    /// Entries stored.
    pub entries: u64,
}

/// Sync and storage status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Whether the browser granted persistent storage (`None`: unknown).
    pub persisted: Option<bool>,
    /// Bytes used by this origin, if known.
    pub usage: Option<u64>,
    /// Bytes available to this origin, if known.
    pub quota: Option<u64>,
    /// Other tabs of this app seen recently.
    pub tabs: u32,
    /// Whether this tab holds the network role for its spaces.
    pub leader: bool,
    /// Entries waiting for dependencies, over all spaces.
    pub pending: u64,
    /// Connected peers.
    pub peers: Vec<PeerInfo>,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// A label (tab, device fingerprint).
    pub label: String,
    /// How it is connected.
    pub via: String,
    /// Last sync, Unix ms.
    pub last_sync_ms: Option<u64>,
    /// Entries this device has that the peer has not confirmed yet.
    pub unsent: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// The space.
    pub space: Id,
    /// Its name, if known.
    pub space_name: String,
    /// Entries added.
    pub added: u64,
    /// Entries already present.
    pub duplicates: u64,
    /// Entries waiting for others the file did not carry.
    pub pending: u64,
    /// Entries refused, with reasons.
    pub rejected: Vec<String>,
}

/// View data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewData {
    /// Space overview.
    Overview(Overview),
    /// A page of notices.
    Notices(Page<NoticeView>),
    /// A page of proposals.
    Decisions(Page<ProposalView>),
    /// A page of needs and offers.
    Needs(Page<NeedView>),
    /// The time bank.
    Hearts(HeartsView),
    /// Members and invites.
    Members(MembersView),
}

/// A page of a longer list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Items in the whole list.
    pub total: u32,
}

/// Space overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Space id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// This member's role.
    pub role: Option<u8>,
    /// This member's id.
    pub me: Option<Id>,
    /// Members.
    pub members: u32,
    /// Live notices.
    pub notices: u32,
    /// Open proposals.
    pub open_proposals: u32,
    /// Open needs and offers.
    pub open_needs: u32,
    /// Entries stored.
    pub entries: u64,
    /// Stored entries without effect (strong removal, forks).
    pub ineffective: u32,
    /// Authors flagged for forking.
    pub flagged: Vec<String>,
}

/// A notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeView {
    /// Record id.
    pub id: Id,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Author's name.
    pub author: String,
    /// Posted at, Unix ms.
    pub posted_ms: u64,
    /// Pinned.
    pub pinned: bool,
    /// Whether this member may edit or delete it.
    pub can_edit: bool,
}

/// A proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    /// Record id.
    pub id: Id,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Proposer's name.
    pub author: String,
    /// Deadline, Unix ms.
    pub deadline_ms: u64,
    /// Quorum.
    pub quorum: u32,
    /// Yes votes.
    pub yes: u32,
    /// No votes.
    pub no: u32,
    /// Abstentions.
    pub abstain: u32,
    /// This member's vote (0 yes, 1 no, 2 abstain).
    pub my_vote: Option<u8>,
    /// 0 open, 1 passed, 2 rejected, 3 no quorum.
    pub status: u8,
    /// Whether the proposal was closed: the tally is final. Before, it is
    /// provisional (a vote cast in time may still arrive).
    pub is_final: bool,
    /// Comments: (author name, text).
    pub comments: Vec<(String, String)>,
}

/// A need or offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedView {
    /// Record id.
    pub id: Id,
    /// 0 need, 1 offer.
    pub kind: u8,
    /// Category.
    pub category: String,
    /// 0 low … 3 critical.
    pub urgency: u8,
    /// Location.
    pub location: String,
    /// Title.
    pub title: String,
    /// Details.
    pub details: String,
    /// 0 open, 1 claimed, 2 done.
    pub status: u8,
    /// Creator's name.
    pub author: String,
    /// Claimer's name.
    pub claimer: Option<String>,
    /// Whether this member created it.
    pub mine: bool,
}

/// The time bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartsView {
    /// (member id, name, balance, credit limit).
    pub balances: Vec<(Id, String, i64, u64)>,
    /// This member's transfers, newest first: (from, to, amount, memo, at ms, conflicting).
    pub history: Page<TransferView>,
    /// Members below their limit: (name, balance, limit).
    pub overdrawn: Vec<(String, i64, u64)>,
    /// Transfers flagged as conflicting.
    pub conflicts: Vec<TransferView>,
}

/// One transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    /// Sender's name.
    pub from: String,
    /// Receiver's name.
    pub to: String,
    /// Amount.
    pub amount: u64,
    /// Memo.
    pub memo: String,
    /// When, Unix ms.
    pub at_ms: u64,
    /// Whether flagged as conflicting.
    pub conflicting: bool,
}

/// Members and invites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    /// Members.
    pub members: Vec<MemberRow>,
    /// Invites: (key, role, expires ms, revoked).
    pub invites: Vec<(Id, u8, u64, bool)>,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Member id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Role.
    pub role: u8,
    /// Removed.
    pub removed: bool,
    /// Fingerprint.
    pub fingerprint: String,
    /// Devices.
    pub devices: u32,
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtoError {
    /// Empty or truncated.
    #[error("empty message")]
    Empty,
    /// Another protocol version.
    #[error("message version {found}, this build speaks {PROTOCOL_VERSION}; reload the page")]
    Version {
        /// The version found.
        found: u8,
    },
    /// Too large.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// Malformed.
    #[error("malformed message")]
    Malformed,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail.
    postcard::to_extend(v, vec![PROTOCOL_VERSION]).unwrap_or_else(|_| vec![PROTOCOL_VERSION])
}

/// Byte strings as one length and a copy of the bytes, not as a sequence of
/// numbers one by one (the same encoding, many times faster: link messages
/// and bundles pass through here).
mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    pub(super) struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// A sequence of byte strings, each as in [`bytes`].
mod byte_vecs {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Serialize, Serializer};

    struct Item<'a>(&'a [u8]);

    impl Serialize for Item<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(super::bytes::BytesVisitor)
                .map(Owned)
        }
    }

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&Item(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Vec<u8>>;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a sequence of byte strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(Owned(b)) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ProtoError::TooLarge(bytes.len()));
    }
    match bytes.split_first() {
        None => Err(ProtoError::Empty),
        Some((&PROTOCOL_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|_| ProtoError::Malformed)
        }
        Some((&found, _)) => Err(ProtoError::Version { found }),
    }
}

/// Encodes a request.
pub fn encode_request(r: &Request) -> Vec<u8> {
    encode(r)
}

/// Decodes a request.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ProtoError> {
    decode(bytes)
}

/// Encodes an event.
pub fn encode_event(e: &Event) -> Vec<u8> {
    encode(e)
}

/// Decodes an event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, ProtoError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fields_keep_the_encoding_of_a_sequence_of_numbers() {
        // The fast byte-string encoding is the one a `Vec<u8>` always had,
        // so messages from an older page or worker still decode.
        #[derive(Serialize)]
        enum Old {
            #[allow(dead_code)]
            A,
            LinkData {
                link: u32,
                bytes: Vec<u8>,
            },
        }
        #[derive(Serialize)]
        struct OldSend {
            link: u32,
            messages: Vec<Vec<u8>>,
        }
        let payload: Vec<u8> = (0..=255).cycle().take(700).collect();
        let mut old = postcard::to_allocvec(&Old::LinkData {
            link: 5,
            bytes: payload.clone(),
        })
        .expect("encode");
        old[0] = 0; // variant index of LinkData below differs; compare the rest
        let new = postcard::to_allocvec(&RequestBody::LinkData {
            link: 5,
            bytes: payload.clone(),
        })
        .expect("encode");
        assert_eq!(old[1..], new[1..]);
        let messages = vec![payload.clone(), vec![], vec![1, 2, 3]];
        let old = postcard::to_allocvec(&OldSend {
            link: 9,
            messages: messages.clone(),
        })
        .expect("encode");
        let new = encode_event(&Event::LinkSend { link: 9, messages });
        assert!(new.ends_with(&old), "the same bytes after the variant tag");
        let Ok(Event::LinkSend { messages, .. }) = decode_event(&new) else {
            panic!("decodes");
        };
        assert_eq!(messages, vec![payload, vec![], vec![1, 2, 3]]);
    }

    #[test]
    fn request_and_event_round_trip_with_version_byte() {
        let r = Request {
            id: 3,
            body: RequestBody::View {
                space: [9; 32],
                query: ViewQuery::Needs {
                    filter: NeedFilter {
                        kind: Some(1),
                        ..NeedFilter::default()
                    },
                    offset: 10,
                    limit: 50,
                },
            },
        };
        assert_eq!(decode_request(&encode_request(&r)), Ok(r));
        let e = Event::Response {
            id: 3,
            result: Err(ErrorInfo {
                code: ErrorCode::QuotaExceeded,
                message: "Storage is full".into(),
            }),
        };
        assert_eq!(decode_event(&encode_event(&e)), Ok(e));
    }

    #[test]
    fn link_messages_round_trip_and_are_not_requests_to_answer() {
        for body in [
            RequestBody::LinkUp {
                link: 7,
                label: "Town hall anchor".into(),
                via: "anchor".into(),
            },
            RequestBody::LinkTopic {
                link: 7,
                topic: "civicbase1-00ff".into(),
            },
            RequestBody::LinkData {
                link: 7,
                bytes: vec![1, 2, 3],
            },
            RequestBody::LinkDown { link: 7 },
        ] {
            assert!(body.is_link());
            let r = Request { id: 0, body };
            assert_eq!(decode_request(&encode_request(&r)), Ok(r));
        }
        assert!(!RequestBody::Status.is_link());
        for e in [
            Event::Topics(vec!["civicbase1-ab".into()]),
            Event::LinkSend {
                link: 3,
                messages: vec![vec![1], vec![2, 3]],
            },
            Event::LinkClose {
                link: 3,
                reason: "malformed".into(),
            },
        ] {
            assert_eq!(decode_event(&encode_event(&e)), Ok(e));
        }
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut bytes = encode_request(&Request {
            id: 1,
            body: RequestBody::Init,
        });
        bytes[0] = PROTOCOL_VERSION - 1;
        assert_eq!(
            decode_request(&bytes),
            Err(ProtoError::Version {
                found: PROTOCOL_VERSION - 1
            })
        );
        assert_eq!(decode_request(&[]), Err(ProtoError::Empty));
        assert_eq!(
            decode_request(&[PROTOCOL_VERSION, 0xff, 0xff, 0xff]),
            Err(ProtoError::Malformed)
        );
    }
}
