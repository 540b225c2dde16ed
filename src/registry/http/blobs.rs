//! Blobs: `HEAD` and `GET /v2/<name>/blobs/<digest>`.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::CONTENT_LENGTH;

use super::remote::Remote;
use crate::registry::auth::Scopes;
use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::reference::Reference;
use crate::registry::transport::BlobReader;

impl Remote {
    pub(crate) fn blob_target(repo: &Reference, d: &Digest) -> String {
        format!("{}@{d}", repo.name())
    }

    /// HEAD a blob; its size, or `None` when missing.
    pub(crate) async fn head_blob(&self, repo: &Reference, d: &Digest) -> Result<Option<u64>> {
        let host = self.host(repo.registry())?;
        let url = host.url(repo.repository(), &["blobs", &d.to_string()]);
        let mut req = Self::request(
            Op::HeadBlob,
            Self::blob_target(repo, d),
            repo.repository(),
            Method::HEAD,
            url,
            Scopes::pull(repo.repository()),
        );
        req.pass_statuses = &[404];
        let resp = host.send(req).await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        crate::registry::ping::reject_html(
            Op::HeadBlob,
            &Self::blob_target(repo, d),
            resp.headers(),
        )?;
        // HEAD bodies are empty: read the size from the header itself.
        let size = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some(size))
    }

    /// GET a blob as a stream. The bytes are not verified here; the
    /// uploader verifies them while they stream.
    pub(crate) async fn get_blob(&self, repo: &Reference, d: &Digest) -> Result<BlobReader> {
        let host = self.host(repo.registry())?;
        let url = host.url(repo.repository(), &["blobs", &d.to_string()]);
        let target = Self::blob_target(repo, d);
        let req = Self::request(
            Op::GetBlob,
            target.clone(),
            repo.repository(),
            Method::GET,
            url.clone(),
            Scopes::pull(repo.repository()),
        );
        let resp = host.send(req).await?;
        let size = resp.content_length();
        let first = super::blob_resume::body_of(resp, target.clone());
        // A break continues with a Range request (see `resume`).
        let stream = match size {
            Some(size) => {
                let reopen = super::blob_resume::RangeGet {
                    host: host.clone(),
                    url,
                    repository: repo.repository().to_string(),
                    target: target.clone(),
                    size,
                };
                crate::registry::resume::resuming(first, size, Arc::new(reopen), target.clone())
            }
            None => first,
        };
        let stream = host.bandwidth.pace(stream);
        let guarded = crate::registry::guard::GuardedStream::new(
            Box::pin(stream),
            Op::GetBlob,
            target,
            host.limits.blob_idle_timeout,
            host.limits.blob_min_bytes_per_second,
        );
        Ok(BlobReader {
            size,
            stream: Box::pin(guarded),
        })
    }

    /// GET a small blob whole (at most `max` bytes), verified against its digest.
    pub(crate) async fn get_blob_bytes(
        &self,
        repo: &Reference,
        d: &Digest,
        max: u64,
    ) -> Result<Bytes> {
        let host = self.host(repo.registry())?;
        let url = host.url(repo.repository(), &["blobs", &d.to_string()]);
        let target = Self::blob_target(repo, d);
        let make = || {
            Ok(Self::request(
                Op::GetBlob,
                target.clone(),
                repo.repository(),
                Method::GET,
                url.clone(),
                Scopes::pull(repo.repository()),
            ))
        };
        let (_, bytes) = self
            .get_with_body(&host, make, max as usize, Op::GetBlob, &target, "blob")
            .await?;
        host.bandwidth.take(bytes.len()).await;
        let actual = d.of_same_algorithm(&bytes);
        if &actual != d {
            return Err(Error::DigestMismatch {
                op: Op::GetBlob,
                target,
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}
