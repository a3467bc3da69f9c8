//! The upstream OpenAI-compatible servers (vLLM): a pool with health checks,
//! least-in-flight choice, and failover with jittered retries that happen
//! only before any byte of an answer reached the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::RwLock;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// How long the model list is trusted.
const MODELS_TTL: Duration = Duration::from_secs(10);
/// Period of the active health check.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// First retry back-off; doubles per attempt, plus up to as much jitter.
const BACKOFF: Duration = Duration::from_millis(25);

/// Timeouts of upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the response head (whole body for non-streamed answers).
    pub response: Duration,
    /// Until the first chunk of a stream.
    pub first_token: Duration,
    /// Between two chunks of a stream.
    pub idle: Duration,
}

/// One upstream server.
pub struct Target {
    pub base: String,
    inflight: AtomicUsize,
    healthy: AtomicBool,
}

/// Holds a target's in-flight count for as long as its answer is read.
pub struct TargetGuard(Arc<Target>);

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Upstream {
    targets: Vec<Arc<Target>>,
    http: reqwest::Client,
    timeouts: Timeouts,
    retries: u32,
    models: RwLock<Option<(Instant, Vec<Value>)>>,
}

impl Upstream {
    pub fn new(bases: Vec<String>, timeouts: Timeouts, retries: u32) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            targets: bases
                .into_iter()
                .map(|base| {
                    Arc::new(Target {
                        base,
                        inflight: AtomicUsize::new(0),
                        healthy: AtomicBool::new(true),
                    })
                })
                .collect(),
            http,
            timeouts,
            retries,
            models: RwLock::new(None),
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The configured base URLs, for logs.
    pub fn bases(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.base.as_str()).collect()
    }

    /// Healthy targets by fewest requests in flight, then the unhealthy ones
    /// as a last resort.
    fn ranked(&self) -> Vec<Arc<Target>> {
        let mut ts: Vec<Arc<Target>> = self.targets.clone();
        ts.sort_by_key(|t| {
            (
                !t.healthy.load(Ordering::Relaxed),
                t.inflight.load(Ordering::Relaxed),
            )
        });
        ts
    }

    /// Checks every target's `/models` periodically, marking it up or down.
    pub fn spawn_health_checks(self: &Arc<Self>, metrics: Arc<Metrics>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_EVERY);
            loop {
                tick.tick().await;
                let Some(up) = me.upgrade() else { return };
                for t in &up.targets {
                    let ok = tokio::time::timeout(
                        Duration::from_secs(2),
                        up.http.get(format!("{}/models", t.base)).send(),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
                    let was = t.healthy.swap(ok, Ordering::Relaxed);
                    if was != ok {
                        tracing::warn!(upstream = %t.base, healthy = ok, "upstream health changed");
                    }
                    metrics
                        .upstream_healthy
                        .with_label_values(&[&t.base])
                        .set(i64::from(ok));
                }
            }
        });
    }

    /// Sends a chat request to the best target, failing over to others on
    /// connection errors, timeouts and 5xx answers (nothing has reached the
    /// client yet, so a retry is invisible). A 4xx answer is the client's
    /// and is returned as is.
    pub async fn chat(
        &self,
        body: Bytes,
        request_id: &str,
        metrics: &Metrics,
    ) -> Result<(reqwest::Response, TargetGuard), ApiError> {
        let mut last_err = ApiError::bad_gateway("No upstream is configured.");
        for attempt in 0..=self.retries {
            let ranked = self.ranked();
            let Some(target) = ranked.get(attempt as usize % ranked.len().max(1)).cloned() else {
                break;
            };
            if attempt > 0 {
                metrics.upstream_retries.inc();
                let base = BACKOFF * 2u32.pow(attempt - 1);
                let jitter = base.mul_f64(rand_unit());
                tokio::time::sleep(base + jitter).await;
            }
            target.inflight.fetch_add(1, Ordering::Relaxed);
            let guard = TargetGuard(target.clone());
            let send = self
                .http
                .post(format!("{}/chat/completions", target.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-request-id", request_id)
                .body(body.clone())
                .send();
            let resp = match tokio::time::timeout(self.timeouts.response, send).await {
                Err(_) => {
                    metrics
                        .upstream_errors
                        .with_label_values(&["timeout"])
                        .inc();
                    last_err = ApiError::gateway_timeout(format!(
                        "The upstream did not answer within {} ms.",
                        self.timeouts.response.as_millis()
                    ));
                    continue;
                }
                Ok(Err(e)) => {
                    last_err = self.transport_error(&target, &e, metrics);
                    continue;
                }
                Ok(Ok(resp)) => resp,
            };
            if resp.status().is_success() {
                target.healthy.store(true, Ordering::Relaxed);
                return Ok((resp, guard));
            }
            metrics.upstream_errors.with_label_values(&["status"]).inc();
            let status = resp.status();
            let body = tokio::time::timeout(self.timeouts.response, resp.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            last_err = ApiError::from_upstream(status, &body);
            if !status.is_server_error() {
                return Err(last_err);
            }
        }
        Err(last_err)
    }

    /// Reads a whole (non-streamed) body within the response timeout.
    pub async fn read_body(
        &self,
        resp: reqwest::Response,
        metrics: &Metrics,
    ) -> Result<Bytes, ApiError> {
        match tokio::time::timeout(self.timeouts.response, resp.bytes()).await {
            Err(_) => {
                metrics
                    .upstream_errors
                    .with_label_values(&["timeout"])
                    .inc();
                Err(ApiError::gateway_timeout(
                    "The upstream did not finish its answer in time.",
                ))
            }
            Ok(Err(e)) => {
                metrics.upstream_errors.with_label_values(&["stream"]).inc();
                Err(ApiError::bad_gateway(format!(
                    "The upstream's answer broke off: {e}"
                )))
            }
            Ok(Ok(b)) => Ok(b),
        }
    }

    fn transport_error(&self, target: &Target, e: &reqwest::Error, metrics: &Metrics) -> ApiError {
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
            if e.is_connect() && target.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(upstream = %target.base, error = %e, "upstream unreachable; marked down");
            }
            metrics.upstream_errors.with_label_values(&[kind]).inc();
            ApiError::bad_gateway(format!(
                "The upstream at {} is unreachable: {e}",
                target.base
            ))
        }
    }

    /// The model objects of the first target that answers, cached briefly.
    pub async fn models(&self, metrics: &Metrics) -> Result<Vec<Value>, ApiError> {
        if let Some((at, list)) = &*self.models.read().await
            && at.elapsed() < MODELS_TTL
        {
            return Ok(list.clone());
        }
        let mut last_err = ApiError::bad_gateway("No upstream is configured.");
        for target in self.ranked() {
            let fetch = self.http.get(format!("{}/models", target.base)).send();
            let limit = self.timeouts.response.min(Duration::from_secs(5));
            let resp = match tokio::time::timeout(limit, fetch).await {
                Err(_) => {
                    last_err = ApiError::gateway_timeout("The upstream's model list timed out.");
                    continue;
                }
                Ok(Err(e)) => {
                    last_err = self.transport_error(&target, &e, metrics);
                    continue;
                }
                Ok(Ok(r)) => r,
            };
            if resp.status() != StatusCode::OK {
                let status = resp.status();
                let body = resp.bytes().await.unwrap_or_default();
                last_err = ApiError::from_upstream(status, &body);
                continue;
            }
            let v: Value = match resp.json().await {
                Ok(v) => v,
                Err(e) => {
                    last_err = ApiError::bad_gateway(format!(
                        "The upstream's model list is not JSON: {e}"
                    ));
                    continue;
                }
            };
            let list = v
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            *self.models.write().await = Some((Instant::now(), list.clone()));
            return Ok(list);
        }
        Err(last_err)
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

/// A number in [0, 1) for back-off jitter; no need for a cryptographic source.
fn rand_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}
