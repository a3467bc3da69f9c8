//! The simulated engine: admission (`--max-num-seqs`), prefill/decode timing,
//! answer generation, failure injection and per-request metrics.
//!
//! Every request is tracked by a [`Lifecycle`]. Its `Drop` settles whatever
//! was not settled explicitly (as `finished_reason="abort"`), so the running
//! and waiting gauges and the KV usage return to zero on every path: client
//! disconnects, dropped futures, panics and shutdown included.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::metrics::{CacheInfo, FinishReason, Metrics};
use crate::script::{Message, Script};
use crate::tokenizer;
use crate::wire::{self, ChunkWriter, Usage};

/// What the simulated model answers (when no `--script` rule applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The last user message, verbatim.
    Echo,
    /// Lorem-ipsum words (`--lorem-tokens`).
    Lorem,
}

/// How an injected failure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailMode {
    /// A 500 JSON error before anything is streamed.
    Http500,
    /// An error event and `[DONE]` after `--fail-after-tokens` content chunks.
    Midstream,
    /// The connection is cut after `--fail-after-tokens` content chunks.
    Drop,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model: String,
    pub mode: Mode,
    pub lorem_tokens: usize,
    pub ttft: Duration,
    pub itl: Duration,
    pub max_model_len: u32,
    pub max_num_seqs: usize,
    pub fail_rate: f64,
    pub fail_mode: FailMode,
    pub fail_after_tokens: usize,
    pub seed: Option<u64>,
    /// Scripted replies, tried before `mode`.
    pub script: Option<Arc<Script>>,
}

/// Chunk-stream options from `stream_options`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOpts {
    pub include_usage: bool,
    pub continuous_usage: bool,
}

/// Fills a scripted reply's placeholders: `{{system}}` (the first system
/// message: a model that leaks its prompt), `{{last_user}}` (the last user
/// message) and `{{last_user_json}}` (the same as a JSON string literal, for
/// scripted tool calls).
fn expand(reply: &str, messages: &[Message]) -> String {
    let text_of = |role: &str, last: bool| {
        let mut it = messages.iter().filter(|m| m.role == role);
        let m = if last { it.next_back() } else { it.next() };
        m.map_or("", |m| m.text.as_str()).to_owned()
    };
    let last_user = text_of("user", true);
    reply
        .replace("{{system}}", &text_of("system", false))
        .replace(
            "{{last_user_json}}",
            &serde_json::to_string(&last_user).unwrap_or_default(),
        )
        .replace("{{last_user}}", &last_user)
}

/// What one request will produce.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tokens: Vec<String>,
    /// `Stop`, or `Length` when `max_tokens` cut the answer.
    pub finish: FinishReason,
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    pub fault: Option<FailMode>,
}

/// The outcome of a non-streaming generation.
#[derive(Debug)]
pub enum Outcome {
    Done {
        content: String,
        finish: FinishReason,
        usage: Usage,
    },
    /// An injected mid-generation engine error (answered with a 500).
    Failed(String),
    /// An injected connection drop.
    Dropped,
}

/// The simulated engine, shared by all requests.
pub struct Engine {
    pub cfg: EngineConfig,
    pub metrics: Metrics,
    /// One permit per sequence slot (`--max-num-seqs`).
    slots: Arc<Semaphore>,
    rng: Mutex<StdRng>,
    /// Tokens held by running requests (`vllm:kv_cache_usage_perc`).
    kv_tokens: AtomicU64,
    kv_capacity: u64,
}

/// Words of the lorem-ipsum generator.
const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
];

impl Engine {
    pub fn new(cfg: EngineConfig) -> prometheus::Result<Self> {
        let kv_capacity = (u64::from(cfg.max_model_len) * cfg.max_num_seqs as u64 / 4).max(1);
        let metrics = Metrics::new(
            &cfg.model,
            cfg.max_model_len,
            &CacheInfo {
                num_gpu_blocks: kv_capacity.div_ceil(16),
            },
        )?;
        let rng = match cfg.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            slots: Arc::new(Semaphore::new(cfg.max_num_seqs.max(1))),
            rng: Mutex::new(rng),
            kv_tokens: AtomicU64::new(0),
            kv_capacity,
            metrics,
            cfg,
        })
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut guard = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Requests in flight (running + waiting), for `GET /load`.
    pub fn load(&self) -> u64 {
        (self.metrics.running.get() + self.metrics.waiting.get()).max(0.0) as u64
    }

    /// Refreshes the KV gauge and renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let used = self.kv_tokens.load(Ordering::Relaxed) as f64;
        let perc = (used / self.kv_capacity as f64).clamp(0.0, 1.0);
        self.metrics.kv_cache_usage.set(perc);
        self.metrics.render()
    }

    /// Decides the answer, the finish reason and whether the request fails.
    /// A scripted reply may contain `{{system}}`, replaced by the request's
    /// first system message.
    ///
    /// The answer is the reply of the first `--script` rule that applies to
    /// `messages` (using up a once-only rule), else what `--mode` says.
    pub fn plan(&self, prompt_tokens: u64, max_tokens: u64, messages: &[Message]) -> Plan {
        let scripted = self.cfg.script.as_ref().and_then(|s| s.reply(messages));
        let echo = |text: &str| {
            tokenizer::tokenize(text)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let mut tokens: Vec<String> = match (scripted, self.cfg.mode) {
            (Some(reply), _) if reply.contains("{{") => echo(&expand(reply, messages)),
            (Some(reply), _) => echo(reply),
            (None, Mode::Echo) => {
                let last_user = messages.iter().rev().find(|m| m.role == "user");
                echo(last_user.map_or("", |m| m.text.as_str()))
            }
            (None, Mode::Lorem) => self.lorem(self.cfg.lorem_tokens),
        };
        let finish = if tokens.len() as u64 > max_tokens {
            tokens.truncate(usize::try_from(max_tokens).unwrap_or(usize::MAX));
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let fail_rate = self.cfg.fail_rate;
        let fault = (fail_rate > 0.0 && self.with_rng(|r| r.random::<f64>()) < fail_rate)
            .then_some(self.cfg.fail_mode);
        Plan {
            tokens,
            finish,
            prompt_tokens,
            max_tokens,
            fault,
        }
    }

    fn lorem(&self, n: usize) -> Vec<String> {
        let mut text = String::new();
        let mut count = 0;
        self.with_rng(|rng| {
            while count < n {
                let mut sentence = String::new();
                let words = rng.random_range(6..=14);
                for w in 0..words {
                    let word = LOREM[rng.random_range(0..LOREM.len())];
                    if w == 0 {
                        if !text.is_empty() {
                            sentence.push(' ');
                        }
                        let mut chars = word.chars();
                        if let Some(first) = chars.next() {
                            sentence.extend(first.to_uppercase());
                            sentence.push_str(chars.as_str());
                        }
                    } else {
                        sentence.push(' ');
                        sentence.push_str(word);
                        if w + 1 < words && rng.random_range(0..8) == 0 {
                            sentence.push(',');
                        }
                    }
                }
                sentence.push('.');
                count += tokenizer::count(&sentence);
                text.push_str(&sentence);
            }
        });
        tokenizer::tokenize(&text)
            .into_iter()
            .take(n)
            .map(str::to_owned)
            .collect()
    }

    /// Enters the queue: the request counts as waiting until admitted.
    pub fn start(self: &Arc<Self>, plan: &Plan) -> Lifecycle {
        self.metrics.waiting.inc();
        Lifecycle {
            engine: Arc::clone(self),
            arrival: Instant::now(),
            phase: Phase::Waiting,
            permit: None,
            scheduled: None,
            first_token: None,
            last_token: None,
            generated: 0,
            prompt_tokens: plan.prompt_tokens,
            max_tokens: plan.max_tokens,
            kv_held: 0,
        }
    }

    fn fault_message(&self, after: usize) -> String {
        format!("vllm-sim: injected engine failure after {after} tokens")
    }

    /// Generates a streamed answer into `tx` (SSE events, one per item).
    ///
    /// Stops as soon as the receiver is gone; the lifecycle then settles the
    /// request as `abort` when it is dropped.
    pub async fn run_stream(
        &self,
        mut lc: Lifecycle,
        plan: Plan,
        writer: ChunkWriter,
        opts: StreamOpts,
        tx: mpsc::Sender<Result<Bytes, io::Error>>,
    ) {
        let admitted = tokio::select! {
            ok = lc.admit() => ok,
            () = tx.closed() => return,
        };
        if !admitted {
            lc.finish(FinishReason::Error);
            let msg = "vllm-sim: engine is shutting down";
            let _ = send(
                &tx,
                wire::stream_error_event(msg, "InternalServerError", 500),
            )
            .await;
            let _ = send(&tx, wire::DONE.to_owned()).await;
            return;
        }
        if sleep_or_closed(self.cfg.ttft, &tx).await {
            return;
        }
        let prompt = plan.prompt_tokens;
        let running_usage = |n: usize| {
            opts.continuous_usage.then_some(Usage {
                prompt_tokens: prompt,
                completion_tokens: n as u64,
            })
        };
        if !send(&tx, writer.role(running_usage(0))).await {
            return;
        }
        let n = plan.tokens.len();
        let fail_at = plan
            .fault
            .map(|mode| (mode, self.cfg.fail_after_tokens.min(n)));
        for i in 0..=n {
            if let Some((mode, at)) = fail_at
                && at == i
            {
                lc.finish(FinishReason::Error);
                if mode == FailMode::Drop {
                    // hyper discards what it has buffered but not written when
                    // the body fails: let it write the chunks sent so far.
                    flushed(&tx).await;
                    let _ = tx
                        .send(Err(io::Error::other("vllm-sim: injected connection drop")))
                        .await;
                } else {
                    let msg = self.fault_message(i);
                    let _ = send(
                        &tx,
                        wire::stream_error_event(&msg, "InternalServerError", 500),
                    )
                    .await;
                    let _ = send(&tx, wire::DONE.to_owned()).await;
                }
                return;
            }
            let Some(token) = plan.tokens.get(i) else {
                break;
            };
            if i > 0 {
                if !self.cfg.itl.is_zero() {
                    if sleep_or_closed(self.cfg.itl, &tx).await {
                        return;
                    }
                } else if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            lc.token();
            if !send(&tx, writer.content(token, running_usage(i + 1))).await {
                return;
            }
        }
        lc.finish(plan.finish);
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: n as u64,
        };
        if !send(&tx, writer.last(plan.finish.as_str(), running_usage(n))).await {
            return;
        }
        if opts.include_usage && !send(&tx, writer.usage(usage)).await {
            return;
        }
        let _ = send(&tx, wire::DONE.to_owned()).await;
    }

    /// Generates a whole answer (non-streaming). Dropping the future settles
    /// the request as `abort`.
    pub async fn run_blocking(&self, mut lc: Lifecycle, plan: Plan) -> Outcome {
        if !lc.admit().await {
            lc.finish(FinishReason::Error);
            return Outcome::Failed("vllm-sim: engine is shutting down".into());
        }
        tokio::time::sleep(self.cfg.ttft).await;
        let n = plan.tokens.len();
        let fail_at = plan
            .fault
            .map(|mode| (mode, self.cfg.fail_after_tokens.min(n)));
        let mut content = String::new();
        for i in 0..=n {
            if let Some((mode, at)) = fail_at
                && at == i
            {
                lc.finish(FinishReason::Error);
                return match mode {
                    FailMode::Drop => Outcome::Dropped,
                    _ => Outcome::Failed(self.fault_message(i)),
                };
            }
            let Some(token) = plan.tokens.get(i) else {
                break;
            };
            if i > 0 {
                if !self.cfg.itl.is_zero() {
                    tokio::time::sleep(self.cfg.itl).await;
                } else if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            lc.token();
            content.push_str(token);
        }
        lc.finish(plan.finish);
        Outcome::Done {
            content,
            finish: plan.finish,
            usage: Usage {
                prompt_tokens: plan.prompt_tokens,
                completion_tokens: n as u64,
            },
        }
    }
}

async fn send(tx: &mpsc::Sender<Result<Bytes, io::Error>>, event: String) -> bool {
    tx.send(Ok(Bytes::from(event))).await.is_ok()
}

/// Waits until the body has taken every queued event and had time to write
/// it out (or the receiver is gone).
async fn flushed(tx: &mpsc::Sender<Result<Bytes, io::Error>>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tx.capacity() < tx.max_capacity() && !tx.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Sleeps for `d`; returns `true` (early) if the receiver went away.
async fn sleep_or_closed(d: Duration, tx: &mpsc::Sender<Result<Bytes, io::Error>>) -> bool {
    if d.is_zero() {
        return tx.is_closed();
    }
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = tx.closed() => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Finished,
}

/// One request's passage through the engine, with its metrics.
pub struct Lifecycle {
    engine: Arc<Engine>,
    arrival: Instant,
    phase: Phase,
    permit: Option<OwnedSemaphorePermit>,
    scheduled: Option<Instant>,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    generated: u64,
    prompt_tokens: u64,
    max_tokens: u64,
    kv_held: u64,
}

impl Lifecycle {
    /// Waits for a free sequence slot; `false` if the engine is closed.
    pub async fn admit(&mut self) -> bool {
        if self.phase != Phase::Waiting {
            return self.phase == Phase::Running;
        }
        let Ok(permit) = Arc::clone(&self.engine.slots).acquire_owned().await else {
            return false;
        };
        let m = &self.engine.metrics;
        m.waiting.dec();
        m.running.inc();
        m.prompt_tokens.inc_by(self.prompt_tokens as f64);
        self.permit = Some(permit);
        self.phase = Phase::Running;
        self.scheduled = Some(Instant::now());
        self.hold_kv(self.prompt_tokens);
        true
    }

    fn hold_kv(&mut self, n: u64) {
        self.kv_held += n;
        self.engine.kv_tokens.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one generated token.
    pub fn token(&mut self) {
        let now = Instant::now();
        let m = &self.engine.metrics;
        match self.last_token {
            None => {
                self.first_token = Some(now);
                m.ttft.observe(secs(now - self.arrival));
            }
            Some(last) => m.itl.observe(secs(now - last)),
        }
        self.last_token = Some(now);
        self.generated += 1;
        m.generation_tokens.inc();
        self.hold_kv(1);
    }

    /// Settles the request once; later calls do nothing.
    pub fn finish(&mut self, reason: FinishReason) {
        let m = &self.engine.metrics;
        match self.phase {
            Phase::Finished => return,
            Phase::Waiting => m.waiting.dec(),
            Phase::Running => m.running.dec(),
        }
        self.phase = Phase::Finished;
        self.permit = None;
        self.engine
            .kv_tokens
            .fetch_sub(self.kv_held, Ordering::Relaxed);
        self.kv_held = 0;

        let now = Instant::now();
        let scheduled = self.scheduled.unwrap_or(now);
        let first = self.first_token.unwrap_or(now);
        let last = self.last_token.unwrap_or(first);
        m.success(reason).inc();
        m.e2e.observe(secs(now - self.arrival));
        m.queue.observe(secs(scheduled - self.arrival));
        if self.scheduled.is_some() {
            m.prefill
                .observe(secs(first.saturating_duration_since(scheduled)));
            m.decode
                .observe(secs(last.saturating_duration_since(first)));
            m.inference
                .observe(secs(last.saturating_duration_since(scheduled)));
        } else {
            m.prefill.observe(0.0);
            m.decode.observe(0.0);
            m.inference.observe(0.0);
        }
        m.request_prompt_tokens.observe(self.prompt_tokens as f64);
        m.request_generation_tokens.observe(self.generated as f64);
        m.request_max_tokens.observe(self.max_tokens as f64);
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if self.phase != Phase::Finished {
            tracing::debug!("request aborted");
            self.finish(FinishReason::Abort);
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(mode: Mode, max_num_seqs: usize) -> Arc<Engine> {
        scripted(mode, max_num_seqs, None)
    }

    fn scripted(mode: Mode, max_num_seqs: usize, script: Option<&str>) -> Arc<Engine> {
        Arc::new(
            Engine::new(EngineConfig {
                model: "m".into(),
                mode,
                lorem_tokens: 20,
                ttft: Duration::ZERO,
                itl: Duration::ZERO,
                max_model_len: 4096,
                max_num_seqs,
                fail_rate: 0.0,
                fail_mode: FailMode::Http500,
                fail_after_tokens: 3,
                seed: Some(7),
                script: script.map(|s| Arc::new(Script::parse(s).expect("script"))),
            })
            .expect("engine"),
        )
    }

    fn user(text: &str) -> Vec<Message> {
        vec![Message {
            role: "user".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn plan_caps_by_max_tokens() {
        let e = engine(Mode::Echo, 4);
        let p = e.plan(10, 100, &user("hello world"));
        assert_eq!(p.tokens, ["hello", " world"]);
        assert_eq!(p.finish, FinishReason::Stop);
        let p = e.plan(10, 1, &user("hello world"));
        assert_eq!(p.tokens, ["hello"]);
        assert_eq!(p.finish, FinishReason::Length);
    }

    #[test]
    fn lorem_has_requested_length() {
        let e = engine(Mode::Lorem, 4);
        let p = e.plan(10, 1000, &[]);
        assert_eq!(p.tokens.len(), 20);
        assert!(p.tokens[0].starts_with(char::is_uppercase));
        assert_eq!(p.finish, FinishReason::Stop);
        let p = e.plan(10, 5, &[]);
        assert_eq!(p.tokens.len(), 5);
        assert_eq!(p.finish, FinishReason::Length);
    }

    #[test]
    fn echo_uses_the_last_user_message() {
        let e = engine(Mode::Echo, 4);
        let mut convo = user("first");
        convo.extend(user("second"));
        convo.push(Message {
            role: "tool".into(),
            text: "tool output".into(),
        });
        assert_eq!(e.plan(10, 100, &convo).tokens, ["second"]);
    }

    #[test]
    fn script_reply_wins_over_mode_and_is_capped() {
        let script = r#"[{"match": "ping", "reply": "pong pong pong"}]"#;
        for mode in [Mode::Echo, Mode::Lorem] {
            let e = scripted(mode, 4, Some(script));
            let p = e.plan(10, 100, &user("ping?"));
            assert_eq!(p.tokens, ["pong", " pong", " pong"]);
            assert_eq!(p.finish, FinishReason::Stop);
            let p = e.plan(10, 2, &user("ping?"));
            assert_eq!(p.tokens, ["pong", " pong"]);
            assert_eq!(p.finish, FinishReason::Length);
        }
        // No rule applies: back to the mode.
        let e = scripted(Mode::Echo, 4, Some(script));
        assert_eq!(e.plan(10, 100, &user("hello")).tokens, ["hello"]);
        let e = scripted(Mode::Lorem, 4, Some(script));
        assert_eq!(e.plan(10, 100, &user("hello")).tokens.len(), 20);
    }

    #[tokio::test]
    async fn dropped_lifecycle_settles_as_abort() {
        let e = engine(Mode::Echo, 1);
        let plan = e.plan(5, 10, &user("hi"));
        let mut first = e.start(&plan);
        assert!(first.admit().await);
        let second = e.start(&plan);
        assert_eq!(e.metrics.running.get(), 1.0);
        assert_eq!(e.metrics.waiting.get(), 1.0);
        drop(second);
        assert_eq!(e.metrics.waiting.get(), 0.0);
        first.token();
        drop(first);
        assert_eq!(e.metrics.running.get(), 0.0);
        assert_eq!(e.metrics.success(FinishReason::Abort).get(), 2.0);
        assert_eq!(e.kv_tokens.load(Ordering::Relaxed), 0);
    }
}
