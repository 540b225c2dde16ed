//! A blob download that continues after a break instead of starting again.
//!
//! When the byte stream of a blob GET fails (or ends early), [`resuming`]
//! asks its [`Reopen`] for the rest from the offset reached: the HTTP side
//! sends `Range: bytes=<offset>-` and takes the answer as a continuation only
//! when its `Content-Range` proves it (see
//! [`upload_plan::resumes_at`](super::upload_plan::resumes_at)); a source that
//! answers the whole blob again is read from byte 0 and the bytes already
//! passed on are skipped (a fresh transfer, logged). Either way the consumer
//! sees each byte of the blob once, in order, so the digest it computes still
//! covers the whole blob.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};

/// Most continuations of one download.
pub const MAX_RESUMES: u32 = 4;
/// Bytes a download must have passed on before a break is continued with a
/// `Range` request: a smaller loss is fetched again with the whole blob
/// (the caller's transfer retry), which costs less than negotiating a range.
pub const MIN_RESUMED: u64 = 1024 * 1024;

/// A boxed byte stream.
pub type Chunks<E> = Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send>>;

/// The answer to a request for the rest of a blob.
pub enum Reopened<E> {
    /// The bytes from the requested offset on.
    Resumed(Chunks<E>),
    /// The whole blob again, from byte 0 (the source ignored the `Range`).
    Whole(Chunks<E>),
    /// No usable answer.
    Failed(E),
}

/// Requests the rest of a blob from `offset` on.
pub trait Reopen<E>: Send + Sync {
    fn reopen(&self, offset: u64) -> BoxFuture<'static, Reopened<E>>;
}

struct State<E> {
    current: Chunks<E>,
    offset: u64,
    size: u64,
    /// Bytes of a whole-blob answer still to skip.
    skip: u64,
    resumes: u32,
    min_resumed: u64,
    reopen: Arc<dyn Reopen<E>>,
    what: String,
}

/// `first` (the answer to the first GET of a `size`-byte blob) continued
/// through `reopen` after breaks, at most [`MAX_RESUMES`] times, once at
/// least [`MIN_RESUMED`] bytes have passed. `what` names the blob in logs.
pub fn resuming<E>(
    first: Chunks<E>,
    size: u64,
    reopen: Arc<dyn Reopen<E>>,
    what: String,
) -> Chunks<E>
where
    E: std::fmt::Display + Send + 'static,
{
    resuming_after(first, size, reopen, what, MIN_RESUMED)
}

/// [`resuming`] with `min_resumed` bytes to pass before a break is continued.
fn resuming_after<E>(
    first: Chunks<E>,
    size: u64,
    reopen: Arc<dyn Reopen<E>>,
    what: String,
    min_resumed: u64,
) -> Chunks<E>
where
    E: std::fmt::Display + Send + 'static,
{
    let state = State {
        current: first,
        offset: 0,
        size,
        skip: 0,
        resumes: 0,
        min_resumed,
        reopen,
        what,
    };
    Box::pin(futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            let broken = match st.current.next().await {
                Some(Ok(b)) => match st.pass(b) {
                    Some(b) => return Some((Ok(b), Some(st))),
                    None => continue,
                },
                None if st.offset >= st.size => return None,
                None => None,
                Some(Err(e)) => Some(e),
            };
            match st.continue_after(broken).await {
                Ok(true) => {}
                // A short body without an error: the consumer's size check
                // reports it.
                Ok(false) => return None,
                Err(e) => return Some((Err(e), None)),
            }
        }
    }))
}

impl<E: std::fmt::Display> State<E> {
    /// The part of `b` to pass on (after skipping bytes already passed).
    fn pass(&mut self, mut b: Bytes) -> Option<Bytes> {
        if self.skip > 0 {
            let k = (self.skip as usize).min(b.len());
            b = b.slice(k..);
            self.skip -= k as u64;
        }
        if b.is_empty() {
            return None;
        }
        self.offset += b.len() as u64;
        Some(b)
    }

    /// Reopens the download after a break (`broken`: its error, if any).
    /// `Ok(false)`: give up and end the stream; `Err`: the error to end it with.
    async fn continue_after(&mut self, broken: Option<E>) -> Result<bool, E> {
        if self.resumes >= MAX_RESUMES || self.offset < self.min_resumed {
            return match broken {
                Some(e) => Err(e),
                None => Ok(false),
            };
        }
        self.resumes += 1;
        let detail = broken
            .as_ref()
            .map_or("ended early".to_string(), |e| e.to_string());
        match self.reopen.reopen(self.offset).await {
            Reopened::Resumed(s) => {
                tracing::info!(blob = %self.what, offset = self.offset, error = %detail, "blob download broke; continuing from the offset reached");
                self.current = s;
                Ok(true)
            }
            Reopened::Whole(s) => {
                tracing::warn!(blob = %self.what, offset = self.offset, error = %detail, "blob download broke and the source does not serve ranges; reading it again from byte 0");
                self.current = s;
                self.skip = self.offset;
                Ok(true)
            }
            Reopened::Failed(e) => Err(broken.unwrap_or(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    /// A stream of `data[from..]` in 1000-byte chunks that breaks after
    /// `upto` bytes (if given).
    fn chunks(data: &[u8], from: usize, upto: Option<usize>) -> Chunks<String> {
        let end = upto.map_or(data.len(), |u| u.min(data.len()));
        let mut items: Vec<Result<Bytes, String>> = data[from..end]
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        if upto.is_some() {
            items.push(Err("connection reset".to_string()));
        }
        Box::pin(futures_util::stream::iter(items))
    }

    struct Fake {
        data: Vec<u8>,
        ranges: bool,
        /// Offsets asked for.
        asked: Mutex<Vec<u64>>,
        /// Later answers break after this many bytes of the blob.
        break_at: Option<usize>,
    }

    impl Reopen<String> for Fake {
        fn reopen(&self, offset: u64) -> BoxFuture<'static, Reopened<String>> {
            self.asked.lock().unwrap().push(offset);
            let answer = if self.ranges {
                Reopened::Resumed(chunks(&self.data, offset as usize, self.break_at))
            } else {
                Reopened::Whole(chunks(&self.data, 0, self.break_at))
            };
            Box::pin(async move { answer })
        }
    }

    async fn collect(s: Chunks<String>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    fn fake(len: usize, ranges: bool) -> Arc<Fake> {
        Arc::new(Fake {
            data: data(len),
            ranges,
            asked: Mutex::new(Vec::new()),
            break_at: None,
        })
    }

    #[tokio::test]
    async fn continues_from_the_offset_reached() {
        let f = fake(10_000, true);
        let first = chunks(&f.data, 0, Some(9_000));
        let out = collect(resuming_after(first, 10_000, f.clone(), "b".into(), 0)).await;
        assert_eq!(out.unwrap(), f.data);
        assert_eq!(*f.asked.lock().unwrap(), vec![9_000]);
    }

    #[tokio::test]
    async fn a_source_without_ranges_is_read_again_and_skipped() {
        let f = fake(10_000, false);
        let first = chunks(&f.data, 0, Some(4_500));
        let out = collect(resuming_after(first, 10_000, f.clone(), "b".into(), 0)).await;
        assert_eq!(out.unwrap(), f.data);
    }

    #[tokio::test]
    async fn an_early_end_without_error_is_continued() {
        let f = fake(10_000, true);
        let first: Chunks<String> = Box::pin(futures_util::stream::iter(vec![Ok(
            Bytes::copy_from_slice(&f.data[..3_000]),
        )]));
        let out = collect(resuming_after(first, 10_000, f.clone(), "b".into(), 0)).await;
        assert_eq!(out.unwrap(), f.data);
    }

    #[tokio::test]
    async fn a_short_body_ends_after_the_most_continuations() {
        let f = Arc::new(Fake {
            data: data(10_000),
            ranges: true,
            asked: Mutex::new(Vec::new()),
            break_at: Some(5_000),
        });
        // Bodies that end early without an error, each time.
        let first: Chunks<String> = Box::pin(futures_util::stream::iter(vec![Ok(
            Bytes::copy_from_slice(&f.data[..5_000]),
        )]));
        let s = resuming_after(first, 10_000, f.clone(), "b".into(), 0);
        let out = tokio::time::timeout(std::time::Duration::from_secs(5), collect(s)).await;
        assert!(out.expect("the stream ends").is_err());
    }

    #[tokio::test]
    async fn a_small_loss_is_not_continued() {
        let f = fake(10_000, true);
        let first = chunks(&f.data, 0, Some(4_000));
        let out = collect(resuming(first, 10_000, f.clone(), "b".into())).await;
        assert_eq!(out.unwrap_err(), "connection reset");
        assert!(f.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn gives_up_after_the_most_continuations() {
        let f = Arc::new(Fake {
            data: data(10_000),
            ranges: true,
            asked: Mutex::new(Vec::new()),
            break_at: Some(5_000),
        });
        let first = chunks(&f.data, 0, Some(5_000));
        let out = collect(resuming_after(first, 10_000, f.clone(), "b".into(), 0)).await;
        assert_eq!(out.unwrap_err(), "connection reset");
        assert_eq!(f.asked.lock().unwrap().len() as u32, MAX_RESUMES);
    }
}
