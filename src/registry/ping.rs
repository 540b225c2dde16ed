//! Is this host a registry at all? A web server, a login page or a
//! catch-all proxy in front of the configured address answers `200` to
//! anything; without these checks such a target would be reported as
//! "copied" while holding nothing.
//!
//! - [`Client::ping`]: `GET /v2/` (without credentials: a `401` is an
//!   answer too). A registry answers `200` or `401` with the
//!   `Docker-Distribution-API-Version` header or, for an OCI registry that
//!   leaves the header out, a JSON body. An HTML page, a redirect, a `404`
//!   or a body that is not JSON is not a registry. Failures to connect or
//!   server errors tell nothing: the operations that follow report them.
//! - [`reject_html`]: manifest and blob answers carrying an HTML page.

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap};

use super::auth::Scopes;
use super::client::Client;
use super::error::{Error, Op, Result};
use super::reference::Reference;

/// The header every distribution registry sends on `/v2/`.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// Largest `/v2/` body read.
const MAX_PING_BODY: usize = 64 * 1024;

/// What `GET /v2/` says about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingVerdict {
    /// It speaks the distribution API.
    Registry,
    /// No usable answer (connection failure, server error): unknown.
    Unknown,
    /// It is not a registry; why.
    NotRegistry(String),
}

/// Judge a `/v2/` answer from its status, headers and body.
pub fn judge(status: u16, headers: &HeaderMap, body: &[u8]) -> PingVerdict {
    let html = is_html(headers);
    match status {
        200 | 401 if html => {
            PingVerdict::NotRegistry(format!("GET /v2/ answered HTTP {status} with an HTML page"))
        }
        200 | 401 if headers.contains_key(API_VERSION_HEADER) => PingVerdict::Registry,
        200 | 401 if status == 401 || serde_json::from_slice::<serde_json::Value>(body).is_ok() => {
            PingVerdict::Registry
        }
        200 => PingVerdict::NotRegistry(
            "GET /v2/ answered HTTP 200 without the Docker-Distribution-API-Version header and \
             with a body that is not JSON"
                .to_string(),
        ),
        300..=399 => PingVerdict::NotRegistry(format!(
            "GET /v2/ answered with a redirect (HTTP {status}) instead of the registry API"
        )),
        404 | 405 => PingVerdict::NotRegistry(format!(
            "GET /v2/ answered HTTP {status}: there is no registry API at this address"
        )),
        _ if html && status < 500 => {
            PingVerdict::NotRegistry(format!("GET /v2/ answered HTTP {status} with an HTML page"))
        }
        _ => PingVerdict::Unknown,
    }
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
        .is_some_and(|ct| ct == "text/html" || ct == "application/xhtml+xml")
}

/// The error for a host that is not a registry.
pub fn not_a_registry(op: Op, host: &str, why: &str) -> Error {
    Error::BadResponse {
        op,
        target: host.to_string(),
        detail: format!(
            "{host} is not a container registry: {why}; check the host and port (a web server, \
             login page or proxy may be answering in its place); nothing was written there"
        ),
    }
}

/// Fail when an answer about a manifest or blob is an HTML page: no
/// registry serves one, a web server or login page in its place does.
pub fn reject_html(op: Op, target: &str, headers: &HeaderMap) -> Result<()> {
    if !is_html(headers) {
        return Ok(());
    }
    let host = target.split('/').next().unwrap_or(target);
    Err(not_a_registry(
        op,
        host,
        &format!("it answered {op} {target} with an HTML page"),
    ))
}

impl Client {
    /// Check that `registry` answers as a registry on `GET /v2/` (see the
    /// module docs). `Ok` also when the answer tells nothing.
    pub async fn ping(&self, r: &Reference) -> Result<PingVerdict> {
        let Some(registry) = r.registry_host() else {
            return Ok(PingVerdict::Registry);
        };
        let host = self.host(registry)?;
        let mut req = Client::request(
            Op::Setup,
            registry.to_string(),
            "",
            Method::GET,
            host.url("", &[]),
            Scopes::default(),
        );
        req.pass_statuses = &[401, 403, 404, 405];
        let resp = match host.send(req).await {
            Ok(r) => r,
            Err(e) if matches!(e, Error::Tls { .. } | Error::Config { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(registry, error = %e, "GET /v2/ failed; not judged");
                return Ok(PingVerdict::Unknown);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_capped(resp).await;
        let verdict = judge(status, &headers, &body);
        tracing::debug!(registry, status, ?verdict, "GET /v2/");
        match &verdict {
            PingVerdict::NotRegistry(why) => Err(not_a_registry(Op::Setup, registry, why)),
            _ => Ok(verdict),
        }
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_PING_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_PING_BODY {
            break;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn registries_are_recognised() {
        let api = headers(&[(API_VERSION_HEADER, "registry/2.0")]);
        assert_eq!(judge(200, &api, b"{}"), PingVerdict::Registry);
        assert_eq!(judge(401, &api, b""), PingVerdict::Registry);
        // An OCI registry without the header, answering JSON.
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(judge(200, &json, b"{}"), PingVerdict::Registry);
        assert_eq!(judge(401, &HeaderMap::new(), b""), PingVerdict::Registry);
        assert_eq!(judge(503, &HeaderMap::new(), b""), PingVerdict::Unknown);
        assert_eq!(judge(403, &HeaderMap::new(), b""), PingVerdict::Unknown);
    }

    #[test]
    fn web_servers_are_not_registries() {
        let html = headers(&[("content-type", "text/html; charset=utf-8")]);
        for status in [200, 401, 403] {
            assert!(
                matches!(judge(status, &html, b"<html>"), PingVerdict::NotRegistry(_)),
                "{status}"
            );
        }
        // Even with the header, an HTML page is not the API.
        let mut both = html.clone();
        both.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
        assert!(matches!(
            judge(200, &both, b"<html>"),
            PingVerdict::NotRegistry(_)
        ));
        let plain = headers(&[("content-type", "text/plain")]);
        assert!(matches!(
            judge(200, &plain, b"hello"),
            PingVerdict::NotRegistry(_)
        ));
        assert!(matches!(
            judge(302, &HeaderMap::new(), b""),
            PingVerdict::NotRegistry(_)
        ));
        assert!(matches!(
            judge(404, &HeaderMap::new(), b""),
            PingVerdict::NotRegistry(_)
        ));
    }

    #[test]
    fn html_answers_name_the_host() {
        let html = headers(&[("content-type", "text/html")]);
        let e = reject_html(Op::HeadManifest, "example.test:5000/a/b:1", &html)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("example.test:5000 is not a container registry"),
            "{e}"
        );
        assert!(reject_html(Op::HeadManifest, "h/a:1", &HeaderMap::new()).is_ok());
    }
}
