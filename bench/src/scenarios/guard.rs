//! Guard overhead: non-streamed requests, one at a time, to vllm-sim
//! directly and through three gateways (no guard, the default guard, three
//! guards), interleaved request by request.

use std::time::Instant;

use serde_json::{Value, json};

use super::{PROMPT, gateway_breakdown, run_info};
use crate::ctx::{Ctx, GuardSpec};
use crate::http::{Conn, Target, get_text};
use crate::load::{CHAT, chat_body};
use crate::procs::target_cpu;
use crate::stats::{Summary, noise_floor, round};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let (n, warm) = if ctx.smoke { (10, 2) } else { (3000, 100) };
    let sim_flags = ["--mode", "echo", "--ttft-ms", "0", "--itl-ms", "0"];
    let sim = ctx.sim("guard", &sim_flags)?;
    let dirs = [
        ("guard-none", vec![]),
        ("guard-default", vec![GuardSpec::new("guard", "guard")]),
        (
            "guard-three",
            vec![
                GuardSpec::new("guard", "guard"),
                GuardSpec::new("banned_words", "banned-words"),
                GuardSpec {
                    file: "banned_words",
                    name: "banned-words-2",
                    toml: Some(
                        "order = 20\n[config]\nwords = \"kiwi, mango, papaya, durian, rambutan, lychee\"\n",
                    ),
                },
            ],
        ),
    ];
    let mut gates = Vec::new();
    for (name, guards) in &dirs {
        let comps = ctx.components_dir(name, guards, false)?;
        gates.push(ctx.gateway(name, &sim, &comps, &[])?);
    }
    let labels = [
        "direct",
        "wasmgate, no guard",
        "wasmgate, default guard",
        "wasmgate, 3 guards",
    ];
    let mut targets: Vec<Target> = vec![sim.target(labels[0])];
    targets[0].pid = None;
    for (g, label) in gates.iter().zip(&labels[1..]) {
        targets.push(g.target(label));
    }
    let body = chat_body(false, 16, PROMPT);
    let mut conns: Vec<Conn> = targets.iter().map(|t| Conn::new(t.addr)).collect();
    for _ in 0..warm {
        for (t, c) in targets.iter().zip(conns.iter_mut()) {
            let (status, b) = c.unary(t.post(CHAT, body.clone())).await?;
            anyhow::ensure!(
                status == 200,
                "{}: warm-up got HTTP {status}: {}",
                t.label,
                String::from_utf8_lossy(&b)
            );
        }
    }

    let mut pages_before = Vec::new();
    for g in &gates {
        pages_before.push(get_text(&g.target(""), "/metrics").await?);
    }
    let cpu0: Vec<f64> = targets.iter().map(target_cpu).collect();
    let k = targets.len();
    let mut lat: Vec<Vec<f64>> = vec![Vec::with_capacity(n); k];
    let mut failures = vec![0u64; k];
    let started = Instant::now();
    for i in 0..n {
        for j in 0..k {
            // Rotate the order so no target always follows another.
            let t = (i + j) % k;
            let t0 = Instant::now();
            let r = conns[t].unary(targets[t].post(CHAT, body.clone())).await;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            match r {
                Ok((200, _)) => lat[t].push(us),
                _ => failures[t] += 1,
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu1: Vec<f64> = targets.iter().map(target_cpu).collect();

    let direct = Summary::of(&lat[0]);
    let (floor50, floor99) = noise_floor(&lat[0]);
    let mut rows = Vec::new();
    for t in 0..k {
        let s = Summary::of(&lat[t]);
        let mut row = json!({
            "label": targets[t].label,
            "latency_us": s.json(),
            "failures": failures[t],
        });
        if t > 0 {
            row["added_p50_us"] = round(s.p50 - direct.p50);
            row["added_p99_us"] = round(s.p99 - direct.p99);
            row["added_mean_us"] = round(s.mean - direct.mean);
            row["cpu_us_per_request"] = round((cpu1[t] - cpu0[t]) * 1e6 / n as f64);
            let after = get_text(&targets[t], "/metrics").await?;
            row["components"] = gateway_breakdown(&pages_before[t - 1], &after);
        }
        rows.push(row);
    }
    Ok(json!({
        "run": run_info(),
        "requests_per_target": n,
        "wall_s": round(wall),
        "sim": sim_flags.join(" "),
        "request": "non-streamed, 1 user message of 553 characters, max_tokens 16 (echo: 16 tokens back)",
        "noise_floor_us": {"p50": round(floor50), "p99": round(floor99)},
        "targets": rows,
    }))
}
