//! Wasmgate: a guarded LLM gateway whose guards and agents are hot-reloadable
//! WebAssembly components. The `wasmgate` binary is a thin CLI over this library.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod eval;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod signing;
pub mod tools;
pub mod upstream;
pub mod watcher;
