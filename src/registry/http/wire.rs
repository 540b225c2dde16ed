//! Wire helpers: reading response bodies within a cap, and describing
//! transport errors without the URLs that may carry secrets.

use bytes::{Bytes, BytesMut};
use reqwest::Response;
use url::Url;

use crate::registry::error::{Error, Op, Result};

/// Most bytes of an error body read for its error codes.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Read at most `max` bytes of a body (for error bodies).
pub(crate) async fn read_limited(mut resp: Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Why [`read_capped`] stopped.
pub(crate) enum Capped {
    /// More than the cap arrived.
    TooBig,
    /// The connection broke.
    Broken(reqwest::Error),
}

/// Read a whole body, stopping as soon as more than `max` bytes arrived.
pub(crate) async fn read_capped(
    mut resp: Response,
    max: usize,
) -> std::result::Result<Bytes, Capped> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(Capped::TooBig);
    }
    let mut out = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > max {
                    return Err(Capped::TooBig);
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out.freeze()),
            Err(e) => return Err(Capped::Broken(e)),
        }
    }
}

/// `scheme://host:port` of a URL, for messages (no path: it may carry secrets).
pub(super) fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A transport error described without its URL (which may carry upload state).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the connection broke while transferring the body".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    let mut depth = 0;
    while let Some(s) = src {
        let text = s.to_string();
        if !text.is_empty() && depth < 4 {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
        depth += 1;
    }
    msg
}

/// Read a whole body of at most `max` bytes (a `what` of `target`, from
/// `registry`): an error names the limit when more arrives, and a broken
/// connection is a transient [`Error::Connection`].
pub(crate) async fn read_body(
    mut resp: Response,
    max: usize,
    op: Op,
    target: &str,
    what: &str,
    registry: &str,
) -> Result<Bytes> {
    let too_big = |n: u64| Error::Limit {
        op,
        target: target.to_string(),
        registry: registry.to_string(),
        what: format!("a {what} of at least {n} bytes"),
        limit: max as u64,
        key: None,
    };
    if let Some(len) = resp.content_length()
        && len > max as u64
    {
        return Err(too_big(len));
    }
    let mut buf = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > max {
                    return Err(too_big((buf.len() + c.len()) as u64));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(Error::Connection {
                    op,
                    target: target.to_string(),
                    detail: describe(&e),
                });
            }
        }
    }
}
