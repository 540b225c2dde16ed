//! Building a [`Report`] from the engine's reports, and its text lines.

use std::sync::Arc;
use std::time::Duration;

use indicatif::HumanBytes;

use super::{
    CommandWord, Image, ImageWord, IndexEntryInfo, IndexInfo, MirrorEntry, Report, SCHEMA_VERSION,
    Totals, is_untagged, outcome_word,
};
use crate::copy::index::IndexReport;
use crate::copy::{CopyReport, Plan, PlanAction};
use crate::sync::prune::PruneReport;
use crate::sync::run::{ImageReport, MirrorReport, RunResult, SyncReport};

impl Report {
    /// The report of `command` over `images`, counted, successful until told otherwise.
    pub fn new(command: &'static str, dry_run: bool, images: Vec<Image>) -> Report {
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

    /// The report with its result (and exit code) and duration set.
    pub fn with_result(mut self, result: CommandWord, duration: Duration) -> Report {
        self.result = result;
        self.exit_code = result.code();
        self.duration_seconds = duration.as_secs_f64();
        self
    }

    /// Result of a single-image command from its one image.
    pub fn single(self, duration: Duration) -> Report {
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
            .flat_map(|m| {
                m.images
                    .iter()
                    .map(|i| Image::from_sync(&m.name, ImageReport::clone(i)))
            })
            .collect();
        let word = sync_word(r, interrupted);
        let counts: Vec<usize> = r.mirrors.iter().map(|m| m.images.len()).collect();
        Report::sync_of(r, images, &counts, dry_run, word, duration)
    }

    /// [`Report::sync`] taking the run's report: each image's report turns
    /// into its entry and is let go as it goes (when nothing else shares
    /// it), so that the two are never both held whole. The same document.
    pub fn sync_taken(
        mut r: SyncReport,
        dry_run: bool,
        interrupted: bool,
        duration: Duration,
    ) -> Report {
        let word = sync_word(&r, interrupted);
        let counts: Vec<usize> = r.mirrors.iter().map(|m| m.images.len()).collect();
        let mut images = Vec::with_capacity(counts.iter().sum());
        for m in &mut r.mirrors {
            for i in std::mem::take(&mut m.images) {
                let i = Arc::try_unwrap(i).unwrap_or_else(|shared| ImageReport::clone(&shared));
                images.push(Image::from_sync(&m.name, i));
            }
        }
        Report::sync_of(&r, images, &counts, dry_run, word, duration)
    }

    /// The `sync` report of `r`'s mirrors over `images` (their entries),
    /// with `counts[i]` images in mirror `i`.
    fn sync_of(
        r: &SyncReport,
        images: Vec<Image>,
        counts: &[usize],
        dry_run: bool,
        word: CommandWord,
        duration: Duration,
    ) -> Report {
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
            .zip(counts)
            .map(|(m, count)| MirrorEntry {
                name: m.name.clone(),
                result: m.result,
                images: *count as u64,
                errors: m.errors.clone(),
                invalid_tags: m.invalid_tags as u64,
                duration_seconds: m.duration_seconds,
                prune: m.prune.clone(),
                discovered: m.discovered.clone(),
                targets: m.targets.clone(),
            })
            .collect();
        report.with_result(word, duration)
    }

    /// One mirror's run (a run of `serve`'s sync-now API): the report of a
    /// `sync` of that mirror alone.
    pub fn mirror_run(m: &MirrorReport) -> Report {
        let run = SyncReport {
            mirrors: vec![m.clone()],
            created_repositories: Vec::new(),
        };
        let duration = Duration::try_from_secs_f64(m.duration_seconds).unwrap_or_default();
        Report::sync(&run, false, false, duration)
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

/// The result word of a `sync` over `r`; `interrupted` when a signal
/// stopped it early.
fn sync_word(r: &SyncReport, interrupted: bool) -> CommandWord {
    if interrupted {
        return CommandWord::Interrupted;
    }
    match r.result() {
        RunResult::Success => CommandWord::Success,
        RunResult::Partial => CommandWord::Partial,
        RunResult::Failed => CommandWord::Failed,
        RunResult::Deferred => CommandWord::Deferred,
        RunResult::Interrupted => CommandWord::Interrupted,
    }
}
