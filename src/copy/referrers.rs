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
//!    otherwise the target's fallback index is read without loss, the new
//!    entries appended (descriptors recomputed from the manifests), written,
//!    read back, and written again when another writer's update replaced
//!    it (see `fallback`);
//! 4. referrers of referrers follow, level by level (see `walk`), within
//!    the limits of one image's walk (referrers per subject, per image, and depth; see
//!    [`limits`]): what lies beyond them is left behind, counted and warned
//!    about once, and the image still mirrors. A listed referrer the source
//!    no longer has (deleted) is skipped and counted as `vanished`; a source
//!    fallback index that cannot be read is counted as `unreadable`.
//!
//! Fan-out: when the image goes to several targets, the source side of all
//! this (listings, fallback indexes, cosign tags' digests, referrer
//! manifests and blobs) is read once through the image's share (see
//! `source` and [`super::SourceShare`]); each target is asked on its own
//! what it lacks, and a target that fails fails alone.
//!
//! State and its lifetime: everything here lives in [`RunState`], created
//! with the run's [`Copier`] and dropped with it (one command, or one
//! scheduled cycle of `serve`): which repositories have the referrers API,
//! the tag lists taken once per repository (to look up fallback and cosign
//! tags without one request per digest; a tag added during the run is seen
//! by the next run), and which subjects this run has already handled. The
//! only state shared across runs is the lock table of fallback-index
//! writers ([`WriterLocks`], owned by the [`super::Engine`]), whose entries
//! live while a writer holds them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures_util::FutureExt;
use serde::Serialize;

use crate::registry::manifest::Manifest;
use crate::registry::referrers::{ApiAnswer, ReferrerInfo, fallback_tag};
use crate::registry::{Digest, RawManifest, Reference};

use super::plan::Plan;
use super::work::WorkKey;
use super::{Copier, CopyError, CopyOptions, Outcome};

mod fallback;
pub mod limits;
mod memory;
mod source;
mod walk;

pub use limits::ReferrerLimits;
pub use memory::ReferrerMemory;
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
    /// How much referrer work one image may cause (see [`limits`]).
    pub limits: ReferrerLimits,
}

impl ReferrerOptions {
    /// Referrers on, every type, cosign tags too: what `sync` and `import` do by default.
    pub fn all() -> ReferrerOptions {
        ReferrerOptions {
            enabled: true,
            types: Vec::new(),
            exclude_types: Vec::new(),
            cosign_tags: true,
            limits: ReferrerLimits::default(),
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
    /// Referrers not copied: those of the source index when a platform
    /// filter gives the index another digest, and those beyond the limits
    /// of the image's walk (per subject, per image, depth).
    pub left_behind: u64,
    /// Listed referrers the source no longer has (deleted): skipped.
    pub vanished: u64,
    /// Source fallback indexes that could not be read: their referrers
    /// were not copied (a failure of the image's referrers).
    pub unreadable: u64,
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
        self.vanished += o.vanished;
        self.unreadable += o.unreadable;
    }
}

type ApiCell = Arc<tokio::sync::Mutex<Option<bool>>>;
type TagCell = Arc<tokio::sync::OnceCell<Option<Arc<HashSet<String>>>>>;
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
    /// handled by this run, by the [`WorkKey`] of those parts.
    subjects: Mutex<HashMap<WorkKey, SubjectCell>>,
    /// (target registry, repository, manifest digest) → the subject the
    /// target confirmed (`OCI-Subject`) when this run pushed the manifest;
    /// taken by the referrer copy right after the push.
    confirmed: Mutex<HashMap<WorkKey, Digest>>,
}

impl RunState {
    /// Note the subject the target confirmed for the PUT of `digest` into `repo`.
    pub(super) fn note_confirmed(&self, repo: &Reference, digest: &Digest, subject: Digest) {
        let mut map = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(WorkKey::at(repo, digest), subject);
    }

    /// True when the target answered this run's PUT of `digest` into `repo`
    /// with an `OCI-Subject` header naming `subject`: it indexed the
    /// referrer itself.
    fn take_confirmed(&self, repo: &Reference, digest: &Digest, subject: &Digest) -> bool {
        let mut map = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&WorkKey::at(repo, digest))
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

/// The locks of the fallback-index writers, one per (registry, repository,
/// subject), owned by a [`super::Engine`]: one writer at a time among the
/// runs sharing that engine. Entries are weak: one lives while some writer
/// holds it.
#[derive(Default)]
pub(super) struct WriterLocks {
    locks: Mutex<HashMap<WorkKey, Weak<tokio::sync::Mutex<()>>>>,
}

impl WriterLocks {
    /// The lock of the one writer of `subject`'s fallback index in `repo`.
    fn lock(&self, repo: &Reference, subject: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let key = WorkKey::at(repo, subject);
        if let Some(l) = locks.get(&key).and_then(Weak::upgrade) {
            return l;
        }
        locks.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key, Arc::downgrade(&l));
        l
    }
}

/// The `artifactType` filter to ask a registry for: only with exactly one
/// wanted type (the API takes one).
fn server_filter(o: &ReferrerOptions) -> Option<&str> {
    (o.types.len() == 1).then(|| o.types[0].as_str())
}

/// The level a candidate referrer belongs to: where it comes from and
/// goes, whose referrer it is, and the counts it adds to.
struct Level<'a> {
    src: &'a Reference,
    dst: &'a Reference,
    subject: &'a Digest,
    options: &'a CopyOptions,
    counts: &'a mut ReferrerCounts,
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
        let platform_left = counts.left_behind;
        counts.add(
            &self
                .walk(&src, &dst, subjects, options, &plan.target)
                .await?,
        );
        if platform_left > 0 {
            tracing::warn!(
                source = %plan.source,
                target_ref = %plan.target,
                left_behind = platform_left,
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
            // An earlier run found neither the API nor a referrer tag here:
            // no probe while that finding is trusted (see `memory`).
            if self.remembers_none(&src, options) {
                return Ok(ReferrerCounts::default());
            }
            // The root's own lookup doubles as the API probe; where the
            // source has no API and no fallback or cosign tag at all, no
            // manifest of it has referrers and the target is not read.
            let filter = server_filter(&options.referrers);
            let answer = self
                .source_api(&src, source_digest, filter, options)
                .await?;
            let absent = matches!(answer, ApiAnswer::Absent);
            self.keep_answer(&src, source_digest, filter, answer);
            let none = absent && self.no_referrer_tags(&src).await;
            if let Some(m) = &self.referrer_memory {
                m.note(src.registry(), src.repository(), none);
            }
            if none {
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
        counts.add(&self.walk(&src, &dst, subjects, options, target).await?);
        record(&counts);
        Ok(counts)
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
            policy: None,
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
            let Some(digest) = self.source_tag_digest(&from, options).await? else {
                continue;
            };
            let report = match digest {
                Some(digest) => {
                    let there = self.client.head_manifest(&to).await?;
                    if there.and_then(|h| h.digest).as_ref() == Some(&digest) {
                        continue;
                    }
                    // By the digest the HEAD named: what was compared is
                    // what is copied, read once for every target of a fan-out.
                    self.plan_and_execute(&from, Some(&digest), &to, &opts)
                        .boxed()
                        .await?
                }
                None => self.copy(&from, &to, &opts).boxed().await?,
            };
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
        let key = (WorkKey::at(repo, subject), filter.map(str::to_string));
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
        kept.remove(&(WorkKey::at(repo, subject), filter.map(str::to_string)))
    }

    /// True when the memory of earlier runs trusts that `repo` has no
    /// referrers (see [`ReferrerMemory`]), within the options' age.
    fn remembers_none(&self, repo: &Reference, options: &CopyOptions) -> bool {
        let age = options.referrer_memory_age;
        self.referrer_memory.as_ref().is_some_and(|m| {
            !age.is_zero() && m.remembers_none(repo.registry(), repo.repository(), age)
        })
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
        let locks = WriterLocks::default();
        let writer_lock = |r: &Reference, s: &Digest| locks.lock(r, s);
        let a = writer_lock(&r, &s1);
        assert!(Arc::ptr_eq(&a, &writer_lock(&r, &s1)));
        assert!(!Arc::ptr_eq(&a, &writer_lock(&r, &s2)));
        let _g = a.lock().await;
        assert!(writer_lock(&r, &s1).try_lock().is_err());
    }
}
