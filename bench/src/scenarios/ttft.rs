//! TTFT overhead: streams at concurrency 1, 64 and 256 to vllm-sim directly,
//! through wasmgate (default guard) and, with `--litellm`, through LiteLLM's
//! proxy; phases alternate between the paths, round after round.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::run_info;
use crate::ctx::{Ctx, GuardSpec};
use crate::http::Target;
use crate::load::{Load, Until, chat_body, first_errors, ms};
use crate::procs::{cpu_seconds, settle, target_cpu};
use crate::stats::{Summary, noise_floor, round};

/// (concurrency, requests per worker per phase, max_tokens)
type Level = (usize, usize, u32);

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let (levels, rounds): (Vec<Level>, usize) = if ctx.smoke {
        (vec![(1, 3, 2), (4, 2, 4)], 1)
    } else {
        (vec![(1, 40, 2), (64, 4, 16), (256, 2, 16)], 5)
    };
    let (ttft_ms, itl_ms, tokens) = (20u64, 40u64, 16u64);
    let sim_flags: Vec<String> = [
        "--mode",
        "lorem",
        "--lorem-tokens",
        &tokens.to_string(),
        "--ttft-ms",
        &ttft_ms.to_string(),
        "--itl-ms",
        &itl_ms.to_string(),
        "--max-num-seqs",
        "1024",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let flags: Vec<&str> = sim_flags.iter().map(String::as_str).collect();
    let sim = ctx.sim("ttft", &flags)?;
    let comps = ctx.components_dir("ttft", &[GuardSpec::new("guard", "guard")], false)?;
    let gate = ctx.gateway("ttft", &sim, &comps, &[])?;
    // The same guard with its streaming PII redaction off: that redaction
    // holds back the trailing word of the text until the next token shows
    // it cannot be part of an address, key or number.
    let no_hold = GuardSpec {
        file: "guard",
        name: "guard",
        toml: Some("[config]\n\"pii.output\" = \"off\"\n"),
    };
    let comps_nh = ctx.components_dir("ttft-pii-off", &[no_hold], false)?;
    let gate_nh = ctx.gateway("ttft-pii-off", &sim, &comps_nh, &[])?;
    let mut targets: Vec<Target> = vec![
        sim.target("direct"),
        gate.target("wasmgate"),
        gate_nh.target("wasmgate, output PII redaction off"),
    ];
    targets[0].pid = None;
    let _peer = ctx.peer("ttft", &sim, &mut targets).await?;
    // Warm every path (connections, model list caches, compiled code).
    for t in &targets {
        Load::new(t, chat_body(true, 2, "warm up"), 4, Until::Count(3))
            .run()
            .await;
    }

    let stream_ms = ttft_ms + (tokens - 1) * itl_ms;
    let mut out_levels = Vec::new();
    for &(conc, per_worker, max_tokens) in &levels {
        let body = chat_body(true, max_tokens, "Tell me about the weather.");
        let k = targets.len();
        let mut ttft: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut first_event: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut total: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut failed = vec![0usize; k];
        let mut errors: Vec<Vec<String>> = vec![Vec::new(); k];
        let mut cpu = vec![0.0f64; k];
        let mut by_round: Vec<Vec<Value>> = vec![Vec::new(); k];
        let mut sim_cpu = vec![0.0f64; k];
        let mut wall = vec![0.0f64; k];
        for round_no in 0..rounds {
            for j in 0..k {
                let t = (round_no + j) % k;
                let mut load = Load::new(&targets[t], body.clone(), conc, Until::Count(per_worker));
                if conc > 1 {
                    load.stagger = Duration::from_millis(stream_ms);
                }
                let (c0, s0, w0) = (
                    target_cpu(&targets[t]),
                    cpu_seconds(sim.pid),
                    Instant::now(),
                );
                let samples = load.run().await;
                wall[t] += w0.elapsed().as_secs_f64();
                cpu[t] += target_cpu(&targets[t]) - c0;
                sim_cpu[t] += cpu_seconds(sim.pid) - s0;
                let round_ttft: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.result.ok())
                    .filter_map(|s| s.result.ttft.map(ms))
                    .collect();
                let rs = Summary::of(&round_ttft);
                by_round[t].push(json!({"p50": round(rs.p50), "p99": round(rs.p99), "max": round(rs.max), "loadavg": crate::procs::loadavg1()}));
                for s in &samples {
                    match s.result.ttft {
                        Some(d) if s.result.ok() => {
                            ttft[t].push(ms(d));
                            first_event[t].push(s.result.first_event.map_or(f64::NAN, ms));
                            total[t].push(ms(s.result.total));
                        }
                        _ => failed[t] += 1,
                    }
                }
                for e in first_errors(samples.iter().map(|s| &s.result), 3) {
                    if errors[t].len() < 3 && !errors[t].contains(&e) {
                        errors[t].push(e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(if ctx.smoke { 20 } else { 300 })).await;
                let mut busy = vec![sim.pid];
                busy.extend(targets[t].pid);
                settle(&busy, Duration::from_secs(if ctx.smoke { 2 } else { 30 })).await;
            }
        }
        let direct = Summary::of(&ttft[0]);
        let direct_first = Summary::of(&first_event[0]);
        let (f50, f99) = noise_floor(&ttft[0]);
        let mut rows = Vec::new();
        for t in 0..k {
            let s = Summary::of(&ttft[t]);
            let fe = Summary::of(&first_event[t]);
            let mut row = json!({
                "label": targets[t].label,
                "ttft_ms": s.json(),
                "first_event_ms": fe.json(),
                "total_ms": Summary::of(&total[t]).json(),
                "failed": failed[t],
                "errors": errors[t],
                "sim_cpu_pct": round(100.0 * sim_cpu[t] / wall[t].max(1e-9)),
                "ttft_ms_by_round": by_round[t],
            });
            if t > 0 {
                row["added_p50_ms"] = round(s.p50 - direct.p50);
                row["added_p99_ms"] = round(s.p99 - direct.p99);
                row["first_event_added_p50_ms"] = round(fe.p50 - direct_first.p50);
                row["first_event_added_p99_ms"] = round(fe.p99 - direct_first.p99);
                row["cpu_pct"] = round(100.0 * cpu[t] / wall[t].max(1e-9));
            }
            rows.push(row);
        }
        out_levels.push(json!({
            "concurrency": conc,
            "requests_per_worker_per_phase": per_worker,
            "rounds": rounds,
            "max_tokens": max_tokens,
            "noise_floor_ms": {"p50": round(f50), "p99": round(f99)},
            "targets": rows,
        }));
    }
    Ok(json!({
        "run": run_info(),
        "sim": sim_flags.join(" "),
        "levels": out_levels,
    }))
}
