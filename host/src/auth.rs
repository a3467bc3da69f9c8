//! API keys: stored as sha256 digests, looked up by the digest of the
//! presented key (so the comparison does not depend on how much of a key was
//! right), each with a name for logs and metrics and its own limits.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::api::admin::bearer;
use crate::error::ApiError;
use crate::limits::{KeyLimits, Snapshot, format_reset};

/// Who is calling: the key's name and limits.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: Arc<str>,
    pub limits: KeyLimits,
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct Keys {
    by_digest: HashMap<[u8; 32], Caller>,
}

/// One configured key.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    /// The key itself (hashed at start-up), or…
    pub key: Option<String>,
    /// …its sha256 in hex, so the file holds no secret.
    pub key_sha256: Option<String>,
    #[serde(flatten)]
    pub limits: KeyLimits,
}

impl Keys {
    pub fn new(entries: &[KeyEntry]) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for e in entries {
            let digest: [u8; 32] = match (&e.key, &e.key_sha256) {
                (Some(k), None) if !k.is_empty() => Sha256::digest(k.as_bytes()).into(),
                (None, Some(h)) => hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| format!("key `{}`: key_sha256 must be 64 hex digits", e.name))?,
                _ => {
                    return Err(format!(
                        "key `{}` needs exactly one of `key` and `key_sha256`",
                        e.name
                    ));
                }
            };
            let caller = Caller {
                name: Arc::from(e.name.as_str()),
                limits: e.limits,
            };
            if by_digest.insert(digest, caller).is_some() {
                return Err(format!("key `{}` is configured twice", e.name));
            }
        }
        Ok(Self { by_digest })
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn lookup(&self, presented: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.by_digest.get(&digest)
    }
}

/// Requires a valid key on `/v1/*` when keys are configured, and adds the
/// `x-ratelimit-*` headers of the caller's budgets to every response.
pub async fn require_key(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if app.keys.is_empty() {
        return next.run(req).await;
    }
    let Some(caller) = bearer(req.headers())
        .and_then(|k| app.keys.lookup(k))
        .cloned()
    else {
        app.metrics.auth_failures.inc();
        return ApiError::unauthorized(
            "Incorrect or missing API key. Send it as `Authorization: Bearer <key>`.",
        )
        .into_response();
    };
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    let snap = app.limiter.peek(&caller.name, &caller.limits);
    rate_limit_headers(&mut resp, &snap);
    resp
}

/// OpenAI's `x-ratelimit-*` headers.
pub fn rate_limit_headers(resp: &mut Response, snap: &Snapshot) {
    let h = resp.headers_mut();
    for (kind, budget) in [("requests", snap.requests), ("tokens", snap.tokens)] {
        let Some(b) = budget else { continue };
        for (name, value) in [
            (format!("x-ratelimit-limit-{kind}"), b.limit.to_string()),
            (
                format!("x-ratelimit-remaining-{kind}"),
                b.remaining.to_string(),
            ),
            (format!("x-ratelimit-reset-{kind}"), format_reset(b.reset)),
        ] {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::try_from(name),
                HeaderValue::from_str(&value),
            ) {
                h.insert(n, v);
            }
        }
    }
}
