//! `Warning` headers from registries (OCI distribution spec 1.1, "Warnings"):
//! informational text, logged once per registry and message, escaped, and
//! never acted on.
//!
//! The spec's form is `Warning: 299 - "<text>"`; only code 299 is defined.
//! [`WarningLog`] remembers which (registry, text) pairs were logged for the
//! life of its owner (one registry client), with a cap so a registry cannot
//! grow it without bound.

use std::collections::HashSet;
use std::sync::Mutex;

/// Most distinct warnings remembered; later new ones are still logged.
pub const MAX_REMEMBERED: usize = 1024;
/// Longest warning text logged (in characters); longer text is cut.
pub const MAX_TEXT: usize = 512;

/// The text of a `Warning` header value with code 299, unquoted and
/// unescaped (`\"` and `\\`); `None` for any other form.
pub fn parse(value: &str) -> Option<String> {
    let rest = value.trim().strip_prefix("299")?;
    let rest = rest.trim_start().strip_prefix('-')?.trim_start();
    let quoted = rest.strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '"' => return Some(text),
            c => text.push(c),
        }
    }
    None
}

/// Escapes control characters and cuts the text to [`MAX_TEXT`] characters,
/// so a registry's words cannot forge log lines.
pub fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_TEXT)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > MAX_TEXT {
        out.push('…');
    }
    out
}

/// Which warnings were already logged.
#[derive(Debug, Default)]
pub struct WarningLog {
    seen: Mutex<HashSet<(String, String)>>,
}

impl WarningLog {
    pub fn new() -> WarningLog {
        WarningLog::default()
    }

    /// The escaped texts of `values` (header values from `registry`) not
    /// logged before; each is remembered.
    pub fn fresh<'a>(
        &self,
        registry: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for text in values.into_iter().filter_map(parse) {
            let key = (registry.to_string(), text);
            if seen.contains(&key) {
                continue;
            }
            out.push(shown(&key.1));
            if seen.len() < MAX_REMEMBERED {
                seen.insert(key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_form_only() {
        assert_eq!(
            parse(r#"299 - "deprecated""#).as_deref(),
            Some("deprecated")
        );
        assert_eq!(
            parse(r#"299 - "say \"hi\"""#).as_deref(),
            Some(r#"say "hi""#)
        );
        assert_eq!(parse(r#"199 - "other""#), None);
        assert_eq!(parse(r#"299 - "unterminated"#), None);
        assert_eq!(parse("299 - bare"), None);
    }

    #[test]
    fn logged_once_per_registry_and_text_escaped() {
        let log = WarningLog::new();
        let v = r#"299 - "line\nforged""#;
        let first = log.fresh("a", [v, v]);
        assert_eq!(first, vec!["linenforged".to_string()]);
        let v = "299 - \"bell\u{7} here\"";
        assert_eq!(log.fresh("a", [v]), vec!["bell\\u{7} here".to_string()]);
        assert!(log.fresh("a", [v]).is_empty());
        assert_eq!(log.fresh("b", [v]).len(), 1);
    }

    #[test]
    fn long_text_is_cut() {
        let long = format!("299 - \"{}\"", "x".repeat(MAX_TEXT + 10));
        let shown = WarningLog::new().fresh("a", [long.as_str()]);
        assert_eq!(shown[0].chars().count(), MAX_TEXT + 1);
    }
}
