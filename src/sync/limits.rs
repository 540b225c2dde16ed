//! `[defaults]` deadline and cap keys and the redaction of secret values
//! from config errors.

use std::ops::Range;

use toml::Spanned;

use crate::registry::Limits;
use crate::registry::limits::{check_bytes_per_second, check_seconds};

/// Keys whose values are secrets: errors about them never quote the value.
const SECRET_KEYS: &[&str] = &["password", "identity_token"];

/// The limits `[defaults]` sets; `Err((key, span, message))` for a bad value.
pub(super) fn default_limits(
    timeout_seconds: Option<&Spanned<f64>>,
    blob_idle_timeout_seconds: Option<&Spanned<f64>>,
    blob_min_bytes_per_second: Option<u64>,
    max_total_bytes_per_second: Option<&Spanned<u64>>,
) -> Result<Limits, (&'static str, Range<usize>, String)> {
    let mut limits = Limits::default();
    if let Some(v) = timeout_seconds {
        limits.request_timeout =
            check_seconds(*v.get_ref()).map_err(|m| ("defaults.timeout_seconds", v.span(), m))?;
    }
    if let Some(v) = blob_idle_timeout_seconds {
        limits.blob_idle_timeout = check_seconds(*v.get_ref())
            .map_err(|m| ("defaults.blob_idle_timeout_seconds", v.span(), m))?;
    }
    if let Some(v) = blob_min_bytes_per_second {
        limits.blob_min_bytes_per_second = v;
    }
    if let Some(v) = max_total_bytes_per_second {
        check_bytes_per_second(*v.get_ref())
            .map_err(|m| ("defaults.max_total_bytes_per_second", v.span(), m))?;
        limits.max_total_bytes_per_second = Some(*v.get_ref()).filter(|v| *v > 0);
    }
    Ok(limits)
}

/// A TOML parse error's message, with the offending value left out when the
/// key holds a secret (`password = 12345` must not print `12345`), or when
/// the line it points at names a secret key (inline tables).
pub(super) fn redact_secret(key: Option<&str>, line: &str, message: &str) -> String {
    let is_secret = key
        .and_then(|k| k.rsplit('.').next())
        .is_some_and(|k| SECRET_KEYS.contains(&k.trim()))
        || SECRET_KEYS.iter().any(|k| line.contains(k));
    if is_secret {
        "invalid value (not shown, this key holds a secret): expected a quoted string".to_string()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_never_echoed() {
        let m = redact_secret(
            Some("registry[1].password"),
            "password = 12345",
            "invalid type: integer `12345`",
        );
        assert!(!m.contains("12345"), "{m}");
        let m = redact_secret(
            Some("registry"),
            "registry = [{ host = \"h\", password = 12345 }]",
            "invalid type: integer `12345`",
        );
        assert!(!m.contains("12345"), "{m}");
        let m = redact_secret(
            Some("defaults.concurrency"),
            "concurrency = \"x\"",
            "invalid type: string \"x\"",
        );
        assert!(m.contains("\"x\""), "{m}");
    }
}
