//! HTTP routes: the vLLM OpenAI-server surface.

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::{Engine, Outcome, StreamOpts};
use crate::metrics::FinishReason;
use crate::script::Message;
use crate::tokenizer;
use crate::wire::{self, ChunkWriter, LocPart, ValidationIssue};

/// The version `/version` reports.
pub const VLLM_VERSION: &str = "0.11.0";

/// Events buffered between the generator task and the socket.
const STREAM_BUFFER: usize = 16;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/load", get(load))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(engine)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// An error answered before any streaming starts.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed")]
    Validation(Vec<ValidationIssue>),
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    #[error(
        "This model's maximum context length is {max_model_len} tokens. However, your request has {prompt} input tokens. Please reduce the length of the input messages."
    )]
    PromptTooLong { max_model_len: u32, prompt: u64 },
    #[error(
        "'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context length is {max_model_len} tokens and your request has {prompt} input tokens ({max_tokens} > {max_model_len} - {prompt})."
    )]
    MaxTokensTooLarge {
        max_tokens: u64,
        max_model_len: u32,
        prompt: u64,
    },
    #[error("max_tokens must be at least 1, got {0}.")]
    MaxTokensTooSmall(i64),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let msg = self.to_string();
        let (status, body) = match &self {
            Self::Validation(issues) => {
                (StatusCode::BAD_REQUEST, wire::validation_error_body(issues))
            }
            Self::ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                wire::error_body(&msg, "NotFoundError", Some("model"), 404),
            ),
            Self::PromptTooLong { .. } => (
                StatusCode::BAD_REQUEST,
                wire::error_body(&msg, "BadRequestError", Some("input_tokens"), 400),
            ),
            Self::MaxTokensTooLarge { .. } | Self::MaxTokensTooSmall(_) => (
                StatusCode::BAD_REQUEST,
                wire::error_body(&msg, "BadRequestError", Some("max_tokens"), 400),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                wire::error_body(&msg, "InternalServerError", None, 500),
            ),
        };
        json_response(status, body)
    }
}

fn issue(kind: &'static str, loc: Vec<LocPart>, msg: &str, input: Value) -> ApiError {
    ApiError::Validation(vec![ValidationIssue {
        kind,
        loc,
        msg: msg.into(),
        input,
        ctx: None,
    }])
}

/// The fields of a chat request the simulator uses.
struct ChatRequest {
    stream: bool,
    opts: StreamOpts,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
    /// Role and text of every message, for echo mode and `--script` rules.
    messages: Vec<Message>,
    request_id: Option<String>,
}

/// Text of a message `content`: a string, or the text parts of a list.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Parses the body the way FastAPI + pydantic would reject it.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(issue(
            "missing",
            vec![LocPart::Key("body")],
            "Field required",
            Value::Null,
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        // Python's `JSONDecodeError.pos`: a character offset.
        let text = String::from_utf8_lossy(body);
        let pos: usize = if e.is_eof() {
            text.chars().count()
        } else {
            text.split_inclusive('\n')
                .take(e.line().saturating_sub(1))
                .map(|l| l.chars().count())
                .sum::<usize>()
                + e.column().saturating_sub(1)
        };
        ApiError::Validation(vec![ValidationIssue {
            kind: "json_invalid",
            loc: vec![LocPart::Key("body"), LocPart::Index(pos)],
            msg: "JSON decode error".into(),
            input: Value::Object(Map::new()),
            ctx: Some("{'error': 'Expecting value'}".into()),
        }])
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(issue(
            "model_attributes_type",
            vec![LocPart::Key("body")],
            "Input should be a valid dictionary or object to extract fields from",
            other,
        )),
    }
}

fn validate(engine: &Engine, body: &Map<String, Value>) -> Result<ChatRequest, ApiError> {
    let Some(messages) = body.get("messages") else {
        return Err(issue(
            "missing",
            vec![LocPart::Key("body"), LocPart::Key("messages")],
            "Field required",
            Value::Object(body.clone()),
        ));
    };
    let Value::Array(messages) = messages else {
        return Err(issue(
            "list_type",
            vec![LocPart::Key("body"), LocPart::Key("messages")],
            "Input should be a valid list",
            messages.clone(),
        ));
    };
    match body.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if *m == engine.cfg.model => {}
        Some(Value::String(m)) => return Err(ApiError::ModelNotFound(m.clone())),
        Some(other) => {
            return Err(issue(
                "string_type",
                vec![LocPart::Key("body"), LocPart::Key("model")],
                "Input should be a valid string",
                other.clone(),
            ));
        }
    }

    let mut prompt_tokens: u64 = 3;
    let messages: Vec<Message> = messages
        .iter()
        .map(|message| {
            let text = content_text(message.get("content"));
            prompt_tokens += tokenizer::count(&text) as u64 + 3;
            let role = message.get("role").and_then(Value::as_str).unwrap_or("");
            Message {
                role: role.to_owned(),
                text,
            }
        })
        .collect();

    // `max_completion_tokens` wins over the deprecated `max_tokens`.
    let mut max_tokens = None;
    for key in ["max_tokens", "max_completion_tokens"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(n) if n < 1 => return Err(ApiError::MaxTokensTooSmall(n)),
                Some(n) => max_tokens = Some(n as u64),
                None => {
                    return Err(issue(
                        "int_type",
                        vec![LocPart::Key("body"), LocPart::Key(key)],
                        "Input should be a valid integer",
                        v.clone(),
                    ));
                }
            },
        }
    }

    let max_model_len = engine.cfg.max_model_len;
    let limit = u64::from(max_model_len);
    if prompt_tokens > limit || (max_tokens.is_none() && prompt_tokens == limit) {
        return Err(ApiError::PromptTooLong {
            max_model_len,
            prompt: prompt_tokens,
        });
    }
    if let Some(m) = max_tokens
        && m > limit - prompt_tokens
    {
        return Err(ApiError::MaxTokensTooLarge {
            max_tokens: m,
            max_model_len,
            prompt: prompt_tokens,
        });
    }

    let stream = matches!(body.get("stream"), Some(Value::Bool(true)));
    let opts = match body.get("stream_options") {
        Some(Value::Object(o)) => {
            let include_usage = match o.get("include_usage") {
                None => true,
                Some(v) => v.as_bool().unwrap_or(false),
            };
            let continuous = o
                .get("continuous_usage_stats")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            StreamOpts {
                include_usage,
                continuous_usage: include_usage && continuous,
            }
        }
        _ => StreamOpts::default(),
    };
    let request_id = body
        .get("request_id")
        .and_then(Value::as_str)
        .map(str::to_owned);

    Ok(ChatRequest {
        stream,
        opts,
        prompt_tokens,
        max_tokens,
        messages,
        request_id,
    })
}

async fn chat_completions(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle_chat(engine, &headers, &body).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(error = %err, "chat completion rejected");
            err.into_response()
        }
    }
}

async fn handle_chat(
    engine: Arc<Engine>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let req = validate(&engine, &body)?;

    let base_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(req.request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let id = format!("chatcmpl-{base_id}");
    let created = now_secs();
    let max_model_len = u64::from(engine.cfg.max_model_len);
    let max_tokens = req
        .max_tokens
        .unwrap_or(max_model_len.saturating_sub(req.prompt_tokens));

    let plan = engine.plan(req.prompt_tokens, max_tokens, &req.messages);
    let mut lc = engine.start(&plan);

    if plan.fault == Some(crate::engine::FailMode::Http500) {
        lc.finish(FinishReason::Error);
        return Err(ApiError::Internal(
            "vllm-sim: injected engine failure".into(),
        ));
    }

    if req.stream {
        let writer = ChunkWriter::new(&id, created, &engine.cfg.model);
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(STREAM_BUFFER);
        let task_engine = Arc::clone(&engine);
        tokio::spawn(async move {
            task_engine.run_stream(lc, plan, writer, req.opts, tx).await;
        });
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            )
            .body(Body::from_stream(ReceiverStream::new(rx)))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok(response);
    }

    match engine.run_blocking(lc, plan).await {
        Outcome::Done {
            content,
            finish,
            usage,
        } => {
            let body = wire::chat_completion(&wire::Completion {
                id: &id,
                created,
                model: &engine.cfg.model,
                content: &content,
                finish_reason: finish.as_str(),
                usage,
            });
            Ok(json_response(StatusCode::OK, body))
        }
        Outcome::Failed(msg) => Err(ApiError::Internal(msg)),
        Outcome::Dropped => {
            // Headers go out, then the body errors: hyper cuts the connection.
            let stream = futures_util::stream::once(async {
                Err::<Bytes, io::Error>(io::Error::other("vllm-sim: injected connection drop"))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
    }
}

async fn models(State(engine): State<Arc<Engine>>) -> Response {
    let perm_id = format!("modelperm-{}", uuid::Uuid::new_v4().simple());
    let body = wire::models(
        &engine.cfg.model,
        now_secs(),
        engine.cfg.max_model_len,
        &perm_id,
    );
    json_response(StatusCode::OK, body)
}

/// FastAPI's `HTTPException`, through vLLM's handler.
fn http_error(status: StatusCode) -> Response {
    let phrase = status.canonical_reason().unwrap_or("Error");
    json_response(
        status,
        wire::error_body(phrase, phrase, None, status.as_u16()),
    )
}

async fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> Response {
    http_error(StatusCode::METHOD_NOT_ALLOWED)
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({ "version": VLLM_VERSION }).to_string(),
    )
}

async fn load(State(engine): State<Arc<Engine>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({ "server_load": engine.load() }).to_string(),
    )
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        engine.render_metrics(),
    )
        .into_response()
}
