//! Raw manifests and the minimal parsing needed to walk them.
//!
//! Manifests travel as the exact bytes a registry served plus their media
//! type; they are parsed only to find the descriptors they reference.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::platform::Platform;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The OCI empty descriptor's media type.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Every manifest media type, for `Accept`: a registry given a narrower list
/// may answer with a different manifest (distribution 2.8 serves a child).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest accepted, as registries cap it.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Annotation buildx puts on attestation entries: the digest of the image they describe.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Annotation buildx puts on attestation entries: `attestation-manifest`.
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// True for index media types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// True for any manifest media type this crate walks.
pub fn is_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_INDEX | DOCKER_LIST | OCI_MANIFEST | DOCKER_MANIFEST
    )
}

/// A manifest as served: bytes, media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// The media type (from `Content-Type`, or from the body when the header is generic).
    pub media_type: String,
    /// Digest of `bytes`.
    pub digest: Digest,
}

impl RawManifest {
    /// Wrap bytes, computing their sha256 digest. A generic or missing media
    /// type is replaced by the one the body declares or implies.
    pub fn new(bytes: Bytes, media_type: Option<&str>) -> RawManifest {
        let digest = Digest::sha256_of(&bytes);
        let media_type = resolve_media_type(media_type, &bytes);
        RawManifest {
            bytes,
            media_type,
            digest,
        }
    }

    /// Parse for walking.
    pub fn parse(&self) -> Result<Manifest, ManifestError> {
        Manifest::parse(&self.media_type, &self.bytes)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

fn resolve_media_type(header: Option<&str>, body: &[u8]) -> String {
    let header = header.map(|h| h.split(';').next().unwrap_or("").trim().to_string());
    match header {
        Some(h)
            if is_manifest(&h)
                || (!h.is_empty()
                    && h != "application/json"
                    && h != "application/octet-stream"
                    && h != "text/plain") =>
        {
            h
        }
        _ => sniff_media_type(body).unwrap_or_else(|| OCI_MANIFEST.to_string()),
    }
}

/// The media type a manifest body declares, or implies by its fields.
pub fn sniff_media_type(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    if let Some(m) = p.media_type {
        return Some(m);
    }
    if p.manifests.is_some() {
        return Some(OCI_INDEX.to_string());
    }
    if p.config.is_some() {
        return Some(OCI_MANIFEST.to_string());
    }
    None
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Foreign URLs (non-distributable layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Artifact type, for artifact manifests in an index.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// True for buildx attestation entries: `unknown/unknown` platform plus
    /// a `vnd.docker.reference.type` annotation.
    pub fn is_attestation(&self) -> bool {
        self.platform.as_ref().is_some_and(Platform::is_unknown)
            && self.annotations.contains_key(ANNOTATION_REFERENCE_TYPE)
    }

    /// True when the content lives outside the registry (`urls` set).
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
    }
}

/// A manifest parsed for walking.
// Parsed manifests are short-lived and few; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An OCI index or Docker manifest list.
    Index(Index),
    /// An image (or artifact) manifest.
    Image(ImageManifest),
}

/// Fields of an index needed to walk it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    /// Its entries.
    pub manifests: Vec<Descriptor>,
    /// `subject`, when the index refers to another manifest.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Fields of an image or artifact manifest needed to walk it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    /// The config blob (any media type for artifacts).
    pub config: Descriptor,
    /// Layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// `subject`, when the manifest refers to another manifest.
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

/// Why manifest bytes cannot be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A media type this crate does not walk.
    #[error(
        "unsupported manifest media type {0:?} (supported: OCI index and manifest, Docker manifest list and schema 2)"
    )]
    UnsupportedMediaType(String),
    /// JSON that does not fit the media type.
    #[error("malformed {media_type} manifest: {detail}")]
    Malformed {
        /// The media type it was parsed as.
        media_type: String,
        /// The parser's complaint.
        detail: String,
    },
    /// Over the size cap.
    #[error("manifest is {0} bytes, over the 4 MiB limit registries apply")]
    TooLarge(usize),
}

impl Manifest {
    /// Parse manifest bytes of the given media type.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let malformed = |e: serde_json::Error| ManifestError::Malformed {
            media_type: media_type.to_string(),
            detail: e.to_string(),
        };
        match media_type {
            OCI_INDEX | DOCKER_LIST => Ok(Manifest::Index(
                serde_json::from_slice(bytes).map_err(malformed)?,
            )),
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(Manifest::Image(
                serde_json::from_slice(bytes).map_err(malformed)?,
            )),
            other => Err(ManifestError::UnsupportedMediaType(other.to_string())),
        }
    }

    /// Every descriptor this manifest references (children, config, layers),
    /// `subject` excluded: a subject is another image, not part of this one.
    pub fn references(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Index(i) => i.manifests.iter().collect(),
            Manifest::Image(m) => std::iter::once(&m.config).chain(m.layers.iter()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn walks_index_and_image() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":11,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{D1}"}}}}]}}"#
        );
        let raw = RawManifest::new(Bytes::from(index), Some("application/json"));
        assert_eq!(raw.media_type, OCI_INDEX);
        let Manifest::Index(i) = raw.parse().unwrap() else {
            panic!()
        };
        assert_eq!(i.manifests.len(), 2);
        assert!(!i.manifests[0].is_attestation());
        assert!(i.manifests[1].is_attestation());

        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D1}","size":3}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":5,"urls":["https://x"]}}]}}"#
        );
        let m = Manifest::parse(DOCKER_MANIFEST, image.as_bytes()).unwrap();
        let refs = m.references();
        assert_eq!(refs.len(), 2);
        assert!(refs[1].is_foreign());
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(matches!(
            Manifest::parse("text/html", b"{}"),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Manifest::parse(OCI_INDEX, b"{"),
            Err(ManifestError::Malformed { .. })
        ));
        let bad_digest = r#"{"manifests":[{"mediaType":"x","digest":"sha256:zz","size":1}]}"#;
        assert!(matches!(
            Manifest::parse(OCI_INDEX, bad_digest.as_bytes()),
            Err(ManifestError::Malformed { .. })
        ));
        let neg = format!(r#"{{"manifests":[{{"mediaType":"x","digest":"{D1}","size":-1}}]}}"#);
        assert!(matches!(
            Manifest::parse(OCI_INDEX, neg.as_bytes()),
            Err(ManifestError::Malformed { .. })
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(OCI_INDEX, &big),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
