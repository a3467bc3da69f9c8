//! Component start: a fresh instance plus one `check-input` of the default
//! guard, timed in-process by `wasmgate eval` (the serving runtime, no HTTP),
//! with `banned-words` (the smallest useful guard) as the floor.

use serde_json::{Value, json};

use super::{PROMPT, run_info};
use crate::ctx::Ctx;
use crate::stats::{Summary, round};

/// Benign prompts of several lengths and languages.
fn rows(n: usize) -> String {
    const TEXTS: &[&str] = &[
        "What is the capital of France?",
        "Summarise the following meeting notes in three bullet points: the team agreed to ship the release on Friday, QA will run the regression suite on Thursday, and the docs need a section on upgrades.",
        "Write a haiku about the sea.",
        "Translate to German: the invoice is attached, please pay it within thirty days.",
        "请用三句话介绍一下长城的历史。",
        "¿Cuál es la diferencia entre una lista y una tupla en Python?",
        "Explain how a hash map handles collisions, with a short example in Rust.",
        PROMPT,
    ];
    let mut out = String::new();
    for i in 0..n {
        let text = TEXTS[i % TEXTS.len()];
        out.push_str(&json!({"text": format!("{text} (#{i})"), "label": "benign"}).to_string());
        out.push('\n');
    }
    out
}

fn eval(ctx: &Ctx, guard: &std::path::Path, data: &std::path::Path) -> anyhow::Result<Value> {
    let out = std::process::Command::new(&ctx.wasmgate)
        .arg("eval")
        .arg("--guard")
        .arg(guard)
        .arg("--data")
        .arg(data)
        .arg("--json")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "wasmgate eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(line)?)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let (n, repeats) = if ctx.smoke { (16, 1) } else { (4000, 3) };
    let dir = ctx.work.join("start");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("rows.jsonl");
    std::fs::write(&data, rows(n))?;
    // The guard-overhead scenario's 553-character prompt: check-input work
    // grows with the text.
    let long = dir.join("prompt-rows.jsonl");
    std::fs::write(
        &long,
        (0..n)
            .map(|i| {
                json!({"text": format!("{PROMPT} (#{i})"), "label": "benign"}).to_string() + "\n"
            })
            .collect::<String>(),
    )?;
    let mut out = Vec::new();
    for (stem, name) in [("guard", "guard"), ("banned_words", "banned-words")] {
        let file = dir.join(format!("{name}.wasm"));
        std::fs::copy(ctx.component(stem)?, &file)?;
        out.push((name, file, Vec::new(), Vec::new()));
    }
    let mut long_p50 = Vec::new();
    let mut long_p99 = Vec::new();
    // Alternate the two guards, a few runs each, and keep every run's
    // percentiles: the spread between runs is the noise.
    for _ in 0..repeats {
        for (_, file, p50, p99) in &mut out {
            let v = eval(ctx, file, &data)?;
            p50.push(v["p50_us"].as_f64().unwrap_or(f64::NAN));
            p99.push(v["p99_us"].as_f64().unwrap_or(f64::NAN));
        }
        let v = eval(ctx, &out[0].1, &long)?;
        long_p50.push(v["p50_us"].as_f64().unwrap_or(f64::NAN));
        long_p99.push(v["p99_us"].as_f64().unwrap_or(f64::NAN));
    }
    let guards: Vec<Value> = out
        .iter()
        .map(|(name, _, p50, p99)| {
            let (a, b) = (Summary::of(p50), Summary::of(p99));
            json!({
                "guard": name,
                "p50_us": round(a.p50),
                "p99_us": round(b.p50),
                "p50_us_by_run": p50,
                "p99_us_by_run": p99,
            })
        })
        .collect();
    Ok(json!({
        "run": run_info(),
        "calls_per_run": n,
        "runs": repeats,
        "method": "wasmgate eval --json: fresh Store + instantiate (pooling allocator) + check-input, sequential, one process; p50/p99 are the medians over runs",
        "guards": guards,
        "default_guard_553_char_prompt": {
            "p50_us": round(Summary::of(&long_p50).p50),
            "p99_us": round(Summary::of(&long_p99).p50),
        },
    }))
}
