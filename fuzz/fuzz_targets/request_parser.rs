//! The request parser on arbitrary bytes: it never panics, and what it
//! accepts is within the limits, free of forbidden control characters and
//! stable (the body the gateway forwards parses again to the same request).
//! Each input is parsed with the default limits and with tiny ones, so the
//! size checks are reached too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmgate_protocol::request::{
    Message, ParsedRequest, RequestError, ValidationLimits, is_forbidden_control,
};

const CANARY: &str = "\n\n[ref:wgc-0123456789abcdef]";

fuzz_target!(|data: &[u8]| {
    let tiny = ValidationLimits {
        max_messages: 3,
        max_message_chars: 24,
        max_total_chars: 40,
        max_tokens: 64,
    };
    for limits in [ValidationLimits::default(), tiny] {
        match ParsedRequest::parse(data, &limits) {
            Ok(req) => accepted(&req, &limits),
            Err(e) => rejected(&e),
        }
    }
});

fn accepted(req: &ParsedRequest, limits: &ValidationLimits) {
    assert!(!req.model.is_empty());
    assert!(!req.messages.is_empty());
    assert!(req.messages.len() <= limits.max_messages);
    let mut total = 0;
    for m in &req.messages {
        let chars = m.content.chars().count();
        assert!(chars <= limits.max_message_chars);
        total += chars;
        assert!(
            !m.content.chars().any(is_forbidden_control),
            "a control character passed: {:?}",
            m.content
        );
    }
    assert!(total <= limits.max_total_chars);
    if let Some(n) = req.max_tokens {
        assert!(n >= 1 && u64::from(n) <= limits.max_tokens);
    }
    if let Some(t) = req.temperature {
        assert!((0.0..=2.0).contains(&t));
    }
    assert!(req.token_estimate(0) >= 4 * req.messages.len() as u64);

    // What the gateway forwards parses again to the same request.
    let again = reparse(&req.body, limits).expect("the forwarded body is accepted again");
    assert_eq!(&again, req, "re-serialising changed the request");

    // Writing back the same messages (a guard's no-op rewrite) keeps them.
    let mut same = req.clone();
    same.set_messages(req.messages.clone());
    let again = reparse(&same.body, limits).expect("a no-op rewrite is accepted again");
    assert_eq!(again.messages, req.messages);

    // A rewrite with fewer messages replaces the list.
    let mut one = req.clone();
    let first = Message {
        role: req.messages[0].role,
        content: "[EMAIL]".into(),
    };
    one.set_messages(vec![first.clone()]);
    let again = reparse(&one.body, limits).expect("a shorter rewrite is accepted again");
    assert_eq!(again.messages, [first]);

    // The canary lands in the body and the view alike, on a system message.
    let mut marked = req.clone();
    marked.add_canary(CANARY);
    let loose = ValidationLimits {
        max_message_chars: usize::MAX,
        max_total_chars: usize::MAX,
        ..limits.clone()
    };
    let again = reparse(&marked.body, &loose).expect("a marked body is accepted again");
    assert_eq!(again.messages, marked.messages);
    let changed: Vec<usize> = (0..req.messages.len())
        .filter(|&i| marked.messages[i] != req.messages[i])
        .collect();
    assert!(changed.len() <= 1);
    for i in changed {
        assert_eq!(
            marked.messages[i].role,
            wasmgate_protocol::request::Role::System
        );
        assert_eq!(
            marked.messages[i].content,
            format!("{}{CANARY}", req.messages[i].content)
        );
    }
}

fn reparse(
    body: &serde_json::Map<String, serde_json::Value>,
    limits: &ValidationLimits,
) -> Result<ParsedRequest, RequestError> {
    let bytes = serde_json::to_vec(body).expect("a JSON map serialises");
    ParsedRequest::parse(&bytes, limits)
}

fn rejected(e: &RequestError) {
    assert!(!e.message.is_empty());
    let Some(p) = &e.param else { return };
    let known = [
        "model",
        "stream",
        "messages",
        "max_tokens",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "temperature",
    ];
    let message_field = p
        .strip_prefix("messages[")
        .and_then(|r| r.split_once("]."))
        .is_some_and(|(i, f)| i.parse::<usize>().is_ok() && matches!(f, "role" | "content"));
    assert!(known.contains(&p.as_str()) || message_field, "param {p:?}");
}
