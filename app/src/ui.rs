//! The views.

use civicbase_core::op::{encode_payload, Op};
use civicbase_core::Hash;
use civicbase_proto::{
    IdentityInfo, NoticeView, RequestBody, ResponseBody, SpaceSummary, StatusInfo, ViewData,
    ViewQuery,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::client::{self, alert, Shared};
use crate::i18n::{t, tr, Lang};

type SpaceId = [u8; 32];

/// Everything about the signed-in device the views need.
#[derive(Clone, Copy)]
struct Session {
    identity: RwSignal<Option<IdentityInfo>>,
    spaces: RwSignal<Vec<SpaceSummary>>,
    current: RwSignal<Option<SpaceId>>,
    /// The browser's answer to the persistent-storage request.
    persist: RwSignal<Option<bool>>,
}

thread_local! {
    /// The app's signals, reachable from async tasks (which run outside the
    /// reactive owner that holds the context).
    static GLOBALS: std::cell::Cell<Option<(Shared, Session, RwSignal<Lang>)>> = const { std::cell::Cell::new(None) };
}

fn globals() -> (Shared, Session, RwSignal<Lang>) {
    GLOBALS.with(|g| g.get()).unwrap_or_else(|| {
        // Only reachable if a view renders before App set the globals.
        wasm_bindgen::throw_str("CivicBase: app state used before start")
    })
}

fn shared() -> Shared {
    globals().0
}

fn session() -> Session {
    globals().1
}

fn lang() -> Lang {
    globals().2.get_untracked()
}

/// Sends a request; on failure shows the engine's message and returns None.
async fn ask(body: RequestBody) -> Option<ResponseBody> {
    match client::request(body).await {
        Ok(r) => Some(r),
        Err(e) => {
            alert(shared(), e.message);
            None
        }
    }
}

async fn refresh_spaces(s: Session) {
    if let Some(ResponseBody::Ready {
        identity,
        spaces,
        status,
    }) = ask(RequestBody::Init).await
    {
        s.identity.set(identity);
        s.spaces.set(spaces);
        shared().status.set(status);
    }
}

/// Performs operations in the current space.
async fn act(space: SpaceId, ops: Vec<Op>) -> bool {
    ask(RequestBody::Act {
        space,
        payload: encode_payload(&ops),
    })
    .await
    .is_some()
}

fn hex(id: &[u8; 32]) -> String {
    Hash(*id).to_hex()
}

fn fmt_time(ms: u64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    let s: String = d
        .to_locale_string(lang().code(), &wasm_bindgen::JsValue::UNDEFINED)
        .into();
    s
}

/// The root component.
#[component]
pub fn App() -> impl IntoView {
    let shared = Shared {
        version: RwSignal::new(0),
        status: RwSignal::new(StatusInfo::default()),
        alerts: RwSignal::new(Vec::new()),
        ready: RwSignal::new(false),
    };
    provide_context(shared);
    let lang = RwSignal::new(Lang::detect());
    provide_context(lang);
    let s = Session {
        identity: RwSignal::new(None),
        spaces: RwSignal::new(Vec::new()),
        current: RwSignal::new(None),
        persist: RwSignal::new(None),
    };
    provide_context(s);
    GLOBALS.with(|g| g.set(Some((shared, s, lang))));
    crate::i18n::set_lang_signal(lang);
    let loaded = RwSignal::new(false);
    client::start(shared);
    register_service_worker();
    request_persistence(s);
    spawn_local(async move {
        refresh_spaces(s).await;
        loaded.set(true);
        join_from_link(s).await;
    });
    // Keep the space list fresh when anything changes.
    Effect::new(move |_| {
        shared.version.track();
        if loaded.get_untracked() {
            spawn_local(refresh_spaces(s));
        }
    });
    Effect::new(move |_| {
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            if let Some(root) = doc.document_element() {
                let _ = root.set_attribute("lang", lang.get().code());
            }
        }
    });
    view! {
        <header class="top">
            <div class="brand">
                <span class="logo" aria-hidden="true">"◆"</span>
                <span>"CivicBase"</span>
                <small>{tr("app.tagline")}</small>
            </div>
            <button class="link" id="lang-switch" on:click=move |_| {
                let next = if lang.get() == Lang::En { Lang::Sv } else { Lang::En };
                next.save();
                lang.set(next);
            }>{tr("lang.switch")}</button>
        </header>
        <Alerts/>
        <main>
            <Show when=move || loaded.get() fallback=|| view! { <p class="muted">"…"</p> }>
                <Show when=move || s.identity.get().is_some() fallback=|| view! { <Onboarding/> }>
                    <Show when=move || s.current.get().is_some() fallback=|| view! { <SpaceList/> }>
                        <SpaceView/>
                    </Show>
                </Show>
            </Show>
        </main>
    }
}

fn register_service_worker() {
    if let Some(w) = web_sys::window() {
        let sw = w.navigator().service_worker();
        let _ = sw.register("./sw.js");
    }
}

fn request_persistence(s: Session) {
    spawn_local(async move {
        let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) else {
            return;
        };
        if let Ok(p) = storage.persist() {
            if let Ok(v) = wasm_bindgen_futures::JsFuture::from(p).await {
                s.persist.set(v.as_bool());
            }
        }
    });
}

/// Opens the join flow when the page was opened from an invite link.
async fn join_from_link(s: Session) {
    let Some(w) = web_sys::window() else { return };
    let Ok(hash) = w.location().hash() else {
        return;
    };
    let fragment = hash.trim_start_matches('#').to_owned();
    if !fragment.starts_with("join1-") || s.identity.get_untracked().is_none() {
        return;
    }
    let _ = w.location().set_hash("");
    join(s, fragment).await;
}

async fn join(s: Session, fragment: String) {
    match ask(RequestBody::JoinSpace { fragment }).await {
        Some(ResponseBody::Space(sp)) => {
            refresh_spaces(s).await;
            s.current.set(Some(sp.id));
        }
        Some(ResponseBody::JoinPending { .. }) => {
            alert(shared(), t(lang(), "spaces.waiting").into());
            refresh_spaces(s).await;
        }
        _ => {}
    }
}

#[component]
fn Alerts() -> impl IntoView {
    let sh = shared();
    view! {
        <div class="alerts" role="status" aria-live="polite">
            <For each=move || sh.alerts.get() key=|a| a.0 let:a>
                <div class="alert">
                    <span>{a.1.clone()}</span>
                    <button class="link" aria-label="Dismiss" on:click=move |_| {
                        sh.alerts.update(|v| v.retain(|x| x.0 != a.0));
                    }>"×"</button>
                </div>
            </For>
        </div>
    }
}

#[component]
fn Onboarding() -> impl IntoView {
    let s = session();
    let name = RwSignal::new(String::new());
    let backup = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked().trim().to_owned();
        if n.is_empty() || n.len() > 120 {
            error.set(Some("err.name"));
            return;
        }
        error.set(None);
        spawn_local(async move {
            if let Some(ResponseBody::Identity(i)) =
                ask(RequestBody::CreateIdentity { name: n }).await
            {
                s.identity.set(Some(i));
                join_from_link(s).await;
            }
        });
    };
    let restore = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let b = backup.get_untracked();
        spawn_local(async move {
            if let Some(ResponseBody::Identity(i)) =
                ask(RequestBody::RestoreIdentity { backup: b }).await
            {
                s.identity.set(Some(i));
                refresh_spaces(s).await;
            }
        });
    };
    view! {
        <section class="card narrow">
            <h1>{tr("onboard.title")}</h1>
            <p>{tr("onboard.intro")}</p>
            <form on:submit=create novalidate>
                <label for="name">{tr("onboard.name")}</label>
                <input id="name" name="name" autocomplete="nickname" maxlength="120"
                    prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                    aria-invalid=move || error.get().is_some().then_some("true")/>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().map(|k| t(lang(), k))}</p>
                </Show>
                <button type="submit" class="primary" id="create-identity">{tr("onboard.create")}</button>
            </form>
            <details>
                <summary>{tr("onboard.restore")}</summary>
                <form on:submit=restore>
                    <label for="backup">{tr("onboard.backup")}</label>
                    <textarea id="backup" rows="3" prop:value=move || backup.get()
                        on:input=move |ev| backup.set(event_target_value(&ev))></textarea>
                    <button type="submit">{tr("onboard.restore_btn")}</button>
                </form>
            </details>
        </section>
    }
}

#[component]
fn SpaceList() -> impl IntoView {
    let s = session();
    let name = RwSignal::new(String::new());
    let credit = RwSignal::new("10".to_owned());
    let link = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked().trim().to_owned();
        if n.is_empty() || n.len() > 120 {
            error.set(Some("err.space_name"));
            return;
        }
        error.set(None);
        let limit = credit.get_untracked().trim().parse().unwrap_or(10);
        spawn_local(async move {
            if let Some(ResponseBody::Space(sp)) = ask(RequestBody::CreateSpace {
                name: n,
                default_credit_limit: limit,
            })
            .await
            {
                refresh_spaces(s).await;
                s.current.set(Some(sp.id));
            }
        });
    };
    let join_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let l = link.get_untracked();
        let fragment = l.rsplit('#').next().unwrap_or_default().to_owned();
        spawn_local(join(s, fragment));
    };
    view! {
        <section class="card">
            <h1>{tr("spaces.title")}</h1>
            <Show when=move || s.spaces.get().is_empty()>
                <p class="muted">{tr("spaces.none")}</p>
            </Show>
            <ul class="spaces">
                <For each=move || s.spaces.get() key=|sp| (sp.id, sp.name.clone(), sp.entries) let:sp>
                    <li>
                        <button class="space" on:click=move |_| s.current.set(Some(sp.id))>
                            <strong>{sp.name.clone()}</strong>
                            <span class="muted">{sp.role.map(|r| t(lang(), role_key(r)))}</span>
                        </button>
                    </li>
                </For>
            </ul>
        </section>
        <section class="card">
            <h2>{tr("spaces.create")}</h2>
            <form on:submit=create novalidate>
                <label for="space-name">{tr("spaces.name")}</label>
                <input id="space-name" maxlength="120" prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))/>
                <label for="space-credit">{tr("spaces.credit")}</label>
                <input id="space-credit" type="number" min="0" prop:value=move || credit.get()
                    on:input=move |ev| credit.set(event_target_value(&ev))/>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().map(|k| t(lang(), k))}</p>
                </Show>
                <button type="submit" class="primary" id="create-space">{tr("spaces.create")}</button>
            </form>
        </section>
        <section class="card">
            <h2>{tr("spaces.join")}</h2>
            <form on:submit=join_submit>
                <label for="invite-link">{tr("spaces.link")}</label>
                <input id="invite-link" prop:value=move || link.get()
                    on:input=move |ev| link.set(event_target_value(&ev))/>
                <button type="submit">{tr("spaces.join_btn")}</button>
            </form>
        </section>
    }
}

fn role_key(r: u8) -> &'static str {
    match r {
        0 => "role.0",
        1 => "role.1",
        2 => "role.2",
        _ => "role.3",
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Notices,
    Members,
    Sync,
}

#[component]
fn SpaceView() -> impl IntoView {
    let s = session();
    let tab = RwSignal::new(Tab::Notices);
    let space = move || s.current.get().unwrap_or_default();
    let name = move || {
        let id = space();
        s.spaces
            .get()
            .into_iter()
            .find(|sp| sp.id == id)
            .map(|sp| sp.name)
            .unwrap_or_default()
    };
    let tab_button = move |t_: Tab, key: &'static str| {
        view! {
            <button role="tab" aria-selected=move || (tab.get() == t_).to_string()
                class:active=move || tab.get() == t_
                on:click=move |_| tab.set(t_)>{tr(key)}</button>
        }
    };
    view! {
        <nav class="crumbs">
            <button class="link" on:click=move |_| s.current.set(None)>{"← "}{tr("common.back")}</button>
        </nav>
        <h1 id="space-title">{name}</h1>
        <div class="tabs" role="tablist">
            {tab_button(Tab::Notices, "tab.notices")}
            {tab_button(Tab::Members, "tab.members")}
            {tab_button(Tab::Sync, "tab.sync")}
        </div>
        {move || match tab.get() {
            Tab::Notices => view! { <Notices space=space()/> }.into_any(),
            Tab::Members => view! { <Members space=space()/> }.into_any(),
            Tab::Sync => view! { <SyncPanel space=space()/> }.into_any(),
        }}
    }
}

/// Reads a view whenever the data changes.
fn live_view(
    space: SpaceId,
    query: impl Fn() -> ViewQuery + 'static,
) -> RwSignal<Option<ViewData>> {
    let out = RwSignal::new(None);
    let version = shared().version;
    Effect::new(move |_| {
        version.track();
        let q = query();
        spawn_local(async move {
            if let Some(ResponseBody::View(v)) = ask(RequestBody::View { space, query: q }).await {
                out.set(Some(v));
            }
        });
    });
    out
}

const PAGE: u32 = 50;

#[component]
fn Notices(space: SpaceId) -> impl IntoView {
    let limit = RwSignal::new(PAGE);
    let data = live_view(space, move || ViewQuery::Notices {
        offset: 0,
        limit: limit.get(),
    });
    let title = RwSignal::new(String::new());
    let body = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let post = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let ti = title.get_untracked().trim().to_owned();
        if ti.is_empty() {
            error.set(Some("err.title"));
            return;
        }
        error.set(None);
        busy.set(true);
        let b = body.get_untracked();
        spawn_local(async move {
            if act(space, vec![Op::PostNotice { title: ti, body: b }]).await {
                title.set(String::new());
                body.set(String::new());
                alert(shared(), t(lang(), "notices.posted").into());
            }
            busy.set(false);
        });
    };
    let items = move || match data.get() {
        Some(ViewData::Notices(p)) => (p.items, p.total),
        _ => (Vec::new(), 0),
    };
    view! {
        <section class="card">
            <h2>{tr("notices.new")}</h2>
            <form on:submit=post novalidate>
                <label for="notice-title">{tr("notices.title")}</label>
                <input id="notice-title" maxlength="300" prop:value=move || title.get()
                    on:input=move |ev| title.set(event_target_value(&ev))/>
                <label for="notice-body">{tr("notices.body")}</label>
                <textarea id="notice-body" rows="3" prop:value=move || body.get()
                    on:input=move |ev| body.set(event_target_value(&ev))></textarea>
                <Show when=move || error.get().is_some()>
                    <p class="error" role="alert">{move || error.get().map(|k| t(lang(), k))}</p>
                </Show>
                <button type="submit" class="primary" id="post-notice" disabled=move || busy.get()>{tr("notices.post")}</button>
            </form>
        </section>
        <section aria-labelledby="notices-heading">
            <h2 id="notices-heading" class="visually-hidden">{tr("tab.notices")}</h2>
            <Show when=move || items().1 == 0>
                <p class="muted">{tr("notices.none")}</p>
            </Show>
            <ul class="notices">
                <For each=move || items().0 key=|n| (n.id, n.title.clone(), n.body.clone(), n.pinned) let:n>
                    <NoticeItem space=space n=n/>
                </For>
            </ul>
            <Show when=move || { let (v, total) = items(); (v.len() as u32) < total }>
                <button on:click=move |_| limit.update(|l| *l += PAGE)>{tr("common.more")}</button>
            </Show>
        </section>
    }
}

#[component]
fn NoticeItem(space: SpaceId, n: NoticeView) -> impl IntoView {
    let id = n.id;
    let pinned = n.pinned;
    let editing = RwSignal::new(false);
    let title = RwSignal::new(n.title.clone());
    let body = RwSignal::new(n.body.clone());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let ti = title.get_untracked();
        let b = body.get_untracked();
        spawn_local(async move {
            if act(
                space,
                vec![Op::EditNotice {
                    notice: Hash(id),
                    title: Some(ti),
                    body: Some(b),
                }],
            )
            .await
            {
                editing.set(false);
            }
        });
    };
    view! {
        <li class="notice" class:pinned=pinned>
            <Show when=move || editing.get() fallback=move || view! {
                <h3>{pinned.then(|| view! { <span class="badge">{tr("notices.pinned")}</span> })}{title.get_untracked()}</h3>
                <p class="body">{body.get_untracked()}</p>
            }>
                <form on:submit=save>
                    <input prop:value=move || title.get() on:input=move |ev| title.set(event_target_value(&ev))/>
                    <textarea rows="3" prop:value=move || body.get() on:input=move |ev| body.set(event_target_value(&ev))></textarea>
                    <button type="submit" class="primary">{tr("notices.save")}</button>
                    <button type="button" on:click=move |_| editing.set(false)>{tr("common.cancel")}</button>
                </form>
            </Show>
            <p class="meta">{n.author.clone()}" · "{fmt_time(n.posted_ms)}</p>
            <div class="actions">
                <Show when=move || n.can_edit>
                    <button class="link" on:click=move |_| editing.set(true)>{tr("notices.edit")}</button>
                    <button class="link" on:click=move |_| spawn_local(async move {
                        act(space, vec![Op::PinNotice { notice: Hash(id), pinned: !pinned }]).await;
                    })>{if pinned { tr("notices.unpin")() } else { tr("notices.pin")() }}</button>
                    <button class="link danger" on:click=move |_| spawn_local(async move {
                        act(space, vec![Op::DeleteNotice { notice: Hash(id) }]).await;
                    })>{tr("notices.delete")}</button>
                </Show>
            </div>
        </li>
    }
}

#[component]
fn Members(space: SpaceId) -> impl IntoView {
    let data = live_view(space, || ViewQuery::Members);
    let role = RwSignal::new(1u8);
    let link = RwSignal::new(None::<String>);
    let invite = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let r = role.get_untracked();
        spawn_local(async move {
            if let Some(ResponseBody::Invite { fragment }) = ask(RequestBody::CreateInvite {
                space,
                role: r,
                valid_hours: 24 * 7,
            })
            .await
            {
                let base = web_sys::window()
                    .and_then(|w| w.location().href().ok())
                    .map(|h| h.split('#').next().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                link.set(Some(format!("{base}#{fragment}")));
            }
        });
    };
    let rows = move || match data.get() {
        Some(ViewData::Members(m)) => m.members,
        _ => Vec::new(),
    };
    view! {
        <section class="card">
            <h2>{tr("tab.members")}</h2>
            <table class="members">
                <tbody>
                    <For each=move || rows() key=|m| (m.id, m.role, m.removed, m.name.clone()) let:m>
                        <tr class:removed=m.removed>
                            <td>{m.name.clone()}</td>
                            <td>{t(lang(), role_key(m.role))}</td>
                            <td class="mono">{m.fingerprint.clone()}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
        <section class="card">
            <h2>{tr("members.invite")}</h2>
            <form on:submit=invite>
                <label for="invite-role">{tr("members.role")}</label>
                <select id="invite-role" on:change=move |ev| role.set(event_target_value(&ev).parse().unwrap_or(1))>
                    <option value="1" selected>{tr("role.1")}</option>
                    <option value="0">{tr("role.0")}</option>
                    <option value="2">{tr("role.2")}</option>
                    <option value="3">{tr("role.3")}</option>
                </select>
                <button type="submit" class="primary" id="create-invite">{tr("members.create_invite")}</button>
            </form>
            <Show when=move || link.get().is_some()>
                <p>{tr("members.link")}</p>
                <input readonly id="invite-output" class="mono" prop:value=move || link.get().unwrap_or_default()/>
            </Show>
        </section>
    }
}

fn download(file_name: &str, bytes: &[u8]) {
    let array = js_sys::Array::new();
    array.push(&js_sys::Uint8Array::from(bytes).buffer());
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/octet-stream");
    let Ok(blob) = web_sys::Blob::new_with_buffer_source_sequence_and_options(&array, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
        if let Ok(a) = doc.create_element("a") {
            if let Ok(a) = a.dyn_into::<web_sys::HtmlAnchorElement>() {
                a.set_href(&url);
                a.set_download(file_name);
                a.click();
            }
        }
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

#[component]
fn SyncPanel(space: SpaceId) -> impl IntoView {
    let s = session();
    let sh = shared();
    let summary = RwSignal::new(None::<civicbase_proto::ImportSummary>);
    let backup = RwSignal::new(None::<String>);
    let export = move |_| {
        spawn_local(async move {
            if let Some(ResponseBody::Bundle { file_name, bytes }) =
                ask(RequestBody::ExportBundle { space }).await
            {
                download(&file_name, &bytes);
            }
        });
    };
    let import = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        input.set_value("");
        spawn_local(async move {
            let Ok(buf) = wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await else {
                alert(shared(), "The file could not be read.".into());
                return;
            };
            let bytes = js_sys::Uint8Array::new(&buf).to_vec();
            if let Some(ResponseBody::Imported(sum)) =
                ask(RequestBody::ImportBundle { bytes }).await
            {
                summary.set(Some(sum));
            }
        });
    };
    let show_backup = move |_| {
        spawn_local(async move {
            if let Some(ResponseBody::Backup(b)) = ask(RequestBody::ExportIdentity).await {
                backup.set(Some(b));
            }
        });
    };
    let mb = |v: Option<u64>| {
        v.map_or_else(
            || "?".to_owned(),
            |b| format!("{:.1} MB", b as f64 / 1_048_576.0),
        )
    };
    view! {
        <section class="card">
            <h2>{tr("sync.identity")}</h2>
            <p>{move || s.identity.get().map(|i| format!("{} · {}", i.name, i.fingerprint))}</p>
            <p class="mono small" id="device-id">{move || s.identity.get().map(|i| i.device_text)}</p>
            <button on:click=show_backup>{tr("sync.backup")}</button>
            <Show when=move || backup.get().is_some()>
                <p class="muted">{tr("sync.backup_note")}</p>
                <textarea readonly rows="2" class="mono">{move || backup.get().unwrap_or_default()}</textarea>
            </Show>
        </section>
        <section class="card">
            <h2>{tr("tab.sync")}</h2>
            <dl class="status">
                <dt>{tr("sync.tabs")}</dt><dd id="tab-count">{move || sh.status.get().tabs}</dd>
                <dt></dt><dd id="leader">{move || if sh.status.get().leader { tr("sync.leader")() } else { tr("sync.follower")() }}</dd>
                <dt>{tr("sync.pending")}</dt><dd>{move || sh.status.get().pending}</dd>
                <dt>{tr("sync.storage")}</dt><dd>{move || { let st = sh.status.get(); format!("{} / {}", mb(st.usage), mb(st.quota)) }}</dd>
                <dt>{tr("sync.persisted")}</dt><dd id="persisted">{move || match s.persist.get().or(sh.status.get().persisted) {
                    Some(true) => tr("sync.persist_yes")(),
                    Some(false) => tr("sync.persist_no")(),
                    None => tr("sync.persist_unknown")(),
                }}</dd>
            </dl>
            <h3>{tr("sync.peers")}</h3>
            <Show when=move || sh.status.get().peers.is_empty() fallback=move || view! {
                <ul>{move || sh.status.get().peers.into_iter().map(|p| view! {
                    <li>{p.label}" · "{p.via}{p.last_sync_ms.map(|m| format!(" · {}", fmt_time(m)))}</li>
                }).collect_view()}</ul>
            }>
                <p class="muted">{tr("sync.none")}</p>
            </Show>
        </section>
        <section class="card">
            <button class="primary" id="export-bundle" on:click=export>{tr("sync.export")}</button>
            <label class="file">{tr("sync.import")}
                <input type="file" id="import-bundle" accept=".civicbase,application/octet-stream" on:change=import/>
            </label>
            <Show when=move || summary.get().is_some()>
                {move || summary.get().map(|sum| view! {
                    <div class="summary" id="import-summary" role="status">
                        <h3>{tr("sync.imported")}": "{sum.space_name.clone()}</h3>
                        <p>{format!("+{} · = {} · … {} · ✕ {}", sum.added, sum.duplicates, sum.pending, sum.rejected.len())}</p>
                        <ul>{sum.rejected.iter().map(|r| view! { <li class="error">{r.clone()}</li> }).collect_view()}</ul>
                    </div>
                })}
            </Show>
        </section>
        <p class="mono small muted">{hex(&space)}</p>
    }
}
