//! The client for the upstream OpenAI-compatible server (vLLM).

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::RwLock;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// How long the upstream's model list is trusted.
const MODELS_TTL: Duration = Duration::from_secs(10);

pub struct Upstream {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    models: RwLock<Option<(Instant, Vec<Value>)>>,
}

impl Upstream {
    pub fn new(
        base: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            base,
            http,
            timeout,
            models: RwLock::new(None),
        })
    }

    /// Sends a chat request and waits for the response head (bounded by the
    /// upstream timeout). Non-2xx answers become OpenAI-shaped errors.
    pub async fn chat(
        &self,
        body: Bytes,
        request_id: &str,
        metrics: &Metrics,
    ) -> Result<reqwest::Response, ApiError> {
        let send = self
            .http
            .post(format!("{}/chat/completions", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", request_id)
            .body(body)
            .send();
        let resp = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => {
                metrics
                    .upstream_errors
                    .with_label_values(&["timeout"])
                    .inc();
                return Err(ApiError::gateway_timeout(format!(
                    "The upstream did not answer within {} ms.",
                    self.timeout.as_millis()
                )));
            }
            Ok(Err(e)) => return Err(self.transport_error(&e, metrics)),
            Ok(Ok(resp)) => resp,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        metrics.upstream_errors.with_label_values(&["status"]).inc();
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Err(ApiError::from_upstream(status, &body))
    }

    /// The time allowed for a response head, and between stream chunks.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Reads a whole (non-streamed) body within the upstream timeout.
    pub async fn read_body(
        &self,
        resp: reqwest::Response,
        metrics: &Metrics,
    ) -> Result<Bytes, ApiError> {
        match tokio::time::timeout(self.timeout, resp.bytes()).await {
            Err(_) => {
                metrics
                    .upstream_errors
                    .with_label_values(&["timeout"])
                    .inc();
                Err(ApiError::gateway_timeout(
                    "The upstream did not finish its answer in time.",
                ))
            }
            Ok(Err(e)) => Err(self.transport_error(&e, metrics)),
            Ok(Ok(b)) => Ok(b),
        }
    }

    fn transport_error(&self, e: &reqwest::Error, metrics: &Metrics) -> ApiError {
        if e.is_timeout() {
            metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
            ApiError::gateway_timeout(format!("The upstream timed out: {e}"))
        } else {
            let kind = if e.is_connect() {
                "connect"
            } else {
                "protocol"
            };
            metrics.upstream_errors.with_label_values(&[kind]).inc();
            ApiError::bad_gateway(format!("The upstream at {} is unreachable: {e}", self.base))
        }
    }

    /// The upstream's model objects, cached for a few seconds.
    pub async fn models(&self, metrics: &Metrics) -> Result<Vec<Value>, ApiError> {
        if let Some((at, list)) = &*self.models.read().await
            && at.elapsed() < MODELS_TTL
        {
            return Ok(list.clone());
        }
        let fetch = self.http.get(format!("{}/models", self.base)).send();
        let resp = match tokio::time::timeout(Duration::from_secs(5), fetch).await {
            Err(_) => {
                return Err(ApiError::gateway_timeout(
                    "The upstream's model list timed out.",
                ));
            }
            Ok(Err(e)) => return Err(self.transport_error(&e, metrics)),
            Ok(Ok(r)) => r,
        };
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            return Err(ApiError::from_upstream(status, &body));
        }
        let v: Value = resp.json().await.map_err(|e| {
            ApiError::bad_gateway(format!("The upstream's model list is not JSON: {e}"))
        })?;
        let list = v
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        *self.models.write().await = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Whether the upstream serves `model`. `None` when the list is unavailable.
    pub async fn has_model(&self, model: &str, metrics: &Metrics) -> Option<bool> {
        let list = self.models(metrics).await.ok()?;
        let found = |l: &[Value]| {
            l.iter()
                .any(|m| m.get("id").and_then(Value::as_str) == Some(model))
        };
        if found(&list) {
            return Some(true);
        }
        // A model may have been added since the list was cached; refetch,
        // but at most once a second so unknown names cannot flood the upstream.
        {
            let mut cached = self.models.write().await;
            if cached
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() >= Duration::from_secs(1))
            {
                *cached = None;
            }
        }
        let list = self.models(metrics).await.ok()?;
        Some(found(&list))
    }
}
