//! `regmirror tag IMAGE NEWTAG`: put the manifest IMAGE names under another
//! tag of the same repository (like `crane tag`): one manifest GET and one
//! PUT of the same bytes, no blob traffic.

use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use regmirror::registry::Client;
use regmirror::registry::reference::valid_tag;

use super::out::outln;
use super::report::Output;
use super::{Exit, UsageError};

/// Long help of `regmirror tag`.
pub const LONG_ABOUT: &str = "Tag an image again inside its repository: the manifest IMAGE \
names is read and put, byte for byte, under NEWTAG, so the digest stays the same and no blob \
is copied. A NEWTAG that already holds another digest is left alone (exit 4) unless --force \
is given. To tag into another repository or registry, use `regmirror import`.

IMAGE is [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] (the tag defaults to latest); NEWTAG is \
a tag alone (`1.0-stable`).";

/// Arguments of `regmirror tag`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image to tag (`localhost:5000/team/app:1.0`, `…/app@sha256:…`).
    pub image: String,
    /// The new tag, in the same repository (`stable`, `1.0.3`).
    pub new_tag: String,
    /// Move NEWTAG even if it holds another digest.
    #[arg(long)]
    pub force: bool,
    /// Output format on stdout (json: the report conventions of docs/report.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// The command's own report fields.
#[derive(Debug, Serialize)]
struct Tagged {
    source: String,
    target: String,
    digest: String,
    /// What NEWTAG held before, if anything.
    previous_digest: Option<String>,
    /// `tagged`, `up-to-date` (NEWTAG already held the digest) or `conflict`.
    outcome: &'static str,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let result = tag(&args).await;
    super::oneshot::finish("tag", args.output, started, result, |t| {
        match t.outcome {
            "conflict" => super::out::error(&format!(
                "{} holds {}, not {}: nothing changed; pass --force to move the tag",
                t.target,
                t.previous_digest.as_deref().unwrap_or("another digest"),
                t.digest
            )),
            "up-to-date" => outln!("{} already points at {}", t.target, t.digest)?,
            _ => outln!("tagged {} as {} ({})", t.source, t.target, t.digest)?,
        }
        Ok(())
    })
}

async fn tag(args: &Args) -> anyhow::Result<(Exit, Tagged)> {
    let source = super::parse_image("image", &args.image)?.or_latest();
    if !valid_tag(&args.new_tag) {
        return Err(UsageError(format!(
            "NEWTAG {:?} is not a tag: give the tag alone (letters, digits, '_', '.', '-', at \
             most 128 characters, not starting with '.' or '-'), e.g. `stable`",
            args.new_tag
        ))
        .into());
    }
    let target = source.repository_only().with_tag(&args.new_tag)?;
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(source.registry_host()))?;
    let client = Client::new(options)?;
    let raw = client
        .get_manifest(&source)
        .await
        .with_context(|| format!("cannot read the manifest of {source}"))?;
    let previous = client
        .head_manifest(&target)
        .await
        .with_context(|| format!("cannot read what {target} holds"))?
        .and_then(|h| h.digest);
    let mut tagged = Tagged {
        source: source.to_string(),
        target: target.to_string(),
        digest: raw.digest.to_string(),
        previous_digest: previous.as_ref().map(ToString::to_string),
        outcome: "tagged",
    };
    match previous {
        Some(d) if d == raw.digest => {
            tagged.outcome = "up-to-date";
            return Ok((Exit::Ok, tagged));
        }
        Some(_) if !args.force => {
            tagged.outcome = "conflict";
            return Ok((Exit::Conflict, tagged));
        }
        _ => {}
    }
    client
        .put_manifest(&target, &raw)
        .await
        .with_context(|| format!("cannot tag {source} as {target}"))?;
    client.finish_layouts().await?;
    Ok((Exit::Ok, tagged))
}
