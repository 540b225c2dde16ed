//! A mirror with several targets (fan-out) in a run: each source image is
//! one (source, target) pair per target, tag by tag, and the pairs of one
//! source image share a [`SourceShare`] so that its tag is resolved, its
//! manifests fetched and its blobs read once for all targets. Each target
//! is compared and copied on its own (children first, the tag last), so a
//! target that is up to date costs its HEAD only and a target that fails
//! fails alone. The report keeps one image entry per (tag, target) and adds
//! one [`TargetReport`] per target.

use std::sync::Arc;

use super::{ImageReport, ImageResult, RunResult, Syncer, TargetReport, mirror_result};
use crate::copy::SourceShare;
use crate::registry::{Digest, Error, Reference};
use crate::sync::model::Mirror;
use crate::sync::prune;

/// `pairs` (for the mirror's first target) followed, each, by the same
/// image in every further target; unchanged for a mirror with one target.
fn fan_pairs(
    mirror: &Mirror,
    pairs: Vec<(Reference, Reference)>,
) -> Result<Vec<(Reference, Reference)>, String> {
    if !mirror.fans_out() {
        return Ok(pairs);
    }
    let mut out = Vec::with_capacity(pairs.len() * (1 + mirror.more_targets.len()));
    for pair in pairs {
        let moved = mirror
            .more_targets
            .iter()
            .map(|to| Mirror::retarget(&pair, to).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, String>>()?;
        out.push(pair);
        out.extend(moved);
    }
    Ok(out)
}

/// Which target of a fan-out mirror each of `pairs` goes to (see
/// [`target_index`]); empty for a mirror with one target.
fn target_indexes(mirror: &Mirror, pairs: &[(Reference, Reference)]) -> Vec<Option<usize>> {
    if !mirror.fans_out() {
        return Vec::new();
    }
    pairs.iter().map(|(_, t)| target_index(mirror, t)).collect()
}

/// One [`TargetReport`] per target of a fan-out mirror (none for a mirror
/// with one target); `images[i]` went to the target `index[i]` (see
/// [`target_indexes`]). A mirror that discovers its repositories has one
/// entry per target tree, over every repository written into it.
fn target_reports(
    mirror: &Mirror,
    index: &[Option<usize>],
    images: &[Arc<ImageReport>],
    mirror_errors: usize,
) -> Vec<TargetReport> {
    if !mirror.fans_out() {
        return Vec::new();
    }
    target_names(mirror)
        .into_iter()
        .enumerate()
        .map(|(n, target)| {
            let mine: Vec<Arc<ImageReport>> = index
                .iter()
                .zip(images)
                .filter(|(i, _)| **i == Some(n))
                .map(|(_, i)| Arc::clone(i))
                .collect();
            let count = |r: ImageResult| mine.iter().filter(|i| i.result == r).count();
            let failed = mine.iter().filter(|i| i.result.is_failure()).count();
            TargetReport {
                target,
                result: mirror_result(&mine, failed + mirror_errors),
                copied: count(ImageResult::Copied),
                up_to_date: count(ImageResult::Skipped),
                failed,
                prune: None,
            }
        })
        .collect()
}

/// The name of each target of `mirror` in the report: the repository, or
/// for a discovering mirror its target tree (`dst.example/mirror`).
fn target_names(mirror: &Mirror) -> Vec<String> {
    match &mirror.discovery {
        Some(d) => d.trees().map(|t| t.target_root()).collect(),
        None => mirror.targets().map(|t| t.to_string()).collect(),
    }
}

/// Which of `mirror`'s targets (in config order) the target repository
/// `target` of one of its images is, or lies in for a discovering mirror.
fn target_index(mirror: &Mirror, target: &Reference) -> Option<usize> {
    match &mirror.discovery {
        Some(d) => d.trees().position(|t| t.holds(target)),
        None => mirror.targets().position(|t| t.same_repository(target)),
    }
}

impl Syncer {
    /// `pairs` (for the mirror's first target) followed, each, by the same
    /// image in every further target (see [`fan_pairs`]).
    pub(super) fn fan_pairs(
        &self,
        mirror: &Mirror,
        pairs: Vec<(Reference, Reference)>,
    ) -> Result<Vec<(Reference, Reference)>, String> {
        fan_pairs(mirror, pairs)
    }

    /// Which target of a fan-out mirror each of `pairs` goes to (see
    /// [`target_indexes`]).
    pub(super) fn target_indexes(
        &self,
        mirror: &Mirror,
        pairs: &[(Reference, Reference)],
    ) -> Vec<Option<usize>> {
        target_indexes(mirror, pairs)
    }

    /// One [`TargetReport`] per target of a fan-out mirror (see
    /// [`target_reports`]).
    pub(super) fn target_reports(
        &self,
        mirror: &Mirror,
        index: &[Option<usize>],
        images: &[Arc<ImageReport>],
        mirror_errors: usize,
    ) -> Vec<TargetReport> {
        target_reports(mirror, index, images, mirror_errors)
    }

    /// Prune each target of a fan-out mirror, each against its own tags,
    /// with its report in its entry of `targets`; a target where an image
    /// failed or was cancelled in this run is not pruned (its listing may
    /// lack what this run should have written). The mirror's report of
    /// them all (see [`prune::merged`]).
    pub(super) async fn prune_targets(
        &self,
        mirror: &Mirror,
        listed: Option<&[String]>,
        run: prune::PruneRun<'_>,
        targets: &mut [TargetReport],
    ) -> prune::PruneReport {
        let mut parts = Vec::with_capacity(targets.len());
        for (target, report) in mirror.targets().zip(targets.iter_mut()) {
            let unhealthy = match (report.failed, report.result) {
                (0, RunResult::Interrupted) => Some(
                    "the run was interrupted before every image \
                     reached this target"
                        .to_string(),
                ),
                (0, _) => None,
                (n, _) => Some(format!("{n} of its images failed in this run")),
            };
            let p = match unhealthy {
                Some(why) => {
                    let why = format!(
                        "{why}, so nothing was pruned at this target: prune runs at a target \
                         only after all its copies succeeded (the next run that copies them \
                         prunes it)"
                    );
                    prune::refused(mirror, target, run, why)
                }
                None => prune::prune(&self.client, mirror, target, listed, run).await,
            };
            report.prune = Some(p.clone());
            parts.push((report.target.clone(), p));
        }
        prune::merged(&parts)
    }

    /// Open the shares of a fan-out mirror's source images, one per
    /// source image of `pairs`, needed by each of its pairs.
    pub(super) fn open_shares(&self, mirror: &Mirror, pairs: &[(Reference, Reference)]) {
        if mirror.fans_out() {
            for (source, _) in pairs {
                self.shares.open(&mirror.name, &source.to_string());
            }
        }
    }

    /// Drop what is left of a mirror's shares (images never started) and
    /// its kept spool files.
    pub(super) fn close_shares(&self, mirror: &Mirror) {
        if mirror.fans_out() {
            self.shares.close(&mirror.name);
        }
    }

    /// The share of `source`'s pairs, for a fan-out mirror.
    pub(super) fn share(&self, mirror: &Mirror, source: &Reference) -> Option<Arc<SourceShare>> {
        mirror
            .fans_out()
            .then(|| self.shares.get(&mirror.name, &source.to_string()))
    }

    /// One pair of `source` finished: the share goes with the last one.
    pub(super) fn release_share(&self, mirror: &Mirror, source: &Reference) {
        if mirror.fans_out() {
            self.shares.release(&mirror.name, &source.to_string());
        }
    }

    /// `source`'s digest by HEAD, made once for every target of a fan-out
    /// mirror: `None` when the tag does not exist, `Some(None)` when the
    /// registry sent no digest.
    pub(super) async fn head_source(
        &self,
        mirror: &Mirror,
        source: &Reference,
    ) -> Result<Option<Option<Digest>>, Arc<Error>> {
        match self.share(mirror, source) {
            Some(share) => share.resolve(&self.client, source).await,
            None => match self.client.head_manifest(source).await {
                Ok(found) => Ok(found.map(|head| head.digest)),
                Err(e) => Err(Arc::new(e)),
            },
        }
    }
}

/// Releases one pair's hold on its share when the pair's image ends,
/// however it ends (done, failed, or its future dropped).
pub(super) struct Release<'a> {
    pub(super) syncer: &'a Syncer,
    pub(super) mirror: &'a Mirror,
    pub(super) source: &'a Reference,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.syncer.release_share(self.mirror, self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retarget_keeps_the_tag_or_the_digest() {
        let r = |s: &str| Reference::parse(s).unwrap();
        let to = r("b.example/y");
        let by_tag = (r("src.example/app:1"), r("a.example/x:1"));
        let moved = Mirror::retarget(&by_tag, &to).unwrap();
        assert_eq!(moved.0.to_string(), "src.example/app:1");
        assert_eq!(moved.1.to_string(), "b.example/y:1");
        let d = format!("sha256:{}", "a".repeat(64));
        let by_digest = (
            r(&format!("src.example/app@{d}")),
            r(&format!("a.example/x@{d}")),
        );
        let moved = Mirror::retarget(&by_digest, &to).unwrap();
        assert_eq!(moved.1.to_string(), format!("b.example/y@{d}"));
    }
}
