//! Incremental decoding of server-sent events, as the WHATWG HTML standard
//! defines them (section "Parsing an event stream"), for the upstream's
//! `text/event-stream` answers.
//!
//! Bytes go in with [`Decoder::feed`] as they arrive, in pieces of any size;
//! complete events come out of [`Decoder::next_event`]. Only the `data`
//! field matters to an OpenAI-style stream: `event`, `id` and `retry` lines
//! and comments (`:` lines, keep-alives) are read and dropped. Lines end with
//! LF, CRLF or CR, also when a CRLF is split between two pieces. An event
//! whose data grows past the decoder's limit is an error, so a hostile or
//! broken upstream cannot make the gateway buffer without bound.

use bytes::{Buf, Bytes, BytesMut};

/// Largest event the decoder buffers by default (4 MiB: far above any chunk
/// a model server sends, far below what would hurt the gateway).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// One dispatched event: its `data` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub data: Bytes,
}

impl Event {
    /// The OpenAI end-of-stream marker `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        &self.data[..] == b"[DONE]"
    }
}

/// The stream broke the decoder's limits; the decoder should not be fed again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("an upstream event is larger than {0} bytes")]
    TooLarge(usize),
}

/// An incremental event-stream decoder.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes fed and not yet consumed as whole lines.
    buf: BytesMut,
    /// The data of the event being read (each line followed by `\n`).
    data: BytesMut,
    has_data: bool,
    /// The last line ended with a CR at the end of a piece: an LF that
    /// starts the next piece belongs to it.
    skip_lf: bool,
    /// Nothing consumed yet: a leading byte order mark is dropped.
    at_start: bool,
    max_event: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that refuses events (and lines) longer than `max_event` bytes.
    pub fn with_limit(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            data: BytesMut::new(),
            has_data: false,
            skip_lf: false,
            at_start: true,
            max_event,
        }
    }

    /// Appends bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered that do not make an event yet (a partial line or an
    /// event without its closing blank line).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// The next complete event, if the bytes fed so far hold one.
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            if self.at_start {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                    return Ok(None); // can't tell yet
                }
                if self.buf.starts_with(BOM) {
                    self.buf.advance(BOM.len());
                }
                self.at_start = false;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buf) else {
                if self.buf.len() + self.data.len() > self.max_event {
                    return Err(DecodeError::TooLarge(self.max_event));
                }
                return Ok(None);
            };
            if end + self.data.len() > self.max_event {
                // The same limit whether the line came in one read or many.
                return Err(DecodeError::TooLarge(self.max_event));
            }
            let line = self.buf.split_to(end);
            let terminator = self.buf[0];
            self.buf.advance(1);
            if terminator == b'\r' {
                if self.buf.is_empty() {
                    self.skip_lf = true;
                } else if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
            }
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    let mut data = self.data.split();
                    data.truncate(data.len() - 1); // the last line's `\n`
                    return Ok(Some(Event {
                        data: data.freeze(),
                    }));
                }
                continue;
            }
            self.on_line(&line)?;
        }
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), DecodeError> {
        if line[0] == b':' {
            return Ok(()); // a comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() + 1 > self.max_event {
                return Err(DecodeError::TooLarge(self.max_event));
            }
            self.data.extend_from_slice(value);
            self.data.extend_from_slice(b"\n");
            self.has_data = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Vec<String> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for p in pieces {
            d.feed(p);
            while let Some(ev) = d.next_event().expect("within limits") {
                out.push(String::from_utf8(ev.data.to_vec()).expect("utf-8"));
            }
        }
        out
    }

    #[test]
    fn vllm_events_and_done() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(decode_all(&[stream]), ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
        let mut d = Decoder::new();
        d.feed(b"data: [DONE]\n\n");
        assert!(d.next_event().unwrap().unwrap().is_done());
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let stream: &[u8] = b"\xEF\xBB\xBF: keep-alive\r\nevent: x\r\ndata: one\r\ndata:two\r\n\r\nid: 7\rdata: \xE4\xBD\xA0\r\rdata\n\ndata: [DONE]\n\n";
        let whole = decode_all(&[stream]);
        assert_eq!(whole, ["one\ntwo", "你", "", "[DONE]"]);
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let got = decode_all(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let mut d = Decoder::new();
        d.feed(b"data: partial\n");
        assert_eq!(d.next_event(), Ok(None));
        assert!(d.pending() > 0);
        d.feed(b"\n");
        assert_eq!(&d.next_event().unwrap().unwrap().data[..], b"partial");
    }

    #[test]
    fn oversized_events_and_lines_are_refused() {
        let mut d = Decoder::with_limit(16);
        d.feed(b"data: 0123456789abcdef\n\n");
        assert_eq!(d.next_event(), Err(DecodeError::TooLarge(16)));
        let mut d = Decoder::with_limit(16);
        d.feed(b": a comment longer than the limit\n\n"); // whole, in one read
        assert_eq!(d.next_event(), Err(DecodeError::TooLarge(16)));
        let mut d = Decoder::with_limit(16);
        d.feed(&[b'x'; 64]); // no line end at all
        assert_eq!(d.next_event(), Err(DecodeError::TooLarge(16)));
        let mut d = Decoder::with_limit(16);
        for _ in 0..8 {
            d.feed(b"data: abc\n");
        }
        assert_eq!(d.next_event(), Err(DecodeError::TooLarge(16)));
    }
}
