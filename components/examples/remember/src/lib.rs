//! Sandbox-test fixture: `check-input` blocks if anything an earlier call
//! wrote is still there. Each call leaves a mark in a zero-initialised static,
//! in a static with initial data, and in a page it grows linear memory by; a
//! fresh instance must see none of them (the pooling allocator reuses the
//! same memory slot, reset in place).

wit_bindgen::generate!({ path: "../../../wit", world: "guard-component" });

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};
use wasmgate::llm::types::Block;

/// In `.bss`: zero in a fresh instance.
static CALLS: AtomicU32 = AtomicU32::new(0);
/// In `.data`: the module's initial bytes in a fresh instance.
static DATA: [AtomicU8; 4] = [
    AtomicU8::new(b'i'),
    AtomicU8::new(b'n'),
    AtomicU8::new(b'i'),
    AtomicU8::new(b't'),
];

#[cfg(target_arch = "wasm32")]
const PAGE: usize = 65536;
const MARK: u8 = 0xA5;

struct Remember;

/// What survived from an earlier call, if anything; then leaves this call's marks.
fn leftovers() -> Option<&'static str> {
    let mut found = None;
    if CALLS.fetch_add(1, Relaxed) != 0 {
        found = Some("a static written by an earlier call");
    }
    if DATA[0].swap(MARK, Relaxed) != b'i' {
        found = Some("initialised data written by an earlier call");
    }
    if let Some(what) = grown_page() {
        found = Some(what);
    }
    found
}

/// A page beyond what the instance started with: a fresh instance grows into
/// the same page of the same slot, which must read as zeros.
#[cfg(target_arch = "wasm32")]
fn grown_page() -> Option<&'static str> {
    let old_pages = core::arch::wasm32::memory_grow(0, 1);
    if old_pages == usize::MAX {
        return Some("memory.grow failed");
    }
    let page = (old_pages * PAGE) as *mut u8;
    let mut found = None;
    for offset in [0, 4096, PAGE - 1] {
        // SAFETY: the page was just added by `memory_grow`: it is in bounds and
        // no Rust object or allocator uses it.
        unsafe {
            let p = page.add(offset);
            if p.read_volatile() != 0 {
                found = Some("a grown page written by an earlier call");
            }
            p.write_volatile(MARK);
        }
    }
    found
}

/// Native builds (the workspace's clippy and tests) have no linear memory.
#[cfg(not(target_arch = "wasm32"))]
fn grown_page() -> Option<&'static str> {
    None
}

impl Guest for Remember {
    type OutputFilter = PassThrough;

    fn info() -> ComponentInfo {
        ComponentInfo {
            name: "remember".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test fixture: blocks if state from an earlier call survived.".to_string(),
            filters_output: false,
        }
    }

    fn check_input(_req: ChatRequest) -> Verdict {
        match leftovers() {
            None => Verdict::Allow,
            Some(what) => Verdict::Block(Block {
                category: "state-survived".to_string(),
                reason: what.to_string(),
                score: 1.0,
            }),
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

export!(Remember);
