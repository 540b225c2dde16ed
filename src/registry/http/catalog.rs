//! Catalog: `GET /v2/_catalog`, paged with `n`, `Link` and `last` (see
//! [`crate::registry::catalog`] for the rules and caps).

use std::collections::HashSet;

use reqwest::Method;
use url::Url;

use super::Host;
use super::remote::{Remote, parse_next_link};
use crate::registry::auth::Scopes;
use crate::registry::catalog::{
    CATALOG_SCOPE, CatalogError, MAX_CATALOG_ENTRIES, MAX_CATALOG_PAGE_BYTES,
    MAX_CATALOG_PAGE_SIZE, MAX_CATALOG_PAGES, RepositoryListing,
};
use crate::registry::error::{Error, Op};
use crate::registry::escape::shown;
use crate::registry::reference::{DOCKER_HUB, Reference};

impl Remote {
    /// List the repositories of `registry` through `_catalog`, within the
    /// caps above. `page_size` is clamped to 1..=1000.
    pub(crate) async fn list_repositories(
        &self,
        registry: &str,
        page_size: usize,
    ) -> Result<RepositoryListing, CatalogError> {
        if registry == DOCKER_HUB {
            return Err(CatalogError::Unavailable {
                registry: registry.to_string(),
                why: "Docker Hub has no catalog API".to_string(),
            });
        }
        let host = self.host(registry)?;
        let n = page_size.clamp(1, MAX_CATALOG_PAGE_SIZE);
        let mut url = catalog_url(&host, n, None);
        let mut listing = RepositoryListing::default();
        let mut seen_names: HashSet<String> = HashSet::new();
        let mut seen_urls: HashSet<String> = HashSet::new();
        let mut previous: Option<Vec<String>> = None;
        let mut rejected: Vec<String> = Vec::new();
        let deadline = tokio::time::Instant::now() + host.limits.listing_timeout;
        loop {
            if !seen_urls.insert(url.to_string()) {
                tracing::warn!(
                    registry,
                    "the catalog's paging came back to a page already read; listing stops there"
                );
                break;
            }
            if listing.pages >= MAX_CATALOG_PAGES {
                return Err(limit(
                    &host,
                    format!("more than {MAX_CATALOG_PAGES} catalog pages"),
                    MAX_CATALOG_PAGES,
                )
                .into());
            }
            let (next, page) = self.timed_page(&host, &url, deadline, &listing).await?;
            listing.pages += 1;
            if page.is_empty() || previous.as_ref() == Some(&page) {
                break;
            }
            for name in &page {
                if listing.repositories.len() + listing.invalid >= MAX_CATALOG_ENTRIES {
                    return Err(limit(
                        &host,
                        format!("more than {MAX_CATALOG_ENTRIES} repositories"),
                        MAX_CATALOG_ENTRIES,
                    )
                    .into());
                }
                if !valid_repository(registry, name) {
                    listing.invalid += 1;
                    if rejected.len() < 5 {
                        rejected.push(shown(name));
                    }
                } else if seen_names.insert(name.clone()) {
                    listing.repositories.push(name.clone());
                }
            }
            url = match next {
                Some(link) => link,
                None if page.len() >= n => catalog_url(&host, n, page.last().map(String::as_str)),
                None => break,
            };
            previous = Some(page);
        }
        if listing.invalid > 0 {
            crate::metrics::record_catalog_invalid_names(&host.name, listing.invalid as u64);
            tracing::warn!(
                registry,
                invalid = listing.invalid,
                examples = %rejected.join(", "),
                "the registry's catalog lists names that break the repository grammar; they are skipped"
            );
        }
        Ok(listing)
    }

    /// [`Self::catalog_page`] by `deadline`, the listing's overall one.
    async fn timed_page(
        &self,
        host: &Host,
        url: &Url,
        deadline: tokio::time::Instant,
        listing: &RepositoryListing,
    ) -> Result<(Option<Url>, Vec<String>), CatalogError> {
        let page = tokio::time::timeout_at(deadline, self.catalog_page(host, url));
        match page.await {
            Ok(page) => page,
            Err(_) => Err(crate::registry::limits::listing_overdue(
                Op::ListRepositories,
                &host.name,
                &host.name,
                host.limits.listing_timeout,
                listing.pages,
                listing.repositories.len() + listing.invalid,
            )
            .into()),
        }
    }

    /// One catalog page: its names and the checked URL of the next page.
    async fn catalog_page(
        &self,
        host: &Host,
        url: &Url,
    ) -> Result<(Option<Url>, Vec<String>), CatalogError> {
        let target = host.name.clone();
        let make = || {
            Ok(Remote::request(
                Op::ListRepositories,
                target.clone(),
                "",
                Method::GET,
                url.clone(),
                Scopes::default().with(CATALOG_SCOPE),
            ))
        };
        let (headers, body) = self
            .get_with_body(
                host,
                make,
                MAX_CATALOG_PAGE_BYTES,
                Op::ListRepositories,
                &target,
                "catalog page",
            )
            .await
            .map_err(|e| unavailable(&host.name, e))?;
        let next = match headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_next_link)
        {
            Some(link) => Some(next_url(host, url, &link)?),
            None => None,
        };
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let page: Page = serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
            op: Op::ListRepositories,
            target: target.clone(),
            detail: format!(
                "the catalog page is not valid JSON: {}",
                shown(&e.to_string())
            ),
        })?;
        Ok((next, page.repositories.unwrap_or_default()))
    }
}

/// `/v2/_catalog?n=N[&last=L]` on the registry.
fn catalog_url(host: &Host, n: usize, last: Option<&str>) -> Url {
    let mut url = host.url("", &["_catalog"]);
    url.query_pairs_mut().append_pair("n", &n.to_string());
    if let Some(l) = last {
        url.query_pairs_mut().append_pair("last", l);
    }
    url
}

/// The next page named by a `Link`: only `/v2/_catalog` on the registry's
/// own origin (a catalog page is never fetched from elsewhere, with or
/// without credentials).
fn next_url(host: &Host, url: &Url, link: &str) -> Result<Url, CatalogError> {
    let bad = |why: String| Error::BadResponse {
        op: Op::ListRepositories,
        target: host.name.clone(),
        detail: format!(
            "registry {} sent a catalog Link {:?} that regmirror refuses because {why}",
            host.name,
            shown(link)
        ),
    };
    let next = url
        .join(link)
        .map_err(|_| bad("it is not a URL".to_string()))?;
    if next.origin() != url.origin() {
        return Err(bad("it leaves the registry's origin".to_string()).into());
    }
    if next.path() != "/v2/_catalog" {
        return Err(bad(format!(
            "its path {} is not /v2/_catalog",
            shown(next.path())
        ))
        .into());
    }
    Ok(next)
}

/// True when `name` is a repository path of the grammar, exactly as written.
fn valid_repository(registry: &str, name: &str) -> bool {
    Reference::new_repository(registry, name).is_ok_and(|r| r.repository() == name)
}

fn limit(host: &Host, what: String, limit: usize) -> Error {
    Error::Limit {
        op: Op::ListRepositories,
        target: host.name.clone(),
        registry: host.name.clone(),
        what,
        limit: limit as u64,
        key: None,
    }
}

/// A failed page request, as [`CatalogError::Unavailable`] when the
/// registry says it has no catalog for these credentials.
fn unavailable(registry: &str, e: Error) -> CatalogError {
    let codes: Vec<&str> = e.codes().iter().map(|c| c.code.as_str()).collect();
    let why = match (&e, e.status()) {
        (Error::Auth { .. }, _) => Some("HTTP 401: the credentials may not read it".to_string()),
        (_, Some(s @ (401 | 403))) => Some(format!("HTTP {s}: access denied")),
        (_, Some(s @ (404 | 405))) => Some(format!("HTTP {s}: no such API")),
        _ if codes.contains(&"UNSUPPORTED") => Some("UNSUPPORTED".to_string()),
        _ => None,
    };
    match why {
        Some(why) => CatalogError::Unavailable {
            registry: registry.to_string(),
            why,
        },
        None => CatalogError::Registry(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_against_the_grammar() {
        for ok in ["app", "team/app", "a/b/c-d_e.f", "x__y"] {
            assert!(valid_repository("r.example", ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/../b",
            "Team/app",
            "a:tag",
            "a@sha256:00",
            "/a",
            "a/",
            "a//b",
            "-a",
            "a b",
            "a\nb",
            "%2e%2e",
        ] {
            assert!(!valid_repository("r.example", bad), "{bad:?}");
        }
        assert!(!valid_repository("r.example", &"a".repeat(300)));
    }
}
