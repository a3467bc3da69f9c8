//! `/admin/*`: list, upload and remove components; watch reload events.
//! Every route needs `Authorization: Bearer <admin token>`; without a
//! configured token the admin API is off (403).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::error::ApiError;
use crate::registry::DeployError;

/// Rejects requests without the admin token. Compares digests, so the time
/// taken does not depend on how much of the token was right.
pub async fn require_admin(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = app.settings.admin_token.as_deref() else {
        return ApiError::forbidden(
            "The admin API is disabled: start wasmgate with --admin-token.",
        )
        .into_response();
    };
    let given = bearer(req.headers()).unwrap_or_default();
    if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()) {
        return ApiError::unauthorized("Missing or wrong admin token.").into_response();
    }
    next.run(req).await
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn kind_of(kind: &str) -> Result<&'static str, ApiError> {
    match kind {
        "guards" => Ok("guard"),
        "agents" => Ok("agent"),
        other => Err(ApiError::bad_request(format!(
            "Unknown component kind `{other}`: use `guards` or `agents`."
        ))
        .with_param("kind")
        .into_status(StatusCode::NOT_FOUND)),
    }
}

/// `GET /admin/components`.
pub async fn list(State(app): State<Arc<AppState>>) -> Json<Value> {
    let set = app.registry.current();
    let files = app.registry.statuses().await;
    let guards: Vec<Value> = set
        .all_guards
        .values()
        .map(|g| g.json(files.get(&*g.name).and_then(|f| f.error.clone())))
        .collect();
    let agents: Vec<Value> = set
        .agents
        .iter()
        .map(|(name, sha)| json!({ "name": name, "kind": "agent", "sha256": sha }))
        .collect();
    let rejected: Vec<Value> = files
        .iter()
        .filter(|(name, f)| f.error.is_some() && !set.all_guards.contains_key(*name))
        .map(|(name, f)| {
            json!({ "name": name, "kind": "guard", "sha256": f.sha256, "error": f.error, "at": f.at })
        })
        .collect();
    Json(json!({ "guards": guards, "agents": agents, "rejected": rejected }))
}

/// `PUT /admin/components/{kind}/{name}` with the `.wasm` as the body.
pub async fn put(
    State(app): State<Arc<AppState>>,
    Path((kind, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kind)?;
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(app.settings.max_component_bytes)
        } else {
            ApiError::bad_request(format!("Could not read the upload: {rej}"))
        }
    })?;
    if kind == "agent" {
        return Err(ApiError::not_implemented(
            "Uploading agents is not available in this build yet; copy the file into the agents folder.",
        ));
    }
    let sha = crate::runtime::compile::sha256_hex(&bytes);
    match app.registry.install_guard(&name, bytes.to_vec()).await {
        Ok((guard, created)) => {
            tracing::info!(target: "audit", action = "put", kind, name, sha256 = %sha, "component deployed through the admin API");
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(guard.json(None))).into_response())
        }
        Err(e) => {
            tracing::info!(target: "audit", action = "put", kind, name, sha256 = %sha, error = %e, "component upload rejected");
            Err(deploy_error(e))
        }
    }
}

/// `DELETE /admin/components/{kind}/{name}`.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&kind)?;
    if kind == "agent" {
        return Err(ApiError::not_implemented(
            "Removing agents through the API is not available in this build yet.",
        ));
    }
    app.registry
        .remove_guard(&name)
        .await
        .map_err(deploy_error)?;
    tracing::info!(target: "audit", action = "delete", kind, name, "component removed through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

fn deploy_error(e: DeployError) -> ApiError {
    match e {
        DeployError::Invalid(why) => {
            ApiError::bad_request(format!("The component was rejected: {why}"))
                .with_code("invalid_component")
        }
        DeployError::NotFound => ApiError::bad_request("No such component.")
            .with_code("not_found")
            .into_status(StatusCode::NOT_FOUND),
        DeployError::Io(e) => ApiError::internal(e.to_string()),
    }
}

/// `GET /admin/events`: reload events as server-sent events.
pub async fn events(State(app): State<Arc<AppState>>) -> Response {
    let mut rx = app.registry.subscribe();
    let stream = async_stream_events(move |tx| async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            let Ok(json) = serde_json::to_string(&ev) else {
                continue;
            };
            if tx
                .send(Ok(Bytes::from(format!("data: {json}\n\n"))))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(stream)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A body fed by a task; the task ends when the client goes away.
fn async_stream_events<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    // An initial comment so clients see the stream open at once.
    let _ = tx.try_send(Ok(Bytes::from_static(b": connected\n\n")));
    tokio::spawn(f(tx));
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}
