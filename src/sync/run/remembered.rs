//! The run-state store's part in one image (see [`crate::sync::state`]): a
//! tag the mirror declares immutable, mirrored and checked less than
//! `full_check_every` ago, is trusted without a request; such tags are
//! noted once mirrored; and a new upstream digest seen for less than the
//! mirror's `min_age` is held.
//!
//! A trusted tag is reported `skipped` with the recorded digests; its
//! referrers are brought up to date by the next full check.

use super::{ImageReport, ImageResult, Syncer};
use crate::registry::{Digest, Reference};
use crate::sync::model::Mirror;
use crate::sync::state::{Held, clock};

impl Syncer {
    /// True, with `report` made `skipped`, when the store trusts the tag
    /// (see the module doc); false, `report` unchanged, otherwise.
    pub(super) fn trusted(
        &self,
        mirror: &Mirror,
        source: &Reference,
        report: &mut ImageReport,
    ) -> bool {
        let Some(store) = &self.state else {
            return false;
        };
        let Some(tag) = source.tag().filter(|_| source.digest().is_none()) else {
            return false;
        };
        if !mirror.state.is_immutable(tag) {
            return false;
        }
        let Some(record) = store.tag(&report.source, &report.target) else {
            return false;
        };
        let age = clock::now().checked_sub(record.checked);
        if age.is_none_or(|a| a >= mirror.state.full_check_every.as_secs()) {
            return false;
        }
        tracing::debug!(mirror = %mirror.name, source = %report.source, target = %report.target,
            digest = %record.source_digest, "immutable tag mirrored before: trusted without a request");
        report.result = ImageResult::Skipped;
        report.source_digest = Some(record.source_digest);
        report.target_digest = Some(record.target_digest);
        true
    }

    /// Note an immutable tag found mirrored (copied or up to date).
    pub(super) fn note_mirrored(&self, mirror: &Mirror, source: &Reference, report: &ImageReport) {
        let (Some(store), Some(tag)) = (&self.state, source.tag()) else {
            return;
        };
        if self.options.dry_run
            || source.digest().is_some()
            || !mirror.state.is_immutable(tag)
            || !matches!(report.result, ImageResult::Copied | ImageResult::Skipped)
        {
            return;
        }
        if let (Some(s), Some(t)) = (&report.source_digest, &report.target_digest) {
            store.note_tag(&report.source, &report.target, s, t);
        }
    }

    /// True, with `report` made `held`, when `digest` was first seen under
    /// the source tag less than the mirror's `min_age` ago; false, `report`
    /// unchanged, otherwise.
    pub(super) fn hold_young(
        &self,
        mirror: &Mirror,
        source: &Reference,
        digest: &Digest,
        report: &mut ImageReport,
    ) -> bool {
        let (Some(store), Some(min_age)) = (&self.state, mirror.state.min_age) else {
            return false;
        };
        if source.tag().is_none() || source.digest().is_some() {
            return false;
        }
        let first = store.first_seen(&report.source, &digest.to_string());
        let eligible = first.saturating_add(min_age.as_secs());
        if clock::now() >= eligible {
            return false;
        }
        tracing::info!(mirror = %mirror.name, source = %report.source, digest = %digest,
            eligible_at = %clock::rfc3339(eligible), "new source digest held until it is min_age old");
        report.result = ImageResult::Held;
        report.held = Some(Box::new(Held {
            first_seen: clock::rfc3339(first),
            eligible_at: clock::rfc3339(eligible),
        }));
        true
    }
}
