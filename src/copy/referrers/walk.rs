//! One image's referrer walk: the referrers of each subject, level by
//! level within the image's [`Walk`] limits, each checked against its own
//! manifest, copied by digest and entered into the target's fallback index
//! where the target needs one.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::registry::referrers::{
    ApiAnswer, ReferrerInfo, fallback_index_of, fallback_tag, listed_descriptors, type_unknown,
};
use crate::registry::{Descriptor, Digest, ErrorKind, Reference};

use super::super::work::WorkKey;
use super::super::{Copier, CopyError, CopyOptions, Outcome};
use super::limits::Walk;
use super::{Found, Level, ReferrerCounts, ReferrerOptions, run_entry, server_filter};

impl Copier {
    /// The referrers of one image's `subjects`, within the limits of one
    /// walk; one warning when a limit left referrers behind. `image`: the
    /// image's target, for the warning.
    pub(super) async fn walk(
        &self,
        src: &Reference,
        dst: &Reference,
        subjects: Vec<Digest>,
        options: &CopyOptions,
        image: &Reference,
    ) -> Result<ReferrerCounts, CopyError> {
        let walk = Walk::new(options.referrers.limits);
        let counts = self
            .referrers_of_all(src, dst, subjects, options, &walk)
            .await?;
        let cuts = walk.cuts();
        if !cuts.is_empty() {
            tracing::warn!(
                source = %src.name(),
                target_ref = %image,
                left_behind = counts.left_behind,
                limits = %cuts.join(", "),
                "referrers beyond the limits of one image were left behind (the image and the \
                 referrers within the limits were copied); raise these limits if they are wanted"
            );
        }
        Ok(counts)
    }

    /// [`Copier::referrers_of`] for several subjects at once, within the
    /// limits of `walk` (one image's).
    async fn referrers_of_all(
        &self,
        src: &Reference,
        dst: &Reference,
        subjects: Vec<Digest>,
        options: &CopyOptions,
        walk: &Walk,
    ) -> Result<ReferrerCounts, CopyError> {
        let concurrency = options.blob_concurrency.max(1);
        let jobs: Vec<_> = subjects
            .into_iter()
            .map(|s| async move { self.referrers_of(src, dst, s, options, 0, walk).await })
            .collect();
        let results: Vec<Result<ReferrerCounts, CopyError>> = futures_util::stream::iter(jobs)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut counts = ReferrerCounts::default();
        for r in results {
            counts.add(&r?);
        }
        Ok(counts)
    }

    /// Copy the referrers of `subject` (and their referrers, to the depth
    /// limit), and its cosign tags. Once per run per (target repository,
    /// subject): a second image sharing a child finds it done.
    fn referrers_of<'a>(
        &'a self,
        src: &'a Reference,
        dst: &'a Reference,
        subject: Digest,
        options: &'a CopyOptions,
        depth: usize,
        walk: &'a Walk,
    ) -> BoxFuture<'a, Result<ReferrerCounts, CopyError>> {
        async move {
            let key = WorkKey::of(&[
                src.registry(),
                src.repository(),
                dst.registry(),
                dst.repository(),
                &subject.to_string(),
            ]);
            let cell = run_entry(&self.shared.referrers.subjects, key);
            let mut counts = ReferrerCounts::default();
            let result = cell
                .get_or_init(|| async {
                    let level = Level {
                        src,
                        dst,
                        subject: &subject,
                        options,
                        counts: &mut counts,
                    };
                    self.referrers_once(level, depth, walk)
                        .await
                        .map_err(Arc::new)
                })
                .await
                .clone();
            result.map(|()| counts).map_err(CopyError::Shared)
        }
        .boxed()
    }

    /// One subject: its cosign tags, then its referrers (this level first:
    /// copied and written into the target's fallback index), then theirs.
    async fn referrers_once(
        &self,
        level: Level<'_>,
        depth: usize,
        walk: &Walk,
    ) -> Result<(), CopyError> {
        let Level {
            src,
            dst,
            subject,
            options,
            counts,
        } = level;
        if options.referrers.cosign_tags && depth < walk.limits.depth {
            counts.cosign_tags_copied += self.copy_cosign_tags(src, dst, subject, options).await?;
        }
        if !options.referrers.enabled {
            return Ok(());
        }
        let mut candidates = self
            .source_candidates(src, subject, options, counts)
            .await?;
        if candidates.is_empty() {
            return Ok(());
        }
        if depth >= walk.limits.depth {
            counts.left_behind += candidates.len() as u64;
            walk.cut_depth();
            return Ok(());
        }
        if candidates.len() > walk.limits.per_subject {
            tracing::debug!(repository = %src.name(), subject = %subject, listed = candidates.len(), "more referrers listed than max_referrers_per_subject");
            counts.left_behind += (candidates.len() - walk.limits.per_subject) as u64;
            candidates.truncate(walk.limits.per_subject);
            walk.cut_subject();
        }
        let (target_api, listed) = self.target_listing(dst, subject).await?;
        let mut add: Vec<Descriptor> = Vec::new();
        let mut deeper: Vec<Digest> = Vec::new();
        for d in &candidates {
            if !walk.take() {
                counts.left_behind += 1;
                continue;
            }
            let level = Level {
                src,
                dst,
                subject,
                options,
                counts: &mut *counts,
            };
            if let Some(entry) = self
                .copy_candidate(level, d, listed.contains(&d.digest))
                .await?
            {
                if !target_api {
                    add.extend(entry);
                }
                deeper.push(d.digest.clone());
            }
        }
        if !add.is_empty() && self.update_fallback_index(dst, subject, &add).await? {
            counts.fallback_updates += 1;
        }
        for d in deeper {
            counts.add(
                &self
                    .referrers_of(src, dst, d, options, depth + 1, walk)
                    .await?,
            );
        }
        Ok(())
    }

    /// One candidate referrer of `level.subject`: counted as skipped when the
    /// target lists it (`listed`), else fetched, checked and copied by
    /// digest. `None` when it is not a referrer to follow (another
    /// subject's, a type left out, or gone from the source); otherwise the
    /// entry the target's fallback index still needs, if any.
    async fn copy_candidate(
        &self,
        level: Level<'_>,
        d: &Descriptor,
        listed: bool,
    ) -> Result<Option<Option<Descriptor>>, CopyError> {
        let Level {
            src,
            dst,
            subject,
            options,
            counts,
        } = level;
        // Listed at the target: it was checked when it was copied (or
        // the target's API indexed it by its own subject); not fetched again.
        if listed {
            counts.found += 1;
            counts.skipped += 1;
            return Ok(Some(None));
        }
        let f = match self.verified(src, subject, d, options, counts).await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(repository = %src.name(), subject = %subject, referrer = %d.digest, "a listed referrer is gone from the source (deleted): skipped");
                counts.vanished += 1;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        counts.found += 1;
        let by_digest = CopyOptions {
            platforms: Vec::new(),
            force: false,
            referrers: ReferrerOptions::default(),
            policy: None,
            ..options.clone()
        };
        let report = self
            .copy(&src.with_digest(d.digest.clone()), dst, &by_digest)
            .boxed()
            .await?;
        let confirmed = self
            .shared
            .referrers
            .take_confirmed(dst, &d.digest, subject);
        if report.outcome == Outcome::Copied {
            counts.copied += 1;
        } else {
            counts.skipped += 1;
        }
        Ok(Some((!confirmed).then(|| f.info.descriptor(&f.raw))))
    }

    /// What the source lists as referrers of `subject` (API, else fallback
    /// tag), minus entries whose listed type the type lists refuse.
    pub(super) async fn source_candidates(
        &self,
        src: &Reference,
        subject: &Digest,
        options: &CopyOptions,
        counts: &mut ReferrerCounts,
    ) -> Result<Vec<Descriptor>, CopyError> {
        let ro = &options.referrers;
        let answer = match self.kept_answer(src, subject, server_filter(ro)) {
            Some(a) => a,
            None => {
                self.source_api(src, subject, server_filter(ro), options)
                    .await?
            }
        };
        let (candidates, trusted_filter) = match answer {
            ApiAnswer::Absent => (
                self.fallback_candidates(src, subject, options, counts)
                    .await?,
                false,
            ),
            ApiAnswer::Listed {
                descriptors,
                filtered,
            } => (descriptors, filtered),
        };
        let mut out = Vec::new();
        for d in candidates {
            if d.digest == *subject {
                continue;
            }
            // A registry that confirmed the filter listed only that type; a
            // listed type is otherwise used only to skip work: a type kept
            // is checked again against the manifest itself.
            let refused = !trusted_filter
                && !type_unknown(&d)
                && d.artifact_type.as_deref().is_some_and(|t| !ro.wants(t));
            if refused {
                counts.filtered += 1;
                continue;
            }
            out.push(d);
        }
        Ok(out)
    }

    /// The candidate `d` fetched by digest (verified), when its manifest's
    /// `subject` is `subject` and its type passes the type lists.
    async fn verified(
        &self,
        src: &Reference,
        subject: &Digest,
        d: &Descriptor,
        options: &CopyOptions,
        counts: &mut ReferrerCounts,
    ) -> Result<Option<Found>, CopyError> {
        let raw = self
            .source_manifest(&src.with_digest(d.digest.clone()), options)
            .await?;
        let Some(info) = ReferrerInfo::of(&raw) else {
            tracing::debug!(repository = %src.name(), referrer = %d.digest, "listed referrer is not a manifest: skipped");
            return Ok(None);
        };
        if info.subject.as_ref() != Some(subject) {
            tracing::warn!(
                repository = %src.name(),
                subject = %subject,
                referrer = %d.digest,
                "a listed referrer's manifest names another subject: skipped"
            );
            return Ok(None);
        }
        if !options.referrers.wants(&info.artifact_type) {
            counts.filtered += 1;
            return Ok(None);
        }
        Ok(Some(Found { raw, info }))
    }

    /// Candidates of the source's fallback index of `subject` in `repo`,
    /// every entry (the limits apply later). An index regmirror cannot read
    /// is warned about and counted as `unreadable`, never taken as "none".
    async fn fallback_candidates(
        &self,
        repo: &Reference,
        subject: &Digest,
        options: &CopyOptions,
        counts: &mut ReferrerCounts,
    ) -> Result<Vec<Descriptor>, CopyError> {
        if self.tag_absent(repo, &fallback_tag(subject)).await {
            return Ok(Vec::new());
        }
        let Some(raw) = self.source_fallback(repo, subject, options).await? else {
            return Ok(Vec::new());
        };
        match fallback_index_of(&raw) {
            Ok(index) => Ok(listed_descriptors(&index)),
            Err(why) => {
                tracing::warn!(repository = %repo.name(), subject = %subject, index = %raw.digest, reason = %why, "the source's fallback index of this subject cannot be read: its referrers were not copied");
                counts.unreadable += 1;
                Ok(Vec::new())
            }
        }
    }

    /// Whether the target has the referrers API, and the digests it already
    /// lists as referrers of `subject`.
    async fn target_listing(
        &self,
        dst: &Reference,
        subject: &Digest,
    ) -> Result<(bool, HashSet<Digest>), CopyError> {
        if let ApiAnswer::Listed { descriptors, .. } = self.api_listing(dst, subject, None).await? {
            return Ok((true, descriptors.into_iter().map(|d| d.digest).collect()));
        }
        if self.tag_absent(dst, &fallback_tag(subject)).await {
            return Ok((false, HashSet::new()));
        }
        let listed = self
            .target_fallback(dst, subject)
            .await?
            .map(|(_, index)| index.digests().clone())
            .unwrap_or_default();
        Ok((false, listed))
    }
}
