//! `regmirror delete IMAGE`: delete one tag, or one manifest by digest,
//! from a registry. Guarded as prune is: nothing is deleted without
//! `--yes`, a tag is resolved to its digest first (and reported), and a
//! tag is deleted alone, never the content other tags share.

use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use regmirror::registry::{Client, Reference, TagDeletion};

use super::out::outln;
use super::report::Output;
use super::{Exit, UsageError};

/// Long help of `regmirror delete`.
pub const LONG_ABOUT: &str = "Delete a tag, or a manifest by digest, from a registry. Nothing \
is deleted without --yes; --dry-run resolves IMAGE to its digest and says what would go.

A tag is deleted as prune deletes it: the tag is first moved to a tiny placeholder manifest, \
which is then deleted, so the image and every other tag on its digest stay. A digest \
(`REPOSITORY@sha256:…`) is deleted with the manifest itself: the registry removes every tag \
that points at it.

Registries that refuse deletes answer 405 (distribution without storage.delete.enabled) or \
401/403 (credentials without delete permission); the tag is then left as it was. OCI layouts \
(oci:, oci-archive:) are not supported.

IMAGE is [REGISTRY[:PORT]/]REPOSITORY:TAG or [REGISTRY[:PORT]/]REPOSITORY@DIGEST.";

/// Arguments of `regmirror delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tag or digest to delete (`localhost:5000/team/app:old`, `…/app@sha256:…`).
    pub image: String,
    /// Really delete (without it, only --dry-run runs).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Resolve IMAGE and say what would be deleted; delete nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Output format on stdout (json: the report conventions of docs/report.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// The command's own report fields.
#[derive(Debug, Serialize)]
struct Deleted {
    image: String,
    /// The digest IMAGE named when it was resolved.
    digest: String,
    dry_run: bool,
    /// `by-tag` / `by-placeholder` for a tag, `by-digest` for a digest; `null` in a dry run.
    how: Option<&'static str>,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let result = delete(&args).await;
    super::oneshot::finish("delete", args.output, started, result, |d| {
        match (d.dry_run, d.image.contains('@')) {
            (true, _) => outln!("would delete {} ({})", d.image, d.digest)?,
            (false, false) => outln!("deleted tag {} (it pointed at {})", d.image, d.digest)?,
            (false, true) => outln!("deleted manifest {} and every tag on it", d.image)?,
        }
        Ok(())
    })
}

/// IMAGE, checked before any registry is contacted.
fn target(args: &Args) -> anyhow::Result<Reference> {
    let r = super::parse_image("image", &args.image)?;
    if r.is_layout() {
        return Err(UsageError(format!(
            "{}: delete works on registries only, not on OCI layouts or archives",
            args.image
        ))
        .into());
    }
    if r.tag().is_none() && r.digest().is_none() {
        return Err(UsageError(format!(
            "{:?} names a repository: name the tag (`{}:TAG`) or digest (`{}@sha256:…`) to delete",
            args.image, r, r
        ))
        .into());
    }
    if r.tag().is_some() && r.digest().is_some() {
        return Err(UsageError(format!(
            "{:?} has both a tag and a digest: give one, the tag to delete the tag alone, the \
             digest to delete the manifest with every tag on it",
            args.image
        ))
        .into());
    }
    if !args.yes && !args.dry_run {
        return Err(UsageError(format!(
            "delete {} needs --yes (nothing was contacted); --dry-run shows what would be deleted",
            args.image
        ))
        .into());
    }
    Ok(r)
}

async fn delete(args: &Args) -> anyhow::Result<(Exit, Deleted)> {
    let r = target(args)?;
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(r.registry_host()))?;
    let client = Client::new(options)?;
    let head = client
        .head_manifest(&r)
        .await
        .with_context(|| format!("cannot resolve {r}"))?
        .ok_or_else(|| anyhow::anyhow!("{r}: no such manifest (HTTP 404); nothing deleted"))?;
    let digest = match (head.digest, r.digest()) {
        (Some(d), _) => d.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => client.get_manifest(&r).await?.digest.to_string(),
    };
    let mut report = Deleted {
        image: r.to_string(),
        digest,
        dry_run: args.dry_run,
        how: None,
    };
    if args.dry_run {
        return Ok((Exit::Ok, report));
    }
    report.how = Some(if r.tag().is_some() {
        match client
            .delete_tag(&r)
            .await
            .with_context(|| format!("cannot delete {r}"))?
        {
            TagDeletion::ByTag => "by-tag",
            TagDeletion::ByPlaceholder => "by-placeholder",
        }
    } else {
        client.delete_digest(&r).await.map_err(|e| refused(&r, e))?;
        "by-digest"
    });
    Ok((Exit::Ok, report))
}

/// A failed digest delete, with what the user can do.
fn refused(r: &Reference, e: regmirror::registry::Error) -> anyhow::Error {
    let why = match e.status() {
        Some(405) => {
            "the registry does not allow deletes (HTTP 405); enable them (distribution: \
             storage.delete.enabled: true)"
        }
        Some(401 | 403) => "the credentials lack delete permission for this repository",
        _ => "the registry refused the delete",
    };
    anyhow::Error::new(e).context(format!("cannot delete {r}: {why}"))
}
