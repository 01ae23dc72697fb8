//! The network role: devices find each other and sync directly.
//!
//! Only the tab whose engine holds the leader lock runs this (the engine
//! reports it in its status). It subscribes to the signaling topics of this
//! device's spaces at the signaling server, sets up an RTCPeerConnection
//! with one data channel to every peer it hears there, and passes the
//! channel's bytes to the engine as link messages; the engine runs the sync
//! sessions. RTCPeerConnection exists only on a page's main thread, which is
//! why this lives here and not in the worker. See docs/PROTOCOL.md,
//! "Finding peers", for the messages.
//!
//! Settings (signaling server, STUN/TURN servers, paused) are kept in the
//! page's local storage.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};

use civicbase_proto::RequestBody;
use js_sys::{Array, ArrayBuffer, Object, Reflect, JSON};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelType, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit, WebSocket,
};

use crate::client::{self, Shared};

/// How often every peer announces itself on each topic.
const ANNOUNCE_EVERY_MS: i32 = 15_000;
/// Reconnection delays to the signaling server grow up to this.
const MAX_BACKOFF_MS: f64 = 30_000.0;
/// Stop handing bytes to a data channel above this many queued bytes…
const HIGH_WATER: u32 = 1024 * 1024;
/// …and resume when it has drained below this.
const LOW_WATER: u32 = 256 * 1024;

const KEY_SIGNALING: &str = "civicbase.signaling";
const KEY_ICE: &str = "civicbase.ice";
const KEY_PAUSED: &str = "civicbase.paused";

/// The connection to the signaling server, as the Sync view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaling {
    /// This tab does not hold the network role.
    Idle,
    /// The user paused network sync.
    Paused,
    /// Connecting (or waiting to retry).
    Connecting,
    /// Connected.
    Connected,
}

/// Network settings, kept in local storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// WebSocket URL of the signaling server; empty means this site's own
    /// `/signal`.
    pub signaling: String,
    /// STUN/TURN server URLs (none by default: the LAN case needs none).
    pub ice: Vec<String>,
    /// Whether network sync is paused.
    pub paused: bool,
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The saved settings.
pub fn settings() -> Settings {
    let get = |k: &str| storage().and_then(|s| s.get_item(k).ok().flatten());
    Settings {
        signaling: get(KEY_SIGNALING).unwrap_or_default(),
        ice: get(KEY_ICE)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        paused: get(KEY_PAUSED).as_deref() == Some("1"),
    }
}

/// Checks a settings form: the signaling URL must be a ws:// or wss:// URL
/// (or empty), every ICE server a stun:, stuns:, turn: or turns: URL.
pub fn validate(signaling: &str, ice: &str) -> Result<Settings, &'static str> {
    let signaling = signaling.trim().to_owned();
    let ws = signaling.starts_with("ws://") || signaling.starts_with("wss://");
    if !(signaling.is_empty() || ws) {
        return Err("sync.bad_signaling");
    }
    let ice: Vec<String> = ice.split_whitespace().map(str::to_owned).collect();
    if ice.iter().any(|u| {
        !["stun:", "stuns:", "turn:", "turns:"]
            .iter()
            .any(|p| u.starts_with(p))
    }) {
        return Err("sync.bad_ice");
    }
    Ok(Settings {
        signaling,
        ice,
        paused: settings().paused,
    })
}

/// Saves settings and reconnects with them.
pub fn save(s: &Settings) {
    if let Some(st) = storage() {
        let _ = st.set_item(KEY_SIGNALING, &s.signaling);
        let _ = st.set_item(KEY_ICE, &s.ice.join(" "));
        let _ = st.set_item(KEY_PAUSED, if s.paused { "1" } else { "0" });
    }
    with_mesh(|m| m.settings = s.clone());
    restart();
}

fn default_signaling_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc.as_ref().and_then(|l| l.host().ok()).unwrap_or_default();
    let secure = loc
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!("{}://{host}/signal", if secure { "wss" } else { "ws" })
}

struct Peer {
    pc: RtcPeerConnection,
    channel: Option<RtcDataChannel>,
    link: u32,
    name: String,
    role: String,
    topics: BTreeSet<String>,
    up: bool,
    remote_set: bool,
    early_candidates: Vec<RtcIceCandidateInit>,
    outbox: VecDeque<Vec<u8>>,
    /// Callbacks registered on the connection and channel; dropped with it.
    callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Peer {
    fn close(mut self) {
        self.pc.set_onicecandidate(None);
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        if let Some(ch) = self.channel.take() {
            ch.set_onopen(None);
            ch.set_onclose(None);
            ch.set_onmessage(None);
            ch.set_onbufferedamountlow(None);
            ch.close();
        }
        self.pc.close();
    }
}

struct Mesh {
    shared: Shared,
    me: String,
    name: String,
    settings: Settings,
    leader: bool,
    topics: BTreeSet<String>,
    ws: Option<WebSocket>,
    ws_open: bool,
    /// Bumped for every new WebSocket; callbacks of older ones do nothing.
    generation: u32,
    backoff_ms: f64,
    peers: HashMap<String, Peer>,
    next_link: u32,
    last_reply: HashMap<String, f64>,
    ws_callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

thread_local! {
    static MESH: RefCell<Option<Mesh>> = const { RefCell::new(None) };
}

fn with_mesh<T>(f: impl FnOnce(&mut Mesh) -> T) -> Option<T> {
    MESH.with(|m| m.borrow_mut().as_mut().map(f))
}

/// Sets up the network role's state; nothing connects until the engine
/// says this tab leads.
pub fn init(shared: Shared) {
    let mut seed = [0u8; 8];
    if let Some(c) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = c.get_random_values_with_u8_array(&mut seed);
    }
    let me: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    MESH.with(|m| {
        *m.borrow_mut() = Some(Mesh {
            shared,
            me,
            name: String::new(),
            settings: settings(),
            leader: false,
            topics: BTreeSet::new(),
            ws: None,
            ws_open: false,
            generation: 0,
            backoff_ms: 1_000.0,
            peers: HashMap::new(),
            next_link: 1,
            last_reply: HashMap::new(),
            ws_callbacks: Vec::new(),
        })
    });
    // Tell peers at once when this page goes away, so none keeps a stale
    // connection.
    let bye = Closure::<dyn FnMut(JsValue)>::new(|_| {
        with_mesh(|m| m.leave());
    });
    if let Some(w) = web_sys::window() {
        let _ = w.add_event_listener_with_callback("pagehide", bye.as_ref().unchecked_ref());
    }
    bye.forget();
    let tick = Closure::<dyn FnMut()>::new(|| {
        with_mesh(|m| m.announce_all());
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_interval_with_callback_and_timeout_and_arguments_0(
            tick.as_ref().unchecked_ref(),
            ANNOUNCE_EVERY_MS,
        );
    }
    tick.forget();
}

/// The engine's status says whether this tab leads.
pub fn set_leader(leader: bool) {
    let start = with_mesh(|m| {
        let start = leader && !m.leader;
        m.leader = leader;
        start
    });
    if start == Some(true) {
        connect();
    }
}

/// This device's display name, sent to peers.
pub fn set_name(name: String) {
    with_mesh(|m| m.name = name);
}

/// The engine's spaces meet under these topics.
pub fn set_topics(topics: Vec<String>) {
    with_mesh(|m| {
        let new: BTreeSet<String> = topics.into_iter().collect();
        let added: Vec<String> = new.difference(&m.topics).cloned().collect();
        let removed: Vec<String> = m.topics.difference(&new).cloned().collect();
        m.topics = new;
        if m.ws_open {
            if !removed.is_empty() {
                m.send_ws(&obj(&[
                    ("type", "unsubscribe".into()),
                    ("topics", strings(&removed)),
                ]));
            }
            if !added.is_empty() {
                m.send_ws(&obj(&[
                    ("type", "subscribe".into()),
                    ("topics", strings(&added)),
                ]));
                for t in &added {
                    m.announce(t);
                }
            }
        }
    });
}

/// The engine's messages for a link.
pub fn send(link: u32, messages: Vec<Vec<u8>>) {
    with_mesh(|m| {
        if let Some(p) = m.peers.values_mut().find(|p| p.link == link) {
            p.outbox.extend(messages);
            drain(p);
        }
    });
}

/// The engine found the link broke the protocol: drop the connection.
pub fn close_link(link: u32, reason: &str) {
    web_sys::console::warn_1(&format!("closing peer link {link}: {reason}").into());
    with_mesh(|m| {
        if let Some(id) = m
            .peers
            .iter()
            .find(|(_, p)| p.link == link)
            .map(|(k, _)| k.clone())
        {
            m.drop_peer(&id);
        }
    });
}

/// Pauses or resumes network sync.
pub fn set_paused(paused: bool) {
    let mut s = settings();
    s.paused = paused;
    save(&s);
}

fn restart() {
    with_mesh(|m| m.disconnect());
    connect();
}

fn connect() {
    let Some((url, generation)) = with_mesh(|m| {
        if !m.leader || m.ws.is_some() {
            return None;
        }
        if m.settings.paused {
            m.shared.signaling.set(Signaling::Paused);
            return None;
        }
        m.generation += 1;
        m.shared.signaling.set(Signaling::Connecting);
        let url = if m.settings.signaling.is_empty() {
            default_signaling_url()
        } else {
            m.settings.signaling.clone()
        };
        Some((url, m.generation))
    })
    .flatten() else {
        return;
    };
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(_) => {
            retry_later(generation);
            return;
        }
    };
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        with_mesh(|m| {
            if m.generation != generation {
                return;
            }
            m.ws_open = true;
            m.backoff_ms = 1_000.0;
            m.shared.signaling.set(Signaling::Connected);
            let topics: Vec<String> = m.topics.iter().cloned().collect();
            if !topics.is_empty() {
                m.send_ws(&obj(&[
                    ("type", "subscribe".into()),
                    ("topics", strings(&topics)),
                ]));
            }
            m.announce_all();
        });
    });
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        let Some(text) = e
            .dyn_ref::<MessageEvent>()
            .and_then(|e| e.data().as_string())
        else {
            return;
        };
        let Ok(msg) = JSON::parse(&text) else { return };
        let current = with_mesh(|m| m.generation == generation).unwrap_or(false);
        if current {
            on_signal(&msg);
        }
    });
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let current = with_mesh(|m| {
            if m.generation != generation {
                return false;
            }
            m.ws = None;
            m.ws_open = false;
            m.ws_callbacks.clear_later();
            true
        })
        .unwrap_or(false);
        if current {
            retry_later(generation);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    with_mesh(|m| {
        m.ws = Some(ws);
        m.ws_callbacks = vec![on_open, on_message, on_close];
    });
}

/// Keeps callbacks of a closed socket alive until the browser is done with
/// them (they are tiny and a socket closes rarely).
trait ClearLater {
    fn clear_later(&mut self);
}

impl ClearLater for Vec<Closure<dyn FnMut(JsValue)>> {
    fn clear_later(&mut self) {
        for c in self.drain(..) {
            c.forget();
        }
    }
}

fn retry_later(generation: u32) {
    let Some(delay) = with_mesh(|m| {
        if m.generation != generation {
            return None;
        }
        m.ws = None;
        m.ws_open = false;
        m.shared.signaling.set(if m.settings.paused {
            Signaling::Paused
        } else {
            Signaling::Connecting
        });
        let delay = m.backoff_ms * (0.75 + 0.5 * js_sys::Math::random());
        m.backoff_ms = (m.backoff_ms * 2.0).min(MAX_BACKOFF_MS);
        Some(delay)
    })
    .flatten() else {
        return;
    };
    let again = Closure::once_into_js(move || {
        let still = with_mesh(|m| m.generation == generation).unwrap_or(false);
        if still {
            connect();
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
            again.unchecked_ref(),
            delay as i32,
        );
    }
}

fn get_str(v: &JsValue, key: &str) -> Option<String> {
    Reflect::get(v, &key.into()).ok()?.as_string()
}

fn obj(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

fn strings(items: &[String]) -> JsValue {
    items
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect::<Array>()
        .into()
}

impl Mesh {
    fn send_ws(&self, msg: &JsValue) {
        if let (Some(ws), true) = (&self.ws, self.ws_open) {
            if let Ok(text) = JSON::stringify(msg) {
                if let Some(text) = text.as_string() {
                    let _ = ws.send_with_str(&text);
                }
            }
        }
    }

    fn publish(&self, topic: &str, data: JsValue) {
        self.send_ws(&obj(&[
            ("type", "publish".into()),
            ("topic", topic.into()),
            ("data", data),
        ]));
    }

    fn announce(&self, topic: &str) {
        self.publish(
            topic,
            obj(&[
                ("type", "announce".into()),
                ("from", self.me.as_str().into()),
                ("name", self.name.as_str().into()),
                ("role", "browser".into()),
            ]),
        );
    }

    fn announce_all(&self) {
        for t in &self.topics {
            self.announce(t);
        }
    }

    fn signal(&self, topic: &str, to: &str, signal: JsValue) {
        self.publish(
            topic,
            obj(&[
                ("type", "signal".into()),
                ("from", self.me.as_str().into()),
                ("to", to.into()),
                ("name", self.name.as_str().into()),
                ("role", "browser".into()),
                ("signal", signal),
            ]),
        );
    }

    fn leave(&self) {
        for t in &self.topics {
            self.publish(
                t,
                obj(&[("type", "leave".into()), ("from", self.me.as_str().into())]),
            );
        }
    }

    fn disconnect(&mut self) {
        self.leave();
        self.generation += 1;
        if let Some(ws) = self.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
        self.ws_open = false;
        self.ws_callbacks.clear_later();
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in ids {
            self.drop_peer(&id);
        }
        self.shared.signaling.set(if self.settings.paused {
            Signaling::Paused
        } else {
            Signaling::Idle
        });
    }

    fn drop_peer(&mut self, id: &str) {
        if let Some(p) = self.peers.remove(id) {
            if p.up {
                client::notify(RequestBody::LinkDown { link: p.link });
            }
            p.close();
        }
    }

    fn ice_config(&self) -> RtcConfiguration {
        let config = RtcConfiguration::new();
        let servers: Array = self
            .settings
            .ice
            .iter()
            .map(|u| obj(&[("urls", u.as_str().into())]))
            .collect();
        config.set_ice_servers(&servers);
        config
    }
}

/// Handles one message from the signaling server.
fn on_signal(msg: &JsValue) {
    if get_str(msg, "type").as_deref() != Some("publish") {
        return;
    }
    let Some(topic) = get_str(msg, "topic") else {
        return;
    };
    let Ok(data) = Reflect::get(msg, &"data".into()) else {
        return;
    };
    let Some(from) = get_str(&data, "from") else {
        return;
    };
    let me = with_mesh(|m| m.me.clone()).unwrap_or_default();
    if from == me || !with_mesh(|m| m.topics.contains(&topic)).unwrap_or(false) {
        return;
    }
    match get_str(&data, "type").as_deref() {
        Some("announce") => on_announce(&topic, &from, &data),
        Some("signal") if get_str(&data, "to").as_deref() == Some(me.as_str()) => {
            let Ok(signal) = Reflect::get(&data, &"signal".into()) else {
                return;
            };
            match get_str(&signal, "type").as_deref() {
                Some("offer") => on_offer(&topic, &from, &data, &signal),
                Some("answer") => on_answer(&from, &signal),
                Some("candidate") => on_candidate(&from, &signal),
                _ => {}
            }
        }
        Some("leave") => {
            with_mesh(|m| m.drop_peer(&from));
        }
        _ => {}
    }
}

fn on_announce(topic: &str, from: &str, data: &JsValue) {
    let initiate = with_mesh(|m| {
        if let Some(p) = m.peers.get_mut(from) {
            if p.topics.insert(topic.to_owned()) && p.up {
                client::notify(RequestBody::LinkTopic {
                    link: p.link,
                    topic: topic.to_owned(),
                });
            }
            return false;
        }
        if m.me.as_str() < from {
            return true;
        }
        // The other peer starts; make sure it has heard of this one: at
        // most one reply a second per topic, deferred rather than dropped
        // (a peer that reloads announces again at once).
        let now = js_sys::Date::now();
        let last = m.last_reply.get(topic).copied().unwrap_or(f64::MIN);
        if now - last > 1_000.0 {
            m.last_reply.insert(topic.to_owned(), now);
            m.announce(topic);
        } else if last <= now {
            let at = last + 1_000.0;
            m.last_reply.insert(topic.to_owned(), at);
            let topic = topic.to_owned();
            let later = Closure::once_into_js(move || {
                with_mesh(|m| m.announce(&topic));
            });
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                    later.unchecked_ref(),
                    (at - now) as i32,
                );
            }
        }
        false
    })
    .unwrap_or(false);
    if initiate {
        let name = get_str(data, "name").unwrap_or_default();
        let role = get_str(data, "role").unwrap_or_default();
        start_peer(topic, from, name, role, true, None);
    }
}

fn on_offer(topic: &str, from: &str, data: &JsValue, signal: &JsValue) {
    // An offer from a peer this one already knows means it started over.
    with_mesh(|m| m.drop_peer(from));
    let name = get_str(data, "name").unwrap_or_default();
    let role = get_str(data, "role").unwrap_or_default();
    let sdp = get_str(signal, "sdp").unwrap_or_default();
    start_peer(topic, from, name, role, false, Some(sdp));
}

fn on_answer(from: &str, signal: &JsValue) {
    let Some(pc) = with_mesh(|m| m.peers.get(from).map(|p| p.pc.clone())).flatten() else {
        return;
    };
    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    desc.set_sdp(&get_str(signal, "sdp").unwrap_or_default());
    let from = from.to_owned();
    wasm_bindgen_futures::spawn_local(async move {
        if JsFuture::from(pc.set_remote_description(&desc))
            .await
            .is_err()
        {
            with_mesh(|m| m.drop_peer(&from));
            return;
        }
        remote_set(&from);
    });
}

fn on_candidate(from: &str, signal: &JsValue) {
    let init = RtcIceCandidateInit::new(&get_str(signal, "candidate").unwrap_or_default());
    init.set_sdp_mid(get_str(signal, "sdpMid").as_deref());
    let index = Reflect::get(signal, &"sdpMLineIndex".into())
        .ok()
        .and_then(|v| v.as_f64())
        .map(|v| v as u16);
    init.set_sdp_m_line_index(index);
    let pc = with_mesh(|m| {
        let p = m.peers.get_mut(from)?;
        if p.remote_set {
            Some(p.pc.clone())
        } else {
            p.early_candidates.push(init.clone());
            None
        }
    })
    .flatten();
    if let Some(pc) = pc {
        let _ = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
    }
}

/// The remote description is in place: candidates that came early go in.
fn remote_set(from: &str) {
    let pending = with_mesh(|m| {
        let p = m.peers.get_mut(from)?;
        p.remote_set = true;
        Some((p.pc.clone(), std::mem::take(&mut p.early_candidates)))
    })
    .flatten();
    if let Some((pc, cands)) = pending {
        for c in cands {
            let _ = pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&c));
        }
    }
}

fn start_peer(
    topic: &str,
    id: &str,
    name: String,
    role: String,
    initiator: bool,
    offer: Option<String>,
) {
    let Some(config) = with_mesh(|m| m.ice_config()) else {
        return;
    };
    let Ok(pc) = RtcPeerConnection::new_with_configuration(&config) else {
        return;
    };
    let link = with_mesh(|m| {
        let l = m.next_link;
        m.next_link = m.next_link.wrapping_add(1).max(1);
        l
    })
    .unwrap_or(0);
    let mut callbacks = Vec::new();

    let (t, peer_id) = (topic.to_owned(), id.to_owned());
    let on_ice = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        let Some(c) = e
            .dyn_ref::<RtcPeerConnectionIceEvent>()
            .and_then(|e| e.candidate())
        else {
            return;
        };
        let signal = obj(&[
            ("type", "candidate".into()),
            ("candidate", c.candidate().into()),
            (
                "sdpMid",
                c.sdp_mid().map(JsValue::from).unwrap_or(JsValue::NULL),
            ),
            (
                "sdpMLineIndex",
                c.sdp_m_line_index()
                    .map(JsValue::from)
                    .unwrap_or(JsValue::NULL),
            ),
        ]);
        with_mesh(|m| m.signal(&t, &peer_id, signal));
    });
    pc.set_onicecandidate(Some(on_ice.as_ref().unchecked_ref()));
    callbacks.push(on_ice);

    let (peer_id, pc2) = (id.to_owned(), pc.clone());
    let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        if matches!(
            pc2.connection_state(),
            RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
        ) {
            let id = peer_id.clone();
            // Not from inside the connection's own callback.
            defer(move || {
                with_mesh(|m| m.drop_peer(&id));
            });
        }
    });
    pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
    callbacks.push(on_state);

    if !initiator {
        let peer_id = id.to_owned();
        let on_channel = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            if let Some(ch) = e.dyn_ref::<RtcDataChannelEvent>().map(|e| e.channel()) {
                attach_channel(&peer_id, ch);
            }
        });
        pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));
        callbacks.push(on_channel);
    }

    let peer = Peer {
        pc: pc.clone(),
        channel: None,
        link,
        name,
        role,
        topics: BTreeSet::from([topic.to_owned()]),
        up: false,
        remote_set: false,
        early_candidates: Vec::new(),
        outbox: VecDeque::new(),
        callbacks,
    };
    with_mesh(|m| m.peers.insert(id.to_owned(), peer));

    let (t, peer_id) = (topic.to_owned(), id.to_owned());
    if initiator {
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let ch = pc.create_data_channel_with_data_channel_dict("civicbase", &init);
        attach_channel(id, ch);
        wasm_bindgen_futures::spawn_local(async move {
            let ok = async {
                let offer = JsFuture::from(pc.create_offer()).await?;
                send_local(&pc, &t, &peer_id, RtcSdpType::Offer, &offer).await
            }
            .await;
            if ok.is_err() {
                with_mesh(|m| m.drop_peer(&peer_id));
            }
        });
    } else {
        let sdp = offer.unwrap_or_default();
        wasm_bindgen_futures::spawn_local(async move {
            let ok = async {
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_remote_description(&desc)).await?;
                remote_set(&peer_id);
                let answer = JsFuture::from(pc.create_answer()).await?;
                send_local(&pc, &t, &peer_id, RtcSdpType::Answer, &answer).await
            }
            .await;
            if ok.is_err() {
                with_mesh(|m| m.drop_peer(&peer_id));
            }
        });
    }
}

fn defer(f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 0);
    }
}

/// Makes `description` (an offer or answer `pc` just created) the local
/// description and sends it to `peer_id` on topic `t`.
async fn send_local(
    pc: &RtcPeerConnection,
    t: &str,
    peer_id: &str,
    kind: RtcSdpType,
    description: &JsValue,
) -> Result<(), JsValue> {
    let sdp = get_str(description, "sdp").unwrap_or_default();
    let desc = RtcSessionDescriptionInit::new(kind);
    desc.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&desc)).await?;
    let kind = if kind == RtcSdpType::Offer {
        "offer"
    } else {
        "answer"
    };
    with_mesh(|m| {
        m.signal(
            t,
            peer_id,
            obj(&[("type", kind.into()), ("sdp", sdp.into())]),
        )
    });
    Ok(())
}

fn attach_channel(peer_id: &str, ch: RtcDataChannel) {
    ch.set_binary_type(RtcDataChannelType::Arraybuffer);
    ch.set_buffered_amount_low_threshold(LOW_WATER);
    let mut callbacks = Vec::new();

    let id = peer_id.to_owned();
    let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        with_mesh(|m| {
            let Some(p) = m.peers.get_mut(&id) else {
                return;
            };
            p.up = true;
            let via = if p.role == "anchor" {
                "anchor"
            } else {
                "direct"
            };
            let label = if p.name.is_empty() {
                format!("peer {}", &id[..id.len().min(6)])
            } else {
                p.name.clone()
            };
            client::notify(RequestBody::LinkUp {
                link: p.link,
                label,
                via: via.into(),
            });
            for t in &p.topics {
                client::notify(RequestBody::LinkTopic {
                    link: p.link,
                    topic: t.clone(),
                });
            }
        });
    });
    ch.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    callbacks.push(on_open);

    let id = peer_id.to_owned();
    let on_message = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        let Some(data) = e.dyn_ref::<MessageEvent>().map(|e| e.data()) else {
            return;
        };
        let Some(buf) = data.dyn_ref::<ArrayBuffer>() else {
            return;
        };
        let link = with_mesh(|m| m.peers.get(&id).filter(|p| p.up).map(|p| p.link)).flatten();
        if let Some(link) = link {
            client::link_data(link, buf);
        }
    });
    ch.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    callbacks.push(on_message);

    let id = peer_id.to_owned();
    let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        let id = id.clone();
        defer(move || {
            with_mesh(|m| m.drop_peer(&id));
        });
    });
    ch.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    callbacks.push(on_close);

    let id = peer_id.to_owned();
    let on_low = Closure::<dyn FnMut(JsValue)>::new(move |_| {
        with_mesh(|m| {
            if let Some(p) = m.peers.get_mut(&id) {
                drain(p);
            }
        });
    });
    ch.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    callbacks.push(on_low);

    with_mesh(|m| {
        if let Some(p) = m.peers.get_mut(peer_id) {
            p.channel = Some(ch);
            p.callbacks.extend(callbacks);
        }
    });
}

/// Hands queued messages to the channel until its buffer is full.
fn drain(p: &mut Peer) {
    let Some(ch) = &p.channel else { return };
    if !p.up {
        return;
    }
    while ch.buffered_amount() < HIGH_WATER {
        let Some(msg) = p.outbox.pop_front() else {
            return;
        };
        if ch.send_with_u8_array(&msg).is_err() {
            p.outbox.push_front(msg);
            return;
        }
    }
}
