//! A registry over HTTP as a [`Transport`]: one `Remote` serves every
//! registry host a client talks to, with one connection pool, one token
//! cache and the per-registry limits. The operations live in one file per
//! registry resource (manifests, blobs, uploads, tags, referrers, catalog,
//! delete); this file holds what they share.

mod adaptive;
mod blob_resume;
mod blobs;
mod catalog;
mod delete;
mod manifests;
mod referrers;
mod tags;
mod uploads;

pub use referrers::{MAX_REFERRER_PAGES, MAX_REFERRERS};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, Response};
use url::Url;

use super::auth::Scopes;
use super::config::RegistryConfig;
use super::digest::Digest;
use super::error::{Error, Op, Result};
use super::escape::shown;
use super::http::{Body, Host, Request};
use super::limits::Limits;
use super::manifest::RawManifest;
use super::reference::Reference;
use super::transport::{
    ApiAnswer, BlobReader, ByteStream, Io, ManifestHead, ManifestPut, RetryPolicy, TagListing,
    Transport, UploadSession,
};

/// Settings for a [`super::Client`] and its registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Per-registry settings; hosts not listed get the defaults.
    pub registries: Vec<RegistryConfig>,
    /// Docker `config.json` to read credentials from for hosts without any.
    pub docker_config: Option<PathBuf>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Caps and deadlines for registries without their own settings.
    pub limits: Limits,
}

/// Every registry host a client talks to over HTTP.
pub(crate) struct Remote {
    options: ClientOptions,
    shared_http: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Upload limits learned from refusals, per registry, for as long as
    /// this remote lives (one client: an `import` or `sync` run, or the
    /// `serve` daemon); never written anywhere.
    uploads: super::upload_plan::UploadMemory,
}

fn same_host(config_host: &str, registry: &str) -> bool {
    let canon = |h: &str| match h {
        "index.docker.io" | "registry-1.docker.io" => super::reference::DOCKER_HUB.to_string(),
        other => other.to_string(),
    };
    canon(config_host) == canon(registry)
}

impl Remote {
    /// Settings are checked when a registry is first used.
    pub(crate) fn new(options: ClientOptions) -> Result<Remote> {
        let shared_http = super::http::client_builder(options.limits.blob_idle_timeout)
            .build()
            .map_err(|e| Error::Config {
                host: "*".into(),
                detail: format!(
                    "cannot build the HTTP client: {}",
                    super::http::describe(&e)
                ),
            })?;
        Ok(Remote {
            options,
            shared_http,
            hosts: Mutex::new(HashMap::new()),
            uploads: super::upload_plan::UploadMemory::new(),
        })
    }

    /// The settings this remote was built with.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub(crate) fn host(&self, registry: &str) -> Result<Arc<Host>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let cfg = self
            .options
            .registries
            .iter()
            .find(|r| same_host(&r.host, registry));
        let host = Arc::new(Host::new(
            registry,
            cfg,
            self.options.docker_config.as_deref(),
            &self.options.retry,
            &self.options.limits,
            &self.shared_http,
        )?);
        hosts.insert(registry.to_string(), host.clone());
        Ok(host)
    }

    /// A request about `repo` (`""` for the API root `/v2/` itself).
    pub(crate) fn request(
        op: Op,
        target: String,
        repo: &str,
        method: Method,
        url: Url,
        scopes: Scopes,
    ) -> Request {
        Request {
            op,
            target,
            repo: repo.to_string(),
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes,
            pass_statuses: &[],
        }
    }

    /// Send a GET built by `make` and read its whole body. When the
    /// connection breaks mid-body (the status and headers had arrived, so
    /// [`Host::send`] saw a success), the request is sent again, up to the
    /// retry policy's attempts, with its backoff.
    pub(crate) async fn get_with_body(
        &self,
        host: &Host,
        make: impl Fn() -> Result<Request>,
        max: usize,
        op: Op,
        target: &str,
        what: &str,
    ) -> Result<(HeaderMap, Bytes)> {
        // Both this deadline and the one of `Host::send` inside it expire
        // together when a registry never answers; the message says which
        // phase it was in, whichever timer fires first.
        let answered = std::sync::atomic::AtomicBool::new(false);
        super::limits::within(
            host.limits.request_timeout,
            op,
            target,
            || {
                if answered.load(std::sync::atomic::Ordering::Relaxed) {
                    format!("registry {} did not send the whole {what}", host.name)
                } else {
                    format!("registry {} gave no answer", host.name)
                }
            },
            self.get_with_body_retrying(host, make, max, op, target, what, &answered),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)] // private; the arguments name one request
    async fn get_with_body_retrying(
        &self,
        host: &Host,
        make: impl Fn() -> Result<Request>,
        max: usize,
        op: Op,
        target: &str,
        what: &str,
        answered: &std::sync::atomic::AtomicBool,
    ) -> Result<(HeaderMap, Bytes)> {
        let policy = &self.options.retry;
        let started = std::time::Instant::now();
        let mut attempt = 1u32;
        loop {
            let resp = host.send(make()?).await?;
            answered.store(true, std::sync::atomic::Ordering::Relaxed);
            let headers = resp.headers().clone();
            match read_body(resp, max, op, target, what, &host.name).await {
                Ok(bytes) => return Ok((headers, bytes)),
                Err(e @ Error::Connection { .. })
                    if attempt > 1 && attempt >= policy.max_attempts =>
                {
                    return Err(Error::RetriesExhausted {
                        attempts: attempt,
                        elapsed: started.elapsed(),
                        last: Box::new(e),
                    });
                }
                Err(e @ Error::Connection { .. }) if attempt < policy.max_attempts => {
                    let delay = policy
                        .initial_backoff
                        .saturating_mul(2u32.saturating_pow(attempt - 1))
                        .min(policy.max_backoff);
                    tracing::debug!(registry = %host.name, %op, attempt, error = %e, "body interrupted; retrying");
                    crate::metrics::record_retry(&host.name);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn parse_next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        }) {
            return None;
        }
        Some(
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        )
    })
}

/// The upload `Location` of a response, resolved against the registry's base URL.
/// The URL must stay under `/v2/<repo>/` on the registry's origin, or be on
/// another origin (then sent without credentials), never a downgrade.
fn location(host: &Host, repo: &Reference, resp: &Response, op: Op, target: &str) -> Result<Url> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::BadResponse {
            op,
            target: target.to_string(),
            detail: format!(
                "the registry answered HTTP {} without a Location header",
                resp.status().as_u16()
            ),
        })?;
    let url = host.base.join(loc).map_err(|_| Error::BadResponse {
        op,
        target: target.to_string(),
        detail: format!(
            "the registry sent an unusable Location header {:?}",
            shown(loc)
        ),
    })?;
    host.check_url(op, target, repo.repository(), &url, "Location")?;
    Ok(url)
}

/// Read a whole body, refusing more than `max` bytes.
async fn read_body(
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
                    detail: super::http::describe(&e),
                });
            }
        }
    }
}

impl Transport for Remote {
    fn head_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, Option<ManifestHead>> {
        Box::pin(self.head_manifest(r))
    }
    fn get_manifest<'a>(&'a self, r: &'a Reference) -> Io<'a, RawManifest> {
        Box::pin(self.get_manifest(r))
    }
    fn put_manifest<'a>(&'a self, r: &'a Reference, m: &'a RawManifest) -> Io<'a, ManifestPut> {
        Box::pin(self.put_manifest(r, m))
    }
    fn head_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, Option<u64>> {
        Box::pin(self.head_blob(repo, d))
    }
    fn get_blob<'a>(&'a self, repo: &'a Reference, d: &'a Digest) -> Io<'a, BlobReader> {
        Box::pin(self.get_blob(repo, d))
    }
    fn get_blob_bytes<'a>(&'a self, repo: &'a Reference, d: &'a Digest, max: u64) -> Io<'a, Bytes> {
        Box::pin(self.get_blob_bytes(repo, d, max))
    }
    fn start_upload<'a>(&'a self, repo: &'a Reference) -> Io<'a, UploadSession> {
        Box::pin(self.start_upload(repo))
    }
    fn mount_blob<'a>(
        &'a self,
        repo: &'a Reference,
        d: &'a Digest,
        from: &'a Reference,
    ) -> Io<'a, Option<UploadSession>> {
        Box::pin(self.mount_blob(repo, d, from))
    }
    fn upload_blob<'a>(
        &'a self,
        session: UploadSession,
        d: &'a Digest,
        size: u64,
        body: ByteStream,
    ) -> Io<'a, ()> {
        Box::pin(self.upload_blob(session, d, size, body))
    }
    fn list_tags<'a>(&'a self, repo: &'a Reference, report: bool) -> Io<'a, TagListing> {
        Box::pin(self.list_tags(repo, report))
    }
    fn referrers<'a>(
        &'a self,
        repo: &'a Reference,
        subject: &'a Digest,
        artifact_type: Option<&'a str>,
    ) -> Io<'a, ApiAnswer> {
        Box::pin(self.referrers(repo, subject, artifact_type))
    }
    fn delete_manifest<'a>(&'a self, r: &'a Reference, pass: &'static [u16]) -> Io<'a, u16> {
        Box::pin(self.delete_manifest(r, pass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_next_link(r#"</x>; rel="prev""#), None);
    }
}
