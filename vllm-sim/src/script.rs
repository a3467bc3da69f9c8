//! Scripted replies (`--script FILE`): fixed answers chosen by substring
//! rules, so tests of an agent's tool loop get predictable model output.
//!
//! The file is a JSON array of rules, read once at start:
//!
//! ```json
//! [
//!   {"match": "weather in Paris", "reply": "<tool_call>...</tool_call>", "role": "user"},
//!   {"match": "\"temp\":", "reply": "It is sunny.", "role": "tool", "repeat": false},
//!   {"match": "You are a pirate", "reply": "Arr.", "match_any_message": true}
//! ]
//! ```
//!
//! For each request the first rule that applies wins. A rule applies when its
//! `role` filter (`"user"`, `"tool"` or `"any"`, the default) accepts the role
//! of the request's last message and `match` is a substring of the last
//! message's text — or, with `"match_any_message": true`, of any message's
//! text. A rule with `"repeat": false` answers one request and is then skipped.
//! An empty `match` matches everything (a catch-all). A once-only rule is used
//! up when a request is planned with it, whatever happens to that request
//! afterwards (injected failure, client disconnect).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use serde_json::Value;

/// Which role the last message must have for a rule to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleFilter {
    User,
    Tool,
    #[default]
    Any,
}

impl RoleFilter {
    fn accepts(self, role: &str) -> bool {
        match self {
            Self::Any => true,
            Self::User => role == "user",
            Self::Tool => role == "tool",
        }
    }
}

fn yes() -> bool {
    true
}

/// One rule of the script file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub reply: String,
    #[serde(default)]
    pub role: RoleFilter,
    #[serde(default = "yes")]
    pub repeat: bool,
    #[serde(default)]
    pub match_any_message: bool,
}

/// One message of a chat request, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    /// The `content` string, or its text parts joined by newlines.
    pub text: String,
}

/// Why a script file was refused.
#[derive(Debug)]
pub struct ScriptError {
    path: String,
    problem: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid script file {}: {}", self.path, self.problem)
    }
}

impl std::error::Error for ScriptError {}

/// The loaded rules, with the used-up state of the once-only ones.
#[derive(Debug)]
pub struct Script {
    rules: Vec<Rule>,
    used: Vec<AtomicBool>,
}

impl Script {
    /// Reads and checks a script file.
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let err = |problem: String| ScriptError {
            path: path.display().to_string(),
            problem,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses the text of a script file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Array(items) = value else {
            return Err(format!(
                "expected a JSON array of rules, found {}",
                kind(&value)
            ));
        };
        let rules = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                if !item.is_object() {
                    return Err(format!(
                        "rules[{i}]: expected an object, found {}",
                        kind(&item)
                    ));
                }
                serde_json::from_value::<Rule>(item).map_err(|e| format!("rules[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(rules))
    }

    pub fn new(rules: Vec<Rule>) -> Self {
        let used = rules.iter().map(|_| AtomicBool::new(false)).collect();
        Self { rules, used }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The reply of the first rule that applies to `messages`, using up a
    /// once-only rule. `None` when no rule applies.
    pub fn reply(&self, messages: &[Message]) -> Option<&str> {
        let last = messages.last();
        let last_role = last.map_or("", |m| m.role.as_str());
        let last_text = last.map_or("", |m| m.text.as_str());
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.role.accepts(last_role) {
                continue;
            }
            let hit = if rule.match_any_message {
                messages.iter().any(|m| m.text.contains(&rule.pattern))
            } else {
                last.is_some() && last_text.contains(&rule.pattern)
            };
            if !hit {
                continue;
            }
            // `swap` so that two concurrent requests cannot both take it.
            if !rule.repeat && self.used[i].swap(true, Ordering::AcqRel) {
                continue;
            }
            tracing::debug!(rule = i, pattern = %rule.pattern, "scripted reply");
            return Some(&rule.reply);
        }
        None
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> Message {
        Message {
            role: role.into(),
            text: text.into(),
        }
    }

    fn script(json: &str) -> Script {
        Script::parse(json).expect("valid script")
    }

    #[test]
    fn defaults() {
        let s = script(r#"[{"match": "a", "reply": "b"}]"#);
        let r = &s.rules[0];
        assert_eq!((r.pattern.as_str(), r.reply.as_str()), ("a", "b"));
        assert_eq!(r.role, RoleFilter::Any);
        assert!(r.repeat);
        assert!(!r.match_any_message);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn first_matching_rule_on_last_message_wins() {
        let s = script(
            r#"[
                {"match": "weather", "reply": "W1"},
                {"match": "weather in Paris", "reply": "W2"},
                {"match": "Paris", "reply": "P"}
            ]"#,
        );
        let convo = [msg("system", "sys"), msg("user", "the weather in Paris?")];
        assert_eq!(s.reply(&convo), Some("W1"));
        assert_eq!(s.reply(&[msg("user", "Paris, then")]), Some("P"));
        // Only the last message counts.
        let convo = [msg("user", "weather?"), msg("assistant", "sunny")];
        assert_eq!(s.reply(&convo), None);
        // Case-sensitive substring.
        assert_eq!(s.reply(&[msg("user", "WEATHER")]), None);
        assert_eq!(s.reply(&[]), None);
    }

    #[test]
    fn role_filter_applies_to_the_last_message() {
        let s = script(
            r#"[
                {"match": "42", "reply": "from tool", "role": "tool"},
                {"match": "42", "reply": "from user", "role": "user"},
                {"match": "42", "reply": "from anyone"}
            ]"#,
        );
        assert_eq!(s.reply(&[msg("tool", "result: 42")]), Some("from tool"));
        assert_eq!(s.reply(&[msg("user", "is it 42?")]), Some("from user"));
        assert_eq!(s.reply(&[msg("assistant", "42")]), Some("from anyone"));
        assert_eq!(s.reply(&[msg("system", "42")]), Some("from anyone"));
    }

    #[test]
    fn once_only_rule_is_used_up() {
        let s = script(
            r#"[
                {"match": "go", "reply": "first", "repeat": false},
                {"match": "go", "reply": "again"}
            ]"#,
        );
        let convo = [msg("user", "go")];
        assert_eq!(s.reply(&convo), Some("first"));
        assert_eq!(s.reply(&convo), Some("again"));
        assert_eq!(s.reply(&convo), Some("again"));
    }

    #[test]
    fn non_matching_request_does_not_use_up_a_rule() {
        let s = script(r#"[{"match": "go", "reply": "once", "repeat": false}]"#);
        assert_eq!(s.reply(&[msg("user", "stop")]), None);
        assert_eq!(s.reply(&[msg("tool", "go")]), Some("once"));
        assert_eq!(s.reply(&[msg("tool", "go")]), None);
    }

    #[test]
    fn match_any_message() {
        let s = script(
            r#"[
                {"match": "pirate", "reply": "Arr.", "match_any_message": true, "role": "user"},
                {"match": "pirate", "reply": "last only"}
            ]"#,
        );
        let convo = [msg("system", "You are a pirate."), msg("user", "hello")];
        assert_eq!(s.reply(&convo), Some("Arr."));
        // The role filter still looks at the last message.
        let convo = [msg("system", "You are a pirate."), msg("tool", "{}")];
        assert_eq!(s.reply(&convo), None);
        assert_eq!(s.reply(&[msg("tool", "pirate")]), Some("last only"));
    }

    #[test]
    fn empty_match_is_a_catch_all() {
        let s = script(r#"[{"match": "x", "reply": "X"}, {"match": "", "reply": "default"}]"#);
        assert_eq!(s.reply(&[msg("user", "x")]), Some("X"));
        assert_eq!(s.reply(&[msg("user", "")]), Some("default"));
        assert_eq!(s.reply(&[]), None);
    }

    #[test]
    fn empty_array_never_matches() {
        assert_eq!(script("[]").reply(&[msg("user", "hi")]), None);
    }

    #[test]
    fn invalid_files_say_what_is_wrong() {
        let cases = [
            ("", "not JSON: EOF while parsing a value at line 1 column 0"),
            (
                r#"{"match": "a"}"#,
                "expected a JSON array of rules, found an object",
            ),
            ("[1]", "rules[0]: expected an object, found a number"),
            (
                r#"[{"match": "a", "reply": "b"}, {"match": "a"}]"#,
                "rules[1]: missing field `reply`",
            ),
            (
                r#"[{"match": "a", "reply": "b", "role": "assistant"}]"#,
                "rules[0]: unknown variant `assistant`, expected one of `user`, `tool`, `any`",
            ),
            (
                r#"[{"match": "a", "reply": "b", "repeats": false}]"#,
                "rules[0]: unknown field `repeats`",
            ),
            (
                r#"[{"match": 1, "reply": "b"}]"#,
                "rules[0]: invalid type: integer `1`, expected a string",
            ),
        ];
        for (text, want) in cases {
            let got = Script::parse(text).expect_err(text);
            assert!(got.starts_with(want), "{text}: {got}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("vllm-sim-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.json");
        let got = Script::load(&missing)
            .expect_err("missing file")
            .to_string();
        assert!(
            got.starts_with(&format!(
                "invalid script file {}: cannot read it:",
                missing.display()
            )),
            "{got}"
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"[{"reply": "b"}]"#).expect("write");
        let got = Script::load(&bad).expect_err("bad file").to_string();
        assert_eq!(
            got,
            format!(
                "invalid script file {}: rules[0]: missing field `match`",
                bad.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
