//! The registry client: one `Client` shared by all tasks.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use super::config::RegistryConfig;
use super::digest::Digest;
use super::error::Result;
use super::manifest::RawManifest;
use super::reference::Reference;

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Settings for a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Per-registry settings; hosts not listed get the defaults.
    pub registries: Vec<RegistryConfig>,
    /// Docker `config.json` to read credentials from for hosts without any.
    pub docker_config: Option<PathBuf>,
    /// Retry policy.
    pub retry: RetryPolicy,
}

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
    pub(crate) location: url::Url,
}

/// The registry client. Clone is cheap; all clones share one connection
/// pool, one token cache and the per-registry limits.
#[derive(Clone)]
pub struct Client {
    #[allow(dead_code)]
    inner: Arc<()>,
}

impl Client {
    /// Build a client.
    pub fn new(_options: ClientOptions) -> Result<Client> {
        todo!()
    }

    /// HEAD a manifest; `None` when it does not exist.
    pub async fn head_manifest(&self, _r: &Reference) -> Result<Option<ManifestHead>> {
        todo!()
    }

    /// GET a manifest's raw bytes; verified when `r` has a digest.
    pub async fn get_manifest(&self, _r: &Reference) -> Result<RawManifest> {
        todo!()
    }

    /// PUT a manifest's raw bytes under `r`'s tag, or its digest when `r` has no tag.
    /// Returns the digest the registry reports; errors if it differs.
    pub async fn put_manifest(&self, _r: &Reference, _m: &RawManifest) -> Result<Digest> {
        todo!()
    }

    /// HEAD a blob; its size, or `None` when missing.
    pub async fn head_blob(&self, _repo: &Reference, _d: &Digest) -> Result<Option<u64>> {
        todo!()
    }

    /// GET a blob as a stream.
    pub async fn get_blob(&self, _repo: &Reference, _d: &Digest) -> Result<BlobReader> {
        todo!()
    }

    /// GET a small blob whole (at most `max` bytes), verified against its digest.
    pub async fn get_blob_bytes(&self, _repo: &Reference, _d: &Digest, _max: u64) -> Result<Bytes> {
        todo!()
    }

    /// Open an upload session in `repo`.
    pub async fn start_upload(&self, _repo: &Reference) -> Result<UploadSession> {
        todo!()
    }

    /// Try to mount `d` from `from` (same registry) into `repo`. `Ok(None)`:
    /// mounted; `Ok(Some(session))`: the registry opened an upload instead,
    /// to be finished with [`Client::upload_blob`].
    pub async fn mount_blob(&self, _repo: &Reference, _d: &Digest, _from: &Reference) -> Result<Option<UploadSession>> {
        todo!()
    }

    /// Upload a blob's bytes into a session and commit it. The bytes are
    /// hashed while they stream; a mismatch aborts the upload before commit.
    pub async fn upload_blob(&self, _session: UploadSession, _d: &Digest, _size: u64, _body: ByteStream) -> Result<()> {
        todo!()
    }

    /// Upload bytes held in memory (configs, small artifacts).
    pub async fn put_blob_bytes(&self, _repo: &Reference, _d: &Digest, _data: Bytes) -> Result<()> {
        todo!()
    }

    /// List a repository's tags, following `Link` pagination.
    pub async fn list_tags(&self, _repo: &Reference) -> Result<Vec<String>> {
        todo!()
    }
}
