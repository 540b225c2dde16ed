//! Per-image quarantine: an image (a source tag or digest of a mirror) that
//! failed [`QUARANTINE_AFTER`] runs in a row, for a reason another try will
//! not fix, is skipped by the mirror's next runs with a growing backoff
//! (1 run, then 2, 4, up to [`MAX_RUNS_SKIPPED`]) instead of failing every
//! run; it is tried again after each backoff, and the first run in which it
//! does not fail releases it.
//!
//! What counts: a failed image whose kind is `not-found`, `integrity`,
//! `rejected`, `limit`, `bad-response` or `invalid`, or has no kind (a
//! schema-1 manifest, a child deleted upstream). Failures that a registry
//! outage or a credential problem cause for every image alike (connection,
//! TLS, timeout, rate limit, server error, refused credentials, pull budget,
//! config) neither count nor release: an outage never quarantines a mirror.
//!
//! State lifetime: in memory, for the life of the process (`serve` keeps
//! one for every generation of its config; a `sync` run starts empty, so a
//! one-shot run never skips an image). Entries of images no longer selected
//! by their mirror are dropped at the end of each of its runs; a mirror that
//! leaves the config loses its entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::registry::ErrorKind;

/// Failed runs in a row that put an image in quarantine.
pub const QUARANTINE_AFTER: u32 = 3;
/// Most runs skipped between two tries of a quarantined image.
pub const MAX_RUNS_SKIPPED: u32 = 8;

/// The quarantine of every mirror of a process. Clone is cheap; clones share
/// the state.
#[derive(Clone, Default)]
pub struct Quarantine {
    images: Arc<Mutex<HashMap<(String, String), Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Runs in a row in which the image failed (for a counting reason).
    failed_runs: u32,
    /// Runs still to skip before the next try.
    skip_left: u32,
    /// The last failure, as reported.
    last_error: String,
}

/// An image a run skipped because it is in quarantine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuarantinedImage {
    /// Source reference.
    pub source: String,
    /// Target reference.
    pub target: String,
    /// Runs in a row in which it failed.
    pub failed_runs: u32,
    /// Runs that will still skip it after this one.
    pub runs_left: u32,
    /// Its last failure.
    pub last_error: String,
}

/// How one try of an image in a run ended, as the quarantine sees it.
#[derive(Debug, Clone, Copy)]
pub enum Try<'a> {
    /// It failed: of this kind (if known), with this error.
    Failed {
        kind: Option<ErrorKind>,
        error: &'a str,
    },
    /// It is in place (copied, up to date, would be copied) or conflicts.
    Settled,
    /// Neither (cancelled, deferred): changes nothing.
    Neither,
}

/// True when a failure of this kind counts towards quarantine.
fn counts(kind: Option<ErrorKind>) -> bool {
    match kind {
        None => true,
        Some(k) => matches!(
            k.label(),
            "not-found" | "integrity" | "rejected" | "limit" | "bad-response" | "invalid"
        ),
    }
}

impl Quarantine {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.images.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this run skips `source` of `mirror` (counting one skipped
    /// run off its backoff): what to report when it does.
    pub(crate) fn skip(
        &self,
        mirror: &str,
        source: &str,
        target: &str,
    ) -> Option<QuarantinedImage> {
        let mut images = self.lock();
        let entry = images.get_mut(&(mirror.to_string(), source.to_string()))?;
        if entry.skip_left == 0 {
            return None;
        }
        entry.skip_left -= 1;
        Some(QuarantinedImage {
            source: source.to_string(),
            target: target.to_string(),
            failed_runs: entry.failed_runs,
            runs_left: entry.skip_left,
            last_error: entry.last_error.clone(),
        })
    }

    /// Note how a try of `source` of `mirror` in this run ended.
    pub(crate) fn record(&self, mirror: &str, source: &str, tried: Try<'_>) {
        let key = (mirror.to_string(), source.to_string());
        let mut images = self.lock();
        match tried {
            Try::Failed { kind, error } if counts(kind) => {
                let entry = images.entry(key).or_insert(Entry {
                    failed_runs: 0,
                    skip_left: 0,
                    last_error: String::new(),
                });
                entry.failed_runs += 1;
                entry.last_error = error.to_string();
                if entry.failed_runs >= QUARANTINE_AFTER {
                    let step = (entry.failed_runs - QUARANTINE_AFTER).min(8);
                    entry.skip_left = (1u32 << step).min(MAX_RUNS_SKIPPED);
                    tracing::warn!(mirror = %mirror, source = %source, failed_runs = entry.failed_runs,
                        runs_skipped = entry.skip_left, error = %entry.last_error,
                        "image quarantined: it failed in several runs in a row; the next runs skip it (exclude it, or fix it upstream)");
                }
            }
            Try::Failed { .. } | Try::Neither => {}
            Try::Settled => {
                if images
                    .remove(&key)
                    .is_some_and(|e| e.failed_runs >= QUARANTINE_AFTER)
                {
                    tracing::info!(mirror = %mirror, source = %source, "image released from quarantine");
                }
            }
        }
    }

    /// Drop the entries of `mirror` whose source is not in `selected`.
    pub(crate) fn keep_only(&self, mirror: &str, selected: &[String]) {
        self.lock()
            .retain(|(m, source), _| m != mirror || selected.contains(source));
    }

    /// Drop every entry of `mirror`.
    pub fn forget_mirror(&self, mirror: &str) {
        self.lock().retain(|(m, _), _| m != mirror);
    }

    /// Images of `mirror` in quarantine now.
    pub fn count(&self, mirror: &str) -> usize {
        self.lock()
            .iter()
            .filter(|((m, _), e)| m == mirror && e.failed_runs >= QUARANTINE_AFTER)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: Option<ErrorKind>) -> Try<'static> {
        Try::Failed {
            kind,
            error: "schema 1",
        }
    }

    fn record(q: &Quarantine, tried: Try<'_>) {
        q.record("m", "src/app:bad", tried);
    }

    /// Runs until the image is tried again: how many were skipped.
    fn skipped_runs(q: &Quarantine) -> u32 {
        let mut n = 0;
        while q.skip("m", "src/app:bad", "dst/app:bad").is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn three_failed_runs_quarantine_with_a_growing_backoff_and_a_success_releases() {
        let q = Quarantine::default();
        for _ in 0..QUARANTINE_AFTER - 1 {
            record(&q, failed(Some(ErrorKind::NotFound)));
            assert_eq!(skipped_runs(&q), 0);
        }
        assert_eq!(q.count("m"), 0);
        let mut backoffs = Vec::new();
        for _ in 0..6 {
            record(&q, failed(Some(ErrorKind::NotFound)));
            backoffs.push(skipped_runs(&q));
        }
        assert_eq!(backoffs, [1, 2, 4, 8, 8, 8]);
        assert_eq!(q.count("m"), 1);
        record(&q, Try::Settled);
        assert_eq!(q.count("m"), 0);
        assert_eq!(skipped_runs(&q), 0);
    }

    #[test]
    fn outages_neither_count_nor_release() {
        let q = Quarantine::default();
        for _ in 0..5 {
            record(&q, failed(Some(ErrorKind::Connection)));
            record(&q, failed(Some(ErrorKind::RateLimited)));
        }
        assert_eq!(q.count("m"), 0);
        for _ in 0..QUARANTINE_AFTER {
            record(&q, failed(None));
            record(&q, failed(Some(ErrorKind::Timeout)));
            record(&q, Try::Neither);
        }
        assert_eq!(q.count("m"), 1, "an outage in between keeps the count");
        q.keep_only("m", &["src/app:other".to_string()]);
        assert_eq!(q.count("m"), 0, "a tag no longer selected is dropped");
    }
}
