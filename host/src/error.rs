//! Errors the API returns, in OpenAI's shape:
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Extra fields merged into the `error` object (e.g. which guard blocked).
    pub extra: Option<Box<Value>>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            extra: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 for a model that neither the upstream nor an agent serves.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 413 for a body over the configured limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("Request body is larger than the limit of {limit} bytes."),
        )
        .with_code("payload_too_large")
    }

    /// 502: the upstream could not be reached or answered garbage.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("upstream_error")
    }

    /// 504: the upstream did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_error", message)
            .with_code("upstream_timeout")
    }

    /// 503: a fail-closed guard could not give a verdict.
    pub fn guard_unavailable(guard: &str, why: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("Guard `{guard}` is unavailable ({why}); the request was not processed."),
        )
        .with_code("guard_unavailable")
        .with_extra(json!({ "guard": guard }));
        e.retry_after = Some(1);
        e
    }

    /// 400 `content_filter`: an input guard refused the request.
    pub fn content_filter(guard: &str, category: &str, reason: &str, score: f32) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("Blocked by guard `{guard}` ({category}): {reason}"),
        )
        .with_param("messages")
        .with_code("content_filter")
        .with_extra(json!({ "guard": guard, "category": category, "score": score }))
    }

    /// 401: missing or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    /// 403: the route is switched off.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "invalid_request_error", message).with_code("forbidden")
    }

    /// 429: a per-key limit.
    pub fn rate_limited(what: &str, retry_after: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("Rate limit reached for {what}. Please try again later."),
        )
        .with_code("rate_limit_exceeded");
        e.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
        e
    }

    /// 503: the gateway is at its in-flight cap.
    pub fn overloaded() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The gateway is at capacity. Please retry shortly.",
        )
        .with_code("overloaded");
        e.retry_after = Some(1);
        e
    }

    /// 500 for a bug on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            .with_code("internal_error")
    }

    /// An upstream error answer re-shaped: vLLM uses numeric codes and its own
    /// type names; clients expect OpenAI's.
    pub fn from_upstream(status: StatusCode, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let inner = parsed
            .as_ref()
            .and_then(|v| v.get("error").or(Some(v)))
            .cloned()
            .unwrap_or(Value::Null);
        let message = inner
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                if text.trim().is_empty() {
                    format!("upstream answered {status}")
                } else {
                    text.chars().take(500).collect()
                }
            });
        let param = inner
            .get("param")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (kind, code) = match status.as_u16() {
            404 => ("invalid_request_error", "model_not_found"),
            400..=499 => ("invalid_request_error", "invalid_request"),
            _ => ("upstream_error", "upstream_error"),
        };
        // Server-side failures upstream are a bad gateway for our clients.
        let status = if status.is_server_error() {
            StatusCode::BAD_GATEWAY
        } else {
            status
        };
        let mut e = Self::new(status, kind, message).with_code(code);
        e.param = param;
        e
    }

    /// The same error with another status.
    pub fn into_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) =
            (self.extra.as_deref(), &mut error)
        {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
