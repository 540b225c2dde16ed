//! How much referrer work one image may cause, and what is left behind
//! beyond it.
//!
//! A source decides how many referrers it lists, and each referrer can have
//! referrers of its own: without limits, a source that lists 32 referrers
//! of every digest, 4 levels deep, makes one image cost about a million
//! manifest copies while it holds a copy slot. Three limits bound the walk
//! of each image: referrers taken per subject, referrer manifests handled
//! per image (copied, or found already listed at the target) and levels of
//! referrers of referrers. What lies beyond them is counted as
//! `left_behind`, the image still mirrors (its tag is written once the
//! referrers within the limits are in place), and one warning per image
//! says which limit cut.
//!
//! A [`Walk`] lives for the referrer copy of one image.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Referrers taken per subject by default: a signed, attested image with an
/// SBOM lists a handful per digest (cosign signatures from a few signers,
/// SLSA provenance, an SBOM, vulnerability reports); 64 leaves room for
/// years of appended signatures.
pub const DEFAULT_PER_SUBJECT: usize = 64;
/// Referrer manifests handled per image by default: an index of 8 platforms
/// whose every manifest carries a signature, an SBOM and a provenance
/// attestation, each of those signed, is about 60; 256 is four times that.
pub const DEFAULT_PER_IMAGE: usize = 256;
/// Levels of referrers followed by default (a signature of an SBOM of an
/// image is level 2; a countersignature level 3).
pub const DEFAULT_DEPTH: usize = 4;
/// The largest value a limit may be set to.
pub const MAX_LIMIT: usize = 100_000;

/// The limits of one image's referrer walk (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferrerLimits {
    /// Referrers taken per subject; the rest of its list is left behind.
    pub per_subject: usize,
    /// Referrer manifests handled per image, all levels together.
    pub per_image: usize,
    /// Levels of referrers followed (1: only referrers of the image's own manifests).
    pub depth: usize,
}

impl Default for ReferrerLimits {
    fn default() -> Self {
        ReferrerLimits {
            per_subject: DEFAULT_PER_SUBJECT,
            per_image: DEFAULT_PER_IMAGE,
            depth: DEFAULT_DEPTH,
        }
    }
}

/// The state of one image's referrer walk: what remains of its budget, and
/// which limits cut (for the one warning).
#[derive(Debug)]
pub(crate) struct Walk {
    pub(crate) limits: ReferrerLimits,
    remaining: AtomicUsize,
    cut_subject: AtomicBool,
    cut_image: AtomicBool,
    cut_depth: AtomicBool,
}

impl Walk {
    /// A walk with the whole budget of `limits`.
    pub(crate) fn new(limits: ReferrerLimits) -> Walk {
        Walk {
            limits,
            remaining: AtomicUsize::new(limits.per_image),
            cut_subject: AtomicBool::new(false),
            cut_image: AtomicBool::new(false),
            cut_depth: AtomicBool::new(false),
        }
    }

    /// Take one referrer from the image's budget; false (and noted) when
    /// the budget is spent.
    pub(crate) fn take(&self) -> bool {
        let took = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !took {
            self.cut_image.store(true, Ordering::Relaxed);
        }
        took
    }

    /// Note that a subject listed more than `per_subject` referrers.
    pub(crate) fn cut_subject(&self) {
        self.cut_subject.store(true, Ordering::Relaxed);
    }

    /// Note that referrers lie deeper than `depth`.
    pub(crate) fn cut_depth(&self) {
        self.cut_depth.store(true, Ordering::Relaxed);
    }

    /// The limits that cut, as config keys with their values; empty when none did.
    pub(crate) fn cuts(&self) -> Vec<String> {
        let l = &self.limits;
        [
            (
                &self.cut_subject,
                "max_referrers_per_subject",
                l.per_subject,
            ),
            (&self.cut_image, "max_referrers_per_image", l.per_image),
            (&self.cut_depth, "max_referrer_depth", l.depth),
        ]
        .into_iter()
        .filter(|(c, _, _)| c.load(Ordering::Relaxed))
        .map(|(_, k, v)| format!("{k} = {v}"))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out_and_says_which_limit_cut() {
        let w = Walk::new(ReferrerLimits {
            per_image: 2,
            ..ReferrerLimits::default()
        });
        assert!(w.cuts().is_empty());
        assert!(w.take() && w.take());
        assert!(!w.take());
        w.cut_depth();
        assert_eq!(
            w.cuts(),
            vec!["max_referrers_per_image = 2", "max_referrer_depth = 4"]
        );
    }
}
