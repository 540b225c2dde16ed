//! `regmirror index create TARGET SOURCE...`: combine single-platform images
//! into one multi-arch index.

use std::collections::BTreeMap;

use anyhow::Context as _;
use regmirror::copy::index::{IndexFormat, IndexOptions, IndexReport};
use regmirror::copy::{Copier, Outcome};
use regmirror::registry::{Client, Reference};

use super::import::{Output, exit_for};
use super::{Exit, UsageError};

/// `regmirror index` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Combine single-platform images into one multi-arch index.
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
    /// Result format on stdout.
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
    let target = Reference::parse(&args.target)?;
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
        sources.push(Reference::parse(s)?.or_latest());
    }
    let options = IndexOptions {
        format: match args.format {
            FormatArg::Oci => IndexFormat::Oci,
            FormatArg::Docker => IndexFormat::Docker,
        },
        annotations: parse_annotations(&args.annotations)?,
        force: args.force,
        blob_concurrency: usize::from(args.blob_concurrency),
    };
    if options.format == IndexFormat::Docker && !options.annotations.is_empty() {
        return Err(UsageError(
            "Docker manifest lists have no annotations; use --format oci to annotate".into(),
        )
        .into());
    }
    let client =
        Client::new(args.registry.client_options()?).context("setting up the registry client")?;
    let copier = Copier::new(client);
    let report = copier.create_index(&target, &sources, &options).await?;
    print_report(&report, args.output)?;
    Ok(exit_for(
        report.outcome,
        &report.target,
        report.previous_digest.as_ref(),
        &report.digest,
    ))
}

fn print_report(r: &IndexReport, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        let mut v = serde_json::to_value(r)?;
        if let Some(obj) = v.as_object_mut() {
            obj.remove("duration");
            obj.insert(
                "duration_seconds".into(),
                serde_json::json!(r.duration.as_secs_f64()),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match r.outcome {
        Outcome::UpToDate => println!("{} is up to date ({})", r.target, r.digest),
        Outcome::TagConflict => println!("{} left alone", r.target),
        Outcome::Copied => {
            println!("Pushed {} {} ({})", r.target, r.digest, r.media_type);
            for e in &r.entries {
                println!("  {:<20} {} {}", e.platform.to_string(), e.digest, e.source);
            }
            if r.children_copied > 0 {
                println!(
                    "  {} image(s) copied into the target repository",
                    r.children_copied
                );
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
