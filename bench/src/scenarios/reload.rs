//! Hot reload under load: 128 streams through wasmgate while the default
//! guard is replaced 10 times (each time by a build with different bytes, so
//! each is a real compile and swap). The run alternates windows that start
//! with a replacement and quiet windows of the same length; the p99 change
//! is reload windows against quiet windows.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::run_info;
use crate::ctx::{Ctx, GuardSpec, random_hex};
use crate::http::{get_text, metric_sum};
use crate::load::{Load, Until, chat_body, first_errors, ms};
use crate::stats::{Summary, round};

/// `component` with a custom section appended: the same guard, other bytes
/// (`nonce` differs per run, so no compiled artifact is ever cached).
fn variant(component: &[u8], nonce: &str, n: usize) -> Vec<u8> {
    let name = b"wasmgate-bench-variant";
    let payload = format!("{nonce}-{n}");
    let mut section = Vec::new();
    leb128(&mut section, name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, section.len());
    out.extend_from_slice(&section);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let (workers, windows, window_s) = if ctx.smoke {
        (4, 2, 1.5)
    } else {
        (128, 20, 6.0)
    };
    let sim_flags = [
        "--mode",
        "lorem",
        "--lorem-tokens",
        "32",
        "--ttft-ms",
        "20",
        "--itl-ms",
        "20",
        "--max-num-seqs",
        "1024",
    ];
    let sim = ctx.sim("reload", &sim_flags)?;
    let comps = ctx.components_dir("reload", &[GuardSpec::new("guard", "guard")], false)?;
    let gate = ctx.gateway("reload", &sim, &comps, &[])?;
    let via = gate.target("wasmgate");
    let original = std::fs::read(ctx.component("guard")?)?;
    let nonce = random_hex(8);
    Load::new(&via, chat_body(true, 4, "warm up"), 4, Until::Count(2))
        .run()
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Load::new(
        &via,
        chat_body(true, 32, "Tell me a story about a lighthouse."),
        workers,
        Until::Flag(stop.clone()),
    );
    load.stagger = Duration::from_millis(660);
    load.timeout = Duration::from_secs(60);
    let epoch = Instant::now();
    load.epoch = epoch;
    let mut set = load.spawn();

    let replaced = |page: &str| {
        metric_sum(
            page,
            "wasmgate_component_reloads_total",
            &["component=\"guard\"", "result=\"replaced\""],
        )
    };
    let mut apply_ms = Vec::new();
    let mut reloads = 0;
    for w in 0..windows {
        let window_end = epoch + Duration::from_secs_f64(window_s * (w + 1) as f64);
        if w % 2 == 0 {
            reloads += 1;
            let before = replaced(&get_text(&via, "/metrics").await?);
            let bytes = variant(&original, &nonce, reloads);
            let guards = comps.join("guards");
            let t0 = Instant::now();
            // The documented atomic deploy: a hidden name, then a rename.
            tokio::task::spawn_blocking(move || {
                let tmp = guards.join(".guard.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, guards.join("guard.wasm"))
            })
            .await??;
            let mut applied = None;
            let give_up = t0 + Duration::from_secs(30);
            while Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(25)).await;
                if replaced(&get_text(&via, "/metrics").await?) > before {
                    applied = Some(ms(t0.elapsed()));
                    break;
                }
            }
            apply_ms.push(applied);
        }
        tokio::time::sleep_until(window_end.into()).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(mut v) = r {
            samples.append(&mut v);
        }
    }
    let page = get_text(&via, "/metrics").await?;

    let mut ttft = [Vec::new(), Vec::new()];
    let mut total = [Vec::new(), Vec::new()];
    let mut failed = 0;
    for s in &samples {
        let w = (s.start / window_s) as usize;
        let quiet = usize::from(w % 2 == 1);
        match s.result.ttft {
            Some(t) if s.result.ok() => {
                ttft[quiet].push(ms(t));
                total[quiet].push(ms(s.result.total));
            }
            _ => failed += 1,
        }
    }
    let (tr, tq) = (Summary::of(&ttft[0]), Summary::of(&ttft[1]));
    let (er, eq) = (Summary::of(&total[0]), Summary::of(&total[1]));
    let applied: Vec<f64> = apply_ms.iter().flatten().copied().collect();
    Ok(json!({
        "run": run_info(),
        "sim": sim_flags.join(" "),
        "streams": workers,
        "duration_s": round(window_s * windows as f64),
        "replacements": reloads,
        "replacements_applied": applied.len(),
        "apply_ms": Summary::of(&applied).json(),
        "requests": samples.len(),
        "failed": failed,
        "errors": first_errors(samples.iter().map(|s| &s.result), 5),
        "rejected_reloads": metric_sum(&page, "wasmgate_component_reloads_total", &["result=\"rejected\""]),
        "ttft_ms": {"reload_windows": tr.json(), "quiet_windows": tq.json()},
        "total_ms": {"reload_windows": er.json(), "quiet_windows": eq.json()},
        "p99_ttft_change_ms": round(tr.p99 - tq.p99),
        "p99_total_change_ms": round(er.p99 - eq.p99),
        "p50_ttft_change_ms": round(tr.p50 - tq.p50),
    }))
}
