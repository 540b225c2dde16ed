//! Adaptive blob uploads over HTTP: the [`Wire`] of one upload session (the
//! `PATCH`, status `GET`, closing `PUT` and `DELETE` that
//! [`chunked`](crate::registry::chunked) drives), and the refusal text of a
//! registry, escaped, for errors.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LOCATION, RANGE};
use reqwest::{Method, Response};
use url::Url;

use super::remote::{Remote, location};
use super::{Body, Host, Request};
use crate::registry::auth::Scopes;
use crate::registry::chunked::{Answer, Wire};
use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::reference::Reference;
use crate::registry::upload_plan::next_offset;

/// Statuses of upload requests handed back as refusals rather than errors.
pub(super) const REFUSALS: &[u16] = &[400, 404, 405, 409, 411, 413, 416];
/// Most bytes of a refusal's text read and shown.
const MAX_REFUSAL_TEXT: usize = 2048;

/// The requests of one upload session on one host.
pub(super) struct HttpWire<'a> {
    pub host: &'a Host,
    pub repo: &'a Reference,
    pub target: String,
    pub scopes: Scopes,
    pub digest: &'a Digest,
}

/// A registry's refusal text, read up to a cap and escaped.
pub(super) async fn refusal_text(mut resp: Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_REFUSAL_TEXT.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_REFUSAL_TEXT {
            break;
        }
    }
    shown(String::from_utf8_lossy(&bytes).trim())
}

/// `OCI-Chunk-Min-Length` of an answer.
pub(super) fn chunk_min(resp: &Response) -> Option<u64> {
    resp.headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl HttpWire<'_> {
    fn request(&self, method: Method, url: Url) -> Request {
        let mut req = Remote::request(
            Op::PutBlob,
            self.target.clone(),
            self.repo.repository(),
            method,
            url,
            self.scopes.clone(),
        );
        req.pass_statuses = REFUSALS;
        req
    }

    fn url(&self, location: &str) -> Option<Url> {
        Url::parse(location).ok()
    }

    /// The answer to a sent request, with the session's next location.
    async fn answer(&self, sent: crate::registry::error::Result<Response>) -> Answer {
        let resp = match sent {
            Ok(r) => r,
            Err(e @ Error::Status { .. }) => {
                let status = e.status().unwrap_or(0);
                return Answer::Refused {
                    status,
                    text: e.to_string(),
                };
            }
            Err(e) => {
                return Answer::Broken {
                    detail: e.to_string(),
                };
            }
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Answer::Refused {
                status,
                text: refusal_text(resp).await,
            };
        }
        let next = resp
            .headers()
            .contains_key(LOCATION)
            .then(|| location(self.host, self.repo, &resp, Op::PutBlob, &self.target));
        match next {
            Some(Err(e)) => Answer::Refused {
                status,
                text: e.to_string(),
            },
            Some(Ok(url)) => Answer::Accepted {
                location: Some(url.to_string()),
                chunk_min: chunk_min(&resp),
            },
            None => Answer::Accepted {
                location: None,
                chunk_min: chunk_min(&resp),
            },
        }
    }
}

impl HttpWire<'_> {
    /// Send a `PATCH` whose `part` streams at the registry's caps (see
    /// [`bandwidth`](super::bandwidth)). Like a monolithic upload it is
    /// sent once (a break is resumed by [`chunked`](crate::registry::chunked)
    /// from the session's `Range`) and ends when the registry stops taking
    /// bytes or does not answer the finished body.
    async fn paced_patch(&self, mut req: Request, part: Bytes) -> Result<Response> {
        let len = part.len() as u64;
        let (body, progress) =
            crate::registry::guard::Stamped::new(super::bandwidth::pieces(part), len);
        req.body = Body::Stream(self.host.bandwidth.pace(Box::pin(body)), len);
        send_streamed(self.host, req, progress, &self.target).await
    }
}

/// Send an upload request whose body streams (stamping `progress`): it
/// ends when the registry stops taking bytes for the idle timeout, or does
/// not answer the finished body within the request timeout.
pub(super) async fn send_streamed(
    host: &Host,
    req: Request,
    progress: std::sync::Arc<crate::registry::guard::Progress>,
    target: &str,
) -> Result<Response> {
    let limits = &host.limits;
    let stalled = crate::registry::guard::stalled_upload(
        progress,
        limits.blob_idle_timeout,
        limits.request_timeout,
    );
    tokio::select! {
        r = host.send(req) => r,
        (what, after) = stalled => Err(Error::Timeout {
            op: Op::PutBlob,
            target: target.to_string(),
            what,
            after,
        }),
    }
}

impl Wire for HttpWire<'_> {
    fn patch<'a>(&'a self, location: &'a str, start: u64, part: Bytes) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let Some(url) = self.url(location) else {
                return Answer::Broken {
                    detail: format!("unusable upload location {}", shown(location)),
                };
            };
            let mut req = self.request(Method::PATCH, url);
            let end = start + part.len() as u64 - 1;
            req.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let range = HeaderValue::from_str(&format!("{start}-{end}")).expect("digits");
            req.headers.insert(CONTENT_RANGE, range);
            if !self.host.bandwidth.is_capped() {
                req.body = Body::Bytes(part);
                return self.answer(self.host.send(req).await).await;
            }
            self.answer(self.paced_patch(req, part).await).await
        })
    }

    fn status<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Option<(u64, Option<String>)>> {
        Box::pin(async move {
            let mut req = self.request(Method::GET, self.url(location)?);
            req.op = Op::PutBlob;
            let resp = self.host.send(req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let range = resp.headers().get(RANGE)?.to_str().ok()?;
            let next = next_offset(range)?;
            let loc = location_of(self, &resp);
            Some((next, loc))
        })
    }

    fn commit<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let Some(mut url) = self.url(location) else {
                return Answer::Broken {
                    detail: format!("unusable upload location {}", shown(location)),
                };
            };
            url.query_pairs_mut()
                .append_pair("digest", &self.digest.to_string());
            let req = self.request(Method::PUT, url);
            self.answer(self.host.send(req).await).await
        })
    }

    fn cancel<'a>(&'a self, location: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(url) = self.url(location) else {
                return;
            };
            let mut req = self.request(Method::DELETE, url);
            req.pass_statuses = &[400, 404, 405, 409];
            if let Err(e) = self.host.send(req).await {
                tracing::debug!(target_ref = %self.target, error = %e, "cancelling the upload session failed");
            }
        })
    }
}

fn location_of(wire: &HttpWire<'_>, resp: &Response) -> Option<String> {
    if !resp.headers().contains_key(LOCATION) {
        return None;
    }
    location(wire.host, wire.repo, resp, Op::PutBlob, &wire.target)
        .ok()
        .map(|u| u.to_string())
}
