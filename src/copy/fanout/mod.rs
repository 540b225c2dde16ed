//! Fan-out: one source image copied into several target repositories reads
//! its source once. The copies of one source image to each of its targets
//! share a [`SourceShare`] (through [`super::CopyOptions::fan_out`]), found
//! in a [`SourceShares`] by (mirror, source image):
//!
//! - the source tag is resolved to its digest once ([`SourceShare::resolve`]);
//! - each manifest is fetched once (root and children, by digest);
//! - its referrers are listed and read once: the referrers API's answers,
//!   the fallback indexes, the digests cosign's tags name, and the referrer
//!   manifests and their blobs (see [`referrers`]), while each target
//!   still asks itself which of them it lacks;
//! - the signature policy is judged once per source image
//!   ([`SourceShare::verdict`]);
//! - each blob that some target lacks (and cannot mount) is fetched once
//!   into a spool file, and every target that needs it uploads from that
//!   file at the same time, with a reader of its own that follows the
//!   fetch (see [`spool`]): the file is the buffer, a slow target sets its
//!   own pace only, and no target commits the blob before the fetch has
//!   checked its digest and size.
//!
//! A target that already holds a blob, or mounts it, never asks for it, so
//! a blob all targets hold is never fetched. The spool files of a mirror's
//! images in flight are found through the mirror's [`SpoolPool`], so a
//! layer several images share is fetched once while any of them holds it.
//! A target whose upload fails fails alone: the others read the spool on
//! their own. A fetch that fails fails every target reading it, with the
//! source's error; the next target to need the blob fetches it again. The
//! spool files live in the temporary directory (`TMPDIR`) and are deleted
//! when the last share that used them is dropped (after the last target of
//! its image finished), except those a target did not receive (its upload
//! failed, or its copy stopped at another blob's failure), kept (up to
//! [`MAX_KEPT_BYTES`]) until the mirror's run ends so that a later image
//! retrying that target does not fetch them again.

mod referrers;
mod spool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OnceCell;

use super::policy::Verdict;
use crate::registry::{ByteStream, Client, Digest, Error, Op, RawManifest, Reference};
use referrers::ReferrerReads;
use spool::Spool;

/// Most bytes of spool files kept for the rest of a mirror's run after a
/// target failed to receive them (see the module doc).
pub const MAX_KEPT_BYTES: u64 = 1 << 30;

/// The spool of a blob: its fetch, running or done (a failed fetch is
/// replaced by the next target to need the blob).
type SpoolCell = Arc<SpoolSlot>;

/// Where a blob's spool is, once a target has started its fetch.
type SpoolSlot = Mutex<Option<Arc<Spool>>>;

/// (source repository, digest).
type BlobKey = (String, Digest);

/// A signature policy's verdict on one image, judged once.
type VerdictCell = Arc<OnceCell<Result<Verdict, Error>>>;

/// The spool files of the images of one mirror in flight: each lives while
/// a [`SourceShare`] holds it, or the pool keeps it.
#[derive(Default)]
pub struct SpoolPool {
    cells: Mutex<HashMap<BlobKey, Weak<SpoolSlot>>>,
    /// Spools a target failed to receive, and their bytes in all.
    kept: Mutex<(u64, HashMap<BlobKey, SpoolCell>)>,
}

impl SpoolPool {
    /// The spool of `key`, shared with every share holding it now.
    fn cell(&self, key: &BlobKey) -> SpoolCell {
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

/// Keeps the spool of a blob for the rest of the mirror's run (see
/// [`SourceShare::keep`]) when dropped before [`KeepUnlessDone::done`]:
/// the target did not get the blob (failed, or its copy was dropped).
pub(super) struct KeepUnlessDone<'a> {
    pub(super) share: Option<&'a SourceShare>,
    pub(super) src: &'a Reference,
    pub(super) blob: &'a Digest,
    pub(super) size: u64,
}

impl KeepUnlessDone<'_> {
    /// The target has the blob: nothing to keep.
    pub(super) fn done(mut self) {
        self.share = None;
    }
}

impl Drop for KeepUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(share) = self.share {
            share.keep(self.src, self.blob, self.size);
        }
    }
}

/// The shares of the source images being copied, per (scope, source
/// image) where the scope is a mirror, each with how many copies still
/// need it, and one [`SpoolPool`] per scope. A share is dropped with the
/// last copy that needed it; a scope's pool when the scope is closed.
#[derive(Default)]
pub struct SourceShares {
    map: Mutex<ShareMap>,
}

#[derive(Default)]
struct ShareMap {
    shares: HashMap<(String, String), (Arc<SourceShare>, usize)>,
    pools: HashMap<String, Arc<SpoolPool>>,
}

impl SourceShares {
    /// One more copy of `source` in `scope` will need its share.
    pub fn open(&self, scope: &str, source: &str) {
        let mut map = lock(&self.map);
        let key = (scope.to_string(), source.to_string());
        if let Some(entry) = map.shares.get_mut(&key) {
            entry.1 += 1;
            return;
        }
        let share = map.new_share(scope);
        map.shares.insert(key, (share, 1));
    }

    /// The share of `source` in `scope`; a new one, needed by one copy,
    /// when none is open (a copy retried after the others finished).
    pub fn get(&self, scope: &str, source: &str) -> Arc<SourceShare> {
        let mut map = lock(&self.map);
        let key = (scope.to_string(), source.to_string());
        if let Some(entry) = map.shares.get(&key) {
            return entry.0.clone();
        }
        let share = map.new_share(scope);
        map.shares.insert(key, (share.clone(), 1));
        share
    }

    /// A copy of `source` in `scope` finished: the share goes with the last.
    pub fn release(&self, scope: &str, source: &str) {
        let mut map = lock(&self.map);
        let key = (scope.to_string(), source.to_string());
        if let Some(entry) = map.shares.get_mut(&key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                map.shares.remove(&key);
            }
        }
    }

    /// Drop what is left of `scope`: its shares and its pool.
    pub fn close(&self, scope: &str) {
        let mut map = lock(&self.map);
        map.shares.retain(|(s, _), _| s != scope);
        map.pools.remove(scope);
    }
}

impl ShareMap {
    fn new_share(&mut self, scope: &str) -> Arc<SourceShare> {
        let pool = self.pools.entry(scope.to_string()).or_default().clone();
        Arc::new(SourceShare {
            resolved: OnceCell::new(),
            manifests: Mutex::default(),
            verdicts: Mutex::default(),
            blobs: Mutex::default(),
            referrers: ReferrerReads::default(),
            pool,
        })
    }
}

/// What the copies of one source image to several targets share (see the
/// module doc). Lives as long as the copies of that image.
pub struct SourceShare {
    /// The source tag's digest: `None` when the tag does not exist;
    /// `Some(None)` when the registry answered without a digest.
    resolved: OnceCell<Result<Option<Option<Digest>>, Arc<Error>>>,
    /// Manifests fetched by digest, per (repository, digest).
    manifests: Mutex<HashMap<BlobKey, Arc<OnceCell<RawManifest>>>>,
    /// The signature policy's verdicts, per (source digest, manifest judged).
    verdicts: Mutex<HashMap<(Digest, Digest), VerdictCell>>,
    /// The spool files of this image's blobs, held (kept alive) by it.
    blobs: Mutex<HashMap<BlobKey, SpoolCell>>,
    /// The source's referrer listings and cosign tags, read once.
    referrers: ReferrerReads,
    /// Where the spool files of the mirror's other images are found.
    pool: Arc<SpoolPool>,
}

impl std::fmt::Debug for SourceShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceShare").finish_non_exhaustive()
    }
}

impl SourceShare {
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

    /// The manifest `at` names by digest, fetched once however many
    /// targets ask at once (the caller checks its digest); a reference
    /// without a digest is fetched each time.
    pub(super) async fn manifest(
        &self,
        client: &Client,
        at: &Reference,
    ) -> Result<RawManifest, Error> {
        let Some(digest) = at.digest() else {
            return client.get_manifest(at).await;
        };
        let cell = lock(&self.manifests)
            .entry((at.repository().to_string(), digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| client.get_manifest(at))
            .await
            .cloned()
    }

    /// Keep the spool of blob `digest` of `src` (`size` bytes) until the
    /// mirror's run ends: a target failed to receive it, and a later image
    /// may try again. Nothing is kept past [`MAX_KEPT_BYTES`].
    pub(super) fn keep(&self, src: &Reference, digest: &Digest, size: u64) {
        let key = (src.repository().to_string(), digest.clone());
        let Some(cell) = lock(&self.blobs).get(&key).cloned() else {
            return;
        };
        let mut kept = lock(&self.pool.kept);
        if kept.1.contains_key(&key) || kept.0.saturating_add(size) > MAX_KEPT_BYTES {
            return;
        }
        kept.0 += size;
        kept.1.insert(key, cell);
    }

    /// The verdict of the signature policy on the image `digest` (judged
    /// as `judged`, its manifest or a platform-filtered index of it), by
    /// `judge` once for every target; each target gets the same verdict
    /// (or error).
    pub(super) async fn verdict<F, Fut>(
        &self,
        digest: &Digest,
        judged: &Digest,
        judge: F,
    ) -> Result<Verdict, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Verdict, Error>>,
    {
        let cell = lock(&self.verdicts)
            .entry((digest.clone(), judged.clone()))
            .or_default()
            .clone();
        cell.get_or_init(judge).await.clone()
    }

    /// The bytes of blob `digest` of `src` (`size` bytes), read from its
    /// spool file as the one fetch for every target fills it (started by
    /// the first target that needs the blob; see [`spool`]).
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
        let spool = {
            let mut slot = lock(&cell);
            match slot.as_ref().filter(|s| !s.failed()) {
                Some(spool) => spool.clone(),
                None => {
                    let open = fetch(client.clone(), src.clone(), digest.clone(), size);
                    let spool = Spool::start(open, src, digest, size)?;
                    *slot = Some(spool.clone());
                    spool
                }
            }
        };
        spool.reader()
    }
}

/// The source's GET of blob `digest` of `src`, its announced size checked.
async fn fetch(
    client: Client,
    src: Reference,
    digest: Digest,
    size: u64,
) -> Result<ByteStream, Error> {
    let reader = client.get_blob(&src, &digest).await?;
    if let Some(n) = reader.size
        && n != size
    {
        return Err(Error::SizeMismatch {
            op: Op::GetBlob,
            target: format!("{}@{digest}", src.repository_only()),
            expected: size,
            actual: n,
        });
    }
    Ok(reader.stream)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
