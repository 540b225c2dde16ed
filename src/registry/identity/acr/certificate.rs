//! The client assertion of a service principal's certificate, as Entra ID
//! documents "certificate credentials": a JWT signed RS256 with the
//! certificate's private key, its header naming the certificate by
//! thumbprint (`x5t#S256`: SHA-256 of the DER certificate, `x5t`: SHA-1,
//! both base64url), its claims `aud` (the token endpoint), `iss` and `sub`
//! (the client id), `jti`, `nbf`, `iat` and a short `exp`. The PEM file
//! (`AZURE_CLIENT_CERTIFICATE_PATH`, as the Azure SDKs read it) holds the
//! private key and the certificate; it is read again at every issue.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::Digest as _;

/// Lifetime of an assertion: it is used at once.
const ASSERTION_LIFETIME_SECS: u64 = 600;

/// The signed assertion for `client_id` at the token endpoint `audience`;
/// `Err` says what is wrong with the file, never its content.
pub(super) fn assertion(path: &Path, client_id: &str, audience: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let key = pem_block(&text, |label| label.ends_with("PRIVATE KEY"))
        .ok_or("holds no PEM private key (PRIVATE KEY or RSA PRIVATE KEY block)")?;
    let cert = pem_block(&text, |label| label == "CERTIFICATE")
        .ok_or("holds no PEM certificate (CERTIFICATE block)")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            cert.1
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        )
        .map_err(|_| "holds a CERTIFICATE block that is not base64".to_string())?;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t_s256 = Some(b64url.encode(sha2::Sha256::digest(&der)));
    header.x5t = Some(b64url.encode(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &der,
    )));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key.0.as_bytes())
        .map_err(|e| format!("holds a private key that is not an RSA key ({e})"))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

/// The first PEM block whose label `want` accepts: (the whole block, its body).
fn pem_block(text: &str, want: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after.find("-----")?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let body_start = label_end + "-----".len();
        let body_len = after[body_start..].find(&end_marker)?;
        let whole_len = "-----BEGIN ".len() + body_start + body_len + end_marker.len();
        if want(label) {
            let body = &after[body_start..body_start + body_len];
            return Some((&rest[start..start + whole_len], body));
        }
        rest = &rest[start + whole_len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_blocks_by_label() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nREVG\n-----END PRIVATE KEY-----\n";
        let (whole, body) = pem_block(text, |l| l.ends_with("PRIVATE KEY")).unwrap();
        assert!(whole.starts_with("-----BEGIN PRIVATE KEY-----"), "{whole}");
        assert!(whole.ends_with("-----END PRIVATE KEY-----"), "{whole}");
        assert_eq!(body.trim(), "REVG");
        assert_eq!(
            pem_block(text, |l| l == "CERTIFICATE").unwrap().1.trim(),
            "QUJD"
        );
        assert!(pem_block("-----BEGIN X-----\nno end", |_| true).is_none());
        assert!(pem_block("", |_| true).is_none());
    }
}
