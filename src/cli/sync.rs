//! `regmirror sync`: run every mirror of a config file once, then exit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use regmirror::registry::Client;
use regmirror::sync::Config;
use regmirror::sync::notify::Notifier;
use regmirror::sync::run::{
    ImageReport, ImageResult, MirrorReport, RunResult, SyncOptions, SyncReport, Syncer,
};

use super::out::outln;
use super::progress::SyncProgress;
use super::report::{Output, Report, ReportCli, report_failures};
use super::{Exit, UsageError};

/// Long help of `regmirror sync`.
pub const LONG_ABOUT: &str = "Run every mirror of a config file once, then exit: list tags \
where a filter needs them, compare source and target digests with manifest HEADs, copy what \
differs (children first, tags last), and print a summary. Suits a Kubernetes CronJob.

Sources and targets in the config are written [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST]. \
Ctrl-C or SIGTERM stops starting new copies, lets running ones finish, prints the summary and \
exits 130; a second signal abandons the running copies at once and reports the images \
finished before it.";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Every mirror ran to its end.
    Finished,
    /// A signal stopped new copies; the running ones finished.
    Signalled,
    /// A second signal abandoned the copies in flight.
    Abandoned,
}

/// Arguments of `regmirror sync`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("config", |a| a.help(super::help::MIRROR_CONFIG).env("REGMIRROR_CONFIG")))]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    #[command(flatten)]
    pub adhoc: super::sync_args::AdHoc,
    /// Compare only: print what would be copied and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format on stdout (json: the report of docs/report.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Run only this mirror (repeatable; default: every mirror).
    #[arg(long = "mirror", value_name = "NAME")]
    pub mirrors: Vec<String>,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
    /// Copy as usual, but only report the tags prune would delete (mirrors
    /// with prune = "not-in-source"); --dry-run implies it.
    #[arg(long)]
    pub prune_dry_run: bool,
    /// Exit code when images were deferred to keep a pull budget floor and
    /// none failed (result "deferred"): 5, or 0 to count it as a success
    /// (a Kubernetes Job cannot count a non-zero exit code as one).
    #[arg(long, value_name = "CODE", default_value = "5", value_parser = deferred_exit_code)]
    pub deferred_exit_code: u8,
    #[command(flatten)]
    pub job_metrics: super::job_metrics::JobMetricsArgs,
    /// Progress on stderr: auto (a bar per mirror on a terminal, else a log line per
    /// mirror every 10 s and when it ends; always lines with --log-format json),
    /// plain (the lines, even on a terminal), bar (the bars even when stderr is not a
    /// terminal, for CI logs that render carriage returns) or none.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub progress: super::progress::Mode,
    /// Images copied at once, across all mirrors: overrides `[defaults] concurrency`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    #[command(flatten)]
    pub state: super::state_args::StateArgs,
    /// Whether the config path came from `REGMIRROR_CONFIG` rather than
    /// `--config`/`-c`, as the parser saw it (see [`super::parse`]).
    #[arg(skip)]
    pub config_from_env: bool,
}

/// `--deferred-exit-code`: 0 or 5.
fn deferred_exit_code(value: &str) -> Result<u8, String> {
    match value {
        "0" => Ok(0),
        "5" => Ok(5),
        _ => Err("must be 0 (deferred images count as a success) or 5 (the default)".into()),
    }
}

/// The config path, required by `sync`, `check` and `serve`.
pub fn config_path(registry: &super::RegistryArgs, command: &str) -> anyhow::Result<PathBuf> {
    registry.config.clone().ok_or_else(|| {
        UsageError(format!(
            "regmirror {command} needs a config file: pass --config FILE or set REGMIRROR_CONFIG \
             (see config.example.toml)"
        ))
        .into()
    })
}

/// Load and validate the config; errors are usage errors (exit 2).
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = Config::load(path).map_err(|e| UsageError(e.to_string()))?;
    for w in config.warnings() {
        super::out::warn(&w);
    }
    Ok(config)
}

/// The config's mirrors `names` selects (`--mirror`; empty: every one);
/// a name no mirror has is a usage error.
pub fn named_mirrors(
    config: &Config,
    path: &std::path::Path,
    names: &[String],
) -> anyhow::Result<Vec<regmirror::sync::Mirror>> {
    for name in names {
        if config.mirror(name).is_none() {
            let known: Vec<&str> = config.mirrors.iter().map(|m| m.name.as_str()).collect();
            return Err(UsageError(format!(
                "--mirror {name:?}: no mirror of {} has that name (mirrors: {})",
                path.display(),
                known.join(", ")
            ))
            .into());
        }
    }
    let mut mirrors = config.mirrors.clone();
    if !names.is_empty() {
        mirrors.retain(|m| names.contains(&m.name));
    }
    Ok(mirrors)
}

/// The registry hosts of every mirror's source and target (layouts have none).
pub fn mirror_hosts(config: &Config) -> Vec<&str> {
    let mut hosts: Vec<&str> = Vec::new();
    for m in &config.mirrors {
        for h in std::iter::once(&m.source)
            .chain(m.targets())
            .filter_map(|r| r.registry_host())
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// Run the command.
pub async fn run(args: Args, _global: &super::GlobalArgs) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let (output, dry_run) = (args.output, args.dry_run);
    let deferred_ok = args.deferred_exit_code == 0;
    let job_metrics = args.job_metrics.clone();
    let (report, ended) = match execute(args).await {
        Ok(r) => r,
        Err(e) => {
            if output == Output::Json {
                Report::sync_failed(dry_run, &e, start.elapsed()).print(output)?;
            }
            return Err(e);
        }
    };
    let interrupted = ended != Ended::Finished;
    let mut report = Report::sync_taken(report, dry_run, interrupted, start.elapsed());
    if deferred_ok && report.exit() == Exit::Deferred {
        report.exit_code = Exit::Ok as u8;
    }
    match output {
        Output::Json => report.print(Output::Json)?,
        Output::Text => print_text(&report)?,
    }
    report_failures(&report);
    super::report::report_deferrals(&report);
    job_metrics.export().await;
    if ended == Ended::Abandoned {
        super::out::warn(
            "interrupted twice: copies in flight were abandoned (the report lists only the \
             images finished before); no tag points at an incomplete image (tags are written \
             last); run regmirror sync again to finish",
        );
    } else if interrupted {
        super::out::warn(
            "interrupted: copies not yet started were cancelled (result \"cancelled\"); \
             run regmirror sync again to finish (it resumes cheaply)",
        );
    }
    Ok(if report.exit_code == Exit::Ok as u8 {
        Exit::Ok
    } else {
        report.exit()
    })
}

/// Validate everything, then run the mirrors.
async fn execute(args: Args) -> anyhow::Result<(SyncReport, Ended)> {
    let config_file = args.registry.config.as_deref();
    // REGMIRROR_CONFIG is a default: mirrors given on the command line win over it.
    let config_file = config_file.filter(|_| !(args.adhoc.given() && args.config_from_env));
    let (path, config) = super::sync_args::load(&args.adhoc, config_file)?;
    for w in config.warnings() {
        super::out::warn(&w);
    }
    let mirrors = named_mirrors(&config, &path, &args.mirrors)?;
    let (_, mirrors) = args.shard.keep_owned(&config, mirrors)?;
    args.job_metrics.prepare(&mirrors);
    let client_options = args.registry.client_options()?;
    super::check_credentials(&client_options, &mirror_hosts(&config))?;
    let client = Client::new(client_options)?;
    let options = SyncOptions {
        concurrency: args
            .concurrency
            .map_or(config.defaults.concurrency, |n| n as usize),
        blob_concurrency: config.defaults.blob_concurrency,
        dry_run: args.dry_run,
        record_metrics: true,
    };
    let stop = CancellationToken::new();
    let journal = Journal::new();
    let progress = SyncProgress::start(args.progress, super::out::json_logs());
    // The engine lives as long as this command.
    let mut syncer = Syncer::new(client, options, stop.clone())
        .with_prune_dry_run(args.prune_dry_run)
        .with_engine(regmirror::copy::Engine::new())
        .with_state(
            args.state
                .open_for_config(&path, config.state_dir.as_deref()),
        )
        .keep_images({
            let journal = journal.clone();
            Arc::new(move |mirror, report| journal.record(mirror, report))
        });
    if let Some(p) = progress.clone() {
        syncer = syncer.on_image(Arc::new(move |mirror, report| p.image_done(mirror, report)));
    }
    if let Some(p) = progress.clone() {
        syncer = syncer.on_selected(Arc::new(move |mirror, n| p.selected(mirror, n)));
    }
    // A dry run changes nothing: nothing to tell.
    let notifier = (!args.dry_run)
        .then(|| Notifier::start(&config.notify, "sync"))
        .flatten();
    if let Some(n) = &notifier {
        syncer = syncer.on_mirror_done(n.hook());
    }
    let ended = run_until_signalled(&syncer, &mirrors, &stop).await;
    if let Some(n) = &notifier {
        n.flush(regmirror::sync::notify::FLUSH_BOUND).await;
    }
    if let Some(p) = &progress {
        p.finish();
    }
    Ok(ended.unwrap_or_else(|| (journal.interrupted_report(&mirrors), Ended::Abandoned)))
}

/// Run the mirrors; on the first signal stop starting copies and let the
/// running ones finish; on a second, give up at once (`None`).
async fn run_until_signalled(
    syncer: &Syncer,
    mirrors: &[regmirror::sync::Mirror],
    stop: &CancellationToken,
) -> Option<(SyncReport, Ended)> {
    let run = syncer.run_all(mirrors);
    tokio::pin!(run);
    // Biased, signals first: the signal handlers are in place before the
    // first request goes out, so no early signal ends the process unreported.
    tokio::select! {
        biased;
        () = super::interrupt() => {}
        r = &mut run => return Some((r, Ended::Finished)),
    }
    stop.cancel();
    // A request waiting to be retried reports its last failure now.
    regmirror::registry::cut_retry_waits();
    super::out::warn(
        "signal received: no new copies start; waiting for the running ones to finish \
         (signal again to abandon them)",
    );
    tokio::select! {
        r = &mut run => Some((r, Ended::Signalled)),
        () = super::interrupt() => None,
    }
}

/// The images a run has finished so far, noted as they finish (through
/// [`Syncer::keep_images`]), so that a run abandoned by a second signal can
/// still report what it wrote. It shares the reports the run keeps for its
/// own report (no copy of them). Clone is cheap.
#[derive(Clone)]
struct Journal {
    started: Instant,
    /// Per mirror (in the order their first image finished), its images in
    /// the order they finished.
    done: Arc<Mutex<Vec<MirrorImages>>>,
}

/// A mirror's name and the images of it finished so far.
type MirrorImages = (String, Vec<Arc<ImageReport>>);

impl Journal {
    /// An empty journal; durations in its reports count from now.
    fn new() -> Journal {
        Journal {
            started: Instant::now(),
            done: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Note the report of one image of `mirror` that ended, when it is
    /// final: an image cancelled, or deferred to be tried again, was not
    /// finished. A later report of the same image (a deferred image
    /// retried) replaces the earlier one.
    fn record(&self, mirror: &str, report: &Arc<ImageReport>) {
        if matches!(
            report.result,
            ImageResult::Cancelled | ImageResult::Deferred
        ) {
            return;
        }
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match done.iter().position(|(m, _)| m == mirror) {
            Some(at) => at,
            None => {
                done.push((mirror.to_string(), Vec::new()));
                done.len() - 1
            }
        };
        let images = &mut done[at].1;
        let same = |r: &Arc<ImageReport>| r.source == report.source && r.target == report.target;
        match images.iter_mut().find(|r| same(r)) {
            Some(entry) => *entry = Arc::clone(report),
            None => images.push(Arc::clone(report)),
        }
    }

    /// The report of a run of `mirrors` abandoned now: each mirror holds
    /// the images it finished and is `interrupted`.
    fn interrupted_report(&self, mirrors: &[regmirror::sync::Mirror]) -> SyncReport {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let seconds = self.started.elapsed().as_secs_f64();
        let mirrors = mirrors
            .iter()
            .map(|m| MirrorReport {
                name: m.name.clone(),
                result: RunResult::Interrupted,
                errors: Vec::new(),
                images: done
                    .iter()
                    .find(|(name, _)| *name == m.name)
                    .map(|(_, images)| images.clone())
                    .unwrap_or_default(),
                invalid_tags: 0,
                duration_seconds: seconds,
                prune: None,
                discovered: None,
                quarantined: Vec::new(),
                targets: Vec::new(),
            })
            .collect();
        SyncReport {
            mirrors,
            created_repositories: Vec::new(),
        }
    }
}

fn print_text(report: &Report) -> std::io::Result<()> {
    for m in &report.mirrors {
        let images: Vec<_> = report
            .images
            .iter()
            .filter(|i| i.mirror.as_deref() == Some(m.name.as_str()))
            .collect();
        let count = |w: super::report::ImageWord| images.iter().filter(|i| i.result == w).count();
        use super::report::ImageWord as W;
        let mut parts = vec![
            format!("{} copied", count(W::Copied)),
            format!("{} up to date", count(W::UpToDate)),
        ];
        if report.dry_run {
            parts.push(format!("{} would be copied", count(W::WouldCopy)));
        }
        parts.push(format!("{} conflicts", count(W::Conflict)));
        parts.push(format!("{} failed", count(W::Failed) + m.errors.len()));
        if count(W::Cancelled) > 0 {
            parts.push(format!("{} cancelled", count(W::Cancelled)));
        }
        if count(W::Deferred) > 0 {
            parts.push(format!("{} deferred", count(W::Deferred)));
        }
        if count(W::Held) > 0 {
            parts.push(format!("{} held by min_age", count(W::Held)));
        }
        outln!(
            "mirror {}: {} ({}) in {:.1}s",
            m.name,
            m.result.label(),
            parts.join(", "),
            m.duration_seconds
        )?;
        for line in super::report::prune_lines(m) {
            outln!("{line}")?;
        }
        if m.invalid_tags > 0 {
            outln!(
                "  skipped {} listed tags that break the tag grammar",
                m.invalid_tags
            )?;
        }
        for i in images {
            if let Some(line) = Report::image_line(i) {
                outln!("{line}")?;
            }
        }
    }
    report.print(Output::Text)
}
