//! The Web Worker driver: the engine on IndexedDB, fed by the UI's
//! messages and by the other tabs over a BroadcastChannel.
//!
//! Everything the worker receives goes into one queue that a single task
//! drains, so the engine handles one input at a time. Requests from the UI
//! run under the Web Lock `civicbase-write`, shared by every tab of the
//! origin: a tab reads what other tabs stored before it writes, so two tabs
//! of one device never sign two entries at the same seq. The tab that holds
//! the lock `civicbase-leader` is the one that will hold network connections;
//! when it closes, the browser hands the lock to another tab at once.
//!
//! # Tab messages (BroadcastChannel `civicbase-tabs`)
//!
//! ```text
//! version:u8 (=1) kind:u8 from:u64 BE to:u64 BE space:[32] frame…
//! kind 1 announce (to = 0): "I have this space" — peers open a pipe
//! kind 2 frame: a sync frame on the pipe between `from` and `to`
//! kind 3 reset: `from` dropped its session with `to`; both start afresh
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use civicbase_core::{Hash, SpaceId};
use civicbase_engine::mesh::{topic, LinkError, LinkId, Links};
use civicbase_engine::{Engine, Env, PipeId, StorageError};
use civicbase_proto::{
    decode_request, encode_event, ErrorCode, ErrorInfo, Event, Request, RequestBody,
};
use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, DedicatedWorkerGlobalScope, MessageEvent};

use crate::idb::{IdbError, IdbStore};

impl StorageError for IdbError {
    fn is_quota_exceeded(&self) -> bool {
        matches!(self, IdbError::QuotaExceeded { .. })
    }
}

const TAB_VERSION: u8 = 1;
const KIND_ANNOUNCE: u8 = 1;
const KIND_FRAME: u8 = 2;
const KIND_RESET: u8 = 3;
/// A tab not heard from for this long is gone.
const TAB_TIMEOUT_MS: f64 = 6_000.0;
/// How often a tab announces its spaces.
const ANNOUNCE_EVERY_MS: i32 = 2_000;

/// Time and randomness from the browser.
struct BrowserEnv;

impl Env for BrowserEnv {
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        let global: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
        // crypto.getRandomValues exists in every browser that runs wasm; a
        // failure here must not produce a predictable key.
        match global.crypto() {
            Ok(c) => {
                if c.get_random_values_with_u8_array(&mut seed).is_err() {
                    wasm_bindgen::throw_str("crypto.getRandomValues failed");
                }
            }
            Err(_) => wasm_bindgen::throw_str("no crypto in this worker"),
        }
        seed
    }
}

enum Input {
    /// A request from this tab's UI, decoded as it arrives.
    Ui(Result<Request, String>),
    Tab(Vec<u8>),
    Tick,
    Leader,
    /// Time to warm up the receiving code (see `civicbase_core::warm`).
    WarmUp,
}

impl Input {
    /// A sync frame: data from a peer's link or another tab's session.
    fn is_frame(&self) -> bool {
        match self {
            Input::Ui(Ok(req)) => matches!(req.body, RequestBody::LinkData { .. }),
            Input::Tab(msg) => msg.len() >= 50 && msg[1] == KIND_FRAME,
            _ => false,
        }
    }
}

/// When the warm-up runs, after the worker starts: out of the way of the
/// page's first render.
const WARM_UP_AFTER_MS: i32 = 3_000;
/// Made-up entries in the warm-up (about a tenth of a second of work).
const WARM_UP_ENTRIES: u64 = 256;

/// Most sync frames (or link pieces) taken in one batch.
const MAX_BATCH: usize = 64;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (the Web Locks API).
    type LockManager;
    #[wasm_bindgen(method, js_name = request)]
    fn request(this: &LockManager, name: &str, callback: &Function) -> Promise;
}

fn lock_manager() -> Option<LockManager> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&nav, &"locks".into()).ok()?;
    (!locks.is_undefined()).then(|| locks.unchecked_into())
}

/// Runs `f` while holding the origin-wide write lock (or without it where
/// the browser has no Web Locks).
async fn with_write_lock<T>(f: impl std::future::Future<Output = T>) -> T {
    let Some(locks) = lock_manager() else {
        return f.await;
    };
    let (granted_tx, granted_rx) = futures_channel::oneshot::channel::<()>();
    let release: Rc<RefCell<Option<Function>>> = Rc::new(RefCell::new(None));
    let release_in = release.clone();
    let granted_tx = RefCell::new(Some(granted_tx));
    let cb = Closure::once_into_js(move |_lock: JsValue| -> Promise {
        Promise::new(&mut |resolve, _reject| {
            *release_in.borrow_mut() = Some(resolve);
            if let Some(tx) = granted_tx.borrow_mut().take() {
                let _ = tx.send(());
            }
        })
    });
    let _ = locks.request("civicbase-write", cb.unchecked_ref());
    let _ = granted_rx.await;
    let out = f.await;
    if let Some(resolve) = release.borrow_mut().take() {
        let _ = resolve.call0(&JsValue::NULL);
    }
    out
}

struct Tabs {
    me: u64,
    channel: Option<BroadcastChannel>,
    /// (tab, space) → pipe, and when the tab was last heard.
    pipes: BTreeMap<(u64, SpaceId), (PipeId, f64)>,
}

impl Tabs {
    fn send(&self, kind: u8, to: u64, space: &SpaceId, frame: &[u8]) {
        let Some(ch) = &self.channel else { return };
        let mut msg = Vec::with_capacity(50 + frame.len());
        msg.push(TAB_VERSION);
        msg.push(kind);
        msg.extend_from_slice(&self.me.to_be_bytes());
        msg.extend_from_slice(&to.to_be_bytes());
        msg.extend_from_slice(space.as_bytes());
        msg.extend_from_slice(frame);
        let _ = ch.post_message(&Uint8Array::from(msg.as_slice()));
    }
}

struct Worker {
    engine: Engine<IdbStore>,
    env: BrowserEnv,
    tabs: Tabs,
    /// Sessions over the WebRTC data channels the UI thread holds (only
    /// the tab with the network role has any).
    links: Links,
    scope: DedicatedWorkerGlobalScope,
    /// Whether the receiving code was warmed up (see [`Worker::warm_up`]).
    warm: bool,
    /// Whether the user was told that a peer runs another link protocol.
    version_warned: bool,
}

impl Worker {
    fn post(&self, event: &Event) {
        let bytes = encode_event(event);
        // The buffer is handed over, not copied again.
        let array = Uint8Array::from(bytes.as_slice());
        let _ = self
            .scope
            .post_message_with_transfer(&array, &js_sys::Array::of1(&array.buffer()));
    }

    fn flush_events(&mut self) {
        for e in self.engine.take_events() {
            self.post(&e);
        }
    }

    fn flush_pipes(&mut self) {
        let outputs = self.engine.pipes_with_output();
        for pipe in outputs {
            let Some((&(tab, space), _)) = self.tabs.pipes.iter().find(|(_, (p, _))| *p == pipe)
            else {
                continue;
            };
            for frame in self.engine.pipe_output(pipe) {
                self.tabs.send(KIND_FRAME, tab, &space, &frame);
            }
        }
    }

    fn flush_links(&mut self) {
        let mut batch: Vec<(LinkId, Vec<Vec<u8>>)> = Vec::new();
        for (link, msg) in self.links.take_output(&mut self.engine) {
            match batch.last_mut() {
                Some((l, msgs)) if *l == link => msgs.push(msg),
                _ => batch.push((link, vec![msg])),
            }
        }
        for (link, messages) in batch {
            self.post(&Event::LinkSend {
                link: link.0 as u32,
                messages,
            });
        }
    }

    /// Tells the UI thread under which signaling topics this device's
    /// spaces meet.
    fn post_topics(&self) {
        let topics = self.engine.space_ids().iter().map(topic).collect();
        self.post(&Event::Topics(topics));
    }

    async fn on_link(&mut self, body: RequestBody) {
        match body {
            RequestBody::LinkUp { link, label, via } => {
                self.links.link_up(LinkId(link.into()), label, via);
                // A peer connected: sync is about to start.
                self.warm_up();
            }
            RequestBody::LinkTopic { link, topic } => {
                self.links
                    .open_topic(&mut self.engine, LinkId(link.into()), &topic);
            }
            RequestBody::LinkData { link, bytes } => {
                let id = LinkId(link.into());
                if let Err(e) = self
                    .links
                    .receive(&mut self.engine, id, &bytes, &self.env)
                    .await
                {
                    if matches!(e, LinkError::Version { .. }) && !self.version_warned {
                        // Said once: the link is tried again at every announce.
                        self.version_warned = true;
                        self.post(&Event::Alert(ErrorInfo {
                            code: ErrorCode::Version,
                            message: format!("A peer could not sync with this device: {e}."),
                        }));
                    }
                    self.links.link_down(&mut self.engine, id);
                    self.post(&Event::LinkClose {
                        link,
                        reason: e.to_string(),
                    });
                }
            }
            RequestBody::LinkDown { link } => {
                self.links.link_down(&mut self.engine, LinkId(link.into()));
                // Pipes that waited for this peer's initial sync say Hello.
                self.engine.release_all_waiting(&self.env).await;
            }
            _ => {}
        }
        if !self.engine.in_batch() {
            let status = self.engine.status();
            self.post(&Event::Status(status));
        }
    }

    /// Picks up spaces another tab created or joined.
    async fn load_new_spaces(&mut self) {
        match self.engine.load_new_spaces(&self.env).await {
            Ok(new) if !new.is_empty() => {
                for space in new {
                    self.post(&Event::Changed { space: space.0 });
                }
                self.post_topics();
            }
            Ok(_) => {}
            Err(e) => self.post(&Event::Alert(e)),
        }
    }

    fn announce(&self) {
        for space in self.engine.space_ids() {
            self.tabs.send(KIND_ANNOUNCE, 0, &space, &[]);
        }
    }

    fn tab_count(&self) -> u32 {
        let mut tabs: Vec<u64> = self.tabs.pipes.keys().map(|(t, _)| *t).collect();
        tabs.sort_unstable();
        tabs.dedup();
        tabs.len() as u32
    }

    fn pipe_for(&mut self, tab: u64, space: SpaceId) -> Option<PipeId> {
        let now = js_sys::Date::now();
        if let Some((pipe, seen)) = self.tabs.pipes.get_mut(&(tab, space)) {
            *seen = now;
            return Some(*pipe);
        }
        let pipe =
            self.engine
                .open_pipe(space, format!("tab {:04x}", tab & 0xffff), "tab".into())?;
        self.tabs.pipes.insert((tab, space), (pipe, now));
        let tabs = self.tab_count();
        self.engine.set_platform_status(|s| s.tabs = tabs);
        Some(pipe)
    }

    async fn on_tab(&mut self, msg: Vec<u8>) {
        if msg.len() < 50 || msg[0] != TAB_VERSION {
            return;
        }
        let kind = msg[1];
        let from = u64::from_be_bytes(msg[2..10].try_into().unwrap_or_default());
        let to = u64::from_be_bytes(msg[10..18].try_into().unwrap_or_default());
        let mut space = [0u8; 32];
        space.copy_from_slice(&msg[18..50]);
        let space = Hash(space);
        if from == self.tabs.me {
            return;
        }
        match kind {
            KIND_ANNOUNCE => {
                if self.engine.replica(&space).is_none() {
                    self.load_new_spaces().await;
                }
                let new = !self.tabs.pipes.contains_key(&(from, space));
                if self.pipe_for(from, space).is_some() && new {
                    self.tabs.send(KIND_ANNOUNCE, 0, &space, &[]);
                }
            }
            KIND_FRAME if to == self.tabs.me => {
                // A frame for a session this tab no longer has (or one that
                // breaks) resets the pair: both drop their sessions and
                // announce, and fresh sessions resume from version vectors.
                let Some((pipe, seen)) = self.tabs.pipes.get_mut(&(from, space)) else {
                    self.reset_pair(from, space);
                    return;
                };
                *seen = js_sys::Date::now();
                let pipe = *pipe;
                if let Err(e) = self.engine.pipe_input(pipe, &msg[50..], &self.env).await {
                    web_sys::console::warn_1(&format!("tab sync session reset: {e}").into());
                    self.reset_pair(from, space);
                }
            }
            KIND_RESET if to == self.tabs.me => {
                if let Some((pipe, _)) = self.tabs.pipes.remove(&(from, space)) {
                    self.engine.close_pipe(pipe);
                }
                self.tabs.send(KIND_ANNOUNCE, 0, &space, &[]);
            }
            _ => {}
        }
    }

    /// Drops this tab's session with `tab` for `space`, tells the other tab
    /// to drop its own, and announces so that both open fresh ones.
    fn reset_pair(&mut self, tab: u64, space: SpaceId) {
        if let Some((pipe, _)) = self.tabs.pipes.remove(&(tab, space)) {
            self.engine.close_pipe(pipe);
        }
        self.tabs.send(KIND_RESET, tab, &space, &[]);
        self.tabs.send(KIND_ANNOUNCE, 0, &space, &[]);
    }

    fn expire_tabs(&mut self) {
        let now = js_sys::Date::now();
        let stale: Vec<(u64, SpaceId)> = self
            .tabs
            .pipes
            .iter()
            .filter(|(_, (_, seen))| now - seen > TAB_TIMEOUT_MS)
            .map(|(k, _)| *k)
            .collect();
        if stale.is_empty() {
            return;
        }
        for k in stale {
            if let Some((pipe, _)) = self.tabs.pipes.remove(&k) {
                self.engine.close_pipe(pipe);
            }
        }
        let tabs = self.tab_count();
        self.engine.set_platform_status(|s| s.tabs = tabs);
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Ui(req) => self.on_ui(req).await,
            Input::Tab(bytes) => self.on_tab(bytes).await,
            Input::Tick => {
                self.expire_tabs();
                self.announce();
                self.close_due().await;
                if let Err(e) = self.engine.maintain(&self.env).await {
                    self.post(&Event::Alert(e));
                }
            }
            Input::Leader => self.engine.set_platform_status(|s| s.leader = true),
            Input::WarmUp => self.warm_up(),
        }
    }

    /// Closes proposals past their deadline that this device may close
    /// (`Engine::close_due`), under the write lock like every other write.
    async fn close_due(&mut self) {
        let engine = &mut self.engine;
        let env = &self.env;
        let errors = with_write_lock(async {
            for space in engine.space_ids() {
                let _ = engine.catch_up(&space, env).await;
            }
            engine.close_due(env).await
        })
        .await;
        for e in errors {
            self.post(&Event::Alert(e));
        }
        self.flush_pipes();
        self.flush_links();
        self.flush_events();
    }

    /// Runs the receiving code once on made-up entries (see
    /// `civicbase_core::warm`), when sync is about to start or a few seconds
    /// after start-up, whichever comes first.
    fn warm_up(&mut self) {
        if !self.warm {
            self.warm = true;
            civicbase_core::warm::warm_up(WARM_UP_ENTRIES);
        }
    }

    async fn on_ui(&mut self, req: Result<Request, String>) {
        let req = match req {
            Ok(r) => r,
            Err(message) => {
                self.post(&Event::Alert(ErrorInfo {
                    code: ErrorCode::Version,
                    message,
                }));
                return;
            }
        };
        if req.body.is_link() {
            self.on_link(req.body).await;
            return;
        }
        // Reads answer from memory at once: other tabs' entries reach this
        // one over the tab channel, and only a write must first read what
        // they stored (see the module docs).
        if matches!(req.body, RequestBody::View { .. } | RequestBody::Init) {
            let reply = self.engine.handle(req, &self.env).await;
            self.post(&reply);
            return;
        }
        let announce = matches!(
            req.body,
            RequestBody::CreateSpace { .. }
                | RequestBody::JoinSpace { .. }
                | RequestBody::ImportBundle { .. }
        );
        let joining = matches!(req.body, RequestBody::JoinSpace { .. });
        let engine = &mut self.engine;
        let env = &self.env;
        let reply = with_write_lock(async {
            // Read what other tabs stored first (see the module docs).
            for space in engine.space_ids() {
                let _ = engine.catch_up(&space, env).await;
            }
            engine.handle(req, env).await
        })
        .await;
        self.post(&reply);
        if announce {
            self.announce();
            self.post_topics();
        }
        if joining {
            // The space's entries arrive once a peer is found: meanwhile,
            // get the code that will check them optimised.
            self.warm_up();
        }
        // Other tabs get what this request changed before the storage
        // estimate (slow on a large database) is read.
        self.flush_pipes();
        self.flush_links();
        self.flush_events();
        // A large write (an imported bundle) gets its snapshot now rather
        // than at the next tick, so that a reload right after it starts
        // from the snapshot; the reply has already gone out.
        if let Err(e) = self.engine.maintain(&self.env).await {
            self.post(&Event::Alert(e));
        }
        self.refresh_storage().await;
    }

    async fn refresh_storage(&mut self) {
        let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok();
        let storage = nav.and_then(|n| Reflect::get(&n, &"storage".into()).ok());
        let Some(storage) = storage.filter(|s| !s.is_undefined()) else {
            return;
        };
        let storage: web_sys::StorageManager = storage.unchecked_into();
        let persisted = match storage.persisted() {
            Ok(p) => wasm_bindgen_futures::JsFuture::from(p)
                .await
                .ok()
                .and_then(|v| v.as_bool()),
            Err(_) => None,
        };
        let (usage, quota) = match storage.estimate() {
            Ok(p) => match wasm_bindgen_futures::JsFuture::from(p).await {
                Ok(est) => (
                    Reflect::get(&est, &"usage".into())
                        .ok()
                        .and_then(|v| v.as_f64())
                        .map(|v| v as u64),
                    Reflect::get(&est, &"quota".into())
                        .ok()
                        .and_then(|v| v.as_f64())
                        .map(|v| v as u64),
                ),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        };
        self.engine.set_platform_status(|s| {
            s.persisted = persisted.or(s.persisted);
            s.usage = usage;
            s.quota = quota;
        });
    }
}

/// A message's bytes, copied once into this module's memory (a
/// `Uint8Array` is read in place; `new Uint8Array(array)` would copy it
/// first).
fn message_bytes(m: &MessageEvent) -> Vec<u8> {
    let data = m.data();
    match data.dyn_into::<Uint8Array>() {
        Ok(array) => array.to_vec(),
        Err(other) => Uint8Array::new(&other).to_vec(),
    }
}

/// A `LinkData` request from the page's `[link, ArrayBuffer]` pair.
fn link_data(pair: &js_sys::Array) -> Result<Request, String> {
    let link = pair
        .get(0)
        .as_f64()
        .filter(|l| l.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(l))
        .ok_or("a link message without a valid link number")?;
    let buf = pair
        .get(1)
        .dyn_into::<js_sys::ArrayBuffer>()
        .map_err(|_| "a link message without its bytes")?;
    if pair.length() != 2 {
        return Err("a link message with extra parts".into());
    }
    Ok(Request {
        id: 0,
        body: RequestBody::LinkData {
            link: link as u32,
            bytes: Uint8Array::new(&buf).to_vec(),
        },
    })
}

/// Starts the worker: call once from the worker binary's `main`.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let (tx, mut rx) = mpsc::unbounded::<Input>();

    // Listen at once, so that nothing the UI sends while the engine opens is
    // lost; the queue holds it.
    let ui_tx = tx.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
        let data = m.data();
        let req = if let Some(pair) = data.dyn_ref::<js_sys::Array>() {
            // Link traffic, passed on by the page as it came: [link, buffer].
            link_data(pair)
        } else {
            decode_request(&message_bytes(&m)).map_err(|e| e.to_string())
        };
        let _ = ui_tx.unbounded_send(Input::Ui(req));
    });
    scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    // Tell the UI it may send: a plain string, unlike every later message.
    let _ = scope.post_message(&JsValue::from_str("listening"));

    let channel = BroadcastChannel::new("civicbase-tabs").ok();
    if let Some(ch) = &channel {
        let tab_tx = tx.clone();
        let on_tab = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
            let bytes = message_bytes(&m);
            let _ = tab_tx.unbounded_send(Input::Tab(bytes));
        });
        ch.set_onmessage(Some(on_tab.as_ref().unchecked_ref()));
        on_tab.forget();
    }

    // Once the page has settled, run the receiving code on made-up entries,
    // so that it is optimised before the first large sync needs it.
    let warm_tx = tx.clone();
    let warm = Closure::once_into_js(move || {
        let _ = warm_tx.unbounded_send(Input::WarmUp);
    });
    let _ = scope.set_timeout_with_callback_and_timeout_and_arguments_0(
        warm.unchecked_ref(),
        WARM_UP_AFTER_MS,
    );

    let tick_tx = tx.clone();
    let tick = Closure::<dyn FnMut()>::new(move || {
        let _ = tick_tx.unbounded_send(Input::Tick);
    });
    let _ = scope.set_interval_with_callback_and_timeout_and_arguments_0(
        tick.as_ref().unchecked_ref(),
        ANNOUNCE_EVERY_MS,
    );
    tick.forget();

    // Leadership: held until this worker's tab closes.
    if let Some(locks) = lock_manager() {
        let leader_tx = tx.clone();
        let cb = Closure::once_into_js(move |_lock: JsValue| -> Promise {
            let _ = leader_tx.unbounded_send(Input::Leader);
            Promise::new(&mut |_resolve, _reject| {})
        });
        let _ = locks.request("civicbase-leader", cb.unchecked_ref());
    }

    let me = {
        let seed = BrowserEnv.random_seed();
        u64::from_be_bytes(seed[..8].try_into().unwrap_or_default()).max(1)
    };
    let post_scope = scope.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let env = BrowserEnv;
        let opened = match IdbStore::open("civicbase").await {
            Ok(store) => Engine::open(store, &env).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let engine = match opened {
            Ok(e) => e,
            Err(message) => {
                let fail = encode_event(&Event::Alert(ErrorInfo {
                    code: ErrorCode::Storage,
                    message: format!(
                        "CivicBase could not open this device's storage: {message}. \
                         Close other CivicBase tabs and reload; if it persists, check that \
                         the browser allows site data."
                    ),
                }));
                let _ = post_scope.post_message(&Uint8Array::from(fail.as_slice()));
                return;
            }
        };
        let mut w = Worker {
            engine,
            env,
            tabs: Tabs {
                me,
                channel,
                pipes: BTreeMap::new(),
            },
            links: Links::new(),
            scope: post_scope,
            warm: false,
            version_warned: false,
        };
        w.announce();
        w.post_topics();
        w.refresh_storage().await;
        let mut backlog: VecDeque<Input> = VecDeque::new();
        loop {
            let input = match backlog.pop_front() {
                Some(i) => i,
                None => match rx.next().await {
                    Some(i) => i,
                    None => return,
                },
            };
            if input.is_frame() {
                // Sync frames that are already waiting go in one batch: one
                // store write and one round of updates for all of them.
                w.engine.begin_batch();
                w.on_input(input).await;
                for _ in 1..MAX_BATCH {
                    let next = match backlog.pop_front() {
                        Some(i) => i,
                        // Empty or closed: a closed queue ends the loop at
                        // the next wait.
                        None => match rx.try_recv() {
                            Ok(i) => i,
                            Err(_) => break,
                        },
                    };
                    if !next.is_frame() {
                        backlog.push_front(next);
                        break;
                    }
                    w.on_input(next).await;
                }
                w.engine.end_batch(&w.env).await;
                let status = w.engine.status();
                w.post(&Event::Status(status));
            } else {
                w.on_input(input).await;
            }
            w.flush_pipes();
            w.flush_links();
            w.flush_events();
        }
    });
}
