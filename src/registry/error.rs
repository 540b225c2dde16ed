//! Typed errors of the registry layer. Each carries the operation, the
//! reference or repository it was about, and, for HTTP answers, the status and
//! the registry's error codes; each says whether a retry may help.

use std::fmt;
use std::time::Duration;

use super::digest::Digest;

/// What the client was doing when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `HEAD /v2/<name>/manifests/<ref>`.
    HeadManifest,
    /// `GET /v2/<name>/manifests/<ref>`.
    GetManifest,
    /// `PUT /v2/<name>/manifests/<ref>`.
    PutManifest,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    HeadBlob,
    /// `GET /v2/<name>/blobs/<digest>`.
    GetBlob,
    /// Blob upload (POST, PATCH, PUT).
    PutBlob,
    /// Cross-repository blob mount.
    MountBlob,
    /// `GET /v2/<name>/tags/list`.
    ListTags,
    /// Referrers lookup.
    Referrers,
    /// Fetching a token from the registry's token service.
    Token,
    /// Building the HTTP client for a registry.
    Setup,
    /// `DELETE /v2/<name>/manifests/<ref>` (deleting a tag).
    DeleteManifest,
    /// `DELETE /v2/<name>/blobs/<digest>` (deleting a damaged blob).
    DeleteBlob,
    /// `GET /v2/_catalog`.
    ListRepositories,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::HeadManifest => "checking manifest",
            Op::GetManifest => "fetching manifest",
            Op::PutManifest => "pushing manifest",
            Op::HeadBlob => "checking blob",
            Op::GetBlob => "fetching blob",
            Op::PutBlob => "uploading blob",
            Op::MountBlob => "mounting blob",
            Op::ListTags => "listing tags",
            Op::Referrers => "listing referrers",
            Op::Token => "getting a token",
            Op::Setup => "setting up the client",
            Op::DeleteManifest => "deleting tag",
            Op::DeleteBlob => "deleting blob",
            Op::ListRepositories => "listing repositories",
        })
    }
}

/// What kind of failure an error is, for reports and metrics: a word a
/// program can act on (retry later, fix credentials, fix the config),
/// where the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The registry refused the credentials or their permissions (401,
    /// 403), or credentials could not be read or exchanged for a token.
    AuthRefused,
    /// The registry asked to slow down (429).
    RateLimited,
    /// The repository, tag, manifest or blob does not exist (404).
    NotFound,
    /// A request or a stream ran past its deadline (or 408).
    Timeout,
    /// Content did not match its digest or size, or a registry rewrote a
    /// manifest: nothing of it was trusted.
    Integrity,
    /// The registry failed (5xx).
    ServerError,
    /// The registry refused the request for another reason (another 4xx).
    Rejected,
    /// No answer: connection refused or reset, DNS, the connection dropped.
    Connection,
    /// The TLS handshake failed on the server's certificate.
    Tls,
    /// The registry sent more than a cap allows.
    Limit,
    /// An answer that cannot be used (bad header or JSON, not a registry).
    BadResponse,
    /// Bad local settings (CA file, client certificate, password file).
    Config,
    /// An OCI layout or archive cannot be read or written.
    Layout,
    /// A manifest GET was held back to keep a registry's pull budget.
    PullBudget,
    /// The image cannot be copied as it is (no matching platform, a
    /// manifest that cannot be walked, a bad graph).
    Invalid,
}

impl ErrorKind {
    /// Every kind, in the order of the docs.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::AuthRefused,
        ErrorKind::RateLimited,
        ErrorKind::NotFound,
        ErrorKind::Timeout,
        ErrorKind::Integrity,
        ErrorKind::ServerError,
        ErrorKind::Rejected,
        ErrorKind::Connection,
        ErrorKind::Tls,
        ErrorKind::Limit,
        ErrorKind::BadResponse,
        ErrorKind::Config,
        ErrorKind::Layout,
        ErrorKind::PullBudget,
        ErrorKind::Invalid,
    ];

    /// The label of every kind, in the order of [`ErrorKind::ALL`].
    pub const LABELS: [&'static str; 15] = {
        let mut out = [""; 15];
        let mut i = 0;
        while i < out.len() {
            out[i] = ErrorKind::ALL[i].label();
            i += 1;
        }
        out
    };

    /// The word for this kind in reports (`error_kind`) and metric labels.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::AuthRefused => "auth-refused",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Integrity => "integrity",
            ErrorKind::ServerError => "server-error",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Connection => "connection",
            ErrorKind::Tls => "tls",
            ErrorKind::Limit => "limit",
            ErrorKind::BadResponse => "bad-response",
            ErrorKind::Config => "config",
            ErrorKind::Layout => "layout",
            ErrorKind::PullBudget => "pull-budget",
            ErrorKind::Invalid => "invalid",
        }
    }

    /// The kind of an HTTP status the client did not expect.
    pub fn of_status(status: u16) -> ErrorKind {
        match status {
            401 | 403 => ErrorKind::AuthRefused,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::Rejected,
            500..=599 => ErrorKind::ServerError,
            _ => ErrorKind::BadResponse,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One entry of a registry's `{"errors":[…]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RegistryErrorCode {
    /// `MANIFEST_UNKNOWN`, `DENIED`, `TOOMANYREQUESTS`, …
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// An error of the registry layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The registry answered with an unexpected HTTP status.
    #[error("{op} {target}: registry answered HTTP {status}{}{}", codes_suffix(.codes), hint(*.status, .codes))]
    Status {
        /// What was being done.
        op: Op,
        /// The image, repository or blob concerned.
        target: String,
        /// HTTP status code.
        status: u16,
        /// Error codes from the body, if any.
        codes: Vec<RegistryErrorCode>,
        /// `Retry-After`, when the registry sent one.
        retry_after: Option<Duration>,
    },
    /// The request never got an answer (connection refused, reset, timeout, TLS).
    #[error("{op} {target}: {detail}")]
    Connection {
        /// What was being done.
        op: Op,
        /// The image, repository or blob concerned.
        target: String,
        /// What went wrong, without URLs or credentials.
        detail: String,
    },
    /// The TLS handshake failed on the server's certificate: retrying cannot help.
    #[error("{op} {target}: TLS failed: {detail} - {}", super::tls_hint::hint(.target, .detail))]
    Tls {
        /// What was being done.
        op: Op,
        /// The image, repository or blob concerned.
        target: String,
        /// What the TLS layer said.
        detail: String,
    },
    /// Content whose digest is not the one asked for.
    #[error(
        "{op} {target}: content has digest {actual}, expected {expected}; the registry served \
         bytes that do not match their digest, so nothing was written"
    )]
    DigestMismatch {
        /// What was being done.
        op: Op,
        /// The image or blob concerned.
        target: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A blob body shorter or longer than its descriptor says.
    #[error("{op} {target}: got {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// What was being done.
        op: Op,
        /// The blob concerned.
        target: String,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes seen.
        actual: u64,
    },
    /// An answer the client cannot use (bad header, oversized manifest, bad JSON).
    #[error("{op} {target}: {detail}")]
    BadResponse {
        /// What was being done.
        op: Op,
        /// The image or repository concerned.
        target: String,
        /// What is wrong with the answer.
        detail: String,
    },
    /// Authentication failed or credentials could not be read.
    #[error("{op} {target}: {detail}")]
    Auth {
        /// What was being done.
        op: Op,
        /// The registry or repository concerned.
        target: String,
        /// What went wrong and what to check.
        detail: String,
    },
    /// Bad local settings (CA file, client certificate, password file).
    #[error("registry {host}: {detail}")]
    Config {
        /// The registry host.
        host: String,
        /// What is wrong.
        detail: String,
    },
    /// A registry sent more than a cap allows (tags, pages, bytes, manifests).
    #[error("{op} {target}: registry {registry} sent {what}, over the limit of {limit}{}", limit_hint(*.key))]
    Limit {
        /// What was being done.
        op: Op,
        /// The image or repository concerned.
        target: String,
        /// The registry that sent it.
        registry: String,
        /// What was too much.
        what: String,
        /// The limit.
        limit: u64,
        /// The `[[registry]]` key that raises it, when it can be raised.
        key: Option<&'static str>,
    },
    /// A request or a blob stream ran past its deadline.
    #[error(
        "{op} {target}: {what} after {}; the registry is not answering or is too slow \
         (raise timeout_seconds / blob_idle_timeout_seconds if it is merely slow)",
        seconds_text(.after)
    )]
    Timeout {
        /// What was being done.
        op: Op,
        /// The image, repository or blob concerned.
        target: String,
        /// What did not happen in time.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// A manifest PUT was answered with another digest than that of the bytes sent.
    #[error(
        "{op} {target}: the registry rewrote the manifest: regmirror sent {sent} and the registry \
         stored {stored}; the target does not hold the source's bytes and the tag may have moved \
         to the rewritten manifest"
    )]
    ManifestRewritten {
        /// What was being done.
        op: Op,
        /// The target reference.
        target: String,
        /// Digest of the bytes sent.
        sent: Digest,
        /// Digest the registry reported.
        stored: Digest,
    },
    /// Retries ran out; the last error is kept.
    #[error("{last} (gave up after {attempts} attempts over {elapsed:?})")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last error.
        last: Box<Error>,
    },
    /// An OCI image layout or archive cannot be read or written.
    #[error("{op} {target}: {detail}")]
    Layout {
        /// What was being done.
        op: Op,
        /// The layout reference, blob or file concerned.
        target: String,
        /// What is wrong and what to do.
        detail: String,
        /// True when the manifest, blob or layout does not exist.
        not_found: bool,
    },
    /// A Docker schema 1 manifest, which regmirror does not copy.
    #[error("{op} {target}: {}", super::schema1::not_copied_detail(.media_type))]
    Schema1 {
        /// What was being done.
        op: Op,
        /// The image concerned.
        target: String,
        /// The schema 1 media type served.
        media_type: String,
        /// The manifest as served (read when converting it to schema 2).
        manifest: bytes::Bytes,
        /// The digest the manifest was asked by, else the one the registry
        /// announced (`Docker-Content-Digest`): what its payload must hash to.
        expected: Option<super::Digest>,
    },
    /// A manifest GET was not sent: it would spend the registry's pull
    /// allowance into the reserved floor, or a pull-limit 429 opened the
    /// circuit. The image is deferred, not failed (see [`super::ratelimit`]).
    #[error("{op} {target}: {refusal}")]
    PullBudget {
        /// What was being done.
        op: Op,
        /// The image concerned.
        target: String,
        /// Why, and when to try again.
        refusal: super::ratelimit::Refusal,
    },
}

fn limit_hint(key: Option<&'static str>) -> String {
    match key {
        Some(k) => {
            format!("; if that is legitimate, raise {k} in the registry's [[registry]] table")
        }
        None => "; this limit is fixed".to_string(),
    }
}

fn seconds_text(d: &Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

fn codes_suffix(codes: &[RegistryErrorCode]) -> String {
    if codes.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = codes
        .iter()
        .map(|c| {
            if c.message.is_empty() {
                super::escape::shown(&c.code)
            } else {
                format!(
                    "{}: {}",
                    super::escape::shown(&c.code),
                    super::escape::printable(&truncate(&c.message, 200))
                )
            }
        })
        .collect();
    format!(" ({})", parts.join("; "))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn hint(status: u16, codes: &[RegistryErrorCode]) -> &'static str {
    let has = |c: &str| codes.iter().any(|x| x.code == c);
    match status {
        401 => " - check the credentials configured for this registry",
        403 => " - the credentials lack permission for this repository",
        404 if has("NAME_UNKNOWN") => " - the repository does not exist",
        404 => " - not found: check the repository, tag or digest",
        429 => " - rate limited: lower requests_per_second or authenticate for a higher allowance",
        s if s >= 500 => " - the registry failed; try again later",
        _ => "",
    }
}

impl Error {
    /// True when trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status { status, .. } => matches!(*status, 408 | 429 | 500..=599),
            Error::Connection { .. } => true,
            Error::Tls { .. } => false,
            Error::SizeMismatch { .. } => true,
            Error::DigestMismatch { .. } => false,
            Error::BadResponse { .. } => false,
            Error::Limit { .. } | Error::Timeout { .. } | Error::ManifestRewritten { .. } => false,
            Error::Auth { .. } | Error::Config { .. } => false,
            Error::RetriesExhausted { .. } => false,
            Error::Layout { .. } => false,
            Error::PullBudget { .. } | Error::Schema1 { .. } => false,
        }
    }

    /// What kind of failure this is (the last attempt's, after retries).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Status { status, .. } => ErrorKind::of_status(*status),
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::ManifestRewritten { .. } => ErrorKind::Integrity,
            Error::BadResponse { .. } => ErrorKind::BadResponse,
            Error::Auth { .. } => ErrorKind::AuthRefused,
            Error::Config { .. } => ErrorKind::Config,
            Error::Limit { .. } => ErrorKind::Limit,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::RetriesExhausted { last, .. } => last.kind(),
            Error::Layout {
                not_found: true, ..
            } => ErrorKind::NotFound,
            Error::Layout { .. } => ErrorKind::Layout,
            Error::PullBudget { .. } => ErrorKind::PullBudget,
            Error::Schema1 { .. } => ErrorKind::Invalid,
        }
    }

    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The registry's error codes, if any.
    pub fn codes(&self) -> &[RegistryErrorCode] {
        match self {
            Error::Status { codes, .. } => codes,
            Error::RetriesExhausted { last, .. } => last.codes(),
            _ => &[],
        }
    }

    /// True for a 404 (unknown manifest, blob or repository).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Layout {
                not_found: true,
                ..
            }
        ) || self.status() == Some(404)
    }

    /// Parse a registry's error body; anything else gives no codes.
    pub(crate) fn parse_codes(body: &[u8]) -> Vec<RegistryErrorCode> {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<RegistryErrorCode>,
        }
        serde_json::from_slice::<Body>(body)
            .map(|b| b.errors)
            .unwrap_or_default()
    }
}

/// Results of the registry layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_name_codes_and_retryability() {
        let e = Error::Status {
            op: Op::GetManifest,
            target: "r.example/a:1".into(),
            status: 404,
            codes: Error::parse_codes(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
            retry_after: None,
        };
        let s = e.to_string();
        assert!(s.contains("fetching manifest r.example/a:1"), "{s}");
        assert!(
            s.contains("HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)"),
            "{s}"
        );
        assert!(!e.is_retryable());
        assert!(e.is_not_found());
        let e = Error::Status {
            op: Op::GetBlob,
            target: "x".into(),
            status: 429,
            codes: vec![],
            retry_after: None,
        };
        assert!(e.is_retryable());
        assert!(e.to_string().contains("rate limited"));
        assert!(Error::parse_codes(b"<html>").is_empty());
    }

    #[test]
    fn kinds_follow_the_status_and_survive_retries() {
        let status = |status| Error::Status {
            op: Op::GetManifest,
            target: "x".into(),
            status,
            codes: vec![],
            retry_after: None,
        };
        for (code, kind) in [
            (401, ErrorKind::AuthRefused),
            (403, ErrorKind::AuthRefused),
            (404, ErrorKind::NotFound),
            (408, ErrorKind::Timeout),
            (429, ErrorKind::RateLimited),
            (400, ErrorKind::Rejected),
            (503, ErrorKind::ServerError),
        ] {
            assert_eq!(status(code).kind(), kind, "{code}");
        }
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            elapsed: Duration::from_secs(1),
            last: Box::new(status(429)),
        };
        assert_eq!(exhausted.kind(), ErrorKind::RateLimited);
        assert_eq!(ErrorKind::LABELS[0], "auth-refused");
        assert_eq!(ErrorKind::LABELS.len(), ErrorKind::ALL.len());
        for k in ErrorKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.label()));
        }
    }
}
