//! Markdown to HTML for replies. Raw HTML from the model is shown as text,
//! never interpreted; redaction tags (`[EMAIL]`, `[PHONE]`, …) are marked.

use pulldown_cmark::{CowStr, Event, Options, Parser, TextMergeStream, html};

/// Renders `md` as safe HTML.
pub fn render(md: &str) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut events = Vec::new();
    for ev in TextMergeStream::new(Parser::new_ext(md, opts)) {
        match ev {
            Event::Text(t) => push_marked(&mut events, t),
            // The model's HTML is text, not markup.
            Event::Html(h) | Event::InlineHtml(h) => events.push(Event::Text(h)),
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(md.len() * 3 / 2 + 16);
    html::push_html(&mut out, events.into_iter());
    out
}

fn push_marked<'a>(events: &mut Vec<Event<'a>>, text: CowStr<'a>) {
    let parts = split_redactions(&text);
    if parts.iter().all(|(tag, _)| !tag) {
        events.push(Event::Text(text));
        return;
    }
    for (tag, part) in parts {
        if tag {
            events.push(Event::InlineHtml(
                format!("<mark class=\"redacted\" title=\"Redacted by a guard\">{part}</mark>")
                    .into(),
            ));
        } else {
            events.push(Event::Text(part.to_owned().into()));
        }
    }
}

/// Splits text into (is_redaction_tag, part). A tag is `[` + an upper-case
/// ASCII letter + up to 30 of `A-Z0-9_` + `]`.
pub fn split_redactions(text: &str) -> Vec<(bool, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some(len) = tag_len(&bytes[i..])
        {
            if plain < i {
                out.push((false, &text[plain..i]));
            }
            out.push((true, &text[i..i + len]));
            i += len;
            plain = i;
            continue;
        }
        i += 1;
    }
    if plain < text.len() {
        out.push((false, &text[plain..]));
    }
    out
}

fn tag_len(b: &[u8]) -> Option<usize> {
    if b.len() < 3 || !b[1].is_ascii_uppercase() {
        return None;
    }
    for (j, &c) in b.iter().enumerate().skip(2).take(31) {
        if c == b']' {
            return Some(j + 1);
        }
        if !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_') {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_tables() {
        let h = render("# T\n\n- a\n- b\n\n```rust\nfn x() {}\n```\n\n|a|b|\n|-|-|\n|1|2|\n");
        assert!(h.contains("<li>a</li>"));
        assert!(h.contains("<code class=\"language-rust\">fn x() {}"));
        assert!(h.contains("<table>"));
    }

    #[test]
    fn html_is_escaped() {
        let h = render("hi <script>alert(1)</script> <b>x</b>");
        assert!(!h.contains("<script>"));
        assert!(h.contains("&lt;script&gt;"));
    }

    #[test]
    fn redactions_are_marked() {
        let h = render("mail [EMAIL] or call [PHONE], see [link](http://x) and [a]");
        assert!(
            h.contains("<mark class=\"redacted\" title=\"Redacted by a guard\">[EMAIL]</mark>")
        );
        assert!(h.contains(">[PHONE]</mark>,"));
        assert!(h.contains("<a href=\"http://x\">link</a>"));
        assert!(h.contains("[a]"));
        assert_eq!(split_redactions("x[Y]"), vec![(false, "x"), (true, "[Y]")]);
        assert_eq!(split_redactions("[]"), vec![(false, "[]")]);
    }

    #[test]
    fn chinese() {
        assert!(render("**喵**").contains("<strong>喵</strong>"));
    }
}
