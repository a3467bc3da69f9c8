//! A tiny reader for flat JSON objects, one per line (the dev-set format),
//! for the tests and the `featurize` example. Not used by the component.

/// Reads the JSON string value of `key` from one flat JSON object line.
pub fn str_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = line[start..].trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex = |chars: &mut std::str::Chars| -> Option<u32> {
                        let h: String = chars.take(4).collect();
                        u32::from_str_radix(&h, 16).ok()
                    };
                    let hi = hex(&mut chars)?;
                    let cp = if (0xD800..0xDC00).contains(&hi) {
                        chars.next()?;
                        chars.next()?;
                        let lo = hex(&mut chars)?;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_escapes() {
        let l = r#"{"text": "a\"b\n\u4f60\ud83d\ude00", "label": "x"}"#;
        assert_eq!(super::str_field(l, "text").unwrap(), "a\"b\n你😀");
        assert_eq!(super::str_field(l, "label").unwrap(), "x");
        assert_eq!(super::str_field(l, "nope"), None);
    }
}
