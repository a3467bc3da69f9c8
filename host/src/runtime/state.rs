//! What each component instance's `Store` carries: a locked-down WASI context,
//! the memory limiter, and the component's identity and config.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::guard::wasmgate::llm::{config, log};

/// Bytes of a guest's stderr kept for error reports (panic messages).
const STDERR_CAPTURE: usize = 4096;

/// Caps linear memory and records what the instance reached.
pub struct MemoryLimiter {
    cap: usize,
    /// Highest total size granted.
    pub peak: usize,
    /// Set when a growth past the cap was refused.
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.exceeded = true;
            // Trap right away rather than let the guest's allocator abort:
            // the fault is then reported as what it is.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (wanted {desired}, had {current})",
                self.cap
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one `Store`.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub component: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    stderr: MemoryOutputPipe,
    /// Set for agent runs: what the agent-only imports work with.
    pub agent: Option<super::agent::AgentCtx>,
    /// Keeps the epoch ticker running while this store exists.
    _live: super::engine::LiveStore,
}

impl StoreState {
    /// A store state with no files, no sockets, no environment and no stdin.
    pub fn new(
        component: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        memory_cap: usize,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: memory_cap,
                peak: 0,
                exceeded: false,
            },
            component,
            config,
            stderr,
            agent: None,
            _live: super::engine::LiveStore::enter(),
        }
    }

    /// A store for one invocation: memory cap and an epoch deadline that traps.
    pub fn store(
        engine: &wasmtime::Engine,
        component: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        memory_cap: usize,
        budget: std::time::Duration,
    ) -> wasmtime::Store<Self> {
        let mut store = wasmtime::Store::new(engine, Self::new(component, config, memory_cap));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(super::engine::ticks(budget));
        store.epoch_deadline_trap();
        store
    }

    /// What the guest wrote to stderr (e.g. a panic message), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(component, "{message}"),
            log::Level::Debug => tracing::debug!(component, "{message}"),
            log::Level::Info => tracing::info!(component, "{message}"),
            log::Level::Warn => tracing::warn!(component, "{message}"),
            log::Level::Error => tracing::error!(component, "{message}"),
        }
    }
}

impl config::Host for StoreState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl super::bindings::guard::wasmgate::llm::types::Host for StoreState {}
