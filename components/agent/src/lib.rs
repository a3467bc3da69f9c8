//! The default Wasmgate agent: forwards the request to the upstream model and
//! streams the answer back to the client. Tools are not used yet.

wit_bindgen::generate!({ path: "../../wit", world: "agent-component" });

use exports::wasmgate::llm::agent::{ChatRequest, ComponentInfo, Guest};
use wasmgate::llm::{inference, output};

struct Agent;

impl Guest for Agent {
    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "agent".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Streams the upstream model's answer to the client.".to_string(),
            filters_output: false,
        }
    }

    fn run(req: ChatRequest) -> Result<String, String> {
        output::event("status", "{\"state\":\"started\"}");
        let completion = inference::start(&req)?;
        let mut finish_reason = None;
        while let Some(chunk) = completion.next()? {
            // An emit error means the client left or a guard blocked: stop.
            if !chunk.text.is_empty() && output::emit(&chunk.text).is_err() {
                return Ok("abort".to_string());
            }
            if chunk.finish_reason.is_some() {
                finish_reason = chunk.finish_reason;
            }
        }
        Ok(finish_reason.unwrap_or_else(|| "stop".to_string()))
    }
}

export!(Agent);
