//! Reading an OpenAI chat request: just enough structure to validate it and
//! give guards a typed view, while every other field is forwarded untouched.

use serde_json::{Map, Value};

use crate::config::ValidationLimits;
use crate::error::ApiError;
use crate::runtime::bindings::{ChatRequest, Message, Role};

/// A parsed `POST /v1/chat/completions` body.
pub struct ParsedChat {
    /// The body as received; forwarded upstream (with our edits).
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    pub guard_view: ChatRequest,
}

impl ParsedChat {
    pub fn parse(
        raw: &[u8],
        request_id: &str,
        limits: &ValidationLimits,
    ) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(raw).map_err(|e| {
            ApiError::bad_request(format!(
                "We could not parse the JSON body of your request ({e}). \
                 The body must be a JSON object."
            ))
        })?;
        let Value::Object(body) = value else {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            ));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => {
                return Err(ApiError::bad_request("`model` must be a non-empty string.")
                    .with_param("model"));
            }
            None => {
                return Err(
                    ApiError::bad_request("Missing required parameter: 'model'.")
                        .with_param("model"),
                );
            }
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(
                    ApiError::bad_request("`stream` must be a boolean.").with_param("stream")
                );
            }
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let messages = parse_messages(body.get("messages"), limits)?;
        let max_tokens = match body.get("max_completion_tokens").or(body.get("max_tokens")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n >= 1)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("`max_tokens` must be a positive integer.")
                            .with_param("max_tokens")
                    })?,
            ),
        };
        if max_tokens.is_some_and(|m| u64::from(m) > limits.max_tokens) {
            return Err(ApiError::bad_request(format!(
                "`max_tokens` must be at most {}.",
                limits.max_tokens
            ))
            .with_param("max_tokens"));
        }
        for (field, lo, hi, lo_open) in [
            ("top_p", 0.0, 1.0, true),
            ("presence_penalty", -2.0, 2.0, false),
            ("frequency_penalty", -2.0, 2.0, false),
        ] {
            match body.get(field) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let ok = v
                        .as_f64()
                        .is_some_and(|x| x <= hi && if lo_open { x > lo } else { x >= lo });
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "`{field}` must be a number in {}{lo}, {hi}].",
                            if lo_open { "(" } else { "[" }
                        ))
                        .with_param(field));
                    }
                }
            }
        }
        if let Some(n) = body.get("n").filter(|v| !v.is_null())
            && !n.as_u64().is_some_and(|n| (1..=16).contains(&n))
        {
            return Err(
                ApiError::bad_request("`n` must be an integer from 1 to 16.").with_param("n"),
            );
        }
        let temperature = match body.get("temperature") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| (0.0..=2.0).contains(t))
                    .ok_or_else(|| {
                        ApiError::bad_request("`temperature` must be a number between 0 and 2.")
                            .with_param("temperature")
                    })? as f32,
            ),
        };
        Ok(Self {
            guard_view: ChatRequest {
                request_id: request_id.to_owned(),
                model: model.clone(),
                messages,
                max_tokens,
                temperature,
                caller: None,
            },
            body,
            model,
            stream,
            include_usage,
        })
    }

    /// Replaces the messages after a guard rewrote them.
    pub fn set_messages(&mut self, messages: Vec<Message>) {
        let same_shape = self
            .body
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|old| old.len() == messages.len());
        if same_shape {
            // Keep every other field of each message (tool calls, names...).
            if let Some(Value::Array(old)) = self.body.get_mut("messages") {
                for (slot, m) in old.iter_mut().zip(&messages) {
                    if let Value::Object(obj) = slot {
                        obj.insert("role".into(), role_name(m.role).into());
                        obj.insert("content".into(), m.content.clone().into());
                    }
                }
            }
        } else {
            let json: Vec<Value> = messages
                .iter()
                .map(|m| serde_json::json!({ "role": role_name(m.role), "content": m.content }))
                .collect();
            self.body.insert("messages".into(), Value::Array(json));
        }
        self.guard_view.messages = messages;
    }
}

/// A fresh leak canary: a line the host appends to the system prompt it
/// forwards; output filters block answers that repeat it.
pub fn new_canary() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("\n\n[ref:wgc-{}]", &id[..16])
}

impl ParsedChat {
    /// Appends `canary` to the first system message (forwarded body and the
    /// guards' view alike). Without a system prompt there is nothing to leak.
    pub fn add_canary(&mut self, canary: &str) {
        let Some(Value::Array(messages)) = self.body.get_mut("messages") else {
            return;
        };
        let Some((i, Value::Object(m))) = messages.iter_mut().enumerate().find(|(_, m)| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            ) && m.get("content").is_some_and(Value::is_string)
        }) else {
            return;
        };
        if let Some(Value::String(c)) = m.get_mut("content") {
            c.push_str(canary);
        }
        if let Some(view) = self.guard_view.messages.get_mut(i) {
            view.content.push_str(canary);
        }
    }
}

/// Rough token count used to reserve a budget at admission: prompt
/// characters / 4 plus per-message overhead plus the completion allowance.
impl ParsedChat {
    pub fn token_estimate(&self, default_max_tokens: u64) -> u64 {
        let chars: usize = self
            .guard_view
            .messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum();
        (chars as u64).div_ceil(4)
            + 4 * self.guard_view.messages.len() as u64
            + self
                .guard_view
                .max_tokens
                .map_or(default_max_tokens, u64::from)
    }
}

fn parse_messages(v: Option<&Value>, limits: &ValidationLimits) -> Result<Vec<Message>, ApiError> {
    let bad = |msg: String| ApiError::bad_request(msg).with_param("messages");
    let Some(v) = v else {
        return Err(bad("Missing required parameter: 'messages'.".into()));
    };
    let Some(list) = v.as_array() else {
        return Err(bad("`messages` must be an array.".into()));
    };
    if list.is_empty() {
        return Err(bad("`messages` must contain at least one message.".into()));
    }
    if list.len() > limits.max_messages {
        return Err(bad(format!(
            "`messages` has {} entries; at most {} are accepted.",
            list.len(),
            limits.max_messages
        )));
    }
    let mut total = 0usize;
    let messages: Vec<Message> = list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("tool" | "function") => Role::Tool,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid value for 'messages[{i}].role': '{other}'. Supported values are: \
                         'system', 'developer', 'user', 'assistant', 'tool'."
                    ))
                    .with_param(format!("messages[{i}].role")));
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Missing required parameter: 'messages[{i}].role'."
                    ))
                    .with_param(format!("messages[{i}].role")));
                }
            };
            let content = content_text(m.get("content")).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid type for 'messages[{i}].content': expected a string or an array of text parts."
                ))
                .with_param(format!("messages[{i}].content"))
            })?;
            let param = || format!("messages[{i}].content");
            let chars = content.chars().count();
            if chars > limits.max_message_chars {
                return Err(ApiError::bad_request(format!(
                    "Message {i} has {chars} characters; at most {} are accepted.",
                    limits.max_message_chars
                ))
                .with_param(param()));
            }
            if let Some(c) = content.chars().find(|c| is_forbidden_control(*c)) {
                return Err(ApiError::bad_request(format!(
                    "Message {i} contains the control character U+{:04X}.",
                    c as u32
                ))
                .with_param(param()));
            }
            total += chars;
            if total > limits.max_total_chars {
                return Err(ApiError::bad_request(format!(
                    "The messages have more than {} characters in total.",
                    limits.max_total_chars
                ))
                .with_param("messages"));
            }
            Ok(Message { role, content })
        })
        .collect::<Result<_, _>>()?;
    Ok(messages)
}

/// C0 controls other than tab, line feed and carriage return, and DEL.
fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}'
}

/// The text of a message's content: a string, null (assistant tool calls),
/// or an array of parts whose `text` parts are joined.
fn content_text(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(p.get("text")?.as_str()?);
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
            Some(out)
        }
        Some(_) => None,
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}
