//! Counters and gauges, rendered in the Prometheus text exposition format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection ended. Each reason is also a label value of
/// `civicbase_signaling_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client closed the connection, or it went away.
    Client,
    /// A text frame that is not a valid protocol message.
    Malformed,
    /// A binary frame (the protocol is text only).
    Binary,
    /// A frame larger than the configured maximum.
    TooLarge,
    /// More frames per second than the token bucket allows.
    RateLimited,
    /// A subscription beyond the per-connection topic limit.
    TooManyTopics,
    /// A topic name longer than the configured maximum.
    TopicTooLong,
    /// A WebSocket protocol violation (bad opcode, unmasked frame, invalid UTF-8 …).
    ProtocolError,
    /// Nothing received within the idle timeout.
    Idle,
    /// The outbound queue overflowed: the client does not read fast enough.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// The transport failed (reset, broken pipe).
    TransportError,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 12] = [
        CloseReason::Client,
        CloseReason::Malformed,
        CloseReason::Binary,
        CloseReason::TooLarge,
        CloseReason::RateLimited,
        CloseReason::TooManyTopics,
        CloseReason::TopicTooLong,
        CloseReason::ProtocolError,
        CloseReason::Idle,
        CloseReason::SlowConsumer,
        CloseReason::Shutdown,
        CloseReason::TransportError,
    ];

    /// The metric label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Malformed => "malformed",
            CloseReason::Binary => "binary",
            CloseReason::TooLarge => "too_large",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::TooManyTopics => "too_many_topics",
            CloseReason::TopicTooLong => "topic_too_long",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Idle => "idle",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TransportError => "transport_error",
        }
    }

    /// Whether the reason is a frame the server refused (counted in
    /// `civicbase_signaling_frames_rejected_total`).
    pub(crate) fn is_rejected_frame(self) -> bool {
        matches!(
            self,
            CloseReason::Malformed
                | CloseReason::Binary
                | CloseReason::TooLarge
                | CloseReason::RateLimited
                | CloseReason::TooManyTopics
                | CloseReason::TopicTooLong
                | CloseReason::ProtocolError
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a WebSocket upgrade was refused before the connection was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefuseReason {
    /// The `Origin` header is not in the allowlist (403).
    Origin,
    /// The client's IP address holds the maximum number of connections (429).
    PerIpLimit,
    /// The server holds the maximum number of connections (503).
    ServerFull,
}

impl RefuseReason {
    const ALL: [RefuseReason; 3] = [
        RefuseReason::Origin,
        RefuseReason::PerIpLimit,
        RefuseReason::ServerFull,
    ];

    fn label(self) -> &'static str {
        match self {
            RefuseReason::Origin => "origin",
            RefuseReason::PerIpLimit => "per_ip_limit",
            RefuseReason::ServerFull => "server_full",
        }
    }
}

/// The server's counters. Updated with relaxed atomics: figures are for monitoring, not
/// synchronisation.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_current: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) publish_total: AtomicU64,
    pub(crate) messages_relayed_total: AtomicU64,
    pub(crate) unknown_messages_total: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    refused: [AtomicU64; RefuseReason::ALL.len()],
}

impl Metrics {
    pub(crate) fn count_close(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refusal(&self, reason: RefuseReason) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric; `topics_current` is read from the hub by the caller.
    pub(crate) fn render(&self, topics_current: usize) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut single = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        single(
            "civicbase_signaling_connections_current",
            "gauge",
            "Open WebSocket connections.",
            get(&self.connections_current),
        );
        single(
            "civicbase_signaling_connections_total",
            "counter",
            "WebSocket connections opened since start.",
            get(&self.connections_total),
        );
        single(
            "civicbase_signaling_topics_current",
            "gauge",
            "Topics with at least one subscriber.",
            topics_current as u64,
        );
        single(
            "civicbase_signaling_publish_total",
            "counter",
            "Publish messages received.",
            get(&self.publish_total),
        );
        single(
            "civicbase_signaling_messages_relayed_total",
            "counter",
            "Published messages queued for delivery to a subscriber (one per receiver).",
            get(&self.messages_relayed_total),
        );
        single(
            "civicbase_signaling_unknown_messages_total",
            "counter",
            "Well-formed messages of an unknown type, ignored.",
            get(&self.unknown_messages_total),
        );

        let name = "civicbase_signaling_frames_rejected_total";
        let _ = write!(
            out,
            "# HELP {name} Frames refused; the connection that sent one is closed.\n# TYPE {name} counter\n"
        );
        for reason in CloseReason::ALL
            .into_iter()
            .filter(|r| r.is_rejected_frame())
        {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.label(),
                get(&self.closed[reason.index()])
            );
        }

        let name = "civicbase_signaling_connections_closed_total";
        let _ = write!(
            out,
            "# HELP {name} WebSocket connections closed, by reason.\n# TYPE {name} counter\n"
        );
        for reason in CloseReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.label(),
                get(&self.closed[reason.index()])
            );
        }

        let name = "civicbase_signaling_upgrades_refused_total";
        let _ = write!(
            out,
            "# HELP {name} WebSocket upgrade requests refused before opening a connection.\n# TYPE {name} counter\n"
        );
        for reason in RefuseReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.label(),
                get(&self.refused[reason as usize])
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_indices_match_their_position() {
        for (i, reason) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        for (i, reason) in RefuseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i);
        }
    }

    #[test]
    fn exposition_has_one_type_line_per_family_and_labelled_samples() {
        let metrics = Metrics::default();
        metrics.count_close(CloseReason::Binary);
        metrics.count_close(CloseReason::Binary);
        metrics.count_refusal(RefuseReason::Origin);
        let text = metrics.render(5);
        assert!(text.contains("civicbase_signaling_topics_current 5\n"));
        assert!(text.contains("civicbase_signaling_frames_rejected_total{reason=\"binary\"} 2\n"));
        assert!(
            text.contains("civicbase_signaling_connections_closed_total{reason=\"binary\"} 2\n")
        );
        assert!(text.contains("civicbase_signaling_upgrades_refused_total{reason=\"origin\"} 1\n"));
        assert!(!text.contains("frames_rejected_total{reason=\"idle\"}"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let family = line.split_whitespace().nth(2).expect("a family name");
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
    }
}
