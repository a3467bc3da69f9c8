//! Faults: dead and silent upstreams, failover, slow clients, shutdown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn one_dead_upstream_of_two_fails_over_without_client_errors() {
    let sim = sim(&[]);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let comps = Components::new();
    let dead_url = format!("http://127.0.0.1:{dead}/v1");
    let live_url = format!("{}/v1", sim.url);
    let gate = gate(&dead_url, &comps, &["--upstream", &live_url]);
    for i in 0..20 {
        let stream = i % 2 == 0;
        let r = post_chat(&gate.url, &chat_body("fail over please", stream));
        assert_eq!(r.status(), 200, "request {i}");
        if stream {
            let sse = read_sse(r);
            assert!(sse.done);
            assert_eq!(sse.text(), "fail over please");
        }
    }
    // The dead one was found out (health check or a failed connect) and skipped.
    let page = get_text(&format!("{}/metrics", gate.url));
    assert_eq!(
        metric(
            &page,
            &format!("wasmgate_upstream_healthy{{upstream=\"{dead_url}\"}}")
        ),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            &format!("wasmgate_upstream_healthy{{upstream=\"{live_url}\"}}")
        ),
        Some(1.0)
    );
}

#[test]
fn a_killed_upstream_ends_the_stream_with_an_error_event_and_done() {
    let sim = sim(&["--itl-ms", "30"]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--upstream-retries", "0"],
    );
    let long = "word ".repeat(200);
    let resp = post_chat(&gate.url, &chat_body(&long, true));
    let mut reader = BufReader::new(resp);
    let mut line = String::new();
    let mut seen = 0;
    while seen < 3 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.contains("\"content\":\"") {
            seen += 1;
        }
    }
    drop(sim); // SIGKILL mid-stream
    let started = Instant::now();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let events: Vec<&str> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{rest}");
    let err: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error", "{err}");
}

#[test]
fn a_silent_upstream_times_out_with_504() {
    // Accepts connections, never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(8).flatten().collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(held);
    });
    let comps = Components::new();
    let gate = gate(
        &format!("http://127.0.0.1:{port}/v1"),
        &comps,
        &["--upstream-timeout-ms", "400", "--upstream-retries", "1"],
    );
    let started = Instant::now();
    let r = post_chat(&gate.url, &chat_body("anyone there?", true));
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "upstream_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_stream_without_a_first_token_is_ended_by_its_timeout() {
    let sim = sim(&["--ttft-ms", "3000"]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--upstream-ttft-timeout-ms", "300"],
    );
    let started = Instant::now();
    let resp = post_chat(&gate.url, &chat_body("slow start", true));
    assert_eq!(resp.status(), 200);
    let sse = read_sse(resp);
    assert!(sse.done);
    let last = sse.chunks.last().unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_slow_reading_client_does_not_stall_others() {
    let sim = sim(&[
        "--itl-ms",
        "0",
        "--mode",
        "lorem",
        "--lorem-tokens",
        "20000",
    ]);
    let comps = Components::new();
    comps.add_guard("guard", "guard", None);
    let gate = gate(&format!("{}/v1", sim.url), &comps, &[]);
    // A raw client that sends a big streaming request and never reads.
    let addr = gate.url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).unwrap();
    let body = serde_json::json!({"model": MODEL, "stream": true, "max_tokens": 20000,
        "messages": [{"role": "user", "content": "write a lot"}]})
    .to_string();
    write!(
        slow,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Others are served promptly meanwhile.
    for _ in 0..10 {
        let started = Instant::now();
        let r = post_chat(&gate.url, &chat_body("quick one", false));
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    drop(slow);
}

#[cfg(unix)]
#[test]
fn sigterm_lets_streams_finish_then_exits_zero() {
    let sim = sim(&["--itl-ms", "20"]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--shutdown-grace-ms", "5000"],
    );
    let text = "finish me please ".repeat(10);
    let url = gate.url.clone();
    let body = chat_body(&text, true);
    let t = std::thread::spawn(move || read_sse(post_chat(&url, &body)));
    assert!(wait_until(Duration::from_secs(5), || {
        get_text(&format!("{}/metrics", gate.url)).contains("wasmgate_inflight_streams 1")
    }));
    let status = gate.terminate();
    let sse = t.join().unwrap();
    assert!(sse.done);
    assert_eq!(
        sse.text(),
        text,
        "the open stream finished within the grace period"
    );
    assert_eq!(status, Some(0));
}

#[cfg(unix)]
#[test]
fn sigterm_past_the_grace_period_cuts_streams_cleanly() {
    let sim = sim(&["--itl-ms", "50"]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--shutdown-grace-ms", "300"],
    );
    let text = "a very long answer ".repeat(100);
    let url = gate.url.clone();
    let body = chat_body(&text, true);
    let t = std::thread::spawn(move || read_sse(post_chat(&url, &body)));
    assert!(wait_until(Duration::from_secs(5), || {
        get_text(&format!("{}/metrics", gate.url)).contains("wasmgate_inflight_streams 1")
    }));
    let started = Instant::now();
    let status = gate.terminate();
    let sse = t.join().unwrap();
    assert!(sse.done, "cut streams still end with [DONE]");
    let msg = sse.chunks.last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("shutting down"), "{msg}");
    assert_eq!(status, Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn five_hundred_streams_survive_a_reload_storm() {
    let sim = sim(&["--itl-ms", "10", "--max-num-seqs", "512"]);
    let comps = Components::new();
    comps.add_guard("guard", "guard", None);
    comps.add_guard(
        "banned-words",
        "banned-words",
        Some("[config]\nwords = \"zzz-0\"\n"),
    );
    let gate = gate(&format!("{}/v1", sim.url), &comps, &[]);
    let url = gate.url.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let storm = {
        let guards = comps.guards();
        std::thread::spawn(move || {
            let wasm = std::fs::read(component("banned-words")).unwrap();
            for i in 1..=20 {
                // Alternate new settings and new bytes (a custom section).
                if i % 2 == 0 {
                    std::fs::write(
                        guards.join("banned-words.toml"),
                        format!("[config]\nwords = \"zzz-{i}\"\n"),
                    )
                    .unwrap();
                } else {
                    let mut bytes = wasm.clone();
                    bytes.extend_from_slice(&[0, 5, 3, b'r', b'e', b'v', i as u8]);
                    let tmp = guards.join(".bw.tmp");
                    std::fs::write(&tmp, &bytes).unwrap();
                    std::fs::rename(&tmp, guards.join("banned-words.wasm")).unwrap();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let results: Vec<(u16, bool, String)> = rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    // Spread the starts over the storm.
                    tokio::time::sleep(Duration::from_millis(8 * i)).await;
                    let text = format!("stream number {i} keeps going for a while");
                    let resp = client
                        .post(format!("{url}/v1/chat/completions"))
                        .json(&chat_body(&text, true))
                        .send()
                        .await;
                    let Ok(resp) = resp else {
                        return (0, false, String::new());
                    };
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    let done = body.trim_end().ends_with("data: [DONE]");
                    let ok = done
                        && body.contains("\"finish_reason\":\"stop\"")
                        && !body.contains("\"error\"");
                    (status, ok, body)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    storm.join().unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(s, ok, _)| *s != 200 || !ok)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 500 failed; first: {:?}",
        failed.len(),
        failed.first()
    );
    let page = get_text(&format!("{}/metrics", gate.url));
    assert!(
        metric_sum(
            &page,
            "wasmgate_component_reloads_total",
            &["component=\"banned-words\"", "result=\"replaced\""]
        ) >= 5.0,
        "the storm did reload the guard:\n{page}"
    );
}
