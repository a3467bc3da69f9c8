//! Closed-loop load: N workers, each with its own keep-alive connection,
//! each sending streamed requests back to back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::task::JoinSet;

use crate::ctx::MODEL;
use crate::http::{Conn, Counters, StreamResult, Target};

pub const CHAT: &str = "/v1/chat/completions";

/// A chat request body for [`MODEL`].
pub fn chat_body(stream: bool, max_tokens: u32, content: &str) -> Bytes {
    let mut v = json!({
        "model": MODEL,
        "stream": stream,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    });
    if stream {
        // Every path then ends with a usage chunk (LiteLLM drops it otherwise).
        v["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(v.to_string())
}

/// When the workers of a phase stop.
#[derive(Clone)]
pub enum Until {
    /// Each worker sends this many requests.
    Count(usize),
    /// Workers start no new request once this is set.
    Flag(Arc<AtomicBool>),
}

/// One finished request: when it started (seconds since the phase's epoch)
/// and what happened.
pub struct Sample {
    pub start: f64,
    pub result: StreamResult,
}

/// A closed-loop load: `workers` workers against `target`. Worker `i`
/// connects first, then waits `stagger * i / workers` so the load is spread
/// instead of arriving as one burst. Each request is bounded by `timeout`.
#[derive(Clone)]
pub struct Load {
    pub target: Target,
    pub body: Bytes,
    pub workers: usize,
    pub until: Until,
    pub stagger: Duration,
    pub timeout: Duration,
    /// Sample start times are seconds since this instant.
    pub epoch: Instant,
    pub counters: Arc<Counters>,
}

impl Load {
    pub fn new(target: &Target, body: Bytes, workers: usize, until: Until) -> Self {
        Self {
            target: target.clone(),
            body,
            workers,
            until,
            stagger: Duration::ZERO,
            timeout: Duration::from_secs(120),
            epoch: Instant::now(),
            counters: Arc::default(),
        }
    }

    /// Runs the load to its end.
    pub async fn run(&self) -> Vec<Sample> {
        let mut set = self.spawn();
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(mut v) = r {
                out.append(&mut v);
            }
        }
        out
    }

    /// Starts the workers; abort the set to end the phase (their
    /// connections close mid-stream).
    pub fn spawn(&self) -> JoinSet<Vec<Sample>> {
        let mut set = JoinSet::new();
        for i in 0..self.workers {
            let target = self.target.clone();
            let body = self.body.clone();
            let until = self.until.clone();
            let counters = self.counters.clone();
            let (timeout, epoch) = (self.timeout, self.epoch);
            let delay = self.stagger.mul_f64(i as f64 / self.workers.max(1) as f64);
            set.spawn(async move {
                let mut conn = Conn::new(target.addr);
                let mut out = Vec::new();
                let connected = conn.connect().await;
                tokio::time::sleep(delay).await;
                if let Err(e) = connected {
                    out.push(Sample {
                        start: epoch.elapsed().as_secs_f64(),
                        result: StreamResult {
                            error: Some(format!("{e:#}")),
                            ..Default::default()
                        },
                    });
                    return out;
                }
                let mut n = 0;
                loop {
                    match &until {
                        Until::Count(k) if n >= *k => break,
                        Until::Flag(f) if f.load(Ordering::Relaxed) => break,
                        _ => {}
                    }
                    n += 1;
                    let start = epoch.elapsed().as_secs_f64();
                    let req = target.post(CHAT, body.clone());
                    let result = match tokio::time::timeout(
                        timeout,
                        conn.stream(req, Some(&counters)),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => {
                            conn.reset();
                            StreamResult {
                                error: Some(format!("no answer within {timeout:?}")),
                                total: timeout,
                                ..Default::default()
                            }
                        }
                    };
                    out.push(Sample { start, result });
                }
                out
            });
        }
        set
    }
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Up to `n` distinct error messages of failed samples.
pub fn first_errors<'a>(samples: impl Iterator<Item = &'a StreamResult>, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in samples.filter(|r| !r.ok()) {
        let msg = r.error.clone().unwrap_or_else(|| {
            if r.content_filter {
                "finish_reason content_filter".into()
            } else {
                format!("status {} done {} ttft {:?}", r.status, r.done, r.ttft)
            }
        });
        let msg: String = msg.chars().take(200).collect();
        if !out.contains(&msg) {
            out.push(msg);
        }
        if out.len() >= n {
            break;
        }
    }
    out
}
