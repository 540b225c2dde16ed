//! Checks of an event's authenticity: shared secrets compared in constant
//! time, HMAC-SHA256 signatures, and the replay window of signed
//! timestamps. Nothing here logs or returns a secret.

use ring::hmac;

/// How far a signed timestamp may be from now, either way.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

/// Why an event was refused, as the `reason` label and the answer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No or a wrong `Authorization` / bearer token.
    Auth,
    /// No or a wrong HMAC signature.
    Signature,
    /// A signed timestamp outside the replay window (or missing).
    Replay,
}

impl Refusal {
    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Auth => "auth",
            Refusal::Signature => "signature",
            Refusal::Replay => "replay",
        }
    }
}

/// True when `given` equals `expected`, compared in time that does not
/// depend on where they differ: both go through HMAC-SHA256 under a key of
/// the process and [`hmac::verify`] compares the tags in constant time.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    static KEY: std::sync::LazyLock<hmac::Key> = std::sync::LazyLock::new(|| {
        let mut k = [0u8; 32];
        rand::fill(&mut k);
        hmac::Key::new(hmac::HMAC_SHA256, &k)
    });
    hmac::verify(&KEY, given, hmac::sign(&KEY, expected).as_ref()).is_ok()
}

/// Check an `Authorization` header value against the configured one
/// (exactly as configured: `Bearer ...`, `Basic ...` or a bare token).
pub fn authorization(header: Option<&str>, expected: &str) -> Result<(), Refusal> {
    match header {
        Some(h) if same_secret(h.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Refusal::Auth),
    }
}

/// Check a bearer token (`Authorization: Bearer TOKEN`).
pub fn bearer(header: Option<&str>, token: &str) -> Result<(), Refusal> {
    let given = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(Refusal::Auth)?;
    if same_secret(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Auth)
    }
}

/// Check `sha256=HEX`, the HMAC-SHA256 of `message` under `secret`
/// (GitHub's `X-Hub-Signature-256`; the CloudEvents source's
/// `X-Regmirror-Signature`).
pub fn signature(header: Option<&str>, secret: &str, message: &[u8]) -> Result<(), Refusal> {
    let hex_sig = header
        .and_then(|h| h.strip_prefix("sha256="))
        .ok_or(Refusal::Signature)?;
    let tag = hex::decode(hex_sig.trim()).map_err(|_| Refusal::Signature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, message, &tag).map_err(|_| Refusal::Signature)
}

/// Check a signed Unix timestamp against `now`: within
/// [`REPLAY_WINDOW_SECONDS`] either way.
pub fn fresh(timestamp: Option<&str>, now: i64) -> Result<i64, Refusal> {
    let t: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(Refusal::Replay)?;
    if (now - t).abs() > REPLAY_WINDOW_SECONDS {
        return Err(Refusal::Replay);
    }
    Ok(t)
}

#[cfg(test)]
/// `sha256=HEX` of `message` under `secret`, as a sender signs it.
pub fn sign(secret: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, message).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_signatures_and_timestamps() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
        assert_eq!(authorization(Some("Bearer s3"), "Bearer s3"), Ok(()));
        assert_eq!(
            authorization(Some("Bearer s4"), "Bearer s3"),
            Err(Refusal::Auth)
        );
        assert_eq!(authorization(None, "Bearer s3"), Err(Refusal::Auth));
        assert_eq!(bearer(Some("Bearer tok"), "tok"), Ok(()));
        assert_eq!(bearer(Some("tok"), "tok"), Err(Refusal::Auth));
        let sig = sign("key", b"body");
        assert_eq!(signature(Some(&sig), "key", b"body"), Ok(()));
        assert_eq!(
            signature(Some(&sig), "key", b"body!"),
            Err(Refusal::Signature)
        );
        assert_eq!(
            signature(Some(&sig), "other", b"body"),
            Err(Refusal::Signature)
        );
        assert_eq!(
            signature(Some("sha256=zz"), "key", b"body"),
            Err(Refusal::Signature)
        );
        assert_eq!(signature(None, "key", b"body"), Err(Refusal::Signature));
        assert_eq!(fresh(Some("1000"), 1000 + REPLAY_WINDOW_SECONDS), Ok(1000));
        assert_eq!(
            fresh(Some("1000"), 1001 + REPLAY_WINDOW_SECONDS),
            Err(Refusal::Replay)
        );
        assert_eq!(fresh(Some("2000"), 2000 - 301), Err(Refusal::Replay));
        assert_eq!(fresh(None, 0), Err(Refusal::Replay));
    }
}
