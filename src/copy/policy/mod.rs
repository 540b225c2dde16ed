//! Signature policy: which cosign signatures an image must carry before it
//! is written at a target.
//!
//! A [`Policy`] lists trusted public keys and whether one of them (`any`)
//! or each of them (`all`) must have signed the image. [`check`] judges one
//! image in one repository (the source before a copy, or a target when
//! auditing it): a signature counts when it verifies against a trusted key
//! over its simple signing payload AND that payload names the image's own
//! digest at `critical.image.docker-manifest-digest` (a signature copied
//! from another image does not count). An index passes when the index
//! itself is signed (that covers its children), or else when every
//! platform manifest it lists is (upstreams that sign per platform);
//! buildx attestation entries need no signature.
//!
//! A policy may also list keyless identities (an OIDC issuer and a
//! certificate subject) with a Sigstore trusted root: a signature counts
//! for an identity when its Fulcio certificate chains to the trusted root,
//! names the identity, and its transparency log entry is proven offline
//! (`keyless`, `rekor`, `trusted_root`). `require` counts keys and
//! identities together.
//!
//! Signatures may also come as Sigstore bundles attached as referrers
//! (`cosign sign --new-bundle-format`): a bundle counts for an identity
//! or a key as a legacy signature does, its transparency log entry proven
//! by its SET and, when it has one, an RFC 6962 inclusion proof to a
//! checkpoint signed by the log (`bundle`, `bundle_check`, `merkle`,
//! `checkpoint`).
//!
//! What is verified here and how: signatures are found by `find`
//! (`.sig` tags and referrers), keys read and signatures checked by `keys`
//! (`x509-parser` to read keys and certificates, `ring` to verify).

mod bundle;
mod bundle_check;
mod checkpoint;
mod der;
mod find;
mod keyless;
mod keys;
mod merkle;
mod rekor;
mod reload;
mod sct;
mod trusted_root;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::registry::manifest::Manifest;
use crate::registry::{Client, Digest, Error, RawManifest, Reference};

pub use bundle::{BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES};
pub use find::{
    COSIGN_SIGNATURE_TYPE, Found, FoundBundle, SIGNATURE_ANNOTATION, SIMPLE_SIGNING,
    SignatureLayer, signatures,
};
pub use keyless::{Identity, Subject};
pub use keys::{KeyKind, PublicKey};
pub use reload::{Kind as SourceKind, Source, Sources};
pub use trusted_root::TrustedRoot;

/// `critical.type` of a cosign image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// Errors that keep a policy from being judged (the registry could not be
/// read); never a verdict.
pub type PolicyError = Error;

/// How many of the trusted keys must have signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// At least one of the keys.
    Any,
    /// Every key.
    All,
}

impl Require {
    /// `any` or `all`.
    pub fn parse(text: &str) -> Option<Require> {
        match text {
            "any" => Some(Require::Any),
            "all" => Some(Require::All),
            _ => None,
        }
    }
}

/// A trusted key and the name it is reported by (its file, as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The file it was read from, as the config or command line names it.
    pub name: String,
    /// The key.
    pub key: PublicKey,
}

impl TrustedKey {
    /// The key in the PEM file `path`; `name` is how messages call it.
    pub fn load(path: &std::path::Path, name: &str) -> Result<TrustedKey, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read the public key {name}: {e}"))?;
        let key = PublicKey::from_pem(&text).map_err(|e| format!("public key {name}: {e}"))?;
        Ok(TrustedKey {
            name: name.to_string(),
            key,
        })
    }
}

/// The signatures an image must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Any or all of the keys.
    pub require: Require,
    /// Trusted keys.
    pub keys: Vec<TrustedKey>,
    /// Trusted keyless identities (checked against `trusted_root`).
    pub identities: Vec<Identity>,
    /// The Sigstore trusted root keyless signatures are checked against
    /// (set whenever `identities` is not empty).
    pub trusted_root: Option<Arc<TrustedRoot>>,
    /// The files the keys and trusted root were read from, read again
    /// when they change (`None`: keep these).
    pub sources: Option<Arc<Sources>>,
}

impl Policy {
    /// A policy of keys only.
    pub fn with_keys(require: Require, keys: Vec<TrustedKey>) -> Policy {
        Policy {
            require,
            keys,
            identities: Vec::new(),
            trusted_root: None,
            sources: None,
        }
    }

    /// This policy as its files are now (see `reload`); `None`: unchanged.
    pub fn current(&self) -> Result<Option<Arc<Policy>>, String> {
        match &self.sources {
            Some(s) => s.current(self),
            None => Ok(None),
        }
    }

    /// How many signers (keys, then identities) `require` counts.
    fn signers(&self) -> usize {
        self.keys.len() + self.identities.len()
    }

    /// The name of signer `i` in messages.
    fn signer_name(&self, i: usize) -> String {
        match self.keys.get(i) {
            Some(k) => k.name.clone(),
            None => self.identities[i - self.keys.len()].describe(),
        }
    }
}

/// Why an image fails a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// No signature of the image (or of a platform) at all.
    NoSignature,
    /// Signatures, but none by the trusted keys (or not by each, `all`).
    WrongKey,
    /// A keyless signature by another identity or issuer.
    IdentityMismatch,
    /// A transparency log proof that does not check.
    LogProofInvalid,
    /// A certificate that was not valid at signing time.
    CertificateExpired,
    /// A trusted key's signature of another digest.
    DigestMismatch,
    /// A keyless certificate not issued by a CA of the trusted root.
    UntrustedCertificate,
}

impl RejectReason {
    /// The reason as reports write it.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::NoSignature => "no_signature",
            RejectReason::WrongKey => "wrong_key",
            RejectReason::IdentityMismatch => "identity_mismatch",
            RejectReason::LogProofInvalid => "log_proof_invalid",
            RejectReason::CertificateExpired => "certificate_expired",
            RejectReason::DigestMismatch => "digest_mismatch",
            RejectReason::UntrustedCertificate => "untrusted_certificate",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The judgement of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The policy is satisfied.
    Accepted {
        /// The digests whose signatures satisfied it: the image's, or
        /// each platform manifest's.
        signed: Vec<Digest>,
    },
    /// The policy is not satisfied.
    Rejected {
        /// Why, in one word.
        reason: RejectReason,
        /// What was found and what to do.
        detail: String,
    },
}

/// What the signatures of one digest amount to.
struct Judged {
    /// Signers (indexes into the policy's keys, then its identities) with
    /// a valid signature of the digest.
    signed_by: Vec<usize>,
    /// Signature layers found.
    layers: usize,
    /// A trusted key's signature naming another digest: where, and what.
    other_digest: Option<(String, String)>,
    /// The first keyless signature that failed: where, why and what.
    keyless_failure: Option<(String, RejectReason, String)>,
}

/// Judge `digest` in `repo` (any reference of the repository) against
/// `policy`. `manifest`: the manifest to judge (the digest's bytes, or a
/// platform-filtered index of it); when it is an index whose own digest is
/// not signed, each platform manifest it lists must be.
pub async fn check(
    policy: &Policy,
    client: &Client,
    repo: &Reference,
    digest: &Digest,
    manifest: &RawManifest,
) -> Result<Verdict, PolicyError> {
    let repo = repo.repository_only();
    let fresh = policy.current().map_err(|detail| Error::Config {
        host: repo.registry().to_string(),
        detail,
    })?;
    let policy = fresh.as_deref().unwrap_or(policy);
    let own = judge(policy, client, &repo, digest).await?;
    if satisfied(policy, &own) {
        return Ok(Verdict::Accepted {
            signed: vec![digest.clone()],
        });
    }
    let Ok(Manifest::Index(index)) = manifest.parse() else {
        return Ok(rejection(policy, &repo, digest, &own));
    };
    let children: Vec<&Digest> = index
        .manifests
        .iter()
        .filter(|d| !d.is_attestation())
        .map(|d| &d.digest)
        .collect();
    if children.is_empty() {
        return Ok(rejection(policy, &repo, digest, &own));
    }
    for child in &children {
        let j = judge(policy, client, &repo, child).await?;
        if !satisfied(policy, &j) {
            // The index's own signatures say more when it has some.
            return Ok(if own.layers > 0 {
                rejection(policy, &repo, digest, &own)
            } else {
                rejection(policy, &repo, child, &j)
            });
        }
    }
    Ok(Verdict::Accepted {
        signed: children.into_iter().cloned().collect(),
    })
}

/// Find and check every signature of `digest`.
async fn judge(
    policy: &Policy,
    client: &Client,
    repo: &Reference,
    digest: &Digest,
) -> Result<Judged, PolicyError> {
    let found = signatures(client, repo, digest).await?;
    let mut j = Judged {
        signed_by: Vec::new(),
        layers: found.layers.len(),
        other_digest: None,
        keyless_failure: None,
    };
    bundle_check::judge_all(policy, client, repo, digest, &found.bundles, &mut j).await?;
    for layer in &found.layers {
        let Some(sig) = decode_signature(&layer.signature) else {
            continue;
        };
        judge_keyless(policy, layer, &sig, digest, &mut j);
        for (i, k) in policy.keys.iter().enumerate() {
            if !k.key.verifies(&layer.payload, &sig) {
                continue;
            }
            match payload_digest(&layer.payload) {
                Some(named) if named == digest.to_string() => {
                    j.add(i);
                }
                named => {
                    let named = named.unwrap_or_else(|| "no image digest".to_string());
                    j.other_digest = Some((layer.origin.clone(), named));
                }
            }
        }
    }
    Ok(j)
}

impl Judged {
    fn add(&mut self, signer: usize) {
        if !self.signed_by.contains(&signer) {
            self.signed_by.push(signer);
        }
    }

    fn failed(&mut self, origin: &str, (reason, detail): keyless::Failure) {
        self.keyless_failure
            .get_or_insert((origin.to_string(), reason, detail));
    }
}

/// Checks `layer` as a keyless signature (cosign's legacy layout: the
/// certificate and Rekor bundle annotations) when the policy has
/// identities and the layer a certificate.
fn judge_keyless(
    policy: &Policy,
    layer: &SignatureLayer,
    sig: &[u8],
    digest: &Digest,
    j: &mut Judged,
) {
    let (Some(root), Some(pem)) = (&policy.trusted_root, &layer.certificate) else {
        return;
    };
    if policy.identities.is_empty() {
        return;
    }
    match legacy_keyless(policy, root, pem, layer, sig, digest) {
        Ok(matched) => matched
            .into_iter()
            .for_each(|i| j.add(policy.keys.len() + i)),
        Err((reason, detail)) => {
            j.keyless_failure
                .get_or_insert((layer.origin.clone(), reason, detail));
        }
    }
}

/// The identities a legacy-layout keyless signature satisfies.
fn legacy_keyless(
    policy: &Policy,
    root: &TrustedRoot,
    pem: &str,
    layer: &SignatureLayer,
    sig: &[u8],
    digest: &Digest,
) -> Result<Vec<usize>, keyless::Failure> {
    let certificate = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| p.contents)
        .map_err(|e| {
            (
                RejectReason::UntrustedCertificate,
                format!("its certificate annotation is not a PEM certificate ({e})"),
            )
        })?;
    let bundle = layer.bundle.as_deref().ok_or_else(|| {
        (
            RejectReason::LogProofInvalid,
            format!(
                "it has no {} annotation: without the transparency log entry it cannot be                  checked offline",
                find::BUNDLE_ANNOTATION
            ),
        )
    })?;
    let entry =
        rekor::from_cosign_bundle(bundle).map_err(|e| (RejectReason::LogProofInvalid, e))?;
    let signed = keyless::Signed {
        certificate: &certificate,
        signature: sig,
        message: &layer.payload,
        entry: &entry,
        logged_sha256: rekor::sha256(&layer.payload),
    };
    let matched = keyless::check(root, &policy.identities, &signed, || {
        rekor::check_set(root, &entry).map(|_| ())
    })?;
    match payload_digest(&layer.payload) {
        Some(named) if named == digest.to_string() => Ok(matched),
        named => Err((
            RejectReason::DigestMismatch,
            format!(
                "it is a valid keyless signature of {}, not of this image: it was made for                  another image (a replaced or copied signature)",
                named.unwrap_or_else(|| "no image digest".to_string())
            ),
        )),
    }
}

fn satisfied(policy: &Policy, j: &Judged) -> bool {
    match policy.require {
        Require::Any => !j.signed_by.is_empty(),
        Require::All => (0..policy.signers()).all(|i| j.signed_by.contains(&i)),
    }
}

/// The verdict for a digest whose signatures do not satisfy the policy.
fn rejection(policy: &Policy, repo: &Reference, digest: &Digest, j: &Judged) -> Verdict {
    let keyless_signed = j.signed_by.iter().any(|i| *i >= policy.keys.len());
    if let Some((origin, reason, detail)) = j.keyless_failure.as_ref().filter(|_| !keyless_signed) {
        return Verdict::Rejected {
            reason: *reason,
            detail: format!(
                "{repo}@{digest}: the keyless signature in {origin} does not count: {detail}"
            ),
        };
    }
    let (reason, detail) = if j.layers == 0 {
        (
            RejectReason::NoSignature,
            format!(
                "{repo}@{digest} has no cosign signature (looked for the tag {}.sig and for \
                 referrers): sign it upstream, or mirror it without a signature policy",
                crate::registry::referrers::fallback_tag(digest)
            ),
        )
    } else if let Some((origin, named)) = j.other_digest.as_ref().filter(|_| j.signed_by.is_empty())
    {
        (
            RejectReason::DigestMismatch,
            format!(
                "{repo}@{digest}: the signature in {origin} verifies against a trusted key but \
                 signs {named}, not this image: it was made for another image (a replaced or \
                 copied signature); the image needs a signature of its own digest"
            ),
        )
    } else {
        let missing: Vec<String> = (0..policy.signers())
            .filter(|i| !j.signed_by.contains(i))
            .map(|i| policy.signer_name(i))
            .collect();
        (
            RejectReason::WrongKey,
            format!(
                "{repo}@{digest} has {} signature(s), none made by {} (policy require = {}): \
                 check that the mirror trusts the upstream's current public key",
                j.layers,
                missing.join(", "),
                match policy.require {
                    Require::Any => "any",
                    Require::All => "all",
                },
            ),
        )
    };
    Verdict::Rejected { reason, detail }
}

/// The signature bytes of a base64 annotation.
fn decode_signature(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// The digest a cosign image signature payload names, when it is one.
fn payload_digest(payload: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = doc.get("critical")?;
    if critical.get("type")?.as_str()? != PAYLOAD_TYPE {
        return None;
    }
    Some(
        critical
            .get("image")?
            .get("docker-manifest-digest")?
            .as_str()?
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_digest_is_read_only_from_image_signatures() {
        let ok = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(payload_digest(ok).as_deref(), Some("sha256:ab"));
        let other = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:ab"},"type":"something else"}}"#;
        assert_eq!(payload_digest(other), None);
        assert_eq!(payload_digest(b"not json"), None);
    }

    #[test]
    fn require_parses_any_and_all_only() {
        assert_eq!(Require::parse("any"), Some(Require::Any));
        assert_eq!(Require::parse("all"), Some(Require::All));
        assert_eq!(Require::parse("some"), None);
    }
}
