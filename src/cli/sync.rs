//! `regmirror sync`: run every mirror of a config file once, then exit.

use std::path::PathBuf;

use clap::ValueEnum;
use tokio_util::sync::CancellationToken;

use regmirror::registry::Client;
use regmirror::sync::Config;
use regmirror::sync::run::{ImageResult, RunResult, SyncOptions, SyncReport, Syncer};

use super::{Exit, UsageError};

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}

/// Arguments of `regmirror sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub registry: super::RegistryArgs,
    /// Compare only: print what would be copied and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Run only this mirror (repeatable; default: every mirror).
    #[arg(long = "mirror", value_name = "NAME")]
    pub mirrors: Vec<String>,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// The config path, required by `sync`, `check` and `serve`.
pub fn config_path(registry: &super::RegistryArgs, command: &str) -> anyhow::Result<PathBuf> {
    registry.config.clone().ok_or_else(|| {
        UsageError(format!(
            "regmirror {command} needs a config file: pass --config FILE (see config.example.toml)"
        ))
        .into()
    })
}

/// Load and validate the config; errors are usage errors (exit 2).
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| UsageError(e.to_string()).into())
}

/// Run the command.
pub async fn run(args: Args, _global: &super::GlobalArgs) -> anyhow::Result<Exit> {
    let path = config_path(&args.registry, "sync")?;
    let config = load_config(&path)?;
    let mut mirrors = config.mirrors.clone();
    if !args.mirrors.is_empty() {
        for name in &args.mirrors {
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
        mirrors.retain(|m| args.mirrors.contains(&m.name));
    }
    let (_, mirrors) = args.shard.keep_owned(&config, mirrors)?;
    let client = Client::new(args.registry.client_options()?)?;
    let options = SyncOptions {
        concurrency: config.defaults.concurrency,
        blob_concurrency: config.defaults.blob_concurrency,
        dry_run: args.dry_run,
        record_metrics: true,
    };
    let stop = CancellationToken::new();
    let syncer = Syncer::new(client, options, stop.clone());
    let report = tokio::select! {
        r = syncer.run_all(&mirrors) => r,
        _ = tokio::signal::ctrl_c() => {
            anyhow::bail!("interrupted: copies in flight were abandoned; run regmirror sync again to finish (it resumes cheaply)");
        }
    };
    match args.output {
        Output::Json => print_json(&report, args.dry_run)?,
        Output::Text => print_text(&report, args.dry_run),
    }
    Ok(exit_code(&report))
}

/// Exit code of a sync report: 0 all ok, 3 some failed, 1 all failed.
pub fn exit_code(report: &SyncReport) -> Exit {
    match report.result() {
        RunResult::Success => Exit::Ok,
        RunResult::Partial => Exit::Partial,
        RunResult::Failed => Exit::Failed,
    }
}

fn totals(report: &SyncReport) -> [(&'static str, usize); 5] {
    let count = |r: ImageResult| report.mirrors.iter().map(|m| m.count(r)).sum::<usize>();
    [
        ("copied", count(ImageResult::Copied)),
        ("skipped", count(ImageResult::Skipped)),
        ("would_copy", count(ImageResult::WouldCopy)),
        ("conflict", count(ImageResult::Conflict)),
        (
            "failed",
            count(ImageResult::Failed)
                + report.mirrors.iter().map(|m| m.errors.len()).sum::<usize>(),
        ),
    ]
}

fn print_json(report: &SyncReport, dry_run: bool) -> anyhow::Result<()> {
    let mut doc = serde_json::Map::new();
    doc.insert("result".into(), serde_json::to_value(report.result())?);
    doc.insert("dry_run".into(), dry_run.into());
    for (k, v) in totals(report) {
        doc.insert(k.into(), v.into());
    }
    doc.insert("mirrors".into(), serde_json::to_value(&report.mirrors)?);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(doc))?
    );
    Ok(())
}

fn print_text(report: &SyncReport, dry_run: bool) {
    for m in &report.mirrors {
        println!(
            "mirror {}: {} ({} copied, {} up to date{}, {} failed) in {:.1}s",
            m.name,
            m.result.label(),
            m.count(ImageResult::Copied),
            m.count(ImageResult::Skipped),
            if dry_run {
                format!(", {} would be copied", m.count(ImageResult::WouldCopy))
            } else {
                String::new()
            },
            m.failures(),
            m.duration_seconds
        );
        if m.invalid_tags > 0 {
            println!(
                "  skipped {} listed tags that break the tag grammar",
                m.invalid_tags
            );
        }
        for i in &m.images {
            match i.result {
                ImageResult::Copied => println!("  copied      {} -> {}", i.source, i.target),
                ImageResult::WouldCopy => println!("  would copy  {} -> {}", i.source, i.target),
                _ => {}
            }
        }
    }
    let failures: Vec<String> = report
        .mirrors
        .iter()
        .flat_map(|m| {
            m.errors
                .iter()
                .cloned()
                .chain(m.images.iter().filter(|i| i.result.is_failure()).map(|i| {
                    format!(
                        "{} -> {}: {}",
                        i.source,
                        i.target,
                        i.error.as_deref().unwrap_or("failed")
                    )
                }))
        })
        .collect();
    let t = totals(report);
    println!(
        "summary: {}: {} copied, {} up to date, {} would be copied, {} conflicts, {} failed",
        report.result().label(),
        t[0].1,
        t[1].1,
        t[2].1,
        t[3].1,
        t[4].1
    );
    if !failures.is_empty() {
        eprintln!("failures ({}):", failures.len());
        for f in failures {
            eprintln!("  {}", regmirror::registry::escape::printable(&f));
        }
    }
}
