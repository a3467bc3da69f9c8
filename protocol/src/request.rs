//! Reading an OpenAI chat request: just enough structure to validate it and
//! give guards a typed view, while every other field is forwarded untouched.
//!
//! [`ParsedRequest::parse`] checks a `POST /v1/chat/completions` body against
//! [`ValidationLimits`]; every rejection is a [`RequestError`] whose message
//! is meant for the client and whose `param` names the offending field, the
//! way OpenAI's API reports it. The body itself is kept as a JSON map so the
//! fields the gateway does not read are forwarded exactly; the edits the
//! gateway makes ([`set_messages`], [`add_canary`]) touch only what they must.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Request validation limits (`[validation]` in the settings file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationLimits {
    pub max_messages: usize,
    /// Characters of one message's content.
    pub max_message_chars: usize,
    /// Characters of all messages together.
    pub max_total_chars: usize,
    /// Largest `max_tokens` accepted.
    pub max_tokens: u64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            max_messages: 256,
            max_message_chars: 200_000,
            max_total_chars: 1_000_000,
            max_tokens: 131_072,
        }
    }
}

/// Who wrote a message (`developer` reads as [`Role::System`], `function`
/// as [`Role::Tool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message: its role and its text (text parts joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// A request the gateway refuses (HTTP 400): a message for the client and
/// the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub message: String,
    pub param: Option<String>,
}

impl RequestError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: None,
        }
    }

    fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
}

/// A parsed and validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The body as received; forwarded upstream (with the gateway's edits).
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    pub messages: Vec<Message>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl ParsedRequest {
    pub fn parse(raw: &[u8], limits: &ValidationLimits) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(raw).map_err(|e| {
            RequestError::new(format!(
                "We could not parse the JSON body of your request ({e}). \
                 The body must be a JSON object."
            ))
        })?;
        let Value::Object(body) = value else {
            return Err(RequestError::new("The request body must be a JSON object."));
        };
        Self::from_body(body, limits)
    }

    /// Validates a body already read as a JSON object.
    pub fn from_body(
        body: Map<String, Value>,
        limits: &ValidationLimits,
    ) -> Result<Self, RequestError> {
        let model =
            match body.get("model") {
                Some(Value::String(m)) if !m.is_empty() => m.clone(),
                Some(_) => {
                    return Err(RequestError::new("`model` must be a non-empty string.")
                        .with_param("model"));
                }
                None => {
                    return Err(RequestError::new("Missing required parameter: 'model'.")
                        .with_param("model"));
                }
            };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(RequestError::new("`stream` must be a boolean.").with_param("stream"));
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
                        RequestError::new("`max_tokens` must be a positive integer.")
                            .with_param("max_tokens")
                    })?,
            ),
        };
        if max_tokens.is_some_and(|m| u64::from(m) > limits.max_tokens) {
            return Err(RequestError::new(format!(
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
                        return Err(RequestError::new(format!(
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
            return Err(RequestError::new("`n` must be an integer from 1 to 16.").with_param("n"));
        }
        let temperature = match body.get("temperature") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| (0.0..=2.0).contains(t))
                    .ok_or_else(|| {
                        RequestError::new("`temperature` must be a number between 0 and 2.")
                            .with_param("temperature")
                    })? as f32,
            ),
        };
        Ok(Self {
            body,
            model,
            stream,
            include_usage,
            messages,
            max_tokens,
            temperature,
        })
    }

    /// Replaces the messages after a guard rewrote them (body and view alike).
    pub fn set_messages(&mut self, messages: Vec<Message>) {
        set_messages(
            &mut self.body,
            messages.iter().map(|m| (m.role, m.content.as_str())),
        );
        self.messages = messages;
    }

    /// Appends `canary` to the first system message (body and view alike).
    pub fn add_canary(&mut self, canary: &str) {
        if let Some(i) = add_canary(&mut self.body, canary)
            && let Some(m) = self.messages.get_mut(i)
        {
            m.content.push_str(canary);
        }
    }

    /// See [`token_estimate`].
    pub fn token_estimate(&self, default_max_tokens: u64) -> u64 {
        token_estimate(
            self.messages.iter().map(|m| m.content.as_str()),
            self.max_tokens,
            default_max_tokens,
        )
    }
}

/// Writes `messages` into `body`. When their number is unchanged, only each
/// message's `role` and `content` are replaced, keeping its other fields
/// (tool calls, names…); otherwise the list is replaced.
pub fn set_messages<'a, I>(body: &mut Map<String, Value>, messages: I)
where
    I: IntoIterator<Item = (Role, &'a str)>,
    I::IntoIter: ExactSizeIterator,
{
    let messages = messages.into_iter();
    match body.get_mut("messages") {
        Some(Value::Array(old)) if old.len() == messages.len() => {
            for (slot, (role, content)) in old.iter_mut().zip(messages) {
                if let Value::Object(obj) = slot {
                    obj.insert("role".into(), role.as_str().into());
                    obj.insert("content".into(), content.into());
                }
            }
        }
        _ => {
            let json: Vec<Value> = messages
                .map(|(role, content)| serde_json::json!({ "role": role.as_str(), "content": content }))
                .collect();
            body.insert("messages".into(), Value::Array(json));
        }
    }
}

/// Appends `canary` to the content of the first system (or developer)
/// message whose content is a string, and returns that message's index.
/// Without a system prompt there is nothing to leak: `None`, body unchanged.
pub fn add_canary(body: &mut Map<String, Value>, canary: &str) -> Option<usize> {
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return None;
    };
    let (i, m) = messages.iter_mut().enumerate().find(|(_, m)| {
        matches!(
            m.get("role").and_then(Value::as_str),
            Some("system" | "developer")
        ) && m.get("content").is_some_and(Value::is_string)
    })?;
    match m.get_mut("content") {
        Some(Value::String(c)) => {
            c.push_str(canary);
            Some(i)
        }
        _ => None,
    }
}

/// Rough token count used to reserve a budget at admission: prompt
/// characters / 4, plus 4 per message, plus the completion allowance
/// (`max_tokens`, else `default_max_tokens`).
pub fn token_estimate<'a>(
    contents: impl IntoIterator<Item = &'a str>,
    max_tokens: Option<u32>,
    default_max_tokens: u64,
) -> u64 {
    let (chars, count) = contents.into_iter().fold((0u64, 0u64), |(chars, n), c| {
        (chars + c.chars().count() as u64, n + 1)
    });
    chars.div_ceil(4) + 4 * count + max_tokens.map_or(default_max_tokens, u64::from)
}

fn parse_messages(
    v: Option<&Value>,
    limits: &ValidationLimits,
) -> Result<Vec<Message>, RequestError> {
    let bad = |msg: String| RequestError::new(msg).with_param("messages");
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
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("tool" | "function") => Role::Tool,
                Some(other) => {
                    return Err(RequestError::new(format!(
                        "Invalid value for 'messages[{i}].role': '{other}'. Supported values are: \
                         'system', 'developer', 'user', 'assistant', 'tool'."
                    ))
                    .with_param(format!("messages[{i}].role")));
                }
                None => {
                    return Err(RequestError::new(format!(
                        "Missing required parameter: 'messages[{i}].role'."
                    ))
                    .with_param(format!("messages[{i}].role")));
                }
            };
            let param = || format!("messages[{i}].content");
            let content = content_text(m.get("content")).ok_or_else(|| {
                RequestError::new(format!(
                    "Invalid type for 'messages[{i}].content': expected a string or an array of text parts."
                ))
                .with_param(param())
            })?;
            let chars = content.chars().count();
            if chars > limits.max_message_chars {
                return Err(RequestError::new(format!(
                    "Message {i} has {chars} characters; at most {} are accepted.",
                    limits.max_message_chars
                ))
                .with_param(param()));
            }
            if let Some(c) = content.chars().find(|c| is_forbidden_control(*c)) {
                return Err(RequestError::new(format!(
                    "Message {i} contains the control character U+{:04X}.",
                    c as u32
                ))
                .with_param(param()));
            }
            total += chars;
            if total > limits.max_total_chars {
                return Err(RequestError::new(format!(
                    "The messages have more than {} characters in total.",
                    limits.max_total_chars
                ))
                .with_param("messages"));
            }
            Ok(Message { role, content })
        })
        .collect()
}

/// C0 controls other than tab, line feed and carriage return, and DEL:
/// the characters no message may contain.
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}'
}

/// The text of a message's content: a string, null (assistant tool calls),
/// or an array of parts whose `text` parts are joined by `\n`. `None` when
/// the content has another type or a part has no `type`, or a text part's
/// `text` is not a string.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ParsedRequest, RequestError> {
        ParsedRequest::parse(v.to_string().as_bytes(), &ValidationLimits::default())
    }

    fn parse_with(v: Value, limits: &ValidationLimits) -> Result<ParsedRequest, RequestError> {
        ParsedRequest::parse(v.to_string().as_bytes(), limits)
    }

    /// The `param` of a rejected body.
    fn param_of(v: Value) -> Option<String> {
        match parse(v.clone()) {
            Ok(_) => panic!("accepted: {v}"),
            Err(e) => e.param,
        }
    }

    fn ok_body() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut b = ok_body();
        b[field] = value;
        b
    }

    #[test]
    fn a_valid_request_is_read_and_kept() {
        let body = json!({
            "model": "qwen",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_completion_tokens": 64,
            "max_tokens": 9999999,
            "temperature": 0.5,
            "top_p": 1,
            "n": 1,
            "seed": 7,
            "messages": [
                {"role": "developer", "content": "be nice"},
                {"role": "user", "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                    {"type": "text", "text": "b"}
                ]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "function", "content": "42"}
            ]
        });
        let r = parse(body.clone()).expect("valid");
        assert_eq!(r.model, "qwen");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.max_tokens, Some(64), "max_completion_tokens wins");
        assert_eq!(r.temperature, Some(0.5));
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::Tool]
        );
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.messages[2].content, "");
        assert_eq!(Value::Object(r.body), body, "the body is kept as sent");
    }

    #[test]
    fn malformed_bodies_have_no_param() {
        for raw in [&b"{"[..], b"[]", b"\"x\"", b"", b"{\"model\":\"m\"} x"] {
            let e = ParsedRequest::parse(raw, &ValidationLimits::default()).unwrap_err();
            assert_eq!(e.param, None, "{raw:?}");
        }
        let e = ParsedRequest::parse(b"[]", &ValidationLimits::default()).unwrap_err();
        assert_eq!(e.message, "The request body must be a JSON object.");
        let e = ParsedRequest::parse(b"{", &ValidationLimits::default()).unwrap_err();
        assert!(e.message.starts_with("We could not parse the JSON body"));
    }

    #[test]
    fn model_and_stream() {
        let mut no_model = ok_body();
        no_model.as_object_mut().unwrap().remove("model");
        assert_eq!(param_of(no_model).as_deref(), Some("model"));
        assert_eq!(param_of(with("model", json!(""))).as_deref(), Some("model"));
        assert_eq!(param_of(with("model", json!(3))).as_deref(), Some("model"));
        assert_eq!(
            param_of(with("stream", json!("yes"))).as_deref(),
            Some("stream")
        );
        assert!(!parse(with("stream", Value::Null)).unwrap().stream);
    }

    #[test]
    fn each_message_rule_names_its_param() {
        let cases = [
            (json!(null), "messages"),
            (json!("hi"), "messages"),
            (json!([]), "messages"),
            (json!([{"content": "x"}]), "messages[0].role"),
            (
                json!([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]),
                "messages[1].role",
            ),
            (
                json!([{"role": "user", "content": 3}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": {"text": "x"}}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": [{"text": "x"}]}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": [{"type": "text", "text": 1}]}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": "a\u{0}b"}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": "ok"}, {"role": "user", "content": "\u{1b}[2J"}]),
                "messages[1].content",
            ),
            (
                json!([{"role": "user", "content": [{"type": "text", "text": "\u{7f}"}]}]),
                "messages[0].content",
            ),
        ];
        for (messages, param) in cases {
            let got = param_of(with("messages", messages.clone()));
            assert_eq!(got.as_deref(), Some(param), "{messages}");
        }
        let mut no_messages = ok_body();
        no_messages.as_object_mut().unwrap().remove("messages");
        assert_eq!(param_of(no_messages).as_deref(), Some("messages"));
        let e = parse(with(
            "messages",
            json!([{"role": "user", "content": "\u{1}"}]),
        ))
        .unwrap_err();
        assert_eq!(
            e.message,
            "Message 0 contains the control character U+0001."
        );
        // Tab, line feed and carriage return are text.
        assert!(
            parse(with(
                "messages",
                json!([{"role": "user", "content": "a\tb\r\nc"}])
            ))
            .is_ok()
        );
    }

    #[test]
    fn size_limits_name_their_param() {
        let limits = ValidationLimits {
            max_messages: 2,
            max_message_chars: 5,
            max_total_chars: 8,
            max_tokens: 100,
        };
        let m = |c: &str| json!({"role": "user", "content": c});
        let cases = [
            (json!([m("a"), m("b"), m("c")]), "messages"),
            (json!([m("a"), m("123456")]), "messages[1].content"),
            (json!([m("12345"), m("1234")]), "messages"),
        ];
        for (messages, param) in cases {
            let e = parse_with(with("messages", messages.clone()), &limits).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{messages}");
        }
        let e = parse_with(with("messages", json!([m("123456")])), &limits).unwrap_err();
        assert_eq!(
            e.message,
            "Message 0 has 6 characters; at most 5 are accepted."
        );
        // Characters, not bytes.
        assert!(parse_with(with("messages", json!([m("你好你好你"), m("好")])), &limits).is_ok());
        let e = parse_with(with("max_tokens", json!(101)), &limits).unwrap_err();
        assert_eq!(e.message, "`max_tokens` must be at most 100.");
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(parse_with(with("max_tokens", json!(100)), &limits).is_ok());
    }

    #[test]
    fn sampling_parameters_name_their_param() {
        let cases = [
            ("max_tokens", json!(0)),
            ("max_tokens", json!(-1)),
            ("max_tokens", json!(1.5)),
            ("max_tokens", json!(u64::from(u32::MAX) + 1)),
            ("max_completion_tokens", json!("8")),
            ("top_p", json!(0)),
            ("top_p", json!(1.01)),
            ("presence_penalty", json!(-2.5)),
            ("frequency_penalty", json!(2.01)),
            ("frequency_penalty", json!("0")),
            ("n", json!(0)),
            ("n", json!(17)),
            ("temperature", json!(-0.1)),
            ("temperature", json!(2.5)),
            ("temperature", json!("hot")),
        ];
        for (field, value) in cases {
            let want = if field == "max_completion_tokens" {
                "max_tokens"
            } else {
                field
            };
            assert_eq!(
                param_of(with(field, value.clone())).as_deref(),
                Some(want),
                "{field}: {value}"
            );
        }
        let e = parse(with("top_p", json!(0))).unwrap_err();
        assert_eq!(e.message, "`top_p` must be a number in (0, 1].");
        let e = parse(with("presence_penalty", json!(3))).unwrap_err();
        assert_eq!(e.message, "`presence_penalty` must be a number in [-2, 2].");
        for (field, value) in [
            ("top_p", json!(1)),
            ("presence_penalty", json!(-2)),
            ("frequency_penalty", json!(2.0)),
            ("n", json!(16)),
            ("temperature", json!(0)),
            ("temperature", json!(2)),
            ("max_tokens", Value::Null),
        ] {
            assert!(
                parse(with(field, value.clone())).is_ok(),
                "{field}: {value}"
            );
        }
    }

    #[test]
    fn set_messages_keeps_other_fields_when_the_shape_holds() {
        let mut r = parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "my mail is a@b.c", "name": "ann"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}
            ]
        }))
        .unwrap();
        let rewritten = vec![
            Message {
                role: Role::User,
                content: "my mail is [EMAIL]".into(),
            },
            Message {
                role: Role::Assistant,
                content: String::new(),
            },
        ];
        r.set_messages(rewritten.clone());
        assert_eq!(r.messages, rewritten);
        assert_eq!(
            r.body["messages"],
            json!([
                {"role": "user", "content": "my mail is [EMAIL]", "name": "ann"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}
            ])
        );
        r.set_messages(vec![Message {
            role: Role::System,
            content: "only".into(),
        }]);
        assert_eq!(
            r.body["messages"],
            json!([{"role": "system", "content": "only"}])
        );
    }

    #[test]
    fn the_canary_goes_to_the_first_system_prompt_with_text() {
        let mut r = parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "parts"}]},
                {"role": "developer", "content": "rules"},
                {"role": "system", "content": "more"}
            ]
        }))
        .unwrap();
        r.add_canary("[c]");
        assert_eq!(r.messages[2].content, "rules[c]");
        assert_eq!(r.body["messages"][2]["content"], "rules[c]");
        assert_eq!(r.messages[3].content, "more");
        let mut plain = parse(ok_body()).unwrap();
        let before = plain.clone();
        plain.add_canary("[c]");
        assert_eq!(plain, before, "no system prompt, nothing to mark");
    }

    #[test]
    fn token_estimate_counts_characters_messages_and_allowance() {
        let r = parse(with(
            "messages",
            json!([{"role": "user", "content": "你好你好你"}, {"role": "user", "content": ""}]),
        ))
        .unwrap();
        // 5 characters -> 2 tokens, 2 messages -> 8, default allowance 100.
        assert_eq!(r.token_estimate(100), 2 + 8 + 100);
        let r = parse(with("max_tokens", json!(7))).unwrap();
        assert_eq!(r.token_estimate(100), 1 + 4 + 7);
    }

    #[test]
    fn numbers_are_forwarded_as_the_client_wrote_them() {
        // Found by the `request_parser` fuzz target: with serde_json's default (fast, not
        // always correctly rounded) float parsing, this number came back 1 ULP off after
        // the forwarded body was written and read again. `float_roundtrip` fixes it.
        let n = "6466666666666600000000000000000000000000000000000000000000001676445569";
        let raw = format!(
            r#"{{"model":"m","seed":{n},"top_p":0.30000000000000004441,"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let limits = ValidationLimits::default();
        let r = ParsedRequest::parse(raw.as_bytes(), &limits).unwrap();
        assert_eq!(r.body["seed"].as_f64(), n.parse::<f64>().ok());
        assert_eq!(
            r.body["top_p"].as_f64(),
            "0.30000000000000004441".parse::<f64>().ok()
        );
        let forwarded = serde_json::to_vec(&r.body).unwrap();
        assert_eq!(ParsedRequest::parse(&forwarded, &limits).unwrap(), r);
    }

    #[test]
    fn limits_deserialize_with_defaults_and_refuse_unknown_fields() {
        let l: ValidationLimits = serde_json::from_value(json!({"max_messages": 3})).unwrap();
        assert_eq!(
            l,
            ValidationLimits {
                max_messages: 3,
                ..ValidationLimits::default()
            }
        );
        assert!(serde_json::from_value::<ValidationLimits>(json!({"max_mesages": 3})).is_err());
    }
}
