//! The HTTP API: OpenAI-compatible routes, health, metrics, the web UI.

pub mod admin;
mod agent;
mod chat;
mod filters;
pub mod request;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::upstream::Upstream;

/// Shared by every handler.
pub struct AppState {
    pub settings: Settings,
    pub keys: crate::auth::Keys,
    pub limiter: Arc<dyn crate::limits::LimitStore>,
    /// Slots of the global in-flight cap (chat requests, streams included).
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Turns true when the shutdown grace period is over: open streams end.
    pub closing: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub upstream: Arc<Upstream>,
}

pub fn router(app: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(app.settings.max_body_bytes));
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models))
        .layer(DefaultBodyLimit::max(app.settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::auth::require_key,
        ));
    let api = api.merge(v1);
    let admin = Router::new()
        .route("/admin/components", get(admin::list))
        .route(
            "/admin/components/{kind}/{name}",
            put(admin::put).delete(admin::delete),
        )
        .route("/admin/events", get(admin::events))
        .layer(DefaultBodyLimit::max(app.settings.max_component_bytes))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            admin::require_admin,
        ));
    let api = api.merge(admin);
    let ui: Router<Arc<AppState>> = match &app.settings.ui_dir {
        Some(dir) => Router::new()
            .fallback_service(tower_http::services::ServeDir::new(dir).precompressed_gzip()),
        None => Router::new().route("/", get(landing)).fallback(not_found),
    };
    api.merge(ui)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Counts and times every request by matched route (bounded labels).
async fn observe(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    app.metrics
        .http_requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    app.metrics
        .http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::bad_request("Unknown route. See /v1/chat/completions and /v1/models.")
        .with_code("not_found")
        .into_status(StatusCode::NOT_FOUND)
}

async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}

/// Upstream models plus `agent:<name>` for every loaded agent.
async fn models(State(app): State<Arc<AppState>>) -> Response {
    let mut data = match app.upstream.models(&app.metrics).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e.message, "upstream model list unavailable");
            Vec::new()
        }
    };
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, _) in app
        .registry
        .current()
        .agents
        .iter()
        .filter(|(_, a)| a.settings.enabled)
    {
        data.push(json!({
            "id": format!("agent:{name}"),
            "object": "model",
            "created": created,
            "owned_by": "wasmgate",
        }));
    }
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the first component scan is done and the upstream answers.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let ready = app.registry.is_ready();
    let upstream = tokio::time::timeout(Duration::from_secs(2), app.upstream.models(&app.metrics))
        .await
        .map_or(Err("timed out".to_owned()), |r| r.map_err(|e| e.message));
    let components = admin::components_json(&app).await;
    let body = json!({
        "status": if ready && upstream.is_ok() { "ready" } else { "not ready" },
        "upstream": match &upstream { Ok(_) => "ok".to_owned(), Err(e) => e.clone() },
        "components_loaded": ready,
        "guards": components["guards"],
        "agents": components["agents"],
        "rejected": components["rejected"],
    });
    let status = if ready && upstream.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
