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
use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wasmgate_protocol::chunk::{Chunk, replace_content};
use wasmgate_protocol::sse::Decoder;

use super::AppState;
use super::chat::{block_json, count_usage};
use super::filters::{FilterChain, OutputBlock};
use super::request::ParsedChat;
use crate::registry::ComponentSet;

/// Frames buffered between the relay task and the client socket.
const CHANNEL_DEPTH: usize = 32;
/// Largest frame the relay builds from chunks that were ready together.
const FLUSH_BYTES: usize = 32 * 1024;
/// Upstream bytes read before the events in them are handled: what arrived
/// together is decoded and filtered together (one filter call per run of
/// text chunks rather than one per token).
const GATHER_BYTES: usize = 64 * 1024;
/// Scheduler rounds a stream waits for more tokens before it writes what it
/// has (never before its first token).
const MAX_YIELDS: u32 = 8;

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
    let ttft = app.metrics.ttft.with_label_values(&["upstream"]);
    let inter_token = app.metrics.inter_token.with_label_values(&["upstream"]);
    let relay = Relay {
        inflight: Inflight::new(&app),
        ttft,
        inter_token,
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
        pending: None,
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

/// Whether the upstream stream goes on after the events handled so far.
enum Flow {
    More,
    Done,
}

/// Plain text chunks of one choice that arrived together: filtered as one
/// text, then forwarded as they came (the filters changed nothing) or as one
/// chunk carrying the filtered text.
struct Run {
    index: u64,
    text: String,
    events: Vec<Bytes>,
    /// Where the first event's text sits in its bytes.
    span: std::ops::Range<usize>,
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
    ttft: prometheus::Histogram,
    inter_token: prometheus::Histogram,
    inflight: Inflight,
    admitted: super::chat::Admitted,
    /// Text chunks read and not yet filtered (see [`Run`]).
    pending: Option<Run>,
    /// Keeps the upstream's in-flight count while the stream is read.
    _target: crate::upstream::TargetGuard,
    /// Chunks ready for the client, written as one frame when the upstream
    /// has nothing more ready right now (fewer writes under load, no added
    /// delay when tokens trickle).
    out: Vec<u8>,
}

impl Relay {
    async fn run(mut self, upstream: reqwest::Response) {
        let mut body = upstream.bytes_stream();
        let mut decoder = Decoder::new();
        let timeouts = self.app.upstream.timeouts();
        let mut seen_event = false;
        let mut yields = 0;
        let mut closing = self.app.closing.clone();
        let outcome = 'relay: loop {
            // Take everything the upstream has ready without waiting; flush
            // and wait only when nothing is.
            let mut gathered = 0;
            loop {
                let ready = if gathered > 0 || self.out.len() < FLUSH_BYTES {
                    body.next().now_or_never()
                } else {
                    None
                };
                let next = match ready {
                    Some(next) => next,
                    None if gathered > 0 => break,
                    None if yields < MAX_YIELDS
                        && self.last_content.is_some()
                        && (!self.out.is_empty() || self.pending.is_some())
                        && self.out.len() < FLUSH_BYTES =>
                    {
                        // Let the other tasks run once before writing: when
                        // the gateway is busy, more tokens arrive meanwhile
                        // and go out in the same write; when it is idle this
                        // costs a trip through the scheduler, microseconds.
                        yields += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    None => {
                        yields = 0;
                        let pending = self.pending.take();
                        if let Err(stop) = self.flush_run(pending).await {
                            break 'relay Err(stop);
                        }
                        if self.flush().await.is_err() {
                            break 'relay Err(Stop::ClientGone);
                        }
                        let wait = if seen_event {
                            timeouts.idle
                        } else {
                            timeouts.first_token
                        };
                        tokio::select! {
                        next = tokio::time::timeout(wait, body.next()) => match next {
                            Ok(next) => next,
                            Err(_) => {
                                self.app.metrics.upstream_errors.with_label_values(&["timeout"]).inc();
                                let what = if seen_event { "between two tokens" } else { "before the first token" };
                                self.upstream_failed(&format!(
                                    "The upstream stalled {what} for more than {} ms.",
                                    wait.as_millis()
                                ))
                                .await;
                                break 'relay Ok(());
                            }
                        },
                        () = self.tx.closed() => break 'relay Err(Stop::ClientGone),
                        Ok(()) = closing.changed() => {
                            self.upstream_failed("The gateway is shutting down; the answer was cut.").await;
                            break 'relay Ok(());
                        }
                        }
                    }
                };
                match next {
                    Some(Ok(bytes)) => {
                        decoder.feed(&bytes);
                        gathered += bytes.len();
                        if gathered >= GATHER_BYTES {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        if let Err(stop) = self.drain(&mut decoder, &mut seen_event).await {
                            break 'relay Err(stop);
                        }
                        self.upstream_failed(&format!("The upstream stream failed: {e}"))
                            .await;
                        break 'relay Ok(());
                    }
                    None => {
                        let flow = self.drain(&mut decoder, &mut seen_event).await;
                        match flow {
                            Ok(Flow::Done) => break 'relay Ok(()),
                            Err(stop) => break 'relay Err(stop),
                            Ok(Flow::More) => {}
                        }
                        self.upstream_failed("The upstream closed the stream before it finished.")
                            .await;
                        break 'relay Ok(());
                    }
                }
            }
            match self.drain(&mut decoder, &mut seen_event).await {
                Ok(Flow::More) => {}
                Ok(Flow::Done) => break Ok(()),
                Err(stop) => break Err(stop),
            }
        };
        // Dropping `body` here closes the upstream connection: the upstream
        // aborts the request if it was still generating.
        drop(body);
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
                let _ = self.send_raw(b"data: [DONE]\n\n").await;
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

    /// Handles every complete event the decoder holds. Plain text chunks
    /// gather in `pending` until something else comes or the relay writes.
    async fn drain(&mut self, decoder: &mut Decoder, seen_event: &mut bool) -> Result<Flow, Stop> {
        loop {
            let event = match decoder.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    self.flush_pending().await?;
                    self.upstream_failed(&format!("The upstream stream failed: {e}"))
                        .await;
                    return Ok(Flow::Done);
                }
            };
            *seen_event = true;
            if event.is_done() {
                self.flush_pending().await?;
                return Ok(Flow::Done);
            }
            let data = event.data;
            let chunk = match Chunk::parse(&data) {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a malformed upstream event");
                    self.app
                        .metrics
                        .upstream_errors
                        .with_label_values(&["protocol"])
                        .inc();
                    continue;
                }
            };
            if let Some(usage) = chunk.usage {
                self.admitted.settle(count_usage(&self.app, usage));
            }
            if chunk.is_error {
                // vLLM reports errors inside a 200 stream, then sends [DONE].
                self.app
                    .metrics
                    .upstream_errors
                    .with_label_values(&["stream"])
                    .inc();
                self.flush_all().await?;
                self.send_event(&data).await?;
                continue;
            }
            if let Some(choice) = chunk.plain_content() {
                let text = choice.content().unwrap_or_default();
                if !self.filtered {
                    if !text.is_empty() {
                        self.observe_token();
                    }
                    self.send_event(&data).await?;
                    continue;
                }
                let index = choice.index;
                let span = chunk.content_span(choice);
                match &mut self.pending {
                    Some(r) if r.index == index && r.text.len() < FLUSH_BYTES => {
                        r.text.push_str(&text);
                        r.events.push(data.clone());
                    }
                    _ => {
                        let text = text.into_owned();
                        self.flush_pending().await?;
                        let Some(span) = span else {
                            // Cannot happen for a plain chunk; send it through the generic path.
                            if let Ok(value) = serde_json::from_slice::<Value>(&data) {
                                self.on_event(value).await?;
                            }
                            continue;
                        };
                        self.pending = Some(Run {
                            index,
                            text,
                            events: vec![data.clone()],
                            span,
                        });
                    }
                }
                continue;
            }
            self.flush_pending().await?;
            if !self.filtered && (chunk.usage.is_none() || self.req.include_usage) {
                // Nothing to change: forward as the upstream wrote it.
                let has_text = chunk
                    .choices
                    .iter()
                    .any(|c| c.content().is_some_and(|t| !t.is_empty()));
                if has_text {
                    self.observe_token();
                }
                self.send_event(&data).await?;
                continue;
            }
            match serde_json::from_slice::<Value>(&data) {
                Ok(value) => self.on_event(value).await?,
                Err(e) => tracing::warn!(error = %e, "skipping a malformed upstream event"),
            }
        }
        Ok(Flow::More)
    }

    /// Filters and queues the text chunks waiting in `pending`.
    async fn flush_pending(&mut self) -> Result<(), Stop> {
        let run = self.pending.take();
        self.flush_run(run).await
    }

    /// Filters a run of plain text chunks as one text.
    async fn flush_run(&mut self, run: Option<Run>) -> Result<(), Stop> {
        let Some(run) = run else {
            return Ok(());
        };
        let out = match self.filter(run.index, run.text.clone(), false).await {
            Ok(out) => out,
            Err(block) => {
                let template = run
                    .events
                    .first()
                    .and_then(|e| serde_json::from_slice::<Value>(e).ok())
                    .unwrap_or(Value::Null);
                return self.blocked(&template, run.index, block).await;
            }
        };
        if out == run.text {
            for event in &run.events {
                self.observe_token();
                self.send_event(event).await?;
            }
        } else if !out.is_empty() {
            let Some(first) = run.events.first() else {
                return Ok(());
            };
            self.send_event(&replace_content(first, run.span, &out))
                .await?;
            self.observe_token();
        }
        Ok(())
    }

    /// A chunk that is not plain text (role, finish, usage, tool calls…):
    /// edited as a JSON value.
    async fn on_event(&mut self, mut chunk: Value) -> Result<(), Stop> {
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
        self.flush_pending().await?;
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
        self.send_raw(b"data: [DONE]\n\n").await?;
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
        match self.last_content {
            None => self.ttft.observe((now - self.started).as_secs_f64()),
            Some(prev) => self.inter_token.observe((now - prev).as_secs_f64()),
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
        self.send_raw(&line).await
    }

    /// Queues one event (`data: …`) for the client.
    async fn send_event(&mut self, data: &[u8]) -> Result<(), Stop> {
        self.out.reserve(data.len() + 8);
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(data);
        self.send_raw(b"\n\n").await
    }

    /// Queues bytes for the client; `flush` writes them.
    async fn send_raw(&mut self, b: &[u8]) -> Result<(), Stop> {
        self.out.extend_from_slice(b);
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
