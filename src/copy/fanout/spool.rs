//! One blob fetched once from the source into a spool file while every
//! target that needs it uploads from that file at the same time.
//!
//! The fetch runs as a task of its own: it writes the source's bytes into
//! the file as they arrive and announces how many it has written through a
//! [`watch`] channel. It never waits for a target. Each target reads the
//! file with a reader of its own, [`SPOOL_READ_BYTES`] at a time, never past
//! the written length, so a slow target sets its own pace only and the file
//! on disk is the buffer between the fetch and the targets: memory stays a
//! chunk per reader whatever the blob's size.
//!
//! A reader holds back the blob's last byte until the fetch has checked
//! the whole blob against its digest and size, so no target can complete
//! (commit) an upload of bytes that are not verified. When the fetch fails
//! (the source sent other bytes, too few or too many, or broke off), every
//! reader fails with the source's error and its upload is abandoned before
//! the commit.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

use crate::registry::{ByteStream, Digest, Error, Op, Reference};

/// Most bytes a reader reads from a spool file at a time.
pub const SPOOL_READ_BYTES: usize = 256 * 1024;

/// Bytes the fetch writes between two announcements of its progress.
const SPOOL_ANNOUNCE_BYTES: u64 = 256 * 1024;

/// How far the fetch of a spool has got.
#[derive(Clone, Debug)]
enum Fill {
    /// This many bytes are in the file, not yet verified.
    Writing(u64),
    /// The whole blob is in the file, checked against its digest and size.
    Verified,
    /// The fetch failed: the source's error, for every reader.
    Failed(Arc<Error>),
}

/// Where a spool's blob comes from, for messages.
#[derive(Clone)]
struct Origin {
    src: Reference,
    digest: Digest,
    size: u64,
}

/// One blob's spool file and the fetch filling it. The file is deleted,
/// and a fetch still running stopped, when the last holder drops it.
pub struct Spool {
    file: tempfile::NamedTempFile,
    fill: watch::Receiver<Fill>,
    fetch: tokio::task::AbortHandle,
    origin: Origin,
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.fetch.abort();
    }
}

impl Spool {
    /// Start filling a new spool file with blob `digest` of `src` (`size`
    /// bytes, from its descriptor), from the stream `open` yields.
    pub fn start<F>(
        open: F,
        src: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<Arc<Spool>, Error>
    where
        F: Future<Output = Result<ByteStream, Error>> + Send + 'static,
    {
        let origin = Origin {
            src: src.clone(),
            digest: digest.clone(),
            size,
        };
        let file = tempfile::Builder::new()
            .prefix("regmirror-spool-")
            .tempfile()
            .map_err(|e| spool_error(&origin, "creating", &e))?;
        let writer = file
            .reopen()
            .map_err(|e| spool_error(&origin, "opening", &e))?;
        let (tx, rx) = watch::channel(Fill::Writing(0));
        let task_origin = origin.clone();
        let task = tokio::spawn(
            async move {
                let writer = tokio::fs::File::from_std(writer);
                let end = match open.await {
                    Ok(body) => match fill(body, writer, &tx, &task_origin).await {
                        Ok(()) => Fill::Verified,
                        Err(e) => Fill::Failed(Arc::new(e)),
                    },
                    Err(e) => Fill::Failed(Arc::new(e)),
                };
                if let Fill::Failed(e) = &end {
                    tracing::debug!(digest = %task_origin.digest, from = %task_origin.src, error = %e, "fetch of a spooled blob failed");
                }
                tx.send_replace(end);
            }
            .instrument(tracing::Span::current()),
        );
        Ok(Arc::new(Spool {
            file,
            fill: rx,
            fetch: task.abort_handle(),
            origin,
        }))
    }

    /// True when the fetch failed: the spool is of no use to a new reader.
    pub fn failed(&self) -> bool {
        matches!(*self.fill.borrow(), Fill::Failed(_))
    }

    /// A reader of the blob from its first byte, following the fetch (see
    /// the module doc); it keeps the spool alive while it reads.
    pub fn reader(self: &Arc<Self>) -> Result<ByteStream, Error> {
        let file = std::fs::File::open(self.file.path())
            .map_err(|e| spool_error(&self.origin, "reading", &e))?;
        let reader = Reader {
            spool: self.clone(),
            fill: self.fill.clone(),
            file: tokio::fs::File::from_std(file),
            pos: 0,
        };
        Ok(Box::pin(futures_util::stream::try_unfold(
            reader,
            Reader::next,
        )))
    }
}

/// Write `body` into `writer`, announcing the bytes written on `tx`, and
/// check the whole against the blob's digest and size.
async fn fill(
    mut body: ByteStream,
    mut writer: tokio::fs::File,
    tx: &watch::Sender<Fill>,
    origin: &Origin,
) -> Result<(), Error> {
    let mut verifier = origin.digest.verifier();
    let (mut written, mut announced) = (0, 0);
    while let Some(chunk) = body.try_next().await? {
        verifier.update(&chunk);
        if verifier.len() > origin.size {
            break;
        }
        writer
            .write_all(&chunk)
            .await
            .map_err(|e| spool_error(origin, "writing", &e))?;
        written = verifier.len();
        if written - announced >= SPOOL_ANNOUNCE_BYTES {
            announced = announce(&mut writer, tx, written, origin).await?;
        }
    }
    announce(&mut writer, tx, written, origin).await?;
    let target = format!("{}@{}", origin.src.repository_only(), origin.digest);
    if verifier.len() != origin.size {
        return Err(Error::SizeMismatch {
            op: Op::GetBlob,
            target,
            expected: origin.size,
            actual: verifier.len(),
        });
    }
    verifier.finish().map_err(|actual| Error::DigestMismatch {
        op: Op::GetBlob,
        target,
        expected: origin.digest.clone(),
        actual,
    })
}

/// Make the first `written` bytes readable: flushed to the file, then
/// announced to the readers.
async fn announce(
    writer: &mut tokio::fs::File,
    tx: &watch::Sender<Fill>,
    written: u64,
    origin: &Origin,
) -> Result<u64, Error> {
    writer
        .flush()
        .await
        .map_err(|e| spool_error(origin, "writing", &e))?;
    tx.send_replace(Fill::Writing(written));
    Ok(written)
}

/// One target's reader of a spool file.
struct Reader {
    spool: Arc<Spool>,
    fill: watch::Receiver<Fill>,
    file: tokio::fs::File,
    pos: u64,
}

impl Reader {
    /// The next chunk: as much as is written (at most a chunk), the last
    /// byte only once the blob is verified; `None` at the verified end.
    async fn next(mut self) -> Result<Option<(Bytes, Reader)>, Error> {
        let size = self.spool.origin.size;
        loop {
            let fill = self.fill.borrow_and_update().clone();
            let readable = match fill {
                Fill::Failed(e) => return Err((*e).clone()),
                Fill::Verified => size,
                Fill::Writing(n) => n.min(size.saturating_sub(1)),
            };
            if self.pos < readable {
                return self.read(readable).await.map(Some);
            }
            if matches!(fill, Fill::Verified) {
                return Ok(None);
            }
            if self.fill.changed().await.is_err() {
                return Err(spool_error(
                    &self.spool.origin,
                    "reading",
                    &std::io::Error::other("the fetch filling it stopped"),
                ));
            }
        }
    }

    /// Read up to a chunk, never past `readable`.
    async fn read(mut self, readable: u64) -> Result<(Bytes, Reader), Error> {
        let n = (readable - self.pos).min(SPOOL_READ_BYTES as u64) as usize;
        let mut buf = vec![0; n];
        self.file
            .read_exact(&mut buf)
            .await
            .map_err(|e| spool_error(&self.spool.origin, "reading", &e))?;
        self.pos += n as u64;
        Ok((Bytes::from(buf), self))
    }
}

/// A spool file could not be used: a local problem (disk space, the
/// temporary directory), said as such.
fn spool_error(origin: &Origin, doing: &str, e: &std::io::Error) -> Error {
    Error::Config {
        host: origin.src.registry().to_string(),
        detail: format!(
            "{doing} the local spool file of blob {} (fetched once for every target of a \
             mirror with several targets) failed: {e}; check the free space and permissions \
             of the temporary directory (TMPDIR)",
            origin.digest
        ),
    }
}

#[cfg(test)]
mod tests;
