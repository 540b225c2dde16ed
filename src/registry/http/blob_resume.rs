//! Blob downloads continued after a break: the `Range` GET that
//! [`resume`](crate::registry::resume) asks for when a blob's byte stream
//! breaks, taken as a continuation only when its `Content-Range` proves it.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{CONTENT_RANGE, HeaderValue, RANGE};
use url::Url;

use super::Host;
use super::remote::Remote;
use crate::registry::auth::Scopes;
use crate::registry::error::{Error, Op};
use crate::registry::resume::{Chunks, Reopen, Reopened};
use crate::registry::upload_plan::resumes_at;

/// The `Range` GET of one blob.
pub(super) struct RangeGet {
    pub host: Arc<Host>,
    pub url: Url,
    pub repository: String,
    pub target: String,
    pub size: u64,
}

/// The byte stream of a blob answer, with connection errors named.
pub(super) fn body_of(resp: reqwest::Response, target: String) -> Chunks<Error> {
    Box::pin(resp.bytes_stream().map(move |r| {
        r.map_err(|e| Error::Connection {
            op: Op::GetBlob,
            target: target.clone(),
            detail: crate::registry::http::describe(&e),
        })
    }))
}

impl Reopen<Error> for RangeGet {
    fn reopen(&self, offset: u64) -> BoxFuture<'static, Reopened<Error>> {
        let host = self.host.clone();
        let mut req = Remote::request(
            Op::GetBlob,
            self.target.clone(),
            &self.repository,
            Method::GET,
            self.url.clone(),
            Scopes::pull(&self.repository),
        );
        let range = HeaderValue::from_str(&format!("bytes={offset}-")).expect("digits");
        req.headers.insert(RANGE, range);
        let (target, size) = (self.target.clone(), self.size);
        Box::pin(async move {
            let resp = match host.send(req).await {
                Ok(r) => r,
                Err(e) => return Reopened::Failed(e),
            };
            let proven = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| resumes_at(v, offset, size));
            match resp.status().as_u16() {
                206 if proven => Reopened::Resumed(body_of(resp, target)),
                200 => Reopened::Whole(body_of(resp, target)),
                status => Reopened::Failed(Error::BadResponse {
                    op: Op::GetBlob,
                    target,
                    detail: format!(
                        "asked for the blob from byte {offset}, the registry answered HTTP {status} \
                         without a Content-Range that matches"
                    ),
                }),
            }
        })
    }
}
