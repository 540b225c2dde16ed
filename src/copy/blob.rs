//! Blob transfer: skip, mount, or stream GET → upload, once per
//! (target registry, repository, digest) per run, and never twice at once
//! in the process (see [`super::work`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::sync::watch;

use crate::metrics;
use crate::registry::{ByteStream, Digest, Error, Op, Reference, UploadSession};

use super::plan::{BlobAction, BlobStep, Plan};
use super::{BlobOutcome, Copier, CopyError, Progress, Shared};

/// Marks a blob as being streamed into a registry until dropped (on
/// success, failure or cancellation alike).
struct StreamGuard {
    shared: Arc<Shared>,
    key: (String, Digest),
    _tx: watch::Sender<()>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .streaming
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
    }
}

/// Where one blob is read from: the source repository, through the
/// fan-out share when the image goes to several targets.
#[derive(Clone, Copy)]
struct BlobSource<'a> {
    repo: &'a Reference,
    share: Option<&'a super::SourceShare>,
}

/// Least attempts at one blob's whole transfer (fresh GET and upload session
/// each); the client's retry policy may allow more.
const TRANSFER_ATTEMPTS: u32 = 3;

impl Copier {
    /// Make sure one blob of `plan` is in the target repository.
    pub(super) async fn ensure_blob(
        &self,
        plan: &Plan,
        blob: &BlobStep,
        progress: &Arc<dyn Progress>,
        options: &super::CopyOptions,
    ) -> Result<BlobOutcome, CopyError> {
        let dst = plan.target.repository_only();
        let src = plan.source.repository_only();
        match &blob.action {
            BlobAction::Foreign => return Ok(BlobOutcome::Foreign),
            BlobAction::Present => {
                self.remember(&dst, &blob.digest);
                self.shared.present.note_blob(&dst, &blob.digest);
                metrics::record_blobs("skipped", 1);
                return Ok(BlobOutcome::Skipped);
            }
            BlobAction::Copy | BlobAction::Mount { .. } => {}
        }
        let key = super::work::WorkKey::at(&dst, &blob.digest);
        let work = self.shared.blobs.join(&self.engine.tables().blobs, &key);
        // Fan-out: unless this target gets the blob, a later image may try
        // again (even when this copy is dropped for another blob's failure).
        let keep = super::fanout::KeepUnlessDone {
            share: options.fan_out.as_deref(),
            src: &src,
            blob: &blob.digest,
            size: blob.size,
        };
        let mut ran = false;
        let result = work
            .cell
            .get_or_init(|| {
                ran = true;
                self.transfer(&src, &dst, blob, progress.clone(), options.fan_out.clone())
            })
            .await
            .clone();
        work.finished();
        match result {
            Ok(outcome) => {
                keep.done();
                self.remember(&dst, &blob.digest);
                self.shared.present.note_blob(&dst, &blob.digest);
                let outcome = if ran { outcome } else { BlobOutcome::Skipped };
                match outcome {
                    BlobOutcome::Copied(n) => {
                        metrics::record_blobs("copied", 1);
                        metrics::record_bytes(n);
                    }
                    BlobOutcome::Mounted => metrics::record_blobs("mounted", 1),
                    BlobOutcome::Skipped => metrics::record_blobs("skipped", 1),
                    BlobOutcome::Foreign => {}
                }
                Ok(outcome)
            }
            Err(error) => {
                if ran {
                    // Later requests (not those already waiting) try again.
                    self.shared
                        .blobs
                        .forget(&self.engine.tables().blobs, &key, &work);
                }
                Err(CopyError::Blob {
                    digest: blob.digest.clone(),
                    source_repo: src.to_string(),
                    target_repo: dst.to_string(),
                    error,
                })
            }
        }
    }

    /// Mount or stream one blob; restarts the whole transfer on transient failures.
    async fn transfer(
        &self,
        src: &Reference,
        dst: &Reference,
        blob: &BlobStep,
        progress: Arc<dyn Progress>,
        share: Option<Arc<super::SourceShare>>,
    ) -> Result<BlobOutcome, Arc<Error>> {
        let mut session = None;
        let mut from = match &blob.action {
            BlobAction::Mount { from } => Some(from.clone()),
            _ => None,
        }
        .or_else(|| self.known_elsewhere(dst, &blob.digest));
        // Held while this transfer streams; dropping it wakes the waiters.
        let mut _streaming = None;
        if from.is_none() {
            match self.claim_stream(dst, &blob.digest) {
                Ok(guard) => _streaming = Some(guard),
                Err(mut done) => {
                    // Another repository of this registry is receiving the
                    // blob now: wait for it, then mount from there.
                    while done.changed().await.is_ok() {}
                    from = self.known_elsewhere(dst, &blob.digest);
                }
            }
        }
        if let Some(from) = from {
            match self.client.mount_blob(dst, &blob.digest, &from).await {
                Ok(None) => {
                    tracing::debug!(digest = %blob.digest, from = %from, to = %dst, "blob mounted");
                    self.remember(dst, &blob.digest);
                    return Ok(BlobOutcome::Mounted);
                }
                Ok(Some(s)) => session = Some(s),
                Err(e) => {
                    tracing::debug!(digest = %blob.digest, from = %from, to = %dst, error = %e, "mount failed; copying instead");
                }
            }
        }
        // A streamed upload cannot be replayed by the client, so a transient
        // failure of its final PUT is retried here, as often as any request.
        let attempts = TRANSFER_ATTEMPTS.max(self.client.retry_policy().max_attempts);
        let mut attempt = 1;
        let from_src = BlobSource {
            repo: src,
            share: share.as_deref(),
        };
        loop {
            let sent = Arc::new(AtomicU64::new(0));
            match self
                .stream_once(from_src, dst, blob, session.take(), &progress, &sent)
                .await
            {
                Ok(()) => {
                    tracing::debug!(digest = %blob.digest, size = blob.size, to = %dst, "blob copied");
                    // Before the stream guard drops, so that waiters find it.
                    self.remember(dst, &blob.digest);
                    return Ok(BlobOutcome::Copied(blob.size));
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let sent = sent.load(Ordering::Relaxed);
                    tracing::warn!(
                        digest = %blob.digest, from = %src, to = %dst, attempt, error = %e,
                        "blob transfer failed; restarting it"
                    );
                    progress.blob_retry(&blob.digest, blob.size, sent);
                    let pause = Duration::from_millis(300 * u64::from(attempt));
                    if !crate::registry::retry_wait(pause).await {
                        return Err(Arc::new(e));
                    }
                    attempt += 1;
                }
                Err(e) => return Err(Arc::new(e)),
            }
        }
    }

    /// Register a stream of `digest` into `dst`'s registry, or get the
    /// receiver of the one already running.
    fn claim_stream(
        &self,
        dst: &Reference,
        digest: &Digest,
    ) -> Result<StreamGuard, watch::Receiver<()>> {
        let key = (dst.registry().to_string(), digest.clone());
        let mut map = self
            .shared
            .streaming
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(&key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), rx);
        Ok(StreamGuard {
            shared: self.shared.clone(),
            key,
            _tx: tx,
        })
    }

    /// One GET → upload of a blob, hashed on the way by the uploader.
    async fn stream_once(
        &self,
        src: BlobSource<'_>,
        dst: &Reference,
        blob: &BlobStep,
        session: Option<UploadSession>,
        progress: &Arc<dyn Progress>,
        sent: &Arc<AtomicU64>,
    ) -> Result<(), Error> {
        let (share, src) = (src.share, src.repo);
        let stream = match share {
            // Fan-out: fetched once for every target, read from the spool as it fills.
            Some(share) => {
                share
                    .blob(&self.client, src, &blob.digest, blob.size)
                    .await?
            }
            None => self.source_stream(src, blob).await?,
        };
        let session = match session {
            Some(s) => s,
            None => self.client.start_upload(dst).await?,
        };
        let progress = progress.clone();
        let counter = sent.clone();
        let body: ByteStream = Box::pin(stream.inspect_ok(move |chunk| {
            let n = chunk.len() as u64;
            counter.fetch_add(n, Ordering::Relaxed);
            progress.bytes(n);
        }));
        self.client
            .upload_blob(session, &blob.digest, blob.size, body)
            .await
    }

    /// The GET of one blob from the source, its announced size checked.
    async fn source_stream(&self, src: &Reference, blob: &BlobStep) -> Result<ByteStream, Error> {
        let reader = self.client.get_blob(src, &blob.digest).await?;
        if let Some(n) = reader.size
            && n != blob.size
        {
            return Err(Error::SizeMismatch {
                op: Op::GetBlob,
                target: format!("{src}@{}", blob.digest),
                expected: blob.size,
                actual: n,
            });
        }
        Ok(reader.stream)
    }
}
