//! A registry over HTTP as a [`Transport`]: one `Remote` serves every
//! registry host a client talks to, with one connection pool, one token
//! cache and the per-registry limits. The operations live in one file per
//! registry resource beside this one (manifests, blobs, uploads, tags,
//! referrers, catalog, delete); this file holds what they share.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, Response};
use url::Url;

use crate::registry::auth::Scopes;
use crate::registry::config::RegistryConfig;
use crate::registry::digest::Digest;
use crate::registry::error::{Error, Op, Result};
use crate::registry::escape::shown;
use crate::registry::http::{Body, Host, Request};
use crate::registry::limits::Limits;
use crate::registry::manifest::RawManifest;
use crate::registry::reference::Reference;
use crate::registry::transport::{
    ApiAnswer, BlobReader, ByteStream, Io, ManifestHead, ManifestPut, RetryPolicy, TagListing,
    Transport, UploadSession,
};

/// Settings for a [`crate::registry::Client`] and its registries.
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
    pub(super) uploads: crate::registry::upload_plan::UploadMemory,
}

fn same_host(config_host: &str, registry: &str) -> bool {
    let canon = |h: &str| match h {
        "index.docker.io" | "registry-1.docker.io" => {
            crate::registry::reference::DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    };
    canon(config_host) == canon(registry)
}

impl Remote {
    /// Settings are checked when a registry is first used.
    pub(crate) fn new(options: ClientOptions) -> Result<Remote> {
        let shared_http = crate::registry::http::client_builder(options.limits.blob_idle_timeout)
            .build()
            .map_err(|e| Error::Config {
                host: "*".into(),
                detail: format!(
                    "cannot build the HTTP client: {}",
                    crate::registry::http::describe(&e)
                ),
            })?;
        Ok(Remote {
            options,
            shared_http,
            hosts: Mutex::new(HashMap::new()),
            uploads: crate::registry::upload_plan::UploadMemory::new(),
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

    /// A new run begins: every host reads its static credentials again at
    /// next use and drops the bearer tokens of the old ones.
    pub(crate) async fn renew_credentials(&self) {
        let hosts: Vec<Arc<Host>> = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for h in hosts {
            h.renew_credentials().await;
        }
    }

    /// Repositories created since the last call, every host (`host/repo`).
    pub(crate) fn take_created_repositories(&self) -> Vec<String> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<String> = hosts
            .values()
            .flat_map(|h| h.take_created_repositories())
            .collect();
        all.sort();
        all
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

    /// Send a GET built by `make` and read its whole body (at most `max`
    /// bytes); errors name `op` and `target`. One retry loop and one
    /// deadline cover the request and its body: see [`Host::get_body`].
    pub(crate) async fn get_with_body(
        &self,
        host: &Host,
        make: impl Fn() -> Result<Request>,
        max: usize,
        op: Op,
        target: &str,
        what: &str,
    ) -> Result<(HeaderMap, Bytes)> {
        let mut req = make()?;
        (req.op, req.target) = (op, target.to_string());
        host.get_body(req, max, what).await
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
pub(super) fn location(
    host: &Host,
    repo: &Reference,
    resp: &Response,
    op: Op,
    target: &str,
) -> Result<Url> {
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
