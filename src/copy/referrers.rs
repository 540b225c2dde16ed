//! Referrers travel with the image: signatures, SBOMs and attestations whose
//! `subject` names a copied manifest, and cosign's `sha256-<hex>.sig/.att/.sbom`
//! tags.
//!
//! For every manifest of a copied image (the index and each child), before
//! the image's tag moves:
//! 1. the source's referrers of that digest are found (referrers API, else
//!    the fallback tag; see [`crate::registry::referrers`]), each read and
//!    kept only when its own `subject` is that digest and its type passes the
//!    mirror's type lists;
//! 2. each is copied by digest, byte for byte with its blobs, through the
//!    same deduplicated work as other manifests (it is planned and executed
//!    as an image of its own, tagless);
//! 3. the target learns about it: a target that answers the PUT with
//!    `OCI-Subject`, or that has the referrers API, needs nothing more;
//!    otherwise the target's fallback index is read, merged (descriptors
//!    recomputed from the manifests, deduplicated by digest), written, read
//!    back, and written again when another writer's update replaced it;
//! 4. referrers of referrers follow, to [`MAX_DEPTH`] levels.
//!
//! State and its lifetime: everything here lives in [`RunState`], created
//! with the run's [`Copier`] and dropped with it (one command, or one
//! scheduled cycle of `serve`): which repositories have the referrers API,
//! the tag lists taken once per repository (to look up fallback and cosign
//! tags without one request per digest; a tag added during the run is seen
//! by the next run), and which subjects this run has already handled. The
//! only process-wide state is the lock table of fallback-index writers
//! ([`writer_lock`]), whose entries live while a writer holds them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;

use crate::registry::manifest::Manifest;
use crate::registry::referrers::{
    ApiAnswer, ReferrerInfo, fallback_entries, fallback_index_bytes, fallback_tag, type_unknown,
};
use crate::registry::{Descriptor, Digest, RawManifest, Reference};

use super::plan::Plan;
use super::work::WorkKey;
use super::{Copier, CopyError, CopyOptions, Outcome};

/// Deepest chain of referrers followed (a signature of an SBOM of an image is depth 2).
pub const MAX_DEPTH: usize = 4;
/// Attempts to write a fallback index before giving up on lost updates.
const MAX_INDEX_ATTEMPTS: u32 = 6;
/// cosign's legacy tag suffixes: signatures, attestations, SBOMs.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// True for the tags referrers live under: a fallback tag `sha256-<hex>`
/// (any registered algorithm) or a cosign tag `sha256-<hex>.sig`, `.att`,
/// `.sbom`. A mirror that copies referrers leaves them out of its tag
/// selection: they are copied with the image they belong to (a fallback
/// index is rewritten for the target, never copied as such).
pub fn is_referrer_tag(tag: &str) -> bool {
    let base = COSIGN_SUFFIXES
        .iter()
        .find_map(|s| tag.strip_suffix(&format!(".{s}")))
        .unwrap_or(tag);
    let Some((alg, hex)) = base.split_once('-') else {
        return false;
    };
    matches!(alg, "sha256" | "sha512")
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Which referrers a copy takes along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferrerOptions {
    /// Copy referrers at all (off: the engine copies only the image graph).
    pub enabled: bool,
    /// Artifact types to copy; empty: every type.
    pub types: Vec<String>,
    /// Artifact types never copied (applied after `types`).
    pub exclude_types: Vec<String>,
    /// Copy cosign's `sha256-<hex>.sig`, `.att` and `.sbom` tags of each
    /// copied digest too (also when `enabled` is off).
    pub cosign_tags: bool,
}

impl ReferrerOptions {
    /// Referrers on, every type, cosign tags too: what `sync` and `import` do by default.
    pub fn all() -> ReferrerOptions {
        ReferrerOptions {
            enabled: true,
            types: Vec::new(),
            exclude_types: Vec::new(),
            cosign_tags: true,
        }
    }

    /// True when anything beyond the image graph is copied.
    pub fn active(&self) -> bool {
        self.enabled || self.cosign_tags
    }

    /// True when an artifact of type `t` is copied.
    pub fn wants(&self, t: &str) -> bool {
        (self.types.is_empty() || self.types.iter().any(|x| x == t))
            && !self.exclude_types.iter().any(|x| x == t)
    }
}

/// What happened to the referrers of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReferrerCounts {
    /// Referrers found on the source (their `subject` checked), all depths.
    pub found: u64,
    /// Referrers pushed to the target.
    pub copied: u64,
    /// Referrers the target already held and listed.
    pub skipped: u64,
    /// Referrers left out by `referrer_types` / `exclude_referrer_types`.
    pub filtered: u64,
    /// Fallback indexes (`sha256-<hex>` tags) written on the target.
    pub fallback_updates: u64,
    /// cosign tags (`.sig`, `.att`, `.sbom`) copied or moved.
    pub cosign_tags_copied: u64,
    /// Referrers of the source index that cannot follow a platform-filtered
    /// index (it has another digest): left behind.
    pub left_behind: u64,
}

impl ReferrerCounts {
    fn add(&mut self, o: &ReferrerCounts) {
        self.found += o.found;
        self.copied += o.copied;
        self.skipped += o.skipped;
        self.filtered += o.filtered;
        self.fallback_updates += o.fallback_updates;
        self.cosign_tags_copied += o.cosign_tags_copied;
        self.left_behind += o.left_behind;
    }
}

type ApiCell = Arc<tokio::sync::Mutex<Option<bool>>>;
type TagCell = Arc<tokio::sync::OnceCell<Option<Arc<HashSet<String>>>>>;
type SubjectKey = (String, String, String, String, Digest);
type SubjectCell = Arc<tokio::sync::OnceCell<Result<(), Arc<CopyError>>>>;

/// What one run remembers about referrers (see the module docs).
#[derive(Default)]
pub(super) struct RunState {
    /// (registry, repository) → has the referrers API (`None` until the
    /// first answer; its lock is held while that first request is out).
    api: Mutex<HashMap<(String, String), ApiCell>>,
    /// (registry, repository) → its tags, listed once per run (`None`: the
    /// listing failed; tags are then looked up one by one).
    tags: Mutex<HashMap<(String, String), TagCell>>,
    /// The source API's answer about an up-to-date image's root, asked as
    /// the probe and kept for the root's own lookup (taken once).
    kept: Mutex<HashMap<(WorkKey, Option<String>), ApiAnswer>>,
    /// (source registry, repository, target registry, repository, subject)
    /// handled by this run.
    subjects: Mutex<HashMap<SubjectKey, SubjectCell>>,
    /// (target registry, repository, manifest digest) → the subject the
    /// target confirmed (`OCI-Subject`) when this run pushed the manifest;
    /// taken by the referrer copy right after the push.
    confirmed: Mutex<HashMap<WorkKey, Digest>>,
}

impl RunState {
    /// Note the subject the target confirmed for the PUT of `digest` into `repo`.
    pub(super) fn note_confirmed(&self, repo: &Reference, digest: &Digest, subject: Digest) {
        let (registry, repository) = repo_key(repo);
        let mut map = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((registry, repository, digest.clone()), subject);
    }

    /// True when the target answered this run's PUT of `digest` into `repo`
    /// with an `OCI-Subject` header naming `subject`: it indexed the
    /// referrer itself.
    fn take_confirmed(&self, repo: &Reference, digest: &Digest, subject: &Digest) -> bool {
        let (registry, repository) = repo_key(repo);
        let mut map = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(registry, repository, digest.clone()))
            .is_some_and(|s| s == *subject)
    }
}

fn repo_key(r: &Reference) -> (String, String) {
    (r.registry().to_string(), r.repository().to_string())
}

/// The entry of `key` in one of a run's maps, made empty when missing; the
/// map lives as long as the run (see [`RunState`]).
fn run_entry<K: Eq + std::hash::Hash, V: Default + Clone>(map: &Mutex<HashMap<K, V>>, key: K) -> V {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The lock of the one writer of `subject`'s fallback index in `repo`, in
/// this process. Entries are weak: one lives while some writer holds it.
fn writer_lock(repo: &Reference, subject: &Digest) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<HashMap<WorkKey, Weak<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (
        repo.registry().to_string(),
        repo.repository().to_string(),
        subject.clone(),
    );
    if let Some(l) = locks.get(&key).and_then(Weak::upgrade) {
        return l;
    }
    locks.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(key, Arc::downgrade(&l));
    l
}

/// The `artifactType` filter to ask a registry for: only with exactly one
/// wanted type (the API takes one).
fn server_filter(o: &ReferrerOptions) -> Option<&str> {
    (o.types.len() == 1).then(|| o.types[0].as_str())
}

/// A referrer found on the source.
struct Found {
    raw: RawManifest,
    info: ReferrerInfo,
}

/// Aborts the task when dropped: a copy that is cancelled takes its
/// referrer work down with it.
struct AbortOnDrop(tokio::task::JoinHandle<Result<ReferrerCounts, CopyError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Copier {
    /// [`Copier::copy_plan_referrers`] in a task of its own: the referrer
    /// copies nest whole image copies, and a task starts from the bottom of
    /// a worker's stack instead of below the image's own copy (the daemon's
    /// worker threads have small stacks).
    pub(super) async fn plan_referrers_task(
        &self,
        plan: &Plan,
        options: &CopyOptions,
    ) -> Result<ReferrerCounts, CopyError> {
        if !options.referrers.active() {
            return Ok(ReferrerCounts::default());
        }
        let (me, plan, options) = (self.clone(), plan.clone(), options.clone());
        let mut task = AbortOnDrop(tokio::spawn(async move {
            me.copy_plan_referrers(&plan, &options).await
        }));
        (&mut task.0).await.map_err(|e| CopyError::Invalid {
            image: "referrers".to_string(),
            detail: format!("the referrer copy stopped: {e}"),
        })?
    }

    /// Copy the referrers of every manifest of `plan`'s image (root and
    /// children), and cosign tags, from its source repository to its target
    /// repository. Called before the root's tag is written.
    pub(super) async fn copy_plan_referrers(
        &self,
        plan: &Plan,
        options: &CopyOptions,
    ) -> Result<ReferrerCounts, CopyError> {
        let mut counts = ReferrerCounts::default();
        let (src, dst) = (plan.source.repository_only(), plan.target.repository_only());
        if !options.referrers.active() || repo_key(&src) == repo_key(&dst) {
            return Ok(counts);
        }
        let mut subjects: Vec<Digest> = Vec::new();
        if plan.digest_changed() && options.referrers.enabled {
            // A filtered index is new: nothing at the source refers to it,
            // and what refers to the source index cannot follow it.
            let mut scratch = ReferrerCounts::default();
            counts.left_behind = self
                .source_candidates(&src, &plan.source_digest, options, &mut scratch)
                .await?
                .len() as u64;
        } else {
            subjects.push(plan.root.digest.clone());
        }
        for m in &plan.manifests {
            subjects.push(m.digest.clone());
        }
        if let Ok(Manifest::Index(i)) = plan.root.parse() {
            subjects.extend(i.manifests.iter().map(|d| d.digest.clone()));
        }
        let mut seen = HashSet::new();
        subjects.retain(|d| seen.insert(d.clone()));
        counts.add(&self.referrers_of_all(&src, &dst, subjects, options).await?);
        if counts.left_behind > 0 {
            tracing::warn!(
                source = %plan.source,
                target = %plan.target,
                left_behind = counts.left_behind,
                "the platform filter gives the index a new digest: referrers of the source index \
                 (its signatures) cannot follow it; referrers of the kept platforms do"
            );
        }
        record(&counts);
        Ok(counts)
    }

    /// Bring the referrers of an image the target already holds up to date:
    /// `target` names the image (tag or digest) in the target repository,
    /// `source` its source. The target's manifest is read (not the
    /// source's, which may cost a pull) to find the children.
    /// Runs in a task of its own (see [`Copier::plan_referrers_task`]).
    pub async fn sync_referrers(
        &self,
        source: &Reference,
        target: &Reference,
        source_digest: &Digest,
        options: &CopyOptions,
    ) -> Result<ReferrerCounts, CopyError> {
        let me = self.clone();
        let (source, target) = (source.clone(), target.clone());
        let (digest, options) = (source_digest.clone(), options.clone());
        let mut task = AbortOnDrop(tokio::spawn(async move {
            me.sync_referrers_here(&source, &target, &digest, &options)
                .await
        }));
        (&mut task.0).await.map_err(|e| CopyError::Invalid {
            image: "referrers".to_string(),
            detail: format!("the referrer copy stopped: {e}"),
        })?
    }

    async fn sync_referrers_here(
        &self,
        source: &Reference,
        target: &Reference,
        source_digest: &Digest,
        options: &CopyOptions,
    ) -> Result<ReferrerCounts, CopyError> {
        let (src, dst) = (source.repository_only(), target.repository_only());
        if !options.referrers.active() || repo_key(&src) == repo_key(&dst) {
            return Ok(ReferrerCounts::default());
        }
        if options.referrers.enabled {
            // The root's own lookup doubles as the API probe; where the
            // source has no API and no fallback or cosign tag at all, no
            // manifest of it has referrers and the target is not read.
            let filter = server_filter(&options.referrers);
            let answer = self.api_listing(&src, source_digest, filter).await?;
            let absent = matches!(answer, ApiAnswer::Absent);
            self.keep_answer(&src, source_digest, filter, answer);
            if absent && self.no_referrer_tags(&src).await {
                return Ok(ReferrerCounts::default());
            }
        } else if self.no_referrer_tags(&src).await {
            return Ok(ReferrerCounts::default());
        }
        let root = self.client.get_manifest(target).await?;
        let mut subjects = Vec::new();
        let mut counts = ReferrerCounts::default();
        if root.digest == *source_digest {
            subjects.push(root.digest.clone());
        } else if options.referrers.enabled {
            let mut scratch = ReferrerCounts::default();
            counts.left_behind = self
                .source_candidates(&src, source_digest, options, &mut scratch)
                .await?
                .len() as u64;
        }
        if let Ok(Manifest::Index(i)) = root.parse() {
            subjects.extend(i.manifests.iter().map(|d| d.digest.clone()));
        }
        counts.add(&self.referrers_of_all(&src, &dst, subjects, options).await?);
        record(&counts);
        Ok(counts)
    }

    /// [`Copier::referrers_of`] for several subjects at once.
    async fn referrers_of_all(
        &self,
        src: &Reference,
        dst: &Reference,
        subjects: Vec<Digest>,
        options: &CopyOptions,
    ) -> Result<ReferrerCounts, CopyError> {
        let concurrency = options.blob_concurrency.max(1);
        let jobs: Vec<_> = subjects
            .into_iter()
            .map(|s| async move { self.referrers_of(src, dst, s, options, 0).await })
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

    /// Copy the referrers of `subject` (and their referrers, to
    /// [`MAX_DEPTH`]), and at depth 0 its cosign tags. Once per run per
    /// (target repository, subject): a second image sharing a child finds it done.
    fn referrers_of<'a>(
        &'a self,
        src: &'a Reference,
        dst: &'a Reference,
        subject: Digest,
        options: &'a CopyOptions,
        depth: usize,
    ) -> BoxFuture<'a, Result<ReferrerCounts, CopyError>> {
        async move {
            let key = (
                src.registry().to_string(),
                src.repository().to_string(),
                dst.registry().to_string(),
                dst.repository().to_string(),
                subject.clone(),
            );
            let cell = run_entry(&self.shared.referrers.subjects, key);
            let mut counts = ReferrerCounts::default();
            let result = cell
                .get_or_init(|| async {
                    self.referrers_once(src, dst, &subject, options, depth, &mut counts)
                        .await
                        .map_err(Arc::new)
                })
                .await
                .clone();
            result.map(|()| counts).map_err(CopyError::Shared)
        }
        .boxed()
    }

    async fn referrers_once(
        &self,
        src: &Reference,
        dst: &Reference,
        subject: &Digest,
        options: &CopyOptions,
        depth: usize,
        counts: &mut ReferrerCounts,
    ) -> Result<(), CopyError> {
        if options.referrers.cosign_tags {
            counts.cosign_tags_copied += self.copy_cosign_tags(src, dst, subject, options).await?;
        }
        if !options.referrers.enabled {
            return Ok(());
        }
        let candidates = self
            .source_candidates(src, subject, options, counts)
            .await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let (target_api, listed) = self.target_listing(dst, subject).await?;
        let mut add: Vec<Descriptor> = Vec::new();
        let by_digest = CopyOptions {
            platforms: Vec::new(),
            force: false,
            referrers: ReferrerOptions::default(),
            ..options.clone()
        };
        for d in &candidates {
            // Listed at the target: it was checked when it was copied (or
            // the target's API indexed it by its own subject); not fetched again.
            if listed.contains(&d.digest) {
                counts.found += 1;
                counts.skipped += 1;
            } else {
                let Some(f) = self.verified(src, subject, d, options, counts).await? else {
                    continue;
                };
                counts.found += 1;
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
                if !target_api && !confirmed {
                    add.push(f.info.descriptor(&f.raw));
                }
            }
            if depth + 1 < MAX_DEPTH {
                let deeper = self
                    .referrers_of(src, dst, d.digest.clone(), options, depth + 1)
                    .await?;
                counts.add(&deeper);
            }
        }
        if !add.is_empty() && self.update_fallback_index(dst, subject, &add).await? {
            counts.fallback_updates += 1;
        }
        Ok(())
    }

    /// What the source lists as referrers of `subject` (API, else fallback
    /// tag), minus entries whose listed type the type lists refuse.
    async fn source_candidates(
        &self,
        src: &Reference,
        subject: &Digest,
        options: &CopyOptions,
        counts: &mut ReferrerCounts,
    ) -> Result<Vec<Descriptor>, CopyError> {
        let ro = &options.referrers;
        let answer = match self.kept_answer(src, subject, server_filter(ro)) {
            Some(a) => a,
            None => self.api_listing(src, subject, server_filter(ro)).await?,
        };
        let (candidates, trusted_filter) = match answer {
            ApiAnswer::Absent => (self.fallback_candidates(src, subject).await?, false),
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
        let raw = self.fetch_root(&src.with_digest(d.digest.clone())).await?;
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

    /// Candidates of the fallback index of `subject` in `repo`.
    async fn fallback_candidates(
        &self,
        repo: &Reference,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, CopyError> {
        if self.tag_absent(repo, &fallback_tag(subject)).await {
            return Ok(Vec::new());
        }
        self.current_fallback(repo, subject).await
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
        let listed = self
            .fallback_candidates(dst, subject)
            .await?
            .into_iter()
            .map(|d| d.digest)
            .collect();
        Ok((false, listed))
    }

    /// Add `add` to the fallback index of `subject` in `dst`: read, merge
    /// (deduplicated by digest), write, read back; again when the read-back
    /// misses an entry (another writer replaced the index in between). One
    /// writer per (repository, subject) in this process at a time. True when
    /// this call wrote the index.
    async fn update_fallback_index(
        &self,
        dst: &Reference,
        subject: &Digest,
        add: &[Descriptor],
    ) -> Result<bool, CopyError> {
        let lock = writer_lock(dst, subject);
        let _guard = lock.lock().await;
        let at = dst
            .with_tag(&fallback_tag(subject))
            .map_err(|e| CopyError::Invalid {
                image: dst.to_string(),
                detail: e.to_string(),
            })?;
        let missing_from = |entries: &[Descriptor]| -> Vec<Descriptor> {
            add.iter()
                .filter(|d| !entries.iter().any(|e| e.digest == d.digest))
                .cloned()
                .collect()
        };
        let mut wrote = false;
        for attempt in 1..=MAX_INDEX_ATTEMPTS {
            let mut entries = self.current_fallback(dst, subject).await?;
            let missing = missing_from(&entries);
            if missing.is_empty() {
                return Ok(wrote);
            }
            if attempt > 1 {
                tracing::info!(target = %at, attempt, "fallback index lost an update to another writer; merging again");
                crate::metrics::record_fallback_retry();
            }
            entries.extend(missing);
            let raw = fallback_index_bytes(&entries);
            self.client.put_manifest(&at, &raw).await?;
            wrote = true;
            // Read back twice, after a pause each: a writer in another
            // process that read before this write lands its own within a
            // request or two, and a read-back after it sees the loss. (No
            // registry here honours `If-Match`, so a loss later than that
            // is only repaired by the next run, which compares the listings.)
            let mut kept = true;
            for _ in 0..2 {
                tokio::time::sleep(jitter(attempt)).await;
                if !missing_from(&self.current_fallback(dst, subject).await?).is_empty() {
                    kept = false;
                    break;
                }
            }
            if kept {
                return Ok(true);
            }
        }
        Err(CopyError::Invalid {
            image: at.to_string(),
            detail: format!(
                "the fallback index of {subject} kept losing updates to other writers after \
                 {MAX_INDEX_ATTEMPTS} attempts; its referrers were copied by digest, and the next \
                 run merges them into the index again"
            ),
        })
    }

    /// The entries of `subject`'s fallback index in `dst`, read now.
    async fn current_fallback(
        &self,
        dst: &Reference,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, CopyError> {
        Ok(self
            .client
            .fallback_index(dst, subject)
            .await?
            .map(|i| fallback_entries(&i))
            .unwrap_or_default())
    }

    /// Copy cosign's tags of `subject` that the source has and the target
    /// lacks or holds at another digest (cosign appends to the same tag, so
    /// a moved tag is copied again). The count of tags copied.
    async fn copy_cosign_tags(
        &self,
        src: &Reference,
        dst: &Reference,
        subject: &Digest,
        options: &CopyOptions,
    ) -> Result<u64, CopyError> {
        let mut copied = 0;
        let opts = CopyOptions {
            platforms: Vec::new(),
            force: true,
            referrers: ReferrerOptions::default(),
            ..options.clone()
        };
        for suffix in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(subject));
            if self.tag_absent(src, &tag).await {
                continue;
            }
            let (Ok(from), Ok(to)) = (src.with_tag(&tag), dst.with_tag(&tag)) else {
                continue;
            };
            let Some(head) = self.client.head_manifest(&from).await? else {
                continue;
            };
            if head.digest.is_some() {
                let there = self.client.head_manifest(&to).await?;
                if there.and_then(|h| h.digest) == head.digest {
                    continue;
                }
            }
            let report = self.copy(&from, &to, &opts).boxed().await?;
            if report.outcome == Outcome::Copied {
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// Take `tags` as `repo`'s tag list for this run (a listing the caller
    /// has just made), unless the run listed it already.
    pub fn remember_tags(&self, repo: &Reference, tags: &[String]) {
        let _ = self
            .tag_cell(repo)
            .set(Some(Arc::new(tags.iter().cloned().collect())));
    }

    /// The run's cell for `repo`'s tag list, empty until listed.
    fn tag_cell(&self, repo: &Reference) -> TagCell {
        run_entry(&self.shared.referrers.tags, repo_key(repo))
    }

    /// True when `repo`'s tag list (taken once per run) lacks `tag`; false
    /// when it has it or could not be listed.
    async fn tag_absent(&self, repo: &Reference, tag: &str) -> bool {
        self.tag_list(repo).await.is_some_and(|t| !t.contains(tag))
    }

    /// `repo`'s tags, listed once per run; `None` when listing failed.
    async fn tag_list(&self, repo: &Reference) -> Option<Arc<HashSet<String>>> {
        let cell = self.tag_cell(repo);
        let listed = cell
            .get_or_init(|| async {
                match self.client.list_tags_unreported(repo).await {
                    Ok(l) => Some(Arc::new(l.tags.into_iter().collect())),
                    Err(e) => {
                        tracing::debug!(repository = %repo.name(), error = %e, "tags not listed: looking up referrer tags one by one");
                        None
                    }
                }
            })
            .await;
        listed.clone()
    }

    /// Keep an answer of the source's API about `subject` for the one
    /// lookup of it that follows in this run.
    fn keep_answer(
        &self,
        repo: &Reference,
        subject: &Digest,
        filter: Option<&str>,
        answer: ApiAnswer,
    ) {
        let mut kept = self
            .shared
            .referrers
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (registry, repository) = repo_key(repo);
        let key = (
            (registry, repository, subject.clone()),
            filter.map(str::to_string),
        );
        kept.insert(key, answer);
    }

    fn kept_answer(
        &self,
        repo: &Reference,
        subject: &Digest,
        filter: Option<&str>,
    ) -> Option<ApiAnswer> {
        let mut kept = self
            .shared
            .referrers
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (registry, repository) = repo_key(repo);
        kept.remove(&(
            (registry, repository, subject.clone()),
            filter.map(str::to_string),
        ))
    }

    /// True when `repo`'s tag list (taken once per run) holds no fallback
    /// or cosign tag at all; false when it does or could not be listed.
    async fn no_referrer_tags(&self, repo: &Reference) -> bool {
        self.tag_list(repo)
            .await
            .is_some_and(|t| !t.iter().any(|t| is_referrer_tag(t)))
    }

    /// The referrers API's answer about `subject` in `repo`, asked only
    /// while the run does not know the repository lacks the API. The first
    /// request to a repository is the probe; others wait for its answer.
    async fn api_listing(
        &self,
        repo: &Reference,
        subject: &Digest,
        filter: Option<&str>,
    ) -> Result<ApiAnswer, CopyError> {
        let cell = run_entry(&self.shared.referrers.api, repo_key(repo));
        let mut known = cell.lock().await;
        if *known == Some(false) {
            return Ok(ApiAnswer::Absent);
        }
        if known.is_some() {
            drop(known);
            return Ok(self.client.referrers_api(repo, subject, filter).await?);
        }
        let answer = self.client.referrers_api(repo, subject, filter).await?;
        *known = Some(matches!(answer, ApiAnswer::Listed { .. }));
        Ok(answer)
    }
}

fn record(c: &ReferrerCounts) {
    crate::metrics::record_referrers(
        c.found,
        c.copied,
        c.skipped,
        c.filtered,
        c.fallback_updates,
        c.cosign_tags_copied,
    );
}

/// A short, varying pause before reading a fallback index back.
fn jitter(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(u64::from(20 * attempt + nanos % 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_lists() {
        let all = ReferrerOptions::all();
        assert!(all.wants("application/x"));
        let only = ReferrerOptions {
            types: vec!["a".into(), "b".into()],
            exclude_types: vec!["b".into()],
            ..all
        };
        assert!(only.wants("a"));
        assert!(!only.wants("b"));
        assert!(!only.wants("c"));
    }

    #[test]
    fn referrer_tags() {
        let d = Digest::sha256_of(b"x");
        let t = fallback_tag(&d);
        assert!(is_referrer_tag(&t));
        for s in COSIGN_SUFFIXES {
            assert!(is_referrer_tag(&format!("{t}.{s}")));
        }
        assert!(!is_referrer_tag(&format!("{t}.txt")));
        assert!(!is_referrer_tag("sha256-abc"));
        assert!(!is_referrer_tag("latest"));
        assert!(!is_referrer_tag(&t.to_uppercase()));
    }

    #[tokio::test]
    async fn one_writer_lock_per_subject() {
        let r = Reference::parse("localhost:1/a").unwrap();
        let (s1, s2) = (Digest::sha256_of(b"1"), Digest::sha256_of(b"2"));
        let a = writer_lock(&r, &s1);
        assert!(Arc::ptr_eq(&a, &writer_lock(&r, &s1)));
        assert!(!Arc::ptr_eq(&a, &writer_lock(&r, &s2)));
        let _g = a.lock().await;
        assert!(writer_lock(&r, &s1).try_lock().is_err());
    }
}
