//! Caps on what a registry may send and deadlines on how long it may take.
//!
//! Every byte from a registry is untrusted: these bound the memory one
//! listing or one image plan can take and the time one request can hold a
//! task. Defaults fit the largest public repositories (tens of thousands of
//! tags, indexes of a few dozen platforms plus attestations) with a wide
//! margin; the ones a user could legitimately need to raise are settable per
//! `[[registry]]` (and the deadlines in `[defaults]` and with `--timeout`).

use std::time::Duration;

use super::config::RegistryConfig;
pub use super::config::{MAX_TIMEOUT, check_seconds};
use super::error::{Error, Op, Result};
pub use super::http::bandwidth::check_cap as check_bytes_per_second;
use super::manifest::{Manifest, RawManifest};

/// Largest token-service answer read (fixed).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Largest tag-list page read (fixed).
pub const MAX_TAG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Longest token lifetime believed; longer `expires_in` values are cut to it.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Default total deadline of one manifest, tag-list page or token request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a blob stream may go without a byte.
pub const DEFAULT_BLOB_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default throughput floor of a blob stream, averaged over each idle window.
pub const DEFAULT_BLOB_MIN_BYTES_PER_SECOND: u64 = 1024;
/// Default most tags listed per repository.
pub const DEFAULT_MAX_TAGS: usize = 100_000;
/// Default most pages per tag listing.
pub const DEFAULT_MAX_TAG_PAGES: usize = 10_000;
/// Default most manifests (root and children) in one image plan.
pub const DEFAULT_MAX_MANIFESTS_PER_IMAGE: usize = 10_000;
/// Default most manifest bytes held by one image plan.
pub const DEFAULT_MAX_MANIFEST_BYTES_PER_IMAGE: u64 = 64 * 1024 * 1024;
/// Default most entries in one index.
pub const DEFAULT_MAX_INDEX_ENTRIES: usize = 10_000;
/// Default overall deadline of one paginated listing (tags, catalog).
pub const DEFAULT_LISTING_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Caps and deadlines for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total deadline of one manifest, tag-list page, token or blob-header
    /// request, retries included.
    pub request_timeout: Duration,
    /// A blob stream ends with an error when no byte arrived for this long.
    pub blob_idle_timeout: Duration,
    /// A blob stream ends with an error when it averaged fewer bytes per
    /// second than this over a whole idle window (0: no floor).
    pub blob_min_bytes_per_second: u64,
    /// Most tags one listing may return.
    pub max_tags: usize,
    /// Most pages one listing may take.
    pub max_tag_pages: usize,
    /// Most manifests one image may hold.
    pub max_manifests_per_image: usize,
    /// Most manifest bytes one image may hold.
    pub max_manifest_bytes_per_image: u64,
    /// Most entries one index may list.
    pub max_index_entries: usize,
    /// Overall deadline of one paginated listing (every page of a tag list
    /// or of the catalog).
    pub listing_timeout: Duration,
    /// The cap on the bytes of every registry together, one bucket per
    /// process (`[defaults] max_total_bytes_per_second`; `None`: no cap).
    pub max_total_bytes_per_second: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            blob_idle_timeout: DEFAULT_BLOB_IDLE_TIMEOUT,
            blob_min_bytes_per_second: DEFAULT_BLOB_MIN_BYTES_PER_SECOND,
            max_tags: DEFAULT_MAX_TAGS,
            max_tag_pages: DEFAULT_MAX_TAG_PAGES,
            max_manifests_per_image: DEFAULT_MAX_MANIFESTS_PER_IMAGE,
            max_manifest_bytes_per_image: DEFAULT_MAX_MANIFEST_BYTES_PER_IMAGE,
            max_index_entries: DEFAULT_MAX_INDEX_ENTRIES,
            listing_timeout: DEFAULT_LISTING_TIMEOUT,
            max_total_bytes_per_second: None,
        }
    }
}

impl Limits {
    /// These limits with a registry's own settings laid over them.
    pub fn overlaid(&self, cfg: &RegistryConfig) -> Limits {
        let mut l = self.clone();
        if let Some(s) = cfg.timeout_seconds {
            l.request_timeout = seconds(s);
        }
        if let Some(s) = cfg.blob_idle_timeout_seconds {
            l.blob_idle_timeout = seconds(s);
        }
        if let Some(v) = cfg.blob_min_bytes_per_second {
            l.blob_min_bytes_per_second = v;
        }
        if let Some(s) = cfg.listing_timeout_seconds {
            l.listing_timeout = check_seconds(s).unwrap_or(DEFAULT_LISTING_TIMEOUT);
        }
        if let Some(v) = cfg.max_tags {
            l.max_tags = v;
        }
        if let Some(v) = cfg.max_manifests_per_image {
            l.max_manifests_per_image = v;
        }
        if let Some(v) = cfg.max_manifest_bytes_per_image {
            l.max_manifest_bytes_per_image = v;
        }
        l
    }
}

/// The error of a paginated listing that ran past its overall deadline:
/// what was read by then is named.
pub(crate) fn listing_overdue(
    op: Op,
    target: &str,
    registry: &str,
    limit: Duration,
    pages: usize,
    entries: usize,
) -> Error {
    Error::Limit {
        op,
        target: target.to_string(),
        registry: registry.to_string(),
        what: format!(
            "pages for longer than the listing deadline ({pages} pages and {entries} names read \
             in {} s)",
            limit.as_secs()
        ),
        limit: limit.as_secs(),
        key: Some("listing_timeout_seconds"),
    }
}

/// Run `fut` within `limit`; past it, a [`Error::Timeout`] saying `what`
/// (built only then) did not happen.
pub(crate) async fn within<T>(
    limit: Duration,
    op: Op,
    target: &str,
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            op,
            target: target.to_string(),
            what: what(),
            after: limit,
        }),
    }
}

fn seconds(v: f64) -> Duration {
    check_seconds(v).unwrap_or(DEFAULT_REQUEST_TIMEOUT)
}

/// Counts what one image plan holds against [`Limits`]; an error names the
/// limit and the registry. Lives as long as one plan.
#[derive(Debug)]
pub struct PlanBudget {
    limits: Limits,
    registry: String,
    image: String,
    manifests: usize,
    bytes: u64,
}

impl PlanBudget {
    /// A budget for planning `image` read from `registry`.
    pub fn new(limits: Limits, registry: &str, image: &str) -> PlanBudget {
        PlanBudget {
            limits,
            registry: registry.to_string(),
            image: image.to_string(),
            manifests: 0,
            bytes: 0,
        }
    }

    /// Count one more manifest held by the plan.
    pub fn admit(&mut self, m: &RawManifest) -> Result<()> {
        self.manifests += 1;
        self.bytes = self.bytes.saturating_add(m.bytes.len() as u64);
        if self.manifests > self.limits.max_manifests_per_image {
            return Err(self.exceeded(
                format!(
                    "more than {} manifests for one image",
                    self.limits.max_manifests_per_image
                ),
                self.limits.max_manifests_per_image as u64,
                Some("max_manifests_per_image"),
            ));
        }
        if self.bytes > self.limits.max_manifest_bytes_per_image {
            return Err(self.exceeded(
                format!(
                    "more than {} bytes of manifests for one image",
                    self.limits.max_manifest_bytes_per_image
                ),
                self.limits.max_manifest_bytes_per_image,
                Some("max_manifest_bytes_per_image"),
            ));
        }
        Ok(())
    }

    /// Count one more manifest, parsed, and check its entries when it is an index.
    pub fn admit_parsed(&mut self, raw: &RawManifest, parsed: &Manifest) -> Result<()> {
        self.admit(raw)?;
        if let Manifest::Index(i) = parsed {
            self.check_entries(i.manifests.len())?;
        }
        Ok(())
    }

    /// Check the entry count of one index.
    pub fn check_entries(&self, entries: usize) -> Result<()> {
        if entries > self.limits.max_index_entries {
            return Err(self.exceeded(
                format!("an index with {entries} entries"),
                self.limits.max_index_entries as u64,
                None,
            ));
        }
        Ok(())
    }

    fn exceeded(&self, what: String, limit: u64, key: Option<&'static str>) -> Error {
        Error::Limit {
            op: Op::GetManifest,
            target: self.image.clone(),
            registry: self.registry.clone(),
            what,
            limit,
            key,
        }
    }
}

/// A [`PlanBudget`] shared by the concurrent fetches of one plan.
#[derive(Debug)]
pub struct SharedBudget(std::sync::Mutex<PlanBudget>);

impl SharedBudget {
    /// Share `budget`.
    pub fn new(budget: PlanBudget) -> SharedBudget {
        SharedBudget(std::sync::Mutex::new(budget))
    }

    /// [`PlanBudget::admit_parsed`] under the lock.
    pub fn admit(&self, raw: &RawManifest, parsed: &Manifest) -> Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit_parsed(raw, parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_budget_counts_manifests_and_bytes() {
        let limits = Limits {
            max_manifests_per_image: 2,
            max_manifest_bytes_per_image: 10,
            ..Limits::default()
        };
        let m = RawManifest::new(bytes::Bytes::from_static(b"{}"), None);
        let mut b = PlanBudget::new(limits.clone(), "r.example", "r.example/a:1");
        b.admit(&m).unwrap();
        b.admit(&m).unwrap();
        let e = b.admit(&m).unwrap_err().to_string();
        assert!(
            e.contains("more than 2 manifests")
                && e.contains("max_manifests_per_image")
                && e.contains("r.example"),
            "{e}"
        );
        let big = RawManifest::new(bytes::Bytes::from(vec![b' '; 11]), None);
        let e = PlanBudget::new(limits, "r.example", "x")
            .admit(&big)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_manifest_bytes_per_image"), "{e}");
    }

    #[test]
    fn deadlines_are_bounded() {
        assert_eq!(check_seconds(2.0), Ok(Duration::from_secs(2)));
        assert!(check_seconds(0.0).is_err());
        assert!(check_seconds(-1.0).is_err());
        assert!(check_seconds(f64::NAN).is_err());
        assert!(check_seconds(1e300).is_err());
    }
}
