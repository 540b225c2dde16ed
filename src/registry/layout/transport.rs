//! A layout or archive as a [`Transport`]: the operations a registry
//! answers over HTTP, answered from the layout's files. A layout has no
//! referrers API (its referrers live under the `sha256-<hex>` fallback tag,
//! read and written like any tag) and deletes nothing.

use bytes::Bytes;

use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::manifest::{MAX_MANIFEST_BYTES, Manifest, RawManifest};
use crate::registry::reference::Reference;
use crate::registry::transport::{
    ApiAnswer, BlobReader, ByteStream, Io, ManifestHead, ManifestPut, TagListing, Transport,
    UploadSession,
};

use super::store::Layout;
use super::{error, not_found};

impl Layout {
    /// The manifest `r` names: digest, media type and size; `None` when
    /// absent (no layout yet, no such tag, or its blob missing).
    pub(crate) async fn head_manifest(&self, r: &Reference) -> Result<Option<ManifestHead>> {
        let Some(index) = self.load_index(Op::HeadManifest).await? else {
            return Ok(None);
        };
        let entry = index.find(r)?.cloned();
        let (digest, media_type) = match (&entry, r.digest()) {
            (Some(e), Some(d)) if &e.digest != d => (d.clone(), None),
            (Some(e), _) => (e.digest.clone(), Some(e.media_type.clone())),
            (None, Some(d)) => (d.clone(), None),
            (None, None) => return Ok(None),
        };
        let Some(size) = self.verified_size(&digest, Op::HeadManifest).await? else {
            return Ok(None);
        };
        let media_type = match media_type {
            Some(m) => m,
            None => {
                self.manifest_bytes(&digest, Op::HeadManifest)
                    .await?
                    .media_type
            }
        };
        if !self.graph_complete(&digest).await? {
            tracing::warn!(layout = %self.label(), reference = %r, "the image's content is incomplete or damaged in the layout; it is copied again");
            return Ok(None);
        }
        Ok(Some(ManifestHead {
            digest: Some(digest),
            media_type: Some(media_type),
            size: Some(size),
        }))
    }

    /// True when the manifest `root` and everything it references, down to
    /// the last blob, are present and match their digests (each file hashed
    /// once while its size and mtime stay the same). A manifest whose content
    /// was damaged or removed then reads as absent, so the next copy heals it.
    async fn graph_complete(&self, root: &Digest) -> Result<bool> {
        let mut todo = vec![root.clone()];
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            if seen.len() > crate::registry::limits::DEFAULT_MAX_MANIFESTS_PER_IMAGE {
                return Ok(true);
            }
            let raw = match self.manifest_bytes(&d, Op::HeadManifest).await {
                Ok(raw) => raw,
                Err(e) if e.is_not_found() || matches!(e, Error::DigestMismatch { .. }) => {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let Ok(parsed) = Manifest::parse(&raw.media_type, &raw.bytes) else {
                continue;
            };
            let is_index = matches!(parsed, Manifest::Index(_));
            for child in parsed.references() {
                if child.is_foreign() {
                    continue;
                }
                if is_index {
                    todo.push(child.digest.clone());
                } else if self
                    .verified_size(&child.digest, Op::HeadManifest)
                    .await?
                    .is_none()
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn manifest_bytes(&self, d: &Digest, op: Op) -> Result<RawManifest> {
        let bytes = self.read_bytes(d, MAX_MANIFEST_BYTES as u64, op).await?;
        let mut raw = RawManifest::new(bytes, None);
        raw.digest = d.clone();
        Ok(raw)
    }

    /// The manifest `r` names, verified against its digest.
    pub(crate) async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        let index = self.read_index(Op::GetManifest, &r.to_string()).await?;
        let entry = index.find(r)?.cloned();
        let (digest, media_type) = match (&entry, r.digest()) {
            (Some(e), Some(d)) if &e.digest != d => (d.clone(), None),
            (Some(e), _) => (e.digest.clone(), Some(e.media_type.clone())),
            (None, Some(d)) => (d.clone(), None),
            (None, None) => {
                return Err(not_found(
                    Op::GetManifest,
                    r.to_string(),
                    "the layout has no image of that name; `regmirror tags` lists its tags",
                ));
            }
        };
        let mut raw = self.manifest_bytes(&digest, Op::GetManifest).await?;
        if let Some(m) = media_type {
            raw.media_type = m;
        }
        Ok(raw)
    }

    /// Write a manifest, then point `r`'s tag at it when `r` has one.
    pub(crate) async fn put_manifest(&self, r: &Reference, m: &RawManifest) -> Result<ManifestPut> {
        self.write_manifest(m, Op::PutManifest).await?;
        if let Some(name) = r.layout_ref_name() {
            self.set_tag(&name, m, Op::PutManifest).await?;
        }
        Ok(ManifestPut {
            digest: m.digest.clone(),
            subject: None,
        })
    }

    /// A blob's size when present and matching its digest.
    pub(crate) async fn head_blob(&self, d: &Digest) -> Result<Option<u64>> {
        self.verified_size(d, Op::HeadBlob).await
    }

    /// A blob as a stream, checked against its digest as it ends.
    pub(crate) async fn get_blob(&self, d: &Digest) -> Result<BlobReader> {
        let (size, stream) = self.open_blob(d).await?;
        Ok(BlobReader {
            size: Some(size),
            stream,
        })
    }

    /// A small blob whole, verified.
    pub(crate) async fn get_blob_bytes(&self, d: &Digest, max: u64) -> Result<Bytes> {
        self.read_bytes(d, max, Op::GetBlob).await
    }

    /// Write a blob from a stream, verified.
    pub(crate) async fn upload_blob(&self, d: &Digest, size: u64, body: ByteStream) -> Result<()> {
        self.write_stream(d, size, body, Op::PutBlob).await
    }

    /// An upload session into the layout (taking the writer lock now, so
    /// a busy layout fails before any byte is read).
    pub(crate) async fn start_upload(&self, repo: &Reference) -> Result<UploadSession> {
        let root = self.ensure_writer(Op::PutBlob).await?;
        let location = url::Url::from_directory_path(&root)
            .map_err(|()| error(Op::PutBlob, self.label(), "the layout path is not absolute"))?;
        Ok(UploadSession {
            repo: repo.clone(),
            location,
            chunk_min: None,
        })
    }

    /// The tags of `repo` in `index.json`; entries that cannot be named are
    /// counted as invalid.
    pub(crate) async fn list_tags_checked(&self, repo: &Reference) -> Result<TagListing> {
        let index = self.read_index(Op::ListTags, &repo.name()).await?;
        let (tags, invalid) = index.tags_of(repo.repository());
        if invalid > 0 {
            tracing::warn!(layout = %self.label(), invalid, "index.json entries whose ref.name is not a tag or name:tag are skipped");
        }
        Ok(TagListing { tags, invalid })
    }
}

impl Transport for Layout {
    fn head_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, Option<ManifestHead>> {
        Box::pin(self.head_manifest(r))
    }
    fn get_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, RawManifest> {
        Box::pin(self.get_manifest(r))
    }
    fn put_manifest<'a>(&'a self, r: &'a Reference, m: &'a RawManifest) -> Io<'a, ManifestPut> {
        Box::pin(self.put_manifest(r, m))
    }
    fn head_blob<'a>(&'a self, _repo: &'a Reference, d: &'a Digest) -> Io<'a, Option<u64>> {
        Box::pin(self.head_blob(d))
    }
    fn get_blob<'a>(&'a self, _repo: &'a Reference, d: &'a Digest) -> Io<'a, BlobReader> {
        Box::pin(self.get_blob(d))
    }
    fn get_blob_bytes<'a>(
        &'a self,
        _repo: &'a Reference,
        d: &'a Digest,
        max: u64,
    ) -> Io<'a, Bytes> {
        Box::pin(self.get_blob_bytes(d, max))
    }
    fn start_upload<'a>(&'a self, repo: &'a Reference) -> Io<'a, UploadSession> {
        Box::pin(self.start_upload(repo))
    }
    /// A layout holds one set of blobs for all its repositories: a "mount"
    /// is an upload like any other.
    fn mount_blob<'a>(
        &'a self,
        repo: &'a Reference,
        _d: &'a Digest,
        _from: &'a Reference,
    ) -> Io<'a, Option<UploadSession>> {
        Box::pin(async move { self.start_upload(repo).await.map(Some) })
    }
    fn upload_blob<'a>(
        &'a self,
        _session: UploadSession,
        d: &'a Digest,
        size: u64,
        body: ByteStream,
    ) -> Io<'a, ()> {
        Box::pin(self.upload_blob(d, size, body))
    }
    fn list_tags<'a>(&'a self, repo: &'a Reference, _report: bool) -> Io<'a, TagListing> {
        Box::pin(self.list_tags_checked(repo))
    }
    fn referrers<'a>(
        &'a self,
        _repo: &'a Reference,
        _subject: &'a Digest,
        _artifact_type: Option<&'a str>,
    ) -> Io<'a, ApiAnswer> {
        Box::pin(async { Ok(ApiAnswer::Absent) })
    }
    fn delete_manifest<'a>(&'a self, r: &'a Reference, _pass: &'static [u16]) -> Io<'a, u16> {
        let e = error(
            Op::DeleteManifest,
            r.to_string(),
            "an image layout deletes nothing: remove the entry from its index.json by hand",
        );
        Box::pin(async move { Err(e) })
    }
}
