//! `wasmgate eval`: runs a guard's `check-input` over a labelled JSONL set
//! through the serving runtime (fresh instance per call) and reports
//! detection quality and latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::EvalArgs;
use crate::config::{ComponentDefaults, ComponentSettings};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::bindings::{ChatRequest, Message, Role, Verdict};
use crate::runtime::compile::sha256_hex;

#[derive(Deserialize)]
struct Row {
    text: String,
    label: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// Confusion counts.
#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
}

impl Counts {
    fn add(&mut self, injection: bool, flagged: bool) {
        match (injection, flagged) {
            (true, true) => self.tp += 1,
            (true, false) => self.fn_ += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 { 0.0 } else { a as f64 / b as f64 }
    }
    fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    fn fpr(&self) -> f64 {
        Self::ratio(self.fp, self.fp + self.tn)
    }
    fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn json(&self) -> Value {
        json!({
            "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn_,
            "recall": self.recall(), "fpr": self.fpr(),
            "precision": self.precision(), "f1": self.f1(),
        })
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let rows = read_rows(&args.data)?;
    let bytes =
        std::fs::read(&args.guard).with_context(|| format!("reading {}", args.guard.display()))?;
    let sha = sha256_hex(&bytes);
    let runtime =
        Runtime::new(64, None).map_err(|e| anyhow::anyhow!("starting the runtime: {e:#}"))?;
    let settings = ComponentSettings::load(
        &args.guard.with_extension("toml"),
        &ComponentDefaults::default(),
    )?;
    let name = args
        .guard
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("guard")
        .to_owned();
    let guard = runtime
        .load_guard(&name, Arc::new(bytes), sha, settings)
        .await
        .map_err(|e| anyhow::anyhow!("{} is not a valid guard: {e}", args.guard.display()))?;
    let metrics = Metrics::new()?;

    let mut all = Counts::default();
    let mut by_lang: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_category: BTreeMap<String, Counts> = BTreeMap::new();
    let mut blocked_as: BTreeMap<String, u64> = BTreeMap::new();
    let mut faults = 0u64;
    let mut latencies = Vec::with_capacity(rows.len());
    let mut misses = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let injection = match row.label.as_str() {
            "injection" => true,
            "benign" => false,
            other => anyhow::bail!(
                "row {}: label must be `injection` or `benign`, not `{other}`",
                i + 1
            ),
        };
        let req = ChatRequest {
            request_id: format!("eval-{i}"),
            model: "eval".into(),
            messages: vec![Message {
                role: Role::User,
                content: row.text.clone(),
            }],
            max_tokens: None,
            temperature: None,
            caller: None,
        };
        let started = Instant::now();
        let verdict = guard.check_input(&req, &metrics).await;
        latencies.push(started.elapsed().as_micros() as u64);
        let flagged = match verdict {
            Ok(Verdict::Block(b)) => {
                *blocked_as.entry(b.category).or_default() += 1;
                true
            }
            Ok(_) => false,
            Err(_) => {
                faults += 1;
                true
            }
        };
        all.add(injection, flagged);
        by_lang
            .entry(row.lang.clone().unwrap_or_else(|| "?".into()))
            .or_default()
            .add(injection, flagged);
        by_category
            .entry(row.category.clone().unwrap_or_else(|| "?".into()))
            .or_default()
            .add(injection, flagged);
        if injection != flagged && misses.len() < args.show_errors {
            misses.push(format!(
                "{} {}: {}",
                if injection { "missed" } else { "false alarm" },
                row.lang.as_deref().unwrap_or("?"),
                row.text.chars().take(120).collect::<String>()
            ));
        }
    }
    latencies.sort_unstable();
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));

    if args.json {
        let mut out = all.json();
        if let Value::Object(o) = &mut out {
            o.insert("rows".into(), rows.len().into());
            o.insert("p50_us".into(), p50.into());
            o.insert("p99_us".into(), p99.into());
            o.insert("faults".into(), faults.into());
            o.insert(
                "by_lang".into(),
                by_lang.iter().map(|(k, c)| (k.clone(), c.json())).collect(),
            );
            o.insert(
                "by_category".into(),
                by_category
                    .iter()
                    .map(|(k, c)| (k.clone(), c.json()))
                    .collect(),
            );
            o.insert("blocked_as".into(), json!(blocked_as));
        }
        println!("{out}");
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "guard {} {} on {} ({} rows)",
            guard.info.name,
            guard.info.version,
            args.data.display(),
            rows.len()
        );
        let _ = writeln!(
            s,
            "{:<28} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7} {:>9} {:>7}",
            "slice", "tp", "fp", "tn", "fn", "recall", "fpr", "precision", "f1"
        );
        let mut line = |name: &str, c: &Counts| {
            let _ = writeln!(
                s,
                "{:<28} {:>5} {:>5} {:>5} {:>5} {:>7.3} {:>7.3} {:>9.3} {:>7.3}",
                name,
                c.tp,
                c.fp,
                c.tn,
                c.fn_,
                c.recall(),
                c.fpr(),
                c.precision(),
                c.f1()
            );
        };
        line("all", &all);
        for (lang, c) in &by_lang {
            line(&format!("lang={lang}"), c);
        }
        for (cat, c) in &by_category {
            line(&format!("category={cat}"), c);
        }
        let _ = writeln!(s, "blocked as: {blocked_as:?}");
        let _ = writeln!(s, "faults (counted as blocked): {faults}");
        let _ = writeln!(
            s,
            "check-input latency, fresh instance per call: p50 {p50} µs, p99 {p99} µs"
        );
        for m in &misses {
            let _ = writeln!(s, "  {m}");
        }
        print!("{s}");
    }

    let mut failed = Vec::new();
    if let Some(min) = args.min_recall {
        for (name, c) in std::iter::once(("all".to_owned(), &all))
            .chain(by_lang.iter().map(|(k, c)| (format!("lang={k}"), c)))
        {
            if c.tp + c.fn_ > 0 && c.recall() < min {
                failed.push(format!("{name}: recall {:.3} < {min}", c.recall()));
            }
        }
    }
    if let Some(max) = args.max_fpr {
        for (name, c) in std::iter::once(("all".to_owned(), &all))
            .chain(by_lang.iter().map(|(k, c)| (format!("lang={k}"), c)))
        {
            if c.fp + c.tn > 0 && c.fpr() > max {
                failed.push(format!(
                    "{name}: false-positive rate {:.3} > {max}",
                    c.fpr()
                ));
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("targets missed: {}", failed.join("; "));
    }
    Ok(())
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a JSON row", path.display(), i + 1))
        })
        .collect()
}
