//! Uploads: `POST /v2/<name>/blobs/uploads/` (with `mount` to mount),
//! then one streamed `PUT`, or `PATCH` chunks and a closing `PUT`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use url::Url;

use super::auth::Scheme;
use super::remote::{Remote, location};
use super::upload_guard::SessionGuard;
use super::{Body, Host, Request};
use crate::registry::auth::Scopes;
use crate::registry::chunked::{self, Failure};
use crate::registry::digest::{Digest, Verifier};
use crate::registry::error::{Error, Op, Result};
use crate::registry::profiles::{self, Profile};
use crate::registry::reference::Reference;
use crate::registry::transport::{ByteStream, UploadSession};
use crate::registry::upload_plan::{Plan, PlanError, Step, classify};

impl Remote {
    /// Open an upload session in `repo`.
    pub(crate) async fn start_upload(&self, repo: &Reference) -> Result<UploadSession> {
        let host = self.host(repo.registry())?;
        let url = host.url(repo.repository(), &["blobs", "uploads", ""]);
        let target = repo.name();
        let req = Self::request(
            Op::PutBlob,
            target.clone(),
            repo.repository(),
            Method::POST,
            url,
            Scopes::push(repo.repository()),
        );
        let resp = host.send(req).await?;
        let location = location(&host, repo, &resp, Op::PutBlob, &target)?;
        Ok(UploadSession {
            repo: repo.clone(),
            location,
            chunk_min: super::adaptive::chunk_min(&resp),
        })
    }

    /// Try to mount `d` from `from` (same registry) into `repo`. `Ok(None)`:
    /// mounted; `Ok(Some(session))`: the registry opened an upload instead
    /// (HTTP 202), to be finished with [`Client::upload_blob`].
    pub(crate) async fn mount_blob(
        &self,
        repo: &Reference,
        d: &Digest,
        from: &Reference,
    ) -> Result<Option<UploadSession>> {
        let host = self.host(repo.registry())?;
        let mut url = host.url(repo.repository(), &["blobs", "uploads", ""]);
        url.query_pairs_mut()
            .append_pair("mount", &d.to_string())
            .append_pair("from", from.repository());
        let target = Self::blob_target(repo, d);
        let scopes = Scopes::push(repo.repository()).and(Scopes::pull(from.repository()));
        let req = Self::request(
            Op::MountBlob,
            target.clone(),
            repo.repository(),
            Method::POST,
            url,
            scopes,
        );
        let resp = host.send(req).await?;
        if resp.status().as_u16() == 201 {
            return Ok(None);
        }
        let location = location(&host, repo, &resp, Op::MountBlob, &target)?;
        Ok(Some(UploadSession {
            repo: repo.clone(),
            location,
            chunk_min: super::adaptive::chunk_min(&resp),
        }))
    }

    /// Upload a blob's bytes into a session and commit it. The bytes are
    /// hashed while they stream; on a digest or size mismatch the upload is
    /// aborted before the commit, so nothing is written.
    pub(crate) async fn upload_blob(
        &self,
        session: UploadSession,
        d: &Digest,
        size: u64,
        body: ByteStream,
    ) -> Result<()> {
        let host = self.host(session.repo.registry())?;
        let target = Self::blob_target(&session.repo, d);
        let repository = session.repo.repository().to_string();
        let mut guard =
            SessionGuard::new(host.clone(), &repository, &target, session.location.clone());
        let upload = Upload {
            target,
            scopes: Scopes::push(&repository),
            failure: Arc::new(Mutex::new(None)),
            session,
            digest: d,
            host: &host,
        };
        let verified = VerifyingStream {
            inner: body,
            verifier: Some(d.verifier()),
            size,
            target: upload.target.clone(),
            failure: upload.failure.clone(),
            held: None,
        };
        let registry = upload.session.repo.registry().to_string();
        let profile = host.uploads.apply(base_profile(&host).await);
        let mut plan = self
            .uploads
            .plan(&registry, &profile)
            .with_session_min(upload.session.chunk_min);
        let plan_failed = |e: PlanError, target: &str| Error::BadResponse {
            op: Op::PutBlob,
            target: target.to_string(),
            detail: format!("uploading this {size}-byte blob: {e}"),
        };
        let step = plan
            .first(size)
            .map_err(|e| plan_failed(e, &upload.target))?;
        let result = match step {
            Step::Monolithic => match upload.whole(verified, size).await {
                Ok(None) => Ok(()),
                Ok(Some((status, text))) => {
                    Err(upload.refused_whole(&mut plan, status, text, size))
                }
                Err(e) => Err(e),
            },
            Step::Chunked { .. } => {
                // A chunked upload cancels its own session when it fails.
                guard.disarm();
                upload.adaptive(verified, &mut plan, size).await
            }
        };
        self.uploads.remember(&registry, &plan);
        match &result {
            Ok(()) => guard.disarm(),
            // The blob is sent again (if at all) in a new session.
            Err(_) => guard.cancel().await,
        }
        result
    }
}

/// The upload profile of `host`: by its name, or Harbor's once its token
/// challenge announced Harbor (see [`profiles::for_token_service`]).
async fn base_profile(host: &Host) -> Profile {
    let auth = host.auth.lock().await;
    let (realm, service) = match &auth.scheme {
        Scheme::Bearer { realm, service } => (Some(realm.as_str()), service.as_deref()),
        _ => (None, None),
    };
    let profile = profiles::for_token_service(&host.name, realm, service);
    if profile.family != profiles::family_of(&host.name) {
        tracing::debug!(registry = %host.name, profile = %profile, "upload profile chosen from the token challenge");
    }
    profile
}

/// One blob upload into an open session.
struct Upload<'a> {
    session: UploadSession,
    digest: &'a Digest,
    host: &'a Host,
    target: String,
    scopes: Scopes,
    /// The real error of the verifying stream, which reqwest only sees as
    /// a broken body.
    failure: Arc<Mutex<Option<Error>>>,
}

impl Upload<'_> {
    /// The verifying stream's error, once.
    fn taken(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A request of this upload; with `bytes`, a body's content type.
    fn request(&self, method: Method, url: Url, bytes: bool) -> Request {
        let mut req = Remote::request(
            Op::PutBlob,
            self.target.clone(),
            self.session.repo.repository(),
            method,
            url,
            self.scopes.clone(),
        );
        if bytes {
            req.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        req
    }

    /// `url` with the `digest` query that commits the upload.
    fn committing(&self, mut url: Url) -> Url {
        url.query_pairs_mut()
            .append_pair("digest", &self.digest.to_string());
        url
    }

    /// One streamed PUT of the whole blob. `Ok(Some((status, text)))`: the
    /// registry refused the body's size or shape (411, 413), in its words.
    async fn whole(&self, verified: VerifyingStream, size: u64) -> Result<Option<(u16, String)>> {
        let url = self.committing(self.session.location.clone());
        let mut req = self.request(Method::PUT, url, true);
        req.pass_statuses = &[411, 413];
        let (body, progress) = crate::registry::guard::Stamped::new(Box::pin(verified), size);
        let body = self.host.bandwidth.pace(Box::pin(body));
        req.body = Body::Stream(body, size);
        // A streamed PUT has no overall deadline (blobs may be large); it
        // ends when the target stops taking bytes or does not answer the
        // finished body.
        let result = super::adaptive::send_streamed(self.host, req, progress, &self.target).await;
        if let Some(e) = self.taken() {
            return Err(e);
        }
        let resp = result?;
        if resp.status().is_success() {
            return Ok(None);
        }
        let status = resp.status().as_u16();
        Ok(Some((status, super::adaptive::refusal_text(resp).await)))
    }

    /// The error after the registry refused the whole body: retryable
    /// (the transfer starts again, in parts) when the plan has parts left
    /// to try, else the registry's words and the blob's size.
    fn refused_whole(&self, plan: &mut Plan, status: u16, text: String, size: u64) -> Error {
        let retry = classify(status, &text).map(|r| plan.after_refusal(Step::Monolithic, r, size));
        match retry {
            Some(Ok(Step::Chunked { part })) => Error::Connection {
                op: Op::PutBlob,
                target: self.target.clone(),
                detail: format!(
                    "the registry refused the blob as one body of {size} bytes (HTTP {status}: \
                     {text}); it is sent again in parts of {part} bytes"
                ),
            },
            Some(Err(e)) => Error::BadResponse {
                op: Op::PutBlob,
                target: self.target.clone(),
                detail: format!(
                    "the registry refused a body of {size} bytes (HTTP {status}: {text}), and {e}"
                ),
            },
            _ => Error::BadResponse {
                op: Op::PutBlob,
                target: self.target.clone(),
                detail: format!(
                    "the registry refused a body of {size} bytes (HTTP {status}: {text})"
                ),
            },
        }
    }

    /// `PATCH` parts sized by `plan` (shrunk on refusals, resumed from the
    /// session's `Range` after breaks), then a closing `PUT`; the session is
    /// cancelled on failure (see [`chunked`]).
    async fn adaptive(&self, verified: VerifyingStream, plan: &mut Plan, size: u64) -> Result<()> {
        let wire = super::adaptive::HttpWire {
            host: self.host,
            repo: &self.session.repo,
            target: self.target.clone(),
            scopes: self.scopes.clone(),
            digest: self.digest,
        };
        let location = self.session.location.to_string();
        let sent =
            chunked::send(&wire, Box::pin(verified), plan, self.digest, size, location).await;
        match sent {
            Ok(report) => {
                tracing::debug!(target_ref = %self.target, parts = report.parts, resumes = report.resumes, resent = report.resent, "blob uploaded in parts");
                Ok(())
            }
            Err(f) => Err(self.chunked_error(f, size)),
        }
    }

    fn chunked_error(&self, f: Failure<Error>, size: u64) -> Error {
        let target = self.target.clone();
        match f {
            Failure::Source(e) => self.taken().unwrap_or(e),
            Failure::Digest { actual } => Error::DigestMismatch {
                op: Op::PutBlob,
                target,
                expected: self.digest.clone(),
                actual,
            },
            Failure::Size { actual } => Error::SizeMismatch {
                op: Op::PutBlob,
                target,
                expected: size,
                actual,
            },
            Failure::Refused { status, text, body } => Error::BadResponse {
                op: Op::PutBlob,
                target,
                detail: format!(
                    "the registry refused a body of {body} bytes of this {size}-byte blob \
                     (HTTP {status}: {text})"
                ),
            },
            Failure::Plan(e) => Error::BadResponse {
                op: Op::PutBlob,
                target,
                detail: format!("uploading this {size}-byte blob: {e}"),
            },
            Failure::Broken { detail, offset } => Error::Connection {
                op: Op::PutBlob,
                target,
                detail: format!(
                    "{detail} (after {offset} of {size} bytes; the upload session could not be resumed)"
                ),
            },
        }
    }
}

/// Hashes and counts bytes as they pass. The last chunk is held back until
/// the source ends and the digest and size are checked, so a mismatch aborts
/// the upload before the registry has the whole body and can commit it.
struct VerifyingStream {
    inner: ByteStream,
    verifier: Option<Verifier>,
    size: u64,
    target: String,
    failure: Arc<Mutex<Option<Error>>>,
    held: Option<Bytes>,
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(v) = this.verifier.as_mut() else {
                return Poll::Ready(this.held.take().map(Ok));
            };
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    v.update(&b);
                    if v.len() > this.size {
                        let e = Error::SizeMismatch {
                            op: Op::PutBlob,
                            target: this.target.clone(),
                            expected: this.size,
                            actual: v.len(),
                        };
                        return Poll::Ready(Some(Err(this.fail(e))));
                    }
                    if b.is_empty() {
                        continue;
                    }
                    if let Some(prev) = this.held.replace(b) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(this.fail(e)))),
                Poll::Ready(None) => {
                    let v = this.verifier.take().expect("checked above");
                    let len = v.len();
                    if len != this.size {
                        let e = Error::SizeMismatch {
                            op: Op::PutBlob,
                            target: this.target.clone(),
                            expected: this.size,
                            actual: len,
                        };
                        return Poll::Ready(Some(Err(this.fail(e))));
                    }
                    let expected = self_expected(&this.target);
                    if let Err(actual) = v.finish() {
                        let e = Error::DigestMismatch {
                            op: Op::PutBlob,
                            target: this.target.clone(),
                            expected: expected.unwrap_or_else(|| actual.clone()),
                            actual,
                        };
                        this.held = None;
                        return Poll::Ready(Some(Err(this.fail(e))));
                    }
                    return Poll::Ready(this.held.take().map(Ok));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl VerifyingStream {
    /// Keep the real error for the caller (reqwest wraps body errors) and
    /// hand reqwest a copy that aborts the request.
    fn fail(&mut self, e: Error) -> Error {
        let copy = Error::Connection {
            op: Op::PutBlob,
            target: self.target.clone(),
            detail: e.to_string(),
        };
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        copy
    }
}

/// The digest named in a blob target (`name@digest`).
fn self_expected(target: &str) -> Option<Digest> {
    target.rsplit_once('@').and_then(|(_, d)| d.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn verifying_stream_passes_good_bytes_in_order() {
        let d = Digest::sha256_of(b"hello world");
        let chunks = ["hel", "", "lo ", "world"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        let s = VerifyingStream {
            inner: Box::pin(futures_util::stream::iter(chunks)),
            verifier: Some(d.verifier()),
            size: 11,
            target: format!("r/x@{d}"),
            failure: Arc::new(Mutex::new(None)),
            held: None,
        };
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        assert_eq!(out.concat(), b"hello world");
    }

    #[tokio::test]
    async fn verifying_stream_rejects_corrupt_bytes() {
        let d = Digest::sha256_of(b"hello");
        let failure = Arc::new(Mutex::new(None));
        let s = VerifyingStream {
            inner: Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from_static(
                b"hellO",
            ))])),
            verifier: Some(d.verifier()),
            size: 5,
            target: format!("r/x@{d}"),
            failure: failure.clone(),
            held: None,
        };
        let items: Vec<_> = s.collect().await;
        // The only chunk is held back and never sent: the error comes first.
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        assert!(matches!(
            failure.lock().unwrap().take(),
            Some(Error::DigestMismatch { .. })
        ));
    }
}
