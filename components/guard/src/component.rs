//! The `guard-component` world glue: converts WIT types and reads the config.

use std::cell::RefCell;

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};
use wasmgate::llm::config;
use wasmgate::llm::types::{Block, Message, Role};

use crate::policy::{self, InputSettings, InputVerdict, OutputGuard, OutputSettings};

wit_bindgen::generate!({ path: "../../wit", world: "guard-component" });

struct Guard;

fn role(r: Role) -> policy::Role {
    match r {
        Role::System => policy::Role::System,
        Role::User => policy::Role::User,
        Role::Assistant => policy::Role::Assistant,
        Role::Tool => policy::Role::Tool,
    }
}

fn block(b: policy::Blocked) -> Block {
    Block {
        category: b.category,
        reason: b.reason,
        score: b.score,
    }
}

impl Guest for Guard {
    type OutputFilter = Filter;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "guard".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Blocks prompt injection (English and Chinese: rules and a learned \
                          scorer) in user and tool messages and redacts PII and secrets in \
                          them; in answers, redacts PII and secrets and stops system-prompt \
                          leaks (canary, verbatim runs) and hijack markers."
                .to_string(),
            filters_output: true,
        }
    }

    fn check_input(req: ChatRequest) -> Verdict {
        let scorer = InputSettings::scorer_from_config(config::get);
        let msgs: Vec<(policy::Role, &str)> = req
            .messages
            .iter()
            .map(|m| (role(m.role), m.content.as_str()))
            .collect();
        let kinds = || InputSettings::kinds_from_config(config::get);
        match policy::check_input_lazy(&msgs, scorer, kinds) {
            InputVerdict::Allow => Verdict::Allow,
            InputVerdict::Block(b) => Verdict::Block(block(b)),
            InputVerdict::Rewrite(contents) => Verdict::Rewrite(
                req.messages
                    .iter()
                    .zip(contents)
                    .map(|(m, content)| Message {
                        role: m.role,
                        content,
                    })
                    .collect(),
            ),
        }
    }
}

/// Leak, hijack and PII checks while the answer streams.
struct Filter(RefCell<OutputGuard>);

impl GuestOutputFilter for Filter {
    fn new(req: ChatRequest) -> Self {
        let settings = OutputSettings::from_config(config::get);
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        Filter(RefCell::new(OutputGuard::new(&system, &settings)))
    }

    fn push(&self, delta: String) -> Filtered {
        convert(self.0.borrow_mut().push(&delta))
    }

    fn finish(&self) -> Filtered {
        convert(self.0.borrow_mut().finish())
    }
}

fn convert(f: policy::Filtered) -> Filtered {
    match f {
        policy::Filtered::Emit(s) => Filtered::Emit(s),
        policy::Filtered::Block(b) => Filtered::Block(block(b)),
    }
}

export!(Guard);
