//! Wording of config errors that come from the TOML parser: its type names
//! are Rust's (`expected usize`), which a config author should never see.

/// The parser's message with Rust type names replaced by what to write.
pub fn humanize(message: &str) -> String {
    let replacements = [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected u8", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        (
            "expected a sequence",
            "expected a list, such as [\"a\", \"b\"]",
        ),
        ("expected a map", "expected a table"),
        ("floating point", "decimal number"),
    ];
    let mut out = message.to_string();
    for (from, to) in replacements {
        out = out.replace(from, to);
    }
    out
}

/// The name of a table header line (`[defaults]` -> `defaults`, `[[mirror]]`
/// -> `mirror`, array tables flagged), or `None` for a line that is not a
/// well-formed header.
pub fn header_name(line: &str) -> Option<(String, bool)> {
    let l = line.trim();
    let (inner, array) = if let Some(r) = l.strip_prefix("[[") {
        (r.split_once("]]")?.0, true)
    } else if let Some(r) = l.strip_prefix('[') {
        (r.split_once(']')?.0, false)
    } else {
        return None;
    };
    let name = inner.trim();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-. \"'".contains(c));
    ok.then(|| (name.to_string(), array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rust_types() {
        let m = humanize("invalid value: integer `-3`, expected usize");
        assert_eq!(
            m,
            "invalid value: integer `-3`, expected a whole number (0 or more)"
        );
        assert!(!humanize("invalid type: string \"a\", expected f64").contains("f64"));
    }

    #[test]
    fn headers() {
        assert_eq!(header_name("[[mirror]]"), Some(("mirror".into(), true)));
        assert_eq!(
            header_name(" [defaults] # x"),
            Some(("defaults".into(), false))
        );
        assert_eq!(header_name("[[mirror]"), None);
        assert_eq!(header_name("\u{feff}[[mirror]"), None);
        assert_eq!(header_name("source = 1"), None);
    }
}
