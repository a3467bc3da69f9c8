//! The Dioxus components: chat, conversations, model picker, components
//! panel, settings.

use std::rc::Rc;

use dioxus::core::spawn_forever;
use dioxus::html::{FileData, HasFileData};
use dioxus::prelude::*;
use js_sys::Uint8Array;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasm_bindgen::JsValue;
use web_sys::AbortController;

use crate::api::{
    self, ComponentInfo, ComponentList, Notice, ReloadEvent, StreamItem, admin_error, humanize,
};
use crate::markdown;
use crate::model::{Conversation, Message, Stats};
use crate::net::{self, Call};

const SETTINGS_KEY: &str = "wasmgate.settings";
const CONVS_KEY: &str = "wasmgate.conversations";
const CURRENT_KEY: &str = "wasmgate.current";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub api_key: String,
    pub admin_token: String,
    /// As typed; empty means the model's default.
    pub temperature: String,
    pub max_tokens: String,
    /// "auto", "light" or "dark".
    pub theme: String,
    pub grafana_url: String,
    pub model: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            admin_token: String::new(),
            temperature: String::new(),
            max_tokens: String::new(),
            theme: "auto".into(),
            grafana_url: String::new(),
            model: String::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum View {
    Chat,
    Components,
    Settings,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Models {
    Loading,
    Ready(Vec<String>),
    Failed(String),
}

/// The reply being streamed (one at a time).
#[derive(Clone)]
pub struct Inflight {
    pub conv: String,
    pub controller: AbortController,
}

/// A `.wasm` file dropped or chosen, waiting for a name and a kind.
#[derive(Clone)]
pub struct PendingDeploy {
    pub file_name: String,
    pub bytes: Rc<Vec<u8>>,
}

/// App-wide state: signals are cheap handles, so this is `Copy`.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub settings: Signal<Settings>,
    pub convs: Signal<Vec<Conversation>>,
    pub current: Signal<String>,
    pub models: Signal<Models>,
    pub view: Signal<View>,
    pub inflight: Signal<Option<Inflight>>,
    pub sidebar: Signal<bool>,
    pub pending: Signal<Option<PendingDeploy>>,
    /// Result of the last deploy or removal: (ok, message).
    pub deploy_msg: Signal<Option<(bool, String)>>,
    pub deploying: Signal<bool>,
    /// Bumped to reload the component list.
    pub components_tick: Signal<u64>,
    pub banner: Signal<Option<String>>,
}

impl Ctx {
    fn load() -> Self {
        let settings: Settings = net::load(SETTINGS_KEY)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let mut convs: Vec<Conversation> = net::load(CONVS_KEY)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        convs.iter_mut().for_each(Conversation::settle);
        if convs.is_empty() {
            convs.push(Conversation::new(net::random_id()));
        }
        let current = net::load(CURRENT_KEY)
            .filter(|id| convs.iter().any(|c| &c.id == id))
            .unwrap_or_else(|| convs[0].id.clone());
        Self {
            settings: Signal::new(settings),
            convs: Signal::new(convs),
            current: Signal::new(current),
            models: Signal::new(Models::Loading),
            view: Signal::new(View::Chat),
            inflight: Signal::new(None),
            sidebar: Signal::new(false),
            pending: Signal::new(None),
            deploy_msg: Signal::new(None),
            deploying: Signal::new(false),
            components_tick: Signal::new(0),
            banner: Signal::new(None),
        }
    }

    fn new_conversation(mut self) {
        let c = Conversation::new(net::random_id());
        self.current.set(c.id.clone());
        self.convs.write().insert(0, c);
        self.view.set(View::Chat);
        self.sidebar.set(false);
    }

    fn stop(self) {
        if let Some(i) = self.inflight.read().as_ref() {
            i.controller.abort();
        }
    }
}

#[component]
pub fn App() -> Element {
    let mut ctx = use_context_provider(Ctx::load);
    use_effect(move || net::set_root_attr("data-theme", &ctx.settings.read().theme));
    use_effect(move || {
        if let Ok(s) = serde_json::to_string(&*ctx.settings.read()) {
            net::save(SETTINGS_KEY, &s);
        }
    });
    use_effect(move || {
        if let Ok(s) = serde_json::to_string(&*ctx.convs.read()) {
            net::save(CONVS_KEY, &s);
        }
    });
    use_effect(move || net::save(CURRENT_KEY, &ctx.current.read()));
    use_hook(move || reload_models(ctx));

    let mut dragging = use_signal(|| false);
    let view = (ctx.view)();
    let banner = ctx.banner.read().clone();
    rsx! {
        div {
            class: "app",
            ondragenter: move |e: DragEvent| {
                e.prevent_default();
                dragging.set(true);
            },
            ondragover: move |e: DragEvent| e.prevent_default(),
            ondrop: move |e: DragEvent| {
                e.prevent_default();
                dragging.set(false);
                take_files(ctx, e.files());
            },
            Header {}
            if let Some(text) = banner {
                div { class: "banner", role: "alert",
                    span { "{text}" }
                    button { class: "icon", title: "Dismiss", onclick: move |_| ctx.banner.set(None), "✕" }
                }
            }
            div { class: "body",
                match view {
                    View::Chat => rsx! {
                        Sidebar {}
                        ChatView {}
                    },
                    View::Components => rsx! { ComponentsView {} },
                    View::Settings => rsx! { SettingsView {} },
                }
            }
            if dragging() {
                div {
                    class: "drop-overlay",
                    ondragover: move |e: DragEvent| e.prevent_default(),
                    ondragleave: move |_| dragging.set(false),
                    ondrop: move |e: DragEvent| {
                        e.prevent_default();
                        e.stop_propagation();
                        dragging.set(false);
                        take_files(ctx, e.files());
                    },
                    div { class: "drop-hint", "Drop a .wasm component to deploy it" }
                }
            }
        }
    }
}

/// A dropped or chosen file becomes a pending deploy in the components panel.
fn take_files(mut ctx: Ctx, files: Vec<FileData>) {
    let Some(file) = files.into_iter().next() else {
        return;
    };
    let name = file.name();
    if !name.ends_with(".wasm") {
        ctx.banner.set(Some(format!(
            "`{name}` is not a WebAssembly component: only .wasm files can be deployed."
        )));
        return;
    }
    spawn_forever(async move {
        match file.read_bytes().await {
            Ok(bytes) => {
                ctx.deploy_msg.set(None);
                ctx.pending.set(Some(PendingDeploy {
                    file_name: name,
                    bytes: Rc::new(bytes.to_vec()),
                }));
                ctx.view.set(View::Components);
            }
            Err(e) => ctx
                .banner
                .set(Some(format!("Could not read `{name}`: {e}"))),
        };
    });
}

fn reload_models(mut ctx: Ctx) {
    ctx.models.set(Models::Loading);
    spawn_forever(async move {
        let key = ctx.settings.read().api_key.clone();
        let result = match net::send(Call::get("/v1/models", &key)).await {
            Ok(a) if a.ok() => match a.text().await {
                Ok(body) => api::model_ids(&body),
                Err(e) => Err(net::js_error(&e)),
            },
            Ok(a) => {
                let (status, retry) = (a.status, a.retry_after.clone());
                let body = a.text().await.unwrap_or_default();
                match api::notice_from_http(status, retry.as_deref(), &body) {
                    Notice::Error { title, detail, .. } => Err(format!("{title} {detail}")),
                    _ => Err(format!("HTTP {status}")),
                }
            }
            Err(e) => Err(format!("Cannot reach the gateway: {}", net::js_error(&e))),
        };
        match result {
            Ok(ids) => {
                let chosen = ctx.settings.read().model.clone();
                if !ids.contains(&chosen) {
                    let first = ids
                        .iter()
                        .find(|m| !m.starts_with("agent:"))
                        .or(ids.first())
                        .cloned()
                        .unwrap_or_default();
                    ctx.settings.write().model = first;
                }
                ctx.models.set(Models::Ready(ids));
            }
            Err(e) => {
                ctx.banner
                    .set(Some(format!("The model list is unavailable: {e}")));
                ctx.models.set(Models::Failed(e));
            }
        }
    });
}

#[component]
fn Header() -> Element {
    let mut ctx = use_context::<Ctx>();
    let view = (ctx.view)();
    let grafana = ctx.settings.read().grafana_url.trim().to_owned();
    let tab = |v: View| if v == view { "tab active" } else { "tab" };
    rsx! {
        header { class: "top",
            if view == View::Chat {
                button {
                    class: "icon menu",
                    title: "Conversations",
                    onclick: move |_| {
                        let open = (ctx.sidebar)();
                        ctx.sidebar.set(!open);
                    },
                    "☰"
                }
            }
            span { class: "brand", "Wasmgate" }
            ModelPicker {}
            nav { class: "tabs",
                button { class: tab(View::Chat), id: "tab-chat", onclick: move |_| ctx.view.set(View::Chat), "Chat" }
                button { class: tab(View::Components), id: "tab-components", onclick: move |_| ctx.view.set(View::Components), "Components" }
                button { class: tab(View::Settings), id: "tab-settings", onclick: move |_| ctx.view.set(View::Settings), "Settings" }
            }
            if !grafana.is_empty() {
                a { class: "grafana", href: "{grafana}", target: "_blank", rel: "noopener noreferrer", "Grafana ↗" }
            }
            button {
                class: "icon",
                title: "Theme: light, dark or the system's",
                onclick: move |_| {
                    let next = match ctx.settings.read().theme.as_str() {
                        "auto" => "dark",
                        "dark" => "light",
                        _ => "auto",
                    };
                    ctx.settings.write().theme = next.into();
                },
                "◐"
            }
        }
    }
}

#[component]
fn ModelPicker() -> Element {
    let mut ctx = use_context::<Ctx>();
    let chosen = ctx.settings.read().model.clone();
    let models = ctx.models.read().clone();
    match models {
        Models::Loading => rsx! { span { class: "model-picker muted", "loading models…" } },
        Models::Failed(e) => rsx! {
            button { class: "model-picker warn", title: "{e}", onclick: move |_| reload_models(ctx), "⚠ no models: retry" }
        },
        Models::Ready(ids) => {
            let (agents, plain): (Vec<String>, Vec<String>) =
                ids.into_iter().partition(|m| m.starts_with("agent:"));
            rsx! {
                select {
                    id: "model",
                    class: "model-picker",
                    title: "Model or agent",
                    onchange: move |e| ctx.settings.write().model = e.value(),
                    if plain.is_empty() && agents.is_empty() {
                        option { value: "", "no models" }
                    }
                    optgroup { label: "Models",
                        for m in plain {
                            option { key: "{m}", value: "{m}", selected: m == chosen, "{m}" }
                        }
                    }
                    if !agents.is_empty() {
                        optgroup { label: "Agents",
                            for m in agents {
                                option { key: "{m}", value: "{m}", selected: m == chosen, "{m}" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn Sidebar() -> Element {
    let ctx = use_context::<Ctx>();
    let current = ctx.current.read().clone();
    let items: Vec<(String, String)> = ctx
        .convs
        .read()
        .iter()
        .map(|c| (c.id.clone(), c.title.clone()))
        .collect();
    let class = if (ctx.sidebar)() {
        "sidebar open"
    } else {
        "sidebar"
    };
    rsx! {
        aside { class: "{class}",
            button { class: "new-chat", id: "new-chat", onclick: move |_| ctx.new_conversation(), "+ New chat" }
            ul { class: "convs",
                for (id, title) in items {
                    ConvItem { key: "{id}", active: id == current, id: id.clone(), title }
                }
            }
        }
    }
}

#[component]
fn ConvItem(id: String, title: String, active: bool) -> Element {
    let mut ctx = use_context::<Ctx>();
    let mut editing = use_signal(|| false);
    let mut name = use_signal(String::new);
    let class = if active { "conv active" } else { "conv" };
    let (id1, id2, id3) = (id.clone(), id.clone(), id.clone());
    let mut commit = move |id: &str| {
        let new = name.read().trim().to_owned();
        if !new.is_empty()
            && let Some(c) = ctx.convs.write().iter_mut().find(|c| c.id == id)
        {
            c.title = new;
            c.renamed = true;
        }
        editing.set(false);
    };
    let title2 = title.clone();
    rsx! {
        li { class: "{class}",
            if editing() {
                input {
                    class: "rename",
                    value: "{name}",
                    autofocus: true,
                    oninput: move |e| name.set(e.value()),
                    onkeydown: move |e: KeyboardEvent| match e.key() {
                        Key::Enter => commit(&id1),
                        Key::Escape => editing.set(false),
                        _ => {}
                    },
                    onblur: move |_| commit(&id2),
                }
            } else {
                span {
                    class: "title",
                    title: "{title}",
                    onclick: move |_| {
                        ctx.current.set(id.clone());
                        ctx.sidebar.set(false);
                    },
                    "{title}"
                }
                button {
                    class: "icon",
                    title: "Rename",
                    onclick: move |_| {
                        name.set(title2.clone());
                        editing.set(true);
                    },
                    "✎"
                }
                button {
                    class: "icon",
                    title: "Delete",
                    onclick: move |_| delete_conversation(ctx, &id3),
                    "×"
                }
            }
        }
    }
}

fn delete_conversation(mut ctx: Ctx, id: &str) {
    if ctx.inflight.read().as_ref().is_some_and(|i| i.conv == id) {
        ctx.stop();
    }
    ctx.convs.write().retain(|c| c.id != id);
    if ctx.convs.read().is_empty() {
        ctx.new_conversation();
    } else if *ctx.current.read() == id {
        let first = ctx.convs.read()[0].id.clone();
        ctx.current.set(first);
    }
}

#[component]
fn ChatView() -> Element {
    let ctx = use_context::<Ctx>();
    let mut draft = use_signal(String::new);
    let mut stick = use_signal(|| true);
    use_effect(move || {
        let _ = ctx.convs.read();
        let _ = ctx.current.read();
        if *stick.peek() {
            net::scroll_to_end("messages");
        }
    });
    let current = ctx.current.read().clone();
    let conv = ctx.convs.read().iter().find(|c| c.id == current).cloned();
    let busy = ctx.inflight.read().is_some();
    let mut submit = move || {
        let text = draft.read().trim().to_owned();
        if text.is_empty() || ctx.inflight.read().is_some() {
            return;
        }
        draft.set(String::new());
        stick.set(true);
        start_reply(ctx, Some(text));
    };
    let messages = conv.map(|c| c.messages).unwrap_or_default();
    let count = messages.len();
    rsx! {
        main { class: "chat",
            div {
                id: "messages",
                class: "messages",
                onscroll: move |_| stick.set(net::near_end("messages")),
                if messages.is_empty() {
                    div { class: "empty",
                        h2 { "Guarded chat" }
                        p { "Every prompt and every streamed token passes the gateway's WebAssembly guards. Try a prompt injection, or drop a guard .wasm onto the page to deploy it live." }
                    }
                }
                for (i, m) in messages.into_iter().enumerate() {
                    MessageView { key: "{i}", msg: m, is_last: i + 1 == count, busy }
                }
            }
            div { class: "composer",
                textarea {
                    id: "prompt",
                    rows: "2",
                    placeholder: "Message… (Enter sends, Shift+Enter for a new line)",
                    value: "{draft}",
                    oninput: move |e| draft.set(e.value()),
                    onkeydown: move |e: KeyboardEvent| {
                        if e.key() == Key::Enter && !e.modifiers().shift() && !e.is_composing() {
                            e.prevent_default();
                            submit();
                        }
                    },
                }
                if busy {
                    button { id: "stop", class: "stop", onclick: move |_| ctx.stop(), "■ Stop" }
                } else {
                    button {
                        id: "send",
                        class: "send",
                        disabled: draft.read().trim().is_empty(),
                        onclick: move |_| submit(),
                        "Send"
                    }
                }
            }
        }
    }
}

#[component]
fn MessageView(msg: Message, is_last: bool, busy: bool) -> Element {
    let ctx = use_context::<Ctx>();
    if msg.role == "user" {
        return rsx! {
            div { class: "msg user",
                div { class: "bubble", "{msg.content}" }
            }
        };
    }
    let html = markdown::render(&msg.content);
    let class = if msg.streaming {
        "msg assistant streaming"
    } else {
        "msg assistant"
    };
    let model = msg.model.clone().unwrap_or_default();
    let stats = msg.stats.as_ref().map(|s| {
        format!(
            "TTFT {:.0} ms · {:.1} tok/s · {} tokens",
            s.ttft_ms, s.tokens_per_s, s.tokens
        )
    });
    rsx! {
        div { class: "{class}",
            if !msg.events.is_empty() {
                div { class: "events",
                    for (i, ev) in msg.events.iter().enumerate() {
                        details { key: "{i}", class: "event",
                            summary {
                                span { class: "event-kind", "{ev.kind}" }
                                " {ev.summary}"
                            }
                            pre { "{ev.detail}" }
                        }
                    }
                }
            }
            if !msg.content.is_empty() {
                div { class: "content md", dangerous_inner_html: "{html}" }
            } else if msg.streaming {
                div { class: "content typing", "…" }
            }
            if let Some(n) = msg.notice.clone() {
                NoticeView { notice: n }
            }
            div { class: "meta",
                span { class: "model", "{model}" }
                if let Some(s) = stats {
                    span { class: "stats", "{s}" }
                }
                if is_last && !busy {
                    button { class: "regen", title: "Send the conversation again for a new reply", onclick: move |_| regenerate(ctx), "↻ Regenerate" }
                }
            }
        }
    }
}

#[component]
fn NoticeView(notice: Notice) -> Element {
    match notice {
        Notice::InputBlocked {
            guard,
            category,
            score,
            message,
        } => {
            let score = score
                .map(|s| format!(" · score {s:.2}"))
                .unwrap_or_default();
            rsx! {
                div { class: "notice blocked", role: "alert",
                    div { class: "notice-title",
                        "⊘ Blocked by guard "
                        code { "{guard}" }
                        ": {humanize(&category)}"
                    }
                    div { class: "notice-detail", "{message}{score}" }
                    div { class: "notice-detail", "The prompt never reached the model and is left out of this conversation's history." }
                }
            }
        }
        Notice::OutputBlocked { block, at } => {
            let reason = if block.reason.is_empty() {
                String::new()
            } else {
                format!(" — {}", block.reason)
            };
            rsx! {
                div { class: "notice cut", role: "alert",
                    div { class: "notice-title",
                        "✂ Reply cut here by guard "
                        code { "{block.guard}" }
                        ": {humanize(&block.category)}{reason}"
                    }
                    div { class: "notice-detail", "after {at} characters; the rest was not shown and generation was stopped." }
                }
            }
        }
        Notice::Error {
            title,
            detail,
            status,
            retry_after,
        } => {
            let status = status.map(|s| format!("HTTP {s} · ")).unwrap_or_default();
            let retry = retry_after
                .map(|s| format!(" · retry after {s} s"))
                .unwrap_or_default();
            rsx! {
                div { class: "notice error", role: "alert",
                    div { class: "notice-title", "⚠ {title}" }
                    div { class: "notice-detail", "{status}{detail}{retry}" }
                }
            }
        }
        Notice::Stopped => rsx! { div { class: "notice muted", "■ Stopped." } },
        Notice::Length => rsx! { div { class: "notice muted", "Reached the max-tokens limit." } },
        Notice::Interrupted => rsx! {
            div { class: "notice muted", "Interrupted: the page was closed or reloaded while this reply streamed." }
        },
    }
}

fn regenerate(mut ctx: Ctx) {
    if ctx.inflight.read().is_some() {
        return;
    }
    let id = ctx.current.read().clone();
    if let Some(c) = ctx.convs.write().iter_mut().find(|c| c.id == id) {
        c.pop_reply();
    }
    start_reply(ctx, None);
}

/// Adds the prompt (if any) and an empty reply, then streams into it.
fn start_reply(mut ctx: Ctx, prompt: Option<String>) {
    if ctx.inflight.read().is_some() {
        return;
    }
    let model = ctx.settings.read().model.clone();
    if model.is_empty() {
        ctx.banner.set(Some(
            "No model is selected: the gateway listed none. Check the upstream, then pick one."
                .into(),
        ));
        return;
    }
    let conv_id = ctx.current.read().clone();
    let (history, index) = {
        let mut convs = ctx.convs.write();
        let Some(c) = convs.iter_mut().find(|c| c.id == conv_id) else {
            return;
        };
        if let Some(p) = &prompt {
            c.push_user(p);
        }
        let history = c.history();
        if history.is_empty() {
            return;
        }
        c.messages.push(Message::assistant(&model));
        (history, c.messages.len() - 1)
    };
    let Ok(controller) = AbortController::new() else {
        return;
    };
    let signal = controller.signal();
    ctx.inflight.set(Some(Inflight {
        conv: conv_id.clone(),
        controller,
    }));
    spawn_forever(async move {
        stream_reply(ctx, &conv_id, index, &model, history, signal).await;
        ctx.inflight.set(None);
    });
}

fn update_msg(mut ctx: Ctx, conv: &str, index: usize, f: impl FnOnce(&mut Message)) {
    if let Some(m) = ctx
        .convs
        .write()
        .iter_mut()
        .find(|c| c.id == conv)
        .and_then(|c| c.messages.get_mut(index))
    {
        f(m);
    }
}

fn stats(started: f64, first: f64, last: f64, tokens: u64) -> Stats {
    let span = (last - first) / 1000.0;
    Stats {
        ttft_ms: first - started,
        tokens,
        tokens_per_s: if tokens > 1 && span > 0.0 {
            (tokens - 1) as f64 / span
        } else {
            0.0
        },
    }
}

async fn stream_reply(
    ctx: Ctx,
    conv: &str,
    index: usize,
    model: &str,
    history: Vec<serde_json::Value>,
    signal: web_sys::AbortSignal,
) {
    let settings = ctx.settings.read().clone();
    let mut body = json!({
        "model": model,
        "messages": history,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if let Ok(t) = settings.temperature.trim().parse::<f64>() {
        body["temperature"] = json!(t);
    }
    if let Ok(n) = settings.max_tokens.trim().parse::<u64>() {
        body["max_tokens"] = json!(n);
    }
    let update = |f: &dyn Fn(&mut Message)| update_msg(ctx, conv, index, f);
    let end = |notice: Option<Notice>| {
        update_msg(ctx, conv, index, move |m| {
            m.streaming = false;
            m.notice = notice;
        })
    };
    let started = net::now_ms();
    let call = Call {
        method: "POST",
        url: "/v1/chat/completions",
        bearer: &settings.api_key,
        content_type: Some("application/json"),
        body: Some(JsValue::from_str(&body.to_string())),
        signal: Some(signal),
    };
    let answer = match net::send(call).await {
        Ok(a) => a,
        Err(e) if net::is_abort(&e) => return end(Some(Notice::Stopped)),
        Err(e) => return end(Some(api::notice_from_network(&net::js_error(&e)))),
    };
    if !answer.ok() {
        let (status, retry) = (answer.status, answer.retry_after.clone());
        let text = answer.text().await.unwrap_or_default();
        return end(Some(api::notice_from_http(status, retry.as_deref(), &text)));
    }
    let mut reader = match answer.events() {
        Ok(r) => r,
        Err(e) => return end(Some(api::notice_from_network(&net::js_error(&e)))),
    };
    let (mut first, mut last, mut chunks) = (None::<f64>, started, 0u64);
    let mut usage = None;
    let mut outcome: Option<Notice> = None;
    let mut done = false;
    while !done {
        match reader.next().await {
            Ok(Some(data)) => {
                for item in api::parse_stream_data(&data) {
                    match item {
                        StreamItem::Text(t) => {
                            let now = net::now_ms();
                            let f = *first.get_or_insert(now);
                            last = now;
                            chunks += 1;
                            let s = stats(started, f, now, chunks);
                            update(&|m| {
                                m.content.push_str(&t);
                                m.stats = Some(s.clone());
                            });
                        }
                        StreamItem::Event(ev) => update(&|m| m.events.push(ev.clone())),
                        StreamItem::Blocked(block) => {
                            let mut at = 0;
                            if let Some(m) = ctx
                                .convs
                                .read()
                                .iter()
                                .find(|c| c.id == conv)
                                .and_then(|c| c.messages.get(index))
                            {
                                at = m.content.chars().count();
                            }
                            outcome = Some(Notice::OutputBlocked { block, at });
                        }
                        StreamItem::Finish(reason) if reason == "length" => {
                            outcome = Some(Notice::Length);
                        }
                        StreamItem::Finish(_) => {}
                        StreamItem::Usage { completion_tokens } => usage = Some(completion_tokens),
                        StreamItem::Error(message) => {
                            outcome = Some(Notice::Error {
                                title: "The model server failed in the middle of the reply.".into(),
                                detail: message,
                                status: None,
                                retry_after: None,
                            });
                        }
                        StreamItem::Done => done = true,
                    }
                }
            }
            Ok(None) => {
                if outcome.is_none() {
                    outcome = Some(Notice::Error {
                        title: "The reply ended early: the connection closed before the end."
                            .into(),
                        detail: String::new(),
                        status: None,
                        retry_after: None,
                    });
                }
                break;
            }
            Err(e) if net::is_abort(&e) => {
                outcome = Some(Notice::Stopped);
                break;
            }
            Err(e) => {
                outcome = Some(Notice::Error {
                    title: "The connection broke in the middle of the reply.".into(),
                    detail: net::js_error(&e),
                    status: None,
                    retry_after: None,
                });
                break;
            }
        }
    }
    if let Some(f) = first {
        let s = stats(started, f, last, usage.unwrap_or(chunks).max(chunks.min(1)));
        update(&|m| m.stats = Some(s.clone()));
    }
    end(outcome);
}

#[component]
fn ComponentsView() -> Element {
    let token = use_context::<Ctx>().settings.read().admin_token.clone();
    rsx! {
        div { class: "page components",
            DeployCard {}
            if token.is_empty() {
                div { class: "card",
                    h2 { "Components" }
                    p { "Listing, deploying and removing components needs the gateway's admin token (the host's --admin-token)." }
                    TokenInput {}
                }
            } else {
                ComponentsPanel { key: "{token}", token }
            }
        }
    }
}

#[component]
fn TokenInput() -> Element {
    let mut ctx = use_context::<Ctx>();
    let mut value = use_signal(String::new);
    rsx! {
        form {
            class: "inline",
            onsubmit: move |e| {
                e.prevent_default();
                let v = value.read().trim().to_owned();
                if !v.is_empty() {
                    ctx.settings.write().admin_token = v;
                }
            },
            input {
                id: "admin-token-inline",
                r#type: "password",
                placeholder: "admin token",
                autocomplete: "off",
                value: "{value}",
                oninput: move |e| value.set(e.value()),
            }
            button { r#type: "submit", "Use token" }
        }
    }
}

#[component]
fn DeployCard() -> Element {
    let mut ctx = use_context::<Ctx>();
    let pending = ctx.pending.read().clone();
    let msg = ctx.deploy_msg.read().clone();
    let mut kind = use_signal(|| "guard".to_owned());
    let mut name = use_signal(String::new);
    let mut seen = use_signal(String::new);
    if let Some(p) = &pending
        && *seen.peek() != p.file_name
    {
        seen.set(p.file_name.clone());
        name.set(api::component_name(&p.file_name));
        kind.set(
            if p.file_name.contains("agent") {
                "agent"
            } else {
                "guard"
            }
            .into(),
        );
    }
    let deploying = (ctx.deploying)();
    rsx! {
        div { class: "card deploy", id: "deploy",
            if let Some(p) = pending {
                h2 { "Deploy {p.file_name}" }
                p { class: "muted", "{p.bytes.len() / 1024} KiB · validated by the host before it serves; a rejected file changes nothing." }
                form {
                    class: "inline",
                    onsubmit: move |e| {
                        e.prevent_default();
                        let (k, n) = (kind.read().clone(), name.read().trim().to_owned());
                        if let Some(p) = ctx.pending.read().clone() {
                            spawn_forever(deploy(ctx, k, n, p.bytes));
                        }
                    },
                    label { "as "
                        select {
                            id: "deploy-kind",
                            onchange: move |e| kind.set(e.value()),
                            option { value: "guard", selected: kind() == "guard", "guard" }
                            option { value: "agent", selected: kind() == "agent", "agent" }
                        }
                    }
                    label { "named "
                        input {
                            id: "deploy-name",
                            value: "{name}",
                            pattern: "[A-Za-z0-9_-]+",
                            required: true,
                            oninput: move |e| name.set(e.value()),
                        }
                    }
                    button { id: "deploy-button", r#type: "submit", disabled: deploying, if deploying { "Deploying…" } else { "Deploy" } }
                    button { r#type: "button", class: "secondary", onclick: move |_| ctx.pending.set(None), "Cancel" }
                }
            } else {
                div { class: "dropzone",
                    "Drop a guard or agent "
                    code { ".wasm" }
                    " anywhere on the page to deploy it without a restart, or "
                    label { class: "file-pick",
                        "choose a file"
                        input {
                            id: "deploy-file",
                            r#type: "file",
                            accept: ".wasm,application/wasm",
                            onchange: move |e| take_files(ctx, e.files()),
                        }
                    }
                    "."
                }
            }
            if let Some((ok, text)) = msg {
                div { class: if ok { "deploy-result ok" } else { "deploy-result error" }, role: "status", "{text}" }
            }
        }
    }
}

async fn deploy(mut ctx: Ctx, kind: String, name: String, bytes: Rc<Vec<u8>>) {
    let token = ctx.settings.read().admin_token.clone();
    if token.is_empty() {
        ctx.deploy_msg.set(Some((
            false,
            "Set the admin token first (Settings, or the field below).".into(),
        )));
        return;
    }
    if name.is_empty() {
        ctx.deploy_msg
            .set(Some((false, "The component needs a name.".into())));
        return;
    }
    ctx.deploying.set(true);
    let url = format!("/admin/components/{kind}s/{name}");
    let call = Call {
        method: "PUT",
        url: &url,
        bearer: &token,
        content_type: Some("application/wasm"),
        body: Some(Uint8Array::from(&bytes[..]).into()),
        signal: None,
    };
    let result = match net::send(call).await {
        Ok(a) if a.ok() => {
            let status = a.status;
            let body = a.text().await.unwrap_or_default();
            let info: ComponentInfo = serde_json::from_str(&body).unwrap_or_default();
            let verb = if status == 201 {
                "Deployed"
            } else {
                "Replaced"
            };
            let mut text = format!("{verb} {kind} `{name}`");
            if !info.version.is_empty() {
                text.push_str(&format!(" {}", info.version));
            }
            if !info.sha256.is_empty() {
                text.push_str(&format!(" (sha256 {})", short_hash(&info.sha256)));
            }
            text.push_str(": live for the next request.");
            ctx.pending.set(None);
            (true, text)
        }
        Ok(a) => {
            let status = a.status;
            let body = a.text().await.unwrap_or_default();
            let why = if status == 400 {
                api::error_message(&body)
            } else {
                admin_error(status, &body)
            };
            (false, format!("Deploy of `{name}` failed: {why}"))
        }
        Err(e) => (
            false,
            format!("Cannot reach the gateway: {}", net::js_error(&e)),
        ),
    };
    ctx.deploy_msg.set(Some(result));
    ctx.deploying.set(false);
    *ctx.components_tick.write() += 1;
}

async fn remove(mut ctx: Ctx, kind: String, name: String) {
    let token = ctx.settings.read().admin_token.clone();
    let url = format!("/admin/components/{kind}s/{name}");
    let call = Call {
        method: "DELETE",
        ..Call::get(&url, &token)
    };
    let result = match net::send(call).await {
        Ok(a) if a.ok() => (true, format!("Removed {kind} `{name}`.")),
        Ok(a) => {
            let status = a.status;
            let body = a.text().await.unwrap_or_default();
            (
                false,
                format!("Removing `{name}` failed: {}", admin_error(status, &body)),
            )
        }
        Err(e) => (
            false,
            format!("Cannot reach the gateway: {}", net::js_error(&e)),
        ),
    };
    ctx.deploy_msg.set(Some(result));
    *ctx.components_tick.write() += 1;
}

fn short_hash(h: &str) -> String {
    h.chars().take(12).collect()
}

async fn fetch_components(token: &str) -> Result<ComponentList, String> {
    match net::send(Call::get("/admin/components", token)).await {
        Ok(a) if a.ok() => {
            let body = a.text().await.map_err(|e| net::js_error(&e))?;
            serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))
        }
        Ok(a) => {
            let status = a.status;
            let body = a.text().await.unwrap_or_default();
            Err(admin_error(status, &body))
        }
        Err(e) => Err(format!("Cannot reach the gateway: {}", net::js_error(&e))),
    }
}

/// Follows `GET /admin/events` (fetch + stream: the token stays in a
/// header); reconnects, and falls back to polling when the host has no
/// event stream.
async fn follow_events(
    mut ctx: Ctx,
    token: String,
    mut log: Signal<Vec<ReloadEvent>>,
    mut live: Signal<(bool, String)>,
) {
    let mut delay = 1000;
    loop {
        let abort = net::AbortOnDrop::new();
        let call = Call {
            signal: abort.as_ref().map(|a| a.signal()),
            ..Call::get("/admin/events", &token)
        };
        match net::send(call).await {
            Ok(a) if a.ok() => {
                live.set((true, "live".into()));
                delay = 1000;
                if let Ok(mut reader) = a.events() {
                    while let Ok(Some(data)) = reader.next().await {
                        if let Ok(ev) = serde_json::from_str::<ReloadEvent>(&data) {
                            let mut l = log.write();
                            l.insert(0, ev);
                            l.truncate(50);
                            drop(l);
                            *ctx.components_tick.write() += 1;
                        }
                    }
                }
                live.set((false, "event stream closed; reconnecting…".into()));
            }
            Ok(a) => {
                let status = a.status;
                let body = a.text().await.unwrap_or_default();
                live.set((
                    false,
                    format!(
                        "no live events ({}); polling every 5 s",
                        admin_error(status, &body)
                    ),
                ));
                delay = 5000;
                *ctx.components_tick.write() += 1;
            }
            Err(e) => {
                live.set((false, format!("reconnecting… ({})", net::js_error(&e))));
                delay = (delay * 2).min(10_000);
            }
        }
        drop(abort);
        net::sleep(delay).await;
    }
}

#[component]
fn ComponentsPanel(token: String) -> Element {
    let ctx = use_context::<Ctx>();
    let mut list = use_signal(|| None::<Result<ComponentList, String>>);
    let log = use_signal(Vec::<ReloadEvent>::new);
    let live = use_signal(|| (false, "connecting…".to_owned()));
    let t = token.clone();
    use_effect(move || {
        let _ = (ctx.components_tick)();
        let t = t.clone();
        spawn(async move {
            list.set(Some(fetch_components(&t).await));
        });
    });
    use_hook(move || spawn(follow_events(ctx, token.clone(), log, live)));
    let (is_live, live_text) = live.read().clone();
    let events = log.read().clone();
    rsx! {
        div { class: "card",
            div { class: "card-head",
                h2 { "Components" }
                span { class: if is_live { "live on" } else { "live" }, title: "Reload events from /admin/events", "● {live_text}" }
            }
            match list.read().clone() {
                None => rsx! { p { class: "muted", "loading…" } },
                Some(Err(e)) => rsx! { div { class: "notice error", role: "alert", "⚠ {e}" } },
                Some(Ok(l)) => rsx! {
                    ComponentTable { title: "Guards", kind: "guard", items: l.guards }
                    ComponentTable { title: "Agents", kind: "agent", items: l.agents }
                    if !l.rejected.is_empty() {
                        h3 { "Rejected files" }
                        ul { class: "rejected",
                            for r in l.rejected {
                                li { key: "{r.kind}/{r.name}",
                                    code { "{r.name}" }
                                    " ({r.kind}, sha256 {short_hash(&r.sha256)}"
                                    if let Some(at) = r.at { ", {net::date_time(at as f64)}" }
                                    "): {r.error}"
                                }
                            }
                        }
                    }
                },
            }
        }
        div { class: "card",
            h2 { "Reload events" }
            if events.is_empty() {
                p { class: "muted", "None yet: deploy, replace or remove a component (here or in the components folder) to see it." }
            }
            ul { class: "events-log", id: "events-log",
                for (i, ev) in events.into_iter().enumerate() {
                    li { key: "{events_key(i)}", class: "ev {ev.result}",
                        span { class: "time", "{ev.at.map(|a| net::clock(a as f64)).unwrap_or_default()}" }
                        " {ev.kind} "
                        code { "{ev.name}" }
                        " {ev.result}"
                        if let Some(h) = ev.sha256.as_deref() { span { class: "muted", " {short_hash(h)}" } }
                        if let Some(e) = ev.error { span { class: "err", " — {e}" } }
                    }
                }
            }
        }
    }
}

fn events_key(i: usize) -> String {
    format!("ev{i}")
}

#[component]
fn ComponentTable(title: String, kind: String, items: Vec<ComponentInfo>) -> Element {
    rsx! {
        h3 { "{title} ({items.len()})" }
        if items.is_empty() {
            p { class: "muted", "none loaded" }
        } else {
            div { class: "table-wrap",
                table { class: "components-table", id: "{kind}s-table",
                    thead {
                        tr {
                            th { "name" }
                            th { "version" }
                            th { "sha256" }
                            th { "loaded" }
                            th { "calls ok / fault" }
                            th { "last error" }
                            th {}
                        }
                    }
                    tbody {
                        for c in items {
                            ComponentRow { key: "{c.name}", kind: kind.clone(), c }
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn ComponentRow(kind: String, c: ComponentInfo) -> Element {
    let ctx = use_context::<Ctx>();
    let mut confirm = use_signal(|| false);
    let loaded = c
        .loaded_at
        .map(|t| net::date_time(t as f64))
        .unwrap_or_default();
    let disabled = c.enabled == Some(false);
    let name = c.name.clone();
    rsx! {
        tr { class: if disabled { "disabled" } else { "" }, "data-name": "{c.name}",
            td {
                code { "{c.name}" }
                if disabled { span { class: "muted", " (disabled)" } }
                if !c.description.is_empty() { div { class: "muted small", "{c.description}" } }
            }
            td { "{c.version}" }
            td { code { title: "{c.sha256}", "{short_hash(&c.sha256)}" } }
            td { "{loaded}" }
            td { "{c.invocations.ok} / {c.invocations.fault}" }
            td { class: "err", "{c.last_error.clone().unwrap_or_default()}" }
            td {
                button {
                    class: if confirm() { "danger remove" } else { "secondary remove" },
                    onclick: move |_| {
                        if confirm() {
                            confirm.set(false);
                            spawn_forever(remove(ctx, kind.clone(), name.clone()));
                        } else {
                            confirm.set(true);
                        }
                    },
                    onmouseleave: move |_| confirm.set(false),
                    if confirm() { "Confirm remove" } else { "Remove" }
                }
            }
        }
    }
}

#[component]
fn SettingsView() -> Element {
    let mut ctx = use_context::<Ctx>();
    let s = ctx.settings.read().clone();
    let mut show = use_signal(|| false);
    let secret = if show() { "text" } else { "password" };
    rsx! {
        div { class: "page settings",
            div { class: "card",
                h2 { "Settings" }
                p { class: "muted", "Kept in this browser's localStorage and sent only in request headers, never in URLs." }
                div { class: "form",
                    label { r#for: "api-key", "API key" }
                    input {
                        id: "api-key",
                        r#type: "{secret}",
                        autocomplete: "off",
                        placeholder: "sent as Authorization: Bearer …",
                        value: "{s.api_key}",
                        oninput: move |e| ctx.settings.write().api_key = e.value(),
                        onchange: move |_| reload_models(ctx),
                    }
                    label { r#for: "admin-token", "Admin token" }
                    input {
                        id: "admin-token",
                        r#type: "{secret}",
                        autocomplete: "off",
                        placeholder: "for the Components panel",
                        value: "{s.admin_token}",
                        oninput: move |e| ctx.settings.write().admin_token = e.value(),
                    }
                    label { class: "check",
                        input { r#type: "checkbox", checked: show(), onchange: move |e| show.set(e.checked()) }
                        " show secrets"
                    }
                    span {}
                    label { r#for: "temperature", "Temperature" }
                    input {
                        id: "temperature",
                        r#type: "number",
                        step: "0.1",
                        min: "0",
                        max: "2",
                        placeholder: "model default",
                        value: "{s.temperature}",
                        oninput: move |e| ctx.settings.write().temperature = e.value(),
                    }
                    label { r#for: "max-tokens", "Max tokens" }
                    input {
                        id: "max-tokens",
                        r#type: "number",
                        step: "1",
                        min: "1",
                        placeholder: "model default",
                        value: "{s.max_tokens}",
                        oninput: move |e| ctx.settings.write().max_tokens = e.value(),
                    }
                    label { r#for: "theme", "Theme" }
                    select {
                        id: "theme",
                        onchange: move |e| ctx.settings.write().theme = e.value(),
                        option { value: "auto", selected: s.theme == "auto", "system" }
                        option { value: "light", selected: s.theme == "light", "light" }
                        option { value: "dark", selected: s.theme == "dark", "dark" }
                    }
                    label { r#for: "grafana", "Grafana URL" }
                    input {
                        id: "grafana",
                        r#type: "url",
                        placeholder: "http://127.0.0.1:3000 (shows a link in the header)",
                        value: "{s.grafana_url}",
                        oninput: move |e| ctx.settings.write().grafana_url = e.value(),
                    }
                }
                div { class: "actions",
                    button { class: "secondary", onclick: move |_| reload_models(ctx), "Reload models" }
                }
            }
        }
    }
}
