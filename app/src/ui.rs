//! The views.

use civicbase_core::op::{encode_payload, Choice, NeedKind, Op, Role, Urgency};
use civicbase_core::{AuthorId, Hash};
use civicbase_proto::{
    IdentityInfo, NeedFilter, NeedView, NoticeView, ProposalView, RequestBody, ResponseBody,
    SpaceSummary, StatusInfo, ViewData, ViewQuery,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::client::{self, alert, info, Shared};
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
            alert(shared(), crate::i18n::error_text(&e));
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
        signaling: RwSignal::new(crate::mesh::Signaling::Idle),
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
    crate::mesh::init(shared);
    client::start(shared);
    register_service_worker();
    // Peers see this device's name.
    Effect::new(move |_| {
        if let Some(i) = s.identity.get() {
            crate::mesh::set_name(i.name);
        }
    });
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
    // A backup file fills the text field; restoring stays one deliberate click.
    let load_backup = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        spawn_local(async move {
            match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(text) => backup.set(text.as_string().unwrap_or_default().trim().to_owned()),
                Err(_) => alert(shared(), t(lang(), "onboard.backup_unreadable").into()),
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
                    <label class="file">{tr("onboard.backup_file")}
                        <input type="file" id="backup-file" accept=".txt,text/plain" on:change=load_backup/>
                    </label>
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
                        <button class="space" data-entries=sp.entries.to_string() on:click=move |_| s.current.set(Some(sp.id))>
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
    Decisions,
    Needs,
    Hearts,
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
            {tab_button(Tab::Decisions, "tab.decisions")}
            {tab_button(Tab::Needs, "tab.needs")}
            {tab_button(Tab::Hearts, "tab.hearts")}
            {tab_button(Tab::Members, "tab.members")}
            {tab_button(Tab::Sync, "tab.sync")}
        </div>
        {move || match tab.get() {
            Tab::Notices => view! { <Notices space=space()/> }.into_any(),
            Tab::Decisions => view! { <Decisions space=space()/> }.into_any(),
            Tab::Needs => view! { <Needs space=space()/> }.into_any(),
            Tab::Hearts => view! { <Hearts space=space()/> }.into_any(),
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
    // Answers can arrive out of order (filters typed quickly): keep the latest.
    let asked = StoredValue::new(0u64);
    Effect::new(move |_| {
        version.track();
        let q = query();
        asked.update_value(|n| *n += 1);
        let mine = asked.get_value();
        spawn_local(async move {
            if let Some(ResponseBody::View(v)) = ask(RequestBody::View { space, query: q }).await {
                if asked.try_get_value() == Some(mine) {
                    out.set(Some(v));
                }
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
                info(shared(), t(lang(), "notices.posted").into());
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
    let mr = me_and_role(space);
    let admin = move || mr.get().1 == Some(3);
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
                uses: 1,
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
                            <td>{m.name.clone()}{move || (mr.get().0 == Some(m.id)).then(|| format!(" {}", t(lang(), "members.you")))}</td>
                            <td>{t(lang(), role_key(m.role))}</td>
                            <td class="mono">{m.fingerprint.clone()}</td>
                            <Show when=move || admin() && !m.removed && mr.get().0 != Some(m.id)>
                                <td><MemberAdmin space=space member=m.id role=m.role/></td>
                            </Show>
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
                <figure class="qr">
                    <div id="invite-qr" role="img" aria-label=tr("members.qr")
                        inner_html=move || link.get().and_then(|l| qr_svg(&l)).unwrap_or_default()></div>
                    <figcaption class="muted">{tr("members.qr")}</figcaption>
                </figure>
            </Show>
        </section>
    }
}

/// The invite link as a QR code (an SVG document), for a phone's camera.
/// `None` if the text does not fit in a QR code.
fn qr_svg(text: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = qr.size();
    let border = 4;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let dim = size + 2 * border;
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {dim} {dim}\" \
         shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

/// An admin's controls for one member: change the role, remove (confirmed).
#[component]
fn MemberAdmin(space: SpaceId, member: SpaceId, role: u8) -> impl IntoView {
    let chosen = RwSignal::new(role);
    let confirming = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let set_role = move |_| {
        let r = chosen.get_untracked();
        busy.set(true);
        spawn_local(async move {
            let op = Op::SetRole {
                member: AuthorId(member),
                role: role_from(r),
            };
            if act(space, vec![op]).await {
                info(shared(), t(lang(), "members.role_changed").into());
            }
            busy.set(false);
        });
    };
    let remove = move |_| {
        busy.set(true);
        spawn_local(async move {
            let op = Op::Remove {
                member: AuthorId(member),
            };
            if act(space, vec![op]).await {
                info(shared(), t(lang(), "members.removed").into());
            }
            confirming.set(false);
            busy.set(false);
        });
    };
    view! {
        <div class="member-admin">
            <select class="member-role" aria-label=move || tr("members.role")()
                on:change=move |ev| chosen.set(event_target_value(&ev).parse().unwrap_or(role))>
                {(0u8..=3).map(|r| view! {
                    <option value=r.to_string() selected=r == role>{tr(role_key(r))}</option>
                }).collect_view()}
            </select>
            <button type="button" class="member-set-role" on:click=set_role
                disabled=move || busy.get() || chosen.get() == role>{tr("members.change_role")}</button>
            <Show when=move || confirming.get() fallback=move || view! {
                <button type="button" class="link danger member-remove"
                    on:click=move |_| confirming.set(true)>{tr("members.remove")}</button>
            }>
                <p class="error" role="alert">{tr("members.confirm_remove")}</p>
                <button type="button" class="danger member-remove-confirm" disabled=move || busy.get()
                    on:click=remove>{tr("members.confirm")}</button>
                <button type="button" on:click=move |_| confirming.set(false)>{tr("common.cancel")}</button>
            </Show>
        </div>
    }
}

/// This member's id and role in `space`, read again on every change.
fn me_and_role(space: SpaceId) -> Memo<(Option<SpaceId>, Option<u8>)> {
    let ov = live_view(space, || ViewQuery::Overview);
    Memo::new(move |_| match ov.get() {
        Some(ViewData::Overview(o)) => (o.me, o.role),
        _ => (None, None),
    })
}

fn role_from(r: u8) -> Role {
    match r {
        0 => Role::Viewer,
        1 => Role::Member,
        2 => Role::Coordinator,
        _ => Role::Admin,
    }
}

/// Shows the form's validation message, if any.
fn form_error(error: RwSignal<Option<&'static str>>) -> impl IntoView {
    view! {
        <Show when=move || error.get().is_some()>
            <p class="error" role="alert">{move || error.get().map(|k| t(lang(), k))}</p>
        </Show>
    }
}

fn invalid(
    error: RwSignal<Option<&'static str>>,
    keys: &'static [&'static str],
) -> impl Fn() -> Option<&'static str> + Copy {
    move || {
        error
            .get()
            .is_some_and(|k| keys.contains(&k))
            .then_some("true")
    }
}

/// A `datetime-local` value ("2025-03-01T18:30", local time) as Unix ms.
fn parse_local_datetime(s: &str) -> Option<u64> {
    if s.trim().is_empty() {
        return None;
    }
    let ms = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(s.trim())).get_time();
    (ms.is_finite() && ms > 0.0).then_some(ms as u64)
}

/// Unix ms as a `datetime-local` value in local time.
fn local_datetime(ms: f64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        d.get_hours(),
        d.get_minutes()
    )
}

const DAY_MS: f64 = 24.0 * 3_600_000.0;

#[component]
fn Decisions(space: SpaceId) -> impl IntoView {
    let limit = RwSignal::new(PAGE);
    let data = live_view(space, move || ViewQuery::Decisions {
        offset: 0,
        limit: limit.get(),
    });
    let title = RwSignal::new(String::new());
    let body = RwSignal::new(String::new());
    let deadline = RwSignal::new(local_datetime(js_sys::Date::now() + 7.0 * DAY_MS));
    let quorum = RwSignal::new("1".to_owned());
    let error = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let propose = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let ti = title.get_untracked().trim().to_owned();
        if ti.is_empty() {
            error.set(Some("err.title"));
            return;
        }
        let Some(deadline_ms) = parse_local_datetime(&deadline.get_untracked()) else {
            error.set(Some("err.deadline"));
            return;
        };
        if (deadline_ms as f64) <= js_sys::Date::now() {
            error.set(Some("err.deadline_past"));
            return;
        }
        let Ok(q) = quorum.get_untracked().trim().parse::<u32>() else {
            error.set(Some("err.quorum"));
            return;
        };
        error.set(None);
        busy.set(true);
        let b = body.get_untracked();
        spawn_local(async move {
            let op = Op::Propose {
                title: ti,
                body: b,
                deadline_ms,
                quorum: q,
            };
            if act(space, vec![op]).await {
                title.set(String::new());
                body.set(String::new());
                info(shared(), t(lang(), "decisions.proposed").into());
            }
            busy.set(false);
        });
    };
    let items = move || match data.get() {
        Some(ViewData::Decisions(p)) => (p.items, p.total),
        _ => (Vec::new(), 0),
    };
    // A proposal closes at its deadline: read the view again then, so the
    // result shows without a reload.
    Effect::new(move |_| {
        let now = js_sys::Date::now();
        let next = items()
            .0
            .iter()
            .filter(|p| p.status == 0 && p.deadline_ms as f64 > now)
            .map(|p| p.deadline_ms as f64)
            .fold(f64::INFINITY, f64::min);
        if next.is_finite() {
            // Browsers run at most ~24.8 days ahead; a later deadline is
            // looked at again when the view is next read.
            let wait = (next - now + 250.0).min(2_000_000_000.0);
            set_timeout(
                move || shared().version.update(|v| *v += 1),
                std::time::Duration::from_millis(wait as u64),
            );
        }
    });
    view! {
        <section class="card">
            <h2>{tr("decisions.new")}</h2>
            <form on:submit=propose novalidate>
                <label for="propose-title">{tr("decisions.title")}</label>
                <input id="propose-title" maxlength="300" prop:value=move || title.get()
                    aria-invalid=invalid(error, &["err.title"])
                    on:input=move |ev| title.set(event_target_value(&ev))/>
                <label for="propose-body">{tr("decisions.body")}</label>
                <textarea id="propose-body" rows="3" prop:value=move || body.get()
                    on:input=move |ev| body.set(event_target_value(&ev))></textarea>
                <label for="propose-deadline">{tr("decisions.deadline")}</label>
                <input id="propose-deadline" type="datetime-local" prop:value=move || deadline.get()
                    aria-invalid=invalid(error, &["err.deadline", "err.deadline_past"])
                    on:input=move |ev| deadline.set(event_target_value(&ev))/>
                <label for="propose-quorum">{tr("decisions.quorum")}</label>
                <input id="propose-quorum" type="number" min="0" step="1" inputmode="numeric"
                    prop:value=move || quorum.get()
                    aria-invalid=invalid(error, &["err.quorum"])
                    on:input=move |ev| quorum.set(event_target_value(&ev))/>
                {form_error(error)}
                <button type="submit" class="primary" id="propose-submit" disabled=move || busy.get()>{tr("decisions.propose")}</button>
            </form>
        </section>
        <section aria-labelledby="decisions-heading">
            <h2 id="decisions-heading" class="visually-hidden">{tr("tab.decisions")}</h2>
            <Show when=move || items().1 == 0>
                <p class="muted">{tr("decisions.none")}</p>
            </Show>
            <ul class="proposals">
                <For each=move || items().0
                    key=|p| (p.id, p.yes, p.no, p.abstain, p.my_vote, p.status, p.is_final, p.comments.len())
                    let:p>
                    <ProposalItem space=space p=p/>
                </For>
            </ul>
            <Show when=move || { let (v, total) = items(); (v.len() as u32) < total }>
                <button on:click=move |_| limit.update(|l| *l += PAGE)>{tr("common.more")}</button>
            </Show>
        </section>
    }
}

fn choice_from(c: u8) -> Choice {
    match c {
        0 => Choice::Yes,
        1 => Choice::No,
        _ => Choice::Abstain,
    }
}

#[component]
fn ProposalItem(space: SpaceId, p: ProposalView) -> impl IntoView {
    let id = p.id;
    let open = p.status == 0;
    let mine = p.my_vote;
    let counted = (p.yes + p.no + p.abstain).max(1);
    let status_key = match p.status {
        0 => "decisions.status.0",
        1 => "decisions.status.1",
        2 => "decisions.status.2",
        _ => "decisions.status.3",
    };
    let vote = move |c: u8| {
        spawn_local(async move {
            act(
                space,
                vec![Op::Vote {
                    proposal: Hash(id),
                    choice: choice_from(c),
                }],
            )
            .await;
        })
    };
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let send_comment = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = comment.get_untracked().trim().to_owned();
        if text.is_empty() {
            error.set(Some("err.comment"));
            return;
        }
        error.set(None);
        spawn_local(async move {
            if act(
                space,
                vec![Op::Comment {
                    proposal: Hash(id),
                    body: text,
                }],
            )
            .await
            {
                comment.set(String::new());
            }
        });
    };
    let rows = [
        (0u8, "decisions.yes", "yes", p.yes),
        (1u8, "decisions.no", "no", p.no),
        (2u8, "decisions.abstain", "abstain", p.abstain),
    ];
    let comment_id = format!("comment-{}", &hex(&id)[..12]);
    view! {
        <li class="proposal" class:closed=!open data-status=p.status.to_string()>
            <h3>
                <span class=format!("badge status-{}", p.status)>{tr(status_key)}</span>
                {p.title.clone()}
            </h3>
            <p class="body">{p.body.clone()}</p>
            <p class="meta">
                {p.author.clone()}" · "
                {if open { tr("decisions.closes")() } else { tr("decisions.closed")() }}" "
                {fmt_time(p.deadline_ms)}" · "{tr("decisions.quorum_short")}": "{p.quorum}
            </p>
            <div class="tally" role="group" aria-label=move || tr("decisions.tally")()>
                {rows.into_iter().map(|(c, key, cls, n)| view! {
                    <div class="tally-row" class:chosen=mine == Some(c)>
                        <span class="tally-label">{tr(key)}</span>
                        <span class="bar-track"><span class=format!("bar {cls}")
                            style=format!("width: {}%", n * 100 / counted)></span></span>
                        <span class=format!("count tally-{cls}")>{n}</span>
                    </div>
                }).collect_view()}
            </div>
            <p class="muted tally-kind" data-final=p.is_final.to_string()>
                {tr(if p.is_final { "decisions.final" } else { "decisions.provisional" })}
            </p>
            <p class="muted my-vote">{match mine {
                Some(c) => format!("{}: {}", t(lang(), "decisions.my_vote"), t(lang(), match c {
                    0 => "decisions.yes",
                    1 => "decisions.no",
                    _ => "decisions.abstain",
                })),
                None if open => t(lang(), "decisions.not_voted").to_owned(),
                None => String::new(),
            }}{(!open).then(|| format!(" {}", t(lang(), "decisions.vote_closed")))}</p>
            <div class="actions votes">
                {rows.into_iter().map(|(c, key, cls, _)| view! {
                    <button type="button" class=format!("vote vote-{cls}") class:primary=mine == Some(c)
                        aria-pressed=(mine == Some(c)).to_string() disabled=!open
                        on:click=move |_| vote(c)>{tr(key)}</button>
                }).collect_view()}
            </div>
            <details class="comments">
                <summary>{tr("decisions.comments")}" ("{p.comments.len()}")"</summary>
                {if p.comments.is_empty() {
                    view! { <p class="muted">{tr("decisions.no_comments")}</p> }.into_any()
                } else {
                    view! {
                        <ul class="comment-list">
                            {p.comments.iter().map(|(who, text)| view! {
                                <li><strong>{who.clone()}</strong>": "<span class="body">{text.clone()}</span></li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
                <form on:submit=send_comment novalidate>
                    <label for=comment_id.clone()>{tr("decisions.comment")}</label>
                    <textarea id=comment_id class="comment-input" rows="2" maxlength="32768"
                        prop:value=move || comment.get()
                        on:input=move |ev| comment.set(event_target_value(&ev))></textarea>
                    {form_error(error)}
                    <button type="submit" class="comment-submit">{tr("decisions.comment_btn")}</button>
                </form>
            </details>
        </li>
    }
}

fn urgency_from(u: u8) -> Urgency {
    match u {
        0 => Urgency::Low,
        1 => Urgency::Normal,
        2 => Urgency::High,
        _ => Urgency::Critical,
    }
}

fn urgency_key(u: u8) -> &'static str {
    match u {
        0 => "urgency.0",
        1 => "urgency.1",
        2 => "urgency.2",
        _ => "urgency.3",
    }
}

fn need_status_key(s: u8) -> &'static str {
    match s {
        0 => "needs.status.0",
        1 => "needs.status.1",
        _ => "needs.status.2",
    }
}

fn opt_u8(ev: &leptos::ev::Event) -> Option<u8> {
    event_target_value(ev).parse().ok()
}

#[component]
fn Needs(space: SpaceId) -> impl IntoView {
    let mr = me_and_role(space);
    let limit = RwSignal::new(PAGE);
    let f_kind = RwSignal::new(None::<u8>);
    let f_category = RwSignal::new(String::new());
    let f_urgency = RwSignal::new(None::<u8>);
    let f_status = RwSignal::new(None::<u8>);
    let data = live_view(space, move || ViewQuery::Needs {
        filter: NeedFilter {
            kind: f_kind.get(),
            category: Some(f_category.get().trim().to_owned()).filter(|c| !c.is_empty()),
            min_urgency: f_urgency.get(),
            status: f_status.get(),
        },
        offset: 0,
        limit: limit.get(),
    });
    let kind = RwSignal::new(0u8);
    let category = RwSignal::new(String::new());
    let urgency = RwSignal::new(1u8);
    let location = RwSignal::new(String::new());
    let title = RwSignal::new(String::new());
    let details = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let ti = title.get_untracked().trim().to_owned();
        let cat = category.get_untracked().trim().to_owned();
        let loc = location.get_untracked().trim().to_owned();
        if ti.is_empty() {
            error.set(Some("err.title"));
            return;
        }
        if cat.chars().count() > 500 || loc.chars().count() > 500 {
            error.set(Some("err.short"));
            return;
        }
        error.set(None);
        busy.set(true);
        let op = Op::CreateNeed {
            kind: if kind.get_untracked() == 0 {
                NeedKind::Need
            } else {
                NeedKind::Offer
            },
            category: cat,
            urgency: urgency_from(urgency.get_untracked()),
            location: loc,
            title: ti,
            details: details.get_untracked(),
        };
        spawn_local(async move {
            if act(space, vec![op]).await {
                title.set(String::new());
                details.set(String::new());
                info(shared(), t(lang(), "needs.created").into());
            }
            busy.set(false);
        });
    };
    let items = move || match data.get() {
        Some(ViewData::Needs(p)) => (p.items, p.total),
        _ => (Vec::new(), 0),
    };
    let coordinator = move || mr.get().1.is_some_and(|r| r >= 2);
    view! {
        <section class="card">
            <h2>{tr("needs.new")}</h2>
            <form on:submit=create novalidate>
                <label for="need-kind">{tr("needs.kind")}</label>
                <select id="need-kind" on:change=move |ev| kind.set(opt_u8(&ev).unwrap_or(0))>
                    <option value="0" selected>{tr("needs.kind.0")}</option>
                    <option value="1">{tr("needs.kind.1")}</option>
                </select>
                <label for="need-title">{tr("needs.title")}</label>
                <input id="need-title" maxlength="300" prop:value=move || title.get()
                    aria-invalid=invalid(error, &["err.title"])
                    on:input=move |ev| title.set(event_target_value(&ev))/>
                <label for="need-category">{tr("needs.category")}</label>
                <input id="need-category" maxlength="500"
                    placeholder=move || tr("needs.category_ph")()
                    prop:value=move || category.get()
                    aria-invalid=invalid(error, &["err.short"])
                    on:input=move |ev| category.set(event_target_value(&ev))/>
                <label for="need-urgency">{tr("needs.urgency")}</label>
                <select id="need-urgency" on:change=move |ev| urgency.set(opt_u8(&ev).unwrap_or(1))>
                    {(0u8..=3).map(|u| view! {
                        <option value=u.to_string() selected=u == 1>{tr(urgency_key(u))}</option>
                    }).collect_view()}
                </select>
                <label for="need-location">{tr("needs.location")}</label>
                <input id="need-location" maxlength="500" prop:value=move || location.get()
                    aria-invalid=invalid(error, &["err.short"])
                    on:input=move |ev| location.set(event_target_value(&ev))/>
                <label for="need-details">{tr("needs.details")}</label>
                <textarea id="need-details" rows="3" maxlength="32768" prop:value=move || details.get()
                    on:input=move |ev| details.set(event_target_value(&ev))></textarea>
                {form_error(error)}
                <button type="submit" class="primary" id="need-submit" disabled=move || busy.get()>{tr("needs.create")}</button>
            </form>
        </section>
        <section class="card filters" aria-labelledby="needs-filter-heading">
            <h2 id="needs-filter-heading">{tr("needs.filters")}</h2>
            <label for="filter-kind">{tr("needs.kind")}</label>
            <select id="filter-kind" on:change=move |ev| f_kind.set(opt_u8(&ev))>
                <option value="" selected>{tr("needs.all")}</option>
                <option value="0">{tr("needs.kind.0")}</option>
                <option value="1">{tr("needs.kind.1")}</option>
            </select>
            <label for="filter-category">{tr("needs.category")}</label>
            <input id="filter-category" prop:value=move || f_category.get()
                on:input=move |ev| f_category.set(event_target_value(&ev))/>
            <label for="filter-urgency">{tr("needs.min_urgency")}</label>
            <select id="filter-urgency" on:change=move |ev| f_urgency.set(opt_u8(&ev))>
                <option value="" selected>{tr("needs.any")}</option>
                {(0u8..=3).map(|u| view! {
                    <option value=u.to_string()>{tr(urgency_key(u))}</option>
                }).collect_view()}
            </select>
            <label for="filter-status">{tr("needs.status")}</label>
            <select id="filter-status" on:change=move |ev| f_status.set(opt_u8(&ev))>
                <option value="" selected>{tr("needs.all")}</option>
                {(0u8..=2).map(|st| view! {
                    <option value=st.to_string()>{tr(need_status_key(st))}</option>
                }).collect_view()}
            </select>
        </section>
        <section aria-labelledby="needs-heading">
            <h2 id="needs-heading" class="visually-hidden">{tr("tab.needs")}</h2>
            <Show when=move || items().1 == 0>
                <p class="muted">{tr("needs.none")}</p>
            </Show>
            <ul class="needs">
                <For each=move || items().0 key=|n| (n.id, n.status, n.claimer.clone()) let:n>
                    <NeedItem space=space n=n coordinator=coordinator()/>
                </For>
            </ul>
            <Show when=move || { let (v, total) = items(); (v.len() as u32) < total }>
                <button on:click=move |_| limit.update(|l| *l += PAGE)>{tr("common.more")}</button>
            </Show>
        </section>
    }
}

#[component]
fn NeedItem(space: SpaceId, n: NeedView, coordinator: bool) -> impl IntoView {
    let id = n.id;
    let run = move |op: fn(Hash) -> Op| {
        spawn_local(async move {
            act(space, vec![op(Hash(id))]).await;
        })
    };
    let kind_key = if n.kind == 0 {
        "needs.kind.0"
    } else {
        "needs.kind.1"
    };
    let place = [n.category.clone(), n.location.clone()]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <li class="need" class:offer=n.kind == 1 data-status=n.status.to_string()>
            <h3>
                <span class="badge">{tr(kind_key)}</span>
                <span class=format!("badge urgency-{}", n.urgency)>{tr(urgency_key(n.urgency))}</span>
                {n.title.clone()}
            </h3>
            <p class="meta">{place}</p>
            <p class="body">{n.details.clone()}</p>
            <p class="meta">
                {n.author.clone()}" · "
                <span class="need-status">{tr(need_status_key(n.status))}</span>
                {n.claimer.clone().map(|c| format!(" · {} {c}", t(lang(), "needs.claimed_by")))}
            </p>
            <div class="actions">
                {(n.status == 0).then(|| view! {
                    <button type="button" class="need-claim"
                        on:click=move |_| run(|need| Op::ClaimNeed { need })>{tr("needs.claim")}</button>
                })}
                {(n.status != 2).then(|| view! {
                    <button type="button" class="need-done"
                        on:click=move |_| run(|need| Op::CompleteNeed { need })>{tr("needs.done")}</button>
                })}
                {(n.status != 0 && (n.mine || coordinator)).then(|| view! {
                    <button type="button" class="need-reopen"
                        on:click=move |_| run(|need| Op::ReopenNeed { need })>{tr("needs.reopen")}</button>
                })}
            </div>
        </li>
    }
}

#[component]
fn Hearts(space: SpaceId) -> impl IntoView {
    let mr = me_and_role(space);
    let limit = RwSignal::new(PAGE);
    let data = live_view(space, move || ViewQuery::Hearts {
        offset: 0,
        limit: limit.get(),
    });
    let view_data = move || match data.get() {
        Some(ViewData::Hearts(h)) => Some(h),
        _ => None,
    };
    let balances = move || view_data().map(|h| h.balances).unwrap_or_default();
    let others = move || {
        let me = mr.get().0;
        balances()
            .into_iter()
            .filter(|b| Some(b.0) != me)
            .map(|b| (b.0, b.1))
            .collect::<Vec<_>>()
    };
    let to = RwSignal::new(String::new());
    let amount = RwSignal::new(String::new());
    let memo = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let transfer = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(recipient) = Hash::from_hex(&to.get_untracked()).ok() else {
            error.set(Some("err.recipient"));
            return;
        };
        let Ok(n) = amount.get_untracked().trim().parse::<u64>() else {
            error.set(Some("err.amount"));
            return;
        };
        if n == 0 {
            error.set(Some("err.amount"));
            return;
        }
        if n > 1_000_000 {
            error.set(Some("err.amount_max"));
            return;
        }
        let m = memo.get_untracked().trim().to_owned();
        if m.chars().count() > 500 {
            error.set(Some("err.memo"));
            return;
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let op = Op::Transfer {
                to: AuthorId(recipient.0),
                amount: n,
                memo: m,
            };
            if act(space, vec![op]).await {
                amount.set(String::new());
                memo.set(String::new());
                info(shared(), t(lang(), "hearts.sent").into());
            }
            busy.set(false);
        });
    };
    let history = move || {
        view_data()
            .map(|h| (h.history.items, h.history.total))
            .unwrap_or_default()
    };
    view! {
        <section class="card">
            <h2>{tr("hearts.balances")}</h2>
            <table class="balances" id="balances">
                <thead>
                    <tr>
                        <th scope="col">{tr("hearts.name")}</th>
                        <th scope="col" class="num">{tr("hearts.balance")}</th>
                        <th scope="col" class="num">{tr("hearts.limit")}</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=balances key=|b| b.clone() let:b>
                        <tr class:negative=b.2 < 0>
                            <td>{b.1.clone()}{move || (mr.get().0 == Some(b.0)).then(|| format!(" {}", t(lang(), "members.you")))}</td>
                            <td class="num balance">{b.2}</td>
                            <td class="num">{format!("−{}", b.3)}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>
        <section class="card">
            <h2>{tr("hearts.transfer")}</h2>
            <form on:submit=transfer novalidate>
                <label for="transfer-to">{tr("hearts.to")}</label>
                <select id="transfer-to" prop:value=move || to.get()
                    aria-invalid=invalid(error, &["err.recipient"])
                    on:change=move |ev| to.set(event_target_value(&ev))>
                    <option value="">{tr("hearts.choose")}</option>
                    <For each=others key=|o| o.clone() let:o>
                        <option value=hex(&o.0)>{o.1.clone()}</option>
                    </For>
                </select>
                <label for="transfer-amount">{tr("hearts.amount")}</label>
                <input id="transfer-amount" type="number" min="1" step="1" inputmode="numeric"
                    prop:value=move || amount.get()
                    aria-invalid=invalid(error, &["err.amount", "err.amount_max"])
                    on:input=move |ev| amount.set(event_target_value(&ev))/>
                <label for="transfer-memo">{tr("hearts.memo")}</label>
                <input id="transfer-memo" maxlength="500" prop:value=move || memo.get()
                    aria-invalid=invalid(error, &["err.memo"])
                    on:input=move |ev| memo.set(event_target_value(&ev))/>
                {form_error(error)}
                <button type="submit" class="primary" id="transfer-submit" disabled=move || busy.get()>{tr("hearts.send")}</button>
            </form>
        </section>
        <section class="card">
            <h2>{tr("hearts.history")}</h2>
            <Show when=move || history().1 == 0>
                <p class="muted">{tr("hearts.no_history")}</p>
            </Show>
            <ul class="history" id="hearts-history">
                {move || history().0.into_iter().map(|tv| transfer_row(&tv)).collect_view()}
            </ul>
            <Show when=move || { let (v, total) = history(); (v.len() as u32) < total }>
                <button on:click=move |_| limit.update(|l| *l += PAGE)>{tr("common.more")}</button>
            </Show>
        </section>
        <section class="card conflicts" id="conflicts" aria-labelledby="conflicts-heading">
            <h2 id="conflicts-heading"><span aria-hidden="true">"⚠ "</span>{tr("hearts.conflicts")}</h2>
            <p>{tr("hearts.conflicts_explain")}</p>
            {move || {
                let (conflicts, overdrawn) = view_data()
                    .map(|h| (h.conflicts, h.overdrawn))
                    .unwrap_or_default();
                if conflicts.is_empty() && overdrawn.is_empty() {
                    return view! { <p class="muted">{tr("hearts.no_conflicts")}</p> }.into_any();
                }
                view! {
                    <ul class="history">
                        {conflicts.iter().map(transfer_row).collect_view()}
                    </ul>
                    {(!overdrawn.is_empty()).then(|| view! {
                        <h3>{tr("hearts.overdrawn")}</h3>
                        <ul class="overdrawn">
                            {overdrawn.into_iter().map(|(name, balance, lim)| view! {
                                <li>{name}": "{balance}" ("{tr("hearts.limit")}" −"{lim}")"</li>
                            }).collect_view()}
                        </ul>
                    })}
                }.into_any()
            }}
        </section>
        <Show when=move || mr.get().1 == Some(3)>
            <CreditLimit space=space balances=Signal::derive(balances)/>
        </Show>
    }
}

fn transfer_row(tv: &civicbase_proto::TransferView) -> impl IntoView {
    view! {
        <li class="transfer" class:conflicting=tv.conflicting>
            {tv.conflicting.then(|| view! { <span class="badge warn">{tr("hearts.conflicting")}</span> })}
            <strong>{format!("{} → {}", tv.from, tv.to)}</strong>
            ": "<span class="amount">{tv.amount}</span>" ♥"
            {(!tv.memo.is_empty()).then(|| format!(" · {}", tv.memo))}
            <span class="meta">{format!(" · {}", fmt_time(tv.at_ms))}</span>
        </li>
    }
}

/// The admin's credit-limit form.
#[component]
fn CreditLimit(
    space: SpaceId,
    balances: Signal<Vec<(SpaceId, String, i64, u64)>>,
) -> impl IntoView {
    let member = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    let error = RwSignal::new(None::<&'static str>);
    let busy = RwSignal::new(false);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(m) = Hash::from_hex(&member.get_untracked()).ok() else {
            error.set(Some("err.member"));
            return;
        };
        let Ok(l) = value.get_untracked().trim().parse::<u64>() else {
            error.set(Some("err.limit"));
            return;
        };
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let op = Op::SetCreditLimit {
                member: AuthorId(m.0),
                limit: l,
            };
            if act(space, vec![op]).await {
                value.set(String::new());
                info(shared(), t(lang(), "hearts.limit_saved").into());
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h2>{tr("hearts.set_limit")}</h2>
            <form on:submit=save novalidate>
                <label for="limit-member">{tr("hearts.member")}</label>
                <select id="limit-member" prop:value=move || member.get()
                    aria-invalid=invalid(error, &["err.member"])
                    on:change=move |ev| member.set(event_target_value(&ev))>
                    <option value="">{tr("hearts.choose")}</option>
                    <For each=move || balances.get() key=|b| (b.0, b.1.clone(), b.3) let:b>
                        <option value=hex(&b.0)>{format!("{} (−{})", b.1, b.3)}</option>
                    </For>
                </select>
                <label for="limit-value">{tr("hearts.new_limit")}</label>
                <input id="limit-value" type="number" min="0" step="1" inputmode="numeric"
                    prop:value=move || value.get()
                    aria-invalid=invalid(error, &["err.limit"])
                    on:input=move |ev| value.set(event_target_value(&ev))/>
                {form_error(error)}
                <button type="submit" class="primary" id="limit-submit" disabled=move || busy.get()>{tr("hearts.save_limit")}</button>
            </form>
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

/// Network sync: the signaling connection, pause and resume, and where to
/// find peers.
#[component]
fn NetworkSettings() -> impl IntoView {
    use crate::mesh::{self, Signaling};
    let sh = shared();
    let saved = mesh::settings();
    let url = RwSignal::new(saved.signaling.clone());
    let ice = RwSignal::new(saved.ice.join(" "));
    let error = RwSignal::new(None::<&'static str>);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match mesh::validate(&url.get_untracked(), &ice.get_untracked()) {
            Ok(settings) => {
                error.set(None);
                mesh::save(&settings);
                info(shared(), tr("sync.saved")().to_owned());
            }
            Err(key) => error.set(Some(key)),
        }
    };
    let paused = move || sh.signaling.get() == Signaling::Paused;
    view! {
        <section class="card">
            <h2>{tr("sync.network")}</h2>
            <p id="signaling-state" role="status" data-state=move || format!("{:?}", sh.signaling.get()).to_lowercase()>
                {move || match sh.signaling.get() {
                    Signaling::Idle => tr("sync.sig_idle")(),
                    Signaling::Paused => tr("sync.sig_paused")(),
                    Signaling::Connecting => tr("sync.sig_connecting")(),
                    Signaling::Connected => tr("sync.sig_connected")(),
                }}
            </p>
            <button id="pause-sync" on:click=move |_| mesh::set_paused(!paused())>
                {move || if paused() { tr("sync.resume")() } else { tr("sync.pause")() }}
            </button>
            <details>
                <summary>{tr("sync.settings")}</summary>
                <form on:submit=save novalidate>
                    <label for="signaling-url">{tr("sync.signaling_url")}</label>
                    <input id="signaling-url" type="url" placeholder="wss://…/signal" prop:value=move || url.get()
                        on:input=move |ev| url.set(event_target_value(&ev))
                        aria-invalid=move || (error.get() == Some("sync.bad_signaling")).then_some("true")/>
                    <label for="ice-servers">{tr("sync.ice")}</label>
                    <input id="ice-servers" placeholder="stun:stun.example.org:3478" prop:value=move || ice.get()
                        on:input=move |ev| ice.set(event_target_value(&ev))
                        aria-invalid=move || (error.get() == Some("sync.bad_ice")).then_some("true")/>
                    <Show when=move || error.get().is_some()>
                        <p class="error" role="alert">{move || error.get().map(|k| t(lang(), k))}</p>
                    </Show>
                    <button type="submit">{tr("sync.save")}</button>
                </form>
            </details>
        </section>
    }
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
                alert(shared(), t(lang(), "err.file_unreadable").into());
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
                <button id="save-backup" on:click=move |_| {
                    let text = backup.get_untracked().unwrap_or_default();
                    download("civicbase-identity-backup.txt", text.as_bytes());
                }>{tr("sync.backup_file")}</button>
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
                <ul id="peers">{move || sh.status.get().peers.into_iter().map(|p| {
                    let via = match p.via.as_str() {
                        "direct" => tr("sync.via_direct")().to_owned(),
                        "anchor" => tr("sync.via_anchor")().to_owned(),
                        "tab" => tr("sync.via_tab")().to_owned(),
                        other => other.to_owned(),
                    };
                    view! {
                        <li class="peer" data-via=p.via.clone()>
                            <strong>{p.label}</strong>" · "{via}
                            {p.last_sync_ms.map(|m| format!(" · {} {}", tr("sync.last_sync")(), fmt_time(m)))}
                            {(p.unsent > 0).then(|| format!(" · {} {}", p.unsent, tr("sync.unsent")()))}
                        </li>
                    }
                }).collect_view()}</ul>
            }>
                <p class="muted">{tr("sync.none")}</p>
            </Show>
        </section>
        <NetworkSettings/>
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
