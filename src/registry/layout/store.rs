//! The layout store: blobs and manifests in `blobs/<alg>/<hex>`, tags in
//! `index.json`, crash-safe writes and verified reads (see the module docs
//! of [`super`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::manifest::{Manifest, RawManifest};
use crate::registry::reference::LayoutLocation;
use crate::registry::transport::ByteStream;

use super::archive::ArchiveCopy;
use super::files::{FileStamp, hash_file_matches, read_regular, sync_dir};
use super::index::LayoutIndex;
use super::lock::{LOCK_FILE, LockGuard};
use super::paths::{blob_relative_path, check_ref_name};
use super::{
    MAX_INDEX_BYTES, MAX_INDEX_ENTRIES, OCI_LAYOUT_FILE, error, io_error, not_found, safe,
};

/// Directory of in-progress writes inside a layout.
pub const TMP_DIR: &str = ".regmirror-tmp";
/// Largest `oci-layout` file read.
const MAX_OCI_LAYOUT_BYTES: u64 = 4096;

/// One layout directory or archive, as opened by one client.
pub struct Layout {
    location: LayoutLocation,
    /// `oci:PATH` or `oci-archive:PATH`, for messages.
    label: String,
    /// How long a second writer waits for the lock.
    lock_wait: Duration,
    /// For an archive: its extracted copy, made on first use.
    copy: tokio::sync::OnceCell<ArchiveCopy>,
    writer: tokio::sync::Mutex<Option<LockGuard>>,
    /// Serialises `index.json` rewrites.
    index_write: tokio::sync::Mutex<()>,
    index_cache: Mutex<Option<(FileStamp, Arc<LayoutIndex>)>>,
    /// Blobs whose digest was checked, with the stamp they had then.
    verified: Mutex<HashMap<Digest, FileStamp>>,
    /// True once this client changed the layout (an archive must be packed).
    dirty: AtomicBool,
    tmp_counter: AtomicU64,
}

impl Layout {
    pub(crate) fn new(location: LayoutLocation, lock_wait: Duration) -> Result<Layout> {
        let label = format!("{}:{}", location.transport(), location.path.display());
        Ok(Layout {
            location,
            label,
            lock_wait,
            copy: tokio::sync::OnceCell::new(),
            writer: tokio::sync::Mutex::new(None),
            index_write: tokio::sync::Mutex::new(()),
            index_cache: Mutex::new(None),
            verified: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// `oci:PATH` / `oci-archive:PATH`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where it points.
    pub fn location(&self) -> &LayoutLocation {
        &self.location
    }

    /// False when this is an archive read earlier whose file has changed
    /// since (and this client is not writing it): open it again.
    pub(crate) fn is_current(&self) -> bool {
        let writing = self.writer.try_lock().map_or(true, |w| w.is_some());
        if !self.location.archive || writing || self.dirty.load(Ordering::SeqCst) {
            return true;
        }
        match self.copy.get() {
            Some(copy) => copy.is_current(&self.location.absolute),
            None => true,
        }
    }

    /// The directory holding the layout's files (an archive's extracted copy).
    pub(crate) async fn root(&self) -> Result<PathBuf> {
        if !self.location.archive {
            return Ok(self.location.absolute.clone());
        }
        let copy = self
            .copy
            .get_or_try_init(|| ArchiveCopy::extract(&self.location.absolute, &self.label))
            .await?;
        Ok(copy.dir().to_path_buf())
    }

    /// The parsed `index.json`; `None` when there is no layout there yet
    /// (no directory, an empty one, or an archive that does not exist).
    pub(crate) async fn load_index(&self, op: Op) -> Result<Option<Arc<LayoutIndex>>> {
        let root = self.root().await?;
        let index_path = root.join("index.json");
        let meta = match std::fs::symlink_metadata(&index_path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match self.is_empty_place(&root) {
                    true => Ok(None),
                    false => Err(error(
                        op,
                        &self.label,
                        format!(
                            "{} is not an OCI image layout (it has no index.json); give a layout \
                             directory, or a new or empty directory to write one",
                            self.location.path.display()
                        ),
                    )),
                };
            }
            Err(e) => return Err(io_error(op, &self.label, &index_path, &e)),
        };
        let stamp = FileStamp::of(&meta);
        if let Some((s, idx)) = &*self.index_cache.lock().unwrap_or_else(|p| p.into_inner())
            && *s == stamp
        {
            return Ok(Some(idx.clone()));
        }
        self.check_oci_layout(op, &root)?;
        let bytes = read_regular(&index_path, MAX_INDEX_BYTES, op, &self.label)?;
        let idx = Arc::new(LayoutIndex::parse(&bytes, &self.label)?);
        *self.index_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, idx.clone()));
        Ok(Some(idx))
    }

    /// `load_index`, failing when there is no layout.
    pub(crate) async fn read_index(&self, op: Op, target: &str) -> Result<Arc<LayoutIndex>> {
        self.load_index(op).await?.ok_or_else(|| {
            not_found(
                op,
                target,
                format!(
                    "there is no OCI image layout at {} (no index.json)",
                    self.location.path.display()
                ),
            )
        })
    }

    fn is_empty_place(&self, root: &Path) -> bool {
        match std::fs::read_dir(root) {
            Err(_) => !root.exists(),
            Ok(entries) => entries.flatten().all(|e| {
                let n = e.file_name();
                n == LOCK_FILE || n == TMP_DIR || n == "oci-layout" || n == "blobs"
            }),
        }
    }

    fn check_oci_layout(&self, op: Op, root: &Path) -> Result<()> {
        let path = root.join("oci-layout");
        let bytes = read_regular(&path, MAX_OCI_LAYOUT_BYTES, op, &self.label)?;
        #[derive(serde::Deserialize)]
        struct OciLayout {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        match serde_json::from_slice::<OciLayout>(&bytes) {
            Ok(l) if l.version.starts_with("1.") => Ok(()),
            Ok(l) => Err(error(
                op,
                &self.label,
                format!(
                    "oci-layout declares version {:?}; only 1.x layouts are read",
                    crate::registry::escape::shown(&l.version)
                ),
            )),
            Err(_) => Err(error(
                op,
                &self.label,
                "oci-layout is not {\"imageLayoutVersion\": \"1.0.0\"}: not an OCI image layout",
            )),
        }
    }

    /// The path of a blob, refusing `blobs` or `blobs/<alg>` that are not
    /// real directories (a symlink there would lead writes elsewhere).
    fn blob_path(&self, root: &Path, d: &Digest, op: Op) -> Result<PathBuf> {
        let rel = blob_relative_path(d);
        let mut dir = root.to_path_buf();
        for part in rel.parent().expect("blobs/<alg>").components() {
            dir.push(part);
            if let Ok(m) = std::fs::symlink_metadata(&dir)
                && !m.is_dir()
            {
                return Err(error(
                    op,
                    &self.label,
                    format!(
                        "{} is not a directory (a symlink or a file): refusing to use the layout",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(root.join(rel))
    }

    /// The size of a present blob whose content matches `d`; `None` when
    /// absent. A blob that does not match is treated as absent (it is
    /// rewritten by the next write) and logged.
    pub(crate) async fn verified_size(&self, d: &Digest, op: Op) -> Result<Option<u64>> {
        let root = self.root().await?;
        let path = self.blob_path(&root, d, op)?;
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                return Err(error(
                    op,
                    &self.label,
                    format!(
                        "{} is not a regular file: refusing to use it",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(op, &self.label, &path, &e)),
        };
        let stamp = FileStamp::of(&meta);
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            == Some(&stamp)
        {
            return Ok(Some(meta.len()));
        }
        let (d2, p2) = (d.clone(), path.clone());
        let ok = tokio::task::spawn_blocking(move || hash_file_matches(&p2, &d2))
            .await
            .map_err(|e| error(op, &self.label, format!("hashing task failed: {e}")))?
            .map_err(|e| io_error(op, &self.label, &path, &e))?;
        if !ok {
            tracing::warn!(layout = %self.label, digest = %d, "blob does not match its digest; it will be rewritten");
            return Ok(None);
        }
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.clone(), stamp);
        Ok(Some(meta.len()))
    }

    /// Read a whole blob of at most `max` bytes, verified.
    pub(crate) async fn read_bytes(&self, d: &Digest, max: u64, op: Op) -> Result<Bytes> {
        let root = self.root().await?;
        let path = self.blob_path(&root, d, op)?;
        let target = format!("{}@{d}", self.label);
        let bytes = match read_regular(&path, max, op, &target) {
            Err(Error::Layout {
                not_found: true, ..
            }) => {
                return Err(not_found(op, target, "the layout does not hold this blob"));
            }
            r => r?,
        };
        let actual = d.of_same_algorithm(&bytes);
        if &actual != d {
            return Err(Error::DigestMismatch {
                op,
                target,
                expected: d.clone(),
                actual,
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// Open a blob as a stream; the digest is checked as it ends (a
    /// mismatch is the stream's last item).
    pub(crate) async fn open_blob(&self, d: &Digest) -> Result<(u64, ByteStream)> {
        let root = self.root().await?;
        let path = self.blob_path(&root, d, Op::GetBlob)?;
        let target = format!("{}@{d}", self.label);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                return Err(error(Op::GetBlob, target, "the blob is not a regular file"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found(
                    Op::GetBlob,
                    target,
                    "the layout does not hold this blob",
                ));
            }
            Err(e) => return Err(io_error(Op::GetBlob, &target, &path, &e)),
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(Op::GetBlob, &target, &path, &e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        Ok((
            meta.len(),
            super::files::verified_stream(stream, d.clone(), target),
        ))
    }

    /// Become this layout's writer (once per client): take the lock, make
    /// the directory, `oci-layout` and the temporary directory.
    pub(crate) async fn ensure_writer(&self, op: Op) -> Result<PathBuf> {
        let root = self.root().await?;
        let mut writer = self.writer.lock().await;
        if writer.is_some() {
            return Ok(root);
        }
        if !self.is_empty_place(&root) && !root.join("index.json").exists() {
            return Err(error(
                op,
                &self.label,
                format!(
                    "{} exists and is not an OCI image layout: give a layout directory, or a new \
                     or empty directory",
                    self.location.path.display()
                ),
            ));
        }
        std::fs::create_dir_all(&root).map_err(|e| io_error(op, &self.label, &root, &e))?;
        let lock_path = match &self.copy.get() {
            Some(_) => super::archive::lock_path(&self.location.absolute),
            None => root.join(LOCK_FILE),
        };
        let guard = super::lock::acquire(&lock_path, self.lock_wait, &self.label).await?;
        if let Some(copy) = self.copy.get()
            && !copy.is_current(&self.location.absolute)
        {
            return Err(error(
                op,
                &self.label,
                "the archive changed while this run was reading it (another writer?): run again",
            ));
        }
        let tmp = root.join(TMP_DIR);
        if let Ok(m) = std::fs::symlink_metadata(&tmp)
            && !m.is_dir()
        {
            return Err(error(
                op,
                &self.label,
                format!(
                    "{} is not a directory: refusing to use the layout",
                    tmp.display()
                ),
            ));
        }
        // Leftovers of a writer that was killed: the lock says it is gone.
        let _ = std::fs::remove_dir_all(&tmp);
        safe::ensure_dir(&tmp, true).map_err(|e| io_error(op, &self.label, &tmp, &e))?;
        if std::fs::symlink_metadata(root.join("oci-layout")).is_err() {
            self.write_atomic(&root, "oci-layout", OCI_LAYOUT_FILE.as_bytes(), op)?;
        }
        self.check_oci_layout(op, &root)?;
        *writer = Some(guard);
        Ok(root)
    }

    fn tmp_path(&self, root: &Path, stem: &str) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        root.join(TMP_DIR)
            .join(format!("{stem}.{}.{n}", safe::unique_suffix()))
    }

    /// Write `bytes` to `root/name` through a temporary file, fsync, rename
    /// and fsync the directory.
    fn write_atomic(&self, root: &Path, name: &str, bytes: &[u8], op: Op) -> Result<()> {
        use std::io::Write;
        let tmp = self.tmp_path(root, name);
        let dest = root.join(name);
        let io = |p: &Path, e: std::io::Error| io_error(op, &self.label, p, &e);
        let tmp_dir = root.join(TMP_DIR);
        safe::ensure_dir(&tmp_dir, true).map_err(|e| io(&tmp_dir, e))?;
        let mut f = safe::create_new(&tmp).map_err(|e| io(&tmp, e))?;
        let written = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written.and_then(|()| safe::rename_onto(&tmp, &dest)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&dest, e));
        }
        sync_dir(root).map_err(|e| io(root, e))
    }

    /// Write a blob from a stream, verified against `d` and `size`.
    pub(crate) async fn write_stream(
        &self,
        d: &Digest,
        size: u64,
        mut body: ByteStream,
        op: Op,
    ) -> Result<()> {
        let root = self.ensure_writer(op).await?;
        let dest = self.blob_path(&root, d, op)?;
        let target = format!("{}@{d}", self.label);
        let tmp = self.tmp_path(&root, d.hex());
        let io = |p: &Path, e: std::io::Error| io_error(op, &target, p, &e);
        // Made again when it vanished under a long-lived writer (`serve`).
        let tmp_dir = root.join(TMP_DIR);
        safe::ensure_dir(&tmp_dir, true).map_err(|e| io(&tmp_dir, e))?;
        let result = async {
            let mut f = tokio::fs::File::from_std(safe::create_new(&tmp).map_err(|e| io(&tmp, e))?);
            let mut v = d.verifier();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                v.update(&chunk);
                if v.len() > size {
                    return Err(Error::SizeMismatch {
                        op,
                        target: target.clone(),
                        expected: size,
                        actual: v.len(),
                    });
                }
                f.write_all(&chunk).await.map_err(|e| io(&tmp, e))?;
            }
            if v.len() != size {
                return Err(Error::SizeMismatch {
                    op,
                    target: target.clone(),
                    expected: size,
                    actual: v.len(),
                });
            }
            v.finish().map_err(|actual| Error::DigestMismatch {
                op,
                target: target.clone(),
                expected: d.clone(),
                actual,
            })?;
            f.sync_all().await.map_err(|e| io(&tmp, e))?;
            drop(f);
            let parent = dest.parent().expect("blobs/<alg>");
            for dir in [parent.parent().expect("blobs"), parent] {
                safe::ensure_dir(dir, false).map_err(|e| io(dir, e))?;
            }
            safe::rename_onto(&tmp, &dest).map_err(|e| io(&dest, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        self.dirty.store(true, Ordering::SeqCst);
        if let Ok(m) = std::fs::symlink_metadata(&dest) {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d.clone(), FileStamp::of(&m));
        }
        Ok(())
    }

    /// Write a manifest as a blob, after checking that everything it
    /// references is present (so no manifest, and no tag, ever points at
    /// missing content).
    pub(crate) async fn write_manifest(&self, m: &RawManifest, op: Op) -> Result<()> {
        if let Ok(parsed) = Manifest::parse(&m.media_type, &m.bytes) {
            for child in parsed.references() {
                if child.is_foreign() {
                    continue;
                }
                if self.verified_size(&child.digest, op).await?.is_none() {
                    return Err(error(
                        op,
                        format!("{}@{}", self.label, m.digest),
                        format!(
                            "the manifest references {} which the layout does not hold; \
                             children are written first, so nothing was tagged",
                            child.digest
                        ),
                    ));
                }
            }
        }
        let data = m.bytes.clone();
        let stream = futures_util::stream::once(async move { Ok(data) });
        self.write_stream(&m.digest, m.size(), Box::pin(stream), op)
            .await
    }

    /// Point `ref_name` at a manifest already written: `index.json` is
    /// rewritten atomically after the blob directories are synced.
    pub(crate) async fn set_tag(&self, ref_name: &str, m: &RawManifest, op: Op) -> Result<()> {
        check_ref_name(ref_name).map_err(|d| error(op, &self.label, d))?;
        let root = self.ensure_writer(op).await?;
        let _guard = self.index_write.lock().await;
        let mut index = match self.load_index(op).await? {
            Some(i) => (*i).clone(),
            None => LayoutIndex::default(),
        };
        index.set(ref_name, &m.media_type, &m.digest, m.size());
        if std::fs::symlink_metadata(root.join("oci-layout")).is_err() {
            // The layout was removed under a long-lived writer: it is whole again.
            self.write_atomic(&root, "oci-layout", OCI_LAYOUT_FILE.as_bytes(), op)?;
        }
        for alg in ["sha256", "sha512"] {
            let dir = root.join("blobs").join(alg);
            if dir.is_dir() {
                sync_dir(&dir).map_err(|e| io_error(op, &self.label, &dir, &e))?;
            }
        }
        let bytes = index.to_bytes();
        if bytes.len() as u64 > MAX_INDEX_BYTES || index.entries().len() > MAX_INDEX_ENTRIES {
            return Err(error(
                op,
                &self.label,
                format!(
                    "tagging {ref_name} would make index.json {} bytes with {} entries, over what \
                     a layout may hold and still be read ({MAX_INDEX_BYTES} bytes, \
                     {MAX_INDEX_ENTRIES} entries): nothing was written; write into another \
                     layout, or remove tags from this one",
                    bytes.len(),
                    index.entries().len()
                ),
            ));
        }
        self.write_atomic(&root, "index.json", &bytes, op)?;
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Pack an archive this client changed into its file. Holds the
    /// `index.json` lock while packing, so the archive gets an index whose
    /// every blob was already in place (other writes of this client may go
    /// on). The writer lock is kept until the client is dropped: a later run
    /// of the same client (`serve`) writes on without another writer having
    /// slipped in between. A directory layout needs nothing.
    pub(crate) async fn finish(&self) -> Result<()> {
        let Some(copy) = self.copy.get() else {
            return Ok(());
        };
        let _index = self.index_write.lock().await;
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        if let Err(e) = copy.pack(&self.location.absolute, &self.label).await {
            self.dirty.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Layout {
    /// The writer removes its (by now empty) temporary directory while it
    /// still holds the lock; an archive's whole extracted copy goes with it.
    fn drop(&mut self) {
        if self.writer.get_mut().is_some() && !self.location.archive {
            let _ = std::fs::remove_dir_all(self.location.absolute.join(TMP_DIR));
        }
    }
}
