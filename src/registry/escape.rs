//! Text that came from a registry (tags, error messages, header values),
//! made safe to print or log: control characters (C0, DEL, C1, and the
//! Unicode bidirectional overrides) are written as `\u{..}` escapes, so a
//! server cannot forge log lines, move the cursor or recolour a terminal.

use std::borrow::Cow;

/// Longest server-provided text shown in one message, in characters.
pub const MAX_SHOWN: usize = 200;

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped; borrowed when nothing needed escaping.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`], cut to [`MAX_SHOWN`] characters (with `…` and the full
/// length when cut), for text a server may make arbitrarily long.
pub fn shown(s: &str) -> String {
    let total = s.chars().count();
    if total <= MAX_SHOWN {
        return printable(s).into_owned();
    }
    let head: String = s.chars().take(MAX_SHOWN).collect();
    format!("{}… ({total} characters)", printable(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_keeps_the_rest() {
        assert!(matches!(printable("v1.2-ok_é"), Cow::Borrowed("v1.2-ok_é")));
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(
            printable("x\u{202e}y\u{7f}\u{9b}"),
            "x\\u{202e}y\\u{7f}\\u{9b}"
        );
        let long = "a".repeat(5000);
        let s = shown(&long);
        assert!(s.len() < 260 && s.ends_with("(5000 characters)"), "{s}");
        assert_eq!(shown("a\rb"), "a\\u{d}b");
    }
}
