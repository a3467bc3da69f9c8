//! Prometheus metrics of the host and of every component.
//!
//! Labels stay bounded: routes are axum's matched paths, components are the
//! names of loaded files, statuses and outcomes are small fixed sets. A key, a
//! prompt or a request id never becomes a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds, from 100 µs (a guard call) to 2 min (a long stream).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Component call durations: 10 µs to 1 s.
const COMPONENT_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// Small counts per run.
const COUNT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0];

/// Every series the host exports.
pub struct Metrics {
    registry: Registry,
    /// `route`, `method`, `status`.
    pub http_requests: IntCounterVec,
    /// `route`, `method`.
    pub http_duration: HistogramVec,
    /// `model_kind` (`upstream` or `agent`).
    pub ttft: HistogramVec,
    pub inter_token: HistogramVec,
    /// `direction` (`prompt` or `completion`).
    pub tokens: IntCounterVec,
    pub inflight_streams: IntGauge,
    /// `kind` (`connect`, `timeout`, `status`, `stream`, `protocol`).
    pub upstream_errors: IntCounterVec,
    /// `reason` (`content_filter`, `client_gone`, `upstream_error`).
    pub streams_cut: IntCounterVec,
    /// `component`, `export`, `outcome` (`ok`, `trap`, `timeout`, `oom`, `error`).
    pub component_invocations: IntCounterVec,
    /// `component`, `export`.
    pub component_duration: HistogramVec,
    /// `component`, `verdict` (`allow`, `block`, `rewrite`).
    pub component_verdicts: IntCounterVec,
    /// `component`, `kind` (`trap`, `timeout`, `oom`).
    pub component_faults: IntCounterVec,
    /// `component`, `result` (`loaded`, `replaced`, `removed`, `rejected`, `unchanged`).
    pub component_reloads: IntCounterVec,
    /// `component`, `kind`, `version`, `sha256`: 1 while loaded.
    pub component_info: IntGaugeVec,
    /// `component`: peak linear memory of the last invocation, bytes.
    pub component_memory: IntGaugeVec,
    /// `agent`, `outcome` (`ok`, `limit`, `error`, `trap`, `timeout`, `oom`, `cancelled`).
    pub agent_runs: IntCounterVec,
    /// `agent`.
    pub agent_run_duration: HistogramVec,
    /// `agent`: completions per run.
    pub agent_completions: HistogramVec,
    /// `agent`: tool calls per run.
    pub agent_tool_calls: HistogramVec,
    /// `agent`, `tool`, `outcome` (`ok`, `withheld`, `error`, `denied`).
    pub agent_tool_invocations: IntCounterVec,
    /// `agent`: tool results replaced because an input guard blocked them.
    pub agent_tool_results_blocked: IntCounterVec,
    /// `agent`: text pieces the agent emitted to clients.
    pub agent_emitted: IntCounterVec,
    /// `upstream`: 1 when the last health check passed.
    pub upstream_healthy: IntGaugeVec,
    /// Upstream attempts after the first (failover and retries).
    pub upstream_retries: prometheus::IntCounter,
    /// Requests refused for a missing or wrong API key.
    pub auth_failures: prometheus::IntCounter,
    /// `limit` (`requests`, `tokens`, `concurrency`, `global`).
    pub rate_limited: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, _> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let inflight_streams = IntGauge::new(
            "wasmgate_inflight_streams",
            "Response streams currently open to clients.",
        )?;
        registry.register(Box::new(inflight_streams.clone()))?;

        Ok(Self {
            http_requests: counter(
                "wasmgate_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            )?,
            http_duration: histogram(
                "wasmgate_http_request_duration_seconds",
                "HTTP request duration until the response head (streams: until the last byte).",
                &["route", "method"],
                LATENCY_BUCKETS,
            )?,
            ttft: histogram(
                "wasmgate_time_to_first_token_seconds",
                "Time from request arrival to the first content byte sent to the client.",
                &["model_kind"],
                LATENCY_BUCKETS,
            )?,
            inter_token: histogram(
                "wasmgate_inter_token_latency_seconds",
                "Time between content chunks sent to the client.",
                &["model_kind"],
                LATENCY_BUCKETS,
            )?,
            tokens: counter(
                "wasmgate_tokens_total",
                "Tokens through the gateway, as reported by the upstream's usage.",
                &["direction"],
            )?,
            inflight_streams,
            upstream_errors: counter(
                "wasmgate_upstream_errors_total",
                "Failed upstream calls by kind.",
                &["kind"],
            )?,
            streams_cut: counter(
                "wasmgate_streams_cut_total",
                "Response streams that ended early, by reason.",
                &["reason"],
            )?,
            component_invocations: counter(
                "wasmgate_component_invocations_total",
                "Component calls by export and outcome.",
                &["component", "export", "outcome"],
            )?,
            component_duration: histogram(
                "wasmgate_component_duration_seconds",
                "Component call duration, instantiation included.",
                &["component", "export"],
                COMPONENT_BUCKETS,
            )?,
            component_verdicts: counter(
                "wasmgate_component_verdicts_total",
                "Guard verdicts (input checks and output filters).",
                &["component", "verdict"],
            )?,
            component_faults: counter(
                "wasmgate_component_faults_total",
                "Component traps, timeouts and memory exhaustion.",
                &["component", "kind"],
            )?,
            component_reloads: counter(
                "wasmgate_component_reloads_total",
                "Component (re)loads by result.",
                &["component", "result"],
            )?,
            component_info: gauge_vec(
                "wasmgate_component_info",
                "1 for each loaded component, with its version and sha256.",
                &["component", "kind", "version", "sha256"],
            )?,
            component_memory: gauge_vec(
                "wasmgate_component_memory_bytes",
                "Linear memory reached by the component's last instance.",
                &["component"],
            )?,
            agent_runs: counter(
                "wasmgate_agent_runs_total",
                "Agent runs by outcome.",
                &["agent", "outcome"],
            )?,
            agent_run_duration: histogram(
                "wasmgate_agent_run_duration_seconds",
                "Agent run duration.",
                &["agent"],
                LATENCY_BUCKETS,
            )?,
            agent_completions: histogram(
                "wasmgate_agent_completions_per_run",
                "Upstream completions started per agent run.",
                &["agent"],
                COUNT_BUCKETS,
            )?,
            agent_tool_calls: histogram(
                "wasmgate_agent_tool_calls_per_run",
                "Tool calls per agent run.",
                &["agent"],
                COUNT_BUCKETS,
            )?,
            agent_tool_invocations: counter(
                "wasmgate_agent_tool_invocations_total",
                "Tool calls by tool and outcome.",
                &["agent", "tool", "outcome"],
            )?,
            agent_tool_results_blocked: counter(
                "wasmgate_agent_tool_results_blocked_total",
                "Tool results withheld because an input guard blocked them.",
                &["agent"],
            )?,
            agent_emitted: counter(
                "wasmgate_agent_emitted_total",
                "Text pieces agents emitted towards clients.",
                &["agent"],
            )?,
            upstream_healthy: gauge_vec(
                "wasmgate_upstream_healthy",
                "1 when the upstream's last health check passed.",
                &["upstream"],
            )?,
            upstream_retries: {
                let c = prometheus::IntCounter::new(
                    "wasmgate_upstream_retries_total",
                    "Upstream attempts after the first (failover and retries before the first byte).",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            auth_failures: {
                let c = prometheus::IntCounter::new(
                    "wasmgate_auth_failures_total",
                    "Requests refused for a missing or wrong API key.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            rate_limited: counter(
                "wasmgate_rate_limited_total",
                "Requests refused by a limit (429) or the global in-flight cap (503).",
                &["limit"],
            )?,
            registry,
        })
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
