//! The one result report of `import`, `index create` and `sync`: built from
//! the engine's reports, printed as text or (`--output json`) as the JSON
//! document specified in `docs/report.md` and `docs/report.schema.json`.
//! A failed command still prints its report, with the error.

use std::time::Duration;

use indicatif::HumanBytes;
use serde::Serialize;

use regmirror::copy::index::IndexReport;
use regmirror::copy::policy::RejectReason;
use regmirror::copy::{CopyError, CopyReport, Outcome, Plan, PlanAction, ReferrerCounts};
use regmirror::registry::ErrorKind;
use regmirror::sync::prune::PruneReport;
use regmirror::sync::run::{ImageReport, ImageResult, RunResult, SyncReport};

use super::Exit;
use super::out::outln;

/// Version of the JSON document; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Output format of a command's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document (docs/report.md).
    Json,
}

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
    fn text(self) -> &'static str {
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
    pub fn exit(self) -> Exit {
        match self {
            CommandWord::Success => Exit::Ok,
            CommandWord::Failed => Exit::Failed,
            CommandWord::Invalid => Exit::Usage,
            CommandWord::Partial => Exit::Partial,
            CommandWord::Conflict => Exit::Conflict,
            CommandWord::Interrupted => Exit::Interrupted,
            CommandWord::Deferred => Exit::Deferred,
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
    pub deferral: Option<regmirror::registry::ratelimit::Refusal>,
    pub backup_tag: Option<String>,
    /// The target is a digest alone: no tag was written, so registries'
    /// rules that collect untagged manifests (Harbor, ECR) may delete it.
    pub untagged: bool,
    /// Why the image was held (`min_age`) and until when, when it was.
    pub held: Option<regmirror::sync::run::Held>,
    /// Why a signature policy rejected the image, when it did.
    pub rejection: Option<RejectReason>,
}

impl Image {
    fn new(source: Option<String>, target: String, result: ImageWord) -> Image {
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

    fn from_copy(r: &CopyReport, dry_run: bool) -> Image {
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

    fn from_sync(mirror: &str, r: &ImageReport) -> Image {
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
            None => Image::new(Some(r.source.clone()), r.target.clone(), word),
        };
        i.mirror = Some(mirror.to_string());
        i.source = Some(r.source.clone());
        i.target = r.target.clone();
        i.result = word;
        i.source_digest = r.source_digest.clone().or(i.source_digest);
        i.target_digest = r.target_digest.clone().or(i.target_digest);
        i.error = r.error.clone();
        i.error_kind = r.error_kind;
        if let Some(c) = &r.referrers {
            i.referrers = c.clone();
        }
        i.deferral = r.deferral.clone();
        i.backup_tag = r.backup.as_ref().map(|b| b.tag.clone());
        i.held = r.held.clone();
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
    pub discovered: Option<regmirror::sync::discover::DiscoveryReport>,
    /// One entry per target of a mirror with several targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<regmirror::sync::run::TargetReport>,
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
pub(crate) fn error_kind(error: &anyhow::Error) -> Option<ErrorKind> {
    error.chain().find_map(|e| {
        e.downcast_ref::<CopyError>()
            .map(CopyError::kind)
            .or_else(|| {
                e.downcast_ref::<regmirror::registry::Error>()
                    .map(|e| e.kind())
            })
    })
}

/// The policy's reason when `error` is a signature policy's rejection.
fn rejection(error: &anyhow::Error) -> Option<RejectReason> {
    error
        .chain()
        .find_map(|e| match e.downcast_ref::<CopyError>() {
            Some(CopyError::Rejected { reason, .. }) => Some(*reason),
            _ => None,
        })
}

/// True when `target` names an image by digest alone (no tag).
pub(crate) fn is_untagged(target: &str) -> bool {
    regmirror::registry::Reference::parse(target).is_ok_and(|r| r.tag().is_none())
}

/// The note for an image written by digest alone.
pub(crate) fn untagged_note(target: &str) -> String {
    format!(
        "no tag was written: {target} is stored by digest only, and registries' rules that \
         delete untagged manifests (Harbor's tag retention, ECR lifecycle policies) may remove \
         it; give the target a tag (REPOSITORY:TAG) to keep it"
    )
}

fn outcome_word(o: Outcome, dry_run: bool) -> ImageWord {
    match o {
        Outcome::Copied if dry_run => ImageWord::WouldCopy,
        Outcome::Copied => ImageWord::Copied,
        Outcome::UpToDate => ImageWord::UpToDate,
        Outcome::TagConflict => ImageWord::Conflict,
    }
}

impl Report {
    fn new(command: &'static str, dry_run: bool, images: Vec<Image>) -> Report {
        let mut r = Report {
            schema_version: SCHEMA_VERSION,
            command,
            dry_run,
            result: CommandWord::Success,
            exit_code: 0,
            error: None,
            duration_seconds: 0.0,
            totals: Totals::default(),
            images,
            mirrors: Vec::new(),
            index: None,
            created_repositories: Vec::new(),
        };
        r.count();
        r
    }

    fn count(&mut self) {
        let mut t = Totals::default();
        for i in &self.images {
            t.images += 1;
            match i.result {
                ImageWord::Copied => t.copied += 1,
                ImageWord::UpToDate => t.up_to_date += 1,
                ImageWord::WouldCopy => t.would_copy += 1,
                ImageWord::Conflict => t.conflict += 1,
                ImageWord::Failed => t.failed += 1,
                ImageWord::Cancelled => t.cancelled += 1,
                ImageWord::Deferred => t.deferred += 1,
                ImageWord::Unsupported => t.unsupported += 1,
                ImageWord::Held => t.held += 1,
                ImageWord::Rejected => t.rejected += 1,
            }
            t.manifests_pushed += i.manifests_pushed;
            t.manifests_present += i.manifests_present;
            t.blobs_copied += i.blobs_copied;
            t.blobs_present += i.blobs_present;
            t.blobs_mounted += i.blobs_mounted;
            t.bytes_copied += i.bytes_copied;
            t.referrers_found += i.referrers.found;
            t.referrers_copied += i.referrers.copied;
            t.fallback_index_updates += i.referrers.fallback_updates;
            t.backups += u64::from(i.backup_tag.is_some());
        }
        self.totals = t;
    }

    fn with_result(mut self, result: CommandWord, duration: Duration) -> Report {
        self.result = result;
        self.exit_code = result.exit() as u8;
        self.duration_seconds = duration.as_secs_f64();
        self
    }

    /// Result of a single-image command from its one image.
    fn single(self, duration: Duration) -> Report {
        let word = match self.images.first().map(|i| i.result) {
            Some(ImageWord::Conflict) => CommandWord::Conflict,
            Some(ImageWord::Failed | ImageWord::Rejected) => CommandWord::Failed,
            Some(ImageWord::Cancelled) => CommandWord::Interrupted,
            _ => CommandWord::Success,
        };
        self.with_result(word, duration)
    }

    /// `import` that ran.
    pub fn import(r: &CopyReport) -> Report {
        let mut image = Image::from_copy(r, false);
        // As in `sync`: referrers that could not be read fail the image,
        // although its tag was written.
        if r.referrers.unreadable > 0 && image.error.is_none() {
            image.result = ImageWord::Failed;
            image.error = Some(format!(
                "{} source fallback indexes could not be read: their referrers were not copied",
                r.referrers.unreadable
            ));
        }
        Report::new("import", false, vec![image]).single(r.duration)
    }

    /// `import --dry-run`: what the plan would do.
    pub fn import_plan(plan: &Plan, duration: Duration) -> Report {
        let s = plan.summary();
        let word = match &plan.action {
            PlanAction::UpToDate => ImageWord::UpToDate,
            PlanAction::Conflict { .. } if !plan.pushes_root => ImageWord::Conflict,
            _ => ImageWord::WouldCopy,
        };
        let mut i = Image::new(Some(s.source.clone()), s.target.clone(), word);
        i.source_digest = Some(s.source_digest.to_string());
        i.target_digest = Some(s.target_digest.to_string());
        i.previous_digest = s.current_digest.as_ref().map(ToString::to_string);
        i.converted_from = plan.converted.as_ref().map(|c| c.from.to_string());
        i.digest_changed = plan.digest_changed();
        i.platforms_kept = s.platforms_kept.clone();
        i.platforms_missing = s.platforms_missing.clone();
        i.manifests_pushed = s.manifests_to_push;
        i.manifests_present = s.manifests_present;
        i.blobs_copied = s.blobs_to_copy;
        i.blobs_present = s.blobs_present;
        i.blobs_mounted = s.blobs_to_mount;
        i.foreign_layers_skipped = s.foreign_layers;
        i.bytes_copied = s.bytes_to_copy;
        i.untagged = is_untagged(&s.target);
        Report::new("import", true, vec![i]).single(duration)
    }

    /// A single-image command (`import`, `index create`) that failed or was
    /// interrupted before it had a report.
    pub fn failed(
        command: &'static str,
        dry_run: bool,
        source: Option<String>,
        target: String,
        error: &anyhow::Error,
        duration: Duration,
    ) -> Report {
        let interrupted = error.downcast_ref::<super::Interrupted>().is_some();
        let word = if interrupted {
            ImageWord::Cancelled
        } else {
            ImageWord::Failed
        };
        let mut i = Image::new(source, target, word);
        i.rejection = rejection(error);
        if i.rejection.is_some() {
            i.result = ImageWord::Rejected;
        }
        let message = super::out::error_chain(error);
        i.error = Some(message.clone());
        i.error_kind = (!interrupted).then(|| error_kind(error)).flatten();
        let mut r = Report::new(command, dry_run, vec![i]).single(duration);
        r.error = Some(message);
        if super::exit_for_error(error) == Exit::Usage {
            r = r.with_result(CommandWord::Invalid, duration);
        }
        r
    }

    /// `index create`, run or dry run.
    pub fn index(r: &IndexReport, dry_run: bool) -> Report {
        let mut i = Image::new(None, r.target.clone(), outcome_word(r.outcome, dry_run));
        i.target_digest = Some(r.digest.to_string());
        i.previous_digest = r.previous_digest.as_ref().map(ToString::to_string);
        i.manifests_pushed = r.manifests_copied;
        i.blobs_copied = r.blobs_copied;
        i.blobs_present = r.blobs_skipped;
        i.blobs_mounted = r.blobs_mounted;
        i.bytes_copied = r.bytes_copied;
        i.duration_seconds = r.duration.as_secs_f64();
        let mut report = Report::new("index create", dry_run, vec![i]).single(r.duration);
        report.index = Some(IndexInfo {
            digest: r.digest.to_string(),
            media_type: r.media_type.clone(),
            entries: r
                .entries
                .iter()
                .map(|e| IndexEntryInfo {
                    source: e.source.clone(),
                    digest: e.digest.to_string(),
                    media_type: e.media_type.clone(),
                    size: e.size,
                    platform: e.platform.to_string(),
                })
                .collect(),
        });
        report
    }

    /// `sync`; `interrupted` when a signal stopped it early.
    pub fn sync(r: &SyncReport, dry_run: bool, interrupted: bool, duration: Duration) -> Report {
        let images = r
            .mirrors
            .iter()
            .flat_map(|m| m.images.iter().map(|i| Image::from_sync(&m.name, i)))
            .collect();
        let mut report = Report::new("sync", dry_run, images);
        report.created_repositories = r.created_repositories.clone();
        report.totals.failed += r.mirrors.iter().map(|m| m.errors.len() as u64).sum::<u64>();
        for p in r.mirrors.iter().filter_map(|m| m.prune.as_ref()) {
            report.totals.failed += p.errors.len() as u64;
            report.totals.pruned += p.pruned.len() as u64;
        }
        report.mirrors = r
            .mirrors
            .iter()
            .map(|m| MirrorEntry {
                name: m.name.clone(),
                result: m.result,
                images: m.images.len() as u64,
                errors: m.errors.clone(),
                invalid_tags: m.invalid_tags as u64,
                duration_seconds: m.duration_seconds,
                prune: m.prune.clone(),
                discovered: m.discovered.clone(),
                targets: m.targets.clone(),
            })
            .collect();
        let word = if interrupted {
            CommandWord::Interrupted
        } else {
            match r.result() {
                RunResult::Success => CommandWord::Success,
                RunResult::Partial => CommandWord::Partial,
                RunResult::Failed => CommandWord::Failed,
                RunResult::Deferred => CommandWord::Deferred,
                RunResult::Interrupted => CommandWord::Interrupted,
            }
        };
        report.with_result(word, duration)
    }

    /// `sync` that stopped before it had a report: a bad config, or a
    /// second signal that abandoned the copies in flight.
    pub fn sync_failed(dry_run: bool, error: &anyhow::Error, duration: Duration) -> Report {
        let word = match super::exit_for_error(error) {
            Exit::Usage => CommandWord::Invalid,
            Exit::Interrupted => CommandWord::Interrupted,
            _ => CommandWord::Failed,
        };
        let mut r = Report::new("sync", dry_run, Vec::new()).with_result(word, duration);
        r.error = Some(super::out::error_chain(error));
        r
    }

    /// The exit code the report stands for.
    pub fn exit(&self) -> Exit {
        self.result.exit()
    }

    /// Failures, one line each: `source -> target: error`.
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .mirrors
            .iter()
            .flat_map(|m| {
                m.errors
                    .iter()
                    .map(move |e| format!("mirror {}: {e}", m.name))
                    .chain(
                        m.prune
                            .iter()
                            .flat_map(|p| p.errors.iter())
                            .map(move |e| format!("mirror {}: prune: {e}", m.name)),
                    )
            })
            .collect();
        for i in &self.images {
            if matches!(
                i.result,
                ImageWord::Failed | ImageWord::Conflict | ImageWord::Rejected
            ) {
                let what = match &i.source {
                    Some(s) => format!("{s} -> {}", i.target),
                    None => i.target.clone(),
                };
                let why = match (&i.error, i.result) {
                    (Some(e), _) => e.clone(),
                    (None, ImageWord::Conflict) => format!(
                        "the target tag holds {}, not the source digest; nothing copied (set force or pass --force to overwrite)",
                        i.previous_digest.as_deref().unwrap_or("another digest")
                    ),
                    (None, _) => "failed".to_string(),
                };
                lines.push(format!("{what}: {why}"));
            }
        }
        lines
    }

    /// Deferred images, one line each: `source -> target: why`.
    pub fn deferral_lines(&self) -> Vec<String> {
        self.images
            .iter()
            .filter_map(|i| {
                let why = i.deferral.as_ref()?;
                let what = match &i.source {
                    Some(s) => format!("{s} -> {}", i.target),
                    None => i.target.clone(),
                };
                Some(format!("{what}: {why}"))
            })
            .collect()
    }

    /// Print on stdout in `output` format (JSON: the whole document).
    pub fn print(&self, output: Output) -> std::io::Result<()> {
        match output {
            Output::Json => outln!(
                "{}",
                serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
            ),
            Output::Text => outln!("{}", self.summary_line()),
        }
    }

    /// `summary: copied: 1 copied, …; manifests …; blobs …; bytes in duration`.
    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        let mut counts = vec![
            format!("{} copied", t.copied),
            format!("{} up to date", t.up_to_date),
        ];
        if self.dry_run {
            counts.push(format!("{} would be copied", t.would_copy));
        }
        counts.push(format!("{} conflicts", t.conflict));
        counts.push(format!("{} failed", t.failed));
        if t.cancelled > 0 {
            counts.push(format!("{} cancelled", t.cancelled));
        }
        if t.deferred > 0 {
            counts.push(format!("{} deferred", t.deferred));
        }
        if t.unsupported > 0 {
            counts.push(format!("{} unsupported (not copied)", t.unsupported));
        }
        if t.held > 0 {
            counts.push(format!("{} held by min_age", t.held));
        }
        if t.rejected > 0 {
            counts.push(format!("{} rejected by the signature policy", t.rejected));
        }
        let verb = if self.dry_run { "to push" } else { "pushed" };
        format!(
            "summary: {}: {}; manifests: {} {verb}, {} present; blobs: {} copied, {} present, {} mounted{}; {} in {:.1}s",
            serde_json::to_value(self.result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            counts.join(", "),
            t.manifests_pushed,
            t.manifests_present,
            t.blobs_copied,
            t.blobs_present,
            t.blobs_mounted,
            self.prune_counts(),
            HumanBytes(t.bytes_copied),
            self.duration_seconds
        )
    }

    /// `; prune: N pruned, M refused` (`N would be pruned` for a prune that
    /// only reports) when a mirror prunes; nothing otherwise. Refused counts
    /// mirrors whose prune a guard rail stopped.
    fn prune_counts(&self) -> String {
        let prunes: Vec<&PruneReport> = self
            .mirrors
            .iter()
            .filter_map(|m| m.prune.as_ref())
            .collect();
        if prunes.is_empty() {
            return String::new();
        }
        let count = |dry: bool| -> usize {
            prunes
                .iter()
                .filter(|p| p.dry_run == dry)
                .map(|p| p.pruned.len())
                .sum()
        };
        let mut parts = Vec::new();
        if prunes.iter().any(|p| !p.dry_run) {
            parts.push(format!("{} pruned", count(false)));
        }
        if prunes.iter().any(|p| p.dry_run) {
            parts.push(format!("{} would be pruned", count(true)));
        }
        let refused = prunes.iter().filter(|p| p.refused.is_some()).count();
        parts.push(format!("{refused} refused"));
        format!("; prune: {}", parts.join(", "))
    }

    /// Per-image text line (`copied  src -> dst`), for images worth a line.
    pub fn image_line(i: &Image) -> Option<String> {
        let what = match &i.source {
            Some(s) => format!("{s} -> {}", i.target),
            None => i.target.clone(),
        };
        match i.result {
            ImageWord::Copied | ImageWord::WouldCopy => {
                Some(format!("  {:<11} {what}", i.result.text()))
            }
            ImageWord::Unsupported => Some(format!(
                "  {:<11} {what}: {}",
                i.result.text(),
                i.error.as_deref().unwrap_or_default()
            )),
            ImageWord::Held => i.held.as_ref().map(|h| {
                format!(
                    "  {:<11} {what}: new source digest first seen {}, eligible at {}",
                    i.result.text(),
                    h.first_seen,
                    h.eligible_at
                )
            }),
            _ => None,
        }
    }
}

/// Print the failures of a report on stderr, one diagnostic each.
pub fn report_failures(report: &Report) {
    let lines = report.failure_lines();
    if lines.is_empty() {
        return;
    }
    if super::out::json_logs() {
        for l in &lines {
            super::out::error(l);
        }
        return;
    }
    super::out::note(&format!("failures ({}):", lines.len()));
    for l in lines {
        // Errors may quote a registry's words: escape control characters.
        super::out::note(&format!("  {}", regmirror::registry::escape::printable(&l)));
    }
}

/// Print the deferred images of a report on stderr, with why and when.
pub fn report_deferrals(report: &Report) {
    let lines = report.deferral_lines();
    if lines.is_empty() {
        return;
    }
    super::out::warn(&format!(
        "{} images deferred to keep a registry's pull budget floor (nothing of them was written; \
         a later run copies them):",
        lines.len()
    ));
    for l in lines {
        super::out::note(&format!("  {}", regmirror::registry::escape::printable(&l)));
    }
}

/// Text lines of a mirror's prune: each tag pruned (or that would be), and
/// why prune was refused.
pub fn prune_lines(m: &MirrorEntry) -> Vec<String> {
    let Some(p) = &m.prune else {
        return Vec::new();
    };
    let word = if p.dry_run { "would prune" } else { "pruned" };
    let mut lines: Vec<String> = p
        .pruned
        .iter()
        .map(|t| format!("  {word:<11} {}", t.target))
        .collect();
    if let Some(why) = &p.refused {
        lines.push(format!("  prune refused: {why}"));
    }
    lines
}
