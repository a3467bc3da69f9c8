//! `wasmgate eval` on the development set, through the serving runtime.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `wasmgate eval --json` of the built component `name` on `data`; it must succeed.
fn eval_json(name: &str, data: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["eval", "--json", "--guard"])
        .arg(common::component(name))
        .arg("--data")
        .arg(data)
        .output()
        .expect("run eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn eval_reports_quality_and_latency_of_the_default_guard() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/guard-dev.jsonl");
    assert!(data.exists(), "{} is missing", data.display());
    let v = eval_json("guard", &data);
    for key in [
        "tp",
        "fp",
        "tn",
        "fn",
        "recall",
        "fpr",
        "precision",
        "f1",
        "p50_us",
        "p99_us",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    let n = |k: &str| v[k].as_f64().unwrap();
    assert_eq!(n("tp") + n("fp") + n("tn") + n("fn"), 600.0);
    // The guard-quality targets (issue 3), overall and in each language.
    assert!(n("recall") >= 0.95, "{v}");
    assert!(n("fpr") <= 0.03, "{v}");
    for lang in ["en", "zh"] {
        assert!(
            v["by_lang"][lang]["recall"].as_f64().unwrap() >= 0.95,
            "{lang}: {v}"
        );
        assert!(
            v["by_lang"][lang]["fpr"].as_f64().unwrap() <= 0.03,
            "{lang}: {v}"
        );
    }

    // Targets can be enforced by exit code.
    let strict = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["eval", "--min-recall", "1.01", "--guard"])
        .arg(common::component("guard"))
        .arg("--data")
        .arg(&data)
        .output()
        .expect("run eval");
    assert!(!strict.status.success());
    assert!(String::from_utf8_lossy(&strict.stderr).contains("targets missed"));
}

/// A fresh instance per call, even though the pooling allocator hands the
/// same memory slot back and resets it in place: the `remember` fixture blocks
/// when a static, initialised data or a grown page still holds what an
/// earlier call wrote.
#[test]
fn no_state_survives_from_one_check_input_to_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("rows.jsonl");
    let rows: String = (0..200)
        .map(|i| format!("{{\"text\": \"hello {i}\", \"label\": \"benign\"}}\n"))
        .collect();
    std::fs::write(&data, rows).expect("write rows");
    let v = eval_json("remember", &data);
    assert_eq!(v["tn"], 200, "{v}");
    assert_eq!(v["faults"], 0, "{v}");
}
