//! `wasmgate-bench`: starts vllm-sim and wasmgate (and optionally LiteLLM's
//! proxy) on loopback, runs the scenarios of issue 8 against the direct path
//! and the gateways, interleaved, and writes `target/bench/results.json` and
//! the generated block of `docs/benchmarks.md`.
//!
//! `--smoke` runs every scenario once at tiny size with whatever binaries
//! `--bin-dir` points at (the dev build in `make test`), asserts only that
//! every request succeeded, and touches neither results.json nor the docs
//! (it writes OUT_DIR/smoke-results.json and smoke-benchmarks.md).

mod ctx;
mod http;
mod load;
mod procs;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use serde_json::{Map, Value, json};

use crate::ctx::Ctx;
use crate::scenarios::Scenario;

#[derive(Debug, Parser)]
#[command(name = "wasmgate-bench", version, about)]
struct Args {
    /// Every scenario once at tiny size (for `make test`): no timings are
    /// judged, results go to OUT_DIR/smoke-results.json, docs are untouched.
    #[arg(long)]
    smoke: bool,
    /// Folder with the `wasmgate` and `vllm-sim` binaries.
    #[arg(long, env = "WASMGATE_BENCH_BIN_DIR", default_value = "target/release")]
    bin_dir: PathBuf,
    /// The wasmgate binary [default: BIN_DIR/wasmgate].
    #[arg(long, env = "WASMGATE_BENCH_WASMGATE")]
    wasmgate: Option<PathBuf>,
    /// The vllm-sim binary [default: BIN_DIR/vllm-sim].
    #[arg(long, env = "WASMGATE_BENCH_VLLM_SIM")]
    vllm_sim: Option<PathBuf>,
    /// Built guest components (guard.wasm, banned_words.wasm, agent.wasm).
    #[arg(long, default_value = "target/wasm32-wasip2/component")]
    components: PathBuf,
    /// The project's docs folder (the agent's knowledge base).
    #[arg(long, default_value = "docs")]
    docs_dir: PathBuf,
    /// Where results.json, logs and scratch folders go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// The page whose generated block is rewritten.
    #[arg(long, default_value = "docs/benchmarks.md")]
    docs: PathBuf,
    /// Do not touch the docs page.
    #[arg(long)]
    no_docs: bool,
    /// Run only these scenarios (comma-separated); the others keep their
    /// previous results in results.json.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// LiteLLM's `litellm` executable: adds it as a third path to the TTFT
    /// and relay scenarios.
    #[arg(long)]
    litellm: Option<PathBuf>,
    /// The LiteLLM version, for the report.
    #[arg(long)]
    litellm_version: Option<String>,
    /// Only rewrite the docs block from OUT_DIR/results.json (no measurement).
    #[arg(long, conflicts_with = "smoke")]
    render_only: bool,
    /// The command to name in the report [default: this command line].
    #[arg(long)]
    command_line: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread: the load generator must stay cheap and predictable next to
    // the processes it measures, on a 2-core machine.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmgate-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let out_dir = args.out_dir.clone();
    if args.render_only {
        let path = out_dir.join("results.json");
        let all = report::merge_results(&path, &Map::new())?;
        report::write_docs(&args.docs, &all)?;
        eprintln!(
            "wasmgate-bench: {} rewritten from {}",
            args.docs.display(),
            path.display()
        );
        return Ok(());
    }
    let scratch = out_dir.join(if args.smoke { "smoke" } else { "run" });
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("clearing {}", scratch.display()))?;
    }
    let logs = scratch.join("logs");
    std::fs::create_dir_all(&logs)?;
    let cache = out_dir.join("component-cache");
    std::fs::create_dir_all(&cache)?;
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let ctx = Ctx {
        smoke: args.smoke,
        wasmgate: abs(args
            .wasmgate
            .clone()
            .unwrap_or_else(|| args.bin_dir.join("wasmgate"))),
        sim: abs(args
            .vllm_sim
            .clone()
            .unwrap_or_else(|| args.bin_dir.join("vllm-sim"))),
        components: abs(args.components.clone()),
        work: abs(scratch.clone()),
        cache: abs(cache),
        logs: abs(logs.clone()),
        litellm: args.litellm.clone().map(abs),
        docs: abs(args.docs_dir.clone()),
    };
    for bin in [&ctx.wasmgate, &ctx.sim] {
        anyhow::ensure!(
            bin.exists(),
            "{} is missing (build it, or point --bin-dir at it)",
            bin.display()
        );
    }
    let command = args.command_line.clone().unwrap_or_else(|| {
        std::iter::once("wasmgate-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ")
    });
    scenarios::set_run_info(json!({
        "date": report::now_utc(),
        "commit": procs::commit(),
        "command": command,
        "machine": procs::machine(),
        "binaries": args.bin_dir.display().to_string(),
        "smoke": args.smoke,
        "litellm": args.litellm_version,
    }));

    let wanted: Vec<Scenario> = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL
            .iter()
            .copied()
            .filter(|s| args.only.contains(s))
            .collect()
    };
    let started = Instant::now();
    let mut fresh = Map::new();
    let mut failed = Vec::new();
    for s in wanted {
        eprintln!("wasmgate-bench: {} ...", s.id());
        let t0 = Instant::now();
        let result = match s {
            Scenario::Guard => scenarios::guard::run(&ctx).await,
            Scenario::Ttft => scenarios::ttft::run(&ctx).await,
            Scenario::Relay => scenarios::relay::run(&ctx).await,
            Scenario::Agent => scenarios::agent::run(&ctx).await,
            Scenario::Reload => scenarios::reload::run(&ctx).await,
            Scenario::Memory => scenarios::memory::run(&ctx).await,
            Scenario::Start => scenarios::start::run(&ctx).await,
        };
        match result {
            Ok(mut v) => {
                v["elapsed_s"] = stats::round(t0.elapsed().as_secs_f64());
                eprintln!(
                    "wasmgate-bench: {} done in {:.1} s",
                    s.id(),
                    t0.elapsed().as_secs_f64()
                );
                if args.smoke {
                    failed.extend(smoke_problems(s, &v));
                }
                fresh.insert(s.id().to_owned(), v);
            }
            Err(e) => {
                eprintln!(
                    "wasmgate-bench: {} failed: {e:#} (logs in {})",
                    s.id(),
                    logs.display()
                );
                failed.push(format!("{}: {e:#}", s.id()));
            }
        }
    }

    if args.smoke {
        let path = out_dir.join("smoke-results.json");
        let all = json!({"schema": 1, "scenarios": fresh});
        report::write_json(&path, &all)?;
        // The page as it would look, to check the report code; never the docs.
        std::fs::write(out_dir.join("smoke-benchmarks.md"), report::render(&all))?;
        eprintln!(
            "wasmgate-bench: smoke run of {} scenarios in {:.1} s, results in {}",
            fresh.len(),
            started.elapsed().as_secs_f64(),
            path.display()
        );
    } else {
        let path = out_dir.join("results.json");
        let all = report::merge_results(&path, &fresh)?;
        eprintln!("wasmgate-bench: results in {}", path.display());
        if !args.no_docs {
            report::write_docs(&args.docs, &all)?;
            eprintln!("wasmgate-bench: {} updated", args.docs.display());
        }
        print!("{}", report::render(&all));
        println!();
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} problem(s):\n  {}", failed.len(), failed.join("\n  "))
    }
}

/// What a smoke run insists on: every request of the scenario succeeded and
/// the figures exist. Timings are never judged.
fn smoke_problems(s: Scenario, v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            p.push(format!("{}: {what}: {v}", s.id()));
        }
    };
    let zero = |x: &Value| x.as_u64() == Some(0) || x.as_f64() == Some(0.0);
    match s {
        Scenario::Guard => {
            for t in v["targets"].as_array().into_iter().flatten() {
                check(zero(&t["failures"]), "failed requests");
                check(t["latency_us"]["p50"].is_number(), "no latency");
            }
        }
        Scenario::Ttft => {
            for l in v["levels"].as_array().into_iter().flatten() {
                for t in l["targets"].as_array().into_iter().flatten() {
                    check(zero(&t["failed"]), "failed streams");
                    check(t["ttft_ms"]["p50"].is_number(), "no TTFT");
                }
            }
        }
        Scenario::Relay => {
            for t in v["targets"].as_array().into_iter().flatten() {
                check(
                    t["tokens_per_s"].as_f64().is_some_and(|x| x > 0.0),
                    "no tokens relayed",
                );
            }
        }
        Scenario::Agent => {
            check(zero(&v["failures"]["agent"]), "failed agent runs");
            check(zero(&v["failures"]["direct"]), "failed direct pairs");
            check(v["agent_ms"]["p50"].is_number(), "no agent timing");
        }
        Scenario::Reload => {
            check(zero(&v["failed"]), "failed requests during reloads");
            check(
                v["replacements_applied"] == v["replacements"],
                "a replacement was not applied",
            );
        }
        Scenario::Memory => {
            check(
                v["streams_open"] == v["streams_requested"],
                "not every stream opened",
            );
            check(
                v["rss_mib"].as_f64().is_some_and(|x| x > 0.0),
                "no RSS reading",
            );
        }
        Scenario::Start => {
            for g in v["guards"].as_array().into_iter().flatten() {
                check(g["p50_us"].is_number(), "no start time");
            }
        }
    }
    p
}
