//! The replication lag of a tag a run wrote: from the upstream change to
//! the tag at the target, exported as `regmirror_replication_lag_seconds`
//! and kept in the image's report for the run's notification.
//!
//! The change is dated by the event that triggered the run when there is
//! one ([`Syncer::with_event_time`]); else by the first sighting of the
//! digest under its source tag in the run-state store (a digest earlier
//! runs held by `min_age` counts from the first of them: runs note a
//! sighting when they hold a digest or copy one); else by the start of the
//! copy that wrote it (its first sighting is this run).

use std::time::SystemTime;

use super::{ImageReport, Syncer};
use crate::metrics;
use crate::sync::model::Mirror;
use crate::sync::state::clock;

impl Syncer {
    /// Note the lag of `report`, an image this run just copied.
    pub(super) fn note_lag(&self, mirror: &Mirror, report: &mut ImageReport) {
        let copy_seconds = report
            .copy
            .as_ref()
            .map_or(0.0, |c| c.duration.as_secs_f64());
        let since_event = self
            .event_time
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64());
        let lag = match since_event {
            Some(seconds) => seconds,
            None => self
                .since_first_seen(report)
                .unwrap_or(0.0)
                .max(copy_seconds),
        };
        report.lag_seconds = Some(lag);
        if self.options.record_metrics {
            metrics::observe_replication_lag(&mirror.name, lag);
        }
    }

    /// Seconds since the store first saw the image's source digest under
    /// its source tag (noting it seen now); `None` without a store, or for
    /// a source named by digest.
    fn since_first_seen(&self, report: &ImageReport) -> Option<f64> {
        let store = self.state.as_ref()?;
        let digest = report.source_digest.as_deref()?;
        if report.source.contains('@') {
            return None;
        }
        let first = store.first_seen(&report.source, digest);
        Some(clock::now().saturating_sub(first) as f64)
    }
}
