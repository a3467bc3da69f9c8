//! Source files named in `kb-search` results, for the citation line.
//!
//! `kb-search` returns passages formatted as
//! `[1] docs/guards.md — Heading\n<passage text>\n\n[2] …`: the source path is
//! the text after `[n] ` up to ` — `.

/// The source paths of a `kb-search` result, in order, without duplicates.
///
/// A header line counts only at the start of the text or after a blank line,
/// and only with the next expected number (`[1]`, then `[2]`, …), so a passage
/// that happens to contain a line like `[3] see — here` is not taken for one.
pub fn extract_sources(result: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut expected = 1u32;
    let mut after_blank = true;
    for line in result.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            after_blank = true;
            continue;
        }
        if after_blank && let Some(path) = header_path(line, expected) {
            expected += 1;
            if !out.iter().any(|p| p == path) {
                out.push(path.to_string());
            }
        }
        after_blank = false;
    }
    out
}

/// `[n] PATH — Heading` (or `[n] PATH` alone, when the path has no spaces).
fn header_path(line: &str, n: u32) -> Option<&str> {
    let rest = line.strip_prefix(&format!("[{n}] "))?;
    let path = match rest.split_once(" — ") {
        Some((path, _heading)) => path.trim(),
        None if !rest.trim().contains(char::is_whitespace) => rest.trim(),
        None => return None,
    };
    let plausible =
        !path.is_empty() && path.chars().count() <= 300 && !path.chars().any(char::is_control);
    plausible.then_some(path)
}

/// The files retrieved during one run, in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Sources(Vec<String>);

impl Sources {
    pub fn add_result(&mut self, result: &str) {
        for path in extract_sources(result) {
            if !self.0.contains(&path) {
                self.0.push(path);
            }
        }
    }

    pub fn files(&self) -> &[String] {
        &self.0
    }

    /// `\n\nSources: docs/a.md, docs/b.md`, or `None` when nothing was retrieved.
    pub fn citation_line(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| format!("\n\nSources: {}", self.0.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULT: &str = "[1] docs/guards.md — Writing a guard\n\
        Create a crate against wit/ and export the guard interface.\n\
        \n\
        [2] docs/operations.md — Components folder\n\
        Copy the .wasm into components/guards/.\n\
        [3] not a header — this line follows a passage line\n\
        \n\
        [3] docs/guards.md — Testing\n\
        Run cargo test.\n\
        \n\
        [4] README.md\n\
        Quick start.\n";

    #[test]
    fn extracts_paths_in_order_without_duplicates() {
        assert_eq!(
            extract_sources(RESULT),
            ["docs/guards.md", "docs/operations.md", "README.md"]
        );
    }

    #[test]
    fn needs_the_expected_number_after_a_blank_line() {
        let text =
            "[1] docs/a.md — A\ntext\n\n[5] docs/evil.md — skipped\nmore\n\n[2] docs/b.md — B\n";
        assert_eq!(extract_sources(text), ["docs/a.md", "docs/b.md"]);
        assert!(extract_sources("Intro\n[1] docs/a.md — A\n").is_empty());
        assert!(extract_sources("[1] some words without dash\n").is_empty());
        assert!(extract_sources("").is_empty());
        assert!(extract_sources("No results.").is_empty());
    }

    #[test]
    fn handles_crlf_and_paths_with_spaces() {
        let text = "[1] docs/my notes.md — A\r\nx\r\n\r\n[2] docs/b.md — B — more\r\n";
        assert_eq!(extract_sources(text), ["docs/my notes.md", "docs/b.md"]);
    }

    #[test]
    fn citation_line_lists_each_file_once() {
        let mut s = Sources::default();
        assert_eq!(s.citation_line(), None);
        s.add_result(RESULT);
        s.add_result("[1] docs/design.md — Request path\n…\n\n[2] docs/guards.md — x\n");
        assert_eq!(
            s.citation_line().unwrap(),
            "\n\nSources: docs/guards.md, docs/operations.md, README.md, docs/design.md"
        );
        assert_eq!(s.files().len(), 4);
    }
}
