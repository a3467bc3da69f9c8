//! The scenarios of issue 8. Each returns its results as JSON; `report`
//! turns them into tables.

pub mod agent;
pub mod guard;
pub mod memory;
pub mod relay;
pub mod reload;
pub mod start;
pub mod ttft;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::http::metric_sum;
use crate::stats::round;

/// A typical user turn (~550 characters, no PII, nothing a guard blocks).
pub const PROMPT: &str = "I run a small online shop that sells handmade ceramics, and I am planning the spring season. Customers mostly ask about delivery times, returns and how fragile the pieces are. Could you suggest how to organise the product pages so that the answers to those questions are easy to find, and how to write a short, friendly returns policy? Please also list the three most common mistakes small shops make with shipping fragile goods, and how to measure whether the new pages actually reduce the number of support emails. Keep the answer practical.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Guard,
    Ttft,
    Relay,
    Agent,
    Reload,
    Memory,
    Start,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Guard,
        Scenario::Ttft,
        Scenario::Relay,
        Scenario::Agent,
        Scenario::Reload,
        Scenario::Memory,
        Scenario::Start,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Scenario::Guard => "guard_overhead",
            Scenario::Ttft => "ttft_overhead",
            Scenario::Relay => "relay_throughput",
            Scenario::Agent => "agent_overhead",
            Scenario::Reload => "hot_reload",
            Scenario::Memory => "memory",
            Scenario::Start => "component_start",
        }
    }
}

/// Facts about this run, stamped on every scenario's results.
static RUN: OnceLock<Value> = OnceLock::new();

pub fn set_run_info(v: Value) {
    let _ = RUN.set(v);
}

pub fn run_info() -> Value {
    RUN.get().cloned().unwrap_or(Value::Null)
}

/// Where a gateway's time went between two `/metrics` pages: per component
/// and export, calls per chat request and mean time per call (the
/// component's own histogram, instantiation included).
pub fn gateway_breakdown(before: &str, after: &str) -> Value {
    let requests = metric_sum(
        after,
        "wasmgate_http_requests_total",
        &["route=\"/v1/chat/completions\""],
    ) - metric_sum(
        before,
        "wasmgate_http_requests_total",
        &["route=\"/v1/chat/completions\""],
    );
    let mut keys: BTreeMap<(String, String), ()> = BTreeMap::new();
    for line in after.lines() {
        let Some(rest) = line.strip_prefix("wasmgate_component_duration_seconds_count{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(',')
                .find_map(|kv| kv.trim_end_matches(['}', ' ']).strip_prefix(name))
                .and_then(|v| v.strip_prefix("=\""))
                .map(|v| v.split('"').next().unwrap_or("").to_owned())
        };
        if let (Some(c), Some(e)) = (label("component"), label("export")) {
            keys.insert((c, e), ());
        }
    }
    let mut per = serde_json::Map::new();
    let mut total_us = 0.0;
    for (c, e) in keys.keys() {
        let frags = [format!("component=\"{c}\""), format!("export=\"{e}\"")];
        let frags: Vec<&str> = frags.iter().map(String::as_str).collect();
        let d = |name: &str| metric_sum(after, name, &frags) - metric_sum(before, name, &frags);
        let count = d("wasmgate_component_duration_seconds_count");
        let sum = d("wasmgate_component_duration_seconds_sum");
        if count <= 0.0 {
            continue;
        }
        total_us += sum * 1e6 / requests.max(1.0);
        per.insert(
            format!("{c}/{e}"),
            json!({
                "calls_per_request": round(count / requests.max(1.0)),
                "mean_us_per_call": round(sum * 1e6 / count),
            }),
        );
    }
    json!({
        "requests": requests,
        "component_us_per_request": round(total_us),
        "by_export": per,
    })
}
