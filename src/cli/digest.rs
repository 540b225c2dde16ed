//! `regmirror digest IMAGE`: print an image's manifest digest, read from a
//! manifest HEAD (like `crane digest`); `--platform` prints the digest of
//! that platform's manifest under an index.

use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use regmirror::registry::{Client, Reference};

use super::Exit;
use super::out::outln;
use super::report::Output;

/// Long help of `regmirror digest`.
pub const LONG_ABOUT: &str = "Print the digest of an image's manifest, as the registry \
reports it to a HEAD request (Docker-Content-Digest); when the registry sends none, the \
manifest is read and hashed. With --platform, the digest of that platform's manifest inside \
the index. The digest is what `IMAGE@DIGEST` pins.

IMAGE is [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] (the tag defaults to latest), or an OCI \
layout (oci:DIR[:NAME[:TAG]]).";

/// Arguments of `regmirror digest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image reference (`nginx:1.27`, `localhost:5000/team/app:1.0`).
    pub image: String,
    /// Print the digest of this platform's manifest (os/arch[/variant]) instead of the index's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Output format on stdout (json: the report conventions of docs/report.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// The command's own report fields.
#[derive(Debug, Serialize)]
struct Found {
    image: String,
    platform: Option<String>,
    digest: String,
    media_type: Option<String>,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let result = digest(&args).await;
    super::oneshot::finish("digest", args.output, started, result, |f| {
        outln!("{}", f.digest)?;
        Ok(())
    })
}

async fn digest(args: &Args) -> anyhow::Result<(Exit, Found)> {
    let reference = super::parse_image("image", &args.image)?.or_latest();
    let platform = match &args.platform {
        Some(p) => Some(super::inspect::platform_spec(p)?),
        None => None,
    };
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(reference.registry_host()))?;
    let client = Client::new(options)?;
    let reference = client.resolve_layout_image(&reference).await?;
    let (digest, media_type) = match &platform {
        None => head_digest(&client, &reference).await?,
        Some(spec) => {
            let raw = client
                .get_manifest(&reference)
                .await
                .with_context(|| format!("cannot read the manifest of {reference}"))?;
            let (_, raw) = super::inspect::pick_platform(&client, &reference, raw, spec).await?;
            (raw.digest.to_string(), Some(raw.media_type))
        }
    };
    let found = Found {
        image: reference.to_string(),
        platform: platform.map(|p| p.to_string()),
        digest,
        media_type,
    };
    Ok((Exit::Ok, found))
}

/// The digest from a HEAD, or from the manifest's bytes when the HEAD names none.
async fn head_digest(
    client: &Client,
    reference: &Reference,
) -> anyhow::Result<(String, Option<String>)> {
    let head = client
        .head_manifest(reference)
        .await
        .with_context(|| format!("cannot read the digest of {reference}"))?
        .ok_or_else(|| anyhow::anyhow!("{reference}: no such manifest (HTTP 404)"))?;
    if let Some(d) = head.digest {
        return Ok((d.to_string(), head.media_type));
    }
    let raw = client
        .get_manifest(reference)
        .await
        .with_context(|| format!("cannot read the manifest of {reference}"))?;
    Ok((raw.digest.to_string(), Some(raw.media_type)))
}
