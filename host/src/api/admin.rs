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
use crate::runtime::agent::Agent;
use crate::runtime::guard::Guard;

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

/// Loaded components and rejected files, as `/admin/components` and `/readyz` show them.
pub async fn components_json(app: &AppState) -> Value {
    let set = app.registry.current();
    let files = app.registry.statuses().await;
    let last_error = |kind: &'static str, name: &str| {
        files
            .get(&(kind, name.to_owned()))
            .and_then(|f| f.error.clone())
    };
    let guards: Vec<Value> = set
        .all_guards
        .values()
        .map(|g| g.json(last_error("guard", &g.name)))
        .collect();
    let agents: Vec<Value> = set
        .agents
        .values()
        .map(|a| a.json(last_error("agent", &a.name)))
        .collect();
    let rejected: Vec<Value> = files
        .iter()
        .filter(|((kind, name), f)| {
            f.error.is_some()
                && match *kind {
                    "guard" => !set.all_guards.contains_key(name),
                    _ => !set.agents.contains_key(name),
                }
        })
        .map(|((kind, name), f)| {
            json!({ "name": name, "kind": kind, "sha256": f.sha256, "error": f.error, "at": f.at })
        })
        .collect();
    json!({ "guards": guards, "agents": agents, "rejected": rejected })
}

/// `GET /admin/components`.
pub async fn list(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(components_json(&app).await)
}

/// `PUT /admin/components/{kind}/{name}` with the `.wasm` as the body.
pub async fn put(
    State(app): State<Arc<AppState>>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let signature = headers
        .get("x-wasmgate-signature")
        .and_then(|v| v.to_str().ok());
    let kind = kind_of(&kind)?;
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(app.settings.max_component_bytes)
        } else {
            ApiError::bad_request(format!("Could not read the upload: {rej}"))
        }
    })?;
    let sha = crate::runtime::compile::sha256_hex(&bytes);
    let registry = &app.registry;
    let installed = if kind == "guard" {
        registry
            .install::<Guard>(&name, bytes.to_vec(), signature, |set| {
                set.all_guards.get(&name).cloned()
            })
            .await
            .map(|(g, created)| (g.json(None), created))
    } else {
        registry
            .install::<Agent>(&name, bytes.to_vec(), signature, |set| {
                set.agents.get(&name).cloned()
            })
            .await
            .map(|(a, created)| (a.json(None), created))
    };
    match installed {
        Ok((json, created)) => {
            tracing::info!(target: "audit", action = "put", kind, name, sha256 = %sha, "component deployed through the admin API");
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(json)).into_response())
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
    Path((dir, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&dir)?;
    app.registry
        .remove(&dir, &name)
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
