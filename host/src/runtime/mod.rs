//! The component runtime: one engine, one linker per world, compiled-artifact
//! cache, and loading of guard files.

pub mod agent;
pub mod bindings;
pub mod compile;
pub mod engine;
pub mod guard;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::config::ComponentSettings;
use agent::Agent;
use guard::Guard;
use state::StoreState;

/// Imports every component may have: our shared interfaces and the WASI
/// parts Rust's std links (with nothing to reach through them: no
/// preopened directories, no environment). Sockets and HTTP are never allowed.
const COMMON_IMPORTS: &[&str] = &[
    "wasmgate:llm/types",
    "wasmgate:llm/log",
    "wasmgate:llm/config",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// What agents may import on top of [`COMMON_IMPORTS`].
pub const AGENT_ONLY_IMPORTS: &[&str] = &[
    "wasmgate:llm/inference",
    "wasmgate:llm/output",
    "wasmgate:llm/tools",
];

/// Refuses a component that imports anything its kind may not.
pub fn check_imports(
    engine: &Engine,
    component: &wasmtime::component::Component,
    kind: &str,
    extra: &[&str],
) -> Result<(), String> {
    for (import, _) in component.component_type().imports(engine) {
        if !COMMON_IMPORTS
            .iter()
            .chain(extra)
            .any(|p| import.starts_with(p))
        {
            return Err(format!("{kind} may not import `{import}`"));
        }
    }
    Ok(())
}

/// The engine and linkers, shared by every load and invocation.
pub struct Runtime {
    pub engine: Engine,
    guard_linker: Linker<StoreState>,
    agent_linker: Linker<StoreState>,
    cache_dir: Option<PathBuf>,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    pub fn new(max_instances: u32, cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let engine = engine::build(max_instances)?;
        let mut guard_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut guard_linker)?;
        bindings::guard::GuardComponent::add_to_linker::<_, HasSelf<_>>(&mut guard_linker, |s| s)?;
        let mut agent_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut agent_linker)?;
        bindings::agent::AgentComponent::add_to_linker::<_, HasSelf<_>>(&mut agent_linker, |s| s)?;
        let ticker = engine::start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            guard_linker,
            agent_linker,
            cache_dir,
            _ticker: ticker,
        })
    }

    /// Compiles (or fetches from the cache) and validates a guard.
    pub async fn load_guard(
        &self,
        name: &str,
        bytes: Arc<Vec<u8>>,
        sha256: String,
        settings: ComponentSettings,
    ) -> Result<Guard, String> {
        let component = self.compile(bytes, sha256.clone()).await?;
        Guard::load(
            &self.engine,
            &self.guard_linker,
            name,
            component,
            sha256,
            settings,
        )
        .await
    }

    /// Compiles (or fetches from the cache) and validates an agent.
    pub async fn load_agent(
        &self,
        name: &str,
        bytes: Arc<Vec<u8>>,
        sha256: String,
        settings: ComponentSettings,
    ) -> Result<Agent, String> {
        let component = self.compile(bytes, sha256.clone()).await?;
        Agent::load(
            &self.engine,
            &self.agent_linker,
            name,
            component,
            sha256,
            settings,
        )
        .await
    }

    /// Compilation is CPU work: it runs off the async workers.
    async fn compile(
        &self,
        bytes: Arc<Vec<u8>>,
        sha256: String,
    ) -> Result<wasmtime::component::Component, String> {
        let engine = self.engine.clone();
        let cache_dir = self.cache_dir.clone();
        tokio::task::spawn_blocking(move || {
            compile::compile(&engine, &bytes, &sha256, cache_dir.as_deref())
        })
        .await
        .map_err(|e| format!("compile task failed: {e}"))?
        .map_err(|e| e.to_string())
    }
}
