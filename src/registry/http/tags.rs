//! Tags: `GET /v2/<name>/tags/list`, paged with `Link`.

use reqwest::Method;
use url::Url;

use super::Host;
use super::remote::{Remote, parse_next_link};
use crate::registry::auth::Scopes;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::limits::MAX_TAG_PAGE_BYTES;
use crate::registry::reference::Reference;
use crate::registry::transport::TagListing;

impl Remote {
    pub(crate) async fn list_tags(&self, repo: &Reference, report: bool) -> Result<TagListing> {
        let host = self.host(repo.registry())?;
        let target = repo.name();
        let limits = host.limits.clone();
        let mut url = host.url(repo.repository(), &["tags", "list"]);
        url.query_pairs_mut().append_pair("n", "1000");
        let mut listing = TagListing::default();
        let mut rejected: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + limits.listing_timeout;
        loop {
            if !seen.insert(url.to_string()) {
                return Err(Error::BadResponse {
                    op: Op::ListTags,
                    target,
                    detail: "the registry's Link pagination loops".into(),
                });
            }
            if seen.len() > limits.max_tag_pages {
                return Err(self.listing_limit(
                    &host,
                    &target,
                    format!("more than {} tag-list pages", limits.max_tag_pages),
                    limits.max_tag_pages as u64,
                    None,
                ));
            }
            let page = tokio::time::timeout_at(deadline, self.tag_page(&host, repo, &target, &url));
            let Ok(page) = page.await else {
                return Err(crate::registry::limits::listing_overdue(
                    Op::ListTags,
                    &target,
                    &host.name,
                    limits.listing_timeout,
                    seen.len() - 1,
                    listing.tags.len() + listing.invalid,
                ));
            };
            let (next, page) = page?;
            for tag in page {
                if listing.tags.len() + listing.invalid >= limits.max_tags {
                    return Err(self.listing_limit(
                        &host,
                        &target,
                        format!("more than {} tags", limits.max_tags),
                        limits.max_tags as u64,
                        Some("max_tags"),
                    ));
                }
                if crate::registry::reference::valid_tag(&tag) {
                    listing.tags.push(tag);
                } else {
                    listing.invalid += 1;
                    if rejected.len() < 5 {
                        rejected.push(shown(&tag));
                    }
                }
            }
            match next {
                Some(link) => url = link,
                None => break,
            }
        }
        if report && listing.invalid > 0 {
            crate::metrics::record_invalid_tags(&host.name, listing.invalid as u64);
            tracing::warn!(
                repository = %target,
                invalid = listing.invalid,
                examples = %rejected.join(", "),
                "the registry listed tags that break the tag grammar; they are skipped"
            );
        }
        Ok(listing)
    }

    /// One tag-list page: its tags and the checked URL of the next page.
    async fn tag_page(
        &self,
        host: &Host,
        repo: &Reference,
        target: &str,
        url: &Url,
    ) -> Result<(Option<Url>, Vec<String>)> {
        let make = || {
            Ok(Self::request(
                Op::ListTags,
                target.to_string(),
                repo.repository(),
                Method::GET,
                url.clone(),
                Scopes::pull(repo.repository()),
            ))
        };
        let (headers, body) = self
            .get_with_body(
                host,
                make,
                MAX_TAG_PAGE_BYTES,
                Op::ListTags,
                target,
                "tag-list page",
            )
            .await?;
        let next = match headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_next_link)
        {
            Some(link) => {
                let next = url.join(&link).map_err(|_| Error::BadResponse {
                    op: Op::ListTags,
                    target: target.to_string(),
                    detail: format!(
                        "the registry sent an unusable Link header {:?}",
                        shown(&link)
                    ),
                })?;
                host.check_url(Op::ListTags, target, repo.repository(), &next, "Link")?;
                Some(next)
            }
            None => None,
        };
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
            op: Op::ListTags,
            target: target.to_string(),
            detail: format!("the tag list is not valid JSON: {}", shown(&e.to_string())),
        })?;
        Ok((next, page.tags.unwrap_or_default()))
    }

    fn listing_limit(
        &self,
        host: &Host,
        target: &str,
        what: String,
        limit: u64,
        key: Option<&'static str>,
    ) -> Error {
        Error::Limit {
            op: Op::ListTags,
            target: target.to_string(),
            registry: host.name.clone(),
            what,
            limit,
            key,
        }
    }
}
