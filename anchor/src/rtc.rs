//! WebRTC plumbing on webrtc-rs: the API the anchor's peer connections are
//! made with, ICE server settings, and the glue between a data channel's
//! callbacks (which run on webrtc-rs's tasks) and the anchor's single engine
//! task (channels).
//!
//! # Candidates
//!
//! Host candidates include loopback addresses, so that peers on the same
//! machine meet over 127.0.0.1. mDNS is off: the anchor publishes its IP
//! addresses (it is a server, they are no secret), and it neither resolves
//! nor sends multicast queries for the `.local` names that Chromium puts in
//! its host candidates. Those candidates are dropped, and the connection
//! forms from the browser's side instead: the browser's connectivity checks
//! reach the anchor's host candidates, and the anchor learns the browser's
//! real address from them as a peer-reflexive candidate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{mpsc, Notify};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;

/// The label of the one data channel between two peers.
pub const CHANNEL_LABEL: &str = "civicbase";
/// Stop handing messages to a data channel above this many buffered bytes…
const HIGH_WATER: usize = 1024 * 1024;
/// …and go on when it has drained below this.
const LOW_WATER: usize = 256 * 1024;

/// A STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`, or
    /// `turns:…`.
    pub url: String,
    /// TURN user name (empty for STUN).
    pub username: String,
    /// TURN password (empty for STUN).
    pub credential: String,
}

/// An ICE server setting that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid ICE server {given:?}: expected stun:HOST[:PORT], turn:[USER:PASSWORD@]HOST[:PORT] \
     or turns:[USER:PASSWORD@]HOST[:PORT]"
)]
pub struct IceServerError {
    /// What was given.
    pub given: String,
}

impl IceServer {
    /// Parses `stun:host:port`, `turn:host:port` or `turns:host:port`. TURN
    /// credentials may precede the host: `turn:user:password@host:3478`.
    pub fn parse(s: &str) -> Result<Self, IceServerError> {
        let bad = || IceServerError {
            given: s.to_owned(),
        };
        let s = s.trim();
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
            return Err(bad());
        }
        let (userinfo, host) = match rest.rsplit_once('@') {
            Some((u, h)) if scheme.starts_with("turn") => (Some(u), h),
            Some(_) => return Err(bad()),
            None => (None, rest),
        };
        let host_name = host.split(['?', ':']).next().unwrap_or_default();
        if host_name.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (username, credential) = match userinfo {
            Some(u) => {
                let (user, pass) = u.split_once(':').ok_or_else(bad)?;
                (user.to_owned(), pass.to_owned())
            }
            None => (String::new(), String::new()),
        };
        Ok(IceServer {
            url: format!("{scheme}:{host}"),
            username,
            credential,
        })
    }
}

/// How the anchor makes peer connections.
#[derive(Debug, Clone, Default)]
pub struct RtcConfig {
    /// STUN and TURN servers (none by default: on a LAN none are needed).
    pub ice_servers: Vec<IceServer>,
    /// Gather only loopback candidates (tests, which must not send to any
    /// other address).
    pub loopback_only: bool,
    /// Bind ICE's UDP sockets to ports in this range (inclusive), for a
    /// firewall; any free port when `None`. Every connection takes one port
    /// per network interface and address family.
    pub udp_ports: Option<(u16, u16)>,
}

/// A UDP port range that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid UDP port range {given:?}: expected MIN-MAX with 1 <= MIN <= MAX <= 65535, such as 50000-50999")]
pub struct PortRangeError {
    /// What was given.
    pub given: String,
}

/// Parses a port range `MIN-MAX`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), PortRangeError> {
    let bad = || PortRangeError {
        given: s.to_owned(),
    };
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// The webrtc-rs API object every peer connection is made from.
pub fn api(config: &RtcConfig) -> Result<API, PortRangeError> {
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    if config.loopback_only {
        settings.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    }
    if let Some((min, max)) = config.udp_ports {
        let range = EphemeralUDP::new(min, max).map_err(|_| PortRangeError {
            given: format!("{min}-{max}"),
        })?;
        settings.set_udp_network(UDPNetwork::Ephemeral(range));
    }
    // Data channels only: no codecs, no interceptors.
    Ok(APIBuilder::new().with_setting_engine(settings).build())
}

/// The configuration of one peer connection.
pub fn peer_configuration(config: &RtcConfig) -> RTCConfiguration {
    RTCConfiguration {
        ice_servers: config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: vec![s.url.clone()],
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// What a data channel reports, in the order it happened (one channel, so
/// a message never overtakes its channel's opening or closing).
#[derive(Debug)]
pub enum ChannelEvent {
    /// The channel is open.
    Open,
    /// A message arrived. `text` is true for a string message, which the
    /// protocol does not use.
    Message {
        /// The bytes.
        data: Bytes,
        /// Whether it was sent as text.
        text: bool,
    },
    /// The channel closed.
    Closed,
}

/// Forwards a data channel's events as `(conn, event)` into `events`. The
/// message handler waits while `events` is full, which holds back the
/// channel's reading (and, through SCTP flow control, the sender) instead of
/// queueing without bound.
pub fn forward_channel(
    dc: &Arc<RTCDataChannel>,
    conn: u64,
    events: mpsc::Sender<(u64, ChannelEvent)>,
) {
    let tx = events.clone();
    dc.on_open(Box::new(move || {
        Box::pin(async move {
            let _ = tx.send((conn, ChannelEvent::Open)).await;
        })
    }));
    let tx = events.clone();
    dc.on_message(Box::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let event = ChannelEvent::Message {
                data: msg.data,
                text: msg.is_string,
            };
            let _ = tx.send((conn, event)).await;
        })
    }));
    let tx = events;
    dc.on_close(Box::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send((conn, ChannelEvent::Closed)).await;
        })
    }));
}

/// Sends what arrives on `outbox` on the channel, in order, pausing while
/// more than 1 MiB is buffered. Ends when `outbox` is closed or a send
/// fails (the channel closed; its `Closed` event tells the anchor).
pub async fn write_channel(dc: Arc<RTCDataChannel>, mut outbox: mpsc::UnboundedReceiver<Bytes>) {
    let low = Arc::new(Notify::new());
    dc.set_buffered_amount_low_threshold(LOW_WATER).await;
    let notify = Arc::clone(&low);
    dc.on_buffered_amount_low(Box::new(move || {
        let notify = Arc::clone(&notify);
        Box::pin(async move { notify.notify_one() })
    }))
    .await;
    while let Some(msg) = outbox.recv().await {
        if dc.send(&msg).await.is_err() {
            return;
        }
        while dc.buffered_amount().await > HIGH_WATER {
            // The notification may race the check; look again every 100 ms.
            let _ = tokio::time::timeout(Duration::from_millis(100), low.notified()).await;
        }
    }
}

/// The media id (`a=mid:`) of the first media section of an SDP, which
/// trickled candidates name (a data-channel-only session has one section).
pub fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_parse_with_and_without_credentials() {
        assert_eq!(
            IceServer::parse("stun:stun.example.org:3478"),
            Ok(IceServer {
                url: "stun:stun.example.org:3478".into(),
                username: String::new(),
                credential: String::new()
            })
        );
        assert_eq!(
            IceServer::parse("turn:alice:s3cret@turn.example.org:3478?transport=tcp"),
            Ok(IceServer {
                url: "turn:turn.example.org:3478?transport=tcp".into(),
                username: "alice".into(),
                credential: "s3cret".into()
            })
        );
        for bad in [
            "",
            "stun",
            "http://example.org",
            "stun:",
            "stun:user:pw@host",
            "turn:nopassword@host",
            "turn:a:b@",
            "stun:host/path",
        ] {
            assert!(IceServer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("50000-50999"), Ok((50000, 50999)));
        assert_eq!(parse_port_range(" 7 - 7 "), Ok((7, 7)));
        for bad in ["", "50000", "0-10", "10-9", "1-70000", "a-b", "-5"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
        let config = RtcConfig {
            udp_ports: Some((50000, 50010)),
            ..Default::default()
        };
        assert!(api(&config).is_ok());
    }

    #[test]
    fn the_mid_comes_from_the_first_media_section() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=sctp-port:5000\r\n";
        assert_eq!(first_mid(sdp).as_deref(), Some("0"));
        assert_eq!(first_mid("v=0\r\n"), None);
    }
}
