//! Relay throughput: vllm-sim with no inter-token delay, 1,000-token
//! answers, 64 concurrent streams; tokens per second delivered to clients,
//! directly and through each gateway, in alternating timed windows, with
//! the CPU each process spent in the window (from /proc).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::run_info;
use crate::ctx::{Ctx, GuardSpec};
use crate::http::{Counters, Target};
use crate::load::{Load, Until, chat_body};
use crate::procs::{cpu_seconds, self_cpu_seconds, settle, target_cpu};
use crate::stats::{Summary, round};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let (workers, tokens, warm, window, rounds) = if ctx.smoke {
        (4, 50u32, 0.2, 0.5, 1)
    } else {
        (64, 1000u32, 1.0, 5.0, 4)
    };
    let sim_flags: Vec<String> = [
        "--mode",
        "lorem",
        "--lorem-tokens",
        &tokens.to_string(),
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
        "--max-num-seqs",
        "1024",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let flags: Vec<&str> = sim_flags.iter().map(String::as_str).collect();
    let sim = ctx.sim("relay", &flags)?;
    let with_guard = ctx.components_dir("relay", &[GuardSpec::new("guard", "guard")], false)?;
    let no_guard = ctx.components_dir("relay-none", &[], false)?;
    let gate = ctx.gateway("relay", &sim, &with_guard, &[])?;
    let bare = ctx.gateway("relay-none", &sim, &no_guard, &[])?;
    let mut targets: Vec<Target> = vec![
        sim.target("direct"),
        gate.target("wasmgate, default guard"),
        bare.target("wasmgate, no guard"),
    ];
    targets[0].pid = None;
    let _peer = ctx.peer("relay", &sim, &mut targets).await?;
    let body = chat_body(true, tokens, "Write a long story.");
    // Tokens are counted as content bytes divided by each path's bytes per
    // token, taken from a whole warm-up answer and its `usage`: a filter that
    // holds text back merges chunks, so counting events would undercount.
    let mut calibration = Vec::new();
    let mut bytes_per_token = Vec::new();
    for t in &targets {
        let s = Load::new(t, body.clone(), 1, Until::Count(1)).run().await;
        let r = &s[0].result;
        anyhow::ensure!(r.ok(), "{}: warm-up stream failed: {:?}", t.label, r.error);
        let usage = r.usage_tokens.unwrap_or(r.chunks).max(1);
        bytes_per_token.push(r.content_bytes as f64 / usage as f64);
        calibration.push(json!({
            "label": t.label,
            "content_events": r.chunks,
            "content_bytes": r.content_bytes,
            "usage_tokens": r.usage_tokens,
        }));
    }

    let k = targets.len();
    let mut tok = vec![Vec::new(); k];
    let mut rates = vec![Vec::new(); k];
    let mut secs = vec![0.0f64; k];
    let mut cpu = vec![0.0f64; k];
    let mut sim_cpu = vec![0.0f64; k];
    let mut client_cpu = vec![0.0f64; k];
    let mut errors = vec![0u64; k];
    for round_no in 0..rounds {
        for j in 0..k {
            let t = (round_no + j) % k;
            let counters = Arc::new(Counters::default());
            let mut load = Load::new(&targets[t], body.clone(), workers, Until::Count(usize::MAX));
            load.counters = counters.clone();
            load.timeout = Duration::from_secs(300);
            let mut set = load.spawn();
            tokio::time::sleep(Duration::from_secs_f64(warm)).await;
            // A slow path (LiteLLM) needs longer before every stream flows.
            let ramp = Instant::now();
            while (counters.first.load(Ordering::Relaxed) as usize) < workers
                && ramp.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let n0 = counters.bytes.load(Ordering::Relaxed);
            let (c0, s0, m0, w0) = (
                target_cpu(&targets[t]),
                cpu_seconds(sim.pid),
                self_cpu_seconds(),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs_f64(window)).await;
            let n1 = counters.bytes.load(Ordering::Relaxed);
            let dt = w0.elapsed().as_secs_f64();
            let tokens_in_window = (n1 - n0) as f64 / bytes_per_token[t];
            cpu[t] += target_cpu(&targets[t]) - c0;
            sim_cpu[t] += cpu_seconds(sim.pid) - s0;
            client_cpu[t] += self_cpu_seconds() - m0;
            secs[t] += dt;
            tok[t].push(tokens_in_window);
            rates[t].push(tokens_in_window / dt);
            set.abort_all();
            while let Some(r) = set.join_next().await {
                if let Ok(samples) = r {
                    errors[t] += samples.iter().filter(|s| !s.result.ok()).count() as u64;
                }
            }
            tokio::time::sleep(Duration::from_millis(if ctx.smoke { 50 } else { 500 })).await;
            let mut busy = vec![sim.pid];
            busy.extend(targets[t].pid);
            settle(&busy, Duration::from_secs(if ctx.smoke { 2 } else { 60 })).await;
        }
    }
    let total = |t: usize| tok[t].iter().sum::<f64>();
    let direct_rate = total(0) / secs[0];
    let mut rows = Vec::new();
    for t in 0..k {
        let rate = total(t) / secs[t];
        let per_m = |c: f64| round(c / (total(t) / 1e6));
        let mut row = json!({
            "label": targets[t].label,
            "tokens_per_s": round(rate),
            "tokens_per_s_by_round": rates[t].iter().map(|r| round(*r)).collect::<Vec<_>>(),
            "sim_cpu_s_per_mtok": per_m(sim_cpu[t]),
            "client_cpu_s_per_mtok": per_m(client_cpu[t]),
            "failed_streams": errors[t],
        });
        if t > 0 {
            // Per-round ratios: each window against the direct window of the
            // same round.
            let ratios: Vec<f64> = rates[t].iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
            let rs = Summary::of(&ratios);
            row["ratio_to_direct"] = round(rate / direct_rate);
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            row["ratio_by_round"] =
                json!({"min": round(min), "median": round(rs.p50), "max": round(rs.max)});
            row["cpu_s_per_mtok"] = per_m(cpu[t]);
            row["cpu_pct"] = round(100.0 * cpu[t] / secs[t]);
        }
        rows.push(row);
    }
    Ok(json!({
        "run": run_info(),
        "sim": sim_flags.join(" "),
        "streams": workers,
        "tokens_per_answer": tokens,
        "window_s": window,
        "warm_s": warm,
        "warm_rule": "at least warm_s, and until every stream has its first token (at most 60 s); after each window, until the path and vllm-sim are idle (at most 60 s)",
        "rounds": rounds,
        "calibration": calibration,
        "targets": rows,
    }))
}
