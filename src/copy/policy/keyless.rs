//! Keyless (Sigstore) signatures: a short-lived Fulcio certificate names
//! who signed (an OIDC identity and its issuer), and a transparency log
//! entry proves when. A keyless signature counts for an [`Identity`] of a
//! policy when, offline, against the policy's trusted root:
//!
//! 1. the leaf certificate was issued by a certificate authority of the
//!    trusted root (its signature verifies against a certificate of that
//!    CA's chain, whose subject is the leaf's issuer), and the CA was valid
//!    at signing time; when the trusted root lists CT logs, the leaf carries
//!    a valid SCT of one of them (see `sct`);
//! 2. its log entry is from a log of the trusted root and proven (SET, or
//!    inclusion proof and checkpoint: see `rekor` and `bundle`), and is
//!    about this very signature, payload and certificate;
//! 3. the signing time (the entry's integrated time) is within the leaf's
//!    validity (Fulcio certificates live about ten minutes);
//! 4. the signature verifies against the leaf's public key;
//! 5. the leaf's subject alternative name (URI or e-mail) equals the
//!    identity (or matches its regular expression, anchored at both ends)
//!    and its OIDC issuer extension equals the issuer: OID
//!    1.3.6.1.4.1.57264.1.8 (a DER UTF8String), else the deprecated
//!    1.3.6.1.4.1.57264.1.1 (raw text), as Fulcio's `docs/oid-info.md`
//!    defines them.
//!
//! The payload must then name the image's digest (the caller checks it).
//! Each failure maps to a [`RejectReason`].

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::RejectReason;
use super::der;
use super::keys::PublicKey;
use super::rekor::{self, Expected, LogEntry};
use super::sct;
use super::trusted_root::TrustedRoot;

const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";

/// How an identity's certificate subject is matched.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The SAN, exactly.
    Exact(String),
    /// The whole SAN matches the expression.
    Regex(regex::Regex),
}

impl PartialEq for Subject {
    fn eq(&self, other: &Subject) -> bool {
        match (self, other) {
            (Subject::Exact(a), Subject::Exact(b)) => a == b,
            (Subject::Regex(a), Subject::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Subject {}

/// A keyless signer a policy trusts: an OIDC issuer and a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The OIDC issuer URL, exactly.
    pub issuer: String,
    /// The certificate's subject alternative name.
    pub subject: Subject,
}

impl Identity {
    /// An identity matching `identity` exactly.
    pub fn exact(issuer: &str, identity: &str) -> Identity {
        Identity {
            issuer: issuer.to_string(),
            subject: Subject::Exact(identity.to_string()),
        }
    }

    /// An identity whose whole SAN matches `pattern`; `Err` when it is not
    /// a regular expression.
    pub fn regex(issuer: &str, pattern: &str) -> Result<Identity, String> {
        let re = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))?;
        Ok(Identity {
            issuer: issuer.to_string(),
            subject: Subject::Regex(re),
        })
    }

    /// How messages write it.
    pub fn describe(&self) -> String {
        match &self.subject {
            Subject::Exact(s) => format!("{s} (issuer {})", self.issuer),
            Subject::Regex(r) => format!("identity_regexp {} (issuer {})", r.as_str(), self.issuer),
        }
    }

    fn matches(&self, san: &[String], issuer: Option<&str>) -> bool {
        issuer == Some(self.issuer.as_str())
            && san.iter().any(|s| match &self.subject {
                Subject::Exact(e) => e == s,
                Subject::Regex(r) => r.is_match(s),
            })
    }
}

/// A keyless signature to check.
pub struct Signed<'a> {
    /// The leaf certificate, DER.
    pub certificate: &'a [u8],
    /// The signature bytes.
    pub signature: &'a [u8],
    /// The bytes signed.
    pub message: &'a [u8],
    /// The log entry.
    pub entry: &'a LogEntry,
    /// The digest the log entry records (of `message`, unless a bundle
    /// signs a digest).
    pub logged_sha256: [u8; 32],
}

/// A failed keyless signature: why, and what was found.
pub type Failure = (RejectReason, String);

/// The indexes of the `identities` this signature satisfies (at least one),
/// or why it satisfies none. The log entry is proven by the caller's
/// `proven` (the SET, or an inclusion proof) after the chain is checked.
pub fn check(
    root: &TrustedRoot,
    identities: &[Identity],
    s: &Signed<'_>,
    proven: impl FnOnce() -> Result<(), String>,
) -> Result<Vec<usize>, Failure> {
    let (_, leaf) = x509_parser::parse_x509_certificate(s.certificate).map_err(|e| {
        (
            RejectReason::UntrustedCertificate,
            format!("its certificate cannot be read: {e}"),
        )
    })?;
    let time = s.entry.integrated_time;
    let issuer_spki = chain(root, &leaf, time)?;
    sct::check(root, &leaf, &issuer_spki).map_err(|e| (RejectReason::UntrustedCertificate, e))?;
    proven().map_err(|e| (RejectReason::LogProofInvalid, e))?;
    rekor::check_body(
        s.entry,
        &Expected {
            payload_sha256: s.logged_sha256,
            signature: s.signature,
            certificate: s.certificate,
        },
    )
    .map_err(|e| (RejectReason::LogProofInvalid, e))?;
    let validity = leaf.validity();
    let (from, to) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if time < from || time > to {
        return Err((
            RejectReason::CertificateExpired,
            format!(
                "it was logged at {} but its certificate is valid from {} to {} only",
                when(time),
                when(from),
                when(to)
            ),
        ));
    }
    let key = PublicKey::from_spki(leaf.public_key().raw).map_err(|e| {
        (
            RejectReason::WrongKey,
            format!("its certificate's key: {e}"),
        )
    })?;
    if !key.verifies(s.message, s.signature) {
        return Err((
            RejectReason::WrongKey,
            "its signature does not verify against its own certificate".to_string(),
        ));
    }
    matched(identities, &leaf)
}

/// The indexes of the `identities` that `leaf` names.
fn matched(identities: &[Identity], leaf: &X509Certificate<'_>) -> Result<Vec<usize>, Failure> {
    let (san, issuer) = (sans(leaf), oidc_issuer(leaf));
    let matched: Vec<usize> = identities
        .iter()
        .enumerate()
        .filter(|(_, i)| i.matches(&san, issuer.as_deref()))
        .map(|(n, _)| n)
        .collect();
    if matched.is_empty() {
        return Err((
            RejectReason::IdentityMismatch,
            format!(
                "it was signed by {} (issuer {}), not by {}",
                if san.is_empty() {
                    "no identity".to_string()
                } else {
                    san.join(", ")
                },
                issuer.as_deref().unwrap_or("unknown"),
                identities
                    .iter()
                    .map(Identity::describe)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    Ok(matched)
}

/// Checks that `leaf` was issued by a CA of `root` valid at `time`; the
/// issuer's DER public key.
fn chain(root: &TrustedRoot, leaf: &X509Certificate<'_>, time: i64) -> Result<Vec<u8>, Failure> {
    let mut expired = None;
    for ca in &root.authorities {
        for der in &ca.chain {
            let Ok((_, issuer)) = x509_parser::parse_x509_certificate(der) else {
                continue;
            };
            if issuer.subject().as_raw() != leaf.issuer().as_raw()
                || leaf.verify_signature(Some(issuer.public_key())).is_err()
            {
                continue;
            }
            if ca.valid.contains(time) {
                return Ok(issuer.public_key().raw.to_vec());
            }
            expired = Some(ca.name.clone());
        }
    }
    Err(match expired {
        Some(ca) => (
            RejectReason::CertificateExpired,
            format!(
                "its certificate was issued by the CA {ca} of the trusted root {}, which was \
                 not valid at signing time {}",
                root.name,
                when(time)
            ),
        ),
        None => (
            RejectReason::UntrustedCertificate,
            format!(
                "its certificate (issuer {}) was not issued by a certificate authority of the \
                 trusted root {}: refresh the trusted root, or the signature comes from \
                 another CA",
                leaf.issuer(),
                root.name
            ),
        ),
    })
}

/// The URI and e-mail subject alternative names.
fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            GeneralName::RFC822Name(e) => Some(e.to_string()),
            _ => None,
        })
        .collect()
}

/// The OIDC issuer of a Fulcio certificate.
fn oidc_issuer(cert: &X509Certificate<'_>) -> Option<String> {
    let ext = |oid: &str| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    if let Some(v) = ext(OID_ISSUER_V2) {
        return utf8_string(v);
    }
    ext(OID_ISSUER_V1).and_then(|v| String::from_utf8(v.to_vec()).ok())
}

/// The text of a DER UTF8String.
fn utf8_string(der: &[u8]) -> Option<String> {
    let (0x0c, text, []) = der::tlv(der)? else {
        return None;
    };
    String::from_utf8(text.to_vec()).ok()
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_match_exactly_or_by_whole_expression() {
        let github = "https://token.actions.githubusercontent.com";
        let issuer = Some(github);
        let san: Vec<String> = vec![
            "https://github.com/org/repo/.github/workflows/r.yaml@refs/heads/main".to_string(),
        ];
        let exact = Identity::exact(github, &san[0]);
        assert!(exact.matches(&san, issuer));
        assert!(!exact.matches(&san, Some("https://accounts.google.com")));
        let re = Identity::regex(github, "https://github.com/org/.*").unwrap();
        assert!(re.matches(&san, issuer));
        let partial = Identity::regex(github, "org/repo").unwrap();
        assert!(!partial.matches(&san, issuer), "anchored at both ends");
        assert!(Identity::regex("i", "(").is_err());
    }

    #[test]
    fn utf8_strings_are_read_from_der() {
        assert_eq!(utf8_string(b"\x0c\x03abc").as_deref(), Some("abc"));
        assert_eq!(utf8_string(b"\x0c\x04abc"), None);
        assert_eq!(utf8_string(b"\x04\x03abc"), None);
        assert_eq!(utf8_string(b""), None);
    }
}
