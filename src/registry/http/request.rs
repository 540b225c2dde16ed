//! A request as the HTTP stack sends it: method, URL, headers, body, the
//! scopes its token needs, and the statuses handed back rather than failed.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use crate::registry::auth::Scopes;
use crate::registry::error::Op;
use crate::registry::transport::ByteStream;

/// A request body.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// Sent once: a request with a stream body is never retried here.
    Stream(ByteStream, u64),
}

/// One request to send.
pub(crate) struct Request {
    pub op: Op,
    /// What the request is about, for errors (`host/repo:tag`).
    pub target: String,
    /// The repository the request is about: same-origin URLs must stay
    /// under `/v2/<repo>/`.
    pub repo: String,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    pub scopes: Scopes,
    /// Statuses handed back to the caller rather than turned into errors.
    pub pass_statuses: &'static [u16],
}
