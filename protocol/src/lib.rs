//! Wasmgate's wire formats, kept apart from the WebAssembly runtime so they
//! can be tested and fuzzed on their own:
//!
//! - [`request`]: validation of an OpenAI chat request and the gateway's
//!   edits of its body;
//! - [`sse`]: an incremental decoder of the upstream's server-sent events;
//! - [`chunk`]: a borrowed view of one `chat.completion.chunk` and in-place
//!   edits of its content, so unchanged chunks are forwarded byte for byte.

pub mod chunk;
pub mod request;
pub mod sse;
