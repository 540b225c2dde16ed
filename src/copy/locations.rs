//! Where blobs were seen by earlier runs: a [`BlobLocations`] hands the copy
//! engine repositories of a target registry that held a blob, so that a
//! later run mounts it (`POST ...?mount=&from=`) instead of uploading it.
//!
//! The engine treats every answer as a hint: a mount from a repository that
//! lost the blob since fails or opens an upload, and the blob is uploaded
//! as usual. An implementation may therefore forget or keep stale entries
//! freely; the sync layer's run-state store implements it.

use crate::registry::Digest;

/// Blob locations remembered across runs (see the module doc).
pub trait BlobLocations: Send + Sync {
    /// Note that `repository` of `registry` holds `digest` (seen present,
    /// uploaded or mounted by this run).
    fn record(&self, registry: &str, repository: &str, digest: &Digest);

    /// Repositories of `registry` an earlier run saw holding `digest`,
    /// most recently seen first.
    fn find(&self, registry: &str, digest: &Digest) -> Vec<String>;
}
