//! A Sigstore `trusted_root.json`: the Fulcio certificate authorities and
//! the transparency log keys that keyless signatures are checked against,
//! offline.
//!
//! The format is the JSON form of `dev.sigstore.trustroot.v1.TrustedRoot`
//! (sigstore/protobuf-specs, `protos/sigstore_trustroot.proto`), as
//! `cosign trusted-root create` writes it and as the Sigstore TUF
//! repository publishes it:
//!
//! ```json
//! {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
//!  "tlogs": [{"baseUrl": "...", "hashAlgorithm": "SHA2_256",
//!             "publicKey": {"rawBytes": "<base64 DER SPKI>", "keyDetails": "...",
//!                           "validFor": {"start": "RFC 3339", "end": "RFC 3339"}},
//!             "logId": {"keyId": "<base64 SHA-256 of the DER key>"}}],
//!  "certificateAuthorities": [{"subject": {...}, "uri": "...",
//!             "certChain": {"certificates": [{"rawBytes": "<base64 DER>"}, ...]},
//!             "validFor": {"start": "...", "end": "..."}}],
//!  "ctlogs": [...], "timestampAuthorities": [...]}
//! ```
//!
//! `tlogs`, `certificateAuthorities` and `ctlogs` (the certificate
//! transparency logs whose signed certificate timestamps a leaf must carry,
//! see `sct`; same shape as `tlogs`) are used; RFC 3161 timestamp
//! authorities are not checked. A chain is listed leaf-most first
//! (intermediates, then the root). Keys are DER SubjectPublicKeyInfo, or
//! PKCS#1 RSA public keys when `keyDetails` is `PKCS1_RSA_*`
//! (`sigstore_common.proto`, `PublicKeyDetails`). A CT log whose key cannot
//! be used is set aside (its SCTs do not count, and SCTs are still
//! required), so that a trusted root that loaded before SCTs were checked
//! still loads.

use serde::Deserialize;

use super::der::encode;
use super::keys::PublicKey;

/// A validity window in Unix seconds; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validity {
    /// Not before.
    pub start: Option<i64>,
    /// Not after.
    pub end: Option<i64>,
}

impl Validity {
    /// True when `t` (Unix seconds) is inside the window.
    pub fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }
}

/// A certificate authority (Fulcio) and its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAuthority {
    /// Its `uri` (or `subject.commonName`), for messages.
    pub name: String,
    /// DER certificates, leaf-most first.
    pub chain: Vec<Vec<u8>>,
    /// When it may have issued certificates.
    pub valid: Validity,
}

/// A transparency log (Rekor) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    /// Its `baseUrl`, for messages.
    pub name: String,
    /// The log ID: SHA-256 of the DER public key.
    pub log_id: Vec<u8>,
    /// The key that signs entry timestamps and checkpoints.
    pub key: PublicKey,
    /// When it was in use.
    pub valid: Validity,
}

/// The parts of a trusted root that are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    /// The file, as the config names it.
    pub name: String,
    /// Fulcio CAs.
    pub authorities: Vec<CertificateAuthority>,
    /// Rekor keys.
    pub logs: Vec<LogKey>,
    /// Certificate transparency log keys.
    pub ct_logs: Vec<LogKey>,
    /// The CT logs listed whose key cannot be used: where, and why.
    pub ct_unusable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawCa>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: String,
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCa {
    #[serde(default)]
    uri: String,
    #[serde(default)]
    subject: serde_json::Value,
    cert_chain: RawChain,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawValidity {
    start: Option<String>,
    end: Option<String>,
}

impl TrustedRoot {
    /// The trusted root in `path`; `name` is how messages call it.
    pub fn load(path: &std::path::Path, name: &str) -> Result<TrustedRoot, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read the trusted root {name}: {e}"))?;
        TrustedRoot::from_json(&text, name).map_err(|e| format!("trusted root {name}: {e}"))
    }

    /// The trusted root of JSON `text`; `Err` says what is wrong with it.
    pub fn from_json(text: &[u8], name: &str) -> Result<TrustedRoot, String> {
        let raw: RawRoot = serde_json::from_slice(text).map_err(|e| {
            format!(
                "it is not a Sigstore trusted_root.json ({e}); expected the file \
                 `cosign trusted-root create` writes"
            )
        })?;
        if raw.tlogs.is_empty() {
            return Err(
                "it lists no transparency log (tlogs is empty or missing): keyless \
                        signatures cannot be checked offline without the log's key"
                    .to_string(),
            );
        }
        if raw.certificate_authorities.is_empty() {
            return Err(
                "it lists no certificate authority (certificateAuthorities is empty \
                        or missing): keyless certificates cannot be checked"
                    .to_string(),
            );
        }
        let logs = raw
            .tlogs
            .iter()
            .enumerate()
            .map(|(i, l)| log_key(&format!("tlogs[{i}]"), l))
            .collect::<Result<_, _>>()?;
        let (mut ct_logs, mut ct_unusable) = (Vec::new(), Vec::new());
        for (i, l) in raw.ctlogs.iter().enumerate() {
            match log_key(&format!("ctlogs[{i}]"), l) {
                Ok(key) => ct_logs.push(key),
                Err(e) => ct_unusable.push(e),
            }
        }
        let authorities = raw
            .certificate_authorities
            .iter()
            .enumerate()
            .map(|(i, c)| authority(i, c))
            .collect::<Result<_, _>>()?;
        Ok(TrustedRoot {
            name: name.to_string(),
            authorities,
            logs,
            ct_logs,
            ct_unusable,
        })
    }

    /// The log whose ID is `log_id`.
    pub fn log(&self, log_id: &[u8]) -> Option<&LogKey> {
        self.logs.iter().find(|l| l.log_id == log_id)
    }
}

fn log_key(at: &str, l: &RawLog) -> Result<LogKey, String> {
    let der = b64(&l.public_key.raw_bytes).map_err(|e| format!("{at}.publicKey.rawBytes: {e}"))?;
    let key =
        public_key(&der, &l.public_key.key_details).map_err(|e| format!("{at}.publicKey: {e}"))?;
    let log_id = b64(&l.log_id.key_id).map_err(|e| format!("{at}.logId.keyId: {e}"))?;
    Ok(LogKey {
        name: if l.base_url.is_empty() {
            at.to_string()
        } else {
            l.base_url.clone()
        },
        log_id,
        key,
        valid: validity(at, l.public_key.valid_for.as_ref())?,
    })
}

/// The key of DER `der`: a SubjectPublicKeyInfo, or a PKCS#1
/// RSAPublicKey when `details` is `PKCS1_RSA_*`.
fn public_key(der: &[u8], details: &str) -> Result<PublicKey, String> {
    if !details.starts_with("PKCS1_RSA") {
        return PublicKey::from_spki(der);
    }
    // AlgorithmIdentifier rsaEncryption, NULL parameters (RFC 8017 A.1).
    const RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let bits = encode(0x03, &[&[0u8][..], der].concat());
    PublicKey::from_spki(&encode(0x30, &[RSA, &bits].concat()))
}

fn authority(i: usize, c: &RawCa) -> Result<CertificateAuthority, String> {
    let at = format!("certificateAuthorities[{i}]");
    let mut chain = Vec::new();
    for (j, cert) in c.cert_chain.certificates.iter().enumerate() {
        let der = b64(&cert.raw_bytes)
            .map_err(|e| format!("{at}.certChain.certificates[{j}].rawBytes: {e}"))?;
        x509_parser::parse_x509_certificate(&der).map_err(|e| {
            format!("{at}.certChain.certificates[{j}] is not an X.509 certificate: {e}")
        })?;
        chain.push(der);
    }
    if chain.is_empty() {
        return Err(format!("{at}.certChain has no certificate"));
    }
    let name = match (
        c.uri.as_str(),
        c.subject.get("commonName").and_then(|v| v.as_str()),
    ) {
        ("", Some(cn)) => cn.to_string(),
        ("", None) => at.clone(),
        (uri, _) => uri.to_string(),
    };
    Ok(CertificateAuthority {
        name,
        chain,
        valid: validity(&at, c.valid_for.as_ref())?,
    })
}

fn validity(at: &str, v: Option<&RawValidity>) -> Result<Validity, String> {
    let Some(v) = v else {
        return Ok(Validity::default());
    };
    let time = |s: &Option<String>, field: &str| -> Result<Option<i64>, String> {
        s.as_deref()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp())
                    .map_err(|e| {
                        format!("{at}.validFor.{field} {s:?} is not an RFC 3339 time: {e}")
                    })
            })
            .transpose()
    };
    Ok(Validity {
        start: time(&v.start, "start")?,
        end: time(&v.end, "end")?,
    })
}

/// Standard base64, as protobuf JSON writes bytes.
pub(super) fn b64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_roots_without_logs_or_authorities() {
        let e = TrustedRoot::from_json(br#"{"certificateAuthorities": []}"#, "r").unwrap_err();
        assert!(e.contains("no transparency log"), "{e}");
        assert!(TrustedRoot::from_json(b"[]", "r").is_err());
        let e = TrustedRoot::from_json(
            br#"{"tlogs": [{"publicKey": {"rawBytes": "AAAA"}, "logId": {"keyId": "AA=="}}],
                 "certificateAuthorities": [{"certChain": {"certificates": []}}]}"#,
            "r",
        )
        .unwrap_err();
        assert!(e.contains("tlogs[0].publicKey"), "{e}");
    }

    #[test]
    fn ct_logs_are_read_and_unusable_ones_set_aside() {
        let ec = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6katKuaKfiDQirtxKI6khBw3qCfejwfEBydjMxviKJB2\
                  HeN/alBU2h6atXlfglbX+Za6PHaReFamoXZucy65CQ==";
        // A PKCS#1 RSAPublicKey (2048 bits), as `PKCS1_RSA_PKCS1V5` keys are.
        let rsa = "MIIBCgKCAQEAqo+qjdN1c2ckA0etW4XhqNWHc6aLv1Xjrz8NDZhBaUCi/rJcApEVQ05hkcITvaNbN2DR\
                   vbjnpu1qR07DAmlCFxBXVVUBhDE3+V8lxhs9DYnCfH/NZzSYqr806J6i8DIlcxYO4W+lIdQn2+4Iwpc8\
                   vs2HRo0XaieYEKk9peRY6nOMX40Iz7aFhjuhCwAFKHdrMrzigzEx1UGaL/dtAdFJ0yhUgQbFXBrvbszw\
                   YadVNvgnyiwH6W9tkgU7DH/eI8plclMJwMzzSAL7cYx+OL4/sh3VNzhIVSXhTCQkOgFD/DsdcBHuzeVA\
                   kPooyZuhX4nfxD6Eww6OMUBCektfOSwJPwIDAQAB";
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let log = |key: &str, details: &str| {
            serde_json::json!({"publicKey": {"rawBytes": key, "keyDetails": details},
                               "logId": {"keyId": "AA=="}})
        };
        let doc = serde_json::json!({
            "tlogs": [log(ec, "PKIX_ECDSA_P256_SHA_256")],
            "ctlogs": [log(ec, "PKIX_ECDSA_P256_SHA_256"), log(rsa, "PKCS1_RSA_PKCS1V5"),
                       log("AAAA", "PKIX_ECDSA_P256_SHA_256")],
            "certificateAuthorities": [{"certChain": {"certificates": [
                {"rawBytes": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD, ca.der())}]}}]
        });
        let root = TrustedRoot::from_json(doc.to_string().as_bytes(), "r").unwrap();
        assert_eq!(root.ct_logs.len(), 2, "the EC and the PKCS#1 RSA keys");
        assert_eq!(root.ct_unusable.len(), 1, "{:?}", root.ct_unusable);
        assert!(
            root.ct_unusable[0].contains("ctlogs[2].publicKey"),
            "{:?}",
            root.ct_unusable
        );
    }

    #[test]
    fn validity_windows_are_inclusive_and_open_ended() {
        let v = Validity {
            start: Some(10),
            end: None,
        };
        assert!(!v.contains(9));
        assert!(v.contains(10) && v.contains(i64::MAX));
    }
}
