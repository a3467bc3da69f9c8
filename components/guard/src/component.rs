//! The `guard-component` world glue.

use std::cell::RefCell;

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};
use wasmgate::llm::types::{Block, Role};

use crate::detect::{assess, reason};
use crate::pii::StreamRedactor;

wit_bindgen::generate!({ path: "../../wit", world: "guard-component" });

struct Guard;

impl Guest for Guard {
    type OutputFilter = PiiFilter;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "guard".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Blocks prompt injection (English and Chinese) in user and tool \
                          messages; redacts e-mail addresses and phone numbers in answers."
                .to_string(),
            filters_output: true,
        }
    }

    fn check_input(req: ChatRequest) -> Verdict {
        let mut worst: Option<crate::detect::Assessment> = None;
        for m in &req.messages {
            if !matches!(m.role, Role::User | Role::Tool) {
                continue;
            }
            let a = assess(&m.content);
            if a.is_injection() && worst.as_ref().is_none_or(|w| a.score > w.score) {
                worst = Some(a);
            }
        }
        match worst.and_then(|a| a.category.map(|c| (a.score, c))) {
            Some((score, cat)) => Verdict::Block(Block {
                category: cat.as_str().to_string(),
                reason: reason(cat),
                score,
            }),
            None => Verdict::Allow,
        }
    }
}

/// Redacts PII while the answer streams.
struct PiiFilter(RefCell<StreamRedactor>);

impl GuestOutputFilter for PiiFilter {
    fn new(_req: ChatRequest) -> Self {
        PiiFilter(RefCell::new(StreamRedactor::new()))
    }

    fn push(&self, delta: String) -> Filtered {
        Filtered::Emit(self.0.borrow_mut().push(&delta))
    }

    fn finish(&self) -> Filtered {
        Filtered::Emit(self.0.borrow_mut().finish())
    }
}

export!(Guard);
