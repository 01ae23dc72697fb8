//! The connection to the engine in its Web Worker.
//!
//! Requests are encoded with `civicbase_proto` and posted as byte arrays;
//! each is answered by one response with the same id. Events the engine
//! sends on its own (a space changed, the status changed, an alert) update
//! the signals in [`Shared`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use civicbase_proto::{
    decode_event, encode_request, ErrorCode, ErrorInfo, Event, Request, RequestBody, ResponseBody,
    StatusInfo,
};
use futures_channel::oneshot;
use js_sys::{ArrayBuffer, Uint8Array};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker, WorkerOptions};

/// Signals every component may read, fed by the engine's events.
#[derive(Clone, Copy)]
pub struct Shared {
    /// Bumped whenever any space changes; views re-read on change.
    pub version: RwSignal<u64>,
    /// Latest status.
    pub status: RwSignal<StatusInfo>,
    /// Alerts to show until dismissed.
    pub alerts: RwSignal<Vec<(u64, String)>>,
    /// Whether the worker has started.
    pub ready: RwSignal<bool>,
    /// The connection to the signaling server.
    pub signaling: RwSignal<crate::mesh::Signaling>,
}

struct Client {
    worker: Worker,
    next_id: Cell<u32>,
    waiting: RefCell<HashMap<u32, oneshot::Sender<Result<ResponseBody, ErrorInfo>>>>,
    queued: RefCell<Vec<Vec<u8>>>,
    started: Cell<bool>,
}

thread_local! {
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// Most messages on screen at once; older ones give way.
const MAX_ALERTS: usize = 3;

/// Shows a message that stays until dismissed (errors, warnings).
pub fn alert(shared: Shared, message: String) {
    push_alert(shared, message);
}

/// Shows a confirmation that goes away by itself after a few seconds.
pub fn info(shared: Shared, message: String) {
    let id = push_alert(shared, message);
    set_timeout(
        move || shared.alerts.update(|a| a.retain(|x| x.0 != id)),
        std::time::Duration::from_secs(4),
    );
}

fn push_alert(shared: Shared, message: String) -> u64 {
    let mut id = 0;
    shared.alerts.update(|a| {
        id = a.last().map_or(0, |(i, _)| i + 1);
        a.push((id, message));
        let excess = a.len().saturating_sub(MAX_ALERTS);
        a.drain(..excess);
    });
    id
}

/// Starts the engine's worker.
pub fn start(shared: Shared) {
    let opts = WorkerOptions::new();
    opts.set_name("civicbase-engine");
    let worker = match Worker::new_with_options("./civicbase-worker_loader.js", &opts) {
        Ok(w) => w,
        Err(_) => {
            alert(
                shared,
                "This browser cannot start CivicBase's engine (Web Workers are unavailable)."
                    .into(),
            );
            return;
        }
    };
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
        let Ok(array) = m.data().dyn_into::<Uint8Array>() else {
            // The worker's first message says it listens.
            on_started(shared);
            return;
        };
        let bytes = array.to_vec();
        match decode_event(&bytes) {
            Ok(e) => on_event(shared, e),
            Err(e) => alert(
                shared,
                format!("The engine sent a message this page cannot read ({e}). Reload the page."),
            ),
        }
    });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    CLIENT.with(|c| {
        *c.borrow_mut() = Some(Client {
            worker,
            next_id: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            queued: RefCell::new(Vec::new()),
            started: Cell::new(false),
        })
    });
}

fn on_started(shared: Shared) {
    CLIENT.with(|c| {
        if let Some(c) = c.borrow().as_ref() {
            c.started.set(true);
            for msg in c.queued.borrow_mut().drain(..) {
                post_bytes(&c.worker, &msg);
            }
        }
    });
    shared.ready.set(true);
}

fn on_event(shared: Shared, event: Event) {
    match event {
        Event::Response { id, result } => {
            let tx = CLIENT.with(|c| {
                c.borrow()
                    .as_ref()
                    .and_then(|c| c.waiting.borrow_mut().remove(&id))
            });
            if let Some(tx) = tx {
                let _ = tx.send(result);
            }
        }
        Event::Changed { .. } => shared.version.update(|v| *v += 1),
        Event::Status(s) => {
            crate::mesh::set_leader(s.leader);
            shared.status.set(s);
        }
        Event::Alert(e) => alert(shared, crate::i18n::error_text(&e)),
        Event::Topics(topics) => crate::mesh::set_topics(topics),
        Event::LinkSend { link, messages } => crate::mesh::send(link, messages),
        Event::LinkClose { link, reason } => crate::mesh::close_link(link, &reason),
    }
}

/// Posts bytes to the worker, handing the buffer over instead of copying it.
fn post_bytes(worker: &Worker, bytes: &[u8]) {
    let array = Uint8Array::from(bytes);
    let _ = worker.post_message_with_transfer(&array, &js_sys::Array::of1(&array.buffer()));
}

/// Passes a message that arrived on a link to the worker as it is: the
/// buffer and the link number in a two-item array, the buffer handed over
/// rather than copied (the worker reads it as a `LinkData` request). This
/// page does no work on sync traffic.
pub fn link_data(link: u32, buf: &ArrayBuffer) {
    let started = CLIENT.with(|c| {
        let c = c.borrow();
        let Some(c) = c.as_ref() else { return true };
        if !c.started.get() {
            return false;
        }
        let msg = js_sys::Array::of2(&JsValue::from(link), buf);
        let _ = c
            .worker
            .post_message_with_transfer(&msg, &js_sys::Array::of1(buf));
        true
    });
    if !started {
        notify(RequestBody::LinkData {
            link,
            bytes: Uint8Array::new(buf).to_vec(),
        });
    }
}

/// Sends a message that is not answered (link traffic).
pub fn notify(body: RequestBody) {
    CLIENT.with(|c| {
        let c = c.borrow();
        let Some(c) = c.as_ref() else { return };
        let bytes = encode_request(&Request { id: 0, body });
        if c.started.get() {
            post_bytes(&c.worker, &bytes);
        } else {
            c.queued.borrow_mut().push(bytes);
        }
    });
}

/// Sends a request and waits for its answer.
pub async fn request(body: RequestBody) -> Result<ResponseBody, ErrorInfo> {
    let rx = CLIENT.with(|c| {
        let c = c.borrow();
        let c = c.as_ref()?;
        let id = c.next_id.get();
        c.next_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        c.waiting.borrow_mut().insert(id, tx);
        let bytes = encode_request(&Request { id, body });
        if c.started.get() {
            post_bytes(&c.worker, &bytes);
        } else {
            c.queued.borrow_mut().push(bytes);
        }
        Some(rx)
    });
    match rx {
        Some(rx) => rx.await.unwrap_or_else(|_| {
            Err(ErrorInfo {
                code: ErrorCode::Internal,
                message: "The engine stopped answering. Reload the page.".into(),
            })
        }),
        None => Err(ErrorInfo {
            code: ErrorCode::Internal,
            message: "The engine is not running. Reload the page.".into(),
        }),
    }
}
