//! Incremental decoding of server-sent events (placeholder; filled in next).
