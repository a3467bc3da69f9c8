//! The default Wasmgate guard: prompt-injection detection on input,
//! e-mail/phone redaction on output.
//!
//! The logic lives in plain modules without wit-bindgen types, so
//! `cargo test -p guard` runs natively; `component` (wasm only) wires it to
//! the `guard-component` world.

pub mod detect;
mod engine;
pub mod normalize;
pub mod pii;
mod rules;
mod words;

#[cfg(target_family = "wasm")]
mod component;
