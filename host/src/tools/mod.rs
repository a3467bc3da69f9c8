//! Host tools that agents may be granted: `kb-search`, `calculator`, `now`.

pub mod calc;
pub mod kb;

use serde_json::Value;

use crate::runtime::bindings::agent::wasmgate::llm::tools::ToolSpec;

/// Every tool the host offers.
pub const ALL: &[&str] = &["kb-search", "calculator", "now"];

pub fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "kb-search" => (
            "Search the agent's document folder; returns the top passages with their source files.",
            r#"{"type":"object","properties":{"query":{"type":"string"},"k":{"type":"integer","minimum":1,"maximum":10}},"required":["query"]}"#,
        ),
        "calculator" => (
            "Exact arithmetic on + - * / ^ and parentheses.",
            r#"{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}"#,
        ),
        "now" => (
            "The current UTC time in RFC 3339.",
            r#"{"type":"object","properties":{}}"#,
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters: parameters.to_owned(),
    })
}

/// A tool's result: text parts (joined by blank lines for the agent; each
/// screened by the input guards on its own) and a summary for UI events.
pub struct Output {
    pub parts: Vec<String>,
    pub summary: Value,
}

/// Runs a tool. `kb` is the agent's knowledge base, if it has one.
pub fn call(name: &str, arguments: &str, kb: Option<&kb::Kb>) -> Result<Output, String> {
    let args: Value = serde_json::from_str(if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    })
    .map_err(|e| format!("arguments are not JSON: {e}"))?;
    match name {
        "kb-search" => {
            let kb = kb.ok_or("this agent has no knowledge base (kb_dir)")?;
            let query = args
                .get("query")
                .and_then(Value::as_str)
                .filter(|q| !q.trim().is_empty())
                .ok_or("`query` (a non-empty string) is required")?;
            let k = args
                .get("k")
                .and_then(Value::as_u64)
                .unwrap_or(4)
                .clamp(1, 10) as usize;
            let hits = kb.search(query, k);
            if hits.is_empty() {
                return Ok(Output {
                    parts: vec!["No passages matched.".into()],
                    summary: serde_json::json!({ "hits": [] }),
                });
            }
            let parts = hits
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    format!(
                        "[{}] {} — {}\n{}",
                        i + 1,
                        h.passage.source,
                        h.passage.heading,
                        h.passage.text
                    )
                })
                .collect();
            let summary: Vec<Value> = hits
                .iter()
                .map(|h| serde_json::json!({ "source": h.passage.source, "heading": h.passage.heading, "score": (h.score * 1000.0).round() / 1000.0 }))
                .collect();
            Ok(Output {
                parts,
                summary: serde_json::json!({ "hits": summary }),
            })
        }
        "calculator" => {
            let expr = args
                .get("expression")
                .and_then(Value::as_str)
                .ok_or("`expression` (a string) is required")?;
            let result = calc::evaluate(expr)?;
            Ok(Output {
                parts: vec![result.clone()],
                summary: serde_json::json!({ "result": result }),
            })
        }
        "now" => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            Ok(Output {
                parts: vec![now.clone()],
                summary: serde_json::json!({ "now": now }),
            })
        }
        other => Err(format!("unknown tool `{other}`")),
    }
}
