//! Judging the Sigstore bundles found as referrers of an image (see
//! `bundle` for the format), offline, against a policy:
//!
//! - What was signed: a `messageSignature` counts for the image when its
//!   `messageDigest` is the image's manifest digest (SHA-256) and the
//!   signature verifies over the manifest's bytes; a `dsseEnvelope` when
//!   it is an in-toto Statement (`application/vnd.in-toto+json`) of
//!   cosign's signature predicate `https://sigstore.dev/cosign/sign/v1`
//!   whose `subject[].digest.sha256` names the image, its signature
//!   checked over the DSSE pre-authentication encoding
//!   (`DSSEv1 <len> <type> <len> <payload>`, DSSE `protocol.md`). Other
//!   DSSE predicates (provenance, SBOM attestations) are not signatures
//!   and are left out.
//! - Who signed: a leaf certificate is judged exactly as a legacy keyless
//!   signature is (`keyless`: chain to a CA of the trusted root, identity
//!   and issuer, validity at signing time); a `publicKey` hint means a
//!   key-signed bundle, which counts for the policy's keys that verify it.
//! - Its transparency log entry (the first of `tlogEntries`, for a
//!   certificate): a `hashedrekord` or `dsse` v0.0.1 entry whose
//!   `canonicalizedBody` is about this signature, certificate and
//!   payload hash; its signed entry timestamp (SET), which also gives the
//!   signing time; and, when given, its inclusion proof (`merkle`) to a
//!   root hash that a checkpoint signed by the same log names
//!   (`checkpoint`). A proof without a checkpoint is refused, and so is
//!   an entry without a SET: without a timestamp authority (not read
//!   here) nothing else says when the certificate was used.

use super::bundle::{Bundle, Content, Material, TlogEntry};
use super::find::FoundBundle;
use super::keyless::{self, Failure};
use super::rekor::{self, hex};
use super::trusted_root::{LogKey, TrustedRoot, b64};
use super::{Judged, Policy, PolicyError, RejectReason, checkpoint, merkle};
use crate::registry::{Client, Digest, Reference};

/// The payload type of an in-toto Statement in a DSSE envelope.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The predicate type of a cosign image signature in a DSSE envelope.
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// A bundle's signature, ready to verify.
struct Signed {
    /// The bytes the signature covers.
    message: Vec<u8>,
    /// The signature.
    signature: Vec<u8>,
    /// The SHA-256 the log entry must record.
    logged: [u8; 32],
}

/// True when `bundle` is an image signature (not another attestation).
pub fn is_signature(bundle: &Bundle) -> bool {
    match &bundle.content {
        Content::Message { .. } => true,
        Content::Dsse {
            payload_type,
            payload,
            ..
        } => {
            payload_type == IN_TOTO
                && serde_json::from_slice::<serde_json::Value>(payload)
                    .is_ok_and(|s| s["predicateType"] == SIGN_PREDICATE)
        }
    }
}

/// True when judging `bundle` needs the image manifest's bytes.
pub fn needs_manifest(bundle: &Bundle) -> bool {
    matches!(bundle.content, Content::Message { .. })
}

/// The policy's keys (indexes) that signed a key-signed `bundle`, and the
/// digest it names when that is not `digest` (a trusted key's signature of
/// another image).
pub fn keyed(
    policy: &Policy,
    bundle: &Bundle,
    digest: &Digest,
    manifest: Option<&[u8]>,
) -> (Vec<usize>, Option<String>) {
    if !matches!(bundle.material, Material::PublicKey(_)) {
        return (Vec::new(), None);
    }
    // A message signature of another digest cannot be verified (its
    // message is not here): it counts for no key.
    let Ok(signed) = signed(bundle, digest, manifest) else {
        return (Vec::new(), None);
    };
    let by: Vec<usize> = (0..policy.keys.len())
        .filter(|i| {
            policy.keys[*i]
                .key
                .verifies(&signed.message, &signed.signature)
        })
        .collect();
    match named_digest(bundle, digest) {
        Err(named) if !by.is_empty() => (Vec::new(), Some(named)),
        _ => (by, None),
    }
}

/// The policy's identities (indexes) a certificate-signed `bundle`
/// satisfies for `digest`, or why none.
pub fn keyless(
    root: &TrustedRoot,
    policy: &Policy,
    bundle: &Bundle,
    digest: &Digest,
    manifest: Option<&[u8]>,
) -> Result<Vec<usize>, Failure> {
    let Material::Certificate(certificate) = &bundle.material else {
        return Ok(Vec::new());
    };
    let s = signed(bundle, digest, manifest).map_err(|(reason, named)| {
        (
            reason,
            format!("it signs {named}, not this image: it was made for another image"),
        )
    })?;
    let tlog = bundle.entries.first().ok_or((
        RejectReason::LogProofInvalid,
        "its bundle has no transparency log entry: it cannot be checked offline".to_string(),
    ))?;
    let checked = keyless::Signed {
        certificate,
        signature: &s.signature,
        message: &s.message,
        entry: &tlog.entry,
        logged_sha256: s.logged,
    };
    let matched = keyless::check(root, &policy.identities, &checked, || prove(root, tlog))?;
    named_digest(bundle, digest).map_err(|named| {
        (
            RejectReason::DigestMismatch,
            format!(
                "it is a valid keyless signature of {named}, not of this image: it was made \
                 for another image (a replaced or copied signature)"
            ),
        )
    })?;
    Ok(matched)
}

/// Checks each Sigstore bundle found for `digest` (image signatures only:
/// other attestations are left out, uncounted).
pub(super) async fn judge_all(
    policy: &Policy,
    client: &Client,
    repo: &Reference,
    digest: &Digest,
    found: &[FoundBundle],
    j: &mut Judged,
) -> Result<(), PolicyError> {
    let mut manifest: Option<bytes::Bytes> = None;
    for f in found {
        let read = f.json.as_ref().map_err(String::clone).and_then(|json| {
            Bundle::from_json(json).map_err(|e| format!("its Sigstore bundle cannot be read: {e}"))
        });
        let b = match read {
            Ok(b) if is_signature(&b) => b,
            Ok(_) => continue,
            Err(e) => {
                j.layers += 1;
                j.failed(&f.origin, (RejectReason::WrongKey, e));
                continue;
            }
        };
        j.layers += 1;
        if manifest.is_none() && needs_manifest(&b) {
            let raw = client
                .get_manifest(&repo.with_digest(digest.clone()))
                .await?;
            manifest = Some(raw.bytes);
        }
        let (keys, other) = keyed(policy, &b, digest, manifest.as_deref());
        keys.into_iter().for_each(|i| j.add(i));
        if let Some(named) = other {
            j.other_digest = Some((f.origin.clone(), named));
        }
        let Some(root) = policy
            .trusted_root
            .as_deref()
            .filter(|_| !policy.identities.is_empty())
        else {
            continue;
        };
        match keyless(root, policy, &b, digest, manifest.as_deref()) {
            Ok(m) => m.into_iter().for_each(|i| j.add(policy.keys.len() + i)),
            Err(failure) => j.failed(&f.origin, failure),
        }
    }
    Ok(())
}

/// The message, signature and logged hash of `bundle`; `Err` names the
/// digest a message signature signs when it is not `digest`.
fn signed(
    bundle: &Bundle,
    digest: &Digest,
    manifest: Option<&[u8]>,
) -> Result<Signed, (RejectReason, String)> {
    match &bundle.content {
        Content::Message {
            digest: d,
            signature,
        } => {
            let named = d.map_or("a message of another algorithm".to_string(), |d| {
                format!("sha256:{}", hex(&d))
            });
            let message =
                manifest.filter(|m| format!("sha256:{}", hex(&rekor::sha256(m))) == named);
            match (d, message) {
                (Some(d), Some(m)) if named == digest.to_string() => Ok(Signed {
                    message: m.to_vec(),
                    signature: signature.clone(),
                    logged: *d,
                }),
                _ => Err((RejectReason::DigestMismatch, named)),
            }
        }
        Content::Dsse {
            payload_type,
            payload,
            signatures,
        } => Ok(Signed {
            message: pae(payload_type, payload),
            signature: signatures.first().cloned().unwrap_or_default(),
            logged: rekor::sha256(payload),
        }),
    }
}

/// `Err(named)` when a DSSE statement does not name `digest` among its
/// subjects (message signatures were checked by `signed`).
fn named_digest(bundle: &Bundle, digest: &Digest) -> Result<(), String> {
    let Content::Dsse { payload, .. } = &bundle.content else {
        return Ok(());
    };
    let statement: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let subjects = statement["subject"].as_array().map_or(&[][..], |a| &a[..]);
    let named: Vec<String> = subjects
        .iter()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .map(|h| format!("sha256:{h}"))
        .collect();
    if named.iter().any(|n| *n == digest.to_string()) {
        return Ok(());
    }
    Err(if named.is_empty() {
        "no image digest".to_string()
    } else {
        named.join(", ")
    })
}

/// The DSSE pre-authentication encoding of `payload`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Proves `tlog` offline: its kind, its SET (the signing time), and its
/// inclusion proof and checkpoint when given.
fn prove(root: &TrustedRoot, tlog: &TlogEntry) -> Result<(), String> {
    let (kind, version) = (&tlog.kind.0, &tlog.kind.1);
    if !matches!(kind.as_str(), "hashedrekord" | "dsse") || version != "0.0.1" {
        return Err(format!(
            "its log entry is of kind {kind} {version}; hashedrekord 0.0.1 and dsse 0.0.1 are \
             read"
        ));
    }
    if rekor::body_kind(&tlog.entry).as_deref() != Some(kind) {
        return Err(format!("its log entry's body is not of its kind {kind}"));
    }
    if tlog.entry.set.is_none() {
        return Err(
            "its log entry has no signed entry timestamp (inclusionPromise): without it, or a \
             timestamp authority (not supported), nothing proves when the certificate was used"
                .into(),
        );
    }
    let log = rekor::check_set(root, &tlog.entry)?;
    match &tlog.proof {
        Some(p) => included(log, p, &tlog.entry.body),
        None => Ok(()),
    }
}

/// Checks an inclusion proof of `body` and the checkpoint it leads to.
fn included(log: &LogKey, p: &super::bundle::Proof, body: &str) -> Result<(), String> {
    let body = b64(body).map_err(|e| format!("its log entry body is {e}"))?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&body),
        p.index,
        p.size,
        &p.hashes,
        &p.root,
    )?;
    let text = p
        .checkpoint
        .as_deref()
        .ok_or("its inclusion proof has no checkpoint: the root hash it leads to is not signed")?;
    let c = checkpoint::verify(text, log)?;
    if c.size != p.size || c.root != p.root {
        return Err(format!(
            "its checkpoint is for another tree (size {}, root {}) than its inclusion proof \
             (size {}, root {})",
            c.size,
            hex(&c.root),
            p.size,
            hex(&p.root)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsse(payload_type: &str, predicate: &str) -> Bundle {
        Bundle {
            material: Material::PublicKey(String::new()),
            content: Content::Dsse {
                payload_type: payload_type.into(),
                payload: format!(r#"{{"predicateType": "{predicate}"}}"#).into_bytes(),
                signatures: vec![vec![1]],
            },
            entries: Vec::new(),
        }
    }

    #[test]
    fn only_cosign_signature_statements_are_signatures() {
        assert!(is_signature(&dsse(IN_TOTO, SIGN_PREDICATE)));
        assert!(!is_signature(&dsse(
            IN_TOTO,
            "https://slsa.dev/provenance/v1"
        )));
        assert!(!is_signature(&dsse("text/plain", SIGN_PREDICATE)));
        let message = Bundle {
            content: Content::Message {
                digest: None,
                signature: Vec::new(),
            },
            ..dsse(IN_TOTO, "")
        };
        assert!(is_signature(&message) && needs_manifest(&message));
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        // DSSE protocol.md: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
