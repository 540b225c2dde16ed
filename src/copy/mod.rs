//! The copy engine: plan an image graph, then execute it.
//!
//! [`Copier::plan`] reads the source graph (index → manifests → config and
//! layers, nested indexes, artifacts) and asks the target what it already
//! holds; [`Copier::execute`] copies blobs first, then child manifests by
//! digest, then the root by tag, so a tag only ever points at a complete
//! image. Manifests are pushed as the exact bytes pulled: the target digest
//! is the source digest unless platforms were filtered.

pub mod audit;
mod blob;
mod budget;
mod engine;
mod fanout;
pub mod filter;
pub mod index;
mod locations;
mod manifest;
mod plan;
pub mod policy;
mod present;
pub mod referrers;
mod schema1;
pub mod target;
mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::registry::manifest::ManifestError;
use crate::registry::{Client, Digest, PlatformSpec, RawManifest, Reference};

pub use engine::Engine;
pub use fanout::{SourceShare, SourceShares};
pub use locations::BlobLocations;
pub use referrers::{ReferrerCounts, ReferrerMemory, ReferrerOptions};
pub use schema1::Converted;

pub use plan::{
    BlobAction, BlobLine, BlobStep, ManifestAction, ManifestStep, Plan, PlanAction, PlanSummary,
    refuse_self_copy,
};

/// Annotation a platform-filtered index carries: the digest of the source
/// index it was filtered from.
pub const ANNOTATION_SOURCE_DIGEST: &str = "io.regmirror.source.digest";

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
    /// Referrers (signatures, SBOMs, attestations) and cosign tags to take
    /// along; off by default in the engine (`sync` and `import` turn it on).
    pub referrers: ReferrerOptions,
    /// Copy what matches when a requested platform is missing from the
    /// source, instead of failing.
    pub platforms_optional: bool,
    /// Convert a Docker schema 1 source to schema 2 (a new digest) instead
    /// of refusing it (see [`crate::registry::schema1`]).
    pub convert_schema1: bool,
    /// How long a finding of the copier's [`ReferrerMemory`] that a source
    /// repository has no referrers is trusted; zero: never.
    pub referrer_memory_age: std::time::Duration,
    /// The source image is copied to several targets: what its copies
    /// share, so that the source is read once (see [`SourceShare`]).
    pub fan_out: Option<Arc<SourceShare>>,
    /// Signatures the image must carry before anything of it is written
    /// (see [`policy`]); `None`: no check.
    pub policy: Option<Arc<policy::Policy>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            force: false,
            include_foreign_layers: false,
            blob_concurrency: 4,
            platforms_optional: false,
            referrers: ReferrerOptions::default(),
            convert_schema1: false,
            referrer_memory_age: std::time::Duration::ZERO,
            fan_out: None,
            policy: None,
        }
    }
}

/// The registry's words when `e` is its refusal to move an immutable tag:
/// ECR answers `TAG_INVALID` "The image tag '…' already exists in the '…'
/// repository and cannot be overwritten because the tag is immutable" (HTTP
/// 400); other registries say `TAG_IMMUTABLE` or `MANIFEST_INVALID` with
/// the same words.
fn immutable_tag_refusal(e: &CopyError) -> Option<String> {
    let e = match e {
        CopyError::Registry(e) => e,
        CopyError::Shared(inner) => return immutable_tag_refusal(inner),
        _ => return None,
    };
    let crate::registry::Error::Status { status, codes, .. } = e else {
        return None;
    };
    if !matches!(status, 400 | 409 | 412) {
        return None;
    }
    codes
        .iter()
        .find(|c| {
            c.code == "TAG_IMMUTABLE"
                || (matches!(
                    c.code.as_str(),
                    "TAG_INVALID" | "MANIFEST_INVALID" | "DENIED"
                ) && c.message.to_ascii_lowercase().contains("immutable"))
        })
        .map(|c| format!("{}: {}", c.code, c.message))
}

/// Whether `e` is a registry's `NAME_UNKNOWN` (404): the repository does
/// not exist (ECR does not create repositories on push).
fn repository_unknown(e: &CopyError) -> bool {
    let e = match e {
        CopyError::Registry(e) => e,
        CopyError::Blob { error, .. } => error,
        CopyError::Shared(inner) => return repository_unknown(inner),
        _ => return false,
    };
    e.status() == Some(404) && e.codes().iter().any(|c| c.code == "NAME_UNKNOWN")
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
    /// Digest the target tag held before, when it held another one
    /// (overwritten with `force`, or left alone on a conflict).
    pub previous_digest: Option<Digest>,
    /// Foreign layers left out (not copied; the target refers to their URLs).
    pub foreign_layers_skipped: u64,
    /// Platforms kept, when platforms were filtered.
    pub platforms_kept: Vec<String>,
    /// Requested platforms the source does not have (`platforms_optional`).
    pub platforms_missing: Vec<String>,
    /// Referrers found, copied and skipped, fallback indexes written.
    pub referrers: ReferrerCounts,
    /// Why the outcome is a conflict when the registry itself refused to
    /// move the tag (an immutable tag): its own words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_reason: Option<String>,
    /// The digest of the Docker schema 1 manifest the image was converted
    /// from (`convert_schema1`); `target_digest` is the schema 2 one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<Digest>,
}

impl CopyReport {
    /// The report of `plan` before anything is done: nothing counted yet.
    fn of_plan(plan: &Plan) -> CopyReport {
        CopyReport {
            source: plan.source.to_string(),
            target: plan.target.to_string(),
            source_digest: plan.source_digest.clone(),
            target_digest: plan.root.digest.clone(),
            outcome: Outcome::Copied,
            manifests_copied: 0,
            manifests_skipped: 0,
            blobs_copied: 0,
            blobs_skipped: 0,
            blobs_mounted: 0,
            bytes_copied: 0,
            duration: Duration::ZERO,
            previous_digest: plan
                .target_current
                .clone()
                .filter(|d| *d != plan.root.digest),
            foreign_layers_skipped: 0,
            platforms_kept: plan.platforms_kept.clone(),
            platforms_missing: plan.platforms_missing.clone(),
            referrers: ReferrerCounts::default(),
            conflict_reason: None,
            converted_from: plan.converted.as_ref().map(|c| c.from.clone()),
        }
    }

    /// True when the target digest differs from the source digest (platforms filtered).
    pub fn digest_changed(&self) -> bool {
        self.source_digest != self.target_digest
    }
}

/// Errors of the copy engine. Each names the image and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// A blob could not be copied; the target tag was not touched.
    #[error(
        "copying blob {digest} from {source_repo} to {target_repo} failed, the target tag was not changed: {error}"
    )]
    Blob {
        /// The blob.
        digest: Digest,
        /// Source repository.
        source_repo: String,
        /// Target repository.
        target_repo: String,
        /// The registry error, shared by every image waiting on this blob.
        #[source]
        error: Arc<crate::registry::Error>,
    },
    /// A manifest cannot be walked.
    #[error("image {image}: manifest {digest} cannot be read: {error}")]
    Manifest {
        /// The image.
        image: String,
        /// The manifest.
        digest: Digest,
        /// What is wrong with it.
        #[source]
        error: ManifestError,
    },
    /// No platform of an index matches the requested ones.
    #[error(
        "image {image}: no platform matches {wanted}; the image offers {}: \
         pick one of those (import: --platform; sync and serve: the mirror's `platforms` key)",
        .available.join(", ")
    )]
    NoMatchingPlatform {
        /// The image.
        image: String,
        /// Requested platforms.
        wanted: String,
        /// Platforms the image has.
        available: Vec<String>,
    },
    /// Some requested platforms are not in the source (others are).
    #[error(
        "image {image} has no {}: it has {}; nothing was written. Ask only for platforms the \
         image has, or accept a partial copy with --platform-optional (import, index create) or \
         platforms_optional = true (a mirror)",
        .missing.join(", "),
        .kept.join(", ")
    )]
    MissingPlatforms {
        /// The image.
        image: String,
        /// Requested platforms it lacks.
        missing: Vec<String>,
        /// Platforms it has among those requested.
        kept: Vec<String>,
    },
    /// A single-platform image of another platform than the requested ones.
    #[error(
        "image {image} is a single-platform image for {actual}, not {wanted}: \
         drop the platform filter (import: --platform; sync and serve: the mirror's `platforms` key) \
         or ask for {actual}"
    )]
    PlatformMismatch {
        /// The image.
        image: String,
        /// Requested platforms.
        wanted: String,
        /// The image's platform.
        actual: String,
    },
    /// The image fails the signature policy: nothing was written.
    #[error(
        "image {image} was not written: it fails the signature policy ({reason}): {detail}; the \
         target tag was not changed"
    )]
    Rejected {
        /// The image.
        image: String,
        /// Why, in one word.
        reason: policy::RejectReason,
        /// What was found and what to do.
        detail: String,
    },
    /// A registry stored a manifest under another digest than its bytes have.
    #[error(
        "image {image}: {target} stored the manifest as {actual}, expected {expected}; the \
         registry rewrote the manifest, so digests would not be preserved; use a registry that \
         stores manifests as pushed"
    )]
    DigestRewritten {
        /// The image.
        image: String,
        /// Where it was pushed.
        target: String,
        /// The digest of the bytes pushed.
        expected: Digest,
        /// What the registry reported.
        actual: Digest,
    },
    /// The image graph cannot be copied as it is.
    #[error("image {image}: {detail}")]
    Invalid {
        /// The image.
        image: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A source or target host does not answer as a registry.
    #[error("{}", not_a_registry_text(.0))]
    NotARegistry(Arc<crate::registry::Error>),
    /// A manifest push failed; every image that needed that manifest in that
    /// repository gets this same error.
    #[error(transparent)]
    Shared(Arc<CopyError>),
    /// Not copied now: the manifest GETs it needs would spend the source
    /// registry's pull allowance into its floor, or a pull-limit 429 opened
    /// the circuit. Nothing was written; a later try copies it.
    #[error("image {image} deferred: {refusal}")]
    Deferred {
        /// The image.
        image: String,
        /// Why, and when to try again.
        refusal: crate::registry::ratelimit::Refusal,
    },
}

impl CopyError {
    /// Some requested platforms are not in `image`.
    pub(crate) fn missing_platforms(
        image: String,
        missing: Vec<String>,
        kept: Vec<String>,
    ) -> Self {
        CopyError::MissingPlatforms {
            image,
            missing,
            kept,
        }
    }

    /// True when the source is a Docker schema 1 manifest, which is not
    /// copied (see [`crate::registry::schema1`]).
    pub fn is_schema1(&self) -> bool {
        match self {
            CopyError::Registry(crate::registry::Error::Schema1 { .. }) => true,
            CopyError::Shared(inner) => inner.is_schema1(),
            _ => false,
        }
    }

    /// What kind of failure this is, for reports and metrics.
    pub fn kind(&self) -> crate::registry::ErrorKind {
        use crate::registry::ErrorKind;
        match self {
            CopyError::Registry(e) => e.kind(),
            CopyError::Blob { error, .. } => error.kind(),
            CopyError::NotARegistry(e) => e.kind(),
            CopyError::Shared(e) => e.kind(),
            CopyError::DigestRewritten { .. } | CopyError::Rejected { .. } => ErrorKind::Integrity,
            CopyError::Deferred { .. } => ErrorKind::PullBudget,
            CopyError::Manifest { .. }
            | CopyError::NoMatchingPlatform { .. }
            | CopyError::MissingPlatforms { .. }
            | CopyError::PlatformMismatch { .. }
            | CopyError::Invalid { .. } => ErrorKind::Invalid,
        }
    }
}

/// The message of a failed registry check: what the check found, without
/// the operation prefix of registry errors.
fn not_a_registry_text(e: &crate::registry::Error) -> String {
    match e {
        crate::registry::Error::BadResponse { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// The shared result of one blob transfer.
type BlobResult = Result<BlobOutcome, Arc<crate::registry::Error>>;
/// The shared result of one manifest push (whose push it was is known to
/// the caller that ran it).
type ManifestResult = Result<(), Arc<CopyError>>;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobOutcome {
    /// Transferred (GET then upload); carries the bytes sent.
    Copied(u64),
    /// Already present at the target (or transferred by another image of this run).
    Skipped,
    /// Mounted from another repository of the target registry.
    Mounted,
    /// A foreign layer, left out.
    Foreign,
}

/// Receives progress of an execution; every method defaults to nothing.
pub trait Progress: Send + Sync {
    /// Blob bytes were uploaded.
    fn bytes(&self, _n: u64) {}
    /// A blob was handled.
    fn blob_done(&self, _digest: &Digest, _size: u64, _outcome: BlobOutcome) {}
    /// A manifest was pushed or found present.
    fn manifest_done(&self, _digest: &Digest) {}
    /// A blob transfer is restarted after a transient failure.
    fn blob_retry(&self, _digest: &Digest, _size: u64, _bytes_sent: u64) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What one run remembers. Every field lives exactly as long as the run
/// (one command, or one scheduled cycle of one mirror in `serve`): it is
/// created by [`Copier::new`], [`Copier::with_engine`] or [`Copier::new_run`] and dropped with the
/// last clone of that copier. Nothing here is ever trusted by a later run,
/// so a target that lost data since is written again.
struct Shared {
    /// Blob transfers this run started or joined (see [`work`]).
    blobs: work::RunWork<BlobResult>,
    /// Manifest pushes this run started or joined (see [`work`]).
    manifests: work::RunWork<ManifestResult>,
    /// Blobs known present, per registry: digest → repository. Mount
    /// sources; stale only if a repository loses data during the run, and
    /// then a failed mount falls back to a copy.
    known: Mutex<HashMap<String, HashMap<Digest, String>>>,
    /// Blobs being streamed into some repository, per (registry, digest): a
    /// receiver that closes when that transfer ends, so another repository
    /// of the same registry waits and mounts instead of fetching again.
    streaming: Mutex<HashMap<(String, Digest), tokio::sync::watch::Receiver<()>>>,
    /// One turn per (target registry, repository, source digest): copies of
    /// one image into one repository under several tags go one after the
    /// other, so the graph is walked and copied once and each further tag
    /// costs one manifest PUT.
    turns: work::Locks,
    /// Root manifests fetched by digest (bytes verified against it), per
    /// (source registry, repository, digest), so that further tags of the
    /// same image do not fetch it again from that source.
    fetched: Mutex<HashMap<work::WorkKey, RawManifest>>,
    /// Hosts checked to be registries (see [`crate::registry::ping`]).
    pinged: Mutex<HashMap<String, Arc<PingCell>>>,
    /// What the run learnt about referrers (see [`referrers`]).
    referrers: referrers::RunState,
    /// Blobs known present per target repository, target tags as compared
    /// (see [`present`]).
    present: present::Present,
}

/// A turn to copy one digest into one repository (see [`Copier::turn`]);
/// the next copy of it starts when this is dropped.
pub struct Turn {
    digest: Digest,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// The shared result of checking that a host is a registry.
type PingCell = tokio::sync::OnceCell<Result<(), Arc<crate::registry::Error>>>;

impl Shared {
    fn new() -> Shared {
        let started = Instant::now();
        Shared {
            blobs: work::RunWork::new(started),
            manifests: work::RunWork::new(started),
            known: Mutex::default(),
            streaming: Mutex::default(),
            turns: work::Locks::default(),
            fetched: Mutex::default(),
            pinged: Mutex::default(),
            referrers: referrers::RunState::default(),
            present: present::Present::default(),
        }
    }
}

/// Copies images. A copier is one *run*: every image copied through it (and
/// its clones) shares its memory of work done, so work is deduplicated by
/// (target repository, digest); writes are also deduplicated against every
/// other run in flight on the same [`Engine`]. Use one copier per command,
/// and [`Copier::new_run`] for each scheduled cycle of a daemon.
#[derive(Clone)]
pub struct Copier {
    client: Client,
    shared: Arc<Shared>,
    engine: Engine,
    /// Blob locations remembered across runs, when the caller keeps them.
    locations: Option<Arc<dyn BlobLocations>>,
    /// Source repositories found without referrers by earlier runs, when
    /// the caller keeps them.
    referrer_memory: Option<Arc<dyn ReferrerMemory>>,
}

impl Copier {
    /// A copier over `client`, starting a new run on an engine of its own
    /// (nothing is shared with any other copier): for one command.
    pub fn new(client: Client) -> Copier {
        Copier::with_engine(client, Engine::new())
    }

    /// A copier over `client`, starting a new run on `engine`: its writes
    /// are deduplicated against every other run in flight on that engine.
    pub fn with_engine(client: Client, engine: Engine) -> Copier {
        Copier {
            client,
            shared: Arc::new(Shared::new()),
            engine,
            locations: None,
            referrer_memory: None,
        }
    }

    /// This copier, recording the blobs it finds in target repositories in
    /// `locations` and mounting from the repositories it names when this
    /// run knows no other (see [`BlobLocations`]).
    pub fn with_locations(mut self, locations: Arc<dyn BlobLocations>) -> Copier {
        self.locations = Some(locations);
        self
    }

    /// This copier, skipping the referrers probe of source repositories
    /// `memory` remembers without referrers (see [`ReferrerMemory`]).
    pub fn with_referrer_memory(mut self, memory: Arc<dyn ReferrerMemory>) -> Copier {
        self.referrer_memory = Some(memory);
        self
    }

    /// A copier over the same client and engine with a fresh run memory:
    /// nothing this copier remembers is carried over.
    pub fn new_run(&self) -> Copier {
        let mut run = Copier::with_engine(self.client.clone(), self.engine.clone());
        run.locations = self.locations.clone();
        run.referrer_memory = self.referrer_memory.clone();
        run
    }

    /// The engine this copier's runs share.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The client this copier uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Copy `source` to `target`: blobs, then child manifests by digest, then
    /// the root by tag.
    pub async fn copy(
        &self,
        source: &Reference,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        self.plan_and_execute(source, None, target, options).await
    }

    /// Copy `source` (a tag) whose manifest digest the caller has just
    /// resolved as `digest`: the manifest is fetched by that digest, and a
    /// copy of the same digest into the same repository by this run goes
    /// first, so that this one finds the graph in place and only sets its tag.
    pub async fn copy_resolved(
        &self,
        source: &Reference,
        digest: &Digest,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        let turn = self.turn(target, digest).await;
        self.copy_in_turn(&turn, source, target, options).await
    }

    /// Wait for this run's turn to copy `digest` into `target`'s repository:
    /// copies of one image into one repository under several tags go one
    /// after the other (the first copies the graph, each further tag is one
    /// manifest PUT). Take the turn before any other limit (a copy slot), so
    /// that images waiting in line do not hold slots other images could use.
    pub async fn turn(&self, target: &Reference, digest: &Digest) -> Turn {
        let key = work::WorkKey::at(target, digest);
        let lock = self.shared.turns.of(key);
        Turn {
            digest: digest.clone(),
            _guard: lock.lock_owned().await,
        }
    }

    /// [`Copier::copy_resolved`] with the turn already taken.
    pub async fn copy_in_turn(
        &self,
        turn: &Turn,
        source: &Reference,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        self.plan_and_execute(source, Some(&turn.digest), target, options)
            .await
    }

    /// Work out what copying `source` to `target` takes, asking the target
    /// what it already holds; writes nothing. A target without tag or digest
    /// receives the image by digest only.
    pub async fn plan(
        &self,
        source: &Reference,
        target: &Reference,
        options: &CopyOptions,
    ) -> Result<Plan, CopyError> {
        plan::build(self, source, None, target, options).await
    }

    /// Carry out a plan.
    pub async fn execute(
        &self,
        plan: &Plan,
        options: &CopyOptions,
    ) -> Result<CopyReport, CopyError> {
        self.execute_with_progress(plan, options, Arc::new(NoProgress))
            .await
    }

    /// Carry out a plan, reporting progress. With `create_repositories =
    /// true` on the target registry, what the push needs is created first
    /// where the registry wants it before (a Harbor project, an Artifact
    /// Registry repository), and a target repository that does not exist
    /// (`NAME_UNKNOWN`) is created (ECR) and the plan carried out again; each
    /// once per run.
    pub async fn execute_with_progress(
        &self,
        plan: &Plan,
        options: &CopyOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<CopyReport, CopyError> {
        let pushes = match plan.action {
            PlanAction::Copy => true,
            PlanAction::UpToDate => false,
            PlanAction::Conflict { .. } => plan.pushes_root,
        };
        if pushes && let Some(p) = &options.policy {
            self.enforce_policy(plan, p, options.fan_out.as_deref())
                .await?;
        }
        if pushes {
            self.client.prepare_repository(&plan.target).await?;
        }
        match self.execute_once(plan, options, progress.clone()).await {
            Err(e)
                if repository_unknown(&e)
                    && self.client.create_repository(&plan.target).await? =>
            {
                self.execute_once(plan, options, progress).await
            }
            other => other,
        }
    }

    async fn execute_once(
        &self,
        plan: &Plan,
        options: &CopyOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<CopyReport, CopyError> {
        let start = Instant::now();
        let mut report = CopyReport::of_plan(plan);
        match &plan.action {
            PlanAction::UpToDate => {
                report.outcome = Outcome::UpToDate;
                report.referrers = self.plan_referrers_task(plan, options).await?;
                report.duration = start.elapsed();
                return Ok(report);
            }
            PlanAction::Conflict { .. } if !plan.pushes_root => {
                report.outcome = Outcome::TagConflict;
                report.target_digest = plan
                    .target_current
                    .clone()
                    .unwrap_or(plan.root.digest.clone());
                report.duration = start.elapsed();
                return Ok(report);
            }
            _ => {}
        }
        // 1. Blobs, in parallel; first the config of a converted schema 1
        // image, which only this run holds.
        if let Some(c) = plan.converted.as_ref().filter(|_| !plan.root_present) {
            self.client
                .put_blob_bytes(
                    &plan.target.repository_only(),
                    &c.config_digest,
                    c.config.clone(),
                )
                .await?;
            report.blobs_copied += 1;
            report.bytes_copied += c.config.len() as u64;
        }
        self.execute_blobs(plan, options, &progress, &mut report)
            .await?;
        // 2. Child manifests by digest, children before parents.
        self.execute_children(plan, &progress, &mut report).await?;
        // 2b. Referrers of the image's manifests, by digest, before the tag
        // moves: a tag never points at an unsigned copy of a signed image.
        report.referrers = self.plan_referrers_task(plan, options).await?;
        // 3. The root, by tag (or by digest for a tagless target). A
        // registry that refuses to move an immutable tag (ECR) leaves a
        // conflict, as a tag left alone with force = false does.
        match self.execute_root(plan, &progress, &mut report).await {
            Err(e) if let Some(reason) = immutable_tag_refusal(&e) => {
                report.outcome = Outcome::TagConflict;
                report.conflict_reason = Some(reason);
                report.target_digest = plan
                    .target_current
                    .clone()
                    .unwrap_or(plan.root.digest.clone());
                report.duration = start.elapsed();
                return Ok(report);
            }
            other => other?,
        }
        report.duration = start.elapsed();
        tracing::info!(
            source = %report.source,
            target_ref = %report.target,
            digest = %report.target_digest,
            blobs_copied = report.blobs_copied,
            blobs_skipped = report.blobs_skipped,
            blobs_mounted = report.blobs_mounted,
            bytes = report.bytes_copied,
            "image copied"
        );
        Ok(report)
    }

    /// Check the image against `policy` at its source before anything of it
    /// is written: a rejection is [`CopyError::Rejected`]. With several
    /// targets, the image is judged once and each target gets the verdict.
    async fn enforce_policy(
        &self,
        plan: &Plan,
        p: &policy::Policy,
        share: Option<&SourceShare>,
    ) -> Result<(), CopyError> {
        let judge = || {
            policy::check(
                p,
                &self.client,
                &plan.source,
                &plan.source_digest,
                &plan.root,
            )
        };
        let verdict = match share {
            Some(share) => {
                share
                    .verdict(&plan.source_digest, &plan.root.digest, judge)
                    .await?
            }
            None => judge().await?,
        };
        match verdict {
            policy::Verdict::Accepted { signed } => {
                tracing::debug!(source = %plan.source, signed = ?signed, "signature policy satisfied");
                Ok(())
            }
            policy::Verdict::Rejected { reason, detail } => Err(CopyError::Rejected {
                image: plan.source.to_string(),
                reason,
                detail,
            }),
        }
    }

    /// Every blob of the plan, `blob_concurrency` at a time; counted in `report`.
    async fn execute_blobs(
        &self,
        plan: &Plan,
        options: &CopyOptions,
        progress: &Arc<dyn Progress>,
        report: &mut CopyReport,
    ) -> Result<(), CopyError> {
        let concurrency = options.blob_concurrency.max(1);
        // Boxed so that the futures are `Send` for any caller (a stream of
        // closures over borrowed steps trips rustc's higher-ranked `Send` check).
        let jobs: Vec<BoxFuture<'_, Result<(BlobOutcome, u64), CopyError>>> = plan
            .blobs
            .iter()
            .map(|b| {
                let progress = progress.clone();
                async move {
                    let outcome = self.ensure_blob(plan, b, &progress, options).await?;
                    progress.blob_done(&b.digest, b.size, outcome);
                    Ok((outcome, b.size))
                }
                .boxed()
            })
            .collect();
        let outcomes: Vec<(BlobOutcome, u64)> = futures_util::stream::iter(jobs)
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (outcome, _) in &outcomes {
            match outcome {
                BlobOutcome::Copied(n) => {
                    report.blobs_copied += 1;
                    report.bytes_copied += n;
                }
                BlobOutcome::Skipped => report.blobs_skipped += 1,
                BlobOutcome::Mounted => report.blobs_mounted += 1,
                BlobOutcome::Foreign => report.foreign_layers_skipped += 1,
            }
        }
        Ok(())
    }

    /// Child manifests by digest, children before parents. Each is pushed
    /// once per (target repository, digest); a parent is pushed only after
    /// every child it lists is confirmed in place.
    async fn execute_children(
        &self,
        plan: &Plan,
        progress: &Arc<dyn Progress>,
        report: &mut CopyReport,
    ) -> Result<(), CopyError> {
        for m in &plan.manifests {
            match &m.action {
                ManifestAction::Present => report.manifests_skipped += 1,
                ManifestAction::Push(raw) => {
                    let at = plan.target.with_digest(m.digest.clone());
                    if self.ensure_manifest(plan, &at, raw).await? {
                        report.manifests_copied += 1;
                    } else {
                        report.manifests_skipped += 1;
                    }
                }
            }
            progress.manifest_done(&m.digest);
        }
        Ok(())
    }

    /// The root, by tag (or by digest for a tagless target): pushed once
    /// per repository and digest; a further tag of the same root is one
    /// PUT, made after that push succeeded.
    async fn execute_root(
        &self,
        plan: &Plan,
        progress: &Arc<dyn Progress>,
        report: &mut CopyReport,
    ) -> Result<(), CopyError> {
        let root_ref = match plan.target.tag() {
            Some(_) => plan.target.without_digest(),
            None => plan.target.with_digest(plan.root.digest.clone()),
        };
        let mut pushed =
            !plan.root_present && self.ensure_manifest(plan, &root_ref, &plan.root).await?;
        if !pushed && plan.target.tag().is_some() {
            self.push_manifest(plan, &root_ref, &plan.root).await?;
            pushed = true;
        }
        if pushed {
            report.manifests_copied += 1;
        } else {
            report.manifests_skipped += 1;
        }
        progress.manifest_done(&plan.root.digest);
        Ok(())
    }

    /// PUT a manifest and check that the registry kept its digest.
    pub(super) async fn push_manifest(
        &self,
        plan: &Plan,
        at: &Reference,
        raw: &RawManifest,
    ) -> Result<(), CopyError> {
        let put = self.put_manifest_past_link_races(at, raw).await?;
        if let Some(subject) = put.subject {
            self.shared
                .referrers
                .note_confirmed(at, &raw.digest, subject);
        }
        let got = put.digest;
        if got != raw.digest {
            return Err(CopyError::DigestRewritten {
                image: plan.source.to_string(),
                target: at.to_string(),
                expected: raw.digest.clone(),
                actual: got,
            });
        }
        tracing::debug!(target_ref = %at, digest = %raw.digest, "manifest pushed");
        Ok(())
    }

    /// PUT a manifest, again after a short pause when the registry answers
    /// that a blob or child it references is unknown: distribution rewrites
    /// a repository's link of a blob or manifest in place (truncate, then
    /// write) when another process pushes the same content at that moment,
    /// and a parent's PUT that reads the link in between is refused with
    /// `MANIFEST_BLOB_UNKNOWN`. Within one process the engine never lets
    /// that happen; across processes (a CLI beside `serve`, two jobs) it
    /// can. Everything the manifest references was pushed or found before
    /// this PUT, so a refusal that persists over three tries (about 1.75 s)
    /// is real and is returned.
    async fn put_manifest_past_link_races(
        &self,
        at: &Reference,
        raw: &RawManifest,
    ) -> Result<crate::registry::transport::ManifestPut, crate::registry::Error> {
        let mut pause = std::time::Duration::from_millis(250);
        for _ in 0..3 {
            match self.client.put_manifest_answered(at, raw).await {
                Err(e) if is_link_race(&e) => {
                    tracing::debug!(target_ref = %at, error = %e, "manifest refused while a link was rewritten; trying again");
                    if !crate::registry::retry_wait(pause).await {
                        return Err(e);
                    }
                    pause *= 2;
                }
                other => return other,
            }
        }
        self.client.put_manifest_answered(at, raw).await
    }

    /// Check once per run that `r`'s host is a registry at all (see
    /// [`crate::registry::ping`]); every image of the run shares the answer.
    pub async fn ping(&self, r: &Reference) -> Result<(), CopyError> {
        let cell = {
            let mut pinged = self.shared.pinged.lock().unwrap_or_else(|p| p.into_inner());
            pinged.entry(r.registry().to_string()).or_default().clone()
        };
        cell.get_or_init(|| async { self.client.ping(r).await.map(|_| ()).map_err(Arc::new) })
            .await
            .clone()
            .map_err(CopyError::NotARegistry)
    }

    /// Record that `digest` is present in `repo`.
    fn remember(&self, repo: &Reference, digest: &Digest) {
        let mut known = self.shared.known.lock().unwrap_or_else(|p| p.into_inner());
        let repos = known.entry(repo.registry().to_string()).or_default();
        let new = repos.get(digest).is_none_or(|r| r != repo.repository());
        repos.insert(digest.clone(), repo.repository().to_string());
        drop(known);
        // Layouts mount among their own repositories for free: not recorded.
        if let Some(l) = self.locations.as_ref().filter(|_| new && !repo.is_layout()) {
            l.record(repo.registry(), repo.repository(), digest);
        }
    }

    /// A repository of `repo`'s registry, other than `repo`, known to hold
    /// `digest`: by this run, else by an earlier one (see [`BlobLocations`]).
    fn known_elsewhere(&self, repo: &Reference, digest: &Digest) -> Option<Reference> {
        let in_run = {
            let known = self.shared.known.lock().unwrap_or_else(|p| p.into_inner());
            known
                .get(repo.registry())
                .and_then(|m| m.get(digest))
                .cloned()
        };
        let other = match in_run {
            Some(other) if other != repo.repository() => other,
            Some(_) => return None,
            None if repo.is_layout() => return None,
            None => self
                .locations
                .as_ref()?
                .find(repo.registry(), digest)
                .into_iter()
                .find(|r| r != repo.repository())?,
        };
        Reference::new_repository(repo.registry(), &other).ok()
    }
}

/// Parse `--platform` values: comma-separated, repeatable.
pub fn parse_platforms<S: AsRef<str>>(
    values: &[S],
) -> Result<Vec<PlatformSpec>, crate::registry::platform::PlatformSpecError> {
    let mut out: Vec<PlatformSpec> = Vec::new();
    for v in values {
        for part in v
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let spec: PlatformSpec = part.parse()?;
            if !out.contains(&spec) {
                out.push(spec);
            }
        }
    }
    Ok(out)
}

/// `a, b` for a list of platform selectors.
pub(crate) fn specs_text(specs: &[PlatformSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A manifest PUT refused because a blob or child it references is unknown
/// to the repository at that moment (see
/// [`Copier::put_manifest_past_link_races`]).
fn is_link_race(e: &crate::registry::Error) -> bool {
    matches!(e, crate::registry::Error::Status { status: 400, codes, .. }
        if codes.iter().any(|c| c.code == "MANIFEST_BLOB_UNKNOWN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time check: the engine's futures can be spawned on a
    /// multi-threaded runtime (the daemon does), borrowed arguments and all.
    #[allow(dead_code)]
    fn futures_are_spawnable(c: Copier, s: Reference, t: Reference, o: CopyOptions) {
        tokio::spawn(async move {
            let _ = c.copy(&s, &t, &o).await;
            let _ = c
                .create_index(&t, std::slice::from_ref(&s), &Default::default())
                .await;
        });
    }

    #[test]
    fn parses_platform_lists() {
        let p =
            parse_platforms(&["linux/amd64,linux/arm64", "linux/arm/v7", "linux/amd64"]).unwrap();
        assert_eq!(specs_text(&p), "linux/amd64, linux/arm64, linux/arm/v7");
        assert!(parse_platforms(&["linux"]).is_err());
        assert!(parse_platforms::<&str>(&[]).unwrap().is_empty());
    }
}
