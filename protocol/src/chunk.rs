//! A borrowed view of one streamed chunk (placeholder; filled in next).
