//! Sandbox-test fixture: `check-input` allocates (and writes) 1 MiB blocks
//! until the allocator fails, which traps. The host must cap the instance's
//! memory. `info` works normally so the host accepts the component.

wit_bindgen::generate!({ path: "../../../wit", world: "guard-component" });

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};

struct AllocBomb;

impl Guest for AllocBomb {
    type OutputFilter = PassThrough;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "alloc-bomb".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test fixture: check-input allocates without bound.".to_string(),
            filters_output: false,
        }
    }

    fn check_input(_req: ChatRequest) -> Verdict {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Non-zero fill so every page is really written.
            let block = vec![0xA5u8; 1 << 20];
            hoard.push(std::hint::black_box(block));
            std::hint::black_box(&hoard);
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

export!(AllocBomb);
