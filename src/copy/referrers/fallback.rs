//! The target's fallback index (`sha256-<hex>` tag) of a subject, kept up
//! to date by regmirror where the target has no referrers API: read without
//! loss, the new entries appended, written, read back, and merged again
//! only when a read-back proves that another writer replaced it.

use std::time::Duration;

use crate::registry::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::registry::referrers::{FallbackIndex, fallback_index_of, fallback_tag};
use crate::registry::{Descriptor, Digest, RawManifest, Reference};

use super::super::{Copier, CopyError};

/// Attempts to write a fallback index before giving up on lost updates.
const MAX_INDEX_ATTEMPTS: u32 = 6;

impl Copier {
    /// Add `add` to the fallback index of `subject` in `dst`: read, merge
    /// (every existing entry and field kept, new digests appended), write,
    /// read back; again when a read-back shows another writer's index
    /// without these entries. One writer per (repository, subject) in this
    /// process at a time. True when this call wrote the index.
    pub(super) async fn update_fallback_index(
        &self,
        dst: &Reference,
        subject: &Digest,
        add: &[Descriptor],
    ) -> Result<bool, CopyError> {
        let lock = self.engine.writers().lock(dst, subject);
        let _guard = lock.lock().await;
        let at = fallback_at(dst, subject)?;
        let mut wrote = false;
        let mut replaced_by: Vec<String> = Vec::new();
        for attempt in 1..=MAX_INDEX_ATTEMPTS {
            let mut index = self
                .target_fallback(dst, subject)
                .await?
                .map(|(_, i)| i)
                .unwrap_or_default();
            if add.iter().all(|d| index.contains(&d.digest)) {
                return Ok(wrote);
            }
            if attempt > 1 {
                tracing::info!(target_ref = %at, attempt, "fallback index lost an update to another writer; merging again");
                crate::metrics::record_fallback_retry();
            }
            let existing = index.len();
            for d in add {
                index.push(d);
            }
            let raw = index_manifest(&at, subject, &index, existing)?;
            self.client.put_manifest(&at, &raw).await?;
            wrote = true;
            match self
                .read_back(dst, subject, &raw.digest, add, attempt)
                .await?
            {
                None => return Ok(true),
                Some(other) => replaced_by.push(other),
            }
        }
        Err(CopyError::Invalid {
            image: at.to_string(),
            detail: format!(
                "the fallback index of {subject} was replaced by another writer after each of \
                 {MAX_INDEX_ATTEMPTS} writes (read back as {}); its referrers were copied by \
                 digest, and the next run merges them into the index again",
                replaced_by.join(", ")
            ),
        })
    }

    /// Read the index of `subject` back twice, after a pause each: a writer
    /// in another process that read before this write lands its own within
    /// a request or two. `Some(what the read-back found)` when another
    /// writer's index that lacks `add` replaced `ours`; `None` when ours (or
    /// a version holding every entry of `add`) stayed. (No registry here
    /// honours `If-Match`, so a loss later than that is only repaired by the
    /// next run, which compares the listings.)
    async fn read_back(
        &self,
        dst: &Reference,
        subject: &Digest,
        ours: &Digest,
        add: &[Descriptor],
        attempt: u32,
    ) -> Result<Option<String>, CopyError> {
        for _ in 0..2 {
            tokio::time::sleep(jitter(attempt)).await;
            match self.target_fallback(dst, subject).await? {
                None => return Ok(Some("no index: the tag was deleted".to_string())),
                Some((d, _)) if d == *ours => {}
                Some((d, i)) if !add.iter().all(|x| i.contains(&x.digest)) => {
                    return Ok(Some(d.to_string()));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// The fallback index of `subject` in `dst`, read now: its digest and
    /// contents; `None` when there is none. An index regmirror cannot read
    /// is an error: it is never overwritten (its entries would be lost).
    pub(super) async fn target_fallback(
        &self,
        dst: &Reference,
        subject: &Digest,
    ) -> Result<Option<(Digest, FallbackIndex)>, CopyError> {
        let Some(raw) = self.client.fallback_index(dst, subject).await? else {
            return Ok(None);
        };
        match fallback_index_of(&raw) {
            Ok(index) => Ok(Some((raw.digest, index))),
            Err(why) => Err(CopyError::Invalid {
                image: format!("{}:{}", dst.name(), fallback_tag(subject)),
                detail: format!(
                    "the target's fallback index ({}) is not an index regmirror can read ({why}); \
                     it is left as it is rather than overwritten: repair or delete that tag",
                    raw.digest
                ),
            }),
        }
    }
}

/// The reference of `subject`'s fallback tag in `dst`.
fn fallback_at(dst: &Reference, subject: &Digest) -> Result<Reference, CopyError> {
    dst.with_tag(&fallback_tag(subject))
        .map_err(|e| CopyError::Invalid {
            image: dst.to_string(),
            detail: e.to_string(),
        })
}

/// `index` as the manifest to write at `at`, refused when it is larger
/// than a registry accepts (`existing`: the entries it held before).
fn index_manifest(
    at: &Reference,
    subject: &Digest,
    index: &FallbackIndex,
    existing: usize,
) -> Result<RawManifest, CopyError> {
    let bytes = index.to_bytes();
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(CopyError::Invalid {
            image: at.to_string(),
            detail: format!(
                "the fallback index of {subject} would be {} bytes with {} new entries, over the \
                 {MAX_MANIFEST_BYTES} bytes registries accept for a manifest; its {existing} \
                 entries were left as they are and the new referrers were copied by digest only: \
                 remove stale entries from that index, or mirror to a registry with the referrers API",
                bytes.len(),
                index.len() - existing
            ),
        });
    }
    Ok(RawManifest::new(bytes.into(), Some(OCI_INDEX)))
}

/// A short, varying pause before reading a fallback index back.
fn jitter(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(u64::from(20 * attempt + nanos % 40))
}
