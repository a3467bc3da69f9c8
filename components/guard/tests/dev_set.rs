//! Measures the injection detector on the shared dev set
//! (`shared/data/guard-dev.jsonl`, next to the repository).
//!
//! Prints recall and false-positive rate and asserts the targets (recall ≥
//! 0.95, FPR ≤ 0.03, overall and per language). These are train-set numbers
//! for the scorer (it was trained on this file); the honest estimate is the
//! cross-validation in `tools/train_scorer.py`. The must-block / must-allow
//! cases are asserted in `src/detect.rs`. Set `GUARD_DEV_VERBOSE=1` to list
//! the misses and false positives.

use std::path::PathBuf;
use std::time::Instant;

use guard::detect::assess;

fn json_str(line: &str, key: &str) -> Option<String> {
    guard::jsonl::str_field(line, key)
}

#[derive(Default)]
struct Counts {
    tp: u32,
    fn_: u32,
    fp: u32,
    tn: u32,
}

impl Counts {
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }

    fn fpr(&self) -> f64 {
        self.fp as f64 / (self.fp + self.tn).max(1) as f64
    }

    fn line(&self, name: &str) -> String {
        let pos = self.tp + self.fn_;
        let neg = self.fp + self.tn;
        format!(
            "{name:>5}: recall {:.3} ({}/{pos})  FPR {:.3} ({}/{neg})",
            self.tp as f64 / pos.max(1) as f64,
            self.tp,
            self.fp as f64 / neg.max(1) as f64,
            self.fp,
        )
    }
}

#[test]
fn dev_set_recall_and_fpr() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/guard-dev.jsonl");
    let Ok(data) = std::fs::read_to_string(&path) else {
        println!("dev set not found at {}: skipping", path.display());
        return;
    };
    let verbose = std::env::var_os("GUARD_DEV_VERBOSE").is_some();
    let (mut en, mut zh, mut all) = (Counts::default(), Counts::default(), Counts::default());
    let mut elapsed = std::time::Duration::ZERO;
    let mut rows = 0u32;
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let text = json_str(line, "text").expect("text field");
        let label = json_str(line, "label").expect("label field");
        let lang = json_str(line, "lang").unwrap_or_default();
        let t = Instant::now();
        let a = assess(&text);
        elapsed += t.elapsed();
        rows += 1;
        let injection = label == "injection";
        let flagged = a.is_injection();
        for c in [&mut all, if lang == "zh" { &mut zh } else { &mut en }] {
            match (injection, flagged) {
                (true, true) => c.tp += 1,
                (true, false) => c.fn_ += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
            }
        }
        if verbose && injection != flagged {
            let kind = if injection { "MISS" } else { "FP  " };
            let short: String = text.chars().take(160).collect();
            println!(
                "{kind} rules {:.2} model {:.2} {:?} {short:?}",
                a.rules, a.model, a.signals
            );
        }
    }
    println!("guard dev set ({rows} rows, {}):", path.display());
    println!("{}", en.line("en"));
    println!("{}", zh.line("zh"));
    println!("{}", all.line("all"));
    // The targets, overall and per language (the host's `eval` test
    // checks the same through the component).
    for (name, c) in [("en", &en), ("zh", &zh), ("all", &all)] {
        assert!(c.recall() >= 0.95, "{name}: {}", c.line(name));
        assert!(c.fpr() <= 0.03, "{name}: {}", c.line(name));
    }
    println!(
        "mean assess time (native, {}): {:.1} µs",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        elapsed.as_secs_f64() * 1e6 / rows.max(1) as f64
    );
}

/// Benign rows that come close to the threshold (margin check; prints only).
#[test]
fn dev_set_benign_margin() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/guard-dev.jsonl");
    let Ok(data) = std::fs::read_to_string(&path) else {
        println!("dev set not found at {}: skipping", path.display());
        return;
    };
    if std::env::var_os("GUARD_DEV_VERBOSE").is_none() {
        return;
    }
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let text = json_str(line, "text").expect("text field");
        if json_str(line, "label").as_deref() == Some("benign") {
            let a = assess(&text);
            if a.rules >= 0.2 || a.model >= 0.2 {
                let short: String = text.chars().take(160).collect();
                println!("NEAR {:.2} {:?} {short:?}", a.score, a.signals);
            }
        }
    }
}

/// Scores every line of the file named by `GUARD_ADHOC` (for trying rules).
#[test]
fn adhoc_lines() {
    let Some(path) = std::env::var_os("GUARD_ADHOC") else {
        return;
    };
    let data = std::fs::read_to_string(path).expect("GUARD_ADHOC file");
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let a = assess(line);
        let mark = if a.is_injection() { "BLOCK" } else { "allow" };
        println!(
            "{mark} rules {:.2} model {:.2} {:<20} {line:?} {:?}",
            a.rules,
            a.model,
            a.category_str(),
            a.signals
        );
    }
}
