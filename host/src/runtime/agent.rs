//! Agents: a validated `agent-component`, run once per request in a fresh
//! store whose data carries an [`AgentCtx`]: the upstream, the channel back to
//! the client's stream, the granted tools and the run's limits.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, Resource};

use super::bindings::agent::wasmgate::llm::{inference, output, tools as wit_tools};
use super::bindings::agent::{AgentComponent, AgentComponentPre};
use super::bindings::{ChatRequest, Info, Message, Role, Verdict};
use super::guard::{Fault, Stats, record_call};
use super::state::StoreState;
use crate::api::request::role_name;
use crate::config::{AgentSettings, ComponentSettings};
use crate::metrics::Metrics;
use crate::registry::ComponentSet;
use crate::tools;
use crate::upstream::Upstream;

/// What an agent sends towards the client.
pub enum AgentMsg {
    /// Answer text; the reply says whether it reached the client.
    Text(String, oneshot::Sender<Result<(), String>>),
    /// Progress for UIs (tool calls, retrieval hits).
    Event { kind: String, data: Value },
}

/// The per-run state behind the agent-only imports.
pub struct AgentCtx {
    pub out: mpsc::Sender<AgentMsg>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Guards that check tool results (indirect injection).
    pub guards: Arc<ComponentSet>,
    pub kb: Option<Arc<tools::kb::Kb>>,
    pub settings: AgentSettings,
    pub agent: Arc<str>,
    pub request_id: String,
    pub default_model: String,
    pub completions: u32,
    pub tool_calls: u32,
    /// Set when a limit stopped something; the run then ends with `length`.
    pub limit_hit: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Appended to the first system message of each completion.
    pub canary: Option<String>,
}

type EventStream = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// An upstream completion an agent pulls chunk by chunk.
pub struct Completion {
    events: EventStream,
    usage: Option<inference::Usage>,
    done: bool,
    /// Whether a chunk arrived yet (first-token vs idle timeout).
    started: bool,
    _target: crate::upstream::TargetGuard,
}

/// A validated agent component.
pub struct Agent {
    pub name: Arc<str>,
    pub info: Info,
    pub sha256: String,
    pub settings: ComponentSettings,
    pre: AgentComponentPre<StoreState>,
    engine: Engine,
    config: Arc<BTreeMap<String, String>>,
    pub kb: Option<Arc<tools::kb::Kb>>,
    pub loaded_at: std::time::SystemTime,
    pub stats: Stats,
}

/// How a run ended.
pub enum Outcome {
    /// The agent returned this finish reason.
    Finished(String),
    /// A limit stopped it; the message explains which.
    Limit(String),
    /// The agent returned an error.
    Failed(String),
    Fault(Fault),
}

impl Agent {
    pub async fn load(
        engine: &Engine,
        linker: &Linker<StoreState>,
        name: &str,
        component: Component,
        sha256: String,
        settings: ComponentSettings,
    ) -> Result<Self, String> {
        super::check_imports(engine, &component, "agents", super::AGENT_ONLY_IMPORTS)?;
        for tool in &settings.agent.tools {
            if !tools::ALL.contains(&tool.as_str()) {
                return Err(format!(
                    "unknown tool `{tool}` in the agent's settings (known: {})",
                    tools::ALL.join(", ")
                ));
            }
        }
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| format!("does not link as an agent: {e:#}"))?;
        let pre = AgentComponentPre::new(instance_pre)
            .map_err(|e| format!("does not export the agent interface: {e:#}"))?;
        let kb = settings
            .agent
            .kb_dir
            .clone()
            .map(|dir| Arc::new(tools::kb::Kb::new(dir)));
        let mut agent = Self {
            name: Arc::from(name),
            info: Info {
                name: name.to_owned(),
                version: String::new(),
                description: String::new(),
                filters_output: false,
            },
            sha256,
            config: Arc::new(settings.config.clone()),
            settings,
            pre,
            engine: engine.clone(),
            kb,
            loaded_at: std::time::SystemTime::now(),
            stats: Stats::default(),
        };
        let budget = agent
            .settings
            .deadline
            .max(std::time::Duration::from_millis(200));
        let mut store = agent.store(budget);
        let bindings =
            agent.pre.instantiate_async(&mut store).await.map_err(|e| {
                format!("cannot instantiate: {}", Fault::classify(e, &store, budget))
            })?;
        agent.info = bindings
            .wasmgate_llm_agent()
            .call_info(&mut store)
            .await
            .map_err(|e| format!("`info` failed: {}", Fault::classify(e, &store, budget)))?;
        Ok(agent)
    }

    fn store(&self, budget: std::time::Duration) -> wasmtime::Store<StoreState> {
        StoreState::store(
            &self.engine,
            self.name.clone(),
            self.config.clone(),
            self.settings.memory_bytes,
            budget,
        )
    }

    /// Runs the agent for one request. Dropping the future cancels the run:
    /// the store and any upstream completion go with it.
    pub async fn run(&self, req: &ChatRequest, ctx: AgentCtx) -> (Outcome, RunStats) {
        let started = Instant::now();
        let metrics = ctx.metrics.clone();
        let deadline = self.settings.agent.run_deadline;
        let mut store = self.store(deadline);
        store.data_mut().agent = Some(ctx);
        let result = tokio::time::timeout(deadline, async {
            let bindings: AgentComponent = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| Fault::classify(e, &store, deadline))?;
            bindings
                .wasmgate_llm_agent()
                .call_run(&mut store, req)
                .await
                .map_err(|e| Fault::classify(e, &store, deadline))
        })
        .await
        .unwrap_or(Err(Fault::Timeout(deadline)));
        let fault: Result<(), Fault> = result.as_ref().map(|_| ()).map_err(Clone::clone);
        record_call(&self.name, &self.stats, &metrics, "run", started, &fault);
        let stats = store
            .data_mut()
            .agent
            .take()
            .map(|c| RunStats {
                completions: c.completions,
                tool_calls: c.tool_calls,
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                limit_hit: c.limit_hit,
            })
            .unwrap_or_default();
        let outcome = match result {
            Err(Fault::Timeout(d)) => Outcome::Limit(format!(
                "the agent's run deadline of {} s was reached",
                d.as_secs_f64()
            )),
            Err(f) => Outcome::Fault(f),
            Ok(_) if stats.limit_hit.is_some() => {
                Outcome::Limit(stats.limit_hit.clone().unwrap_or_default())
            }
            Ok(Ok(finish)) => Outcome::Finished(finish),
            Ok(Err(msg)) => Outcome::Failed(msg),
        };
        let label = match &outcome {
            Outcome::Finished(_) => "ok",
            Outcome::Limit(_) => "limit",
            Outcome::Failed(_) => "error",
            Outcome::Fault(f) => f.label(),
        };
        let name = &*self.name;
        metrics.agent_runs.with_label_values(&[name, label]).inc();
        metrics
            .agent_run_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .agent_completions
            .with_label_values(&[name])
            .observe(f64::from(stats.completions));
        metrics
            .agent_tool_calls
            .with_label_values(&[name])
            .observe(f64::from(stats.tool_calls));
        (outcome, stats)
    }

    /// The component as the admin API shows it.
    pub fn json(&self, last_error: Option<String>) -> Value {
        json!({
            "name": &*self.name,
            "kind": "agent",
            "version": self.info.version,
            "description": self.info.description,
            "sha256": self.sha256,
            "enabled": self.settings.enabled,
            "order": self.settings.order,
            "loaded_at": super::guard::unix_secs(self.loaded_at),
            "invocations": self.stats.json(),
            "last_error": last_error.or_else(|| self.stats.last_fault()),
            "models": self.settings.agent.models,
            "tools": self.settings.agent.tools,
        })
    }
}

/// What a run used.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub completions: u32,
    pub tool_calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub limit_hit: Option<String>,
}

impl StoreState {
    fn agent(&mut self) -> wasmtime::Result<&mut AgentCtx> {
        self.agent
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("agent import called outside an agent run"))
    }
}

impl inference::Host for StoreState {
    async fn start(
        &mut self,
        req: ChatRequest,
    ) -> wasmtime::Result<Result<Resource<Completion>, String>> {
        let ctx = self.agent()?;
        if ctx.completions >= ctx.settings.max_completions {
            let msg = format!(
                "limit: the agent may run at most {} completions per request",
                ctx.settings.max_completions
            );
            ctx.limit_hit.get_or_insert(msg.clone());
            return Ok(Err(msg));
        }
        let model = if req.model.is_empty() || req.model == "default" {
            ctx.default_model.clone()
        } else if ctx.settings.models.is_empty() || ctx.settings.models.contains(&req.model) {
            req.model.clone()
        } else {
            return Ok(Err(format!(
                "model `{}` is not in this agent's allow-list",
                req.model
            )));
        };
        ctx.completions += 1;
        let max_tokens = req
            .max_tokens
            .unwrap_or(ctx.settings.max_tokens)
            .min(ctx.settings.max_tokens);
        let mut canary = ctx.canary.as_deref();
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let mut content = m.content.clone();
                if m.role == Role::System
                    && let Some(c) = canary.take()
                {
                    content.push_str(c);
                }
                json!({"role": role_name(m.role), "content": content})
            })
            .collect();
        let mut body = json!({
            "model": model,
            "messages": messages,
            "stream": true,
            "stream_options": { "include_usage": true },
            "max_tokens": max_tokens,
        });
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t.clamp(0.0, 2.0));
        }
        let bytes = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let request_id = format!("{}-{}", ctx.request_id, ctx.completions);
        match ctx
            .upstream
            .chat(bytes.into(), &request_id, &ctx.metrics)
            .await
        {
            Ok((resp, target)) => {
                let completion = Completion {
                    events: Box::pin(resp.bytes_stream().eventsource()),
                    usage: None,
                    done: false,
                    started: false,
                    _target: target,
                };
                Ok(Ok(self.ctx_table().push(completion)?))
            }
            Err(e) => Ok(Err(e.message)),
        }
    }
}

impl StoreState {
    fn ctx_table(&mut self) -> &mut wasmtime::component::ResourceTable {
        wasmtime_wasi::WasiView::ctx(self).table
    }
}

impl inference::HostCompletion for StoreState {
    async fn next(
        &mut self,
        self_: Resource<Completion>,
    ) -> wasmtime::Result<Result<Option<inference::Chunk>, String>> {
        let timeouts = self.agent()?.upstream.timeouts();
        let c = self.ctx_table().get_mut(&self_)?;
        loop {
            if c.done {
                return Ok(Ok(None));
            }
            let wait = if c.started {
                timeouts.idle
            } else {
                timeouts.first_token
            };
            let next = tokio::time::timeout(wait, c.events.next()).await;
            c.started = true;
            let ev = match next {
                Err(_) => return Ok(Err("the upstream stopped sending tokens".into())),
                Ok(None) => {
                    c.done = true;
                    return Ok(Err("the upstream closed the stream early".into()));
                }
                Ok(Some(Err(e))) => {
                    c.done = true;
                    return Ok(Err(format!("upstream stream failed: {e}")));
                }
                Ok(Some(Ok(ev))) => ev,
            };
            if ev.data == "[DONE]" {
                c.done = true;
                return Ok(Ok(None));
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if let Some(err) = v.get("error") {
                let msg = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                return Ok(Err(msg.to_owned()));
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
                c.usage = Some(inference::Usage {
                    prompt_tokens: n("prompt_tokens"),
                    completion_tokens: n("completion_tokens"),
                });
            }
            let Some(choice) = v.pointer("/choices/0") else {
                continue;
            };
            let text = choice
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let finish_reason = choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if text.is_empty() && finish_reason.is_none() {
                continue;
            }
            return Ok(Ok(Some(inference::Chunk {
                text,
                finish_reason,
            })));
        }
    }

    async fn usage(
        &mut self,
        self_: Resource<Completion>,
    ) -> wasmtime::Result<Option<inference::Usage>> {
        Ok(self.ctx_table().get(&self_)?.usage)
    }

    async fn drop(&mut self, rep: Resource<Completion>) -> wasmtime::Result<()> {
        let c = self.ctx_table().delete(rep)?;
        if let (Some(u), Ok(ctx)) = (c.usage, self.agent()) {
            ctx.prompt_tokens += u64::from(u.prompt_tokens);
            ctx.completion_tokens += u64::from(u.completion_tokens);
        }
        Ok(())
    }
}

impl output::Host for StoreState {
    async fn emit(&mut self, text: String) -> wasmtime::Result<Result<(), String>> {
        let ctx = self.agent()?;
        if text.is_empty() {
            return Ok(Ok(()));
        }
        let (ack, done) = oneshot::channel();
        if ctx.out.send(AgentMsg::Text(text, ack)).await.is_err() {
            return Ok(Err("the client went away".into()));
        }
        Ok(done
            .await
            .unwrap_or_else(|_| Err("the client went away".into())))
    }

    async fn event(&mut self, kind: String, json: String) -> wasmtime::Result<()> {
        let ctx = self.agent()?;
        let data = serde_json::from_str::<Value>(&json)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({ "text": json }));
        let kind: String = kind.chars().take(64).collect();
        let _ = ctx.out.send(AgentMsg::Event { kind, data }).await;
        Ok(())
    }
}

impl wit_tools::Host for StoreState {
    async fn available(&mut self) -> wasmtime::Result<Vec<wit_tools::ToolSpec>> {
        let ctx = self.agent()?;
        Ok(ctx
            .settings
            .tools
            .iter()
            .filter_map(|t| tools::spec(t))
            .collect())
    }

    async fn call(
        &mut self,
        name: String,
        arguments: String,
    ) -> wasmtime::Result<Result<String, String>> {
        let ctx = self.agent()?;
        let agent = ctx.agent.clone();
        if !ctx.settings.tools.contains(&name) {
            ctx.metrics
                .agent_tool_invocations
                .with_label_values(&[&*agent, "ungranted", "denied"])
                .inc();
            return Ok(Err(format!("tool `{name}` is not granted to this agent")));
        }
        if ctx.tool_calls >= ctx.settings.max_tool_calls {
            let msg = format!(
                "limit: the agent may make at most {} tool calls per request",
                ctx.settings.max_tool_calls
            );
            ctx.limit_hit.get_or_insert(msg.clone());
            return Ok(Err(msg));
        }
        ctx.tool_calls += 1;
        let args_json = serde_json::from_str::<Value>(&arguments).unwrap_or(Value::Null);
        let _ = ctx
            .out
            .send(AgentMsg::Event {
                kind: "tool_call".into(),
                data: json!({ "name": name, "arguments": args_json }),
            })
            .await;
        let kb = ctx.kb.clone();
        let (name2, args2) = (name.clone(), arguments.clone());
        let result =
            tokio::task::spawn_blocking(move || tools::call(&name2, &args2, kb.as_deref()))
                .await
                .unwrap_or_else(|e| Err(format!("tool failed: {e}")));
        let output = match result {
            Ok(r) => r,
            Err(e) => {
                ctx.metrics
                    .agent_tool_invocations
                    .with_label_values(&[&*agent, &name, "error"])
                    .inc();
                let _ = ctx
                    .out
                    .send(AgentMsg::Event {
                        kind: "tool_result".into(),
                        data: json!({ "name": name, "error": e }),
                    })
                    .await;
                return Ok(Err(e));
            }
        };
        // Indirect injection: each part of the result passes the input guards
        // as a tool message; a blocked part is replaced by a notice.
        let mut parts = Vec::with_capacity(output.parts.len());
        let mut withheld = 0usize;
        for (i, part) in output.parts.iter().enumerate() {
            match screen_tool_result(ctx, &name, part).await {
                Some(notice) => {
                    withheld += 1;
                    parts.push(if output.parts.len() > 1 {
                        format!("[{}] {notice}", i + 1)
                    } else {
                        notice
                    });
                }
                None => parts.push(part.clone()),
            }
        }
        let text = parts.join("\n\n");
        let outcome = if withheld > 0 { "withheld" } else { "ok" };
        ctx.metrics
            .agent_tool_invocations
            .with_label_values(&[&*agent, &name, outcome])
            .inc();
        let summary = output.summary;
        let mut data = summary;
        data["name"] = json!(name);
        data["withheld"] = json!(withheld > 0);
        data["withheld_parts"] = json!(withheld);
        let _ = ctx
            .out
            .send(AgentMsg::Event {
                kind: "tool_result".into(),
                data,
            })
            .await;
        Ok(Ok(text))
    }
}

/// Runs every input guard over a tool result; `Some(notice)` replaces a
/// blocked one (or one a fail-closed guard could not judge).
async fn screen_tool_result(ctx: &AgentCtx, tool: &str, text: &str) -> Option<String> {
    let req = ChatRequest {
        request_id: ctx.request_id.clone(),
        model: format!("agent:{}", ctx.agent),
        messages: vec![Message {
            role: Role::Tool,
            content: text.to_owned(),
        }],
        max_tokens: None,
        temperature: None,
        caller: None,
    };
    for guard in &ctx.guards.guards {
        let why = match guard.check_input(&req, &ctx.metrics).await {
            Ok(Verdict::Block(b)) => format!("blocked by guard `{}` ({})", guard.name, b.category),
            Err(f) if guard.settings.on_error == crate::config::FailPolicy::Closed => {
                format!("guard `{}` could not check it ({f})", guard.name)
            }
            _ => continue,
        };
        tracing::warn!(agent = &*ctx.agent, tool, reason = %why, "tool result withheld");
        ctx.metrics
            .agent_tool_results_blocked
            .with_label_values(&[&*ctx.agent])
            .inc();
        return Some(format!(
            "[withheld: the {tool} result was {why}; do not rely on it]"
        ));
    }
    None
}
