//! `index create`: combine single-platform images into one multi-arch index.
//!
//! Each entry's platform comes from its image config (os, architecture,
//! variant, os.version, os.features); children that live in another
//! repository are copied into the target repository by digest before the
//! index is pushed, so the index never points at missing manifests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::registry::manifest::{DOCKER_LIST, DOCKER_MANIFEST, Manifest, OCI_INDEX};
use crate::registry::{Digest, Platform, RawManifest, Reference};

use super::filter::{platform_name, platform_of_config};
use super::{Copier, CopyError, CopyOptions, Outcome};

/// Largest image config read to find a platform.
const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// The kind of index to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexFormat {
    /// OCI image index (`application/vnd.oci.image.index.v1+json`).
    #[default]
    Oci,
    /// Docker manifest list; every child must be a Docker schema2 manifest.
    Docker,
}

impl IndexFormat {
    /// The index media type.
    pub fn media_type(self) -> &'static str {
        match self {
            IndexFormat::Oci => OCI_INDEX,
            IndexFormat::Docker => DOCKER_LIST,
        }
    }
}

/// How to build an index.
#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// OCI index or Docker manifest list.
    pub format: IndexFormat,
    /// Annotations of the index (OCI only).
    pub annotations: BTreeMap<String, String>,
    /// Overwrite a target tag that points at a different digest.
    pub force: bool,
    /// Blobs transferred at once when copying children.
    pub blob_concurrency: usize,
    /// Read the images and build the index, but copy and push nothing: the
    /// report says what a real run would do (`Copied` meaning "would copy").
    pub dry_run: bool,
}

/// One entry of a built index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    /// Where the image came from.
    pub source: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// Its manifest media type.
    pub media_type: String,
    /// Its manifest size.
    pub size: u64,
    /// Its platform, from its config.
    pub platform: Platform,
}

/// The result of `index create`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    /// Where the index was pushed.
    pub target: String,
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Copied, up to date, or left alone on a tag conflict.
    pub outcome: Outcome,
    /// What the tag held before, when it held another digest.
    pub previous_digest: Option<Digest>,
    /// The entries, in the order given.
    pub entries: Vec<IndexEntry>,
    /// Children copied into the target repository from elsewhere.
    pub children_copied: u64,
    /// Blob bytes transferred while copying children.
    pub bytes_copied: u64,
    /// Manifests pushed: children copied plus the index itself.
    pub manifests_copied: u64,
    /// Blobs transferred while copying children.
    pub blobs_copied: u64,
    /// Blobs the target repository already had.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Wall time.
    pub duration: Duration,
}

impl IndexReport {
    /// The report of pushing `index` of `entries` to `target`, before
    /// anything is copied.
    fn new(target: &Reference, index: &RawManifest, entries: Vec<IndexEntry>) -> IndexReport {
        IndexReport {
            target: target.to_string(),
            digest: index.digest.clone(),
            media_type: index.media_type.clone(),
            outcome: Outcome::Copied,
            previous_digest: None,
            entries,
            children_copied: 0,
            bytes_copied: 0,
            manifests_copied: 0,
            blobs_copied: 0,
            blobs_skipped: 0,
            blobs_mounted: 0,
            duration: Duration::ZERO,
        }
    }
}

/// Build index bytes from entries. Errors name the offending entry.
pub fn build_index(
    format: IndexFormat,
    entries: &[IndexEntry],
    annotations: &BTreeMap<String, String>,
) -> Result<RawManifest, String> {
    if entries.is_empty() {
        return Err("an index needs at least one image".to_string());
    }
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    for e in entries {
        if format == IndexFormat::Docker && e.media_type != DOCKER_MANIFEST {
            return Err(format!(
                "{} is {}, but a Docker manifest list can only list Docker schema2 manifests \
                 ({DOCKER_MANIFEST}); use --format oci",
                e.source, e.media_type
            ));
        }
        let key = (platform_name(&e.platform), e.platform.os_version.clone());
        if let Some(other) = seen.iter().position(|k| *k == key) {
            return Err(format!(
                "{} and {} are both {}: an index holds one image per platform",
                entries[other].source, e.source, e.platform
            ));
        }
        seen.push(key);
    }
    if format == IndexFormat::Docker && !annotations.is_empty() {
        return Err(
            "Docker manifest lists have no annotations; use --format oci to annotate".to_string(),
        );
    }
    let manifests: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "mediaType": e.media_type,
                "digest": e.digest.to_string(),
                "size": e.size,
                "platform": e.platform,
            })
        })
        .collect();
    let mut doc = Map::new();
    doc.insert("schemaVersion".into(), json!(2));
    doc.insert("mediaType".into(), json!(format.media_type()));
    doc.insert("manifests".into(), Value::Array(manifests));
    if !annotations.is_empty() {
        doc.insert("annotations".into(), json!(annotations));
    }
    let bytes = serde_json::to_vec(&Value::Object(doc)).map_err(|e| e.to_string())?;
    Ok(RawManifest::new(
        Bytes::from(bytes),
        Some(format.media_type()),
    ))
}

impl Copier {
    /// Build an index of `sources` (single-platform images) and push it to
    /// `target` (tag `latest` when none is given), copying children that live
    /// in another repository into the target repository first.
    pub async fn create_index(
        &self,
        target: &Reference,
        sources: &[Reference],
        options: &IndexOptions,
    ) -> Result<IndexReport, CopyError> {
        let start = Instant::now();
        if target.digest().is_some() {
            return Err(CopyError::Invalid {
                image: target.to_string(),
                detail: "an index target needs a tag, not a digest".to_string(),
            });
        }
        let target = target.clone().or_latest();
        let target_repo = target.repository_only();
        self.ping(&target).await?;
        let entries = self.index_entries(&target, sources).await?;
        let index =
            build_index(options.format, &entries, &options.annotations).map_err(|detail| {
                CopyError::Invalid {
                    image: target.to_string(),
                    detail,
                }
            })?;
        let mut report = IndexReport::new(&target, &index, entries.clone());
        let current = self.current_digest(&target).await?;
        match current {
            Some(d) if d == index.digest => {
                report.outcome = Outcome::UpToDate;
                report.duration = start.elapsed();
                return Ok(report);
            }
            Some(d) if !options.force => {
                report.outcome = Outcome::TagConflict;
                report.previous_digest = Some(d);
                report.duration = start.elapsed();
                return Ok(report);
            }
            other => report.previous_digest = other,
        }
        if options.dry_run {
            report.duration = start.elapsed();
            return Ok(report);
        }

        self.copy_children(
            &target,
            &target_repo,
            sources,
            &entries,
            options,
            &mut report,
        )
        .await?;

        let got = self.client.put_manifest(&target, &index).await?;
        if got != index.digest {
            return Err(CopyError::DigestRewritten {
                image: target.to_string(),
                target: target.to_string(),
                expected: index.digest.clone(),
                actual: got,
            });
        }
        report.manifests_copied += 1;
        report.duration = start.elapsed();
        tracing::info!(target_ref = %report.target, digest = %report.digest, entries = entries.len(), "index pushed");
        Ok(report)
    }

    /// The entries of `sources` (tag `latest` when none is given), each
    /// checked not to be `target` itself.
    async fn index_entries(
        &self,
        target: &Reference,
        sources: &[Reference],
    ) -> Result<Vec<IndexEntry>, CopyError> {
        let mut entries = Vec::with_capacity(sources.len());
        for source in sources {
            let source = source.clone().or_latest();
            if source.digest().is_none() {
                super::plan::refuse_self_copy(&source, target)?;
            }
            self.ping(&source).await?;
            entries.push(self.index_entry(&source).await?);
        }
        Ok(entries)
    }

    /// The digest `target` holds now, if any.
    async fn current_digest(&self, target: &Reference) -> Result<Option<Digest>, CopyError> {
        Ok(match self.client.head_manifest(target).await? {
            None => None,
            Some(h) => match h.digest {
                Some(d) => Some(d),
                None => Some(self.client.get_manifest(target).await?.digest),
            },
        })
    }

    /// Copy the children that live in another repository into the target
    /// repository by digest, adding what was copied to `report`.
    async fn copy_children(
        &self,
        target: &Reference,
        target_repo: &Reference,
        sources: &[Reference],
        entries: &[IndexEntry],
        options: &IndexOptions,
        report: &mut IndexReport,
    ) -> Result<(), CopyError> {
        let copy_options = CopyOptions {
            blob_concurrency: options.blob_concurrency.max(1),
            ..CopyOptions::default()
        };
        for (source, entry) in sources.iter().zip(entries) {
            if source.registry() == target.registry() && source.repository() == target.repository()
            {
                continue;
            }
            let from = source.repository_only().with_digest(entry.digest.clone());
            let r = self.copy(&from, target_repo, &copy_options).await?;
            if r.outcome == Outcome::Copied {
                report.children_copied += 1;
            }
            report.bytes_copied += r.bytes_copied;
            report.manifests_copied += r.manifests_copied;
            report.blobs_copied += r.blobs_copied;
            report.blobs_skipped += r.blobs_skipped;
            report.blobs_mounted += r.blobs_mounted;
        }
        Ok(())
    }

    /// Read one single-platform image: its manifest and its config's platform.
    async fn index_entry(&self, source: &Reference) -> Result<IndexEntry, CopyError> {
        let raw = self.client.get_manifest(source).await?;
        let parsed = raw.parse().map_err(|error| CopyError::Manifest {
            image: source.to_string(),
            digest: raw.digest.clone(),
            error,
        })?;
        let image = match parsed {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                return Err(CopyError::Invalid {
                    image: source.to_string(),
                    detail: "this is already a multi-platform index; give single-platform images \
                             (for one entry of an index, use repository@digest of that entry)"
                        .to_string(),
                });
            }
        };
        let config = self
            .client
            .get_blob_bytes(
                &source.repository_only(),
                &image.config.digest,
                MAX_CONFIG_BYTES,
            )
            .await?;
        let platform = platform_of_config(&config).ok_or_else(|| CopyError::Invalid {
            image: source.to_string(),
            detail: format!(
                "its config ({}) names no os/architecture, so it has no platform to list; \
                 give container images only",
                image.config.media_type
            ),
        })?;
        Ok(IndexEntry {
            source: source.to_string(),
            digest: raw.digest.clone(),
            media_type: raw.media_type.clone(),
            size: raw.size(),
            platform,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::OCI_MANIFEST;

    fn entry(n: u8, media_type: &str, os: &str, arch: &str, variant: Option<&str>) -> IndexEntry {
        IndexEntry {
            source: format!("localhost:1/img{n}:t"),
            digest: Digest::sha256_of(&[n]),
            media_type: media_type.to_string(),
            size: 100 + u64::from(n),
            platform: Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
                ..Default::default()
            },
        }
    }

    #[test]
    fn oci_index_with_annotations() {
        let entries = [
            entry(1, OCI_MANIFEST, "linux", "amd64", None),
            entry(2, DOCKER_MANIFEST, "linux", "arm", Some("v7")),
        ];
        let ann = BTreeMap::from([(
            "org.opencontainers.image.version".to_string(),
            "1.0".to_string(),
        )]);
        let m = build_index(IndexFormat::Oci, &entries, &ann).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        let Manifest::Index(i) = m.parse().unwrap() else {
            panic!("not an index")
        };
        assert_eq!(i.manifests.len(), 2);
        assert_eq!(i.manifests[0].media_type, OCI_MANIFEST);
        assert_eq!(i.manifests[1].media_type, DOCKER_MANIFEST);
        assert_eq!(i.manifests[1].digest, Digest::sha256_of(&[2]));
        assert_eq!(i.manifests[1].size, 102);
        assert_eq!(
            i.manifests[1].platform.as_ref().unwrap().variant.as_deref(),
            Some("v7")
        );
        assert_eq!(i.annotations["org.opencontainers.image.version"], "1.0");
        let v: Value = serde_json::from_slice(&m.bytes).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert!(v["manifests"][0]["platform"].get("variant").is_none());
    }

    #[test]
    fn docker_list_rules() {
        let ok = [
            entry(1, DOCKER_MANIFEST, "linux", "amd64", None),
            entry(2, DOCKER_MANIFEST, "linux", "arm64", None),
        ];
        let m = build_index(IndexFormat::Docker, &ok, &BTreeMap::new()).unwrap();
        assert_eq!(m.media_type, DOCKER_LIST);
        let v: Value = serde_json::from_slice(&m.bytes).unwrap();
        assert!(v.get("annotations").is_none());

        let mixed = [
            entry(1, DOCKER_MANIFEST, "linux", "amd64", None),
            entry(2, OCI_MANIFEST, "linux", "arm64", None),
        ];
        let e = build_index(IndexFormat::Docker, &mixed, &BTreeMap::new()).unwrap_err();
        assert!(
            e.contains("localhost:1/img2:t") && e.contains("--format oci"),
            "{e}"
        );

        let ann = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert!(
            build_index(IndexFormat::Docker, &ok, &ann)
                .unwrap_err()
                .contains("annotations")
        );
    }

    #[test]
    fn rejects_duplicates_and_empty() {
        let dup = [
            entry(1, OCI_MANIFEST, "linux", "amd64", None),
            entry(2, OCI_MANIFEST, "linux", "amd64", None),
        ];
        let e = build_index(IndexFormat::Oci, &dup, &BTreeMap::new()).unwrap_err();
        assert!(e.contains("both linux/amd64"), "{e}");
        assert!(build_index(IndexFormat::Oci, &[], &BTreeMap::new()).is_err());
    }
}
