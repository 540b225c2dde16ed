//! The registry client: one `Client` shared by all tasks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response};
use url::Url;

use super::auth::Scopes;
use super::config::RegistryConfig;
use super::digest::{Digest, Verifier};
use super::error::{Error, Op, Result};
use super::escape::shown;
use super::http::{Body, Host, Request};
use super::limits::{Limits, MAX_TAG_PAGE_BYTES};
use super::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, RawManifest};
use super::reference::Reference;
use super::transport::{
    BlobReader, ByteStream, ManifestHead, RetryPolicy, TagListing, UploadSession,
};

/// Settings for a [`Client`].
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

/// The registry client. Clone is cheap; all clones share one connection
/// pool, one token cache and the per-registry limits.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    shared_http: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    layouts: super::layout::Layouts,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registries", &self.inner.options.registries)
            .finish()
    }
}

fn same_host(config_host: &str, registry: &str) -> bool {
    let canon = |h: &str| match h {
        "index.docker.io" | "registry-1.docker.io" => super::reference::DOCKER_HUB.to_string(),
        other => other.to_string(),
    };
    canon(config_host) == canon(registry)
}

impl Client {
    /// Build a client. Per-registry settings are checked when a registry is
    /// first used.
    pub fn new(options: ClientOptions) -> Result<Client> {
        let shared_http = super::http::client_builder(options.limits.blob_idle_timeout)
            .build()
            .map_err(|e| Error::Config {
                host: "*".into(),
                detail: format!(
                    "cannot build the HTTP client: {}",
                    super::http::describe(&e)
                ),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                shared_http,
                hosts: Mutex::new(HashMap::new()),
                layouts: Default::default(),
            }),
        })
    }

    /// The image layouts and archives this client has opened.
    pub(crate) fn layouts(&self) -> &super::layout::Layouts {
        &self.inner.layouts
    }

    /// The retry policy requests of this client follow.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.options.retry
    }

    pub(super) fn host(&self, registry: &str) -> Result<Arc<Host>> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let cfg = self
            .inner
            .options
            .registries
            .iter()
            .find(|r| same_host(&r.host, registry));
        let host = Arc::new(Host::new(
            registry,
            cfg,
            self.inner.options.docker_config.as_deref(),
            &self.inner.options.retry,
            &self.inner.options.limits,
            &self.inner.shared_http,
        )?);
        hosts.insert(registry.to_string(), host.clone());
        Ok(host)
    }

    /// Check that the settings of `registry` are usable (credentials
    /// readable, CA file valid) without sending anything.
    pub fn check_registry(&self, registry: &str) -> Result<()> {
        if super::layout::is_layout_key(registry) {
            return Ok(());
        }
        self.host(registry).map(|_| ())
    }

    /// The caps and deadlines that apply to `registry`.
    pub fn limits(&self, registry: &str) -> Result<Limits> {
        if super::layout::is_layout_key(registry) {
            return Ok(self.inner.options.limits.clone());
        }
        Ok(self.host(registry)?.limits.clone())
    }

    /// A request about `repo` (`""` for the API root `/v2/` itself).
    pub(super) fn request(
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
    pub(super) async fn get_with_body(
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

    fn manifest_request(
        &self,
        r: &Reference,
        op: Op,
        method: Method,
    ) -> Result<(Arc<Host>, Request)> {
        let host = self.host(r.registry())?;
        let url = host.url(r.repository(), &["manifests", &r.manifest_reference()]);
        let scopes = if method == Method::PUT {
            Scopes::push(r.repository())
        } else {
            Scopes::pull(r.repository())
        };
        let mut req = Self::request(op, r.to_string(), r.repository(), method, url, scopes);
        req.headers
            .insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        Ok((host, req))
    }

    /// HEAD a manifest; `None` when it does not exist.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<ManifestHead>> {
        if let Some(layout) = self.layout_of(r)? {
            return layout.head_manifest(r).await;
        }
        let (host, mut req) = self.manifest_request(r, Op::HeadManifest, Method::HEAD)?;
        req.pass_statuses = &[404];
        let resp = host.send(req).await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        super::ping::reject_html(Op::HeadManifest, &r.to_string(), resp.headers())?;
        let h = resp.headers();
        Ok(Some(ManifestHead {
            digest: h
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            media_type: h
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string()),
            size: h
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }))
    }

    /// GET a manifest's raw bytes; verified when `r` has a digest, and
    /// checked against `Docker-Content-Digest` when the registry sends one.
    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        if let Some(layout) = self.layout_of(r)? {
            return layout.get_manifest(r).await;
        }
        let host = self.host(r.registry())?;
        let target = r.to_string();
        let (headers, bytes) = self
            .get_with_body(
                &host,
                || Ok(self.manifest_request(r, Op::GetManifest, Method::GET)?.1),
                MAX_MANIFEST_BYTES,
                Op::GetManifest,
                &target,
                "manifest",
            )
            .await?;
        super::ping::reject_html(Op::GetManifest, &target, &headers)?;
        let header_digest: Option<Digest> = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut raw = RawManifest::new(bytes, content_type.as_deref());
        let expected = r.digest().cloned().or(header_digest);
        if let Some(expected) = expected {
            let actual = expected.of_same_algorithm(&raw.bytes);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    op: Op::GetManifest,
                    target,
                    expected,
                    actual,
                });
            }
            raw.digest = expected;
        }
        Ok(raw)
    }

    /// PUT a manifest's raw bytes under `r`'s tag, or its digest when `r` has
    /// no tag. Returns the digest the registry reports; an error if the
    /// registry reports another digest than that of the bytes sent.
    pub async fn put_manifest(&self, r: &Reference, m: &RawManifest) -> Result<Digest> {
        if let Some(layout) = self.layout_of(r)? {
            return layout.put_manifest(r, m).await;
        }
        let r = match r.tag() {
            Some(_) => r.without_digest(),
            None => r.with_digest(m.digest.clone()),
        };
        let (host, mut req) = self.manifest_request(&r, Op::PutManifest, Method::PUT)?;
        req.headers.remove(ACCEPT);
        req.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&m.media_type).map_err(|_| Error::BadResponse {
                op: Op::PutManifest,
                target: r.to_string(),
                detail: format!("media type {:?} cannot be sent as a header", m.media_type),
            })?,
        );
        req.body = Body::Bytes(m.bytes.clone());
        let resp = host.send(req).await?;
        super::referrers::note_subject_header(&r, &m.digest, resp.headers());
        let reported: Option<Digest> = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match reported {
            Some(d) if d.algorithm() == m.digest.algorithm() && d == m.digest => Ok(d),
            Some(d) if d.algorithm() == m.digest.algorithm() => Err(Error::ManifestRewritten {
                op: Op::PutManifest,
                target: r.to_string(),
                sent: m.digest.clone(),
                stored: d,
            }),
            // No usable digest header (missing, malformed, another
            // algorithm): ask the registry whether it serves our bytes.
            _ => self.confirm_manifest(&r, &m.digest).await,
        }
    }

    /// After a PUT without a usable `Docker-Content-Digest`: a HEAD by
    /// digest must find the manifest under the digest of the bytes sent.
    async fn confirm_manifest(&self, r: &Reference, digest: &Digest) -> Result<Digest> {
        let by_digest = r.repository_only().with_digest(digest.clone());
        match self.head_manifest(&by_digest).await? {
            Some(head) if head.digest.as_ref().is_none_or(|d| d == digest) => Ok(digest.clone()),
            Some(head) => Err(Error::ManifestRewritten {
                op: Op::PutManifest,
                target: r.to_string(),
                sent: digest.clone(),
                stored: head.digest.unwrap_or_else(|| digest.clone()),
            }),
            None => Err(Error::BadResponse {
                op: Op::PutManifest,
                target: r.to_string(),
                detail: format!(
                    "the registry accepted the manifest without confirming its digest, and it does \
                     not serve {digest}: it may have rewritten the manifest, and the tag may have \
                     moved to content that is not the source's"
                ),
            }),
        }
    }

    fn blob_target(repo: &Reference, d: &Digest) -> String {
        format!("{}@{d}", repo.name())
    }

    /// HEAD a blob; its size, or `None` when missing.
    pub async fn head_blob(&self, repo: &Reference, d: &Digest) -> Result<Option<u64>> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.head_blob(d).await;
        }
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
        super::ping::reject_html(Op::HeadBlob, &Self::blob_target(repo, d), resp.headers())?;
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
    pub async fn get_blob(&self, repo: &Reference, d: &Digest) -> Result<BlobReader> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.get_blob(d).await;
        }
        let host = self.host(repo.registry())?;
        let url = host.url(repo.repository(), &["blobs", &d.to_string()]);
        let target = Self::blob_target(repo, d);
        let req = Self::request(
            Op::GetBlob,
            target.clone(),
            repo.repository(),
            Method::GET,
            url,
            Scopes::pull(repo.repository()),
        );
        let resp = host.send(req).await?;
        let size = resp.content_length();
        let broken = target.clone();
        let stream = resp.bytes_stream().map(move |r| {
            r.map_err(|e| Error::Connection {
                op: Op::GetBlob,
                target: broken.clone(),
                detail: super::http::describe(&e),
            })
        });
        let guarded = super::guard::GuardedStream::new(
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
    pub async fn get_blob_bytes(&self, repo: &Reference, d: &Digest, max: u64) -> Result<Bytes> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.get_blob_bytes(d, max).await;
        }
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

    /// Open an upload session in `repo`.
    pub async fn start_upload(&self, repo: &Reference) -> Result<UploadSession> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.start_upload(repo).await;
        }
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
        })
    }

    /// Try to mount `d` from `from` (same registry) into `repo`. `Ok(None)`:
    /// mounted; `Ok(Some(session))`: the registry opened an upload instead
    /// (HTTP 202), to be finished with [`Client::upload_blob`].
    pub async fn mount_blob(
        &self,
        repo: &Reference,
        d: &Digest,
        from: &Reference,
    ) -> Result<Option<UploadSession>> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.start_upload(repo).await.map(Some);
        }
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
        }))
    }

    /// Upload a blob's bytes into a session and commit it. The bytes are
    /// hashed while they stream; on a digest or size mismatch the upload is
    /// aborted before the commit, so nothing is written.
    pub async fn upload_blob(
        &self,
        session: UploadSession,
        d: &Digest,
        size: u64,
        body: ByteStream,
    ) -> Result<()> {
        if let Some(layout) = self.layout_of(&session.repo)? {
            return layout.upload_blob(d, size, body).await;
        }
        let host = self.host(session.repo.registry())?;
        let target = Self::blob_target(&session.repo, d);
        let failure = Arc::new(Mutex::new(None));
        let verified = VerifyingStream {
            inner: body,
            verifier: Some(d.verifier()),
            size,
            target: target.clone(),
            failure: failure.clone(),
            held: None,
        };
        let taken = |failure: &Arc<Mutex<Option<Error>>>| {
            failure.lock().unwrap_or_else(|p| p.into_inner()).take()
        };
        let scopes = Scopes::push(session.repo.repository());
        match host.chunk_size {
            None => {
                let mut url = session.location.clone();
                url.query_pairs_mut().append_pair("digest", &d.to_string());
                let mut req = Self::request(
                    Op::PutBlob,
                    target.clone(),
                    session.repo.repository(),
                    Method::PUT,
                    url,
                    scopes,
                );
                req.headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let (body, progress) = super::guard::Stamped::new(Box::pin(verified), size);
                req.body = Body::Stream(Box::pin(body), size);
                // A streamed PUT has no overall deadline (blobs may be
                // large); it ends when the target stops taking bytes or
                // does not answer the finished body.
                let limits = &host.limits;
                let stalled = super::guard::stalled_upload(
                    progress,
                    limits.blob_idle_timeout,
                    limits.request_timeout,
                );
                let result = tokio::select! {
                    r = host.send(req) => r,
                    (what, after) = stalled => Err(Error::Timeout {
                        op: Op::PutBlob,
                        target: target.clone(),
                        what,
                        after,
                    }),
                };
                if let Some(e) = taken(&failure) {
                    return Err(e);
                }
                result.map(|_| ())
            }
            Some(chunk) => {
                let mut location = session.location.clone();
                let mut offset = 0u64;
                let mut stream = Box::pin(verified);
                let mut buf = BytesMut::new();
                let mut done = false;
                while !done {
                    while (buf.len() as u64) < chunk {
                        match stream.next().await {
                            Some(Ok(b)) => buf.extend_from_slice(&b),
                            Some(Err(e)) => return Err(taken(&failure).unwrap_or(e)),
                            None => {
                                done = true;
                                break;
                            }
                        }
                    }
                    if let Some(e) = taken(&failure) {
                        return Err(e);
                    }
                    while !buf.is_empty() && ((buf.len() as u64) >= chunk || done) {
                        let n = (buf.len() as u64).min(chunk) as usize;
                        let part = buf.split_to(n).freeze();
                        let end = offset + part.len() as u64 - 1;
                        let mut req = Self::request(
                            Op::PutBlob,
                            target.clone(),
                            session.repo.repository(),
                            Method::PATCH,
                            location.clone(),
                            scopes.clone(),
                        );
                        req.headers.insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        );
                        req.headers.insert(
                            "content-range",
                            HeaderValue::from_str(&format!("{offset}-{end}")).expect("digits"),
                        );
                        req.body = Body::Bytes(part.clone());
                        let resp = host.send(req).await?;
                        location =
                            self::location(&host, &session.repo, &resp, Op::PutBlob, &target)?;
                        offset = end + 1;
                    }
                }
                let mut url = location;
                url.query_pairs_mut().append_pair("digest", &d.to_string());
                let req = Self::request(
                    Op::PutBlob,
                    target,
                    session.repo.repository(),
                    Method::PUT,
                    url,
                    scopes,
                );
                host.send(req).await.map(|_| ())
            }
        }
    }

    /// Upload bytes held in memory (configs, small artifacts): POST, then one
    /// PUT with the body.
    pub async fn put_blob_bytes(&self, repo: &Reference, d: &Digest, data: Bytes) -> Result<()> {
        let actual = d.of_same_algorithm(&data);
        if &actual != d {
            return Err(Error::DigestMismatch {
                op: Op::PutBlob,
                target: Self::blob_target(repo, d),
                expected: d.clone(),
                actual,
            });
        }
        let session = self.start_upload(repo).await?;
        let size = data.len() as u64;
        let stream = futures_util::stream::once(async move { Ok(data) });
        self.upload_blob(session, d, size, Box::pin(stream)).await
    }

    /// List a repository's valid tags, following `Link` pagination (see
    /// [`Client::list_tags_checked`]).
    pub async fn list_tags(&self, repo: &Reference) -> Result<Vec<String>> {
        Ok(self.list_tags_checked(repo).await?.tags)
    }

    /// List a repository's tags, following `Link` pagination, within the
    /// registry's caps (page size, pages, tags). Tags that break the tag
    /// grammar are dropped, counted, and logged once (escaped).
    pub async fn list_tags_checked(&self, repo: &Reference) -> Result<TagListing> {
        self.list_tags_reporting(repo, true).await
    }

    /// [`Client::list_tags_checked`] for a second listing of a repository
    /// in one run (the referrer lookup's): invalid tags are dropped the
    /// same way but not logged or counted again.
    pub async fn list_tags_unreported(&self, repo: &Reference) -> Result<TagListing> {
        self.list_tags_reporting(repo, false).await
    }

    async fn list_tags_reporting(&self, repo: &Reference, report: bool) -> Result<TagListing> {
        if let Some(layout) = self.layout_of(repo)? {
            return layout.list_tags_checked(repo).await;
        }
        let host = self.host(repo.registry())?;
        let target = repo.name();
        let limits = host.limits.clone();
        let mut url = host.url(repo.repository(), &["tags", "list"]);
        url.query_pairs_mut().append_pair("n", "1000");
        let mut listing = TagListing::default();
        let mut rejected: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(url.to_string()) {
                return Err(Error::BadResponse {
                    op: Op::ListTags,
                    target,
                    detail: "the registry's Link pagination loops".into(),
                });
            }
            if seen.len() > limits.max_tag_pages {
                return Err(self.listing_limit(
                    &host,
                    &target,
                    format!("more than {} tag-list pages", limits.max_tag_pages),
                    limits.max_tag_pages as u64,
                    None,
                ));
            }
            let (next, page) = self.tag_page(&host, repo, &target, &url).await?;
            for tag in page {
                if listing.tags.len() + listing.invalid >= limits.max_tags {
                    return Err(self.listing_limit(
                        &host,
                        &target,
                        format!("more than {} tags", limits.max_tags),
                        limits.max_tags as u64,
                        Some("max_tags"),
                    ));
                }
                if super::reference::valid_tag(&tag) {
                    listing.tags.push(tag);
                } else {
                    listing.invalid += 1;
                    if rejected.len() < 5 {
                        rejected.push(shown(&tag));
                    }
                }
            }
            match next {
                Some(link) => url = link,
                None => break,
            }
        }
        if report && listing.invalid > 0 {
            crate::metrics::record_invalid_tags(&host.name, listing.invalid as u64);
            tracing::warn!(
                repository = %target,
                invalid = listing.invalid,
                examples = %rejected.join(", "),
                "the registry listed tags that break the tag grammar; they are skipped"
            );
        }
        Ok(listing)
    }

    /// One tag-list page: its tags and the checked URL of the next page.
    async fn tag_page(
        &self,
        host: &Host,
        repo: &Reference,
        target: &str,
        url: &Url,
    ) -> Result<(Option<Url>, Vec<String>)> {
        let make = || {
            Ok(Self::request(
                Op::ListTags,
                target.to_string(),
                repo.repository(),
                Method::GET,
                url.clone(),
                Scopes::pull(repo.repository()),
            ))
        };
        let (headers, body) = self
            .get_with_body(
                host,
                make,
                MAX_TAG_PAGE_BYTES,
                Op::ListTags,
                target,
                "tag-list page",
            )
            .await?;
        let next = match headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_next_link)
        {
            Some(link) => {
                let next = url.join(&link).map_err(|_| Error::BadResponse {
                    op: Op::ListTags,
                    target: target.to_string(),
                    detail: format!(
                        "the registry sent an unusable Link header {:?}",
                        shown(&link)
                    ),
                })?;
                host.check_url(Op::ListTags, target, repo.repository(), &next, "Link")?;
                Some(next)
            }
            None => None,
        };
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
            op: Op::ListTags,
            target: target.to_string(),
            detail: format!("the tag list is not valid JSON: {}", shown(&e.to_string())),
        })?;
        Ok((next, page.tags.unwrap_or_default()))
    }

    fn listing_limit(
        &self,
        host: &Host,
        target: &str,
        what: String,
        limit: u64,
        key: Option<&'static str>,
    ) -> Error {
        Error::Limit {
            op: Op::ListTags,
            target: target.to_string(),
            registry: host.name.clone(),
            what,
            limit,
            key,
        }
    }
}

/// The `rel="next"` target of a `Link` header.
pub(super) fn parse_next_link(header: &str) -> Option<String> {
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

    #[test]
    fn link_header() {
        assert_eq!(
            parse_next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_next_link(r#"</x>; rel="prev""#), None);
    }

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
