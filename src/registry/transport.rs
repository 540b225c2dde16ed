//! The seam between the copy engine and the places images are stored: the
//! I/O types every store (a registry over HTTP, an OCI layout or archive on
//! disk) reads and writes.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use url::Url;

use super::digest::Digest;
use super::error::Result;
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
}

/// The result of a tag listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagListing {
    /// Valid tags, in the registry's order.
    pub tags: Vec<String>,
    /// Listed tags dropped because they break the tag grammar.
    pub invalid: usize,
}
