//! Manifest pushes, once per (target registry, repository, digest).
//!
//! Distribution rewrites a manifest's repository link in place on every PUT
//! of it (truncate, then write), and checks the links of every child when a
//! parent is pushed: two images pushing the same child while one of them
//! pushes its parent fail with `MANIFEST_BLOB_UNKNOWN`. So a manifest is
//! pushed by one image, every other image that needs it in that repository
//! waits for that push and shares its result, and a parent is pushed only
//! once the push of each of its children has succeeded.

use std::sync::Arc;

use crate::registry::{Digest, RawManifest, Reference};

use super::plan::Plan;
use super::work::WorkKey;
use super::{Copier, CopyError};

impl Copier {
    /// Make sure `raw` is in `at`'s repository, pushing it under `at` (a tag,
    /// or its digest) unless another image of this run (or of another run in
    /// flight) pushes or pushed it. True when this call pushed it under `at`;
    /// false when it was pushed by another, possibly under another reference.
    pub(super) async fn ensure_manifest(
        &self,
        plan: &Plan,
        at: &Reference,
        raw: &RawManifest,
    ) -> Result<bool, CopyError> {
        let key = WorkKey::at(at, &raw.digest);
        let work = self
            .shared
            .manifests
            .join(&self.engine.tables().manifests, &key);
        let mut ran = false;
        let result = work
            .cell
            .get_or_init(|| {
                ran = true;
                async { self.push_manifest(plan, at, raw).await.map_err(Arc::new) }
            })
            .await
            .clone();
        work.finished();
        match result {
            // The push under `at` is this call's own exactly when it ran it.
            Ok(()) => Ok(ran),
            Err(error) => {
                if ran {
                    self.shared
                        .manifests
                        .forget(&self.engine.tables().manifests, &key, &work);
                }
                Err(CopyError::Shared(error))
            }
        }
    }

    /// True when this run has pushed (or seen pushed) `digest` into
    /// `repo`'s repository: its graph is complete there. Only this run's
    /// memory counts, never an earlier run's, so a graph that lost a part
    /// since is walked (and healed) again.
    pub(super) fn pushed_in_run(&self, repo: &Reference, digest: &Digest) -> bool {
        let key = WorkKey::at(repo, digest);
        self.shared
            .manifests
            .finished(&key)
            .is_some_and(|w| matches!(w.cell.get(), Some(Ok(_))))
    }
}
