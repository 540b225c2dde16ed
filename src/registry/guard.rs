//! Deadlines on blob streams: a stream whose bytes stop arriving, or arrive
//! slower than a floor, ends with an error instead of holding its copy (and
//! the copy permits behind it) forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::client::ByteStream;
use super::error::{Error, Op, Result};

/// A blob stream with an idle deadline and a throughput floor.
pub(crate) struct GuardedStream {
    inner: ByteStream,
    op: Op,
    target: String,
    idle: Duration,
    /// Bytes per second averaged over each idle window; 0: none.
    floor: u64,
    sleep: Pin<Box<Sleep>>,
    window_start: Instant,
    window_bytes: u64,
    done: bool,
}

impl GuardedStream {
    /// Guard `inner`: an error when no byte came for `idle`, or when fewer
    /// than `floor` bytes per second came over a whole `idle` window.
    pub fn new(inner: ByteStream, op: Op, target: String, idle: Duration, floor: u64) -> Self {
        let now = Instant::now();
        GuardedStream {
            inner,
            op,
            target,
            idle,
            floor,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            window_start: now,
            window_bytes: 0,
            done: false,
        }
    }

    fn fail(&mut self, what: String, after: Duration) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(Error::Timeout {
            op: self.op,
            target: self.target.clone(),
            what,
            after,
        })))
    }
}

impl Stream for GuardedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                let now = Instant::now();
                this.window_bytes = this.window_bytes.saturating_add(b.len() as u64);
                this.sleep.as_mut().reset(now + this.idle);
                let window = now - this.window_start;
                if window >= this.idle {
                    let need = (this.floor as f64 * window.as_secs_f64()) as u64;
                    if this.window_bytes < need {
                        let rate = this.window_bytes as f64 / window.as_secs_f64();
                        let what = format!(
                            "the blob arrived at {rate:.0} bytes/s, below the floor of {} bytes/s \
                             (blob_min_bytes_per_second)",
                            this.floor
                        );
                        return this.fail(what, window);
                    }
                    this.window_start = now;
                    this.window_bytes = 0;
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(other) => {
                this.done = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let idle = this.idle;
                    this.fail("no byte of the blob arrived".to_string(), idle)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn guarded(chunks: Vec<(u64, &'static [u8])>, idle_ms: u64, floor: u64) -> GuardedStream {
        let s = futures_util::stream::iter(chunks).then(|(delay, b)| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok(Bytes::from_static(b))
        });
        GuardedStream::new(
            Box::pin(s),
            Op::GetBlob,
            "r/x@d".into(),
            Duration::from_millis(idle_ms),
            floor,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_ends_after_the_idle_deadline() {
        let items: Vec<_> = guarded(vec![(0, b"ab"), (10_000, b"cd")], 1000, 0)
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        let e = items[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("no byte of the blob arrived after 1s"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_stream_ends_at_the_floor() {
        let chunks = (0..100).map(|_| (300, &b"x"[..])).collect();
        let items: Vec<_> = guarded(chunks, 1000, 100).collect().await;
        let last = items.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(last.contains("below the floor of 100 bytes/s"), "{last}");
        assert!(items.len() < 10, "{}", items.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_passes_whole() {
        let chunks = (0..20).map(|_| (100, &b"0123456789"[..])).collect();
        let items: Vec<_> = guarded(chunks, 1000, 50).collect().await;
        assert_eq!(items.len(), 20);
        assert!(items.iter().all(|i| i.is_ok()));
    }
}
