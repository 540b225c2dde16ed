//! Platform filtering: a new index that keeps only some platforms.
//!
//! The new index is the source index's JSON with entries removed, edited as
//! raw JSON text ([`crate::registry::rawjson`]) so that every other field
//! (and its order) survives at a cost of about the index's size (never a
//! generic value tree).
//! Attestation entries are kept when the image they describe is kept.
//!
//! Nested indexes (an index entry that is itself an index) are looked into:
//! the caller fetches them with [`fetch_nested_indexes`] and passes them to
//! [`filter_index_tree`]; a nested index is kept, filtered the same way, when
//! one of its platforms matches, and dropped otherwise. A nested index that
//! had entries removed gets new bytes (and a new digest) of its own; those
//! are returned in [`Filtered::rewritten`] for the copier to push, and the
//! parent refers to the new digest.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::registry::rawjson::{RawObject, array_to_raw, split_array};

use crate::registry::manifest::{ANNOTATION_REFERENCE_DIGEST, is_index};
use crate::registry::referrers::ReferrerInfo;
use crate::registry::{Client, Descriptor, Digest, Platform, PlatformSpec, RawManifest, Reference};

use super::{ANNOTATION_SOURCE_DIGEST, CopyError};

/// Deepest nesting of indexes looked into.
const MAX_NESTING: usize = 8;
/// Most nested indexes fetched for one image.
const MAX_NESTED: usize = 256;

/// The result of filtering an index.
#[derive(Debug, Clone)]
pub struct Filtered {
    /// The index to push: the source bytes when every entry was kept, else new bytes.
    pub manifest: RawManifest,
    /// Platforms kept, as `os/arch[/variant]`.
    pub kept: Vec<String>,
    /// Platforms dropped.
    pub dropped: Vec<String>,
    /// Requested platforms that no entry matched (as written, `os/arch[/variant]`).
    pub missing: Vec<String>,
    /// Nested indexes given new bytes by the filter, children before parents;
    /// they exist nowhere yet and must be pushed before `manifest`.
    pub rewritten: Vec<RawManifest>,
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
/// [`ANNOTATION_SOURCE_DIGEST`] in the new index's `annotations`. Nested
/// indexes are judged by their own platform field only; see
/// [`filter_index_tree`] to look inside them.
pub fn filter_index(index: &RawManifest, specs: &[PlatformSpec]) -> Result<Filtered, FilterError> {
    filter_index_tree(index, specs, &HashMap::new())
}

/// [`filter_index`], looking inside the nested indexes found in `nested`
/// (by digest, as [`fetch_nested_indexes`] returns them).
pub fn filter_index_tree(
    index: &RawManifest,
    specs: &[PlatformSpec],
    nested: &HashMap<Digest, RawManifest>,
) -> Result<Filtered, FilterError> {
    filter_level(index, specs, nested, 0)
}

/// Fetch, by digest and verified, every index nested under `index` in `repo`
/// (breadth first, at most [`MAX_NESTING`] deep and [`MAX_NESTED`] in all).
pub async fn fetch_nested_indexes(
    client: &Client,
    repo: &Reference,
    index: &RawManifest,
) -> Result<HashMap<Digest, RawManifest>, CopyError> {
    let mut found: HashMap<Digest, RawManifest> = HashMap::new();
    let mut level = nested_entries(index);
    let mut depth = 0;
    while !level.is_empty() && depth < MAX_NESTING {
        let mut next = Vec::new();
        for d in level {
            if found.contains_key(&d) {
                continue;
            }
            if found.len() >= MAX_NESTED {
                return Err(CopyError::Invalid {
                    image: repo.to_string(),
                    detail: format!("more than {MAX_NESTED} nested indexes: refusing to walk them"),
                });
            }
            let at = repo.with_digest(d.clone());
            let raw = client.get_manifest(&at).await?;
            if raw.digest != d {
                return Err(CopyError::Invalid {
                    image: at.to_string(),
                    detail: format!(
                        "the registry served a manifest with digest {} for {d}; nothing was written",
                        raw.digest
                    ),
                });
            }
            next.extend(nested_entries(&raw));
            found.insert(d, raw);
        }
        level = next;
        depth += 1;
    }
    Ok(found)
}

/// Fetch, by digest and verified, the entries of `index` and of the indexes
/// in `nested` that have no platform and are not indexes or attestations
/// (artifacts such as SBOMs or signatures listed in the index), into
/// `nested`, so that [`filter_index_tree`] keeps those whose `subject` is a
/// kept image. At most [`MAX_NESTED`] are fetched.
pub async fn fetch_index_artifacts(
    client: &Client,
    repo: &Reference,
    index: &RawManifest,
    nested: &mut HashMap<Digest, RawManifest>,
) -> Result<(), CopyError> {
    let mut wanted: Vec<Digest> = Vec::new();
    for m in std::iter::once(index).chain(nested.values()) {
        for e in raw_entries(&m.bytes).into_iter().flatten() {
            let Ok(d) = serde_json::from_str::<Descriptor>(e.get()) else {
                continue;
            };
            let platformless = d.platform.as_ref().is_none_or(Platform::is_unknown);
            if platformless && !is_index(&d.media_type) && !d.is_attestation() {
                wanted.push(d.digest);
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    if wanted.len() > MAX_NESTED {
        return Err(CopyError::Invalid {
            image: repo.to_string(),
            detail: format!(
                "more than {MAX_NESTED} entries without a platform: refusing to read them"
            ),
        });
    }
    for d in wanted {
        let raw = client.get_manifest(&repo.with_digest(d.clone())).await?;
        if raw.digest == d {
            nested.insert(d, raw);
        }
    }
    Ok(())
}

/// The raw entries of an index's `manifests` array; `None` when the bytes
/// are not an object with such an array. Other fields are skipped unread.
fn raw_entries(bytes: &[u8]) -> Option<Vec<Box<RawValue>>> {
    #[derive(serde::Deserialize)]
    struct Entries {
        manifests: Option<Box<RawValue>>,
    }
    let doc: Entries = serde_json::from_slice(bytes).ok()?;
    split_array(&doc.manifests?, usize::MAX).ok()
}

/// Digests of the entries of `index` that are indexes themselves.
fn nested_entries(index: &RawManifest) -> Vec<Digest> {
    let Some(entries) = raw_entries(&index.bytes) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| serde_json::from_str::<Descriptor>(e.get()).ok())
        .filter(|d| is_index(&d.media_type))
        .map(|d| d.digest)
        .collect()
}

/// What the filter decided for one entry.
enum Decision {
    /// Keep as is.
    Keep,
    /// Keep, pointing at a filtered copy of a nested index.
    Replace(RawManifest),
    /// Drop.
    Drop,
}

/// What filtering one index level decided, entry by entry.
#[derive(Default)]
struct Level {
    decisions: Vec<Decision>,
    kept: Vec<String>,
    dropped: Vec<String>,
    available: Vec<String>,
    rewritten: Vec<RawManifest>,
    /// Indexes into the specs that matched some entry.
    matched: HashSet<usize>,
}

fn filter_level(
    index: &RawManifest,
    specs: &[PlatformSpec],
    nested: &HashMap<Digest, RawManifest>,
    depth: usize,
) -> Result<Filtered, FilterError> {
    let mut doc =
        RawObject::parse(&index.bytes).map_err(|e| FilterError::Malformed(e.to_string()))?;
    let entries = doc
        .get("manifests")
        .and_then(|m| split_array(m, usize::MAX).ok())
        .ok_or_else(|| FilterError::Malformed("no \"manifests\" array".to_string()))?;
    let mut descriptors = Vec::with_capacity(entries.len());
    for entry in &entries {
        let d: Descriptor = serde_json::from_str(entry.get()).map_err(|e| {
            let mut shown = Vec::new();
            crate::registry::rawjson::minify(entry.get(), &mut shown);
            let shown = String::from_utf8_lossy(&shown);
            FilterError::Malformed(format!("index entry {shown}: {e}"))
        })?;
        descriptors.push(d);
    }
    let mut level = decide(&descriptors, specs, nested, depth)?;
    let kept_images: HashSet<&Digest> = descriptors
        .iter()
        .zip(&level.decisions)
        .filter(|(d, k)| !d.is_attestation() && !matches!(k, Decision::Drop))
        .map(|(d, _)| &d.digest)
        .collect();
    if kept_images.is_empty() {
        level.available.dedup();
        return Err(FilterError::NoMatch {
            available: level.available,
        });
    }
    // Attestations follow the image they describe.
    for (d, k) in descriptors.iter().zip(level.decisions.iter_mut()) {
        if d.is_attestation()
            && d.annotations
                .get(ANNOTATION_REFERENCE_DIGEST)
                .and_then(|r| r.parse::<Digest>().ok())
                .is_some_and(|r| kept_images.contains(&r))
        {
            *k = Decision::Keep;
        }
    }
    // Artifacts listed in the index (fetched into `nested` by
    // `fetch_index_artifacts`) follow the image their `subject` names.
    for (d, k) in descriptors.iter().zip(level.decisions.iter_mut()) {
        if matches!(k, Decision::Drop)
            && !is_index(&d.media_type)
            && nested
                .get(&d.digest)
                .and_then(ReferrerInfo::of)
                .and_then(|i| i.subject)
                .is_some_and(|s| kept_images.contains(&s))
        {
            *k = Decision::Keep;
        }
    }
    let manifest = if level.decisions.iter().all(|k| matches!(k, Decision::Keep)) {
        index.clone()
    } else {
        rewrite(&mut doc, entries, &level.decisions, index)?
    };
    let missing = specs
        .iter()
        .enumerate()
        .filter(|(i, _)| !level.matched.contains(i))
        .map(|(_, s)| s.to_string())
        .collect();
    Ok(Filtered {
        manifest,
        kept: level.kept,
        dropped: level.dropped,
        missing,
        rewritten: level.rewritten,
    })
}

/// Decide every non-attestation entry: by its platform, or, for a nested
/// index that was fetched, by filtering it in turn. Attestations start as
/// dropped; the caller keeps those whose image is kept.
fn decide(
    descriptors: &[Descriptor],
    specs: &[PlatformSpec],
    nested: &HashMap<Digest, RawManifest>,
    depth: usize,
) -> Result<Level, FilterError> {
    let matches = |p: &Option<Platform>| {
        p.as_ref()
            .is_some_and(|p| specs.iter().any(|s| s.matches(p)))
    };
    let mut level = Level::default();
    for d in descriptors {
        if d.is_attestation() {
            level.decisions.push(Decision::Drop);
            continue;
        }
        let child = nested
            .get(&d.digest)
            .filter(|_| is_index(&d.media_type) && depth + 1 < MAX_NESTING);
        let decision = match child {
            Some(child) if d.platform.is_none() || matches(&d.platform) => {
                match filter_level(child, specs, nested, depth + 1) {
                    Ok(f) => {
                        level
                            .matched
                            .extend(spec_indexes(specs, |s| !f.missing.contains(&s.to_string())));
                        level.available.extend(f.kept.iter().cloned());
                        level.available.extend(f.dropped.iter().cloned());
                        level.kept.extend(f.kept);
                        level.dropped.extend(f.dropped);
                        level.rewritten.extend(f.rewritten);
                        if f.manifest.digest == d.digest {
                            Decision::Keep
                        } else {
                            level.rewritten.push(f.manifest.clone());
                            Decision::Replace(f.manifest)
                        }
                    }
                    Err(FilterError::NoMatch { available }) => {
                        level.dropped.extend(available.iter().cloned());
                        level.available.extend(available);
                        Decision::Drop
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {
                level.available.push(
                    d.platform
                        .as_ref()
                        .map(platform_name)
                        .unwrap_or_else(|| "(no platform)".to_string()),
                );
                let name = d
                    .platform
                    .as_ref()
                    .map(platform_name)
                    .unwrap_or_else(|| format!("({})", d.digest));
                if let Some(p) = &d.platform {
                    level.matched.extend(spec_indexes(specs, |s| s.matches(p)));
                }
                if matches(&d.platform) {
                    level.kept.push(name);
                    Decision::Keep
                } else {
                    level.dropped.push(name);
                    Decision::Drop
                }
            }
        };
        level.decisions.push(decision);
    }
    Ok(level)
}

/// The positions in `specs` of the specs `pick` accepts.
fn spec_indexes(specs: &[PlatformSpec], pick: impl Fn(&PlatformSpec) -> bool) -> Vec<usize> {
    (0..specs.len()).filter(|&i| pick(&specs[i])).collect()
}

/// The specs, as written, that `platform` does not match.
pub fn unmatched_specs(specs: &[PlatformSpec], platform: &Platform) -> Vec<String> {
    specs
        .iter()
        .filter(|s| !s.matches(platform))
        .map(ToString::to_string)
        .collect()
}

/// The index JSON with dropped entries removed, replaced nested indexes
/// pointing at their new digests, and the source digest recorded under
/// [`ANNOTATION_SOURCE_DIGEST`].
fn rewrite(
    doc: &mut RawObject,
    mut entries: Vec<Box<RawValue>>,
    decisions: &[Decision],
    index: &RawManifest,
) -> Result<RawManifest, FilterError> {
    for (entry, k) in entries.iter_mut().zip(decisions) {
        if let (Decision::Replace(m), Some(mut e)) = (k, RawObject::of(entry)) {
            e.set_value("digest", &m.digest.to_string());
            e.set_value("size", &m.size());
            *entry = e.to_raw();
        }
    }
    let mut flags = decisions.iter();
    entries.retain(|_| !matches!(flags.next(), Some(Decision::Drop) | None));
    doc.set("manifests", array_to_raw(&entries));
    let mut annotations = match doc.get("annotations") {
        None => RawObject::default(),
        Some(a) => RawObject::of(a).ok_or_else(|| {
            FilterError::Malformed("\"annotations\" is not an object".to_string())
        })?,
    };
    annotations.set_value(ANNOTATION_SOURCE_DIGEST, &index.digest.to_string());
    doc.set("annotations", annotations.to_raw());
    let bytes = doc.to_vec();
    Ok(RawManifest::new(
        Bytes::from(bytes),
        Some(&index.media_type),
    ))
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
    use serde_json::Value;

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
    fn requested_platforms_without_an_entry_are_missing() {
        let idx = index(OCI_INDEX);
        let f = filter_index(&idx, &specs(&["linux/amd64", "linux/s390x"])).unwrap();
        assert_eq!(f.missing, vec!["linux/s390x".to_string()]);
        let f = filter_index(&idx, &specs(&["linux/amd64"])).unwrap();
        assert!(f.missing.is_empty());
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
    fn nested_indexes_are_filtered_and_rewritten() {
        let inner = index(OCI_INDEX);
        let other = d(9);
        let outer_body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
{{"mediaType":"{OCI_INDEX}","digest":"{inner}","size":{size}}},
{{"mediaType":"{OCI_MANIFEST}","digest":"{other}","size":7,"platform":{{"architecture":"s390x","os":"linux"}}}}]}}"#,
            inner = inner.digest,
            size = inner.size()
        );
        let outer = RawManifest::new(Bytes::from(outer_body), Some(OCI_INDEX));
        let nested = HashMap::from([(inner.digest.clone(), inner.clone())]);

        // arm64 lives in the nested index: kept, the nested index rewritten.
        let f = filter_index_tree(&outer, &specs(&["linux/arm64"]), &nested).unwrap();
        assert_eq!(f.kept, vec!["linux/arm64/v8"]);
        assert_eq!(f.rewritten.len(), 1);
        let new_inner = &f.rewritten[0];
        assert_eq!(
            digests(new_inner),
            vec![d(2), d(5)],
            "arm64 and its attestation"
        );
        let top: Value = serde_json::from_slice(&f.manifest.bytes).unwrap();
        assert_eq!(top["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(top["manifests"][0]["digest"], new_inner.digest.to_string());
        assert_eq!(top["manifests"][0]["size"], new_inner.size());

        // s390x is at the top: the nested index is dropped whole.
        let f = filter_index_tree(&outer, &specs(&["linux/s390x"]), &nested).unwrap();
        assert_eq!(digests(&f.manifest), vec![other.clone()]);
        assert!(f.rewritten.is_empty());

        // Every platform of the tree kept: the bytes are the source's.
        let all = specs(&["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"]);
        let f = filter_index_tree(&outer, &all, &nested).unwrap();
        assert_eq!(f.manifest, outer);

        // No match anywhere: the error lists platforms at every level.
        let FilterError::NoMatch { available } =
            filter_index_tree(&outer, &specs(&["windows/amd64"]), &nested).unwrap_err()
        else {
            panic!("expected NoMatch")
        };
        assert!(
            available.contains(&"linux/arm64/v8".to_string()),
            "{available:?}"
        );
        assert!(
            available.contains(&"linux/s390x".to_string()),
            "{available:?}"
        );

        // Without the nested index fetched, the old behaviour: judged by its entry.
        assert!(matches!(
            filter_index(&outer, &specs(&["linux/arm64"])),
            Err(FilterError::NoMatch { .. })
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
