//! The copy engine: plan an image graph, then execute it.
//! (API contract; the implementation replaces the `todo!()` bodies.)

use std::time::Duration;

use serde::Serialize;

use crate::registry::{Client, Digest, PlatformSpec, Reference};

/// How to copy one image.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Platforms to keep; empty: every platform, index digest preserved.
    pub platforms: Vec<PlatformSpec>,
    /// Overwrite a target tag that points at a different digest.
    pub force: bool,
    /// Copy foreign (non-distributable) layers too.
    pub include_foreign_layers: bool,
    /// Blobs of one image transferred at once.
    pub blob_concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            force: false,
            include_foreign_layers: false,
            blob_concurrency: 4,
        }
    }
}

/// What happened to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Content was copied and the target tag set.
    Copied,
    /// The target already held this digest.
    UpToDate,
    /// The target tag points at another digest and `force` was off.
    TagConflict,
}

/// The result of copying one image.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// Digest of the source manifest.
    pub source_digest: Digest,
    /// Digest now at the target (differs only when platforms were filtered).
    pub target_digest: Digest,
    /// What happened.
    pub outcome: Outcome,
    /// Manifests pushed.
    pub manifests_copied: u64,
    /// Manifests already present.
    pub manifests_skipped: u64,
    /// Blobs transferred.
    pub blobs_copied: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Wall time.
    pub duration: Duration,
}

/// Errors of the copy engine.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
}

/// Copies images; one per run, shared by every image of the run so that work
/// is deduplicated by (target repository, digest).
#[derive(Clone)]
pub struct Copier {
    #[allow(dead_code)]
    client: Client,
}

impl Copier {
    /// A copier over `client`.
    pub fn new(client: Client) -> Copier {
        Copier { client }
    }

    /// Copy `source` to `target`: blobs, then child manifests by digest, then
    /// the root by tag.
    pub async fn copy(&self, _source: &Reference, _target: &Reference, _options: &CopyOptions) -> Result<CopyReport, CopyError> {
        todo!()
    }
}
