//! Memory: wasmgate's resident memory (default guard) idle and with 1,000
//! concurrent slow streams open, each with its output filter alive.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::run_info;
use crate::ctx::{Ctx, GuardSpec};
use crate::http::{get_text, metric_sum};
use crate::load::{Load, Until, chat_body};
use crate::procs::{smaps_kib, status_kib};
use crate::stats::round;

fn mib(kib: Option<u64>) -> Value {
    round(kib.unwrap_or(0) as f64 / 1024.0)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let streams = if ctx.smoke { 20 } else { 1000 };
    let sim_flags = [
        "--mode",
        "lorem",
        "--lorem-tokens",
        "200",
        "--ttft-ms",
        "50",
        "--itl-ms",
        "300",
        "--max-num-seqs",
        "4096",
    ];
    let sim = ctx.sim("memory", &sim_flags)?;
    let comps = ctx.components_dir("memory", &[GuardSpec::new("guard", "guard")], false)?;
    let gate = ctx.gateway("memory", &sim, &comps, &[])?;
    let via = gate.target("wasmgate");
    Load::new(&via, chat_body(true, 2, "warm up"), 4, Until::Count(5))
        .run()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = status_kib(gate.pid, "VmRSS");

    let mut load = Load::new(
        &via,
        chat_body(true, 200, "Tell me a very long story."),
        streams,
        Until::Count(1),
    );
    // Open the streams over ~2 s rather than all in one instant.
    load.stagger = Duration::from_millis(if ctx.smoke { 100 } else { 2000 });
    let counters = load.counters.clone();
    let mut set = load.spawn();
    let t0 = Instant::now();
    let limit = Duration::from_secs(if ctx.smoke { 20 } else { 60 });
    while (counters.first.load(Ordering::Relaxed) as usize) < streams && t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = counters.first.load(Ordering::Relaxed);
    let ramp_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let page = get_text(&via, "/metrics").await?;
    let inflight = metric_sum(&page, "wasmgate_inflight_streams", &[]);
    let rss = status_kib(gate.pid, "VmRSS");
    let anon = smaps_kib(gate.pid, "Anonymous");
    let hwm = status_kib(gate.pid, "VmHWM");
    let threads = std::fs::read_to_string(format!("/proc/{}/status", gate.pid))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
    let sim_rss = status_kib(sim.pid, "VmRSS");
    set.abort_all();
    while set.join_next().await.is_some() {}
    let per_stream_kib = match (rss, idle_rss) {
        (Some(r), Some(i)) if open > 0 => (r.saturating_sub(i)) as f64 / open as f64,
        _ => f64::NAN,
    };
    Ok(json!({
        "run": run_info(),
        "sim": sim_flags.join(" "),
        "streams_requested": streams,
        "streams_open": open,
        "inflight_streams_gauge": inflight,
        "ramp_s": round(ramp_s),
        "idle_rss_mib": mib(idle_rss),
        "rss_mib": mib(rss),
        "anonymous_mib": mib(anon),
        "peak_rss_mib": mib(hwm),
        "per_stream_kib": round(per_stream_kib),
        "threads": threads,
        "sim_rss_mib": mib(sim_rss),
    }))
}
