//! `regmirror import SOURCE TARGET`: copy one image, every platform by
//! default, digests preserved.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use regmirror::copy::target::resolve_target;
use regmirror::copy::{
    BlobAction, BlobOutcome, Copier, CopyOptions, CopyReport, Outcome, Plan, PlanAction, Progress,
    parse_platforms,
};
use regmirror::registry::{Client, Digest, Reference};

use super::{Exit, UsageError};

/// Output format of a command's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `regmirror import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image to copy: [REGISTRY/]REPOSITORY[:TAG][@DIGEST] (tag `latest` when neither is given).
    pub source: String,
    /// Where to copy it: a registry alone (the source's repository path and tag are kept),
    /// a repository (the source's tag is kept) or REPOSITORY:TAG.
    pub target: String,
    /// Platforms to keep, os/arch[/variant], comma-separated or repeated; the index is
    /// rewritten and its digest changes. Default: every platform, digest preserved.
    #[arg(long, value_name = "PLATFORMS")]
    pub platform: Vec<String>,
    /// Overwrite a target tag that points at a different digest.
    #[arg(long)]
    pub force: bool,
    /// Print what would be copied, skipped and mounted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub blob_concurrency: u16,
    /// Copy foreign (non-distributable) layers too; by default they are left out
    /// and the target refers to their URLs, as the source does.
    #[arg(long)]
    pub include_foreign_layers: bool,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let source = Reference::parse(&args.source)?.or_latest();
    let target = resolve_target(&source, &args.target).map_err(|e| UsageError(e.to_string()))?;
    let platforms = parse_platforms(&args.platform).map_err(|e| UsageError(e.to_string()))?;
    if !platforms.is_empty() && target.tag().is_none() {
        return Err(UsageError(format!(
            "{source} is pinned by digest and --platform produces a new index digest, which \
             would be pushed without a tag: give the target a tag (e.g. {}:pinned)",
            target.repository_only()
        ))
        .into());
    }
    let options = CopyOptions {
        platforms,
        force: args.force,
        include_foreign_layers: args.include_foreign_layers,
        blob_concurrency: usize::from(args.blob_concurrency),
    };
    let client =
        Client::new(args.registry.client_options()?).context("setting up the registry client")?;
    let copier = Copier::new(client);
    let plan = copier.plan(&source, &target, &options).await?;

    if args.dry_run {
        print_plan(&plan, args.output)?;
        return Ok(match plan.action {
            PlanAction::Conflict { .. } if !options.force => Exit::Conflict,
            _ => Exit::Ok,
        });
    }

    let bars = (args.output == Output::Text && std::io::stderr().is_terminal())
        .then(|| Arc::new(Bars::new(&plan)));
    let progress: Arc<dyn Progress> = match &bars {
        Some(b) => b.clone(),
        None => Arc::new(LogProgress),
    };
    let report = copier
        .execute_with_progress(&plan, &options, progress)
        .await;
    if let Some(b) = &bars {
        b.bar.finish_and_clear();
    }
    let report = report?;
    print_report(&report, args.output)?;
    // The digest that would have been written: the filtered index's with --platform.
    Ok(exit_for(
        report.outcome,
        &report.target,
        report.previous_digest.as_ref(),
        &plan.root.digest,
    ))
}

/// The exit code for an outcome; on a tag conflict, also say why nothing was
/// copied and what to do.
pub fn exit_for(outcome: Outcome, target: &str, current: Option<&Digest>, wanted: &Digest) -> Exit {
    if outcome != Outcome::TagConflict {
        return Exit::Ok;
    }
    let current = current
        .map(ToString::to_string)
        .unwrap_or_else(|| "another digest".to_string());
    eprintln!(
        "target {target} already points at {current}, not {wanted}; nothing was copied. \
         Use --force to overwrite the tag."
    );
    Exit::Conflict
}

fn print_plan(plan: &Plan, output: Output) -> anyhow::Result<()> {
    let s = plan.summary();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("Plan: {} -> {}", s.source, s.target);
    match &plan.action {
        PlanAction::UpToDate => {
            println!("  up to date: the target already holds {}", s.target_digest)
        }
        PlanAction::Conflict { current } if !plan.pushes_root => {
            println!(
                "  conflict: the target holds {current}, not {}; nothing would be copied without --force",
                s.target_digest
            )
        }
        PlanAction::Conflict { current } => {
            println!("  overwrite: the target holds {current} (--force)")
        }
        PlanAction::Copy => {}
    }
    if plan.digest_changed() {
        println!(
            "  digest changes: {} -> {} (platforms kept: {}; dropped: {})",
            s.source_digest,
            s.target_digest,
            s.platforms_kept.join(", "),
            if s.platforms_dropped.is_empty() {
                "none".to_string()
            } else {
                s.platforms_dropped.join(", ")
            }
        );
    } else {
        println!("  digest: {}", s.target_digest);
    }
    if !plan.pushes_root {
        return Ok(());
    }
    println!(
        "  manifests: {} to push, {} already present",
        s.manifests_to_push, s.manifests_present
    );
    println!(
        "  blobs: {} to copy ({}), {} to mount, {} already present, {} foreign left out",
        s.blobs_to_copy,
        HumanBytes(s.bytes_to_copy),
        s.blobs_to_mount,
        s.blobs_present,
        s.foreign_layers
    );
    for b in &plan.blobs {
        let what = match &b.action {
            BlobAction::Copy => "copy   ".to_string(),
            BlobAction::Present => "skip   ".to_string(),
            BlobAction::Foreign => "foreign".to_string(),
            BlobAction::Mount { from } => format!("mount   from {from}:"),
        };
        println!(
            "    {what} {} {:>10} {}",
            b.digest,
            HumanBytes(b.size).to_string(),
            b.media_type
        );
    }
    Ok(())
}

/// The report as JSON: its fields, `duration_seconds` and `digest_changed`.
pub fn report_json(report: &CopyReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("duration");
        obj.insert(
            "duration_seconds".into(),
            serde_json::json!(report.duration.as_secs_f64()),
        );
        obj.insert(
            "digest_changed".into(),
            serde_json::json!(report.digest_changed()),
        );
    }
    v
}

fn print_report(r: &CopyReport, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report_json(r))?);
        return Ok(());
    }
    match r.outcome {
        Outcome::UpToDate => println!("{} is up to date ({})", r.target, r.target_digest),
        Outcome::TagConflict => println!("{} left alone: it holds {}", r.target, r.target_digest),
        Outcome::Copied => {
            println!("Copied {} -> {}", r.source, r.target);
            if r.digest_changed() {
                println!(
                    "  digest changed: {} -> {} (platforms kept: {})",
                    r.source_digest,
                    r.target_digest,
                    r.platforms_kept.join(", ")
                );
            } else {
                println!("  digest: {}", r.target_digest);
            }
            if let Some(prev) = &r.previous_digest {
                println!("  replaced: {prev}");
            }
            println!(
                "  manifests: {} pushed, {} already present",
                r.manifests_copied, r.manifests_skipped
            );
            println!(
                "  blobs: {} copied, {} skipped, {} mounted{}",
                r.blobs_copied,
                r.blobs_skipped,
                r.blobs_mounted,
                if r.foreign_layers_skipped > 0 {
                    format!(", {} foreign left out", r.foreign_layers_skipped)
                } else {
                    String::new()
                }
            );
            println!(
                "  transferred: {} in {:.1?}",
                HumanBytes(r.bytes_copied),
                r.duration
            );
        }
    }
    Ok(())
}

/// Progress bar for a terminal: blobs done/total, bytes, rate.
struct Bars {
    bar: ProgressBar,
    total: u64,
    done: AtomicU64,
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let moving: Vec<_> = plan
            .blobs
            .iter()
            .filter(|b| matches!(b.action, BlobAction::Copy | BlobAction::Mount { .. }))
            .collect();
        let bytes: u64 = moving.iter().map(|b| b.size).sum();
        let bar = ProgressBar::new(bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(plan.target.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        let total = moving.len() as u64;
        bar.set_message(format!("blobs 0/{total}"));
        Bars {
            bar,
            total,
            done: AtomicU64::new(0),
        }
    }
}

impl Progress for Bars {
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn blob_done(&self, _digest: &Digest, size: u64, outcome: BlobOutcome) {
        match outcome {
            BlobOutcome::Mounted | BlobOutcome::Skipped => self.bar.inc(size),
            BlobOutcome::Copied(_) | BlobOutcome::Foreign => {}
        }
        if matches!(outcome, BlobOutcome::Foreign) {
            return;
        }
        let done = (self.done.fetch_add(1, Ordering::Relaxed) + 1).min(self.total);
        self.bar.set_message(format!("blobs {done}/{}", self.total));
    }
    fn blob_retry(&self, _digest: &Digest, _size: u64, bytes_sent: u64) {
        self.bar
            .set_position(self.bar.position().saturating_sub(bytes_sent));
    }
}

/// Progress as log lines, for non-terminals.
struct LogProgress;

impl Progress for LogProgress {
    fn blob_done(&self, digest: &Digest, size: u64, outcome: BlobOutcome) {
        let result = match outcome {
            BlobOutcome::Copied(_) => "copied",
            BlobOutcome::Skipped => "skipped",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Foreign => "foreign, left out",
        };
        tracing::info!(%digest, size, result, "blob");
    }
}
