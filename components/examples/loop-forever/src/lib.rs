//! Sandbox-test fixture: `check-input` spins forever without allocating.
//! The host must stop it with its fuel or epoch limit. `info` works normally
//! so the host accepts the component.

wit_bindgen::generate!({ path: "../../../wit", world: "guard-component" });

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};

struct LoopForever;

impl Guest for LoopForever {
    type OutputFilter = PassThrough;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "loop-forever".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test fixture: check-input never returns.".to_string(),
            filters_output: false,
        }
    }

    fn check_input(_req: ChatRequest) -> Verdict {
        let mut n: u64 = 0;
        loop {
            // `black_box` keeps the optimiser from proving the loop useless.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

struct PassThrough;

impl GuestOutputFilter for PassThrough {
    fn new(_req: ChatRequest) -> Self {
        PassThrough
    }
    fn push(&self, delta: String) -> Filtered {
        Filtered::Emit(delta)
    }
    fn finish(&self) -> Filtered {
        Filtered::Emit(String::new())
    }
}

export!(LoopForever);
