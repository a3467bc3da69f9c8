//! Browser plumbing: `fetch` with streamed bodies, abort, timers, storage.

use js_sys::{Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, AbortSignal, Headers, ReadableStreamDefaultReader, RequestInit};

use crate::sse::SseParser;

/// A JS error as text.
pub fn js_error(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    let get = |k: &str| {
        Reflect::get(e, &JsValue::from_str(k))
            .ok()
            .and_then(|v| v.as_string())
    };
    match (get("name"), get("message")) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (None, Some(m)) => m,
        _ => format!("{e:?}"),
    }
}

pub fn is_abort(e: &JsValue) -> bool {
    Reflect::get(e, &JsValue::from_str("name"))
        .ok()
        .and_then(|v| v.as_string())
        .is_some_and(|n| n == "AbortError")
}

/// Milliseconds since the epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

pub async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(p).await;
}

/// An HTTP request. `bearer` is sent as `Authorization: Bearer …` when not
/// empty: credentials go in headers, never in URLs.
pub struct Call<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub bearer: &'a str,
    pub content_type: Option<&'a str>,
    pub body: Option<JsValue>,
    pub signal: Option<AbortSignal>,
}

impl<'a> Call<'a> {
    pub fn get(url: &'a str, bearer: &'a str) -> Self {
        Self {
            method: "GET",
            url,
            bearer,
            content_type: None,
            body: None,
            signal: None,
        }
    }
}

pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    resp: web_sys::Response,
}

/// Sends the request; `Err` only when there is no HTTP answer at all (the
/// error is the JS exception, `AbortError` included).
pub async fn send(call: Call<'_>) -> Result<Answer, JsValue> {
    let init = RequestInit::new();
    init.set_method(call.method);
    let headers = Headers::new()?;
    if !call.bearer.is_empty() {
        headers.set("authorization", &format!("Bearer {}", call.bearer))?;
    }
    if let Some(ct) = call.content_type {
        headers.set("content-type", ct)?;
    }
    init.set_headers(&headers);
    if let Some(b) = &call.body {
        init.set_body(b);
    }
    if let Some(s) = &call.signal {
        init.set_signal(Some(s));
    }
    let window = web_sys::window().ok_or_else(|| JsValue::from_str("no window"))?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(call.url, &init))
        .await?
        .dyn_into()?;
    let retry_after = resp.headers().get("retry-after").ok().flatten();
    Ok(Answer {
        status: resp.status(),
        retry_after,
        resp,
    })
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub async fn text(self) -> Result<String, JsValue> {
        let p = self.resp.text()?;
        Ok(JsFuture::from(p).await?.as_string().unwrap_or_default())
    }

    /// The body as a stream of SSE payloads.
    pub fn events(self) -> Result<EventReader, JsValue> {
        let body = self
            .resp
            .body()
            .ok_or_else(|| JsValue::from_str("the answer has no body"))?;
        let reader: ReadableStreamDefaultReader = body.get_reader().dyn_into()?;
        Ok(EventReader {
            reader,
            pending: Vec::new(),
            parser: SseParser::default(),
            queue: std::collections::VecDeque::new(),
            ended: false,
        })
    }
}

/// Reads SSE payloads from a response body as they arrive.
pub struct EventReader {
    reader: ReadableStreamDefaultReader,
    /// Bytes of a UTF-8 character split across reads.
    pending: Vec<u8>,
    parser: SseParser,
    queue: std::collections::VecDeque<String>,
    ended: bool,
}

impl EventReader {
    /// The next payload; `Ok(None)` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<String>, JsValue> {
        loop {
            if let Some(d) = self.queue.pop_front() {
                return Ok(Some(d));
            }
            if self.ended {
                return Ok(None);
            }
            let result = JsFuture::from(self.reader.read()).await?;
            let done = Reflect::get(&result, &JsValue::from_str("done"))?
                .as_bool()
                .unwrap_or(true);
            if done {
                self.ended = true;
                let rest = String::from_utf8_lossy(&self.pending).into_owned();
                self.queue.extend(self.parser.push(&rest));
                self.queue.extend(self.parser.finish());
                continue;
            }
            let value = Reflect::get(&result, &JsValue::from_str("value"))?;
            let bytes = Uint8Array::new(&value).to_vec();
            self.pending.extend_from_slice(&bytes);
            let valid = match std::str::from_utf8(&self.pending) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
            self.pending.drain(..valid);
            self.queue.extend(self.parser.push(&text));
        }
    }
}

/// Aborts its request when dropped (a task that ends or is cancelled takes
/// its connection with it).
pub struct AbortOnDrop(pub AbortController);

impl AbortOnDrop {
    pub fn new() -> Option<Self> {
        AbortController::new().ok().map(Self)
    }

    pub fn signal(&self) -> AbortSignal {
        self.0.signal()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

pub fn load(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

pub fn save(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// Sets an attribute on `<html>` (the theme).
pub fn set_root_attr(name: &str, value: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = el.set_attribute(name, value);
    }
}

/// Scrolls an element to its end.
pub fn scroll_to_end(id: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
    {
        el.set_scroll_top(el.scroll_height());
    }
}

/// True when an element is scrolled (nearly) to its end.
pub fn near_end(id: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
        .is_none_or(|el| el.scroll_height() - el.scroll_top() - el.client_height() < 80)
}

/// Local time of a Unix timestamp, `HH:MM:SS`.
pub fn clock(unix_secs: f64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(unix_secs * 1000.0));
    format!(
        "{:02}:{:02}:{:02}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}

/// Local date and time of a Unix timestamp.
pub fn date_time(unix_secs: f64) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(unix_secs * 1000.0));
    format!(
        "{}-{:02}-{:02} {}",
        d.get_full_year(),
        d.get_month() + 1,
        d.get_date(),
        clock(unix_secs)
    )
}

pub fn random_id() -> String {
    format!(
        "{:x}{:06x}",
        now_ms() as u64,
        (js_sys::Math::random() * 16_777_215.0) as u64
    )
}
