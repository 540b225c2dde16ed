//! Bandwidth caps: a registry's `max_bytes_per_second` paces the bytes that
//! regmirror reads from it and sends to it (blob downloads, monolithic and
//! chunked uploads, manifest bodies), all transfers of that registry
//! together; `[defaults] max_total_bytes_per_second` paces the same bytes of
//! every registry together, in one bucket per process (all runs of `serve`
//! share it).
//!
//! Each cap is a token bucket in its virtual-time form: every chunk of `n`
//! bytes moves the bucket's "next free instant" on by `n / rate`; a transfer
//! whose chunk would run ahead of it by more than [`BURST`] waits until it
//! no longer does. Over any stretch longer than the burst, the bytes through
//! a bucket average at most its cap. Each wait adds to
//! `regmirror_bandwidth_wait_seconds_total{registry}` of the bucket that
//! asked for it (`registry="*"`: the total cap).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::registry::resume::Chunks;

/// How far the bytes may run ahead of the cap (the bucket's depth, in time).
pub const BURST: Duration = Duration::from_millis(50);

/// The smallest cap accepted (64 KiB/s): far above the default throughput
/// floor of a blob stream (`blob_min_bytes_per_second`), so pacing alone
/// never makes a stream look stalled.
pub const MIN_BYTES_PER_SECOND: u64 = 64 * 1024;

/// The `registry` label of the total cap's waits.
pub const TOTAL_LABEL: &str = "*";

/// Size of the pieces a body held whole (a chunked upload's part) is paced in.
const PIECE: usize = 64 * 1024;

/// The process-wide bucket of the total cap (see [`Caps::new`]).
static TOTAL: Mutex<Option<Arc<Bandwidth>>> = Mutex::new(None);

/// `Err(message)` when `v` is neither 0 (no cap) nor at least
/// [`MIN_BYTES_PER_SECOND`].
pub fn check_cap(v: u64) -> Result<(), String> {
    if v != 0 && v < MIN_BYTES_PER_SECOND {
        return Err(format!(
            "{v} is too low: expected 0 (unlimited) or at least {MIN_BYTES_PER_SECOND} (64 KiB/s)"
        ));
    }
    Ok(())
}

/// One cap's bucket (see the module doc).
pub(crate) struct Bandwidth {
    /// The `registry` label of its waits.
    label: String,
    bytes_per_second: f64,
    /// When the bytes paced so far have been sent at the cap.
    next: Mutex<Instant>,
}

impl Bandwidth {
    /// A bucket of `bytes_per_second`, when there is a cap (`0`: none).
    fn new(label: &str, bytes_per_second: Option<u64>) -> Option<Arc<Bandwidth>> {
        let rate = bytes_per_second.filter(|r| *r > 0)?;
        Some(Arc::new(Bandwidth {
            label: label.to_string(),
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
}

/// The process-wide bucket of a total cap of `rate`: the same bucket for
/// every host and run while the cap stays the same (a reloaded config with
/// another cap starts a new bucket for the hosts created after it).
fn total_bucket(rate: Option<u64>) -> Option<Arc<Bandwidth>> {
    let rate = rate.filter(|r| *r > 0)?;
    let mut total = TOTAL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(b) = total.as_ref().filter(|b| b.bytes_per_second == rate as f64) {
        return Some(b.clone());
    }
    let b = Bandwidth::new(TOTAL_LABEL, Some(rate))?;
    *total = Some(b.clone());
    Some(b)
}

/// The caps the transfers of one registry keep to: its own and the total.
#[derive(Clone, Default)]
pub(crate) struct Caps {
    buckets: Vec<Arc<Bandwidth>>,
}

impl Caps {
    /// The caps of `registry`: its `max_bytes_per_second` and the
    /// process-wide `max_total_bytes_per_second` (`None` or `0`: none).
    pub(crate) fn new(registry: &str, own: Option<u64>, total: Option<u64>) -> Caps {
        let buckets = Bandwidth::new(registry, own)
            .into_iter()
            .chain(total_bucket(total))
            .collect();
        Caps { buckets }
    }

    /// Whether any cap applies.
    pub(crate) fn is_capped(&self) -> bool {
        !self.buckets.is_empty()
    }

    /// How long `n` more bytes must wait to keep to every cap, with the
    /// wait each cap asked for recorded under its label.
    fn wait_for(&self, n: usize, now: Instant) -> Duration {
        let mut longest = Duration::ZERO;
        for b in &self.buckets {
            let wait = b.wait_for(n, now);
            if !wait.is_zero() {
                crate::metrics::record_bandwidth_wait(&b.label, wait.as_secs_f64());
            }
            longest = longest.max(wait);
        }
        longest
    }

    /// Wait until `n` more bytes keep to every cap. Bytes held whole (a
    /// manifest) are counted this way: sent or read at once, then paid for.
    pub(crate) async fn take(&self, n: usize) {
        if self.buckets.is_empty() {
            return;
        }
        let wait = self.wait_for(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// `stream`, paced: each chunk is handed on once it keeps to the caps.
    pub(crate) fn pace<E: Send + 'static>(&self, stream: Chunks<E>) -> Chunks<E> {
        if self.buckets.is_empty() {
            return stream;
        }
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

/// `body` as a stream of pieces of at most 64 KiB, to be paced.
pub(crate) fn pieces<E: Send + 'static>(body: Bytes) -> Chunks<E> {
    let pieces: Vec<Result<Bytes, E>> = (0..body.len())
        .step_by(PIECE)
        .map(|at| Ok(body.slice(at..(at + PIECE).min(body.len()))))
        .collect();
    Box::pin(futures_util::stream::iter(pieces))
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

    #[test]
    fn the_slowest_cap_sets_the_wait_and_the_total_is_one_bucket() {
        // A total cap of 100 000 B/s is shared by every host of the process.
        let a = Caps::new("a", Some(1_000_000), Some(100_000));
        let b = Caps::new("b", None, Some(100_000));
        assert!(Arc::ptr_eq(&a.buckets[1], &b.buckets[0]));
        let t = Instant::now();
        for bucket in a.buckets.iter().chain(&b.buckets) {
            *bucket.next.lock().unwrap() = t;
        }
        // 10 000 bytes: 10 ms at a's own cap, 100 ms at the total (50 ms
        // beyond the burst).
        assert_eq!(a.wait_for(10_000, t), Duration::from_millis(50));
        // b's bytes queue behind a's in the shared bucket.
        assert_eq!(b.wait_for(10_000, t), Duration::from_millis(150));
        assert!(!Caps::new("c", None, None).is_capped());
        assert!(check_cap(1000).unwrap_err().contains("65536"));
        assert!(check_cap(0).is_ok() && check_cap(65536).is_ok());
    }

    #[tokio::test]
    async fn a_body_held_whole_is_paced_in_pieces() {
        let caps = Caps::new("r", Some(1 << 30), None);
        let body = Bytes::from(vec![7u8; 3 * PIECE + 5]);
        let pieces: Vec<Result<Bytes, ()>> = caps.pace(pieces(body.clone())).collect().await;
        let lens: Vec<usize> = pieces.iter().map(|p| p.as_ref().unwrap().len()).collect();
        assert_eq!(lens, [PIECE, PIECE, PIECE, 5]);
        let joined: Vec<u8> = pieces.into_iter().flat_map(|p| p.unwrap()).collect();
        assert_eq!(joined, body);
    }
}
