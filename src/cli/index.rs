//! `regmirror index create TARGET SOURCE...`: combine single-platform images
//! into one multi-arch index.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use regmirror::copy::index::{IndexFormat, IndexOptions, IndexReport};
use regmirror::copy::{Copier, Outcome};
use regmirror::registry::Client;

use super::import::exit_for;
use super::out::outln;
use super::report::{Output, Report, ReportCli};
use super::{Exit, UsageError};

/// Long help of `regmirror index create`.
pub const LONG_ABOUT: &str = "Combine single-platform images into one multi-arch index \
(docker manifest create + push). Each entry's platform is read from its image config. Images \
in another repository are copied into the target repository by digest first, so the index never \
points at a missing manifest; the tag is pushed last.

TARGET is [REGISTRY[:PORT]/]REPOSITORY[:TAG] (tag `latest` when none is given); each SOURCE is \
[REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] of a single-platform image. TARGET and SOURCE may \
also be OCI image layouts, oci:DIR:REF, or archives of them, oci-archive:FILE:REF.";

/// `regmirror index` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Combine single-platform images into one multi-arch index.
    #[command(long_about = LONG_ABOUT, after_help = super::help::INDEX_CREATE)]
    Create(CreateArgs),
}

/// Index kind, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// OCI image index.
    Oci,
    /// Docker manifest list (every image must be Docker schema2).
    Docker,
}

/// Arguments of `regmirror index create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The index to push: REPOSITORY[:TAG] (tag `latest` when none is given).
    pub target: String,
    /// Single-platform images to list; each platform is read from its config.
    /// Images in another repository are copied into the target repository first.
    #[arg(required = true, num_args = 1..)]
    pub sources: Vec<String>,
    /// Kind of index to write.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: FormatArg,
    /// Annotation of the index, KEY=VALUE (repeatable; OCI only).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Overwrite a target tag that points at a different digest.
    #[arg(long)]
    pub force: bool,
    /// Read the images and print the index that would be pushed; copy and push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Result format on stdout (json: the report of docs/report.md, also on failure).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Blobs transferred at once when copying images into the target repository.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub blob_concurrency: u16,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(cmd: Command) -> anyhow::Result<Exit> {
    match cmd {
        Command::Create(args) => create(args).await,
    }
}

/// Parse `KEY=VALUE` annotations.
fn parse_annotations(values: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    let mut out = BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), val.to_string());
            }
            _ => {
                return Err(UsageError(format!(
                    "--annotation {v:?}: expected KEY=VALUE with a non-empty key"
                )));
            }
        }
    }
    Ok(out)
}

async fn create(args: CreateArgs) -> anyhow::Result<Exit> {
    let start = Instant::now();
    let (output, dry_run, target) = (args.output, args.dry_run, args.target.clone());
    let result = tokio::select! {
        r = build(args) => r,
        () = super::interrupt() => Err(super::Interrupted(
            "interrupted: the index tag is pushed last, so it was either not changed or points \
             at the complete index; run the command again to finish"
                .into(),
        )
        .into()),
    };
    match result {
        Ok(report) => {
            let summary = Report::index(&report, dry_run);
            match output {
                Output::Json => summary.print(output)?,
                Output::Text => {
                    print_text(&report, dry_run)?;
                    summary.print(output)?;
                }
            }
            Ok(exit_for(
                report.outcome,
                &report.target,
                report.previous_digest.as_ref(),
                &report.digest,
            ))
        }
        Err(e) => {
            if output == Output::Json {
                Report::failed("index create", dry_run, None, target, &e, start.elapsed())
                    .print(output)?;
            }
            Err(e)
        }
    }
}

async fn build(args: CreateArgs) -> anyhow::Result<IndexReport> {
    let target = super::parse_image("index target", &args.target)?;
    if target.digest().is_some() {
        return Err(UsageError(format!(
            "index target {:?} names a digest: give REPOSITORY[:TAG]; the index digest is computed",
            args.target
        ))
        .into());
    }
    let target = target.or_latest();
    let mut sources = Vec::with_capacity(args.sources.len());
    for s in &args.sources {
        sources.push(super::parse_image("source", s)?.or_latest());
    }
    let options = IndexOptions {
        format: match args.format {
            FormatArg::Oci => IndexFormat::Oci,
            FormatArg::Docker => IndexFormat::Docker,
        },
        annotations: parse_annotations(&args.annotations)?,
        force: args.force,
        blob_concurrency: usize::from(args.blob_concurrency),
        dry_run: args.dry_run,
    };
    if options.format == IndexFormat::Docker && !options.annotations.is_empty() {
        return Err(UsageError(
            "Docker manifest lists have no annotations; use --format oci to annotate".into(),
        )
        .into());
    }
    // Found before any registry is contacted: a usage error (exit 2).
    for source in sources.iter().filter(|s| s.digest().is_none()) {
        regmirror::copy::refuse_self_copy(source, &target)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    let client_options = args.registry.client_options()?;
    let mut hosts: Vec<&str> = sources.iter().filter_map(|s| s.registry_host()).collect();
    hosts.extend(target.registry_host());
    super::check_credentials(&client_options, &hosts)?;
    let client = Client::new(client_options).context("setting up the registry client")?;
    // The engine lives as long as this command.
    let copier = Copier::with_engine(client.clone(), regmirror::copy::Engine::new());
    let report = copier.create_index(&target, &sources, &options).await?;
    // An oci-archive: target is packed now that the index is complete.
    client.finish_layouts().await?;
    Ok(report)
}

fn print_text(r: &IndexReport, dry_run: bool) -> std::io::Result<()> {
    match r.outcome {
        Outcome::UpToDate => outln!("{} is up to date ({})", r.target, r.digest)?,
        Outcome::TagConflict => outln!(
            "{} left alone: it holds {}, not {}",
            r.target,
            r.previous_digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "another digest".into()),
            r.digest
        )?,
        Outcome::Copied => {
            let verb = if dry_run { "Would push" } else { "Pushed" };
            outln!("{verb} {} {} ({})", r.target, r.digest, r.media_type)?;
            for e in &r.entries {
                outln!("  {:<20} {} {}", e.platform.to_string(), e.digest, e.source)?;
            }
            if r.children_copied > 0 {
                outln!(
                    "  {} image(s) copied into the target repository",
                    r.children_copied
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations() {
        let a = parse_annotations(&["a=b".into(), "c=d=e".into(), "empty=".into()]).unwrap();
        assert_eq!(a["a"], "b");
        assert_eq!(a["c"], "d=e");
        assert_eq!(a["empty"], "");
        assert!(parse_annotations(&["novalue".into()]).is_err());
        assert!(parse_annotations(&["=x".into()]).is_err());
    }
}
