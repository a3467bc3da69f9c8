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

/// The `agent-component` world. Types, `log` and `config` are shared with the guard world.
pub mod agent {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent-component",
        imports: {
            "wasmgate:llm/inference": async | trappable,
            "wasmgate:llm/output": async | trappable,
            "wasmgate:llm/tools": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasmgate:llm/types": super::guard::wasmgate::llm::types,
            "wasmgate:llm/log": super::guard::wasmgate::llm::log,
            "wasmgate:llm/config": super::guard::wasmgate::llm::config,
            "wasmgate:llm/inference.completion": crate::runtime::agent::Completion,
        },
    });
}
