//! PII and secret redaction, for input rewrites and the output filter.
//!
//! Kinds (each can be switched off, see [`Kinds`] and `docs/guards.md`):
//! e-mail addresses `[EMAIL]`; phone numbers `[PHONE]` (CN mobile, E.164,
//! common national formats); mainland China resident IDs `[CN_ID]` (18
//! characters with a valid checksum and birth date); bank cards `[CARD]`
//! (13-19 digits, Luhn); IPv4 addresses `[IP]`; API keys and tokens
//! `[SECRET]` (`sk-…`, `AKIA…`/`ASIA…`, `ghp_…`/`github_pat_…`, and the token
//! after `Bearer `, which is kept).
//!
//! Everything that can be part of a match is ASCII, so the scanners work on
//! bytes; boundaries only look at ASCII letters and digits, so
//! `电话13800138000` is redacted while `abc13800138000` is not.
//!
//! Streaming: [`StreamRedactor`] emits the longest prefix that no later text
//! can change. A match can only contain "match characters" (ASCII letters,
//! digits and `._%+-@()/=~`), single spaces between digit groups, and the
//! one space after `Bearer`, so the filter holds back the trailing run of
//! those and emits the rest, redacted. Every decision of [`redact`] near a cut
//! only looks at characters on the same side of it (a left boundary only
//! rejects match characters), so the emitted pieces always concatenate to
//! `redact(whole text)`, however the text was chunked (tested below).

/// Replacement for an e-mail address.
pub const EMAIL: &str = "[EMAIL]";
/// Replacement for a phone number.
pub const PHONE: &str = "[PHONE]";
/// Replacement for a mainland China resident ID number.
pub const CN_ID: &str = "[CN_ID]";
/// Replacement for a bank card number.
pub const CARD: &str = "[CARD]";
/// Replacement for an IPv4 address.
pub const IP: &str = "[IP]";
/// Replacement for an API key or token.
pub const SECRET: &str = "[SECRET]";
/// Longest run held back while streaming; a longer one is flushed as it is.
pub const MAX_HOLD: usize = 256;

/// Which kinds of PII to redact (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub const EMAIL: Kinds = Kinds(1);
    pub const PHONE: Kinds = Kinds(2);
    pub const CN_ID: Kinds = Kinds(4);
    pub const CARD: Kinds = Kinds(8);
    pub const IPV4: Kinds = Kinds(16);
    pub const API_KEY: Kinds = Kinds(32);
    pub const ALL: Kinds = Kinds(63);
    pub const NONE: Kinds = Kinds(0);

    /// The config key of each kind (`pii.email = "off"` switches it off).
    pub const KEYS: [(&'static str, Kinds); 6] = [
        ("pii.email", Kinds::EMAIL),
        ("pii.phone", Kinds::PHONE),
        ("pii.cn_id", Kinds::CN_ID),
        ("pii.card", Kinds::CARD),
        ("pii.ipv4", Kinds::IPV4),
        ("pii.api_key", Kinds::API_KEY),
    ];

    pub fn has(self, k: Kinds) -> bool {
        self.0 & k.0 == k.0
    }

    pub fn with(self, k: Kinds, on: bool) -> Kinds {
        if on {
            Kinds(self.0 | k.0)
        } else {
            Kinds(self.0 & !k.0)
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// All kinds, minus those whose key `get` says is off
    /// (`off`, `false`, `no` or `0`).
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Kinds {
        Kinds::KEYS.iter().fold(Kinds::ALL, |acc, &(key, k)| {
            acc.with(k, get(key).is_none_or(|v| is_on(&v)))
        })
    }
}

/// Reads a config switch: anything but `off`/`false`/`no`/`0` is on.
pub fn is_on(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "off" | "false" | "no" | "0"
    )
}

/// Characters that may belong to a match.
fn is_match_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-@()/=~".contains(&c)
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// Redacts every kind of PII in `text`.
pub fn redact(text: &str) -> String {
    redact_with(text, Kinds::ALL)
}

/// Redacts the `kinds` of PII in `text`.
pub fn redact_with(text: &str, kinds: Kinds) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    if kinds.is_empty() {
        out.push_str(text);
        return out;
    }
    // Spans found by scanning for text (e-mails, keys), sorted and disjoint.
    let mut spans: Vec<(usize, usize, &'static str)> = Vec::new();
    if kinds.has(Kinds::EMAIL) {
        spans.extend(find_emails(b).into_iter().map(|(s, e)| (s, e, EMAIL)));
    }
    if kinds.has(Kinds::API_KEY) {
        let keys = find_secrets(b);
        if !keys.is_empty() {
            spans.extend(keys.into_iter().map(|(s, e)| (s, e, SECRET)));
            spans.sort_unstable_by_key(|s| s.0);
            let mut end = 0;
            spans.retain(|s| {
                let keep = s.0 >= end;
                if keep {
                    end = s.1;
                }
                keep
            });
        }
    }
    let mut copied = 0;
    let mut from = 0;
    let put = |out: &mut String, copied: &mut usize, s: usize, e: usize, what: &str| {
        out.push_str(&text[*copied..s]);
        out.push_str(what);
        *copied = e;
    };
    for &(s, e, what) in spans.iter().chain(std::iter::once(&(b.len(), b.len(), ""))) {
        // Numbers between the previous span and this one.
        let mut i = from;
        while i < s {
            let c = b[i];
            if !(c.is_ascii_digit() || c == b'+' || c == b'(') || !can_start_number(b, i) {
                i += 1;
                continue;
            }
            if b[i].is_ascii_digit() {
                let found = if kinds.has(Kinds::IPV4) {
                    parse_ipv4(b, i, s).map(|e| (e, IP))
                } else {
                    None
                }
                .or_else(|| {
                    kinds
                        .has(Kinds::CN_ID)
                        .then(|| parse_cn_id(b, i, s))
                        .flatten()
                        .map(|e| (e, CN_ID))
                })
                .or_else(|| {
                    kinds
                        .has(Kinds::CARD)
                        .then(|| parse_card(b, i, s))
                        .flatten()
                        .map(|e| (e, CARD))
                });
                if let Some((end, what)) = found {
                    put(&mut out, &mut copied, i, end, what);
                    i = end;
                    continue;
                }
            }
            let (end, valid) = parse_phone(b, i, s);
            if valid
                && kinds.has(Kinds::PHONE)
                && b.get(end)
                    .is_none_or(|&c| !c.is_ascii_alphanumeric() && c != b'@')
            {
                put(&mut out, &mut copied, i, end, PHONE);
            }
            // Never restart inside a rejected run (e.g. a long digit string).
            i = end.max(i + 1);
        }
        if s < b.len() {
            put(&mut out, &mut copied, s, e, what);
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

fn can_start_number(b: &[u8], i: usize) -> bool {
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

/// Whether a number ending at `end` stands alone (no letter, digit or `@` next).
fn ends_clean(b: &[u8], end: usize) -> bool {
    b.get(end)
        .is_none_or(|&c| !c.is_ascii_alphanumeric() && c != b'@')
}

/// An IPv4 address `a.b.c.d` (each 0-255) starting at `i`; returns its end.
fn parse_ipv4(b: &[u8], i: usize, lim: usize) -> Option<usize> {
    let mut p = i;
    for k in 0..4 {
        if k > 0 {
            if p >= lim || b[p] != b'.' {
                return None;
            }
            p += 1;
        }
        let e = digits_end(b, p, lim);
        if !(1..=3).contains(&(e - p)) {
            return None;
        }
        let v: u32 = b[p..e].iter().fold(0, |v, &d| v * 10 + (d - b'0') as u32);
        if v > 255 {
            return None;
        }
        p = e;
    }
    // Not part of a longer dotted number (`1.2.3.4.5`) or a word.
    let more = b.get(p) == Some(&b'.') && b.get(p + 1).is_some_and(u8::is_ascii_digit);
    (ends_clean(b, p) && !more).then_some(p)
}

/// A mainland China resident ID (17 digits and a check digit or `X`, with a
/// plausible birth date) starting at `i`; returns its end.
fn parse_cn_id(b: &[u8], i: usize, lim: usize) -> Option<usize> {
    let end = i + 18;
    if end > lim || digits_end(b, i, i + 17) != i + 17 {
        return None;
    }
    let last = b[i + 17];
    if !(last.is_ascii_digit() || last == b'X' || last == b'x') || !ends_clean(b, end) {
        return None;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = (0..17).map(|k| (b[i + k] - b'0') as u32 * W[k]).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    let num = |a: usize, n: usize| -> u32 {
        b[i + a..i + a + n]
            .iter()
            .fold(0, |v, &d| v * 10 + (d - b'0') as u32)
    };
    let (year, month, day) = (num(6, 4), num(10, 2), num(12, 2));
    let date_ok =
        (1900..=2099).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
    (last.to_ascii_uppercase() == check && date_ok).then_some(end)
}

/// A bank card number (13-19 digits, whole or in groups of 3-6 split by one
/// consistent space or dash, first group of 4, Luhn-valid) starting at `i`.
fn parse_card(b: &[u8], i: usize, lim: usize) -> Option<usize> {
    let mut groups: Vec<(usize, usize)> = Vec::with_capacity(6);
    let e = digits_end(b, i, lim);
    groups.push((i, e));
    let mut p = e;
    let mut sep: Option<u8> = None;
    while p + 1 < lim && matches!(b[p], b' ' | b'-') && b[p + 1].is_ascii_digit() {
        if sep.is_some_and(|s| s != b[p]) {
            break;
        }
        sep = Some(b[p]);
        let e = digits_end(b, p + 1, lim);
        groups.push((p + 1, e));
        p = e;
        if groups.len() > 6 {
            return None;
        }
    }
    let digits: usize = groups.iter().map(|g| g.1 - g.0).sum();
    if !(13..=19).contains(&digits) || !ends_clean(b, p) {
        return None;
    }
    if groups.len() > 1
        && (groups[0].1 - groups[0].0 != 4
            || groups.iter().any(|g| !(3..=6).contains(&(g.1 - g.0))))
    {
        return None;
    }
    let ds = groups
        .iter()
        .flat_map(|&(s, e)| b[s..e].iter().map(|d| (d - b'0') as u32));
    let all: Vec<u32> = ds.collect();
    if all.iter().all(|&d| d == all[0]) {
        return None;
    }
    let sum: u32 = all
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            if k % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10).then_some(p)
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

fn run_end(b: &[u8], mut i: usize, ok: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && ok(b[i]) {
        i += 1;
    }
    i
}

fn has_digit_and_letter(t: &[u8]) -> bool {
    t.iter().any(u8::is_ascii_digit) && t.iter().any(u8::is_ascii_alphabetic)
}

/// Whether `b[i..]` starts with `word`, ignoring ASCII case.
fn starts_with_ci(b: &[u8], i: usize, word: &[u8]) -> bool {
    b.len() >= i + word.len() && b[i..i + word.len()].eq_ignore_ascii_case(word)
}

/// API keys and tokens: `(start, end)` of each, left to right.
fn find_secrets(b: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !matches!(c, b's' | b'A' | b'g' | b'b' | b'B') || (i > 0 && is_key_char(b[i - 1])) {
            i += 1;
            continue;
        }
        let span = if c == b's' && b[i..].starts_with(b"sk-") {
            // OpenAI / Anthropic style: sk-…, sk-proj-…, sk-ant-api03-…
            let e = run_end(b, i + 3, is_key_char);
            (e - i - 3 >= 20 && has_digit_and_letter(&b[i + 3..e])).then_some((i, e))
        } else if c == b'A' && (b[i..].starts_with(b"AKIA") || b[i..].starts_with(b"ASIA")) {
            // AWS access key id: 4 + 16 upper-case letters or digits.
            let e = run_end(b, i + 4, |c| c.is_ascii_uppercase() || c.is_ascii_digit());
            (e - i == 20 && b.get(e).is_none_or(|c| !c.is_ascii_alphanumeric())).then_some((i, e))
        } else if c == b'g' && (b[i..].starts_with(b"github_pat_") || is_gh_prefix(&b[i..])) {
            let e = run_end(b, i, is_key_char);
            (e - i >= 36).then_some((i, e))
        } else if matches!(c, b'b' | b'B') && starts_with_ci(b, i, b"bearer ") {
            // `Bearer <token>`: the token goes, the word stays.
            let t = i + 7;
            let mut e = run_end(b, t, is_token_char);
            e = run_end(b, e, |c| c == b'=');
            (e - t >= 16 && has_digit_and_letter(&b[t..e]) && ends_clean(b, e)).then_some((t, e))
        } else {
            None
        };
        match span {
            Some((s, e)) => {
                spans.push((s, e));
                i = e;
            }
            None => i += 1,
        }
    }
    spans
}

/// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` (GitHub tokens).
fn is_gh_prefix(b: &[u8]) -> bool {
    b.len() >= 4 && b[0] == b'g' && b[1] == b'h' && b"pousr".contains(&b[2]) && b[3] == b'_'
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
        // The space after `Bearer` (a token may follow).
        if c == b' '
            && i >= 7
            && b[i - 7..i - 1].eq_ignore_ascii_case(b"bearer")
            && (i == 7 || !is_key_char(b[i - 8]))
            && b.get(i).is_none_or(|&r| is_token_char(r))
        {
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
#[derive(Debug)]
pub struct StreamRedactor {
    buf: String,
    kinds: Kinds,
}

impl Default for StreamRedactor {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamRedactor {
    /// Redacts every kind.
    pub fn new() -> Self {
        Self::with_kinds(Kinds::ALL)
    }

    /// Redacts the given kinds (none: text passes straight through).
    pub fn with_kinds(kinds: Kinds) -> Self {
        StreamRedactor {
            buf: String::new(),
            kinds,
        }
    }

    /// Adds a delta; returns the redacted text that is now final (maybe "").
    pub fn push(&mut self, delta: &str) -> String {
        if self.kinds.is_empty() {
            return delta.to_string();
        }
        self.buf.push_str(delta);
        let mut cut = held_start(self.buf.as_bytes());
        if self.buf.len() - cut > MAX_HOLD {
            cut = self.buf.len();
        }
        if cut == 0 {
            return String::new();
        }
        let out = redact_with(&self.buf[..cut], self.kinds);
        self.buf.drain(..cut);
        out
    }

    /// The stream ended: returns the rest, redacted.
    pub fn finish(&mut self) -> String {
        let out = redact_with(&self.buf, self.kinds);
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
            ("card 4111 1111 1111 1111.", "card [CARD]."),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            ("卡号4111111111111111。", "卡号[CARD]。"),
            ("amex 3782 822463 10005", "amex [CARD]"),
            ("ip 192.168.1.100 and v1.2.3", "ip [IP] and v1.2.3"),
            ("http://10.0.0.1:8080/x", "http://[IP]:8080/x"),
            ("身份证11010519491231002X，", "身份证[CN_ID]，"),
            ("id 110105198001010016 ok", "id [CN_ID] ok"),
            ("key sk-proj-abc123DEF456ghi789JKL0 ok", "key [SECRET] ok"),
            ("sk-ant-api03-AAAAbbbb1111cccc2222dddd", "[SECRET]"),
            ("AKIAIOSFODNN7EXAMPLE,", "[SECRET],"),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.abc-_x=",
                "Authorization: Bearer [SECRET]",
            ),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[SECRET]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
        for keep in [
            "in 2023 and 2024",
            "from 1990-2000",
            "on 2024-01-15 at 12:30",
            "it costs 10 000 000 or 1,000,000",
            "v1.2.3.4 and 1.2.3.4.5 and 256.1.1.1",
            "card 4111 1111 1111 1112",
            "0000 0000 0000 0000",
            "id 110105198001010017 (bad checksum)",
            "sk-short and sk-learn and task-abc123def456ghi789jkl0mno",
            "Bearer authentication and bearer tokenstokenstokens",
            "AKIAIOSFODNN7EXAMPLEX",
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
        "卡 4111-1111-1111-1111，身份证 11010519491231002X 与 110105198001010016。",
        "ips 10.0.0.1, 192.168.1.254:80 and 1.2.3.4.5 end",
        "key=sk-proj-abc123DEF456ghi789JKL0 and AKIAIOSFODNN7EXAMPLE done",
        "curl -H 'Authorization: Bearer abcDEF123456ghiJKL789=' https://x.io/",
        "tok ghp_abcdefghijklmnopqrstuvwxyz0123456789 and Bearer short ok",
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
    fn kinds_switch_off() {
        let s = "a@b.io, 13800138000, 4111111111111111, 10.0.0.1, sk-abc123DEF456ghi789JKL0";
        assert_eq!(
            redact_with(s, Kinds::ALL),
            "[EMAIL], [PHONE], [CARD], [IP], [SECRET]"
        );
        assert_eq!(redact_with(s, Kinds::NONE), s);
        let k = Kinds::ALL
            .with(Kinds::EMAIL, false)
            .with(Kinds::IPV4, false);
        assert_eq!(
            redact_with(s, k),
            "a@b.io, [PHONE], [CARD], 10.0.0.1, [SECRET]"
        );
        let k = Kinds::from_config(|key| (key == "pii.card").then(|| "off".to_string()));
        assert!(!k.has(Kinds::CARD) && k.has(Kinds::EMAIL));
        let mut r = StreamRedactor::with_kinds(Kinds::NONE);
        assert_eq!(r.push("a@b.io"), "a@b.io");
        assert_eq!(r.finish(), "");
    }

    #[test]
    fn streaming_every_kind_split_everywhere_with_each_kind_alone() {
        for &(_, k) in &Kinds::KEYS {
            for s in SAMPLES {
                let want = redact_with(s, k);
                for i in boundaries(s) {
                    let mut r = StreamRedactor::with_kinds(k);
                    let mut got = r.push(&s[..i]);
                    got.push_str(&r.push(&s[i..]));
                    got.push_str(&r.finish());
                    assert_eq!(got, want, "{s:?} split at {i} with {k:?}");
                }
            }
        }
    }

    #[test]
    fn hold_back_is_bounded() {
        let mut r = StreamRedactor::new();
        let long = "a".repeat(MAX_HOLD + 1);
        assert_eq!(r.push(&long), long);
        assert_eq!(r.finish(), "");
    }
}
