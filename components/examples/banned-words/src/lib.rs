//! # banned-words: the smallest useful Wasmgate guard
//!
//! A teaching example. It blocks requests and answers that contain a word
//! from a configured list, and shows the three things every guard does:
//!
//! 1. `info` tells the host who we are and whether we filter output;
//! 2. `check-input` looks at the request before it reaches the model;
//! 3. an `output-filter` resource watches the answer while it streams.
//!
//! Configuration (the `[config]` table of `banned-words.toml`):
//!
//! ```toml
//! [config]
//! words = "forbidden-fruit, secret project"  # comma-separated, case-insensitive
//! scope = "both"                             # "input", "output" or "both"
//! ```
//!
//! Matching is a plain case-insensitive substring search: "fruit" also
//! matches "grapefruit". Real guards would want word boundaries.
//!
//! Every call runs in a fresh instance, so there is no global state: we just
//! read the configuration again in each call (it is cheap).

use std::cell::RefCell;

// Generate Rust bindings for the `guard-component` world of the WIT package.
// This creates the `exports::…::guard::Guest` trait (functions we export),
// the `GuestOutputFilter` trait (the resource) and the imported
// `wasmgate::llm::config` and `log` modules.
wit_bindgen::generate!({ path: "../../../wit", world: "guard-component" });

use exports::wasmgate::llm::guard::{
    ChatRequest, ComponentInfo, Filtered, Guest, GuestOutputFilter, Verdict,
};
use wasmgate::llm::config;
use wasmgate::llm::types::{Block, Role};

/// Used when `words` is not configured.
const DEFAULT_WORDS: &[&str] = &["forbidden-fruit"];

/// Where the guard applies (`scope` in the config).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Input,
    Output,
    Both,
}

impl Scope {
    fn parse(s: Option<&str>) -> Scope {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("input") => Scope::Input,
            Some("output") => Scope::Output,
            _ => Scope::Both,
        }
    }
    fn input(self) -> bool {
        self != Scope::Output
    }
    fn output(self) -> bool {
        self != Scope::Input
    }
}

/// Splits the comma-separated list; words are trimmed and lower-cased.
fn parse_words(list: Option<&str>) -> Vec<String> {
    match list {
        Some(list) => list
            .split(',')
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect(),
        None => DEFAULT_WORDS.iter().map(|w| w.to_string()).collect(),
    }
}

/// The first banned word contained in `text`, if any (case-insensitive).
fn find_banned<'w>(text: &str, words: &'w [String]) -> Option<&'w str> {
    let text = text.to_lowercase();
    words
        .iter()
        .find(|w| text.contains(w.as_str()))
        .map(String::as_str)
}

/// Reads the configuration through the host's `config` import.
fn load_config() -> (Vec<String>, Scope) {
    let words = parse_words(config::get("words").as_deref());
    let scope = Scope::parse(config::get("scope").as_deref());
    (words, scope)
}

fn block(word: &str) -> Block {
    Block {
        category: "banned-word".to_string(),
        reason: format!("The text contains the banned word \"{word}\"."),
        score: 1.0,
    }
}

/// The streaming part, kept free of host calls so it is easy to follow.
///
/// A banned word may arrive split over two deltas ("forbid" + "den-fruit"),
/// so we hold back the last `longest word - 1` bytes: they could be the
/// start of a word that the next delta completes. Everything before that
/// can be released once it has been checked.
struct Watcher {
    words: Vec<String>,
    /// Text received but not yet emitted.
    held: String,
    /// How many trailing bytes to keep back.
    hold: usize,
}

impl Watcher {
    fn new(words: Vec<String>) -> Watcher {
        let hold = words
            .iter()
            .map(|w| w.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        Watcher {
            words,
            held: String::new(),
            hold,
        }
    }

    /// Returns the text that is safe to send, or the banned word found.
    fn push(&mut self, delta: &str) -> Result<String, String> {
        self.held.push_str(delta);
        if let Some(word) = find_banned(&self.held, &self.words) {
            return Err(word.to_string());
        }
        // Release all but the last `hold` bytes, cutting at a char boundary.
        let mut cut = self.held.len().saturating_sub(self.hold);
        while !self.held.is_char_boundary(cut) {
            cut -= 1;
        }
        Ok(self.held.drain(..cut).collect())
    }

    /// The stream ended: whatever is held was already checked.
    fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The type the `export!` macro below exports.
struct BannedWords;

impl Guest for BannedWords {
    /// Our output filter type (the `output-filter` resource of the WIT).
    type OutputFilter = OutputFilter;

    fn info() -> ComponentInfo {
        let (_, scope) = load_config();
        ComponentInfo {
            name: "banned-words".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Blocks text containing configured words.".to_string(),
            // When false, the host never creates an output filter.
            filters_output: scope.output(),
        }
    }

    fn check_input(req: ChatRequest) -> Verdict {
        let (words, scope) = load_config();
        if !scope.input() {
            return Verdict::Allow;
        }
        for message in req.messages.iter().filter(|m| m.role == Role::User) {
            if let Some(word) = find_banned(&message.content, &words) {
                return Verdict::Block(block(word));
            }
        }
        Verdict::Allow
    }
}

/// One per response stream. The WIT methods take `&self`, so the mutable
/// state lives in a `RefCell`.
struct OutputFilter {
    watcher: RefCell<Watcher>,
    active: bool,
}

impl GuestOutputFilter for OutputFilter {
    fn new(_req: ChatRequest) -> Self {
        let (words, scope) = load_config();
        OutputFilter {
            watcher: RefCell::new(Watcher::new(words)),
            active: scope.output(),
        }
    }

    fn push(&self, delta: String) -> Filtered {
        if !self.active {
            return Filtered::Emit(delta);
        }
        match self.watcher.borrow_mut().push(&delta) {
            Ok(text) => Filtered::Emit(text),
            Err(word) => Filtered::Block(block(&word)),
        }
    }

    fn finish(&self) -> Filtered {
        Filtered::Emit(self.watcher.borrow_mut().finish())
    }
}

export!(BannedWords);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config() {
        assert_eq!(parse_words(None), ["forbidden-fruit"]);
        assert_eq!(parse_words(Some(" Foo, ,BAR baz ")), ["foo", "bar baz"]);
        assert_eq!(Scope::parse(Some("Output")), Scope::Output);
        assert_eq!(Scope::parse(None), Scope::Both);
    }

    #[test]
    fn finds_words_split_across_pushes() {
        let mut w = Watcher::new(parse_words(None));
        let out = w.push("I ate the forbid").unwrap();
        assert!("I ate the forbid".starts_with(&out));
        assert_eq!(w.push("DEN-Fruit!"), Err("forbidden-fruit".to_string()));
    }

    #[test]
    fn releases_everything_that_was_clean() {
        let mut w = Watcher::new(parse_words(Some("abc")));
        let mut out = w.push("héllo wörld").unwrap();
        out += &w.push(" ok").unwrap();
        out += &w.finish();
        assert_eq!(out, "héllo wörld ok");
    }
}
