//! The host's HTTP API as the UI sees it: stream chunks, error answers turned
//! into human messages, and the admin API's shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an output guard cut a reply (`wasmgate.blocked`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Block {
    #[serde(default)]
    pub guard: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub score: Option<f64>,
}

/// Progress reported by an agent (`wasmgate.event`): a tool call, a
/// retrieval, or any kind added later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub kind: String,
    /// One line for the collapsed view.
    pub summary: String,
    /// The event's `data`, pretty-printed.
    pub detail: String,
}

/// What one SSE `data:` payload of a chat stream means.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    Text(String),
    Event(AgentEvent),
    Blocked(Block),
    Finish(String),
    Usage { completion_tokens: u64 },
    Error(String),
    Done,
}

/// Reads one stream payload (only choice 0 is shown).
pub fn parse_stream_data(data: &str) -> Vec<StreamItem> {
    if data.trim() == "[DONE]" {
        return vec![StreamItem::Done];
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(err) = v.get("error") {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string());
        out.push(StreamItem::Error(msg));
        return out;
    }
    if let Some(ev) = v.pointer("/wasmgate/event") {
        out.push(StreamItem::Event(agent_event(ev)));
    }
    let choice = v.get("choices").and_then(Value::as_array).and_then(|cs| {
        cs.iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
    });
    if let Some(choice) = choice {
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
            && !text.is_empty()
        {
            out.push(StreamItem::Text(text.to_owned()));
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            if reason == "content_filter" {
                let block = v
                    .pointer("/wasmgate/blocked")
                    .and_then(|b| serde_json::from_value::<Block>(b.clone()).ok())
                    .unwrap_or_default();
                out.push(StreamItem::Blocked(block));
            } else {
                out.push(StreamItem::Finish(reason.to_owned()));
            }
        }
    }
    if let Some(n) = v
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64)
    {
        out.push(StreamItem::Usage {
            completion_tokens: n,
        });
    }
    out
}

fn agent_event(ev: &Value) -> AgentEvent {
    let kind = ev
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("event")
        .to_owned();
    let data = ev.get("data").cloned().unwrap_or(Value::Null);
    let name = ["name", "tool", "query", "title", "source", "step", "id"]
        .iter()
        .find_map(|k| data.get(*k).and_then(Value::as_str));
    let summary = match name {
        Some(n) => n.to_owned(),
        None => shorten(&data.to_string(), 90),
    };
    AgentEvent {
        kind,
        summary,
        detail: serde_json::to_string_pretty(&data).unwrap_or_default(),
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// "role-hijack" → "role hijack".
pub fn humanize(category: &str) -> String {
    let s = category.replace(['-', '_'], " ");
    if s.trim().is_empty() {
        "policy".to_owned()
    } else {
        s
    }
}

/// What the user sees under a reply when it did not end normally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// An input guard refused the prompt (HTTP 400 `content_filter`).
    InputBlocked {
        guard: String,
        category: String,
        score: Option<f64>,
        message: String,
    },
    /// An output guard cut the reply after `at` characters.
    OutputBlocked {
        block: Block,
        at: usize,
    },
    Error {
        title: String,
        detail: String,
        status: Option<u16>,
        retry_after: Option<u32>,
    },
    Stopped,
    Length,
    Interrupted,
}

fn error_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.pointer(&format!("/error/{key}"))
        .and_then(Value::as_str)
}

/// The `error.message` of an OpenAI-shaped body, else the body itself.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| error_field(&v, "message").map(str::to_owned))
        .unwrap_or_else(|| shorten(body.trim(), 300))
}

/// A non-2xx answer to `POST /v1/chat/completions`, as a notice.
pub fn notice_from_http(status: u16, retry_after: Option<&str>, body: &str) -> Notice {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = error_field(&v, "code").unwrap_or("");
    let message = error_message(body);
    let retry_after = retry_after.and_then(|s| s.trim().parse::<u32>().ok());
    if status == 400 && code == "content_filter" {
        let guard = error_field(&v, "guard").unwrap_or("unknown").to_owned();
        let category = error_field(&v, "category").unwrap_or("").to_owned();
        // The title already says which guard and category: keep the reason.
        let message = message
            .strip_prefix(&format!("Blocked by guard `{guard}` ({category}): "))
            .map(str::to_owned)
            .unwrap_or(message);
        return Notice::InputBlocked {
            guard,
            category,
            score: v.pointer("/error/score").and_then(Value::as_f64),
            message,
        };
    }
    let title = match (status, code) {
        (401, _) => "Not authorised: set a valid API key in Settings.".to_owned(),
        (403, _) => "Forbidden: this API key may not use the gateway.".to_owned(),
        (404, _) => "This model is not served (any more): pick another one.".to_owned(),
        (413, _) => "The conversation is too large for the gateway's limit.".to_owned(),
        (429, _) => match retry_after {
            Some(s) => format!("Rate limited: try again in {s} s."),
            None => "Rate limited: try again in a moment.".to_owned(),
        },
        (501, _) => "Not available in this build.".to_owned(),
        (502, _) => "The model server is unreachable or failing (502).".to_owned(),
        (503, "guard_unavailable") => {
            "A guard could not check the request, so it was not processed (503).".to_owned()
        }
        (503, _) => "The gateway is unavailable (503).".to_owned(),
        (504, _) => "The model server did not answer in time (504).".to_owned(),
        (400, _) => "The gateway rejected the request.".to_owned(),
        (s, _) => format!("The gateway answered HTTP {s}."),
    };
    Notice::Error {
        title,
        detail: message,
        status: Some(status),
        retry_after,
    }
}

/// `fetch` itself failed: no answer at all.
pub fn notice_from_network(err: &str) -> Notice {
    Notice::Error {
        title: "Cannot reach the gateway.".to_owned(),
        detail: err.to_owned(),
        status: None,
        retry_after: None,
    }
}

/// A message for a failed admin call.
pub fn admin_error(status: u16, body: &str) -> String {
    match status {
        401 => "The admin token was refused: check it in Settings.".to_owned(),
        403 => "The admin API is disabled on this host (start it with --admin-token) or the token is not allowed.".to_owned(),
        404 => format!("Not found: {}", error_message(body)),
        413 => "The component is larger than the host accepts (413).".to_owned(),
        _ => format!("HTTP {status}: {}", error_message(body)),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Invocations {
    pub ok: u64,
    pub fault: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ComponentInfo {
    pub name: String,
    pub kind: String,
    pub version: String,
    pub description: String,
    pub sha256: String,
    pub enabled: Option<bool>,
    pub order: Option<i64>,
    pub loaded_at: Option<u64>,
    pub invocations: Invocations,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Rejected {
    pub name: String,
    pub kind: String,
    pub sha256: String,
    pub error: String,
    pub at: Option<u64>,
}

/// `GET /admin/components`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ComponentList {
    pub guards: Vec<ComponentInfo>,
    pub agents: Vec<ComponentInfo>,
    pub rejected: Vec<Rejected>,
}

/// One `GET /admin/events` event.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReloadEvent {
    pub kind: String,
    pub name: String,
    pub result: String,
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub at: Option<u64>,
}

/// A component name from a file name: the stem, with anything but
/// `[A-Za-z0-9_-]` turned into `-`.
pub fn component_name(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".wasm").unwrap_or(file_name);
    let s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_owned()
}

/// Model ids from `GET /v1/models`.
pub fn model_ids(body: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("bad /v1/models answer: {e}"))?;
    Ok(v.get("data")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_usage_and_done() {
        let d =
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(parse_stream_data(d), vec![StreamItem::Text("Hi".into())]);
        let d = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"completion_tokens":7}}"#;
        assert_eq!(
            parse_stream_data(d),
            vec![
                StreamItem::Finish("stop".into()),
                StreamItem::Usage {
                    completion_tokens: 7
                }
            ]
        );
        assert_eq!(parse_stream_data("[DONE]"), vec![StreamItem::Done]);
        assert!(parse_stream_data("not json").is_empty());
    }

    #[test]
    fn output_block() {
        let d = r#"{"choices":[{"index":0,"delta":{"content":""},"finish_reason":"content_filter"}],"wasmgate":{"blocked":{"guard":"banned-words","category":"banned-word","reason":"contains forbidden-fruit","score":1.0}}}"#;
        let items = parse_stream_data(d);
        let [StreamItem::Blocked(b)] = items.as_slice() else {
            panic!("{items:?}")
        };
        assert_eq!(b.guard, "banned-words");
        assert_eq!(b.score, Some(1.0));
    }

    #[test]
    fn midstream_error_and_agent_event() {
        let d = r#"{"error":{"message":"boom","type":"upstream_error"}}"#;
        assert_eq!(parse_stream_data(d), vec![StreamItem::Error("boom".into())]);
        let d = r#"{"wasmgate":{"event":{"kind":"tool_call","data":{"name":"search","args":{"q":"x"}}}}}"#;
        let items = parse_stream_data(d);
        let [StreamItem::Event(e)] = items.as_slice() else {
            panic!("{items:?}")
        };
        assert_eq!(
            (e.kind.as_str(), e.summary.as_str()),
            ("tool_call", "search")
        );
        assert!(e.detail.contains("\"q\": \"x\""));
    }

    #[test]
    fn input_block_notice() {
        let body = r#"{"error":{"message":"Blocked by guard `guard` (role-hijack): x","type":"invalid_request_error","param":"messages","code":"content_filter","guard":"guard","category":"role-hijack","score":0.98}}"#;
        match notice_from_http(400, None, body) {
            Notice::InputBlocked {
                guard,
                category,
                score,
                message,
            } => {
                assert_eq!(message, "x");
                assert_eq!(guard, "guard");
                assert_eq!(humanize(&category), "role hijack");
                assert_eq!(score, Some(0.98));
            }
            n => panic!("{n:?}"),
        }
    }

    #[test]
    fn http_errors_have_human_titles() {
        let n = notice_from_http(429, Some("7"), r#"{"error":{"message":"slow down"}}"#);
        let Notice::Error {
            title,
            detail,
            retry_after,
            ..
        } = n
        else {
            panic!()
        };
        assert!(title.contains("7 s"));
        assert_eq!(detail, "slow down");
        assert_eq!(retry_after, Some(7));
        for status in [401, 502, 503, 504, 500] {
            let Notice::Error { title, .. } = notice_from_http(status, None, "oops") else {
                panic!()
            };
            assert!(!title.is_empty());
        }
    }

    #[test]
    fn names_and_models() {
        assert_eq!(component_name("banned_words.wasm"), "banned_words");
        assert_eq!(component_name("my guard (2).wasm"), "my-guard--2");
        let ids = model_ids(r#"{"data":[{"id":"m"},{"id":"agent:a"}]}"#).unwrap();
        assert_eq!(ids, vec!["m", "agent:a"]);
    }

    #[test]
    fn admin_shapes_are_lenient() {
        let l: ComponentList = serde_json::from_str(
            r#"{"guards":[{"name":"guard","kind":"guard","version":"0.1.0","sha256":"ab","enabled":true,"order":0,"loaded_at":1,"invocations":{"ok":3,"fault":0},"last_error":null}],"agents":[],"rejected":[{"name":"x","error":"bad"}]}"#,
        )
        .unwrap();
        assert_eq!(l.guards[0].invocations.ok, 3);
        assert_eq!(l.rejected[0].error, "bad");
    }
}
