//! Wording of config errors that come from the TOML parser: its type names
//! are Rust's (`expected usize`), which a config author should never see;
//! an unknown key gets the nearest known one as a suggestion, and a bad
//! escape in a double-quoted string a pointer to single quotes.

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

/// The parser's message for an unknown key (`unknown field `semvar`,
/// expected one of `name`, ...`) with the nearest known key suggested in
/// place of the whole list; other messages unchanged.
pub fn suggest_key(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, list)) = rest.split_once('`') else {
        return message.to_string();
    };
    let known: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, k)| *score >= 0.8 || strsim::damerau_levenshtein(unknown, k) <= 2)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("unknown field `{unknown}`: did you mean `{k}`?"),
        None => message.to_string(),
    }
}

/// The hint added to a TOML syntax error about a backslash in a
/// double-quoted string: regular expressions are best written in single
/// quotes (TOML literal strings), where a backslash is just a backslash.
pub fn escape_hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    (m.contains("escape") || m.contains("unescaped '\\'")).then_some(
        "hint: in double quotes a backslash starts an escape; write regular expressions in \
         single quotes (a TOML literal string), such as include = ['^v\\d+$']",
    )
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
    fn suggestions() {
        let m = "unknown field `semvar`, expected one of `name`, `source`, `semver`, `latest`";
        assert_eq!(
            suggest_key(m),
            "unknown field `semvar`: did you mean `semver`?"
        );
        let far = "unknown field `zzzzzz`, expected one of `name`, `source`";
        assert_eq!(suggest_key(far), far);
        assert_eq!(suggest_key("invalid type"), "invalid type");
        assert!(escape_hint("invalid escape sequence").is_some());
        assert!(escape_hint("invalid type: integer").is_none());
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
