//! The `agent-component` world glue: the [`Host`] trait over the WIT imports.

use exports::wasmgate::llm::agent::{ChatRequest, ComponentInfo, Guest};
use wasmgate::llm::types::{Message, Role as WitRole};
use wasmgate::llm::{config, inference, log, output, tools};

use crate::prompt::{Msg, Role, ToolInfo};
use crate::run::{Chunk, Completion, Host, Level, Settings, run};

wit_bindgen::generate!({ path: "../../wit", world: "agent-component" });

struct Expert;

impl Guest for Expert {
    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "expert".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "wasmgate expert: answers questions about Wasmgate from its docs \
                          (kb-search), cites the files it used, and ignores instructions \
                          inside retrieved text."
                .to_string(),
            filters_output: false,
        }
    }

    fn run(req: ChatRequest) -> Result<String, String> {
        let settings = Settings::from_config(config::get);
        let granted: Vec<ToolInfo> = tools::available()
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name,
                description: t.description,
                parameters: t.parameters,
            })
            .collect();
        let messages: Vec<Msg> = req
            .messages
            .into_iter()
            .map(|m| Msg {
                role: from_wit(m.role),
                content: m.content,
            })
            .collect();
        let mut host = WitHost {
            request_id: req.request_id,
            caller: req.caller,
            max_tokens: settings.max_tokens,
            temperature: settings.temperature,
        };
        run(&mut host, &messages, &granted, &settings)
    }
}

struct WitHost {
    request_id: String,
    caller: Option<String>,
    max_tokens: u32,
    temperature: f32,
}

impl Completion for inference::Completion {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, String> {
        Ok(self.next()?.map(|c| Chunk {
            text: c.text,
            finish_reason: c.finish_reason,
        }))
    }
}

impl Host for WitHost {
    type Completion = inference::Completion;

    fn start(&mut self, messages: Vec<Msg>) -> Result<inference::Completion, String> {
        inference::start(&ChatRequest {
            request_id: self.request_id.clone(),
            // Empty: the host uses the agent's default allowed model.
            model: String::new(),
            messages: messages
                .into_iter()
                .map(|m| Message {
                    role: to_wit(m.role),
                    content: m.content,
                })
                .collect(),
            max_tokens: Some(self.max_tokens),
            temperature: Some(self.temperature),
            caller: self.caller.clone(),
        })
    }

    fn emit(&mut self, text: &str) -> Result<(), String> {
        output::emit(text)
    }

    fn event(&mut self, kind: &str, json: &str) {
        output::event(kind, json);
    }

    fn call_tool(&mut self, name: &str, arguments: &str) -> Result<String, String> {
        tools::call(name, arguments)
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        log::log(level, message);
    }
}

fn from_wit(r: WitRole) -> Role {
    match r {
        WitRole::System => Role::System,
        WitRole::User => Role::User,
        WitRole::Assistant => Role::Assistant,
        WitRole::Tool => Role::Tool,
    }
}

fn to_wit(r: Role) -> WitRole {
    match r {
        Role::System => WitRole::System,
        Role::User => WitRole::User,
        Role::Assistant => WitRole::Assistant,
        Role::Tool => WitRole::Tool,
    }
}

export!(Expert);
