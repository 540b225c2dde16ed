//! Referrers: `GET /v2/<name>/referrers/<digest>`, an OCI index of
//! descriptors paged with `Link` (pages capped and kept on the registry's
//! own origin, like tag lists), optionally filtered by `artifactType`, which
//! counts only when the registry says so in `OCI-Filters-Applied`.

use std::collections::HashSet;

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::Host;
use super::remote::{Remote, parse_next_link};
use crate::registry::auth::Scopes;
use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::manifest::{Descriptor, MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::registry::reference::Reference;
use crate::registry::transport::ApiAnswer;

/// Most referrer-list pages followed for one subject.
pub const MAX_REFERRER_PAGES: usize = 16;
/// Most referrers listed for one subject (all pages together).
pub const MAX_REFERRERS: usize = 1024;

/// A listing that reached one of its caps ends there: the referrers listed
/// so far are walked (within the referrer limits of the image), the rest is
/// never looked at, and the cut is said once per subject.
fn cut_listing(target: &str, what: &str, cap: usize, listed: usize) {
    tracing::warn!(
        subject = %target,
        listed,
        "the referrers API listing was cut at {cap} {what}; referrers beyond it are left behind"
    );
}

/// One page of a referrers answer: `None` when the API is absent.
type Page = Option<(HeaderMap, Vec<Descriptor>)>;

impl Remote {
    /// Ask the referrers API of `repo` for the referrers of `subject`,
    /// following `Link` pages. `artifact_type`: a filter the registry may
    /// apply (see [`ApiAnswer::Listed`]).
    pub(crate) async fn referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ApiAnswer> {
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
                cut_listing(&target, "pages", MAX_REFERRER_PAGES, descriptors.len());
                break;
            }
            let first = seen.len() == 1;
            let Some((headers, page)) = self
                .referrer_page(&host, repo, &target, &url, first)
                .await?
            else {
                return Ok(ApiAnswer::Absent);
            };
            filtered &= headers
                .get_all("oci-filters-applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|f| f.trim() == "artifactType");
            let mut full = false;
            for d in page {
                if digests.insert(d.digest.clone()) {
                    if descriptors.len() >= MAX_REFERRERS {
                        full = true;
                        break;
                    }
                    descriptors.push(d);
                }
            }
            if full {
                cut_listing(&target, "referrers", MAX_REFERRERS, descriptors.len());
                break;
            }
            match next_page(&host, repo, &target, &url, &headers)? {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(ApiAnswer::Listed {
            descriptors,
            filtered,
        })
    }

    /// One referrer-list page; `None` when the first page says the API is absent.
    async fn referrer_page(
        &self,
        host: &Host,
        repo: &Reference,
        target: &str,
        url: &Url,
        first: bool,
    ) -> Result<Page> {
        let make = || {
            let mut req = Remote::request(
                Op::Referrers,
                target.to_string(),
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
                host,
                make,
                MAX_MANIFEST_BYTES,
                Op::Referrers,
                target,
                "referrer list",
            )
            .await;
        let (headers, body) = match answer {
            Ok(a) => a,
            // distribution 2.8 answers `404 page not found`; others 405
            // or 400 for a route they do not have.
            Err(e) if first && matches!(e.status(), Some(404 | 405 | 400 | 501)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        #[derive(Deserialize)]
        struct Index {
            manifests: Vec<Descriptor>,
        }
        let Ok(page) = serde_json::from_slice::<Index>(&body) else {
            if first {
                tracing::debug!(repository = %repo.name(), "referrers answer is not an OCI index: treated as no API");
                return Ok(None);
            }
            return Err(bad(
                target,
                "a referrer-list page is not an OCI index".into(),
            ));
        };
        Ok(Some((headers, page.manifests)))
    }
}

/// The checked URL of the page after `url`, from its `Link` header.
fn next_page(
    host: &Host,
    repo: &Reference,
    target: &str,
    url: &Url,
    headers: &HeaderMap,
) -> Result<Option<Url>> {
    let Some(link) = headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_next_link)
    else {
        return Ok(None);
    };
    let next = url.join(&link).map_err(|_| {
        bad(
            target,
            format!(
                "the registry sent an unusable Link header {:?}",
                shown(&link)
            ),
        )
    })?;
    host.check_url(Op::Referrers, target, repo.repository(), &next, "Link")?;
    Ok(Some(next))
}

fn bad(target: &str, detail: String) -> Error {
    Error::BadResponse {
        op: Op::Referrers,
        target: target.to_string(),
        detail,
    }
}
