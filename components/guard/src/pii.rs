//! PII redaction for the output filter: e-mail addresses become `[EMAIL]`,
//! phone numbers become `[PHONE]`, also while the text streams in.
//!
//! Everything that can be part of a match is ASCII, so the scanners work on
//! bytes; boundaries only look at ASCII letters and digits, so
//! `电话13800138000` is redacted while `abc13800138000` is not.
//!
//! Streaming: [`StreamRedactor`] emits the longest prefix that no later text
//! can change. A match can only contain "match characters" (ASCII letters,
//! digits and `._%+-@()`) and single spaces between digit groups, so the
//! filter holds back the trailing run of those and emits the rest, redacted.
//! Every decision of [`redact`] near a cut only looks at characters on the
//! same side of it, so the emitted pieces always concatenate to
//! `redact(whole text)`, however the text was chunked (tested below).

/// Replacement for an e-mail address.
pub const EMAIL: &str = "[EMAIL]";
/// Replacement for a phone number.
pub const PHONE: &str = "[PHONE]";
/// Longest run held back while streaming; a longer one is flushed as it is.
pub const MAX_HOLD: usize = 256;

/// Characters that may belong to an e-mail address or a phone number.
fn is_match_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-@()".contains(&c)
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// Redacts e-mail addresses and phone numbers in `text`.
pub fn redact(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    let emails = find_emails(b);
    for &(s, e) in emails.iter().chain(std::iter::once(&(b.len(), b.len()))) {
        // Phone numbers between the previous e-mail and this one.
        let mut i = from;
        while i < s {
            if can_start_phone(b, i) {
                let (end, valid) = parse_phone(b, i, s);
                if valid
                    && b.get(end)
                        .is_none_or(|&c| !c.is_ascii_alphanumeric() && c != b'@')
                {
                    out.push_str(&text[copied..i]);
                    out.push_str(PHONE);
                    copied = end;
                }
                // Never restart inside a rejected run (e.g. a card number).
                i = end.max(i + 1);
                continue;
            }
            i += 1;
        }
        if s < b.len() {
            out.push_str(&text[copied..s]);
            out.push_str(EMAIL);
            copied = e;
        }
        from = e;
    }
    out.push_str(&text[copied..]);
    out
}

/// Non-overlapping e-mail spans, left to right.
fn find_emails(b: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut floor = 0;
    for at in 0..b.len() {
        if b[at] != b'@' || at < floor {
            continue;
        }
        let mut s = at;
        while s > floor && is_local(b[s - 1]) {
            s -= 1;
        }
        while s < at && b[s] == b'.' {
            s += 1;
        }
        if s == at {
            continue;
        }
        let mut e = at + 1;
        while e < b.len() && is_domain(b[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if valid_domain(&b[at + 1..e]) {
            spans.push((s, e));
            floor = e;
        }
    }
    spans
}

fn valid_domain(d: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty() {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

fn can_start_phone(b: &[u8], i: usize) -> bool {
    let c = b[i];
    let next_digit = b.get(i + 1).is_some_and(u8::is_ascii_digit);
    let starts = c.is_ascii_digit() || (matches!(c, b'+' | b'(') && next_digit);
    // The blocking characters are all match characters (see the module docs).
    let blocked = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b"._+-@%".contains(&b[i - 1]));
    starts && !blocked
}

fn digits_end(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i < lim && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Parses the longest phone-like run from `p` (before `lim`): digit groups
/// with one consistent separator (` `, `-` or `.`), an optional `+CC` and an
/// optional `(area)` group. Returns where the run ends and whether it is a
/// phone number.
fn parse_phone(b: &[u8], p: usize, lim: usize) -> (usize, bool) {
    let mut groups: Vec<usize> = Vec::with_capacity(6);
    let mut i = p;
    let plus = b[i] == b'+';
    if plus {
        i += 1;
    }
    let mut paren = false;
    let mut after_paren = false;
    if b[i] == b'(' {
        let j = digits_end(b, i + 1, lim);
        if !(1..=5).contains(&(j - i - 1)) || b.get(j) != Some(&b')') || j >= lim {
            return (i + 1, false);
        }
        groups.push(j - i - 1);
        i = j + 1;
        paren = true;
        after_paren = true;
    } else {
        let j = digits_end(b, i, lim);
        groups.push(j - i);
        i = j;
    }
    // The separator after `+CC` or `(area)` may differ from the others.
    let mut free_sep = plus || paren;
    let mut sep: Option<u8> = None;
    loop {
        let this_sep = b
            .get(i)
            .copied()
            .filter(|c| i < lim && matches!(c, b' ' | b'-' | b'.'));
        let at = if this_sep.is_some() { i + 1 } else { i };
        if at >= lim {
            break;
        }
        if b[at] == b'(' && plus && !paren && groups.len() == 1 {
            let j = digits_end(b, at + 1, lim);
            if !(1..=5).contains(&(j - at - 1)) || j >= lim || b[j] != b')' {
                break;
            }
            groups.push(j - at - 1);
            i = j + 1;
            paren = true;
            after_paren = true;
            free_sep = true;
            continue;
        }
        if !b[at].is_ascii_digit() {
            break;
        }
        match this_sep {
            None if !after_paren => break,
            None => {}
            Some(_) if free_sep => free_sep = false,
            Some(c) => match sep {
                Some(s) if s != c => break,
                _ => sep = Some(c),
            },
        }
        after_paren = false;
        let j = digits_end(b, at, lim);
        groups.push(j - at);
        i = j;
    }
    (
        i,
        is_phone(&groups, plus, paren, sep, b[if plus { p + 1 } else { p }]),
    )
}

fn is_phone(groups: &[usize], plus: bool, paren: bool, sep: Option<u8>, first: u8) -> bool {
    let digits: usize = groups.iter().sum();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let last = groups[groups.len() - 1];
    if plus {
        return true;
    }
    if paren {
        return last >= 3;
    }
    let (g0, rest) = (groups[0], &groups[1..]);
    match (rest.len(), sep) {
        // 10 to 15 plain digits: 13800138000.
        (0, _) => digits >= 10,
        // 415.555.1234 only: dotted numbers are usually versions or addresses.
        (_, Some(b'.')) => groups == [3, 3, 4],
        // Area code with a leading 0: 010-12345678.
        (1, _) => first == b'0' && (2..=4).contains(&g0) && (7..=8).contains(&rest[0]),
        (n, s) => {
            let thousands = g0 <= 3 && rest.iter().all(|&g| g == 3);
            (1..=4).contains(&g0)
                && rest.iter().all(|g| (2..=4).contains(g))
                && (last >= 3 || (s == Some(b' ') && n >= 3))
                && !thousands
        }
    }
}

/// Where the trailing run that a later chunk could still extend begins.
fn held_start(b: &[u8]) -> usize {
    let mut i = b.len();
    while i > 0 {
        let c = b[i - 1];
        if is_match_char(c) {
            i -= 1;
            continue;
        }
        // A single space between digit groups (or at the very end after one).
        if c == b' ' && i >= 2 {
            let left = b[i - 2];
            let right = b.get(i).copied();
            if (left.is_ascii_digit() || left == b')')
                && right.is_none_or(|r| r.is_ascii_digit() || r == b'(')
            {
                i -= 1;
                continue;
            }
        }
        break;
    }
    i
}

/// Streaming redaction: feed deltas with [`push`](Self::push), then call
/// [`finish`](Self::finish). The outputs concatenate to `redact(input)`.
#[derive(Debug, Default)]
pub struct StreamRedactor {
    buf: String,
}

impl StreamRedactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delta; returns the redacted text that is now final (maybe "").
    pub fn push(&mut self, delta: &str) -> String {
        self.buf.push_str(delta);
        let mut cut = held_start(self.buf.as_bytes());
        if self.buf.len() - cut > MAX_HOLD {
            cut = self.buf.len();
        }
        if cut == 0 {
            return String::new();
        }
        let out = redact(&self.buf[..cut]);
        self.buf.drain(..cut);
        out
    }

    /// The stream ended: returns the rest, redacted.
    pub fn finish(&mut self) -> String {
        let out = redact(&self.buf);
        self.buf.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        let cases = [
            ("mail john.doe+x@example.co.uk now", "mail [EMAIL] now"),
            ("end a@b.com.", "end [EMAIL]."),
            ("call +1 (415) 555-1234.", "call [PHONE]."),
            ("us (415) 555-1234 or 415-555-1234", "us [PHONE] or [PHONE]"),
            ("cn 13800138000，或 138 0013 8000", "cn [PHONE]，或 [PHONE]"),
            ("电话13800138000", "电话[PHONE]"),
            ("uk +44 20 7946 0958", "uk [PHONE]"),
            ("+8613800138000", "[PHONE]"),
            ("tel 1-800-555-1234", "tel [PHONE]"),
            ("fr 06 12 34 56 78", "fr [PHONE]"),
            ("bj 010-12345678", "bj [PHONE]"),
            ("(13800138000)", "([PHONE])"),
            ("415.555.1234", "[PHONE]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
        for keep in [
            "in 2023 and 2024",
            "from 1990-2000",
            "on 2024-01-15 at 12:30",
            "it costs 10 000 000 or 1,000,000",
            "ip 192.168.1.100 and v1.2.3",
            "card 4111 1111 1111 1111",
            "isbn 978-3-16-148410-0",
            "abc13800138000",
            "user@localhost and @handle and a@b.c",
            "pi 3.14159265358979",
            "short 555-1234",
            "chapter 1 2 3 4 5 6 7 8",
        ] {
            assert_eq!(redact(keep), keep);
        }
    }

    const SAMPLES: &[&str] = &[
        "Contact me at john.doe@example.com or +1 (415) 555-1234, thanks!",
        "我的电话是 138 0013 8000，邮箱 zhang.san@mail.cn。",
        "Call 415-555-1234 or 13800138000 now; a@b.c is not mail, x@y.io is.",
        "Years 1999 2000 and +44 20 7946 0958 and (02) 1234 5678 end",
        "card 4111 1111 1111 1111 and ip 192.168.0.1 and mail@host.org.",
        "plain words only, nothing to hide here at all",
        "a@b@c.com +86 13800138000@qq.com 010-12345678 ok",
    ];

    fn stream(pieces: &[&str]) -> String {
        let mut r = StreamRedactor::new();
        let mut out: String = pieces.iter().map(|p| r.push(p)).collect();
        out.push_str(&r.finish());
        out
    }

    fn boundaries(s: &str) -> Vec<usize> {
        (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
    }

    #[test]
    fn streaming_equals_whole_for_any_2_or_3_pieces() {
        for s in SAMPLES {
            let want = redact(s);
            let bs = boundaries(s);
            for &i in &bs {
                assert_eq!(stream(&[&s[..i], &s[i..]]), want, "{s:?} split at {i}");
                for &j in bs.iter().filter(|&&j| j >= i) {
                    let got = stream(&[&s[..i], &s[i..j], &s[j..]]);
                    assert_eq!(got, want, "{s:?} split at {i},{j}");
                }
            }
            // One character at a time.
            let chars: Vec<String> = s.chars().map(String::from).collect();
            let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(stream(&pieces), want, "{s:?} char by char");
        }
    }

    #[test]
    fn releases_words_at_whitespace() {
        let mut r = StreamRedactor::new();
        assert_eq!(r.push("Hello"), "");
        assert_eq!(r.push(" wor"), "Hello ");
        assert_eq!(r.push("ld 你好"), "world 你好");
        assert_eq!(r.push(" me@x.io"), " ");
        assert_eq!(r.finish(), "[EMAIL]");
    }

    #[test]
    fn hold_back_is_bounded() {
        let mut r = StreamRedactor::new();
        let long = "a".repeat(MAX_HOLD + 1);
        assert_eq!(r.push(&long), long);
        assert_eq!(r.finish(), "");
    }
}
