//! Sigstore bundles (sigstore/protobuf-specs `protos/sigstore_bundle.proto`,
//! in its JSON form), as `cosign sign --new-bundle-format` (cosign v2.4 and
//! later, the default of cosign v3) attaches them to an image: an OCI
//! referrer whose `artifactType` is the bundle media type and whose one
//! layer is the bundle JSON (cosign `specs/BUNDLE_SPEC.md`).
//!
//! A bundle holds:
//! - `verificationMaterial`: the signer's leaf `certificate` (v0.3) or
//!   `x509CertificateChain` (v0.1, v0.2: the leaf first), or a `publicKey`
//!   hint (a key-signed bundle); and its `tlogEntries` (Rekor entries with
//!   `kindVersion`, `canonicalizedBody`, `integratedTime`, the
//!   `inclusionPromise` (SET) and/or the `inclusionProof` with its
//!   `checkpoint`);
//! - the content: a `messageSignature` (`messageDigest` and `signature`)
//!   or a `dsseEnvelope` (`payload`, `payloadType`, `signatures`).
//!
//! Only reading is done here (bytes decoded, sizes capped, no panics);
//! `bundle_check` judges a bundle.

use serde::Deserialize;

use super::merkle::MAX_PATH;
use super::rekor::LogEntry;
use super::trusted_root::b64;

/// The media types of a Sigstore bundle.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];
/// Largest bundle layer read.
pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024;
/// Most transparency log entries or DSSE signatures read from one bundle.
const MAX_ITEMS: usize = 8;

/// True when `media_type` is a Sigstore bundle's.
pub fn is_bundle_type(media_type: &str) -> bool {
    BUNDLE_MEDIA_TYPES.contains(&media_type)
}

/// Who signed: a certificate, or a key the verifier must already trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// The leaf certificate, DER.
    Certificate(Vec<u8>),
    /// A key-signed bundle (the hint, as written).
    PublicKey(String),
}

/// What was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A signature over a message of which only the digest is carried.
    Message {
        /// The SHA-256 of the message (`None`: another algorithm).
        digest: Option<[u8; 32]>,
        /// The signature.
        signature: Vec<u8>,
    },
    /// A DSSE envelope.
    Dsse {
        /// Its `payloadType`.
        payload_type: String,
        /// Its payload, decoded.
        payload: Vec<u8>,
        /// Its signatures, decoded.
        signatures: Vec<Vec<u8>>,
    },
}

/// An inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The entry's index in the tree.
    pub index: u64,
    /// The tree's size.
    pub size: u64,
    /// The tree's root hash.
    pub root: [u8; 32],
    /// The audit path.
    pub hashes: Vec<[u8; 32]>,
    /// The checkpoint's signed note (`None`: none given).
    pub checkpoint: Option<String>,
}

/// A transparency log entry of a bundle.
#[derive(Debug, Clone)]
pub struct TlogEntry {
    /// `kindVersion.kind` and `.version`.
    pub kind: (String, String),
    /// The entry (`set` is the inclusion promise, when given).
    pub entry: LogEntry,
    /// The inclusion proof, when given.
    pub proof: Option<Proof>,
}

/// A bundle, read.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Who signed.
    pub material: Material,
    /// What was signed.
    pub content: Content,
    /// Its log entries.
    pub entries: Vec<TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    #[serde(default)]
    media_type: String,
    verification_material: RawMaterial,
    message_signature: Option<RawMessage>,
    dsse_envelope: Option<RawEnvelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    certificate: Option<RawBytes>,
    x509_certificate_chain: Option<RawChain>,
    public_key: Option<RawHint>,
    #[serde(default)]
    tlog_entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
struct RawHint {
    #[serde(default)]
    hint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    log_index: Int,
    log_id: RawLogId,
    kind_version: RawKind,
    #[serde(default)]
    integrated_time: Int,
    inclusion_promise: Option<RawPromise>,
    inclusion_proof: Option<RawProof>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct RawKind {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPromise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProof {
    log_index: Int,
    root_hash: String,
    tree_size: Int,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Option<RawCheckpoint>,
}

#[derive(Deserialize)]
struct RawCheckpoint {
    envelope: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    message_digest: Option<RawDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct RawDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<RawSig>,
}

#[derive(Deserialize)]
struct RawSig {
    sig: String,
}

/// A protobuf JSON int64: a string of digits, or a number.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(try_from = "serde_json::Value")]
struct Int(i64);

impl TryFrom<serde_json::Value> for Int {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Int, String> {
        match &v {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .map(Int)
        .ok_or_else(|| format!("{v} is not an int64"))
    }
}

impl Bundle {
    /// The bundle of JSON `bytes`; `Err` says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, String> {
        let raw: RawBundle = serde_json::from_slice(bytes)
            .map_err(|e| format!("it is not a Sigstore bundle ({e})"))?;
        if !is_bundle_type(&raw.media_type) {
            return Err(format!(
                "its mediaType {:?} is not a Sigstore bundle version this mirror reads ({})",
                raw.media_type,
                BUNDLE_MEDIA_TYPES.join(", ")
            ));
        }
        let material = material(&raw.verification_material)?;
        let content = match (&raw.message_signature, &raw.dsse_envelope) {
            (Some(m), None) => message(m)?,
            (None, Some(e)) => envelope(e)?,
            _ => {
                return Err("it holds neither or both of messageSignature and dsseEnvelope".into());
            }
        };
        let raw_entries = &raw.verification_material.tlog_entries;
        if raw_entries.len() > MAX_ITEMS {
            return Err(format!(
                "it has {} log entries, more than {MAX_ITEMS}",
                raw_entries.len()
            ));
        }
        let entries = raw_entries.iter().map(entry).collect::<Result<_, _>>()?;
        Ok(Bundle {
            material,
            content,
            entries,
        })
    }
}

fn material(m: &RawMaterial) -> Result<Material, String> {
    let leaf = match (&m.certificate, &m.x509_certificate_chain, &m.public_key) {
        (Some(c), None, None) => &c.raw_bytes,
        (None, Some(chain), None) => {
            &chain
                .certificates
                .first()
                .ok_or("its x509CertificateChain has no certificate")?
                .raw_bytes
        }
        (None, None, Some(k)) => return Ok(Material::PublicKey(k.hint.clone())),
        _ => {
            return Err(
                "its verificationMaterial holds not exactly one of certificate, \
                        x509CertificateChain and publicKey"
                    .into(),
            );
        }
    };
    let der = b64(leaf).map_err(|e| format!("its certificate is {e}"))?;
    Ok(Material::Certificate(der))
}

fn message(m: &RawMessage) -> Result<Content, String> {
    let digest = match &m.message_digest {
        Some(d) if d.algorithm == "SHA2_256" => {
            let bytes = b64(&d.digest).map_err(|e| format!("its messageDigest is {e}"))?;
            Some(<[u8; 32]>::try_from(bytes).map_err(|_| "its messageDigest is not 32 bytes")?)
        }
        _ => None,
    };
    Ok(Content::Message {
        digest,
        signature: b64(&m.signature).map_err(|e| format!("its signature is {e}"))?,
    })
}

fn envelope(e: &RawEnvelope) -> Result<Content, String> {
    if e.signatures.is_empty() || e.signatures.len() > MAX_ITEMS {
        return Err(format!(
            "its DSSE envelope has {} signatures (1 to {MAX_ITEMS} are read)",
            e.signatures.len()
        ));
    }
    let signatures = e
        .signatures
        .iter()
        .map(|s| b64(&s.sig).map_err(|e| format!("its DSSE signature is {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Content::Dsse {
        payload_type: e.payload_type.clone(),
        payload: b64(&e.payload).map_err(|e| format!("its DSSE payload is {e}"))?,
        signatures,
    })
}

fn entry(e: &RawEntry) -> Result<TlogEntry, String> {
    let set = match &e.inclusion_promise {
        Some(p) => Some(
            b64(&p.signed_entry_timestamp)
                .map_err(|e| format!("its inclusionPromise.signedEntryTimestamp is {e}"))?,
        ),
        None => None,
    };
    Ok(TlogEntry {
        kind: (e.kind_version.kind.clone(), e.kind_version.version.clone()),
        entry: LogEntry {
            body: e.canonicalized_body.clone(),
            integrated_time: e.integrated_time.0,
            log_index: e.log_index.0,
            log_id: b64(&e.log_id.key_id).map_err(|e| format!("its logId.keyId is {e}"))?,
            set,
        },
        proof: e.inclusion_proof.as_ref().map(proof).transpose()?,
    })
}

fn proof(p: &RawProof) -> Result<Proof, String> {
    let hash = |text: &str, what: &str| -> Result<[u8; 32], String> {
        b64(text)
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| format!("its inclusionProof.{what} is not a base64 SHA-256 hash"))
    };
    if p.hashes.len() > MAX_PATH {
        return Err(format!(
            "its inclusionProof has {} hashes, more than {MAX_PATH}",
            p.hashes.len()
        ));
    }
    let (index, size) = (u64::try_from(p.log_index.0), u64::try_from(p.tree_size.0));
    let (Ok(index), Ok(size)) = (index, size) else {
        return Err("its inclusionProof has a negative logIndex or treeSize".into());
    };
    Ok(Proof {
        index,
        size,
        root: hash(&p.root_hash, "rootHash")?,
        hashes: p
            .hashes
            .iter()
            .map(|h| hash(h, "hashes[]"))
            .collect::<Result<_, _>>()?,
        checkpoint: p.checkpoint.as_ref().map(|c| c.envelope.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

    fn minimal(content: &str, material: &str) -> String {
        format!(
            r#"{{"mediaType": "{V03}", "verificationMaterial": {{{material}, "tlogEntries": [
                {{"logIndex": "7", "logId": {{"keyId": "AAAA"}},
                  "kindVersion": {{"kind": "hashedrekord", "version": "0.0.1"}},
                  "integratedTime": 1700000000, "canonicalizedBody": "e30=",
                  "inclusionProof": {{"logIndex": "3", "treeSize": "5", "rootHash": "{root}",
                    "hashes": ["{root}"], "checkpoint": {{"envelope": "c"}}}}}}]}}, {content}}}"#,
            root = "A".repeat(43) + "="
        )
    }

    #[test]
    fn a_v03_message_signature_bundle_is_read() {
        let b = Bundle::from_json(
            minimal(
                r#""messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
                    "digest": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "signature": "AQI="}"#,
                r#""certificate": {"rawBytes": "MAA="}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(b.material, Material::Certificate(vec![0x30, 0]));
        assert!(matches!(
            b.content,
            Content::Message {
                digest: Some(_),
                ..
            }
        ));
        let e = &b.entries[0];
        assert_eq!(
            (e.entry.log_index, e.entry.integrated_time),
            (7, 1_700_000_000)
        );
        let p = e.proof.as_ref().unwrap();
        assert_eq!((p.index, p.size, p.hashes.len()), (3, 5, 1));
    }

    #[test]
    fn a_v01_chain_and_a_key_hint_are_read() {
        let dsse = r#""dsseEnvelope": {"payload": "e30=", "payloadType": "t",
                      "signatures": [{"sig": "AQI=", "keyid": ""}]}"#;
        let v01 = "application/vnd.dev.sigstore.bundle+json;version=0.1";
        let chain = minimal(
            dsse,
            r#""x509CertificateChain": {"certificates": [{"rawBytes": "MAE="}, {"rawBytes": "MAI="}]}"#,
        )
        .replace(V03, v01);
        let b = Bundle::from_json(chain.as_bytes()).unwrap();
        assert_eq!(
            b.material,
            Material::Certificate(vec![0x30, 1]),
            "the leaf is first"
        );
        let key = minimal(dsse, r#""publicKey": {"hint": "k"}"#);
        let b = Bundle::from_json(key.as_bytes()).unwrap();
        assert_eq!(b.material, Material::PublicKey("k".into()));
        assert!(matches!(b.content, Content::Dsse { ref signatures, .. } if signatures.len() == 1));
    }

    #[test]
    fn hostile_bundles_are_refused_with_a_reason() {
        let dsse = r#""dsseEnvelope": {"payload": "e30=", "payloadType": "t", "signatures": []}"#;
        let cert = r#""certificate": {"rawBytes": "MAA="}"#;
        for (text, says) in [
            ("[]".to_string(), "not a Sigstore bundle"),
            (minimal(dsse, cert), "0 signatures"),
            (minimal(dsse, cert).replace(V03, "x"), "mediaType"),
            (
                minimal(dsse, &format!("{cert}, \"publicKey\": {{}}")),
                "not exactly one",
            ),
            (
                minimal(&dsse.replace("[]", r#"[{"sig": "AQI="}]"#), cert)
                    .replace("\"5\"", "\"-5\""),
                "negative",
            ),
            (minimal(dsse, cert).replace("\"7\"", "[]"), "not an int64"),
        ] {
            let e = Bundle::from_json(text.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
        let many = vec![format!("\"{}\"", "A".repeat(43) + "="); MAX_PATH + 1].join(",");
        let one = dsse.replace("[]", r#"[{"sig": "AQI="}]"#);
        assert!(Bundle::from_json(minimal(&one, cert).as_bytes()).is_ok());
        let text = minimal(&one, cert).replacen(
            &format!("[\"{}\"]", "A".repeat(43) + "="),
            &format!("[{many}]"),
            1,
        );
        let e = Bundle::from_json(text.as_bytes()).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }
}
