//! Auditing a mirrored image where it was written: the tag's digest against
//! the source's (or a digest the caller expects), every child manifest and
//! blob of the graph present with the size its parent lists (HEAD; with
//! `deep`, every blob read again and hashed as it streams, in bounded
//! memory), and every referrer the source lists (signatures, SBOMs,
//! attestations, cosign's tags, of the index and of each platform
//! manifest, and their own referrers) present at the target.
//!
//! Requests: the source is asked by HEAD (its tag), by its tag list and by
//! its referrer listings (the referrers API, else the fallback index of a
//! subject whose `sha256-<hex>` tag it lists); never a manifest GET for the
//! image itself. Only the target's manifests are read by GET, where their
//! children must be walked. [`heal`] copies back what an audit found missing.

mod heal;
mod referrers;
mod walk;

use serde::Serialize;

use crate::registry::manifest::Manifest;
use crate::registry::{Client, Digest, Error, RawManifest, Reference};

use super::{ANNOTATION_SOURCE_DIGEST, CopyError, ReferrerOptions};

pub use heal::{HealOutcome, Unrepaired, heal};

/// What an audit can find wrong with a mirrored image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The target tag holds another digest than the source's (or the one expected).
    TagMoved,
    /// A manifest of the image (the tagged one or a child) is missing.
    MissingManifest,
    /// A blob (config or layer) is missing.
    MissingBlob,
    /// A blob has another size than its manifest lists.
    BlobSize,
    /// A blob's bytes do not hash to its digest (`deep`).
    BlobDigest,
    /// A referrer (signature, SBOM, attestation, cosign tag) of the source is missing.
    MissingReferrer,
}

impl FindingKind {
    /// The word of the report.
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::TagMoved => "tag_moved",
            FindingKind::MissingManifest => "missing_manifest",
            FindingKind::MissingBlob => "missing_blob",
            FindingKind::BlobSize => "blob_size",
            FindingKind::BlobDigest => "blob_digest",
            FindingKind::MissingReferrer => "missing_referrer",
        }
    }
}

/// One thing wrong with a mirrored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// The manifest, blob or referrer concerned (`tag_moved`: the digest expected).
    pub digest: Option<Digest>,
    /// The tag concerned (`tag_moved`, a missing cosign tag), if any.
    pub tag: Option<String>,
    /// What the target should hold: a digest (`tag_moved`, a cosign tag) or
    /// a size in bytes (`blob_size`).
    pub expected: Option<String>,
    /// What the target holds instead, when it holds something.
    pub actual: Option<String>,
    /// The manifest listing it (for a referrer: its subject).
    pub parent: Option<Digest>,
    /// The finding in words.
    pub detail: String,
}

/// An image's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing is missing.
    Complete,
    /// Something is missing or damaged; see the findings.
    Incomplete,
}

/// Whether the target satisfies a signature policy. Policies are not yet
/// part of a mirror's settings: every audit says `not_configured`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// No signature policy applies to this image.
    NotConfigured,
}

/// How much an audit looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Manifests read at the target (referrers included).
    pub manifests: u64,
    /// Blobs asked for at the target.
    pub blobs: u64,
    /// Referrers and cosign tags looked for.
    pub referrers: u64,
    /// Bytes read and hashed again (`deep`).
    pub bytes_hashed: u64,
}

/// The audit of one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAudit {
    /// The source compared with, if any.
    pub source: Option<String>,
    /// The image audited.
    pub target: String,
    /// The digest the target tag should hold (the source's now, or the one expected).
    pub expected_digest: Option<Digest>,
    /// The digest the target tag holds.
    pub target_digest: Option<Digest>,
    /// `complete` when nothing was found.
    pub verdict: Verdict,
    /// What was found, in the order found.
    pub findings: Vec<Finding>,
    /// How much was looked at.
    pub checked: Checked,
    /// The signature policy at the target.
    pub policy: PolicyStatus,
}

/// How to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Read every blob again and hash it.
    pub deep: bool,
    /// Which referrers must be there (`enabled`: listed ones; `cosign_tags`: cosign's tags).
    pub referrers: ReferrerOptions,
    /// Requests at once.
    pub concurrency: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            deep: false,
            referrers: ReferrerOptions::all(),
            concurrency: 4,
        }
    }
}

/// Why an image could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The source has no such image: nothing to compare with.
    #[error(
        "the source {0} has no such image (HEAD answered 404): nothing to compare the target with; \
         check the source reference, or audit the target alone"
    )]
    SourceMissing(String),
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] Error),
    /// A copy (`heal`) failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// Audit `target` (a tag or a digest). `source`: the image it mirrors,
/// whose tag is resolved by HEAD and whose referrers must be at the target;
/// `None`: the target alone (its own graph and the referrers it lists).
/// `expected`: the digest the target must hold, instead of the source's.
pub async fn audit_image(
    client: &Client,
    source: Option<&Reference>,
    target: &Reference,
    expected: Option<&Digest>,
    options: &AuditOptions,
) -> Result<ImageAudit, AuditError> {
    let expected = match (expected, source) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(s)) => Some(source_digest(client, s).await?),
        (None, None) => None,
    };
    let mut walker = walk::Walker::new(client, target.repository_only(), options);
    let root = walker.root(target, expected.as_ref()).await?;
    let target_digest = root.as_ref().map(|r| r.digest.clone());
    if let (Some(root), Some(want)) = (&root, &expected)
        && root.digest != *want
        && !filtered_from(root, want)
    {
        walker.found(Finding {
            kind: FindingKind::TagMoved,
            digest: Some(want.clone()),
            tag: target.tag().map(str::to_string),
            expected: Some(want.to_string()),
            actual: Some(root.digest.to_string()),
            parent: None,
            detail: format!(
                "{target} holds {} instead of {want}{}",
                root.digest,
                source.map_or(String::new(), |s| format!(" ({s} now)"))
            ),
        });
    }
    if let Some(root) = root {
        let subjects = walker.graph(root).await?;
        let listing = source.map_or_else(|| target.repository_only(), Reference::repository_only);
        referrers::check(&mut walker, &listing, source.is_some(), subjects).await?;
    }
    let (findings, checked) = walker.finish();
    Ok(ImageAudit {
        source: source.map(ToString::to_string),
        target: target.to_string(),
        expected_digest: expected,
        target_digest,
        verdict: if findings.is_empty() {
            Verdict::Complete
        } else {
            Verdict::Incomplete
        },
        findings,
        checked,
        policy: policy_status(target),
    })
}

/// The signature policy's verdict at the target: the place a policy check
/// plugs in; `not_configured` while mirrors have no policy.
fn policy_status(_target: &Reference) -> PolicyStatus {
    PolicyStatus::NotConfigured
}

/// The digest `source` names now: by HEAD (a GET only when the registry
/// sends no digest with its answer).
async fn source_digest(client: &Client, source: &Reference) -> Result<Digest, AuditError> {
    if let Some(d) = source.digest() {
        return Ok(d.clone());
    }
    match client.head_manifest(source).await? {
        None => Err(AuditError::SourceMissing(source.to_string())),
        Some(head) => match head.digest {
            Some(d) => Ok(d),
            None => Ok(client.get_manifest(source).await?.digest),
        },
    }
}

/// True when `root` is a platform-filtered index made from `source_digest`.
fn filtered_from(root: &RawManifest, source_digest: &Digest) -> bool {
    match root.parse() {
        Ok(Manifest::Index(i)) => i
            .annotations
            .get(ANNOTATION_SOURCE_DIGEST)
            .is_some_and(|d| *d == source_digest.to_string()),
        _ => false,
    }
}
