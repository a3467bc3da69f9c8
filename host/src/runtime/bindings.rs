//! Host-side bindings of the WIT worlds in `wit/`.

/// The `guard-component` world: guards export `guard`, import `log` and `config`.
pub mod guard {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "guard-component",
        exports: { default: async },
    });
}

pub use guard::wasmgate::llm::types::{
    Block, ChatRequest, ComponentInfo as Info, Filtered, Message, Role, Verdict,
};
