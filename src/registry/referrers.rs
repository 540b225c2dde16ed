//! Referrers: the manifests whose `subject` names a given manifest
//! (signatures, SBOMs, attestations).
//!
//! Two ways to find them, as the OCI distribution spec 1.1 describes:
//! - the referrers API, `GET /v2/<name>/referrers/<digest>`: an OCI index of
//!   descriptors, paged with `Link` (pages capped and kept on the registry's
//!   own origin, like tag lists), optionally filtered by `artifactType`,
//!   which counts only when the registry says so in `OCI-Filters-Applied`;
//! - the fallback tag `<alg>-<hex>` (`sha256-…`) on registries without the
//!   API: an OCI index the pushers maintain. An answer that is not an OCI
//!   index, or that is the subject itself (registries that resolve such tags
//!   as digests), means "none".
//!
//! Everything a registry lists here is a *candidate*: [`ReferrerInfo::of`]
//! reads the manifest itself, and only a manifest whose `subject` is the
//! digest asked about is a referrer of it. Descriptors written into a
//! fallback index are recomputed from those bytes ([`ReferrerInfo::descriptor`]).
//! Fallback indexes are read and rewritten without loss (see [`FallbackIndex`]).

mod index;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::Client;
use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::manifest::{
    Descriptor, MAX_MANIFEST_BYTES, OCI_EMPTY, OCI_INDEX, RawManifest, is_manifest,
};
use super::reference::Reference;

pub use super::http::{MAX_REFERRER_PAGES, MAX_REFERRERS};
pub use super::transport::ApiAnswer;
pub use index::{FallbackIndex, listed_descriptors};

/// The fallback tag of `subject`: `<alg>-<hex>`, the hex cut at 64
/// characters as the spec says (a tag holds at most 128).
pub fn fallback_tag(subject: &Digest) -> String {
    let text = subject.to_string();
    let (alg, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    format!("{alg}-{}", &hex[..hex.len().min(64)])
}

/// The fields of a referrer manifest that matter here, read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerInfo {
    /// The manifest its `subject` names.
    pub subject: Option<Digest>,
    /// Its artifact type: `artifactType`, else the config's media type.
    pub artifact_type: String,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ReferrerInfo {
    /// Read `raw`; `None` when it is not a manifest that can be a referrer.
    pub fn of(raw: &RawManifest) -> Option<ReferrerInfo> {
        #[derive(Deserialize)]
        struct Subject {
            digest: Digest,
        }
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "mediaType")]
            media_type: String,
        }
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "artifactType", default)]
            artifact_type: Option<String>,
            #[serde(default)]
            config: Option<Config>,
            #[serde(default)]
            subject: Option<Subject>,
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        if !is_manifest(&raw.media_type) || raw.bytes.len() > MAX_MANIFEST_BYTES {
            return None;
        }
        let p: Probe = serde_json::from_slice(&raw.bytes).ok()?;
        let artifact_type = p
            .artifact_type
            .filter(|t| !t.is_empty())
            .or(p.config.map(|c| c.media_type))
            .unwrap_or_default();
        Some(ReferrerInfo {
            subject: p.subject.map(|s| s.digest),
            artifact_type,
            annotations: p.annotations,
        })
    }

    /// The descriptor of `raw` in a referrers list, computed from its bytes
    /// (never taken from another registry's list).
    pub fn descriptor(&self, raw: &RawManifest) -> Descriptor {
        Descriptor {
            media_type: raw.media_type.clone(),
            digest: raw.digest.clone(),
            size: raw.size(),
            urls: Vec::new(),
            platform: None,
            annotations: self.annotations.clone(),
            artifact_type: Some(self.artifact_type.clone()).filter(|t| !t.is_empty()),
        }
    }
}

/// True when a listed descriptor's own `artifactType` says nothing: empty,
/// missing or the empty-config type (some clients write that); the type is
/// then read from the manifest.
pub fn type_unknown(d: &Descriptor) -> bool {
    d.artifact_type
        .as_deref()
        .is_none_or(|t| t.is_empty() || t == OCI_EMPTY)
}

impl Client {
    /// The fallback index of `subject` in `repo` (the `sha256-<hex>` tag),
    /// fetched by the digest a HEAD names; `None` when there is none, when
    /// it is not an OCI index, or when the registry resolved the tag as the
    /// subject's digest.
    pub async fn fallback_index(
        &self,
        repo: &Reference,
        subject: &Digest,
    ) -> Result<Option<RawManifest>> {
        let at = repo
            .with_tag(&fallback_tag(subject))
            .map_err(|e| bad(&repo.name(), e.to_string()))?;
        let Some(head) = self.head_manifest(&at).await? else {
            return Ok(None);
        };
        if head.digest.as_ref() == Some(subject) {
            return Ok(None);
        }
        let raw = match &head.digest {
            Some(d) => self.get_manifest(&repo.with_digest(d.clone())).await?,
            None => self.get_manifest(&at).await?,
        };
        if raw.digest == *subject || raw.media_type != OCI_INDEX {
            return Ok(None);
        }
        Ok(Some(raw))
    }
}

/// The fallback index `raw` read without loss; `Err` (why) when it is
/// not an OCI index regmirror can read.
pub fn fallback_index_of(raw: &RawManifest) -> std::result::Result<FallbackIndex, String> {
    FallbackIndex::parse(&raw.bytes)
}

fn bad(target: &str, detail: String) -> Error {
    Error::BadResponse {
        op: Op::Referrers,
        target: target.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tag_names() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
        assert!(super::super::reference::valid_tag(&fallback_tag(&d)));
    }

    #[test]
    fn info_reads_type_and_subject_from_bytes() {
        let s = Digest::sha256_of(b"s");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.example.sbom","digest":"{s}","size":1}},"layers":[],
            "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{s}","size":1}},
            "annotations":{{"a":"b"}}}}"#
        );
        let raw = RawManifest::new(body.into(), None);
        let info = ReferrerInfo::of(&raw).unwrap();
        assert_eq!(info.subject, Some(s));
        assert_eq!(info.artifact_type, "application/vnd.example.sbom");
        let d = info.descriptor(&raw);
        assert_eq!(d.size, raw.size());
        assert_eq!(d.annotations.get("a").map(String::as_str), Some("b"));
        let listed = Descriptor {
            artifact_type: Some(OCI_EMPTY.into()),
            ..d.clone()
        };
        assert!(type_unknown(&listed));
        assert!(!type_unknown(&d));
        let mut idx = FallbackIndex::default();
        idx.push(&d);
        idx.push(&d);
        let raw = RawManifest::new(idx.to_bytes().into(), Some(OCI_INDEX));
        let read = fallback_index_of(&raw).unwrap();
        assert_eq!(listed_descriptors(&read), vec![d]);
    }
}
