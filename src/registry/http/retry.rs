//! The retry policy as pure functions: which failures retrying cannot fix,
//! how long to wait before the next attempt, and what `Retry-After` asks.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::registry::client::RetryPolicy;
use crate::registry::error::Error;

/// Exponential backoff with full jitter; `Retry-After` wins, capped.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32, error: &Error) -> Duration {
    if let Error::Status {
        retry_after: Some(ra),
        ..
    } = error
    {
        return (*ra).min(policy.max_backoff);
    }
    let exp = policy
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(policy.max_backoff);
    let jitter = rand::random::<f64>();
    exp.mul_f64(0.5 + jitter / 2.0)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// True for TLS failures retrying cannot fix: certificates, and protocol
/// version or handshake mismatches (a plain-HTTP server on an HTTPS port,
/// a server offering only old TLS versions).
pub(crate) fn is_tls_failure(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "certificate",
        "protocol version",
        "protocolversion",
        "wrong version number",
        "invalidcontenttype",
        "invalid content type",
        "handshakefailure",
        "handshake failure",
        "peer is incompatible",
        "peerincompatible",
        "corrupt message",
    ]
    .iter()
    .any(|n| d.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn tls_version_and_certificate_failures_are_recognised() {
        assert!(is_tls_failure(
            "request failed: received fatal alert: ProtocolVersion"
        ));
        assert!(is_tls_failure("invalid peer certificate: UnknownIssuer"));
        assert!(is_tls_failure(
            "received corrupt message of type InvalidContentType"
        ));
        assert!(!is_tls_failure("cannot connect: Connection refused"));
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
