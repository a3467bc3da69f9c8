//! Sandbox-test fixture: `check-input` panics, which traps (`panic = "abort"`
//! in the component profile ends in `unreachable`). `info` works normally so
//! the host accepts the component.

wit_bindgen::generate!({ path: "../../../wit", world: "guard-component" });

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};

struct Trap;

impl Guest for Trap {
    type OutputFilter = PassThrough;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "trap".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test fixture: check-input traps.".to_string(),
            filters_output: false,
        }
    }

    fn check_input(_req: ChatRequest) -> Verdict {
        panic!("trap fixture: check-input always traps");
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

export!(Trap);
