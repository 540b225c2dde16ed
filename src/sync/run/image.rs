//! One image of a mirror run, step by step: both hosts answer, the source
//! digest, the target already up to date (then only its referrers are
//! brought up to date), and the copy under the shared limit, with a backup
//! of the tag's previous digest first when the mirror keeps backups (and,
//! with a signature policy, only once the policy accepted the image).
//!
//! Each step either hands the report on to the next or ends the image with
//! its final report (`Err`): a failure, a deferral, a cancellation, or an
//! image already up to date.

use std::time::Instant;

use super::{ImageReport, ImageResult, Syncer, up_to_date};
use crate::copy::policy::{self, Verdict};
use crate::copy::{Copier, CopyError, CopyOptions, CopyReport, Outcome, Plan, PlanAction, Turn};
use crate::metrics;
use crate::registry::{Digest, ErrorKind, Reference};
use crate::sync::model::Mirror;

/// The report so far (`Ok`, with what the step found), or the image's
/// final report (`Err`).
type Step<T> = Result<(ImageReport, T), ImageReport>;

impl Syncer {
    /// Compare one image and copy it when the target differs; an immutable
    /// tag the run-state store trusts is skipped without a request.
    pub(super) async fn sync_image(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: Reference,
        target: Reference,
    ) -> ImageReport {
        let mut report = ImageReport::new(source.to_string(), target.to_string());
        let _release = super::fanout::Release {
            syncer: self,
            mirror,
            source: &source,
        };
        if self.stop.is_cancelled() {
            report.result = ImageResult::Cancelled;
            return report;
        }
        let record = self.recorded(&source, &report);
        let shape = super::remembered::shape(mirror);
        if self.trusted(mirror, &source, record.as_ref(), &shape, &mut report) {
            return self.finish(mirror, report);
        }
        let done = self
            .check_and_copy(copier, mirror, &source, &target, report)
            .await;
        self.note_mirrored(mirror, &source, (record.as_ref(), &shape), &done);
        done
    }

    /// Steps 0 to 3 of one image (see the module doc).
    async fn check_and_copy(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        report: ImageReport,
    ) -> ImageReport {
        let (report, source_digest) = match self
            .source_digest(copier, mirror, source, target, report)
            .await
        {
            Ok(found) => found,
            Err(done) => return done,
        };
        let mut report = match &source_digest {
            Some(s) => match self
                .check_target(copier, mirror, source, target, s, report)
                .await
            {
                Ok((mut report, ())) => {
                    if self.hold_young(mirror, source, s, &mut report) {
                        return self.finish(mirror, report);
                    }
                    report
                }
                Err(done) => return done,
            },
            None => report,
        };
        if self.options.dry_run {
            report.result = ImageResult::WouldCopy;
            return self.finish(mirror, report);
        }
        self.copy_image(copier, mirror, source, target, source_digest, report)
            .await
    }

    /// Steps 0 and 1: both hosts are registries (checked once per run and
    /// host); the source digest, from the reference, else one HEAD on the
    /// source.
    async fn source_digest(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        mut report: ImageReport,
    ) -> Step<Option<Digest>> {
        for r in [source, target] {
            if let Err(e) = copier.ping(r).await {
                return Err(
                    self.finish(mirror, fail(mirror, report, e.to_string(), Some(e.kind())))
                );
            }
        }
        let source_digest = match source.digest() {
            Some(d) => Some(d.clone()),
            None => match self.head_source(mirror, source).await {
                Ok(Some(digest)) => digest,
                Ok(None) => {
                    let msg = format!(
                        "source image {source} does not exist: check the tag or repository in mirror {:?}",
                        mirror.name
                    );
                    let kind = Some(ErrorKind::NotFound);
                    return Err(self.finish(mirror, fail(mirror, report, msg, kind)));
                }
                Err(e) => {
                    let msg = format!("checking source {source}: {e}");
                    return Err(self.finish(mirror, fail(mirror, report, msg, Some(e.kind()))));
                }
            },
        };
        report.source_digest = source_digest.as_ref().map(Digest::to_string);
        Ok((report, source_digest))
    }

    /// Step 2: is the target up to date? Then the image ends here, skipped,
    /// once its referrers are brought up to date.
    async fn check_target(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        s: &Digest,
        mut report: ImageReport,
    ) -> Step<()> {
        match up_to_date(
            copier,
            target,
            s,
            &mirror.platforms,
            mirror.platforms_optional,
        )
        .await
        {
            Ok(Some(target_digest)) => {
                report.result = ImageResult::Skipped;
                report.target_digest = Some(target_digest.to_string());
                tracing::debug!(mirror = %mirror.name, target_ref = %target, digest = %s, "up to date");
                // The image is there; its referrers may have changed.
                if mirror.referrers.active() && !self.options.dry_run {
                    let at = target.repository_only().with_digest(target_digest);
                    report = self
                        .refresh_referrers(copier, mirror, source, &at, s, report)
                        .await?;
                }
                Err(self.finish(mirror, report))
            }
            Ok(None) => Ok((report, ())),
            Err(crate::registry::Error::PullBudget { refusal, .. }) => {
                report.result = ImageResult::Deferred;
                report.deferral = Some(Box::new(refusal));
                Err(report)
            }
            Err(e) => {
                let msg = format!("checking target {target}: {e}");
                Err(self.finish(mirror, fail(mirror, report, msg, Some(e.kind()))))
            }
        }
    }

    /// The referrers of an up-to-date image (at `at`, its digest in the
    /// target repository), copied under the shared limit.
    async fn refresh_referrers(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: &Reference,
        at: &Reference,
        s: &Digest,
        mut report: ImageReport,
    ) -> Result<ImageReport, ImageReport> {
        let options = CopyOptions {
            blob_concurrency: self.options.blob_concurrency,
            referrers: mirror.referrers.clone(),
            referrer_memory_age: mirror.state.full_check_every,
            fan_out: self.share(mirror, source),
            ..CopyOptions::default()
        };
        let Ok(_permit) = self.copies.acquire().await else {
            report.result = ImageResult::Cancelled;
            return Err(report);
        };
        match copier.sync_referrers(source, at, s, &options).await {
            Ok(c) => {
                let unreadable = unreadable_referrers(&c, source);
                report.referrers = Some(Box::new(c));
                if let Some(msg) = unreadable {
                    return Err(self.finish(
                        mirror,
                        fail(mirror, report, msg, Some(ErrorKind::BadResponse)),
                    ));
                }
            }
            Err(e) => {
                // `report.target`: the image's target reference, tag included.
                let msg = format!(
                    "copying the referrers of {source} to {}: {e}",
                    report.target
                );
                return Err(self.finish(mirror, fail(mirror, report, msg, Some(e.kind()))));
            }
        }
        Ok(report)
    }

    /// Step 3: copy, under the shared limit.
    async fn copy_image(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        source_digest: Option<Digest>,
        mut report: ImageReport,
    ) -> ImageReport {
        if self.stop.is_cancelled() {
            report.result = ImageResult::Cancelled;
            return report;
        }
        // Copies of one digest into one repository take turns (see
        // `Copier::turn`), waited for before a copy slot is taken: the graph
        // is copied once, each further tag is one manifest PUT.
        let turn = match (&source_digest, source.digest()) {
            (Some(d), None) => Some(copier.turn(target, d).await),
            _ => None,
        };
        let Ok(_permit) = self.copies.acquire().await else {
            report.result = ImageResult::Cancelled;
            return report;
        };
        if self.stop.is_cancelled() {
            report.result = ImageResult::Cancelled;
            return report;
        }
        let options = CopyOptions {
            platforms: mirror.platforms.clone(),
            force: mirror.force,
            platforms_optional: mirror.platforms_optional,
            convert_schema1: mirror.convert_schema1,
            blob_concurrency: self.options.blob_concurrency,
            referrers: mirror.referrers.clone(),
            referrer_memory_age: mirror.state.full_check_every,
            fan_out: self.share(mirror, source),
            policy: mirror.policy.clone(),
            ..CopyOptions::default()
        };
        let judged = match judged_plan(copier, mirror, source, target, turn.as_ref(), &options)
            .await
        {
            Ok(j) => j,
            Err(e) => return self.copied(mirror, source, target, Instant::now(), Err(e), report),
        };
        let report = match self
            .backup(mirror, source, target, source_digest.as_ref(), report)
            .await
        {
            Ok((report, ())) => report,
            Err(done) => return done,
        };
        metrics::COPIES_IN_FLIGHT.inc();
        let started = Instant::now();
        let result = match (&judged, &turn) {
            // Judged above on this very plan: not judged again.
            (Some(plan), _) => {
                let unjudged = CopyOptions {
                    policy: None,
                    ..options
                };
                copier.execute(plan, &unjudged).await
            }
            (None, Some(turn)) => copier.copy_in_turn(turn, source, target, &options).await,
            (None, None) => copier.copy(source, target, &options).await,
        };
        metrics::COPIES_IN_FLIGHT.dec();
        self.copied(mirror, source, target, started, result, report)
    }

    /// Before a tag moves (with `force`): a backup tag for the digest it
    /// holds, when the mirror keeps backups. No copy without its backup.
    async fn backup(
        &self,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        source_digest: Option<&Digest>,
        mut report: ImageReport,
    ) -> Step<()> {
        if let Some(backup) = mirror.backup.as_ref().filter(|_| mirror.force) {
            match backup
                .before_overwrite(&self.client, source, target, source_digest)
                .await
            {
                Ok(b) => report.backup = b.map(Box::new),
                Err(e) => {
                    let msg =
                        format!("{e}; {target} was left as it was (no copy without its backup)");
                    return Err(self.finish(mirror, fail(mirror, report, msg, None)));
                }
            }
            if report.backup.is_some() && self.options.record_metrics {
                metrics::record_backup(&mirror.name);
            }
        }
        Ok((report, ()))
    }

    /// The report of a copy that ran: copied, up to date, a tag conflict,
    /// deferred, or failed.
    fn copied(
        &self,
        mirror: &Mirror,
        source: &Reference,
        target: &Reference,
        started: Instant,
        result: Result<CopyReport, CopyError>,
        mut report: ImageReport,
    ) -> ImageReport {
        match result {
            Ok(copy) => {
                report.source_digest = Some(copy.source_digest.to_string());
                report.target_digest = Some(copy.target_digest.to_string());
                report.result = match copy.outcome {
                    Outcome::Copied => {
                        if self.options.record_metrics {
                            metrics::observe_copy_duration(
                                &mirror.name,
                                started.elapsed().as_secs_f64(),
                            );
                        }
                        ImageResult::Copied
                    }
                    Outcome::UpToDate => ImageResult::Skipped,
                    Outcome::TagConflict if let Some(reason) = &copy.conflict_reason => {
                        report.error = Some(format!(
                            "target tag {target} was left alone: the registry refuses to move \
                             it ({reason}); delete the tag or allow tag changes in the target \
                             repository to update it"
                        ));
                        ImageResult::Conflict
                    }
                    Outcome::TagConflict => {
                        report.error = Some(format!(
                            "target tag {target} points at another image than {source}; it was left alone \
                             because mirror {:?} has force = false (set force = true to overwrite it)",
                            mirror.name
                        ));
                        ImageResult::Conflict
                    }
                };
                tracing::info!(
                    mirror = %mirror.name,
                    source = %source,
                    target_ref = %target,
                    result = report.result.label(),
                    blobs_copied = copy.blobs_copied,
                    bytes = copy.bytes_copied,
                    seconds = copy.duration.as_secs_f64(),
                    "image synced"
                );
                let unreadable = unreadable_referrers(&copy.referrers, source);
                report.copy = Some(Box::new(copy));
                if let Some(msg) = unreadable {
                    report = fail(mirror, report, msg, Some(ErrorKind::BadResponse));
                }
                self.finish(mirror, report)
            }
            Err(e) if e.is_schema1() => {
                tracing::warn!(mirror = %mirror.name, source = %source, target = %target, reason = %e, "image not copied");
                report.result = ImageResult::Unsupported;
                report.error = Some(format!("not copying {source} to {target}: {e}"));
                self.finish(mirror, report)
            }
            Err(e @ CopyError::Rejected { .. }) => self.rejected(mirror, e, report),
            Err(e) => match e.deferral() {
                Some(refusal) => {
                    tracing::info!(mirror = %mirror.name, source = %source, target_ref = %target, reason = %refusal, "image deferred");
                    report.result = ImageResult::Deferred;
                    report.deferral = Some(Box::new(refusal.clone()));
                    report
                }
                None => {
                    let msg = format!("copying {source} to {target}: {e}");
                    self.finish(mirror, fail(mirror, report, msg, Some(e.kind())))
                }
            },
        }
    }

    /// The report of an image the signature policy rejected (`e`): nothing
    /// of it was written and the target tag did not move.
    fn rejected(&self, mirror: &Mirror, e: CopyError, mut report: ImageReport) -> ImageReport {
        let CopyError::Rejected { reason, detail, .. } = e else {
            return self.finish(mirror, fail(mirror, report, e.to_string(), Some(e.kind())));
        };
        let (source, target) = (&report.source, &report.target);
        let msg = format!(
            "not copying {source} to {target}: it fails the signature policy of mirror {:?} \
             ({reason}): {detail}; {target} was left as it was",
            mirror.name
        );
        tracing::warn!(mirror = %mirror.name, source = %source, target_ref = %target, reason = %reason, error = %msg, "image rejected by the signature policy");
        report.result = ImageResult::Rejected;
        report.rejection = Some(reason);
        report.error = Some(msg);
        self.finish(mirror, report)
    }
}

/// With a backup to write before the tag moves (`backup` with `force`) and
/// a signature policy: the copy planned and its image judged first, as the
/// copy itself would judge it (a rejection is [`CopyError::Rejected`]), so
/// that a rejected image leaves no backup tag behind. The plan is then
/// carried out as it is. `None`: nothing judged here (the copy judges).
async fn judged_plan(
    copier: &Copier,
    mirror: &Mirror,
    source: &Reference,
    target: &Reference,
    turn: Option<&Turn>,
    options: &CopyOptions,
) -> Result<Option<Plan>, CopyError> {
    let Some(p) = options.policy.as_ref().filter(|_| mirror.force) else {
        return Ok(None);
    };
    if mirror.backup.is_none() {
        return Ok(None);
    }
    let plan = match turn {
        Some(turn) => copier.plan_in_turn(turn, source, target, options).await?,
        None => copier.plan(source, target, options).await?,
    };
    let pushes = match plan.action {
        PlanAction::Copy => true,
        PlanAction::UpToDate => false,
        PlanAction::Conflict { .. } => plan.pushes_root,
    };
    if pushes {
        let client = copier.client();
        let root = (&plan.source, &plan.source_digest, &plan.root);
        if let Verdict::Rejected { reason, detail } =
            policy::check(p, client, root.0, root.1, root.2).await?
        {
            return Err(CopyError::Rejected {
                image: plan.source.to_string(),
                reason,
                detail,
            });
        }
    }
    Ok(Some(plan))
}

/// The failure of an image whose source referrer lists (fallback indexes)
/// could not be read, when some could not: the image itself is in place.
fn unreadable_referrers(c: &crate::copy::ReferrerCounts, source: &Reference) -> Option<String> {
    (c.unreadable > 0).then(|| {
        format!(
            "{source} was mirrored, but {} of the source's referrer lists (sha256-<hex> fallback \
             indexes) could not be read, so the referrers they list were not copied; repair or \
             delete those tags at the source",
            c.unreadable
        )
    })
}

/// `r` as a failure with `msg`, logged.
fn fail(mirror: &Mirror, mut r: ImageReport, msg: String, kind: Option<ErrorKind>) -> ImageReport {
    tracing::warn!(mirror = %mirror.name, source = %r.source, target_ref = %r.target, error = %msg, "image failed");
    r.result = ImageResult::Failed;
    r.error = Some(msg);
    r.error_kind = kind;
    r
}
