//! Finding cosign signatures of one manifest in one repository, where
//! `cosign sign` puts them:
//! - the tag `sha256-<hex>.sig`: an image manifest whose layers are simple
//!   signing payloads, each with its signature in an annotation;
//! - referrers of the digest (`cosign sign --registry-referrers-mode
//!   oci-1-1`): manifests whose `subject` is the digest, listed by the
//!   referrers API or, on registries without it, the fallback tag
//!   `sha256-<hex>`; each is read and kept only when its own `subject` is
//!   the digest.
//!
//! Referrers whose `artifactType` is a Sigstore bundle media type
//! (`cosign sign --new-bundle-format`) are kept too: their bundle layer is
//! read, up to `bundle::MAX_BUNDLE_BYTES` (1 MiB).
//!
//! Only the layers are returned here (payload bytes verified against their
//! digest by the client); judging them is the caller's.

use bytes::Bytes;

use crate::registry::manifest::Manifest;
use crate::registry::referrers::{
    ApiAnswer, ReferrerInfo, fallback_index_of, fallback_tag, listed_descriptors, type_unknown,
};
use crate::registry::{Client, Descriptor, Digest, Error, ErrorKind, Reference};

use super::bundle::{MAX_BUNDLE_BYTES, is_bundle_type};

/// Media type of a simple signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a layer's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type cosign gives a signature stored as a referrer.
pub const COSIGN_SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The annotation holding a keyless signature's PEM leaf certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding a keyless signature's Rekor bundle (SET).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// Most signature manifests read per digest (a tag plus referrers).
const MAX_MANIFESTS: usize = 32;
/// Most signature layers (and bundles) read per digest.
const MAX_LAYERS: usize = 64;
/// Largest simple signing payload read.
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;

/// One signature layer found.
#[derive(Debug, Clone)]
pub struct SignatureLayer {
    /// Where it was found: `repo:tag` or `repo@digest` of its manifest.
    pub origin: String,
    /// The signed payload (simple signing JSON).
    pub payload: Bytes,
    /// The signature annotation, as written (base64).
    pub signature: String,
    /// A keyless signature's PEM certificate annotation.
    pub certificate: Option<String>,
    /// A keyless signature's Rekor bundle annotation (JSON).
    pub bundle: Option<String>,
}

/// A Sigstore bundle found as a referrer.
#[derive(Debug, Clone)]
pub struct FoundBundle {
    /// `repo@digest` of its manifest.
    pub origin: String,
    /// The bundle JSON, as stored; `Err`: why it was not read.
    pub json: Result<Bytes, String>,
}

/// The signatures found for one digest.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// cosign signature layers (`.sig` tag and referrers).
    pub layers: Vec<SignatureLayer>,
    /// Sigstore bundles (referrers).
    pub bundles: Vec<FoundBundle>,
}

/// Every signature layer and bundle of `digest` in `repo` (a repository
/// reference): under its `.sig` tag and among its referrers.
pub async fn signatures(
    client: &Client,
    repo: &Reference,
    digest: &Digest,
) -> Result<Found, Error> {
    let mut manifests: Vec<(String, Reference)> = Vec::new();
    if let Ok(at) = repo.with_tag(&format!("{}.sig", fallback_tag(digest)))
        && let Some(head) = client.head_manifest(&at).await?
    {
        let by = head.digest.map_or(at.clone(), |d| repo.with_digest(d));
        manifests.push((at.to_string(), by));
    }
    for d in referrer_candidates(client, repo, digest).await? {
        let at = repo.with_digest(d.digest.clone());
        manifests.push((at.to_string(), at));
    }
    let mut out = Found::default();
    for (origin, at) in manifests.into_iter().take(MAX_MANIFESTS) {
        let raw = match client.get_manifest(&at).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let info = ReferrerInfo::of(&raw);
        let is_referrer = origin.contains('@');
        if is_referrer && info.as_ref().and_then(|i| i.subject.as_ref()) != Some(digest) {
            continue;
        }
        let Ok(Manifest::Image(m)) = raw.parse() else {
            continue;
        };
        let bundle = is_referrer && info.is_some_and(|i| is_bundle_type(&i.artifact_type));
        for l in &m.layers {
            if out.layers.len() + out.bundles.len() >= MAX_LAYERS {
                return Ok(out);
            }
            if bundle && is_bundle_type(&l.media_type) {
                if let Some(json) = read_bundle(client, repo, l).await? {
                    out.bundles.push(FoundBundle {
                        origin: origin.clone(),
                        json,
                    });
                }
            } else if l.media_type == SIMPLE_SIGNING
                && let Some(layer) = read_layer(client, repo, &origin, l).await?
            {
                out.layers.push(layer);
            }
        }
    }
    Ok(out)
}

/// The bundle JSON of layer `l`, or why it is not read (larger than
/// `MAX_BUNDLE_BYTES`); `None` when it is gone.
async fn read_bundle(
    client: &Client,
    repo: &Reference,
    l: &Descriptor,
) -> Result<Option<Result<Bytes, String>>, Error> {
    if l.size > MAX_BUNDLE_BYTES {
        return Ok(Some(Err(format!(
            "its Sigstore bundle is {} bytes, more than the {MAX_BUNDLE_BYTES} read",
            l.size
        ))));
    }
    Ok(read_blob(client, repo, l, MAX_BUNDLE_BYTES).await?.map(Ok))
}

/// The bytes of blob `l` (at most `max`); `None` when it is gone.
async fn read_blob(
    client: &Client,
    repo: &Reference,
    l: &Descriptor,
    max: u64,
) -> Result<Option<Bytes>, Error> {
    match client.get_blob_bytes(repo, &l.digest, max).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One simple signing layer with its signature annotation; `None` when it
/// has no signature or its payload is gone.
async fn read_layer(
    client: &Client,
    repo: &Reference,
    origin: &str,
    l: &Descriptor,
) -> Result<Option<SignatureLayer>, Error> {
    let Some(signature) = l.annotations.get(SIGNATURE_ANNOTATION) else {
        return Ok(None);
    };
    let payload = read_blob(client, repo, l, MAX_PAYLOAD_BYTES).await?;
    Ok(payload.map(|payload| SignatureLayer {
        origin: origin.to_string(),
        payload,
        signature: signature.clone(),
        certificate: l.annotations.get(CERTIFICATE_ANNOTATION).cloned(),
        bundle: l.annotations.get(BUNDLE_ANNOTATION).cloned(),
    }))
}

/// Referrers of `digest` that may be signatures or bundles: the referrers API's list,
/// else the fallback index's; entries whose listed type says they are
/// something else are left out.
async fn referrer_candidates(
    client: &Client,
    repo: &Reference,
    digest: &Digest,
) -> Result<Vec<Descriptor>, Error> {
    let listed = match client.referrers_api(repo, digest, None).await? {
        ApiAnswer::Listed { descriptors, .. } => descriptors,
        ApiAnswer::Absent => match client.fallback_index(repo, digest).await? {
            Some(raw) => match fallback_index_of(&raw) {
                Ok(index) => listed_descriptors(&index),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        },
    };
    Ok(listed
        .into_iter()
        .filter(|d| {
            type_unknown(d)
                || d.artifact_type
                    .as_deref()
                    .is_some_and(|t| t == COSIGN_SIGNATURE_TYPE || is_bundle_type(t))
        })
        .collect())
}
