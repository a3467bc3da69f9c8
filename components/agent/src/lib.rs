//! The default Wasmgate agent, "wasmgate expert": answers questions about
//! Wasmgate from its documentation with the `kb-search` tool, cites the files
//! it used, and treats retrieved text as data, never as instructions.
//!
//! The logic lives in plain modules without wit-bindgen types, so
//! `cargo test -p agent` runs natively; `component` (wasm only) wires it to
//! the `agent-component` world. See `docs/agents.md`.

pub mod prompt;
pub mod protocol;
pub mod run;
pub mod sources;

#[cfg(target_family = "wasm")]
mod component;
