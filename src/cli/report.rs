//! The one result report of `import`, `index create` and `sync`: built from
//! the engine's reports, printed as text or (`--output json`) as the JSON
//! document specified in `docs/report.md` and `docs/report.schema.json`.
//! A failed command still prints its report, with the error.
//! The document and its constructors are the library's
//! ([`regmirror::sync::report`]); what is here needs the command line: its
//! exit codes, its error words and stdout.

use std::time::Duration;

use regmirror::sync::report::rejection;
pub use regmirror::sync::report::{
    CommandWord, Image, ImageWord, MirrorEntry, Report, SCHEMA_VERSION, error_kind, is_untagged,
    untagged_note,
};

use super::Exit;
use super::out::outln;

/// Output format of a command's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document (docs/report.md).
    Json,
}

/// What a report does that needs the command line.
pub trait ReportCli: Sized {
    /// A single-image command (`import`, `index create`) that failed or was
    /// interrupted before it had a report.
    fn failed(
        command: &'static str,
        dry_run: bool,
        source: Option<String>,
        target: String,
        error: &anyhow::Error,
        duration: Duration,
    ) -> Self;
    /// `sync` that stopped before it had a report: a bad config, or a
    /// second signal that abandoned the copies in flight.
    fn sync_failed(dry_run: bool, error: &anyhow::Error, duration: Duration) -> Self;
    /// The exit code the report stands for.
    fn exit(&self) -> Exit;
    /// Print on stdout in `output` format (JSON: the whole document).
    fn print(&self, output: Output) -> std::io::Result<()>;
}

/// The exit code of a command word.
pub fn exit_of(word: CommandWord) -> Exit {
    match word {
        CommandWord::Success => Exit::Ok,
        CommandWord::Failed => Exit::Failed,
        CommandWord::Invalid => Exit::Usage,
        CommandWord::Partial => Exit::Partial,
        CommandWord::Conflict => Exit::Conflict,
        CommandWord::Interrupted => Exit::Interrupted,
        CommandWord::Deferred => Exit::Deferred,
    }
}

impl ReportCli for Report {
    fn failed(
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

    fn sync_failed(dry_run: bool, error: &anyhow::Error, duration: Duration) -> Report {
        let word = match super::exit_for_error(error) {
            Exit::Usage => CommandWord::Invalid,
            Exit::Interrupted => CommandWord::Interrupted,
            _ => CommandWord::Failed,
        };
        let mut r = Report::new("sync", dry_run, Vec::new()).with_result(word, duration);
        r.error = Some(super::out::error_chain(error));
        r
    }

    fn exit(&self) -> Exit {
        exit_of(self.result)
    }

    fn print(&self, output: Output) -> std::io::Result<()> {
        match output {
            Output::Json => outln!(
                "{}",
                serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
            ),
            Output::Text => outln!("{}", self.summary_line()),
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
