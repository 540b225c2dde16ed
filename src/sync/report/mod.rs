//! The one result report of `import`, `index create` and `sync`, and of a
//! run of `serve`'s sync-now API: the JSON document specified in
//! `docs/report.md` and `docs/report.schema.json`, built from the engine's
//! reports. Its constructors and text lines are in `build`; printing it is
//! the command line's.

use serde::Serialize;

use crate::copy::policy::RejectReason;
use crate::copy::{CopyError, CopyReport, Outcome, ReferrerCounts};
use crate::registry::ErrorKind;
use crate::sync::prune::PruneReport;
use crate::sync::run::{ImageReport, ImageResult, RunResult};

mod build;

/// Version of the JSON document; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to one image: the same words for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageWord {
    /// Copied and tagged.
    Copied,
    /// The target already held the digest; nothing copied.
    UpToDate,
    /// Dry run: a real run would copy.
    WouldCopy,
    /// The target tag holds another digest; nothing copied.
    Conflict,
    /// Failed; see `error`.
    Failed,
    /// Not started: the command was interrupted.
    Cancelled,
    /// Not copied now, to keep a registry's pull budget floor; see `deferral`.
    Deferred,
    /// Not copied: a format regmirror does not copy (Docker schema 1); see `error`.
    Unsupported,
    /// Not copied yet: the source digest is younger than the mirror's
    /// `min_age`; see `held`.
    Held,
    /// Not copied: the image fails a signature policy; see `rejection`.
    Rejected,
}

impl ImageWord {
    /// The word in text output.
    pub fn text(self) -> &'static str {
        match self {
            ImageWord::Copied => "copied",
            ImageWord::UpToDate => "up to date",
            ImageWord::WouldCopy => "would copy",
            ImageWord::Conflict => "conflict",
            ImageWord::Failed => "failed",
            ImageWord::Cancelled => "cancelled",
            ImageWord::Deferred => "deferred",
            ImageWord::Unsupported => "unsupported",
            ImageWord::Held => "held",
            ImageWord::Rejected => "rejected",
        }
    }
}

/// How the command went as a whole; each word has one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandWord {
    /// Exit 0.
    Success,
    /// Exit 1.
    Failed,
    /// Exit 2: bad arguments or config, found before any registry was contacted.
    Invalid,
    /// Exit 3: some images failed, others succeeded.
    Partial,
    /// Exit 4: nothing copied because of a tag conflict.
    Conflict,
    /// Exit 130.
    Interrupted,
    /// Exit 5: `sync` deferred images to keep a pull budget floor; none failed.
    Deferred,
}

impl CommandWord {
    /// The exit code of this result.
    pub fn code(self) -> u8 {
        match self {
            CommandWord::Success => 0,
            CommandWord::Failed => 1,
            CommandWord::Invalid => 2,
            CommandWord::Partial => 3,
            CommandWord::Conflict => 4,
            CommandWord::Interrupted => 130,
            CommandWord::Deferred => 5,
        }
    }
}

/// Counts over every image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub images: u64,
    pub copied: u64,
    pub up_to_date: u64,
    pub would_copy: u64,
    pub conflict: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub manifests_pushed: u64,
    pub manifests_present: u64,
    pub blobs_copied: u64,
    pub blobs_present: u64,
    pub blobs_mounted: u64,
    pub bytes_copied: u64,
    pub referrers_found: u64,
    pub referrers_copied: u64,
    pub fallback_index_updates: u64,
    pub deferred: u64,
    pub unsupported: u64,
    /// Images held by `min_age`.
    pub held: u64,
    /// Images rejected by a signature policy.
    pub rejected: u64,
    pub pruned: u64,
    pub backups: u64,
}

/// One image.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub mirror: Option<String>,
    pub source: Option<String>,
    pub target: String,
    pub result: ImageWord,
    pub source_digest: Option<String>,
    pub target_digest: Option<String>,
    pub previous_digest: Option<String>,
    /// The Docker schema 1 digest the image was converted from
    /// (`convert_schema1`), when it was.
    pub converted_from: Option<String>,
    pub digest_changed: bool,
    pub platforms_kept: Vec<String>,
    /// Requested platforms the source does not have (copied anyway with
    /// `platforms_optional`).
    pub platforms_missing: Vec<String>,
    pub manifests_pushed: u64,
    pub manifests_present: u64,
    pub blobs_copied: u64,
    pub blobs_present: u64,
    pub blobs_mounted: u64,
    pub foreign_layers_skipped: u64,
    pub bytes_copied: u64,
    pub duration_seconds: f64,
    pub error: Option<String>,
    /// What kind of failure, when the image failed and the kind is known.
    pub error_kind: Option<ErrorKind>,
    pub referrers: ReferrerCounts,
    /// Why the image was deferred (pull budget), when it was.
    pub deferral: Option<crate::registry::ratelimit::Refusal>,
    pub backup_tag: Option<String>,
    /// The target is a digest alone: no tag was written, so registries'
    /// rules that collect untagged manifests (Harbor, ECR) may delete it.
    pub untagged: bool,
    /// Why the image was held (`min_age`) and until when, when it was.
    pub held: Option<crate::sync::run::Held>,
    /// Why a signature policy rejected the image, when it did.
    pub rejection: Option<RejectReason>,
}

impl Image {
    /// An image with `result` and nothing else known yet.
    pub fn new(source: Option<String>, target: String, result: ImageWord) -> Image {
        Image {
            mirror: None,
            source,
            target,
            result,
            source_digest: None,
            target_digest: None,
            previous_digest: None,
            converted_from: None,
            digest_changed: false,
            platforms_kept: Vec::new(),
            platforms_missing: Vec::new(),
            manifests_pushed: 0,
            manifests_present: 0,
            blobs_copied: 0,
            blobs_present: 0,
            blobs_mounted: 0,
            foreign_layers_skipped: 0,
            bytes_copied: 0,
            duration_seconds: 0.0,
            error: None,
            error_kind: None,
            referrers: ReferrerCounts::default(),
            deferral: None,
            backup_tag: None,
            untagged: false,
            held: None,
            rejection: None,
        }
    }

    /// An image from a copy's report (`dry_run`: it was only planned).
    pub fn from_copy(r: &CopyReport, dry_run: bool) -> Image {
        let mut i = Image::new(
            Some(r.source.clone()),
            r.target.clone(),
            outcome_word(r.outcome, dry_run),
        );
        i.source_digest = Some(r.source_digest.to_string());
        i.target_digest = Some(r.target_digest.to_string());
        i.previous_digest = r.previous_digest.as_ref().map(ToString::to_string);
        i.converted_from = r.converted_from.as_ref().map(ToString::to_string);
        i.error = r
            .conflict_reason
            .as_ref()
            .map(|why| format!("the registry refuses to move the tag: {why}"));
        i.digest_changed = r.digest_changed();
        i.platforms_kept = r.platforms_kept.clone();
        i.platforms_missing = r.platforms_missing.clone();
        i.manifests_pushed = r.manifests_copied;
        i.manifests_present = r.manifests_skipped;
        i.blobs_copied = r.blobs_copied;
        i.blobs_present = r.blobs_skipped;
        i.blobs_mounted = r.blobs_mounted;
        i.foreign_layers_skipped = r.foreign_layers_skipped;
        i.bytes_copied = r.bytes_copied;
        i.duration_seconds = r.duration.as_secs_f64();
        i.referrers = r.referrers.clone();
        i.untagged = is_untagged(&r.target);
        i
    }

    /// An image of mirror `mirror` from a sync run's report (taken: its
    /// strings move into the entry).
    pub fn from_sync(mirror: &str, r: ImageReport) -> Image {
        let word = match r.result {
            ImageResult::Copied => ImageWord::Copied,
            ImageResult::Skipped => ImageWord::UpToDate,
            ImageResult::WouldCopy => ImageWord::WouldCopy,
            ImageResult::Conflict => ImageWord::Conflict,
            ImageResult::Failed => ImageWord::Failed,
            ImageResult::Cancelled => ImageWord::Cancelled,
            ImageResult::Deferred => ImageWord::Deferred,
            ImageResult::Unsupported => ImageWord::Unsupported,
            ImageResult::Held => ImageWord::Held,
            ImageResult::Rejected => ImageWord::Rejected,
        };
        let mut i = match &r.copy {
            Some(c) => Image::from_copy(c, false),
            None => Image::new(None, String::new(), word),
        };
        i.mirror = Some(mirror.to_string());
        i.source = Some(r.source);
        i.target = r.target;
        i.result = word;
        i.source_digest = r.source_digest.or(i.source_digest);
        i.target_digest = r.target_digest.or(i.target_digest);
        i.error = r.error;
        i.error_kind = r.error_kind;
        if let Some(c) = r.referrers {
            i.referrers = *c;
        }
        i.deferral = r.deferral.map(|d| *d);
        i.backup_tag = r.backup.map(|b| b.tag);
        i.held = r.held.map(|h| *h);
        i.rejection = r.rejection;
        i
    }
}

/// One mirror of a `sync`.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorEntry {
    pub name: String,
    pub result: RunResult,
    pub images: u64,
    pub errors: Vec<String>,
    /// Listed tags that break the tag grammar, skipped.
    pub invalid_tags: u64,
    pub duration_seconds: f64,
    /// What prune did; `null` for a mirror that does not prune.
    pub prune: Option<PruneReport>,
    /// What discovery found, for a mirror of a registry or namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered: Option<crate::sync::discover::DiscoveryReport>,
    /// One entry per target of a mirror with several targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<crate::sync::run::TargetReport>,
}

/// The index `index create` built.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    pub digest: String,
    pub media_type: String,
    pub entries: Vec<IndexEntryInfo>,
}

/// One entry of that index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexEntryInfo {
    pub source: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub platform: String,
}

/// The report of one command.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub command: &'static str,
    pub dry_run: bool,
    pub result: CommandWord,
    pub exit_code: u8,
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub totals: Totals,
    pub images: Vec<Image>,
    pub mirrors: Vec<MirrorEntry>,
    pub index: Option<IndexInfo>,
    /// Target repositories created (`create_repositories`), `host/repository`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created_repositories: Vec<String>,
}

/// The kind of the first typed error in `error`'s chain (a copy or a
/// registry error), if any.
pub fn error_kind(error: &anyhow::Error) -> Option<ErrorKind> {
    error.chain().find_map(|e| {
        e.downcast_ref::<CopyError>()
            .map(CopyError::kind)
            .or_else(|| e.downcast_ref::<crate::registry::Error>().map(|e| e.kind()))
    })
}

/// The policy's reason when `error` is a signature policy's rejection.
pub fn rejection(error: &anyhow::Error) -> Option<RejectReason> {
    error
        .chain()
        .find_map(|e| match e.downcast_ref::<CopyError>() {
            Some(CopyError::Rejected { reason, .. }) => Some(*reason),
            _ => None,
        })
}

/// True when `target` names an image by digest alone (no tag).
pub fn is_untagged(target: &str) -> bool {
    crate::registry::Reference::parse(target).is_ok_and(|r| r.tag().is_none())
}

/// The note for an image written by digest alone.
pub fn untagged_note(target: &str) -> String {
    format!(
        "no tag was written: {target} is stored by digest only, and registries' rules that \
         delete untagged manifests (Harbor's tag retention, ECR lifecycle policies) may remove \
         it; give the target a tag (REPOSITORY:TAG) to keep it"
    )
}

/// The word of a copy's outcome (`dry_run`: it was only planned).
pub fn outcome_word(o: Outcome, dry_run: bool) -> ImageWord {
    match o {
        Outcome::Copied if dry_run => ImageWord::WouldCopy,
        Outcome::Copied => ImageWord::Copied,
        Outcome::UpToDate => ImageWord::UpToDate,
        Outcome::TagConflict => ImageWord::Conflict,
    }
}
