//! Relaying an upstream SSE stream to the client through the output filters.
//!
//! A task reads the upstream events, runs each text delta through the
//! filter chain of its choice and writes OpenAI chunks into a channel that
//! is the client's response body. When the client goes away the channel
//! closes, the task ends and drops the upstream response, which aborts the
//! upstream request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::chat::{block_json, record_usage};
use super::filters::{FilterChain, OutputBlock};
use super::request::ParsedChat;
use crate::registry::ComponentSet;

/// Frames buffered between the relay task and the client socket.
const CHANNEL_DEPTH: usize = 32;
/// Largest frame the relay builds from chunks that were ready together.
const FLUSH_BYTES: usize = 32 * 1024;

pub fn relay(
    app: Arc<AppState>,
    set: Arc<ComponentSet>,
    req: ParsedChat,
    (upstream, target): (reqwest::Response, crate::upstream::TargetGuard),
    started: Instant,
    filtered: bool,
    admitted: super::chat::Admitted,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(CHANNEL_DEPTH);
    let relay = Relay {
        inflight: Inflight::new(&app),
        app,
        set,
        req,
        tx,
        chains: HashMap::new(),
        filtered,
        started,
        last_content: None,
        admitted,
        _target: target,
        out: Vec::new(),
    };
    tokio::spawn(relay.run(upstream));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Keeps the in-flight gauge right on every exit path.
pub(super) struct Inflight(prometheus::IntGauge);

impl Inflight {
    pub(super) fn new(app: &AppState) -> Self {
        app.metrics.inflight_streams.inc();
        Self(app.metrics.inflight_streams.clone())
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why the relay stopped early.
enum Stop {
    ClientGone,
    Blocked,
}

struct Relay {
    app: Arc<AppState>,
    set: Arc<ComponentSet>,
    req: ParsedChat,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// One filter chain per choice index, started on first use.
    chains: HashMap<u64, FilterChain>,
    filtered: bool,
    started: Instant,
    last_content: Option<Instant>,
    inflight: Inflight,
    admitted: super::chat::Admitted,
    /// Keeps the upstream's in-flight count while the stream is read.
    _target: crate::upstream::TargetGuard,
    /// Chunks ready for the client, written as one frame when the upstream
    /// has nothing more ready right now (fewer writes under load, no added
    /// delay when tokens trickle).
    out: Vec<u8>,
}

impl Relay {
    async fn run(mut self, upstream: reqwest::Response) {
        let mut events = upstream.bytes_stream().eventsource();
        let timeouts = self.app.upstream.timeouts();
        let mut got_chunk = false;
        let mut closing = self.app.closing.clone();
        let outcome = loop {
            let wait = if got_chunk {
                timeouts.idle
            } else {
                timeouts.first_token
            };
            // Take what the upstream has ready without waiting; flush and
            // wait only when nothing is.
            let ready = if self.out.len() < FLUSH_BYTES {
                events.next().now_or_never()
            } else {
                None
            };
            let next = if let Some(ev) = ready {
                ev
            } else {
                if self.flush().await.is_err() {
                    break Err(Stop::ClientGone);
                }
                tokio::select! {
                ev = tokio::time::timeout(wait, events.next()) => match ev {
                    Ok(ev) => ev,
                    Err(_) => {
                        self.app.metrics.upstream_errors.with_label_values(&["timeout"]).inc();
                        let what = if got_chunk { "between two tokens" } else { "before the first token" };
                        self.upstream_failed(&format!(
                            "The upstream stalled {what} for more than {} ms.",
                            wait.as_millis()
                        ))
                        .await;
                        break Ok(());
                    }
                },
                () = self.tx.closed() => break Err(Stop::ClientGone),
                Ok(()) = closing.changed() => {
                    self.upstream_failed("The gateway is shutting down; the answer was cut.").await;
                    break Ok(());
                }
                }
            };
            got_chunk = true;
            match next {
                Some(Ok(ev)) if ev.data == "[DONE]" => break Ok(()),
                Some(Ok(ev)) => {
                    if let Err(stop) = self.on_event(&ev.data).await {
                        break Err(stop);
                    }
                }
                Some(Err(e)) => {
                    self.upstream_failed(&format!("The upstream stream failed: {e}"))
                        .await;
                    break Ok(());
                }
                None => {
                    self.upstream_failed("The upstream closed the stream before it finished.")
                        .await;
                    break Ok(());
                }
            }
        };
        // Dropping `events` here closes the upstream connection: the upstream
        // aborts the request if it was still generating.
        drop(events);
        tracing::info!(
            target: "wasmgate::request",
            request_id = %self.req.guard_view.request_id,
            model = %self.req.model,
            outcome = match &outcome { Ok(()) => "done", Err(Stop::ClientGone) => "client_gone", Err(Stop::Blocked) => "blocked" },
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "stream finished"
        );
        match outcome {
            Ok(()) => {
                let _ = self.send_raw(Bytes::from_static(b"data: [DONE]\n\n")).await;
                let _ = self.flush().await;
            }
            Err(Stop::ClientGone) => {
                self.app
                    .metrics
                    .streams_cut
                    .with_label_values(&["client_gone"])
                    .inc();
                tracing::info!(request_id = %self.req.guard_view.request_id, "client went away; upstream aborted");
            }
            Err(Stop::Blocked) => {
                let _ = self.flush().await;
            }
        }
        let _ = &self.inflight;
    }

    async fn on_event(&mut self, data: &str) -> Result<(), Stop> {
        let mut chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a malformed upstream event");
                self.app
                    .metrics
                    .upstream_errors
                    .with_label_values(&["protocol"])
                    .inc();
                return Ok(());
            }
        };
        if chunk.get("error").is_some() {
            // vLLM reports errors inside a 200 stream, then sends [DONE].
            self.app
                .metrics
                .upstream_errors
                .with_label_values(&["stream"])
                .inc();
            self.flush_all().await?;
            return self.send_json(&chunk).await;
        }
        if let Some(tokens) = record_usage(&self.app, &chunk) {
            self.admitted.settle(tokens);
        }
        if !self.req.include_usage
            && let Value::Object(obj) = &mut chunk
        {
            obj.remove("usage");
        }
        let mut has_content = false;
        let mut keep = chunk.get("usage").is_some();
        let indices: Vec<usize> = chunk
            .get("choices")
            .and_then(Value::as_array)
            .map(|c| (0..c.len()).collect())
            .unwrap_or_default();
        for i in indices {
            let Some(choice) = chunk.pointer_mut(&format!("/choices/{i}")) else {
                continue;
            };
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let text = choice
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let out = if self.filtered {
                match self.filter(index, text, finish).await {
                    Ok(out) => out,
                    Err(block) => return self.blocked(&chunk, index, block).await,
                }
            } else {
                text
            };
            let Some(choice) = chunk.pointer_mut(&format!("/choices/{i}")) else {
                continue;
            };
            if let Some(c) = choice.pointer_mut("/delta/content") {
                *c = Value::String(out.clone());
            } else if !out.is_empty()
                && let Some(Value::Object(delta)) = choice.get_mut("delta")
            {
                delta.insert("content".into(), Value::String(out.clone()));
            }
            has_content |= !out.is_empty();
            let delta_other = choice
                .get("delta")
                .and_then(Value::as_object)
                .is_some_and(|d| d.keys().any(|k| k != "content"));
            keep |= finish || delta_other || !out.is_empty();
        }
        if !keep {
            // Everything was held back by a filter: nothing to say yet.
            return Ok(());
        }
        self.send_json(&chunk).await?;
        if has_content {
            self.observe_token();
        }
        Ok(())
    }

    /// Runs text through the chain of choice `index`; on the last chunk of
    /// the choice also flushes it.
    async fn filter(
        &mut self,
        index: u64,
        text: String,
        finish: bool,
    ) -> Result<String, OutputBlock> {
        if !self.chains.contains_key(&index) {
            let chain =
                FilterChain::start(&self.set, &self.req.guard_view, &self.app.metrics).await?;
            self.chains.insert(index, chain);
        }
        let Some(chain) = self.chains.get_mut(&index) else {
            return Ok(text);
        };
        let metrics = &self.app.metrics;
        let mut out = chain.push(text, metrics).await?;
        if finish {
            out.push_str(&chain.finish(metrics).await?);
            self.chains.remove(&index);
        }
        Ok(out)
    }

    /// Flushes every open chain (the upstream ended without finish chunks),
    /// sending what they held.
    async fn flush_all(&mut self) -> Result<(), Stop> {
        let indices: Vec<u64> = self.chains.keys().copied().collect();
        for index in indices {
            let Some(mut chain) = self.chains.remove(&index) else {
                continue;
            };
            match chain.finish(&self.app.metrics).await {
                Ok(text) if !text.is_empty() => {
                    let chunk = self.content_chunk(index, &text);
                    self.send_json(&chunk).await?;
                }
                Ok(_) => {}
                Err(block) => {
                    let template = self.content_chunk(index, "");
                    return self.blocked(&template, index, block).await;
                }
            }
        }
        Ok(())
    }

    /// Ends the stream after a guard blocked: a final chunk with
    /// `finish_reason: "content_filter"` naming the guard, then `[DONE]`.
    async fn blocked(
        &mut self,
        template: &Value,
        index: u64,
        block: OutputBlock,
    ) -> Result<(), Stop> {
        let metrics = &self.app.metrics;
        metrics
            .streams_cut
            .with_label_values(&["content_filter"])
            .inc();
        tracing::info!(
            request_id = %self.req.guard_view.request_id,
            guard = %block.guard,
            category = %block.block.category,
            fault = block.fault,
            "output blocked"
        );
        let mut chunk = self.chunk_frame(template);
        chunk["choices"] = json!([{
            "index": index,
            "delta": {},
            "logprobs": null,
            "finish_reason": "content_filter",
        }]);
        chunk["wasmgate"] = json!({ "blocked": block_json(&block) });
        self.send_json(&chunk).await?;
        self.send_raw(Bytes::from_static(b"data: [DONE]\n\n"))
            .await?;
        Err(Stop::Blocked)
    }

    /// The upstream broke mid-stream: flush, tell the client in vLLM's way
    /// (an error event; `[DONE]` follows).
    async fn upstream_failed(&mut self, message: &str) {
        self.app
            .metrics
            .upstream_errors
            .with_label_values(&["stream"])
            .inc();
        self.app
            .metrics
            .streams_cut
            .with_label_values(&["upstream_error"])
            .inc();
        if self.flush_all().await.is_err() {
            return;
        }
        let err = json!({ "error": {
            "message": message,
            "type": "upstream_error",
            "param": null,
            "code": "upstream_error",
        }});
        let _ = self.send_json(&err).await;
    }

    /// `id`, `object`, `created`, `model` of a chunk, for chunks we make.
    fn chunk_frame(&self, template: &Value) -> Value {
        let mut frame = serde_json::Map::new();
        for key in ["id", "object", "created", "model"] {
            if let Some(v) = template.get(key) {
                frame.insert(key.into(), v.clone());
            }
        }
        frame
            .entry("object")
            .or_insert_with(|| "chat.completion.chunk".into());
        frame
            .entry("model")
            .or_insert_with(|| self.req.model.clone().into());
        Value::Object(frame)
    }

    fn content_chunk(&self, index: u64, text: &str) -> Value {
        let mut chunk = self.chunk_frame(&Value::Null);
        chunk["choices"] = json!([{
            "index": index,
            "delta": { "content": text },
            "logprobs": null,
            "finish_reason": null,
        }]);
        chunk
    }

    fn observe_token(&mut self) {
        let now = Instant::now();
        let metrics = &self.app.metrics;
        match self.last_content {
            None => metrics
                .ttft
                .with_label_values(&["upstream"])
                .observe((now - self.started).as_secs_f64()),
            Some(prev) => metrics
                .inter_token
                .with_label_values(&["upstream"])
                .observe((now - prev).as_secs_f64()),
        }
        self.last_content = Some(now);
    }

    async fn send_json(&mut self, v: &Value) -> Result<(), Stop> {
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"data: ");
        if serde_json::to_writer(&mut line, v).is_err() {
            return Ok(());
        }
        line.extend_from_slice(b"\n\n");
        self.send_raw(Bytes::from(line)).await
    }

    /// Queues bytes for the client; `flush` writes them.
    async fn send_raw(&mut self, b: Bytes) -> Result<(), Stop> {
        self.out.extend_from_slice(&b);
        if self.out.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let frame = Bytes::from(std::mem::take(&mut self.out));
        self.tx.send(Ok(frame)).await.map_err(|_| Stop::ClientGone)
    }
}
