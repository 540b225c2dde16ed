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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::auth::Scopes;
use super::client::{Client, parse_next_link};
use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::escape::shown;
use super::manifest::{
    Descriptor, MAX_MANIFEST_BYTES, OCI_EMPTY, OCI_INDEX, RawManifest, is_manifest,
};
use super::reference::Reference;

/// Most referrer-list pages followed for one subject.
pub const MAX_REFERRER_PAGES: usize = 16;
/// Most referrers listed for one subject (all pages together).
pub const MAX_REFERRERS: usize = 1024;

/// The fallback tag of `subject`: `<alg>-<hex>`, the hex cut at 64
/// characters as the spec says (a tag holds at most 128).
pub fn fallback_tag(subject: &Digest) -> String {
    let text = subject.to_string();
    let (alg, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    format!("{alg}-{}", &hex[..hex.len().min(64)])
}

/// What the referrers API of a repository answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAnswer {
    /// The registry has no referrers API (404, or an answer that is not an
    /// OCI index): use the fallback tag.
    Absent,
    /// The registry listed these candidates.
    Listed {
        /// Descriptors, all pages, in the registry's order, deduplicated.
        descriptors: Vec<Descriptor>,
        /// True when the registry confirmed (`OCI-Filters-Applied:
        /// artifactType`) that it applied the `artifactType` asked for.
        filtered: bool,
    },
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

/// The bytes of a fallback index listing `descriptors`.
pub fn fallback_index_bytes(descriptors: &[Descriptor]) -> RawManifest {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let bytes = serde_json::to_vec(&doc).expect("descriptors serialize");
    RawManifest::new(bytes.into(), Some(OCI_INDEX))
}

/// `OCI-Subject` answers to manifest PUTs, by (registry, repository,
/// manifest digest) → the subject the registry confirmed. An entry lives
/// from the PUT until the copier that pushed the manifest takes it with
/// [`take_subject_confirmation`] right after; entries nobody takes (a
/// manifest with a subject pushed outside the referrers copy) are dropped
/// when the map reaches [`MAX_NOTED`], so it never grows unbounded.
type Noted = HashMap<(String, String, Digest), Digest>;
const MAX_NOTED: usize = 4096;

fn noted() -> &'static Mutex<Noted> {
    static NOTED: OnceLock<Mutex<Noted>> = OnceLock::new();
    NOTED.get_or_init(Mutex::default)
}

/// Record an `OCI-Subject` header of the answer to a PUT of `digest` under `r`.
pub(super) fn note_subject_header(r: &Reference, digest: &Digest, headers: &HeaderMap) {
    let Some(subject) = headers
        .get("oci-subject")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Digest>().ok())
    else {
        return;
    };
    let mut map = noted().lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_NOTED {
        map.clear();
    }
    map.insert(
        (
            r.registry().to_string(),
            r.repository().to_string(),
            digest.clone(),
        ),
        subject,
    );
}

/// True when the registry answered the PUT of `digest` into `repo` with an
/// `OCI-Subject` header naming `subject`: it indexed the referrer itself.
pub fn take_subject_confirmation(repo: &Reference, digest: &Digest, subject: &Digest) -> bool {
    let mut map = noted().lock().unwrap_or_else(|p| p.into_inner());
    map.remove(&(
        repo.registry().to_string(),
        repo.repository().to_string(),
        digest.clone(),
    ))
    .is_some_and(|s| s == *subject)
}

impl Client {
    /// Ask the referrers API of `repo` for the referrers of `subject`,
    /// following `Link` pages. `artifact_type`: a filter the registry may
    /// apply (see [`ApiAnswer::Listed`]).
    pub async fn referrers_api(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ApiAnswer> {
        // An OCI layout has no referrers API: its referrers live under the
        // `sha256-<hex>` fallback tag, which the layout store reads and writes.
        if repo.is_layout() {
            return Ok(ApiAnswer::Absent);
        }
        let host = self.host(repo.registry())?;
        let target = format!("{}@{subject}", repo.name());
        let mut url = host.url(repo.repository(), &["referrers", &subject.to_string()]);
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut digests: HashSet<Digest> = HashSet::new();
        let mut descriptors = Vec::new();
        let mut filtered = artifact_type.is_some();
        loop {
            if !seen.insert(url.to_string()) {
                return Err(bad(&target, "the registry's Link pagination loops".into()));
            }
            if seen.len() > MAX_REFERRER_PAGES {
                return Err(limit(
                    &host.name,
                    &target,
                    "referrer-list pages",
                    MAX_REFERRER_PAGES,
                ));
            }
            let make = || {
                let mut req = Client::request(
                    Op::Referrers,
                    target.clone(),
                    repo.repository(),
                    Method::GET,
                    url.clone(),
                    Scopes::pull(repo.repository()),
                );
                req.headers
                    .insert(ACCEPT, HeaderValue::from_static(OCI_INDEX));
                Ok(req)
            };
            let answer = self
                .get_with_body(
                    &host,
                    make,
                    MAX_MANIFEST_BYTES,
                    Op::Referrers,
                    &target,
                    "referrer list",
                )
                .await;
            let (headers, body) = match answer {
                Ok(a) => a,
                // distribution 2.8 answers `404 page not found`; others 405
                // or 400 for a route they do not have.
                Err(e) if seen.len() == 1 && matches!(e.status(), Some(404 | 405 | 400 | 501)) => {
                    return Ok(ApiAnswer::Absent);
                }
                Err(e) => return Err(e),
            };
            #[derive(Deserialize)]
            struct Page {
                manifests: Vec<Descriptor>,
            }
            let Ok(page) = serde_json::from_slice::<Page>(&body) else {
                if seen.len() == 1 {
                    tracing::debug!(repository = %repo.name(), "referrers answer is not an OCI index: treated as no API");
                    return Ok(ApiAnswer::Absent);
                }
                return Err(bad(
                    &target,
                    "a referrer-list page is not an OCI index".into(),
                ));
            };
            filtered &= headers
                .get_all("oci-filters-applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|f| f.trim() == "artifactType");
            for d in page.manifests {
                if digests.insert(d.digest.clone()) {
                    if descriptors.len() >= MAX_REFERRERS {
                        return Err(limit(&host.name, &target, "referrers", MAX_REFERRERS));
                    }
                    descriptors.push(d);
                }
            }
            let Some(link) = headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link)
            else {
                break;
            };
            let next = url.join(&link).map_err(|_| {
                bad(
                    &target,
                    format!(
                        "the registry sent an unusable Link header {:?}",
                        shown(&link)
                    ),
                )
            })?;
            host.check_url(Op::Referrers, &target, repo.repository(), &next, "Link")?;
            url = next;
        }
        Ok(ApiAnswer::Listed {
            descriptors,
            filtered,
        })
    }

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

/// The entries of a fallback index (empty when it cannot be read).
pub fn fallback_entries(index: &RawManifest) -> Vec<Descriptor> {
    #[derive(Deserialize)]
    struct Page {
        manifests: Vec<Descriptor>,
    }
    let mut seen = HashSet::new();
    serde_json::from_slice::<Page>(&index.bytes)
        .map(|p| p.manifests)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| seen.insert(d.digest.clone()))
        .take(MAX_REFERRERS)
        .collect()
}

fn bad(target: &str, detail: String) -> Error {
    Error::BadResponse {
        op: Op::Referrers,
        target: target.to_string(),
        detail,
    }
}

fn limit(registry: &str, target: &str, what: &str, n: usize) -> Error {
    Error::Limit {
        op: Op::Referrers,
        target: target.to_string(),
        registry: registry.to_string(),
        what: format!("more than {n} {what}"),
        limit: n as u64,
        key: None,
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
        let idx = fallback_index_bytes(&[d.clone(), d.clone()]);
        assert_eq!(fallback_entries(&idx), vec![d]);
    }
}
