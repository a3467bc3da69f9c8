//! Feature extraction for `tools/train_scorer.py` (not part of the component).
//!
//! Reads JSONL rows with a `text` field on stdin; for each prints one line:
//! `RULE_SCORE<TAB>feature indices (the top BITS bits of each hash) with counts
//! (idx:count ...)`,
//! using exactly the scorer's own normalisation and hashing.
//! Usage: `cargo run -p guard --example featurize -- BITS FAMILIES < rows.jsonl`
//! (FAMILIES: digits 1..6, e.g. `123456`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bits: u32 = args.get(1).map_or(16, |a| a.parse().expect("BITS"));
    let fams: Vec<u8> = args
        .get(2)
        .map_or("123456".to_string(), |s| s.clone())
        .bytes()
        .map(|b| b - b'0')
        .collect();
    assert!((1..=32).contains(&bits), "BITS must be 1..=32");
    let shift = 32 - bits;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        if line.trim().is_empty() {
            continue;
        }
        let text = guard::jsonl::str_field(&line, "text").expect("text field");
        let norm = guard::normalize::normalize(&text);
        let rules = guard::detect::assess_rules(&text).score;
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        guard::scorer::features(&norm.text, |fam, h| {
            if fams.contains(&fam) {
                *counts.entry(((h as u64) >> shift) as u32).or_default() += 1;
            }
        });
        write!(out, "{rules}\t").unwrap();
        for (i, (k, v)) in counts.iter().enumerate() {
            if i > 0 {
                out.write_all(b" ").unwrap();
            }
            write!(out, "{k}:{v}").unwrap();
        }
        out.write_all(b"\n").unwrap();
    }
}
