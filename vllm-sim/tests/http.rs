//! End-to-end tests: spawn the built `vllm-sim` binary on a free port and talk
//! raw HTTP/1.1 to it, so the exact bytes on the wire are checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running simulator; killed when dropped.
struct Sim {
    child: Child,
    addr: SocketAddr,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vllm-sim"))
            .args(["--port", "0", "--model", "qwen"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vllm-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read readiness line");
        let addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("socket address");
        Sim { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s
    }

    /// Sends a request and reads the whole response (the connection closes).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut s = self.connect();
        send_request(&mut s, self.addr, method, path, headers, body);
        let raw = read_all(&mut s);
        Resp::parse(&raw)
    }

    fn chat(&self, body: &str) -> Resp {
        self.request("POST", "/v1/chat/completions", &[], body)
    }

    fn metrics(&self) -> String {
        self.request("GET", "/metrics", &[], "").text()
    }

    /// Polls `/metrics` until `sample` has `value` (bounded: 10 s).
    fn wait_metric(&self, sample: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics();
            if metric(&text, sample) == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sample} never reached {value}; last /metrics:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write request");
}

/// Reads until EOF (or a reset, for the drop tests).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether a chunked body ended with its terminating `0` chunk.
    complete: bool,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let split = find(raw, b"\r\n\r\n").expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        let rest = &raw[split + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
        let (body, complete) = if chunked {
            dechunk(rest)
        } else {
            (rest.to_vec(), true)
        };
        Resp {
            status,
            headers,
            body,
            complete,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// SSE events, without the `data: ` prefix and the blank line.
    fn events(&self) -> Vec<String> {
        let text = self.text();
        assert!(
            text.ends_with("\n\n"),
            "stream must end with a blank line: {text:?}"
        );
        text.split_terminator("\n\n")
            .map(|e| {
                e.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("event without `data: `: {e:?}"))
                    .to_string()
            })
            .collect()
    }
}

fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return (body, false);
        };
        let size_str = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_str.trim(), 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let start = eol + 2;
        if rest.len() < start + size + 2 {
            body.extend_from_slice(&rest[start.min(rest.len())..]);
            return (body, false);
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
}

/// The value of one exposition sample line, e.g. `vllm:x{a="b"}`.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

const RUNNING: &str = r#"vllm:num_requests_running{engine="0",model_name="qwen"}"#;
const WAITING: &str = r#"vllm:num_requests_waiting{engine="0",model_name="qwen"}"#;

fn success(reason: &str) -> String {
    format!(
        r#"vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="qwen"}}"#
    )
}

fn user(content: &str) -> String {
    serde_json::json!({"model": "qwen", "messages": [{"role": "user", "content": content}], "stream": true})
        .to_string()
}

/// `"created":N` of a chunk.
fn created_of(event: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(event).expect("chunk JSON");
    v["created"].as_u64().expect("created")
}

const PROMPT: &str = "Write to alice.smith@example.com about order 1234567, 日本 ok?";

#[test]
fn streams_exact_chunks() {
    let sim = Sim::start(&["--ttft-ms", "1", "--itl-ms", "1"]);
    let body = serde_json::json!({
        "model": "qwen",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": PROMPT}
        ],
        "stream": true,
        "stream_options": {"include_usage": true}
    })
    .to_string();
    let resp = sim.request(
        "POST",
        "/v1/chat/completions",
        &[("X-Request-Id", "req-42")],
        &body,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(resp.complete);
    let events = resp.events();
    let created = created_of(&events[0]);
    let head = format!(
        r#"{{"id":"chatcmpl-req-42","object":"chat.completion.chunk","created":{created},"model":"qwen""#
    );
    assert_eq!(
        events[0],
        format!(
            r#"{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"prompt_token_ids":null,"prompt_text":null}}"#
        )
    );

    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    let content_events = &events[1..n - 3];
    let mut text = String::new();
    for e in content_events {
        let prefix = format!(r#"{head},"choices":[{{"index":0,"delta":{{"content":"#);
        let suffix = r#"},"logprobs":null,"finish_reason":null,"token_ids":null}]}"#;
        let inner = e
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("bad content chunk {e}"));
        text.push_str(&serde_json::from_str::<String>(inner).expect("content string"));
    }
    assert_eq!(text, PROMPT);
    // Split like a tokenizer: the e-mail and the number span several chunks.
    assert!(content_events.len() > 20, "{}", content_events.len());
    assert!(
        content_events
            .iter()
            .any(|e| e.contains(r#""content":"@""#))
    );
    assert!(
        content_events
            .iter()
            .any(|e| e.contains(r#""content":" 123""#))
    );
    assert!(text.is_char_boundary(text.len()));
    for e in &events[..n - 1] {
        assert_eq!(created_of(e), created, "created is fixed per stream");
    }

    assert_eq!(
        events[n - 3],
        format!(
            r#"{head},"choices":[{{"index":0,"delta":{{"content":""}},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}}]}}"#
        )
    );
    // 2 messages: "Be brief." = 3 tokens; 3 per message + 3.
    let completion = content_events.len();
    let prompt = 3 + content_events.len() + 3 * 2 + 3;
    assert_eq!(
        events[n - 2],
        format!(
            r#"{head},"choices":[],"usage":{{"prompt_tokens":{prompt},"total_tokens":{},"completion_tokens":{completion}}}}}"#,
            prompt + completion
        )
    );

    let text = sim.metrics();
    assert_eq!(metric(&text, &success("stop")), Some(1.0));
    assert_eq!(metric(&text, RUNNING), Some(0.0));
    assert_eq!(
        metric(
            &text,
            r#"vllm:generation_tokens_total{engine="0",model_name="qwen"}"#
        ),
        Some(completion as f64)
    );
}

#[test]
fn stream_without_stream_options_has_no_usage_and_length_finish() {
    let sim = Sim::start(&["--ttft-ms", "0", "--itl-ms", "0"]);
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "one two three four five"}],
        "stream": true,
        "max_tokens": 2
    })
    .to_string();
    let events = sim.chat(&body).events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[1].contains(r#""delta":{"content":"one"}"#));
    assert!(events[2].contains(r#""delta":{"content":" two"}"#));
    assert!(events[3].contains(r#""finish_reason":"length","stop_reason":null"#));
    assert!(events.iter().all(|e| !e.contains("usage")));
    assert_eq!(events[4], "[DONE]");
    // A generated id: chatcmpl- + 32 hex.
    let v: serde_json::Value = serde_json::from_str(&events[0]).expect("json");
    let id = v["id"].as_str().expect("id");
    let hex = id.strip_prefix("chatcmpl-").expect("prefix");
    assert_eq!(hex.len(), 32);
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    sim.wait_metric(&success("length"), 1.0);
}

#[test]
fn non_stream_full_dump() {
    let sim = Sim::start(&["--ttft-ms", "0", "--itl-ms", "0"]);
    let body = serde_json::json!({
        "model": "qwen",
        "messages": [{"role": "user", "content": "hello there"}]
    })
    .to_string();
    let resp = sim.chat(&body);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let text = resp.text();
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let id = v["id"].as_str().expect("id");
    let created = v["created"].as_u64().expect("created");
    assert_eq!(
        text,
        format!(
            r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":"qwen","choices":[{{"index":0,"message":{{"role":"assistant","content":"hello there","refusal":null,"annotations":null,"audio":null,"function_call":null,"reasoning":null}},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null,"routed_experts":null}}],"service_tier":null,"system_fingerprint":null,"usage":{{"prompt_tokens":8,"total_tokens":10,"completion_tokens":2,"prompt_tokens_details":null,"completion_tokens_details":null}},"prompt_logprobs":null,"prompt_token_ids":null,"prompt_text":null,"kv_transfer_params":null,"ec_transfer_params":null,"metrics":null}}"#
        )
    );
}

#[test]
fn validation_errors() {
    let sim = Sim::start(&["--max-model-len", "32"]);
    let resp = sim.chat(r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"The model `nope` does not exist.","type":"NotFoundError","param":"model","code":404}}"#
    );

    // 40 tokens of content + 3 + 3 = 46 > 32.
    let long = ".".repeat(40);
    let resp = sim.chat(&user(&long));
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"This model's maximum context length is 32 tokens. However, your request has 46 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":"input_tokens","code":400}}"#
    );

    let resp =
        sim.chat(r#"{"model":"qwen","messages":[{"role":"user","content":"hi"}],"max_tokens":30}"#);
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 30. This model's maximum context length is 32 tokens and your request has 7 input tokens (30 > 32 - 7).","type":"BadRequestError","param":"max_tokens","code":400}}"#
    );

    let resp = sim.chat(r#"{"model":"qwen"}"#);
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"1 validation error:\n  {'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', 'input': {'model': 'qwen'}}","type":"Bad Request","param":"body.messages","code":400}}"#
    );

    let resp = sim.chat(r#"{"model":"qwen","#);
    assert_eq!(resp.status, 400);
    let v: serde_json::Value = serde_json::from_str(&resp.text()).expect("json");
    assert_eq!(v["error"]["type"], "Bad Request");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("1 validation error:\n  {'type': 'json_invalid'"))
    );

    // Nothing was admitted.
    let text = sim.metrics();
    assert_eq!(metric(&text, RUNNING), Some(0.0));
    assert_eq!(metric(&text, WAITING), Some(0.0));
}

#[test]
fn other_endpoints() {
    let sim = Sim::start(&[]);
    let resp = sim.request("GET", "/health", &[], "");
    assert_eq!(resp.status, 200);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("content-length"), Some("0"));

    let models = sim.request("GET", "/v1/models", &[], "").text();
    let v: serde_json::Value = serde_json::from_str(&models).expect("json");
    let created = v["data"][0]["created"].as_u64().expect("created");
    let perm = v["data"][0]["permission"][0]["id"]
        .as_str()
        .expect("perm id");
    assert!(perm.starts_with("modelperm-"));
    assert_eq!(
        models,
        format!(
            r#"{{"object":"list","data":[{{"id":"qwen","object":"model","created":{created},"owned_by":"vllm","root":"qwen","parent":null,"max_model_len":4096,"permission":[{{"id":"{perm}","object":"model_permission","created":{created},"allow_create_engine":false,"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,"organization":"*","group":null,"is_blocking":false}}]}}]}}"#
        )
    );
    let resp = sim.request("GET", "/nope", &[], "");
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"Not Found","type":"Not Found","param":null,"code":404}}"#
    );
    assert_eq!(
        sim.request("GET", "/v1/chat/completions", &[], "").status,
        405
    );
    assert_eq!(
        sim.request("GET", "/version", &[], "").text(),
        r#"{"version":"0.11.0"}"#
    );
    assert_eq!(
        sim.request("GET", "/load", &[], "").text(),
        r#"{"server_load":0}"#
    );

    let text = sim.metrics();
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
        "vllm:request_params_max_tokens",
        "vllm:cache_config_info",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    for reason in ["stop", "length", "abort", "error"] {
        assert_eq!(metric(&text, &success(reason)), Some(0.0), "{reason}");
    }
    assert!(text.contains(
        r#"vllm:time_to_first_token_seconds_bucket{engine="0",le="2560.0",model_name="qwen"} 0.0"#
    ));
    assert!(text.contains(
        r#"vllm:request_prompt_tokens_bucket{engine="0",le="2000.0",model_name="qwen"} 0.0"#
    ));
}

#[test]
fn fail_http500() {
    let sim = Sim::start(&["--fail-rate", "1", "--fail-mode", "http500"]);
    let resp = sim.chat(&user("hello"));
    assert_eq!(resp.status, 500);
    assert_eq!(
        resp.text(),
        r#"{"error":{"message":"vllm-sim: injected engine failure","type":"InternalServerError","param":null,"code":500}}"#
    );
    let text = sim.metrics();
    assert_eq!(metric(&text, &success("error")), Some(1.0));
    assert_eq!(metric(&text, WAITING), Some(0.0));
}

#[test]
fn fail_midstream() {
    let sim = Sim::start(&[
        "--fail-rate",
        "1",
        "--fail-mode",
        "midstream",
        "--fail-after-tokens",
        "2",
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
    ]);
    let resp = sim.chat(&user("one two three four"));
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    let events = resp.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[0].contains(r#""role":"assistant""#));
    assert!(events[1].contains(r#""content":"one""#));
    assert!(events[2].contains(r#""content":" two""#));
    assert_eq!(
        events[3],
        r#"{"error": {"message": "vllm-sim: injected engine failure after 2 tokens", "type": "InternalServerError", "param": null, "code": 500}}"#
    );
    assert_eq!(events[4], "[DONE]");
    let text = sim.metrics();
    assert_eq!(metric(&text, &success("error")), Some(1.0));
    assert_eq!(metric(&text, RUNNING), Some(0.0));
}

#[test]
fn fail_drop_cuts_the_connection() {
    let sim = Sim::start(&[
        "--fail-rate",
        "1",
        "--fail-mode",
        "drop",
        "--fail-after-tokens",
        "3",
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
    ]);
    let resp = sim.chat(&user("one two three four five"));
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "chunked body must not be terminated");
    let text = resp.text();
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("finish_reason\":\"stop"));
    assert_eq!(text.matches(r#""delta":{"content":"#).count(), 3, "{text}");
    sim.wait_metric(&success("error"), 1.0);
    sim.wait_metric(RUNNING, 0.0);
}

#[test]
fn client_disconnect_counts_as_abort() {
    let sim = Sim::start(&["--ttft-ms", "0", "--itl-ms", "50"]);
    let mut s = sim.connect();
    send_request(
        &mut s,
        sim.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &user(&"word ".repeat(200)),
    );
    // Read until two content chunks arrived, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen
        .windows(b"\"content\":\"".len())
        .filter(|w| *w == b"\"content\":\"")
        .count()
        < 3
    {
        let n = s.read(&mut buf).expect("read stream");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    sim.wait_metric(RUNNING, 1.0);
    drop(s);
    sim.wait_metric(&success("abort"), 1.0);
    sim.wait_metric(RUNNING, 0.0);
    let text = sim.metrics();
    assert_eq!(metric(&text, &success("stop")), Some(0.0));
    assert_eq!(
        metric(
            &text,
            r#"vllm:kv_cache_usage_perc{engine="0",model_name="qwen"}"#
        ),
        Some(0.0)
    );
    // Generation stopped promptly: far fewer than 200 tokens were produced.
    let generated = metric(
        &text,
        r#"vllm:generation_tokens_total{engine="0",model_name="qwen"}"#,
    )
    .expect("generation tokens");
    assert!(generated < 100.0, "{generated}");
}

#[test]
fn max_num_seqs_queues_requests() {
    let sim = Sim::start(&["--max-num-seqs", "1", "--ttft-ms", "400", "--itl-ms", "0"]);
    let a = sim.addr;
    let body = user("queued");
    let spawn = |body: String| {
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(a).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
            send_request(&mut s, a, "POST", "/v1/chat/completions", &[], &body);
            Resp::parse(&read_all(&mut s))
        })
    };
    let first = spawn(body.clone());
    let second = spawn(body);
    sim.wait_metric(WAITING, 1.0);
    sim.wait_metric(RUNNING, 1.0);
    assert_eq!(
        sim.request("GET", "/load", &[], "").text(),
        r#"{"server_load":2}"#
    );
    for handle in [first, second] {
        let resp = handle.join().expect("thread");
        assert_eq!(resp.events().last().map(String::as_str), Some("[DONE]"));
    }
    let text = sim.metrics();
    assert_eq!(metric(&text, WAITING), Some(0.0));
    assert_eq!(metric(&text, RUNNING), Some(0.0));
    assert_eq!(metric(&text, &success("stop")), Some(2.0));
    // The second request waited about one TTFT in the queue.
    let queue_sum = metric(
        &text,
        r#"vllm:request_queue_time_seconds_sum{engine="0",model_name="qwen"}"#,
    )
    .expect("queue sum");
    assert!(queue_sum >= 0.3, "{queue_sum}");
}

#[test]
fn continuous_usage_and_lorem() {
    let sim = Sim::start(&[
        "--mode",
        "lorem",
        "--lorem-tokens",
        "5",
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
        "--seed",
        "1",
    ]);
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "x"}],
        "stream": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true}
    })
    .to_string();
    let events = sim.chat(&body).events();
    // role + 5 content + final + usage + DONE
    assert_eq!(events.len(), 9, "{events:?}");
    assert!(events[0].contains(
        r#""finish_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":7,"completion_tokens":0},"prompt_token_ids":null,"prompt_text":null}"#
    ));
    assert!(events[3].ends_with(
        r#""token_ids":null}],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}}"#
    ));
    assert!(events[7].ends_with(
        r#""choices":[],"usage":{"prompt_tokens":7,"total_tokens":12,"completion_tokens":5}}"#
    ));
}

/// Writes a `--script` file into a fresh temp directory (removed on drop).
struct ScriptFile {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl ScriptFile {
    fn new(name: &str, text: &str) -> ScriptFile {
        let dir = std::env::temp_dir().join(format!("vllm-sim-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("rules.json");
        std::fs::write(&path, text).expect("write script");
        ScriptFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `delta.content` of every content chunk of a stream, in order.
fn deltas(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).expect("chunk JSON");
            let choice = v["choices"].get(0)?;
            if !choice["finish_reason"].is_null() || choice["delta"].get("role").is_some() {
                return None;
            }
            Some(choice["delta"]["content"].as_str()?.to_owned())
        })
        .collect()
}

fn chat_body(messages: serde_json::Value) -> String {
    serde_json::json!({"model": "qwen", "messages": messages, "stream": true}).to_string()
}

#[test]
fn script_replies() {
    let reply = "Calling the weather tool for alice@example.com, order 1234567.";
    let rules = serde_json::json!([
        {"match": "weather in Paris", "reply": reply, "role": "user"},
        {"match": "\"temp\": 21", "reply": "It is 21 degrees in Paris.", "role": "tool"},
        {"match": "book it", "reply": "Booked, reference 42.", "repeat": false},
        {"match": "book it", "reply": "Already booked."},
        {"match": "You are a pirate", "reply": "Arr, matey.", "match_any_message": true}
    ]);
    let file = ScriptFile::new("script-replies", &rules.to_string());
    let sim = Sim::start(&["--script", file.arg(), "--ttft-ms", "0", "--itl-ms", "0"]);

    // A rule matched on the user message: chunked exactly like echo mode
    // chunks the same text.
    let scripted = sim
        .chat(&chat_body(serde_json::json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather in Paris today?"}
        ])))
        .events();
    let echoed = sim.chat(&user(reply)).events();
    assert_eq!(deltas(&scripted).concat(), reply);
    assert_eq!(deltas(&scripted), deltas(&echoed));
    assert!(deltas(&scripted).len() > 10);
    assert!(scripted[scripted.len() - 2].contains(r#""finish_reason":"stop""#));
    assert_eq!(scripted.last().map(String::as_str), Some("[DONE]"));

    // The same text in a tool message: the "user" rule does not apply, the
    // "tool" rule does (content as a list of text parts).
    let tool_turn = serde_json::json!([
        {"role": "user", "content": "What is the weather in Paris today?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": [{"type": "text", "text": "{\"city\": \"Paris\", \"temp\": 21}"}]}
    ]);
    let events = sim.chat(&chat_body(tool_turn)).events();
    assert_eq!(deltas(&events).concat(), "It is 21 degrees in Paris.");
    // A tool rule does not apply to a user message carrying the same text:
    // fallback to echo.
    let events = sim.chat(&user(r#"I saw "temp": 21"#)).events();
    assert_eq!(deltas(&events).concat(), r#"I saw "temp": 21"#);

    // A once-only rule answers once, then the next matching rule does.
    let book = user("ok, book it");
    assert_eq!(
        deltas(&sim.chat(&book).events()).concat(),
        "Booked, reference 42."
    );
    for _ in 0..2 {
        assert_eq!(
            deltas(&sim.chat(&book).events()).concat(),
            "Already booked."
        );
    }

    // match_any_message: the system prompt selects the reply.
    let events = sim
        .chat(&chat_body(serde_json::json!([
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "hello"}
        ])))
        .events();
    assert_eq!(deltas(&events).concat(), "Arr, matey.");

    // No rule applies: echo mode.
    let events = sim.chat(&user("just echo me")).events();
    assert_eq!(deltas(&events).concat(), "just echo me");

    // Non-streamed, cut by max_tokens like echo mode ("Callin", "g", " the").
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "max_tokens": 3
    })
    .to_string();
    let v: serde_json::Value = serde_json::from_str(&sim.chat(&body).text()).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "Calling the");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let text = sim.metrics();
    assert_eq!(metric(&text, &success("stop")), Some(9.0));
    assert_eq!(metric(&text, &success("length")), Some(1.0));
}

#[test]
fn script_falls_back_to_lorem() {
    let file = ScriptFile::new("script-lorem", r#"[{"match": "ping", "reply": "pong"}]"#);
    let sim = Sim::start(&[
        "--script",
        file.arg(),
        "--mode",
        "lorem",
        "--lorem-tokens",
        "5",
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
    ]);
    assert_eq!(deltas(&sim.chat(&user("ping")).events()), ["pong"]);
    assert_eq!(deltas(&sim.chat(&user("hello")).events()).len(), 5);
}

#[test]
fn invalid_script_is_a_startup_error() {
    let file = ScriptFile::new(
        "script-invalid",
        r#"[{"match": "a", "reply": "b"}, {"match": "a", "role": "robot", "reply": "c"}]"#,
    );
    let missing = file.dir.join("missing.json");
    for (path, problem) in [
        (
            file.arg(),
            "rules[1]: unknown variant `robot`, expected one of `user`, `tool`, `any`",
        ),
        (missing.to_str().expect("utf-8"), "cannot read it: "),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vllm-sim"))
            .args(["--port", "0"])
            .env("VLLM_SIM_SCRIPT", path)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run vllm-sim");
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty(), "must not start listening");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("vllm-sim: invalid script file {path}: {problem}");
        assert!(stderr.starts_with(&want), "{stderr}");
    }
}
