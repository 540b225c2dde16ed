//! `regmirror inspect`: print a manifest as the registry serves it.

use std::io::Write;

use anyhow::Context as _;

use regmirror::registry::manifest::{self, Manifest};
use regmirror::registry::{Client, RawManifest, Reference};

use super::Exit;

/// Arguments of `regmirror inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image reference (`nginx`, `host:5000/ns/app:tag`, `repo@sha256:…`).
    pub reference: String,
    /// Write the manifest bytes untouched (their sha256 is the digest).
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    /// Print the manifest as indented JSON instead of a summary table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: super::RegistryArgs,
}

/// Run the command.
pub async fn run(args: Args) -> anyhow::Result<Exit> {
    let reference = Reference::parse(&args.reference)?.or_latest();
    let client = Client::new(args.registry.client_options()?)?;
    let raw = client
        .get_manifest(&reference)
        .await
        .with_context(|| format!("cannot inspect {reference}"))?;
    let mut out = std::io::stdout().lock();
    if args.raw {
        out.write_all(&raw.bytes)?;
        out.flush()?;
        return Ok(Exit::Ok);
    }
    if args.json {
        let value: serde_json::Value = serde_json::from_slice(&raw.bytes)
            .with_context(|| format!("{reference}: the manifest is not valid JSON"))?;
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(Exit::Ok);
    }
    write!(out, "{}", summary(&reference, &raw)?)?;
    Ok(Exit::Ok)
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
    let mut rows: Vec<[String; 4]> = Vec::new();
    match &parsed {
        Manifest::Index(index) => {
            s.push_str(&format!("Manifests:  {}\n\n", index.manifests.len()));
            rows.push([
                "PLATFORM".into(),
                "DIGEST".into(),
                "SIZE".into(),
                "MEDIA TYPE".into(),
            ]);
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
        }
        Manifest::Image(image) => {
            s.push_str(&format!("Layers:     {}\n\n", image.layers.len()));
            rows.push([
                "ROLE".into(),
                "DIGEST".into(),
                "SIZE".into(),
                "MEDIA TYPE".into(),
            ]);
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
        }
    }
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

fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}
