//! `kb-search`: BM25 over the passages of a folder of Markdown and text
//! files. The index is built on first use and rebuilt when a file in the
//! folder is added, removed or modified.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const K1: f64 = 1.2;
const B: f64 = 0.75;
/// Passages are cut at headings and blank lines, merged up to this size.
const PASSAGE_CHARS: usize = 900;
/// How often the folder is checked for changes.
const RECHECK: Duration = Duration::from_secs(1);
const MAX_FILES: usize = 2_000;

/// One retrievable passage.
#[derive(Debug, Clone)]
pub struct Passage {
    /// Path relative to the folder's parent, e.g. `docs/guards.md`.
    pub source: String,
    pub heading: String,
    pub text: String,
}

/// A search hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub passage: Arc<Passage>,
    pub score: f64,
}

struct Index {
    passages: Vec<Arc<Passage>>,
    /// term → (passage index, term frequency)
    postings: HashMap<String, Vec<(usize, u32)>>,
    lengths: Vec<u32>,
    avg_len: f64,
    fingerprint: Vec<(PathBuf, SystemTime, u64)>,
}

/// A folder's index, refreshed on change.
pub struct Kb {
    dir: PathBuf,
    state: Mutex<Option<(Instant, Arc<Index>)>>,
}

impl Kb {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Mutex::new(None),
        }
    }

    /// The top `k` passages for `query`.
    pub fn search(&self, query: &str, k: usize) -> Vec<Hit> {
        let index = self.index();
        let terms = tokenize(query);
        let n = index.passages.len() as f64;
        let mut scores: HashMap<usize, f64> = HashMap::new();
        for term in &terms {
            let Some(post) = index.postings.get(term) else {
                continue;
            };
            let idf = ((n - post.len() as f64 + 0.5) / (post.len() as f64 + 0.5) + 1.0).ln();
            for &(doc, tf) in post {
                let len = f64::from(index.lengths[doc]);
                let tf = f64::from(tf);
                let s = idf * tf * (K1 + 1.0)
                    / (tf + K1 * (1.0 - B + B * len / index.avg_len.max(1.0)));
                *scores.entry(doc).or_default() += s;
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .map(|(doc, score)| Hit {
                passage: index.passages[doc].clone(),
                score,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.passage.source.cmp(&b.passage.source))
        });
        hits.truncate(k);
        hits
    }

    fn index(&self) -> Arc<Index> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((checked, index)) = state.as_ref()
            && checked.elapsed() < RECHECK
        {
            return index.clone();
        }
        let files = list_files(&self.dir);
        let fingerprint: Vec<_> = files
            .iter()
            .filter_map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((p.clone(), m.modified().ok()?, m.len()))
            })
            .collect();
        if let Some((_, index)) = state.as_ref()
            && index.fingerprint == fingerprint
        {
            let index = index.clone();
            *state = Some((Instant::now(), index.clone()));
            return index;
        }
        let index = Arc::new(build(&self.dir, fingerprint));
        tracing::info!(dir = %self.dir.display(), passages = index.passages.len(), "knowledge base indexed");
        *state = Some((Instant::now(), index.clone()));
        index
    }
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("md" | "txt" | "markdown")
            ) {
                out.push(p);
            }
            if out.len() >= MAX_FILES {
                break;
            }
        }
    }
    out.sort();
    out
}

fn build(dir: &Path, fingerprint: Vec<(PathBuf, SystemTime, u64)>) -> Index {
    let base = dir.parent().unwrap_or(dir);
    let mut passages = Vec::new();
    for (path, _, _) in &fingerprint {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let source = path
            .strip_prefix(base)
            .unwrap_or(path)
            .display()
            .to_string();
        for (heading, body) in split_passages(&text) {
            passages.push(Arc::new(Passage {
                source: source.clone(),
                heading,
                text: body,
            }));
        }
    }
    let mut postings: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
    let mut lengths = Vec::with_capacity(passages.len());
    for (i, p) in passages.iter().enumerate() {
        let mut tf: HashMap<String, u32> = HashMap::new();
        let tokens = tokenize(&format!("{} {}", p.heading, p.text));
        lengths.push(tokens.len() as u32);
        for t in tokens {
            *tf.entry(t).or_default() += 1;
        }
        for (t, n) in tf {
            postings.entry(t).or_default().push((i, n));
        }
    }
    let avg_len = if lengths.is_empty() {
        1.0
    } else {
        lengths.iter().map(|&l| f64::from(l)).sum::<f64>() / lengths.len() as f64
    };
    Index {
        passages,
        postings,
        lengths,
        avg_len,
        fingerprint,
    }
}

/// Splits a document at headings and blank lines, merging small pieces.
fn split_passages(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut current = String::new();
    let flush = |heading: &str, current: &mut String, out: &mut Vec<(String, String)>| {
        let body = current.trim();
        if !body.is_empty() {
            out.push((heading.to_owned(), body.to_owned()));
        }
        current.clear();
    };
    for block in text.split("\n\n") {
        let trimmed = block.trim();
        if let Some(h) = trimmed.strip_prefix('#') {
            flush(&heading, &mut current, &mut out);
            let mut lines = trimmed.lines();
            heading = h.trim_start_matches('#').trim().to_owned();
            lines.next();
            current.push_str(&lines.collect::<Vec<_>>().join("\n"));
            continue;
        }
        if current.chars().count() + trimmed.chars().count() > PASSAGE_CHARS {
            flush(&heading, &mut current, &mut out);
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(trimmed);
    }
    flush(&heading, &mut current, &mut out);
    out
}

/// Lower-cased ASCII words (2+ chars) and overlapping CJK bigrams.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_cjk: Option<char> = None;
    for c in text.chars() {
        if c.is_alphanumeric() && !is_cjk(c) {
            word.extend(c.to_lowercase());
            prev_cjk = None;
            continue;
        }
        if word.chars().count() >= 2 {
            out.push(std::mem::take(&mut word));
        } else {
            word.clear();
        }
        if is_cjk(c) {
            if let Some(p) = prev_cjk {
                out.push(format!("{p}{c}"));
            } else {
                out.push(c.to_string());
            }
            prev_cjk = Some(c);
        } else {
            prev_cjk = None;
        }
    }
    if word.chars().count() >= 2 {
        out.push(word);
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_the_relevant_passage_first_and_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir(&docs).unwrap();
        std::fs::write(docs.join("guards.md"), "# Guards\n\nDrop a guard wasm file into the guards folder to deploy it.\n\n# Other\n\nUnrelated text about dashboards.").unwrap();
        std::fs::write(
            docs.join("ops.md"),
            "# Metrics\n\nPrometheus scrapes the metrics endpoint.",
        )
        .unwrap();
        let kb = Kb::new(docs.clone());
        let hits = kb.search("how do I deploy a new guard", 2);
        assert_eq!(hits[0].passage.source, "docs/guards.md");
        assert_eq!(hits[0].passage.heading, "Guards");
        assert!(kb.search("zebra", 3).is_empty());

        std::fs::write(docs.join("zoo.md"), "# Zoo\n\nA zebra lives here.").unwrap();
        // Force the re-check.
        if let Some((checked, _)) = kb.state.lock().unwrap().as_mut() {
            *checked = Instant::now() - RECHECK * 2;
        }
        assert_eq!(kb.search("zebra", 3)[0].passage.source, "docs/zoo.md");
    }

    #[test]
    fn chinese_text_is_searchable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.md"),
            "# 护栏\n\n把护栏组件放进文件夹即可热加载。",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.md"), "# 其他\n\n监控面板说明。").unwrap();
        let kb = Kb::new(dir.path().to_path_buf());
        assert!(
            kb.search("怎么热加载护栏", 1)[0]
                .passage
                .text
                .contains("热加载")
        );
    }
}
