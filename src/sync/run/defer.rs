//! Images deferred to keep a pull budget floor are tried again within the
//! run when the source's window resets soon enough ([`MAX_WAIT`], at most
//! [`MAX_ROUNDS`] times); otherwise they stay deferred in the report, and
//! the next run (the next `serve` slot, or the next `sync`) tries them again.
//! Nothing is remembered between runs: a later run compares every image
//! afresh, HEAD only, so deferred images are simply the ones still behind.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{ImageReport, ImageResult, Syncer};
use crate::copy::Copier;
use crate::metrics;
use crate::registry::Reference;
use crate::sync::model::Mirror;

/// Longest wait for a window reset within one run.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most rounds of retries within one run.
pub const MAX_ROUNDS: usize = 3;
/// Slack added to the announced reset, so that the registry has reset too.
const MARGIN: Duration = Duration::from_millis(500);

impl Syncer {
    /// Retry the deferred images of `images` (`pairs` holds the pair of
    /// each image deferred, with its index in `images`) while their window
    /// resets within [`MAX_WAIT`]; then count those left deferred.
    pub(super) async fn retry_deferred(
        &self,
        copier: &Copier,
        mirror: &Mirror,
        pairs: &[(usize, (Reference, Reference))],
        images: &mut [Arc<ImageReport>],
    ) {
        for _ in 0..MAX_ROUNDS {
            // An image is deferred only by its first try or a retry: its
            // pair is in `pairs`.
            let deferred: Vec<&(usize, (Reference, Reference))> = pairs
                .iter()
                .filter(|(i, _)| images[*i].result == ImageResult::Deferred)
                .collect();
            let Some(wait) = self.soonest_reset(deferred.iter().map(|(i, _)| &*images[*i])) else {
                break;
            };
            if wait > MAX_WAIT || self.stop.is_cancelled() {
                break;
            }
            tracing::info!(mirror = %mirror.name, images = deferred.len(), wait_seconds = wait.as_secs_f64(), "waiting for the pull window to reset to copy deferred images");
            tokio::select! {
                () = tokio::time::sleep(wait + MARGIN) => {}
                () = self.stop.cancelled() => break,
            }
            let width = self.options.concurrency.max(1);
            let todo: Vec<(Reference, Reference)> =
                deferred.iter().map(|(_, pair)| pair.clone()).collect();
            let retried: Vec<Arc<ImageReport>> = futures_util::stream::iter(todo)
                .map(|(s, t)| async move {
                    self.kept(mirror, self.sync_image(copier, mirror, s, t).await)
                })
                .buffered(width)
                .collect()
                .await;
            for ((i, _), r) in deferred.into_iter().zip(retried) {
                images[*i] = r;
            }
        }
        let left = images
            .iter()
            .filter(|i| i.result == ImageResult::Deferred)
            .count() as u64;
        if left > 0 && self.options.record_metrics {
            for _ in 0..left {
                metrics::record_image(&mirror.name, ImageResult::Deferred.label());
            }
        }
    }
}

impl Syncer {
    /// How long until the soonest of the deferred images' registries can
    /// be asked again, from what the client knows now (answers that came
    /// after a deferral may have moved its window); `None` when nothing is
    /// deferred or no registry knows when its window resets.
    fn soonest_reset<'a>(
        &self,
        deferred: impl Iterator<Item = &'a ImageReport>,
    ) -> Option<Duration> {
        deferred
            .filter_map(|r| {
                let refusal = r.deferral.as_ref()?;
                match self.client.pull_allowance(&refusal.registry) {
                    // The window ended (or was never known): ask now.
                    Ok(a) if a.refuse(refusal.needed).is_none() => Some(Duration::ZERO),
                    Ok(a) => a.retry_in,
                    Err(_) => refusal.retry_in(),
                }
            })
            .min()
    }
}
