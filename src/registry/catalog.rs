//! `GET /v2/_catalog`: the repositories a registry holds.
//!
//! Pages are asked for with `n` (at most 1000, the largest page CNCF
//! distribution accepts) and followed through `Link: <…>; rel="next"`; a
//! registry that sends no `Link` but a full page is asked again with
//! `last=<the page's last name>`. Listing stops at an empty page, a page
//! shorter than asked without a `Link`, or a page that repeats the one
//! before (a registry that ignores `last`). Everything is capped: bytes per
//! page, pages, entries. Names are untrusted: a name that breaks the
//! repository grammar is dropped and counted, never requested.
//!
//! Token auth asks for the `registry:catalog:*` scope. A registry without a
//! catalog (Docker Hub, or one whose credentials do not grant catalog
//! access) is a [`CatalogError::Unavailable`] that says to list
//! repositories explicitly.

use super::error::Error;

/// The largest page size asked for (distribution refuses more with
/// `PAGINATION_NUMBER_INVALID`).
pub const MAX_CATALOG_PAGE_SIZE: usize = 1000;
/// Largest catalog page read.
pub const MAX_CATALOG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most pages one catalog listing may take.
pub const MAX_CATALOG_PAGES: usize = 1000;
/// Most names one catalog listing may return (valid or not).
pub const MAX_CATALOG_ENTRIES: usize = 100_000;

/// The token scope that grants catalog access.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// What a catalog listing found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryListing {
    /// Valid repository paths, deduplicated, in the registry's order.
    pub repositories: Vec<String>,
    /// Listed names dropped because they break the repository grammar.
    pub invalid: usize,
    /// Pages read.
    pub pages: usize,
}

/// Why a catalog could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The registry offers no catalog to these credentials.
    #[error(
        "registry {registry} does not offer its repository catalog ({why}), so its repositories \
         cannot be discovered: list them explicitly, one [[mirror]] per repository (e.g. \
         source = \"{registry}/team/app\"), or use credentials that may read the catalog"
    )]
    Unavailable {
        /// The registry.
        registry: String,
        /// What it answered.
        why: String,
    },
    /// Any other failure of the listing.
    #[error(transparent)]
    Registry(#[from] Error),
}
