//! A deterministic toy tokenizer.
//!
//! It is not a BPE tokenizer, but it splits text in roughly the places a real
//! one does, so that words, e-mail addresses and numbers are spread over
//! several streamed chunks. A token is one of:
//!
//! * a run of at most 6 ASCII letters, optionally preceded by one space;
//! * a run of at most 3 ASCII digits, optionally preceded by one space;
//! * a run of whitespace (newlines included); a trailing space that directly
//!   precedes a letter or digit is left for the next token;
//! * any other single character (ASCII punctuation/symbol, CJK, emoji, …).
//!
//! Concatenating the tokens always gives back the input exactly.

/// Longest run of ASCII letters in one token.
const MAX_LETTERS: usize = 6;
/// Longest run of ASCII digits in one token.
const MAX_DIGITS: usize = 3;

/// Splits `text` into tokens; every token is a non-empty slice of `text`.
pub fn tokenize(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let next_is_alnum = bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric);
        if (b == b' ' && next_is_alnum) || b.is_ascii_alphanumeric() {
            if b == b' ' {
                i += 1;
            }
            let (class, max): (fn(&u8) -> bool, usize) = if bytes[i].is_ascii_alphabetic() {
                (u8::is_ascii_alphabetic, MAX_LETTERS)
            } else {
                (u8::is_ascii_digit, MAX_DIGITS)
            };
            let run_start = i;
            while i < bytes.len() && i - run_start < max && class(&bytes[i]) {
                i += 1;
            }
        } else if let Some(c) = text[i..].chars().next() {
            if c.is_whitespace() {
                let mut last_len = 0;
                let mut count = 0;
                for ch in text[i..].chars() {
                    if !ch.is_whitespace() {
                        break;
                    }
                    last_len = ch.len_utf8();
                    i += last_len;
                    count += 1;
                }
                // Leave " " for a following word or number, like BPE tokenizers do.
                if count > 1
                    && bytes[i - 1] == b' '
                    && bytes.get(i).is_some_and(u8::is_ascii_alphanumeric)
                {
                    i -= last_len;
                }
            } else {
                i += c.len_utf8();
            }
        } else {
            // Unreachable: `i` is always on a char boundary below `len`.
            break;
        }
        tokens.push(&text[start..i]);
    }
    tokens
}

/// Number of tokens in `text`.
pub fn count(text: &str) -> usize {
    tokenize(text).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: &[&str]) {
        let got = tokenize(text);
        assert_eq!(got, want, "tokenize({text:?})");
        assert_eq!(got.concat(), text);
    }

    #[test]
    fn email_splits() {
        check(
            "mail alice.smith@example.com",
            &[
                "mail", " alice", ".", "smith", "@", "exampl", "e", ".", "com",
            ],
        );
    }

    #[test]
    fn numbers_split_in_threes() {
        check("12345", &["123", "45"]);
        check(
            "call 555-0199 now",
            &["call", " 555", "-", "019", "9", " now"],
        );
        check(" 2024", &[" 202", "4"]);
    }

    #[test]
    fn whitespace_runs() {
        check("a  b", &["a", " ", " b"]);
        check("\n\nHello", &["\n\n", "Hello"]);
        check("hi \n x", &["hi", " \n", " x"]);
        check("end.  ", &["end", ".", "  "]);
        check(" ", &[" "]);
        check("a\tb", &["a", "\t", "b"]);
    }

    #[test]
    fn non_ascii_is_one_char_per_token() {
        check("日本語", &["日", "本", "語"]);
        check("café", &["caf", "é"]);
        check("a 🦀!", &["a", " ", "🦀", "!"]);
    }

    #[test]
    fn long_words_and_mixed() {
        check(
            "Internationalization",
            &["Intern", "ationa", "lizati", "on"],
        );
        check("abc123def", &["abc", "123", "def"]);
        check(" x", &[" x"]);
        check("", &[]);
    }

    #[test]
    fn roundtrip_arbitrary() {
        let samples = [
            "Hello, world! My e-mail is bob_99@mail.example.org; call +1 (555) 123-4567.",
            "  leading and trailing  \r\n",
            "Ünïcödé — “quotes” ½ 𝔘",
            "tabs\t\tand   spaces 1 22 333 4444",
        ];
        for s in samples {
            assert_eq!(tokenize(s).concat(), s);
            assert!(tokenize(s).iter().all(|t| !t.is_empty()));
        }
    }
}
