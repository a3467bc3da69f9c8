//! Test harness: real `vllm-sim` and `wasmgate` processes on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The default model name vllm-sim serves in these tests.
pub const MODEL: &str = "test-model";

/// A child process killed on drop.
pub struct Proc {
    child: Child,
    pub url: String,
}

impl Proc {
    /// Sends SIGTERM and waits (bounded) for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// A built guest component (`make components` builds them).
pub fn component(name: &str) -> PathBuf {
    let file = name.replace('-', "_");
    let p = target_dir()
        .join("wasm32-wasip2/component")
        .join(format!("{file}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `make components` first",
        p.display()
    );
    p
}

/// Spawns `bin args` and waits (bounded) for its `listening on URL` line.
fn spawn(bin: &Path, args: &[String]) -> Proc {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{} did not report its address", bin.display()));
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from {}: {line:?}", bin.display()))
        .to_owned();
    Proc { child, url }
}

/// Starts vllm-sim (echo mode, fast) with extra flags.
pub fn sim(extra: &[&str]) -> Proc {
    let bin = target_dir().join("debug/vllm-sim");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p vllm-sim`",
        bin.display()
    );
    let defaults = [
        ("--port", "0"),
        ("--model", MODEL),
        ("--mode", "echo"),
        ("--ttft-ms", "5"),
        ("--itl-ms", "1"),
    ];
    let mut args: Vec<String> = Vec::new();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(&bin, &args)
}

/// A components folder with `guards/` and `agents/`.
pub struct Components {
    pub dir: tempfile::TempDir,
}

impl Components {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("guards")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("agents")).expect("mkdir");
        Self { dir }
    }

    pub fn guards(&self) -> PathBuf {
        self.dir.path().join("guards")
    }

    /// Installs a built component as guard `name`, with an optional `NAME.toml`.
    /// The copy goes through a hidden temp file and a rename, as a careful
    /// operator would deploy.
    pub fn add_guard(&self, component_name: &str, name: &str, toml: Option<&str>) {
        if let Some(t) = toml {
            std::fs::write(self.guards().join(format!("{name}.toml")), t).expect("toml");
        }
        let tmp = self.guards().join(format!(".{name}.tmp"));
        std::fs::copy(component(component_name), &tmp).expect("copy");
        std::fs::rename(&tmp, self.guards().join(format!("{name}.wasm"))).expect("rename");
    }

    pub fn remove_guard(&self, name: &str) {
        std::fs::remove_file(self.guards().join(format!("{name}.wasm"))).expect("remove");
    }
}

/// Starts wasmgate in front of `upstream` (an OpenAI base URL).
pub fn gate(upstream: &str, components: &Components, extra: &[&str]) -> Proc {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wasmgate"));
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        upstream.into(),
        "--components".into(),
        components.dir.path().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(&bin, &args)
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

pub fn chat_body(content: &str, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "stream": stream,
        "messages": [{ "role": "user", "content": content }],
    })
}

pub fn post_chat(base: &str, body: &Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .expect("request")
}

/// A parsed SSE stream.
#[derive(Debug, Default)]
pub struct Sse {
    pub chunks: Vec<Value>,
    pub done: bool,
}

impl Sse {
    /// Concatenated `delta.content` of choice 0.
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect()
    }

    /// Non-empty content pieces.
    pub fn pieces(&self) -> Vec<String> {
        self.chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.chunks
            .iter()
            .rev()
            .find_map(|c| {
                c.pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
    }
}

/// Reads a whole SSE response.
pub fn read_sse(resp: reqwest::blocking::Response) -> Sse {
    let mut out = Sse::default();
    for line in BufReader::new(resp).lines() {
        let line = line.expect("read line");
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        assert!(!out.done, "data after [DONE]: {data}");
        if data == "[DONE]" {
            out.done = true;
        } else {
            out.chunks.push(
                serde_json::from_str(data).unwrap_or_else(|e| panic!("bad chunk {data}: {e}")),
            );
        }
    }
    out
}

pub fn get_text(url: &str) -> String {
    client().get(url).send().expect("get").text().expect("text")
}

/// The value of one sample in a Prometheus text page (labels as written, in order).
pub fn metric(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series == name_and_labels).then(|| value.parse().ok())?
    })
}

/// Sum of every sample of `name` whose labels contain all of `labels`.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|lab| rest.contains(lab)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
