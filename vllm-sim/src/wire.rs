//! Byte-exact JSON for vLLM's OpenAI-compatible chat API.
//!
//! Streamed chunks mirror pydantic's `model_dump_json(exclude_unset=True)`:
//! compact, raw UTF-8, keys in class-declaration order, only the fields vLLM
//! sets explicitly. Errors sent before streaming are compact (starlette
//! `JSONResponse`); an error sent mid-stream goes through Python's
//! `json.dumps`, so it has `", "`/`": "` separators and ASCII-only escapes.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

/// The last event of every stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// `UsageInfo` order: prompt_tokens, total_tokens, completion_tokens.
    fn write(self, out: &mut String) {
        let _ = write!(
            out,
            r#"{{"prompt_tokens":{},"total_tokens":{},"completion_tokens":{}}}"#,
            self.prompt_tokens,
            self.prompt_tokens + self.completion_tokens,
            self.completion_tokens
        );
    }
}

/// A JSON string literal (serde_json escaping matches pydantic's: raw UTF-8,
/// `\n \r \t \b \f \" \\` and `\u00XX` for other control characters).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Builds the SSE events of one `chat.completion.chunk` stream.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…`
    head: String,
}

impl ChunkWriter {
    /// `id` is the full id, e.g. `chatcmpl-<32 hex>`.
    pub fn new(id: &str, created: u64, model: &str) -> Self {
        let head = format!(
            r#"data: {{"id":{},"object":"chat.completion.chunk","created":{},"model":{}"#,
            json_str(id),
            created,
            json_str(model)
        );
        Self { head }
    }

    fn finish(&self, mut out: String, usage: Option<Usage>, tail: &str) -> String {
        if let Some(u) = usage {
            out.push_str(r#","usage":"#);
            u.write(&mut out);
        }
        out.push_str(tail);
        out.push_str("}\n\n");
        out
    }

    /// First chunk: the role, with `prompt_token_ids`/`prompt_text` set (to null).
    pub fn role(&self, usage: Option<Usage>) -> String {
        let mut out = String::with_capacity(self.head.len() + 192);
        out.push_str(&self.head);
        out.push_str(
            r#","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
        );
        self.finish(out, usage, r#","prompt_token_ids":null,"prompt_text":null"#)
    }

    /// A content chunk carrying `text`.
    pub fn content(&self, text: &str, usage: Option<Usage>) -> String {
        let mut out = String::with_capacity(self.head.len() + 128 + text.len());
        out.push_str(&self.head);
        out.push_str(r#","choices":[{"index":0,"delta":{"content":"#);
        out.push_str(&json_str(text));
        out.push_str(r#"},"logprobs":null,"finish_reason":null,"token_ids":null}]"#);
        self.finish(out, usage, "")
    }

    /// The chunk that carries `finish_reason` (with an empty delta).
    pub fn last(&self, finish_reason: &str, usage: Option<Usage>) -> String {
        let mut out = String::with_capacity(self.head.len() + 160);
        out.push_str(&self.head);
        out.push_str(
            r#","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"#,
        );
        out.push_str(&json_str(finish_reason));
        out.push_str(r#","stop_reason":null,"token_ids":null}]"#);
        self.finish(out, usage, "")
    }

    /// The trailing usage-only chunk (`exclude_none`, so nothing else).
    pub fn usage(&self, usage: Usage) -> String {
        let mut out = String::with_capacity(self.head.len() + 96);
        out.push_str(&self.head);
        out.push_str(r#","choices":[],"usage":"#);
        usage.write(&mut out);
        out.push_str("}\n\n");
        out
    }
}

/// Compact `{"error":{...}}` body of an error response sent before streaming.
pub fn error_body(message: &str, err_type: &str, param: Option<&str>, code: u16) -> String {
    json!({
        "error": {
            "message": message,
            "type": err_type,
            "param": param,
            "code": code,
        }
    })
    .to_string()
}

/// The SSE event of an error raised mid-stream (Python `json.dumps` spacing).
pub fn stream_error_event(message: &str, err_type: &str, code: u16) -> String {
    let body = json!({
        "error": {
            "message": message,
            "type": err_type,
            "param": null,
            "code": code,
        }
    });
    let mut out = String::from("data: ");
    py_json_dumps(&body, &mut out);
    out.push_str("\n\n");
    out
}

/// Python `json.dumps(value)` with its defaults: `", "` and `": "`
/// separators and `ensure_ascii=True`.
pub fn py_json_dumps(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&py_float_repr(f)),
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        Value::String(s) => py_json_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json_dumps(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json_str(k, out);
                out.push_str(": ");
                py_json_dumps(v, out);
            }
            out.push('}');
        }
    }
}

fn py_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, `1.0` for integral
/// values, exponent form `1e-05`/`1e+16` outside `[1e-4, 1e16)`.
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:?}` uses the same thresholds and digits, but writes `1e-5`.
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let pad = if digits.len() < 2 { "0" } else { "" };
            format!("{mantissa}e{sign}{pad}{digits}")
        }
        None => s,
    }
}

/// Python `repr()` of a JSON value decoded by `json.loads` (dict/list/str/…),
/// as pydantic puts it into validation messages.
pub fn py_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&py_float_repr(f)),
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        Value::String(s) => py_str_repr(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => py_dict_repr(map, out),
    }
}

fn py_dict_repr(map: &Map<String, Value>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        py_str_repr(k, out);
        out.push_str(": ");
        py_repr(v, out);
    }
    out.push('}');
}

/// Python `repr(str)`.
pub fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// One element of a FastAPI/pydantic validation error list.
#[derive(Debug, Clone)]
pub struct ValidationIssue {
    pub kind: &'static str,
    /// The `loc` tuple, rendered in Python, e.g. `('body', 'messages')`.
    pub loc: Vec<LocPart>,
    pub msg: String,
    pub input: Value,
    /// `ctx` entries, already rendered in Python (`{'error': 'Expecting value'}`).
    pub ctx: Option<String>,
}

/// One element of a pydantic `loc`.
#[derive(Debug, Clone)]
pub enum LocPart {
    Key(&'static str),
    Index(usize),
}

impl ValidationIssue {
    fn repr(&self, out: &mut String) {
        out.push_str("{'type': ");
        py_str_repr(self.kind, out);
        out.push_str(", 'loc': (");
        for (i, part) in self.loc.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match part {
                LocPart::Key(k) => py_str_repr(k, out),
                LocPart::Index(n) => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        if self.loc.len() == 1 {
            out.push(',');
        }
        out.push_str("), 'msg': ");
        py_str_repr(&self.msg, out);
        out.push_str(", 'input': ");
        py_repr(&self.input, out);
        if let Some(ctx) = &self.ctx {
            out.push_str(", 'ctx': ");
            out.push_str(ctx);
        }
        out.push('}');
    }

    /// `body.messages`-style parameter name.
    pub fn param(&self) -> String {
        self.loc
            .iter()
            .map(|p| match p {
                LocPart::Key(k) => (*k).to_string(),
                LocPart::Index(n) => n.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The 400 body of a request-validation error: `type` is `"Bad Request"` and
/// the message is FastAPI's `"N validation error(s):\n  {...}"`.
pub fn validation_error_body(issues: &[ValidationIssue]) -> String {
    let mut message = format!(
        "{} validation error{}:",
        issues.len(),
        if issues.len() == 1 { "" } else { "s" }
    );
    for issue in issues {
        message.push_str("\n  ");
        issue.repr(&mut message);
    }
    let param = issues.first().map(ValidationIssue::param);
    error_body(&message, "Bad Request", param.as_deref(), 400)
}

/// Everything a non-streaming response needs.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    pub content: &'a str,
    pub finish_reason: &'a str,
    pub usage: Usage,
}

/// `ChatCompletionResponse.model_dump()`: the full dump, nulls included,
/// `tool_calls` dropped because it is empty.
pub fn chat_completion(c: &Completion<'_>) -> String {
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": c.content,
                "refusal": null,
                "annotations": null,
                "audio": null,
                "function_call": null,
                "reasoning": null,
            },
            "logprobs": null,
            "finish_reason": c.finish_reason,
            "stop_reason": null,
            "token_ids": null,
            "routed_experts": null,
        }],
        "service_tier": null,
        "system_fingerprint": null,
        "usage": {
            "prompt_tokens": c.usage.prompt_tokens,
            "total_tokens": c.usage.prompt_tokens + c.usage.completion_tokens,
            "completion_tokens": c.usage.completion_tokens,
            "prompt_tokens_details": null,
            "completion_tokens_details": null,
        },
        "prompt_logprobs": null,
        "prompt_token_ids": null,
        "prompt_text": null,
        "kv_transfer_params": null,
        "ec_transfer_params": null,
        "metrics": null,
    })
    .to_string()
}

/// `GET /v1/models`.
pub fn models(model: &str, created: u64, max_model_len: u32, perm_id: &str) -> String {
    json!({
        "object": "list",
        "data": [{
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": model,
            "parent": null,
            "max_model_len": max_model_len,
            "permission": [{
                "id": perm_id,
                "object": "model_permission",
                "created": created,
                "allow_create_engine": false,
                "allow_sampling": true,
                "allow_logprobs": true,
                "allow_search_indices": false,
                "allow_view": true,
                "allow_fine_tuning": false,
                "organization": "*",
                "group": null,
                "is_blocking": false,
            }],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "chatcmpl-0123456789abcdef0123456789abcdef";

    fn writer() -> ChunkWriter {
        ChunkWriter::new(ID, 1730000000, "qwen")
    }

    #[test]
    fn role_chunk_matches_doc() {
        assert_eq!(
            writer().role(None),
            concat!(
                r#"data: {"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null,"prompt_text":null}"#,
                "\n\n"
            )
        );
    }

    #[test]
    fn content_chunk_matches_doc() {
        assert_eq!(
            writer().content("Hello", None),
            concat!(
                r#"data: {"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null,"token_ids":null}]}"#,
                "\n\n"
            )
        );
    }

    #[test]
    fn content_is_raw_utf8_with_json_escapes() {
        let got = writer().content("日\n\"é\"\u{1}", None);
        assert!(
            got.contains(r#""delta":{"content":"日\n\"é\"\u0001"}"#),
            "{got}"
        );
    }

    #[test]
    fn final_chunk_matches_doc() {
        assert_eq!(
            writer().last("stop", None),
            concat!(
                r#"data: {"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}"#,
                "\n\n"
            )
        );
    }

    #[test]
    fn usage_chunk_matches_doc() {
        let u = Usage {
            prompt_tokens: 12,
            completion_tokens: 28,
        };
        assert_eq!(
            writer().usage(u),
            concat!(
                r#"data: {"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion.chunk","created":1730000000,"model":"qwen","choices":[],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28}}"#,
                "\n\n"
            )
        );
    }

    #[test]
    fn continuous_usage_sits_between_choices_and_prompt_fields() {
        let u = Usage {
            prompt_tokens: 5,
            completion_tokens: 0,
        };
        let got = writer().role(Some(u));
        assert!(
            got.ends_with(
                r#""finish_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":5,"completion_tokens":0},"prompt_token_ids":null,"prompt_text":null}

"#
            ),
            "{got}"
        );
    }

    #[test]
    fn stream_error_uses_python_spacing() {
        assert_eq!(
            stream_error_event("boom", "InternalServerError", 500),
            "data: {\"error\": {\"message\": \"boom\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n"
        );
        let mut out = String::new();
        py_json_dumps(&json!("é\u{1F980}"), &mut out);
        assert_eq!(out, r#""\u00e9\ud83e\udd80""#);
    }

    #[test]
    fn error_body_is_compact() {
        assert_eq!(
            error_body(
                "The model `x` does not exist.",
                "NotFoundError",
                Some("model"),
                404
            ),
            r#"{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}}"#
        );
        assert_eq!(
            error_body("boom", "InternalServerError", None, 500),
            r#"{"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}"#
        );
    }

    #[test]
    fn validation_message_reprs_python() {
        let issue = ValidationIssue {
            kind: "missing",
            loc: vec![LocPart::Key("body"), LocPart::Key("messages")],
            msg: "Field required".into(),
            input: json!({"model": "m", "stream": true, "x": null, "t": 0.5, "q": "it's"}),
            ctx: None,
        };
        assert_eq!(
            validation_error_body(&[issue]),
            r#"{"error":{"message":"1 validation error:\n  {'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', 'input': {'model': 'm', 'stream': True, 'x': None, 't': 0.5, 'q': \"it's\"}}","type":"Bad Request","param":"body.messages","code":400}}"#
        );
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(0.1), "0.1");
        assert_eq!(py_float_repr(1e-5), "1e-05");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(2560.0), "2560.0");
        assert_eq!(py_float_repr(1.5e-7), "1.5e-07");
    }

    #[test]
    fn non_stream_keys_in_order() {
        let body = chat_completion(&Completion {
            id: ID,
            created: 1,
            model: "qwen",
            content: "hi",
            finish_reason: "stop",
            usage: Usage {
                prompt_tokens: 7,
                completion_tokens: 1,
            },
        });
        assert_eq!(
            body,
            r#"{"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion","created":1,"model":"qwen","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null,"annotations":null,"audio":null,"function_call":null,"reasoning":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null,"routed_experts":null}],"service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1,"prompt_tokens_details":null,"completion_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}"#
        );
    }
}
