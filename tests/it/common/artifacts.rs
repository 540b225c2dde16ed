//! Referrers as clients push them: artifacts with a `subject` (an SPDX SBOM,
//! an in-toto attestation) pushed by digest, with the fallback index of the
//! OCI distribution spec (an OCI index under the `sha256-<hex>` tag of the
//! subject) where the registry has no referrers API; an independent reader
//! of a subject's referrers (API with `Link` paging, or the fallback tag);
//! and the signed multi-arch fixture the end-to-end tests mirror.
//!
//! Whether a registry has the API is decided as the spec tells clients to:
//! a manifest PUT answered with `OCI-Subject` means the registry indexed the
//! referrer itself; otherwise the client maintains the fallback index.

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use super::cosign::{CosignKey, sign_digest, sign_recursive};
use super::ferro::AnyRegistry;
use super::image::{
    Blob, Format, IN_TOTO, Image, ImageSet, Index, Manifest, Node, OCI_INDEX, artifact_for,
};
use super::push::Pusher;

/// `artifactType` of an SPDX SBOM.
pub const SPDX: &str = "application/spdx+json";
/// `artifactType` of an in-toto attestation.
pub const IN_TOTO_TYPE: &str = IN_TOTO;

/// An SPDX JSON SBOM about `subject`, as an OCI artifact with `subject`.
pub fn sbom_for(subject: &Manifest, seed: &str) -> Image {
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": seed,
        "documentNamespace": format!("https://example.invalid/spdx/{seed}"),
        "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: regmirror-tests"]},
        "packages": [{"SPDXID": "SPDXRef-Package", "name": seed, "downloadLocation": "NOASSERTION"}],
    });
    let payload = Blob::new(SPDX, serde_json::to_vec(&doc).expect("serializing an SBOM"));
    artifact_for(subject, SPDX, payload)
}

/// An in-toto statement (SLSA provenance) about `subject`, as an OCI
/// artifact with `subject`.
pub fn intoto_for(subject: &Manifest, seed: &str) -> Image {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": seed, "digest": {"sha256": subject.digest.trim_start_matches("sha256:")}}],
        "predicate": {"buildDefinition": {"buildType": "https://example.invalid/build", "externalParameters": {"seed": seed}}},
    });
    let payload = Blob::new(
        IN_TOTO,
        serde_json::to_vec(&statement).expect("serializing an in-toto statement"),
    );
    artifact_for(subject, IN_TOTO_TYPE, payload)
}

/// `sha256-<hex>` (the spec's fallback tag) of `digest`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The subject digest `referrer`'s manifest names.
pub fn subject_of(referrer: &Image) -> String {
    referrer.manifest.json()["subject"]["digest"]
        .as_str()
        .expect("a referrer has a subject digest")
        .to_string()
}

/// The referrers-list descriptor of `referrer`, as the spec builds it:
/// media type, digest, size, `artifactType` (or the config media type) and
/// the manifest's annotations.
pub fn referrer_descriptor(referrer: &Image) -> Value {
    manifest_descriptor(&referrer.manifest)
}

/// [`referrer_descriptor`] of raw manifest bytes.
pub fn manifest_descriptor(m: &Manifest) -> Value {
    let doc = m.json();
    let mut d = Map::new();
    d.insert("mediaType".into(), json!(m.media_type));
    d.insert("digest".into(), json!(m.digest));
    d.insert("size".into(), json!(m.size()));
    let at = doc["artifactType"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(doc["config"]["mediaType"].as_str())
        .unwrap_or_default();
    d.insert("artifactType".into(), json!(at));
    if let Some(a) = doc.get("annotations") {
        d.insert("annotations".into(), a.clone());
    }
    Value::Object(d)
}

/// How a referrer was recorded by [`push_referrer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The registry answered `OCI-Subject`: it indexes referrers itself.
    Api,
    /// The fallback index under `sha256-<hex>` was written by the client.
    FallbackTag,
}

/// Pushes `referrer` (blobs, then the manifest by digest); when the answer
/// has no `OCI-Subject`, adds its descriptor to the subject's fallback
/// index (read, merge by digest, write).
pub async fn push_referrer(
    pusher: &Pusher,
    repo: &str,
    referrer: &Image,
) -> anyhow::Result<Recorded> {
    for b in referrer.pushable_blobs() {
        pusher.push_blob(repo, b).await?;
    }
    let headers = pusher
        .put_manifest_headers(repo, &referrer.manifest.digest, &referrer.manifest)
        .await?;
    let subject = subject_of(referrer);
    let confirmed = headers
        .get("oci-subject")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == subject);
    if confirmed {
        return Ok(Recorded::Api);
    }
    add_to_fallback_index(pusher, repo, &subject, referrer_descriptor(referrer)).await?;
    Ok(Recorded::FallbackTag)
}

/// Reads the fallback index of `subject` (empty when absent), adds
/// `descriptor` unless its digest is listed, and writes it back.
pub async fn add_to_fallback_index(
    pusher: &Pusher,
    repo: &str,
    subject: &str,
    descriptor: Value,
) -> anyhow::Result<Manifest> {
    let tag = fallback_tag(subject);
    let mut entries = fallback_entries(pusher, repo, subject)
        .await?
        .unwrap_or_default();
    if !entries.iter().any(|e| e["digest"] == descriptor["digest"]) {
        entries.push(descriptor);
    }
    let index = Manifest::from_json(
        OCI_INDEX,
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    );
    pusher
        .push_manifest(repo, &tag, &index)
        .await
        .with_context(|| format!("writing the fallback index {repo}:{tag}"))?;
    Ok(index)
}

/// The descriptors of the fallback index under `sha256-<hex>` of `subject`,
/// or `None` when the tag does not exist.
pub async fn fallback_entries(
    pusher: &Pusher,
    repo: &str,
    subject: &str,
) -> anyhow::Result<Option<Vec<Value>>> {
    let tag = fallback_tag(subject);
    if !pusher.manifest_exists(repo, &tag).await? {
        return Ok(None);
    }
    let (ct, bytes) = pusher.get_manifest(repo, &tag).await?;
    let doc: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the fallback index {repo}:{tag} is not JSON"))?;
    if !ct.starts_with(OCI_INDEX) {
        bail!("the fallback tag {repo}:{tag} holds {ct}, not an OCI index");
    }
    Ok(Some(
        doc["manifests"].as_array().cloned().unwrap_or_default(),
    ))
}

/// Where a listing of referrers came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `GET /v2/<repo>/referrers/<digest>` (pages followed).
    Api,
    /// The `sha256-<hex>` fallback tag.
    FallbackTag,
    /// Neither exists.
    None,
}

/// A subject's referrers as an independent reader sees them.
#[derive(Clone, Debug)]
pub struct Listing {
    pub source: Source,
    pub descriptors: Vec<Value>,
}

impl Listing {
    /// `(digest, artifactType)` pairs, sorted: what two registries must agree on.
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut k: Vec<(String, String)> = self
            .descriptors
            .iter()
            .map(|d| {
                (
                    d["digest"].as_str().unwrap_or_default().to_string(),
                    d["artifactType"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        k.sort();
        k
    }

    /// Digests of entries whose `artifactType` is `t`.
    pub fn of_type(&self, t: &str) -> Vec<String> {
        self.descriptors
            .iter()
            .filter(|d| d["artifactType"] == t)
            .filter_map(|d| d["digest"].as_str().map(str::to_string))
            .collect()
    }
}

/// Lists `subject`'s referrers: the API when the registry serves it (every
/// `Link` page), else the fallback tag.
pub async fn list_referrers(pusher: &Pusher, repo: &str, subject: &str) -> anyhow::Result<Listing> {
    if let Some(descriptors) = referrers_api(pusher, repo, subject).await? {
        return Ok(Listing {
            source: Source::Api,
            descriptors,
        });
    }
    Ok(match fallback_entries(pusher, repo, subject).await? {
        Some(descriptors) => Listing {
            source: Source::FallbackTag,
            descriptors,
        },
        None => Listing {
            source: Source::None,
            descriptors: Vec::new(),
        },
    })
}

/// `GET /v2/<repo>/referrers/<subject>` following `Link: <…>; rel="next"`
/// (at most 100 pages); `None` when the registry has no such API (404).
pub async fn referrers_api(
    pusher: &Pusher,
    repo: &str,
    subject: &str,
) -> anyhow::Result<Option<Vec<Value>>> {
    let mut path = format!("/v2/{repo}/referrers/{subject}");
    let mut out = Vec::new();
    for _ in 0..100 {
        let (status, headers, body) = pusher.get_raw(&path, repo, Some(OCI_INDEX)).await?;
        if status == 404 && out.is_empty() {
            return Ok(None);
        }
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        let doc: Value =
            serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
        out.extend(doc["manifests"].as_array().cloned().unwrap_or_default());
        match next_link(&headers) {
            Some(next) => path = next,
            None => return Ok(Some(out)),
        }
    }
    bail!("{repo}: more than 100 referrer pages for {subject}")
}

/// The path of a `Link: <PATH>; rel="next"` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let (target, params) = v.split_once(';')?;
    if !params.contains("rel=\"next\"") {
        return None;
    }
    let t = target.trim().trim_start_matches('<').trim_end_matches('>');
    let path = match t.find("/v2/") {
        Some(i) => &t[i..],
        None => t,
    };
    Some(path.to_string())
}

/// The signed multi-arch image of the end-to-end tests, as pushed to its
/// source: a buildx-style index (two platforms, an attestation manifest per
/// platform inside the index), an SPDX SBOM referrer per platform image, an
/// in-toto attestation referrer of the index, cosign signatures of the
/// index and every manifest it lists, and, one level deeper, an in-toto
/// referrer of the first platform's SBOM.
#[derive(Clone, Debug)]
pub struct SignedImage {
    pub index: Index,
    /// `(platform, SBOM)` for each platform image.
    pub sboms: Vec<(String, Image)>,
    /// The in-toto attestation whose subject is the index.
    pub provenance: Image,
    /// A referrer of a referrer: an in-toto attestation whose subject is
    /// the first platform's SBOM.
    pub sbom_attestation: Image,
    pub key: CosignKey,
    /// Digests signed (index first, then every child).
    pub signed: Vec<String>,
}

/// The platforms of [`SignedImage`].
pub const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

impl SignedImage {
    /// Builds the image (pure: same seed, same digests).
    pub fn build(seed: &str) -> SignedImage {
        let index = ImageSet::multi_arch(seed, &PLATFORMS, true, Format::Oci);
        let sboms: Vec<(String, Image)> = PLATFORMS
            .iter()
            .map(|p| {
                let img = index.image_for(p).expect("platform image");
                (
                    p.to_string(),
                    sbom_for(&img.manifest, &format!("{seed}/{p}")),
                )
            })
            .collect();
        let provenance = intoto_for(&index.manifest, seed);
        let first_sbom: &Image = &sboms[0].1;
        let sbom_attestation = intoto_for(&first_sbom.manifest, &format!("{seed}/sbom-review"));
        SignedImage {
            index,
            sboms,
            provenance,
            sbom_attestation,
            key: CosignKey::from_seed(&format!("cosign key {seed}")),
            signed: Vec::new(),
        }
    }

    /// Pushes the index under `repo:tag`, then the referrers, then signs
    /// recursively as `HOST/repo`. Returns how the referrers were recorded.
    pub async fn push(
        &mut self,
        reg: AnyRegistry<'_>,
        repo: &str,
        tag: &str,
    ) -> anyhow::Result<Recorded> {
        let pusher = reg.pusher();
        pusher
            .push_node(repo, &Node::Index(self.index.clone()), Some(tag))
            .await?;
        let mut how = Recorded::Api;
        for r in self.referrers() {
            if push_referrer(&pusher, repo, &r).await? == Recorded::FallbackTag {
                how = Recorded::FallbackTag;
            }
        }
        let docker_ref = format!("{}/{repo}", reg.host());
        self.signed = sign_recursive(&pusher, repo, &docker_ref, &self.index, &self.key).await?;
        Ok(how)
    }

    /// Signs the first platform's SBOM too (as `cosign sign` of a referrer
    /// digest does), in `reg`'s `repo`; returns its digest.
    pub async fn sign_first_sbom(
        &self,
        reg: AnyRegistry<'_>,
        repo: &str,
    ) -> anyhow::Result<String> {
        let sbom = self.sboms[0].1.digest().to_string();
        let docker_ref = format!("{}/{repo}", reg.host());
        sign_digest(&reg.pusher(), repo, &docker_ref, &sbom, &self.key).await?;
        Ok(sbom)
    }

    /// Every subject whose referrers a full copy must carry: the signed
    /// digests and the first SBOM (a referrer with a referrer).
    pub fn referrer_subjects(&self) -> Vec<String> {
        let mut v = self.signed.clone();
        v.push(self.sboms[0].1.digest().to_string());
        v
    }

    /// Every referrer with a `subject`: SBOMs, the provenance, then the
    /// attestation of the first SBOM (subjects before their referrers).
    pub fn referrers(&self) -> Vec<Image> {
        let mut v: Vec<Image> = self.sboms.iter().map(|(_, i)| i.clone()).collect();
        v.push(self.provenance.clone());
        v.push(self.sbom_attestation.clone());
        v
    }

    /// The platform image for `platform`.
    pub fn child(&self, platform: &str) -> &Image {
        self.index
            .image_for(platform)
            .expect("a platform of the signed image")
    }

    /// The buildx attestation manifest inside the index for `platform`.
    pub fn buildx_attestation(&self, platform: &str) -> &Image {
        let child = self.child(platform).digest().to_string();
        self.index
            .attestations()
            .into_iter()
            .find(|a| {
                a.entry_annotations
                    .iter()
                    .any(|(k, v)| k == "vnd.docker.reference.digest" && *v == child)
            })
            .expect("a buildx attestation per platform")
    }

    /// The SBOM referrer of `platform`'s image.
    pub fn sbom(&self, platform: &str) -> &Image {
        &self
            .sboms
            .iter()
            .find(|(p, _)| p == platform)
            .expect("an SBOM per platform")
            .1
    }
}
