//! Wasmgate's web chat: a Dioxus app compiled to wasm32-unknown-unknown that
//! talks to the host only through its public HTTP API.
//!
//! The pure parts (SSE parsing, API shapes, Markdown, conversations) build on
//! every target and are unit-tested natively; the app itself is wasm32-only.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod api;
mod markdown;
mod model;
mod sse;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod net;

#[cfg(target_arch = "wasm32")]
fn main() {
    dioxus::launch(app::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "ui-dioxus is a web app: `make ui` builds it for the browser, `wasmgate serve --ui-dir` serves it."
    );
    std::process::exit(2);
}
