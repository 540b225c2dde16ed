//! Fan-out: one source image copied into several target repositories reads
//! its source once. The copies of one source image to each of its targets
//! share a [`SourceShare`] (through [`super::CopyOptions::fan_out`]):
//!
//! - the source tag is resolved to its digest once ([`SourceShare::resolve`]);
//! - each manifest is fetched once (the root already is, per run; child
//!   manifests through [`SourceShare::manifest`]);
//! - each blob that some target lacks (and cannot mount) is fetched once
//!   into a spool file, checked against its digest and size, and every
//!   target that needs it uploads from that file with a reader of its own.
//!
//! A target that already holds a blob, or mounts it, never asks for it, so
//! a blob all targets hold is never fetched. The spool files of a mirror's
//! images in flight are found through one [`SpoolPool`], so a layer that
//! several images share is fetched once too while any of them holds it. A target whose upload fails
//! fails alone: the others read the spool on their own. The spool files
//! live in the temporary directory (`TMPDIR`) and are deleted when the last
//! share that used them is dropped (after the last target of its image
//! finished); disk use is bounded by the blobs of the images in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::registry::{ByteStream, Client, Digest, Error, Op, RawManifest, Reference};

/// Bytes read from a spool file at a time.
const SPOOL_READ_BYTES: usize = 256 * 1024;

/// A blob fetched once, or the failure of the last try (not kept: the next
/// target to need the blob tries again).
type SpoolCell = Arc<OnceCell<Arc<tempfile::NamedTempFile>>>;

/// The spool files of the images of one mirror in flight, per (source
/// repository, digest): each lives while a [`SourceShare`] holds it.
#[derive(Default)]
pub struct SpoolPool {
    cells: Mutex<HashMap<(String, Digest), Weak<OnceCell<Arc<tempfile::NamedTempFile>>>>>,
}

impl SpoolPool {
    /// A pool for one mirror's run.
    pub fn new() -> Arc<SpoolPool> {
        Arc::new(SpoolPool::default())
    }

    /// The spool of `key`, shared with every share holding it now.
    fn cell(&self, key: &(String, Digest)) -> SpoolCell {
        let mut cells = lock(&self.cells);
        if let Some(cell) = cells.get(key).and_then(Weak::upgrade) {
            return cell;
        }
        cells.retain(|_, w| w.strong_count() > 0);
        let cell = SpoolCell::default();
        cells.insert(key.clone(), Arc::downgrade(&cell));
        cell
    }
}

/// What the copies of one source image to several targets share (see the
/// module doc). Lives as long as the copies of that image.
pub struct SourceShare {
    /// The source tag's digest: `None` when the tag does not exist;
    /// `Some(None)` when the registry answered without a digest.
    resolved: OnceCell<Result<Option<Option<Digest>>, Arc<Error>>>,
    /// Manifests fetched by digest, per (repository, digest).
    manifests: Mutex<HashMap<(String, Digest), RawManifest>>,
    /// The spool files of this image's blobs, per (repository, digest),
    /// held (kept alive) by this share.
    blobs: Mutex<HashMap<(String, Digest), SpoolCell>>,
    /// Where the spool files of the mirror's other images are found.
    pool: Arc<SpoolPool>,
}

impl std::fmt::Debug for SourceShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceShare").finish_non_exhaustive()
    }
}

impl SourceShare {
    /// A share for the copies of one source image of a mirror whose
    /// spool files are in `pool`.
    pub fn new(pool: Arc<SpoolPool>) -> Arc<SourceShare> {
        Arc::new(SourceShare {
            resolved: OnceCell::new(),
            manifests: Mutex::default(),
            blobs: Mutex::default(),
            pool,
        })
    }

    /// `source`'s digest by one HEAD, made once for every target: `None`
    /// when the tag does not exist, `Some(None)` when the registry sent no
    /// digest.
    pub async fn resolve(
        &self,
        client: &Client,
        source: &Reference,
    ) -> Result<Option<Option<Digest>>, Arc<Error>> {
        self.resolved
            .get_or_init(|| async {
                match client.head_manifest(source).await {
                    Ok(found) => Ok(found.map(|head| head.digest)),
                    Err(e) => Err(Arc::new(e)),
                }
            })
            .await
            .clone()
    }

    /// The manifest `at` names by digest, fetched once (the caller checks
    /// its digest).
    pub(super) async fn manifest(
        &self,
        client: &Client,
        at: &Reference,
    ) -> Result<RawManifest, Error> {
        let key = at
            .digest()
            .map(|d| (at.repository().to_string(), d.clone()));
        if let Some(key) = &key {
            let cached = lock(&self.manifests).get(key).cloned();
            if let Some(raw) = cached {
                return Ok(raw);
            }
        }
        let raw = client.get_manifest(at).await?;
        if let Some(key) = key {
            lock(&self.manifests).insert(key, raw.clone());
        }
        Ok(raw)
    }

    /// The bytes of blob `digest` of `src` (`size` bytes): from its spool
    /// file, fetched and checked by the first target that needs it.
    pub(super) async fn blob(
        &self,
        client: &Client,
        src: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<ByteStream, Error> {
        let key = (src.repository().to_string(), digest.clone());
        let cell = lock(&self.blobs)
            .entry(key.clone())
            .or_insert_with(|| self.pool.cell(&key))
            .clone();
        let spool = cell
            .get_or_try_init(|| async { spool(client, src, digest, size).await.map(Arc::new) })
            .await?
            .clone();
        let file = tokio::fs::File::open(spool.path())
            .await
            .map_err(|e| spool_error(src, digest, "reading", &e))?;
        let (src, digest) = (src.clone(), digest.clone());
        let stream = tokio_util::io::ReaderStream::with_capacity(file, SPOOL_READ_BYTES)
            .map_err(move |e| spool_error(&src, &digest, "reading", &e));
        // The reader keeps the file open; the share keeps its name alive.
        Ok(Box::pin(stream))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fetch blob `digest` of `src` into a new spool file, checking its size
/// and digest on the way.
async fn spool(
    client: &Client,
    src: &Reference,
    digest: &Digest,
    size: u64,
) -> Result<tempfile::NamedTempFile, Error> {
    let reader = client.get_blob(src, digest).await?;
    let file = tempfile::Builder::new()
        .prefix("regmirror-spool-")
        .tempfile()
        .map_err(|e| spool_error(src, digest, "creating", &e))?;
    let writer = file
        .reopen()
        .map_err(|e| spool_error(src, digest, "opening", &e))?;
    let mut writer = tokio::fs::File::from_std(writer);
    let mut verifier = digest.verifier();
    let mut stream = reader.stream;
    while let Some(chunk) = stream.try_next().await? {
        verifier.update(&chunk);
        if verifier.len() > size {
            break;
        }
        writer
            .write_all(&chunk)
            .await
            .map_err(|e| spool_error(src, digest, "writing", &e))?;
    }
    writer
        .flush()
        .await
        .map_err(|e| spool_error(src, digest, "writing", &e))?;
    let target = format!("{}@{digest}", src.repository_only());
    if verifier.len() != size {
        return Err(Error::SizeMismatch {
            op: Op::GetBlob,
            target,
            expected: size,
            actual: verifier.len(),
        });
    }
    verifier.finish().map_err(|actual| Error::DigestMismatch {
        op: Op::GetBlob,
        target,
        expected: digest.clone(),
        actual,
    })?;
    Ok(file)
}

/// A spool file could not be used: a local problem (disk space, the
/// temporary directory), said as such.
fn spool_error(src: &Reference, digest: &Digest, doing: &str, e: &std::io::Error) -> Error {
    Error::Config {
        host: src.registry().to_string(),
        detail: format!(
            "{doing} the local spool file of blob {digest} (fetched once for every target of \
             a mirror with several targets) failed: {e}; check the free space and permissions \
             of the temporary directory (TMPDIR)"
        ),
    }
}
