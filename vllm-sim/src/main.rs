//! `vllm-sim`: a vLLM OpenAI-server simulator.
//!
//! Same SSE wire format, error shapes and `vllm:*` metrics as vLLM, with a toy
//! tokenizer and configurable latency and failures instead of a GPU.
//! After binding it prints exactly one line to stdout,
//! `listening on http://ADDR`; logs go to stderr.

mod engine;
mod metrics;
mod script;
mod server;
mod tokenizer;
mod wire;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;

use crate::engine::{Engine, EngineConfig, FailMode, Mode};
use crate::script::Script;

#[derive(Debug, Parser)]
#[command(name = "vllm-sim", version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "VLLM_SIM_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free port.
    #[arg(long, env = "VLLM_SIM_PORT", default_value_t = 8000)]
    port: u16,
    /// Served model name.
    #[arg(
        long,
        env = "VLLM_SIM_MODEL",
        default_value = "Qwen/Qwen2.5-0.5B-Instruct"
    )]
    model: String,
    /// What the model answers when no --script rule applies.
    #[arg(long, env = "VLLM_SIM_MODE", value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Scripted replies: a JSON file of rules, read once at start.
    ///
    /// The file is an array of rules:
    ///   [{"match": "weather in Paris", "reply": "<tool_call>...</tool_call>"},
    ///    {"match": "\"temp\":", "reply": "It is sunny.", "role": "tool", "repeat": false},
    ///    {"match": "You are a pirate", "reply": "Arr.", "match_any_message": true}]
    ///
    /// For each chat request the first rule that applies gives the answer,
    /// streamed (or returned whole) exactly like echo mode, max_tokens cut
    /// included. A rule applies when "match" (case-sensitive; "" matches
    /// anything) is a substring of the text of the request's last message, or
    /// of any message with "match_any_message": true; and when "role" ("user",
    /// "tool" or "any", the default) accepts the role of the last message. A
    /// rule with "repeat": false (default true) answers one request, then is
    /// skipped. Message text is the content string, or its text parts joined
    /// by newlines. When no rule applies, --mode answers. A once-only rule is
    /// used up by the first request it answers, even if that request then
    /// fails (--fail-rate) or is aborted. An unreadable or invalid file stops
    /// the start with exit code 2. In a reply, {{system}} stands for the
    /// request's first system message (a model that leaks its prompt),
    /// {{last_user}} for the last user message and {{last_user_json}} for the
    /// same as a JSON string (scripted tool calls).
    #[arg(
        long,
        env = "VLLM_SIM_SCRIPT",
        value_name = "FILE",
        verbatim_doc_comment
    )]
    script: Option<PathBuf>,
    /// Answer length in lorem mode (capped by max_tokens).
    #[arg(long, env = "VLLM_SIM_LOREM_TOKENS", default_value_t = 64)]
    lorem_tokens: usize,
    /// Time to first token, in milliseconds (after admission).
    #[arg(long, env = "VLLM_SIM_TTFT_MS", default_value_t = 50)]
    ttft_ms: u64,
    /// Inter-token latency, in milliseconds; 0 sends as fast as possible.
    #[arg(long, env = "VLLM_SIM_ITL_MS", default_value_t = 10)]
    itl_ms: u64,
    /// Context length: prompt + max_tokens must fit.
    #[arg(long, env = "VLLM_SIM_MAX_MODEL_LEN", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_model_len: u32,
    /// Requests running at once; more wait (vllm:num_requests_waiting).
    #[arg(long, env = "VLLM_SIM_MAX_NUM_SEQS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_num_seqs: u32,
    /// Probability (0..1) that a request fails.
    #[arg(long, env = "VLLM_SIM_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// How a failing request fails.
    #[arg(long, env = "VLLM_SIM_FAIL_MODE", value_enum, default_value_t = FailMode::Http500)]
    fail_mode: FailMode,
    /// Content chunks sent before a midstream/drop failure.
    #[arg(long, env = "VLLM_SIM_FAIL_AFTER_TOKENS", default_value_t = 3)]
    fail_after_tokens: usize,
    /// Seed for failures and lorem text (random if absent).
    #[arg(long, env = "VLLM_SIM_SEED")]
    seed: Option<u64>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in 0..=1"))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let script = match args.script.as_deref().map(Script::load).transpose() {
        Ok(script) => script.map(Arc::new),
        Err(e) => {
            eprintln!("vllm-sim: {e}");
            std::process::exit(2);
        }
    };
    if let (Some(script), Some(path)) = (&script, &args.script) {
        tracing::info!(rules = script.len(), path = %path.display(), "script loaded");
    }

    let engine = Arc::new(Engine::new(EngineConfig {
        model: args.model,
        mode: args.mode,
        lorem_tokens: args.lorem_tokens,
        ttft: Duration::from_millis(args.ttft_ms),
        itl: Duration::from_millis(args.itl_ms),
        max_model_len: args.max_model_len,
        max_num_seqs: args.max_num_seqs as usize,
        fail_rate: args.fail_rate,
        fail_mode: args.fail_mode,
        fail_after_tokens: args.fail_after_tokens,
        seed: args.seed,
        script,
    })?);

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, model = %engine.cfg.model, "vllm-sim ready");

    axum::serve(listener.tap_io(nodelay), server::router(engine))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Small SSE writes must leave at once, not wait for Nagle's algorithm.
fn nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}
