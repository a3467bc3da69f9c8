//! A loaded guard: validated once, then instantiated fresh for every
//! `check-input` and once per response stream for its output filter.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store, Trap};

use super::bindings::guard::{GuardComponent, GuardComponentPre};
use super::bindings::{ChatRequest, Filtered, Info, Verdict};
use super::engine::ticks;
use super::state::StoreState;
use crate::config::ComponentSettings;
use crate::metrics::Metrics;

/// Why a component call gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    #[error("deadline of {0:?} exceeded")]
    Timeout(std::time::Duration),
    #[error("memory cap exceeded")]
    OutOfMemory,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("instantiation failed: {0}")]
    Instantiate(String),
}

impl Fault {
    /// The `outcome` / `kind` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Fault::Timeout(_) => "timeout",
            Fault::OutOfMemory => "oom",
            Fault::Trap(_) => "trap",
            Fault::Instantiate(_) => "error",
        }
    }

    pub fn classify(
        err: wasmtime::Error,
        store: &Store<StoreState>,
        budget: std::time::Duration,
    ) -> Self {
        if store.data().limiter.exceeded {
            return Fault::OutOfMemory;
        }
        if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
            return Fault::Timeout(budget);
        }
        // One line: the trap (not the whole wasm backtrace) and the guest's
        // panic message if it printed one.
        let mut msg = match err.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{err}")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        let stderr = store.data().stderr_text();
        // Rust panics print `thread … panicked at FILE:` then the message.
        let panic: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(2)
            .collect();
        if !panic.is_empty() {
            msg.push_str(": ");
            msg.push_str(&panic.join(" "));
        }
        Fault::Trap(msg)
    }
}

/// A validated guard component, shared by every request that uses it.
pub struct Guard {
    pub name: Arc<str>,
    pub info: Info,
    pub sha256: String,
    pub settings: ComponentSettings,
    pre: GuardComponentPre<StoreState>,
    engine: Engine,
    config: Arc<std::collections::BTreeMap<String, String>>,
    pub loaded_at: std::time::SystemTime,
    pub stats: Stats,
}

/// Invocation counts and the last fault of one loaded component.
#[derive(Default)]
pub struct Stats {
    pub ok: std::sync::atomic::AtomicU64,
    pub fault: std::sync::atomic::AtomicU64,
    pub last_fault: std::sync::Mutex<Option<String>>,
}

impl Stats {
    pub fn record(&self, fault: Option<&Fault>) {
        use std::sync::atomic::Ordering::Relaxed;
        match fault {
            None => {
                self.ok.fetch_add(1, Relaxed);
            }
            Some(f) => {
                self.fault.fetch_add(1, Relaxed);
                if let Ok(mut last) = self.last_fault.lock() {
                    *last = Some(f.to_string());
                }
            }
        }
    }

    pub fn json(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({ "ok": self.ok.load(Relaxed), "fault": self.fault.load(Relaxed) })
    }

    pub fn last_fault(&self) -> Option<String> {
        self.last_fault.lock().ok().and_then(|l| l.clone())
    }
}

impl Guard {
    /// Links `component` as a guard, checks its imports and exports, and calls
    /// `info` under the guard's own limits.
    pub async fn load(
        engine: &Engine,
        linker: &Linker<StoreState>,
        name: &str,
        component: Component,
        sha256: String,
        settings: ComponentSettings,
    ) -> Result<Self, String> {
        super::check_imports(engine, &component, "guards", &[])?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| format!("does not link as a guard: {e:#}"))?;
        let pre = GuardComponentPre::new(instance_pre)
            .map_err(|e| format!("does not export the guard interface: {e:#}"))?;
        let mut guard = Self {
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
            loaded_at: std::time::SystemTime::now(),
            stats: Stats::default(),
        };
        let (mut store, bindings) = guard
            .instantiate(guard.settings.deadline)
            .await
            .map_err(|e| format!("cannot instantiate: {e}"))?;
        let budget = guard.settings.deadline;
        guard.info = match bindings.wasmgate_llm_guard().call_info(&mut store).await {
            Ok(info) => info,
            Err(e) => {
                return Err(format!(
                    "`info` failed: {}",
                    Fault::classify(e, &store, budget)
                ));
            }
        };
        Ok(guard)
    }

    async fn instantiate(
        &self,
        budget: std::time::Duration,
    ) -> Result<(Store<StoreState>, GuardComponent), Fault> {
        let mut store = StoreState::store(
            &self.engine,
            self.name.clone(),
            self.config.clone(),
            self.settings.memory_bytes,
            budget,
        );
        match self.pre.instantiate_async(&mut store).await {
            Ok(b) => Ok((store, b)),
            Err(e) => Err(match Fault::classify(e, &store, budget) {
                Fault::Trap(msg) => Fault::Instantiate(msg),
                other => other,
            }),
        }
    }

    /// Runs `check-input` in a fresh instance.
    pub async fn check_input(
        &self,
        req: &ChatRequest,
        metrics: &Metrics,
    ) -> Result<Verdict, Fault> {
        let started = Instant::now();
        let budget = self.settings.deadline;
        let result = match self.instantiate(budget).await {
            Ok((mut store, bindings)) => {
                let r = bindings
                    .wasmgate_llm_guard()
                    .call_check_input(&mut store, req)
                    .await
                    .map_err(|e| Fault::classify(e, &store, budget));
                self.record_memory(&store, metrics);
                r
            }
            Err(f) => Err(f),
        };
        self.record(metrics, "check-input", started, &result);
        if let Ok(v) = &result {
            let verdict = match v {
                Verdict::Allow => "allow",
                Verdict::Block(_) => "block",
                Verdict::Rewrite(_) => "rewrite",
            };
            metrics
                .component_verdicts
                .with_label_values(&[&*self.name, verdict])
                .inc();
        }
        result
    }

    /// Starts this guard's output filter for one response stream.
    pub async fn output_filter(
        self: &Arc<Self>,
        req: &ChatRequest,
        metrics: &Metrics,
    ) -> Result<OutputFilter, Fault> {
        let started = Instant::now();
        // Instantiation and the constructor get the check-input deadline;
        // each push/finish then gets the (per-chunk) output budget.
        let budget = self.settings.deadline.max(self.settings.output_budget);
        let result = async {
            let (mut store, bindings) = self.instantiate(budget).await?;
            let handle = bindings
                .wasmgate_llm_guard()
                .output_filter()
                .call_constructor(&mut store, req)
                .await
                .map_err(|e| Fault::classify(e, &store, budget))?;
            Ok(OutputFilter {
                guard: self.clone(),
                store,
                bindings,
                handle,
                done: false,
            })
        }
        .await;
        self.record(metrics, "output-filter", started, &result);
        result
    }

    pub(crate) fn record<T>(
        &self,
        metrics: &Metrics,
        export: &str,
        started: Instant,
        result: &Result<T, Fault>,
    ) {
        record_call(&self.name, &self.stats, metrics, export, started, result);
    }

    fn record_memory(&self, store: &Store<StoreState>, metrics: &Metrics) {
        metrics
            .component_memory
            .with_label_values(&[&*self.name])
            .set(i64::try_from(store.data().limiter.peak).unwrap_or(i64::MAX));
    }
}

/// One guard's output filter for one stream: its own store, alive until the
/// stream ends.
pub struct OutputFilter {
    guard: Arc<Guard>,
    store: Store<StoreState>,
    bindings: GuardComponent,
    handle: ResourceAny,
    done: bool,
}

impl OutputFilter {
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Feeds a text delta.
    pub async fn push(&mut self, delta: &str, metrics: &Metrics) -> Result<Filtered, Fault> {
        self.call(Some(delta), metrics).await
    }

    /// Flushes what the filter held back.
    pub async fn finish(&mut self, metrics: &Metrics) -> Result<Filtered, Fault> {
        self.done = true;
        self.call(None, metrics).await
    }

    async fn call(&mut self, delta: Option<&str>, metrics: &Metrics) -> Result<Filtered, Fault> {
        let started = Instant::now();
        let budget = self.guard.settings.output_budget;
        self.store.set_epoch_deadline(ticks(budget));
        let filter = self.bindings.wasmgate_llm_guard().output_filter();
        let (export, r) = match delta {
            Some(d) => (
                "push",
                filter.call_push(&mut self.store, self.handle, d).await,
            ),
            None => (
                "finish",
                filter.call_finish(&mut self.store, self.handle).await,
            ),
        };
        let result = r.map_err(|e| Fault::classify(e, &self.store, budget));
        self.guard.record(metrics, export, started, &result);
        if let Ok(Filtered::Block(_)) = &result {
            metrics
                .component_verdicts
                .with_label_values(&[&*self.guard.name, "block"])
                .inc();
        }
        result
    }
}

impl Guard {
    /// The component as the admin API shows it.
    pub fn json(&self, last_error: Option<String>) -> serde_json::Value {
        serde_json::json!({
            "name": &*self.name,
            "kind": "guard",
            "version": self.info.version,
            "description": self.info.description,
            "sha256": self.sha256,
            "enabled": self.settings.enabled,
            "order": self.settings.order,
            "filters_output": self.info.filters_output,
            "loaded_at": unix_secs(self.loaded_at),
            "invocations": self.stats.json(),
            "last_error": last_error.or_else(|| self.stats.last_fault()),
        })
    }
}

pub fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts one component call in the stats and metrics.
pub fn record_call<T>(
    name: &str,
    stats: &Stats,
    metrics: &Metrics,
    export: &str,
    started: Instant,
    result: &Result<T, Fault>,
) {
    stats.record(result.as_ref().err());
    let outcome = match result {
        Ok(_) => "ok",
        Err(f) => {
            metrics
                .component_faults
                .with_label_values(&[name, f.label()])
                .inc();
            tracing::warn!(component = name, export, fault = %f, "component fault");
            f.label()
        }
    };
    metrics
        .component_invocations
        .with_label_values(&[name, export, outcome])
        .inc();
    metrics
        .component_duration
        .with_label_values(&[name, export])
        .observe(started.elapsed().as_secs_f64());
}
