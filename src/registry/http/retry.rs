//! The retry policy as pure functions: which failures retrying cannot fix,
//! how long to wait before the next attempt, and what `Retry-After` asks;
//! and the retry wait itself, which shutdown cuts short.
//!
//! Final connection failures: a host name the DNS says does not exist
//! (NXDOMAIN, "Name or service not known") is not retried: it will not
//! exist a few seconds later within the same run. A temporary resolver
//! failure ("Temporary failure in name resolution") and refused or broken
//! connections still are.

use std::sync::LazyLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::registry::error::Error;
use crate::registry::transport::RetryPolicy;

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The failure is final (or the body cannot be sent again): report it.
    Stop,
    /// The policy's attempts or time are spent: report that, with it.
    Exhausted,
    /// Wait this long, then send again.
    Retry(Duration),
}

/// What follows failed attempt number `attempt` (from 1), `elapsed` after
/// the first was sent. Only transient failures (see [`Error::is_retryable`])
/// of requests that can be sent again are retried, at most
/// `max_attempts` attempts in all and never past `max_elapsed`.
pub(crate) fn after_failure(
    policy: &RetryPolicy,
    attempt: u32,
    elapsed: Duration,
    error: &Error,
    replayable: bool,
) -> Next {
    after_failure_with(policy, attempt, elapsed, error, replayable, rand::random())
}

/// [`after_failure`] with the jitter (0 to 1) given.
fn after_failure_with(
    policy: &RetryPolicy,
    attempt: u32,
    elapsed: Duration,
    error: &Error,
    replayable: bool,
    jitter: f64,
) -> Next {
    if !error.is_retryable() || !replayable || is_unknown_host(error) {
        return Next::Stop;
    }
    let delay = backoff(policy, attempt, error, jitter);
    if attempt >= policy.max_attempts || elapsed + delay > policy.max_elapsed {
        return Next::Exhausted;
    }
    Next::Retry(delay)
}

/// Exponential backoff with full jitter; `Retry-After` wins, capped.
fn backoff(policy: &RetryPolicy, attempt: u32, error: &Error, jitter: f64) -> Duration {
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
    exp.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
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

/// Cancelled when the process shuts down: retry waits end at once.
static SHUTDOWN: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

/// End every retry wait of this process now and from now on: a request
/// waiting to be tried again reports its last failure at once. Called when
/// a signal asks the process to stop, so that no backoff holds it past its
/// grace period.
pub fn cut_retry_waits() {
    SHUTDOWN.cancel();
}

/// Wait `delay` before a retry: true when it passed, false when shutdown
/// cut it (the caller gives up and reports its last failure).
pub(crate) async fn wait(delay: Duration) -> bool {
    wait_unless(delay, &SHUTDOWN).await
}

/// Wait `delay` unless `cut` is (or gets) cancelled: true when it passed.
async fn wait_unless(delay: Duration, cut: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cut.cancelled() => false,
    }
}

/// True for a connection failure whose host name does not exist in the DNS
/// (glibc, musl and BSD wordings of `EAI_NONAME` / `EAI_NODATA`).
fn is_unknown_host(error: &Error) -> bool {
    let Error::Connection { detail, .. } = error else {
        return false;
    };
    let d = detail.to_ascii_lowercase();
    [
        "name or service not known",
        "no address associated with hostname",
        "name does not resolve",
        "nodename nor servname provided",
        "nxdomain",
    ]
    .iter()
    .any(|n| d.contains(n))
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
    use crate::registry::error::Op;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
        }
    }

    fn status(status: u16, retry_after: Option<Duration>) -> Error {
        Error::Status {
            op: Op::GetManifest,
            target: "r/x:1".into(),
            status,
            codes: Vec::new(),
            retry_after,
        }
    }

    fn broken() -> Error {
        Error::Connection {
            op: Op::GetBlob,
            target: "r/x@sha256:0".into(),
            detail: "the connection broke while transferring the body".into(),
        }
    }

    #[test]
    fn transient_failures_are_retried_final_ones_are_not() {
        let p = policy();
        let zero = Duration::ZERO;
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(
                after_failure_with(&p, 1, zero, &status(s, None), true, 0.5),
                Next::Retry(_)
            ));
        }
        for s in [400, 403, 404] {
            let next = after_failure_with(&p, 1, zero, &status(s, None), true, 0.5);
            assert_eq!(next, Next::Stop, "HTTP {s}");
        }
        assert!(matches!(
            after_failure_with(&p, 1, zero, &broken(), true, 0.5),
            Next::Retry(_)
        ));
        // A stream body is gone after one try: never resent here.
        assert_eq!(
            after_failure_with(&p, 1, zero, &broken(), false, 0.5),
            Next::Stop
        );
    }

    fn connection(detail: &str) -> Error {
        Error::Connection {
            op: Op::GetManifest,
            target: "nowhere.example/x:1".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn an_unknown_host_is_final_a_temporary_resolver_failure_is_not() {
        let p = policy();
        let zero = Duration::ZERO;
        for detail in [
            "cannot connect: client error (Connect): dns error: failed to lookup address information: Name or service not known",
            "cannot connect: dns error: failed to lookup address information: No address associated with hostname",
            "cannot connect: dns error: failed to lookup address information: Name does not resolve",
            "cannot connect: dns error: nodename nor servname provided, or not known",
        ] {
            let next = after_failure_with(&p, 1, zero, &connection(detail), true, 0.5);
            assert_eq!(next, Next::Stop, "{detail}");
        }
        for detail in [
            "cannot connect: dns error: failed to lookup address information: Temporary failure in name resolution",
            "cannot connect: client error (Connect): tcp connect error: Connection refused (os error 111)",
        ] {
            let next = after_failure_with(&p, 1, zero, &connection(detail), true, 0.5);
            assert!(matches!(next, Next::Retry(_)), "{detail}: {next:?}");
        }
    }

    #[tokio::test]
    async fn shutdown_cuts_retry_waits() {
        // A token of its own: cutting the process-wide one would end the
        // retries of every other test of this process.
        let token = CancellationToken::new();
        let long = {
            let token = token.clone();
            tokio::spawn(async move { wait_unless(Duration::from_secs(60), &token).await })
        };
        assert!(wait_unless(Duration::from_millis(1), &token).await);
        token.cancel();
        let cut = tokio::time::timeout(Duration::from_secs(5), long).await;
        assert!(!cut.expect("the wait ended at once").unwrap());
        assert!(
            !wait_unless(Duration::from_secs(60), &token).await,
            "and stays cut"
        );
    }

    #[test]
    fn attempts_and_time_are_bounded_by_the_policy() {
        let p = policy();
        let zero = Duration::ZERO;
        assert!(matches!(
            after_failure_with(&p, 3, zero, &broken(), true, 0.0),
            Next::Retry(_)
        ));
        assert_eq!(
            after_failure_with(&p, 4, zero, &broken(), true, 0.0),
            Next::Exhausted
        );
        let late = Duration::from_millis(9_960);
        assert_eq!(
            after_failure_with(&p, 1, late, &broken(), true, 0.0),
            Next::Exhausted
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_retry_after_wins_capped() {
        let p = policy();
        let ms = Duration::from_millis;
        assert_eq!(backoff(&p, 1, &broken(), 0.0), ms(50));
        assert_eq!(backoff(&p, 1, &broken(), 1.0), ms(100));
        assert_eq!(backoff(&p, 3, &broken(), 1.0), ms(400));
        assert_eq!(backoff(&p, 30, &broken(), 1.0), p.max_backoff);
        let asked = status(503, Some(Duration::from_secs(1)));
        assert_eq!(backoff(&p, 1, &asked, 0.0), Duration::from_secs(1));
        let greedy = status(503, Some(Duration::from_secs(3600)));
        assert_eq!(backoff(&p, 1, &greedy, 0.0), p.max_backoff);
    }

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
