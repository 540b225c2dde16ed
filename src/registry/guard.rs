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

use super::error::{Error, Op, Result};
use super::transport::ByteStream;

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

/// Extra time a target gets over the blob idle timeout to take the next
/// bytes of an upload, so that a stalled source is reported first.
const UPLOAD_MARGIN: Duration = Duration::from_secs(5);

/// When an upload's body was last polled, and whether it ended.
#[derive(Debug)]
pub(crate) struct Progress {
    last: std::sync::Mutex<Instant>,
    done: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// An upload body that records when the HTTP stack last asked for bytes,
/// and when it had them all (the HTTP stack stops polling a body once its
/// `Content-Length` is reached).
pub(crate) struct Stamped {
    inner: ByteStream,
    progress: std::sync::Arc<Progress>,
    left: u64,
}

impl Stamped {
    /// Wrap an upload body; the [`Progress`] feeds [`stalled_upload`].
    pub fn new(inner: ByteStream, size: u64) -> (Stamped, std::sync::Arc<Progress>) {
        let progress = std::sync::Arc::new(Progress {
            last: std::sync::Mutex::new(Instant::now()),
            done: std::sync::atomic::AtomicBool::new(false),
        });
        (
            Stamped {
                inner,
                progress: progress.clone(),
                left: size,
            },
            progress,
        )
    }
}

impl Stream for Stamped {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.progress.touch();
        let r = self.inner.as_mut().poll_next(cx);
        let finished = match &r {
            Poll::Ready(Some(Ok(b))) => {
                self.left = self.left.saturating_sub(b.len() as u64);
                self.left == 0
            }
            Poll::Ready(_) => true,
            Poll::Pending => false,
        };
        if finished {
            self.progress
                .done
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.progress.touch();
        }
        r
    }
}

/// Resolves when an upload stalls on the target's side: it took no bytes
/// for `idle` plus a margin, or, once the whole body was sent, gave no
/// answer within `answer`. Says which.
pub(crate) async fn stalled_upload(
    progress: std::sync::Arc<Progress>,
    idle: Duration,
    answer: Duration,
) -> (String, Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let since = progress
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if progress.done.load(std::sync::atomic::Ordering::SeqCst) {
            if since > answer {
                return (
                    "the registry did not answer the finished upload".into(),
                    answer,
                );
            }
        } else if since > idle + UPLOAD_MARGIN {
            return (
                "the registry stopped taking the upload's bytes".into(),
                idle + UPLOAD_MARGIN,
            );
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
    async fn an_upload_nobody_reads_is_reported_as_stalled() {
        let (body, progress) = Stamped::new(
            Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from_static(
                b"x",
            ))])),
            1,
        );
        let (what, after) = stalled_upload(
            progress.clone(),
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
        .await;
        assert!(what.contains("stopped taking"), "{what}");
        assert_eq!(after, Duration::from_secs(6));
        let mut body = body;
        while body.next().await.is_some() {}
        let (what, after) =
            stalled_upload(progress, Duration::from_secs(1), Duration::from_secs(3)).await;
        assert!(what.contains("did not answer"), "{what}");
        assert_eq!(after, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_passes_whole() {
        let chunks = (0..20).map(|_| (100, &b"0123456789"[..])).collect();
        let items: Vec<_> = guarded(chunks, 1000, 50).collect().await;
        assert_eq!(items.len(), 20);
        assert!(items.iter().all(|i| i.is_ok()));
    }
}
