//! Authentication, limits and validation against real processes.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn authed(url: &str, key: Option<&str>, body: &Value) -> reqwest::blocking::Response {
    let mut req = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().unwrap()
}

#[test]
fn api_keys_are_required_when_configured() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &[
            "--api-key",
            "alice=sk-alice-secret",
            "--api-key",
            "bob=sk-bob-secret",
        ],
    );
    let body = chat_body("hello", false);
    for key in [None, Some("sk-wrong"), Some("sk-alice-secre"), Some("")] {
        let r = authed(&gate.url, key, &body);
        assert_eq!(r.status(), 401, "{key:?}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(
        authed(&gate.url, Some("sk-alice-secret"), &body).status(),
        200
    );
    assert_eq!(
        authed(&gate.url, Some("sk-bob-secret"), &body).status(),
        200
    );
    let models = client()
        .get(format!("{}/v1/models", gate.url))
        .send()
        .unwrap();
    assert_eq!(models.status(), 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(
        client()
            .get(format!("{}/healthz", gate.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    let page = get_text(&format!("{}/metrics", gate.url));
    assert!(metric_sum(&page, "wasmgate_auth_failures_total", &[]) >= 4.0);
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    let comps = Components::new();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["serve", "--listen", "0.0.0.0:0", "--components"])
        .arg(comps.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without API keys") && err.contains("--insecure-no-auth"),
        "{err}"
    );
}

#[test]
fn a_burst_gets_429_with_retry_after_and_ratelimit_headers() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &[
            "--api-key",
            "carol=sk-carol",
            "--default-rpm",
            "5",
            "--default-tpm",
            "100000",
        ],
    );
    let body = chat_body("hello", false);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = authed(&gate.url, Some("sk-carol"), &body);
        let h = r.headers();
        for name in [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ] {
            assert!(
                h.contains_key(name),
                "missing {name} on a {} answer",
                r.status()
            );
        }
        assert_eq!(h["x-ratelimit-limit-requests"], "5");
        let status = r.status().as_u16();
        if status == 429 {
            let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "retry-after {retry}");
            let v: Value = r.json().unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
}

#[test]
fn token_budgets_reserve_then_reconcile() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--api-key", "dave=sk-dave", "--default-tpm", "3000"],
    );
    // Each request reserves ~2000 tokens (max_tokens) but uses a handful.
    let mut body = chat_body("hi", false);
    body["max_tokens"] = json!(2000);
    for i in 0..4 {
        let r = authed(&gate.url, Some("sk-dave"), &body);
        assert_eq!(
            r.status(),
            200,
            "request {i}: reconciliation must return the unused reservation"
        );
    }
    // One that cannot fit while another holds its reservation is refused.
    body["max_tokens"] = json!(2900);
    let slow = {
        let sim2 = common::sim(&["--ttft-ms", "1500"]);
        let gate2 = common::gate(
            &format!("{}/v1", sim2.url),
            &Components::new(),
            &["--api-key", "erin=sk-erin", "--default-tpm", "3000"],
        );
        let url = gate2.url.clone();
        let b = body.clone();
        let t = std::thread::spawn(move || authed(&url, Some("sk-erin"), &b).status());
        assert!(wait_until(std::time::Duration::from_secs(5), || {
            get_text(&format!("{}/metrics", sim2.url))
                .contains("vllm:num_requests_running{engine=\"0\",model_name=\"test-model\"} 1")
        }));
        let second = authed(&gate2.url, Some("sk-erin"), &body);
        assert_eq!(second.status(), 429);
        assert_eq!(t.join().unwrap(), 200);
        (sim2, gate2)
    };
    drop(slow);
}

#[test]
fn the_global_inflight_cap_sheds_load_with_503() {
    let sim = sim(&["--ttft-ms", "1000"]);
    let comps = Components::new();
    let gate = gate(&format!("{}/v1", sim.url), &comps, &["--max-inflight", "2"]);
    let url = gate.url.clone();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let u = url.clone();
            std::thread::spawn(move || post_chat(&u, &chat_body("hold", false)).status())
        })
        .collect();
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        get_text(&format!("{}/metrics", sim.url))
            .contains("vllm:num_requests_running{engine=\"0\",model_name=\"test-model\"} 2")
    }));
    let r = post_chat(&url, &chat_body("one too many", false));
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "overloaded");
    for h in holders {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(
        post_chat(&url, &chat_body("room again", false)).status(),
        200
    );
}

#[test]
fn validation_names_the_offending_field() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(&format!("{}/v1", sim.url), &comps, &[]);
    let msg = |content: Value| json!({"model": MODEL, "messages": [{"role": "user", "content": content}]});
    let cases: Vec<(Value, &str)> = vec![
        (msg(json!("bad \u{0007} bell")), "messages[0].content"),
        (msg(json!(42)), "messages[0].content"),
        (msg(json!("x".repeat(200_001))), "messages[0].content"),
        (
            json!({"model": MODEL, "messages": vec![json!({"role":"user","content":"x"}); 300]}),
            "messages",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "top_p": 0}),
            "top_p",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "top_p": 1.5}),
            "top_p",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "max_tokens": 10_000_000}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "temperature": -1}),
            "temperature",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "n": 99}),
            "n",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"user","content":"x"}], "presence_penalty": 3}),
            "presence_penalty",
        ),
        (
            json!({"model": MODEL, "messages": [{"role":"robot","content":"x"}]}),
            "messages[0].role",
        ),
    ];
    for (body, param) in cases {
        let r = client()
            .post(format!("{}/v1/chat/completions", gate.url))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert_eq!(status, 400, "{param}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // Invalid UTF-8 in the body.
    let r = client()
        .post(format!("{}/v1/chat/completions", gate.url))
        .header("content-type", "application/json")
        .body(b"{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}
