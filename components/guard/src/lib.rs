//! The default Wasmgate guard: prompt-injection detection (rules plus a
//! learned scorer) and PII/secret redaction on input; PII/secret redaction,
//! leak-canary and hijack-marker checks on output.
//!
//! The logic lives in plain modules without wit-bindgen types, so
//! `cargo test -p guard` runs natively; `component` (wasm only) wires it to
//! the `guard-component` world.

pub mod detect;
mod engine;
pub mod jsonl;
pub mod normalize;
pub mod pii;
pub mod policy;
mod rules;
pub mod scorer;
mod scorer_weights;
mod words;

#[cfg(target_family = "wasm")]
mod component;
