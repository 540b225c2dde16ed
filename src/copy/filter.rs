//! Platform filtering: a new index that keeps only some platforms.
//!
//! The new index is the source index's JSON with entries removed, edited as a
//! `serde_json::Value` so that every other field (and its order) survives.
//! Attestation entries are kept when the image they describe is kept.

use std::collections::HashSet;

use bytes::Bytes;
use serde_json::Value;

use crate::registry::manifest::ANNOTATION_REFERENCE_DIGEST;
use crate::registry::{Descriptor, Digest, Platform, PlatformSpec, RawManifest};

use super::ANNOTATION_SOURCE_DIGEST;

/// The result of filtering an index.
#[derive(Debug, Clone)]
pub struct Filtered {
    /// The index to push: the source bytes when every entry was kept, else new bytes.
    pub manifest: RawManifest,
    /// Platforms kept, as `os/arch[/variant]`.
    pub kept: Vec<String>,
    /// Platforms dropped.
    pub dropped: Vec<String>,
}

/// Why an index cannot be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The index JSON cannot be edited.
    Malformed(String),
    /// No entry matches the requested platforms.
    NoMatch {
        /// The platforms the index offers.
        available: Vec<String>,
    },
}

/// Keep only the entries of `index` whose platform matches one of `specs`,
/// plus attestation entries that refer (`vnd.docker.reference.digest`) to a
/// kept entry. When entries are dropped, the source digest is recorded under
/// [`ANNOTATION_SOURCE_DIGEST`] in the new index's `annotations`.
pub fn filter_index(index: &RawManifest, specs: &[PlatformSpec]) -> Result<Filtered, FilterError> {
    let mut doc: Value =
        serde_json::from_slice(&index.bytes).map_err(|e| FilterError::Malformed(e.to_string()))?;
    let Some(entries) = doc.get("manifests").and_then(Value::as_array) else {
        return Err(FilterError::Malformed("no \"manifests\" array".to_string()));
    };
    let mut descriptors = Vec::with_capacity(entries.len());
    for entry in entries {
        let d: Descriptor = serde_json::from_value(entry.clone())
            .map_err(|e| FilterError::Malformed(format!("index entry {entry}: {e}")))?;
        descriptors.push(d);
    }

    let matches = |p: &Option<Platform>| {
        p.as_ref()
            .is_some_and(|p| specs.iter().any(|s| s.matches(p)))
    };
    let kept_images: HashSet<&Digest> = descriptors
        .iter()
        .filter(|d| !d.is_attestation() && matches(&d.platform))
        .map(|d| &d.digest)
        .collect();
    if kept_images.is_empty() {
        let available = descriptors
            .iter()
            .filter(|d| !d.is_attestation())
            .map(|d| {
                d.platform
                    .as_ref()
                    .map(platform_name)
                    .unwrap_or_else(|| "(no platform)".to_string())
            })
            .collect();
        return Err(FilterError::NoMatch { available });
    }
    let keep: Vec<bool> = descriptors
        .iter()
        .map(|d| {
            kept_images.contains(&d.digest)
                || d.annotations
                    .get(ANNOTATION_REFERENCE_DIGEST)
                    .and_then(|r| r.parse::<Digest>().ok())
                    .is_some_and(|r| kept_images.contains(&r))
        })
        .collect();
    let describe = |want: bool| -> Vec<String> {
        descriptors
            .iter()
            .zip(&keep)
            .filter(|(d, k)| **k == want && !d.is_attestation())
            .map(|(d, _)| {
                d.platform
                    .as_ref()
                    .map(platform_name)
                    .unwrap_or_else(|| format!("({})", d.digest))
            })
            .collect()
    };
    let kept = describe(true);
    let dropped = describe(false);
    if keep.iter().all(|k| *k) {
        return Ok(Filtered {
            manifest: index.clone(),
            kept,
            dropped,
        });
    }

    let obj = doc
        .as_object_mut()
        .ok_or_else(|| FilterError::Malformed("index is not a JSON object".to_string()))?;
    if let Some(Value::Array(entries)) = obj.get_mut("manifests") {
        let mut flags = keep.iter();
        entries.retain(|_| *flags.next().unwrap_or(&false));
    }
    let annotations = obj
        .entry("annotations")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !annotations.is_object() {
        return Err(FilterError::Malformed(
            "\"annotations\" is not an object".to_string(),
        ));
    }
    if let Value::Object(map) = annotations {
        map.insert(
            ANNOTATION_SOURCE_DIGEST.to_string(),
            Value::String(index.digest.to_string()),
        );
    }
    let bytes = serde_json::to_vec(&doc).map_err(|e| FilterError::Malformed(e.to_string()))?;
    Ok(Filtered {
        manifest: RawManifest::new(Bytes::from(bytes), Some(&index.media_type)),
        kept,
        dropped,
    })
}

/// `os/arch[/variant]` of a platform.
pub fn platform_name(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os, p.architecture);
    if let Some(v) = &p.variant {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// The platform an image config declares (`os`, `architecture`, `variant`,
/// `os.version`, `os.features`); `None` when it declares no os/architecture.
pub fn platform_of_config(config: &[u8]) -> Option<Platform> {
    let p: Platform = serde_json::from_slice(config).ok()?;
    if p.os.is_empty() || p.architecture.is_empty() {
        return None;
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::{DOCKER_LIST, OCI_INDEX, OCI_MANIFEST};

    fn d(n: u8) -> String {
        format!(
            "sha256:{}",
            format!("{n:x}")
                .repeat(64)
                .chars()
                .take(64)
                .collect::<String>()
        )
    }

    fn index(media_type: &str) -> RawManifest {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[
{{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{b}","size":2,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{c}","size":3,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{e}","size":4,"platform":{{"architecture":"unknown","os":"unknown"}},
  "annotations":{{"vnd.docker.reference.digest":"{a}","vnd.docker.reference.type":"attestation-manifest"}}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{f}","size":5,"platform":{{"architecture":"unknown","os":"unknown"}},
  "annotations":{{"vnd.docker.reference.digest":"{b}","vnd.docker.reference.type":"attestation-manifest"}}}}],
"x-extra":{{"kept":true}}}}"#,
            a = d(1),
            b = d(2),
            c = d(3),
            e = d(4),
            f = d(5),
        );
        RawManifest::new(Bytes::from(body), Some(media_type))
    }

    fn specs(s: &[&str]) -> Vec<PlatformSpec> {
        s.iter().map(|x| x.parse().unwrap()).collect()
    }

    fn digests(m: &RawManifest) -> Vec<String> {
        let v: Value = serde_json::from_slice(&m.bytes).unwrap();
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn keeps_platform_and_its_attestation_only() {
        let src = index(OCI_INDEX);
        let f = filter_index(&src, &specs(&["linux/amd64"])).unwrap();
        assert_ne!(f.manifest.digest, src.digest);
        assert_eq!(f.manifest.media_type, OCI_INDEX);
        assert_eq!(digests(&f.manifest), vec![d(1), d(4)]);
        assert_eq!(f.kept, vec!["linux/amd64"]);
        assert_eq!(f.dropped, vec!["linux/arm64/v8", "linux/arm/v7"]);
        let v: Value = serde_json::from_slice(&f.manifest.bytes).unwrap();
        assert_eq!(
            v["annotations"][ANNOTATION_SOURCE_DIGEST],
            src.digest.to_string()
        );
        assert_eq!(v["x-extra"]["kept"], true, "unknown fields survive");
        assert_eq!(v["schemaVersion"], 2);
        // Field order of the source survives.
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "schemaVersion",
                "mediaType",
                "manifests",
                "x-extra",
                "annotations"
            ]
        );
        // Digest is the digest of the new bytes.
        assert_eq!(f.manifest.digest, Digest::sha256_of(&f.manifest.bytes));
    }

    #[test]
    fn several_platforms_and_variants() {
        let src = index(DOCKER_LIST);
        let f = filter_index(&src, &specs(&["linux/arm64", "linux/arm/v7"])).unwrap();
        assert_eq!(digests(&f.manifest), vec![d(2), d(3), d(5)]);
        assert_eq!(f.manifest.media_type, DOCKER_LIST);
    }

    #[test]
    fn everything_kept_preserves_bytes() {
        let src = index(OCI_INDEX);
        let f = filter_index(
            &src,
            &specs(&["linux/amd64", "linux/arm64", "linux/arm/v7"]),
        )
        .unwrap();
        assert_eq!(f.manifest, src);
        assert!(f.dropped.is_empty());
    }

    #[test]
    fn existing_annotations_are_extended() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[
{{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{b}","size":2,"platform":{{"architecture":"s390x","os":"linux"}}}}],
"annotations":{{"org.opencontainers.image.created":"2024"}}}}"#,
            a = d(1),
            b = d(2)
        );
        let src = RawManifest::new(Bytes::from(body), Some(OCI_INDEX));
        let f = filter_index(&src, &specs(&["linux/s390x"])).unwrap();
        let v: Value = serde_json::from_slice(&f.manifest.bytes).unwrap();
        assert_eq!(v["annotations"]["org.opencontainers.image.created"], "2024");
        assert_eq!(
            v["annotations"][ANNOTATION_SOURCE_DIGEST],
            src.digest.to_string()
        );
        assert_eq!(digests(&f.manifest), vec![d(2)]);
    }

    #[test]
    fn no_match_lists_what_exists() {
        let src = index(OCI_INDEX);
        let e = filter_index(&src, &specs(&["windows/amd64"])).unwrap_err();
        assert_eq!(
            e,
            FilterError::NoMatch {
                available: vec![
                    "linux/amd64".into(),
                    "linux/arm64/v8".into(),
                    "linux/arm/v7".into()
                ]
            }
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for body in [
            &b"{"[..],
            b"[]",
            b"{\"manifests\":3}",
            b"{\"manifests\":[{\"digest\":1}]}",
        ] {
            let m = RawManifest::new(Bytes::from_static(body), Some(OCI_INDEX));
            assert!(matches!(
                filter_index(&m, &specs(&["linux/amd64"])),
                Err(FilterError::Malformed(_))
            ));
        }
        let body = format!(
            r#"{{"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{a}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{b}","size":1}}],"annotations":[]}}"#,
            a = d(1),
            b = d(2)
        );
        let m = RawManifest::new(Bytes::from(body), Some(OCI_INDEX));
        assert!(matches!(
            filter_index(&m, &specs(&["linux/amd64"])),
            Err(FilterError::Malformed(_))
        ));
    }

    #[test]
    fn config_platform() {
        let p = platform_of_config(
            br#"{"architecture":"arm","os":"linux","variant":"v7","os.version":"x","rootfs":{}}"#,
        )
        .unwrap();
        assert_eq!(platform_name(&p), "linux/arm/v7");
        assert_eq!(p.os_version.as_deref(), Some("x"));
        assert!(platform_of_config(br#"{"mediaType":"x"}"#).is_none());
        assert!(platform_of_config(b"not json").is_none());
    }
}
