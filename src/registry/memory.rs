//! An in-memory [`Transport`] for tests: registries held in maps, so the
//! copy engine can be exercised without a server. Every registry and
//! repository shares one store, keyed by (registry, repository); it counts
//! the operations it answers so a test can check what was asked.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use url::Url;

use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::manifest::RawManifest;
use super::reference::Reference;
use super::transport::{
    ApiAnswer, BlobReader, ByteStream, Io, ManifestHead, ManifestPut, TagListing, Transport,
    UploadSession,
};

type RepoKey = (String, String);

/// Registries in memory.
#[derive(Default)]
pub struct Memory {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    manifests: HashMap<RepoKey, HashMap<Digest, RawManifest>>,
    tags: HashMap<RepoKey, Vec<(String, Digest)>>,
    blobs: HashMap<RepoKey, HashMap<Digest, Bytes>>,
    calls: HashMap<&'static str, usize>,
}

fn key(r: &Reference) -> RepoKey {
    (r.registry().to_string(), r.repository().to_string())
}

fn missing(op: Op, target: String) -> Error {
    Error::Status {
        op,
        target,
        status: 404,
        codes: Vec::new(),
        retry_after: None,
    }
}

impl Memory {
    /// An empty store.
    pub fn new() -> Memory {
        Memory::default()
    }

    /// Store `data` as a blob of `repo`; its digest.
    pub fn add_blob(&self, repo: &Reference, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let mut s = self.lock();
        let blobs = s.blobs.entry(key(repo)).or_default();
        blobs.insert(d.clone(), Bytes::copy_from_slice(data));
        d
    }

    /// Store a manifest under `r`'s tag (when it has one) and its digest.
    pub fn add_manifest(&self, r: &Reference, m: &RawManifest) {
        let mut s = self.lock();
        let k = key(r);
        let by_digest = s.manifests.entry(k.clone()).or_default();
        by_digest.insert(m.digest.clone(), m.clone());
        if let Some(tag) = r.tag() {
            let tags = s.tags.entry(k).or_default();
            tags.retain(|(t, _)| t != tag);
            tags.push((tag.to_string(), m.digest.clone()));
        }
    }

    /// How many times the operation `op` (a [`Transport`] method name) was asked.
    pub fn calls(&self, op: &str) -> usize {
        self.lock().calls.get(op).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, op: &'static str) {
        *self.lock().calls.entry(op).or_default() += 1;
    }

    fn find_manifest(&self, r: &Reference) -> Option<RawManifest> {
        let s = self.lock();
        let k = key(r);
        let digest = match (r.digest(), r.tag()) {
            (Some(d), _) => d.clone(),
            (None, Some(tag)) => s.tags.get(&k)?.iter().find(|(t, _)| t == tag)?.1.clone(),
            (None, None) => return None,
        };
        s.manifests.get(&k)?.get(&digest).cloned()
    }

    fn find_blob(&self, repo: &Reference, d: &Digest) -> Option<Bytes> {
        let s = self.lock();
        s.blobs.get(&key(repo))?.get(d).cloned()
    }

    fn session(repo: &Reference) -> UploadSession {
        UploadSession {
            repo: repo.clone(),
            location: Url::parse("memory:/upload").expect("a valid URL"),
            chunk_min: None,
        }
    }

    async fn write_blob(&self, session: UploadSession, d: &Digest, body: ByteStream) -> Result<()> {
        let mut body = body;
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let actual = d.of_same_algorithm(&buf);
        if &actual != d {
            return Err(Error::DigestMismatch {
                op: Op::PutBlob,
                target: format!("{}@{d}", session.repo.name()),
                expected: d.clone(),
                actual,
            });
        }
        let mut s = self.lock();
        let blobs = s.blobs.entry(key(&session.repo)).or_default();
        blobs.insert(d.clone(), buf.freeze());
        Ok(())
    }
}

impl Transport for Memory {
    fn head_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, Option<ManifestHead>> {
        self.count("head_manifest");
        let head = self.find_manifest(r).map(|m| ManifestHead {
            size: Some(m.bytes.len() as u64),
            media_type: Some(m.media_type),
            digest: Some(m.digest),
        });
        Box::pin(async move { Ok(head) })
    }
    fn get_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, RawManifest> {
        self.count("get_manifest");
        let found = self.find_manifest(r);
        Box::pin(async move { found.ok_or_else(|| missing(Op::GetManifest, r.to_string())) })
    }
    fn put_manifest<'a>(&'a self, r: &'a Reference, m: &'a RawManifest) -> Io<'a, ManifestPut> {
        self.count("put_manifest");
        self.add_manifest(r, m);
        let put = ManifestPut {
            digest: m.digest.clone(),
            subject: None,
        };
        Box::pin(async move { Ok(put) })
    }
    fn head_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, Option<u64>> {
        self.count("head_blob");
        let size = self.find_blob(repo, d).map(|b| b.len() as u64);
        Box::pin(async move { Ok(size) })
    }
    fn get_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, BlobReader> {
        self.count("get_blob");
        let found = self.find_blob(repo, d);
        Box::pin(async move {
            let b = found.ok_or_else(|| missing(Op::GetBlob, format!("{}@{d}", repo.name())))?;
            Ok(BlobReader {
                size: Some(b.len() as u64),
                stream: Box::pin(futures_util::stream::once(async move { Ok(b) })),
            })
        })
    }
    fn get_blob_bytes<'a>(
        &'a self,
        repo: &'a Reference,
        d: &'a Digest,
        _max: u64,
    ) -> Io<'a, Bytes> {
        self.count("get_blob");
        let found = self.find_blob(repo, d);
        Box::pin(async move {
            found.ok_or_else(|| missing(Op::GetBlob, format!("{}@{d}", repo.name())))
        })
    }
    fn start_upload<'a>(&'a self, repo: &'a Reference) -> Io<'a, UploadSession> {
        self.count("start_upload");
        Box::pin(async move { Ok(Memory::session(repo)) })
    }
    fn mount_blob<'a>(
        &'a self,
        repo: &'a Reference,
        d: &'a Digest,
        from: &'a Reference,
    ) -> Io<'a, Option<UploadSession>> {
        self.count("mount_blob");
        let mounted = match self.find_blob(from, d) {
            Some(b) => {
                let mut s = self.lock();
                s.blobs.entry(key(repo)).or_default().insert(d.clone(), b);
                None
            }
            None => Some(Memory::session(repo)),
        };
        Box::pin(async move { Ok(mounted) })
    }
    fn upload_blob<'a>(
        &'a self,
        session: UploadSession,
        d: &'a Digest,
        _size: u64,
        body: ByteStream,
    ) -> Io<'a, ()> {
        self.count("upload_blob");
        Box::pin(self.write_blob(session, d, body))
    }
    fn list_tags<'a>(&'a self, repo: &'a Reference, _report: bool) -> Io<'a, TagListing> {
        self.count("list_tags");
        let s = self.lock();
        let tags = s.tags.get(&key(repo)).into_iter().flatten();
        let tags = tags.map(|(t, _)| t.clone()).collect();
        Box::pin(async move { Ok(TagListing { tags, invalid: 0 }) })
    }
    fn referrers<'a>(
        &'a self,
        _repo: &'a Reference,
        _subject: &'a Digest,
        _artifact_type: Option<&'a str>,
    ) -> Io<'a, ApiAnswer> {
        self.count("referrers");
        Box::pin(async { Ok(ApiAnswer::Absent) })
    }
    fn delete_manifest<'a>(&'a self, r: &'a Reference, _pass: &'static [u16]) -> Io<'a, u16> {
        self.count("delete_manifest");
        let mut s = self.lock();
        let k = key(r);
        if let Some(tag) = r.tag()
            && let Some(tags) = s.tags.get_mut(&k)
        {
            tags.retain(|(t, _)| t != tag);
        }
        if let (Some(d), Some(m)) = (r.digest(), s.manifests.get_mut(&k)) {
            m.remove(d);
        }
        Box::pin(async { Ok(202) })
    }
}
