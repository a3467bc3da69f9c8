//! The tool loop, written against a small [`Host`] trait so it runs (and is
//! tested) natively; `component` implements the trait with the WIT imports.
//!
//! Each completion asks the model for one tool call or the final answer
//! ([`crate::protocol`]). A tool call is parsed, run, and appended to the
//! transcript as an `assistant` message (the call) plus a `user` message
//! (`TOOL RESULT <tool>:` and the delimited result); then the loop asks again.
//! The final answer is emitted delta by delta as it arrives, followed by the
//! citation line. A malformed tool call, a repeated call or a spent step
//! budget leads to one last completion that must answer without tools.

use serde_json::json;

use crate::prompt::{
    Conversation, Mode, Msg, Role, TOOL_RESULT_CHARS, ToolInfo, ToolOutput, answer_now,
    system_prompt, tool_result_message, truncate,
};
use crate::protocol::{Start, classify, parse_tool_call};
use crate::sources::Sources;

/// A streamed chunk (mirrors the WIT `chunk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    pub finish_reason: Option<String>,
}

/// A streamed completion.
pub trait Completion {
    /// The next chunk; `None` after the last one.
    fn next_chunk(&mut self) -> Result<Option<Chunk>, String>;
}

/// Log levels the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// What the agent needs from the host.
pub trait Host {
    type Completion: Completion;
    /// Starts a completion over `messages` (the host picks the model).
    fn start(&mut self, messages: Vec<Msg>) -> Result<Self::Completion, String>;
    /// Sends answer text to the client; an error means stop at once.
    fn emit(&mut self, text: &str) -> Result<(), String>;
    /// Reports progress; `json` is an object.
    fn event(&mut self, kind: &str, json: &str);
    /// Runs a granted tool.
    fn call_tool(&mut self, name: &str, arguments: &str) -> Result<String, String>;
    fn log(&mut self, level: Level, message: &str);
}

/// Tunables, from the `[config]` table of the agent's `NAME.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Tool calls before the model must answer (`max_steps`, default 4).
    pub max_steps: u32,
    /// `max_tokens` per completion (default 1024; the host clamps).
    pub max_tokens: u32,
    /// Sampling temperature (default 0.2; the host clamps).
    pub temperature: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_steps: 4,
            max_tokens: 1024,
            temperature: 0.2,
        }
    }
}

impl Settings {
    /// Reads `max_steps`, `max_tokens` and `temperature` through `get`;
    /// missing or unparsable values keep their defaults.
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Settings::default();
        let num = |key: &str| get(key).and_then(|v| v.trim().parse::<f64>().ok());
        Settings {
            max_steps: num("max_steps").map_or(d.max_steps, |v| v.clamp(0.0, 16.0) as u32),
            max_tokens: num("max_tokens").map_or(d.max_tokens, |v| v.clamp(1.0, 1024.0) as u32),
            temperature: num("temperature")
                .filter(|v| v.is_finite())
                .map_or(d.temperature, |v| v.clamp(0.0, 2.0) as f32),
        }
    }
}

/// Host errors that mean a per-run limit was reached.
pub fn is_limit(err: &str) -> bool {
    err.trim_start().starts_with("limit")
}

/// How one completion ended.
#[derive(Debug)]
enum Reply {
    /// The answer was streamed; the upstream finish reason.
    Answer(Option<String>),
    /// A possible tool call, buffered whole.
    Candidate(String),
    /// `emit` failed.
    Abort,
    /// A host limit was reached.
    Limit,
}

/// Why the model must answer without tools.
#[derive(Debug, Clone, Copy)]
enum Force {
    Malformed,
    Repeated,
}

/// Runs the agent over the client's `messages` with the granted `tools`.
/// Returns the finish reason: the answer's (`stop`, or the upstream's, e.g.
/// `length`), `length` when a host limit was hit, `abort` when `emit` failed.
pub fn run<H: Host>(
    host: &mut H,
    messages: &[Msg],
    tools: &[ToolInfo],
    settings: &Settings,
) -> Result<String, String> {
    let conv = Conversation::from_messages(messages);
    let question = conv.question().map(str::to_owned);
    let known: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let tools_on = !tools.is_empty() && settings.max_steps > 0;

    let mut transcript = conv.history.clone();
    let mut sources = Sources::default();
    let mut calls: Vec<String> = Vec::new();
    let mut force: Option<Force> = None;

    loop {
        let steps = calls.len() as u32;
        let mode = if tools_on && steps < settings.max_steps && force.is_none() {
            Mode::Tools
        } else {
            Mode::AnswerOnly
        };
        let mut msgs = vec![Msg::new(
            Role::System,
            system_prompt(tools, &conv.client_system, mode),
        )];
        if force.is_some() {
            msgs.extend(answer_now(transcript.clone()));
        } else {
            msgs.extend(transcript.iter().cloned());
        }
        host.event(
            "status",
            &json!({ "step": if mode == Mode::Tools { "thinking" } else { "answering" } })
                .to_string(),
        );

        let reply = {
            let mut completion = match host.start(msgs) {
                Ok(c) => c,
                Err(e) if is_limit(&e) => return Ok(limit(host, &e)),
                Err(e) => return Err(e),
            };
            stream_reply(host, &mut completion, mode)?
        };

        let text = match reply {
            Reply::Abort => return Ok("abort".to_string()),
            Reply::Limit => return Ok("length".to_string()),
            Reply::Answer(finish) => {
                if let Some(line) = sources.citation_line() {
                    host.event("sources", &json!({ "files": sources.files() }).to_string());
                    if host.emit(&line).is_err() {
                        return Ok("abort".to_string());
                    }
                }
                return Ok(finish.unwrap_or_else(|| "stop".to_string()));
            }
            Reply::Candidate(text) => text,
        };

        let call = match parse_tool_call(&text, &known) {
            Ok(call) => call,
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("malformed tool call ({e}); answering directly"),
                );
                host.event(
                    "status",
                    &json!({ "step": "fallback", "reason": e.to_string() }).to_string(),
                );
                force = Some(Force::Malformed);
                continue;
            }
        };
        let canonical = call.canonical();
        if calls.contains(&canonical) {
            host.log(Level::Info, "repeated tool call; answering directly");
            force = Some(Force::Repeated);
            continue;
        }
        calls.push(canonical.clone());

        let step = if call.tool == "kb-search" {
            "retrieving"
        } else {
            "calling"
        };
        host.event(
            "status",
            &json!({ "step": step, "tool": call.tool }).to_string(),
        );
        let result = host.call_tool(&call.tool, &call.arguments_json());
        if let Err(e) = &result
            && is_limit(e)
        {
            return Ok(limit(host, e));
        }
        let output = ToolOutput::from_call(result);
        match &output {
            ToolOutput::Text(t) if call.tool == "kb-search" => {
                sources.add_result(&truncate(t, TOOL_RESULT_CHARS));
            }
            ToolOutput::Withheld => {
                host.log(
                    Level::Warn,
                    &format!("{} result withheld by a guard", call.tool),
                );
            }
            ToolOutput::Error(e) => {
                host.log(Level::Info, &format!("{} refused: {e}", call.tool));
            }
            ToolOutput::Text(_) => {}
        }
        let more = tools_on && (calls.len() as u32) < settings.max_steps;
        transcript.push(Msg::new(Role::Assistant, canonical));
        transcript.push(tool_result_message(
            &call.tool,
            &output,
            more,
            question.as_deref(),
        ));
    }
}

fn limit<H: Host>(host: &mut H, err: &str) -> String {
    host.log(Level::Info, &format!("stopping: {err}"));
    "length".to_string()
}

/// Reads one completion. In [`Mode::Tools`] the first non-whitespace
/// characters decide: a possible tool call is buffered whole, anything else
/// is streamed. In [`Mode::AnswerOnly`] everything is streamed. Leading
/// whitespace of an answer is dropped.
fn stream_reply<H: Host>(
    host: &mut H,
    completion: &mut H::Completion,
    mode: Mode,
) -> Result<Reply, String> {
    #[derive(PartialEq)]
    enum State {
        Undecided,
        Candidate,
        Streaming,
    }
    let decide = |buf: &str| match mode {
        Mode::Tools => classify(buf),
        Mode::AnswerOnly if buf.trim().is_empty() => Start::Undecided,
        Mode::AnswerOnly => Start::Answer,
    };

    let mut state = State::Undecided;
    let mut buf = String::new();
    let mut finish = None;
    loop {
        let chunk = match completion.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if is_limit(&e) => {
                limit(host, &e);
                return Ok(Reply::Limit);
            }
            Err(e) => return Err(e),
        };
        if chunk.finish_reason.is_some() {
            finish = chunk.finish_reason;
        }
        if chunk.text.is_empty() {
            continue;
        }
        match state {
            State::Streaming => {
                if host.emit(&chunk.text).is_err() {
                    return Ok(Reply::Abort);
                }
            }
            State::Candidate => buf.push_str(&chunk.text),
            State::Undecided => {
                buf.push_str(&chunk.text);
                match decide(&buf) {
                    Start::Undecided => {}
                    Start::ToolCall => state = State::Candidate,
                    Start::Answer => {
                        state = State::Streaming;
                        if mode == Mode::Tools {
                            host.event("status", r#"{"step":"answering"}"#);
                        }
                        if host.emit(buf.trim_start()).is_err() {
                            return Ok(Reply::Abort);
                        }
                        buf.clear();
                    }
                }
            }
        }
    }
    match state {
        State::Candidate => Ok(Reply::Candidate(buf)),
        State::Streaming => Ok(Reply::Answer(finish)),
        // Nothing at all: in tool mode, treat it like a malformed reply.
        State::Undecided if buf.trim().is_empty() && mode == Mode::Tools => {
            Ok(Reply::Candidate(buf))
        }
        State::Undecided => {
            let rest = buf.trim_start();
            if !rest.is_empty() && host.emit(rest).is_err() {
                return Ok(Reply::Abort);
            }
            Ok(Reply::Answer(finish))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::*;

    type Log = Rc<RefCell<Vec<(&'static str, String)>>>;

    /// A scripted host: each completion replies with the next script entry,
    /// one delta per string (`!limit` = a limit error, `!length` = finish
    /// reason `length`); everything is recorded in order.
    #[derive(Default)]
    struct Fake {
        replies: VecDeque<Vec<&'static str>>,
        tool_results: VecDeque<Result<String, String>>,
        start_error: Option<String>,
        emit_fails_after: Option<usize>,
        prompts: Vec<Vec<Msg>>,
        /// ("next", delta), ("emit", text), ("event", "kind json"),
        /// ("call", "name args").
        log: Log,
        emitted: Vec<String>,
    }

    impl Fake {
        fn count(&self, kind: &str) -> usize {
            self.log.borrow().iter().filter(|(k, _)| *k == kind).count()
        }
        fn has(&self, kind: &str, detail: &str) -> bool {
            self.log
                .borrow()
                .iter()
                .any(|(k, d)| *k == kind && d == detail)
        }
    }

    struct Script(VecDeque<Result<Option<Chunk>, String>>, Log);

    impl Completion for Script {
        fn next_chunk(&mut self) -> Result<Option<Chunk>, String> {
            let c = self.0.pop_front().unwrap_or(Ok(None));
            if let Ok(Some(chunk)) = &c
                && !chunk.text.is_empty()
            {
                self.1.borrow_mut().push(("next", chunk.text.clone()));
            }
            c
        }
    }

    impl Host for Fake {
        type Completion = Script;
        fn start(&mut self, messages: Vec<Msg>) -> Result<Script, String> {
            if let Some(e) = self.start_error.clone()
                && !self.prompts.is_empty()
            {
                return Err(e);
            }
            self.prompts.push(messages);
            let deltas = self.replies.pop_front().expect("unexpected completion");
            let mut finish = "stop";
            let mut q = VecDeque::new();
            for d in deltas {
                match d {
                    "!limit" => q.push_back(Err("limit: run deadline".to_string())),
                    "!length" => finish = "length",
                    _ => q.push_back(Ok(Some(Chunk {
                        text: d.to_string(),
                        finish_reason: None,
                    }))),
                }
            }
            q.push_back(Ok(Some(Chunk {
                text: String::new(),
                finish_reason: Some(finish.to_string()),
            })));
            Ok(Script(q, self.log.clone()))
        }
        fn emit(&mut self, text: &str) -> Result<(), String> {
            if self.emit_fails_after == Some(self.emitted.len()) {
                return Err("client gone".into());
            }
            self.log.borrow_mut().push(("emit", text.to_string()));
            self.emitted.push(text.to_string());
            Ok(())
        }
        fn event(&mut self, kind: &str, json: &str) {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(v.is_object());
            self.log
                .borrow_mut()
                .push(("event", format!("{kind} {json}")));
        }
        fn call_tool(&mut self, name: &str, arguments: &str) -> Result<String, String> {
            self.log
                .borrow_mut()
                .push(("call", format!("{name} {arguments}")));
            self.tool_results
                .pop_front()
                .unwrap_or_else(|| Err("no result scripted".into()))
        }
        fn log(&mut self, _level: Level, _message: &str) {}
    }

    fn tools() -> Vec<ToolInfo> {
        ["kb-search", "calculator", "now"]
            .iter()
            .map(|n| ToolInfo {
                name: n.to_string(),
                description: format!("the {n} tool"),
                parameters: "{}".into(),
            })
            .collect()
    }

    fn question() -> Vec<Msg> {
        vec![Msg::new(Role::User, "How do I add a new guard?")]
    }

    const KB: &str = "[1] docs/guards.md — Writing a guard\nBuild a component.\n\n\
                      [2] docs/operations.md — Components folder\nCopy it in.\n";

    fn go(fake: &mut Fake) -> Result<String, String> {
        run(fake, &question(), &tools(), &Settings::default())
    }

    #[test]
    fn search_then_streamed_answer_with_sources() {
        let mut f = Fake {
            replies: [
                vec![
                    "{\"tool\":\"kb-search\",",
                    "\"arguments\":{\"query\":\"add a new guard\"}}",
                ],
                vec!["\n", "To add", " a guard,", " build it."],
            ]
            .into(),
            tool_results: [Ok(KB.to_string())].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");

        // Completion 1: system prompt, then the question as the last message.
        let p1 = &f.prompts[0];
        assert_eq!(p1.len(), 2);
        assert_eq!(p1[0].role, Role::System);
        assert!(p1[0].content.contains("## Tools"));
        assert_eq!(p1[1], Msg::new(Role::User, "How do I add a new guard?"));

        // Completion 2: + the call as assistant + the result as user (last).
        let p2 = &f.prompts[1];
        assert_eq!(p2.len(), 4);
        assert_eq!(
            p2[2],
            Msg::new(
                Role::Assistant,
                r#"{"tool":"kb-search","arguments":{"query":"add a new guard"}}"#
            )
        );
        assert_eq!(p2[3].role, Role::User);
        assert!(
            p2[3]
                .content
                .starts_with("TOOL RESULT kb-search:\n<<<RETRIEVED\n[1] docs/guards.md")
        );

        // Streaming: each delta is emitted right after it is read.
        let trace: Vec<_> = f
            .log
            .borrow()
            .iter()
            .filter(|(k, _)| *k == "next" || *k == "emit")
            .skip(2) // the tool call's two deltas
            .map(|(k, t)| format!("{k}:{t}"))
            .collect();
        assert_eq!(
            trace,
            [
                "next:\n",
                "next:To add",
                "emit:To add",
                "next: a guard,",
                "emit: a guard,",
                "next: build it.",
                "emit: build it.",
                "emit:\n\nSources: docs/guards.md, docs/operations.md",
            ]
        );
        assert!(f.has("call", r#"kb-search {"query":"add a new guard"}"#));
        assert!(f.has(
            "event",
            r#"status {"step":"retrieving","tool":"kb-search"}"#
        ));
    }

    #[test]
    fn direct_answer_without_tools_has_no_sources() {
        let mut f = Fake {
            replies: [vec!["Hello", "!"]].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");
        assert_eq!(f.emitted, ["Hello", "!"]);
        assert_eq!(f.prompts.len(), 1);
    }

    #[test]
    fn malformed_call_falls_back_to_a_streamed_answer() {
        let mut f = Fake {
            replies: [
                vec!["{\"tool\":\"kb-search\",\"query\":\"x\"}"],
                vec!["Direct", " answer"],
            ]
            .into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");
        assert_eq!(f.emitted, ["Direct", " answer"]);
        assert_eq!(f.count("call"), 0);
        let p2 = &f.prompts[1];
        assert!(p2[0].content.contains("No tools are available"));
        assert_eq!(p2.len(), 2);
        assert!(
            p2[1]
                .content
                .starts_with("How do I add a new guard?\n\n(Answer now")
        );
    }

    #[test]
    fn unknown_tool_and_empty_reply_fall_back() {
        for first in [
            vec!["{\"tool\":\"shell\",\"arguments\":{}}"],
            vec!["  ", "\n"],
        ] {
            let mut f = Fake {
                replies: [first, vec!["ok"]].into(),
                ..Fake::default()
            };
            assert_eq!(go(&mut f).unwrap(), "stop");
            assert_eq!(f.emitted, ["ok"]);
        }
    }

    #[test]
    fn answer_only_mode_streams_json_looking_text() {
        let mut f = Fake {
            replies: [vec!["{\"a\":", "1}"]].into(),
            ..Fake::default()
        };
        assert_eq!(
            run(&mut f, &question(), &[], &Settings::default()).unwrap(),
            "stop"
        );
        assert_eq!(f.emitted, ["{\"a\":", "1}"]);
        assert!(f.prompts[0][0].content.contains("No tools are available"));
    }

    #[test]
    fn fenced_call_and_other_tools() {
        let mut f = Fake {
            replies: [
                vec!["```json\n{\"tool\":\"calculator\",\"arguments\":{\"expression\":\"2*(3+4)/7\"}}\n```"],
                vec!["It is 2."],
            ]
            .into(),
            tool_results: [Ok("2".into())].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");
        assert_eq!(f.emitted, ["It is 2."]); // no Sources line
        assert!(
            f.prompts[1][3]
                .content
                .starts_with("TOOL RESULT calculator:\n<<<RETRIEVED\n2\n>>>")
        );
    }

    #[test]
    fn withheld_result_is_no_result() {
        let mut f = Fake {
            replies: [
                vec![r#"{"tool":"kb-search","arguments":{"query":"q"}}"#],
                vec!["Nothing found."],
            ]
            .into(),
            tool_results: [Ok("[withheld: instruction-override]".into())].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");
        assert_eq!(f.emitted, ["Nothing found."]);
        let last = &f.prompts[1][3].content;
        assert!(last.contains("(no result: the gateway's input guard withheld"));
    }

    #[test]
    fn step_budget_then_forced_answer_and_repeats() {
        let call = |q: &'static str| vec![q];
        let mut f = Fake {
            replies: [
                call(r#"{"tool":"kb-search","arguments":{"query":"a"}}"#),
                call(r#"{"tool":"kb-search","arguments":{"query":"b"}}"#),
                vec!["done"],
            ]
            .into(),
            tool_results: [Ok(KB.into()), Ok("[1] docs/design.md — D\nx\n".into())].into(),
            ..Fake::default()
        };
        let s = Settings {
            max_steps: 2,
            ..Settings::default()
        };
        assert_eq!(run(&mut f, &question(), &tools(), &s).unwrap(), "stop");
        assert!(
            f.prompts[1]
                .last()
                .unwrap()
                .content
                .contains("or make one more tool call")
        );
        let last = f.prompts[2].last().unwrap();
        assert!(last.content.starts_with("TOOL RESULT kb-search:"));
        assert!(last.content.ends_with("No more tool calls."));
        assert!(f.prompts[2][0].content.contains("No tools are available"));
        assert_eq!(
            f.emitted.last().unwrap(),
            "\n\nSources: docs/guards.md, docs/operations.md, docs/design.md"
        );

        // The same call twice: no second call, answer directly.
        let same = r#"{"tool":"kb-search","arguments":{"query":"a"}}"#;
        let mut f = Fake {
            replies: [call(same), call(same), vec!["ok"]].into(),
            tool_results: [Ok(KB.into())].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "stop");
        assert_eq!(f.count("call"), 1);
        assert!(f.prompts[2].last().unwrap().content.contains("(Answer now"));
    }

    #[test]
    fn limits_end_with_length() {
        // Tool-call limit.
        let mut f = Fake {
            replies: [vec![r#"{"tool":"now","arguments":{}}"#]].into(),
            tool_results: [Err("limit: 8 tool calls".into())].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "length");
        // Completion limit on the second start.
        let mut f = Fake {
            replies: [vec![r#"{"tool":"now","arguments":{}}"#]].into(),
            tool_results: [Ok("2026-01-01T00:00:00Z".into())].into(),
            start_error: Some("limit: 6 completions".into()),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "length");
        // A limit while streaming.
        let mut f = Fake {
            replies: [vec!["Part", "!limit"]].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "length");
        assert_eq!(f.emitted, ["Part"]);
        // Other errors are errors.
        let mut f = Fake {
            replies: [vec![r#"{"tool":"now","arguments":{}}"#]].into(),
            tool_results: [Ok("t".into())].into(),
            start_error: Some("upstream unavailable".into()),
            ..Fake::default()
        };
        assert_eq!(go(&mut f), Err("upstream unavailable".into()));
    }

    #[test]
    fn emit_failure_aborts_at_once() {
        let mut f = Fake {
            replies: [vec!["a", "b", "c"]].into(),
            emit_fails_after: Some(1),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "abort");
        assert_eq!(f.emitted, ["a"]);
        assert_eq!(f.count("next"), 2, "stopped reading after the failed emit");

        // Failing on the citation line.
        let mut f = Fake {
            replies: [
                vec![r#"{"tool":"kb-search","arguments":{"query":"q"}}"#],
                vec!["x"],
            ]
            .into(),
            tool_results: [Ok(KB.into())].into(),
            emit_fails_after: Some(1),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "abort");
    }

    #[test]
    fn upstream_finish_reason_is_returned() {
        let mut f = Fake {
            replies: [vec!["cut", "!length"]].into(),
            ..Fake::default()
        };
        assert_eq!(go(&mut f).unwrap(), "length");
        assert_eq!(f.emitted, ["cut"]);
    }

    #[test]
    fn settings_from_config() {
        assert_eq!(Settings::from_config(|_| None), Settings::default());
        let s = Settings::from_config(|k| match k {
            "max_steps" => Some("2".into()),
            "max_tokens" => Some("99999".into()),
            "temperature" => Some("nope".into()),
            _ => None,
        });
        assert_eq!(s.max_steps, 2);
        assert_eq!(s.max_tokens, 1024);
        assert_eq!(s.temperature, 0.2);
        let s = Settings::from_config(|k| (k == "temperature").then(|| " 0.7 ".into()));
        assert_eq!(s.temperature, 0.7);
        assert!(is_limit("limit: 6 completions"));
        assert!(!is_limit("upstream: limited"));
    }
}
