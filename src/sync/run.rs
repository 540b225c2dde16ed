//! Running mirrors: list tags when a filter needs them, compare source and
//! target digests cheaply, copy what differs, and report every image.
//!
//! The no-op path costs one manifest HEAD on the source and one on the
//! target per tag (no GET, no blob request). With a platform filter the
//! target index is a filtered copy whose digest differs from the source's by
//! design; it is recognised by the source digest the copier records under
//! [`crate::copy::ANNOTATION_SOURCE_DIGEST`], at the cost of one manifest GET
//! on the target, never on the source.
//!
//! The steps of one image (hosts, source digest, target check, backup,
//! copy) are in `image`; retries of images deferred for a pull budget in
//! `defer`; images skipped after failing several runs in a row in
//! `quarantine`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod caught;
mod defer;
mod fanout;
mod image;
mod lag;
pub mod only;
mod quarantine;
mod remembered;

pub use crate::sync::state::Held;
#[cfg(debug_assertions)]
pub use caught::TEST_PANIC_VAR;
pub use caught::panic_words;
pub use only::Only;
pub use quarantine::{MAX_RUNS_SKIPPED, QUARANTINE_AFTER, Quarantine, QuarantinedImage};

use super::model::{Mirror, Selection};
use crate::copy::{ANNOTATION_SOURCE_DIGEST, Copier, CopyReport, Engine};
use crate::metrics;
use crate::registry::manifest::{Manifest, is_index};
use crate::registry::{Client, Digest, ErrorKind, PlatformSpec, Reference};
use crate::sync::state::StateStore;

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageResult {
    /// Content was copied and the target tag set.
    Copied,
    /// The target already held the source digest; nothing was copied.
    Skipped,
    /// Dry run: the target differs, a real run would copy.
    WouldCopy,
    /// The target tag holds another digest and `force = false`.
    Conflict,
    /// Something failed; see `error`.
    Failed,
    /// Not started because of shutdown.
    Cancelled,
    /// Not copied now, to keep the source registry's pull budget floor;
    /// see `deferral`. Nothing was written.
    Deferred,
    /// Not copied: a Docker schema 1 manifest; `error` says why. Neither a
    /// success nor a failure of the run.
    Unsupported,
    /// Not copied yet: the source digest is younger than the mirror's
    /// `min_age`; see `held`. Neither a success nor a failure.
    Held,
    /// Not copied: the image fails the mirror's signature policy; see
    /// `rejection` and `error`. The target tag was not moved. A failure.
    Rejected,
}

impl ImageResult {
    /// The `result` label of `regmirror_images_total`.
    pub fn label(self) -> &'static str {
        match self {
            ImageResult::Copied => "copied",
            ImageResult::Skipped => "skipped",
            ImageResult::WouldCopy => "would-copy",
            ImageResult::Conflict => "conflict",
            ImageResult::Failed => "failed",
            ImageResult::Cancelled => "cancelled",
            ImageResult::Deferred => "deferred",
            ImageResult::Unsupported => "unsupported",
            ImageResult::Held => "held",
            ImageResult::Rejected => "rejected",
        }
    }

    /// True for a failure (failed, conflict or rejected).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ImageResult::Failed | ImageResult::Conflict | ImageResult::Rejected
        )
    }
}

/// The report of one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// What happened.
    pub result: ImageResult,
    /// Source digest, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<String>,
    /// Digest at the target after the run, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure, when it failed and the kind is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The copier's report, when the copier ran (boxed: an image skipped
    /// as up to date has none, and its report stays small).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<Box<CopyReport>>,
    /// Referrers brought up to date for an image that was already there.
    /// This and the other rarely present parts below are boxed, so that
    /// the report of an image without them stays small.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers: Option<Box<crate::copy::ReferrerCounts>>,
    /// Why the image was deferred, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferral: Option<Box<crate::registry::ratelimit::Refusal>>,
    /// The backup tag written for the previous digest before the tag moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<Box<super::backup::BackupReport>>,
    /// Why the image was held, when it was (`min_age`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Box<Held>>,
    /// Why the signature policy rejected the image, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<crate::copy::policy::RejectReason>,
    /// For a copied image: seconds from the new upstream digest (its
    /// event, or its first sighting by a run) to its tag written (see
    /// [`Syncer::with_event_time`]). Not part of the JSON report.
    #[serde(skip)]
    pub lag_seconds: Option<f64>,
}

impl ImageReport {
    /// The report of an image from `source` to `target` that no step has
    /// reported on yet: `failed`, with nothing known.
    pub fn new(source: String, target: String) -> ImageReport {
        ImageReport {
            source,
            target,
            result: ImageResult::Failed,
            source_digest: None,
            target_digest: None,
            error: None,
            error_kind: None,
            copy: None,
            referrers: None,
            deferral: None,
            backup: None,
            held: None,
            lag_seconds: None,
            rejection: None,
        }
    }
}

/// How a mirror run went as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Every image succeeded (copied, skipped, or would be copied).
    Success,
    /// Some images failed, others succeeded.
    Partial,
    /// Everything failed (or the tag listing failed).
    Failed,
    /// Nothing failed, but images were deferred to keep a pull budget floor.
    Deferred,
    /// A shutdown signal stopped the run before every image was done:
    /// images were cancelled. Never a success, whatever the others did.
    Interrupted,
}

impl RunResult {
    /// The `result` label of `regmirror_sync_runs_total`.
    pub fn label(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Partial => "partial",
            RunResult::Failed => "failed",
            RunResult::Deferred => "deferred",
            RunResult::Interrupted => "interrupted",
        }
    }
}

/// How one target of a fan-out mirror went in a run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target repository.
    pub target: String,
    /// This target's result, over its images alone (as the mirror's result
    /// is over all images); failures that are not about one image (a tag
    /// listing) count for every target.
    pub result: RunResult,
    /// Images copied to this target.
    pub copied: usize,
    /// Images this target already held (`skipped` images).
    pub up_to_date: usize,
    /// Images that failed (or conflicted) at this target.
    pub failed: usize,
    /// What prune did at this target; `None` when the mirror does not
    /// prune. A target where an image failed in this run is not pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<super::prune::PruneReport>,
}

/// The report of one mirror run.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorReport {
    /// Mirror name.
    pub name: String,
    /// Overall result.
    pub result: RunResult,
    /// Failures that are not about one image (tag listing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Every image considered. Shared, not copied, with whoever keeps
    /// reports as images end (see [`Syncer::keep_images`]).
    #[serde(serialize_with = "shared_reports")]
    pub images: Vec<Arc<ImageReport>>,
    /// Listed tags skipped because they break the tag grammar.
    pub invalid_tags: usize,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// What prune did; `None` when the mirror does not prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<super::prune::PruneReport>,
    /// What discovery found, for a mirror of a registry or namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered: Option<super::discover::DiscoveryReport>,
    /// Images this run skipped because they are in quarantine (never in
    /// `images`; neither successes nor failures).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantinedImage>,
    /// One entry per target of a mirror with several targets (`targets`);
    /// empty (and left out of the JSON) for a mirror with one target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetReport>,
}

/// Shared image reports, written as the reports themselves.
fn shared_reports<S: serde::Serializer>(
    images: &[Arc<ImageReport>],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(images.iter().map(|i| &**i))
}

impl MirrorReport {
    /// Images with this result.
    pub fn count(&self, result: ImageResult) -> usize {
        self.images.iter().filter(|i| i.result == result).count()
    }

    /// Failures: failed or conflicting images, plus mirror-level errors.
    pub fn failures(&self) -> usize {
        self.images.iter().filter(|i| i.result.is_failure()).count()
            + self.errors.len()
            + self.prune.as_ref().map_or(0, |p| p.errors.len())
    }

    /// Successes: copied, skipped or would-copy images.
    pub fn successes(&self) -> usize {
        self.images
            .iter()
            .filter(|i| {
                matches!(
                    i.result,
                    ImageResult::Copied | ImageResult::Skipped | ImageResult::WouldCopy
                )
            })
            .count()
    }
}

/// The report of a run over several mirrors.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// One report per mirror, in config order.
    pub mirrors: Vec<MirrorReport>,
    /// Target repositories created by this run (`create_repositories`),
    /// as `host/repository`.
    pub created_repositories: Vec<String>,
}

impl SyncReport {
    /// Failures over every mirror.
    pub fn failures(&self) -> usize {
        self.mirrors.iter().map(MirrorReport::failures).sum()
    }

    /// Successes over every mirror.
    pub fn successes(&self) -> usize {
        self.mirrors.iter().map(MirrorReport::successes).sum()
    }

    /// The overall result: interrupted when any mirror was; else success
    /// when nothing failed, failed when nothing succeeded, partial
    /// otherwise; deferred when nothing failed but images were deferred
    /// (see [`overall`]).
    pub fn result(&self) -> RunResult {
        if self
            .mirrors
            .iter()
            .any(|m| m.result == RunResult::Interrupted)
        {
            return RunResult::Interrupted;
        }
        let deferred = self
            .mirrors
            .iter()
            .map(|m| m.count(ImageResult::Deferred))
            .sum();
        overall(self.successes(), self.failures(), deferred)
    }
}

/// Deferred images are neither successes nor failures: a run with some and
/// no failure is `deferred`; with failures, it is `partial` (not everything
/// failed).
fn overall(successes: usize, failures: usize, deferred: usize) -> RunResult {
    match (successes, failures) {
        (_, 0) if deferred > 0 => RunResult::Deferred,
        (_, 0) => RunResult::Success,
        (0, _) if deferred == 0 => RunResult::Failed,
        _ => RunResult::Partial,
    }
}

/// The result of one mirror run over `images`, with `failures` counting
/// failed images and mirror-level errors: `interrupted` as soon as one image
/// was cancelled (whatever the others did), else as [`overall`] says.
fn mirror_result(images: &[Arc<ImageReport>], failures: usize) -> RunResult {
    let count = |r: ImageResult| images.iter().filter(|i| i.result == r).count();
    if count(ImageResult::Cancelled) > 0 {
        return RunResult::Interrupted;
    }
    let successes =
        count(ImageResult::Copied) + count(ImageResult::Skipped) + count(ImageResult::WouldCopy);
    overall(successes, failures, count(ImageResult::Deferred))
}

/// Images checked or copied at once across all mirrors of a syncer, per
/// copy slot (`concurrency`): enough to keep each registry's request cap
/// busy with up-to-date checks, few enough that a config of hundreds of
/// mirrors does not hold hundreds of image futures at once.
pub const IMAGES_IN_FLIGHT_PER_COPY: usize = 8;

/// Settings of a [`Syncer`].
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Images copied at once, across every mirror run by this syncer.
    pub concurrency: usize,
    /// Blobs of one image transferred at once.
    pub blob_concurrency: usize,
    /// Compare only: report what would be copied, copy nothing.
    pub dry_run: bool,
    /// Record per-mirror metrics (runs, images, durations).
    pub record_metrics: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: super::model::DEFAULT_CONCURRENCY,
            blob_concurrency: super::model::DEFAULT_BLOB_CONCURRENCY,
            dry_run: false,
            record_metrics: true,
        }
    }
}

/// Runs mirrors. Clone is cheap; clones share the client, the copy limit,
/// the stop token and the copy engine.
///
/// State lifetime: a syncer itself remembers nothing about registries
/// content. Each [`Syncer::run_all`] and each [`Syncer::run_mirror`] is one
/// *run* with its own [`Copier`] (transfers done, blobs known present,
/// mount sources, root manifests fetched), dropped when the run returns;
/// so a daemon that keeps one syncer for months re-checks the target on
/// every cycle and heals a target that lost data. Writes in flight are
/// still deduplicated across concurrent runs on the syncer's [`Engine`].
#[derive(Clone)]
pub struct Syncer {
    client: Client,
    copies: Arc<Semaphore>,
    /// Images being checked or copied at once across every mirror of this
    /// syncer (see [`IMAGES_IN_FLIGHT_PER_COPY`]).
    in_flight: Arc<Semaphore>,
    options: SyncOptions,
    stop: CancellationToken,
    prune_dry_run: bool,
    /// The copy engine every run of this syncer shares (see [`Engine`]).
    engine: Engine,
    /// Told of every image's final report as it finishes, when asked.
    on_image: Option<OnImage>,
    /// Handed every image's report, shared, as its image ends, when asked.
    keep: Option<KeepImage>,
    /// Told how many images each mirror selected, when asked.
    on_selected: Option<OnSelected>,
    /// Images failing run after run, skipped for a while (see
    /// [`Quarantine`]); none without one.
    quarantine: Option<Quarantine>,
    /// What runs remember across runs (see [`crate::sync::state`]); none
    /// without one.
    state: Option<Arc<StateStore>>,
    /// The source images fan-out mirrors read once for all their targets
    /// (see [`fanout`]).
    shares: Arc<crate::copy::SourceShares>,
    /// Told of each mirror's report when its run ends, when asked.
    on_mirror: Option<OnMirror>,
    /// When the upstream change this syncer's runs answer happened (an
    /// event's time): replication lag counts from it.
    event_time: Option<SystemTime>,
}

/// A callback told of each image's final report (with its mirror's name)
/// as it finishes; see [`Syncer::on_image`].
pub type OnImage = Arc<dyn Fn(&str, &ImageReport) + Send + Sync>;

/// A callback handed each image's report, shared with the run's own list
/// (not a copy), with its mirror's name, as the image ends; see
/// [`Syncer::keep_images`].
pub type KeepImage = Arc<dyn Fn(&str, &Arc<ImageReport>) + Send + Sync>;

/// A callback told how many images a mirror's run selected (with its
/// name), before the first is copied; see [`Syncer::on_selected`].
pub type OnSelected = Arc<dyn Fn(&str, usize) + Send + Sync>;

/// A callback told of each mirror's report when its run ends; see
/// [`Syncer::on_mirror_done`].
pub type OnMirror = Arc<dyn Fn(&MirrorReport) + Send + Sync>;

impl Syncer {
    /// A syncer over `client`. `stop`, once cancelled, keeps new copies from
    /// starting (copies already running finish).
    pub fn new(client: Client, options: SyncOptions, stop: CancellationToken) -> Syncer {
        let copies = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let in_flight = Arc::new(Semaphore::new(
            options.concurrency.max(1) * IMAGES_IN_FLIGHT_PER_COPY,
        ));
        Syncer {
            client,
            copies,
            in_flight,
            options,
            stop,
            prune_dry_run: false,
            engine: Engine::new(),
            on_image: None,
            keep: None,
            on_selected: None,
            quarantine: None,
            state: None,
            shares: Arc::default(),
            on_mirror: None,
            event_time: None,
        }
    }

    /// Call `on_mirror` with each mirror's report when its run ends (after
    /// an archive target is packed): one call per mirror per run.
    pub fn on_mirror_done(mut self, on_mirror: OnMirror) -> Syncer {
        self.on_mirror = Some(on_mirror);
        self
    }

    /// Runs of this syncer answer an upstream change made at `at` (the
    /// time an event carried): the replication lag of each tag they write
    /// counts from it instead of from the digest's first sighting. A
    /// caller that runs a mirror for an event clones the syncer (cheap)
    /// with this set.
    pub fn with_event_time(mut self, at: Option<SystemTime>) -> Syncer {
        self.event_time = at;
        self
    }

    /// Remember across runs in `state`: blob locations for mounts, immutable
    /// tags mirrored, first sightings for `min_age`, source repositories
    /// without referrers (see [`crate::sync::state`]).
    pub fn with_state(mut self, state: Option<Arc<StateStore>>) -> Syncer {
        self.state = state;
        self
    }

    /// A copier for one run, on the syncer's engine and store.
    fn copier(&self) -> Copier {
        let copier = Copier::with_engine(self.client.clone(), self.engine.clone());
        match &self.state {
            Some(s) => copier
                .with_locations(s.clone())
                .with_referrer_memory(s.clone()),
            None => copier,
        }
    }

    /// Keep images that fail run after run in `quarantine` (shared by every
    /// run of this syncer and of its clones, and by any syncer given it).
    pub fn with_quarantine(mut self, quarantine: Quarantine) -> Syncer {
        self.quarantine = Some(quarantine);
        self
    }

    /// A syncer whose runs share `engine` (by default each syncer has its
    /// own): `serve` hands every generation the process's engine, so runs
    /// of a reloaded config deduplicate writes against those still going.
    pub fn with_engine(mut self, engine: Engine) -> Syncer {
        self.engine = engine;
        self
    }

    /// Call `on_image` with every image's final report as it finishes, so
    /// that a caller that abandons a run can still report what was done.
    pub fn on_image(mut self, on_image: OnImage) -> Syncer {
        self.on_image = Some(on_image);
        self
    }

    /// Hand `keep` every image's report as its image ends, whatever its
    /// result (cancelled and deferred ones too; a deferred image retried
    /// within the run is handed again), shared with the run's own list, so
    /// that a caller keeping them costs no copy of the reports.
    pub fn keep_images(mut self, keep: KeepImage) -> Syncer {
        self.keep = Some(keep);
        self
    }

    /// The report of an image that ended, shared, handed to `keep`.
    fn kept(&self, mirror: &Mirror, report: ImageReport) -> Arc<ImageReport> {
        let report = Arc::new(report);
        if let Some(keep) = &self.keep {
            keep(&mirror.name, &report);
        }
        report
    }

    /// Call `on_selected` with each mirror's count of selected images once
    /// its tags are listed and filtered, so that a caller can show progress.
    pub fn on_selected(mut self, on_selected: OnSelected) -> Syncer {
        self.on_selected = Some(on_selected);
        self
    }

    /// Prune reports what it would delete and deletes nothing (copies still
    /// run); a dry run implies it.
    pub fn with_prune_dry_run(mut self, prune_dry_run: bool) -> Syncer {
        self.prune_dry_run = prune_dry_run;
        self
    }

    /// A syncer sharing `copies` as its limit on images copied at once.
    pub fn with_copy_limit(mut self, copies: Arc<Semaphore>) -> Syncer {
        self.copies = copies;
        self
    }

    /// Run every mirror once, concurrently, as one run (one copier: work
    /// shared by two mirrors is done once); the copy limit is shared.
    /// Each mirror's report is told as soon as its run ends, except for
    /// mirrors writing an `oci-archive:`, told once the archives are packed.
    ///
    /// Mirror runs start as others end, at most as many at once as images
    /// may be in flight (see [`IMAGES_IN_FLIGHT_PER_COPY`]): a config of
    /// thousands of mirrors holds that many runs (their futures, their tag
    /// listings), not one per mirror. The report keeps the config's order.
    pub async fn run_all(&self, mirrors: &[Mirror]) -> SyncReport {
        let copier = self.copier();
        let copier = &copier;
        let at_once = self.options.concurrency.max(1) * IMAGES_IN_FLIGHT_PER_COPY;
        let mut numbered: Vec<(usize, MirrorReport)> = futures_util::stream::iter(mirrors)
            .enumerate()
            .map(|(n, m)| async move {
                let report = self.run_mirror_caught(copier, m, None).await;
                if !writes_archive(m) {
                    self.tell(&report);
                }
                (n, report)
            })
            .buffer_unordered(at_once)
            .collect()
            .await;
        numbered.sort_by_key(|(n, _)| *n);
        let mut reports: Vec<MirrorReport> = numbered.into_iter().map(|(_, r)| r).collect();
        let all: Vec<&Mirror> = mirrors.iter().collect();
        finish_layouts(&self.client, &all, &mut reports).await;
        for (m, r) in mirrors.iter().zip(&reports) {
            if writes_archive(m) {
                self.tell(r);
            }
        }
        SyncReport {
            mirrors: reports,
            created_repositories: self.client.take_created_repositories(),
        }
    }

    /// Run one mirror once, as a run of its own: nothing remembered by an
    /// earlier run is trusted. Never fails as a whole: failures are in the report.
    pub async fn run_mirror(&self, mirror: &Mirror) -> MirrorReport {
        self.run_mirror_only(mirror, None).await
    }

    /// [`Syncer::run_mirror`] narrowed to the images `only` names (see
    /// [`Only`]); `None`: the whole mirror.
    pub async fn run_mirror_only(&self, mirror: &Mirror, only: Option<&Only>) -> MirrorReport {
        self.client.renew_credentials().await;
        let copier = self.copier();
        let mut report = self.run_mirror_caught(&copier, mirror, only).await;
        finish_layouts(&self.client, &[mirror], std::slice::from_mut(&mut report)).await;
        self.tell(&report);
        report
    }

    /// Tell `on_mirror`, when asked, of a mirror run's report.
    fn tell(&self, report: &MirrorReport) {
        if let Some(on_mirror) = &self.on_mirror {
            on_mirror(report);
        }
    }

    /// [`Syncer::run_mirror_in`]; a run that panics (a bug) is a failed run
    /// (see [`caught`]).
    async fn run_mirror_caught(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        only: Option<&Only>,
    ) -> MirrorReport {
        use futures_util::FutureExt;
        let started = Instant::now();
        let run = std::panic::AssertUnwindSafe(async {
            #[cfg(debug_assertions)]
            caught::panic_if_asked(&mirror.name);
            self.run_mirror_in(copier, mirror, only).await
        });
        match run.catch_unwind().await {
            Ok(report) => report,
            Err(payload) => {
                let report = MirrorReport {
                    name: mirror.name.clone(),
                    result: RunResult::Failed,
                    errors: vec![caught::panicked(&mirror.name, payload.as_ref())],
                    images: Vec::new(),
                    invalid_tags: 0,
                    duration_seconds: started.elapsed().as_secs_f64(),
                    prune: None,
                    discovered: None,
                    quarantined: Vec::new(),
                    targets: Vec::new(),
                };
                self.record_finished(&report, report.failures());
                report
            }
        }
    }

    async fn run_mirror_in(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        only: Option<&Only>,
    ) -> MirrorReport {
        let started = Instant::now();
        let mut errors = Vec::new();
        let mut invalid_tags = 0;
        let mut listed = None;
        let (pairs, discovered) = self
            .all_pairs(
                copier,
                mirror,
                only,
                &mut invalid_tags,
                &mut errors,
                &mut listed,
            )
            .await;
        let (pairs, quarantined) = self.without_quarantined(mirror, pairs);
        self.open_shares(mirror, &pairs);
        log_started(mirror, pairs.len());
        if let Some(on_selected) = &self.on_selected {
            on_selected(&mirror.name, pairs.len());
        }
        let at_target = self.target_indexes(mirror, &pairs);
        let (mut images, deferred) = self.sync_images(copier, mirror, pairs).await;
        self.retry_deferred(copier, mirror, &deferred, &mut images)
            .await;
        self.close_shares(mirror);
        let mut targets = self.target_reports(mirror, &at_target, &images, errors.len());
        let listed_whole = errors.is_empty() && only.is_none();
        self.note_quarantine(mirror, &quarantined, &images, listed_whole);
        let prune = self.prune(mirror, listed.as_deref(), &mut targets).await;
        let prune_errors = prune.as_ref().map_or(0, |p| p.errors.len());
        let failures =
            images.iter().filter(|i| i.result.is_failure()).count() + errors.len() + prune_errors;
        let result = mirror_result(&images, failures);
        let report = MirrorReport {
            name: mirror.name.clone(),
            result,
            errors,
            images,
            invalid_tags,
            duration_seconds: started.elapsed().as_secs_f64(),
            prune,
            discovered,
            quarantined,
            targets,
        };
        if let Some(state) = &self.state {
            state.flush();
        }
        self.record_finished(&report, failures);
        report
    }

    /// Check and copy the image of each of `pairs`, in order, each pair
    /// let go once its image ended (the run keeps no list of them, and the
    /// array of those not started shrinks as they start); the reports, and
    /// the pairs of the images deferred, with their index.
    async fn sync_images(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        pairs: Vec<(Reference, Reference)>,
    ) -> (Vec<Arc<ImageReport>>, Vec<(usize, (Reference, Reference))>) {
        let width = self.options.concurrency.max(1);
        let mut images = Vec::with_capacity(pairs.len());
        let mut deferred = Vec::new();
        let mut done = futures_util::stream::iter(draining(pairs))
            .map(|(s, t)| async move {
                // The image's future (a copy included) is allocated only
                // once it may run, so memory follows the images in flight,
                // not mirrors x width.
                let _slot = self.in_flight.acquire().await;
                let pair = (s.clone(), t.clone());
                let report = Box::pin(self.sync_image(copier, mirror, s, t)).await;
                let again = (report.result == ImageResult::Deferred).then_some(pair);
                (self.kept(mirror, report), again)
            })
            .buffered(width);
        while let Some((report, again)) = done.next().await {
            if let Some(pair) = again {
                deferred.push((images.len(), pair));
            }
            images.push(report);
        }
        (images, deferred)
    }

    /// Metrics and the log line of a finished mirror run.
    fn record_finished(&self, report: &MirrorReport, failures: usize) {
        let result = report.result;
        if self.options.record_metrics && !self.options.dry_run {
            metrics::record_run(&report.name, result.label(), unix_now());
        }
        tracing::info!(
            mirror = %report.name,
            result = result.label(),
            copied = report.count(ImageResult::Copied),
            skipped = report.count(ImageResult::Skipped),
            would_copy = report.count(ImageResult::WouldCopy),
            failed = failures,
            cancelled = report.count(ImageResult::Cancelled),
            seconds = report.duration_seconds,
            "mirror run finished"
        );
    }

    /// `pairs` without the images in quarantine, and those skipped.
    fn without_quarantined(
        &self,
        mirror: &Mirror,
        pairs: Vec<(Reference, Reference)>,
    ) -> (Vec<(Reference, Reference)>, Vec<QuarantinedImage>) {
        let Some(q) = &self.quarantine else {
            return (pairs, Vec::new());
        };
        let mut skipped = Vec::new();
        // One decision per source image, for all its targets (fan-out).
        let mut decided = std::collections::HashMap::new();
        let kept = pairs
            .into_iter()
            .filter(|(s, t)| match decided
                .entry(s.to_string())
                .or_insert_with(|| q.skip(&mirror.name, &s.to_string(), &t.to_string()))
                .clone()
                .map(|i| QuarantinedImage { target: t.to_string(), ..i })
            {
                Some(image) => {
                    tracing::warn!(mirror = %mirror.name, source = %image.source, failed_runs = image.failed_runs,
                        runs_left = image.runs_left, last_error = %image.last_error, "image in quarantine: skipped by this run");
                    skipped.push(image);
                    false
                }
                None => true,
            })
            .collect();
        (kept, skipped)
    }

    /// Note this run's outcomes in the quarantine and export its size;
    /// with `listed_whole` (no listing failed), forget the images the
    /// mirror no longer selects (those it tried are `images`).
    fn note_quarantine(
        &self,
        mirror: &Mirror,
        skipped: &[QuarantinedImage],
        images: &[Arc<ImageReport>],
        listed_whole: bool,
    ) {
        let Some(q) = &self.quarantine else { return };
        // A source image of several targets (fan-out) counts once: settled
        // when any target settled it.
        let settled: std::collections::HashSet<&str> = images
            .iter()
            .filter(|i| {
                !matches!(
                    i.result,
                    ImageResult::Failed | ImageResult::Cancelled | ImageResult::Deferred
                )
            })
            .map(|i| i.source.as_str())
            .collect();
        let mut recorded = std::collections::HashSet::new();
        for image in images {
            if !recorded.insert(image.source.as_str()) {
                continue;
            }
            let result = match settled.contains(image.source.as_str()) {
                true => ImageResult::Copied,
                false => image.result,
            };
            let tried = match result {
                ImageResult::Failed | ImageResult::Rejected => quarantine::Try::Failed {
                    kind: image.error_kind,
                    error: image.error.as_deref().unwrap_or_default(),
                },
                ImageResult::Cancelled | ImageResult::Deferred => quarantine::Try::Neither,
                _ => quarantine::Try::Settled,
            };
            q.record(&mirror.name, &image.source, tried);
        }
        let selected: Vec<String> = images
            .iter()
            .map(|i| i.source.clone())
            .chain(skipped.iter().map(|i| i.source.clone()))
            .collect();
        if listed_whole {
            q.keep_only(&mirror.name, &selected);
        }
        if self.options.record_metrics && !self.options.dry_run {
            metrics::set_quarantined(&mirror.name, q.count(&mirror.name));
        }
    }

    /// The (source, target) pairs `mirror` selects now, as a run would
    /// (tag filters, discovery), without copying; and why some could not be
    /// listed. For `verify`.
    pub async fn selected_pairs(
        &self,
        mirror: &Mirror,
    ) -> (Vec<(Reference, Reference)>, Vec<String>) {
        let copier = self.copier();
        let (mut invalid, mut errors, mut listed) = (0, Vec::new(), None);
        let (pairs, _) = self
            .all_pairs(
                &copier,
                mirror,
                None,
                &mut invalid,
                &mut errors,
                &mut listed,
            )
            .await;
        (pairs, errors)
    }

    /// The (source, target) pairs of every repository `mirror` covers now:
    /// its own, or those of each repository discovery finds. Failures go
    /// to `errors`; a repository whose listing fails does not stop the others.
    async fn all_pairs(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        only: Option<&Only>,
        invalid_tags: &mut usize,
        errors: &mut Vec<String>,
        listed_out: &mut Option<Vec<String>>,
    ) -> (
        Vec<(Reference, Reference)>,
        Option<super::discover::DiscoveryReport>,
    ) {
        let expansion = match super::discover::expand(&self.client, mirror).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(mirror = %mirror.name, error = %e, "discovering repositories failed");
                errors.push(e);
                return (Vec::new(), None);
            }
        };
        let report = mirror
            .discovery
            .as_ref()
            .map(|_| super::discover::DiscoveryReport::of(&expansion));
        errors.extend(expansion.errors.iter().cloned());
        let mut jobs = expansion.jobs;
        if let Some(o) = only {
            jobs.retain(|j| o.covers_repository(j.source.repository()));
        }
        let listed: Vec<_> = futures_util::stream::iter(jobs)
            .map(|job| self.job_pairs(copier, job))
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut out = Vec::new();
        let single = listed.len() == 1 && mirror.discovery.is_none();
        for (pairs, invalid, job_listed) in listed {
            *invalid_tags += invalid;
            // Prune compares one repository's listing with its target: only
            // a mirror of one repository has one (prune is refused with
            // discovery when the config is read).
            if single {
                *listed_out = job_listed;
            }
            match pairs {
                Ok(p) => out.extend(p),
                Err(e) => {
                    tracing::error!(mirror = %mirror.name, error = %e, "listing source tags failed");
                    errors.push(e);
                }
            }
        }
        if let Some(o) = only {
            // A narrowed run prunes nothing: it did not look at every tag.
            out.retain(|(s, _)| o.covers(s));
            *listed_out = None;
        }
        (out, report)
    }

    /// [`Syncer::pairs`] of one discovered job, with its invalid tags and
    /// the source's tag listing when one was made.
    async fn job_pairs(
        &self,
        copier: &Copier,
        job: Mirror,
    ) -> (
        Result<Vec<(Reference, Reference)>, String>,
        usize,
        Option<Vec<String>>,
    ) {
        let mut invalid = 0;
        let mut listed = None;
        let pairs = self
            .pairs(copier, &job, &mut invalid, &mut listed)
            .await
            .and_then(|p| self.fan_pairs(&job, p));
        (pairs, invalid, listed)
    }

    /// The (source, target) pairs a mirror covers now; lists tags only
    /// when the selection needs it.
    async fn pairs(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        invalid_tags: &mut usize,
        listed_out: &mut Option<Vec<String>>,
    ) -> Result<Vec<(Reference, Reference)>, String> {
        let tags = match &mirror.selection {
            Selection::Digest(d) => {
                let pair = mirror.pair_for_digest(d, None).map_err(|e| e.to_string())?;
                return Ok(vec![pair]);
            }
            Selection::Tags(tags) => tags.clone(),
            Selection::Filtered { tags, filter } => {
                let listed = self.list(copier, mirror, invalid_tags).await?;
                if mirror.prune.mode != super::prune::PruneMode::Off {
                    *listed_out = Some(listed.clone());
                }
                let mut out = tags.clone();
                for t in filter.apply(&listed) {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                tracing::debug!(mirror = %mirror.name, listed = listed.len(), selected = out.len(), "tags filtered");
                out
            }
            Selection::All => {
                let mut listed = self.list(copier, mirror, invalid_tags).await?;
                if mirror.prune.mode != super::prune::PruneMode::Off {
                    *listed_out = Some(listed.clone());
                }
                listed.sort();
                listed.dedup();
                listed
            }
        };
        let tags = super::backup::without_backup_tags(mirror, tags);
        if tags.is_empty() {
            tracing::warn!(mirror = %mirror.name, source = %mirror.source, "no tag of the source passes the mirror's filters; nothing to copy");
        }
        tags.iter()
            .map(|t| mirror.pair_for_tag(t).map_err(|e| e.to_string()))
            .collect()
    }

    /// The source's valid tags; `invalid_tags` gets the count of those
    /// dropped for breaking the tag grammar.
    async fn list(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        invalid_tags: &mut usize,
    ) -> Result<Vec<String>, String> {
        let listing = self
            .client
            .list_tags_checked(&mirror.source)
            .await
            .map_err(|e| {
                format!(
                    "mirror {:?}: listing the tags of {} failed, so no tag of it was synced: {e}",
                    mirror.name, mirror.source
                )
            })?;
        *invalid_tags = listing.invalid;
        let mut tags = listing.tags;
        // Fallback and cosign tags travel with the image they belong to;
        // the copier looks them up in this same listing.
        if mirror.referrers.active() {
            copier.remember_tags(&mirror.source, &tags);
            tags.retain(|t| !crate::copy::referrers::is_referrer_tag(t));
        }
        Ok(tags)
    }

    /// Prune the mirror's target when it prunes (after its copies); with
    /// several targets, each target on its own (see
    /// [`Syncer::prune_targets`]), its report in `targets`.
    async fn prune(
        &self,
        mirror: &Mirror,
        listed: Option<&[String]>,
        targets: &mut [TargetReport],
    ) -> Option<super::prune::PruneReport> {
        if mirror.prune.mode == super::prune::PruneMode::Off {
            return None;
        }
        let dry_run = self.options.dry_run || self.prune_dry_run;
        let run = super::prune::PruneRun {
            dry_run,
            record_metrics: self.options.record_metrics,
            stop: &self.stop,
        };
        if mirror.fans_out() {
            return Some(self.prune_targets(mirror, listed, run, targets).await);
        }
        Some(super::prune::prune(&self.client, mirror, &mirror.target, listed, run).await)
    }

    fn finish(&self, mirror: &Mirror, mut report: ImageReport) -> ImageReport {
        if report.result == ImageResult::Copied {
            self.note_lag(mirror, &mut report);
        }
        if let Some(on_image) = &self.on_image {
            on_image(&mirror.name, &report);
        }
        if self.options.record_metrics
            && !self.options.dry_run
            && report.result != ImageResult::Cancelled
        {
            metrics::record_image(&mirror.name, report.result.label());
            if let Some(kind) = report
                .error_kind
                .filter(|_| report.result == ImageResult::Failed)
            {
                metrics::record_image_failure(&mirror.name, kind.label());
            }
        }
        report
    }
}

/// Log the start of a mirror's run, once its images are selected; with
/// several targets, `target_ref` names them all.
fn log_started(mirror: &Mirror, selected: usize) {
    match &mirror.discovery {
        Some(d) => {
            let targets: Vec<String> = d.trees().map(|t| t.describe_target()).collect();
            tracing::info!(mirror = %mirror.name, source = %d.describe_source(), target_ref = %targets.join(", "), images = selected, "mirror run started: {selected} images selected")
        }
        None => {
            let targets: Vec<String> = mirror.targets().map(|t| t.to_string()).collect();
            tracing::info!(mirror = %mirror.name, source = %mirror.source, target_ref = %targets.join(", "), images = selected, "mirror run started: {selected} images selected")
        }
    }
}

/// True when `m`'s target is an `oci-archive:` (packed at the end of a run).
fn writes_archive(m: &Mirror) -> bool {
    m.target.layout().is_some_and(|l| l.archive)
}

/// The end of a run for mirrors whose target is an `oci-archive:`: pack the
/// archives the run wrote (see [`Client::finish_layouts`]), once its images
/// are in their temporary layouts. When packing fails, every mirror with an
/// archive target fails with the error: the archive file was left as it was
/// before the run.
async fn finish_layouts(client: &Client, mirrors: &[&Mirror], reports: &mut [MirrorReport]) {
    let Err(e) = client.finish_layouts().await else {
        return;
    };
    tracing::error!(error = %e, "writing the archive failed");
    for (m, r) in mirrors.iter().zip(reports.iter_mut()) {
        if writes_archive(m) {
            r.errors.push(e.to_string());
            r.result = RunResult::Failed;
        }
    }
}

/// `Some(target digest)` when `target` already holds the image whose source
/// digest is `source_digest`. Without platforms: one HEAD on the target.
/// With platforms: one GET on the target, matching either the same digest
/// (every platform was kept) or a filtered index that records
/// `source_digest` and holds exactly the requested platforms. With
/// `optional` (`platforms_optional`) a requested platform may be absent: the
/// recorded source digest proves the source still lacks it, so the index
/// only has to hold requested platforms, at least one. When the tag is not
/// up to date, what it holds is noted in `copier`'s run, so that the copy
/// that follows does not ask again.
pub async fn up_to_date(
    copier: &Copier,
    target: &Reference,
    source_digest: &Digest,
    platforms: &[PlatformSpec],
    optional: bool,
) -> Result<Option<Digest>, crate::registry::Error> {
    let client = copier.client();
    if platforms.is_empty() {
        return Ok(match client.head_manifest(target).await? {
            Some(head) if head.digest.as_ref() == Some(source_digest) => {
                Some(source_digest.clone())
            }
            // The copy that follows takes this answer (`Copier::note_target`).
            Some(head) => {
                if let Some(current) = head.digest {
                    copier.note_target(target, Some(current));
                }
                None
            }
            None => {
                copier.note_target(target, None);
                None
            }
        });
    }
    let manifest = match client.get_manifest(target).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => {
            copier.note_target(target, None);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if &manifest.digest == source_digest {
        return Ok(Some(manifest.digest));
    }
    if !is_index(&manifest.media_type) {
        return Ok(None);
    }
    let Ok(Manifest::Index(index)) = manifest.parse() else {
        return Ok(None);
    };
    if index
        .annotations
        .get(ANNOTATION_SOURCE_DIGEST)
        .map(String::as_str)
        != Some(&source_digest.to_string())
    {
        return Ok(None);
    }
    let entries: Vec<_> = index
        .manifests
        .iter()
        .filter(|d| !d.is_attestation())
        .filter_map(|d| d.platform.as_ref())
        .collect();
    let every_entry_wanted = entries
        .iter()
        .all(|p| platforms.iter().any(|s| s.matches(p)));
    let every_spec_present = if optional {
        !entries.is_empty()
    } else {
        platforms
            .iter()
            .all(|s| entries.iter().any(|p| s.matches(p)))
    };
    Ok((every_entry_wanted && every_spec_present).then_some(manifest.digest))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// The items of a list in order, each taken out of the array as it is
/// started, the array shrunk as it empties: its memory follows the items
/// not yet started, not the longest list a run selected.
struct Draining<T> {
    /// The items not yet taken, last first.
    rest: Vec<T>,
}

fn draining<T>(mut items: Vec<T>) -> Draining<T> {
    items.reverse();
    Draining { rest: items }
}

impl<T> Iterator for Draining<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let item = self.rest.pop()?;
        if self.rest.capacity() > 64 && self.rest.len() < self.rest.capacity() / 4 {
            self.rest.shrink_to(self.rest.len() * 2);
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(result: ImageResult) -> Arc<ImageReport> {
        Arc::new(ImageReport {
            result,
            ..ImageReport::new("src.test/a:v1".into(), "dst.test/a:v1".into())
        })
    }

    #[test]
    fn pairs_are_started_in_order_and_their_array_shrinks() {
        let mut items = draining((0..1000).collect::<Vec<u32>>());
        let taken: Vec<u32> = items.by_ref().take(900).collect();
        assert_eq!(taken, (0..900).collect::<Vec<u32>>());
        assert!(items.rest.capacity() <= 400, "{}", items.rest.capacity());
        assert_eq!(
            items.collect::<Vec<u32>>(),
            (900..1000).collect::<Vec<u32>>()
        );
    }

    #[test]
    fn a_run_with_cancelled_images_is_interrupted_never_success() {
        let mut images = vec![image(ImageResult::Copied); 4];
        images.extend(vec![image(ImageResult::Cancelled); 246]);
        assert_eq!(mirror_result(&images, 0), RunResult::Interrupted);
        images.push(image(ImageResult::Failed));
        assert_eq!(mirror_result(&images, 1), RunResult::Interrupted);
        let done = vec![image(ImageResult::Copied); 4];
        assert_eq!(mirror_result(&done, 0), RunResult::Success);
        let report = SyncReport {
            created_repositories: Vec::new(),
            mirrors: vec![MirrorReport {
                name: "m".into(),
                result: mirror_result(&images, 1),
                errors: Vec::new(),
                images,
                invalid_tags: 0,
                duration_seconds: 0.0,
                prune: None,
                discovered: None,
                quarantined: Vec::new(),
                targets: Vec::new(),
            }],
        };
        assert_eq!(report.result(), RunResult::Interrupted);
    }

    #[test]
    fn an_interrupted_run_moves_no_success_time_and_keeps_the_failure_count() {
        let (m, line) = ("interrupted-run-metrics", |name: &str| {
            format!("{name}{{mirror=\"interrupted-run-metrics\"}}")
        });
        metrics::record_run(m, RunResult::Failed.label(), 100.0);
        metrics::record_run(m, RunResult::Interrupted.label(), 200.0);
        let text = metrics::render();
        assert!(
            text.contains(&format!(
                "{} 1",
                line("regmirror_mirror_consecutive_failures")
            )),
            "{text}"
        );
        assert!(
            !text.contains(&line("regmirror_mirror_last_success_timestamp_seconds")),
            "{text}"
        );
        assert!(
            text.contains(
                "regmirror_sync_runs_total{mirror=\"interrupted-run-metrics\",result=\"interrupted\"} 1"
            ),
            "{text}"
        );
    }
}
