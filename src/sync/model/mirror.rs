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
    /// Target repository (no tag or digest).
    pub target: Reference,
    /// Target tag for a single-image mirror whose target names a tag.
    pub target_tag: Option<String>,
    /// What to copy.
    pub selection: Selection,
    /// Platforms to keep; empty: every platform, index digest preserved.
    pub platforms: Vec<PlatformSpec>,
    /// When `serve` runs it.
    pub schedule: Schedule,
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
}

impl Mirror {
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
