//! What an audit of a mirrored image finds and reports, and how it is asked for.

use std::sync::Arc;

use serde::Serialize;

use crate::copy::policy::{Policy, RejectReason};
use crate::copy::{CopyError, ReferrerOptions};
use crate::registry::{Digest, Error};

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

/// Whether the target satisfies the signature policy it was audited with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PolicyStatus {
    /// No signature policy applies to this image.
    NotConfigured,
    /// The signatures at the target satisfy the policy.
    Satisfied,
    /// The signatures at the target do not satisfy the policy.
    Rejected {
        /// Why, in one word.
        reason: RejectReason,
        /// What was found and what to do.
        detail: String,
    },
}

impl PolicyStatus {
    /// The word of the report: `not_configured`, `satisfied` or `rejected`.
    pub fn label(&self) -> &'static str {
        match self {
            PolicyStatus::NotConfigured => "not_configured",
            PolicyStatus::Satisfied => "satisfied",
            PolicyStatus::Rejected { .. } => "rejected",
        }
    }
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
    /// The signature policy the target must satisfy; `None`: not checked.
    pub policy: Option<Arc<Policy>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            deep: false,
            referrers: ReferrerOptions::all(),
            concurrency: 4,
            policy: None,
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
    /// The source could not be asked for its digest (unreachable, refused).
    #[error("the source {0} could not be asked for its digest: {1}")]
    SourceUnreachable(String, Error),
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] Error),
    /// A copy (`heal`) failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
}
