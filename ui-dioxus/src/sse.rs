//! An incremental parser for `text/event-stream` bodies: feed it decoded text
//! as it arrives, get back the `data` payload of every complete event.

#[derive(Debug, Default)]
pub struct SseParser {
    buf: String,
    data: Vec<String>,
}

impl SseParser {
    /// Adds text and returns the payloads of the events it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(rel) = self.buf[start..].find('\n') {
            let end = start + rel;
            let line = self.buf[start..end].trim_end_matches('\r');
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines are not used.
            start = end + 1;
        }
        self.buf.drain(..start);
        out
    }

    /// The end of the body: an event that was not closed by a blank line.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        if let Some(d) = rest.trim_end_matches('\r').strip_prefix("data:") {
            self.data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
        }
        if self.data.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.data).join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let body = "data: {\"a\":1}\n\n: comment\ndata: two\r\ndata: lines\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..body.len() {
            if !body.is_char_boundary(cut) {
                continue;
            }
            let mut p = SseParser::default();
            let mut got = p.push(&body[..cut]);
            got.extend(p.push(&body[cut..]));
            assert_eq!(
                got,
                vec!["{\"a\":1}", "two\nlines", "[DONE]"],
                "cut at {cut}"
            );
            assert_eq!(p.finish(), None);
        }
    }

    #[test]
    fn unterminated_event_at_end() {
        let mut p = SseParser::default();
        assert!(p.push("data: x").is_empty());
        assert_eq!(p.finish().as_deref(), Some("x"));
    }

    #[test]
    fn multibyte_text() {
        let mut p = SseParser::default();
        assert_eq!(p.push("data: 喵喵\n\n"), vec!["喵喵"]);
    }
}
