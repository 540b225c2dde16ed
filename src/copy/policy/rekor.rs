//! Transparency log (Rekor) entries of keyless signatures, checked offline
//! against the log keys of a trusted root.
//!
//! - The signed entry timestamp (SET, an "inclusion promise"): the log's
//!   signature (ECDSA, ASN.1 DER) over the canonical JSON of
//!   `{"body", "integratedTime", "logID", "logIndex"}` (keys sorted, no
//!   spaces; `body` the base64 entry, `logID` the hex log ID), as cosign
//!   checks it (`pkg/cosign/tlog.go`, `VerifySET`) and as
//!   `sigstore_rekor.proto` (`InclusionPromise`) describes it.
//! - The entry body: a `hashedrekord` v0.0.1 entry
//!   (`{"kind": "hashedrekord", "spec": {"data": {"hash": {"algorithm":
//!   "sha256", "value": <hex>}}, "signature": {"content": <base64>,
//!   "publicKey": {"content": <base64 PEM certificate>}}}}`) must be for this
//!   signature, this payload and this certificate, so a genuine entry of
//!   another signature cannot be replayed. A `dsse` v0.0.1 entry (a
//!   Sigstore bundle's DSSE envelope: `{"kind": "dsse", "spec":
//!   {"payloadHash": {"algorithm": "sha256", "value": <hex>}, "signatures":
//!   [{"signature": <base64>, "verifier": <base64 PEM certificate>}]}}`) is
//!   held to the same: the payload's hash, its one signature and its
//!   certificate (as sigstore-js checks a DSSE entry's body).

use sha2::Digest as _;

use super::trusted_root::{LogKey, TrustedRoot, b64};

/// A log entry as a signature carries it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The canonicalized entry body (base64 text, as signed).
    pub body: String,
    /// When the log integrated it (Unix seconds): the signing time.
    pub integrated_time: i64,
    /// Its index in the log.
    pub log_index: i64,
    /// The log ID, raw bytes.
    pub log_id: Vec<u8>,
    /// The SET, DER.
    pub set: Option<Vec<u8>>,
}

/// What the entry must be about.
pub struct Expected<'a> {
    /// The signed payload (or the bytes whose digest the signature covers).
    pub payload_sha256: [u8; 32],
    /// The signature bytes.
    pub signature: &'a [u8],
    /// The leaf certificate, DER.
    pub certificate: &'a [u8],
}

/// The entry of cosign's legacy `dev.sigstore.cosign/bundle` annotation:
/// `{"SignedEntryTimestamp": <base64>, "Payload": {"body": <base64>,
/// "integratedTime": n, "logIndex": n, "logID": <hex>}}` (cosign
/// `pkg/cosign/bundle/rekor.go`, `RekorBundle`).
pub fn from_cosign_bundle(text: &str) -> Result<LogEntry, String> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("its Rekor bundle annotation is not JSON ({e})"))?;
    let p = &doc["Payload"];
    let field = |name: &str| format!("its Rekor bundle has no Payload.{name}");
    let set = doc["SignedEntryTimestamp"]
        .as_str()
        .ok_or("its Rekor bundle has no SignedEntryTimestamp")?;
    Ok(LogEntry {
        body: p["body"].as_str().ok_or_else(|| field("body"))?.to_string(),
        integrated_time: p["integratedTime"]
            .as_i64()
            .ok_or_else(|| field("integratedTime"))?,
        log_index: p["logIndex"].as_i64().ok_or_else(|| field("logIndex"))?,
        log_id: hex_decode(p["logID"].as_str().ok_or_else(|| field("logID"))?)
            .ok_or("its Rekor bundle's logID is not hex")?,
        set: Some(b64(set).map_err(|e| format!("its SignedEntryTimestamp is {e}"))?),
    })
}

/// The log of `entry` in `root`, its SET checked; `Err` says why not.
pub fn check_set<'r>(root: &'r TrustedRoot, entry: &LogEntry) -> Result<&'r LogKey, String> {
    let log = root.log(&entry.log_id).ok_or_else(|| {
        format!(
            "its log entry is from the log {}, which the trusted root {} does not list",
            hex(&entry.log_id),
            root.name
        )
    })?;
    if !log.valid.contains(entry.integrated_time) {
        return Err(format!(
            "its log entry's time {} is outside the validity of the log key {} in {}",
            entry.integrated_time, log.name, root.name
        ));
    }
    let set = entry
        .set
        .as_ref()
        .ok_or("its log entry has no signed entry timestamp")?;
    if !log
        .key
        .verifies(canonical_set_payload(entry).as_bytes(), set)
    {
        return Err(format!(
            "its signed entry timestamp does not verify against the key of the log {} in \
             the trusted root {} (a forged or altered log entry)",
            log.name, root.name
        ));
    }
    Ok(log)
}

/// The canonical JSON (RFC 8785; these keys are ASCII, the values a string,
/// integers and hex) the SET signs.
pub fn canonical_set_payload(entry: &LogEntry) -> String {
    format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":\"{}\",\"logIndex\":{}}}",
        serde_json::Value::String(entry.body.clone()),
        entry.integrated_time,
        hex(&entry.log_id),
        entry.log_index
    )
}

/// Checks that the entry's `hashedrekord` body is about `expected`.
pub fn check_body(entry: &LogEntry, expected: &Expected<'_>) -> Result<(), String> {
    let body = b64(&entry.body).map_err(|e| format!("its log entry body is {e}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("its log entry body is not JSON ({e})"))?;
    let spec = &doc["spec"];
    let (hash, signature, certificate) = match doc["kind"].as_str() {
        Some("hashedrekord") => (
            &spec["data"]["hash"],
            &spec["signature"]["content"],
            &spec["signature"]["publicKey"]["content"],
        ),
        Some("dsse") => {
            let sigs = spec["signatures"].as_array().map_or(&[][..], |a| &a[..]);
            let [one] = sigs else {
                return Err(format!(
                    "its dsse log entry records {} signatures, not one",
                    sigs.len()
                ));
            };
            (&spec["payloadHash"], &one["signature"], &one["verifier"])
        }
        _ => {
            return Err(format!(
                "its log entry is a {} entry, not hashedrekord or dsse",
                doc["kind"]
            ));
        }
    };
    if hash["algorithm"] != "sha256"
        || hash["value"].as_str() != Some(hex(&expected.payload_sha256).as_str())
    {
        return Err("its log entry records the hash of another payload (a replayed entry)".into());
    }
    if signature.as_str().map(b64) != Some(Ok(expected.signature.to_vec())) {
        return Err("its log entry records another signature (a replayed entry)".into());
    }
    let cert = certificate
        .as_str()
        .and_then(|t| b64(t).ok())
        .and_then(|pem| pem_der(&pem));
    if cert.as_deref() != Some(expected.certificate) {
        return Err("its log entry records another certificate (a replayed entry)".into());
    }
    Ok(())
}

/// The kind of the entry's body (`hashedrekord`, `dsse`, …), when it has one.
pub fn body_kind(entry: &LogEntry) -> Option<String> {
    let body = b64(&entry.body).ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some(doc["kind"].as_str()?.to_string())
}

/// The DER of a PEM certificate (or of DER bytes as they are).
fn pem_der(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Some(bytes.to_vec());
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes).ok()?;
    Some(pem.contents)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_payload_is_canonical_json() {
        let e = LogEntry {
            body: "eyJ9".into(),
            integrated_time: 1700000000,
            log_index: 7,
            log_id: vec![0xab, 0x01],
            set: None,
        };
        assert_eq!(
            canonical_set_payload(&e),
            r#"{"body":"eyJ9","integratedTime":1700000000,"logID":"ab01","logIndex":7}"#
        );
        assert_eq!(hex_decode("ab01"), Some(vec![0xab, 0x01]));
        assert_eq!(hex_decode("abz"), None);
    }

    #[test]
    fn a_bundle_annotation_without_a_set_is_refused() {
        let e = from_cosign_bundle(r#"{"Payload": {}}"#).unwrap_err();
        assert!(e.contains("SignedEntryTimestamp"), "{e}");
        assert!(from_cosign_bundle("nope").is_err());
    }
}
