//! `model: "agent:<name>"`: run the agent component and relay what it emits
//! through the output guards, as OpenAI chunks (streamed) or one answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::AppState;
use super::chat::block_json;
use super::filters::{FilterChain, OutputBlock};
use super::request::ParsedChat;
use super::stream::Inflight;
use crate::error::ApiError;
use crate::registry::ComponentSet;
use crate::runtime::agent::{Agent, AgentCtx, AgentMsg, Outcome, RunStats};

/// Messages buffered between the agent and the relay.
const AGENT_CHANNEL: usize = 16;

pub async fn run_agent(
    app: Arc<AppState>,
    set: Arc<ComponentSet>,
    agent: Arc<Agent>,
    req: ParsedChat,
    started: Instant,
    admitted: super::chat::Admitted,
    canary: Option<String>,
) -> Result<Response, ApiError> {
    let default_model = match agent.settings.agent.models.first() {
        Some(m) => m.clone(),
        None => app
            .upstream
            .models(&app.metrics)
            .await?
            .first()
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad_gateway("The upstream serves no model for the agent."))?,
    };
    let (tx, rx) = mpsc::channel(AGENT_CHANNEL);
    let ctx = AgentCtx {
        out: tx,
        upstream: app.upstream.clone(),
        metrics: app.metrics.clone(),
        guards: set.clone(),
        kb: agent.kb.clone(),
        settings: agent.settings.agent.clone(),
        agent: agent.name.clone(),
        request_id: req.guard_view.request_id.clone(),
        default_model,
        completions: 0,
        tool_calls: 0,
        limit_hit: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        canary: canary.clone(),
    };
    let mut driver = Driver::new(app, set, req, started, admitted);
    if let Some(c) = canary {
        // The output filters see the canary the agent's completions carry.
        driver.filter_view.messages.insert(
            0,
            crate::runtime::bindings::Message {
                role: crate::runtime::bindings::Role::System,
                content: c,
            },
        );
    }
    if driver.req.stream {
        let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
        tokio::spawn(async move {
            let mut sink = Sink::Stream(out_tx);
            driver.drive(&agent, ctx, rx, &mut sink).await;
        });
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no")
            .body(Body::from_stream(ReceiverStream::new(out_rx)))
            .unwrap_or_else(|_| Response::new(Body::empty())));
    }
    let mut sink = Sink::Collect(Collected::default());
    let end = driver.drive(&agent, ctx, rx, &mut sink).await;
    let Sink::Collect(c) = sink else {
        return Err(ApiError::internal("agent answer lost"));
    };
    if let End::Failed(msg) = &end
        && c.text.is_empty()
    {
        return Err(ApiError::bad_gateway(format!("The agent failed: {msg}")));
    }
    let mut answer = json!({
        "id": driver.id,
        "object": "chat.completion",
        "created": driver.created,
        "model": driver.req.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": c.text },
            "logprobs": null,
            "finish_reason": end.finish_reason(),
        }],
        "usage": usage_json(&c.stats),
    });
    if let Some(b) = &c.blocked {
        answer["wasmgate"] = json!({ "blocked": block_json(b) });
    }
    if !c.events.is_empty() {
        answer["wasmgate"]["events"] = Value::Array(c.events);
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}

fn usage_json(s: &RunStats) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "completion_tokens": s.completion_tokens,
    })
}

#[derive(Default)]
struct Collected {
    text: String,
    events: Vec<Value>,
    blocked: Option<OutputBlock>,
    stats: RunStats,
}

/// Where the agent's output goes.
enum Sink {
    Stream(mpsc::Sender<Result<Bytes, Infallible>>),
    Collect(Collected),
}

/// How the relay ended.
enum End {
    Finished(String),
    Limit,
    Blocked,
    Failed(String),
    ClientGone,
}

impl End {
    fn finish_reason(&self) -> &str {
        match self {
            End::Finished(r) => r,
            End::Limit => "length",
            End::Blocked => "content_filter",
            End::Failed(_) | End::ClientGone => "stop",
        }
    }
}

struct Driver {
    app: Arc<AppState>,
    set: Arc<ComponentSet>,
    req: ParsedChat,
    started: Instant,
    id: String,
    created: u64,
    last_text: std::sync::Mutex<Option<Instant>>,
    _inflight: Option<Inflight>,
    admitted: std::sync::Mutex<super::chat::Admitted>,
    /// What the output filters are constructed with (the request plus the canary).
    filter_view: crate::runtime::bindings::ChatRequest,
}

impl Driver {
    fn new(
        app: Arc<AppState>,
        set: Arc<ComponentSet>,
        req: ParsedChat,
        started: Instant,
        admitted: super::chat::Admitted,
    ) -> Self {
        let inflight = req.stream.then(|| Inflight::new(&app));
        let filter_view = req.guard_view.clone();
        Self {
            id: format!("chatcmpl-{}", req.guard_view.request_id),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            app,
            set,
            req,
            started,
            last_text: std::sync::Mutex::new(None),
            admitted: std::sync::Mutex::new(admitted),
            filter_view,
            _inflight: inflight,
        }
    }

    /// Runs the agent to the end, the client's departure or a block.
    async fn drive(
        &self,
        agent: &Agent,
        ctx: AgentCtx,
        mut rx: mpsc::Receiver<AgentMsg>,
        sink: &mut Sink,
    ) -> End {
        let metrics = &self.app.metrics;
        if self
            .send(
                sink,
                self.chunk(json!({"role": "assistant", "content": ""}), None),
            )
            .await
            .is_err()
        {
            return End::ClientGone;
        }
        let mut chain: Option<FilterChain> = None;
        let run = agent.run(&self.req.guard_view, ctx);
        tokio::pin!(run);
        let mut outcome = None;
        let watch = match sink {
            Sink::Stream(tx) => Some(tx.clone()),
            Sink::Collect(_) => None,
        };
        let mut closing = self.app.closing.clone();
        while outcome.is_none() {
            let client_gone = async {
                match &watch {
                    Some(tx) => tx.closed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = client_gone => {
                    metrics.streams_cut.with_label_values(&["client_gone"]).inc();
                    metrics.agent_runs.with_label_values(&[&*agent.name, "cancelled"]).inc();
                    tracing::info!(agent = &*agent.name, "client went away; agent run cancelled");
                    return End::ClientGone;
                }
                Ok(()) = closing.changed() => {
                    let end = End::Failed("The gateway is shutting down; the answer was cut.".into());
                    let _ = self.finish(sink, &end, RunStats::default()).await;
                    return end;
                }
                res = &mut run => outcome = Some(res),
                msg = rx.recv() => match msg {
                    Some(AgentMsg::Text(text, ack)) => {
                        metrics.agent_emitted.with_label_values(&[&*agent.name]).inc();
                        match self.emit(&mut chain, sink, text).await {
                            Ok(()) => { let _ = ack.send(Ok(())); }
                            Err(end) => {
                                let _ = ack.send(Err("the output was blocked".into()));
                                return end;
                            }
                        }
                    }
                    Some(AgentMsg::Event { kind, data }) if self.event(sink, &kind, &data).await.is_err() => {
                        return End::ClientGone;
                    }
                    Some(AgentMsg::Event { .. }) => {}
                    None => {}
                },
            }
        }
        // Events sent just before the run ended.
        while let Ok(msg) = rx.try_recv() {
            if let AgentMsg::Event { kind, data } = msg
                && self.event(sink, &kind, &data).await.is_err()
            {
                return End::ClientGone;
            }
        }
        let Some((outcome, stats)) = outcome else {
            return End::Failed("no outcome".into());
        };
        if let Some(c) = chain.as_mut() {
            match c.finish(metrics).await {
                Ok(text) if !text.is_empty() => {
                    if self.send_text(sink, &text).await.is_err() {
                        return End::ClientGone;
                    }
                }
                Ok(_) => {}
                Err(block) => return self.blocked(sink, block).await,
            }
        }
        let end = match outcome {
            Outcome::Finished(reason) => End::Finished(if reason == "length" {
                reason
            } else {
                "stop".into()
            }),
            Outcome::Limit(msg) => {
                let note = format!("\n\n[The agent was stopped: {msg}.]");
                if self.send_text(sink, &note).await.is_err() {
                    return End::ClientGone;
                }
                End::Limit
            }
            Outcome::Failed(msg) => End::Failed(msg),
            Outcome::Fault(f) => End::Failed(format!("agent `{}` failed: {f}", agent.name)),
        };
        let _ = self.finish(sink, &end, stats).await;
        end
    }

    /// Text from the agent through the output guards to the client.
    async fn emit(
        &self,
        chain: &mut Option<FilterChain>,
        sink: &mut Sink,
        text: String,
    ) -> Result<(), End> {
        let metrics = &self.app.metrics;
        if chain.is_none() {
            match FilterChain::start(&self.set, &self.filter_view, metrics).await {
                Ok(c) => *chain = Some(c),
                Err(block) => return Err(self.blocked(sink, block).await),
            }
        }
        let Some(c) = chain.as_mut() else {
            return Ok(());
        };
        let out = match c.push(text, metrics).await {
            Ok(out) => out,
            Err(block) => return Err(self.blocked(sink, block).await),
        };
        if out.is_empty() {
            return Ok(());
        }
        self.send_text(sink, &out)
            .await
            .map_err(|()| End::ClientGone)
    }

    async fn send_text(&self, sink: &mut Sink, text: &str) -> Result<(), ()> {
        let now = Instant::now();
        let metrics = &self.app.metrics;
        let last = self.last_text.lock().ok().and_then(|l| *l);
        match last {
            None => metrics
                .ttft
                .with_label_values(&["agent"])
                .observe((now - self.started).as_secs_f64()),
            Some(prev) => metrics
                .inter_token
                .with_label_values(&["agent"])
                .observe((now - prev).as_secs_f64()),
        }
        if let Ok(mut last) = self.last_text.lock() {
            *last = Some(now);
        }
        if let Sink::Collect(c) = sink {
            c.text.push_str(text);
            return Ok(());
        }
        self.send(sink, self.chunk(json!({"content": text}), None))
            .await
    }

    async fn event(&self, sink: &mut Sink, kind: &str, data: &Value) -> Result<(), ()> {
        let event = json!({ "kind": kind, "data": data });
        if let Sink::Collect(c) = sink {
            c.events.push(event);
            return Ok(());
        }
        let mut chunk = self.chunk(json!({}), None);
        chunk["wasmgate"] = json!({ "event": event });
        self.send(sink, chunk).await
    }

    async fn blocked(&self, sink: &mut Sink, block: OutputBlock) -> End {
        self.app
            .metrics
            .streams_cut
            .with_label_values(&["content_filter"])
            .inc();
        tracing::info!(guard = %block.guard, category = %block.block.category, "agent output blocked");
        if let Sink::Collect(c) = sink {
            c.blocked = Some(block);
            return End::Blocked;
        }
        let mut chunk = self.chunk(json!({}), Some("content_filter"));
        chunk["wasmgate"] = json!({ "blocked": block_json(&block) });
        let _ = self.send(sink, chunk).await;
        let _ = self
            .send_raw(sink, Bytes::from_static(b"data: [DONE]\n\n"))
            .await;
        End::Blocked
    }

    async fn finish(&self, sink: &mut Sink, end: &End, stats: RunStats) -> Result<(), ()> {
        if let Ok(mut a) = self.admitted.lock() {
            a.settle(stats.prompt_tokens + stats.completion_tokens);
        }
        if let Sink::Collect(c) = sink {
            c.stats = stats;
            return Ok(());
        }
        if let End::Failed(msg) = end {
            let err = json!({ "error": {
                "message": msg, "type": "agent_error", "param": null, "code": "agent_error",
            }});
            self.send(sink, err).await?;
        } else {
            self.send(
                sink,
                self.chunk(json!({"content": ""}), Some(end.finish_reason())),
            )
            .await?;
        }
        if self.req.include_usage {
            let mut chunk = self.chunk(json!({}), None);
            chunk["choices"] = json!([]);
            chunk["usage"] = usage_json(&stats);
            self.send(sink, chunk).await?;
        }
        self.send_raw(sink, Bytes::from_static(b"data: [DONE]\n\n"))
            .await
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.req.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    }

    async fn send(&self, sink: &mut Sink, v: Value) -> Result<(), ()> {
        let mut line = b"data: ".to_vec();
        if serde_json::to_writer(&mut line, &v).is_err() {
            return Ok(());
        }
        line.extend_from_slice(b"\n\n");
        self.send_raw(sink, Bytes::from(line)).await
    }

    async fn send_raw(&self, sink: &mut Sink, b: Bytes) -> Result<(), ()> {
        match sink {
            Sink::Stream(tx) => tx.send(Ok(b)).await.map_err(|_| ()),
            Sink::Collect(_) => Ok(()),
        }
    }
}
