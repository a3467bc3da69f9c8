//! Settings: `wasmgate.toml`, overridden by `WASMGATE_*` environment
//! variables and command-line flags (clap handles both), and the per-component
//! `NAME.toml` files that sit beside each `.wasm`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;

/// Errors reading settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings in {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid upstream URL `{0}`: it must start with http:// or https://")]
    Upstream(String),
    #[error("invalid --api-key for `{0}`: use NAME=SECRET")]
    ApiKey(String),
}

/// What a component does when it cannot give a verdict (trap, timeout,
/// memory exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailPolicy {
    /// Refuse the request (HTTP 503 `guard_unavailable`). The default.
    #[default]
    Closed,
    /// Skip the guard and go on, logging and counting the fault.
    Open,
}

/// Limits and policy applied to every component unless its `NAME.toml` says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentDefaults {
    /// Wall-clock budget for `check-input` (and an agent's `info`).
    pub deadline_ms: u64,
    /// Budget for each output-filter call (`push`, `finish`).
    pub output_budget_ms: u64,
    /// Linear-memory cap per instance.
    pub memory_mib: u64,
    pub on_error: FailPolicy,
}

impl Default for ComponentDefaults {
    fn default() -> Self {
        Self {
            deadline_ms: 50,
            output_budget_ms: 50,
            memory_mib: 64,
            on_error: FailPolicy::Closed,
        }
    }
}

/// Request validation limits (`[validation]` in the settings file).
pub use wasmgate_protocol::request::ValidationLimits;

/// The `NAME.toml` beside a component. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentFile {
    /// Guards run in ascending order, then by name.
    pub order: Option<i64>,
    pub deadline_ms: Option<u64>,
    pub output_budget_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub on_error: Option<FailPolicy>,
    /// `false` keeps the file loaded but unused.
    pub enabled: Option<bool>,
    /// Read by the component through the `config` import.
    pub config: BTreeMap<String, String>,
    /// Agents: upstream models the agent may use; the first is its default.
    /// Empty = the upstream's first model.
    pub models: Vec<String>,
    /// Agents: host tools granted (`kb-search`, `calculator`, `now`).
    pub tools: Vec<String>,
    /// Agents: folder of Markdown/text documents for `kb-search`.
    pub kb_dir: Option<PathBuf>,
    pub max_completions: Option<u32>,
    pub max_tool_calls: Option<u32>,
    pub run_deadline_ms: Option<u64>,
    /// Agents: cap on `max_tokens` of each completion.
    pub max_tokens: Option<u32>,
}

/// Limits and grants of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub models: Vec<String>,
    pub tools: Vec<String>,
    pub kb_dir: Option<PathBuf>,
    pub max_completions: u32,
    pub max_tool_calls: u32,
    pub run_deadline: Duration,
    pub max_tokens: u32,
}

/// The resolved settings of one component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSettings {
    pub order: i64,
    pub deadline: Duration,
    pub output_budget: Duration,
    pub memory_bytes: usize,
    pub on_error: FailPolicy,
    pub enabled: bool,
    pub config: BTreeMap<String, String>,
    pub agent: AgentSettings,
}

impl ComponentSettings {
    pub fn resolve(file: ComponentFile, defaults: &ComponentDefaults) -> Self {
        Self {
            order: file.order.unwrap_or(0),
            deadline: Duration::from_millis(file.deadline_ms.unwrap_or(defaults.deadline_ms)),
            output_budget: Duration::from_millis(
                file.output_budget_ms.unwrap_or(defaults.output_budget_ms),
            ),
            memory_bytes: usize::try_from(
                file.memory_mib
                    .unwrap_or(defaults.memory_mib)
                    .saturating_mul(1 << 20),
            )
            .unwrap_or(usize::MAX),
            on_error: file.on_error.unwrap_or(defaults.on_error),
            enabled: file.enabled.unwrap_or(true),
            config: file.config,
            agent: AgentSettings {
                models: file.models,
                tools: file.tools,
                kb_dir: file.kb_dir,
                max_completions: file.max_completions.unwrap_or(6),
                max_tool_calls: file.max_tool_calls.unwrap_or(8),
                run_deadline: Duration::from_millis(file.run_deadline_ms.unwrap_or(120_000)),
                max_tokens: file.max_tokens.unwrap_or(1024),
            },
        }
    }

    /// Reads `NAME.toml` if present.
    pub fn load(toml_path: &Path, defaults: &ComponentDefaults) -> Result<Self, ConfigError> {
        let file = match std::fs::read_to_string(toml_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: toml_path.to_owned(),
                source: Box::new(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ComponentFile::default(),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: toml_path.to_owned(),
                    source: e,
                });
            }
        };
        Ok(Self::resolve(file, defaults))
    }
}

/// `wasmgate.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    /// Several upstreams (with `upstream`, all are used).
    pub upstreams: Vec<String>,
    pub upstream_ttft_timeout_ms: Option<u64>,
    pub upstream_idle_timeout_ms: Option<u64>,
    pub upstream_retries: Option<u32>,
    pub components: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub ui_dir: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub upstream_connect_timeout_ms: Option<u64>,
    pub upstream_timeout_ms: Option<u64>,
    pub max_instances: Option<u32>,
    pub admin_token: Option<String>,
    pub max_component_bytes: Option<usize>,
    pub max_inflight: Option<usize>,
    /// API keys with their limits (`[[keys]]`).
    pub keys: Vec<crate::auth::KeyEntry>,
    pub validation: ValidationLimits,
    pub default_max_tokens_estimate: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    /// ed25519 public keys (hex) components must be signed with.
    pub trusted_keys: Vec<String>,
    pub canary: Option<bool>,
    pub component_defaults: ComponentDefaults,
}

/// Everything `serve` needs, merged.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// OpenAI base URLs without a trailing slash, e.g. `http://127.0.0.1:8000/v1`.
    pub upstreams: Vec<String>,
    pub upstream_ttft_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_retries: u32,
    pub components: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub ui_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// Time allowed until the upstream's response head (and first chunk).
    pub upstream_timeout: Duration,
    /// Pooling-allocator size: concurrent component instances.
    pub max_instances: u32,
    /// Bearer token of `/admin/*`; `None` switches the admin API off.
    pub admin_token: Option<String>,
    /// Largest component accepted by `PUT /admin/components/...`.
    pub max_component_bytes: usize,
    /// Chat requests (streams included) served at once; more get 503.
    pub max_inflight: usize,
    /// API keys; empty = no authentication.
    pub keys: Vec<crate::auth::KeyEntry>,
    pub insecure_no_auth: bool,
    pub validation: ValidationLimits,
    /// Tokens reserved for a request without `max_tokens` (reconciled later).
    pub default_max_tokens_estimate: u64,
    pub shutdown_grace: Duration,
    pub trusted_keys: Vec<String>,
    /// Append a per-request leak canary to forwarded system prompts.
    pub canary: bool,
    pub component_defaults: ComponentDefaults,
}

impl Settings {
    /// Flags and environment (already merged by clap) over the file over defaults.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    source: e,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    source: Box::new(e),
                })?
            }
            None => FileConfig::default(),
        };
        let mut upstreams: Vec<String> = if args.upstream.is_empty() {
            file.upstream.into_iter().chain(file.upstreams).collect()
        } else {
            args.upstream.clone()
        };
        if upstreams.is_empty() {
            upstreams.push("http://127.0.0.1:8000/v1".to_owned());
        }
        for u in &mut upstreams {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::Upstream(u.clone()));
            }
            *u = u.trim_end_matches('/').to_owned();
        }
        let upstream_timeout = Duration::from_millis(
            args.upstream_timeout_ms
                .or(file.upstream_timeout_ms)
                .unwrap_or(120_000),
        );
        let mut defaults = file.component_defaults;
        if let Some(ms) = args.guard_deadline_ms {
            defaults.deadline_ms = ms;
        }
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            upstreams,
            upstream_ttft_timeout: args
                .upstream_ttft_timeout_ms
                .or(file.upstream_ttft_timeout_ms)
                .map_or(upstream_timeout, Duration::from_millis),
            upstream_idle_timeout: Duration::from_millis(
                args.upstream_idle_timeout_ms
                    .or(file.upstream_idle_timeout_ms)
                    .unwrap_or(30_000),
            ),
            upstream_retries: args.upstream_retries.or(file.upstream_retries).unwrap_or(2),
            components: args
                .components
                .clone()
                .or(file.components)
                .unwrap_or_else(|| PathBuf::from("components")),
            cache_dir: args.cache_dir.clone().or(file.cache_dir),
            ui_dir: args.ui_dir.clone().or(file.ui_dir),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(4 << 20),
            upstream_connect_timeout: Duration::from_millis(
                args.upstream_connect_timeout_ms
                    .or(file.upstream_connect_timeout_ms)
                    .unwrap_or(3_000),
            ),
            upstream_timeout,
            max_instances: args.max_instances.or(file.max_instances).unwrap_or(2_000),
            admin_token: args
                .admin_token
                .clone()
                .or(file.admin_token)
                .filter(|t| !t.is_empty()),
            max_component_bytes: args
                .max_component_bytes
                .or(file.max_component_bytes)
                .unwrap_or(32 << 20),
            max_inflight: args.max_inflight.or(file.max_inflight).unwrap_or(1024),
            keys: {
                let mut keys = file.keys;
                let defaults = crate::limits::KeyLimits {
                    rpm: args.default_rpm,
                    tpm: args.default_tpm,
                    max_concurrent: args.default_max_concurrent,
                };
                for spec in &args.api_keys {
                    let (name, key) = spec
                        .split_once('=')
                        .filter(|(n, k)| !n.is_empty() && !k.is_empty())
                        .ok_or_else(|| {
                            ConfigError::ApiKey(spec.split('=').next().unwrap_or("").to_owned())
                        })?;
                    keys.push(crate::auth::KeyEntry {
                        name: name.to_owned(),
                        key: Some(key.to_owned()),
                        key_sha256: None,
                        limits: defaults,
                    });
                }
                keys
            },
            insecure_no_auth: args.insecure_no_auth,
            validation: file.validation,
            default_max_tokens_estimate: file.default_max_tokens_estimate.unwrap_or(512),
            canary: !args.no_canary && file.canary.unwrap_or(true),
            trusted_keys: if args.trusted_keys.is_empty() {
                file.trusted_keys
            } else {
                args.trusted_keys.clone()
            },
            shutdown_grace: Duration::from_millis(
                args.shutdown_grace_ms
                    .or(file.shutdown_grace_ms)
                    .unwrap_or(30_000),
            ),
            component_defaults: defaults,
        })
    }
}
