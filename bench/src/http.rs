//! A lean HTTP/1.1 client for the load generator: one keep-alive connection
//! per worker (hyper's low-level `conn` API, no pool), and an SSE scanner
//! that classifies events with byte searches instead of JSON parsing, so
//! the harness stays much cheaper per chunk than the gateways it measures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use memchr::memmem;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub type Body = Full<Bytes>;

/// Where requests go: vllm-sim directly, a gateway, or a peer.
#[derive(Debug, Clone)]
pub struct Target {
    /// `direct`, `wasmgate`, `litellm`, ...
    pub label: String,
    pub addr: SocketAddr,
    /// `Authorization` header value, if the target needs one.
    pub auth: Option<String>,
    /// The process whose CPU and memory count for this target (none: direct).
    pub pid: Option<u32>,
    /// Count the CPU of the process's children too (Python peers).
    pub tree: bool,
}

impl Target {
    pub fn new(label: &str, addr: SocketAddr, pid: Option<u32>) -> Self {
        Self {
            label: label.to_owned(),
            addr,
            auth: None,
            pid,
            tree: false,
        }
    }

    pub fn post(&self, path: &str, body: Bytes) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(a) = &self.auth {
            b = b.header(AUTHORIZATION, a.as_str());
        }
        b.body(Full::new(body)).expect("static request parts")
    }

    pub fn get(&self, path: &str) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, self.addr.to_string());
        if let Some(a) = &self.auth {
            b = b.header(AUTHORIZATION, a.as_str());
        }
        b.body(Full::new(Bytes::new()))
            .expect("static request parts")
    }
}

/// `http://127.0.0.1:1234` (any path ignored) → the socket address.
pub fn parse_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http:// URL: {url}"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .parse()
        .with_context(|| format!("not host:port: {hostport}"))
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Body>>,
    task: Option<JoinHandle<()>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: None,
            task: None,
        }
    }

    /// Opens the connection now (so the handshake is not timed).
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        self.reset();
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        self.task = Some(tokio::spawn(async move {
            let _ = conn.await;
        }));
        self.sender = Some(sender);
        Ok(())
    }

    /// Drops the connection (an unfinished response aborts upstream).
    pub fn reset(&mut self) {
        self.sender = None;
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn ready(&mut self) -> anyhow::Result<&mut SendRequest<Body>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        Ok(sender)
    }

    /// Sends a request and reads the whole body.
    pub async fn unary(&mut self, req: Request<Body>) -> anyhow::Result<(u16, Bytes)> {
        let result = async {
            let resp = self.ready().await?.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((status, body))
        }
        .await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Sends a streaming request and scans its SSE body to the end.
    /// `counters`, when given, are updated as events arrive (relay
    /// throughput and the memory scenario count with them).
    pub async fn stream(
        &mut self,
        req: Request<Body>,
        counters: Option<&Counters>,
    ) -> StreamResult {
        let started = Instant::now();
        let mut r = StreamResult::default();
        let outcome = async {
            let resp = self.ready().await?.send_request(req).await?;
            r.status = resp.status().as_u16();
            let mut body = resp.into_body();
            if r.status != 200 {
                let bytes = body.collect().await?.to_bytes();
                bail!(
                    "HTTP {}: {}",
                    r.status,
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                );
            }
            let mut sse = SseScanner::default();
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                sse.feed(data, |ev| {
                    if r.first_event.is_none() {
                        r.first_event = Some(started.elapsed());
                    }
                    match ev {
                        Event::Content(len) => {
                            if r.ttft.is_none() {
                                r.ttft = Some(started.elapsed());
                                if let Some(c) = counters {
                                    c.first.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            r.chunks += 1;
                            r.content_bytes += len as u64;
                            if let Some(c) = counters {
                                c.events.fetch_add(1, Ordering::Relaxed);
                                c.bytes.fetch_add(len as u64, Ordering::Relaxed);
                            }
                        }
                        Event::Done => r.done = true,
                        Event::Error(msg) => r.error = Some(msg),
                        Event::Usage(n) => r.usage_tokens = Some(n),
                        Event::ContentFilter => r.content_filter = true,
                        Event::Other => {}
                    }
                });
            }
            Ok(())
        }
        .await;
        r.total = started.elapsed();
        if let Err(e) = outcome {
            r.error.get_or_insert_with(|| format!("{e:#}"));
            self.reset();
        } else if !r.done {
            r.error
                .get_or_insert_with(|| "stream ended without [DONE]".into());
            self.reset();
        }
        r
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reset();
    }
}

/// What one streamed request did.
#[derive(Debug, Default, Clone)]
pub struct StreamResult {
    pub status: u16,
    /// Time to the first event with non-empty `content`.
    pub ttft: Option<Duration>,
    /// Time to the first `data:` event of any kind (vLLM's role chunk).
    pub first_event: Option<Duration>,
    pub total: Duration,
    /// Events with non-empty content.
    pub chunks: u64,
    /// Bytes of those contents (as JSON-escaped on the wire).
    pub content_bytes: u64,
    /// `usage.completion_tokens` of the usage chunk.
    pub usage_tokens: Option<u64>,
    pub done: bool,
    pub error: Option<String>,
    /// A `finish_reason` of `content_filter` was seen.
    pub content_filter: bool,
}

impl StreamResult {
    /// A complete, successful, unfiltered stream.
    pub fn ok(&self) -> bool {
        self.status == 200
            && self.done
            && self.error.is_none()
            && !self.content_filter
            && self.ttft.is_some()
    }
}

/// One classified SSE `data:` line.
#[derive(Debug, PartialEq)]
enum Event {
    /// Non-empty content of this many (escaped) bytes.
    Content(usize),
    Done,
    Error(String),
    Usage(u64),
    ContentFilter,
    Other,
}

/// Splits a byte stream into lines and classifies `data:` payloads.
#[derive(Default)]
struct SseScanner {
    buf: Vec<u8>,
}

impl SseScanner {
    fn feed(&mut self, data: &[u8], mut on: impl FnMut(Event)) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(payload) = line.strip_prefix(b"data:") {
                classify(payload.trim_ascii_start(), &mut on);
            }
            start += pos + 1;
        }
        self.buf.drain(..start);
    }
}

fn classify(p: &[u8], on: &mut impl FnMut(Event)) {
    if p == b"[DONE]" {
        return on(Event::Done);
    }
    let head = &p[..p.len().min(16)];
    if memmem::find(head, b"\"error\"").is_some() {
        return on(Event::Error(
            String::from_utf8_lossy(&p[..p.len().min(300)]).into_owned(),
        ));
    }
    let mut any = false;
    if let Some(i) = memmem::find(p, b"\"content\":") {
        let rest = p[i + 10..].trim_ascii_start();
        if rest.len() >= 2 && rest[0] == b'"' && rest[1] != b'"' {
            on(Event::Content(string_len(&rest[1..])));
            any = true;
        }
    }
    if memmem::find(p, b"\"content_filter\"").is_some() {
        on(Event::ContentFilter);
        any = true;
    }
    if let Some(i) = memmem::find(p, b"\"completion_tokens\":") {
        let rest = p[i + 20..].trim_ascii_start();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(n) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            on(Event::Usage(n));
            any = true;
        }
    }
    if !any {
        on(Event::Other);
    }
}

/// Length of a JSON string's escaped body, up to its closing quote.
fn string_len(s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    s.len()
}

/// Shared counters that workers update as events arrive.
#[derive(Default)]
pub struct Counters {
    /// Content events received.
    pub events: AtomicU64,
    /// Bytes of content received.
    pub bytes: AtomicU64,
    /// Streams that received their first content event.
    pub first: AtomicU64,
}

/// `GET path` on a fresh connection; the body as text.
pub async fn get_text(target: &Target, path: &str) -> anyhow::Result<String> {
    let mut c = Conn::new(target.addr);
    let (status, body) = c.unary(target.get(path)).await?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sum of the samples of `name` whose label set contains every `labels`
/// fragment (e.g. `component="guard"`), from a Prometheus text page.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let end = l.find(['{', ' '])?;
            if &l[..end] != name {
                return None;
            }
            let (series, value) = l.rsplit_once(' ')?;
            if !labels.iter().all(|f| series.contains(f)) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[&[u8]]) -> Vec<Event> {
        let mut s = SseScanner::default();
        let mut out = Vec::new();
        for part in input {
            s.feed(part, |e| out.push(e));
        }
        out
    }

    #[test]
    fn classifies_vllm_and_python_style_events() {
        let ev = events(&[
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":\" Lor",
            b"em\"}}]}\n\ndata: {\"choices\": [{\"delta\": {\"content\": \"x\"}}]}\r\n\r\n",
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":12}}\n\n",
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n",
            b"data: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\\\"b\"}}]}\n",
        ]);
        assert_eq!(ev[0], Event::Other);
        assert_eq!(ev[1], Event::Content(6));
        assert_eq!(ev[2], Event::Content(1));
        assert_eq!(ev[3], Event::Usage(12));
        assert_eq!(ev[4], Event::ContentFilter);
        assert!(matches!(ev[5], Event::Error(_)));
        assert_eq!(ev[6], Event::Done);
        assert_eq!(ev[7], Event::Content(4));
    }

    #[test]
    fn sums_metric_samples_by_label_fragments() {
        let page = "# HELP x y\nwasmgate_a{component=\"guard\",export=\"push\"} 2\nwasmgate_a{component=\"guard\",export=\"finish\"} 3\nwasmgate_a_sum 9\nwasmgate_b 1.5\n";
        assert_eq!(
            metric_sum(page, "wasmgate_a", &["component=\"guard\""]),
            5.0
        );
        assert_eq!(metric_sum(page, "wasmgate_a", &["export=\"push\""]), 2.0);
        assert_eq!(metric_sum(page, "wasmgate_b", &[]), 1.5);
        assert_eq!(parse_addr("http://127.0.0.1:80/v1").unwrap().port(), 80);
    }
}
