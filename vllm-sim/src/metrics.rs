//! vLLM's `vllm:*` Prometheus metrics (V1 `PrometheusStatLogger`).
//!
//! Metrics live in a private `prometheus::Registry`; `render` writes them the
//! way Python's `prometheus_client.generate_latest` does: families in vLLM's
//! registration order, labels sorted by name, values as Python floats
//! (`0.0`, `le="1.0"`), histogram samples `_bucket…`, `_count`, `_sum`.

use std::fmt::Write as _;

use prometheus::core::Collector;
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts, Registry,
};

/// How a request ended (`finished_reason` label values, vLLM's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Abort,
    Error,
}

impl FinishReason {
    pub const ALL: [FinishReason; 4] = [Self::Stop, Self::Length, Self::Abort, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abort => "abort",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// vLLM's `build_1_2_5_buckets(max_value)`: 1, 2, 5, 10, 20, 50, … ≤ max_value.
pub fn build_1_2_5_buckets(max_value: u64) -> Vec<f64> {
    let mut buckets = Vec::new();
    let mut scale: u64 = 1;
    loop {
        for m in [1u64, 2, 5] {
            match m.checked_mul(scale) {
                Some(v) if v <= max_value => buckets.push(v as f64),
                _ => return buckets,
            }
        }
        match scale.checked_mul(10) {
            Some(s) => scale = s,
            None => return buckets,
        }
    }
}

/// Labels every metric carries.
const LABELS: &[&str] = &["model_name", "engine"];
/// The engine index label value.
const ENGINE: &str = "0";

/// The simulator's metric handles.
pub struct Metrics {
    registry: Registry,
    /// Family names in registration order (Python's output order).
    order: Vec<String>,
    pub running: Gauge,
    pub waiting: Gauge,
    pub kv_cache_usage: Gauge,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    success: Vec<Counter>,
    pub request_prompt_tokens: Histogram,
    pub request_generation_tokens: Histogram,
    pub request_max_tokens: Histogram,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
    pub inference: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
}

/// `vllm:cache_config_info` label values (CacheConfig fields, `str()`-ed).
pub struct CacheInfo {
    pub num_gpu_blocks: u64,
}

impl Metrics {
    pub fn new(model: &str, max_model_len: u32, cache: &CacheInfo) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let mut order = Vec::new();
        let values = [model, ENGINE];

        let mut register = |c: Box<dyn Collector>| -> prometheus::Result<()> {
            for desc in c.desc() {
                order.push(desc.fq_name.clone());
            }
            registry.register(c)
        };

        let gauge = |name: &str, help: &str| -> prometheus::Result<(GaugeVec, Gauge)> {
            let vec = GaugeVec::new(Opts::new(name, help), LABELS)?;
            let child = vec.get_metric_with_label_values(&values)?;
            Ok((vec, child))
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<(CounterVec, Counter)> {
            let vec = CounterVec::new(Opts::new(name, help), LABELS)?;
            let child = vec.get_metric_with_label_values(&values)?;
            Ok((vec, child))
        };
        let histogram = |name: &str,
                         help: &str,
                         buckets: Vec<f64>|
         -> prometheus::Result<(HistogramVec, Histogram)> {
            let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), LABELS)?;
            let child = vec.get_metric_with_label_values(&values)?;
            Ok((vec, child))
        };

        let (v, running) = gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
        )?;
        register(Box::new(v))?;
        let (v, waiting) = gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
        )?;
        register(Box::new(v))?;
        let (v, kv_cache_usage) = gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
        )?;
        register(Box::new(v))?;

        // Never preempts, but the series exists (at 0) like in vLLM.
        let (v, _preemptions) = counter(
            "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.",
        )?;
        register(Box::new(v))?;
        let (v, prompt_tokens) = counter(
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
        )?;
        register(Box::new(v))?;
        let (v, generation_tokens) = counter(
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
        )?;
        register(Box::new(v))?;

        let success_vec = CounterVec::new(
            Opts::new(
                "vllm:request_success_total",
                "Count of successfully processed requests.",
            ),
            &["model_name", "engine", "finished_reason"],
        )?;
        let mut success = Vec::new();
        for reason in FinishReason::ALL {
            success.push(success_vec.get_metric_with_label_values(&[
                model,
                ENGINE,
                reason.as_str(),
            ])?);
        }
        register(Box::new(success_vec))?;

        let len_buckets = build_1_2_5_buckets(u64::from(max_model_len));
        let (v, request_prompt_tokens) = histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            len_buckets.clone(),
        )?;
        register(Box::new(v))?;
        let (v, request_generation_tokens) = histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            len_buckets.clone(),
        )?;
        register(Box::new(v))?;
        let (v, request_max_tokens) = histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            len_buckets,
        )?;
        register(Box::new(v))?;

        let (v, ttft) = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, itl) = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, e2e) = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            LATENCY_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, queue) = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LATENCY_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, inference) = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            LATENCY_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, prefill) = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            LATENCY_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;
        let (v, decode) = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            LATENCY_BUCKETS.to_vec(),
        )?;
        register(Box::new(v))?;

        // Info metric: a gauge fixed at 1, labelled with the CacheConfig
        // fields plus `engine` (vLLM gives it no `model_name`).
        let num_gpu_blocks = cache.num_gpu_blocks.to_string();
        let info: [(&str, &str); 14] = [
            ("block_size", "16"),
            ("cache_dtype", "auto"),
            ("calculate_kv_scales", "False"),
            ("cpu_offload_gb", "0"),
            ("enable_prefix_caching", "True"),
            ("engine", ENGINE),
            ("gpu_memory_utilization", "0.9"),
            ("is_attention_free", "False"),
            ("num_cpu_blocks", "None"),
            ("num_gpu_blocks", &num_gpu_blocks),
            ("num_gpu_blocks_override", "None"),
            ("prefix_caching_hash_algo", "sha256"),
            ("sliding_window", "None"),
            ("swap_space", "4"),
        ];
        let names: Vec<&str> = info.iter().map(|(k, _)| *k).collect();
        let vals: Vec<&str> = info.iter().map(|(_, v)| *v).collect();
        let cache_info = GaugeVec::new(
            Opts::new(
                "vllm:cache_config_info",
                "Information of the LLMEngine CacheConfig",
            ),
            &names,
        )?;
        cache_info.get_metric_with_label_values(&vals)?.set(1.0);
        register(Box::new(cache_info))?;

        Ok(Self {
            registry,
            order,
            running,
            waiting,
            kv_cache_usage,
            prompt_tokens,
            generation_tokens,
            success,
            request_prompt_tokens,
            request_generation_tokens,
            request_max_tokens,
            ttft,
            itl,
            e2e,
            queue,
            inference,
            prefill,
            decode,
        })
    }

    /// `vllm:request_success_total{finished_reason=…}`.
    pub fn success(&self, reason: FinishReason) -> &Counter {
        &self.success[reason.index()]
    }

    /// The Prometheus text exposition, formatted like `prometheus_client`.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.sort_by_key(|mf| {
            self.order
                .iter()
                .position(|n| n == mf.name())
                .unwrap_or(usize::MAX)
        });
        let mut out = String::with_capacity(16 * 1024);
        for mf in &families {
            render_family(mf, &mut out);
        }
        out
    }
}

fn render_family(mf: &MetricFamily, out: &mut String) {
    let name = mf.name();
    let kind = match mf.get_field_type() {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        MetricType::SUMMARY => "summary",
        MetricType::UNTYPED => "untyped",
    };
    let help = mf.help().replace('\\', r"\\").replace('\n', r"\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");

    let mut metrics: Vec<_> = mf.get_metric().iter().collect();
    // Children in creation order: finished_reason stop, length, abort, error.
    metrics.sort_by_key(|m| {
        m.get_label()
            .iter()
            .find(|l| l.name() == "finished_reason")
            .and_then(|l| {
                FinishReason::ALL
                    .iter()
                    .position(|r| r.as_str() == l.value())
            })
            .unwrap_or(0)
    });

    for m in metrics {
        let labels: Vec<(&str, String)> = m
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value().to_string()))
            .collect();
        match mf.get_field_type() {
            MetricType::COUNTER => sample(out, name, "", &labels, m.get_counter().get_value()),
            MetricType::GAUGE => sample(out, name, "", &labels, m.get_gauge().get_value()),
            MetricType::HISTOGRAM => {
                let h = m.get_histogram();
                let mut inf_seen = false;
                for b in h.get_bucket() {
                    let ub = b.upper_bound();
                    inf_seen |= ub == f64::INFINITY;
                    let mut with_le = labels.clone();
                    with_le.push(("le", go_float(ub)));
                    sample(out, name, "_bucket", &with_le, b.cumulative_count() as f64);
                }
                if !inf_seen {
                    let mut with_le = labels.clone();
                    with_le.push(("le", "+Inf".into()));
                    sample(out, name, "_bucket", &with_le, h.get_sample_count() as f64);
                }
                sample(out, name, "_count", &labels, h.get_sample_count() as f64);
                sample(out, name, "_sum", &labels, h.get_sample_sum());
            }
            MetricType::SUMMARY | MetricType::UNTYPED => {}
        }
    }
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &[(&str, String)], value: f64) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        let mut sorted: Vec<&(&str, String)> = labels.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        out.push('{');
        for (i, (k, v)) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = v
                .replace('\\', r"\\")
                .replace('\n', r"\n")
                .replace('"', "\\\"");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&go_float(value));
    out.push('\n');
}

/// `prometheus_client.utils.floatToGoString`.
fn go_float(d: f64) -> String {
    if d == f64::INFINITY {
        return "+Inf".into();
    }
    if d == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if d.is_nan() {
        return "NaN".into();
    }
    let s = crate::wire::py_float_repr(d);
    if let Some(dot) = s.find('.')
        && d > 0.0
        && dot > 6
    {
        let digits = format!("{}{}", &s[1..dot], &s[dot + 1..]);
        let mantissa = format!("{}.{}", &s[..1], digits);
        let mantissa = mantissa.trim_end_matches(['0', '.']);
        return format!("{mantissa}e+0{}", dot - 1);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five_buckets() {
        assert_eq!(
            build_1_2_5_buckets(4096),
            vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0
            ]
        );
        assert_eq!(
            build_1_2_5_buckets(100),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
    }

    #[test]
    fn go_float_matches_python() {
        assert_eq!(go_float(0.0), "0.0");
        assert_eq!(go_float(1.0), "1.0");
        assert_eq!(go_float(0.001), "0.001");
        assert_eq!(go_float(7680.0), "7680.0");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(12_345_678.0), "1.2345678e+07");
    }

    #[test]
    fn renders_python_style() {
        let m = Metrics::new(
            "qwen",
            4096,
            &CacheInfo {
                num_gpu_blocks: 100,
            },
        )
        .expect("metrics");
        m.prompt_tokens.inc_by(3.0);
        m.e2e.observe(0.4);
        let text = m.render();
        assert!(text.starts_with(
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine=\"0\",model_name=\"qwen\"} 0.0\n"
        ), "{text}");
        assert!(text.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"qwen\"} 3.0\n"));
        for reason in ["stop", "length", "abort", "error"] {
            assert!(text.contains(&format!(
                "vllm:request_success_total{{engine=\"0\",finished_reason=\"{reason}\",model_name=\"qwen\"}} 0.0\n"
            )));
        }
        assert!(text.contains(
            "vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"0.3\",model_name=\"qwen\"} 0.0\nvllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"0.5\",model_name=\"qwen\"} 1.0\n"
        ));
        assert!(text.contains(
            "vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"qwen\"} 1.0\nvllm:e2e_request_latency_seconds_count{engine=\"0\",model_name=\"qwen\"} 1.0\nvllm:e2e_request_latency_seconds_sum{engine=\"0\",model_name=\"qwen\"} 0.4\n"
        ));
        assert!(text.contains(
            "vllm:request_params_max_tokens_bucket{engine=\"0\",le=\"2000.0\",model_name=\"qwen\"} 0.0\n"
        ));
        assert!(text.contains("vllm:cache_config_info{block_size=\"16\""));
        assert!(text.contains("num_gpu_blocks=\"100\""));
        // Registration order, not alphabetical.
        let pos = |n: &str| text.find(&format!("# HELP {n} ")).expect(n);
        assert!(pos("vllm:num_requests_waiting") < pos("vllm:kv_cache_usage_perc"));
        assert!(pos("vllm:request_decode_time_seconds") < pos("vllm:cache_config_info"));
    }
}
