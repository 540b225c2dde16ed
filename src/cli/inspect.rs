//! `regmirror inspect`: print a manifest as the registry serves it.

use anyhow::Context as _;

use regmirror::copy::filter::{platform_name, platform_of_config};
use regmirror::registry::manifest::{self, Manifest, is_index};
use regmirror::registry::{Client, PlatformSpec, RawManifest, Reference};

use super::out::{outln, write_bytes};
use super::{Exit, UsageError};

/// Long help of `regmirror inspect`.
pub const LONG_ABOUT: &str = "Print a manifest as the registry serves it (like `docker manifest \
inspect`): a summary with a platform table for an index, the config and layers for an image, \
the indented JSON (--output json) or the exact bytes (--raw, whose sha256 is the digest). \
--platform picks one platform's manifest out of an index, nested indexes included.

REFERENCE is [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] (tag `latest` when neither is given), \
or an OCI image layout oci:DIR[:REF] or archive oci-archive:FILE[:REF] (no REF: its only image).";

/// Largest image config read to check a platform.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;
/// Deepest nesting of indexes followed by --platform.
const MAX_DEPTH: usize = 8;

/// Arguments of `regmirror inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image reference (`nginx`, `host:5000/ns/app:tag`, `repo@sha256:…`).
    pub reference: String,
    /// Write the manifest bytes untouched (their sha256 is the digest).
    #[arg(long, conflicts_with_all = ["json", "output"])]
    pub raw: bool,
    /// Output format (json: the manifest as indented JSON instead of a summary table).
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::report::Output,
    /// The old spelling of `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
    /// Show the manifest of this platform (os/arch[/variant]) instead of the index.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let reference = super::parse_image("reference", &args.reference)?.or_latest();
    let platform = match &args.platform {
        Some(p) => Some(platform_spec(p)?),
        None => None,
    };
    let options = args.registry.client_options()?;
    super::check_credentials(&options, &Vec::from_iter(reference.registry_host()))?;
    let client = Client::new(options)?;
    let mut raw = client
        .get_manifest(&reference)
        .await
        .with_context(|| format!("cannot inspect {reference}"))?;
    let mut shown = reference.clone();
    if let Some(spec) = &platform {
        (shown, raw) = pick_platform(&client, &reference, raw, spec).await?;
    }
    if args.raw {
        write_bytes(&raw.bytes)?;
        return Ok(Exit::Ok);
    }
    if args.json || args.output == super::report::Output::Json {
        let value: serde_json::Value = serde_json::from_slice(&raw.bytes)
            .with_context(|| format!("{shown}: the manifest is not valid JSON"))?;
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(Exit::Ok);
    }
    super::out::write_fmt(format_args!("{}", summary(&shown, &raw)?))?;
    Ok(Exit::Ok)
}

/// `--platform`: os/arch[/variant]; a usage error otherwise.
pub(super) fn platform_spec(p: &str) -> Result<PlatformSpec, UsageError> {
    p.parse::<PlatformSpec>().map_err(|e| {
        UsageError(format!(
            "--platform {p:?}: {e}; expected os/arch[/variant] such as linux/arm64"
        ))
    })
}

/// The manifest of `spec`'s platform under `raw`: an index entry (looking
/// into nested indexes), or `raw` itself when it is an image of that platform.
pub(super) async fn pick_platform(
    client: &Client,
    reference: &Reference,
    mut raw: RawManifest,
    spec: &PlatformSpec,
) -> anyhow::Result<(Reference, RawManifest)> {
    let repo = reference.repository_only();
    let mut at = reference.clone();
    let mut offered = Vec::new();
    for _ in 0..MAX_DEPTH {
        let parsed = raw
            .parse()
            .with_context(|| format!("{at}: cannot read the manifest"))?;
        let index = match parsed {
            Manifest::Index(index) => index,
            Manifest::Image(image) => {
                let config = client
                    .get_blob_bytes(&repo, &image.config.digest, MAX_CONFIG_BYTES)
                    .await
                    .with_context(|| format!("cannot read the config of {at}"))?;
                return match platform_of_config(&config) {
                    Some(p) if spec.matches(&p) => Ok((at, raw)),
                    Some(p) => Err(anyhow::anyhow!(
                        "{at} is a single-platform image for {}, not {spec}: drop --platform",
                        platform_name(&p)
                    )),
                    None => Err(anyhow::anyhow!(
                        "{at} names no platform in its config: drop --platform"
                    )),
                };
            }
        };
        let mut next = None;
        for d in index.manifests.iter().filter(|d| !d.is_attestation()) {
            match &d.platform {
                Some(p) if spec.matches(p) => {
                    next = Some(d.clone());
                    break;
                }
                Some(p) => offered.push(platform_name(p)),
                None if is_index(&d.media_type) && next.is_none() => next = Some(d.clone()),
                None => {}
            }
        }
        let Some(d) = next else {
            return Err(anyhow::anyhow!(
                "{reference} has no manifest for {spec}; it offers {}",
                if offered.is_empty() {
                    "no platform".to_string()
                } else {
                    offered.join(", ")
                }
            ));
        };
        at = repo.with_digest(d.digest.clone());
        raw = client
            .get_manifest(&at)
            .await
            .with_context(|| format!("cannot inspect {at}"))?;
        if raw.digest != d.digest {
            anyhow::bail!(
                "{at}: the registry served a manifest with digest {}; refusing it",
                raw.digest
            );
        }
        if !is_index(&raw.media_type) && d.platform.is_some() {
            return Ok((at, raw));
        }
    }
    anyhow::bail!("{reference}: indexes are nested more than {MAX_DEPTH} deep")
}

/// A readable summary: name, media type, digest, and a table of entries.
pub fn summary(reference: &Reference, raw: &RawManifest) -> anyhow::Result<String> {
    let mut s = String::new();
    s.push_str(&format!("Name:       {reference}\n"));
    s.push_str(&format!("MediaType:  {}\n", raw.media_type));
    s.push_str(&format!("Digest:     {}\n", raw.digest));
    s.push_str(&format!("Size:       {}\n", raw.size()));
    let parsed = raw
        .parse()
        .with_context(|| format!("{reference}: cannot read the manifest"))?;
    let rows = match &parsed {
        Manifest::Index(index) => {
            s.push_str(&format!("Manifests:  {}\n\n", index.manifests.len()));
            index_rows(index)
        }
        Manifest::Image(image) => {
            s.push_str(&format!("Layers:     {}\n\n", image.layers.len()));
            image_rows(image)
        }
    };
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        s.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    Ok(s)
}

/// The table rows of an index: a header, then one row per entry.
fn index_rows(index: &manifest::Index) -> Vec<[String; 4]> {
    let mut rows: Vec<[String; 4]> = vec![[
        "PLATFORM".into(),
        "DIGEST".into(),
        "SIZE".into(),
        "MEDIA TYPE".into(),
    ]];
    for d in &index.manifests {
        let platform = if d.is_attestation() {
            let of = d
                .annotations
                .get(manifest::ANNOTATION_REFERENCE_DIGEST)
                .map(|x| short(x))
                .unwrap_or_else(|| "?".into());
            format!("attestation for {of}")
        } else if let Some(p) = &d.platform {
            p.to_string()
        } else if let Some(a) = &d.artifact_type {
            format!("artifact {a}")
        } else {
            "-".into()
        };
        rows.push([
            platform,
            d.digest.to_string(),
            d.size.to_string(),
            d.media_type.clone(),
        ]);
    }
    rows
}

/// The table rows of an image: a header, the config, the layers, the subject.
fn image_rows(image: &manifest::ImageManifest) -> Vec<[String; 4]> {
    let mut rows: Vec<[String; 4]> = vec![[
        "ROLE".into(),
        "DIGEST".into(),
        "SIZE".into(),
        "MEDIA TYPE".into(),
    ]];
    rows.push([
        "config".into(),
        image.config.digest.to_string(),
        image.config.size.to_string(),
        image.config.media_type.clone(),
    ]);
    for (i, l) in image.layers.iter().enumerate() {
        let role = if l.is_foreign() {
            format!("layer {i} (foreign)")
        } else {
            format!("layer {i}")
        };
        rows.push([
            role,
            l.digest.to_string(),
            l.size.to_string(),
            l.media_type.clone(),
        ]);
    }
    if let Some(sub) = &image.subject {
        rows.push([
            "subject".into(),
            sub.digest.to_string(),
            sub.size.to_string(),
            sub.media_type.clone(),
        ]);
    }
    rows
}

fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}
