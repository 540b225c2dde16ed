//! What earlier runs learnt about a source repository's referrers: a
//! [`ReferrerMemory`] remembers the repositories found with no referrers
//! API and no referrer tag at all (no `sha256-<hex>` fallback tag, no cosign
//! tag), so that a later run skips the per-repository probe (one referrers
//! API request and one tag listing) while the finding is younger than the
//! mirror's `full_check_every`.
//!
//! A remembered finding is a hint with a cost: a referrer pushed upstream
//! after it is copied once the finding has aged out (at the latest after
//! the implementation's own lifetime, or `full_check_every`), not at once.
//! The sync layer's run-state store implements it.

use std::time::Duration;

/// Findings about source repositories' referrers across runs (see the
/// module doc).
pub trait ReferrerMemory: Send + Sync {
    /// True when an earlier run found `repository` of `registry` without
    /// the referrers API and without referrer tags less than `max_age` ago.
    fn remembers_none(&self, registry: &str, repository: &str, max_age: Duration) -> bool;

    /// Note what this run found: `none` when the repository has neither the
    /// API nor a referrer tag; otherwise any earlier finding is dropped.
    fn note(&self, registry: &str, repository: &str, none: bool);
}
