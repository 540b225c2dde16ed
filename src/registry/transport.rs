//! The seam between the copy engine and the places images are stored: the
//! [`Transport`] trait, one method per operation, and the I/O types every
//! store (a registry over HTTP, an OCI layout or archive on disk, memory in
//! tests) reads and writes.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use url::Url;

use super::digest::Digest;
use super::error::Result;
use super::manifest::{Descriptor, RawManifest};
use super::reference::Reference;

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// How often and how long to retry transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: std::time::Duration,
    /// Largest backoff, and the largest `Retry-After` honoured.
    pub max_backoff: std::time::Duration,
    /// Time budget for one request, retries included.
    pub max_elapsed: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: std::time::Duration::from_millis(500),
            max_backoff: std::time::Duration::from_secs(60),
            max_elapsed: std::time::Duration::from_secs(300),
        }
    }
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when sent.
    pub digest: Option<Digest>,
    /// `Content-Type`.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// A blob being read from a registry.
pub struct BlobReader {
    /// Size from `Content-Length`, when sent.
    pub size: Option<u64>,
    /// The bytes. Not yet verified: the uploader verifies.
    pub stream: ByteStream,
}

/// An open upload session.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub(crate) repo: Reference,
    pub(crate) location: Url,
    /// The smallest part but the last the registry announced for this
    /// session (`OCI-Chunk-Min-Length`, distribution spec 1.1).
    pub(crate) chunk_min: Option<u64>,
}

/// The result of a tag listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagListing {
    /// Valid tags, in the registry's order.
    pub tags: Vec<String>,
    /// Listed tags dropped because they break the tag grammar.
    pub invalid: usize,
}

/// The registry's answer to a manifest PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    /// The digest the store keeps the manifest under (that of the bytes sent).
    pub digest: Digest,
    /// The subject the registry confirmed with `OCI-Subject`: it indexed the
    /// manifest as a referrer of that digest itself.
    pub subject: Option<Digest>,
}

/// What the referrers API of a repository answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAnswer {
    /// The registry has no referrers API (404, or an answer that is not an
    /// OCI index): use the fallback tag.
    Absent,
    /// The registry listed these candidates.
    Listed {
        /// Descriptors, all pages, in the registry's order, deduplicated.
        descriptors: Vec<Descriptor>,
        /// True when the registry confirmed (`OCI-Filters-Applied:
        /// artifactType`) that it applied the `artifactType` asked for.
        filtered: bool,
    },
}

/// One registry round trip (or one layout operation), boxed so that a
/// [`Transport`] can be used as a trait object.
pub type Io<'a, T> = BoxFuture<'a, Result<T>>;

/// A place that holds images: a registry over HTTP, an OCI layout or
/// archive on disk, or memory (in tests). References handed to a transport
/// name a place the transport serves; [`super::Client`] routes each
/// reference to its transport by its [`super::reference::Location`].
pub trait Transport: Send + Sync {
    /// HEAD a manifest; `None` when it does not exist.
    fn head_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, Option<ManifestHead>>;
    /// GET a manifest's raw bytes, verified against `r`'s digest when it has one.
    fn get_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, RawManifest>;
    /// PUT a manifest under `r`'s tag, or its digest when `r` has no tag.
    fn put_manifest<'a>(&'a self, r: &'a Reference, m: &'a RawManifest) -> Io<'a, ManifestPut>;
    /// HEAD a blob of `repo`: its size, or `None` when missing.
    fn head_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, Option<u64>>;
    /// GET a blob as a stream (verified by whoever consumes it).
    fn get_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, BlobReader>;
    /// GET a small blob whole (at most `max` bytes), verified against its digest.
    fn get_blob_bytes<'a>(&'a self, repo: &'a Reference, d: &'a Digest, max: u64) -> Io<'a, Bytes>;
    /// Open an upload session in `repo`.
    fn start_upload<'a>(&'a self, repo: &'a Reference) -> Io<'a, UploadSession>;
    /// Mount `d` from `from` into `repo`: `None` when mounted, else an
    /// upload session to finish with [`Transport::upload_blob`].
    fn mount_blob<'a>(
        &'a self,
        repo: &'a Reference,
        d: &'a Digest,
        from: &'a Reference,
    ) -> Io<'a, Option<UploadSession>>;
    /// Write a blob's bytes into a session and commit it, verified as they stream.
    fn upload_blob<'a>(
        &'a self,
        session: UploadSession,
        d: &'a Digest,
        size: u64,
        body: ByteStream,
    ) -> Io<'a, ()>;
    /// List a repository's valid tags; `report`: log and count invalid ones.
    fn list_tags<'a>(&'a self, repo: &'a Reference, report: bool) -> Io<'a, TagListing>;
    /// Ask the referrers API of `repo` for the referrers of `subject`.
    fn referrers<'a>(
        &'a self,
        repo: &'a Reference,
        subject: &'a Digest,
        artifact_type: Option<&'a str>,
    ) -> Io<'a, ApiAnswer>;
    /// DELETE a manifest by tag or digest; the status, a success or one of `pass`.
    fn delete_manifest<'a>(&'a self, r: &'a Reference, pass: &'static [u16]) -> Io<'a, u16>;
}
