//! Bandwidth caps: a registry's `max_bytes_per_second` paces the blob bytes
//! that regmirror reads from it (downloads) and streams to it (uploads),
//! all streams of that registry together.
//!
//! A token bucket in its virtual-time form: every chunk of `n` bytes moves
//! the registry's "next free instant" on by `n / rate`; a stream whose chunk
//! would run ahead of it by more than [`BURST`] waits until it no longer
//! does. Over any stretch longer than the burst, the bytes of all its
//! streams average at most the cap. Each wait adds to
//! `regmirror_bandwidth_wait_seconds_total{registry}`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::registry::resume::Chunks;

/// How far the bytes may run ahead of the cap (the bucket's depth, in time).
pub const BURST: Duration = Duration::from_millis(50);

/// The smallest cap accepted (64 KiB/s): far above the default throughput
/// floor of a blob stream (`blob_min_bytes_per_second`), so pacing alone
/// never makes a stream look stalled.
pub const MIN_BYTES_PER_SECOND: u64 = 64 * 1024;

/// One registry's cap (see the module doc).
pub(crate) struct Bandwidth {
    registry: String,
    bytes_per_second: f64,
    /// When the bytes paced so far have been sent at the cap.
    next: Mutex<Instant>,
}

impl Bandwidth {
    /// The cap of `registry`, when it has one (`0`: none).
    pub(crate) fn new(registry: &str, bytes_per_second: Option<u64>) -> Option<Arc<Bandwidth>> {
        let rate = bytes_per_second.filter(|r| *r > 0)?;
        Some(Arc::new(Bandwidth {
            registry: registry.to_string(),
            bytes_per_second: rate as f64,
            next: Mutex::new(Instant::now()),
        }))
    }

    /// How long `n` more bytes must wait to keep to the cap.
    fn wait_for(&self, n: usize, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_second);
        next.saturating_duration_since(now).saturating_sub(BURST)
    }

    /// Wait until `n` more bytes keep to the cap.
    async fn take(&self, n: usize) {
        let wait = self.wait_for(n, Instant::now());
        if !wait.is_zero() {
            crate::metrics::record_bandwidth_wait(&self.registry, wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// `stream`, paced: each chunk is handed on once it keeps to the cap.
    pub(crate) fn pace<E: Send + 'static>(self: &Arc<Self>, stream: Chunks<E>) -> Chunks<E> {
        let me = self.clone();
        Box::pin(stream.then(move |item| {
            let me = me.clone();
            async move {
                if let Ok(bytes) = &item {
                    me.take(bytes.len()).await;
                }
                item
            }
        }))
    }
}

/// `stream` paced by `cap` when there is one.
pub(crate) fn paced<E: Send + 'static>(
    cap: &Option<Arc<Bandwidth>>,
    stream: Chunks<E>,
) -> Chunks<E> {
    match cap {
        Some(b) => b.pace(stream),
        None => stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_wait_for_the_cap_beyond_the_burst() {
        let b = Bandwidth::new("r", Some(1000)).unwrap();
        let t = Instant::now();
        *b.next.lock().unwrap() = t;
        // 40 bytes = 40 ms at 1000 B/s: within the burst.
        assert_eq!(b.wait_for(40, t), Duration::ZERO);
        // 60 more: 100 ms ahead, 50 ms beyond the burst.
        assert_eq!(b.wait_for(60, t), Duration::from_millis(50));
        // A second later the bucket has refilled.
        assert_eq!(b.wait_for(40, t + Duration::from_secs(2)), Duration::ZERO);
        assert!(Bandwidth::new("r", Some(0)).is_none());
        assert!(Bandwidth::new("r", None).is_none());
    }
}
