//! Reading an OpenAI chat request: the validation and body edits live in
//! `wasmgate_protocol::request` (runtime-free, fuzzed); this wrapper gives
//! guards their typed view (the component interface's types) and turns
//! rejections into API errors.

use serde_json::{Map, Value};
use wasmgate_protocol::request::{self as protocol, ParsedRequest, RequestError};

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

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let err = ApiError::bad_request(e.message);
        match e.param {
            Some(p) => err.with_param(p),
            None => err,
        }
    }
}

impl From<protocol::Role> for Role {
    fn from(r: protocol::Role) -> Self {
        match r {
            protocol::Role::System => Role::System,
            protocol::Role::User => Role::User,
            protocol::Role::Assistant => Role::Assistant,
            protocol::Role::Tool => Role::Tool,
        }
    }
}

impl From<Role> for protocol::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::System => protocol::Role::System,
            Role::User => protocol::Role::User,
            Role::Assistant => protocol::Role::Assistant,
            Role::Tool => protocol::Role::Tool,
        }
    }
}

impl ParsedChat {
    pub fn parse(
        raw: &[u8],
        request_id: &str,
        limits: &ValidationLimits,
    ) -> Result<Self, ApiError> {
        let ParsedRequest {
            body,
            model,
            stream,
            include_usage,
            messages,
            max_tokens,
            temperature,
        } = ParsedRequest::parse(raw, limits)?;
        Ok(Self {
            guard_view: ChatRequest {
                request_id: request_id.to_owned(),
                model: model.clone(),
                messages: messages
                    .into_iter()
                    .map(|m| Message {
                        role: m.role.into(),
                        content: m.content,
                    })
                    .collect(),
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
        protocol::set_messages(
            &mut self.body,
            messages.iter().map(|m| (m.role.into(), m.content.as_str())),
        );
        self.guard_view.messages = messages;
    }

    /// Appends `canary` to the first system message (forwarded body and the
    /// guards' view alike). Without a system prompt there is nothing to leak.
    pub fn add_canary(&mut self, canary: &str) {
        if let Some(i) = protocol::add_canary(&mut self.body, canary)
            && let Some(view) = self.guard_view.messages.get_mut(i)
        {
            view.content.push_str(canary);
        }
    }

    /// Rough token count used to reserve a budget at admission: prompt
    /// characters / 4 plus per-message overhead plus the completion allowance.
    pub fn token_estimate(&self, default_max_tokens: u64) -> u64 {
        protocol::token_estimate(
            self.guard_view.messages.iter().map(|m| m.content.as_str()),
            self.guard_view.max_tokens,
            default_max_tokens,
        )
    }
}

/// A fresh leak canary: a line the host appends to the system prompt it
/// forwards; output filters block answers that repeat it.
pub fn new_canary() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("\n\n[ref:wgc-{}]", &id[..16])
}

pub fn role_name(r: Role) -> &'static str {
    protocol::Role::from(r).as_str()
}
