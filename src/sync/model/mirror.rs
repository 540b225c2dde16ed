//! One validated `[[mirror]]` and the tags it selects.

use super::backup::Backup;
use super::discovery::Discovery;
use super::prune::Prune;
use crate::registry::{Digest, PlatformSpec, Reference};
use crate::sync::filter::TagFilter;
use crate::sync::schedule::Schedule;

/// Which images of the source a mirror copies.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The source pins a digest: just that image.
    Digest(Digest),
    /// Exactly these tags; no tag listing needed.
    Tags(Vec<String>),
    /// List the source's tags and keep those the filter passes, plus `tags`.
    Filtered {
        /// Tags always copied, listed or not.
        tags: Vec<String>,
        /// The filter over listed tags.
        filter: TagFilter,
    },
    /// Every tag of the source repository.
    All,
}

impl Selection {
    /// True when the source's tags must be listed.
    pub fn needs_listing(&self) -> bool {
        matches!(self, Selection::Filtered { .. } | Selection::All)
    }
}

/// One `[[mirror]]`, validated.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Unique name, used in logs and metric labels.
    pub name: String,
    /// Source repository (no tag or digest: those live in `selection`).
    pub source: Reference,
    /// Target repository (no tag or digest); with `targets`, the first.
    pub target: Reference,
    /// `targets` after the first: further target repositories that receive
    /// the same images under the same tags, each source image read once for
    /// all of them (see [`crate::copy::SourceShare`]). Empty for a mirror
    /// with one target. For a mirror that discovers its repositories these
    /// stand for its further target trees, as `target` does for the first
    /// (the trees themselves are in its `discovery`); each discovered job
    /// has its own.
    pub more_targets: Vec<Reference>,
    /// Target tag for a single-image mirror whose target names a tag.
    pub target_tag: Option<String>,
    /// What to copy.
    pub selection: Selection,
    /// Platforms to keep; empty: every platform, index digest preserved.
    pub platforms: Vec<PlatformSpec>,
    /// Copy what matches when a platform of `platforms` is missing from a
    /// source image, instead of failing the image.
    pub platforms_optional: bool,
    /// Convert Docker schema 1 source images to schema 2 (a new digest)
    /// instead of reporting them unsupported.
    pub convert_schema1: bool,
    /// When `serve` runs it.
    pub schedule: Schedule,
    /// When `serve` audits it (`regmirror verify` of its images); `None`: never.
    pub audit_schedule: Option<Schedule>,
    /// Overwrite target tags that point at another digest.
    pub force: bool,
    /// Referrers and cosign tags copied with each image.
    pub referrers: crate::copy::ReferrerOptions,
    /// `prune` and `max_prune` (see [`crate::sync::prune`]).
    pub prune: Prune,
    /// `backup` and `backup_keep` (see [`crate::sync::backup`]); `None`: no backups.
    pub backup: Option<Backup>,
    /// `repositories`: the source is a registry or a namespace whose
    /// repositories are discovered at each run (see [`crate::sync::discover`]);
    /// `source` and `target` then stand for the namespace and the target
    /// prefix and are never requested themselves.
    pub discovery: Option<Discovery>,
    /// `immutable_tags`, `full_check_every` and `min_age` (see
    /// [`crate::sync::state`]).
    pub state: super::state::StatePolicy,
    /// `policy`: signatures an image must carry before it is written;
    /// `None`: none checked.
    pub policy: Option<std::sync::Arc<crate::copy::policy::Policy>>,
}

impl Mirror {
    /// Every target repository: `target`, then `more_targets`.
    pub fn targets(&self) -> impl Iterator<Item = &Reference> {
        std::iter::once(&self.target).chain(&self.more_targets)
    }

    /// True when the mirror writes to several targets (fan-out).
    pub fn fans_out(&self) -> bool {
        !self.more_targets.is_empty()
    }

    /// The warnings of [`Mirror::target_warning_for`], one per target that
    /// has one.
    pub fn target_warnings(&self) -> Vec<String> {
        self.targets()
            .filter_map(|t| self.target_warning_for(t))
            .collect()
    }

    /// A warning when a single image (a source with a tag or digest) lands
    /// in a one-segment target repository named unlike the source
    /// (`registry.k8s.io/pause:3.9` to `localhost:5000/m` writes
    /// `localhost:5000/m:3.9`): for such a mirror `target` is the repository
    /// itself, not a prefix the source's path is kept under.
    pub fn target_warning_for(&self, target: &Reference) -> Option<String> {
        let single = match &self.selection {
            Selection::Digest(_) => true,
            Selection::Tags(t) => t.len() == 1,
            _ => false,
        };
        let repo = target.repository();
        let source_name = self.source.repository().rsplit('/').next()?;
        if !single
            || self.discovery.is_some()
            || target.is_layout()
            || repo.contains('/')
            || repo == source_name
        {
            return None;
        }
        let written = self.written_as(target)?;
        Some(format!(
            "mirror {}: the source {} is a single image, so target {} is its repository (the \
             image is written as {written}), not a prefix the source's path is kept under; to \
             keep the source's name write target = \"{}/{repo}/{source_name}\" (or give the \
             registry host alone to keep the whole path)",
            self.name,
            self.source,
            target,
            target.registry(),
        ))
    }

    /// Where a single-image mirror writes its image in `target`: the
    /// target tag, or the digest when it writes no tag.
    fn written_as(&self, target: &Reference) -> Option<Reference> {
        match (&self.selection, &self.target_tag) {
            (Selection::Tags(t), tag) => target
                .with_tag(tag.as_deref().or(t.first().map(String::as_str))?)
                .ok(),
            (Selection::Digest(_), Some(tag)) => target.with_tag(tag).ok(),
            (Selection::Digest(d), None) => Some(target.with_digest(d.clone())),
            _ => None,
        }
    }

    /// `pair`'s target (the image in `target`) in another target
    /// repository `to`: same tag, or same digest.
    pub fn retarget(
        pair: &(Reference, Reference),
        to: &Reference,
    ) -> Result<(Reference, Reference), crate::registry::reference::ReferenceError> {
        let (source, target) = pair;
        let moved = match (target.tag(), target.digest()) {
            (Some(tag), _) => to.with_tag(tag)?,
            (None, Some(d)) => to.with_digest(d.clone()),
            (None, None) => to.clone(),
        };
        Ok((source.clone(), moved))
    }

    /// The (source, target) image pair for one source tag; an error when
    /// the tag breaks the tag grammar.
    pub fn pair_for_tag(
        &self,
        tag: &str,
    ) -> Result<(Reference, Reference), crate::registry::reference::ReferenceError> {
        let target_tag = self.target_tag.as_deref().unwrap_or(tag);
        Ok((
            self.source.with_tag(tag)?,
            self.target.with_tag(target_tag)?,
        ))
    }

    /// The (source, target) pair of a digest-pinned mirror.
    pub fn pair_for_digest(
        &self,
        digest: &Digest,
        source_tag: Option<&str>,
    ) -> Result<(Reference, Reference), crate::registry::reference::ReferenceError> {
        let source = self.source.with_digest(digest.clone());
        let target = match self.target_tag.as_deref().or(source_tag) {
            Some(t) => self.target.with_tag(t)?,
            None => self.target.with_digest(digest.clone()),
        };
        Ok((source, target))
    }
}
