//! `POST /v1/chat/completions`: validate, check input with every guard, call
//! the upstream, pass the answer through the output filters.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::AppState;
use super::filters::{FilterChain, OutputBlock, check_input};
use super::request::ParsedChat;
use super::stream;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::{Permit, Refusal};
use tokio::sync::OwnedSemaphorePermit;
use wasmgate_protocol::chunk::Usage;

pub const REQUEST_ID: &str = "x-request-id";

pub async fn chat_completions(
    State(app): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let caller = caller.map(|Extension(c)| c);
    let key = caller.as_ref().map(|c| c.name.clone());
    let mut resp = match handle(&app, &request_id, caller, body, started).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%request_id, status = %e.status, error = %e.message, "request failed");
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    // One summary line per request (streams: until the response head; the
    // relay logs the stream's end). Prompts and answers are never logged.
    tracing::info!(
        target: "wasmgate::request",
        %request_id,
        key = key.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "chat request"
    );
    resp
}

/// The client's `X-Request-Id` when it is sane, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// A request's hold on the global in-flight cap and on its key's budgets;
/// it lives as long as the request (for streams, until the stream ends).
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    permit: Option<Permit>,
}

impl Admitted {
    /// Charges the real token count against the key's budget.
    pub fn settle(&mut self, tokens: u64) {
        if let Some(p) = &mut self.permit {
            p.settle(tokens);
        }
    }
}

/// Takes a global slot and the caller's request/token/concurrency budgets.
fn admit(app: &AppState, caller: Option<&Caller>, req: &ParsedChat) -> Result<Admitted, ApiError> {
    let slot = app.inflight.clone().try_acquire_owned().map_err(|_| {
        app.metrics
            .rate_limited
            .with_label_values(&["global"])
            .inc();
        ApiError::overloaded()
    })?;
    let Some(caller) = caller else {
        return Ok(Admitted {
            _slot: slot,
            permit: None,
        });
    };
    let estimate = req.token_estimate(app.settings.default_max_tokens_estimate);
    let (result, _) = app.limiter.admit(&caller.name, &caller.limits, estimate);
    if let Err(refusal) = result {
        let (label, err) = match refusal {
            Refusal::Requests { retry_after } => (
                "requests",
                ApiError::rate_limited("requests per minute", retry_after),
            ),
            Refusal::Tokens { retry_after } => (
                "tokens",
                ApiError::rate_limited("tokens per minute", retry_after),
            ),
            Refusal::Concurrency => (
                "concurrency",
                ApiError::rate_limited("concurrent requests", std::time::Duration::from_secs(1)),
            ),
        };
        app.metrics.rate_limited.with_label_values(&[label]).inc();
        return Err(err);
    }
    Ok(Admitted {
        _slot: slot,
        permit: Some(Permit::new(
            app.limiter.clone(),
            caller.name.to_string(),
            caller.limits,
            estimate,
        )),
    })
}

async fn handle(
    app: &Arc<AppState>,
    request_id: &str,
    caller: Option<Caller>,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<Response, ApiError> {
    let raw = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(app.settings.max_body_bytes)
        } else {
            ApiError::bad_request(format!("Could not read the request body: {rej}"))
        }
    })?;
    let mut req = ParsedChat::parse(&raw, request_id, &app.settings.validation)?;
    req.guard_view.caller = caller.as_ref().map(|c| c.name.to_string());
    let mut admitted = admit(app, caller.as_ref(), &req)?;
    let set = app.registry.current();

    let agent = match req.model.strip_prefix("agent:") {
        Some(name) => match set.agents.get(name) {
            Some(a) if a.settings.enabled => Some(a.clone()),
            _ => return Err(ApiError::model_not_found(&req.model)),
        },
        None => {
            if app.upstream.has_model(&req.model, &app.metrics).await == Some(false) {
                return Err(ApiError::model_not_found(&req.model));
            }
            None
        }
    };

    check_input(&set, &mut req, &app.metrics).await?;
    let canary = app.settings.canary.then(super::request::new_canary);
    if let Some(agent) = agent {
        return super::agent::run_agent(app.clone(), set, agent, req, started, admitted, canary)
            .await;
    }
    if let Some(c) = &canary {
        req.add_canary(c);
    }
    if req.stream {
        // Always ask for usage (for metrics); it reaches the client only if asked.
        let opts = req
            .body
            .entry("stream_options")
            .or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let upstream_body =
        Bytes::from(serde_json::to_vec(&req.body).map_err(|e| ApiError::internal(e.to_string()))?);
    let (resp, target) = app
        .upstream
        .chat(upstream_body, request_id, &app.metrics)
        .await?;

    if req.stream {
        let chains_needed = set.guards.iter().any(|g| g.info.filters_output);
        return Ok(stream::relay(
            app.clone(),
            set,
            req,
            (resp, target),
            started,
            chains_needed,
            admitted,
        ));
    }

    let body = app.upstream.read_body(resp, &app.metrics).await?;
    drop(target);
    let mut answer: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_gateway(format!("The upstream's answer is not JSON: {e}")))?;
    if let Some(tokens) = record_usage(app, &answer) {
        admitted.settle(tokens);
    }
    filter_whole_answer(app, &set, &req, &mut answer).await?;
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// Non-streamed answers pass the same output filters, each choice through
/// its own chain. A block keeps what was emitted before it and sets
/// `finish_reason: "content_filter"`.
async fn filter_whole_answer(
    app: &Arc<AppState>,
    set: &crate::registry::ComponentSet,
    req: &ParsedChat,
    answer: &mut Value,
) -> Result<(), ApiError> {
    if !set.guards.iter().any(|g| g.info.filters_output) {
        return Ok(());
    }
    let Some(choices) = answer.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut blocks = Vec::new();
    for choice in choices.iter_mut() {
        let Some(content) = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let outcome = async {
            let mut chain = FilterChain::start(set, &req.guard_view, &app.metrics).await?;
            let mut out = chain.push(content, &app.metrics).await?;
            out.push_str(&chain.finish(&app.metrics).await?);
            Ok::<_, OutputBlock>(out)
        }
        .await;
        match outcome {
            Ok(text) => {
                if let Some(c) = choice.pointer_mut("/message/content") {
                    *c = Value::String(text);
                }
            }
            Err(block) => {
                if let Some(c) = choice.pointer_mut("/message/content") {
                    *c = Value::String(String::new());
                }
                if let Some(f) = choice.get_mut("finish_reason") {
                    *f = Value::String("content_filter".into());
                }
                app.metrics
                    .streams_cut
                    .with_label_values(&["content_filter"])
                    .inc();
                blocks.push(block_json(&block));
            }
        }
    }
    if let (Some(first), Value::Object(obj)) = (blocks.into_iter().next(), answer) {
        obj.insert("wasmgate".into(), json!({ "blocked": first }));
    }
    Ok(())
}

/// The block as shown to clients (in the final chunk / answer, under `wasmgate`).
pub fn block_json(b: &OutputBlock) -> Value {
    json!({
        "guard": b.guard,
        "category": b.block.category,
        "reason": b.block.reason,
        "score": b.block.score,
    })
}

/// Counts tokens from the `usage` object of an upstream answer; returns the total.
pub fn record_usage(app: &AppState, v: &Value) -> Option<u64> {
    let usage = v.get("usage").filter(|u| u.is_object())?;
    let field = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    Some(count_usage(
        app,
        Usage {
            prompt_tokens: field("prompt_tokens"),
            completion_tokens: field("completion_tokens"),
            total_tokens: field("total_tokens"),
        },
    ))
}

/// Counts an upstream's token usage in the metrics; returns prompt + completion.
pub fn count_usage(app: &AppState, usage: Usage) -> u64 {
    let tokens = &app.metrics.tokens;
    tokens
        .with_label_values(&["prompt"])
        .inc_by(usage.prompt_tokens);
    tokens
        .with_label_values(&["completion"])
        .inc_by(usage.completion_tokens);
    usage.prompt_tokens + usage.completion_tokens
}
