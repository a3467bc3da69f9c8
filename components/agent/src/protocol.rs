//! The reply protocol between the agent and the model.
//!
//! Every completion in the tool loop must be EITHER one tool call, a single
//! strict JSON object `{"tool":"kb-search","arguments":{"query":"..."}}`, OR
//! the final answer in plain text. The agent decides which from the first
//! non-whitespace characters of the streamed output ([`classify`]): a reply
//! that starts with `{` (or with a ```` ```json ```` fence followed by `{`) is
//! buffered and parsed with [`parse_tool_call`]; anything else is the answer
//! and is streamed to the client as it arrives.

use serde::Deserialize;
use serde_json::{Map, Value};

/// What the start of a reply says about the whole reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Not enough text yet (only whitespace, or a prefix of a code fence).
    Undecided,
    /// Looks like a tool call: buffer the whole completion and parse it.
    ToolCall,
    /// The final answer: stream it.
    Answer,
}

/// Classifies a reply from its beginning. `text` is everything received so
/// far; leading whitespace is ignored. The result is stable: once a prefix is
/// decided, every extension of it gets the same decision.
pub fn classify(text: &str) -> Start {
    let t = text.trim_start();
    let Some(first) = t.chars().next() else {
        return Start::Undecided;
    };
    match first {
        '{' => Start::ToolCall,
        '`' => classify_fenced(t),
        _ => Start::Answer,
    }
}

/// A reply starting with a backtick: a tool call only if it is a code fence,
/// with no language tag or `json`, whose content starts with `{`.
fn classify_fenced(t: &str) -> Start {
    const FENCE: &str = "```";
    if t.len() < FENCE.len() {
        return if FENCE.starts_with(t) {
            Start::Undecided
        } else {
            Start::Answer
        };
    }
    let Some(rest) = t.strip_prefix(FENCE) else {
        return Start::Answer;
    };
    // Optional language tag: only `json` (any case) keeps it a candidate.
    let tag_len = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    let (tag, after) = rest.split_at(tag_len);
    if !"json".starts_with(&tag.to_ascii_lowercase()) {
        return Start::Answer;
    }
    if after.is_empty() {
        // `tag` may still grow (```js… → ```json), or whitespace may follow.
        return Start::Undecided;
    }
    if tag_len > 0 && tag.len() < 4 {
        // A partial tag followed by something else, e.g. ```js\n.
        return Start::Answer;
    }
    let body = after.trim_start();
    match body.chars().next() {
        None => Start::Undecided,
        Some('{') => Start::ToolCall,
        Some(_) => Start::Answer,
    }
}

/// A parsed tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Map<String, Value>,
}

impl ToolCall {
    /// The arguments as compact JSON, for `tools::call`.
    pub fn arguments_json(&self) -> String {
        Value::Object(self.arguments.clone()).to_string()
    }

    /// The canonical form of the call, as it is replayed to the model in the
    /// `assistant` message: `{"tool":"…","arguments":{…}}`.
    pub fn canonical(&self) -> String {
        format!(
            "{{\"tool\":{},\"arguments\":{}}}",
            Value::String(self.tool.clone()),
            self.arguments_json()
        )
    }
}

/// Why a reply that looked like a tool call is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum Malformed {
    /// Not valid JSON, not an object, a wrong or missing key, an extra key,
    /// a duplicate key, `tool` not a string or `arguments` not an object, or
    /// text around the object.
    Invalid(String),
    /// A well-formed call to a tool the agent was not granted.
    UnknownTool(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Invalid(e) => write!(f, "invalid tool call: {e}"),
            Malformed::UnknownTool(t) => write!(f, "unknown tool `{t}`"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    tool: String,
    arguments: Map<String, Value>,
}

/// Parses a complete reply as a tool call, strictly: exactly the keys `tool`
/// (a string naming one of `known`) and `arguments` (an object), nothing
/// before or after the object except whitespace. One surrounding code fence
/// (```` ``` ```` or ```` ```json ````) is tolerated, since small models add
/// them; its content must be that exact object.
pub fn parse_tool_call(reply: &str, known: &[&str]) -> Result<ToolCall, Malformed> {
    let json = strip_fence(reply.trim())?;
    if !json.starts_with('{') {
        return Err(Malformed::Invalid("not a JSON object".to_string()));
    }
    let wire: Wire = serde_json::from_str(json).map_err(|e| Malformed::Invalid(e.to_string()))?;
    if !known.contains(&wire.tool.as_str()) {
        return Err(Malformed::UnknownTool(wire.tool));
    }
    Ok(ToolCall {
        tool: wire.tool,
        arguments: wire.arguments,
    })
}

fn strip_fence(t: &str) -> Result<&str, Malformed> {
    let Some(rest) = t.strip_prefix("```") else {
        return Ok(t);
    };
    let rest = match rest.get(..4) {
        Some(tag) if tag.eq_ignore_ascii_case("json") => &rest[4..],
        _ => rest,
    };
    let Some(inner) = rest.strip_suffix("```") else {
        return Err(Malformed::Invalid("unterminated code fence".to_string()));
    };
    Ok(inner.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["kb-search", "calculator", "now"];

    #[test]
    fn classify_by_first_characters() {
        assert_eq!(classify(""), Start::Undecided);
        assert_eq!(classify("  \n\t"), Start::Undecided);
        assert_eq!(classify("{"), Start::ToolCall);
        assert_eq!(classify("\n  {\"tool\""), Start::ToolCall);
        assert_eq!(classify("To add a guard"), Start::Answer);
        assert_eq!(classify(" T"), Start::Answer);
        assert_eq!(classify("[1]"), Start::Answer);
        assert_eq!(classify("\"{"), Start::Answer);
    }

    #[test]
    fn classify_code_fences() {
        assert_eq!(classify("`"), Start::Undecided);
        assert_eq!(classify("``"), Start::Undecided);
        assert_eq!(classify("```"), Start::Undecided);
        assert_eq!(classify("```j"), Start::Undecided);
        assert_eq!(classify("```json"), Start::Undecided);
        assert_eq!(classify("```json\n"), Start::Undecided);
        assert_eq!(classify("```json\n{"), Start::ToolCall);
        assert_eq!(classify("```JSON {"), Start::ToolCall);
        assert_eq!(classify("```\n{\"tool\""), Start::ToolCall);
        assert_eq!(classify("`x`"), Start::Answer);
        assert_eq!(classify("``x"), Start::Answer);
        assert_eq!(classify("```toml"), Start::Answer);
        assert_eq!(classify("```js\n{"), Start::Answer);
        assert_eq!(classify("```json\nlet"), Start::Answer);
        assert_eq!(classify("```\n[section]"), Start::Answer);
    }

    #[test]
    fn classify_is_stable_under_extension() {
        let reply = "```json\n{\"tool\":\"now\",\"arguments\":{}}\n```";
        let mut decided = None;
        for end in 0..=reply.len() {
            let s = classify(&reply[..end]);
            if let Some(d) = decided {
                assert_eq!(s, d, "prefix {:?}", &reply[..end]);
            } else if s != Start::Undecided {
                decided = Some(s);
            }
        }
        assert_eq!(decided, Some(Start::ToolCall));
    }

    #[test]
    fn parses_valid_calls() {
        let c = parse_tool_call(
            r#"{"tool":"kb-search","arguments":{"query":"add a new guard"}}"#,
            KNOWN,
        )
        .unwrap();
        assert_eq!(c.tool, "kb-search");
        assert_eq!(c.arguments["query"], "add a new guard");
        assert_eq!(
            c.canonical(),
            r#"{"tool":"kb-search","arguments":{"query":"add a new guard"}}"#
        );

        let c = parse_tool_call(
            "\n  { \"arguments\" : {\"query\": \"x\", \"k\": 2},\n \"tool\": \"kb-search\" }  \n",
            KNOWN,
        )
        .unwrap();
        assert_eq!(c.arguments["k"], 2);
        assert_eq!(c.arguments_json(), r#"{"k":2,"query":"x"}"#);

        let c = parse_tool_call(r#"{"tool":"now","arguments":{}}"#, KNOWN).unwrap();
        assert_eq!(c.arguments_json(), "{}");
    }

    #[test]
    fn tolerates_one_fence() {
        let c = parse_tool_call(
            "```json\n{\"tool\":\"calculator\",\"arguments\":{\"expression\":\"2*(3+4)/7\"}}\n```",
            KNOWN,
        )
        .unwrap();
        assert_eq!(c.tool, "calculator");
        assert!(parse_tool_call("```\n{\"tool\":\"now\",\"arguments\":{}}\n```", KNOWN).is_ok());
        assert!(matches!(
            parse_tool_call("```json\n{\"tool\":\"now\",\"arguments\":{}}\n", KNOWN),
            Err(Malformed::Invalid(_))
        ));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "{",
            "{}",
            r#"{"tool":"kb-search"}"#,
            r#"{"arguments":{"query":"x"}}"#,
            r#"{"tool":"kb-search","arguments":"query=x"}"#,
            r#"{"tool":"kb-search","arguments":null}"#,
            r#"{"tool":"kb-search","arguments":["x"]}"#,
            r#"{"tool":7,"arguments":{}}"#,
            r#"{"tool":"kb-search","arguments":{"query":"x"},}"#,
            r#"{'tool':'kb-search','arguments':{}}"#,
            r#"{"tool":"kb-search","arguments":{"query":"x"}} and then I answer"#,
            r#"{"tool":"kb-search","arguments":{"query":"x"}}{"tool":"now","arguments":{}}"#,
            r#"Sure: {"tool":"now","arguments":{}}"#,
            r#"[{"tool":"now","arguments":{}}]"#,
            r#"{"tool":"now","arguments":{} /* c */}"#,
        ] {
            assert!(
                matches!(parse_tool_call(bad, KNOWN), Err(Malformed::Invalid(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn rejects_extra_and_duplicate_keys() {
        for bad in [
            r#"{"tool":"now","arguments":{},"reason":"time"}"#,
            r#"{"tool":"now","arguments":{},"answer":""}"#,
            r#"{"tool":"now","tool":"kb-search","arguments":{}}"#,
            r#"{"tool":"now","arguments":{},"arguments":{}}"#,
            r#"{"Tool":"now","arguments":{}}"#,
        ] {
            assert!(
                matches!(parse_tool_call(bad, KNOWN), Err(Malformed::Invalid(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn rejects_unknown_tools() {
        assert_eq!(
            parse_tool_call(r#"{"tool":"shell","arguments":{"cmd":"ls"}}"#, KNOWN),
            Err(Malformed::UnknownTool("shell".to_string()))
        );
        assert_eq!(
            parse_tool_call(r#"{"tool":"now","arguments":{}}"#, &["kb-search"]),
            Err(Malformed::UnknownTool("now".to_string()))
        );
        assert!(matches!(
            parse_tool_call(r#"{"tool":"KB-SEARCH","arguments":{}}"#, KNOWN),
            Err(Malformed::UnknownTool(_))
        ));
    }
}
