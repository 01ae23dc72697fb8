//! The y-webrtc signaling wire protocol, sans I/O.
//!
//! Every frame is a JSON object sent as a WebSocket text frame. A client sends:
//!
//! - `{"type":"subscribe","topics":["a","b"]}` — receive what is published to these topics;
//! - `{"type":"unsubscribe","topics":["a"]}` — stop receiving a topic;
//! - `{"type":"publish","topic":"a", …}` — deliver this object to every subscriber of `a`,
//!   the sender included when it is subscribed;
//! - `{"type":"ping"}` — the server answers `{"type":"pong"}`.
//!
//! A published object is relayed with all of its fields as received, plus a `clients` field
//! holding the number of connections it is delivered to (y-webrtc's server does the same, and
//! its clients use the figure). A `clients` field sent by the publisher is replaced.
//!
//! Parsing is stricter than y-webrtc's server, which would crash on invalid JSON: anything that
//! is not a JSON object with a string `type`, a `topics` list of strings (subscribe and
//! unsubscribe) or a string `topic` (publish) is a [`ProtocolError`], and the connection that
//! sent it is closed. A well-formed object with a `type` this server does not know is reported as
//! [`ClientMessage::Unknown`] and ignored, so that newer clients keep working.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The reply to a `ping` message.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// A message a client sent, borrowing from the received frame where it can.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// Start receiving the messages published to these topics.
    Subscribe {
        /// Topic names, as sent (duplicates allowed).
        topics: Vec<Cow<'a, str>>,
    },
    /// Stop receiving the messages published to these topics.
    Unsubscribe {
        /// Topic names, as sent.
        topics: Vec<Cow<'a, str>>,
    },
    /// Relay this object to every subscriber of `topic`.
    Publish(Publish<'a>),
    /// Answer with [`PONG`].
    Ping,
    /// A well-formed message of a type this server does not handle (for example `pong`).
    Unknown {
        /// The `type` field as sent.
        kind: Cow<'a, str>,
    },
}

/// A `publish` message: its topic and every field of the object as received.
#[derive(Debug)]
pub struct Publish<'a> {
    /// The topic to publish to.
    pub topic: Cow<'a, str>,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl Publish<'_> {
    /// The JSON text relayed to subscribers: every field as received, except that `clients` is
    /// set to `clients`.
    pub fn encode(&self, clients: usize) -> String {
        let capacity = self
            .fields
            .iter()
            .map(|(key, value)| key.len() + value.get().len() + 4)
            .sum::<usize>()
            + 24;
        let mut out = String::with_capacity(capacity);
        out.push('{');
        for (key, value) in &self.fields {
            if key == "clients" {
                continue;
            }
            push_json_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
            out.push(',');
        }
        out.push_str("\"clients\":");
        out.push_str(&clients.to_string());
        out.push('}');
        out
    }
}

/// Why a frame is not a valid message of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is not JSON, or not a JSON object.
    #[error("not a JSON object: {source}")]
    Json {
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// The object has no `type` field, or it is not a string.
    #[error("missing or non-string \"type\"")]
    MissingType,
    /// A field the message type needs is missing or has the wrong shape.
    #[error("\"{field}\" of a {kind} message must be {expected}")]
    BadField {
        /// The message type.
        kind: &'static str,
        /// The offending field.
        field: &'static str,
        /// What the field must hold.
        expected: &'static str,
    },
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage<'_>, ProtocolError> {
    let Fields(fields) =
        serde_json::from_str(text).map_err(|source| ProtocolError::Json { source })?;
    // Later duplicates win, as with `JSON.parse`.
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    };
    let kind = field("type")
        .and_then(|raw| string(raw).ok())
        .ok_or(ProtocolError::MissingType)?;
    match kind.as_ref() {
        "subscribe" | "unsubscribe" => {
            let kind_name = if kind == "subscribe" {
                "subscribe"
            } else {
                "unsubscribe"
            };
            // y-webrtc reads `message.topics || []`: absent or null means no topics.
            let topics = match field("topics") {
                None => Vec::new(),
                Some(raw) if raw.get() == "null" => Vec::new(),
                Some(raw) => {
                    let Topics(topics) =
                        serde_json::from_str(raw.get()).map_err(|_| ProtocolError::BadField {
                            kind: kind_name,
                            field: "topics",
                            expected: "a list of strings",
                        })?;
                    topics
                }
            };
            Ok(if kind_name == "subscribe" {
                ClientMessage::Subscribe { topics }
            } else {
                ClientMessage::Unsubscribe { topics }
            })
        }
        "publish" => {
            let topic =
                field("topic")
                    .and_then(|raw| string(raw).ok())
                    .ok_or(ProtocolError::BadField {
                        kind: "publish",
                        field: "topic",
                        expected: "a string",
                    })?;
            Ok(ClientMessage::Publish(Publish { topic, fields }))
        }
        "ping" => Ok(ClientMessage::Ping),
        _ => Ok(ClientMessage::Unknown { kind }),
    }
}

fn string(raw: &RawValue) -> Result<Cow<'_, str>, serde_json::Error> {
    serde_json::from_str::<Text<'_>>(raw.get()).map(|text| text.0)
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string, borrowed from the input when it contains no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The fields of a JSON object in the order received, values left as raw JSON text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
                while let Some((Text(key), value)) = map.next_entry::<Text<'de>, &RawValue>()? {
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A JSON list of strings.
struct Topics<'a>(Vec<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Topics<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopicsVisitor;
        impl<'de> Visitor<'de> for TopicsVisitor {
            type Value = Topics<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut topics = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
                while let Some(Text(topic)) = seq.next_element::<Text<'de>>()? {
                    topics.push(topic);
                }
                Ok(Topics(topics))
            }
        }
        deserializer.deserialize_seq(TopicsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(text: &str, clients: usize) -> serde_json::Value {
        let ClientMessage::Publish(publish) = parse(text).expect("parses") else {
            panic!("not a publish: {text}");
        };
        serde_json::from_str(&publish.encode(clients)).expect("relayed text is JSON")
    }

    #[test]
    fn subscribe_and_unsubscribe_carry_their_topics() {
        let ClientMessage::Subscribe { topics } =
            parse(r#"{"type":"subscribe","topics":["a","b\"c"]}"#).expect("parses")
        else {
            panic!("not a subscribe");
        };
        assert_eq!(topics, ["a", "b\"c"]);
        let ClientMessage::Unsubscribe { topics } =
            parse(r#"{"topics":["x"],"type":"unsubscribe"}"#).expect("parses")
        else {
            panic!("not an unsubscribe");
        };
        assert_eq!(topics, ["x"]);
    }

    #[test]
    fn absent_or_null_topics_mean_none_as_in_y_webrtc() {
        for text in [
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","topics":null}"#,
        ] {
            let ClientMessage::Subscribe { topics } = parse(text).expect("parses") else {
                panic!("not a subscribe");
            };
            assert!(topics.is_empty());
        }
    }

    #[test]
    fn publish_is_relayed_with_every_field_and_the_receiver_count() {
        let value = relayed(
            r#"{"type":"publish","topic":"room","data":{"to":"x","signal":[1,2.5,"s"]},"from":"\u00e9\n"}"#,
            3,
        );
        assert_eq!(
            value,
            serde_json::json!({
                "type": "publish",
                "topic": "room",
                "data": {"to": "x", "signal": [1, 2.5, "s"]},
                "from": "é\n",
                "clients": 3,
            })
        );
    }

    #[test]
    fn a_clients_field_from_the_publisher_is_replaced() {
        let value = relayed(r#"{"type":"publish","topic":"t","clients":999}"#, 2);
        assert_eq!(value["clients"], 2);
        let text = {
            let ClientMessage::Publish(p) =
                parse(r#"{"type":"publish","topic":"t","clients":999}"#).expect("parses")
            else {
                panic!("not a publish");
            };
            p.encode(2)
        };
        assert_eq!(text.matches("clients").count(), 1);
    }

    #[test]
    fn keys_needing_escapes_survive_the_round_trip() {
        let value = relayed(
            "{\"type\":\"publish\",\"topic\":\"t\",\"a\\\"b\\u0001\":1}",
            1,
        );
        assert_eq!(value["a\"b\u{1}"], 1);
    }

    #[test]
    fn ping_and_unknown_types() {
        assert!(matches!(
            parse(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        ));
        assert!(matches!(
            parse(r#"{"type":"pong"}"#),
            Ok(ClientMessage::Unknown { kind }) if kind == "pong"
        ));
    }

    #[test]
    fn malformed_frames_are_errors() {
        for text in [
            "",
            "{",
            "not json",
            "[1,2]",
            "\"publish\"",
            "null",
            "{}",
            r#"{"type":1}"#,
            r#"{"type":"subscribe","topics":"a"}"#,
            r#"{"type":"subscribe","topics":[1]}"#,
            r#"{"type":"unsubscribe","topics":{"a":1}}"#,
            r#"{"type":"publish"}"#,
            r#"{"type":"publish","topic":7}"#,
            r#"{"type":"ping"} trailing"#,
        ] {
            assert!(parse(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn deeply_nested_values_are_relayed_without_recursing() {
        // Raw values are skipped over, not built, so nesting depth cannot exhaust the stack.
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"type":"publish","topic":"t","d":{nested}}}"#);
        let ClientMessage::Publish(publish) = parse(&text).expect("parses") else {
            panic!("not a publish");
        };
        assert!(publish.encode(1).contains(&nested));
    }
}
