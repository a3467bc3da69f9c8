//! The upstream SSE decoder and the chunk view on arbitrary bytes:
//!
//! - however the stream is cut into reads, the decoder gives the same events
//!   (and the same leftover) as for the whole stream in one read;
//! - parsing any event as a chunk never panics, and where a chunk is a plain
//!   content chunk, splicing new text into it gives valid JSON that differs
//!   from the original only in that text, and reads back as that text.
//!
//! Input: one byte that picks how the stream is cut (a seed for the piece
//! lengths, and their maximum, 1 to 16 bytes), then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wasmgate_protocol::chunk::{Chunk, replace_content};
use wasmgate_protocol::sse::{DecodeError, Decoder};

/// A small limit, so the fuzzer reaches the oversized-event paths.
const SMALL_LIMIT: usize = 48;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let pieces = cut(stream, seed);

    // Within the default limit (the fuzzer's inputs never reach it) the
    // split must not matter at all.
    let whole = decode(&[stream], Decoder::new);
    let split = decode(&pieces, Decoder::new);
    assert_eq!(whole, split, "pieces {pieces:?}");
    assert!(whole.error.is_none());

    // With a small limit the same: the same events, and the same refusal
    // (a line over the limit is refused whether it came whole or in pieces).
    let small = || Decoder::with_limit(SMALL_LIMIT);
    let whole_small = decode(&[stream], small);
    let split_small = decode(&pieces, small);
    assert_eq!(whole_small.events, split_small.events, "pieces {pieces:?}");
    assert_eq!(whole_small.error, split_small.error, "pieces {pieces:?}");
    for ev in whole_small.events.iter().chain(&split_small.events) {
        assert!(ev.len() < SMALL_LIMIT);
    }

    for data in &whole.events {
        check_chunk(data);
    }
});

#[derive(Debug, PartialEq)]
struct Decoded {
    events: Vec<Vec<u8>>,
    error: Option<DecodeError>,
    pending: usize,
}

/// Feeds `pieces` one by one, taking every complete event after each.
fn decode(pieces: &[&[u8]], new: impl Fn() -> Decoder) -> Decoded {
    let mut d = new();
    let mut events = Vec::new();
    for p in pieces {
        d.feed(p);
        loop {
            match d.next_event() {
                Ok(Some(ev)) => {
                    if ev.is_done() {
                        assert_eq!(&ev.data[..], b"[DONE]");
                    }
                    events.push(ev.data.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        events,
                        error: Some(e),
                        pending: 0,
                    };
                }
            }
        }
    }
    Decoded {
        events,
        error: None,
        pending: d.pending(),
    }
}

/// `stream` cut into pieces of 0 to `max` bytes (a xorshift generator
/// seeded by `seed` picks each length).
fn cut(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let max = u32::from(seed & 0x0F) + 1;
    let mut state = u32::from(seed) | 0x9E37_7900;
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % (max + 1)) as usize;
        let end = (at + n).min(stream.len());
        pieces.push(&stream[at..end]);
        at = end;
    }
    pieces
}

fn check_chunk(data: &[u8]) {
    let Ok(chunk) = Chunk::parse(data) else {
        return;
    };
    for choice in &chunk.choices {
        // A text the relay reads is a text it can find in the bytes.
        if choice.content().is_some() {
            assert!(chunk.content_span(choice).is_some());
        }
    }
    let Some(choice) = chunk.plain_content() else {
        return;
    };
    let old = choice
        .content()
        .expect("a plain content chunk has readable text");
    let span = chunk
        .content_span(choice)
        .expect("a plain content chunk has its text in the bytes");
    let original: Option<Value> = serde_json::from_slice(data).ok();
    let reversed: String = old.chars().rev().collect();
    for text in [
        "",
        "[EMAIL]",
        "\"q\" \\ / \n\t\r\u{0}\u{1f}\u{7f}\u{2028} 你好 😀",
        &reversed,
    ] {
        let edited = replace_content(data, span.clone(), text);
        assert_eq!(&edited[..span.start], &data[..span.start]);
        assert!(edited.ends_with(&data[span.end..]));
        let again = Chunk::parse(&edited).expect("an edited chunk parses");
        let c = again
            .plain_content()
            .expect("an edited chunk is still plain");
        assert_eq!(c.content().as_deref(), Some(text));
        // Where the upstream's chunk was valid JSON, so is the edited one,
        // and only the text changed.
        if let Some(mut want) = original.clone() {
            let got: Value = serde_json::from_slice(&edited).expect("an edited chunk is JSON");
            want["choices"][0]["delta"]["content"] = Value::from(text);
            assert_eq!(got, want);
        }
    }
}
