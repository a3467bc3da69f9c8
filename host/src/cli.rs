//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A guarded gateway for LLM servers, with guards and agents as hot-reloadable
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(Box<ServeArgs>),
    /// Measure a guard on a labelled JSONL set (`{"text","label":"injection"|"benign","lang","category"}`).
    Eval(EvalArgs),
    /// Create an ed25519 key pair for signing components.
    Keygen(KeygenArgs),
    /// Sign a component: writes NAME.sig beside NAME.wasm.
    Sign(SignArgs),
    /// Compile and validate a component, print its info, and exit (non-zero if invalid).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML); flags and WASMGATE_* variables override it.
    #[arg(long, env = "WASMGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free one.
    #[arg(long, env = "WASMGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Upstream OpenAI base URL; repeat for several (least-in-flight choice, health checks,
    /// failover) [default: http://127.0.0.1:8000/v1].
    #[arg(long, env = "WASMGATE_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<String>,
    /// Components folder: guards in DIR/guards/*.wasm, agents in DIR/agents/*.wasm [default: components].
    #[arg(long, env = "WASMGATE_COMPONENTS")]
    pub components: Option<PathBuf>,
    /// Where compiled components are cached [default: DIR/.cache].
    #[arg(long, env = "WASMGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Static files of the web UI, served at `/`.
    #[arg(long, env = "WASMGATE_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
    /// Largest accepted request body in bytes [default: 4 MiB].
    #[arg(long, env = "WASMGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Upstream connect timeout [default: 3000].
    #[arg(long, env = "WASMGATE_UPSTREAM_CONNECT_TIMEOUT_MS")]
    pub upstream_connect_timeout_ms: Option<u64>,
    /// Time allowed for the upstream's first byte [default: 120000].
    #[arg(long, env = "WASMGATE_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: Option<u64>,
    /// Time allowed until the first token of a stream [default: the upstream timeout].
    #[arg(long, env = "WASMGATE_UPSTREAM_TTFT_TIMEOUT_MS")]
    pub upstream_ttft_timeout_ms: Option<u64>,
    /// Time allowed between two chunks of a stream [default: 30000].
    #[arg(long, env = "WASMGATE_UPSTREAM_IDLE_TIMEOUT_MS")]
    pub upstream_idle_timeout_ms: Option<u64>,
    /// Extra attempts on another (or the same) upstream before any byte reached the client [default: 2].
    #[arg(long, env = "WASMGATE_UPSTREAM_RETRIES")]
    pub upstream_retries: Option<u32>,
    /// Default check-input deadline for guards [default: 50].
    #[arg(long, env = "WASMGATE_GUARD_DEADLINE_MS")]
    pub guard_deadline_ms: Option<u64>,
    /// Most component instances alive at once (pooling allocator size) [default: 2000].
    #[arg(long, env = "WASMGATE_MAX_INSTANCES")]
    pub max_instances: Option<u32>,
    /// Bearer token for /admin/* (listing, uploading and removing components); unset = admin API off.
    #[arg(long, env = "WASMGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// An API key as NAME=SECRET (repeatable; WASMGATE_API_KEYS takes a comma-separated list).
    /// With keys set, /v1/* needs `Authorization: Bearer SECRET`.
    #[arg(
        long = "api-key",
        env = "WASMGATE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Requests per minute for keys given with --api-key.
    #[arg(long, env = "WASMGATE_DEFAULT_RPM")]
    pub default_rpm: Option<u64>,
    /// Tokens per minute (prompt estimate + max_tokens reserved, then reconciled) for --api-key keys.
    #[arg(long, env = "WASMGATE_DEFAULT_TPM")]
    pub default_tpm: Option<u64>,
    /// Concurrent requests per --api-key key.
    #[arg(long, env = "WASMGATE_DEFAULT_MAX_CONCURRENT")]
    pub default_max_concurrent: Option<u64>,
    /// Allow listening on a non-loopback address without API keys.
    #[arg(long, env = "WASMGATE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Chat requests served at once, streams included; more get 503 [default: 1024].
    #[arg(long, env = "WASMGATE_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    /// Only load components signed by this ed25519 public key (hex; repeatable).
    #[arg(
        long = "trusted-key",
        env = "WASMGATE_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
    /// Do not append the per-request leak canary to forwarded system prompts.
    #[arg(long, env = "WASMGATE_NO_CANARY")]
    pub no_canary: bool,
    /// On SIGTERM, how long open streams may continue before they are ended [default: 30000].
    #[arg(long, env = "WASMGATE_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Write logs as JSON lines.
    #[arg(long, env = "WASMGATE_LOG_JSON")]
    pub log_json: bool,
    /// Largest component upload in bytes [default: 32 MiB].
    #[arg(long, env = "WASMGATE_MAX_COMPONENT_BYTES")]
    pub max_component_bytes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component file.
    pub file: PathBuf,
    /// `guard` or `agent`.
    #[arg(long, default_value = "guard")]
    pub kind: String,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The guard component.
    #[arg(long)]
    pub guard: PathBuf,
    /// The JSONL data set.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero if recall (overall or any language) is below this.
    #[arg(long)]
    pub min_recall: Option<f64>,
    /// Exit non-zero if the false-positive rate (overall or any language) is above this.
    #[arg(long)]
    pub max_fpr: Option<f64>,
    /// List up to N misclassified rows.
    #[arg(long, default_value_t = 0)]
    pub show_errors: usize,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (hex, mode 0600).
    #[arg(long, default_value = "wasmgate-signing.key")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key file written by `keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// The component to sign.
    pub file: PathBuf,
}
